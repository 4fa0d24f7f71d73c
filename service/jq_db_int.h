/*
 * jq_db_int.h — inside jq_db: what its three files share. Not for other modules.
 *
 *   jq_db_sql.c   the statement table (jq_dbi_stmts): every SQL text jobqd runs, its parameter
 *                 types, and why it is written the way it is
 *   jq_db_conn.c  the handle's connection: connect and reconnect, session setup, prepare and
 *                 plan renewal, deadlines, and jq_dbi_run, which executes one statement
 *   jq_db.c       one function per call of jq_db.h: parameters in, rows or outcomes out
 *   jq_db_schedule.c  the same for the calls on schedules (job_schedule)
 *
 * Internal names carry the prefix jq_dbi_ (as libjobq's internals carry jobqi_).
 */
#ifndef JQ_DB_INT_H
#define JQ_DB_INT_H

#include <stdatomic.h>

#include <libpq-fe.h>

#include "jq_db.h"
#include "jq_pgbin.h"

/* Array type OIDs for parameters. */
#define OID_BOOL_ARR 1000
#define OID_BYTEA_ARR 1001
#define OID_INT2_ARR 1005
#define OID_INT4_ARR 1007
#define OID_TEXT_ARR 1009
#define OID_INT8_ARR 1016
#define OID_TSTZ_ARR 1185

/* The columns of a job row, in JOB_COLS order (jq_db_sql.c). */
enum job_col {
	C_ID, C_QUEUE, C_PAYLOAD, C_STATUS, C_PREV, C_ATTEMPTS, C_MAX_ATTEMPTS, C_PRIORITY, C_RUN_AT,
	C_LEASE_EXPIRES, C_LEASE_OWNER, C_LEASE_TOKEN, C_LAST_ERROR, C_IDEM, C_CREATED, C_UPDATED,
	C_FINISHED, C_PROGRESS_PCT, C_PROGRESS_MSG, C_PROGRESS_AT, C_TIMEOUT, C_KEY,
	C_TAKEN, /* Claim and List: the rows their limit took before the byte budget (jq_db_rows_cut) */
	C_OUTPUT = C_TAKEN /* Get: the job's output */
};

/* The columns of a schedule row, in SCHED_COLS order (jq_db_sql.c). */
enum sched_col {
	SC_NAME, SC_CRON, SC_ZONE, SC_QUEUE, SC_PAYLOAD, SC_PRIORITY, SC_MAX_ATTEMPTS, SC_IDEM,
	SC_MISSED, SC_NEXT, SC_LAST, SC_CREATED, SC_UPDATED
};

/* The statements, indexing jq_dbi_stmts and the per-statement state of a jq_db. */
typedef enum jq_dbi_stmt_id {
	S_ENQUEUE,
	S_ENQUEUE_TIMEOUT,
	S_ENQUEUE_KEY,
	S_CLAIM,
	S_HEARTBEAT,
	S_HEARTBEAT_PROGRESS,
	S_COMPLETE,
	S_COMPLETE_OUTPUT,
	S_LEASE_STATE,
	S_FAIL,
	S_COMPLETE_CLAIM,
	S_FAIL_CLAIM,
	S_GET,
	S_GET_FAILURES,
	S_LIST,
	S_RETRY,
	S_RETRY_ALL,
	S_CANCEL,
	S_WAIT_MARK,
	S_WAIT_READ,
	S_STATS,
	S_JOB_GAUGES,
	S_FINISHED_ESTIMATES,
	S_RESCUE,
	S_TIME_LIMIT,
	S_RETENTION,
	S_THROUGHPUT,
	S_QUEUE_PAUSE,
	S_QUEUE_CONFIGURE,
	S_SCHED_ZONE_NOW,
	S_SCHED_INSTANT,
	S_SCHED_PUT,
	S_SCHED_LIST,
	S_SCHED_REMOVE,
	S_SCHED_DUE,
	S_SCHED_SOONEST,
	S_SCHED_TICK,
	S__COUNT
} jq_dbi_stmt_id;

