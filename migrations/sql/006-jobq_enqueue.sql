-- jobq_enqueue(): enqueue one job; returns its id (or the id of the unfinished job
-- of the same queue holding p_idempotency_key). A thin wrapper over
-- jobq_enqueue_batch so there is a single code path. NULL arguments mean defaults.
-- p_priority is smallint: pass 5::smallint (or an untyped parameter) from SQL.
CREATE FUNCTION jobq_enqueue(
    p_queue           text,
    p_payload         bytea,
    p_priority        smallint    DEFAULT 0,
    p_run_at          timestamptz DEFAULT NULL,
    p_max_attempts    integer     DEFAULT 25,
    p_idempotency_key text        DEFAULT NULL)
RETURNS bigint
LANGUAGE sql
VOLATILE
SET search_path FROM CURRENT
AS $fn$
    SELECT b.id
      FROM jobq_enqueue_batch(ARRAY[p_queue], ARRAY[p_payload], ARRAY[p_priority], ARRAY[p_run_at],
                              ARRAY[p_max_attempts], ARRAY[p_idempotency_key]) AS b;
$fn$;

COMMENT ON FUNCTION jobq_enqueue(text, bytea, smallint, timestamptz, integer, text) IS
    'Enqueue one job (wrapper over jobq_enqueue_batch); returns the job id, or the id of the unfinished job with the same queue and idempotency key.';
