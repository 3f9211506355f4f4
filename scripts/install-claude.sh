#!/usr/bin/env bash
# Installs the pinned Claude Code CLI from npm into .cache/claude-code (ignored by git)
# for the real-CLI tests (tests/real_cli.rs), and prints the path of the binary.
#
#   scripts/install-claude.sh            # install if missing, print the path
#   export BORG_REAL_CLAUDE=$(scripts/install-claude.sh)
#
# Idempotent and fast when the pinned version is already there: it only runs
# `claude --version`. Override the version with CLAUDE_CODE_VERSION and the folder with
# BORG_CLAUDE_CACHE. Needs npm (and so node) and the npm registry.
set -euo pipefail

version="${CLAUDE_CODE_VERSION:-2.1.197}"
root="$(cd "$(dirname "$0")/.." && pwd)"
prefix="${BORG_CLAUDE_CACHE:-$root/.cache/claude-code}"
pkg="$prefix/node_modules/@anthropic-ai/claude-code"

log() { echo "install-claude: $*" >&2; }

# The wrapper package's postinstall copies the native binary over bin/claude.exe. When
# install scripts did not run (npm --ignore-scripts, or a policy that skips them) the
# placeholder stays; then the platform package's own binary is the entry point.
find_binary() {
  local c
  for c in "$pkg/bin/claude.exe" "$prefix"/node_modules/@anthropic-ai/claude-code-linux-*/claude; do
    [ -x "$c" ] || continue
    if [ "$("$c" --version 2>/dev/null | head -n1)" = "$version (Claude Code)" ]; then
      echo "$c"
      return 0
    fi
  done
  return 1
}

if bin="$(find_binary)"; then
  log "Claude Code $version already installed"
  echo "$bin"
  exit 0
fi

command -v npm >/dev/null || { log "npm not found: install Node.js 18+ and npm"; exit 1; }
mkdir -p "$prefix"
log "installing @anthropic-ai/claude-code@$version into $prefix"
npm install --prefix "$prefix" --no-audit --no-fund --no-save --loglevel=error \
  "@anthropic-ai/claude-code@$version" >&2

if bin="$(find_binary)"; then
  log "installed: $bin"
  echo "$bin"
else
  log "installed, but no binary in $prefix answers '$version (Claude Code)' to --version"
  exit 1
fi
