#include "jq_db.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "jq_log.h"
#include "jq_pgbin.h"

/* Array type OIDs for parameters. */
#define OID_BOOL_ARR 1000
#define OID_BYTEA_ARR 1001
#define OID_INT2_ARR 1005
#define OID_INT4_ARR 1007
#define OID_TEXT_ARR 1009
#define OID_INT8_ARR 1016
#define OID_TSTZ_ARR 1185

#define RECONNECT_INTERVAL_NS (250 * 1000000LL)
/* How long past the session's statement_timeout an answer is still awaited: a live server ends a
 * slow statement itself (57014) within that time, so only a silent connection runs over it. */
#define SILENCE_GRACE_MS 1000
/* Time kept back from a request's deadline to carry the answer to the client. */
#define REPLY_MARGIN_MAX_US 50000
#define REPREPARE_USES 200
#define REPREPARE_NS (1000 * 1000000LL)
/* Statements a renewal could not free (see free_statement) before the connection is renewed. */
#define MAX_UNFREED 1000

/* The column list every job-returning statement uses, so one decoder reads them all.
 * PAYLOAD is the payload expression (List leaves it out unless asked). */
#define JOB_COLS(PAYLOAD)                                                                     \
	"j.id, j.queue, " PAYLOAD ", j.curr_job_status, j.prev_job_status, j.attempts, "      \
	"j.max_attempts, j.priority, j.run_at, j.lease_expires_at, j.lease_owner, j.lease_token, " \
	"j.last_error, j.idempotency_key, j.created_at, j.updated_at, j.finished_at"

enum job_col {
	C_ID, C_QUEUE, C_PAYLOAD, C_STATUS, C_PREV, C_ATTEMPTS, C_MAX_ATTEMPTS, C_PRIORITY, C_RUN_AT,
	C_LEASE_EXPIRES, C_LEASE_OWNER, C_LEASE_TOKEN, C_LAST_ERROR, C_IDEM, C_CREATED, C_UPDATED,
	C_FINISHED,
	C_TAKEN /* Claim and List: the rows their limit took before the byte budget (jq_db_rows_cut) */
};

typedef enum stmt_id {
	S_ENQUEUE,
	S_CLAIM,
	S_HEARTBEAT,
	S_COMPLETE,
	S_LEASE_STATE,
	S_FAIL,
	S_GET,
	S_GET_FAILURES,
	S_LIST,
	S_RETRY,
	S_RETRY_ALL,
	S_CANCEL,
	S_STATS,
	S_JOB_GAUGES,
	S_FINISHED_ESTIMATES,
	S_RESCUE,
	S_RETENTION,
	S__COUNT
} stmt_id;

typedef struct stmt {
	const char *name;
	const char *sql;
	int nparams;
	Oid types[8];
	/* The statements that join job_queue to a batch of ids or pick from it. PostgreSQL's plan
	 * cache keeps a generic plan until the table's statistics change, and a queue table grows
	 * and shrinks by orders of magnitude faster than autovacuum's ANALYZE follows: a generic plan
	 * made while the table was small (a sequential scan + hash join) then costs more with every
	 * row (measured in `make bench`: Complete 11.3 -> 6.2 ms per 50-job call once these were
	 * planned at every execution). Planning every time costs too (0.2-0.3 ms per statement, a
	 * quarter of the database's CPU per job at batch size 1), so jobqd keeps them prepared but
	 * prepares them again every REPREPARE_USES executions or REPREPARE_NS, whichever comes first:
	 * a plan is never older than that, and PostgreSQL, choosing between the generic plan and
	 * custom ones on fresh statistics each time, keeps the generic plan only while it is the
	 * cheaper. Without prepared statements (PgBouncer) they are planned at every execution. */
	bool replan;
} stmt;

/* GUARD_MOVE(finished): the columns the status guard owns, written as it would write them for a
 * job leaving j.curr_job_status for another state; `finished` is the new finished_at (now() on
 * entering completed/failed/cancelled, NULL otherwise). A row written this way is skipped by the
 * guard trigger's WHEN clause (migration 009), which saves a PL/pgSQL call per row on the hot
 * path; a wrong value here is not a hole, the trigger then runs and overwrites it. */
#define GUARD_MOVE(finished) \
	"prev_job_status = j.curr_job_status, status_changed_at = now(), updated_at = now()," \
	" finished_at = " finished

/*
 * The statements. Each is one round trip and one implicit transaction: nothing here keeps a
 * transaction open across calls, so no row lock outlives a statement.
 */
