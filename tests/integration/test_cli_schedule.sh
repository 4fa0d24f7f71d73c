#!/usr/bin/env bash
# jobq schedule add|list|rm end to end against a real jobqd: a schedule round trip (human and
# --json output), its jobs arriving on each tick, replacing by name, and the error lines and exit
# codes of bad input (nothing stored).
set -euo pipefail
root=${JOBQ_TEST_ROOT:?run through tests/run.sh}
build=${JOBQ_TEST_BUILD:?}
base=${JOBQ_TEST_DATABASE_URL:?}
maint=${base%/*}/postgres
db=jq_cli_schedule_test
url=${base%/*}/$db
J=$build/bin/jobq
tmp=$(mktemp -d /tmp/jq-cli-schedule.XXXXXX)
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

. "$root/tests/harness/shlib.sh"

PGOPTIONS="-c client_min_messages=warning" psql -qX "$maint" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db TEMPLATE jobq" >/dev/null
export JOBQ_RPC_URL=tcp://127.0.0.1:$(free_port) JOBQ_PUB_URL=tcp://127.0.0.1:$(free_port)
unset JOBQ_AUTH_TOKEN
"$build/bin/jobqd" --database-url="$url" --rpc-url="$JOBQ_RPC_URL" --pub-url="$JOBQ_PUB_URL" \
  --http-addr="127.0.0.1:$(free_port)" --log-format=text >"$tmp/jobqd.log" 2>&1 &
pids+=($!)
wait_until 20 "$J" stats --timeout-ms 300 >/dev/null 2>&1 || fail "jobqd did not answer"

# add: prints the next run; every second here (a sixth, seconds field)
out=$("$J" schedule add ticker --cron '* * * * * *' --queue sched-cli --payload 'from cron' --priority 3 --max-attempts 2)
[[ $out == "schedule ticker: next run 20"*Z ]] || fail "add printed: $out"
"$J" schedule add nightly --cron '30 2 * * *' --tz Europe/Berlin --queue nightly --missed once \
  --idempotency-key 'nightly-{tick}' --json >"$tmp/add.json"
grep -q '"name":"nightly"' "$tmp/add.json" && grep -q '"time_zone":"Europe/Berlin"' "$tmp/add.json" \
  && grep -q '"missed":"once"' "$tmp/add.json" && grep -q '"next_run_at_iso":"20' "$tmp/add.json" \
  || fail "add --json: $(cat "$tmp/add.json")"
# the next run is 02:30 in Berlin, whatever the offset
next_ms=$(sed -n 's/.*"next_run_at":\([0-9]*\).*/\1/p' "$tmp/add.json")
[ "$(psql -qAtX "$url" -c "SELECT to_char(to_timestamp($next_ms / 1000.0) AT TIME ZONE 'Europe/Berlin', 'HH24:MI:SS')")" = 02:30:00 ] \
  || fail "nightly's next run is not 02:30 in Berlin: $next_ms"
ok "schedule add (text and --json; zone, missed policy, key pattern)"

# list: both, by name; JSON carries the payload
"$J" schedule list >"$tmp/list.txt"
grep -q '^NAME' <<<"$(head -n1 "$tmp/list.txt")" || fail "list header: $(cat "$tmp/list.txt")"
[ "$(sed -n 2p "$tmp/list.txt" | awk '{print $1, $2}')" = "nightly 30" ] || fail "list: $(cat "$tmp/list.txt")"
grep -q '^ticker .*sched-cli' "$tmp/list.txt" || fail "list: $(cat "$tmp/list.txt")"
"$J" schedule list --json >"$tmp/list.json"
[ "$(wc -l <"$tmp/list.json")" = 2 ] || fail "list --json: $(cat "$tmp/list.json")"
grep -q '"name":"ticker".*"payload":"from cron".*"priority":3,"max_attempts":2' "$tmp/list.json" \
  || fail "list --json: $(cat "$tmp/list.json")"
ok "schedule list (text and --json)"

# the ticks arrive as jobs of the queue, with the schedule's job fields
pending_at_least() {
  local n
  n=$("$J" stats --queue sched-cli --json | sed -n 's/.*"pending":\([0-9]*\).*/\1/p')
  [ "${n:-0}" -ge "$1" ]
}
wait_until 10 pending_at_least 2 || fail "no jobs from the every-second schedule"
"$J" list --queue sched-cli --json >"$tmp/jobs.json"
grep -q '"priority":3' "$tmp/jobs.json" && grep -q '"max_attempts":2' "$tmp/jobs.json" || fail "jobs: $(head -n2 "$tmp/jobs.json")"
grep -q 'last_run_at_iso' <("$J" schedule list --json | grep ticker) || fail "ticker has no last run"
ok "ticks enqueue jobs"

# replace by name
"$J" schedule add ticker --cron '@hourly' --queue sched-cli >/dev/null
grep -q '^ticker *@hourly' <<<"$("$J" schedule list)" || fail "replace: $("$J" schedule list)"
ok "schedule add replaces by name"

# bad input: exit 1 (the service's INVALID_ARGUMENT) or 2 (usage), one error line, nothing stored
expect_fail() { # STATUS TEXT CMD...
  local want=$1 text=$2; shift 2
  set +e; "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?; set -e
  [ "$rc" = "$want" ] || fail "$*: exit $rc, not $want ($(cat "$tmp/err"))"
  grep -qF -- "$text" "$tmp/err" || fail "$*: stderr '$(cat "$tmp/err")' lacks '$text'"
  [ ! -s "$tmp/out" ] || fail "$*: printed $(cat "$tmp/out")"
}
expect_fail 1 "jobq: schedule add: INVALID_ARGUMENT: schedule.cron: minute: 61 is out of range 0-59" \
  "$J" schedule add bad --cron '61 * * * *' --queue q
expect_fail 1 "INVALID_ARGUMENT: schedule.time_zone: unknown time zone 'Europe/Atlantis'" \
  "$J" schedule add bad --cron '@daily' --tz Europe/Atlantis --queue q
expect_fail 1 "INVALID_ARGUMENT: schedule.job.queue" "$J" schedule add bad --cron '@daily' --queue 'no spaces'
expect_fail 2 "--cron is required" "$J" schedule add bad --queue q
expect_fail 2 "--missed: 'twice' is neither skip nor once" "$J" schedule add bad --cron '@daily' --queue q --missed twice
expect_fail 2 "--max-attempts must be 1..1000" "$J" schedule add bad --cron '@daily' --queue q --max-attempts 0
expect_fail 2 "unknown subcommand 'pause'" "$J" schedule pause ticker
expect_fail 1 "jobq: schedule rm: NOT_FOUND: schedule bad: no such schedule" "$J" schedule rm bad
[ "$("$J" schedule list --json | wc -l)" = 2 ] || fail "bad input stored something"
ok "bad input: error lines and exit codes, nothing stored"

# rm
[ "$("$J" schedule rm ticker)" = "schedule ticker removed" ] || fail "rm"
[ "$("$J" schedule rm nightly --json)" = '{"removed":"nightly"}' ] || fail "rm --json"
[ "$("$J" schedule list)" = "no schedules" ] || fail "list after rm: $("$J" schedule list)"
ok "schedule rm"
