#!/usr/bin/env bash
# borg's bench harness. Builds the release binaries, then runs bench/bench.py.
#
#   bench/run.sh                    every bench, full size, median of 5 runs
#   bench/run.sh --smoke            tiny sizes, one run (what CI runs: no time is asserted)
#   bench/run.sh dispatch parse     only some benches (dispatch parse memory claims plan stop)
#   bench/run.sh --runs 3 --json figures.json --dir /var/tmp
#
# Needs: cargo, python3 (standard library only), sh, xargs, seq. Linux (/proc).
set -euo pipefail
cd "$(dirname "$0")/.."
want_claims=1
for a in "$@"; do
    case "$a" in
        dispatch|parse|memory|plan|stop) want_claims=0 ;;
    esac
done
for a in "$@"; do [ "$a" = claims ] && want_claims=1; done
echo "bench: building release binaries" >&2
cargo build --release --quiet --bin borg --bin fake-claude
if [ "$want_claims" = 1 ]; then
    cargo test --release --quiet --test bench_smoke --no-run 2>/dev/null || \
        cargo test --release --test bench_smoke --no-run
fi
exec python3 bench/bench.py "$@"
