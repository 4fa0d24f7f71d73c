#!/usr/bin/env bash
# run-dev.sh BUILD — `make run`: the embedded PostgreSQL under .jobq/ (kept between runs), the
# migrations applied, and jobqd in the foreground. Ctrl-C (or SIGTERM to this script) stops jobqd,
# then the database, if this run started it: a PostgreSQL that was already running is left alone.
#
# One `make run` per folder: the first holds .jobq/run.lock for as long as it runs and writes
# where it serves to .jobq/run.pid; a second one prints "already running (pid N, rpc ...)" and
# exits 1 without touching the first. The exit status is jobqd's: 0 after Ctrl-C, non-zero when
# it could not start (a port in use).
#
# JOBQ_RUN_DIR moves .jobq/ (the tests use a private one); JOBQ_RPC_URL, JOBQ_PUB_URL and
# JOBQ_HTTP_ADDR move jobqd's addresses, as for jobqd itself.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build}
case $build in /*) ;; *) build=$root/$build ;; esac
pgctl=$root/tests/harness/pgctl.sh
run_dir=${JOBQ_RUN_DIR:-$root/.jobq}
dir=$run_dir/pg
rpc=${JOBQ_RPC_URL:-tcp://127.0.0.1:7100}
pub=${JOBQ_PUB_URL:-tcp://127.0.0.1:7101}
http=${JOBQ_HTTP_ADDR:-127.0.0.1:7102}

mkdir -p "$run_dir"
# Appending, not truncating: a second run opens the file too. Every child gets descriptor 9
# closed (9>&-), so a PostgreSQL or jobqd outliving a killed run never holds the lock.
exec 9>>"$run_dir/run.lock"
if ! flock -n 9; then
  info=$(cat "$run_dir/run.pid" 2>/dev/null) || true
  echo "make run: already running (${info:-starting up}); stop that one first (Ctrl-C in its terminal, or kill its pid)" >&2
  exit 1
fi

jobqd_pid="" pg_started=0
describe() { printf 'pid %s, rpc %s, pub %s, http %s, database %s\n' $$ "$rpc" "$pub" "$http" "$1" >"$run_dir/run.pid"; }

finish() {
  local rc=$?
  # Only when this script dies before jobqd ended (an error of its own): do not leave it behind.
  if [ -n "$jobqd_pid" ]; then kill -TERM "$jobqd_pid" 2>/dev/null || true; wait "$jobqd_pid" 2>/dev/null || true; fi
  rm -f "$run_dir/run.pid"
  if [ "$pg_started" = 1 ]; then
    "$pgctl" stop "$dir" 9>&-
    echo "make run: PostgreSQL stopped" >&2
  fi
  exit "$rc"
}
trap finish EXIT
# A signal stops jobqd, whose end then ends this script; before jobqd runs it ends the script.
on_signal() { if [ -n "$jobqd_pid" ]; then kill -TERM "$jobqd_pid" 2>/dev/null || true; else exit $((128 + $1)); fi; }
trap 'on_signal 1' HUP
trap 'on_signal 2' INT
trap 'on_signal 15' TERM

describe "in $dir (starting)"
if "$pgctl" status "$dir" 9>&-; then
  echo "make run: PostgreSQL in $dir was already running; it stays running after this run" >&2
else
  pg_started=1
fi
url=$("$pgctl" start "$dir" 9>&-)
describe "$url"
echo "make run: PostgreSQL at $url (data in $dir, log in $dir/server.log)" >&2
JOBQ_DATABASE_URL=$url "$root/deploy/migrate.sh" update 9>&-
export JOBQ_DATABASE_URL=$url
stops="jobqd"; [ "$pg_started" = 1 ] && stops="jobqd and the database"
echo "make run: starting jobqd; Ctrl-C stops $stops" >&2
"$build/bin/jobqd" --log-format="${JOBQ_LOG_FORMAT:-text}" 9>&- &
jobqd_pid=$!
# wait returns early when a trapped signal arrives; jobqd is then stopping, so wait again.
rc=0
while :; do
  wait "$jobqd_pid" && rc=0 || rc=$?
  kill -0 "$jobqd_pid" 2>/dev/null || break
done
jobqd_pid=""
[ "$rc" = 0 ] || echo "make run: jobqd exited with status $rc" >&2
exit "$rc"
