#!/usr/bin/env bash
# run.sh BUILD — `make bench`: starts a throwaway PostgreSQL (tests/harness/pgctl.sh, with the
# default fsync=on / synchronous_commit=on so every commit really reaches the disk), applies the
# migrations, starts jobqd from BUILD/bin, runs the programs in BUILD/bench and prints every
# figure as `BENCH <name> <value> <unit>` (plus readable lines and the ratios against issue 7's
# targets). Everything it starts is stopped on every exit path.
#
# Knobs (environment), for quick runs and for the scaling tables in the README:
#   JOBQ_BENCH_JOBS=100000        jobs of the batched end-to-end and raw runs
#   JOBQ_BENCH_SINGLE_JOBS=10000  jobs of the batch-size-1 runs (each job is 3 commits; 2 when the
#                                 worker completes and claims in one call)
#   JOBQ_BENCH_E2E_REPS=3         repetitions of the e2e/raw pairs, interleaved (medians reported)
#   JOBQ_BENCH_SINGLE_REPS=5      the same for the batch-1 pairs (short runs, which move more)
#   JOBQ_BENCH_WORKERS=3          worker processes (3 keep 2 cores busy; see the README's scaling table)
#   JOBQ_BENCH_SINGLE_PRODUCERS=  producer processes of the batch-1 runs (default: twice the
#                                 workers, so that jobs wait for the workers: an enqueue of one
#                                 job costs about what a worker's turn does, and with fewer
#                                 producers they set the pace); the batched runs have one producer
#   JOBQ_BENCH_BATCH=50           enqueue / claim / complete batch size
#   JOBQ_BENCH_ENQ_CLIENTS=2      concurrent clients of the enqueue-throughput runs
#   JOBQ_BENCH_ENQ_SINGLE_JOBS=10000  jobs of the one-job-per-call enqueue runs
#   JOBQ_BENCH_REPS=5             repetitions of the enqueue runs (their medians are reported)
#   JOBQ_BENCH_NOTIFY_RATE=500 JOBQ_BENCH_NOTIFY_SECONDS=10
#   JOBQ_BENCH_LARGE_JOBS=1000000 finished jobs under the claim_ms_large figure
#   JOBQ_BENCH_GROUP_CLIENTS=8    clients of the one-job-per-call runs with and without Enqueue groups
#   JOBQ_BENCH_ONLY="e2e raw floor single enqueue notify claim rpc groups"   a subset (all by default);
#                                 add "nofk" for the diagnostic run without the status foreign keys
#   JOBQ_BENCH_NOFK_KEYS="job_queue_status_transition_fkey"  which keys "nofk" drops (the pair's)
#   JOBQ_BENCH_JOBQD_FLAGS="--db-pool-size=2"                   extra jobqd flags
#   JOBQ_BENCH_JOBQD_WRAPPER="valgrind --tool=callgrind"         run jobqd under a profiler
#   JOBQ_BENCH_METRICS=1          print jobqd's server-side time per RPC method at the end
#   JOBQ_BENCH_PGSS=1             load pg_stat_statements and print PostgreSQL's time per statement
set -uo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
b=${1:-build}; [[ $b == /* ]] || b=$root/$b
build=$(cd "$b" && pwd) || { echo "bench: no build folder $b" >&2; exit 2; }
pgctl=$root/tests/harness/pgctl.sh
jobs=${JOBQ_BENCH_JOBS:-100000}
single_jobs=${JOBQ_BENCH_SINGLE_JOBS:-10000}
e2e_reps=${JOBQ_BENCH_E2E_REPS:-3}
single_reps=${JOBQ_BENCH_SINGLE_REPS:-5}
workers=${JOBQ_BENCH_WORKERS:-3}
single_producers=${JOBQ_BENCH_SINGLE_PRODUCERS:-$((2 * workers))}
batch=${JOBQ_BENCH_BATCH:-50}
enq_clients=${JOBQ_BENCH_ENQ_CLIENTS:-2}
enq_single_jobs=${JOBQ_BENCH_ENQ_SINGLE_JOBS:-10000}
reps=${JOBQ_BENCH_REPS:-5}
notify_rate=${JOBQ_BENCH_NOTIFY_RATE:-500}
notify_seconds=${JOBQ_BENCH_NOTIFY_SECONDS:-10}
large_jobs=${JOBQ_BENCH_LARGE_JOBS:-1000000}
only=${JOBQ_BENCH_ONLY:-e2e raw floor single enqueue notify claim rpc groups}
group_clients=${JOBQ_BENCH_GROUP_CLIENTS:-8}
for v in "$group_clients" "$jobs" "$single_jobs" "$e2e_reps" "$single_reps" "$workers" "$single_producers" "$batch" "$enq_clients" "$enq_single_jobs" "$reps" "$notify_rate" "$notify_seconds" "$large_jobs"; do
  [[ $v =~ ^[1-9][0-9]*$ ]] || { echo "bench: '$v' is not a positive integer" >&2; exit 2; }
done
psql_bin=psql
for p in /usr/lib/postgresql/*/bin/psql; do [ -x "$p" ] && psql_bin=$p; done

tmp=$(mktemp -d /tmp/jobq-bench.XXXXXX)
chmod 755 "$tmp" # the cluster inside runs as the postgres user when we are root
jobqd_pid="" jobqd_http=""
cleanup() {
  if [ -n "$jobqd_pid" ]; then
    kill -TERM "$jobqd_pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$jobqd_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$jobqd_pid" 2>/dev/null
  fi
  "$pgctl" destroy "$tmp/pg" >/dev/null 2>&1
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wants() { [[ " $only " == *" $1 "* ]]; }
sql() { "$psql_bin" -qAtX -v ON_ERROR_STOP=1 "$url" "$@"; }
# bench PROGRAM ARGS...: one program, its output shown and its BENCH lines kept for the ratios.
bench() {
  local prog=$1 rc
  shift
  cpu_mark
  timeout --kill-after=10 600 "$build/bench/$prog" "$@" | tee -a "$tmp/bench.txt"
  rc=${PIPESTATUS[0]}
  [ "$rc" -eq 0 ] || { echo "bench: $prog $* failed" >&2; tail -n 20 "$tmp/jobqd.log" >&2; exit 1; }
  cpu_used
  echo "  (CPU used: jobqd $jq_ms ms, PostgreSQL $pg_ms ms)"
  case $prog in
    bench_e2e) printf 'BENCH %s_pg_cpu_us_per_job %s us\n' "${2%_jobs_per_sec}" "$(per_job_us "$pg_ms" "$3")" \
                 | tee -a "$tmp/bench.txt" ;;
  esac
}
# Where the time went, in CPU time (user + system), which moves far less from run to run than a
# throughput on a shared 2-core machine: jobqd's, and the whole PostgreSQL cluster's.
# cpu_mark remembers both now, and the whole machine's; cpu_used sets jq_ms, pg_ms and all_ms to
# the CPU each used since, and switches to the machine's context switches since.
cpu_mark() { cpu_jq0=$(cpu_ticks "$jobqd_pid") cpu_pg0=$(pg_ticks) cpu_all0=$(machine_ticks) cs0=$(machine_switches); }
cpu_used() {
  local hz
  sleep 0.2 # let the program's backends exit, so their CPU time is counted in the postmaster's
  hz=$(getconf CLK_TCK)
  jq_ms=$(( ($(cpu_ticks "$jobqd_pid") - cpu_jq0) * 1000 / hz )) pg_ms=$(( ($(pg_ticks) - cpu_pg0) * 1000 / hz ))
  all_ms=$(( ($(machine_ticks) - cpu_all0) * 1000 / hz )) switches=$(( $(machine_switches) - cs0 ))
}
# machine_ticks: CPU clock ticks the whole machine has spent busy (every process: the bench's own,
# jobqd, PostgreSQL), from the first line of /proc/stat: user, nice, system, irq and softirq.
machine_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8; exit }' /proc/stat; }
# machine_switches: context switches on the whole machine so far (/proc/stat "ctxt"). At one job
# per call they are what the CPU goes on (README, "Where the time goes").
machine_switches() { awk '$1 == "ctxt" { print $2 }' /proc/stat; }
# per_job_us MS JOBS: MS milliseconds of CPU per job, in microseconds.
per_job_us() { awk -v m="$1" -v n="$2" 'BEGIN { printf "%.1f", m * 1000 / n }'; }
# cpu_ticks PID: utime + stime of a process, in clock ticks (fields 14 and 15 of /proc/PID/stat;
# the command name in field 2 contains no blanks for jobqd).
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# pg_ticks: CPU clock ticks of the whole cluster so far: the postmaster with its reaped children
# (fields 16 and 17, the exited backends) plus its live children.
pg_ticks() {
  local pm t=0 p
  pm=$(head -n1 "$tmp/pg/data/postmaster.pid")
  t=$(awk '{ print $14 + $15 + $16 + $17 }' "/proc/$pm/stat")
  for p in $(cat "/proc/$pm/task/$pm/children" 2>/dev/null); do
    t=$(( t + $(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0) ))
  done
  echo "$t"
}
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
  local p
  while :; do
    p=$(( 20000 + (RANDOM * 32768 + RANDOM) % 30000 ))
    port_busy "$p" || { echo "$p"; return; }
  done
}
notify_triggers() { # enable|disable
  sql -c "ALTER TABLE job_queue ${1^^} TRIGGER job_queue_notify_insert, ${1^^} TRIGGER job_queue_notify_update"
}