static const stmt stmts[S__COUNT] = {
	/* One statement for the whole batch: the same function other services call inside their own
	 * transactions, and one NOTIFY from the statement-level trigger however many rows. */
	[S_ENQUEUE] = { "jq_enqueue",
		"SELECT e.id FROM jobq_enqueue_batch($1, $2, $3, $4, $5, $6) AS e ORDER BY e.ord",
		6, { OID_TEXT_ARR, OID_BYTEA_ARR, OID_INT2_ARR, OID_TSTZ_ARR, OID_INT4_ARR, OID_TEXT_ARR } },

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
		"WITH picked AS ("
		"  SELECT id, priority, run_at,"
		"         octet_length(payload) + coalesce(octet_length(last_error), 0)"
		"         + coalesce(octet_length(idempotency_key), 0) + $6 AS size"
		"    FROM job_queue"
		"   WHERE queue = $1 AND curr_job_status = 'archive_pending' AND run_at <= now()"
		"   ORDER BY priority, run_at, id"
		"   LIMIT $2"
		"   FOR UPDATE SKIP LOCKED),"
		" fits AS ("
		"  SELECT id, taken FROM ("
		"    SELECT id, count(*) OVER () AS taken, row_number() OVER w AS n, sum(size) OVER w AS upto"
		"      FROM picked WINDOW w AS (ORDER BY priority, run_at, id ROWS UNBOUNDED PRECEDING)) s"
		"   WHERE n = 1 OR upto <= $5)"
		" UPDATE job_queue j"
		"    SET curr_job_status = 'archive_processing', " GUARD_MOVE("NULL") ", attempts = j.attempts + 1,"
		"        lease_owner = $3, lease_expires_at = now() + $4 * interval '1 second',"
		"        lease_token = nextval('job_lease_token_seq')"
		"   FROM fits WHERE j.id = fits.id"
		" RETURNING " JOB_COLS("j.payload") ", fits.taken",
		6, { JQ_OID_TEXT, JQ_OID_INT4, JQ_OID_TEXT, JQ_OID_INT4, JQ_OID_INT8, JQ_OID_INT4 }, true },

	/* Heartbeat, Complete and Fail touch a row only while it is processing under the caller's
	 * token (the fence). The outer SELECT reads the rows as they were before the statement, which
	 * tells a stale token (FAILED_PRECONDITION) from an unknown id (NOT_FOUND) from a repeat of
	 * a call that already succeeded (idempotent OK) without a second round trip. */
	[S_HEARTBEAT] = { "jq_heartbeat",
		"WITH l AS (SELECT * FROM unnest($1::int8[], $2::int8[]) WITH ORDINALITY AS l(id, token, ord)),"
		" upd AS (UPDATE job_queue j SET lease_expires_at = now() + $3 * interval '1 second', updated_at = now()"
		"   FROM l WHERE j.id = l.id AND j.lease_token = l.token"
		"    AND j.curr_job_status = 'archive_processing'"
		"  RETURNING j.id, j.lease_expires_at)"
		" SELECT l.id, upd.id IS NOT NULL, upd.lease_expires_at, j.curr_job_status,"
		"        j.lease_token = l.token"
		"   FROM l LEFT JOIN upd ON upd.id = l.id LEFT JOIN job_queue j ON j.id = l.id"
		"  ORDER BY l.ord",
		3, { OID_INT8_ARR, OID_INT8_ARR, JQ_OID_INT4 }, true },

	/* Complete is the one lease call on every job's path, so its common case, every lease still
	 * held, is a plain UPDATE, which plans in far less time than one that also explains the
	 * leases it could not complete (pgbench, alternated 3 times, planned per call as here:
	 * 0.47 -> 0.35 ms for one job, 1.44 -> 1.30 ms for 50). Those leases are rare (a lost lease,
	 * a repeated call), and S_LEASE_STATE explains them after. */
	[S_COMPLETE] = { "jq_complete",
		"UPDATE job_queue j SET curr_job_status = 'archive_completed', " GUARD_MOVE("now()") ","
		"     lease_expires_at = NULL"
		"   FROM unnest($1::int8[], $2::int8[]) WITH ORDINALITY AS l(id, token, ord)"
		"  WHERE j.id = l.id AND j.lease_token = l.token AND j.curr_job_status = 'archive_processing'"
		" RETURNING j.id, j.lease_token, j.queue, l.ord",
		2, { OID_INT8_ARR, OID_INT8_ARR }, true },

	/* Where the leases stand, in the shape read_items reads (its `done` column is false: the
	 * caller knows which ones its statement changed). */
	[S_LEASE_STATE] = { "jq_lease_state",
		"SELECT l.id, false, NULL::timestamptz, j.curr_job_status, j.lease_token = l.token"
		"   FROM unnest($1::int8[], $2::int8[]) WITH ORDINALITY AS l(id, token, ord)"
		"   LEFT JOIN job_queue j ON j.id = l.id"
		"  ORDER BY l.ord",
		2, { OID_INT8_ARR, OID_INT8_ARR }, true },

	/* A failure is retried (back to pending, run_at pushed back by jittered exponential backoff
	 * from jobq_retry_delay_ms) until its attempts are used up or the worker says it is final;
	 * every failure is kept in job_failure with the worker the request names (the proto's
	 * FailRequest.worker_id), or the lease owner when it names none. */
	[S_FAIL] = { "jq_fail",
		"WITH l AS (SELECT * FROM unnest($1::int8[], $2::int8[], $3::text[], $4::bool[], $5::int4[],"
		"                                $8::text[])"
		"           WITH ORDINALITY AS l(id, token, err, final, retry_ms, worker, ord)),"
		" upd AS (UPDATE job_queue j SET"
		"     curr_job_status = CASE WHEN l.final OR j.attempts >= j.max_attempts"
		"                            THEN 'archive_failed' ELSE 'archive_pending' END,"
		"     " GUARD_MOVE("CASE WHEN l.final OR j.attempts >= j.max_attempts THEN now() END") ","
		"     run_at = CASE WHEN l.final OR j.attempts >= j.max_attempts THEN j.run_at"
		"                   WHEN l.retry_ms > 0 THEN now() + l.retry_ms * interval '1 millisecond'"
		"                   ELSE now() + jobq_retry_delay_ms(j.attempts, $6, $7) * interval '1 millisecond' END,"
		"     lease_expires_at = NULL, last_error = l.err"
		"   FROM l WHERE j.id = l.id AND j.lease_token = l.token"
		"    AND j.curr_job_status = 'archive_processing'"
		"  RETURNING j.id, j.attempts, COALESCE(NULLIF(l.worker, ''), j.lease_owner) AS worker,"
		"            j.curr_job_status, j.run_at, l.err),"
		" hist AS (INSERT INTO job_failure (job_id, attempt, worker, error)"
		"   SELECT id, attempts, worker, err FROM upd)"
		/* A repeat of a Fail that succeeded (its reply was lost) finds its own failure recorded
		 * for this attempt under the same token; a job the rescuer took from the lease has
		 * "lease expired" there instead, so the late worker is told its lease is gone. */
		" SELECT l.id, upd.id IS NOT NULL, COALESCE(upd.run_at, j.run_at),"
		"        COALESCE(upd.curr_job_status, j.curr_job_status),"
		"        j.lease_token = l.token AND EXISTS (SELECT 1 FROM job_failure f"
		"          WHERE f.job_id = l.id AND f.attempt = j.attempts AND f.error = l.err), j.queue"
		"   FROM l LEFT JOIN upd ON upd.id = l.id LEFT JOIN job_queue j ON j.id = l.id"
		"  ORDER BY l.ord",
		8, { OID_INT8_ARR, OID_INT8_ARR, OID_TEXT_ARR, OID_BOOL_ARR, OID_INT4_ARR, JQ_OID_INT4,
		     JQ_OID_INT4, OID_TEXT_ARR }, true },

	[S_GET] = { "jq_get", "SELECT " JOB_COLS("j.payload") " FROM job_queue j WHERE j.id = $1",
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
		"                 + coalesce(octet_length(j.idempotency_key), 0) + $7 AS size"
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

	[S_CANCEL] = { "jq_cancel",
		"WITH l AS (SELECT * FROM unnest($1::int8[]) WITH ORDINALITY AS l(id, ord)),"
		" upd AS (UPDATE job_queue j SET curr_job_status = 'archive_cancelled'"
		"   FROM l WHERE j.id = l.id AND j.curr_job_status IN ('archive_pending', 'archive_failed')"
		"  RETURNING j.id)"
		" SELECT l.id, upd.id IS NOT NULL, NULL::timestamptz, j.curr_job_status, false"
		"   FROM l LEFT JOIN upd ON upd.id = l.id LEFT JOIN job_queue j ON j.id = l.id"
		"  ORDER BY l.ord",
		1, { OID_INT8_ARR }, true },

	/* Stats scans the table: an operator's view, not a hot path. */
	[S_STATS] = { "jq_stats",
		"SELECT queue,"
		" count(*) FILTER (WHERE curr_job_status = 'archive_pending'),"
		" count(*) FILTER (WHERE curr_job_status = 'archive_pending' AND run_at > now()),"
		" count(*) FILTER (WHERE curr_job_status = 'archive_processing'),"
		" count(*) FILTER (WHERE curr_job_status = 'archive_completed'),"
		" count(*) FILTER (WHERE curr_job_status = 'archive_failed'),"
		" count(*) FILTER (WHERE curr_job_status = 'archive_cancelled'),"
		" COALESCE(EXTRACT(EPOCH FROM now() - min(run_at) FILTER ("
		"   WHERE curr_job_status = 'archive_pending' AND run_at <= now())), 0)::float8"
		" FROM job_queue WHERE ($1::text IS NULL OR queue = $1) GROUP BY queue ORDER BY queue",
		1, { JQ_OID_TEXT } },

	/* The job counts of /metrics, every 5 s on every replica, in S_STATS's shape (completed and
	 * cancelled 0): only the states a partial index covers, each read through its index
	 * (job_queue_claim_idx, job_queue_processing_idx, job_queue_failed_idx), so the cost follows
	 * the jobs waiting, running and failed, never the finished jobs the table keeps. */
	[S_JOB_GAUGES] = { "jq_job_gauges",
		"SELECT queue, sum(pending)::int8, sum(scheduled)::int8, sum(processing)::int8, 0::int8,"
		" sum(failed)::int8, 0::int8, COALESCE(EXTRACT(EPOCH FROM now() - min(oldest_due)), 0)::float8"
		" FROM (SELECT queue, count(*) AS pending, count(*) FILTER (WHERE run_at > now()) AS scheduled,"
		"              0 AS processing, 0 AS failed, min(run_at) FILTER (WHERE run_at <= now()) AS oldest_due"
		"         FROM job_queue WHERE curr_job_status = 'archive_pending' GROUP BY queue"
		"       UNION ALL"
		"       SELECT queue, 0, 0, count(*), 0, NULL FROM job_queue"
		"        WHERE curr_job_status = 'archive_processing' GROUP BY queue"
		"       UNION ALL"
		"       SELECT queue, 0, 0, 0, count(*), NULL FROM job_queue"
		"        WHERE curr_job_status = 'archive_failed' GROUP BY queue) s"
		" GROUP BY queue ORDER BY queue",
		0, { 0 } },

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
		"     curr_job_status = CASE WHEN j.attempts >= j.max_attempts"
		"                            THEN 'archive_failed' ELSE 'archive_pending' END,"
		"     run_at = CASE WHEN j.attempts >= j.max_attempts THEN j.run_at"
		"                   ELSE now() + jobq_retry_delay_ms(j.attempts, $2, $3) * interval '1 millisecond' END,"
		"     lease_expires_at = NULL, last_error = 'lease expired'"
		"   FROM expired e WHERE j.id = e.id"
		"  RETURNING j.id, j.attempts, j.lease_owner)"
		" INSERT INTO job_failure (job_id, attempt, worker, error)"
		" SELECT id, attempts, lease_owner, 'lease expired' FROM upd",
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
};

