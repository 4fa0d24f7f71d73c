-- jobq_notify_pending() version 2 (changeset 009; version 1 and the payload format:
-- sql/007-jobq_notify_pending.sql). The same payloads, cheaper for the common INSERT: when every
-- new pending row is of one queue and due now, one query builds the single 'D' line instead of
-- four queries (measured: a 50-job enqueue statement 1.39 -> 1.29 ms with pgbench, README
-- "Performance"). Everything else takes version 1's path unchanged.
CREATE OR REPLACE FUNCTION jobq_notify_pending() RETURNS trigger
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
    v_first   text;
    v_last    text;
    v_all_due boolean;
    v_list    text;
BEGIN
    -- Fast path for the common INSERT: the new rows are all of one queue and all due now, so
    -- the payload is the single line 'D <queue> <ids>' (or 'D <queue> *' when too long), the
    -- same text the general path below would build, from one query instead of four.
    IF TG_OP = 'INSERT' THEN
        SELECT min(n.queue), max(n.queue), bool_and(n.run_at <= v_now),
               string_agg(n.id::text, ',' ORDER BY n.id)
          INTO v_first, v_last, v_all_due, v_list
          FROM new_rows AS n
         WHERE n.curr_job_status = 'archive_pending';
        IF v_first IS NULL THEN
            RETURN NULL;
        END IF;
        IF v_first = v_last AND v_all_due THEN
            v_payload := 'D ' || v_first || ' ' || v_list;
            IF octet_length(v_payload) > c_budget THEN
                v_payload := 'D ' || v_first || ' *';
            END IF;
            PERFORM pg_notify('jobq_pending', v_payload);
            RETURN NULL;
        END IF;
    END IF;

    -- Cheap exit for the common no-op statements (claims, heartbeats, completes).
    IF TG_OP = 'UPDATE' AND NOT EXISTS (SELECT 1 FROM new_rows AS n WHERE n.curr_job_status = 'archive_pending') THEN
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