# start_jobqd: jobqd on three fresh loopback ports; returns once it answers an RPC.
start_jobqd() {
  local rpc_port pub_port http_port
  rpc_port=$(free_port); pub_port=$(free_port); http_port=$(free_port)
  [ "$rpc_port" != "$pub_port" ] && [ "$pub_port" != "$http_port" ] && [ "$rpc_port" != "$http_port" ] || return 1
  export JOBQ_RPC_URL=tcp://127.0.0.1:$rpc_port JOBQ_PUB_URL=tcp://127.0.0.1:$pub_port
  jobqd_http=127.0.0.1:$http_port
  # shellcheck disable=SC2086 # the extra flags are meant to split
  ${JOBQ_BENCH_JOBQD_WRAPPER:-} "$build/bin/jobqd" --http-addr="127.0.0.1:$http_port" \
    --log-format=text --log-level=warn ${JOBQ_BENCH_JOBQD_FLAGS:-} >"$tmp/jobqd.log" 2>&1 &
  jobqd_pid=$!
  for _ in $(seq 300); do
    "$build/bin/jobq" stats >/dev/null 2>&1 && return 0
    kill -0 "$jobqd_pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$jobqd_pid" 2>/dev/null; wait "$jobqd_pid" 2>/dev/null; jobqd_pid=""
  return 1
}

