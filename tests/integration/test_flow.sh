#!/usr/bin/env bash
# Flow control per queue (issue 17 parts 1-3) against the real database and two jobqd replicas,
# with `jobq worker`s on both: a concurrency limit of N never saw N+1 jobs processing; a paused
# queue ran nothing and was not announced, and ran everything after resume, waking a waiting
# Claim; a rate limit admitted at most N claims per window; bad settings are refused with
# INVALID_ARGUMENT and change nothing; Stats and /metrics show the settings.
# Uses the ledger and replica helpers of the fault scenarios (tests/chaos/lib.sh).
. "$(dirname "$0")/../chaos/lib.sh"
chaos_init flow

# The ledger of slots, kept by a trigger in this private database: every move of a job into
# archive_processing (+1) and out of it (-1), stamped with the time of the row's change
# (clock_timestamp: for a claim, after the gate's lock) and the transaction's now() (the clock
# the rate limit's windows are on).
psql -qX "$url" >/dev/null <<'SQL'
CREATE TABLE flow_events (job_id bigint, queue text, delta integer, at timestamptz, txn_now timestamptz);
CREATE FUNCTION flow_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO flow_events VALUES (NEW.id, NEW.queue,
        CASE WHEN NEW.curr_job_status = 'archive_processing' THEN 1 ELSE -1 END, clock_timestamp(), now());
    RETURN NULL;
END $$;
CREATE TRIGGER flow_event AFTER UPDATE ON job_queue FOR EACH ROW
    WHEN ((NEW.curr_job_status = 'archive_processing') <> (OLD.curr_job_status = 'archive_processing'))
    EXECUTE FUNCTION flow_event();
-- flow_sample(queue): the most jobs of queue seen processing at once, sampled about every
-- millisecond until none of its jobs is pending or processing (at most 90 s). Each statement of
-- the loop reads a fresh snapshot (READ COMMITTED): every sample is a committed state.
CREATE FUNCTION flow_sample(q text) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    m integer := 0;
    c integer;
    left_ integer;
    stop timestamptz := clock_timestamp() + interval '90 seconds';
BEGIN
    LOOP
        SELECT count(*) FILTER (WHERE curr_job_status = 'archive_processing'),
               count(*) FILTER (WHERE curr_job_status IN ('archive_pending', 'archive_processing'))
          INTO c, left_ FROM job_queue WHERE queue = q;
        m := greatest(m, c);
        EXIT WHEN left_ = 0 OR clock_timestamp() > stop;
        PERFORM pg_sleep(0.001);
    END LOOP;
    RETURN m;
END $$;
SQL
claims_of() { sql "SELECT count(*) FROM flow_events WHERE queue = '$1' AND delta = 1"; }
processing_is() { [ "$(count_status "$1" archive_processing)" = "$2" ]; }
started_at_least() { [ "$(grep -c "^start .* $1-" "$ledger")" -ge "$2" ]; }

jobqd_start 0 --rescue-interval-ms=200
jobqd_start 1 --rescue-interval-ms=200
export JOBQ_RPC_URL=${jq_rpc[0]}
settings() { sql "SELECT paused, concurrency_limit, rate_limit, rate_period_ms FROM job_queue_settings WHERE queue = '$1'"; }

