/*
 * jq_db_sql.c — the statement table: every SQL text of jq_db, with its parameter types, and the
 * reasons for its shape. The order of a job row's columns is JOB_COLS here and enum job_col in
 * jq_db_int.h.
 */
#include "jq_db_int.h"

/* The column list every job-returning statement uses, so one decoder reads them all.
 * PAYLOAD is the payload expression (List leaves it out unless asked). */
#define JOB_COLS(PAYLOAD)                                                                     \
	"j.id, j.queue, " PAYLOAD ", j.curr_job_status, j.prev_job_status, j.attempts, "      \
	"j.max_attempts, j.priority, j.run_at, j.lease_expires_at, j.lease_owner, j.lease_token, " \
	"j.last_error, j.idempotency_key, j.created_at, j.updated_at, j.finished_at, "            \
	"j.progress_percent, j.progress_message, j.progress_at, j.timeout_ms, j.concurrency_key"

/* A schedule row's columns, in enum sched_col order (jq_db_int.h). */
#define SCHED_COLS(PAYLOAD)                                                                   \
	"s.name, s.cron, s.time_zone, s.queue, " PAYLOAD ", s.priority, s.max_attempts, "      \
	"s.idempotency_key, s.missed, s.next_run_at, s.last_run_at, s.created_at, s.updated_at"

/* GUARD_MOVE(finished): the columns the status guard owns, written as it would write them for a
 * job leaving j.curr_job_status for another state; `finished` is the new finished_at (now() on
 * entering completed/failed/cancelled, NULL otherwise). A row written this way is skipped by the
 * guard trigger's WHEN clause (migration 009), which saves a PL/pgSQL call per row on the hot
 * path; a wrong value here is not a hole, the trigger then runs and overwrites it. */
#define GUARD_MOVE(finished) \
	"prev_job_status = j.curr_job_status, status_changed_at = now(), updated_at = now()," \
	" finished_at = " finished

/* The claim's gate (issue 17; migration 015): CLAIM_GATE_CTE(queue, want, cond) is a CTE `gate`
 * whose one value is how many jobs a claim of `queue` asking for `want` may take: 0 unless `cond`
 * (" AND ..." appended to "true", or "") holds. A queue without a job_queue_settings row, or with
 * a row but no limit, costs a primary-key lookup and nothing more: no lock, no function call. A
 * paused queue gets 0. A limited queue calls jobq_claim_gate (sql/015-jobq_claim_gate.sql), which
 * locks the queue's settings row until the claim commits, so that the limited queue's claims on
 * every replica take turns and count each other's jobs; it is not called when `cond` fails (a
 * refused completion claims nothing, and must neither wait for the lock nor spend the rate
 * budget). The row is read here without a lock, in the claim's snapshot: a limit or pause set
 * while the claim runs applies from the next one.
 * The pick keeps its LIMIT (a constant to the planner: with the gate as the LIMIT, PostgreSQL
 * plans for a tenth of the queue and joins the whole table), skips the scan when the gate is 0
 * (CLAIM_GATE_OPEN: a one-time filter, so a paused or full queue locks nothing), and `fits`
 * keeps the first CLAIM_GATE_N of the rows. A CTE used twice is computed once.
 * Concurrency key (migration 019): `gate` also reads the queue's key limit m (NULL: none) from
 * the same row; a queue with one goes through jobq_claim_gate too (the row lock serialises its
 * claims on every replica), and the CTE `keys` then holds its running jobs per key, counted by
 * jobq_claim_keys after the lock was granted (sql/019-jobq_claim_keys.sql): `picked` skips the
 * jobs of a key with no free slot (CLAIM_KEY_FREE <= 0) and takes other keys' jobs instead, and
 * `fits` keeps at most the free slots of each key: a job is kept when fewer jobs of its key come
 * before it in `picked` than the key has free slots (a count over `picked`, at most `limit` rows,
 * per keyed job; a window per key would cost every claim a sort). A queue without a key limit
 * pays no call and no count: the CASE leaves `busy` NULL, and CLAIM_KEY_FREE is NULL, which
 * passes every job. */
#define CLAIM_GATE_CTE(QUEUE, WANT, COND)                                                        \
	"gate AS (SELECT COALESCE(g.n, CASE WHEN true" COND " THEN " WANT " ELSE 0 END) AS n, g.m"   \
	"   FROM (SELECT) AS d LEFT JOIN (SELECT CASE WHEN NOT (true" COND ") OR s.paused THEN 0"      \
	"        WHEN s.concurrency_limit IS NULL AND s.rate_limit IS NULL"                          \
	"         AND s.key_concurrency_limit IS NULL THEN " WANT                                    \
	"        ELSE jobq_claim_gate(s.queue, " WANT ") END AS n, s.key_concurrency_limit AS m"      \
	"      FROM job_queue_settings s WHERE s.queue = " QUEUE ") AS g ON true),"                  \
	" keys AS (SELECT CASE WHEN g.m IS NOT NULL AND g.n > 0 THEN jobq_claim_keys(" QUEUE ") END" \
	"   AS busy, g.m FROM gate g),"
#define CLAIM_GATE_N "(SELECT n FROM gate)"
#define CLAIM_GATE_OPEN " AND " CLAIM_GATE_N " > 0"
/* CLAIM_KEY_FREE(key): how many more jobs of `key` may run now; NULL when the queue has no key
 * limit. CLAIM_KEY_OK(key, taking): a job with that key (NULL: none) may be claimed as the
 * `taking`-th of its key in this claim. */
#define CLAIM_KEY_FREE(K) \
	"((SELECT m FROM keys) - COALESCE(((SELECT busy FROM keys) ->> " K ")::int, 0))"
#define CLAIM_KEY_OK(K, TAKING) \
	"(" K " IS NULL OR COALESCE(" TAKING " <= " CLAIM_KEY_FREE(K) ", true))"

/* The flow settings of a queue f (a job_queue_settings row, or none), as Stats and the job
 * gauges return them after the counts: paused, then each limit or NULL. */
#define FLOW_COLS "COALESCE(f.paused, false), f.concurrency_limit, f.rate_limit, f.rate_period_ms," \
	" f.key_concurrency_limit"

/* The columns Pause, Resume and ConfigureQueue return: the row as it is now. */
#define SETTINGS_COLS "s.queue, s.paused, s.concurrency_limit, s.rate_limit, s.rate_period_ms, s.updated_at," \
	" s.key_concurrency_limit"