# restart_jobqd [FLAG...]: jobqd stopped and started again, with FLAGs beside the usual ones.
restart_jobqd() {
  kill -TERM "$jobqd_pid" 2>/dev/null
  wait "$jobqd_pid" 2>/dev/null
  jobqd_pid=""
  local _
  for _ in 1 2 3 4 5; do
    JOBQ_BENCH_JOBQD_FLAGS="${JOBQ_BENCH_JOBQD_FLAGS:-} $*" start_jobqd && return 0
  done
  cat "$tmp/jobqd.log" >&2; echo "bench: jobqd did not start again" >&2; exit 1
}

start_services() {
  local conf=""
  [ -n "${JOBQ_BENCH_PGSS:-}" ] && conf="shared_preload_libraries = 'pg_stat_statements'
pg_stat_statements.track = all"
  url=$(JOBQ_PG_FSYNC=on JOBQ_PG_CONF=$conf "$pgctl" start "$tmp/pg") || { echo "bench: PostgreSQL did not start" >&2; exit 1; }
  JOBQ_DATABASE_URL=$url "$root/deploy/migrate.sh" update >"$tmp/migrate.log" 2>&1 \
    || { cat "$tmp/migrate.log"; echo "bench: migrations failed" >&2; exit 1; }
  export JOBQ_DATABASE_URL=$url
  # The floor's own table (bench_e2e floor): beside jobq's, in the same database and cluster.
  sql -f "$root/tests/bench/floor.sql" >/dev/null || { echo "bench: floor.sql failed" >&2; exit 1; }
  if [ -n "${JOBQ_BENCH_PGSS:-}" ]; then sql -c "CREATE EXTENSION pg_stat_statements" || exit 1; fi
  # A free port can be taken by someone else (make test runs alongside) before jobqd binds it:
  # try a few sets of ports.
  for _ in 1 2 3 4 5; do start_jobqd && return 0; done
  cat "$tmp/jobqd.log" >&2; echo "bench: jobqd did not start" >&2; exit 1
}

