#!/usr/bin/env bash
# Runs "$@" with DATABASE_URL pointing at a Postgres that answers.
#
# If DATABASE_URL is set and the server answers, it is used as is. Otherwise a
# throwaway cluster is created with initdb/pg_ctl (found on PATH or under
# /usr/lib/postgresql/*/bin) in a temporary directory, on a free loopback port,
# and removed afterwards, even when the command fails. initdb refuses to run as
# root, so as root the cluster runs as the `postgres` OS user.
set -euo pipefail

find_pg_bin() {
  local name=$1 dir
  if command -v "$name" >/dev/null 2>&1; then command -v "$name"; return 0; fi
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$dir/$name" ]; then echo "$dir/$name"; return 0; fi
  done
  return 1
}

answers() {
  local url=$1 tool
  if tool=$(find_pg_bin pg_isready); then
    "$tool" -q -t 3 -d "$url" >/dev/null 2>&1
  elif tool=$(find_pg_bin psql); then
    PGCONNECT_TIMEOUT=3 "$tool" "$url" -qAtc 'select 1' >/dev/null 2>&1
  else
    return 1
  fi
}

if [ -n "${DATABASE_URL:-}" ] && answers "$DATABASE_URL"; then
  echo "with-postgres: using DATABASE_URL (server answers)" >&2
  exec "$@"
fi

if [ -n "${DATABASE_URL:-}" ]; then
  echo "with-postgres: DATABASE_URL does not answer; starting a throwaway cluster" >&2
else
  echo "with-postgres: DATABASE_URL unset; starting a throwaway cluster" >&2
fi

initdb=$(find_pg_bin initdb) || { echo "with-postgres: initdb not found (install the PostgreSQL server binaries)" >&2; exit 1; }
pg_ctl=$(find_pg_bin pg_ctl) || { echo "with-postgres: pg_ctl not found" >&2; exit 1; }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
workdir=$(mktemp -d "${TMPDIR:-/tmp}/reproq-pg.XXXXXX")

as_owner=()
if [ "$(id -u)" = 0 ]; then
  id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
  chown postgres "$workdir"
  chmod 0755 "$workdir"
  as_owner=(runuser -u postgres --)
fi

cleanup() {
  "${as_owner[@]}" "$pg_ctl" -D "$workdir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$workdir"
}
trap cleanup EXIT INT TERM

"${as_owner[@]}" "$initdb" -D "$workdir/data" -U postgres -A trust --no-sync -E UTF8 >"$workdir/initdb.log" 2>&1 \
  || { cat "$workdir/initdb.log" >&2; exit 1; }
"${as_owner[@]}" "$pg_ctl" -D "$workdir/data" -l "$workdir/server.log" -w -t 60 \
  -o "-p $port -k $workdir -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
  start >/dev/null || { cat "$workdir/server.log" >&2; exit 1; }

export DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
echo "with-postgres: throwaway cluster on 127.0.0.1:$port" >&2
status=0
"$@" || status=$?
exit $status
