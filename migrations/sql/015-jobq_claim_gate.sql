-- jobq_claim_gate(queue, want): how many jobs a claim of `queue` that asks for `want` may take
-- now, for a queue whose settings row has a concurrency or a rate limit (the claim statement,
-- service/jq_db_sql.c CLAIM_GATE, calls it only then; a queue without limits pays a primary-key
-- lookup and no call).
--
-- It locks the queue's settings row until the claim's transaction ends, so the claims of a
-- limited queue run one after the other, on every replica alike. That is what makes the count
-- right: each statement of this (VOLATILE) function reads a fresh snapshot under READ COMMITTED,
-- taken after the lock was granted, so it sees every job that the claims before it took (they
-- committed before the lock came free). Counted from the claim statement's own snapshot, taken
-- before it waited, two claims could both see the last slot free.
--
-- Concurrency: at most concurrency_limit jobs of the queue processing; the claim may take the
-- free slots.
-- Rate: at most rate_limit claimed jobs per window of rate_period_ms, windows aligned on the Unix
-- epoch (a period of 1000 ms: each whole second), on the database's clock (now(), the claim
-- transaction's start, which is also the claimed jobs' status_changed_at). The grant is counted
-- when it is made: it is bounded by the due jobs this snapshot sees, so it matches what the claim
-- takes except in rare races (a job enqueued while the claim waited for the lock, invisible to the
-- claim's older snapshot; the reply's byte budget): then the window admits fewer, never more.
-- A claim whose transaction began in an earlier window than the one counted gets nothing.
CREATE FUNCTION jobq_claim_gate(p_queue text, p_want integer) RETURNS integer
LANGUAGE plpgsql
AS $fn$
DECLARE
    s         job_queue_settings;
    v_n       integer := p_want;
    v_count   integer;
    v_window  timestamptz;
    v_used    integer;
BEGIN
    SELECT * INTO s FROM job_queue_settings WHERE queue = p_queue FOR UPDATE;
    IF NOT FOUND THEN
        RETURN p_want;
    END IF;
    IF s.paused THEN
        RETURN 0;
    END IF;
    IF s.concurrency_limit IS NOT NULL THEN
        -- Stops counting at the limit: a full queue needs no more than that to know it is full.
        SELECT count(*) INTO v_count
          FROM (SELECT 1 FROM job_queue
                 WHERE queue = p_queue AND curr_job_status = 'archive_processing'
                 LIMIT s.concurrency_limit) AS running;
        v_n := least(v_n, s.concurrency_limit - v_count);
    END IF;
    IF s.rate_limit IS NOT NULL AND v_n > 0 THEN
        v_window := to_timestamp(floor(extract(epoch FROM now()) * 1000 / s.rate_period_ms)
                                 * s.rate_period_ms / 1000.0);
        IF s.rate_window_start IS NOT NULL AND v_window < s.rate_window_start THEN
            RETURN 0;
        END IF;
        v_used := CASE WHEN s.rate_window_start = v_window THEN s.rate_window_claims ELSE 0 END;
        v_n := least(v_n, s.rate_limit - v_used);
        IF v_n > 0 THEN
            SELECT count(*) INTO v_count
              FROM (SELECT 1 FROM job_queue
                     WHERE queue = p_queue AND curr_job_status = 'archive_pending' AND run_at <= now()
                     LIMIT v_n) AS due;
            v_n := v_count;
        END IF;
        IF v_n > 0 OR s.rate_window_start IS DISTINCT FROM v_window THEN
            UPDATE job_queue_settings
               SET rate_window_start = v_window, rate_window_claims = v_used + greatest(v_n, 0)
             WHERE queue = p_queue;
        END IF;
    END IF;
    RETURN greatest(v_n, 0);
END
$fn$;

COMMENT ON FUNCTION jobq_claim_gate(text, integer) IS
    'How many jobs a claim of a limited queue may take now; locks the queue''s job_queue_settings row until the claim commits (migrations/sql/015-jobq_claim_gate.sql).';