build_finished_jobs() { # N finished jobs of queue claim_lat, built in SQL (no RPC, no NOTIFY)
  sql -c "TRUNCATE job_queue, job_failure"
  notify_triggers disable
  # One transaction: no million processing jobs is ever committed for the rescuer to read (it
  # reads every processing job's lease each pass). Their dead index entries are still there until
  # the VACUUM below, which is what quiet_database is for.
  sql -v n="$1" <<'SQL'
BEGIN;
SELECT count(*) FROM jobq_enqueue_batch(array_fill('claim_lat'::text, ARRAY[:n]),
       array_fill('\x7b7d'::bytea, ARRAY[:n]), NULL, NULL, NULL, NULL);
UPDATE job_queue SET curr_job_status = 'archive_processing', attempts = 1, lease_owner = 'bench',
       lease_token = nextval('job_lease_token_seq'), lease_expires_at = now() + interval '1 hour'
 WHERE queue = 'claim_lat' AND curr_job_status = 'archive_pending';
UPDATE job_queue SET curr_job_status = 'archive_completed', lease_expires_at = NULL
 WHERE queue = 'claim_lat' AND curr_job_status = 'archive_processing';
COMMIT;
SQL
  notify_triggers enable
  # jobqd's own periodic statements (the rescuer reads every processing lease, the listener's
  # safety net walks the pending index) that began during the build can run for seconds, and a
  # VACUUM that runs beside their snapshot cannot remove the build's dead rows: every claim would
  # then step over a million dead index entries. Wait them out first.
  quiet_database
  sql -c "VACUUM ANALYZE job_queue"
  # Three million row versions of WAL were just written; their checkpoint must not land in the
  # one-second claim_ms_large run, whose claims it would slow down without costing them any more
  # PostgreSQL CPU. The figure is about the partial index.
  sql -c CHECKPOINT
}
# quiet_database waits (up to 60 s) until no other statement is running, twice in a row.
quiet_database() {
  local calm=0
  for _ in $(seq 240); do
    if [ "$(sql -c "SELECT count(*) FROM pg_stat_activity WHERE state = 'active'
                     AND backend_type = 'client backend' AND pid <> pg_backend_pid()")" = 0 ]; then
      calm=$((calm + 1)); [ "$calm" -ge 2 ] && return 0
    else
      calm=0
    fi
    sleep 0.25
  done
  echo "bench: other statements still running after 60 s; measuring anyway" >&2
}