# ------------------------------------------------------------------ concurrency limit
# 8 workers of 2 slots, on both replicas. A worker reports a job and claims its next one in one
# statement (Complete + claim), so the slots stay with the workers that first got them, while the
# others' Claims look again every 250 ms: claims of both replicas meet at the gate all along.
limit=6 n=150
"$J" queue set fc --concurrency "$limit" >/dev/null || fail "queue set --concurrency"
enqueue_tags 0 fc fc "$n"
# Two looks at how many run at once: a sampler of committed states, from before the workers start
# until the last job completed, and the running sum of the ledger's +1/-1 in the order the rows
# changed (a claim's row changes after the gate counted, under the queue's lock).
psql -qAtX "$url" -c "SELECT flow_sample('fc')" >"$tmp/fc_sampled" 2>&1 &
sampler=$!
for i in 0 1 2 3 4 5 6 7; do HANDLER_SLEEP=0.03 worker_start "fc-w$i" $((i % 2)) fc 2; done
wait_until 60 all_completed fc "$n" || fail "concurrency: only $(count_status fc archive_completed) of $n completed"
for i in 0 1 2 3 4 5 6 7; do worker_stop "fc-w$i"; done
wait "$sampler" || fail "the sampler failed: $(cat "$tmp/fc_sampled")"
sampled=$(cat "$tmp/fc_sampled")
verify fc fc "$n" 0 "no faults: none may"
most=$(sql "SELECT max(s) FROM (SELECT sum(delta) OVER (ORDER BY at, delta) AS s FROM flow_events WHERE queue = 'fc') r")
per_replica=$(ledger_runs fc | awk '{print $4}' | sed 's/.*-w//' | awk '{c[$1 % 2]++} END {print c[0] + 0, c[1] + 0}')
# Which replica's workers hold the slots depends on who claimed first (the others' Claims wait):
# a figure, not a verdict. The next part checks the limit across replicas head-on.
echo "figures: concurrency limit $limit, 8 workers x 2 slots on 2 replicas: at most $most processing at once by the ledger, $sampled sampled; jobs by replica: $per_replica"
[ "$most" -le "$limit" ] || fail "concurrency: the ledger shows $most jobs processing at once, the limit is $limit"
[ "$sampled" -le "$limit" ] || fail "concurrency: $sampled jobs seen processing at once, the limit is $limit"
[ "$most" = "$limit" ] || fail "concurrency: never $limit at once ($most): the test did not reach the limit"
ok "a concurrency limit of $limit held across 2 replicas and 16 worker slots; every job ran once"