struct jq_db {
	PGconn *conn;
	char *url;
	char *application_name;
	bool prepared;
	bool ready; /* connected and statements prepared */
	char names[S__COUNT][48];      /* the name it is prepared under on this connection; "" = none */
	int uses[S__COUNT];            /* executions since it was prepared */
	int64_t prepared_ns[S__COUNT]; /* when it was (mono_ns) */
	int64_t renewals;              /* plans renewed under a fresh name (jq_db_plan_renewals) */
	uint64_t generation;           /* numbers the fresh names */
	bool dealloc_refused;          /* this connection's DEALLOCATE failed: do not send it again */
	int unfreed;                   /* old statements left prepared on this connection */
	int backoff_base_ms, backoff_max_ms, statement_timeout_ms;
	int64_t last_attempt_ns;
	jq_pgconn_net net;
	int64_t cutoff_ms;  /* stop waiting for the database here (jq_pgconn clock); 0 = no deadline */
	jq_code lost_code;  /* why the connection was last closed under a call, and what to answer */
	char lost_msg[200];
	char down_msg[256]; /* why the last connection attempt failed; "" after a success */
};

struct jq_db_rows {
	PGresult *res;
	bool cut; /* jq_db_rows_cut */
};

const char *jq_db_claim_sql(void)
{
	return stmts[S_CLAIM].sql;
}

const char *jq_db_job_gauges_sql(void)
{
	return stmts[S_JOB_GAUGES].sql;
}

static int64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* set_err writes prefix + detail as the error message. */
static void set_err(jq_db_err *err, const char *sqlstate, const char *prefix, const char *detail)
{
	if (err == NULL)
		return;
	snprintf(err->sqlstate, sizeof(err->sqlstate), "%s", sqlstate ? sqlstate : "");
	snprintf(err->msg, sizeof(err->msg), "%s%s", prefix, detail ? detail : "");
	/* libpq messages end in a newline; a log line should not. Only the first line is kept:
	 * a DETAIL line may quote row values (a key, a payload), which must never reach a log. */
	err->msg[strcspn(err->msg, "\n")] = '\0';
	size_t n = strlen(err->msg);
	while (n > 0 && (err->msg[n - 1] == '\n' || err->msg[n - 1] == ' '))
		err->msg[--n] = '\0';
}

/* map_sqlstate turns a PostgreSQL error class into the gRPC code a client can act on. */
static jq_code map_sqlstate(const char *s)
{
	if (s == NULL || strlen(s) != 5)
		return JQ_UNAVAILABLE; /* no SQLSTATE: the connection failed */
	if (!strncmp(s, "08", 2) || !strcmp(s, "57P01") || !strcmp(s, "57P02") || !strcmp(s, "57P03"))
		return JQ_UNAVAILABLE;
	if (!strcmp(s, "40001") || !strcmp(s, "40P01"))
		return JQ_ABORTED;
	if (!strcmp(s, "23503") || !strcmp(s, "23505"))
		return JQ_FAILED_PRECONDITION; /* an illegal transition, or an idempotency key in use */
	if (!strcmp(s, "57014"))
		return JQ_DEADLINE_EXCEEDED;
	if (!strncmp(s, "22", 2) || !strcmp(s, "23514") || !strcmp(s, "23502"))
		return JQ_INVALID_ARGUMENT;
	if (!strncmp(s, "53", 2))
		return JQ_RESOURCE_EXHAUSTED;
	return JQ_INTERNAL;
}

static void disconnect(jq_db *db)
{
	PQfinish(db->conn);
	db->conn = NULL;
	db->ready = false;
}

/* out_of_time: the request's deadline leaves no time for another round trip. */
static bool out_of_time(const jq_db *db)
{
	return db->cutoff_ms != 0 && jq_pgconn_now_ms() >= db->cutoff_ms;
}

static jq_code deadline_exceeded(jq_db_err *err)
{
	set_err(err, NULL, "", "deadline exceeded before the database was asked");
	return JQ_DEADLINE_EXCEEDED;
}

/* answer_until: how long to wait for one statement's answer (see SILENCE_GRACE_MS). */
static int64_t answer_until(const jq_db *db)
{
	int64_t until = JQ_PGCONN_FOREVER;
	if (db->statement_timeout_ms > 0)
		until = jq_pgconn_now_ms() + db->statement_timeout_ms + SILENCE_GRACE_MS;
	if (db->cutoff_ms != 0 && db->cutoff_ms < until)
		until = db->cutoff_ms;
	return until;
}

/* lose closes the connection under a call and records why: a timeout is the request's deadline
 * (DEADLINE_EXCEEDED) or a connection that stopped answering (UNAVAILABLE). */
static void lose(jq_db *db, jq_pgconn_rc rc, const char *what)
{
	if (rc == JQ_PGCONN_TIMEOUT && out_of_time(db)) {
		db->lost_code = JQ_DEADLINE_EXCEEDED;
		snprintf(db->lost_msg, sizeof(db->lost_msg),
			 "deadline exceeded waiting for the database (%s); connection closed", what);
	} else if (rc == JQ_PGCONN_TIMEOUT) {
		db->lost_code = JQ_UNAVAILABLE;
		snprintf(db->lost_msg, sizeof(db->lost_msg),
			 "database unavailable: no answer within %d ms (%s); connection closed",
			 db->statement_timeout_ms + SILENCE_GRACE_MS, what);
	} else {
		db->lost_code = JQ_UNAVAILABLE;
		snprintf(db->lost_msg, sizeof(db->lost_msg), "database unavailable: %s",
			 db->conn ? PQerrorMessage(db->conn) : "not connected");
		db->lost_msg[strcspn(db->lost_msg, "\n")] = '\0';
	}
	jq_warn("database connection (%s) lost: %s", db->application_name, db->lost_msg);
	disconnect(db);
}

/* await collects the answer to what a PQsend* call (which returned `sent`) queued. NULL when
 * there is none: the connection broke or stayed silent until answer_until, and is closed
 * (db->lost_* say why). Like libpq's blocking calls otherwise: an SQL error is a result. */
static PGresult *await(jq_db *db, int sent, const char *what)
{
	PGresult *r = NULL;
	jq_pgconn_rc rc = sent ? jq_pgconn_result(db->conn, answer_until(db), -1, &r)
			       : JQ_PGCONN_BROKEN;
	if (rc != JQ_PGCONN_OK)
		lose(db, rc, what);
	return r;
}

/* libpq's blocking calls, bounded (see await); NULL on a handle already closed. */
static PGresult *db_exec(jq_db *db, const char *sql)
{
	return db->conn ? await(db, PQsendQuery(db->conn, sql), sql) : NULL;
}

static PGresult *db_prepare(jq_db *db, const char *name, const char *sql, int n, const Oid *types)
{
	return db->conn ? await(db, PQsendPrepare(db->conn, name, sql, n, types), name) : NULL;
}

/* prepare_as prepares statement id's text (sql) under name, and on success makes it the one
 * run() executes and starts its plan's life. 0, or -1 with err set (the previous one stays). */
static int prepare_as(jq_db *db, stmt_id id, const char *name, const char *sql, jq_db_err *err)
{
	const stmt *s = &stmts[id];
	PGresult *r = db_prepare(db, name, sql, s->nparams, s->types);
	int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
	if (!ok && r == NULL)
		set_err(err, NULL, "", db->lost_msg);
	else if (!ok)
		set_err(err, PQresultErrorField(r, PG_DIAG_SQLSTATE), "prepare: ", PQresultErrorMessage(r));
	PQclear(r);
	if (ok)
		snprintf(db->names[id], sizeof(db->names[id]), "%s", name);
	db->uses[id] = 0;
	db->prepared_ns[id] = mono_ns();
	return ok ? 0 : -1;
}

/* prepare_all prepares every statement, so that one the schema does not accept fails at connect
 * rather than at first use. */
static int prepare_all(jq_db *db, jq_db_err *err)
{
	db->unfreed = 0;
	db->dealloc_refused = false;
	for (int i = 0; i < S__COUNT; i++) {
		db->names[i][0] = '\0';
		if (prepare_as(db, (stmt_id)i, stmts[i].name, stmts[i].sql, err) != 0)
			return -1;
	}
	return 0;
}

