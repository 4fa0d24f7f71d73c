-- The rollback of 019-jobq_notify_settings.sql: jobq_notify_settings() as migration 015 made it.
-- jobq_notify_settings(): row trigger on job_queue_settings. Tells every jobqd (LISTEN
-- jobq_pending; payload format in sql/007-jobq_notify_pending.sql, to which this adds a kind) the
-- queue's flow settings as they are now:
--   Q <queue> <paused: 0|1> <concurrency limit|-> <rate limit|-> <rate period ms|->
-- A jobqd announces nothing of a paused queue. When the queue can be claimed from (not paused)
-- and has due pending jobs, a 'D <queue> *' line follows, so that a resume (or a raised limit)
-- announces the queue at once on every replica, and the Claims waiting for it look. A deleted row
-- is sent as a queue without settings. jobqd versions that do not know Q lines skip them.
CREATE OR REPLACE FUNCTION jobq_notify_settings() RETURNS trigger
LANGUAGE plpgsql
AS $fn$
DECLARE
    r         job_queue_settings;
    v_payload text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        r := OLD;
        r.paused := false;
        r.concurrency_limit := NULL;
        r.rate_limit := NULL;
        r.rate_period_ms := NULL;
    ELSE
        r := NEW;
    END IF;
    v_payload := 'Q ' || r.queue || ' ' || CASE WHEN r.paused THEN '1' ELSE '0' END
                 || ' ' || coalesce(r.concurrency_limit::text, '-')
                 || ' ' || coalesce(r.rate_limit::text, '-')
                 || ' ' || coalesce(r.rate_period_ms::text, '-');
    IF NOT r.paused AND EXISTS (SELECT 1 FROM job_queue
                                 WHERE queue = r.queue AND curr_job_status = 'archive_pending'
                                   AND run_at <= now()) THEN
        v_payload := v_payload || E'\nD ' || r.queue || ' *';
    END IF;
    PERFORM pg_notify('jobq_pending', v_payload);
    RETURN NULL;
END
$fn$;

COMMENT ON FUNCTION jobq_notify_settings() IS
    'Row trigger on job_queue_settings: NOTIFY jobq_pending with the queue''s settings (Q line) and, when it is claimable and has due jobs, a D line (migrations/sql/015-jobq_notify_settings.sql).';
