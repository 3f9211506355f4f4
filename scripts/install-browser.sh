#!/usr/bin/env bash
# Installs what the dashboard's browser test (tests/serve_browser.rs) needs: Debian's
# headless Chromium and its WebDriver. Idempotent; needs root (CI runs as root).
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium chromium-driver >/dev/null
