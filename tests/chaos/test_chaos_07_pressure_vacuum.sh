#!/usr/bin/env bash
# Scenario 7 — connection pressure and a pinned vacuum horizon, for 20 s (60 s in soak):
# pgbench holds all but a handful of max_connections (sleeping in pg_sleep) while one long
# transaction holding an xid keeps vacuum from removing any dead row version. Midway the
# service's backends are killed, so it must reconnect into the few slots left. Jobs keep
# flowing (degraded), all finish, and after the pressure ends the dead tuples the pin kept are
# removable. Dead tuples (n_dead_tup of job_queue) are reported before, at the end of the pin
# (a VACUUM then can remove nothing) and after a VACUUM once the pin is gone.
# Allowed re-runs: a claim or report cut by the backend kill, at most the workers' concurrency.
. "$(dirname "$0")/lib.sh"
chaos_init c07
secs=$(chaos_scale 12 60)
n=$(chaos_scale 700 3000)
jobqd_start 0 --rescue-interval-ms=100
# Backends flush their statistics at most once a second: wait that long before reading.
dead() { sleep 1.1; sql "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'job_queue'"; }
# Dead tuples come from finished work: an update of every row per state change.
dead_before=$(dead)
used=$(psql -qAtX "$maint" -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'")
max=$(psql -qAtX "$maint" -c "SELECT current_setting('max_connections')::int - current_setting('superuser_reserved_connections')::int")
hold=$((max - used - 8))
# The pin: a transaction with an xid, open until the test ends it (after the pressure).
PGAPPNAME=jq-pin chaos_spawn "$tmp/pin.log" psql -qAtX "$url" -c "SELECT txid_current(), pg_sleep(600)"
pin=$!
echo 'SELECT pg_sleep(0.5);' >"$tmp/sleep.sql"
chaos_spawn "$tmp/pgbench.log" /usr/lib/postgresql/*/bin/pgbench -n -c "$hold" -j 2 -T "$secs" -f "$tmp/sleep.sql" "$url"
bench=$!
held() { [ "$(psql -qAtX "$maint" -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgbench'")" -ge "$hold" ]; }
wait_until 20 held || fail "pgbench did not get its $hold connections: $(tail -n 3 "$tmp/pgbench.log")"
say "pgbench holds $hold of $max connections; vacuum pinned for $secs s"
enqueue_tags 0 q7 p "$n"
# Slow enough handlers (about 60 jobs/s) that work is still flowing when the pressure ends.
export HANDLER_SLEEP=$(chaos_scale 0.1 0.3)
worker_start w1 0 q7 3 --lease 2
worker_start w2 0 q7 3 --lease 2
sleep $((secs / 3))
mid=$(count_status q7 archive_completed)
killed=$(psql -qAtX "$url" -c "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name LIKE 'jobqd%' AND datname = '$db'")
say "$mid jobs completed under pressure; killed $killed jobqd backends: it must reconnect into the slots left"
wait "$bench" || fail "pgbench failed: $(tail -n 3 "$tmp/pgbench.log")"
during=$(count_status q7 archive_completed)
dead_end=$(dead)
sql "VACUUM job_queue"
dead_pinned=$(dead)
[ "$(sql "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'jq-pin'")" = 1 ] \
  || fail "the pinning transaction was gone before the end"
wait "$pin" 2>/dev/null || true
wait_until "$(chaos_scale 60 240)" all_completed q7 "$n" || fail "only $(count_status q7 archive_completed) of $n completed after the pressure"
for w in w1 w2; do worker_stop "$w"; done
sql "VACUUM job_queue"
dead_after=$(dead)
echo "figures: $hold connections held, pinned $secs s: $during of $n jobs completed under pressure ($mid before the backend kill); n_dead_tup before $dead_before, at the end of the pin $dead_end (after a VACUUM still $dead_pinned), after a VACUUM with the pin gone $dead_after"
[ "$during" -gt "$mid" ] || fail "no job completed after the backend kill while under pressure ($mid)"
[ "$dead_pinned" -gt 0 ] || fail "the pin kept no dead tuples: the scenario did not pin vacuum"
[ "$dead_after" -lt "$dead_pinned" ] || fail "dead tuples not removed once the pin was gone ($dead_pinned -> $dead_after)"
verify q7 p "$n" 6 "a claim or report cut by the backend kill"
jobqd_stop 0
ok "scenario 7: degraded under connection pressure and a pinned vacuum, recovered; dead tuples $dead_pinned -> $dead_after"
