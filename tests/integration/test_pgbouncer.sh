#!/usr/bin/env bash
# jobqd through a real PgBouncer (Debian's pgbouncer, 1.18) in transaction mode: the request pool
# goes through PgBouncer with --db-prepared=off (PgBouncer < 1.21 cannot track named prepared
# statements), and JOBQ_LISTEN_DATABASE_URL takes the LISTEN session straight to PostgreSQL.
# Enqueue, claim, complete, a long-poll Claim woken by a notification and a `jobq watch` that hears
# the announcement; PgBouncer's own SHOW STATS proves the traffic went through it.
#
# PgBouncer runs from a temp folder on a free loopback port, as the unprivileged `postgres` user
# when we are root, and is always stopped (by its pidfile) on exit.
set -euo pipefail
root=${JOBQ_TEST_ROOT:?run through tests/run.sh}
build=${JOBQ_TEST_BUILD:?}
base=${JOBQ_TEST_DATABASE_URL:?}
maint=${base%/*}/postgres
db=jq_pgb_test
pg_hostport=${base#postgresql://*@}; pg_hostport=${pg_hostport%%/*}
pg_port=${pg_hostport##*:}
J=$build/bin/jobq
PGB=${JOBQ_PGBOUNCER:-/usr/sbin/pgbouncer}
tmp=$(mktemp -d /tmp/jq-pgb-test.XXXXXX)
chmod 755 "$tmp"
pids=()

as_pgb() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

cleanup() {
  local rc=$?
  kill_all "${pids[@]}"
  if [ -f "$tmp/pgbouncer.pid" ]; then
    kill -TERM "$(cat "$tmp/pgbouncer.pid")" 2>/dev/null || true
    for _ in $(seq 50); do [ -f "$tmp/pgbouncer.pid" ] || break; sleep 0.1; done
    [ -f "$tmp/pgbouncer.pid" ] && kill -KILL "$(cat "$tmp/pgbouncer.pid")" 2>/dev/null || true
  fi
  wait 2>/dev/null || true
  if [ "$rc" -ne 0 ]; then
    [ -f "$tmp/jobqd.log" ] && { echo "--- jobqd log (last 40 lines)"; tail -n 40 "$tmp/jobqd.log"; }
    [ -f "$tmp/pgbouncer.log" ] && { echo "--- pgbouncer log (last 20 lines)"; tail -n 20 "$tmp/pgbouncer.log"; }
  fi
  psql -qX "$maint" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

. "${JOBQ_TEST_ROOT:?run through tests/run.sh}/tests/harness/shlib.sh"



[ -x "$PGB" ] || fail "pgbouncer not found at $PGB (deploy/bootstrap.sh installs the Debian package)"

# ------------------------------------------------------------------ database and PgBouncer
PGOPTIONS="-c client_min_messages=warning" psql -qX "$maint" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" \
  -c "CREATE DATABASE $db TEMPLATE jobq" >/dev/null
pgb_port=$(free_port)
printf '"jobq" ""\n' >"$tmp/userlist.txt"
# A server pool smaller than jobqd's (4 + rescuer + http) forces real sharing of server
# connections between jobqd's sessions: any session state (a named prepared statement) would break.
cat >"$tmp/pgbouncer.ini" <<INI
[databases]
$db = host=127.0.0.1 port=$pg_port dbname=$db user=jobq
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $pgb_port
unix_socket_dir =
auth_type = trust
auth_file = $tmp/userlist.txt
admin_users = jobq
pool_mode = transaction
default_pool_size = 2
max_client_conn = 50
ignore_startup_parameters = extra_float_digits,options
pidfile = $tmp/pgbouncer.pid
logfile = $tmp/pgbouncer.log
INI
[ "$(id -u)" -eq 0 ] && chown -R postgres: "$tmp"
as_pgb "$PGB" -d "$tmp/pgbouncer.ini" || fail "pgbouncer did not start: $(cat "$tmp/pgbouncer.log" 2>/dev/null)"
pgb_url=postgresql://jobq@127.0.0.1:$pgb_port/$db
wait_until 10 psql -qAtX "$pgb_url" -c "SELECT 1" >/dev/null 2>&1 || fail "pgbouncer does not answer on $pgb_port"
ok "pgbouncer $("$PGB" --version | head -n1 | awk '{print $2}') on 127.0.0.1:$pgb_port, transaction mode"

# ------------------------------------------------------------------ jobqd through it
export JOBQ_RPC_URL=tcp://127.0.0.1:$(free_port) JOBQ_PUB_URL=tcp://127.0.0.1:$(free_port)
unset JOBQ_AUTH_TOKEN
JOBQ_LISTEN_DATABASE_URL=${base%/*}/$db \
  "$build/bin/jobqd" --database-url="$pgb_url" --db-prepared=off --db-pool-size=4 \
  --rpc-url="$JOBQ_RPC_URL" --pub-url="$JOBQ_PUB_URL" --http-addr="127.0.0.1:$(free_port)" \
  --log-format=text >"$tmp/jobqd.log" 2>&1 &
jobqd=$!; pids+=($jobqd)
wait_until 20 "$J" stats --timeout-ms 300 >/dev/null 2>&1 || fail "jobqd did not answer"
wait_until 10 grep -q "notify: listening" "$tmp/jobqd.log" || fail "jobqd is not listening"

"$J" watch --queue pgb --json >"$tmp/watch.json" 2>"$tmp/watch.log" &
watch=$!; pids+=($watch)
sleep 0.5 # the subscription connects asynchronously

# A long-poll Claim parked before the job exists: only the notification (LISTEN, direct) wakes it
# before its 8 s wait ends.
"$J" claim --queue pgb --wait-ms 8000 --json >"$tmp/waited.json" 2>"$tmp/waited.err" &
lp=$!; pids+=($lp)
sleep 0.5
t0=$(date +%s%N)
id=$("$J" enqueue --queue pgb --payload via-pgbouncer)
[[ $id =~ ^[0-9]+$ ]] || fail "enqueue printed '$id'"
wait $lp || fail "long-poll claim failed: $(cat "$tmp/waited.err")"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
grep -q "\"id\":$id," "$tmp/waited.json" || fail "long-poll claim got: $(cat "$tmp/waited.json")"
[ "$ms" -lt 5000 ] || fail "long-poll claim took ${ms} ms: no notification woke it"
token=$(sed -n 's/.*"lease_token":\([0-9]*\).*/\1/p' "$tmp/waited.json" | head -n1)
"$J" complete --id "$id" --token "$token" >/dev/null || fail "complete failed"
ok "enqueue, a waiting claim woken by the notification (${ms} ms), complete"

wait_until 10 grep -q "\"queue\":\"pgb\"" "$tmp/watch.json" || fail "watch heard nothing: $(cat "$tmp/watch.log")"
kill -INT "$watch"; wait "$watch" || fail "watch exited $?"
ok "jobq watch heard the announcement"

# Many sessions at once through 2 server connections: batches, claims and completions.
seq 1 200 | sed 's/^/job-/' | "$J" enqueue --queue pgb --stdin-lines >/dev/null || fail "batch enqueue"
cpids=()
for w in 1 2 3 4; do
  "$J" claim --queue pgb --limit 50 --json >"$tmp/c$w.json" 2>"$tmp/c$w.err" &
  cpids+=($!)
done
for p in "${cpids[@]}"; do wait "$p" || fail "a claim failed: $(cat "$tmp"/c?.err)"; done
claimed=$(cat "$tmp"/c?.json | grep -c '"id"' || true)
[ "$claimed" = 200 ] || fail "claimed $claimed of 200: $(cat "$tmp"/c?.err)"
[ "$(cat "$tmp"/c?.json | sed -n 's/.*"id":\([0-9]*\),.*/\1/p' | sort -u | wc -l)" = 200 ] || fail "a job was claimed twice"
while read -r line; do
  i=$(sed -n 's/.*"id":\([0-9]*\),.*/\1/p' <<<"$line")
  t=$(sed -n 's/.*"lease_token":\([0-9]*\).*/\1/p' <<<"$line")
  "$J" complete --id "$i" --token "$t" >/dev/null || fail "complete $i"
done < <(cat "$tmp"/c?.json | head -n 20)
done_n=$("$J" stats --queue pgb --json | sed -n 's/.*"completed":\([0-9]*\).*/\1/p')
[ "$done_n" = 21 ] || fail "completed: $done_n (expected 21)"
ok "200 jobs enqueued in one batch, claimed by 4 clients at once (each once), 20 completed"

# The pool really went through PgBouncer: its counters saw our transactions.
xacts=$(psql -qAtX "postgresql://jobq@127.0.0.1:$pgb_port/pgbouncer" -c "SHOW STATS" |
  awk -F'|' -v d="$db" '$1 == d { print $2 }')
[ -n "$xacts" ] && [ "$xacts" -gt 20 ] || fail "pgbouncer saw ${xacts:-no} transactions for $db"
grep -q "prepared statement" "$tmp/jobqd.log" && fail "a prepared-statement error in jobqd's log"
ok "pgbouncer counted $xacts transactions; no prepared-statement errors"
kill -TERM "$jobqd"; wait "$jobqd" || fail "jobqd exited $? on SIGTERM"
ok "jobqd stopped cleanly"
echo "test_pgbouncer: all passed"
