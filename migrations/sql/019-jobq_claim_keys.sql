-- jobq_claim_keys(queue): the queue's running (archive_processing) jobs per concurrency key, as
-- a jsonb object {key: count}, for a claim of a queue with a key limit (the claim statement,
-- service/jq_db_sql.c CLAIM_KEYS_CTE, calls it only then, after jobq_claim_gate locked the
-- queue's settings row).
--
-- VOLATILE, so its statement reads a fresh snapshot under READ COMMITTED, taken after the lock
-- was granted: it sees the jobs that the claims before it took (they committed before the lock
-- came free), which the claim statement's own snapshot, taken before it waited, may not. The
-- jobs that the calling statement itself completes (Complete+claim) still count as running: the
-- claim then takes fewer, never more.
-- It reads the processing jobs through job_queue_processing_idx: as many as the workers run.
CREATE FUNCTION jobq_claim_keys(p_queue text) RETURNS jsonb
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_busy jsonb;
BEGIN
    SELECT COALESCE(jsonb_object_agg(k.concurrency_key, k.n), '{}'::jsonb) INTO v_busy
      FROM (SELECT concurrency_key, count(*) AS n FROM job_queue
             WHERE curr_job_status = 'archive_processing' AND queue = p_queue
               AND concurrency_key IS NOT NULL
             GROUP BY concurrency_key) AS k;
    RETURN v_busy;
END
$fn$;

COMMENT ON FUNCTION jobq_claim_keys(text) IS
    'Running jobs per concurrency key of a key-limited queue, read after the claim locked its settings row (migrations/sql/019-jobq_claim_keys.sql).';
