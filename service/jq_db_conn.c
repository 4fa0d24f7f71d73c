/*
 * jq_db_conn.c — the connection of a jq_db: opened at jq_db_open, reopened by the next call after
 * it breaks (not more often than RECONNECT_INTERVAL_MS), set up (statement_timeout) and, when
 * statements are prepared, prepared in full at connect and renewed as they age. Every wait is
 * bounded by jq_pgconn (see jq_db.h). jq_dbi_run is the only way a statement reaches the server.
 */
#include "jq_db_int.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jq_clock.h"
#include "jq_log.h"

#define RECONNECT_INTERVAL_MS 250
/* How long past the session's statement_timeout an answer is still awaited: a live server ends a
 * slow statement itself (57014) within that time, so only a silent connection runs over it. */
#define SILENCE_GRACE_MS 1000
/* Time kept back from a request's deadline to carry the answer to the client. */
#define REPLY_MARGIN_MAX_US 50000
#define REPREPARE_USES 200
#define REPREPARE_MS 1000
/* Statements a renewal could not free (see free_statement) before the connection is renewed. */
#define MAX_UNFREED 1000

/* jq_dbi_set_err: see jq_db_int.h. */
void jq_dbi_set_err(jq_db_err *err, const char *sqlstate, const char *prefix, const char *detail)
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
	return db->cutoff_ms != 0 && jq_clock_mono_ms() >= db->cutoff_ms;
}

static jq_code deadline_exceeded(jq_db_err *err)
{
	jq_dbi_set_err(err, NULL, "", "deadline exceeded before the database was asked");
	return JQ_DEADLINE_EXCEEDED;
}

/* answer_until: how long to wait for one statement's answer (see SILENCE_GRACE_MS). */
static int64_t answer_until(const jq_db *db)
{
	int64_t until = JQ_PGCONN_FOREVER;
	if (db->statement_timeout_ms > 0)
		until = jq_clock_mono_ms() + db->statement_timeout_ms + SILENCE_GRACE_MS;
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

/* command_done: r (which it clears) is a command's success; else err says why, prefixed with
 * what for an SQL error (a NULL r is a lost connection: db->lost_msg). */
static bool command_done(jq_db *db, PGresult *r, const char *what, jq_db_err *err)
{
	bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
	if (!ok && r == NULL)
		jq_dbi_set_err(err, NULL, "", db->lost_msg);
	else if (!ok)
		jq_dbi_set_err(err, PQresultErrorField(r, PG_DIAG_SQLSTATE), what, PQresultErrorMessage(r));
	PQclear(r);
	return ok;
}

/* prepare_as prepares statement id's text (sql) under name, and on success makes it the one
 * jq_dbi_run executes and starts its plan's life. 0, or -1 with err set (the previous one stays). */
static int prepare_as(jq_db *db, jq_dbi_stmt_id id, const char *name, const char *sql, jq_db_err *err)
{
	const jq_dbi_stmt *s = &jq_dbi_stmts[id];
	bool ok = command_done(db, db_prepare(db, name, sql, s->nparams, s->types), "prepare: ", err);
	if (ok)
		snprintf(db->names[id], sizeof(db->names[id]), "%s", name);
	db->uses[id] = 0;
	db->prepared_ms[id] = jq_clock_mono_ms();
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
		if (prepare_as(db, (jq_dbi_stmt_id)i, jq_dbi_stmts[i].name, jq_dbi_stmts[i].sql, err) != 0)
			return -1;
	}
	return 0;
}

/* plan_due: a replan statement has run REPREPARE_USES times or for REPREPARE_MS on its plan. */
static bool plan_due(const jq_db *db, jq_dbi_stmt_id id)
{
	return db->uses[id] >= REPREPARE_USES || jq_clock_mono_ms() - db->prepared_ms[id] >= REPREPARE_MS;
}

/* free_statement releases a statement that is no longer run: with libpq 17's PQclosePrepared (a
 * protocol Close, which PgBouncer understands) where there is one, else with an SQL DEALLOCATE.
 * Behind PgBouncer 1.21+ with prepared statements the pooler prepares ours under names of its
 * own, so that DEALLOCATE fails on the server; the statement then stays, this connection sends
 * no more DEALLOCATEs, and after MAX_UNFREED such statements jq_dbi_run opens a new connection, which
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
static void renew_plan(jq_db *db, jq_dbi_stmt_id id)
{
	char name[48], old[48];
	jq_db_err ignored;
	const char *sql = jq_dbi_stmts[id].sql;
	char *text = malloc(strlen(sql) + 96);
	if (text == NULL) {
		db->uses[id] = 0;
		db->prepared_ms[id] = jq_clock_mono_ms();
		return;
	}
	snprintf(name, sizeof(name), "%s_%llu", jq_dbi_stmts[id].name, (unsigned long long)++db->generation);
	sprintf(text, "%s /* %s, process %ld */", sql, name, (long)getpid());
	snprintf(old, sizeof(old), "%s", db->names[id]);
	if (prepare_as(db, id, name, text, &ignored) == 0) {
		db->renewals++;
		free_statement(db, old);
	}
	free(text);
}

/* plan_mode_for puts the session's plan_cache_mode where statement s wants it (see replan in
 * jq_db_int.h), with one SET when it changes: the hot statements follow one another on a
 * connection, so that is rare. A SET that fails changes nothing but how the statement is planned. */
static void plan_mode_for(jq_db *db, const jq_dbi_stmt *s)
{
	if (!db->prepared || s->replan == db->generic_plans)
		return;
	PGresult *r = db_exec(db, s->replan ? "SET plan_cache_mode = force_generic_plan"
					    : "SET plan_cache_mode = auto");
	if (PQresultStatus(r) == PGRES_COMMAND_OK)
		db->generic_plans = s->replan;
	PQclear(r);
}

