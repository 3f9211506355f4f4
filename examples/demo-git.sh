#!/usr/bin/env bash
# The demo in git mode: examples/demo.toml run on a git repository made from
# examples/template, every task a branch in its own worktree, the dependencies'
# work merged in. Ends with one branch per task and `borg diff` of one of them.
#
#   cargo build --release && examples/demo-git.sh [DIR]
#
# DIR (default: a new folder under /tmp) receives calc/ (the repository) and
# workspaces/. BORG and FAKE_CLAUDE name the binaries (default: target/release/).
# No API key needed: fake-claude stands in for claude (IS_SANDBOX=1 lets root use
# bypassPermissions, as with the real CLI).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
dir="${1:-$(mktemp -d /tmp/borg-git-demo.XXXXXX)}"
borg="$(realpath "${BORG:-$root/target/release/borg}")"
fake="$(realpath "${FAKE_CLAUDE:-$root/target/release/fake-claude}")"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
repo="$dir/calc"
rm -rf "$repo" "$dir/workspaces"

# A repository to work on: the template, committed (test caches ignored, since borg
# commits everything an agent leaves that .gitignore does not ignore).
git init -q -b main "$repo"
cp -R "$here/template/." "$repo/"
printf '__pycache__/\n' > "$repo/.gitignore"
git -C "$repo" add -A
git -C "$repo" -c user.name=Demo -c user.email=demo@example.com commit -q -m "calc: the module to work on"

cd "$dir"
export IS_SANDBOX="${IS_SANDBOX:-1}"
status=0
"$borg" --workspaces "$dir/workspaces" run "$here/demo.toml" --claude "$fake" --repo "$repo" || status=$?

echo
echo "== one branch per task (git -C $repo branch --list 'borg/*')"
git -C "$repo" branch --list 'borg/*'
echo
echo "== borg --workspaces $dir/workspaces diff add-sub"
"$borg" --workspaces "$dir/workspaces" diff add-sub
exit "$status"
