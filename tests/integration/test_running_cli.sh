#!/usr/bin/env bash
# Running jobs through the CLI against a real jobqd: progress with `jobq heartbeat`, an output
# with `jobq complete`, both shown by `jobq get`; and `jobq worker` killing the command of a job
# cancelled while it runs, at once from the "cancel.<queue>" message, and from its heartbeat when
# it hears no messages; the worker goes on with the next job.
set -euo pipefail
root=${JOBQ_TEST_ROOT:?run through tests/run.sh}
build=${JOBQ_TEST_BUILD:?}
base=${JOBQ_TEST_DATABASE_URL:?}
maint=${base%/*}/postgres
db=jq_running_cli_test
url=${base%/*}/$db
J=$build/bin/jobq
tmp=$(mktemp -d /tmp/jq-running-cli.XXXXXX)
pids=()

cleanup() {
  local rc=$?
  kill_all "${pids[@]}"
  if [ "$rc" -ne 0 ]; then
    for f in "$tmp"/*.log; do [ -f "$f" ] && { echo "--- $f (last 30 lines)"; tail -n 30 "$f"; }; done
  fi
  psql -qX "$maint" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

. "$root/tests/harness/shlib.sh"

field() { sed -n "s/.*\"$1\":\(-\{0,1\}[0-9]*\).*/\1/p" | head -n1; }
status_of() { "$J" get "$1" --json | sed -n 's/.*"status":"\([a-z_]*\)".*/\1/p'; }
status_is() { [ "$(status_of "$1")" = "$2" ]; }
gone() { ! kill -0 "$1" 2>/dev/null; }

PGOPTIONS="-c client_min_messages=warning" psql -qX "$maint" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db TEMPLATE jobq" >/dev/null
export JOBQ_RPC_URL=tcp://127.0.0.1:$(free_port) JOBQ_PUB_URL=tcp://127.0.0.1:$(free_port)
unset JOBQ_AUTH_TOKEN
"$build/bin/jobqd" --database-url="$url" --rpc-url="$JOBQ_RPC_URL" --pub-url="$JOBQ_PUB_URL" \
  --http-addr="127.0.0.1:$(free_port)" --rescue-interval-ms=100 --backoff-base-ms=100 \
  --log-format=text >"$tmp/jobqd.log" 2>&1 &
pids+=($!)
wait_until 20 "$J" stats --timeout-ms 300 >/dev/null 2>&1 || fail "jobqd did not answer"

# ------------------------------------------------------------------ progress and output by hand
id=$("$J" enqueue -q by_hand -p work)
"$J" claim -q by_hand --json >"$tmp/claim.json"
token=$(field lease_token <"$tmp/claim.json")
"$J" heartbeat --id "$id" --token "$token" --progress 40 --message "step 2 of 5" >/dev/null
grep -q '^progress: *40% step 2 of 5' <<<"$("$J" get "$id")" || fail "get shows no progress: $("$J" get "$id")"
grep -q '\[40%\] step 2 of 5' <<<"$("$J" list -q by_hand)" || fail "list shows no progress"
grep -q '"progress_percent":40' <<<"$("$J" get "$id" --json)" || fail "get --json shows no progress"
if "$J" heartbeat --id "$id" --token "$token" --progress 101 2>"$tmp/err.txt"; then fail "progress 101 accepted"; fi
grep -q INVALID_ARGUMENT "$tmp/err.txt" || fail "progress 101: $(cat "$tmp/err.txt")"
if "$J" heartbeat --id "$id" --token "$token" --message "alone" 2>/dev/null; then fail "--message without --progress"; fi
"$J" complete --id "$id" --token "$token" --output "the answer" >/dev/null
grep -q '^output: *the answer (10 bytes)' <<<"$("$J" get "$id")" || fail "get shows no output: $("$J" get "$id")"
ok "heartbeat --progress and complete --output, shown by get and list"

# ------------------------------------------------------------------ the worker and a cancel
# The command sleeps for the job "long" (its pid in a file) and ends at once for any other.
cat >"$tmp/cmd.sh" <<EOF
#!/bin/sh
if [ "\$(cat)" = long ]; then echo \$\$ >"$tmp/pid.\$JOBQ_JOB_ID"; exec sleep 60; fi
echo done
EOF
chmod +x "$tmp/cmd.sh"

# run_worker QUEUE LEASE [PUB_URL]: a worker in the background; its log in $tmp/worker-QUEUE.log.
run_worker() {
  JOBQ_PUB_URL=${3:-$JOBQ_PUB_URL} "$J" worker -q "$1" --concurrency 2 --lease "$2" --json -- "$tmp/cmd.sh" \
    >"$tmp/worker-$1.json" 2>"$tmp/worker-$1.log" &
  pids+=($!)
  wpid=$!
}

# A lease of 60 s: the first heartbeat would come after 20 s, so the kill within 10 s is the
# cancel.<queue> message's doing.
run_worker via_pub 60
# The worker subscribes in the background: announcements reaching it show it is connected.
long=$("$J" enqueue -q via_pub -p long)
wait_until 10 test -s "$tmp/pid.$long" || fail "the long job did not start"
child=$(cat "$tmp/pid.$long")
warm() { "$J" enqueue -q via_pub -p warm >/dev/null; grep -q '"event":"completed"' "$tmp/worker-via_pub.json"; }
wait_until 10 warm || fail "the worker completes no other job meanwhile"
"$J" cancel "$long" >/dev/null
wait_until 10 gone "$child" || fail "the cancelled job's command still runs"
status_is "$long" archive_cancelled || fail "job $long is $(status_of "$long")"
grep -q "job $long: cancelled by the service" "$tmp/worker-via_pub.log" || fail "no log line for the cancel"
grep -q "\"event\":\"cancelled\",\"id\":$long" "$tmp/worker-via_pub.json" || fail "no cancelled event"
next=$("$J" enqueue -q via_pub -p short)
wait_until 10 status_is "$next" archive_completed || fail "the worker did not go on with the next job"
ok "jobq worker kills a cancelled job's command at once (cancel.<queue>) and goes on"

# enqueue --wait: the outcome is the exit status.
"$J" enqueue -q via_pub -p short --wait >"$tmp/wait.out" || fail "enqueue --wait of a job that completes: exit $?"
[ "$(wc -l <"$tmp/wait.out")" = 1 ] || fail "enqueue --wait printed: $(cat "$tmp/wait.out")"
rc=0; "$J" enqueue -q via_pub -p long --time-limit-ms 500 --max-attempts 1 --wait >/dev/null 2>"$tmp/err.txt" || rc=$?
[ "$rc" = 3 ] || fail "a job past its time limit: exit $rc ($(cat "$tmp/err.txt"))"
grep -q "time limit exceeded" "$tmp/err.txt" || fail "no reason: $(cat "$tmp/err.txt")"
limited=$(ls -t "$tmp"/pid.* | head -n1)
wait_until 10 gone "$(cat "$limited")" || fail "the command of the job past its time limit still runs"
grep -q "time limit exceeded by the service" "$tmp/worker-via_pub.log" || fail "no log line for the time limit"
"$J" enqueue -q via_pub -p long --wait >"$tmp/cancelled.out" 2>"$tmp/err.txt" & waiter=$!
wait_until 10 test -s "$tmp/cancelled.out" || fail "enqueue --wait printed no id"
cid=$(head -n1 "$tmp/cancelled.out")
wait_until 10 test -s "$tmp/pid.$cid" || fail "the job to cancel did not start"
"$J" cancel "$cid" >/dev/null
rc=0; wait "$waiter" || rc=$?
[ "$rc" = 4 ] || fail "a cancelled job: exit $rc ($(cat "$tmp/err.txt"))"
rc=0; "$J" enqueue -q nobody_works_here -p x --wait --wait-ms 300 >/dev/null 2>&1 || rc=$?
[ "$rc" = 5 ] || fail "a job nobody runs, --wait-ms 300: exit $rc"
ok "enqueue --wait exits 0 completed, 3 failed (time limit, the command killed), 4 cancelled, 5 unfinished"

# The output a Complete keeps is what enqueue --wait prints.
"$J" enqueue -q by_hand2 -p x --wait >"$tmp/out.txt" 2>&1 & waiter=$!
wait_until 10 test -s "$tmp/out.txt" || fail "enqueue --wait printed no id"
"$J" claim -q by_hand2 --json >"$tmp/claim.json"
"$J" complete --id "$(field id <"$tmp/claim.json")" --token "$(field lease_token <"$tmp/claim.json")" --output "forty-two" >/dev/null
wait "$waiter" || fail "enqueue --wait: exit $?"
[ "$(sed -n 2p "$tmp/out.txt")" = forty-two ] || fail "enqueue --wait printed: $(cat "$tmp/out.txt")"
ok "enqueue --wait prints the job's output"

# jobq worker --keep-output: the command's stdout is the job's output, within its bound.
"$J" worker -q keep --keep-output --max-output-bytes 16 -- cat >"$tmp/worker-keep.out" 2>"$tmp/worker-keep.log" &
pids+=($!); kpid=$!
[ "$("$J" enqueue -q keep -p "hello, world" --wait | sed -n 2p)" = "hello, world" ] || fail "--keep-output: no output"
rc=0; "$J" enqueue -q keep -p "longer than sixteen bytes" --max-attempts 1 --wait >/dev/null 2>"$tmp/err.txt" || rc=$?
[ "$rc" = 3 ] || fail "an output over --max-output-bytes: exit $rc"
grep -q "output over 16 bytes" "$tmp/err.txt" || fail "no reason: $(cat "$tmp/err.txt")"
kill -TERM "$kpid"; wait "$kpid" || fail "the --keep-output worker exited non-zero"
ok "jobq worker --keep-output sends the command's stdout as the output, and fails a job whose output is too large"
kill -TERM "$wpid"
wait "$wpid" || fail "the worker exited non-zero"
grep -q "3 jobs stopped by the service" "$tmp/worker-via_pub.log" || fail "summary: $(tail -n 1 "$tmp/worker-via_pub.log")"

# Without the PUB socket (nothing listens at the worker's address) the heartbeat tells it.
run_worker via_heartbeat 3 "tcp://127.0.0.1:$(free_port)"
long=$("$J" enqueue -q via_heartbeat -p long)
wait_until 10 test -s "$tmp/pid.$long" || fail "the long job did not start"
child=$(cat "$tmp/pid.$long")
"$J" cancel "$long" >/dev/null
wait_until 10 gone "$child" || fail "the cancelled job's command still runs (heartbeat)"
grep -q "job $long: .*cancelled" "$tmp/worker-via_heartbeat.log" || fail "no log line for the cancel (heartbeat)"
status_is "$long" archive_cancelled || fail "job $long is $(status_of "$long")"
kill -TERM "$wpid"
wait "$wpid" || fail "the worker exited non-zero"
ok "jobq worker kills a cancelled job's command at its next heartbeat without the PUB socket"
echo "all running-job CLI checks passed"