/* plan_due: a replan statement has run REPREPARE_USES times or for REPREPARE_NS on its plan. */
static bool plan_due(const jq_db *db, stmt_id id)
{
	return db->uses[id] >= REPREPARE_USES || mono_ns() - db->prepared_ns[id] >= REPREPARE_NS;
}

/* free_statement releases a statement that is no longer run: with libpq 17's PQclosePrepared (a
 * protocol Close, which PgBouncer understands) where there is one, else with an SQL DEALLOCATE.
 * Behind PgBouncer 1.21+ with prepared statements the pooler prepares ours under names of its
 * own, so that DEALLOCATE fails on the server; the statement then stays, this connection sends
 * no more DEALLOCATEs, and after MAX_UNFREED such statements run() opens a new connection, which
 * frees them. */
static void free_statement(jq_db *db, const char *name)
{
	bool ok = false;
#ifdef LIBPQ_HAS_CLOSE_PREPARED
	PGresult *r = PQclosePrepared(db->conn, name);
	ok = PQresultStatus(r) == PGRES_COMMAND_OK;
	PQclear(r);
#else
	if (!db->dealloc_refused) {
		char sql[80];
		snprintf(sql, sizeof(sql), "DEALLOCATE %s", name);
		PGresult *r = db_exec(db, sql);
		ok = PQresultStatus(r) == PGRES_COMMAND_OK;
		PQclear(r);
		db->dealloc_refused = !ok;
	}
#endif
	if (!ok)
		db->unfreed++;
}

/* renew_plan prepares statement id again under a fresh name, so that PostgreSQL plans it afresh,
 * then frees the old one. Not DEALLOCATE and the same name: behind PgBouncer 1.21+ that DEALLOCATE
 * fails (see free_statement) and the plan was never renewed again. The text names the statement
 * too, in a comment: PgBouncer shares the server's statements between clients by their text,
 * and the same text would bring the old plan back. If the prepare fails, the old statement stays
 * in use for another period; a broken connection shows at the next call. */
static void renew_plan(jq_db *db, stmt_id id)
{
	char name[48], old[48];
	jq_db_err ignored;
	const char *sql = stmts[id].sql;
	char *text = malloc(strlen(sql) + 96);
	if (text == NULL) {
		db->uses[id] = 0;
		db->prepared_ns[id] = mono_ns();
		return;
	}
	snprintf(name, sizeof(name), "%s_%llu", stmts[id].name, (unsigned long long)++db->generation);
	sprintf(text, "%s /* %s, process %ld */", sql, name, (long)getpid());
	snprintf(old, sizeof(old), "%s", db->names[id]);
	if (prepare_as(db, id, name, text, &ignored) == 0) {
		db->renewals++;
		free_statement(db, old);
	}
	free(text);
}

static int session_setup(jq_db *db, jq_db_err *err)
{
	char sql[96];
	snprintf(sql, sizeof(sql), "SET statement_timeout = %d", db->statement_timeout_ms);
	PGresult *r = db_exec(db, sql);
	int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
	if (!ok && r == NULL)
		set_err(err, NULL, "", db->lost_msg);
	else if (!ok)
		set_err(err, PQresultErrorField(r, PG_DIAG_SQLSTATE), "setup: ", PQresultErrorMessage(r));
	PQclear(r);
	return ok ? 0 : -1;
}

/* connect_now opens the connection and prepares the statements, all by the request's deadline
 * when there is one; on failure the handle stays disconnected and the next call tries again
 * after RECONNECT_INTERVAL_NS. */
static jq_code connect_attempt(jq_db *db, jq_db_err *err)
{
	char why[200];
	jq_pgconn_opts o = { .url = db->url, .application_name = db->application_name, .net = &db->net };

	db->last_attempt_ns = mono_ns();
	jq_pgconn_rc rc = jq_pgconn_open(&o, db->cutoff_ms ? db->cutoff_ms : JQ_PGCONN_FOREVER, -1,
					 &db->conn, why, sizeof(why));
	if (rc != JQ_PGCONN_OK) {
		bool late = rc == JQ_PGCONN_TIMEOUT && out_of_time(db);
		set_err(err, NULL, late ? "deadline exceeded connecting to the database: "
					: "database unavailable: ", why);
		return late ? JQ_DEADLINE_EXCEEDED : JQ_UNAVAILABLE;
	}
	if (session_setup(db, err) != 0 || (db->prepared && prepare_all(db, err) != 0)) {
		jq_code c = db->conn == NULL ? db->lost_code : JQ_UNAVAILABLE;
		disconnect(db);
		return c;
	}
	db->ready = true;
	return JQ_OK;
}

/* connect_now is connect_attempt remembering why it failed, for the calls that come before the
 * next attempt (and jq_db_connected). */
static jq_code connect_now(jq_db *db, jq_db_err *err)
{
	jq_db_err e = { .msg = "" };
	jq_code c = connect_attempt(db, &e);
	snprintf(db->down_msg, sizeof(db->down_msg), "%s", c == JQ_OK ? "" : e.msg);
	if (err != NULL && c != JQ_OK)
		*err = e;
	return c;
}

/* ensure_connected: a usable connection, or JQ_UNAVAILABLE without waiting when the last
 * attempt was too recent (a dead database must not turn every request into a connect). */
static jq_code ensure_connected(jq_db *db, jq_db_err *err)
{
	if (db->ready && PQstatus(db->conn) == CONNECTION_OK)
		return JQ_OK;
	if (db->conn != NULL)
		disconnect(db);
	if (out_of_time(db))
		return deadline_exceeded(err);
	if (mono_ns() - db->last_attempt_ns < RECONNECT_INTERVAL_NS) {
		/* The last attempt's reason: the same words as that attempt, until the next one. */
		set_err(err, NULL, "",
			db->down_msg[0] ? db->down_msg : "database unavailable (reconnecting)");
		return JQ_UNAVAILABLE;
	}
	jq_code c = connect_now(db, err);
	if (c == JQ_OK)
		jq_info("database connection established");
	return c;
}

int jq_db_open(const jq_db_opts *opts, jq_db **out)
{
	jq_db *db = calloc(1, sizeof(*db));
	if (db == NULL)
		return -1;
	db->url = strdup(opts->url);
	db->application_name = strdup(opts->application_name ? opts->application_name : "jobqd");
	if (db->url == NULL || db->application_name == NULL)
		goto fail;
	db->prepared = opts->prepared;
	db->backoff_base_ms = opts->backoff_base_ms;
	db->backoff_max_ms = opts->backoff_max_ms;
	db->statement_timeout_ms = opts->statement_timeout_ms;
	db->net = opts->net != NULL ? *opts->net : jq_pgconn_net_default;
	db->lost_code = JQ_UNAVAILABLE;
	(void)connect_now(db, NULL); /* the owner logs what it needs: jq_db_connected */
	*out = db;
	return 0;
fail:
	jq_db_close(db);
	return -1;
}

void jq_db_close(jq_db *db)
{
	if (db == NULL)
		return;
	if (db->conn != NULL)
		disconnect(db);
	free(db->url);
	free(db->application_name);
	free(db);
}

void jq_db_set_deadline(jq_db *db, int64_t deadline_us)
{
	if (deadline_us == 0) {
		db->cutoff_ms = 0;
		return;
	}
	int64_t margin = (deadline_us - mono_ns() / 1000) / 10;
	if (margin > REPLY_MARGIN_MAX_US)
		margin = REPLY_MARGIN_MAX_US;
	if (margin < 0)
		margin = 0;
	/* Both clocks are CLOCK_MONOTONIC; 1 ms, not 0, when the deadline is already gone. */
	int64_t cutoff = (deadline_us - margin) / 1000;
	db->cutoff_ms = cutoff > 0 ? cutoff : 1;
}

bool jq_db_connected(const jq_db *db, jq_db_err *why)
{
	if (db->ready && db->conn != NULL && PQstatus(db->conn) == CONNECTION_OK)
		return true;
	set_err(why, NULL, "", db->down_msg[0] ? db->down_msg : "database unavailable: not connected");
	return false;
}

