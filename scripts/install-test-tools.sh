#!/usr/bin/env bash
# Installs, from Debian's packages, what the tests and the smoke bench need beyond cargo:
# headless Chromium and its WebDriver (the dashboard's browser test,
# tests/serve_browser.rs) and wrk (the `serve` bench). Idempotent; needs root (CI runs
# as root).
set -euo pipefail
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
command -v wrk >/dev/null || missing+=(wrk)
[ ${#missing[@]} -eq 0 ] && exit 0
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
