#!/usr/bin/env bash
# Scenario 9 — two, then three jobqd replicas on one database, workers spread over them (each
# worker talks to one replica; every replica also runs its rescuer and LISTEN session): every
# job runs exactly once. Jobs are enqueued through every replica.
. "$(dirname "$0")/lib.sh"
chaos_init c09
n=$(chaos_scale 1200 10000)
round() {
  local reps=$1 q=q9r$1 prefix=r$1 i
  for i in $(seq 0 $((reps - 1))); do
    [ -n "${jq_pid[$i]:-}" ] && kill -0 "${jq_pid[$i]}" 2>/dev/null || jobqd_start "$i" --rescue-interval-ms=100
  done
  for i in $(seq 0 $((reps - 1))); do
    seq $((i * n / reps + 1)) $(((i + 1) * n / reps)) | sed "s/^/$prefix-/" \
      | "$J" enqueue --rpc-url "${jq_rpc[$i]}" --queue "$q" --stdin-lines >/dev/null
  done
  for i in $(seq 0 $((reps * 2 - 1))); do worker_start "$prefix-w$i" $((i % reps)) "$q" 4; done
  wait_until 120 all_completed "$q" "$n" || fail "$reps replicas: only $(count_status "$q" archive_completed) of $n completed"
  for i in $(seq 0 $((reps * 2 - 1))); do worker_stop "$prefix-w$i"; done
  verify "$q" "$prefix" "$n" 0 "no faults: none may"
  [ "$(sql "SELECT count(*) FROM job_queue WHERE queue = '$q' AND attempts <> 1")" = 0 ] || fail "a job was claimed twice"
  local per
  per=$(ledger_runs "$prefix" | awk '{print $4}' | sed 's/.*-w//' | awk -v r="$reps" '{c[$1 % r]++} END {for (k in c) printf "replica %s: %s  ", k, c[k]}')
  echo "figures: $reps replicas: $per"
  for i in $(seq 0 $((reps - 1))); do
    [ "$(ledger_runs "$prefix" | awk '{print $4}' | sed 's/.*-w//' | awk -v r="$reps" -v k="$i" '$1 % r == k' | wc -l)" -gt 0 ] \
      || fail "the workers of replica $i did nothing"
  done
}
round 2
round 3
for i in 0 1 2; do jobqd_stop "$i"; done
ok "scenario 9: two and three replicas, $n jobs each round, every job exactly once"
