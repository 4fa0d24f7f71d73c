#!/usr/bin/env bash
# sql_profile.sh — what the schema costs per job, in CPU instructions, measured the same way on
# any machine however busy it is (`make bench-sql`).
#
# A throughput or CPU time on a shared machine moves by 10-20% from run to run, more than most
# changes to a trigger or a constraint are worth; an instruction count does not move. This runs
# one PostgreSQL backend in single-user mode under valgrind's callgrind with a script of cycles
# "enqueue 50 jobs, claim them, complete them", once with 10 cycles and once with 40, and reports
# the difference per job (so start-up, catalog loading and the first plans cancel out):
#   jobq        job_queue as migrated: the service's write shapes (jobq_enqueue_batch, the claim
#               CTE with SKIP LOCKED, the completion by id and token), with every trigger,
#               constraint and index of the schema
#   jobq_nofk   the same without the pair's foreign key (a measurement of what the contract's
#               key costs, not a configuration)
#   floor       tests/bench/floor.sql, the smallest correct queue (docs/benchmarks.md)
# Statements carry literals instead of parameters (single-user mode binds none) and pass the
# claimed leases through a scratch table, the same for every row; the figures compare schemas,
# they are not the service's own totals. Needs valgrind (deploy/bootstrap.sh installs it).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
pgctl=$root/tests/harness/pgctl.sh
bin=$(dirname "$(command -v pg_ctl 2>/dev/null || echo /usr/lib/postgresql/15/bin/pg_ctl)")
[ -x "$bin/postgres" ] || bin=/usr/lib/postgresql/15/bin
command -v valgrind >/dev/null || { echo "sql_profile: valgrind is missing" >&2; exit 1; }

tmp=$(mktemp -d /tmp/jobq-sqlprof.XXXXXX)
chmod 755 "$tmp"
trap '"$pgctl" destroy "$tmp/pg" >/dev/null 2>&1; rm -rf "$tmp"' EXIT

url=$("$pgctl" start "$tmp/pg")
JOBQ_DATABASE_URL=$url "$root/deploy/migrate.sh" update >"$tmp/migrate.log" 2>&1 \
  || { cat "$tmp/migrate.log" >&2; exit 1; }
psql -qX -v ON_ERROR_STOP=1 "$url" -f "$root/tests/bench/floor.sql" \
  -c "CREATE UNLOGGED TABLE leases (id bigint, lease_token bigint)" >/dev/null

payload="'\\x7061796c6f6164'::bytea"
jobq_cycle() {
  cat <<EOF
SELECT count(*) FROM jobq_enqueue_batch(array_fill('prof'::text, ARRAY[50]), array_fill($payload, ARRAY[50]), NULL, NULL, NULL, NULL);
WITH picked AS (SELECT id FROM job_queue WHERE queue = 'prof' AND curr_job_status = 'archive_pending' AND run_at <= now() ORDER BY priority, run_at, id LIMIT 50 FOR UPDATE SKIP LOCKED), c AS (UPDATE job_queue j SET curr_job_status = 'archive_processing', prev_job_status = j.curr_job_status, status_changed_at = now(), updated_at = now(), finished_at = NULL, attempts = j.attempts + 1, lease_owner = 'w', lease_expires_at = now() + interval '30 seconds', lease_token = nextval('job_lease_token_seq') FROM picked WHERE j.id = picked.id RETURNING j.id, j.lease_token) INSERT INTO leases SELECT * FROM c;
WITH d AS (DELETE FROM leases RETURNING *) UPDATE job_queue j SET curr_job_status = 'archive_completed', prev_job_status = j.curr_job_status, status_changed_at = now(), updated_at = now(), finished_at = now(), lease_expires_at = NULL FROM d WHERE j.id = d.id AND j.lease_token = d.lease_token AND j.curr_job_status = 'archive_processing';
EOF
}
floor_cycle() {
  cat <<EOF
INSERT INTO floor_queue (queue, payload) SELECT 'prof', p FROM unnest(array_fill($payload, ARRAY[50])) p;
WITH picked AS (SELECT id FROM floor_queue WHERE queue = 'prof' AND status = 0 AND run_at <= now() ORDER BY run_at, id LIMIT 50 FOR UPDATE SKIP LOCKED), c AS (UPDATE floor_queue f SET status = 1, lease_owner = 'w', lease_expires_at = now() + interval '60 seconds', lease_token = nextval('floor_lease_token') FROM picked WHERE f.id = picked.id RETURNING f.id, f.lease_token) INSERT INTO leases SELECT * FROM c;
WITH d AS (DELETE FROM leases RETURNING *) UPDATE floor_queue f SET status = 2, lease_owner = NULL, lease_expires_at = NULL FROM d WHERE f.id = d.id AND f.lease_token = d.lease_token AND f.status = 1;
EOF
}

# instructions CYCLE N: instructions callgrind counted for N cycles in a fresh single-user backend
# (the cluster is stopped: single-user mode needs the data directory to itself).
instructions() {
  local i
  for ((i = 0; i < $2; i++)); do "$1"; done >"$tmp/script.sql"
  chmod 644 "$tmp/script.sql"
  as_pg valgrind --tool=callgrind --callgrind-out-file=/dev/null \
    "$bin/postgres" --single -D "$tmp/pg/data" jobq <"$tmp/script.sql" >"$tmp/out.log" 2>&1
  if grep -q ERROR "$tmp/out.log"; then grep -m3 ERROR "$tmp/out.log" >&2; exit 1; fi
  sed -n 's/.*I *refs: *\([0-9,]*\).*/\1/p' "$tmp/out.log" | tr -d ,
}
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
sql() { psql -qAtX -v ON_ERROR_STOP=1 "$url" "$@" >/dev/null; }
fresh() { sql -c "TRUNCATE job_queue, job_failure, floor_queue, leases" -c "VACUUM ANALYZE"; }

# per_job NAME CYCLE: one figure. The cluster is running on entry and on return.
per_job() {
  local a b
  fresh
  "$pgctl" stop "$tmp/pg" >/dev/null
  a=$(instructions "$2" 10)
  b=$(instructions "$2" 40)
  url=$("$pgctl" start "$tmp/pg")
  printf 'BENCH sql_%s_instructions_per_job %d\n' "$1" $(( (b - a) / 1500 )) | tee -a "$tmp/figures"
}

per_job jobq jobq_cycle
sql -c "ALTER TABLE job_queue DROP CONSTRAINT job_queue_status_transition_fkey"
per_job jobq_nofk jobq_cycle
sql -c "ALTER TABLE job_queue ADD CONSTRAINT job_queue_status_transition_fkey FOREIGN KEY
          (prev_job_status, curr_job_status) REFERENCES job_status_transition (prev_status, next_status)"
per_job floor floor_cycle
awk '{ v[$2] = $3 } END {
  printf "sql_jobq_vs_floor %.2fx; the pair key: %.0f instructions per job (%.0f%% of jobq)\n",
    v["sql_jobq_instructions_per_job"] / v["sql_floor_instructions_per_job"],
    v["sql_jobq_instructions_per_job"] - v["sql_jobq_nofk_instructions_per_job"],
    100 * (v["sql_jobq_instructions_per_job"] - v["sql_jobq_nofk_instructions_per_job"]) / v["sql_jobq_instructions_per_job"] }' \
  "$tmp/figures"
