#!/usr/bin/env bash
# scripts/with-postgres.sh CMD [ARGS...]
#
# Starts a throwaway PostgreSQL (initdb into a temporary folder, listening on a free
# loopback port only), exports its URL as BORG_TEST_PG_URL (a superuser with a random
# password, so password authentication is exercised too), runs CMD, and stops the
# server and deletes its folder when CMD ends: on success, on failure and on Ctrl-C.
# Exits with CMD's status.
#
# initdb and postgres refuse to run as root: as root, they run as the `postgres` user
# (Debian's package creates it) or else `nobody`. The binaries are found on PATH, then
# in /usr/lib/postgresql/*/bin. BORG_PG_BIN overrides the folder.
set -euo pipefail

if [ $# -eq 0 ]; then
  echo "usage: $0 CMD [ARGS...]" >&2
  exit 2
fi

pg_bin() {
  if [ -n "${BORG_PG_BIN:-}" ]; then echo "$BORG_PG_BIN"; return; fi
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(command -v initdb)"; return
  fi
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
  if [ -n "$d" ]; then echo "$d"; return; fi
  echo "with-postgres: no PostgreSQL server binaries (initdb, pg_ctl) found; install the distribution's package, e.g. apt-get install postgresql" >&2
  exit 2
}
PGBIN=$(pg_bin)

RUN=()
if [ "$(id -u)" = 0 ]; then
  if id postgres >/dev/null 2>&1; then USER_NAME=postgres; else USER_NAME=nobody; fi
  RUN=(runuser -u "$USER_NAME" --)
fi

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null \
    || echo $((20000 + RANDOM % 20000))
}

BASE=$(mktemp -d /tmp/borg-pg.XXXXXX)
PGDATA="$BASE/data"
PGPORT=${BORG_PG_PORT:-$(free_port)}
PASSWORD=$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')
PGPID=""

cleanup() {
  local rc=$?
  if [ -n "$PGPID" ]; then
    # SIGINT is PostgreSQL's fast shutdown; it deletes postmaster.pid on exit (a
    # stopped server may linger as a zombie, so kill -0 is no test of its end).
    kill -INT "$PGPID" 2>/dev/null || true
    for _ in $(seq 300); do [ -e "$PGDATA/postmaster.pid" ] || break; sleep 0.1; done
  fi
  rm -rf "$BASE"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$PGDATA"
printf '%s\n' "$PASSWORD" >"$BASE/pw"
if [ ${#RUN[@]} -gt 0 ]; then chown -R "$USER_NAME" "$BASE"; fi
chmod 700 "$BASE" "$PGDATA"

"${RUN[@]}" "$PGBIN/initdb" -D "$PGDATA" -U borg --pwfile="$BASE/pw" \
  --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --no-sync >"$BASE/initdb.log" 2>&1 \
  || { cat "$BASE/initdb.log" >&2; exit 1; }
rm -f "$BASE/pw"
# Loopback only, a private socket folder, and no fsync: this server lives for one
# command and holds nothing worth keeping.
"${RUN[@]}" "$PGBIN/pg_ctl" -D "$PGDATA" -l "$BASE/server.log" -w -t 60 \
  -o "-c listen_addresses=127.0.0.1 -p $PGPORT -k $BASE -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
  start >/dev/null \
  || { cat "$BASE/server.log" >&2; exit 1; }
PGPID=$(head -1 "$PGDATA/postmaster.pid")

export BORG_TEST_PG_URL="postgres://borg:$PASSWORD@127.0.0.1:$PGPORT/postgres"
export BORG_TEST_PG_BIN="$PGBIN"
echo "with-postgres: PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PGPORT (pid $PGPID)" >&2

set +e
"$@"
rc=$?
set -e
exit "$rc"