# rep NAME PROGRAM ARGS...: one repetition; its BENCH line is kept aside for emit_median.
rep() {
  local name=$1 prog=$2 out
  shift 2
  out=$(timeout --kill-after=10 600 "$build/bench/$prog" "$@") \
    || { echo "bench: $prog $* failed" >&2; tail -n 20 "$tmp/jobqd.log" >&2; exit 1; }
  printf '%s\n' "$out" | sed 's/^BENCH \([^ ]*\) /  one run: \1 = /'
  printf '%s\n' "$out" | awk '$1 == "BENCH" { print $3 }' | tail -n1 >>"$tmp/rep.$name"
}
# emit_median NAME UNIT: the median of NAME's repetitions as its BENCH line.
emit_median() {
  sort -g "$tmp/rep.$1" | awk -v n="$1" -v u="$2" '{ v[NR] = $1 } END {
    m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    printf "%s: median of %d runs\nBENCH %s %.3f %s\n", n, NR, n, m, u }' | tee -a "$tmp/bench.txt"
}
# rep_e2e NAME MODE JOBS BATCH PRODUCERS: one bench_e2e run (MODE jobq or raw) through rep; the
# cluster's and the whole machine's CPU per job during it are kept aside for emit_median too.
rep_e2e() {
  local name=$1 mode=$2 n=$3 bsz=$4 nprod=$5 pg_per_job all_per_job
  cpu_mark
  rep "$name" bench_e2e "$mode" "$name" "$n" "$workers" "$bsz" "$nprod"
  cpu_used
  pg_per_job=$(per_job_us "$pg_ms" "$n") all_per_job=$(per_job_us "$all_ms" "$n")
  echo "  (CPU used: jobqd $jq_ms ms, PostgreSQL $pg_ms ms = $pg_per_job us per job;" \
       "whole machine $all_ms ms = $all_per_job us and" \
       "$(awk -v s="$switches" -v n="$n" 'BEGIN { printf "%.1f", s / n }') context switches per job)"
  echo "$pg_per_job" >>"$tmp/rep.${name%_jobs_per_sec}_pg_cpu_us_per_job"
  echo "$all_per_job" >>"$tmp/rep.${name%_jobs_per_sec}_cpu_us_per_job"
}
# e2e_pairs SUFFIX JOBS BATCH MODES REPS PRODUCERS: the jobq, raw and floor runs (those of
# MODES), each with PRODUCERS producer processes, REPS times, reversing the order every other
# time (the first run meets a table another has just grown, and autovacuum at work); the figures
# are the medians, as one run on a shared 2-core VM moves by 10-15%. Modes next and raw_next are
# jobq and raw with workers that complete and claim in one call (their figures then have jobq's
# and raw's names); 3call is jobq's three-call shape beside them.
e2e_pairs() {
  local sfx=$1 n=$2 bsz=$3 modes=" $4 " nreps=$5 nprod=$6 i m order f
  for i in $(seq "$nreps"); do
    order="jobq next 3call raw raw_next floor"; (( i % 2 == 0 )) && order="floor raw_next raw 3call next jobq"
    for m in $order; do
      [[ $modes == *" $m "* ]] || continue
      case $m in
        jobq) rep_e2e "e2e${sfx}_jobs_per_sec" jobq "$n" "$bsz" "$nprod" ;;
        next) rep_e2e "e2e${sfx}_jobs_per_sec" jobq_next "$n" "$bsz" "$nprod" ;;
        3call) rep_e2e "e2e${sfx}_3call_jobs_per_sec" jobq "$n" "$bsz" "$nprod" ;;
        raw) rep_e2e "raw_sql${sfx}_jobs_per_sec" raw "$n" "$bsz" "$nprod" ;;
        raw_next) rep_e2e "raw_sql${sfx}_jobs_per_sec" raw_next "$n" "$bsz" "$nprod" ;;
        floor) rep_e2e "floor_sql${sfx}_jobs_per_sec" floor "$n" "$bsz" "$nprod" ;;
      esac
    done
  done
  for f in "e2e${sfx}" "e2e${sfx}_3call" "raw_sql${sfx}" "floor_sql${sfx}"; do
    [ -f "$tmp/rep.${f}_jobs_per_sec" ] || continue
    emit_median "${f}_jobs_per_sec" jobs/s
    emit_median "${f}_pg_cpu_us_per_job" us
    emit_median "${f}_cpu_us_per_job" us
  done
}
enqueue_round() { # SUFFIX JOBS BATCH: with, without and with a subscriber
  rep "enqueue${1}_jobs_per_sec" bench_enqueue "enqueue${1}_jobs_per_sec" "$2" "$3" "$enq_clients"
  notify_triggers disable
  rep "enqueue${1}_nonotify_jobs_per_sec" bench_enqueue "enqueue${1}_nonotify_jobs_per_sec" "$2" "$3" "$enq_clients"
  notify_triggers enable
  rep "enqueue${1}_sub_jobs_per_sec" bench_enqueue "enqueue${1}_sub_jobs_per_sec" "$2" "$3" "$enq_clients" sub
}

# value NAME: the figure's value from this run's BENCH lines.
value() { awk -v n="$1" '$1 == "BENCH" && $2 == n { v = $3 } END { print v }' "$tmp/bench.txt"; }
ratio() { # NAME A B UNIT: A/B (or a percentage with unit %)
  local a b
  a=$(value "$2") b=$(value "$3")
  [ -n "$a" ] && [ -n "$b" ] || return 0
  awk -v n="$1" -v a="$a" -v b="$b" -v u="$4" 'BEGIN {
    if (b == 0) exit
    if (u == "%") printf "BENCH %s %.3f %%\n", n, (b - a) / b * 100
    else printf "BENCH %s %.3f x\n", n, a / b }'
}

