#!/usr/bin/env bash
# Concurrency key (issue 17 part 4) against the real database and two jobqd replicas, with
# `jobq worker`s on both: with a key limit of M, no key ever had M+1 jobs processing, and the
# other keys' jobs ran while the hot key's backlog, enqueued first, waited; bad keys and limits
# are refused with INVALID_ARGUMENT and change nothing; Stats and /metrics show the limit; the
# enqueue function's widest version stores keys and its narrower ones still work.
# Uses the ledger and replica helpers of the fault scenarios (tests/chaos/lib.sh).
. "$(dirname "$0")/../chaos/lib.sh"
chaos_init flowkeys

# The ledger of slots per key, kept by a trigger in this private database: every move of a job
# into archive_processing (+1) and out of it (-1), stamped with the time of the row's change
# (clock_timestamp: for a claim, after the gate's lock).
psql -qX "$url" >/dev/null <<'SQL'
CREATE TABLE key_events (job_id bigint, queue text, ckey text, delta integer, at timestamptz);
CREATE FUNCTION key_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO key_events VALUES (NEW.id, NEW.queue, NEW.concurrency_key,
        CASE WHEN NEW.curr_job_status = 'archive_processing' THEN 1 ELSE -1 END, clock_timestamp());
    RETURN NULL;
END $$;
CREATE TRIGGER key_event AFTER UPDATE ON job_queue FOR EACH ROW
    WHEN ((NEW.curr_job_status = 'archive_processing') <> (OLD.curr_job_status = 'archive_processing'))
    EXECUTE FUNCTION key_event();
SQL

jobqd_start 0 --rescue-interval-ms=200
jobqd_start 1 --rescue-interval-ms=200
export JOBQ_RPC_URL=${jq_rpc[0]}
keylimit() { sql "SELECT key_concurrency_limit FROM job_queue_settings WHERE queue = '$1'"; }

# ------------------------------------------------------------------ key limit, fairness
# The hot key's backlog is enqueued first, so that it is ahead in claim order; then three other
# keys and some jobs without a key. 4 workers of 3 slots on 2 replicas: 12 slots, of which the
# hot key may hold M.
M=2 hot=40 cold=8
"$J" queue set fk --key-concurrency "$M" >/dev/null || fail "queue set --key-concurrency"
seq 1 "$hot" | sed 's/^/fk-h/' | "$J" enqueue --queue fk --stdin-lines --concurrency-key hot >/dev/null \
  || fail "enqueue of the hot key"
for k in c1 c2 c3; do
  seq 1 "$cold" | sed "s/^/fk-$k-/" | "$J" enqueue --rpc-url "${jq_rpc[1]}" --queue fk --stdin-lines \
    --concurrency-key "$k" >/dev/null || fail "enqueue of key $k"
done
enqueue_tags 0 fk fk-n 10
n=$((hot + 3 * cold + 10))
[ "$(sql "SELECT count(*) FROM job_queue WHERE queue = 'fk' AND concurrency_key = 'hot'")" = "$hot" ] \
  || fail "the hot key's jobs do not carry their key"
for i in 0 1 2 3; do HANDLER_SLEEP=0.05 worker_start "fk-w$i" $((i % 2)) fk 3; done
wait_until 90 all_completed fk "$n" || fail "key limit: only $(count_status fk archive_completed) of $n completed"
for i in 0 1 2 3; do worker_stop "fk-w$i"; done
verify fk fk "$n" 0 "no faults: none may"
# The most jobs of each key processing at once: the running sum of the ledger's +1/-1 per key in
# the order the rows changed (a claim's rows change after it counted, under the queue's lock).
most=$(sql "SELECT string_agg(ckey || '=' || m, ' ' ORDER BY ckey) FROM (SELECT ckey, max(s) AS m FROM
              (SELECT ckey, sum(delta) OVER (PARTITION BY ckey ORDER BY at, delta) AS s
                 FROM key_events WHERE queue = 'fk' AND ckey IS NOT NULL) r GROUP BY ckey) t")
echo "figures: key limit $M, 12 worker slots on 2 replicas: most processing at once per key: $most"
for kv in $most; do
  [ "${kv#*=}" -le "$M" ] || fail "key limit: $kv processing at once, the limit is $M ($most)"
