#!/usr/bin/env bash
# Scenario 3 — a worker frozen (SIGSTOP) past its lease, then thawed (SIGCONT): another worker
# finishes the job; the thawed worker's report is refused (FAILED_PRECONDITION), it drops the
# result, and the job's row is exactly as the second worker left it. (The same at the API level,
# with libjobq, is test_chaos_api's stale_complete_after_rescue_is_refused_and_changes_nothing.)
. "$(dirname "$0")/lib.sh"
chaos_init c03
jobqd_start 0 --rescue-interval-ms=100
enqueue_tags 0 q3 f 1
id=$(sql "SELECT id FROM job_queue WHERE queue = 'q3'")
HANDLER_START=1 HANDLER_SLEEP=0.5 worker_start frozen 0 q3 1 --lease 2
wait_until 20 grep -q "^start $id f-1 1 frozen" "$ledger" || fail "the job never started"
kill -STOP "${wpid[frozen]}"
say "worker 'frozen' stopped with job $id in flight (lease 2 s)"
# Its lease runs out; the rescuer returns the job; a second worker claims and completes it.
worker_start thawed_later_wins 0 q3 1 --lease 30
done_by_other() { [ "$(sql "SELECT curr_job_status || ' ' || lease_owner || ' ' || attempts FROM job_queue WHERE id = $id")" = "archive_completed thawed_later_wins 2" ]; }
wait_until 20 done_by_other || fail "the second worker did not complete job $id: $(sql "SELECT curr_job_status, lease_owner, attempts FROM job_queue WHERE id = $id")"
worker_stop thawed_later_wins
row="SELECT curr_job_status, attempts, lease_owner, lease_token, updated_at, finished_at, last_error FROM job_queue WHERE id = $id"
before=$(sql "$row")
kill -CONT "${wpid[frozen]}"
say "worker 'frozen' thawed"
wait_until 20 grep -q "job $id: lease lost (FAILED_PRECONDITION" "$tmp/worker-frozen.log" \
  || fail "the thawed worker was not refused: $(cat "$tmp/worker-frozen.log")"
worker_stop frozen
grep -q "stopped: 0 jobs completed, 0 attempts failed (0 jobs failed for good), 1 result dropped" "$tmp/worker-frozen.log" || fail "thawed worker summary: $(tail -n 1 "$tmp/worker-frozen.log")"
after=$(sql "$row")
[ "$before" = "$after" ] || fail "the refused report changed the job: '$before' -> '$after'"
# The history holds the rescue only (attempt 1, "lease expired"), nothing from the late report.
hist=$(sql "SELECT string_agg(attempt || ':' || error, ',') FROM job_failure WHERE job_id = $id")
[ "$hist" = "1:lease expired" ] || fail "failure history: '$hist', expected only the rescue"
verify q3 f 1 1 "the frozen worker's own handler finished while it was stopped"
jobqd_stop 0
ok "scenario 3: frozen worker's report refused with FAILED_PRECONDITION; job row unchanged ($after)"