start_services
echo "bench: PostgreSQL (fsync=on, synchronous_commit=on) at $url; jobqd pid $jobqd_pid;" \
     "$(nproc) cores; workers $workers, batch $batch (batch 1: $single_producers producers)"
: >"$tmp/bench.txt"

# On an (almost) empty table first: claim_ms_small and the Get round trip.
wants rpc && bench bench_latency get rpc_p50_us 2000
wants claim && bench bench_latency claim claim_ms_small 500 claim_lat
# The same with a concurrency limit (issue 17): the claim takes the queue's settings lock and
# counts its running jobs (jobq_claim_gate). claim_ms_small is the figure of a queue without one.
if wants claim; then
  "$build/bin/jobq" queue set claim_lat_limited --concurrency 1000 >/dev/null
  bench bench_latency claim claim_ms_limited 500 claim_lat_limited
fi
modes=""; wants e2e && modes+=" jobq"; wants raw && modes+=" raw"; wants floor && modes+=" floor"
modes=${JOBQ_BENCH_E2E_MODES:-$modes}
[ -n "$modes" ] && e2e_pairs "" "$jobs" "$batch" "$modes" "$e2e_reps" 1
# Batch 1: workers that complete and claim in one call (e2e_single, raw_sql_single: the same
# statement in-process), and the three-call shape beside them (e2e_single_3call). Several
# producers commit side by side: one producer's commits, one after the other, would set the pace
# and the figures would measure the producer, not the workers' path.
wants single && e2e_pairs _single "$single_jobs" 1 "next 3call raw_next" "$single_reps" "$single_producers"
if wants enqueue; then
  # Notifications' cost: the same enqueue load with the notify triggers on (jobqd LISTENs and
  # publishes), off, and on with a subscriber listening; batched, then one job per call. The
  # three are interleaved and repeated, and each figure is the median, because the machine is
  # shared and a single run of a few seconds moves by tens of percent.
  for _ in $(seq "$reps"); do
    enqueue_round "" "$jobs" "$batch"
    enqueue_round _single "$enq_single_jobs" 1
  done
  for n in enqueue enqueue_nonotify enqueue_sub enqueue_single enqueue_single_nonotify enqueue_single_sub; do
    emit_median "${n}_jobs_per_sec" jobs/s
  done
fi
if wants notify; then
  # The runs before wrote a few million rows; neither the checkpoint their WAL calls for nor
  # autovacuum's pass over their dead rows may land in these 10 s: the one's final sync and the
  # other's writes hold commits back for hundreds of ms, which would count as notification
  # latency. The figure is about the notification path.
  sql -c "VACUUM job_queue"
  sql -c CHECKPOINT
  bench bench_notify "$notify_rate" "$notify_seconds"
fi
if wants claim; then
  echo "bench: building $large_jobs finished jobs in SQL ..."
  build_finished_jobs "$large_jobs" >/dev/null
  bench bench_latency claim claim_ms_large 500 claim_lat