/*
 * The claim, shared by S_CLAIM and the Complete/Fail statements that claim the next jobs
 * (S_COMPLETE_CLAIM, S_FAIL_CLAIM), so that what a claim takes cannot differ between them.
 *
 * CLAIM_PICK(queue, limit, budget, fixed, gate, first) is four CTEs, `gate`, `keys`, `picked`
 * and `fits`. gate: CLAIM_GATE_CTE above, the queue's pause and limits; `gate` is a condition
 * (" AND ...", or "") without which nothing is claimed, which the combined statements use to
 * claim nothing when the completion was refused. picked: due pending jobs of `queue` through
 * job_queue_claim_idx (queue, priority, run_at, id WHERE pending) in claim order, locked with
 * SKIP LOCKED so that concurrent claimers take different rows instead of waiting; nothing when
 * the gate is 0. The CTE + UPDATE ...
 * FROM form makes the LIMIT binding: with `WHERE id IN (subquery)` the planner may run the
 * subquery more than once and claim more than `limit` rows. fits: the byte budget (`budget`; a
 * job's size is its variable fields' lengths plus `fixed`, which holds the queue and worker: see
 * jq_db.h), applied to the locked rows in claim order, so that a job that would not fit in the
 * reply is never claimed: it stays pending, and its lock ends with the statement. `first` is
 * "n = 1 OR " to take the first job whatever its size (a Claim), or "" to hold every job to the
 * budget (a claim sharing its reply with other results), and never more than the gate allows. A
 * window function cannot sit beside FOR UPDATE, hence the third CTE. fits.taken counts the rows
 * the limit and the gate took (jq_db_rows_cut).
 *
 * CLAIM_SET(owner, lease) moves the rows of fits to processing under a new fencing token from a
 * sequence, so a token never repeats: UPDATE job_queue j SET <it> FROM fits WHERE j.id = fits.id.
 */
#define CLAIM_PICK(QUEUE, LIMIT, BUDGET, FIXED, GATE, FIRST)                                     \
	CLAIM_GATE_CTE(QUEUE, LIMIT, GATE)                                                        \
	" picked AS ("                                                                            \
	"  SELECT id, priority, run_at,"                                                          \
	"         octet_length(payload) + coalesce(octet_length(last_error), 0)"                  \
	"         + coalesce(octet_length(idempotency_key), 0)"                                   \
	"         + coalesce(octet_length(concurrency_key), 0) + " FIXED " AS size, concurrency_key" \
	"    FROM job_queue"                                                                      \
	"   WHERE queue = " QUEUE " AND curr_job_status = 'archive_pending' AND run_at <= now()"  \
	CLAIM_GATE_OPEN " AND " CLAIM_KEY_OK("concurrency_key", "1")                             \
	"   ORDER BY priority, run_at, id"                                                        \
	"   LIMIT " LIMIT                                                                         \
	"   FOR UPDATE SKIP LOCKED),"                                                             \
	" fits AS ("                                                                              \
	"  SELECT id, taken FROM ("                                                               \
	"    SELECT id, least(count(*) OVER (), " CLAIM_GATE_N ") AS taken, row_number() OVER w AS n," \
	"           sum(size) OVER w AS upto"                                                     \
	"      FROM picked p WHERE CASE WHEN p.concurrency_key IS NULL OR (SELECT m FROM keys) IS NULL" \
	"        THEN true ELSE (SELECT count(*) FROM picked e WHERE e.concurrency_key = p.concurrency_key" \
	"          AND (e.priority, e.run_at, e.id) < (p.priority, p.run_at, p.id))"             \
	"        < " CLAIM_KEY_FREE("p.concurrency_key") " END"                                    \
	"     WINDOW w AS (ORDER BY priority, run_at, id ROWS UNBOUNDED PRECEDING)) s"            \
	"   WHERE n <= taken AND (" FIRST "upto <= " BUDGET "))"

#define CLAIM_SET(OWNER, LEASE)                                                                   \
	"curr_job_status = 'archive_processing', " GUARD_MOVE("NULL") ", attempts = j.attempts + 1," \
	" lease_owner = " OWNER ", lease_expires_at = now() + " LEASE " * interval '1 second',"  \
	" lease_token = nextval('job_lease_token_seq'),"                                          \
	" progress_percent = NULL, progress_message = NULL, progress_at = NULL"

/* The completion, shared by S_COMPLETE and S_COMPLETE_CLAIM: the row moves only while it is
 * processing under the caller's token (the fence), l being the leases (id, token). */
#define COMPLETE_SET "curr_job_status = 'archive_completed', " GUARD_MOVE("now()") ", lease_expires_at = NULL"
#define COMPLETE_FENCE "j.id = l.id AND j.lease_token = l.token AND j.curr_job_status = 'archive_processing'"

/* The failure, shared by S_FAIL and S_FAIL_CLAIM: CTEs l (the leases: $1 ids, $2 tokens, $3
 * errors, $4 final, $5 retry delays, $8 workers; $6 and $7 the backoff), upd (the rows failed or
 * retried) and hist (their history rows), then FAIL_JUDGED, each lease's outcome in read_items'
 * shape plus the job's queue, FROM FAIL_JUDGED_FROM. A repeat of a Fail that succeeded (its reply
 * was lost) finds its own failure recorded for this attempt under the same token; a job the
 * rescuer took from the lease has "lease expired" there instead, so the late worker is told its
 * lease is gone. */
#define FAIL_CTES                                                                                 \
	"l AS (SELECT * FROM unnest($1::int8[], $2::int8[], $3::text[], $4::bool[], $5::int4[],"     \
	"                                $8::text[])"                                               \
	"           WITH ORDINALITY AS l(id, token, err, final, retry_ms, worker, ord)),"           \
	" upd AS (UPDATE job_queue j SET"                                                         \
	"     curr_job_status = CASE WHEN l.final OR j.attempts >= j.max_attempts"                \
	"                            THEN 'archive_failed' ELSE 'archive_pending' END,"           \
	"     " GUARD_MOVE("CASE WHEN l.final OR j.attempts >= j.max_attempts THEN now() END") ","  \
	"     run_at = CASE WHEN l.final OR j.attempts >= j.max_attempts THEN j.run_at"           \
	"                   WHEN l.retry_ms > 0 THEN now() + l.retry_ms * interval '1 millisecond'" \
	"                   ELSE now() + jobq_retry_delay_ms(j.attempts, $6, $7) * interval '1 millisecond' END," \
	"     lease_expires_at = NULL, last_error = l.err"                                        \
	"   FROM l WHERE j.id = l.id AND j.lease_token = l.token"                                 \
	"    AND j.curr_job_status = 'archive_processing'"                                        \
	"  RETURNING j.id, j.attempts, COALESCE(NULLIF(l.worker, ''), j.lease_owner) AS worker,"   \
	"            j.curr_job_status, j.run_at, l.err),"                                        \
	" hist AS (INSERT INTO job_failure (job_id, attempt, worker, error)"                      \
	"   SELECT id, attempts, worker, err FROM upd)"