# A Claim waiting on a full limited queue gets the next job when the running one completes on the
# other replica: no announcement says a slot is free, so it looks again on its own. The
# listener's safety-net scan (every 5 s) would wake it too; a round with a scan on replica 0
# between the completion and the answer proves nothing and is played again.
"$J" queue set fw --concurrency 1 >/dev/null
enqueue_tags 0 fw fw 6
scans0() { curl -s "http://${jq_http[0]}/metrics" | awk '$1 == "jobq_notify_scans_total" { print $2 }'; }
waiting0() { grep -q '^jobq_longpoll_waiters 1$' <<<"$(curl -s "http://${jq_http[0]}/metrics")"; }
lease_of() { sed -n 's/.*"id":\([0-9]*\).*"lease_token":\([0-9]*\).*/--id \1 --token \2/p' "$1"; }
"$J" claim --rpc-url "${jq_rpc[1]}" --queue fw --lease 60 --json >"$tmp/fw.json" || fail "first claim of fw"
conclusive=0
for round in 1 2 3 4 5; do
  running=$(lease_of "$tmp/fw.json")
  [ -n "$running" ] || fail "fw round $round: no running job: $(cat "$tmp/fw.json")"
  "$J" claim --rpc-url "${jq_rpc[0]}" --queue fw --lease 60 --wait-ms 4000 --json >"$tmp/fw_wait.json" 2>&1 &
  waiter=$!
  wait_until 3 waiting0 || fail "fw round $round: the Claim on replica 0 is not waiting"
  processing_is fw 1 || fail "fw: the limit of 1 let a second job run"
  before=$(scans0)
  "$J" complete --rpc-url "${jq_rpc[1]}" $running >/dev/null || fail "fw round $round: complete"
  wait "$waiter" || fail "fw round $round: the waiting Claim failed: $(cat "$tmp/fw_wait.json")"
  sleep 0.3 # a scan that woke it has counted itself by now
  grep -q '"id"' "$tmp/fw_wait.json" && [ "$(scans0)" = "$before" ] && { conclusive=1; break; }
  grep -q '"id"' "$tmp/fw_wait.json" || fail "fw round $round: the waiting Claim got no job after the slot freed"
  mv "$tmp/fw_wait.json" "$tmp/fw.json"
done
[ "$conclusive" = 1 ] || fail "fw: a safety-net scan came in every round"
ok "a Claim waiting on a full limited queue got the job when the other replica completed one (round $round)"

# ------------------------------------------------------------------ pause, resume
"$J" pause fp >/dev/null || fail "pause of a queue with no jobs"
[ "$(settings fp)" = "t|||" ] || fail "pause: settings $(settings fp)"
"$J" watch --pub-url "${jq_pub[1]}" --queue fp >"$tmp/watch_fp.txt" 2>"$tmp/watch_fp.err" &
watcher=$!
pids+=($watcher)
sleep 0.5 # the subscription is in place before anything could be announced
enqueue_tags 1 fp fp 20
"$J" claim --rpc-url "${jq_rpc[1]}" --queue fp --wait-ms 20000 --json >"$tmp/fp_claim.json" 2>&1 &
pclaim=$!
for i in 0 1; do worker_start "fp-w$i" "$i" fp 4; done
# Workers poll every 500 ms and listen; over 2 s of that, nothing of the paused queue may move.
sleep 2
[ "$(count_status fp archive_pending)" = 20 ] || fail "paused: $(sql "SELECT curr_job_status, count(*) FROM job_queue WHERE queue = 'fp' GROUP BY 1")"
[ -z "$(ledger_runs fp)" ] || fail "paused: the ledger shows runs"
[ "$(claims_of fp)" = 0 ] || fail "paused: a job was claimed"
[ ! -s "$tmp/watch_fp.txt" ] || fail "paused: announced: $(cat "$tmp/watch_fp.txt")"
kill -0 "$pclaim" 2>/dev/null || fail "paused: the waiting Claim returned: $(cat "$tmp/fp_claim.json")"
grep -q '"paused":true' <<<"$("$J" stats --queue fp --json)" || fail "stats does not show fp paused"
"$J" resume fp >/dev/null || fail "resume"
wait "$pclaim" || fail "the waiting Claim failed after resume"
grep -q '"id"' "$tmp/fp_claim.json" || fail "the waiting Claim got nothing after resume: $(cat "$tmp/fp_claim.json")"
sed -n 's/.*"id":\([0-9]*\).*"lease_token":\([0-9]*\).*/\1 \2/p' "$tmp/fp_claim.json" | while read -r id tok; do
  "$J" complete --rpc-url "${jq_rpc[1]}" --id "$id" --token "$tok" >/dev/null
done
wait_until 30 all_completed fp 20 || fail "after resume: only $(count_status fp archive_completed) of 20 completed"
wait_until 5 test -s "$tmp/watch_fp.txt" || fail "resume announced nothing"
for w in fp-w0 fp-w1; do worker_stop "$w"; done
# Paused while jobs run: they finish, nothing new starts.
HANDLER_START=1 HANDLER_SLEEP=1 worker_start fp-w2 0 fp 2
enqueue_tags 0 fp fq 10
wait_until 10 started_at_least fq 1 || fail "no job of the second batch started"
"$J" pause fp >/dev/null
paused_at=$(sql "SELECT updated_at FROM job_queue_settings WHERE queue = 'fp'")
wait_until 10 processing_is fp 0 || fail "running jobs did not finish under pause"
sleep 1.5
# A claim whose transaction began before the pause committed may still take jobs; one that
# began after it may not.
late=$(sql "SELECT count(*) FROM flow_events WHERE queue = 'fp' AND delta = 1 AND txn_now > '$paused_at'")
[ "$late" = 0 ] || fail "paused: $late jobs claimed after the pause"
running=$(ledger_runs fq | wc -l) left=$(count_status fp archive_pending)
[ "$running" -ge 1 ] && [ $((running + left)) = 10 ] || fail "paused mid-run: $running ran, $left pending"
"$J" resume fp >/dev/null
wait_until 30 all_completed fp 30 || fail "after the second resume: $(count_status fp archive_completed) of 30 completed"
worker_stop fp-w2
echo "figures: pause mid-run: $running jobs finished running, $left waited for resume"
ok "a paused queue ran and announced nothing, its waiting Claim got a job at resume, running jobs finished"

# ------------------------------------------------------------------ rate limit
rate=5 n=24
"$J" queue set fr --rate "$rate/1s" >/dev/null || fail "queue set --rate"
enqueue_tags 0 fr fr "$n"
for i in 0 1 2 3; do worker_start "fr-w$i" $((i % 2)) fr 4; done
wait_until 60 all_completed fr "$n" || fail "rate: only $(count_status fr archive_completed) of $n completed"
for i in 0 1 2 3; do worker_stop "fr-w$i"; done
windows=$(sql "SELECT string_agg(c::text, ' ' ORDER BY w) FROM (SELECT floor(extract(epoch FROM txn_now)) AS w, count(*) AS c
                 FROM flow_events WHERE queue = 'fr' AND delta = 1 GROUP BY 1) s")
echo "figures: rate limit $rate/1s, 16 worker slots on 2 replicas: claims per second window: $windows"
for c in $windows; do [ "$c" -le "$rate" ] || fail "rate: $c claims in one window, the limit is $rate ($windows)"; done
[[ " $windows " == *" $rate "* ]] || fail "rate: no window reached the limit ($windows)"
verify fr fr "$n" 0 "no faults: none may"
ok "a rate limit of $rate per second held across 2 replicas"

# ------------------------------------------------------------------ bad input changes nothing
"$J" queue set fb --concurrency 2 --rate 10/1s >/dev/null
before=$(settings fb)
bad() { # EXPECTED_MESSAGE ARGS...: the command fails with INVALID_ARGUMENT and that message
  local want=$1 out rc=0; shift
  out=$("$J" "$@" 2>&1) || rc=$?
  [ "$rc" != 0 ] || fail "'$*' succeeded"
  case $out in *INVALID_ARGUMENT*"$want"*) ;; *) fail "'$*': $out" ;; esac
  [ "$(settings fb)" = "$before" ] || fail "'$*' changed fb: $(settings fb)"
}
bad "concurrency_limit: 0 is out of range" queue set fb --concurrency 0
bad "concurrency_limit: -3 is out of range" queue set fb --concurrency -3
bad "rate_limit: 0 is out of range" queue set fb --rate 0/s
bad "rate_period_ms: 0 is out of range" queue set fb --rate 5/0s
bad "rate_period_ms: 172800000 is out of range" queue set fb --rate 5/2d
bad "set it or clear it, not both" queue set fb --concurrency 4 --no-concurrency
bad "nothing to change" queue set fb
bad "only letters" queue set 'f b' --concurrency 1
bad "needs a unit" queue set fb --rate 5/10
bad "only letters" pause 'fb;'
bad "longer than 64" resume "$(printf 'q%.0s' $(seq 70))"
[ "$(sql "SELECT count(*) FROM job_queue_settings WHERE queue NOT IN ('fc', 'fw', 'fp', 'fr', 'fb')")" = 0 ] \
  || fail "bad input created settings rows"
