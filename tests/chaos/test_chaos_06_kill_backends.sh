#!/usr/bin/env bash
# Scenario 6 — the service's database backends killed (pg_terminate_backend of every connection
# whose application_name is jobqd*) twice a second for 10 s (20 s in soak) under steady load:
# throughput never stays at zero for more than ~2 s, recovers fully afterwards, and no job is
# lost. Completions are sampled from the database every 250 ms.
# Allowed re-runs: a job whose claim or report died with its backend; bounded by the kills
# times the jobs one connection can have in flight (generously: 2 workers x 8 per kill round).
. "$(dirname "$0")/lib.sh"
chaos_init c06
secs=$(chaos_scale 10 20)
n=$(chaos_scale 2200 6000)
max_stall_ms=$((2500 * slow))
jobqd_start 0 --rescue-interval-ms=100
enqueue_tags 0 q6 k "$n"
export HANDLER_SLEEP=0.1
worker_start w1 0 q6 8 --lease 2
worker_start w2 0 q6 8 --lease 2
done_now() { count_status q6 archive_completed; }
wait_until 20 sh -c "[ \$(psql -qAtX '$url' -c \"SELECT count(*) FROM job_queue WHERE curr_job_status = 'archive_completed'\") -ge 50 ]" || fail "no progress at start"
c0=$(done_now); sleep 2; c1=$(done_now)
rate_before=$(( (c1 - c0) / 2 ))
cat >"$tmp/killer.sh" <<SH
i=0
while [ \$i -lt $((secs * 2)) ]; do
  psql -qAtX "$url" -c "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name LIKE 'jobqd%' AND datname = '$db'" >>"$tmp/killed.txt" 2>&1
  sleep 0.5; i=\$((i + 1))
done
SH
chaos_spawn "$tmp/killer.log" sh "$tmp/killer.sh"
killer=$!
last=$(done_now); last_change=$(date +%s%N); stall=0; t_start=$(date +%s%N)
while kill -0 "$killer" 2>/dev/null; do
  sleep 0.25
  now=$(date +%s%N); cur=$(done_now 2>/dev/null || echo "$last")
  if [ "$cur" != "$last" ] || [ "$cur" -ge "$n" ]; then
    last=$cur; last_change=$now
  else
    s=$(( (now - last_change) / 1000000 )); [ $s -gt $stall ] && stall=$s
  fi
done
wait "$killer" 2>/dev/null || true
c2=$(done_now); t_end=$(date +%s%N)
rate_during=$(( (c2 - c1) * 1000 / ( (t_end - t_start) / 1000000 ) ))
sleep 2; c3=$(done_now)
rate_after=$(( (c3 - c2) / 2 ))
killed=$(awk '{s += $1} END {print s + 0}' "$tmp/killed.txt")
wait_until 120 all_completed q6 "$n" || fail "only $(count_status q6 archive_completed) of $n completed"
for w in w1 w2; do worker_stop "$w"; done
echo "figures: $killed backends terminated in ${secs} s; completions/s before $rate_before, during $rate_during, after $rate_after; longest stretch without a completion ${stall} ms"
[ "$killed" -ge "$secs" ] || fail "only $killed backends were terminated: the fault did not happen"
[ "$stall" -le "$max_stall_ms" ] || fail "throughput stayed at zero for $stall ms (limit $max_stall_ms)"
[ "$c3" -ge "$n" ] || [ $((rate_after * 2)) -ge "$rate_before" ] || fail "throughput did not recover: $rate_after/s after vs $rate_before/s before"
verify q6 k "$n" $((secs * 2 * 16)) "claims or reports cut by a killed backend"
jobqd_stop 0
ok "scenario 6: backends killed twice a second for $secs s; longest stall $stall ms; all $n jobs done"