#define FAIL_JUDGED                                                                               \
	"l.id, upd.id IS NOT NULL AS done, COALESCE(upd.run_at, j.run_at) AS t,"                   \
	" COALESCE(upd.curr_job_status, j.curr_job_status) AS status,"                            \
	" j.lease_token = l.token AND EXISTS (SELECT 1 FROM job_failure f"                        \
	"   WHERE f.job_id = l.id AND f.attempt = j.attempts AND f.error = l.err) AS same, j.queue"
#define FAIL_JUDGED_FROM "l LEFT JOIN upd ON upd.id = l.id LEFT JOIN job_queue j ON j.id = l.id"

/* CLAIM_AND_ANSWER(owner, lease) ends a statement that completes or fails jobs and claims the
 * next ones, after its CTEs `leases` (each lease's outcome: id, done, t, status, same, queue,
 * ord) and CLAIM_PICK's: it claims the rows of fits and returns first one row per lease in
 * request order (kind 0: the job columns NULL, then the lease's columns from LEASE_COL0 in
 * jq_db.c, in read_items' order), then the claimed jobs (kind 1: JOB_COLS and taken, the lease
 * columns NULL). The lease rows' leading NULLs stand for JOB_COLS and taken: as many as they. */
#define CLAIM_AND_ANSWER(OWNER, LEASE)                                                                       \
	" claimed AS (UPDATE job_queue j SET " CLAIM_SET(OWNER, LEASE)                              \
	"   FROM fits WHERE j.id = fits.id RETURNING " JOB_COLS("j.payload") ", fits.taken)"      \
	" SELECT c.*, NULL::int8 AS l_id, NULL::bool AS l_done, NULL::timestamptz AS l_t,"         \
	"        NULL::text AS l_status, NULL::bool AS l_same, NULL::text AS l_queue,"              \
	"        NULL::int8 AS l_ord, 1 AS kind"                                                    \
	"   FROM claimed c"                                                                        \
	" UNION ALL"                                                                              \
	" SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,"\
	"        NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,"                             \
	"        ls.id, ls.done, ls.t, ls.status, ls.same, ls.queue, ls.ord, 0"                     \
	"   FROM leases ls"                                                                        \
	" ORDER BY kind, l_ord, priority, run_at, id"

/* TAKE_BACK_SET(error) ends the lease of a job taken back from its worker (the lease expired,
 * the time limit passed): retried after the backoff ($2 base, $3 cap) while it has attempts
 * left, failed otherwise, with `error` (an SQL literal) as its last error. */
#define TAKE_BACK_SET(ERROR)                                                                      \
	"     curr_job_status = CASE WHEN j.attempts >= j.max_attempts"                           \
	"                            THEN 'archive_failed' ELSE 'archive_pending' END,"           \
	"     run_at = CASE WHEN j.attempts >= j.max_attempts THEN j.run_at"                      \
	"                   ELSE now() + jobq_retry_delay_ms(j.attempts, $2, $3) * interval '1 millisecond' END," \
	"     lease_expires_at = NULL, last_error = " ERROR

/* The heartbeat, shared by S_HEARTBEAT and S_HEARTBEAT_PROGRESS: HEARTBEAT_SET renews the lease
 * ($3 seconds); HEARTBEAT_FENCE_ANSWER ends the UPDATE upd of the leases l (the fence: still
 * processing under the caller's token) and answers each lease in request order, from the rows as
 * they were before the statement. */
#define HEARTBEAT_SET "lease_expires_at = now() + $3 * interval '1 second', updated_at = now()"
#define HEARTBEAT_FENCE_ANSWER                                                                    \
	"   FROM l WHERE j.id = l.id AND j.lease_token = l.token"                                 \
	"    AND j.curr_job_status = 'archive_processing'"                                        \
	"  RETURNING j.id, j.lease_expires_at)"                                                   \
	" SELECT l.id, upd.id IS NOT NULL, upd.lease_expires_at, j.curr_job_status,"              \
	"        j.lease_token = l.token, j.last_error = '" JQ_TIME_LIMIT_ERROR "'"                \
	"   FROM l LEFT JOIN upd ON upd.id = l.id LEFT JOIN job_queue j ON j.id = l.id"           \
	"  ORDER BY l.ord"

/*
 * The statements. Each is one round trip and one implicit transaction: nothing here keeps a
 * transaction open across calls, so no row lock outlives a statement.
 */