ok "bad settings answer INVALID_ARGUMENT with the reason and change nothing"

# ------------------------------------------------------------------ Stats, /metrics, clearing
grep -q '"paused":false,"concurrency_limit":2,"rate_limit":10,"rate_period_ms":1000' <<<"$("$J" stats --queue fb --json)" \
  || fail "stats fb: $("$J" stats --queue fb --json)"
"$J" pause fe >/dev/null
"$J" stats --queue fe >"$tmp/stats_fe.txt"
grep -Eq '^fe +0 +0 +0 +0 +0 +0 +- +paused$' "$tmp/stats_fe.txt" || fail "stats of a paused queue without jobs: $(cat "$tmp/stats_fe.txt")"
metrics() { curl -s "http://${jq_http[1]}/metrics"; }
has_metric() { grep -qx "$1" <<<"$(metrics)"; }
wait_until 15 has_metric 'jobq_queue_paused{queue="fe"} 1' || fail "/metrics: $(metrics | grep jobq_queue_)"
has_metric 'jobq_queue_concurrency_limit{queue="fb"} 2' || fail "/metrics: $(metrics | grep jobq_queue_)"
has_metric 'jobq_queue_rate_limit{queue="fb"} 10' || fail "/metrics: $(metrics | grep jobq_queue_)"
has_metric 'jobq_queue_rate_period_seconds{queue="fb"} 1.000' || fail "/metrics: $(metrics | grep jobq_queue_)"
"$J" queue set fb --no-concurrency --no-rate --json >"$tmp/cleared.json"
grep -qx '{"queue":"fb","paused":false}' "$tmp/cleared.json" || fail "cleared: $(cat "$tmp/cleared.json")"
[ "$(settings fb)" = "f|||" ] || fail "cleared: $(settings fb)"
ok "Stats and /metrics show pause and limits; limits clear"

for i in 0 1; do jobqd_stop "$i"; done
ok "flow control: concurrency, pause and rate limits across two replicas"
