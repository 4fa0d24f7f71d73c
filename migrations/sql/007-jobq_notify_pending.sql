-- jobq_notify_pending(): statement-level AFTER INSERT / AFTER UPDATE trigger function
-- on job_queue (transition tables new_rows, and old_rows for UPDATE).
--
-- Sends AT MOST ONE pg_notify('jobq_pending', payload) per statement, and none when
-- no row became pending, so claim, heartbeat, complete and fail statements never
-- notify. Why statement-level and this frugal: a transaction that has NOTIFYed takes
-- a cluster-wide lock while it commits (notifying commits are serialised), and every
-- notification is copied to every listener; one per row would multiply both, and
-- PostgreSQL caps a payload at 8000 bytes.
--
-- A row "became pending" when it is in new_rows with curr_job_status =
-- 'archive_pending' and: it was inserted, or it was not pending before, or its
-- run_at changed (rescheduled).
--
-- Payload: ASCII lines separated by '\n' (no trailing newline), parseable without a
-- JSON library. Queue names cannot contain blanks, commas or newlines
-- (job_queue_queue_check).
--   D <queue> <id>,<id>,...   jobs of <queue> that became pending and are due now
--                             (run_at <= clock_timestamp()), ids ascending; one line
--                             per queue, lines ordered by queue name
--   D <queue> *               same, but too many ids to list: rescan <queue>
--   L <epoch_ms>              earliest run_at (Unix epoch milliseconds, rounded up) of
--                             the rows that became pending with run_at in the future;
--                             at most one, always last; absent if there are none
--   *                         the whole payload, alone: too much to describe even with
--                             "D <queue> *" lines; rescan every queue and recompute
--                             the next wake-up time from the table
-- Id lists are replaced by '*' queue by queue, longest lists first, until the payload
-- fits in 7000 bytes (NOTIFY's limit is 8000).
-- The notification is delivered at commit and dropped on rollback. Listeners must
-- still claim through the normal claim query: the ids are hints, the job may already
-- have been claimed, cancelled or rescheduled by the time they read it.
CREATE FUNCTION jobq_notify_pending() RETURNS trigger
LANGUAGE plpgsql
AS $fn$
DECLARE
    c_budget  constant integer := 7000;
    v_now     constant timestamptz := clock_timestamp();
    v_ids     bigint[];
    v_queues  text[];
    v_run_ats timestamptz[];
    v_next    timestamptz;
    v_l_line  text;
    v_d_lines text;
    v_payload text;
BEGIN
    -- Cheap exit for the common no-op statements (claims, heartbeats, completes).
    IF NOT EXISTS (SELECT 1 FROM new_rows AS n WHERE n.curr_job_status = 'archive_pending') THEN
        RETURN NULL;
    END IF;

    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(n.id), array_agg(n.queue), array_agg(n.run_at)
          INTO v_ids, v_queues, v_run_ats
          FROM new_rows AS n
         WHERE n.curr_job_status = 'archive_pending';
    ELSE
        SELECT array_agg(n.id), array_agg(n.queue), array_agg(n.run_at)
          INTO v_ids, v_queues, v_run_ats
          FROM new_rows AS n
          LEFT JOIN old_rows AS o ON o.id = n.id
         WHERE n.curr_job_status = 'archive_pending'
           AND (o.id IS NULL
                OR o.curr_job_status <> 'archive_pending'
                OR o.run_at IS DISTINCT FROM n.run_at);
    END IF;
    IF v_ids IS NULL THEN
        RETURN NULL;
    END IF;

    SELECT min(r.run_at) INTO v_next
      FROM unnest(v_run_ats) AS r(run_at)
     WHERE r.run_at > v_now;
    IF v_next IS NOT NULL THEN
        v_l_line := 'L ' || ceil(extract(epoch FROM v_next) * 1000)::bigint;
    END IF;

    WITH b AS (
        SELECT * FROM unnest(v_ids, v_queues, v_run_ats) AS t(id, queue, run_at)
    ), due AS (
        SELECT b.queue, string_agg(b.id::text, ',' ORDER BY b.id) AS ids
          FROM b
         WHERE b.run_at <= v_now
         GROUP BY b.queue
    ), sized AS (
        SELECT d.queue, d.ids,
               octet_length(d.queue) + octet_length(d.ids) + 4 AS full_len,  -- 'D ' q ' ' ids '\n'
               octet_length(d.ids) - 1                          AS saving     -- ids -> '*'
          FROM due AS d
    ), ranked AS (
        SELECT s.queue, s.ids,
               coalesce(sum(s.saving) OVER (ORDER BY s.saving DESC, s.queue
                                            ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS saved_before,
               sum(s.full_len) OVER () + coalesce(octet_length(v_l_line) + 1, 0) - c_budget AS excess
          FROM sized AS s
    )
    SELECT string_agg('D ' || r.queue || ' ' || CASE WHEN r.saved_before < r.excess THEN '*' ELSE r.ids END,
                      E'\n' ORDER BY r.queue)
      INTO v_d_lines
      FROM ranked AS r;

    v_payload := concat_ws(E'\n', v_d_lines, v_l_line);
    IF octet_length(v_payload) > c_budget THEN
        v_payload := '*';
    END IF;
    PERFORM pg_notify('jobq_pending', v_payload);
    RETURN NULL;
END
$fn$;

COMMENT ON FUNCTION jobq_notify_pending() IS
    'Statement-level trigger function: at most one NOTIFY jobq_pending per statement, listing jobs that became pending (format in the migration file sql/007-jobq_notify_pending.sql).';
