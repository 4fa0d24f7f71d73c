-- jobq_enqueue_batch(7 arguments): jobq_enqueue_batch(6 arguments) (sql/009-jobq_enqueue_batch.sql,
-- unchanged, which other services keep calling) plus p_timeouts_ms, each job's time limit in
-- milliseconds (NULL array or element, or 0: none; changes/017-running-jobs.yaml). The jobs are
-- made by the 6-argument version; the limits are written to those of them this call created (an
-- idempotency key's earlier job keeps its own), by a second statement that sees the first's rows.
-- Only batches with a time limit take this path (jobqd calls the 6-argument version otherwise),
-- so the common enqueue pays nothing for it.
CREATE FUNCTION jobq_enqueue_batch(
    p_queues text[], p_payloads bytea[], p_priorities smallint[], p_run_ats timestamptz[],
    p_max_attempts integer[], p_idempotency_keys text[], p_timeouts_ms integer[])
RETURNS TABLE (ord bigint, id bigint)
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_ords bigint[];
    v_ids  bigint[];
BEGIN
    IF p_timeouts_ms IS NOT NULL AND (array_ndims(p_timeouts_ms) <> 1
                                      OR cardinality(p_timeouts_ms) <> cardinality(p_queues)) THEN
        RAISE EXCEPTION 'jobq_enqueue_batch: p_timeouts_ms must be one-dimensional and as long as p_queues'
            USING ERRCODE = '22023';
    END IF;
    SELECT array_agg(e.ord ORDER BY e.ord), array_agg(e.id ORDER BY e.ord)
      INTO v_ords, v_ids
      FROM jobq_enqueue_batch(p_queues, p_payloads, p_priorities, p_run_ats, p_max_attempts,
                              p_idempotency_keys) AS e;
    IF p_timeouts_ms IS NOT NULL THEN
        UPDATE job_queue j SET timeout_ms = t.ms, updated_at = now()
          FROM unnest(v_ids, p_timeouts_ms) AS t(id, ms)
         WHERE j.id = t.id AND t.ms > 0 AND j.created_at = now() AND j.timeout_ms IS NULL;
    END IF;
    RETURN QUERY SELECT u.ord, u.id FROM unnest(v_ords, v_ids) AS u(ord, id);
END
$fn$;

COMMENT ON FUNCTION jobq_enqueue_batch(text[], bytea[], smallint[], timestamptz[], integer[], text[], integer[]) IS
    'jobq_enqueue_batch with per-job time limits (ms; NULL or 0 = none), for jobs this call creates.';
