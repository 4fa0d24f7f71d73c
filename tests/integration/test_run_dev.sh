#!/usr/bin/env bash
# deploy/run-dev.sh (`make run`) against the built binaries, in a private folder (JOBQ_RUN_DIR)
# on private ports: a second run in the same folder says where the first runs, exits 1 and
# leaves the first serving; a run whose jobqd cannot start (its port is taken) exits non-zero and
# leaves alone the PostgreSQL it did not start; SIGTERM stops the first, and its database with it.
set -euo pipefail
root=${JOBQ_TEST_ROOT:?run through tests/run.sh}
build=${JOBQ_TEST_BUILD:?run through tests/run.sh}
. "$root/tests/harness/shlib.sh"
J=$build/bin/jobq
pgctl=$root/tests/harness/pgctl.sh
tmp=$(mktemp -d /tmp/jq-rundev-test.XXXXXX)
chmod 755 "$tmp" # the clusters run as the postgres user when we are root
first=""

cleanup() {
  local rc=$?
  if [ -n "$first" ]; then kill -TERM "$first" 2>/dev/null || true; wait "$first" 2>/dev/null || true; fi
  if [ "$rc" -ne 0 ]; then
    for f in "$tmp"/*.log; do [ -f "$f" ] && { echo "--- $f (last 30 lines)"; tail -n 30 "$f"; }; done
  fi
  "$pgctl" destroy "$tmp/a/pg" >/dev/null 2>&1 || true
  "$pgctl" destroy "$tmp/c/pg" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

unset JOBQ_DATABASE_URL JOBQ_AUTH_TOKEN JOBQ_AUTH_TOKEN_FILE JOBQ_TLS_CERT JOBQ_TLS_KEY JOBQ_TLS_CA
export JOBQ_PG_FSYNC=off
export JOBQ_RPC_URL=tcp://127.0.0.1:$(free_port) JOBQ_PUB_URL=tcp://127.0.0.1:$(free_port)
export JOBQ_HTTP_ADDR=127.0.0.1:$(free_port)
run_dev() { JOBQ_RUN_DIR=$1 "$root/deploy/run-dev.sh" "$build"; }

# A simple command, so that $! is run-dev.sh itself (the pid it reports), not a subshell.
JOBQ_RUN_DIR=$tmp/a "$root/deploy/run-dev.sh" "$build" >"$tmp/first.log" 2>&1 &
first=$!
wait_until 60 "$J" stats --timeout-ms 500 >/dev/null 2>&1 || fail "the first run does not serve at $JOBQ_RPC_URL"
url=$("$pgctl" url "$tmp/a/pg")
ok "the first run serves at $JOBQ_RPC_URL (database $url)"

set +e
run_dev "$tmp/a" >"$tmp/second.log" 2>&1
st=$?
set -e
[ "$st" = 1 ] || fail "a second run in the same folder exited $st: $(cat "$tmp/second.log")"
want="make run: already running (pid $first, rpc $JOBQ_RPC_URL, pub $JOBQ_PUB_URL, http $JOBQ_HTTP_ADDR, database $url)"
grep -qF "$want" "$tmp/second.log" || fail "the second run said: $(cat "$tmp/second.log")"
kill -0 "$first" || fail "the first run ended"
"$J" stats --timeout-ms 3000 >/dev/null || fail "the first run stopped serving after the second"
[ "$(psql -qAtX "$url" -c 'SELECT 1')" = 1 ] || fail "the first run's database stopped"
ok "a second run says where the first runs, exits 1, and the first still serves"

# A cluster started before the run (by hand, or left by a killed run) is not the run's to stop;
# jobqd cannot bind the first run's ports.
url_c=$("$pgctl" start "$tmp/c/pg")
set +e
run_dev "$tmp/c" >"$tmp/third.log" 2>&1
st=$?
set -e
[ "$st" != 0 ] || fail "a run whose jobqd could not start exited 0: $(cat "$tmp/third.log")"
grep -q "make run: jobqd exited with status $st" "$tmp/third.log" || fail "no word on jobqd's exit: $(cat "$tmp/third.log")"
[ "$(psql -qAtX "$url_c" -c 'SELECT 1')" = 1 ] || fail "the run stopped a PostgreSQL it had not started"
"$J" stats --timeout-ms 3000 >/dev/null || fail "the first run stopped serving after the third"
ok "a run whose jobqd cannot start exits $st and leaves a PostgreSQL it did not start running"

kill -TERM "$first"
st=0; wait "$first" || st=$?
first=""
[ "$st" = 0 ] || fail "the first run exited $st on SIGTERM: $(tail -n 5 "$tmp/first.log")"
grep -q "make run: PostgreSQL stopped" "$tmp/first.log" || fail "no word on PostgreSQL: $(tail -n 5 "$tmp/first.log")"
! "$pgctl" status "$tmp/a/pg" || fail "the first run's PostgreSQL still runs"
! psql -qAtX "$url" -c 'SELECT 1' >/dev/null 2>&1 || fail "the first run's database still answers"
[ ! -e "$tmp/a/run.pid" ] || fail "run.pid left behind"
ok "SIGTERM stops the first run's jobqd and its PostgreSQL (exit 0)"
echo "test_run_dev: all passed"
