-- jobq_retry_delay_ms(attempts, base_ms, max_ms): backoff before the next try of a job
-- whose attempt number `attempts` (job_queue.attempts, >= 1 after a claim) failed.
-- Used by the service's Fail and lease-rescue statements: run_at := now() + delay.
--
--   nominal = min(max_ms, base_ms * 2^(attempts - 1))     exponential, capped
--   result  = nominal/2 + random() * nominal/2            "equal jitter", whole ms
--
-- Jitter spreads out the retries of many jobs that failed together (e.g. a dependency
-- outage) instead of bringing them all back at the same instant, while never retrying
-- sooner than half the nominal delay. Out-of-range inputs are clamped (attempts < 1
-- counts as 1; negative base/max as 0), so the function never raises. VOLATILE
-- because of random().
CREATE FUNCTION jobq_retry_delay_ms(p_attempts integer, p_base_ms integer, p_max_ms integer)
RETURNS bigint
LANGUAGE sql
VOLATILE
PARALLEL SAFE
AS $fn$
    SELECT ceil(d / 2 + random() * d / 2)::bigint
      FROM (SELECT least(greatest(coalesce(p_max_ms, 0), 0)::double precision,
                         greatest(coalesce(p_base_ms, 0), 0)::double precision
                           * power(2::double precision,
                                   least(greatest(coalesce(p_attempts, 1), 1) - 1, 62))) AS d) AS s;
$fn$;

COMMENT ON FUNCTION jobq_retry_delay_ms(integer, integer, integer) IS
    'Retry backoff in ms after failed attempt N: min(max, base*2^(N-1)), equal jitter (between half and all of it).';