typedef struct jq_dbi_stmt {
	const char *name;
	const char *sql;
	int nparams;
	Oid types[16];
	/* The statements that join job_queue to a batch of ids or pick from it. PostgreSQL's plan
	 * cache keeps a generic plan until the table's statistics change, and a queue table grows
	 * and shrinks by orders of magnitude faster than autovacuum's ANALYZE follows: a generic plan
	 * made while the table was small (a sequential scan + hash join) then costs more with every
	 * row. Planning at every execution costs too (for a one-job call, planning is a large share
	 * of the database's work), so jobqd keeps them prepared but prepares them again every
	 * REPREPARE_USES executions or REPREPARE_MS, whichever comes first: a plan is never older
	 * than that. They run under plan_cache_mode = force_generic_plan: left to choose, PostgreSQL
	 * never takes the claim's generic plan (a LIMIT it cannot see is costed as a tenth of the
	 * queue), so it planned every claim afresh, which for a one-job claim cost as much as running
	 * it; their generic plans (test_schema checks the claim's and the completion's) are the
	 * plans a custom one makes. The other statements keep PostgreSQL's choice: a List's custom
	 * plan uses the partial index of the state it filters on. Without prepared statements
	 * (PgBouncer) they are planned at every execution. */
	bool replan;
} jq_dbi_stmt;

extern const jq_dbi_stmt jq_dbi_stmts[S__COUNT];

struct jq_db {
	PGconn *conn;
	char *url;
	char *application_name;
	bool prepared;
	bool ready; /* connected and statements prepared */
	char names[S__COUNT][48];      /* the name it is prepared under on this connection; "" = none */
	int uses[S__COUNT];            /* executions since it was prepared */
	int64_t prepared_ms[S__COUNT]; /* when it was (jq_clock_mono_ms) */
	int64_t renewals;              /* plans renewed under a fresh name (jq_db_plan_renewals) */
	uint64_t generation;           /* numbers the fresh names */
	bool dealloc_refused;          /* this connection's DEALLOCATE failed: do not send it again */
	bool generic_plans;            /* the session's plan_cache_mode is force_generic_plan */
	int unfreed;                   /* old statements left prepared on this connection */
	int backoff_base_ms, backoff_max_ms, statement_timeout_ms;
	int64_t last_attempt_ms;
	jq_pgconn_net net;
	int64_t cutoff_ms;  /* stop waiting for the database here (jq_pgconn clock); 0 = no deadline */
	jq_code lost_code;  /* why the connection was last closed under a call, and what to answer */
	char lost_msg[200];
	char down_msg[256]; /* why the last connection attempt failed; "" after a success */
	atomic_bool in_call; /* a call is talking to the server (one thread at a time: asserted) */
};

struct jq_db_rows {
	PGresult *res;
	int first, n; /* the job rows are res's rows first .. first + n - 1 */
	bool cut;     /* jq_db_rows_cut */
};

/* jq_dbi_wrap makes every row of r a jq_db_rows (which then owns r); NULL, with r cleared, when
 * memory runs out. */
jq_db_rows *jq_dbi_wrap(PGresult *r);

/* jq_dbi_text: the text value of a column, "" when it is NULL (owned by r). */
const char *jq_dbi_text(const PGresult *r, int row, int col);

/* jq_dbi_set_err writes prefix + the first line of detail into err (NULL: nothing). */
void jq_dbi_set_err(jq_db_err *err, const char *sqlstate, const char *prefix, const char *detail);

/* jq_dbi_run executes statement id with binary parameters and binary results, connecting first
 * when needed and never past the handle's deadline. JQ_OK: *res holds the result (the caller
 * PQclears it). Otherwise err says why and nothing is left to free. */
jq_code jq_dbi_run(jq_db *db, jq_dbi_stmt_id id, const char *const *values, const int *lengths,
		   const int *formats, PGresult **res, jq_db_err *err);

#endif
