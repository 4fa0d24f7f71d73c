-- jobq_input_reject(): BEFORE INSERT OR UPDATE OF queue, max_attempts, idempotency_key FOR EACH
-- ROW on job_queue (trigger job_queue_input_check), fired only when the row breaks one of the
-- rules on those columns (the trigger's WHEN clause is the rules). It refuses the row as the
-- CHECK constraints it replaces did: SQLSTATE 23514 (check_violation), the same message, and the
-- old constraint's name in the error's constraint field, so callers see no difference.
--
-- Why a trigger and not CHECK constraints: PostgreSQL evaluates every CHECK of a table on every
-- UPDATE, and rebuilds each constraint's expression from its stored text once per statement,
-- whatever columns the statement writes. A column-specific trigger is not even considered when
-- the UPDATE does not name one of its columns, so claims, heartbeats and completions, which never
-- write a job's queue, attempts limit or idempotency key, pay nothing for these rules, and an
-- INSERT pays what it paid before (changes/020-input-checks.yaml has the measurements).
CREATE FUNCTION jobq_input_reject() RETURNS trigger
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_rule text;
BEGIN
    v_rule := CASE
        WHEN NOT (octet_length(NEW.queue) BETWEEN 1 AND 64
                  AND ltrim(textsend(NEW.queue), '\x6162636465666768696a6b6c6d6e6f707172737475767778797a5f303132333435363738392d2e4142434445464748494a4b4c4d4e4f505152535455565758595a'::bytea) = ''::bytea)
            THEN 'job_queue_queue_check'
        WHEN NOT (NEW.max_attempts BETWEEN 1 AND 1000)
            THEN 'job_queue_max_attempts_check'
        ELSE 'job_queue_idempotency_key_check'
    END;
    RAISE EXCEPTION 'new row for relation "%" violates check constraint "%"', TG_TABLE_NAME, v_rule
        USING ERRCODE = 'check_violation', CONSTRAINT = v_rule, TABLE = TG_TABLE_NAME,
              SCHEMA = TG_TABLE_SCHEMA;
END
$fn$;

COMMENT ON FUNCTION jobq_input_reject() IS
    'Trigger function of job_queue_input_check: refuses a row whose queue name, max_attempts or idempotency key breaks the rules, as a CHECK would (migrations/sql/020-jobq_input_reject.sql).';