const jq_dbi_stmt jq_dbi_stmts[S__COUNT] = {
	/* One statement for the whole batch: the same function other services call inside their own
	 * transactions, and one NOTIFY from the statement-level trigger however many rows. */
	[S_ENQUEUE] = { "jq_enqueue",
		"SELECT e.id FROM jobq_enqueue_batch($1, $2, $3, $4, $5, $6) AS e ORDER BY e.ord",
		6, { OID_TEXT_ARR, OID_BYTEA_ARR, OID_INT2_ARR, OID_TSTZ_ARR, OID_INT4_ARR, OID_TEXT_ARR } },

	/* A batch in which some job has a time limit: the function's 7-argument version (migration
	 * 017), which writes the limits after the 6-argument one made the jobs. */
	[S_ENQUEUE_TIMEOUT] = { "jq_enqueue_timeout",
		"SELECT e.id FROM jobq_enqueue_batch($1, $2, $3, $4, $5, $6, $7) AS e ORDER BY e.ord",
		7, { OID_TEXT_ARR, OID_BYTEA_ARR, OID_INT2_ARR, OID_TSTZ_ARR, OID_INT4_ARR, OID_TEXT_ARR,
		     OID_INT4_ARR } },

	/* A batch in which some job has a concurrency key: the widest version (migration 019),
	 * which writes the keys after the 7-argument one made the jobs. */
	[S_ENQUEUE_KEY] = { "jq_enqueue_key",
		"SELECT e.id FROM jobq_enqueue_batch($1, $2, $3, $4, $5, $6, $7, $8) AS e ORDER BY e.ord",
		8, { OID_TEXT_ARR, OID_BYTEA_ARR, OID_INT2_ARR, OID_TSTZ_ARR, OID_INT4_ARR, OID_TEXT_ARR,
		     OID_INT4_ARR, OID_TEXT_ARR } },

	/* The claim: pick due pending jobs through job_queue_claim_idx (queue, priority, run_at, id
	 * WHERE pending) in claim order, lock them with SKIP LOCKED so concurrent claimers take
	 * different rows instead of waiting, and move them to processing in the same statement. The
	 * CTE + UPDATE ... FROM form makes the LIMIT binding: with `WHERE id IN (subquery)` the planner
	 * may run the subquery more than once and claim more than `limit` rows. Every claim takes a new
	 * fencing token from a sequence, so a token never repeats.
	 * The byte budget ($5; a job's size is its variable fields' lengths plus $6, which holds the
	 * queue and worker: see jq_db.h) is applied here, to the locked rows in claim order, so a job
	 * that would not fit in the reply is never claimed: it stays pending, and its lock ends with
	 * the statement. A window function cannot sit beside FOR UPDATE, hence the second CTE. */
	[S_CLAIM] = { "jq_claim",
		"WITH " CLAIM_PICK("$1", "$2", "$5", "$6", "", "n = 1 OR ")
		" UPDATE job_queue j SET " CLAIM_SET("$3", "$4") " FROM fits WHERE j.id = fits.id"
		" RETURNING " JOB_COLS("j.payload") ", fits.taken",
		6, { JQ_OID_TEXT, JQ_OID_INT4, JQ_OID_TEXT, JQ_OID_INT4, JQ_OID_INT8, JQ_OID_INT4 }, true },

	/* Heartbeat, Complete and Fail touch a row only while it is processing under the caller's
	 * token (the fence). The outer SELECT reads the rows as they were before the statement, which
	 * tells a stale token (FAILED_PRECONDITION) from an unknown id (NOT_FOUND) from a repeat of
	 * a call that already succeeded (idempotent OK) without a second round trip. */
	[S_HEARTBEAT] = { "jq_heartbeat",
		"WITH l AS (SELECT * FROM unnest($1::int8[], $2::int8[]) WITH ORDINALITY AS l(id, token, ord)),"
		" upd AS (UPDATE job_queue j SET " HEARTBEAT_SET
		HEARTBEAT_FENCE_ANSWER,
		3, { OID_INT8_ARR, OID_INT8_ARR, JQ_OID_INT4 }, true },

	/* A heartbeat that reports progress ($4 percent, NULL for a lease without a report; $5 its
	 * message): S_HEARTBEAT with the progress written under the same fence. Its own statement,
	 * so that the plain heartbeat stays as it was. None of these columns is indexed: still HOT. */
	[S_HEARTBEAT_PROGRESS] = { "jq_heartbeat_progress",
		"WITH l AS (SELECT * FROM unnest($1::int8[], $2::int8[], $4::int2[], $5::text[])"
		"           WITH ORDINALITY AS l(id, token, pct, msg, ord)),"
		" upd AS (UPDATE job_queue j SET " HEARTBEAT_SET ","
		"     progress_percent = COALESCE(l.pct, j.progress_percent),"
		"     progress_message = CASE WHEN l.pct IS NULL THEN j.progress_message ELSE l.msg END,"
		"     progress_at = CASE WHEN l.pct IS NULL THEN j.progress_at ELSE now() END"
		HEARTBEAT_FENCE_ANSWER,
		5, { OID_INT8_ARR, OID_INT8_ARR, JQ_OID_INT4, OID_INT2_ARR, OID_TEXT_ARR }, true },

	/* Complete is the one lease call on every job's path, so its common case, every lease still
	 * held, is a plain UPDATE, which plans and runs in less time than one that also explains the
	 * leases it could not complete. Those leases are rare (a lost lease, a repeated call), and
	 * S_LEASE_STATE explains them after. */
	[S_COMPLETE] = { "jq_complete",
		"UPDATE job_queue j SET " COMPLETE_SET
		"   FROM unnest($1::int8[], $2::int8[]) WITH ORDINALITY AS l(id, token, ord)"
		"  WHERE " COMPLETE_FENCE
		" RETURNING j.id, j.lease_token, j.queue, l.ord",
		2, { OID_INT8_ARR, OID_INT8_ARR }, true },

	/* A Complete that carries outputs ($3, NULL for a lease without one): S_COMPLETE keeping each
	 * output with its job, under the same fence. Its own statement, so that a Complete without
	 * output stays the plain UPDATE above. */
	[S_COMPLETE_OUTPUT] = { "jq_complete_output",
		"UPDATE job_queue j SET curr_job_status = 'archive_completed', " GUARD_MOVE("now()") ","
		"     lease_expires_at = NULL, output = l.output"
		"   FROM unnest($1::int8[], $2::int8[], $3::bytea[]) WITH ORDINALITY AS l(id, token, output, ord)"
		"  WHERE j.id = l.id AND j.lease_token = l.token AND j.curr_job_status = 'archive_processing'"
		" RETURNING j.id, j.lease_token, j.queue, l.ord",
		3, { OID_INT8_ARR, OID_INT8_ARR, OID_BYTEA_ARR }, true },

	/* Where the leases stand, in the shape read_items reads (its `done` column is false: the
	 * caller knows which ones its statement changed). */
	[S_LEASE_STATE] = { "jq_lease_state",
		"SELECT l.id, false, NULL::timestamptz, j.curr_job_status, j.lease_token = l.token,"
		"       j.last_error = '" JQ_TIME_LIMIT_ERROR "'"
		"   FROM unnest($1::int8[], $2::int8[]) WITH ORDINALITY AS l(id, token, ord)"
		"   LEFT JOIN job_queue j ON j.id = l.id"
		"  ORDER BY l.ord",
		2, { OID_INT8_ARR, OID_INT8_ARR }, true },

	/* A failure is retried (back to pending, run_at pushed back by jittered exponential backoff
	 * from jobq_retry_delay_ms) until its attempts are used up or the worker says it is final;
	 * every failure is kept in job_failure with the worker the request names (the proto's
	 * FailRequest.worker_id), or the lease owner when it names none. */
	[S_FAIL] = { "jq_fail",
		"WITH " FAIL_CTES
		" SELECT " FAIL_JUDGED " FROM " FAIL_JUDGED_FROM " ORDER BY l.ord",
		8, { OID_INT8_ARR, OID_INT8_ARR, OID_TEXT_ARR, OID_BOOL_ARR, OID_INT4_ARR, JQ_OID_INT4,
		     JQ_OID_INT4, OID_TEXT_ARR }, true },

	/* Complete, then claim the next jobs, in one statement (one round trip, one commit). The
	 * completion is S_COMPLETE's UPDATE; `leases` judges each lease the completion refused from
	 * its row as it was before the statement (S_LEASE_STATE's reading; a lease completed needs no
	 * reading, and the LATERAL's condition on d skips it), and the claim runs only when every lease
	 * completed now or was completed already under the same token (a repeated call): a lease
	 * refused claims nothing. The completed rows were processing, never pending, so the claim
	 * cannot take one of them. With no leases it is a claim that holds every job to the budget. */
	[S_COMPLETE_CLAIM] = { "jq_complete_claim",
		"WITH l AS (SELECT * FROM unnest($1::int8[], $2::int8[]) WITH ORDINALITY AS l(id, token, ord)),"
		" done AS (UPDATE job_queue j SET " COMPLETE_SET " FROM l WHERE " COMPLETE_FENCE
		"  RETURNING j.id, j.lease_token, j.queue),"
		" leases AS (SELECT l.id, d.id IS NOT NULL AS done, NULL::timestamptz AS t,"
		"        q.curr_job_status AS status, q.lease_token = l.token AS same,"
		"        COALESCE(d.queue, q.queue) AS queue, l.ord"
		"   FROM l LEFT JOIN done d ON d.id = l.id AND d.lease_token = l.token"
		"   LEFT JOIN LATERAL (SELECT curr_job_status, lease_token, queue FROM job_queue q"
		"     WHERE q.id = l.id AND d.id IS NULL OFFSET 0) q ON true),"
		" " CLAIM_PICK("$3", "$4", "$7", "$8",
			       " AND NOT EXISTS (SELECT 1 FROM leases WHERE NOT done"
			       "   AND NOT COALESCE(status = 'archive_completed' AND same, false))", "") ","
		CLAIM_AND_ANSWER("$5", "$6"),
		8, { OID_INT8_ARR, OID_INT8_ARR, JQ_OID_TEXT, JQ_OID_INT4, JQ_OID_TEXT, JQ_OID_INT4,
		     JQ_OID_INT8, JQ_OID_INT4 }, true },

	/* Fail, then claim the next jobs, in one statement: S_FAIL's CTEs, its answer as `leases`,
	 * and the claim under the same rule as S_COMPLETE_CLAIM's (a lease judged OK by S_FAIL's
	 * reading: failed now, or this very failure already recorded under the same token). A job
	 * failed here goes back to pending with a later run_at, and this statement's snapshot does
	 * not see it pending: it is not claimed again at once. */
	[S_FAIL_CLAIM] = { "jq_fail_claim",
		"WITH " FAIL_CTES ","
		" leases AS (SELECT " FAIL_JUDGED ", l.ord FROM " FAIL_JUDGED_FROM "),"
		" " CLAIM_PICK("$9", "$10", "$13", "$14",
			       " AND NOT EXISTS (SELECT 1 FROM leases WHERE NOT done"
			       "   AND NOT COALESCE(status IN ('archive_failed', 'archive_pending') AND same, false))",
			       "") ","
		CLAIM_AND_ANSWER("$11", "$12"),
		14, { OID_INT8_ARR, OID_INT8_ARR, OID_TEXT_ARR, OID_BOOL_ARR, OID_INT4_ARR, JQ_OID_INT4,
		      JQ_OID_INT4, OID_TEXT_ARR, JQ_OID_TEXT, JQ_OID_INT4, JQ_OID_TEXT, JQ_OID_INT4,
		      JQ_OID_INT8, JQ_OID_INT4 }, true },

	/* Get alone returns the output (its C_OUTPUT column). */
	[S_GET] = { "jq_get", "SELECT " JOB_COLS("j.payload") ", j.output FROM job_queue j WHERE j.id = $1",
		1, { JQ_OID_INT8 } },

	[S_GET_FAILURES] = { "jq_get_failures",
		"SELECT attempt, worker, error, failed_at FROM job_failure WHERE job_id = $1 ORDER BY id",
		1, { JQ_OID_INT8 } },

	/* Keyset pagination on the primary key: a page costs the same however deep it is. The page
	 * ends early at the byte budget ($6, with $7 per job: see jq_db.h); the sizes come from the
	 * stored lengths, so the payloads left out are never read. */
	[S_LIST] = { "jq_list",
		"SELECT " JOB_COLS("CASE WHEN $5 THEN j.payload END") ", j.taken FROM ("
		"  SELECT p.*, count(*) OVER () AS taken, row_number() OVER w AS n, sum(p.size) OVER w AS upto"
		"    FROM (SELECT j.*,"
		"                 CASE WHEN $5 THEN octet_length(j.payload) ELSE 0 END + octet_length(j.queue)"
		"                 + coalesce(octet_length(j.lease_owner), 0) + coalesce(octet_length(j.last_error), 0)"
		"                 + coalesce(octet_length(j.idempotency_key), 0)"
		"                 + coalesce(octet_length(j.progress_message), 0)"
		"                 + coalesce(octet_length(j.concurrency_key), 0) + $7 AS size"
		"            FROM job_queue j"
		"           WHERE ($1::text IS NULL OR j.queue = $1) AND ($2::text IS NULL OR j.curr_job_status = $2)"
		"             AND j.id > $3 ORDER BY j.id LIMIT $4) p"
		"  WINDOW w AS (ORDER BY p.id ROWS UNBOUNDED PRECEDING)) j"
		" WHERE j.n = 1 OR j.upto <= $6 ORDER BY j.id",
		7, { JQ_OID_TEXT, JQ_OID_TEXT, JQ_OID_INT8, JQ_OID_INT4, JQ_OID_BOOL, JQ_OID_INT8, JQ_OID_INT4 } },

	/* A manual retry gives the job a fresh set of attempts; its history keeps the old ones. */
	[S_RETRY] = { "jq_retry",
		"WITH l AS (SELECT * FROM unnest($1::int8[]) WITH ORDINALITY AS l(id, ord)),"
		" upd AS (UPDATE job_queue j SET curr_job_status = 'archive_pending', run_at = now(), attempts = 0"
		"   FROM l WHERE j.id = l.id AND j.curr_job_status IN ('archive_failed', 'archive_cancelled')"
		"  RETURNING j.id)"
		" SELECT l.id, upd.id IS NOT NULL, NULL::timestamptz, j.curr_job_status, false"
		"   FROM l LEFT JOIN upd ON upd.id = l.id LEFT JOIN job_queue j ON j.id = l.id"
		"  ORDER BY l.ord",
		1, { OID_INT8_ARR }, true },

	/* One batch of "retry every failed job of a queue", in id order from after_id ($3) through
	 * job_queue_failed_idx (queue, id WHERE failed; migration 013). Its answer, (count, largest id
	 * retried), is where the next batch starts, so a pass picks each job at most once. */
	[S_RETRY_ALL] = { "jq_retry_all",
		"WITH picked AS (SELECT id FROM job_queue WHERE queue = $1 AND curr_job_status = 'archive_failed'"
		"   AND id > $3 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED),"
		" upd AS (UPDATE job_queue j SET curr_job_status = 'archive_pending', run_at = now(), attempts = 0"
		"   FROM picked WHERE j.id = picked.id RETURNING j.id)"
		" SELECT count(*), COALESCE(max(id), $3) FROM upd",
		3, { JQ_OID_TEXT, JQ_OID_INT4, JQ_OID_INT8 }, true },

	/* A running job is cancelled too, and its lease ends in the same statement: a Complete racing
	 * it waits for the row lock and then finds the job no longer processing (or the Cancel finds
	 * it completed), so exactly one of them wins. Trigger job_queue_notify_stop (migration 017)
	 * tells the listeners, which publish "cancel.<queue>" for the worker. */
	[S_CANCEL] = { "jq_cancel",
		"WITH l AS (SELECT * FROM unnest($1::int8[]) WITH ORDINALITY AS l(id, ord)),"
		" upd AS (UPDATE job_queue j SET curr_job_status = 'archive_cancelled', lease_expires_at = NULL"
		"   FROM l WHERE j.id = l.id"
		"    AND j.curr_job_status IN ('archive_pending', 'archive_failed', 'archive_processing')"
		"  RETURNING j.id)"
		" SELECT l.id, upd.id IS NOT NULL, NULL::timestamptz, j.curr_job_status, false"
		"   FROM l LEFT JOIN upd ON upd.id = l.id LEFT JOIN job_queue j ON j.id = l.id"
		"  ORDER BY l.ord",
		1, { OID_INT8_ARR }, true },

	/* Wait: mark the unfinished jobs so that their end is notified (trigger job_queue_notify_done,
	 * migration 017), in a statement of its own: the read that follows starts after the mark
	 * committed, so a job that ends after that read is notified, and one that ended before it
	 * is seen ended. */
	[S_WAIT_MARK] = { "jq_wait_mark",
		"UPDATE job_queue SET waited = true"
		" WHERE id = ANY($1::int8[]) AND finished_at IS NULL AND waited IS NOT TRUE",
		1, { OID_INT8_ARR }, true },

	/* The jobs of a Wait in request order, without payload (Get has it). */
	[S_WAIT_READ] = { "jq_wait_read",
		"SELECT " JOB_COLS("NULL::bytea") " FROM unnest($1::int8[]) WITH ORDINALITY AS l(id, ord)"
		" JOIN job_queue j ON j.id = l.id ORDER BY l.ord",
		1, { OID_INT8_ARR }, true },

	/* Stats scans the table: an operator's view, not a hot path. Each queue's flow settings
	 * (FLOW_COLS) come with its counts, and a queue that has settings but no jobs is listed too. */
	[S_STATS] = { "jq_stats",
		"SELECT COALESCE(c.queue, f.queue), COALESCE(c.pending, 0), COALESCE(c.scheduled, 0),"
		" COALESCE(c.processing, 0), COALESCE(c.completed, 0), COALESCE(c.failed, 0),"
		" COALESCE(c.cancelled, 0), COALESCE(c.oldest, 0)::float8, " FLOW_COLS
		" FROM (SELECT queue,"
		"  count(*) FILTER (WHERE curr_job_status = 'archive_pending') AS pending,"
		"  count(*) FILTER (WHERE curr_job_status = 'archive_pending' AND run_at > now()) AS scheduled,"
		"  count(*) FILTER (WHERE curr_job_status = 'archive_processing') AS processing,"
		"  count(*) FILTER (WHERE curr_job_status = 'archive_completed') AS completed,"
		"  count(*) FILTER (WHERE curr_job_status = 'archive_failed') AS failed,"
		"  count(*) FILTER (WHERE curr_job_status = 'archive_cancelled') AS cancelled,"
		"  EXTRACT(EPOCH FROM now() - min(run_at) FILTER ("
		"    WHERE curr_job_status = 'archive_pending' AND run_at <= now())) AS oldest"
		"  FROM job_queue WHERE ($1::text IS NULL OR queue = $1) GROUP BY queue) c"
		" FULL JOIN (SELECT * FROM job_queue_settings WHERE $1::text IS NULL OR queue = $1) f"
		"   ON f.queue = c.queue"
		" ORDER BY 1",
		1, { JQ_OID_TEXT } },

	/* The job counts of /metrics, every 5 s on every replica, in S_STATS's shape (completed and
	 * cancelled 0; every queue with flow settings is listed, with or without jobs): only the
	 * states a partial index covers, each read through its index (job_queue_claim_idx,
	 * job_queue_processing_idx, job_queue_failed_idx), so the cost follows the jobs waiting,
	 * running and failed, never the finished jobs the table keeps. */
	[S_JOB_GAUGES] = { "jq_job_gauges",
		"SELECT COALESCE(g.queue, f.queue), COALESCE(g.pending, 0), COALESCE(g.scheduled, 0),"
		" COALESCE(g.processing, 0), 0::int8, COALESCE(g.failed, 0), 0::int8,"
		" COALESCE(g.oldest, 0)::float8, " FLOW_COLS
		" FROM (SELECT queue, sum(pending)::int8 AS pending, sum(scheduled)::int8 AS scheduled,"
		" sum(processing)::int8 AS processing, sum(failed)::int8 AS failed,"
		" EXTRACT(EPOCH FROM now() - min(oldest_due)) AS oldest"
		" FROM (SELECT queue, count(*) AS pending, count(*) FILTER (WHERE run_at > now()) AS scheduled,"
		"              0 AS processing, 0 AS failed, min(run_at) FILTER (WHERE run_at <= now()) AS oldest_due"
		"         FROM job_queue WHERE curr_job_status = 'archive_pending' GROUP BY queue"
		"       UNION ALL"
		"       SELECT queue, 0, 0, count(*), 0, NULL FROM job_queue"
		"        WHERE curr_job_status = 'archive_processing' GROUP BY queue"
		"       UNION ALL"
		"       SELECT queue, 0, 0, 0, count(*), NULL FROM job_queue"
		"        WHERE curr_job_status = 'archive_failed' GROUP BY queue) s"
		" GROUP BY queue) g"
		" FULL JOIN job_queue_settings f ON f.queue = g.queue"
		" ORDER BY 1",
		0, { 0 } },

	/* Pause and Resume: the queue gets a settings row if it has none (a queue exists as soon as
	 * it is named), and the row's trigger tells every jobqd (migration 015). */
	[S_QUEUE_PAUSE] = { "jq_queue_pause",
		"INSERT INTO job_queue_settings AS s (queue, paused) VALUES ($1, $2)"
		" ON CONFLICT (queue) DO UPDATE SET paused = EXCLUDED.paused, updated_at = now()"
		" RETURNING " SETTINGS_COLS,
		2, { JQ_OID_TEXT, JQ_OID_BOOL } },

	/* ConfigureQueue: $2/$4 say whether the concurrency / rate limit changes; then $3, or $5 per
	 * $6 ms, is the new limit, NULL to remove it. A rate that keeps its period keeps the count of
	 * the current window (so re-setting it cannot admit a second budget in one window); a new
	 * period starts counting afresh. $7 says whether the key limit changes, to $8 (NULL: none). */
	[S_QUEUE_CONFIGURE] = { "jq_queue_configure",
		"INSERT INTO job_queue_settings AS s (queue, concurrency_limit, rate_limit, rate_period_ms,"
		"  key_concurrency_limit)"
		" VALUES ($1, CASE WHEN $2 THEN $3 END, CASE WHEN $4 THEN $5 END, CASE WHEN $4 THEN $6 END,"
		"  CASE WHEN $7 THEN $8 END)"
		" ON CONFLICT (queue) DO UPDATE SET"
		"  concurrency_limit = CASE WHEN $2 THEN $3 ELSE s.concurrency_limit END,"
		"  key_concurrency_limit = CASE WHEN $7 THEN $8 ELSE s.key_concurrency_limit END,"
		"  rate_limit = CASE WHEN $4 THEN $5 ELSE s.rate_limit END,"
		"  rate_period_ms = CASE WHEN $4 THEN $6 ELSE s.rate_period_ms END,"
		"  rate_window_start = CASE WHEN $4 AND $6 IS DISTINCT FROM s.rate_period_ms THEN NULL"
		"                           ELSE s.rate_window_start END,"
		"  rate_window_claims = CASE WHEN $4 AND $6 IS DISTINCT FROM s.rate_period_ms THEN 0"
		"                            ELSE s.rate_window_claims END,"
		"  updated_at = now()"
		" RETURNING " SETTINGS_COLS,
		8, { JQ_OID_TEXT, JQ_OID_BOOL, JQ_OID_INT4, JQ_OID_BOOL, JQ_OID_INT4, JQ_OID_INT4,
		     JQ_OID_BOOL, JQ_OID_INT4 } },

	/* Completed and cancelled jobs, table-wide, from PostgreSQL's own statistics: the live rows
	 * (pg_class.reltuples, renewed by every autovacuum) times each state's share as the planner
	 * reads it from the last ANALYZE (pg_stats, readable by any role that may read the table): its
	 * frequency among the most common values, else an equal part of what those leave to the other
	 * distinct values. No rows until the table has been analyzed. */
	[S_FINISHED_ESTIMATES] = { "jq_finished_estimates",
		"WITH st AS (SELECT c.reltuples AS n, p.null_frac,"
		"                   CASE WHEN p.n_distinct < 0 THEN -p.n_distinct * c.reltuples ELSE p.n_distinct END AS nd,"
		"                   COALESCE(p.most_common_vals::text::text[], '{}') AS vals,"
		"                   COALESCE(p.most_common_freqs, '{}') AS freqs"
		"              FROM pg_class c JOIN pg_namespace ns ON ns.oid = c.relnamespace"
		"              JOIN pg_stats p ON p.schemaname = ns.nspname AND p.tablename = c.relname"
		"               AND p.attname = 'curr_job_status'"
		"             WHERE c.oid = 'job_queue'::regclass AND c.reltuples >= 0)"
		" SELECT s.state, round(st.n * COALESCE("
		"          (SELECT u.f FROM unnest(st.vals, st.freqs) AS u(v, f) WHERE u.v = s.state),"
		"          GREATEST(0, 1 - st.null_frac - (SELECT COALESCE(sum(f), 0) FROM unnest(st.freqs) AS f))"
		"            / GREATEST(1, st.nd - cardinality(st.vals))))::int8"
		"   FROM st CROSS JOIN (VALUES ('archive_completed'), ('archive_cancelled')) AS s(state)",
		0, { 0 } },

	/* The rescuer: expired leases among the processing jobs (job_queue_processing_idx: it reads
	 * every job the workers hold, so that heartbeats, which move lease_expires_at, stay HOT
	 * updates; migration 011), SKIP LOCKED so replicas running it at once split the work and
	 * never wait on a worker's Complete. A heartbeat that committed first is seen by the re-check
	 * of the WHERE under the row lock. */
	[S_RESCUE] = { "jq_rescue",
		"WITH expired AS (SELECT id FROM job_queue"
		"   WHERE curr_job_status = 'archive_processing' AND lease_expires_at < now()"
		"   ORDER BY lease_expires_at LIMIT $1 FOR UPDATE SKIP LOCKED),"
		" upd AS (UPDATE job_queue j SET"
		TAKE_BACK_SET("'lease expired'")
		"   FROM expired e WHERE j.id = e.id"
		"  RETURNING j.id, j.attempts, j.lease_owner)"
		" INSERT INTO job_failure (job_id, attempt, worker, error)"
		" SELECT id, attempts, lease_owner, 'lease expired' FROM upd",
		3, { JQ_OID_INT4, JQ_OID_INT4, JQ_OID_INT4 }, true },

	/* Time limits: processing jobs running longer than their timeout_ms since their claim
	 * (status_changed_at), heartbeats or not, fail like a lease that expired (retried per their
	 * attempts, "time limit exceeded" in the history), through job_queue_processing_idx as
	 * S_RESCUE does. Each one's worker is told at once through jobq_stop ("T <queue> <id>
	 * <token>"), which every replica publishes as "cancel.<queue>"; a heartbeat racing it
	 * either renews first (the limit still holds: the re-check under the row lock does not read
	 * the lease) or is refused after, with the stop reason. */
	[S_TIME_LIMIT] = { "jq_time_limit",
		"WITH over AS (SELECT id FROM job_queue"
		"   WHERE curr_job_status = 'archive_processing' AND timeout_ms IS NOT NULL"
		"     AND status_changed_at + timeout_ms * interval '1 millisecond' < now()"
		"   ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED),"
		" upd AS (UPDATE job_queue j SET"
		TAKE_BACK_SET("'" JQ_TIME_LIMIT_ERROR "'")
		"   FROM over o WHERE j.id = o.id"
		"    AND j.curr_job_status = 'archive_processing'"
		"    AND j.status_changed_at + j.timeout_ms * interval '1 millisecond' < now()"
		"  RETURNING j.id, j.attempts, j.lease_owner, j.queue, j.lease_token),"
		" hist AS (INSERT INTO job_failure (job_id, attempt, worker, error)"
		"   SELECT id, attempts, lease_owner, '" JQ_TIME_LIMIT_ERROR "' FROM upd)"
		" SELECT count(pg_notify('jobq_stop', 'T ' || queue || ' ' || id || ' ' || lease_token))::int8"
		"   FROM upd",
		3, { JQ_OID_INT4, JQ_OID_INT4, JQ_OID_INT4 }, true },

	/* Retention deletes in small batches through job_queue_finished_idx so it never holds many
	 * locks or bloats one transaction. */
	[S_RETENTION] = { "jq_retention",
		"WITH doomed AS (SELECT id FROM job_queue"
		"   WHERE curr_job_status IN ('archive_completed', 'archive_cancelled')"
		"     AND finished_at < now() - $1 * interval '1 second'"
		"   ORDER BY finished_at LIMIT $2 FOR UPDATE SKIP LOCKED)"
		" DELETE FROM job_queue j USING doomed d WHERE j.id = d.id",
		2, { JQ_OID_INT4, JQ_OID_INT4 }, true },

	/* Schedules (job_schedule, migration 016). Cron ticks are wall-clock times of the
	 * schedule's zone; PostgreSQL's time-zone database turns them into instants and back (jq_cron
	 * never reads TZ, which is process-wide and not thread-safe). A wall-clock time travels as
	 * seconds since 1970-01-01 00:00 of that clock (jq_cron_time_to_seconds). */

	/* The zone's wall clock now, or NULL when the zone is not a name in PostgreSQL's tz database
	 * (pg_timezone_names: abbreviations and POSIX offsets like 'UTC+5', which AT TIME ZONE would
	 * take, are refused). Only AddSchedule asks (the view reads the zone files: ~50 ms). */
	[S_SCHED_ZONE_NOW] = { "jq_sched_zone_now",
		"SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = $1)"
		"  THEN floor(extract(epoch FROM now() AT TIME ZONE $1))::int8 END, now()",
		1, { JQ_OID_TEXT } },

	/* The instant of a wall-clock time of a zone. A time the clock skips (spring forward) takes
	 * the offset from before the jump, so 02:30 in a 02:00-03:00 gap is 03:30 after it; a time
	 * the clock passes twice (fall back) is the second pass, in standard time (PostgreSQL's
	 * rules, docs "Handling of Invalid or Ambiguous Timestamps"). */
	[S_SCHED_INSTANT] = { "jq_sched_instant",
		"SELECT (timestamp '1970-01-01' + $1 * interval '1 second') AT TIME ZONE $2",
		2, { JQ_OID_INT8, JQ_OID_TEXT } },

	/* AddSchedule: create, or replace by name (keeping created_at and last_run_at). */
	[S_SCHED_PUT] = { "jq_sched_put",
		"INSERT INTO job_schedule AS s (name, cron, time_zone, queue, payload, priority,"
		"   max_attempts, idempotency_key, missed, next_run_at)"
		" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
		" ON CONFLICT (name) DO UPDATE SET cron = excluded.cron, time_zone = excluded.time_zone,"
		"   queue = excluded.queue, payload = excluded.payload, priority = excluded.priority,"
		"   max_attempts = excluded.max_attempts, idempotency_key = excluded.idempotency_key,"
		"   missed = excluded.missed, next_run_at = excluded.next_run_at, updated_at = now()"
		" RETURNING " SCHED_COLS("s.payload"),
		10, { JQ_OID_TEXT, JQ_OID_TEXT, JQ_OID_TEXT, JQ_OID_TEXT, JQ_OID_BYTEA, JQ_OID_INT2,
		      JQ_OID_INT4, JQ_OID_TEXT, JQ_OID_TEXT, JQ_OID_TIMESTAMPTZ } },

	[S_SCHED_LIST] = { "jq_sched_list",
		"SELECT " SCHED_COLS("CASE WHEN $1 THEN s.payload END") " FROM job_schedule s ORDER BY s.name",
		1, { JQ_OID_BOOL } },

	[S_SCHED_REMOVE] = { "jq_sched_remove", "DELETE FROM job_schedule WHERE name = $1", 1, { JQ_OID_TEXT } },

	/* The ticker: due schedules, with the wall-clock times of their tick and of now. Every
	 * replica reads the same rows; S_SCHED_TICK decides which one enqueues each tick. */
	[S_SCHED_DUE] = { "jq_sched_due",
		"SELECT name, cron, time_zone, missed, next_run_at,"
		"  floor(extract(epoch FROM next_run_at AT TIME ZONE time_zone))::int8,"
		"  floor(extract(epoch FROM now() AT TIME ZONE time_zone))::int8, now()"
		" FROM job_schedule WHERE next_run_at <= now() ORDER BY next_run_at LIMIT $1",
		1, { JQ_OID_INT4 } },

	/* How many schedules, and milliseconds until the nearest tick (NULL when none). */
	[S_SCHED_SOONEST] = { "jq_sched_soonest",
		"SELECT count(*), floor(extract(epoch FROM min(next_run_at) - now()) * 1000)::int8"
		" FROM job_schedule",
		0, { 0 } },

	/* One tick, exactly once: next_run_at moves from the tick ($2) to the next ($3) only while
	 * it still holds the tick, so of replicas racing for it one updates the row and the others,
	 * re-checking the WHERE under the row lock after the winner commits, update nothing. In the
	 * same statement (one transaction) the winner enqueues the job when $4, through
	 * jobq_enqueue_batch like any Enqueue (its trigger announces pending.<queue>), with run_at
	 * $5 and {tick} in the idempotency key pattern replaced by $5 in UTC. One row when this
	 * call moved the schedule: the job's id (NULL when none was enqueued) and its queue. */
	[S_SCHED_TICK] = { "jq_sched_tick",
		"WITH adv AS (UPDATE job_schedule"
		"    SET next_run_at = $3, last_run_at = CASE WHEN $4 THEN $5 ELSE last_run_at END"
		"  WHERE name = $1 AND next_run_at = $2"
		"  RETURNING queue, payload, priority, max_attempts, idempotency_key)"
		" SELECT (SELECT e.id FROM jobq_enqueue_batch(ARRAY[adv.queue], ARRAY[adv.payload],"
		"           ARRAY[adv.priority], ARRAY[$5::timestamptz], ARRAY[adv.max_attempts],"
		"           ARRAY[replace(adv.idempotency_key, '{tick}',"
		"                 to_char($5 AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'))]) AS e"
		"          WHERE $4), adv.queue"
		" FROM adv",
		5, { JQ_OID_TEXT, JQ_OID_TIMESTAMPTZ, JQ_OID_TIMESTAMPTZ, JQ_OID_BOOL, JQ_OID_TIMESTAMPTZ } },

	/* The console's chart: jobs completed in each of the last 60 minutes (this one included),
	 * always 60 rows. It reads job_queue_finished_idx from an hour ago on, so its cost follows
	 * the jobs completed in that hour, never the finished jobs retention keeps. */
	[S_THROUGHPUT] = { "jq_throughput",
		"WITH c AS (SELECT date_trunc('minute', finished_at) AS minute, count(*) AS n FROM job_queue"
		"            WHERE curr_job_status = 'archive_completed'"
		"              AND finished_at >= date_trunc('minute', now()) - interval '59 minutes'"
		"            GROUP BY 1)"
		" SELECT (EXTRACT(EPOCH FROM m.minute) * 1000)::int8, COALESCE(c.n, 0)::int8"
		"   FROM generate_series(date_trunc('minute', now()) - interval '59 minutes',"
		"                        date_trunc('minute', now()), interval '1 minute') AS m(minute)"
		"   LEFT JOIN c ON c.minute = m.minute ORDER BY m.minute",
		0, { 0 } },
};

const char *jq_db_claim_sql(void)
{
	return jq_dbi_stmts[S_CLAIM].sql;
}

const char *jq_db_job_gauges_sql(void)
{
	return jq_dbi_stmts[S_JOB_GAUGES].sql;
}

const char *jq_db_throughput_sql(void)
{
	return jq_dbi_stmts[S_THROUGHPUT].sql;
}