int64_t jq_db_plan_renewals(const jq_db *db)
{
	return db->renewals;
}

const char *jq_db_statement_name(const jq_db *db, const char *base)
{
	for (int i = 0; i < S__COUNT; i++) {
		if (strcmp(stmts[i].name, base) == 0)
			return db->names[i][0] != '\0' ? db->names[i] : NULL;
	}
	return NULL;
}

/* run executes one statement with binary parameters and binary results. On success *res holds
 * the result (caller PQclears). On failure nothing is left to free. */
static jq_code run(jq_db *db, stmt_id id, const char *const *values, const int *lengths,
		   const int *formats, PGresult **res, jq_db_err *err)
{
	if (out_of_time(db))
		return deadline_exceeded(err);
	if (db->unfreed >= MAX_UNFREED && db->conn != NULL) {
		disconnect(db); /* frees them; the next line connects again at once */
		db->last_attempt_ns = 0;
	}
	jq_code c = ensure_connected(db, err);
	if (c != JQ_OK)
		return c;
	const stmt *s = &stmts[id];
	PGresult *r;
	if (db->prepared && s->replan && plan_due(db, id))
		renew_plan(db, id);
	if (db->conn == NULL) {
		r = NULL; /* lost while renewing the plan */
	} else if (db->prepared && db->names[id][0] != '\0') {
		db->uses[id]++;
		r = await(db, PQsendQueryPrepared(db->conn, db->names[id], s->nparams, values, lengths,
						  formats, 1),
			  s->name);
	} else {
		r = await(db, PQsendQueryParams(db->conn, s->sql, s->nparams, s->types, values, lengths,
						formats, 1), s->name);
	}
	if (r == NULL) {
		set_err(err, NULL, "", db->lost_msg);
		return db->lost_code;
	}
	ExecStatusType st = PQresultStatus(r);
	if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
		*res = r;
		return JQ_OK;
	}
	const char *sqlstate = PQresultErrorField(r, PG_DIAG_SQLSTATE);
	c = map_sqlstate(sqlstate);
	set_err(err, sqlstate, "", PQresultErrorMessage(r));
	PQclear(r);
	if (PQstatus(db->conn) != CONNECTION_OK) {
		/* Retry this one request at once on a fresh connection? No: the statement may have
		 * committed before the connection broke. The client decides; we only reconnect. */
		disconnect(db);
		c = JQ_UNAVAILABLE;
	}
	if (c == JQ_INTERNAL)
		jq_error("%s failed: %s", s->name, err ? err->msg : "");
	return c;
}

jq_code jq_db_ping(jq_db *db, jq_db_err *err)
{
	if (out_of_time(db))
		return deadline_exceeded(err);
	jq_code c = ensure_connected(db, err);
	if (c != JQ_OK)
		return c;
	PGresult *r = db_exec(db, "SELECT 1");
	bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;
	if (r == NULL) {
		set_err(err, NULL, "", db->lost_msg);
		return db->lost_code;
	}
	if (!ok)
		set_err(err, PQresultErrorField(r, PG_DIAG_SQLSTATE), "", PQresultErrorMessage(r));
	PQclear(r);
	if (ok)
		return JQ_OK;
	if (PQstatus(db->conn) != CONNECTION_OK)
		disconnect(db);
	return JQ_UNAVAILABLE;
}

static jq_db_rows *wrap(PGresult *r)
{
	jq_db_rows *rows = malloc(sizeof(*rows));
	if (rows == NULL) {
		PQclear(r);
		return NULL;
	}
	rows->res = r;
	rows->cut = false;
	return rows;
}

/* wrap_budgeted wraps the rows of a statement with a byte budget: its C_TAKEN column counts the
 * rows the limit took, of which the budget kept a prefix. */
static jq_db_rows *wrap_budgeted(PGresult *r)
{
	int n = PQntuples(r);
	bool cut = n > 0 && jq_pgbin_i64(r, 0, C_TAKEN) > n;
	jq_db_rows *rows = wrap(r);
	if (rows != NULL)
		rows->cut = cut;
	return rows;
}

/* Arrays of parameters, freed together. */
typedef struct params {
	jq_pgbin_array arr[6];
	int narr;
} params;

static void params_free(params *p)
{
	for (int i = 0; i < p->narr; i++)
		jq_pgbin_array_free(&p->arr[i]);
}

static jq_code nomem(jq_db_err *err)
{
	set_err(err, NULL, "", "out of memory");
	return JQ_RESOURCE_EXHAUSTED;
}

