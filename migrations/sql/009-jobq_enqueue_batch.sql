-- jobq_enqueue_batch(): enqueue many jobs with ONE INSERT statement.
--
-- Version 2 (changeset 009; version 1 is sql/006-jobq_enqueue_batch.sql). Same contract,
-- cheaper per call, measured with `make bench` (see README, Performance):
--  * the array-shape check is plain PL/pgSQL expressions; the query that builds the error
--    detail runs only when a check fails;
--  * a batch without idempotency keys (the common case) is one INSERT ... RETURNING, with no
--    dedup pass, no conflict handling and no array rebuilding;
--  * rows are inserted as the status guard would leave them (prev_job_status given, the
--    timestamps from their now() defaults), so its trigger's WHEN skips the per-row call.
--
-- Callable from any service's own transaction: the jobs exist (and the NOTIFY is
-- delivered) iff that transaction commits. The RPC service's Enqueue uses it too.
--
-- Arguments are parallel arrays; element i of each describes job i (ordinality 1..n).
--   p_queues           required, not NULL; every element not NULL
--   p_payloads         NULL element -> ''::bytea
--   p_priorities       NULL element -> 0
--   p_run_ats          NULL element -> now()
--   p_max_attempts     NULL element -> 25
--   p_idempotency_keys NULL or '' element -> no key
-- Every array except p_queues may also be NULL as a whole (= all defaults). Arrays
-- that are given must be one-dimensional and exactly as long as p_queues (22023
-- otherwise). The defaults mirror job_queue's column defaults; keep them in sync.
--
-- Returns one row (ord, id) per input element, in input order. ids of new jobs
-- increase with ord (except elements re-inserted after the race described in 3.). An element whose (queue, idempotency key) matches a job that is
-- still pending or processing gets that job's id and creates nothing; elements of
-- the same batch with the same (queue, key) all get the id of the first of them
-- (the first one's payload/priority/... win).
--
-- How:
--  1. Ids are pre-allocated from the identity sequence in input order and inserted
--     with OVERRIDING SYSTEM VALUE, so every element knows its id without matching
--     RETURNING rows back to inputs.
--  2. One INSERT ... ON CONFLICT (queue, idempotency_key) WHERE <idempotency index
--     predicate> DO NOTHING for the whole batch, so the statement-level NOTIFY trigger
--     fires once. Rows are inserted in (queue, key) order, so two batches with
--     overlapping keys wait on each other in the same order and cannot deadlock.
--  3. Only if some rows were skipped as conflicts: a second statement (new snapshot)
--     finds each skipped element's existing job by its key. If that job finished in
--     between (no unfinished job holds the key any more), the element is inserted
--     again in another round; after 3 rounds give up with 40001 (serialization_failure)
--     so the caller retries its transaction.
-- Under REPEATABLE READ/SERIALIZABLE a conflict with a job committed after the
-- caller's snapshot makes the INSERT itself raise 40001 (PostgreSQL's ON CONFLICT rule).
CREATE OR REPLACE FUNCTION jobq_enqueue_batch(
    p_queues           text[],
    p_payloads         bytea[],
    p_priorities       smallint[],
    p_run_ats          timestamptz[],
    p_max_attempts     integer[],
    p_idempotency_keys text[])
RETURNS TABLE (ord integer, id bigint)
LANGUAGE plpgsql
VOLATILE
-- Resolve job_queue/job_queue_id_seq in the schema the migration ran in, whatever
-- the calling service's search_path is.
SET search_path FROM CURRENT
AS $fn$
#variable_conflict use_column
DECLARE
    n         constant integer := coalesce(cardinality(p_queues), 0);
    v_bad     text;
    -- All per-element arrays below are 1-based, length n, and contain no NULLs
    -- (0 means "none"), so subscripting them is O(1).
    v_first   integer[];  -- ordinal of the first element with the same (queue, key); itself if keyless
    v_want    boolean[];  -- insert this element in the current round
    v_new     bigint[];   -- id pre-allocated for this element in the current round, else 0
    v_id      bigint[];   -- resolved job id, else 0
    v_tried   bigint;
    v_ins     bigint;
    v_left    bigint := 0;
