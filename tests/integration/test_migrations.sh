#!/usr/bin/env bash
# Every changeset rolls back: apply all, roll all back (no jobq object may remain), apply again.
set -euo pipefail
root=${JOBQ_TEST_ROOT:?run through tests/run.sh}
base=${JOBQ_TEST_DATABASE_URL:?}
maint=${base%/*}/postgres
url=${base%/*}/jq_migrations_test

psql -qX "$maint" -c "DROP DATABASE IF EXISTS jq_migrations_test WITH (FORCE)" -c "CREATE DATABASE jq_migrations_test"
objects() {
  psql -qAtX "$url" -c "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                         WHERE n.nspname = 'public' AND c.relname NOT LIKE 'databasechangelog%'" \
                    -c "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                         WHERE n.nspname = 'public'" | paste -sd' '
}
JOBQ_DATABASE_URL=$url "$root/deploy/migrate.sh" update >/dev/null
after_update=$(objects)
echo "after update: relations/functions = $after_update"
[ "$after_update" != "0 0" ]
# The changesets newer than 014 are rolled back first, so that the steps below start from 014
# whatever has been added since; each is checked on the way.
notify_update_level() {
  psql -qAtX "$url" -c "SELECT CASE WHEN tgtype & 1 = 1 THEN 'row' ELSE 'statement' END FROM pg_trigger
                         WHERE tgname = 'job_queue_notify_update'"
}
[ "$(notify_update_level)" = row ] || { echo "018 not applied: $(notify_update_level)" >&2; exit 1; }
# 015 (queue settings) makes a table and two functions (with their triggers).
flow_objects() {
  psql -qAtX "$url" -c "SELECT (SELECT count(*) FROM pg_class WHERE relname = 'job_queue_settings')
                               + (SELECT count(*) FROM pg_proc WHERE proname IN ('jobq_claim_gate', 'jobq_notify_settings'))"
}
[ "$(flow_objects)" = 3 ] || { echo "015 not applied: $(flow_objects) of its 3 objects" >&2; exit 1; }
# 017 (running jobs): the edge processing -> cancelled, the columns, the stop and done triggers
# and the 7-argument enqueue function.
running() {
  psql -qAtX "$url" -c "SELECT count(*) FROM job_status_transition WHERE prev_status = 'archive_processing'
                          AND next_status = 'archive_cancelled'" \
                    -c "SELECT count(*) FROM information_schema.columns WHERE table_name = 'job_queue'
                          AND column_name IN ('output', 'progress_percent', 'progress_message', 'progress_at',
                                              'waited', 'timeout_ms')" \
                    -c "SELECT count(*) FROM pg_trigger WHERE tgname IN ('job_queue_notify_stop', 'job_queue_notify_done')" \
                    -c "SELECT count(*) FROM pg_proc WHERE proname = 'jobq_enqueue_batch' AND pronargs = 7" | paste -sd' '
}
[ "$(running)" = "1 6 2 1" ] || { echo "017 not applied: $(running)" >&2; exit 1; }
schedule_table() { psql -qAtX "$url" -c "SELECT to_regclass('job_schedule') IS NOT NULL"; }
[ "$(schedule_table)" = t ] || { echo "016 not applied" >&2; exit 1; }
# 019 (concurrency key): two columns, jobq_claim_keys and the 8-argument enqueue function; its
# rollback (its 4 changesets, the newest) leaves the settings trigger working without the column.
keyed() {
  psql -qAtX "$url" -c "SELECT count(*) FROM information_schema.columns
                          WHERE (table_name, column_name) IN (('job_queue', 'concurrency_key'),
                                                             ('job_queue_settings', 'key_concurrency_limit'))" \
                    -c "SELECT count(*) FROM pg_proc WHERE proname = 'jobq_claim_keys'
                          OR (proname = 'jobq_enqueue_batch' AND pronargs = 8)" | paste -sd' '
}
[ "$(keyed)" = "2 2" ] || { echo "019 not applied: $(keyed)" >&2; exit 1; }
# 020 (input checks): the queue, max_attempts and idempotency-key CHECKs are the column-specific
# trigger job_queue_input_check; its rollback (2 changesets, the newest) puts the three CHECKs
# back validated, over rows that keep to them.
input_checks() {
  psql -qAtX "$url" -c "SELECT count(*) || ':' || count(*) FILTER (WHERE convalidated) FROM pg_constraint
                         WHERE conname IN ('job_queue_queue_check', 'job_queue_max_attempts_check',
                                           'job_queue_idempotency_key_check')" \
                    -c "SELECT count(*) FROM pg_trigger WHERE tgname = 'job_queue_input_check'" | paste -sd' '
}
[ "$(input_checks)" = "0:0 1" ] || { echo "020 not applied: $(input_checks)" >&2; exit 1; }
psql -qX "$url" -c "SELECT count(*) FROM jobq_enqueue_batch(ARRAY['m20', 'm20'], NULL, NULL, NULL, NULL, NULL)" >/dev/null
JOBQ_DATABASE_URL=$url "$root/deploy/migrate.sh" -- rollback-count --count=2 >/dev/null
[ "$(input_checks)" = "3:3 0" ] || { echo "020 not rolled back: $(input_checks)" >&2; exit 1; }
[ "$(psql -qAtX "$url" -c "SELECT count(*) FROM pg_proc WHERE proname = 'jobq_input_reject'")" = 0 ]
psql -qX "$url" -c "TRUNCATE job_queue, job_failure" >/dev/null
echo "migrations: 020 rolled back (the three CHECKs are back and validated, the trigger and its function gone): ok"
JOBQ_DATABASE_URL=$url "$root/deploy/migrate.sh" -- rollback-count --count=4 >/dev/null
[ "$(keyed)" = "0 0" ] || { echo "019 not rolled back: $(keyed)" >&2; exit 1; }
psql -qAtX "$url" -v ON_ERROR_STOP=1 -c "INSERT INTO job_queue_settings (queue, paused) VALUES ('m19', true)" \
  -c "UPDATE job_queue_settings SET concurrency_limit = 2 WHERE queue = 'm19'" \
  -c "DELETE FROM job_queue_settings WHERE queue = 'm19'" >/dev/null \
  || { echo "after 019's rollback the settings trigger fails" >&2; exit 1; }
echo "migrations: 019 rolled back (its columns and functions are gone, 015's settings trigger works): ok"
back_to_014() {
  newer=$(psql -qAtX "$url" -c "SELECT count(*) FROM databasechangelog WHERE orderexecuted >
                                 (SELECT orderexecuted FROM databasechangelog WHERE id = '014-drop-single-status-keys')")
  [ "$newer" -eq 0 ] || JOBQ_DATABASE_URL=$url "$root/deploy/migrate.sh" -- rollback-count --count="$newer" >/dev/null
}
back_to_014
[ "$(notify_update_level)" = statement ] || { echo "018 not rolled back: $(notify_update_level)" >&2; exit 1; }
[ "$(running)" = "0 0 0 0" ] || { echo "017 not rolled back: $(running)" >&2; exit 1; }
[ "$(schedule_table)" = f ] || { echo "016 not rolled back: job_schedule is still there" >&2; exit 1; }
[ "$(flow_objects)" = 0 ] || { echo "015 not rolled back: $(flow_objects) objects left" >&2; exit 1; }
echo "migrations: the $newer changesets after 014 rolled back (018: the statement-level UPDATE trigger is back; 015's objects are gone; 017: its edge, columns, triggers and function are gone; 016: job_schedule is gone): ok"
# Steps back: rolling back changes/014-status-pair-key-only.yaml (1 changeset) must put the two
# single-column status keys back; then changes/013-failed-jobs-idx.yaml, 012-valid-indexes.yaml and
# 011-hot-heartbeats.yaml (1 + 1 + 2 changesets) must put the lease index back; then changes/010-queue-check-order.yaml alone (2)
# must restore 009's queue check; then changes/009-hot-path.yaml (5 changesets) the version-1
# queue check and enqueue function, which must still work; then forward again. On the way, an
# invalid index left by a failed concurrent build must be built again, forward and back.
defs() {
  psql -qAtX "$url" -c "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'job_queue_queue_check'" \
                    -c "SELECT prosrc LIKE '%Fast path%' FROM pg_proc WHERE proname = 'jobq_enqueue_batch' AND pronargs = 6" \
                    -c "SELECT prosrc LIKE '%Fast path%' FROM pg_proc WHERE proname = 'jobq_notify_pending'" \
                    -c "SELECT string_agg(tgname, ',' ORDER BY tgname) FROM pg_trigger
                         WHERE tgrelid = 'job_queue'::regclass AND tgname LIKE 'job_queue_status_guard%'" | paste -sd'|'
}
guards='job_queue_status_guard_insert,job_queue_status_guard_update'
check_010="ltrim(queue, 'abcdef" check_009="ltrim(queue, 'ABCDEF"
lease_indexes() {
  psql -qAtX "$url" -c "SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes
                         WHERE tablename = 'job_queue' AND indexname IN ('job_queue_lease_idx', 'job_queue_processing_idx')"
}
# index_state NAME: "valid <definition>" or "INVALID <definition>" ("" when there is none).
index_state() {
  psql -qAtX "$url" -c "SELECT CASE WHEN i.indisvalid THEN 'valid ' ELSE 'INVALID ' END || pg_get_indexdef(i.indexrelid)
                         FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = '$1'"
}
# leave_invalid NAME: what a concurrent build that failed leaves under NAME, an invalid index
# (here a unique one, which two processing jobs of one queue make fail).
leave_invalid() {
  psql -qAtX "$url" -c "INSERT INTO job_queue (queue, payload) VALUES ('jq_invalid', ''), ('jq_invalid', '')" \
                    -c "UPDATE job_queue SET curr_job_status = 'archive_processing', lease_owner = 'w',
                          lease_expires_at = now() + interval '1 hour', lease_token = nextval('job_lease_token_seq')
                        WHERE queue = 'jq_invalid'" >/dev/null
  if psql -qAtX "$url" -c "CREATE UNIQUE INDEX CONCURRENTLY $1 ON job_queue (queue)
                           WHERE curr_job_status = 'archive_processing'" 2>/dev/null; then
    echo "the failing build of $1 did not fail" >&2; exit 1
  fi
  psql -qAtX "$url" -c "DELETE FROM job_queue WHERE queue = 'jq_invalid'" >/dev/null
  case $(index_state "$1") in INVALID*) ;; *) echo "no invalid $1: $(index_state "$1")" >&2; exit 1 ;; esac
}
# expect_index NAME COLUMNS WHEN [STATE]: NAME is valid and is the partial index on COLUMNS over
# the jobs in STATE (archive_processing when not given).
expect_index() {
  case $(index_state "$1") in
    "valid CREATE INDEX $1 ON public.job_queue USING btree ($2) WHERE (curr_job_status = '${4:-archive_processing}'::text)") ;;
    *) echo "$3: $1 is '$(index_state "$1")'" >&2; exit 1 ;;
  esac
}
case $(defs) in *"$check_010"*"|t|t|$guards") ;; *) echo "010 not applied: $(defs)" >&2; exit 1 ;; esac
[ "$(lease_indexes)" = job_queue_processing_idx ] || { echo "011 not applied: $(lease_indexes)" >&2; exit 1; }
expect_index job_queue_processing_idx id "011 applied"
expect_index job_queue_failed_idx "queue, id" "013 applied" archive_failed
# 014 leaves job_queue one foreign key, the pair's; its rollback puts the two single-column keys
# back, validated.
fkeys() {
  psql -qAtX "$url" -c "SELECT string_agg(conname || ':' || convalidated, ',' ORDER BY conname)
                         FROM pg_constraint WHERE conrelid = 'job_queue'::regclass AND contype = 'f'"
}
[ "$(fkeys)" = job_queue_status_transition_fkey:true ] || { echo "014 not applied: $(fkeys)" >&2; exit 1; }
JOBQ_DATABASE_URL=$url "$root/deploy/migrate.sh" -- rollback-count --count=1 >/dev/null
want=job_queue_curr_job_status_fkey:true,job_queue_prev_job_status_fkey:true,job_queue_status_transition_fkey:true
[ "$(fkeys)" = "$want" ] || { echo "014 not rolled back: $(fkeys)" >&2; exit 1; }
echo "migrations: 014 drops the single-column status keys and its rollback validates them again: ok"
JOBQ_DATABASE_URL=$url "$root/deploy/migrate.sh" -- rollback-count --count=4 >/dev/null
[ "$(lease_indexes)" = job_queue_lease_idx ] || { echo "011 not rolled back: $(lease_indexes)" >&2; exit 1; }
expect_index job_queue_lease_idx lease_expires_at "011 rolled back"
[ -z "$(index_state job_queue_failed_idx)" ] || { echo "013 not rolled back" >&2; exit 1; }
# 011 and 013 failed half-way once (invalid indexes are left), and the update runs again.
leave_invalid job_queue_processing_idx
leave_invalid job_queue_failed_idx
JOBQ_DATABASE_URL=$url "$root/deploy/migrate.sh" update >/dev/null
expect_index job_queue_processing_idx id "update over an invalid leftover"
expect_index job_queue_failed_idx "queue, id" "update over an invalid leftover" archive_failed
back_to_014
# 011's rollback failed half-way once (an invalid lease index is left), and runs again (with
# 014, 013 and 012 before it).
leave_invalid job_queue_lease_idx
JOBQ_DATABASE_URL=$url "$root/deploy/migrate.sh" -- rollback-count --count=4 >/dev/null
expect_index job_queue_lease_idx lease_expires_at "rollback over an invalid leftover"
JOBQ_DATABASE_URL=$url "$root/deploy/migrate.sh" -- rollback-count --count=1 >/dev/null
[ "$(lease_indexes)" = job_queue_lease_idx ] || { echo "011 not rolled back: $(lease_indexes)" >&2; exit 1; }
case $(defs) in *"$check_010"*"|t|t|$guards") ;; *) echo "011 rollback touched 010: $(defs)" >&2; exit 1 ;; esac
echo "migrations: an invalid index left by a failed concurrent build is built again: ok"
# The rollbacks of 010 and 009 put a queue CHECK back. Every ALTER TABLE is recorded with whether
# the check is validated after it and whether its transaction holds job_queue's ACCESS EXCLUSIVE
# lock: validating (scanning the table) under that lock would stop every enqueue and claim.
psql -qX "$url" >/dev/null <<'SQL'
CREATE SCHEMA jq_probe;
CREATE TABLE jq_probe.alters (validated boolean, exclusive boolean);
CREATE FUNCTION jq_probe.record_alter() RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO jq_probe.alters
    SELECT c.convalidated,
           EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = pg_backend_pid() AND l.relation = c.conrelid
                      AND l.mode = 'AccessExclusiveLock' AND l.granted)
      FROM pg_constraint c WHERE c.conname = 'job_queue_queue_check';
END
$$;
CREATE EVENT TRIGGER jq_probe_alter ON ddl_command_end WHEN TAG IN ('ALTER TABLE')
    EXECUTE FUNCTION jq_probe.record_alter();
SQL
# validations: "<ALTERs that left the check validated> <of them, under the exclusive lock>" since
# the last call.
validations() {
  psql -qAtX "$url" -c "SELECT count(*) FILTER (WHERE validated) || ' ' || count(*) FILTER (WHERE validated AND exclusive)
                         FROM jq_probe.alters" -c "TRUNCATE jq_probe.alters" | head -n1
}
JOBQ_DATABASE_URL=$url "$root/deploy/migrate.sh" -- rollback-count --count=2 >/dev/null
case $(defs) in *"$check_009"*"|t|t|$guards") ;; *) echo "010 not rolled back: $(defs)" >&2; exit 1 ;; esac
[ "$(psql -qAtX "$url" -c "SELECT convalidated FROM pg_constraint WHERE conname = 'job_queue_queue_check'")" = t ]
v=$(validations); [ "$v" = "1 0" ] || { echo "010's rollback: validations, under the lock: $v" >&2; exit 1; }
JOBQ_DATABASE_URL=$url "$root/deploy/migrate.sh" -- rollback-count --count=5 >/dev/null
case $(defs) in *'~'*'|f|f|job_queue_status_guard') ;; *) echo "009 not rolled back: $(defs)" >&2; exit 1 ;; esac
[ "$(psql -qAtX "$url" -c "SELECT convalidated FROM pg_constraint WHERE conname = 'job_queue_queue_check'")" = t ]
v=$(validations); [ "$v" = "1 0" ] || { echo "009's rollback: validations, under the lock: $v" >&2; exit 1; }
psql -qX "$url" -c "SET client_min_messages = warning" -c "DROP EVENT TRIGGER jq_probe_alter" -c "DROP SCHEMA jq_probe CASCADE" >/dev/null
echo "migrations: the rollbacks of 010 and 009 validate the queue check without the exclusive lock: ok"
[ "$(psql -qAtX "$url" -c "SELECT count(*) FROM jobq_enqueue_batch(ARRAY['a','b'], NULL, NULL, NULL, NULL, NULL)")" = 2 ]
psql -qAtX "$url" -c "TRUNCATE job_queue, job_failure"
JOBQ_DATABASE_URL=$url "$root/deploy/migrate.sh" update >/dev/null
case $(defs) in "t|t|$guards") ;; *) echo "010, 009, 018 and 020 not re-applied: $(defs)" >&2; exit 1 ;; esac
[ "$(input_checks)" = "0:0 1" ] || { echo "020 not re-applied: $(input_checks)" >&2; exit 1; }
[ "$(lease_indexes)" = job_queue_processing_idx ] || { echo "011 not re-applied: $(lease_indexes)" >&2; exit 1; }
[ "$(fkeys)" = job_queue_status_transition_fkey:true ] || { echo "014 not re-applied: $(fkeys)" >&2; exit 1; }
[ "$(notify_update_level)" = row ] || { echo "018 not re-applied: $(notify_update_level)" >&2; exit 1; }
[ "$(schedule_table)" = t ] || { echo "016 not re-applied" >&2; exit 1; }
echo "migrations: 014, 013, 012, 011, 010, then 009 rolled back and applied again: ok"
JOBQ_DATABASE_URL=$url "$root/deploy/migrate.sh" rollback-all >/dev/null
after_rollback=$(objects)
echo "after rollback: relations/functions = $after_rollback"
[ "$after_rollback" = "0 0" ] || { echo "objects left after rollback" >&2; exit 1; }
JOBQ_DATABASE_URL=$url "$root/deploy/migrate.sh" update >/dev/null
again=$(objects)
echo "after update again: relations/functions = $again"
[ "$again" = "$after_update" ]
psql -qX "$maint" -c "DROP DATABASE jq_migrations_test WITH (FORCE)"
echo "migrations: apply, roll back, apply again: ok"
