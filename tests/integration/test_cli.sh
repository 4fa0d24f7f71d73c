#!/usr/bin/env bash
# The jobq CLI end to end against a real jobqd on a private copy of the migrated database:
# every command (human and --json output, error lines and exit codes) and the worker runner
# (completes and fails jobs, final exit codes, per-job timeout, SIGTERM drain); addresses where
# nothing listens are reported at once, and watch and worker carry on when the service comes.
set -euo pipefail
root=${JOBQ_TEST_ROOT:?run through tests/run.sh}
build=${JOBQ_TEST_BUILD:?}
base=${JOBQ_TEST_DATABASE_URL:?}
maint=${base%/*}/postgres
db=jq_cli_test
url=${base%/*}/$db
J=$build/bin/jobq
tmp=$(mktemp -d /tmp/jq-cli-test.XXXXXX)
pids=()

cleanup() {
  local rc=$?
  kill_all "${pids[@]}"
  if [ "$rc" -ne 0 ] && [ -f "$tmp/jobqd.log" ]; then
    echo "--- jobqd log (last 40 lines)"; tail -n 40 "$tmp/jobqd.log"
  fi
  psql -qX "$maint" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

. "${JOBQ_TEST_ROOT:?run through tests/run.sh}/tests/harness/shlib.sh"

# free_port: a loopback port nobody listens on (the kernel's choice when python3 is there).

# json_ok FILE: every line is one JSON object.
json_ok() {
  if command -v python3 >/dev/null; then
    python3 -c 'import json,sys; [json.loads(l) for l in sys.stdin]' <"$1" || fail "not JSON lines: $(head -c 300 "$1")"
  else
    ! grep -qv '^{.*}$' "$1" || fail "not JSON lines: $(head -c 300 "$1")"
  fi
}

# field NAME: a number field of the first JSON line on stdin.
field() { sed -n "s/.*\"$1\":\(-\{0,1\}[0-9]*\).*/\1/p" | head -n1; }

stat_of() { "$J" stats --queue "$1" --json | field "$2"; }

# wait_until SECONDS CMD...: polls CMD every 100 ms.

queue_idle() { [ "$(stat_of "$1" pending)" = 0 ] && [ "$(stat_of "$1" processing)" = 0 ]; }
count_is() { [ "$(stat_of "$1" "$2")" = "$3" ]; }

# ------------------------------------------------------------------ the service
PGOPTIONS="-c client_min_messages=warning" psql -qX "$maint" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db TEMPLATE jobq" >/dev/null
export JOBQ_RPC_URL=tcp://127.0.0.1:$(free_port) JOBQ_PUB_URL=tcp://127.0.0.1:$(free_port)
unset JOBQ_AUTH_TOKEN
http_port=$(free_port)
"$build/bin/jobqd" --database-url="$url" --rpc-url="$JOBQ_RPC_URL" --pub-url="$JOBQ_PUB_URL" \
  --http-addr="127.0.0.1:$http_port" --rescue-interval-ms=100 --backoff-base-ms=100 \
  --log-format=text >"$tmp/jobqd.log" 2>&1 &
pids+=($!)
wait_until 20 "$J" stats --timeout-ms 300 >/dev/null 2>&1 || fail "jobqd did not answer"
ok "jobqd up at $JOBQ_RPC_URL"

# ------------------------------------------------------------------ enqueue
id1=$("$J" enqueue --queue main --payload "hello world")
[[ $id1 =~ ^[0-9]+$ ]] || fail "enqueue printed '$id1'"
printf 'from a file' >"$tmp/payload"
"$J" enqueue --queue main --payload-file "$tmp/payload" --json >"$tmp/e.json"
json_ok "$tmp/e.json"
seq 1 1200 | sed 's/^/line-/' | "$J" enqueue --queue main --stdin-lines --json >"$tmp/lines.json"
json_ok "$tmp/lines.json"
[ "$(grep -c '"id"' "$tmp/lines.json")" = 1200 ] || fail "stdin-lines printed $(wc -l <"$tmp/lines.json") ids"
[ "$(sort -u "$tmp/lines.json" | wc -l)" = 1200 ] || fail "stdin-lines ids not distinct"
[ "$(stat_of main pending)" = 1202 ] || fail "pending after enqueue: $(stat_of main pending)"
ok "enqueue: --payload, --payload-file, --stdin-lines (1200)"

# ------------------------------------------------------------------ worker completes every job once
out=$tmp/out.txt
: >"$out"
OUT=$out "$J" worker --queue main --concurrency 8 --poll-ms 200 -- \
  sh -c 'printf "%s %s %s\n" "$JOBQ_QUEUE" "$JOBQ_ATTEMPT" "$(cat)" >>"$OUT"' 2>"$tmp/w1.log" &
wp=$!; pids+=($wp)
wait_until 40 queue_idle main || fail "worker did not finish main: $(tail -n 5 "$tmp/w1.log")"
kill -TERM $wp; wait $wp || fail "worker exit status $?"
[ "$(wc -l <"$out")" = 1202 ] || fail "output has $(wc -l <"$out") lines, not 1202"
[ -z "$(sort "$out" | uniq -d)" ] || fail "a payload arrived twice"
grep -qx 'main 1 hello world' "$out" || fail "payload 'hello world' missing"
grep -qx 'main 1 from a file' "$out" || fail "file payload missing"
grep -qx 'main 1 line-1200' "$out" || fail "line-1200 missing"
[ "$(stat_of main completed)" = 1202 ] || fail "completed: $(stat_of main completed)"
grep -q "job $id1 completed (attempt 1" "$tmp/w1.log" || fail "no completion log line"
ok "worker: 1202 jobs completed, each payload exactly once"

# ------------------------------------------------------------------ worker: report and claim in one call
# requests_ok METHOD: how many METHOD requests jobqd has answered OK so far.
requests_ok() {
  curl -s "http://127.0.0.1:$http_port/metrics" \
    | sed -n "s/^jobq_rpc_requests_total{method=\"$1\",code=\"OK\"} \([0-9]*\)$/\1/p" | grep . || echo 0
}
for i in $(seq 1 40); do echo "n$i"; done | "$J" enqueue --queue one --stdin-lines >/dev/null
echo bad | "$J" enqueue --queue one --stdin-lines --max-attempts 1 >/dev/null
claims=$(requests_ok Claim)
# One slot and no poll while the test runs: a worker that claimed apart from its reports would
# need a Claim per job.
"$J" worker --queue one --poll-ms 600000 -- sh -c 'test "$(cat)" != bad' 2>"$tmp/w6.log" &
wp=$!; pids+=($wp)
wait_until 20 queue_idle one || fail "worker did not finish queue one: $(tail -n 5 "$tmp/w6.log")"
kill -TERM $wp; wait $wp || fail "worker exit status $?"
[ "$(stat_of one completed)" = 40 ] && [ "$(stat_of one failed)" = 1 ] || fail "queue one: $("$J" stats --queue one)"
used=$(( $(requests_ok Claim) - claims ))
[ "$used" -le 3 ] || fail "the worker made $used Claims for 41 jobs: its reports did not claim"
ok "worker: 41 jobs, each report claimed the next ($used separate Claims)"

# ------------------------------------------------------------------ a failing job, its error
bad=$("$J" enqueue --queue fq --payload bad-input --max-attempts 1)
"$J" worker --queue fq --poll-ms 200 -- sh -c 'echo "kaboom on $(cat)" >&2; exit 1' 2>"$tmp/w2.log" &
wp=$!; pids+=($wp)
wait_until 10 count_is fq failed 1 || fail "job not failed: $(cat "$tmp/w2.log")"
kill -TERM $wp; wait $wp
"$J" list --state archive_failed --queue fq >"$tmp/list.txt"
grep -q "kaboom on bad-input" "$tmp/list.txt" || fail "list --state failed lacks the error: $(cat "$tmp/list.txt")"
"$J" list --state failed --queue fq --json >"$tmp/list.json"; json_ok "$tmp/list.json"
grep -q '"last_error":"kaboom on bad-input"' "$tmp/list.json" || fail "json last_error: $(cat "$tmp/list.json")"
"$J" get "$bad" >"$tmp/get.txt"
grep -q 'kaboom on bad-input' "$tmp/get.txt" || fail "get lacks the failure history"
"$J" get "$bad" --json >"$tmp/get.json"; json_ok "$tmp/get.json"
grep -q '"failures":\[{"attempt":1' "$tmp/get.json" || fail "get --json failures: $(cat "$tmp/get.json")"
ok "failing job: error in list --state archive_failed and get"

# ------------------------------------------------------------------ final exit codes, timeout
fx=$("$J" enqueue --queue fx --payload x)
to=$("$J" enqueue --queue tq --payload y --max-attempts 1)
"$J" worker --queue fx --poll-ms 200 --final-exit-codes 2,3 -- sh -c 'echo nope >&2; exit 3' 2>"$tmp/w3.log" &
wp3=$!; pids+=($wp3)
"$J" worker --queue tq --poll-ms 200 --timeout 1 -- sh -c 'sleep 30' 2>"$tmp/w4.log" &
wp4=$!; pids+=($wp4)
wait_until 10 count_is fx failed 1 || fail "final exit code did not fail the job: $(cat "$tmp/w3.log")"
grep -q '"attempts":1,' <<<"$("$J" get "$fx" --json)" || fail "final failure was retried"
wait_until 10 count_is tq failed 1 || fail "timeout did not fail the job: $(cat "$tmp/w4.log")"
grep -q '"last_error":"timed out after 1s' <<<"$("$J" get "$to" --json)" || fail "timeout error: $("$J" get "$to" --json)"
kill -TERM $wp3 $wp4; wait $wp3; wait $wp4
ok "--final-exit-codes fails for good; --timeout kills and fails"

# ------------------------------------------------------------------ stats, retry, cancel
"$J" stats >"$tmp/stats.txt"
grep -q '^QUEUE .*PENDING .*SCHEDULED .*PROCESSING .*COMPLETED .*FAILED .*CANCELLED .*OLDEST_DUE' "$tmp/stats.txt" \
  || fail "stats header: $(head -n1 "$tmp/stats.txt")"
grep -Eq '^main +0 +0 +0 +1202 +0 +0 ' "$tmp/stats.txt" || fail "stats row: $(cat "$tmp/stats.txt")"
"$J" stats --json >"$tmp/stats.json"; json_ok "$tmp/stats.json"
[ "$(wc -l <"$tmp/stats.json")" -ge 4 ] || fail "stats --json rows"
"$J" retry "$bad" --json >"$tmp/retry.json"; json_ok "$tmp/retry.json"
grep -q '"status":"archive_pending"' "$tmp/retry.json" || fail "retry: $(cat "$tmp/retry.json")"
"$J" retry --all-failed --queue fx --json >"$tmp/retry2.json"; json_ok "$tmp/retry2.json"
grep -q '"retried":1' "$tmp/retry2.json" || fail "retry --all-failed: $(cat "$tmp/retry2.json")"
"$J" cancel "$bad" "$fx" >"$tmp/cancel.txt"
grep -q "job $fx cancelled" "$tmp/cancel.txt" || fail "cancel: $(cat "$tmp/cancel.txt")"
grep -q '"status":"archive_cancelled"' <<<"$("$J" get "$bad" --json)" || fail "cancel did not cancel"
ok "stats table and json; retry by id and --all-failed; cancel"

# ------------------------------------------------------------------ claim, heartbeat, complete, fail by hand
"$J" enqueue --queue manual --payload m1 >/dev/null
"$J" enqueue --queue manual --payload m2 >/dev/null
"$J" claim --queue manual --limit 2 --lease 30 --json >"$tmp/claim.json"; json_ok "$tmp/claim.json"
[ "$(wc -l <"$tmp/claim.json")" = 2 ] || fail "claim: $(cat "$tmp/claim.json")"
c1=$(sed -n 1p "$tmp/claim.json" | field id); t1=$(sed -n 1p "$tmp/claim.json" | field lease_token)
c2=$(sed -n 2p "$tmp/claim.json" | field id); t2=$(sed -n 2p "$tmp/claim.json" | field lease_token)
"$J" heartbeat --id "$c1" --token "$t1" --lease 60 --json >"$tmp/hb.json"; json_ok "$tmp/hb.json"
grep -q "job $c1 completed" <<<"$("$J" complete --id "$c1" --token "$t1")" || fail "complete"
"$J" fail --id "$c2" --token "$t2" --error "by hand" --final --json >"$tmp/fail.json"; json_ok "$tmp/fail.json"
grep -q '"status":"archive_failed"' "$tmp/fail.json" || fail "fail --final: $(cat "$tmp/fail.json")"
set +e
"$J" complete --id "$c2" --token "$t2" 2>"$tmp/err.txt"; rc=$?
set -e
[ $rc -ne 0 ] && grep -q '^jobq: complete: FAILED_PRECONDITION: ' "$tmp/err.txt" || fail "stale complete: rc $rc, $(cat "$tmp/err.txt")"
ok "claim, heartbeat, complete, fail; a stale token answers FAILED_PRECONDITION"

# ------------------------------------------------------------------ SIGTERM drain
for i in 1 2 3; do "$J" enqueue --queue drain --payload "d$i" >/dev/null; done
"$J" worker --queue drain --concurrency 3 --grace 10 --poll-ms 200 -- sh -c 'sleep 1' 2>"$tmp/w5.log" &
wp=$!; pids+=($wp)
wait_until 10 count_is drain processing 3 || fail "drain jobs not claimed"
start=$(date +%s%N)
kill -TERM $wp
wait $wp || fail "worker exited $? after SIGTERM"
ms=$(( ($(date +%s%N) - start) / 1000000 ))
[ $ms -lt 5000 ] || fail "drain took $ms ms"
[ "$(stat_of drain completed)" = 3 ] && [ "$(stat_of drain processing)" = 0 ] \
  || fail "after drain: $("$J" stats --queue drain)"
grep -q 'stopping; waiting up to 10 s for 3 running jobs' "$tmp/w5.log" || fail "drain log: $(cat "$tmp/w5.log")"
ok "SIGTERM: stopped claiming, 3 running jobs finished and completed (${ms} ms), exit 0"

# ------------------------------------------------------------------ watch
"$J" watch --queue wq --json >"$tmp/watch.json" 2>"$tmp/watch.log" &
wp=$!; pids+=($wp)
sleep 0.5 # the subscription connects asynchronously; an announcement before that is lost
wid=$("$J" enqueue --queue wq --payload w)
wait_until 10 grep -q "\"queue\":\"wq\"" "$tmp/watch.json" || fail "watch printed nothing: $(cat "$tmp/watch.log")"
kill -INT $wp; wait $wp || fail "watch exited $? on SIGINT"
json_ok "$tmp/watch.json"
grep -q "\"ids\":\[$wid\]" "$tmp/watch.json" || fail "watch ids: $(cat "$tmp/watch.json")"
ok "watch --json prints the announcement and exits 0 on SIGINT"

# ------------------------------------------------------------------ errors
expect_error() { # expect_error CODE_NAME CMD...
  local code=$1 rc; shift
  set +e; "$@" >/dev/null 2>"$tmp/err.txt"; rc=$?; set -e
  [ $rc -ne 0 ] || fail "$* exited 0"
  [ "$(wc -l <"$tmp/err.txt")" = 1 ] || fail "$*: not one stderr line: $(cat "$tmp/err.txt")"
  grep -q "^jobq: [a-z]*: $code: " "$tmp/err.txt" || fail "$*: $(cat "$tmp/err.txt")"
}
expect_error NOT_FOUND "$J" get 999999
expect_error NOT_FOUND "$J" get 999999 --json
expect_error INVALID_ARGUMENT "$J" enqueue --payload x
expect_error INVALID_ARGUMENT "$J" enqueue --queue 'bad queue!' --payload x
expect_error INVALID_ARGUMENT "$J" list --state nonsense
expect_error INVALID_ARGUMENT "$J" worker --queue q
expect_error UNAVAILABLE "$J" stats --rpc-url "tcp://127.0.0.1:$(free_port)" --timeout-ms 300
for cmd in enqueue claim heartbeat complete fail get list stats retry cancel watch worker; do
  grep -q "^Usage: jobq $cmd" <<<"$("$J" "$cmd" --help)" || fail "$cmd --help"
done
ok "errors: non-zero exit, one line 'jobq: CMD: CODE: message'; --help on every command"

# ------------------------------------------------------------------ nothing listens
# A refused connection is reported within a second or so, not after the 10 s default timeout.
dead=tcp://127.0.0.1:$(free_port)
start=$(date +%s%N)
expect_error UNAVAILABLE "$J" stats --rpc-url "$dead"
ms=$(( ($(date +%s%N) - start) / 1000000 ))
[ $ms -lt 3000 ] || fail "a refused connection took $ms ms to report (timeout 10000 ms)"
grep -q "cannot connect to $dead: connection refused" "$tmp/err.txt" || fail "refused: $(cat "$tmp/err.txt")"
ok "a refused connection fails in $ms ms: $(cut -d: -f4- "$tmp/err.txt")"

# watch and worker started before their service: watch says the PUB address is unreachable,
# the worker's claims fail at once; both keep trying, and work once a jobqd starts there.
late_rpc=tcp://127.0.0.1:$(free_port) late_pub=tcp://127.0.0.1:$(free_port)
late=(--rpc-url "$late_rpc" --pub-url "$late_pub")
"$J" watch "${late[@]}" --queue late >"$tmp/late-watch.out" 2>"$tmp/late-watch.err" &
lw=$!; pids+=($lw)
"$J" worker "${late[@]}" --queue late --poll-ms 200 -- cat >/dev/null 2>"$tmp/late-worker.log" &
lk=$!; pids+=($lk)
wait_until 5 grep -q "^jobq: watch: cannot connect to $late_pub: connection refused; redialing" "$tmp/late-watch.err" \
  || fail "watch did not say the PUB address is unreachable: $(cat "$tmp/late-watch.err")"
wait_until 5 grep -q "claim failed: UNAVAILABLE: .*cannot connect to $late_rpc: connection refused" "$tmp/late-worker.log" \
  || fail "the worker's claims did not say refused: $(cat "$tmp/late-worker.log")"
kill -0 $lw && kill -0 $lk || fail "watch or worker gave up"
"$build/bin/jobqd" --database-url="$url" --rpc-url="$late_rpc" --pub-url="$late_pub" --http-addr="127.0.0.1:$(free_port)" \
  --log-format=text >"$tmp/jobqd-late.log" 2>&1 &
jl=$!; pids+=($jl)
wait_until 10 grep -q "^jobq: watch: connected, listening for queue late" "$tmp/late-watch.err" \
  || fail "watch did not connect: $(cat "$tmp/late-watch.err")"
lid=$("$J" enqueue --rpc-url "$late_rpc" --queue late --payload l) || fail "enqueue on the late service"
wait_until 10 grep -q " $lid\$" "$tmp/late-watch.out" || fail "watch heard nothing: $(cat "$tmp/late-watch.out")"
wait_until 10 count_is late completed 1 || fail "the worker did not complete job $lid: $(tail -n 5 "$tmp/late-worker.log")"
kill -INT $lw; wait $lw || fail "watch exited $? on SIGINT"
kill -TERM $lk; wait $lk || fail "worker exited $? on SIGTERM"
kill -TERM $jl; wait $jl || fail "the late jobqd exited $? on SIGTERM"
ok "watch said the PUB address was unreachable, the worker's claims failed at once; both worked once jobqd came"

# nng 1.5.2 can hang in nng_close when a message arrives as a socket closes; a command that is
# done must exit anyway (libjobq closes on a thread of its own and stops waiting after 2 s). The
# hang is simulated: an nng_close that sleeps, preloaded.
printf '#include <unistd.h>\nint nng_close(unsigned s) { (void)s; sleep(120); return 0; }\n' >"$tmp/hang.c"
cc -shared -fPIC -o "$tmp/hang.so" "$tmp/hang.c" || fail "cannot build the nng_close shim"
LD_PRELOAD=$tmp/hang.so ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0 \
  "$J" watch --queue hangq >/dev/null 2>"$tmp/hang.err" &
hp=$!
sleep 1
t0=$(date +%s)
kill -INT $hp
wait $hp || fail "watch exited $? after a hung close (expected 0)"
took=$(( $(date +%s) - t0 ))
[ "$took" -le 15 ] || fail "watch took $took s to exit after a hung close"
ok "a hung nng_close does not keep a finished command alive (watch exited 0 after $took s)"
echo "test_cli: all passed"