fi
# Diagnostic, not in the default set: what the contract's status foreign key costs. The
# same e2e and raw runs with them dropped (the guard trigger and the CHECKs stay), then put back.
if wants nofk; then
  fks=${JOBQ_BENCH_NOFK_KEYS:-job_queue_status_transition_fkey}
  names=$(printf "'%s'," $fks)
  defs=$(sql -c "SELECT string_agg(format('ADD CONSTRAINT %I %s', conname, pg_get_constraintdef(oid)), ', ')
                   FROM pg_constraint WHERE conrelid = 'job_queue'::regclass AND conname IN (${names%,})")
  sql -c "ALTER TABLE job_queue $(printf 'DROP CONSTRAINT %s, ' $fks | sed 's/, $//')"
  bench bench_e2e jobq e2e_nofk_jobs_per_sec "$jobs" "$workers" "$batch"
  bench bench_e2e raw raw_sql_nofk_jobs_per_sec "$jobs" "$workers" "$batch"
  sql -c "ALTER TABLE job_queue $defs" || { echo "bench: the foreign keys could not be put back" >&2; exit 1; }
fi
# Where PostgreSQL's time went, per statement (nested ones too: the foreign-key checks' SPI
# queries, the enqueue function's INSERT), over every run above.
if [ -n "${JOBQ_BENCH_PGSS:-}" ]; then
  echo "--- pg_stat_statements: calls | rows | total ms | us per row | statement"
  sql -c "SELECT calls, rows, round(total_exec_time::numeric), round((total_exec_time * 1000 / greatest(rows, 1))::numeric, 1),
                 left(regexp_replace(query, '\s+', ' ', 'g'), 120)
            FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 12"
fi
# Server-side time per method (sum and count of jobq_rpc_duration_seconds), to compare with the
# clients' per-call times: the difference is transport and scheduling.
if [ -n "${JOBQ_BENCH_METRICS:-}" ]; then
  curl -s "http://$jobqd_http/metrics" | grep -E '^jobq_rpc_duration_seconds_(sum|count)|^jobq_longpoll_(wakes|unqueried)_total' || true
fi
hwm=$(awk '/^VmHWM:/ { print $2 / 1024 }' "/proc/$jobqd_pid/status")
printf 'BENCH jobqd_rss_mb %.3f MB\n' "$hwm" | tee -a "$tmp/bench.txt"
# One job per call from many clients at once: jobqd grouping the Enqueues that arrive together
# (jq_enqgroup) and not (--enqueue-groups=off), interleaved, jobqd restarted for each setting.
# After the RSS figure, which is of the jobqd that ran everything above.
if wants groups; then
  for _ in $(seq "$reps"); do
    rep enqueue_single_many_jobs_per_sec bench_enqueue enqueue_single_many_jobs_per_sec \
      "$enq_single_jobs" 1 "$group_clients"
    restart_jobqd --enqueue-groups=off
    rep enqueue_single_many_nogroups_jobs_per_sec bench_enqueue enqueue_single_many_nogroups_jobs_per_sec \
      "$enq_single_jobs" 1 "$group_clients"
    restart_jobqd
  done
  emit_median enqueue_single_many_jobs_per_sec jobs/s
  emit_median enqueue_single_many_nogroups_jobs_per_sec jobs/s
fi

echo "--- ratios (targets in brackets)"
{
  ratio e2e_vs_raw e2e_jobs_per_sec raw_sql_jobs_per_sec x                     # [>= 0.7]
  ratio e2e_vs_floor e2e_jobs_per_sec floor_sql_jobs_per_sec x                 # [>= 0.6]
  ratio e2e_pg_cpu_vs_floor e2e_pg_cpu_us_per_job floor_sql_pg_cpu_us_per_job x # [<= 1.5]
  ratio e2e_single_vs_raw e2e_single_jobs_per_sec raw_sql_single_jobs_per_sec x # [>= 0.7]
  ratio e2e_single_vs_3call e2e_single_jobs_per_sec e2e_single_3call_jobs_per_sec x # [>= 1.3]
  ratio notify_cost_pct enqueue_jobs_per_sec enqueue_nonotify_jobs_per_sec %   # [< 10]
  ratio notify_sub_cost_pct enqueue_sub_jobs_per_sec enqueue_nonotify_jobs_per_sec %
  ratio notify_single_cost_pct enqueue_single_jobs_per_sec enqueue_single_nonotify_jobs_per_sec %
  ratio notify_single_sub_cost_pct enqueue_single_sub_jobs_per_sec enqueue_single_nonotify_jobs_per_sec %
  ratio claim_large_vs_small claim_ms_large claim_ms_small x                   # [<= 1.5]
  ratio enqueue_groups_gain enqueue_single_many_jobs_per_sec enqueue_single_many_nogroups_jobs_per_sec x
  ratio e2e_with_fk_vs_without e2e_jobs_per_sec e2e_nofk_jobs_per_sec x
  ratio raw_with_fk_vs_without raw_sql_jobs_per_sec raw_sql_nofk_jobs_per_sec x
} | tee -a "$tmp/bench.txt"
echo "targets: e2e_jobs_per_sec >= 20000, e2e_vs_raw >= 0.7, e2e_vs_floor >= 0.6, e2e_pg_cpu_vs_floor <= 1.5," \
     "e2e_single_vs_raw >= 0.7, e2e_single_vs_3call >= 1.3," \
     "notify_cost_pct < 10, notify_p50_ms <= 2, notify_p99_ms <= 10, claim_large_vs_small <= 1.5," \
     "jobqd_rss_mb <= 64"