jq_code jq_db_enqueue(jq_db *db, const jq_db_job_spec *specs, size_t n, int64_t *ids, jq_db_err *err)
{
	params p = { .narr = 6 };
	static const uint32_t oids[6] = { JQ_OID_TEXT, JQ_OID_BYTEA, JQ_OID_INT2, JQ_OID_TIMESTAMPTZ,
					   JQ_OID_INT4, JQ_OID_TEXT };
	const char *values[6];
	int lengths[6], formats[6];
	PGresult *r = NULL;
	jq_code c;

	for (int i = 0; i < 6; i++)
		jq_pgbin_array_init(&p.arr[i], oids[i]);
	for (size_t i = 0; i < n; i++) {
		const jq_db_job_spec *s = &specs[i];
		jq_pgbin_array_add_text(&p.arr[0], s->queue);
		jq_pgbin_array_add(&p.arr[1], s->payload ? (const void *)s->payload : "", (int32_t)s->payload_len);
		jq_pgbin_array_add_i16(&p.arr[2], s->priority);
		if (s->run_at_us != 0)
			jq_pgbin_array_add_ts(&p.arr[3], s->run_at_us);
		else
			jq_pgbin_array_add_null(&p.arr[3]);
		if (s->max_attempts > 0)
			jq_pgbin_array_add_i32(&p.arr[4], s->max_attempts);
		else
			jq_pgbin_array_add_null(&p.arr[4]);
		jq_pgbin_array_add_text(&p.arr[5], s->idempotency_key);
	}
	for (int i = 0; i < 6; i++) {
		if (jq_pgbin_array_finish(&p.arr[i]) != 0) {
			c = nomem(err);
			goto out;
		}
		values[i] = p.arr[i].data;
		lengths[i] = (int)p.arr[i].len;
		formats[i] = 1;
	}
	c = run(db, S_ENQUEUE, values, lengths, formats, &r, err);
	if (c != JQ_OK)
		goto out;
	if ((size_t)PQntuples(r) != n) {
		set_err(err, NULL, "", "enqueue returned a different number of ids");
		c = JQ_INTERNAL;
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		ids[i] = jq_pgbin_i64(r, (int)i, 0);
out:
	PQclear(r);
	params_free(&p);
	return c;
}

/* check_states: both status columns of every job row name a state this jobqd knows. A state it
 * does not know (a newer migration added one, a row written by hand) makes the whole call an
 * error, as read_items does for the lease calls: answering it as any known state would tell the
 * caller something false about the job. On error r is cleared. */
static jq_code check_states(PGresult *r, jq_db_err *err)
{
	static const int cols[] = { C_STATUS, C_PREV };
	for (int i = 0; i < PQntuples(r); i++) {
		for (size_t k = 0; k < sizeof(cols) / sizeof(cols[0]); k++) {
			jq_state s;
			if (jq_state_from_name(PQgetvalue(r, i, cols[k]), &s) != 0) {
				set_err(err, NULL, "unknown job status in the database: ", PQgetvalue(r, i, cols[k]));
				PQclear(r);
				return JQ_INTERNAL;
			}
		}
	}
	return JQ_OK;
}

jq_code jq_db_claim_within(jq_db *db, const char *queue, int limit, const char *worker,
			   int lease_seconds, int64_t max_bytes, int per_job_bytes, jq_db_rows **rows,
			   jq_db_err *err)
{
	char lim[4], lease[4], max[8], per_job[4];
	size_t qlen = strlen(queue), wlen = strlen(worker);
	jq_pgbin_put_i32(lim, limit);
	jq_pgbin_put_i32(lease, lease_seconds);
	jq_pgbin_put_i64(max, max_bytes);
	/* The queue and the worker (the new lease owner) are the same for every job claimed. Both
	 * are validated short; a per-job size that would not fit an int4 only makes jobs look big. */
	int64_t fixed = (int64_t)per_job_bytes + (int64_t)qlen + (int64_t)wlen;
	jq_pgbin_put_i32(per_job, fixed > INT32_MAX ? INT32_MAX : (int32_t)fixed);
	const char *values[6] = { queue, lim, worker, lease, max, per_job };
	int lengths[6] = { (int)qlen, 4, (int)wlen, 4, 8, 4 };
	int formats[6] = { 1, 1, 1, 1, 1, 1 };
	PGresult *r;
	jq_code c = run(db, S_CLAIM, values, lengths, formats, &r, err);
	if (c == JQ_OK)
		c = check_states(r, err);
	if (c != JQ_OK)
		return c;
	if ((*rows = wrap_budgeted(r)) == NULL)
		return nomem(err);
	return JQ_OK;
}

jq_code jq_db_claim(jq_db *db, const char *queue, int limit, const char *worker, int lease_seconds,
		    jq_db_rows **rows, jq_db_err *err)
{
	return jq_db_claim_within(db, queue, limit, worker, lease_seconds, INT64_MAX, 0, rows, err);
}

/* Reading the outcome rows of Heartbeat/Complete/Fail/Retry/Cancel:
 * (id, done, time, status before (or after for Fail), token still matches). */
typedef jq_code (*judge_fn)(jq_state status, bool same_token, const char **message);

/* done[i], when not NULL, says instead of column 1 whether the caller's statement changed job i. */
static jq_code read_items(PGresult *r, size_t n, const bool *done_by_caller, jq_db_item *items,
			  jq_state done_status, judge_fn judge, jq_db_err *err)
{
	if ((size_t)PQntuples(r) != n) {
		set_err(err, NULL, "", "batch returned a different number of rows");
		return JQ_INTERNAL;
	}
	for (size_t i = 0; i < n; i++) {
		jq_db_item *it = &items[i];
		int row = (int)i;
		memset(it, 0, sizeof(*it));
		it->id = jq_pgbin_i64(r, row, 0);
		bool done = done_by_caller != NULL ? done_by_caller[i] : jq_pgbin_bool(r, row, 1);
		bool exists = !PQgetisnull(r, row, 3);
		jq_state st = done_status;
		if (exists && jq_state_from_name(PQgetvalue(r, row, 3), &st) != 0) {
			set_err(err, NULL, "unknown job status in the database: ", PQgetvalue(r, row, 3));
			return JQ_INTERNAL;
		}
		if (done) {
			it->code = JQ_OK;
			it->status = done_status == JQ_STATE__COUNT ? st : done_status;
			it->status_known = true;
			continue;
		}
		if (!exists) {
			it->code = JQ_NOT_FOUND;
			it->message = "no such job";
			continue;
		}
		it->status = st;
		it->status_known = true;
		it->code = judge(st, jq_pgbin_bool(r, row, 4), &it->message);
	}
	return JQ_OK;
}

/* A lease call that changed nothing: the lease is lost unless this is a repeat of a call that
 * already succeeded with the same token (the reply of the first may have been lost). */
static jq_code judge_heartbeat(jq_state st, bool same_token, const char **message)
{
	(void)st;
	(void)same_token;
	*message = "lease lost: the job is no longer processing under this token";
	return JQ_FAILED_PRECONDITION;
}

static jq_code judge_complete(jq_state st, bool same_token, const char **message)
{
	if (st == JQ_STATE_COMPLETED && same_token)
		return JQ_OK;
	*message = "lease lost: the job is no longer processing under this token";
	return JQ_FAILED_PRECONDITION;
}

/* For Fail, same_token also means "and this very failure is already recorded" (see S_FAIL). */
static jq_code judge_fail(jq_state st, bool same_token, const char **message)
{
	if ((st == JQ_STATE_FAILED || st == JQ_STATE_PENDING) && same_token)
		return JQ_OK;
	*message = "lease lost: the job is no longer processing under this token";
	return JQ_FAILED_PRECONDITION;
}

static jq_code judge_retry(jq_state st, bool same_token, const char **message)
{
	(void)same_token;
	if (st == JQ_STATE_PENDING)
		return JQ_OK; /* already waiting to run: retrying it again changes nothing */
	*message = "only archive_failed or archive_cancelled jobs can be retried";
	return JQ_FAILED_PRECONDITION;
}

static jq_code judge_cancel(jq_state st, bool same_token, const char **message)
{
	(void)same_token;
	if (st == JQ_STATE_CANCELLED)
		return JQ_OK;
	*message = st == JQ_STATE_PROCESSING ? "the job is running; it cannot be cancelled under its worker"
					     : "only archive_pending or archive_failed jobs can be cancelled";
	return JQ_FAILED_PRECONDITION;
}

/* lease_arrays fills id and token arrays (p->arr[0..1]) from leases. */
static int lease_arrays(params *p, const jq_db_lease *leases, size_t n)
{
	p->narr = 2;
	jq_pgbin_array_init(&p->arr[0], JQ_OID_INT8);
	jq_pgbin_array_init(&p->arr[1], JQ_OID_INT8);
	for (size_t i = 0; i < n; i++) {
		jq_pgbin_array_add_i64(&p->arr[0], leases[i].id);
		jq_pgbin_array_add_i64(&p->arr[1], leases[i].lease_token);
	}
	return jq_pgbin_array_finish(&p->arr[0]) | jq_pgbin_array_finish(&p->arr[1]);
}

jq_code jq_db_heartbeat(jq_db *db, const jq_db_lease *leases, size_t n, int lease_seconds,
			jq_db_item *items, jq_db_err *err)
{
	params p = { 0 };
	PGresult *r = NULL;
	jq_code c;
	char lease[4];

	if (lease_arrays(&p, leases, n) != 0) {
		c = nomem(err);
		goto out;
	}
	jq_pgbin_put_i32(lease, lease_seconds);
	const char *values[3] = { p.arr[0].data, p.arr[1].data, lease };
	int lengths[3] = { (int)p.arr[0].len, (int)p.arr[1].len, 4 };
	int formats[3] = { 1, 1, 1 };
	c = run(db, S_HEARTBEAT, values, lengths, formats, &r, err);
	if (c != JQ_OK)
		goto out;
	c = read_items(r, n, NULL, items, JQ_STATE_PROCESSING, judge_heartbeat, err);
	for (size_t i = 0; c == JQ_OK && i < n; i++) {
		if (items[i].code == JQ_OK)
			items[i].lease_expires_at_ms = jq_pgbin_ts_ms(r, (int)i, 2);
	}
out:
	PQclear(r);
	params_free(&p);
	return c;
}

/* note_changed marks an item as moved by the call, with the queue in column col of row. */
static void note_changed(jq_db_item *it, const PGresult *r, int row, int col)
{
	size_t len = PQgetisnull(r, row, col) ? 0 : (size_t)PQgetlength(r, row, col);
	if (len > JQ_DB_QUEUE_MAX)
		len = JQ_DB_QUEUE_MAX;
	memcpy(it->queue, PQgetvalue(r, row, col), len);
	it->queue[len] = '\0';
	it->changed = true;
}

/* note_completed marks the leases that S_COMPLETE's rows (id, token, queue, ord) completed. */
static void note_completed(const PGresult *r, jq_db_item *items, size_t n)
{
	for (int k = 0; k < PQntuples(r); k++) {
		int64_t ord = jq_pgbin_i64(r, k, 3);
		if (ord >= 1 && (size_t)ord <= n)
			note_changed(&items[ord - 1], r, k, 2);
	}
}

/* completed_all: whether the UPDATE's rows (the ids it completed) cover every lease. Each row
 * is a distinct job, so with as many rows as leases every lease completed, unless an id was
 * given twice; then there are fewer rows, and the slow path answers both. */
static bool completed_all(const PGresult *r, size_t n)
{
	return (size_t)PQntuples(r) == n;
}

/* mark_completed sets done[i] for every lease among the UPDATE's rows. By (id, token): the same
 * job named again under a stale token in the same call was not completed by that lease, and is
 * judged like any other. */
static void mark_completed(const PGresult *r, const jq_db_lease *leases, size_t n, bool *done)
{
	int rows = PQntuples(r);
	for (size_t i = 0; i < n; i++) {
		done[i] = false;
		for (int k = 0; k < rows && !done[i]; k++)
			done[i] = jq_pgbin_i64(r, k, 0) == leases[i].id &&
				  jq_pgbin_i64(r, k, 1) == leases[i].lease_token;
	}
}

jq_code jq_db_complete(jq_db *db, const jq_db_lease *leases, size_t n, jq_db_item *items,
		       jq_db_err *err)
{
	params p = { 0 };
	PGresult *r = NULL, *state = NULL;
	bool *done = NULL;
	jq_code c;

	if (lease_arrays(&p, leases, n) != 0) {
		c = nomem(err);
		goto out;
	}
	const char *values[2] = { p.arr[0].data, p.arr[1].data };
	int lengths[2] = { (int)p.arr[0].len, (int)p.arr[1].len };
	int formats[2] = { 1, 1 };
	c = run(db, S_COMPLETE, values, lengths, formats, &r, err);
	if (c != JQ_OK)
		goto out;
	if (completed_all(r, n)) {
		for (size_t i = 0; i < n; i++)
			items[i] = (jq_db_item){ .id = leases[i].id, .code = JQ_OK,
						 .status = JQ_STATE_COMPLETED, .status_known = true };
		note_completed(r, items, n);
		goto out;
	}
	/* Some lease did not complete: the UPDATE has committed, and the rest are judged by where
	 * they stand now (a repeat of a Complete that succeeded finds its job completed under the
	 * same token: OK). */
	done = malloc(n * sizeof(*done));
	if (done == NULL) {
		c = nomem(err);
		goto out;
	}
	mark_completed(r, leases, n, done);
	c = run(db, S_LEASE_STATE, values, lengths, formats, &state, err);
	if (c == JQ_OK)
		c = read_items(state, n, done, items, JQ_STATE_COMPLETED, judge_complete, err);
	if (c == JQ_OK)
		note_completed(r, items, n);
out:
	PQclear(r);
	PQclear(state);
	free(done);
	params_free(&p);
	return c;
}

jq_code jq_db_fail(jq_db *db, const jq_db_lease *leases, size_t n, jq_db_item *items, jq_db_err *err)
{
	params p = { 0 };
	PGresult *r = NULL;
	jq_code c;
	char base[4], max[4];

	if (lease_arrays(&p, leases, n) != 0) {
		c = nomem(err);
		goto out;
	}
	p.narr = 6;
	jq_pgbin_array_init(&p.arr[2], JQ_OID_TEXT);
	jq_pgbin_array_init(&p.arr[3], JQ_OID_BOOL);
	jq_pgbin_array_init(&p.arr[4], JQ_OID_INT4);
	jq_pgbin_array_init(&p.arr[5], JQ_OID_TEXT);
	for (size_t i = 0; i < n; i++) {
		jq_pgbin_array_add_text(&p.arr[2], leases[i].error ? leases[i].error : "");
		jq_pgbin_array_add_bool(&p.arr[3], leases[i].final);
		jq_pgbin_array_add_i32(&p.arr[4], leases[i].retry_in_ms);
		jq_pgbin_array_add_text(&p.arr[5], leases[i].worker ? leases[i].worker : "");
	}
	if ((jq_pgbin_array_finish(&p.arr[2]) | jq_pgbin_array_finish(&p.arr[3]) |
	     jq_pgbin_array_finish(&p.arr[4]) | jq_pgbin_array_finish(&p.arr[5])) != 0) {
		c = nomem(err);
		goto out;
	}
	jq_pgbin_put_i32(base, db->backoff_base_ms);
	jq_pgbin_put_i32(max, db->backoff_max_ms);
	const char *values[8] = { p.arr[0].data, p.arr[1].data, p.arr[2].data, p.arr[3].data,
				  p.arr[4].data, base, max, p.arr[5].data };
	int lengths[8] = { (int)p.arr[0].len, (int)p.arr[1].len, (int)p.arr[2].len,
			   (int)p.arr[3].len, (int)p.arr[4].len, 4, 4, (int)p.arr[5].len };
	int formats[8] = { 1, 1, 1, 1, 1, 1, 1, 1 };
	c = run(db, S_FAIL, values, lengths, formats, &r, err);
	if (c != JQ_OK)
		goto out;
	/* JQ_STATE__COUNT: the status after the call is in the row (pending or failed). */
	c = read_items(r, n, NULL, items, JQ_STATE__COUNT, judge_fail, err);
	for (size_t i = 0; c == JQ_OK && i < n; i++) {
		if (items[i].code == JQ_OK && items[i].status == JQ_STATE_PENDING)
			items[i].run_at_ms = jq_pgbin_ts_ms(r, (int)i, 2);
		if (items[i].code == JQ_OK && jq_pgbin_bool(r, (int)i, 1))
			note_changed(&items[i], r, (int)i, 5);
	}
out:
	PQclear(r);
	params_free(&p);
	return c;
}

jq_code jq_db_get(jq_db *db, int64_t id, jq_db_rows **job_rows, jq_db_rows **failure_rows,
		  jq_db_err *err)
{
	char idb[8];
	jq_pgbin_put_i64(idb, id);
	const char *values[1] = { idb };
	int lengths[1] = { 8 }, formats[1] = { 1 };
	PGresult *r1, *r2;

	*job_rows = *failure_rows = NULL;
	jq_code c = run(db, S_GET, values, lengths, formats, &r1, err);
	if (c == JQ_OK)
		c = check_states(r1, err);
	if (c != JQ_OK)
		return c;
	c = run(db, S_GET_FAILURES, values, lengths, formats, &r2, err);
	if (c != JQ_OK) {
		PQclear(r1);
		return c;
	}
	*job_rows = wrap(r1);
	*failure_rows = wrap(r2);
	if (*job_rows == NULL || *failure_rows == NULL) {
		jq_db_rows_free(*job_rows);
		jq_db_rows_free(*failure_rows);
		*job_rows = *failure_rows = NULL;
		return nomem(err);
	}
	return JQ_OK;
}

jq_code jq_db_list(jq_db *db, const char *queue, const jq_state *status, int64_t after_id, int limit,
		   bool include_payload, int64_t max_bytes, int per_job_bytes, jq_db_rows **rows,
		   jq_db_err *err)
{
	char after[8], lim[4], inc = include_payload ? 1 : 0, max[8], per_job[4];
	const char *st = status ? jq_state_name(*status) : NULL;
	jq_pgbin_put_i64(after, after_id);
	jq_pgbin_put_i32(lim, limit);
	jq_pgbin_put_i64(max, max_bytes);
	jq_pgbin_put_i32(per_job, per_job_bytes);
	const char *values[7] = { queue, st, after, lim, &inc, max, per_job };
	int lengths[7] = { queue ? (int)strlen(queue) : 0, st ? (int)strlen(st) : 0, 8, 4, 1, 8, 4 };
	int formats[7] = { 1, 1, 1, 1, 1, 1, 1 };
	PGresult *r;
	jq_code c = run(db, S_LIST, values, lengths, formats, &r, err);
	if (c == JQ_OK)
		c = check_states(r, err);
	if (c != JQ_OK)
		return c;
	if ((*rows = wrap_budgeted(r)) == NULL)
		return nomem(err);
	return JQ_OK;
}

/* ids_call runs a statement whose only parameter is an int8[] of ids and reads its items. */
static jq_code ids_call(jq_db *db, stmt_id id, const int64_t *ids, size_t n, judge_fn judge,
			jq_state done_status, jq_db_item *items, jq_db_err *err)
{
	jq_pgbin_array a;
	PGresult *r = NULL;
	jq_code c;

	jq_pgbin_array_init(&a, JQ_OID_INT8);
	for (size_t i = 0; i < n; i++)
		jq_pgbin_array_add_i64(&a, ids[i]);
	if (jq_pgbin_array_finish(&a) != 0) {
		c = nomem(err);
		goto out;
	}
	const char *values[1] = { a.data };
	int lengths[1] = { (int)a.len }, formats[1] = { 1 };
	c = run(db, id, values, lengths, formats, &r, err);
	if (c == JQ_OK)
		c = read_items(r, n, NULL, items, done_status, judge, err);
out:
	PQclear(r);
	jq_pgbin_array_free(&a);
	return c;
}

jq_code jq_db_retry(jq_db *db, const int64_t *ids, size_t n, jq_db_item *items, jq_db_err *err)
{
	return ids_call(db, S_RETRY, ids, n, judge_retry, JQ_STATE_PENDING, items, err);
}

jq_code jq_db_cancel(jq_db *db, const int64_t *ids, size_t n, jq_db_item *items, jq_db_err *err)
{
	return ids_call(db, S_CANCEL, ids, n, judge_cancel, JQ_STATE_CANCELLED, items, err);
}

/* count_call runs a statement that reports only how many rows it touched. */
static jq_code count_call(jq_db *db, stmt_id id, const char *const *values, const int *lengths,
			  const int *formats, int64_t *count, jq_db_err *err)
{
	PGresult *r;
	jq_code c = run(db, id, values, lengths, formats, &r, err);
	if (c != JQ_OK)
		return c;
	*count = strtoll(PQcmdTuples(r), NULL, 10);
	PQclear(r);
	return JQ_OK;
}

jq_code jq_db_retry_failed_batch(jq_db *db, const char *queue, int64_t after_id, int limit,
				 int64_t *count, int64_t *last_id, jq_db_err *err)
{
	char lim[4], after[8];
	jq_pgbin_put_i32(lim, limit);
	jq_pgbin_put_i64(after, after_id);
	const char *values[3] = { queue, lim, after };
	int lengths[3] = { (int)strlen(queue), 4, 8 }, formats[3] = { 1, 1, 1 };
	PGresult *r;
	jq_code c = run(db, S_RETRY_ALL, values, lengths, formats, &r, err);
	if (c != JQ_OK)
		return c;
	*count = jq_pgbin_i64(r, 0, 0);
	*last_id = jq_pgbin_i64(r, 0, 1);
	PQclear(r);
	return JQ_OK;
}

jq_code jq_db_stats(jq_db *db, const char *queue, jq_db_rows **rows, jq_db_err *err)
{
	const char *values[1] = { queue };
	int lengths[1] = { queue ? (int)strlen(queue) : 0 }, formats[1] = { 1 };
	PGresult *r;
	jq_code c = run(db, S_STATS, values, lengths, formats, &r, err);
	if (c != JQ_OK)
		return c;
	if ((*rows = wrap(r)) == NULL)
		return nomem(err);
	return JQ_OK;
}

jq_code jq_db_job_gauges(jq_db *db, jq_db_rows **rows, jq_db_err *err)
{
	PGresult *r;
	jq_code c = run(db, S_JOB_GAUGES, NULL, NULL, NULL, &r, err);
	if (c != JQ_OK)
		return c;
	if ((*rows = wrap(r)) == NULL)
		return nomem(err);
	return JQ_OK;
}

jq_code jq_db_finished_estimates(jq_db *db, int64_t *completed, int64_t *cancelled, jq_db_err *err)
{
	PGresult *r;
	jq_code c = run(db, S_FINISHED_ESTIMATES, NULL, NULL, NULL, &r, err);
	if (c != JQ_OK)
		return c;
	/* Analyzed, a state missing from the sample is as good as none; never analyzed, unknown. */
	*completed = *cancelled = PQntuples(r) > 0 ? 0 : -1;
	for (int i = 0; i < PQntuples(r); i++) {
		const char *state = PQgetvalue(r, i, 0);
		if (strcmp(state, jq_state_name(JQ_STATE_COMPLETED)) == 0)
			*completed = jq_pgbin_i64(r, i, 1);
		else if (strcmp(state, jq_state_name(JQ_STATE_CANCELLED)) == 0)
			*cancelled = jq_pgbin_i64(r, i, 1);
	}
	PQclear(r);
	return JQ_OK;
}

jq_code jq_db_rescue(jq_db *db, int limit, int64_t *count, jq_db_err *err)
{
	char lim[4], base[4], max[4];
	jq_pgbin_put_i32(lim, limit);
	jq_pgbin_put_i32(base, db->backoff_base_ms);
	jq_pgbin_put_i32(max, db->backoff_max_ms);
	const char *values[3] = { lim, base, max };
	int lengths[3] = { 4, 4, 4 }, formats[3] = { 1, 1, 1 };
	return count_call(db, S_RESCUE, values, lengths, formats, count, err);
}

jq_code jq_db_retention(jq_db *db, int older_than_s, int limit, int64_t *count, jq_db_err *err)
{
	char age[4], lim[4];
	jq_pgbin_put_i32(age, older_than_s);
	jq_pgbin_put_i32(lim, limit);
	const char *values[2] = { age, lim };
	int lengths[2] = { 4, 4 }, formats[2] = { 1, 1 };
	return count_call(db, S_RETENTION, values, lengths, formats, count, err);
}

int jq_db_rows_count(const jq_db_rows *rows)
{
	return rows ? PQntuples(rows->res) : 0;
}

static const char *text_or_empty(const PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? "" : PQgetvalue(r, row, col);
}

/* state_of reads a status column that check_states has passed. */
static jq_state state_of(const PGresult *r, int row, int col)
{
	jq_state s = JQ_STATE__COUNT;
	(void)jq_state_from_name(PQgetvalue(r, row, col), &s);
	return s;
}

void jq_db_rows_job(const jq_db_rows *rows, int i, jq_job *j)
{
	const PGresult *r = rows->res;
	memset(j, 0, sizeof(*j));
	j->id = jq_pgbin_i64(r, i, C_ID);
	j->queue = text_or_empty(r, i, C_QUEUE);
	if (!PQgetisnull(r, i, C_PAYLOAD)) {
		j->payload = (const uint8_t *)PQgetvalue(r, i, C_PAYLOAD);
		j->payload_len = (size_t)PQgetlength(r, i, C_PAYLOAD);
	}
	j->status = state_of(r, i, C_STATUS);
	j->prev_status = state_of(r, i, C_PREV);
	j->attempts = jq_pgbin_i32(r, i, C_ATTEMPTS);
	j->max_attempts = jq_pgbin_i32(r, i, C_MAX_ATTEMPTS);
	j->priority = jq_pgbin_i16(r, i, C_PRIORITY);
	j->run_at_ms = jq_pgbin_ts_ms(r, i, C_RUN_AT);
	j->lease_expires_at_ms = jq_pgbin_ts_ms(r, i, C_LEASE_EXPIRES);
	j->lease_owner = text_or_empty(r, i, C_LEASE_OWNER);
	j->lease_token = jq_pgbin_i64(r, i, C_LEASE_TOKEN);
	j->last_error = text_or_empty(r, i, C_LAST_ERROR);
	j->idempotency_key = text_or_empty(r, i, C_IDEM);
	j->created_at_ms = jq_pgbin_ts_ms(r, i, C_CREATED);
	j->updated_at_ms = jq_pgbin_ts_ms(r, i, C_UPDATED);
	j->finished_at_ms = jq_pgbin_ts_ms(r, i, C_FINISHED);
}

void jq_db_rows_failure(const jq_db_rows *rows, int i, jq_failure_record *f)
{
	const PGresult *r = rows->res;
	f->attempt = jq_pgbin_i32(r, i, 0);
	f->worker = text_or_empty(r, i, 1);
	f->error = text_or_empty(r, i, 2);
	f->failed_at_ms = jq_pgbin_ts_ms(r, i, 3);
}

void jq_db_rows_stats(const jq_db_rows *rows, int i, jq_queue_stats *s)
{
	const PGresult *r = rows->res;
	s->queue = text_or_empty(r, i, 0);
	s->pending = jq_pgbin_i64(r, i, 1);
	s->scheduled = jq_pgbin_i64(r, i, 2);
	s->processing = jq_pgbin_i64(r, i, 3);
	s->completed = jq_pgbin_i64(r, i, 4);
	s->failed = jq_pgbin_i64(r, i, 5);
	s->cancelled = jq_pgbin_i64(r, i, 6);
	s->oldest_due_age_seconds = jq_pgbin_f64(r, i, 7);
}

bool jq_db_rows_cut(const jq_db_rows *rows)
{
	return rows != NULL && rows->cut;
}

void jq_db_rows_free(jq_db_rows *rows)
{
	if (rows == NULL)
		return;
	PQclear(rows->res);
	free(rows);
}
