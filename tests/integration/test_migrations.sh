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
# Steps back: rolling back changes/011-hot-heartbeats.yaml alone (2 changesets) must put the
# lease index back; then changes/010-queue-check-order.yaml alone (2) must restore 009's queue
# check; then changes/009-hot-path.yaml (5 changesets) the version-1 queue check and
# enqueue function, which must still work; then forward again.
defs() {
  psql -qAtX "$url" -c "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'job_queue_queue_check'" \
                    -c "SELECT prosrc LIKE '%Fast path%' FROM pg_proc WHERE proname = 'jobq_enqueue_batch'" \
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
case $(defs) in *"$check_010"*"|t|t|$guards") ;; *) echo "010 not applied: $(defs)" >&2; exit 1 ;; esac
[ "$(lease_indexes)" = job_queue_processing_idx ] || { echo "011 not applied: $(lease_indexes)" >&2; exit 1; }
JOBQ_DATABASE_URL=$url "$root/deploy/migrate.sh" -- rollback-count --count=2 >/dev/null
[ "$(lease_indexes)" = job_queue_lease_idx ] || { echo "011 not rolled back: $(lease_indexes)" >&2; exit 1; }
case $(defs) in *"$check_010"*"|t|t|$guards") ;; *) echo "011 rollback touched 010: $(defs)" >&2; exit 1 ;; esac
JOBQ_DATABASE_URL=$url "$root/deploy/migrate.sh" -- rollback-count --count=2 >/dev/null
case $(defs) in *"$check_009"*"|t|t|$guards") ;; *) echo "010 not rolled back: $(defs)" >&2; exit 1 ;; esac
[ "$(psql -qAtX "$url" -c "SELECT convalidated FROM pg_constraint WHERE conname = 'job_queue_queue_check'")" = t ]
JOBQ_DATABASE_URL=$url "$root/deploy/migrate.sh" -- rollback-count --count=5 >/dev/null
case $(defs) in *'~'*'|f|f|job_queue_status_guard') ;; *) echo "009 not rolled back: $(defs)" >&2; exit 1 ;; esac
[ "$(psql -qAtX "$url" -c "SELECT count(*) FROM jobq_enqueue_batch(ARRAY['a','b'], NULL, NULL, NULL, NULL, NULL)")" = 2 ]
psql -qAtX "$url" -c "TRUNCATE job_queue, job_failure"
JOBQ_DATABASE_URL=$url "$root/deploy/migrate.sh" update >/dev/null
case $(defs) in *"$check_010"*"|t|t|$guards") ;; *) echo "010 and 009 not re-applied: $(defs)" >&2; exit 1 ;; esac
[ "$(lease_indexes)" = job_queue_processing_idx ] || { echo "011 not re-applied: $(lease_indexes)" >&2; exit 1; }
[ "$(psql -qAtX "$url" -c "SELECT convalidated FROM pg_constraint WHERE conname = 'job_queue_queue_check'")" = t ]
echo "migrations: 011, 010, then 009 rolled back and applied again: ok"
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