BEGIN
    IF p_queues IS NULL THEN
        RAISE EXCEPTION 'jobq_enqueue_batch: p_queues must not be NULL'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- The shape check as simple expressions (no query) on the path every call takes.
    IF array_ndims(p_queues) > 1
       OR (p_payloads IS NOT NULL AND (cardinality(p_payloads) <> n OR array_ndims(p_payloads) > 1))
       OR (p_priorities IS NOT NULL AND (cardinality(p_priorities) <> n OR array_ndims(p_priorities) > 1))
       OR (p_run_ats IS NOT NULL AND (cardinality(p_run_ats) <> n OR array_ndims(p_run_ats) > 1))
       OR (p_max_attempts IS NOT NULL AND (cardinality(p_max_attempts) <> n OR array_ndims(p_max_attempts) > 1))
       OR (p_idempotency_keys IS NOT NULL
           AND (cardinality(p_idempotency_keys) <> n OR array_ndims(p_idempotency_keys) > 1)) THEN
        SELECT string_agg(format('%s has %s elements in %s dimension(s)', a.name, a.len, a.nd), '; ')
          INTO v_bad
          FROM (VALUES ('p_queues',           cardinality(p_queues),           array_ndims(p_queues)),
                       ('p_payloads',         cardinality(p_payloads),         array_ndims(p_payloads)),
                       ('p_priorities',       cardinality(p_priorities),       array_ndims(p_priorities)),
                       ('p_run_ats',          cardinality(p_run_ats),          array_ndims(p_run_ats)),
                       ('p_max_attempts',     cardinality(p_max_attempts),     array_ndims(p_max_attempts)),
                       ('p_idempotency_keys', cardinality(p_idempotency_keys), array_ndims(p_idempotency_keys)))
               AS a(name, len, nd)
         WHERE a.len IS NOT NULL AND (a.len <> n OR a.nd > 1);
        RAISE EXCEPTION 'jobq_enqueue_batch: arrays must be one-dimensional and as long as p_queues (%)', n
            USING ERRCODE = 'invalid_parameter_value', DETAIL = v_bad;
    END IF;
    IF n = 0 THEN
        RETURN;
    END IF;

    -- Fast path: no element has a key, so nothing can conflict or be deduplicated. Ids are
    -- taken above the ORDER BY, so they ascend with ord, and ord is recovered as the rank of
    -- the id (whatever order RETURNING yields the rows in).
    IF p_idempotency_keys IS NULL
       OR cardinality(array_remove(array_remove(p_idempotency_keys, NULL), '')) = 0 THEN
        RETURN QUERY
            WITH ins AS (
                INSERT INTO job_queue AS j (id, queue, payload, priority, run_at, max_attempts, prev_job_status)
                OVERRIDING SYSTEM VALUE
                SELECT nextval('job_queue_id_seq'::regclass), x.q, coalesce(x.p, ''::bytea),
                       coalesce(x.pr, 0), coalesce(x.ra, now()), coalesce(x.ma, 25), 'archive_pending'
                  FROM (SELECT u.q, u.p, u.pr, u.ra, u.ma
                          FROM unnest(p_queues, p_payloads, p_priorities, p_run_ats, p_max_attempts)
                               WITH ORDINALITY AS u(q, p, pr, ra, ma, o)
                         ORDER BY u.o) AS x
                RETURNING j.id
            )
            SELECT (row_number() OVER (ORDER BY ins.id))::integer, ins.id
              FROM ins
             ORDER BY ins.id;
        RETURN;
    END IF;

    -- Within-batch dedup: the first element of each (queue, key) group represents it.
    SELECT array_agg(s.f ORDER BY s.o), array_agg(s.f = s.o ORDER BY s.o)
      INTO v_first, v_want
      FROM (SELECT u.o::integer AS o,
                   (CASE WHEN nullif(u.k, '') IS NULL THEN u.o
                         ELSE min(u.o) OVER (PARTITION BY u.q, nullif(u.k, '')) END)::integer AS f
              FROM unnest(p_queues, p_idempotency_keys) WITH ORDINALITY AS u(q, k, o)) AS s;
    v_id := array_fill(0::bigint, ARRAY[n]);

    FOR v_round IN 1..3 LOOP
        WITH src AS MATERIALIZED (
            -- nextval() runs above the ORDER BY, so new ids ascend in input order.
            SELECT x.o, x.q, x.p, x.pr, x.ra, x.ma, x.k,
                   CASE WHEN x.want THEN nextval('job_queue_id_seq'::regclass) ELSE 0 END AS new_id
              FROM (SELECT u.o::integer AS o, u.q, u.p, u.pr, u.ra, u.ma, nullif(u.k, '') AS k, u.want
                      FROM unnest(p_queues, p_payloads, p_priorities, p_run_ats, p_max_attempts,
                                  p_idempotency_keys, v_want)
                           WITH ORDINALITY AS u(q, p, pr, ra, ma, k, want, o)
                     ORDER BY u.o) AS x
        ), ins AS (
            INSERT INTO job_queue AS j (id, queue, payload, priority, run_at, max_attempts, idempotency_key,
                                        prev_job_status)
            OVERRIDING SYSTEM VALUE
            SELECT s.new_id, s.q, coalesce(s.p, ''::bytea), coalesce(s.pr, 0), coalesce(s.ra, now()),
                   coalesce(s.ma, 25), s.k, 'archive_pending'
              FROM src AS s
             WHERE s.new_id <> 0
             ORDER BY s.q, s.k, s.o
            ON CONFLICT (queue, idempotency_key)
               WHERE idempotency_key IS NOT NULL
                 AND curr_job_status IN ('archive_pending', 'archive_processing')
               DO NOTHING
            RETURNING 1
        )
        SELECT (SELECT array_agg(s.new_id ORDER BY s.o) FROM src AS s),
               (SELECT count(*) FROM src AS s WHERE s.new_id <> 0),
               (SELECT count(*) FROM ins)
          INTO v_new, v_tried, v_ins;

        IF v_ins = v_tried THEN
            -- Common path: everything attempted was inserted under its pre-allocated id.
            SELECT array_agg(CASE WHEN t.new_id <> 0 THEN t.new_id ELSE t.id END ORDER BY t.g)
              INTO v_id
              FROM unnest(v_new, v_id) WITH ORDINALITY AS t(new_id, id, g);
            v_left := 0;
            EXIT;
        END IF;

        -- Some keyed elements hit an unfinished job with the same key. This statement
        -- sees what committed meanwhile; its per-element lookups use the primary key
        -- and job_queue_idempotency_idx.
        SELECT array_agg(
                 CASE WHEN t.new_id = 0 THEN t.id
                      WHEN EXISTS (SELECT 1 FROM job_queue AS j WHERE j.id = t.new_id) THEN t.new_id
                      ELSE coalesce((SELECT j.id FROM job_queue AS j
                                      WHERE j.queue = t.q
                                        AND j.idempotency_key = nullif(t.k, '')
                                        AND j.curr_job_status IN ('archive_pending', 'archive_processing')), 0)
                 END ORDER BY t.g)
          INTO v_id
          FROM unnest(v_new, v_id, p_queues, p_idempotency_keys) WITH ORDINALITY AS t(new_id, id, q, k, g);

        -- Still unresolved: the conflicting job finished in between; insert those again.
        SELECT array_agg(t.f = t.g AND t.id = 0 ORDER BY t.g),
               count(*) FILTER (WHERE t.f = t.g AND t.id = 0)
          INTO v_want, v_left
          FROM unnest(v_first, v_id) WITH ORDINALITY AS t(f, id, g);
        EXIT WHEN v_left = 0;
    END LOOP;

    IF v_left > 0 THEN
        RAISE EXCEPTION 'jobq_enqueue_batch: idempotency keys kept conflicting with jobs finishing concurrently'
            USING ERRCODE = 'serialization_failure',
                  HINT = 'Retry the transaction.';
    END IF;

    RETURN QUERY
        SELECT t.g::integer, v_id[t.f]
          FROM unnest(v_first) WITH ORDINALITY AS t(f, g)
         ORDER BY t.g;
END
$fn$;

COMMENT ON FUNCTION jobq_enqueue_batch(text[], bytea[], smallint[], timestamptz[], integer[], text[]) IS
    'Enqueue jobs from parallel arrays in one INSERT (one NOTIFY); returns (ord, id) in input order; idempotency keys dedupe against unfinished jobs and within the batch.';
