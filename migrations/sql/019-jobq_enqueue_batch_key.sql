-- jobq_enqueue_batch(8 arguments): jobq_enqueue_batch(7 arguments) (sql/017-jobq_enqueue_batch_timeout.sql)
-- plus p_concurrency_keys, each job's concurrency key (NULL array or element, or '': none;
-- changes/019-concurrency-key.yaml). The jobs are made by the 7-argument version; the keys are
-- written to those of them this call created (an idempotency key's earlier job keeps its own),
-- by a second statement that sees the first's rows. The new rows are not yet visible to other
-- transactions, so no claim can take one before its key is written.
-- Only batches with a key take this path (jobqd calls a narrower version otherwise), so the
-- common enqueue pays nothing for it. The 6- and 7-argument versions stay for other services.
CREATE FUNCTION jobq_enqueue_batch(
    p_queues text[], p_payloads bytea[], p_priorities smallint[], p_run_ats timestamptz[],
    p_max_attempts integer[], p_idempotency_keys text[], p_timeouts_ms integer[],
    p_concurrency_keys text[])
RETURNS TABLE (ord bigint, id bigint)
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_ords bigint[];
    v_ids  bigint[];
BEGIN
    IF p_concurrency_keys IS NOT NULL AND (array_ndims(p_concurrency_keys) <> 1
                                           OR cardinality(p_concurrency_keys) <> cardinality(p_queues)) THEN
        RAISE EXCEPTION 'jobq_enqueue_batch: p_concurrency_keys must be one-dimensional and as long as p_queues'
            USING ERRCODE = '22023';
    END IF;
    SELECT array_agg(e.ord ORDER BY e.ord), array_agg(e.id ORDER BY e.ord)
      INTO v_ords, v_ids
      FROM jobq_enqueue_batch(p_queues, p_payloads, p_priorities, p_run_ats, p_max_attempts,
                              p_idempotency_keys, p_timeouts_ms) AS e;
    IF p_concurrency_keys IS NOT NULL THEN
        UPDATE job_queue j SET concurrency_key = t.k, updated_at = now()
          FROM unnest(v_ids, p_concurrency_keys) AS t(id, k)
         WHERE j.id = t.id AND t.k <> '' AND j.created_at = now() AND j.concurrency_key IS NULL;
    END IF;
    RETURN QUERY SELECT u.ord, u.id FROM unnest(v_ords, v_ids) AS u(ord, id);
END
$fn$;

COMMENT ON FUNCTION jobq_enqueue_batch(text[], bytea[], smallint[], timestamptz[], integer[], text[], integer[], text[]) IS
    'jobq_enqueue_batch with per-job concurrency keys (NULL or '''' = none) and time limits, for jobs this call creates.';
