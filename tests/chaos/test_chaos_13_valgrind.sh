#!/usr/bin/env bash
# Scenario 13 — valgrind memcheck of jobqd through a short run of every method (enqueue,
# claim, heartbeat, complete, retryable and final failures, get, list, stats, retry, cancel) and
# a SIGTERM: no error and no definitely lost block (valgrind's exit status 99 otherwise), and
# jobqd itself exits 0. tests/chaos/valgrind.supp suppresses third-party frames only (see there).
# Skipped for a sanitizer build: valgrind cannot run AddressSanitizer binaries.
. "$(dirname "$0")/lib.sh"
if [ "$slow" != 1 ]; then echo "skipped: valgrind cannot run a sanitizer build"; exit 0; fi
command -v valgrind >/dev/null || fail "valgrind is not installed (deploy/bootstrap.sh installs it)"
chaos_init c13
slow=10 # everything under valgrind is 10-50 times slower
JOBQD_WRAP="valgrind --leak-check=full --error-exitcode=99 --errors-for-leak-kinds=definite --show-leak-kinds=definite
  --suppressions=$root/tests/chaos/valgrind.supp --num-callers=30 --log-file=$tmp/valgrind.log" \
  jobqd_start 0 --rescue-interval-ms=200 --backoff-base-ms=50 --db-pool-size=2
n=60
enqueue_tags 0 q13 v "$n"
# Every 5th job fails once (retryable), every 7th fails for good (exit 3).
handler_v='tag=$(cat); i=${tag#v-}
if [ $((i % 7)) = 0 ]; then echo "final $tag" >&2; exit 3; fi
if [ $((i % 5)) = 0 ] && [ "$JOBQ_ATTEMPT" = 1 ]; then echo "once $tag" >&2; exit 1; fi
printf "%s %s %s %s\n" "$JOBQ_JOB_ID" "$tag" "$JOBQ_ATTEMPT" vg >>"$LEDGER"'
LEDGER=$ledger "$J" worker --rpc-url "${jq_rpc[0]}" --pub-url "${jq_pub[0]}" --queue q13 --concurrency 4 \
  --lease 10 --poll-ms 300 --final-exit-codes 3 -- sh -c "$handler_v" >"$tmp/worker.log" 2>&1 &
w=$!; pids+=($w)
finals=$((n / 7))
settled() { [ "$(sql "SELECT count(*) FROM job_queue WHERE queue = 'q13' AND curr_job_status IN ('archive_completed', 'archive_failed')")" = "$n" ]; }
wait_until 12 settled || fail "jobs not settled under valgrind: $(sql "SELECT curr_job_status, count(*) FROM job_queue GROUP BY 1" | tr '\n' ' ')"
kill -TERM "$w"; wait "$w" || fail "worker exit status $?"
[ "$(count_status q13 archive_failed)" = "$finals" ] || fail "failed: $(count_status q13 archive_failed), expected $finals"
# The remaining methods once each, through the CLI.
R=(--rpc-url "${jq_rpc[0]}" --timeout-ms 20000)
fid=$(sql "SELECT min(id) FROM job_queue WHERE curr_job_status = 'archive_failed'")
"$J" get "${R[@]}" "$fid" >/dev/null
"$J" list "${R[@]}" --queue q13 --state failed >/dev/null
"$J" stats "${R[@]}" >/dev/null
"$J" retry "${R[@]}" "$fid" >/dev/null
"$J" cancel "${R[@]}" "$fid" >/dev/null
"$J" get "${R[@]}" 999999 >/dev/null 2>&1 && fail "get of an unknown id succeeded"
printf '\x0a\xff\xff' | "$J" enqueue "${R[@]}" --queue 'bad queue' --payload x >/dev/null 2>&1 && fail "a bad queue name was accepted"
[ "$(sql "SELECT curr_job_status FROM job_queue WHERE id = $fid")" = archive_cancelled ] || fail "retry + cancel did not happen"
jobqd_stop 0 120
summary=$(grep -E "ERROR SUMMARY|definitely lost|no leaks are possible|All heap blocks" "$tmp/valgrind.log" | sed 's/^==[0-9]*== //' | tr '\n' ';')
echo "figures: valgrind: $summary"
grep -q "ERROR SUMMARY: 0 errors" "$tmp/valgrind.log" || { cat "$tmp/valgrind.log"; fail "valgrind reported errors"; }
grep -qE "definitely lost: 0 bytes|no leaks are possible" "$tmp/valgrind.log" || { cat "$tmp/valgrind.log"; fail "valgrind reported leaks"; }
ok "scenario 13: jobqd under valgrind memcheck through every method: 0 errors, nothing definitely lost"
