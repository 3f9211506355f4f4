#!/usr/bin/env bash
# borg's bench harness: builds the binaries, then runs bench/bench.py.
#
#   bench/run.sh                    every bench, full size, median of 5 runs (release build)
#   bench/run.sh --smoke            tiny sizes, one run, debug build: checks that the harness
#                                   works (what CI runs; no time is ever asserted)
#   bench/run.sh dispatch parse     only some benches (dispatch scale parse memory claims plan stop wake idle
#                                   tokens pg coord git serve merge mcp serveidle)
#   bench/run.sh pg                 many hosts: PostgreSQL vs SQLite claims, wake-up across hosts, 3 workers vs 1
#                                   (starts its own throwaway PostgreSQL through scripts/with-postgres.sh)
#   bench/run.sh tokens             fresh vs continued sessions with the real CLI (scripts/install-claude.sh)
#   bench/run.sh --runs 3 --json figures.json --dir /var/tmp
#
# Needs: cargo, python3 (standard library only), sh, xargs, seq; Linux (/proc).
set -euo pipefail
cd "$(dirname "$0")/.."
profile=release
want_claims=1
want_coord=1
for a in "$@"; do
    case "$a" in
        --smoke) profile=debug ;;
        dispatch|scale|parse|memory|plan|stop|wake|idle|tokens|claims|pg|coord|git|serve|merge|mcp|serveidle) want_claims=0; want_coord=0 ;;
    esac
done
for a in "$@"; do
    case "$a" in
        --release) profile=release ;;
        claims) want_claims=1 ;;
        pg) want_claims=1; want_coord=1 ;;
        coord) want_coord=1 ;;
    esac
done
args=()
for a in "$@"; do [ "$a" = --release ] || args+=("$a"); done
flag=()
[ "$profile" = release ] && flag=(--release)
target="${CARGO_TARGET_DIR:-target}/$profile"
echo "bench: building the $profile binaries" >&2
cargo build "${flag[@]}" --quiet --bin borg --bin fake-claude
if [ "$want_claims" = 1 ]; then
    exe=$(cargo test "${flag[@]}" --quiet --test bench_smoke --no-run --message-format json 2>/dev/null |
        python3 -c 'import json,sys
for l in sys.stdin:
    try: m = json.loads(l)
    except ValueError: continue
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "bench_smoke" and m.get("executable"):
        print(m["executable"])')
    export BORG_BENCH_CLAIMS_EXE="$exe"
fi
if [ "$want_coord" = 1 ]; then
    exe=$(cargo test "${flag[@]}" --quiet --test bench_coord --no-run --message-format json 2>/dev/null |
        python3 -c 'import json,sys
for l in sys.stdin:
    try: m = json.loads(l)
    except ValueError: continue
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "bench_coord" and m.get("executable"):
        print(m["executable"])')
    export BORG_BENCH_COORD_EXE="$exe"
fi
exec python3 bench/bench.py --borg "$target/borg" --fake "$target/fake-claude" ${args[@]+"${args[@]}"}
