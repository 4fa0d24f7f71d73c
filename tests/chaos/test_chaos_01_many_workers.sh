#!/usr/bin/env bash
# Scenario 1 — many workers, no faults: every job runs exactly once.
# Five `jobq worker` processes (concurrency 8 each) race for one queue; the ledger must show
# each of the N tags exactly once and the database every job archive_completed on attempt 1.
. "$(dirname "$0")/lib.sh"
chaos_init c01
n=$(chaos_scale 2000 20000)
jobqd_start 0 --rescue-interval-ms=100
enqueue_tags 0 q1 t "$n"
t0=$(date +%s%N)
for w in a b c d e; do worker_start "$w" 0 q1 8; done
wait_until 120 all_completed q1 "$n" || fail "only $(count_status q1 archive_completed) of $n completed"
t1=$(date +%s%N)
for w in a b c d e; do worker_stop "$w"; done
verify q1 t "$n" 0 "no faults: none may"
[ "$(sql "SELECT count(*) FROM job_queue WHERE queue = 'q1' AND attempts <> 1")" = 0 ] || fail "a job was claimed more than once"
ran_by=$(ledger_runs t | awk '{print $4}' | sort -u | wc -l)
[ "$ran_by" -ge 2 ] || fail "only $ran_by worker did any work"
echo "figures: $n jobs over 5 workers ($ran_by did work) in $(( (t1 - t0) / 1000000 )) ms"
jobqd_stop 0
ok "scenario 1: $n jobs, each executed exactly once"