/* session_setup: the statement timeout, and no JIT compilation. A generic plan's cost estimate
 * can pass jit_above_cost (the claim's does with a large backlog: it prices the concurrency
 * key's subplan for a tenth of the pending jobs), and JIT then compiles the plan's expressions
 * on every execution, far longer than the statement runs. None of jobqd's statements runs long
 * enough to win that back. */
static int session_setup(jq_db *db, jq_db_err *err)
{
	db->generic_plans = false;
	char sql[96];
	snprintf(sql, sizeof(sql), "SET statement_timeout = %d; SET jit = off", db->statement_timeout_ms);
	return command_done(db, db_exec(db, sql), "setup: ", err) ? 0 : -1;
}

/* connect_attempt opens the connection and prepares the statements, all by the request's deadline
 * when there is one; on failure the handle stays disconnected and the next call tries again
 * after RECONNECT_INTERVAL_MS. */
static jq_code connect_attempt(jq_db *db, jq_db_err *err)
{
	char why[200];
	jq_pgconn_opts o = { .url = db->url, .application_name = db->application_name, .net = &db->net };

	db->last_attempt_ms = jq_clock_mono_ms();
	jq_pgconn_rc rc = jq_pgconn_open(&o, db->cutoff_ms ? db->cutoff_ms : JQ_PGCONN_FOREVER, -1,
					 &db->conn, why, sizeof(why));
	if (rc != JQ_PGCONN_OK) {
		bool late = rc == JQ_PGCONN_TIMEOUT && out_of_time(db);
		jq_dbi_set_err(err, NULL, late ? "deadline exceeded connecting to the database: "
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
	if (jq_clock_mono_ms() - db->last_attempt_ms < RECONNECT_INTERVAL_MS) {
		/* The last attempt's reason: the same words as that attempt, until the next one. */
		jq_dbi_set_err(err, NULL, "",
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
	int64_t margin = (deadline_us - jq_clock_mono_us()) / 10;
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
	jq_dbi_set_err(why, NULL, "", db->down_msg[0] ? db->down_msg : "database unavailable: not connected");
	return false;
}

int64_t jq_db_plan_renewals(const jq_db *db)
{
	return db->renewals;
}

const char *jq_db_statement_name(const jq_db *db, const char *base)
{
	for (int i = 0; i < S__COUNT; i++) {
		if (strcmp(jq_dbi_stmts[i].name, base) == 0)
			return db->names[i][0] != '\0' ? db->names[i] : NULL;
	}
	return NULL;
}

/* enter / leave bracket a call that talks to the server: a jq_db is one thread's at a time. */
static void enter(jq_db *db)
{
	bool busy = atomic_exchange_explicit(&db->in_call, true, memory_order_acquire);
	assert(!busy && "a jq_db used by two threads at once");
	(void)busy;
}

static void leave(jq_db *db)
{
	atomic_store_explicit(&db->in_call, false, memory_order_release);
}

static jq_code run_statement(jq_db *db, jq_dbi_stmt_id id, const char *const *values,
			     const int *lengths, const int *formats, PGresult **res, jq_db_err *err)
{
	if (out_of_time(db))
		return deadline_exceeded(err);
	if (db->unfreed >= MAX_UNFREED && db->conn != NULL) {
		disconnect(db); /* frees them; the next line connects again at once */
		db->last_attempt_ms = 0;
	}
	jq_code c = ensure_connected(db, err);
	if (c != JQ_OK)
		return c;
	const jq_dbi_stmt *s = &jq_dbi_stmts[id];
	PGresult *r;
	if (db->prepared && s->replan && plan_due(db, id))
		renew_plan(db, id);
	if (db->conn != NULL)
		plan_mode_for(db, s);
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
		jq_dbi_set_err(err, NULL, "", db->lost_msg);
		return db->lost_code;
	}
	ExecStatusType st = PQresultStatus(r);
	if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
		*res = r;
		return JQ_OK;
	}
	const char *sqlstate = PQresultErrorField(r, PG_DIAG_SQLSTATE);
	c = map_sqlstate(sqlstate);
	jq_dbi_set_err(err, sqlstate, "", PQresultErrorMessage(r));
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

/* jq_dbi_run: see jq_db_int.h. */
jq_code jq_dbi_run(jq_db *db, jq_dbi_stmt_id id, const char *const *values, const int *lengths,
		   const int *formats, PGresult **res, jq_db_err *err)
{
	assert(id >= 0 && id < S__COUNT);
	enter(db);
	jq_code c = run_statement(db, id, values, lengths, formats, res, err);
	leave(db);
	return c;
}

static jq_code ping(jq_db *db, jq_db_err *err)
{
	if (out_of_time(db))
		return deadline_exceeded(err);
	jq_code c = ensure_connected(db, err);
	if (c != JQ_OK)
		return c;
	PGresult *r = db_exec(db, "SELECT 1");
	bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;
	if (r == NULL) {
		jq_dbi_set_err(err, NULL, "", db->lost_msg);
		return db->lost_code;
	}
	if (!ok)
		jq_dbi_set_err(err, PQresultErrorField(r, PG_DIAG_SQLSTATE), "", PQresultErrorMessage(r));
	PQclear(r);
	if (ok)
		return JQ_OK;
	if (PQstatus(db->conn) != CONNECTION_OK)
		disconnect(db);
	return JQ_UNAVAILABLE;
}

jq_code jq_db_ping(jq_db *db, jq_db_err *err)
{
	enter(db);
	jq_code c = ping(db, err);
	leave(db);
	return c;
}
