#!/usr/bin/env bash
# Scenario 2 — `kill -9` of workers mid-job: their jobs come back when the lease (2 s) expires,
# the rescuer (every 100 ms) returns them to the queue, and the surviving workers finish them.
# Re-runs are bounded by the jobs in flight at the kills: each killed worker holds at most its
# concurrency, and its orphaned handlers still finish and write to the ledger, so each such job
# may run twice — no other job may.
. "$(dirname "$0")/lib.sh"
chaos_init c02
n=$(chaos_scale 600 4000)
rounds=$(chaos_scale 2 6)
conc=4
jobqd_start 0 --rescue-interval-ms=100
enqueue_tags 0 q2 t "$n"
export HANDLER_SLEEP=0.05
worker_start keep1 0 q2 "$conc" --lease 2
worker_start keep2 0 q2 "$conc" --lease 2
killed=0
for r in $(seq 1 "$rounds"); do
  worker_start "victim$r" 0 q2 "$conc" --lease 2
  # Kill once it is surely mid-job: it has finished a few and holds leases now.
  wait_until 20 sh -c "[ \$(grep -c ' victim$r\$' '$ledger') -ge 3 ]" || fail "victim$r never ran a job"
  inflight=$(sql "SELECT count(*) FROM job_queue WHERE lease_owner = 'victim$r' AND curr_job_status = 'archive_processing'")
  kill9 "${wpid[victim$r]}"
  killed=$((killed + 1))
  say "killed victim$r with $inflight jobs in flight (seen just before)"
done
wait_until 120 all_completed q2 "$n" || fail "only $(count_status q2 archive_completed) of $n completed"
worker_stop keep1; worker_stop keep2
rescued=$(sql "SELECT count(*) FROM job_queue WHERE queue = 'q2' AND attempts > 1")
[ "$rescued" -ge 1 ] || fail "no job was claimed twice: the kills hit no job in flight, the test proved nothing"
verify q2 t "$n" $((killed * conc)) "in flight at $killed kill -9 of a worker with concurrency $conc"
jobqd_stop 0
ok "scenario 2: $killed workers killed; $rescued jobs came back after their lease; none lost"
