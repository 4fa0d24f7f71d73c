#!/usr/bin/env bash
# What the programs say to a person, against a real jobqd on a private copy of the migrated
# database: --version of jobq and jobqd, the example worker's --help, "no jobs" for an empty list
# or claim (and nothing with --json), --max-attempts 0 refused, singular and plural, the worker's
# summary counting jobs and attempts apart, and jobqd's request log naming the code.
set -euo pipefail
root=${JOBQ_TEST_ROOT:?run through tests/run.sh}
build=${JOBQ_TEST_BUILD:?}
base=${JOBQ_TEST_DATABASE_URL:?}
maint=${base%/*}/postgres
db=jq_cli_words_test
url=${base%/*}/$db
J=$build/bin/jobq
tmp=$(mktemp -d /tmp/jq-cli-words.XXXXXX)
pids=()

cleanup() {
  local rc=$?
  # SIGTERM: both jobqd and the worker stop cleanly on it (no "Killed" line from the shell).
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "$rc" -ne 0 ] && [ -f "$tmp/jobqd.log" ]; then
    echo "--- jobqd log (last 40 lines)"; tail -n 40 "$tmp/jobqd.log"
  fi
  psql -qX "$maint" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

. "$root/tests/harness/shlib.sh"

field() { sed -n "s/.*\"$1\":\(-\{0,1\}[0-9]*\).*/\1/p" | head -n1; }
stat_of() { "$J" stats --queue "$1" --json | field "$2"; }
count_is() { [ "$(stat_of "$1" "$2")" = "$3" ]; }

# ------------------------------------------------------------------ no service needed
v=$(sed -n 's/^#define JOBQ_VERSION "\(.*\)"/\1/p' "$root/client/jobq.h")
[ -n "$v" ] || fail "no JOBQ_VERSION in client/jobq.h"
[ "$("$build/bin/jobqd" --version)" = "jobqd $v" ] ||
  fail "jobqd --version: $("$build/bin/jobqd" --version 2>&1) (service/jq_config.h's JQ_VERSION)"
[ "$("$J" --version)" = "jobq $v" ] || fail "jobq --version: $("$J" --version 2>&1)"
grep -q '^  --version$' <<<"$("$build/bin/jobqd" --help)" || fail "jobqd --help does not list --version"
ok "jobqd --version and jobq --version print $v"

# The example worker would otherwise dial the service and work on a queue named "--help".
JOBQ_RPC_URL=tcp://127.0.0.1:1 timeout 5 "$build/bin/examples/worker_example" --help >"$tmp/ex.txt" \
  || fail "worker_example --help exited $?"
grep -q '^Usage: worker_example \[QUEUE\]' "$tmp/ex.txt" || fail "worker_example --help: $(cat "$tmp/ex.txt")"
set +e; timeout 5 "$build/bin/examples/worker_example" --queue x >/dev/null 2>"$tmp/ex.err"; rc=$?; set -e
[ $rc = 2 ] && grep -q "unexpected argument '--queue'" "$tmp/ex.err" || fail "worker_example --queue x: rc $rc, $(cat "$tmp/ex.err")"
ok "worker_example --help prints its usage; an option is not a queue name"

# ------------------------------------------------------------------ the service
PGOPTIONS="-c client_min_messages=warning" psql -qX "$maint" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" \
  -c "CREATE DATABASE $db TEMPLATE jobq" >/dev/null
export JOBQ_RPC_URL=tcp://127.0.0.1:$(free_port) JOBQ_PUB_URL=tcp://127.0.0.1:$(free_port)
unset JOBQ_AUTH_TOKEN
"$build/bin/jobqd" --database-url="$url" --rpc-url="$JOBQ_RPC_URL" --pub-url="$JOBQ_PUB_URL" \
  --http-addr="127.0.0.1:$(free_port)" --backoff-base-ms=100 --log-format=text >"$tmp/jobqd.log" 2>&1 &
pids+=($!)
wait_until 20 "$J" stats --timeout-ms 300 >/dev/null 2>&1 || fail "jobqd did not answer"
# jobqd may answer its first request a moment before it writes the ready line.
wait_until 5 grep -q 'jobqd ready: .*, database: 4 of 4 connections up$' "$tmp/jobqd.log" \
  || fail "ready line: $(grep ready "$tmp/jobqd.log")"
ok "jobqd up at $JOBQ_RPC_URL; its ready line counts 4 of 4 connections up"

# ------------------------------------------------------------------ empty results
[ "$("$J" list --queue nothing-here)" = "no jobs" ] || fail "empty list: '$("$J" list --queue nothing-here)'"
[ "$("$J" claim --queue nothing-here)" = "no jobs" ] || fail "empty claim: '$("$J" claim --queue nothing-here)'"
[ -z "$("$J" list --queue nothing-here --json)" ] || fail "empty list --json printed something"
[ -z "$("$J" claim --queue nothing-here --json)" ] || fail "empty claim --json printed something"
ok "an empty list or claim says 'no jobs'; with --json it prints no line"

# ------------------------------------------------------------------ --max-attempts 0
set +e; "$J" enqueue --queue ma --payload x --max-attempts 0 >"$tmp/ma.out" 2>"$tmp/ma.err"; rc=$?; set -e
[ $rc = 2 ] || fail "--max-attempts 0 exited $rc"
grep -q '^jobq: enqueue: .*--max-attempts must be 1..1000 (leave it out for the service.s default, 25)' "$tmp/ma.err" \
  || fail "--max-attempts 0: $(cat "$tmp/ma.err")"
[ ! -s "$tmp/ma.out" ] && [ -z "$("$J" list --queue ma --json)" ] || fail "--max-attempts 0 enqueued a job"
ok "--max-attempts 0 is refused (exit 2), nothing enqueued"

# ------------------------------------------------------------------ singular and plural
one=$("$J" enqueue --queue words --payload x)
grep -q '^payload: .*x (1 byte)$' <<<"$("$J" get "$one")" || fail "get: $("$J" get "$one" | grep payload)"
ok "a one-byte payload is '(1 byte)'"

# ------------------------------------------------------------------ the worker's summary
"$J" enqueue --queue sum --payload good-1 >/dev/null
"$J" enqueue --queue sum --payload good-2 >/dev/null
"$J" enqueue --queue sum --payload bad --max-attempts 2 >/dev/null
"$J" worker --queue sum --poll-ms 100 -- sh -c 'case $(cat) in bad) exit 1;; esac' 2>"$tmp/w.log" &
wp=$!; pids+=($wp)
wait_until 20 count_is sum completed 2 || fail "good jobs not completed: $(cat "$tmp/w.log")"
wait_until 20 count_is sum failed 1 || fail "bad job not failed for good: $(cat "$tmp/w.log")"
kill -TERM $wp; wait $wp || fail "worker exited $? on SIGTERM"
# The bad job ran twice: 3 jobs, of which 2 completed and 1 failed for good, after 2 failed attempts.
grep -q 'stopped: 2 jobs completed, 2 attempts failed (1 job failed for good), 0 results dropped$' "$tmp/w.log" \
  || fail "worker summary: $(tail -n 1 "$tmp/w.log")"
ok "worker summary: 2 jobs completed, 2 attempts failed (1 job failed for good), 0 results dropped"

# ------------------------------------------------------------------ jobqd's log names codes
set +e; "$J" get 999999 >/dev/null 2>"$tmp/nf.err"; set -e
grep -q '^jobq: get: NOT_FOUND: ' "$tmp/nf.err" || fail "get 999999: $(cat "$tmp/nf.err")"
wait_until 5 grep -q '/jobq.v1.JobQueue/Get code=NOT_FOUND ' "$tmp/jobqd.log" \
  || fail "no code=NOT_FOUND in jobqd's log: $(grep JobQueue/Get "$tmp/jobqd.log" | tail -n 2)"
ok "jobqd's log says code=NOT_FOUND, as the CLI does"
