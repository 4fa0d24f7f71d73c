#!/usr/bin/env bash
# Scenario 5 — PostgreSQL restarted under load (the cluster shared by the whole run: it is
# started again on the same port and waited for). jobqd answers UNAVAILABLE meanwhile,
# reconnects its pool, the rescuer and its LISTEN session by itself, and every job finishes.
# LISTEN is proven back twice: pg_stat_activity shows its LISTEN session (jobqd-notify) again, and a job
# enqueued afterwards reaches a worker that polls only every 60 s within a few seconds
# (the catch-up rescan runs every 5 s: a wake within 3 s can only be the notification).
# Allowed re-runs: jobs in flight at the restart whose report failed until their lease ran out.
. "$(dirname "$0")/lib.sh"
chaos_init c05
n=$(chaos_scale 1000 10000)
restarts=$(chaos_scale 1 3)
jobqd_start 0 --rescue-interval-ms=100
enqueue_tags 0 q5 r "$n"
export HANDLER_SLEEP=0.02
worker_start w1 0 q5 4 --lease 2
worker_start w2 0 q5 4 --lease 2
listening() { [ "$(sql "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'jobqd-notify' AND datname = '$db'")" -ge 1 ]; }
wait_until 10 listening || fail "jobqd never listened"
for k in $(seq 1 "$restarts"); do
  target=$(( n * k / (restarts + 1) ))
  wait_until 60 sh -c "[ \$(grep -c ' r-' '$ledger') -ge $target ]" || fail "workers stalled before restart $k"
  "$root/tests/harness/pgctl.sh" stop "$pgdir"
  say "PostgreSQL stopped ($k/$restarts); starting it again in 1 s"
  sleep 1
  pg_start_wait
done
wait_until 120 all_completed q5 "$n" || fail "only $(count_status q5 archive_completed) of $n completed"
wait_until 15 listening || fail "jobqd's LISTEN session did not come back"
# A worker that polls once a minute: only an announcement can wake it in time.
worker_start slow 0 q5late 1 --lease 5 --poll-ms 60000
sleep 1 # its first claim (at start) finds nothing; from now on it waits
t0=$(date +%s%N)
enqueue_tags 0 q5late late 1
wait_until 3 all_completed q5late 1 || fail "a job enqueued after the restart was not announced (LISTEN not recovered)"
lat=$(( ($(date +%s%N) - t0) / 1000000 ))
for w in w1 w2 slow; do worker_stop "$w"; done
verify q5 r "$n" 8 "in flight at a database restart (8 = the workers' concurrency)"
grep -q "UNAVAILABLE\|connection\|reconnect" "$tmp/jobqd0.log" || fail "jobqd logged nothing of the restart"
echo "figures: a job enqueued after the restart ran $lat ms later (LISTEN back)"
jobqd_stop 0
ok "scenario 5: PostgreSQL restarted $restarts time(s) under load; all $n jobs finished, LISTEN recovered"