done
[[ " $most " == *" hot=$M "* ]] || fail "key limit: the hot key never reached $M at once ($most)"
# Fairness: every other key's job was claimed before the hot key's backlog was through.
late=$(sql "SELECT count(*) FROM key_events WHERE queue = 'fk' AND delta = 1 AND coalesce(ckey, '') <> 'hot'
              AND at > (SELECT max(at) FROM key_events WHERE queue = 'fk' AND delta = 1 AND ckey = 'hot')")
[ "$late" = 0 ] || fail "fairness: $late jobs of other keys waited for the hot key's backlog"
[ "$(sql "SELECT max(s) FROM (SELECT sum(delta) OVER (ORDER BY at, delta) AS s FROM key_events WHERE queue = 'fk') r")" -gt "$M" ] \
  || fail "fairness: no other key ran beside the hot key"
ok "a key limit of $M held across 2 replicas and 12 worker slots; the other keys ran meanwhile"

# A Claim of several jobs takes other keys' jobs when one key is full, and no more than a key's
# free slots of it.
"$J" queue set fm --key-concurrency 1 >/dev/null || fail "queue set fm"
for k in a a a b b c; do
  "$J" enqueue --queue fm --payload "fm-$k" --concurrency-key "$k" >/dev/null || fail "enqueue of fm-$k"
done
"$J" claim --queue fm --limit 10 --json >"$tmp/fm.json" 2>&1 || fail "claim of fm: $(cat "$tmp/fm.json")"
got=$({ grep -o '"payload":"fm-[a-z]*"' "$tmp/fm.json" || true; } | sort | tr -d '\n')
[ "$got" = '"payload":"fm-a""payload":"fm-b""payload":"fm-c"' ] || fail "claim of fm took: $(cat "$tmp/fm.json")"
"$J" claim --queue fm --limit 10 --json >"$tmp/fm2.json" || fail "second claim of fm"
if grep -q '"id"' "$tmp/fm2.json"; then fail "a full key's job was claimed: $(cat "$tmp/fm2.json")"; fi
grep -q 'concurrency_key: *b' <<<"$("$J" get "$(sql "SELECT min(id) FROM job_queue WHERE queue = 'fm' AND concurrency_key = 'b'")")" \
  || fail "get does not show the key"
ok "a Claim of several jobs took one of each key and nothing of a full key"

# ------------------------------------------------------------------ the enqueue function's versions
sql "SELECT count(*) FROM jobq_enqueue_batch(ARRAY['fz', 'fz'], NULL, NULL, NULL, NULL, ARRAY['i1', ''], NULL, ARRAY['k1', ''])" >/dev/null \
  || fail "the 8-argument enqueue"
sql "SELECT count(*) FROM jobq_enqueue_batch(ARRAY['fz'], NULL, NULL, NULL, NULL, ARRAY['i1'], NULL, ARRAY['k2'])" >/dev/null
sql "SELECT count(*) FROM jobq_enqueue_batch(ARRAY['fz'], NULL, NULL, NULL, NULL, NULL, ARRAY[5000])" >/dev/null \
  || fail "the 7-argument enqueue"
sql "SELECT count(*) FROM jobq_enqueue_batch(ARRAY['fz'], NULL, NULL, NULL, NULL, NULL)" >/dev/null \
  || fail "the 6-argument enqueue"
keys=$(sql "SELECT string_agg(coalesce(concurrency_key, '-') || '/' || coalesce(timeout_ms::text, '-'), ' ' ORDER BY id) FROM job_queue WHERE queue = 'fz'")
[ "$keys" = "k1/- -/- -/5000 -/-" ] || fail "enqueue versions stored: $keys"
ok "the 8-argument enqueue stores keys (an idempotent repeat keeps the first job's); the 6- and 7-argument ones still work"

# ------------------------------------------------------------------ bad input changes nothing
"$J" queue set fb --key-concurrency 3 >/dev/null
before=$(keylimit fb)
jobs_before=$(sql "SELECT count(*) FROM job_queue")
bad() { # EXPECTED_MESSAGE ARGS...: the command fails with INVALID_ARGUMENT and that message
  local want=$1 out rc=0; shift
  out=$("$J" "$@" 2>&1) || rc=$?
  [ "$rc" != 0 ] || fail "'$*' succeeded"
  case $out in *INVALID_ARGUMENT*"$want"*) ;; *) fail "'$*': $out" ;; esac
  [ "$(keylimit fb)" = "$before" ] || fail "'$*' changed fb: $(keylimit fb)"
  [ "$(sql "SELECT count(*) FROM job_queue")" = "$jobs_before" ] || fail "'$*' enqueued a job"
}
bad "key_concurrency_limit: 0 is out of range" queue set fb --key-concurrency 0
bad "key_concurrency_limit: -1 is out of range" queue set fb --key-concurrency -1
bad "key_concurrency_limit: 1000001 is out of range" queue set fb --key-concurrency 1000001
bad "key_concurrency_limit: set it or clear it, not both" queue set fb --key-concurrency 2 --no-key-concurrency
bad "jobs[0].concurrency_key: longer than 128 bytes" enqueue --queue fb --payload x --concurrency-key "$(printf 'k%.0s' $(seq 129))"
bad "jobs[0].concurrency_key: control characters" enqueue --queue fb --payload x --concurrency-key "$(printf 'a\tb')"
"$J" enqueue --queue fb --payload x --concurrency-key "$(printf 'k%.0s' $(seq 128))" >/dev/null || fail "a key of 128 bytes"
ok "bad keys and key limits answer INVALID_ARGUMENT with the reason and change nothing"

# ------------------------------------------------------------------ Stats, /metrics, clearing
grep -q '"key_concurrency_limit":3' <<<"$("$J" stats --queue fb --json)" || fail "stats fb: $("$J" stats --queue fb --json)"
grep -q 'key-concurrency 3' <<<"$("$J" stats --queue fb)" || fail "stats fb: $("$J" stats --queue fb)"
metrics() { curl -s "http://${jq_http[1]}/metrics"; }
has_metric() { grep -qx "$1" <<<"$(metrics)"; }
wait_until 15 has_metric 'jobq_queue_key_concurrency_limit{queue="fb"} 3' || fail "/metrics: $(metrics | grep jobq_queue_)"
"$J" queue set fb --no-key-concurrency --json >"$tmp/cleared.json"
grep -qx '{"queue":"fb","paused":false}' "$tmp/cleared.json" || fail "cleared: $(cat "$tmp/cleared.json")"
[ -z "$(keylimit fb)" ] || fail "cleared: $(keylimit fb)"
ok "Stats and /metrics show the key limit; it clears"

for i in 0 1; do jobqd_stop "$i"; done
ok "concurrency key: a per-key limit across two replicas"
