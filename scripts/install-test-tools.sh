#!/usr/bin/env bash
# Installs, from Debian's packages, what the tests and the smoke bench need beyond cargo:
# headless Chromium and its WebDriver (the dashboard's browser test,
# tests/serve_browser.rs) and wrk (the `serve` bench). Idempotent; needs root (CI runs
# as root).
set -euo pipefail
missing=()
# The browser test starts these exact paths (Debian's packages), not whatever is on PATH.
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
command -v wrk >/dev/null || missing+=(wrk)
[ ${#missing[@]} -eq 0 ] && exit 0
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
