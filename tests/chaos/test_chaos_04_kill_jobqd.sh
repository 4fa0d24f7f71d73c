#!/usr/bin/env bash
# Scenario 4 — `kill -9` of jobqd under load, then a restart on the same ports: the workers and
# a client that keeps enqueuing reconnect on their own (nng redials); nothing is lost.
# Allowed re-runs: jobs in flight at the kill whose report could not get through before their
# 2 s lease ran out (at most the workers' total concurrency). A claim committed just before the
# kill whose reply was lost only delays its job by the lease (it never ran, so it is no re-run).
. "$(dirname "$0")/lib.sh"
chaos_init c04
n=$(chaos_scale 1000 10000)
m=$(chaos_scale 150 1000)
kills=$(chaos_scale 1 4)
flags=(--rescue-interval-ms=100)
jobqd_start 0 "${flags[@]}"
enqueue_tags 0 q4 a "$n"
export HANDLER_SLEEP=0.02
worker_start w1 0 q4 4 --lease 2
worker_start w2 0 q4 4 --lease 2
worker_start w3 0 q4b 4 --lease 2
# The enqueuer retries each job until the service acknowledges it. Its jobs are due 3 s later
# and carry their tag as idempotency key: a retry of an enqueue whose reply was lost in the kill
# finds the first job still unfinished and gets its id back instead of a second job.
cat >"$tmp/enqueuer.sh" <<SH
for i in \$(seq 1 $m); do
  until "$J" enqueue --rpc-url "${jq_rpc[0]}" --timeout-ms 400 --queue q4b --payload b-\$i \
          --idempotency-key b-\$i --delay-ms 3000 >/dev/null 2>>"$tmp/enqueuer.err"; do
    echo retry >>"$tmp/enqueuer.retries"; sleep 0.1
  done
  sleep 0.01
done
SH
chaos_spawn "$tmp/enqueuer.log" sh "$tmp/enqueuer.sh"
enq=$!
for k in $(seq 1 "$kills"); do
  target=$(( n * k / (kills + 1) ))
  wait_until 60 sh -c "[ \$(grep -c ' a-' '$ledger') -ge $target ]" || fail "workers stalled before kill $k"
  inflight=$(sql "SELECT count(*) FROM job_queue WHERE curr_job_status = 'archive_processing'")
  kill9 "${jq_pid[0]}"
  say "kill -9 jobqd ($k/$kills) with $inflight jobs processing; restarting in 0.5 s"
  sleep 0.5
  jobqd_start 0 "${flags[@]}"
done
wait "$enq" || fail "the enqueuer failed"
wait_until 120 all_completed q4 "$n" || fail "q4: only $(count_status q4 archive_completed) of $n completed"
wait_until 60 all_completed q4b "$m" || fail "q4b: only $(count_status q4b archive_completed) of $m completed"
for w in w1 w2 w3; do worker_stop "$w"; done
retries=0
[ -f "$tmp/enqueuer.retries" ] && retries=$(wc -l <"$tmp/enqueuer.retries")
verify q4 a "$n" $((12 * kills)) "in flight at $kills kill -9 of jobqd"
verify q4b b "$m" $((12 * kills)) "in flight at $kills kill -9 of jobqd"
grep -q "lost\|reconnect\|UNAVAILABLE\|DEADLINE" "$tmp"/worker-w*.log || say "(workers noticed nothing of the kill)"
echo "figures: enqueuer retried $retries calls across the kills; every acknowledged and retried job exists once"
jobqd_stop 0
ok "scenario 4: jobqd killed $kills time(s) under load; workers and the enqueuer reconnected by themselves; none lost"
