#!/usr/bin/env bash
# pgctl.sh — a private PostgreSQL cluster in a folder, for `make run` (kept under .jobq/) and for
# the tests (a throwaway folder). PostgreSQL refuses to run as root, so as root the server runs as
# the unprivileged `postgres` user (created by Debian's postgresql package).
#
#   pgctl.sh start DIR     create the cluster if needed, start it on a free loopback port, wait
#                          until it accepts connections, print its URL
#   pgctl.sh stop DIR      stop it (fast shutdown); no error when it is not running
#   pgctl.sh status DIR    exit 0 when the cluster in DIR is running, 1 when not (or no cluster)
#   pgctl.sh url DIR       print the libpq URL (postgresql://jobq@127.0.0.1:PORT/jobq)
#   pgctl.sh destroy DIR   stop it and delete DIR
#
# Options by environment: JOBQ_PG_FSYNC=off for throwaway clusters (tests), JOBQ_PG_PORT to ask
# for a port, JOBQ_PG_CONF for extra postgresql.conf lines of a new cluster (the bench's
# pg_stat_statements diagnostic). Authentication is `trust` on 127.0.0.1 only: a development
# cluster, never production.
set -euo pipefail

die() { printf 'pgctl: %s\n' "$*" >&2; exit 1; }

pg_bindir() {
  local d
  for d in /usr/lib/postgresql/15/bin /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && { printf '%s\n' "$d"; return 0; }
  done
  die "PostgreSQL server binaries not found (run deploy/bootstrap.sh)"
}

BIN=$(pg_bindir)

as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pick_port() {
  local p tries=0
  while [ $tries -lt 50 ]; do
    p=$(( 20000 + (RANDOM * 32768 + RANDOM) % 30000 ))
    port_busy "$p" || { printf '%s\n' "$p"; return 0; }
    tries=$((tries + 1))
  done
  die "no free port found"
}

create() {
  local dir=$1
  mkdir -p "$dir"
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || die "user 'postgres' missing (run deploy/bootstrap.sh)"
    chown postgres: "$dir"
    as_pg test -w "$dir" || die "user 'postgres' cannot write $dir (a parent folder is not searchable); use a folder under /tmp"
  fi
  as_pg "$BIN/initdb" -D "$dir/data" -U jobq --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
  # The socket lives in DIR unless its path would pass the 107-byte limit of a Unix socket name.
  local sockdir="'$dir'"
  [ ${#dir} -gt 80 ] && sockdir="''"
  as_pg tee -a "$dir/data/postgresql.conf" >/dev/null <<CONF
# --- jobq development cluster ---
listen_addresses = '127.0.0.1'
unix_socket_directories = $sockdir
max_connections = 300
shared_buffers = 128MB
fsync = ${JOBQ_PG_FSYNC:-on}
synchronous_commit = ${JOBQ_PG_FSYNC:-on}
full_page_writes = ${JOBQ_PG_FSYNC:-on}
log_min_messages = warning
${JOBQ_PG_CONF:-}
log_line_prefix = '%m [%p] %q%u@%d '
CONF
}

start() {
  local dir=$1 port tries=0 parent
  # The parent first (make run's .jobq/ does not exist in a fresh clone), then an absolute path.
  # Two steps, because `x=$(cd ...)/$(basename ...)` takes its status from the last substitution
  # and hides a failed cd (it once put a cluster in /pg).
  parent=$(dirname "$dir")
  mkdir -p "$parent" || die "cannot create $parent"
  parent=$(cd "$parent" && pwd) || die "bad folder: $1"
  dir=$parent/$(basename "$dir")
  [ -f "$dir/data/PG_VERSION" ] || create "$dir"
  if as_pg "$BIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    url "$dir"; return 0
  fi
  port=${JOBQ_PG_PORT:-}
  [ -z "$port" ] && [ -f "$dir/port" ] && ! port_busy "$(cat "$dir/port")" && port=$(cat "$dir/port")
  while :; do
    [ -n "$port" ] || port=$(pick_port)
    if as_pg "$BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 -o "-p $port" start >/dev/null; then
      break
    fi
    tries=$((tries + 1))
    [ $tries -lt 5 ] && [ -z "${JOBQ_PG_PORT:-}" ] || { tail -n 20 "$dir/server.log" >&2; die "could not start PostgreSQL in $dir"; }
    port=""
  done
  printf '%s\n' "$port" >"$dir/port"
  # Create the database once; later starts find it.
  if [ "$("$BIN/psql" -qAtX -h 127.0.0.1 -p "$port" -U jobq -d postgres \
        -c "SELECT 1 FROM pg_database WHERE datname = 'jobq'")" != 1 ]; then
    "$BIN/createdb" -h 127.0.0.1 -p "$port" -U jobq jobq
  fi
  url "$dir"
}

url() {
  local dir=$1
  [ -f "$dir/port" ] || die "no cluster in $dir"
  printf 'postgresql://jobq@127.0.0.1:%s/jobq\n' "$(cat "$dir/port")"
}

stop() {
  local dir=$1
  [ -f "$dir/data/PG_VERSION" ] || return 0
  as_pg "$BIN/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null 2>&1 || true
}

status() {
  local dir=$1
  [ -f "$dir/data/PG_VERSION" ] || return 1
  as_pg "$BIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1 || return 1
}

destroy() {
  stop "$1"
  rm -rf "$1"
}

[ $# -eq 2 ] || die "usage: pgctl.sh start|stop|status|url|destroy DIR"
case $1 in
  start|stop|status|url|destroy) "$1" "$2" ;;
  *) die "unknown command: $1" ;;
esac
