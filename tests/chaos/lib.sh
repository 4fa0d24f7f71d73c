# lib.sh — shared by the tests/chaos/test_*.sh fault-injection scenarios (sourced, not run).
#
# The ledger: every job's payload is a unique tag; the handler of every `jobq worker` appends
# "<job id> <tag> <attempt> <worker>" to one ledger file with a single O_APPEND write, so lost
# and duplicated executions are counted exactly. Verdicts come from the ledger and the database.
#
# Each test calls chaos_init NAME first: it gets a private copy of the migrated database
# ($url), a temporary folder ($tmp) and a trap that kills every process it started (chaos_spawn
# records them) and drops the database. Ports are chosen once, so a jobqd can be restarted on the
# same addresses.
set -euo pipefail

root=${JOBQ_TEST_ROOT:?run through tests/run.sh}
build=${JOBQ_TEST_BUILD:?}
base=${JOBQ_TEST_DATABASE_URL:?}
pgdir=${JOBQ_TEST_PG_DIR:?}
maint=${base%/*}/postgres
J=$build/bin/jobq
JOBQD=$build/bin/jobqd
export PGOPTIONS="-c client_min_messages=warning"
unset JOBQ_AUTH_TOKEN JOBQ_RPC_URL JOBQ_PUB_URL
pids=()
jq_rpc=() jq_pub=() jq_http=() jq_pid=()

# chaos_scale CI SOAK: the CI figure, or the soak one when CHAOS_SOAK=1 (tests/chaos/soak.sh).
chaos_scale() { if [ "${CHAOS_SOAK:-0}" = 1 ]; then echo "$2"; else echo "$1"; fi; }

# A sanitizer build is several times slower: deadlines stretch by this factor.
slow=1
# Not `| grep -q`: under pipefail, grep leaving at the first match can kill ldd with SIGPIPE,
# the pipeline then fails, and a sanitizer build was taken for a plain one (valgrind then ran it).
case $(ldd "$JOBQD" 2>/dev/null) in *libasan*) slow=3 ;; esac

. "${JOBQ_TEST_ROOT:?run through tests/run.sh}/tests/harness/shlib.sh"
say() { echo "-- $*"; }

chaos_cleanup() {
  local rc=$? p
  for p in "${pids[@]}"; do kill -CONT "$p" 2>/dev/null || true; done
  # Orphaned handlers of a killed worker finish by themselves in well under a second.
  kill_all "${pids[@]}"
  if [ "$rc" -ne 0 ]; then
    for f in "$tmp"/*.log; do
      [ -f "$f" ] || continue
      echo "--- $(basename "$f") (last 30 lines)"; tail -n 30 "$f"
    done
  fi
  psql -qX "$maint" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}

# free_port: a loopback port nobody listens on (the kernel's choice).

chaos_init() {
  db=jq_chaos_$1
  url=${base%/*}/$db
  tmp=$(mktemp -d "/tmp/jq-chaos-$1.XXXXXX")
  ledger=$tmp/ledger
  : >"$ledger"
  trap chaos_cleanup EXIT
  psql -qX "$maint" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db TEMPLATE jobq" >/dev/null
}

sql() { psql -qAtX "$url" -c "$1"; }

# chaos_spawn LOG CMD...: runs CMD in the background (output to LOG), remembers its pid in $!.
chaos_spawn() {
  local log=$1; shift
  "$@" >"$log" 2>&1 &
  pids+=($!)
}

# wait_until SECONDS CMD...: polls CMD every 100 ms; false when it never held.

# jobqd_start I [FLAGS...]: starts replica I (ports chosen at its first start and kept), waits
# until it answers. $JOBQD_WRAP (e.g. a valgrind command line) is put in front of jobqd.
jobqd_start() {
  local i=$1; shift
  [ -n "${jq_rpc[$i]:-}" ] || { jq_rpc[$i]=tcp://127.0.0.1:$(free_port); jq_pub[$i]=tcp://127.0.0.1:$(free_port); jq_http[$i]=127.0.0.1:$(free_port); }
  ${JOBQD_WRAP:-} "$JOBQD" --database-url="$url" --rpc-url="${jq_rpc[$i]}" --pub-url="${jq_pub[$i]}" \
    --http-addr="${jq_http[$i]}" --log-format=text "$@" >>"$tmp/jobqd$i.log" 2>&1 &
  jq_pid[$i]=$!
  pids+=($!)
  wait_until 20 "$J" stats --rpc-url "${jq_rpc[$i]}" --timeout-ms 500 >/dev/null 2>&1 \
    || fail "jobqd $i did not answer at ${jq_rpc[$i]}"
}

# jobqd_stop I [SECONDS]: SIGTERM, which must end it with status 0 within SECONDS (15).
jobqd_stop() {
  local i=$1 p=${jq_pid[$1]} rc=0 n=0 limit=${2:-15}
  kill -TERM "$p" 2>/dev/null || return 0
  while kill -0 "$p" 2>/dev/null && [ $n -lt $((limit * 10 * slow)) ]; do sleep 0.1; n=$((n + 1)); done
  kill -0 "$p" 2>/dev/null && fail "jobqd $i still running $limit s after SIGTERM"
  wait "$p" || rc=$?
  [ "$rc" = 0 ] || fail "jobqd $i exited with status $rc on SIGTERM"
}

# The ledger handler: reads the tag (payload) from stdin, optionally sleeps $HANDLER_SLEEP, then
# appends one line (dash's printf is one write(2) on an O_APPEND descriptor: lines never mix).
# HANDLER_START=1 also appends a "start" line first (for scenarios that wait for jobs to be in
# flight).
handler='tag=$(cat)
[ "${HANDLER_START:-0}" = 1 ] && printf "start %s %s %s %s\n" "$JOBQ_JOB_ID" "$tag" "$JOBQ_ATTEMPT" "$WORKER" >>"$LEDGER"
[ "${HANDLER_SLEEP:-0}" = 0 ] || sleep "$HANDLER_SLEEP"
printf "%s %s %s %s\n" "$JOBQ_JOB_ID" "$tag" "$JOBQ_ATTEMPT" "$WORKER" >>"$LEDGER"'

# worker_start NAME REPLICA QUEUE CONCURRENCY [WORKER FLAGS...]: a `jobq worker` on the ledger
# handler, with its pid in wpid[NAME]. Environment HANDLER_SLEEP / HANDLER_START pass through.
declare -A wpid=()
worker_start() {
  local name=$1 i=$2 q=$3 conc=$4; shift 4
  LEDGER=$ledger WORKER=$name "$J" worker --rpc-url "${jq_rpc[$i]}" --pub-url "${jq_pub[$i]}" \
    --queue "$q" --concurrency "$conc" --worker-id "$name" --poll-ms 500 "$@" -- sh -c "$handler" \
    >"$tmp/worker-$name.log" 2>&1 &
  wpid[$name]=$!
  pids+=($!)
}

# kill9 PID: SIGKILL and reap (quietly: bash would announce "Killed").
kill9() { { kill -KILL "$1" && wait "$1"; } 2>/dev/null || true; }

# worker_stop NAME: SIGTERM and wait; the worker must exit 0.
worker_stop() {
  local p=${wpid[$1]} rc=0
  kill -TERM "$p" 2>/dev/null || return 0
  wait "$p" || rc=$?
  [ "$rc" = 0 ] || fail "worker $1 exited with status $rc on SIGTERM"
}

# enqueue_tags REPLICA QUEUE PREFIX N: N jobs whose payloads are PREFIX-1 .. PREFIX-N.
enqueue_tags() {
  seq 1 "$4" | sed "s/^/$3-/" | "$J" enqueue --rpc-url "${jq_rpc[$1]}" --queue "$2" --stdin-lines --batch-size 500 >/dev/null
}

count_status() { sql "SELECT count(*) FROM job_queue WHERE queue = '$1' AND curr_job_status = '$2'"; }
all_completed() { [ "$(count_status "$1" archive_completed)" = "$2" ]; }

# ledger_runs PREFIX: execution lines (not "start" lines) of tags with this prefix.
ledger_runs() { grep -v '^start ' "$ledger" | awk -v p="$1-" 'index($2, p) == 1'; }

# verify QUEUE PREFIX N MAX_DUP WHY: the verdict of a scenario. From the database: exactly N
# jobs, all archive_completed, none archive_processing. From the ledger: every tag ran (none
# lost), and at most MAX_DUP tags ran more than once (WHY says which faults allow that). Prints
# the figures; sets $dups.
verify() {
  local q=$1 prefix=$2 n=$3 max_dup=$4 why=$5 total done proc distinct runs
  total=$(sql "SELECT count(*) FROM job_queue WHERE queue = '$q'")
  done=$(count_status "$q" archive_completed)
  proc=$(count_status "$q" archive_processing)
  [ "$total" = "$n" ] || fail "$q: $total jobs in the database, expected $n"
  [ "$proc" = 0 ] || fail "$q: $proc jobs left archive_processing"
  [ "$done" = "$n" ] || fail "$q: $done of $n jobs archive_completed ($(sql "SELECT curr_job_status, count(*) FROM job_queue WHERE queue = '$q' GROUP BY 1" | tr '\n' ' '))"
  runs=$(ledger_runs "$prefix" | wc -l)
  distinct=$(ledger_runs "$prefix" | awk '{print $2}' | sort -u | wc -l)
  [ "$distinct" = "$n" ] || fail "$q: the ledger shows $distinct of $n jobs executed (lost: $((n - distinct)))"
  dups=$(ledger_runs "$prefix" | awk '{print $2}' | sort | uniq -d | wc -l)
  # The database agrees: a job that ran twice was claimed twice.
  local multi
  multi=$(sql "SELECT count(*) FROM job_queue WHERE queue = '$q' AND attempts > 1")
  echo "figures: $q: $n jobs, $runs executions, 0 lost, $dups ran more than once ($why), $multi claimed more than once"
  [ "$dups" -le "$max_dup" ] || fail "$q: $dups jobs ran more than once, at most $max_dup allowed ($why)"
  [ "$dups" -le "$multi" ] || fail "$q: $dups jobs ran twice but only $multi were claimed twice"
}

# pg_restart_wait: starts the shared cluster again (same port) and waits until it answers.
pg_start_wait() {
  "$root/tests/harness/pgctl.sh" start "$pgdir" >/dev/null || fail "PostgreSQL did not start again"
  wait_until 30 psql -qAtX "$maint" -c "SELECT 1" >/dev/null 2>&1 || fail "PostgreSQL does not answer after restart"
}

# With a sanitizer build the cluster restart helpers stay the same; only deadlines stretch.
