#!/usr/bin/env bash
# Scenario 8 — SIGTERM of a worker with jobs in flight. (a) Within its grace period the running
# jobs finish and are reported completed at once; nothing new is claimed; nothing waits for the
# 30 s lease. (b) With a short grace (1 s) the commands are killed and their jobs failed
# ("worker shutting down") at once: they are claimable again within seconds, not after the
# lease, and another worker then completes them. Exactly once overall (killed commands never
# reach the ledger line).
. "$(dirname "$0")/lib.sh"
chaos_init c08
jobqd_start 0 --rescue-interval-ms=100 --backoff-base-ms=100
# (a) graceful finish
enqueue_tags 0 q8 g 10
HANDLER_START=1 HANDLER_SLEEP=1 worker_start graceful 0 q8 4 --lease 30
wait_until 20 sh -c "[ \$(grep -c '^start .* graceful\$' '$ledger') -ge 4 ]" || fail "4 jobs never started"
t0=$(date +%s%N)
worker_stop graceful
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
[ "$(count_status q8 archive_completed)" = 4 ] || fail "(a) completed: $(count_status q8 archive_completed), expected the 4 in flight"
[ "$(count_status q8 archive_processing)" = 0 ] || fail "(a) jobs left processing after the worker exited"
[ "$(count_status q8 archive_pending)" = 6 ] || fail "(a) the stopping worker claimed more jobs"
[ "$ms" -lt $((5000 * slow)) ] || fail "(a) the worker took $ms ms to stop"
say "(a) SIGTERM with 4 jobs in flight: all 4 completed, worker exited after $ms ms (lease 30 s)"
# (b) short grace: killed and released at once
enqueue_tags 0 q8b s 2
HANDLER_START=1 HANDLER_SLEEP=30 worker_start impatient 0 q8b 2 --lease 30 --grace 1
wait_until 20 sh -c "[ \$(grep -c '^start .* impatient\$' '$ledger') -ge 2 ]" || fail "(b) 2 jobs never started"
t0=$(date +%s%N)
worker_stop impatient
released() { [ "$(sql "SELECT count(*) FROM job_queue WHERE queue = 'q8b' AND curr_job_status = 'archive_pending' AND last_error = 'worker shutting down'")" = 2 ]; }
wait_until 5 released || fail "(b) jobs not released: $(sql "SELECT curr_job_status, last_error FROM job_queue WHERE queue = 'q8b'")"
ms_b=$(( ($(date +%s%N) - t0) / 1000000 ))
say "(b) SIGTERM, grace 1 s: both jobs failed back to pending after $ms_b ms (lease 30 s)"
# Another worker completes both: the remaining jobs of (a) too.
worker_start finisher 0 q8 4
worker_start finisher_b 0 q8b 2
wait_until 30 all_completed q8 10 || fail "(a) remaining jobs not completed"
wait_until 30 all_completed q8b 2 || fail "(b) released jobs not completed"
worker_stop finisher; worker_stop finisher_b
verify q8 g 10 0 "graceful stop: none may"
verify q8b s 2 0 "killed commands never finished: none may"
echo "figures: graceful stop $ms ms with 4 in flight; forced release $ms_b ms (lease 30 s)"
jobqd_stop 0
ok "scenario 8: a stopping worker finishes or releases its jobs at once"
