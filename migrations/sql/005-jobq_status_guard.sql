-- jobq_status_guard(): BEFORE INSERT OR UPDATE FOR EACH ROW on job_queue.
--
-- Makes prev_job_status trigger-owned, so the composite foreign key
-- (prev_job_status, curr_job_status) -> job_status_transition checks every status
-- change against the list of legal transitions, whoever issues the statement:
--   INSERT: prev := curr. Only (archive_pending, archive_pending) exists, so a job
--           can only be created pending; any other state fails with 23503.
--   UPDATE, status changed:   prev := OLD.curr, so (OLD.curr, NEW.curr) must be an edge.
--   UPDATE, status unchanged: prev := OLD.prev, so prev cannot be forged.
-- It also owns status_changed_at, finished_at and updated_at (values written by
-- callers are overwritten), and keeps created_at immutable on UPDATE.
-- finished_at is set on entering completed/failed/cancelled and cleared on entering
-- pending/processing (a manual retry makes the job unfinished again).
CREATE FUNCTION jobq_status_guard() RETURNS trigger
LANGUAGE plpgsql
AS $fn$
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.prev_job_status   := NEW.curr_job_status;
        NEW.status_changed_at := now();
        -- Computed from the state (not forced NULL) so that inserting a finished job
        -- is rejected by the transition FK (23503) rather than by a CHECK.
        NEW.finished_at := CASE WHEN NEW.curr_job_status IN ('archive_completed', 'archive_failed', 'archive_cancelled')
                                THEN now() END;
    ELSE
        IF NEW.curr_job_status IS DISTINCT FROM OLD.curr_job_status THEN
            NEW.prev_job_status   := OLD.curr_job_status;
            NEW.status_changed_at := now();
            NEW.finished_at := CASE WHEN NEW.curr_job_status IN ('archive_completed', 'archive_failed', 'archive_cancelled')
                                    THEN now() END;
        ELSE
            NEW.prev_job_status   := OLD.prev_job_status;
            NEW.status_changed_at := OLD.status_changed_at;
            NEW.finished_at       := OLD.finished_at;
        END IF;
        NEW.created_at := OLD.created_at;
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END
$fn$;

COMMENT ON FUNCTION jobq_status_guard() IS
    'Trigger function of job_queue_status_guard: owns prev_job_status (so the transition FK validates every status change), status_changed_at, finished_at, updated_at.';
