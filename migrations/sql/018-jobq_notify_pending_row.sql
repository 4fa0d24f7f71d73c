-- jobq_notify_pending_row(): row-level AFTER UPDATE trigger function on job_queue, for the rows
-- an UPDATE makes claimable (a retry, a failure with attempts left, the rescuer taking back an
-- expired lease, a reschedule). Its trigger's WHEN clause picks those rows, so claims,
-- heartbeats and completions run no function at all and capture no transition tables
-- (changes/018-hot-path-triggers-checks.yaml).
--
-- Payloads are lines of the format in sql/007-jobq_notify_pending.sql:
--   D <queue> *       the row is due now: rescan <queue>. The ids are left out on purpose:
--                     PostgreSQL delivers identical payloads of one transaction once, so a
--                     statement that makes many jobs of a queue pending sends one notification
--                     per queue, as the statement-level trigger did.
--   L <epoch_ms>      the row runs later, at that time (rounded up).
-- Enqueues keep the statement-level INSERT trigger (jobq_notify_pending), which lists the ids.
CREATE FUNCTION jobq_notify_pending_row() RETURNS trigger
LANGUAGE plpgsql
AS $fn$
BEGIN
    IF NEW.run_at <= clock_timestamp() THEN
        PERFORM pg_notify('jobq_pending', 'D ' || NEW.queue || ' *');
    ELSE
        PERFORM pg_notify('jobq_pending', 'L ' || ceil(extract(epoch FROM NEW.run_at) * 1000)::bigint);
    END IF;
    RETURN NULL;
END
$fn$;

COMMENT ON FUNCTION jobq_notify_pending_row() IS
    'Row-level AFTER UPDATE trigger function: announces a job an UPDATE made pending (format in sql/018-jobq_notify_pending_row.sql).';
