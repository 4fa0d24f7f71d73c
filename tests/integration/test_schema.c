/*
 * The schema against a real PostgreSQL: the state machine enforced by the database and equal to
 * the C table, the prev_job_status trigger, defaults, the enqueue function's transactionality,
 * the claim's use of the partial index, and one notification per statement.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <unistd.h>

#include "jq_db.h"
#include "jq_db_int.h"
#include "jq_notify.h"
#include "jq_state.h"
#include "jq_test.h"

static char *db_url;

static int setup(void **state)
{
	(void)state;
	db_url = jq_test_db_clone("jq_schema_test");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	free(db_url);
	return 0;
}

/* new_job enqueues one job through the SQL function and returns its id. */
static long long new_job(PGconn *c, const char *queue)
{
	char sql[256];
	snprintf(sql, sizeof(sql), "SELECT jobq_enqueue('%s', 'x'::bytea)", queue);
	return jq_test_scalar_ll(c, sql);
}

/* move_sql: the UPDATE that moves job id to state `to`, keeping the lease columns consistent
 * (the table's CHECK wants a lease exactly while processing). */
static void move_sql(char *buf, size_t n, long long id, jq_state to)
{
	if (to == JQ_STATE_PROCESSING)
		snprintf(buf, n,
			 "UPDATE job_queue SET curr_job_status = 'archive_processing', lease_owner = 't',"
			 " lease_expires_at = now() + interval '1 minute',"
			 " lease_token = nextval('job_lease_token_seq') WHERE id = %lld", id);
	else
		snprintf(buf, n,
			 "UPDATE job_queue SET curr_job_status = '%s', lease_expires_at = NULL WHERE id = %lld",
			 jq_state_name(to), id);
}

/* A legal path from pending to each state, so a job can be put in any state to start from. */
static const jq_state path_to[JQ_STATE__COUNT][3] = {
	[JQ_STATE_PENDING] = { JQ_STATE__COUNT },
	[JQ_STATE_PROCESSING] = { JQ_STATE_PROCESSING, JQ_STATE__COUNT },
	[JQ_STATE_COMPLETED] = { JQ_STATE_PROCESSING, JQ_STATE_COMPLETED, JQ_STATE__COUNT },
	[JQ_STATE_FAILED] = { JQ_STATE_PROCESSING, JQ_STATE_FAILED, JQ_STATE__COUNT },
	[JQ_STATE_CANCELLED] = { JQ_STATE_CANCELLED, JQ_STATE__COUNT },
};

static long long job_in_state(PGconn *c, jq_state s)
{
	char sql[512];
	long long id = new_job(c, "transitions");
	for (int i = 0; i < 3 && path_to[s][i] != JQ_STATE__COUNT; i++) {
		move_sql(sql, sizeof(sql), id, path_to[s][i]);
		jq_test_ok(c, sql);
	}
	return id;
}

static void every_transition_is_enforced_by_the_database(void **state)
{
	(void)state;
	PGconn *c = jq_test_connect(db_url);
	char sql[512];
	int legal = 0, illegal = 0;
	for (int from = 0; from < JQ_STATE__COUNT; from++) {
		for (int to = 0; to < JQ_STATE__COUNT; to++) {
			if (from == to)
				continue; /* an UPDATE that keeps the status is not a transition */
			long long id = job_in_state(c, (jq_state)from);
			move_sql(sql, sizeof(sql), id, (jq_state)to);
			if (jq_state_can_move((jq_state)from, (jq_state)to)) {
				jq_test_ok(c, sql);
				legal++;
			} else {
				const char *st = jq_test_sqlstate(c, sql);
				if (strcmp(st, "23503") != 0)
					fail_msg("%s -> %s: expected foreign_key_violation, got %s",
						 jq_state_name((jq_state)from), jq_state_name((jq_state)to), st);
				illegal++;
			}
		}
	}
	assert_int_equal(legal, 9);
	assert_int_equal(illegal, 11);
	PQfinish(c);
}

static void the_c_table_equals_the_database_table(void **state)
{
	(void)state;
	PGconn *c = jq_test_connect(db_url);
	PGresult *r = jq_test_exec(c, "SELECT prev_status, next_status FROM job_status_transition");
	size_t nedges;
	(void)jq_state_edges(&nedges);
	assert_int_equal((size_t)PQntuples(r), nedges);
	for (int i = 0; i < PQntuples(r); i++) {
		jq_state a, b;
		assert_int_equal(jq_state_from_name(PQgetvalue(r, i, 0), &a), 0);
		assert_int_equal(jq_state_from_name(PQgetvalue(r, i, 1), &b), 0);
		if (!jq_state_can_move(a, b))
			fail_msg("database edge %s -> %s is missing from jq_state.c", PQgetvalue(r, i, 0),
				 PQgetvalue(r, i, 1));
	}
	PQclear(r);
	r = jq_test_exec(c, "SELECT name, is_terminal FROM job_status");
	assert_int_equal(PQntuples(r), JQ_STATE__COUNT);
	for (int i = 0; i < PQntuples(r); i++) {
		jq_state s;
		assert_int_equal(jq_state_from_name(PQgetvalue(r, i, 0), &s), 0);
		assert_int_equal(jq_state_is_terminal(s), PQgetvalue(r, i, 1)[0] == 't');
	}
	PQclear(r);
	PQfinish(c);
}

static void a_new_job_gets_the_defaults(void **state)
{
	(void)state;
	PGconn *c = jq_test_connect(db_url);
	long long id = new_job(c, "defaults");
	char sql[512];
	snprintf(sql, sizeof(sql),
		 "SELECT prev_job_status || ' ' || curr_job_status || ' ' || attempts || ' ' ||"
		 " max_attempts || ' ' || priority || ' ' || (run_at <= now()) || ' ' ||"
		 " (lease_token IS NULL) || ' ' || (finished_at IS NULL) FROM job_queue WHERE id = %lld", id);
	char *v = jq_test_scalar(c, sql);
	assert_string_equal(v, "archive_pending archive_pending 0 25 0 true true true");
	free(v);
	/* A caller can neither give prev_job_status nor insert a job that starts elsewhere. */
	jq_test_ok(c, "INSERT INTO job_queue (queue, prev_job_status) VALUES ('defaults', 'archive_failed')");
	v = jq_test_scalar(c, "SELECT prev_job_status FROM job_queue WHERE queue = 'defaults' ORDER BY id DESC LIMIT 1");
	assert_string_equal(v, "archive_pending");
	free(v);
	assert_string_equal(jq_test_sqlstate(c, "INSERT INTO job_queue (queue, curr_job_status)"
					     " VALUES ('defaults', 'archive_completed')"), "23503");
	PQfinish(c);
}

static void the_trigger_keeps_prev_job_status_honest(void **state)
{
	(void)state;
	PGconn *c = jq_test_connect(db_url);
	char sql[512];
	long long id = new_job(c, "trigger");
	snprintf(sql, sizeof(sql), "SELECT status_changed_at FROM job_queue WHERE id = %lld", id);
	char *before = jq_test_scalar(c, sql);
	move_sql(sql, sizeof(sql), id, JQ_STATE_PROCESSING);
	jq_test_ok(c, sql);
	snprintf(sql, sizeof(sql),
		 "SELECT prev_job_status || ' ' || curr_job_status FROM job_queue WHERE id = %lld", id);
	char *v = jq_test_scalar(c, sql);
	assert_string_equal(v, "archive_pending archive_processing");
	free(v);
	/* Forging prev without a status change is undone. */
	snprintf(sql, sizeof(sql),
		 "UPDATE job_queue SET prev_job_status = 'archive_failed' WHERE id = %lld", id);
	jq_test_ok(c, sql);
	snprintf(sql, sizeof(sql), "SELECT prev_job_status FROM job_queue WHERE id = %lld", id);
	v = jq_test_scalar(c, sql);
	assert_string_equal(v, "archive_pending");
	free(v);
	snprintf(sql, sizeof(sql), "SELECT status_changed_at FROM job_queue WHERE id = %lld", id);
	char *after = jq_test_scalar(c, sql);
	assert_string_not_equal(before, after);
	free(before);
	free(after);
	PQfinish(c);
}

static void an_enqueue_rolled_back_leaves_no_job(void **state)
{
	(void)state;
	PGconn *c = jq_test_connect(db_url);
	jq_test_ok(c, "BEGIN");
	new_job(c, "rolled_back");
	assert_int_equal(jq_test_scalar_ll(c, "SELECT count(*) FROM job_queue WHERE queue = 'rolled_back'"), 1);
	jq_test_ok(c, "ROLLBACK");
	assert_int_equal(jq_test_scalar_ll(c, "SELECT count(*) FROM job_queue WHERE queue = 'rolled_back'"), 0);
	PQfinish(c);
}

/* jobq_enqueue_batch's contract, on both of its paths (no keys: one INSERT; keys: dedup and
 * conflict handling): one row per element in input order with ids rising, defaults for NULLs,
 * '' meaning no key, and a clear 22023 for arrays of the wrong shape. */
static void the_enqueue_function_keeps_its_contract(void **state)
{
	(void)state;
	PGconn *c = jq_test_connect(db_url);
	char *v = jq_test_scalar(c,
		"SELECT string_agg(r.ord || ':' || r.rising, ',' ORDER BY r.ord)"
		"  FROM (SELECT b.ord, b.id > lag(b.id, 1, 0::bigint) OVER (ORDER BY b.ord) AS rising"
		"          FROM jobq_enqueue_batch(ARRAY['fn_a', 'fn_b', 'fn_a'], NULL, ARRAY[NULL, 3, NULL]::smallint[],"
		"                                  NULL, NULL, ARRAY[NULL, '', NULL]) AS b) AS r");
	assert_string_equal(v, "1:true,2:true,3:true");
	free(v);
	v = jq_test_scalar(c, "SELECT string_agg(queue || ' ' || priority || ' ' || max_attempts || ' '"
			      " || octet_length(payload) || ' ' || (idempotency_key IS NULL), ',' ORDER BY id)"
			      " FROM job_queue WHERE queue LIKE 'fn\\_%'");
	assert_string_equal(v, "fn_a 0 25 0 true,fn_b 3 25 0 true,fn_a 0 25 0 true");
	free(v);
	/* With keys: duplicates in the batch and of an unfinished job get the first job's id. */
	v = jq_test_scalar(c,
		"SELECT string_agg(b.id::text, ',' ORDER BY b.ord) FROM jobq_enqueue_batch("
		" ARRAY['fn_k', 'fn_k', 'fn_k'], NULL, NULL, NULL, NULL, ARRAY['k1', NULL, 'k1']) AS b");
	char *first = strtok(v, ",");
	char *second = strtok(NULL, ",");
	char *third = strtok(NULL, ",");
	assert_non_null(third);
	assert_string_equal(first, third);
	assert_true(atoll(second) > atoll(first));
	char sql[256];
	snprintf(sql, sizeof(sql), "SELECT id FROM jobq_enqueue_batch(ARRAY['fn_k'], NULL, NULL, NULL, NULL,"
		 " ARRAY['k1']) AS b");
	assert_int_equal(jq_test_scalar_ll(c, sql), atoll(first));
	free(v);
	assert_string_equal(jq_test_sqlstate(c, "SELECT * FROM jobq_enqueue_batch(ARRAY['fn_x', 'fn_x'],"
					     " ARRAY['\\x00']::bytea[], NULL, NULL, NULL, NULL)"), "22023");
	assert_string_equal(jq_test_sqlstate(c, "SELECT * FROM jobq_enqueue_batch(ARRAY[['fn_x'], ['fn_y']],"
					     " NULL, NULL, NULL, NULL, NULL)"), "22023");
	assert_string_equal(jq_test_sqlstate(c, "SELECT * FROM jobq_enqueue_batch(ARRAY['fn_x'], NULL, NULL,"
					     " NULL, ARRAY[1, 2], NULL)"), "22023");
	assert_int_equal(jq_test_scalar_ll(c, "SELECT count(*) FROM job_queue WHERE queue IN ('fn_x', 'fn_y')"), 0);
	PQfinish(c);
}

/* job_queue_queue_check is ^[A-Za-z0-9_.-]{1,64}$, however it is written. */
static void the_queue_check_accepts_exactly_the_documented_names(void **state)
{
	(void)state;
	PGconn *c = jq_test_connect(db_url);
	static const char *good[] = { "a", "Z9_.-", "0123456789012345678901234567890123456789012345678901234567890123" };
	static const char *bad[] = { "", "a b", "a,b", "a\\000Ab", "caf\\00e9", "a/b", "a*",
				     "01234567890123456789012345678901234567890123456789012345678901234" };
	char sql[512];
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		snprintf(sql, sizeof(sql), "INSERT INTO job_queue (queue) VALUES ('%s')", good[i]);
		jq_test_ok(c, sql);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(sql, sizeof(sql), "INSERT INTO job_queue (queue) VALUES (U&'%s')", bad[i]);
		assert_string_equal(jq_test_sqlstate(c, sql), "23514");
	}
	/* Every one-character name, ASCII and beyond, is judged by the constraint as the pattern
	 * judges it (rolled back: only the verdicts are kept). */
	jq_test_ok(c, "BEGIN");
	jq_test_ok(c, "DO $$ DECLARE wrong int := 0; took boolean; BEGIN"
		      " FOR cp IN 1..2047 LOOP"
		      "  BEGIN INSERT INTO job_queue (queue) VALUES (chr(cp)); took := true;"
		      "  EXCEPTION WHEN check_violation THEN took := false; END;"
		      "  IF took <> (chr(cp) ~ '^[A-Za-z0-9_.-]$') THEN wrong := wrong + 1; END IF;"
		      " END LOOP;"
		      " IF wrong > 0 THEN RAISE EXCEPTION '% one-character names judged wrong', wrong; END IF;"
		      " END $$");
	jq_test_ok(c, "ROLLBACK");
	PQfinish(c);
}

/* expect_check_violation runs sql, which must fail as a CHECK constraint fails: SQLSTATE 23514 naming
 * `constraint` in the error's constraint field. */
static void expect_check_violation(PGconn *c, const char *sql, const char *constraint)
{
	PGresult *r = PQexec(c, sql);
	const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
	const char *name = PQresultErrorField(r, PG_DIAG_CONSTRAINT_NAME);
	char got[160];
	snprintf(got, sizeof(got), "%s %s", state ? state : "(no error)", name ? name : "(no constraint)");
	PQclear(r);
	char want[160];
	snprintf(want, sizeof(want), "23514 %s", constraint);
	if (strcmp(got, want) != 0)
		fail_msg("%s: got %s, want %s", sql, got, want);
}

/* The rules on a job's queue name, attempts limit and idempotency key (the trigger
 * job_queue_input_check since migration 020) hold on INSERT and on an UPDATE of those columns,
 * and refuse a row as the CHECK constraints they replace did. The trigger names exactly those
 * columns: a write that names none of them (every claim, heartbeat and completion) never
 * considers it. */
static void the_input_rules_hold_on_insert_and_update(void **state)
{
	(void)state;
	PGconn *c = jq_test_connect(db_url);
	expect_check_violation(c, "INSERT INTO job_queue (queue) VALUES ('in rules')", "job_queue_queue_check");
	expect_check_violation(c, "INSERT INTO job_queue (queue, max_attempts) VALUES ('in_rules', 0)",
		     "job_queue_max_attempts_check");
	expect_check_violation(c, "INSERT INTO job_queue (queue, max_attempts) VALUES ('in_rules', 1001)",
		     "job_queue_max_attempts_check");
	expect_check_violation(c, "INSERT INTO job_queue (queue, idempotency_key) VALUES ('in_rules', '')",
		     "job_queue_idempotency_key_check");
	expect_check_violation(c, "INSERT INTO job_queue (queue, idempotency_key) VALUES ('in_rules', repeat('k', 256))",
		     "job_queue_idempotency_key_check");
	long long id = jq_test_scalar_ll(c, "INSERT INTO job_queue (queue, max_attempts, idempotency_key)"
					    " VALUES ('in_rules', 1000, repeat('k', 255)) RETURNING id");
	char sql[256];
	snprintf(sql, sizeof(sql), "UPDATE job_queue SET queue = 'in/rules' WHERE id = %lld", id);
	expect_check_violation(c, sql, "job_queue_queue_check");
	snprintf(sql, sizeof(sql), "UPDATE job_queue SET max_attempts = 0 WHERE id = %lld", id);
	expect_check_violation(c, sql, "job_queue_max_attempts_check");
	snprintf(sql, sizeof(sql), "UPDATE job_queue SET idempotency_key = '' WHERE id = %lld", id);
	expect_check_violation(c, sql, "job_queue_idempotency_key_check");
	snprintf(sql, sizeof(sql), "UPDATE job_queue SET queue = 'in_rules2', max_attempts = 1,"
		 " idempotency_key = NULL WHERE id = %lld", id);
	jq_test_ok(c, sql);
	char *v = jq_test_scalar(c, "SELECT string_agg(queue || ' ' || max_attempts, ',') FROM job_queue"
				    " WHERE queue LIKE 'in%rules%'");
	assert_string_equal(v, "in_rules2 1");
	free(v);
	v = jq_test_scalar(c, "SELECT string_agg(a.attname, ',' ORDER BY a.attname) FROM pg_trigger t"
			      " JOIN pg_attribute a ON a.attrelid = t.tgrelid AND a.attnum = ANY (t.tgattr)"
			      " WHERE t.tgname = 'job_queue_input_check'");
	assert_string_equal(v, "idempotency_key,max_attempts,queue");
	free(v);
	jq_test_ok(c, "DELETE FROM job_queue WHERE queue = 'in_rules2'");
	PQfinish(c);
}

/* The status guard's real body, kept while a test replaces it (restored by its teardown even
 * when an assertion stops the test half-way). */
static char *guard_def;

static int restore_guard(void **state)
{
	(void)state;
	if (guard_def == NULL)
		return 0;
	PGconn *c = jq_test_connect(db_url);
	jq_test_ok(c, guard_def);
	PQfinish(c);
	free(guard_def);
	guard_def = NULL;
	return 0;
}

/* The guard trigger runs only when it would change the row (migration 009's WHEN clauses), and
 * the service's hot statements write rows it would leave alone. With the guard replaced by a
 * function that raises, the service's enqueue, claim, heartbeat, complete and fail must all
 * succeed, and forged writes must still reach the guard. A wrong column in GUARD_MOVE or in the
 * enqueue function, or a WHEN clause that lets a forged value through, fails here. */
static void the_guard_runs_only_when_it_would_change_the_row(void **state)
{
	(void)state;
	PGconn *c = jq_test_connect(db_url);
	guard_def = jq_test_scalar(c, "SELECT pg_get_functiondef('jobq_status_guard'::regproc)");
	jq_test_ok(c, "CREATE OR REPLACE FUNCTION jobq_status_guard() RETURNS trigger LANGUAGE plpgsql"
		      " AS $$BEGIN RAISE EXCEPTION 'guard called' USING ERRCODE = 'JQ001'; END$$");

	jq_db *db = NULL;
	jq_db_opts o = { .url = db_url, .prepared = true, .backoff_base_ms = 1000, .backoff_max_ms = 60000 };
	assert_int_equal(jq_db_open(&o, &db), 0);
	jq_db_err err = { 0 };
	jq_db_job_spec specs[3] = {
		{ .queue = "guard_skip" }, { .queue = "guard_skip" }, { .queue = "guard_skip", .idempotency_key = "k" },
	};
	int64_t ids[3];
	assert_int_equal(jq_db_enqueue(db, specs, 3, ids, &err), JQ_OK);
	jq_db_rows *rows = NULL;
	assert_int_equal(jq_db_claim(db, "guard_skip", 3, "w", 30, &rows, &err), JQ_OK);
	assert_int_equal(jq_db_rows_count(rows), 3);
	jq_db_lease leases[3];
	for (int i = 0; i < 3; i++) {
		jq_job j;
		jq_db_rows_job(rows, i, &j);
		leases[i] = (jq_db_lease){ .id = j.id, .lease_token = j.lease_token, .error = "boom" };
	}
	jq_db_rows_free(rows);
	jq_db_item items[3];
	assert_int_equal(jq_db_heartbeat(db, leases, 3, 30, items, &err), JQ_OK);
	assert_int_equal(jq_db_complete(db, leases, 1, items, &err), JQ_OK);
	assert_int_equal(items[0].code, JQ_OK);
	leases[2].final = true;
	assert_int_equal(jq_db_fail(db, leases + 1, 2, items, &err), JQ_OK);
	assert_int_equal(items[0].code, JQ_OK);
	assert_int_equal(items[1].code, JQ_OK);
	jq_db_close(db);

	/* What the statements wrote is what the guard would have written. */
	char *v = jq_test_scalar(c,
		"SELECT string_agg(prev_job_status || '>' || curr_job_status || ' ' || (status_changed_at = now())"
		"  || ' ' || (finished_at IS NOT NULL), ',' ORDER BY id) FROM job_queue WHERE queue = 'guard_skip'");
	assert_string_equal(v, "archive_processing>archive_completed false true,"
			       "archive_processing>archive_pending false false,"
			       "archive_processing>archive_failed false true");
	free(v);
	/* Each forged column still reaches the guard. */
	static const char *forged[] = {
		"INSERT INTO job_queue (queue) VALUES ('guard_forged')",
		"INSERT INTO job_queue (queue, prev_job_status, updated_at) VALUES ('guard_forged', 'archive_pending', now() - interval '1 day')",
		"UPDATE job_queue SET prev_job_status = 'archive_failed' WHERE queue = 'guard_skip'",
		"UPDATE job_queue SET updated_at = now(), status_changed_at = now() - interval '1 day' WHERE queue = 'guard_skip'",
		"UPDATE job_queue SET updated_at = now(), created_at = now() WHERE queue = 'guard_skip'",
		"UPDATE job_queue SET curr_job_status = 'archive_cancelled', updated_at = now() WHERE queue = 'guard_skip' AND curr_job_status = 'archive_failed'",
		"UPDATE job_queue SET lease_expires_at = NULL WHERE queue = 'guard_skip'",
	};
	for (size_t i = 0; i < sizeof(forged) / sizeof(forged[0]); i++)
		assert_string_equal(jq_test_sqlstate(c, forged[i]), "JQ001");
	PQfinish(c);
}

static void the_claim_uses_the_partial_index_among_100k_finished_jobs(void **state)
{
	(void)state;
	PGconn *c = jq_test_connect(db_url);
	/* Finished jobs can only be made through legal transitions: enqueue, claim, complete. */
	jq_test_ok(c, "SELECT count(*) FROM jobq_enqueue_batch("
		      " array_fill('bulk'::text, ARRAY[100000]), NULL, NULL, NULL, NULL, NULL)");
	jq_test_ok(c, "UPDATE job_queue SET curr_job_status = 'archive_processing', lease_owner = 'b',"
		      " lease_expires_at = now() + interval '1 hour', lease_token = nextval('job_lease_token_seq')"
		      " WHERE queue = 'bulk'");
	jq_test_ok(c, "UPDATE job_queue SET curr_job_status = 'archive_completed', lease_expires_at = NULL"
		      " WHERE queue = 'bulk'");
	jq_test_ok(c, "SELECT jobq_enqueue('bulk', 'live'::bytea)");
	jq_test_ok(c, "VACUUM ANALYZE job_queue");

	char *sql = malloc(strlen(jq_db_claim_sql()) + 16);
	assert_non_null(sql);
	sprintf(sql, "EXPLAIN %s", jq_db_claim_sql());
	const char *params[6] = { "bulk", "10", "w", "30", "4194304", "256" };
	PGresult *r = PQexecParams(c, sql, 6, NULL, params, NULL, NULL, 0);
	free(sql);
	assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
	int uses_index = 0;
	for (int i = 0; i < PQntuples(r); i++) {
		uses_index |= strstr(PQgetvalue(r, i, 0), "job_queue_claim_idx") != NULL;
		if (strstr(PQgetvalue(r, i, 0), "Seq Scan on job_queue") != NULL)
			fail_msg("the claim scans the table: %s", PQgetvalue(r, i, 0));
	}
	if (!uses_index) {
		for (int i = 0; i < PQntuples(r); i++)
			print_message("%s\n", PQgetvalue(r, i, 0));
		fail_msg("the claim does not use job_queue_claim_idx");
	}
	PQclear(r);

	/* jobqd runs these under plan_cache_mode = force_generic_plan (jq_db_int.h, replan): their
	 * generic plans must read the indexes too, never the whole table. */
	static const struct {
		jq_dbi_stmt_id id;
		const char *args;
		const char *index;
	} hot[] = {
		{ S_CLAIM, "('bulk', 10, 'w', 30, 4194304, 256)", "job_queue_claim_idx" },
		{ S_COMPLETE, "('{1,2}', '{1,2}')", NULL },
		{ S_HEARTBEAT, "('{1,2}', '{1,2}', 30)", NULL },
		{ S_COMPLETE_CLAIM, "('{1}', '{1}', 'bulk', 10, 'w', 30, 4194304, 256)", "job_queue_claim_idx" },
	};
	jq_test_ok(c, "SET plan_cache_mode = force_generic_plan");
	for (size_t i = 0; i < sizeof(hot) / sizeof(hot[0]); i++) {
		const jq_dbi_stmt *st = &jq_dbi_stmts[hot[i].id];
		r = PQprepare(c, st->name, st->sql, st->nparams, st->types);
		assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
		PQclear(r);
		char explain[256];
		snprintf(explain, sizeof(explain), "EXPLAIN EXECUTE %s%s", st->name, hot[i].args);
		r = PQexec(c, explain);
		if (PQresultStatus(r) != PGRES_TUPLES_OK)
			fail_msg("%s: %s", explain, PQresultErrorMessage(r));
		bool index_seen = hot[i].index == NULL;
		for (int k = 0; k < PQntuples(r); k++) {
			const char *line = PQgetvalue(r, k, 0);
			if (strstr(line, "Seq Scan on job_queue") != NULL)
				fail_msg("the generic plan of %s scans the table: %s", st->name, line);
			index_seen |= hot[i].index != NULL && strstr(line, hot[i].index) != NULL;
		}
		if (!index_seen)
			fail_msg("the generic plan of %s does not use %s", st->name, hot[i].index);
		PQclear(r);
	}
	PQfinish(c);
}

/* The session's plan_cache_mode follows the statement (jq_db_int.h, replan): the claim and the
 * completion run their generic plans and are never planned again per call, a List is planned
 * for its arguments. Read from pg_prepared_statements of jq_db's own session, found through the
 * SET it sends (the PQsendQuery stand-in below records its connection). */
static PGconn *plan_mode_conn;
static jq_db *db_with_jobs(const char *queue, int n);

static void hot_statements_run_generic_plans_and_a_list_its_own(void **state)
{
	(void)state;
	enum { N = 20 };
	jq_db *db = db_with_jobs("generic_plans", N);
	jq_db_err err = { 0 };
	for (int i = 0; i < N; i++) {
		jq_db_rows *rows = NULL;
		assert_int_equal(jq_db_claim(db, "generic_plans", 1, "w", 30, &rows, &err), JQ_OK);
		assert_int_equal(jq_db_rows_count(rows), 1);
		jq_job j;
		jq_db_rows_job(rows, 0, &j);
		jq_db_rows_free(rows);
		jq_db_lease lease = { .id = j.id, .lease_token = j.lease_token };
		jq_db_item item;
		assert_int_equal(jq_db_complete(db, &lease, 1, &item, &err), JQ_OK);
		assert_int_equal(item.code, JQ_OK);
	}
	jq_db_rows *rows = NULL;
	jq_state completed = JQ_STATE_COMPLETED;
	assert_int_equal(jq_db_list(db, "generic_plans", &completed, 0, 10, false, 1 << 20, 64, &rows, &err), JQ_OK);
	assert_int_equal(jq_db_rows_count(rows), 10);
	jq_db_rows_free(rows);

	assert_non_null(plan_mode_conn);
	PGresult *r = PQexec(plan_mode_conn,
			     "SELECT regexp_replace(name, '_[0-9]+$', ''), sum(generic_plans), sum(custom_plans)"
			     " FROM pg_prepared_statements WHERE name ~ '^jq_(claim|complete|list)(_[0-9]+)?$'"
			     " GROUP BY 1 ORDER BY 1");
	assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
	char got[256] = "";
	for (int i = 0; i < PQntuples(r); i++)
		snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%s %s generic %s custom",
			 i ? ", " : "", PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), PQgetvalue(r, i, 2));
	PQclear(r);
	assert_string_equal(got, "jq_claim 20 generic 0 custom, jq_complete 20 generic 0 custom,"
				 " jq_list 0 generic 1 custom");
	/* No JIT in jq_db's sessions (jq_db_conn.c, session_setup): a generic plan's estimate can
	 * pass jit_above_cost, and the compilation then costs each call far more than it runs. */
	char *jit = jq_test_scalar(plan_mode_conn, "SHOW jit");
	assert_string_equal(jit, "off");
	free(jit);
	jq_db_close(db);
}

/* drain_notifications waits up to ms for notifications on c and counts those on `channel`;
 * the payload of the last is copied into last (if not NULL). */
static int drain_notifications(PGconn *c, int ms, char *last, size_t last_len)
{
	int n = 0;
	for (;;) {
		PQconsumeInput(c);
		PGnotify *note;
		while ((note = PQnotifies(c)) != NULL) {
			if (strcmp(note->relname, "jobq_pending") == 0) {
				n++;
				if (last)
					snprintf(last, last_len, "%s", note->extra);
			}
			PQfreemem(note);
		}
		fd_set fds;
		FD_ZERO(&fds);
		FD_SET(PQsocket(c), &fds);
		struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
		if (select(PQsocket(c) + 1, &fds, NULL, NULL, &tv) <= 0)
			return n;
	}
}

/* enqueue_ids runs an enqueue statement returning ids and gives them as "id1,id2,..." in
 * ascending order (malloc'd). */
static char *enqueue_ids(PGconn *c, const char *batch_args)
{
	char sql[512];
	snprintf(sql, sizeof(sql),
		 "SELECT string_agg(b.id::text, ',' ORDER BY b.id) FROM jobq_enqueue_batch(%s) AS b", batch_args);
	return jq_test_scalar(c, sql);
}

/* The exact payloads (format in migrations/sql/007-jobq_notify_pending.sql), for the INSERT fast
 * path (one queue, all due) and the general path (several queues; jobs for later). */
static void the_notification_payload_is_exact(void **state)
{
	(void)state;
	PGconn *listener = jq_test_connect(db_url);
	PGconn *c = jq_test_connect(db_url);
	char payload[8192], want[8192];
	jq_test_ok(listener, "LISTEN jobq_pending");

	char *ids = enqueue_ids(c, "ARRAY['pa', 'pa', 'pa'], NULL, NULL, NULL, NULL, NULL");
	assert_int_equal(drain_notifications(listener, 300, payload, sizeof(payload)), 1);
	snprintf(want, sizeof(want), "D pa %s", ids);
	assert_string_equal(payload, want);
	free(ids);

	char *pb = NULL, *pc = NULL;
	ids = enqueue_ids(c, "ARRAY['pc', 'pb'], NULL, NULL, NULL, NULL, NULL");
	pc = strtok(ids, ","); /* pc was first, so it has the lower id */
	pb = strtok(NULL, ",");
	assert_int_equal(drain_notifications(listener, 300, payload, sizeof(payload)), 1);
	snprintf(want, sizeof(want), "D pb %s\nD pc %s", pb, pc);
	assert_string_equal(payload, want);
	free(ids);

	ids = enqueue_ids(c, "ARRAY['pd', 'pd'], NULL, NULL,"
			     " ARRAY[NULL, '2100-01-01 00:00:00.0001+00']::timestamptz[], NULL, NULL");
	assert_int_equal(drain_notifications(listener, 300, payload, sizeof(payload)), 1);
	*strchr(ids, ',') = '\0'; /* only the due one is listed */
	snprintf(want, sizeof(want), "D pd %s\nL 4102444800001", ids);
	assert_string_equal(payload, want);
	free(ids);
	PQfinish(c);
	PQfinish(listener);
}

static void one_notification_per_statement(void **state)
{
	(void)state;
	PGconn *listener = jq_test_connect(db_url);
	PGconn *c = jq_test_connect(db_url);
	char payload[8192];
	jq_test_ok(listener, "LISTEN jobq_pending");

	jq_test_ok(c, "SELECT count(*) FROM jobq_enqueue_batch("
		      " array_fill('notify'::text, ARRAY[1000]), NULL, NULL, NULL, NULL, NULL)");
	assert_int_equal(drain_notifications(listener, 300, payload, sizeof(payload)), 1);
	assert_string_equal(payload, "D notify *"); /* 1000 ids do not fit in the 7000-byte budget */

	/* Claiming and completing make nothing claimable: no notification. */
	jq_test_ok(c, "UPDATE job_queue SET curr_job_status = 'archive_processing', lease_owner = 'n',"
		      " lease_expires_at = now() + interval '1 hour', lease_token = nextval('job_lease_token_seq')"
		      " WHERE queue = 'notify'");
	jq_test_ok(c, "UPDATE job_queue SET curr_job_status = 'archive_failed', lease_expires_at = NULL"
		      " WHERE queue = 'notify'");
	assert_int_equal(drain_notifications(listener, 200, NULL, 0), 0);

	/* A manual retry straight in SQL is announced, once for the statement. */
	jq_test_ok(c, "UPDATE job_queue SET curr_job_status = 'archive_pending' WHERE queue = 'notify'");
	assert_int_equal(drain_notifications(listener, 300, payload, sizeof(payload)), 1);
	assert_string_equal(payload, "D notify *");

	/* A job scheduled for later is not announced as due; its time is. */
	jq_test_ok(c, "SELECT jobq_enqueue('later', 'x'::bytea, 0::smallint, now() + interval '1 hour')");
	assert_int_equal(drain_notifications(listener, 300, payload, sizeof(payload)), 1);
	assert_true(payload[0] == 'L');
	assert_null(strstr(payload, "D later"));
	PQfinish(c);
	PQfinish(listener);
}

/* drain_payloads collects the payloads on "jobq_pending" for up to ms, sorted, joined by '|'. */
static void drain_payloads(PGconn *c, int ms, char *out, size_t out_len)
{
	char got[16][256];
	int n = 0;
	for (;;) {
		PQconsumeInput(c);
		PGnotify *note;
		while ((note = PQnotifies(c)) != NULL) {
			if (strcmp(note->relname, "jobq_pending") == 0 && n < 16)
				snprintf(got[n++], sizeof(got[0]), "%s", note->extra);
			PQfreemem(note);
		}
		fd_set fds;
		FD_ZERO(&fds);
		FD_SET(PQsocket(c), &fds);
		struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
		if (select(PQsocket(c) + 1, &fds, NULL, NULL, &tv) <= 0)
			break;
	}
	qsort(got, (size_t)n, sizeof(got[0]), (int (*)(const void *, const void *))strcmp);
	out[0] = '\0';
	for (int i = 0; i < n; i++)
		snprintf(out + strlen(out), out_len - strlen(out), "%s%s", i ? "|" : "", got[i]);
}

/* An UPDATE announces only the rows it made claimable (migration 018's row-level trigger): one
 * "D <queue> *" per queue however many rows, an "L <ms>" for a row that runs later, and nothing
 * for rows that were pending already or did not become pending. */
static void an_update_announces_each_queue_it_made_claimable_once(void **state)
{
	(void)state;
	PGconn *listener = jq_test_connect(db_url);
	PGconn *c = jq_test_connect(db_url);
	char payloads[4096];
	jq_test_ok(c, "SELECT count(*) FROM jobq_enqueue_batch(ARRAY['ua', 'ua', 'ua', 'ub', 'uc'],"
		      " NULL, NULL, NULL, NULL, NULL)");
	jq_test_ok(c, "UPDATE job_queue SET curr_job_status = 'archive_processing', lease_owner = 'n',"
		      " lease_expires_at = now() + interval '1 hour', lease_token = nextval('job_lease_token_seq')"
		      " WHERE queue IN ('ua', 'ub', 'uc')");
	jq_test_ok(listener, "LISTEN jobq_pending");

	/* Back to pending: ua's three rows and ub's now, uc's in 2100; one statement. */
	jq_test_ok(c, "UPDATE job_queue SET curr_job_status = 'archive_pending', lease_expires_at = NULL,"
		      " run_at = CASE queue WHEN 'uc' THEN '2100-01-01 00:00:00+00'::timestamptz ELSE now() END"
		      " WHERE queue IN ('ua', 'ub', 'uc')");
	drain_payloads(listener, 300, payloads, sizeof(payloads));
	assert_string_equal(payloads, "D ua *|D ub *|L 4102444800000");

	/* A pending row rescheduled is announced again; one left alone, or moved elsewhere, is not. */
	jq_test_ok(c, "UPDATE job_queue SET priority = 5 WHERE queue = 'ua'");
	jq_test_ok(c, "UPDATE job_queue SET curr_job_status = 'archive_cancelled' WHERE queue = 'ub'");
	drain_payloads(listener, 200, payloads, sizeof(payloads));
	assert_string_equal(payloads, "");
	jq_test_ok(c, "UPDATE job_queue SET run_at = now() WHERE queue = 'uc'");
	drain_payloads(listener, 300, payloads, sizeof(payloads));
	assert_string_equal(payloads, "D uc *");
	PQfinish(c);
	PQfinish(listener);
}

/* db_with_jobs opens a jq_db handle with prepared statements, as jobqd uses it, and enqueues n
 * jobs of queue through it. The caller closes the handle. */
static jq_db *db_with_jobs(const char *queue, int n)
{
	jq_db *db = NULL;
	jq_db_opts o = { .url = db_url, .prepared = true, .backoff_base_ms = 1000, .backoff_max_ms = 60000 };
	assert_int_equal(jq_db_open(&o, &db), 0);
	jq_db_job_spec *specs = calloc((size_t)n, sizeof(*specs));
	int64_t *ids = calloc((size_t)n, sizeof(*ids));
	assert_non_null(specs);
	assert_non_null(ids);
	for (int i = 0; i < n; i++)
		specs[i] = (jq_db_job_spec){ .queue = queue };
	jq_db_err err = { 0 };
	assert_int_equal(jq_db_enqueue(db, specs, (size_t)n, ids, &err), JQ_OK);
	free(specs);
	free(ids);
	return db;
}

/* One Complete names the same job twice: under its live token and under one it never had (a
 * worker whose lease was lost). The live lease completes it; the other is told its lease is lost,
 * as it would be in a call of its own, not "completed" because its id was among the rows. */
static void a_complete_judges_each_lease_by_its_token(void **state)
{
	(void)state;
	jq_db *db = db_with_jobs("two_tokens", 1);
	jq_db_err err = { 0 };
	jq_db_rows *rows = NULL;
	assert_int_equal(jq_db_claim(db, "two_tokens", 1, "w", 30, &rows, &err), JQ_OK);
	assert_int_equal(jq_db_rows_count(rows), 1);
	jq_job j;
	jq_db_rows_job(rows, 0, &j);
	jq_db_rows_free(rows);
	jq_db_lease leases[2] = { { .id = j.id, .lease_token = j.lease_token + 1000000 },
				  { .id = j.id, .lease_token = j.lease_token } };
	jq_db_item items[2];
	assert_int_equal(jq_db_complete(db, leases, 2, items, &err), JQ_OK);
	assert_int_equal(items[0].code, JQ_FAILED_PRECONDITION);
	assert_int_equal(items[1].code, JQ_OK);
	/* The job was completed once, by the second lease (what the metrics count, by queue). */
	assert_false(items[0].changed);
	assert_true(items[1].changed);
	assert_string_equal(items[1].queue, "two_tokens");
	jq_db_close(db);
}

/* jq_db prepares its batch statements again every 200 executions and every second, so that
 * PostgreSQL never keeps a plan it made for a table of another size (jq_db.c, `replan`). The
 * renewals must happen, and every call across them must still answer right: 250 one-job claims
 * take 250 different jobs and complete them all. */
static void batch_statements_are_prepared_again_and_keep_answering(void **state)
{
	(void)state;
	enum { N = 250 };
	jq_db *db = db_with_jobs("replan", N);
	jq_db_err err = { 0 };
	assert_int_equal(jq_db_plan_renewals(db), 0);

	for (int i = 0; i < N; i++) {
		jq_db_rows *rows = NULL;
		assert_int_equal(jq_db_claim(db, "replan", 1, "w", 30, &rows, &err), JQ_OK);
		assert_int_equal(jq_db_rows_count(rows), 1);
		jq_job j;
		jq_db_rows_job(rows, 0, &j);
		jq_db_lease lease = { .id = j.id, .lease_token = j.lease_token };
		jq_db_rows_free(rows);
		jq_db_item item;
		assert_int_equal(jq_db_complete(db, &lease, 1, &item, &err), JQ_OK);
		assert_int_equal(item.code, JQ_OK);
	}
	/* Claim and Complete each passed 200 executions once (the 1 s limit may add more). */
	assert_true(jq_db_plan_renewals(db) >= 2);
	PGconn *c = jq_test_connect(db_url);
	assert_int_equal(jq_test_scalar_ll(c, "SELECT count(*) FROM job_queue WHERE queue = 'replan'"
					      " AND curr_job_status = 'archive_completed' AND attempts = 1"), N);
	PQfinish(c);

	/* After a second, the next execution renews its plan whatever the count. */
	int64_t before = jq_db_plan_renewals(db);
	usleep(1100 * 1000);
	jq_db_rows *rows = NULL;
	assert_int_equal(jq_db_claim(db, "replan", 1, "w", 30, &rows, &err), JQ_OK);
	assert_int_equal(jq_db_rows_count(rows), 0);
	jq_db_rows_free(rows);
	assert_int_equal(jq_db_plan_renewals(db), before + 1);
	jq_db_close(db);
}

/* A stand-in for PgBouncer 1.21+ in transaction mode with prepared statements, which prepares a
 * client's statements on the server under names of its own: while deallocate_remapped is set, an
 * SQL "DEALLOCATE x" from this process reaches PostgreSQL as "DEALLOCATE x_pooled", so the real
 * server answers what it answers behind the pooler (26000, no such statement). This definition
 * of PQsendQuery (what jq_db sends a DEALLOCATE with) takes the place of libpq's for the whole
 * test program. */
static bool deallocate_remapped;
static PGconn *deallocating_conn; /* the connection of the last DEALLOCATE seen */

int PQsendQuery(PGconn *conn, const char *query)
{
	static int (*real)(PGconn *, const char *);
	if (real == NULL)
		*(void **)&real = dlsym(RTLD_NEXT, "PQsendQuery");
	if (strncmp(query, "SET plan_cache_mode", 19) == 0)
		plan_mode_conn = conn;
	if (strncmp(query, "DEALLOCATE ", 11) != 0)
		return real(conn, query);
	char sql[128];
	deallocating_conn = conn;
	snprintf(sql, sizeof(sql), "%s%s", query, deallocate_remapped ? "_pooled" : "");
	return real(conn, sql);
}

/* Plan renewal prepares the statement again under a fresh name and then frees the old one. Where
 * DEALLOCATE fails (behind PgBouncer 1.21+) the plans must still be renewed (they were not: the
 * old code deallocated and re-prepared the same name, and kept the old plan when that failed);
 * straight to PostgreSQL the old statements must be gone. */
static void plans_are_renewed_under_fresh_names_where_deallocate_fails_too(void **state)
{
	(void)state;
	enum { N = 450 };
	for (int pooled = 0; pooled < 2; pooled++) {
		deallocate_remapped = pooled;
		deallocating_conn = NULL;
		jq_db *db = db_with_jobs(pooled ? "renew_pooled" : "renew_direct", N);
		jq_db_err err = { 0 };
		assert_string_equal(jq_db_statement_name(db, "jq_claim"), "jq_claim");
		for (int i = 0; i < N; i++) {
			jq_db_rows *rows = NULL;
			assert_int_equal(jq_db_claim(db, pooled ? "renew_pooled" : "renew_direct", 1, "w", 30, &rows, &err), JQ_OK);
			assert_int_equal(jq_db_rows_count(rows), 1);
			jq_job j;
			jq_db_rows_job(rows, 0, &j);
			jq_db_lease lease = { .id = j.id, .lease_token = j.lease_token };
			jq_db_rows_free(rows);
			jq_db_item item;
			assert_int_equal(jq_db_complete(db, &lease, 1, &item, &err), JQ_OK);
			assert_int_equal(item.code, JQ_OK);
		}
		/* Claim and Complete each passed 200 executions twice. */
		assert_true(jq_db_plan_renewals(db) >= 4);
		const char *name = jq_db_statement_name(db, "jq_claim");
		assert_non_null(name);
		if (strncmp(name, "jq_claim_", 9) != 0)
			fail_msg("the claim still runs as '%s'%s", name, pooled ? " where DEALLOCATE fails" : "");
		assert_non_null(deallocating_conn);
		PGresult *r = PQexec(deallocating_conn, "SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'jq\\_claim%'");
		assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
		long long claims = atoll(PQgetvalue(r, 0, 0));
		PQclear(r);
		if (pooled ? claims < 2 : claims != 1)
			fail_msg("%lld claim statements prepared in the session (%s)", claims, pooled ? "pooled" : "direct");
		jq_db_close(db);
	}
	deallocate_remapped = false;
}

/* explain_max_rows runs EXPLAIN ANALYZE of sql and returns the largest row count any node
 * produced or filtered away ("rows=N" of the actual figures, "Rows Removed by ...: N"). */
static long long explain_max_rows(PGconn *c, const char *sql)
{
	char *q = malloc(strlen(sql) + 32);
	assert_non_null(q);
	sprintf(q, "EXPLAIN (ANALYZE, TIMING OFF) %s", sql);
	PGresult *r = PQexec(c, q);
	free(q);
	assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
	long long max = 0;
	for (int i = 0; i < PQntuples(r); i++) {
		const char *line = PQgetvalue(r, i, 0), *at;
		if ((at = strstr(line, "(actual")) != NULL && (at = strstr(at, "rows=")) != NULL)
			max = atoll(at + 5) > max ? atoll(at + 5) : max;
		if ((at = strstr(line, "Rows Removed by")) != NULL && (at = strchr(at, ':')) != NULL)
			max = atoll(at + 1) > max ? atoll(at + 1) : max;
	}
	if (max > 1000)
		for (int i = 0; i < PQntuples(r); i++)
			print_message("%s\n", PQgetvalue(r, i, 0));
	PQclear(r);
	return max;
}

/* jobqd's safety-net scan (every 5 s, on the connection that reads notifications) finds the
 * queues with due jobs and the next scheduled run_at. Behind a backlog of 100,000 due jobs it
 * must still read only a few index entries, or it holds up every notification while it reads;
 * and it must find the right answers across queues and priorities. */
static void the_safety_net_scan_is_cheap_behind_a_backlog_and_exact(void **state)
{
	(void)state;
	PGconn *c = jq_test_connect(db_url);
	jq_test_ok(c, "SELECT count(*) FROM jobq_enqueue_batch("
		      " array_fill('sn_backlog'::text, ARRAY[100000]), NULL, NULL, NULL, NULL, NULL)");
	/* sn_backlog also has a job in 1 h; sn_mixed a due job at priority 9 behind a job in
	 * 30 min at priority 0; sn_later only a job in 2 h. */
	jq_test_ok(c, "SELECT count(*) FROM jobq_enqueue_batch("
		      " ARRAY['sn_backlog', 'sn_mixed', 'sn_mixed', 'sn_later'], NULL, ARRAY[0, 0, 9, 3]::int2[],"
		      " ARRAY[now() + interval '1 hour', now() + interval '30 minutes', now() - interval '1 second',"
		      "       now() + interval '2 hours'], NULL, NULL)");
	jq_test_ok(c, "VACUUM ANALYZE job_queue");

	char *due = NULL;
	{
		char *sql = malloc(strlen(jq_notify_due_queues_sql()) + 128);
		assert_non_null(sql);
		sprintf(sql, "SELECT string_agg(queue, ',' ORDER BY queue) FROM (%s) d WHERE queue LIKE 'sn\\_%%'",
			jq_notify_due_queues_sql());
		due = jq_test_scalar(c, sql);
		free(sql);
	}
	assert_string_equal(due, "sn_backlog,sn_mixed");
	free(due);
	long long next_ms = jq_test_scalar_ll(c, jq_notify_next_due_sql());
	assert_true(next_ms > 29 * 60 * 1000 && next_ms <= 30 * 60 * 1000);

	assert_true(explain_max_rows(c, jq_notify_due_queues_sql()) <= 1000);
	assert_true(explain_max_rows(c, jq_notify_next_due_sql()) <= 1000);
	jq_test_ok(c, "DELETE FROM job_queue WHERE queue LIKE 'sn\\_%'");
	PQfinish(c);
}

/* within_pct: v is within pct percent of want. */
static bool within_pct(long long v, long long want, int pct)
{
	return v * 100 >= want * (100 - pct) && v * 100 <= want * (100 + pct);
}

/* /metrics counts jobs every 5 s on every replica. Behind 50,000 finished jobs its query must
 * read no finished job (only the partial indexes over pending, processing and failed jobs) and
 * still count those exactly; completed and cancelled jobs come from the table's statistics, close
 * to the true numbers once the table is analyzed. */
static void the_metrics_job_counts_read_no_finished_job(void **state)
{
	(void)state;
	PGconn *c = jq_test_connect(db_url);
	jq_test_ok(c, "SELECT count(*) FROM jobq_enqueue_batch("
		      " array_fill('g_done'::text, ARRAY[50000]), NULL, NULL, NULL, NULL, NULL)");
	jq_test_ok(c, "UPDATE job_queue SET curr_job_status = 'archive_processing', lease_owner = 'b',"
		      " lease_expires_at = now() + interval '1 hour', lease_token = nextval('job_lease_token_seq')"
		      " WHERE queue = 'g_done'");
	jq_test_ok(c, "UPDATE job_queue SET curr_job_status = 'archive_completed', lease_expires_at = NULL"
		      " WHERE queue = 'g_done'");
	jq_test_ok(c, "SELECT count(*) FROM jobq_enqueue_batch("
		      " array_fill('g_cancelled'::text, ARRAY[5000]), NULL, NULL, NULL, NULL, NULL)");
	jq_test_ok(c, "UPDATE job_queue SET curr_job_status = 'archive_cancelled' WHERE queue = 'g_cancelled'");
	/* g_live: 3 due and 2 scheduled pending jobs, 2 processing, 4 failed. */
	jq_test_ok(c, "SELECT count(*) FROM jobq_enqueue_batch(array_fill('g_live'::text, ARRAY[11]), NULL, NULL,"
		      " ARRAY[now() - interval '10 seconds', now(), now(), now() + interval '1 hour',"
		      "       now() + interval '1 hour', now(), now(), now(), now(), now(), now()], NULL, NULL)");
	jq_test_ok(c, "UPDATE job_queue SET curr_job_status = 'archive_processing', lease_owner = 'b',"
		      " lease_expires_at = now() + interval '1 hour', lease_token = nextval('job_lease_token_seq')"
		      " WHERE id IN (SELECT id FROM job_queue WHERE queue = 'g_live' ORDER BY id DESC LIMIT 6)");
	jq_test_ok(c, "UPDATE job_queue SET curr_job_status = 'archive_failed', lease_expires_at = NULL"
		      " WHERE id IN (SELECT id FROM job_queue WHERE queue = 'g_live' ORDER BY id DESC LIMIT 4)");
	jq_test_ok(c, "VACUUM ANALYZE job_queue");

	jq_db *db = NULL;
	jq_db_opts o = { .url = db_url, .prepared = false };
	jq_db_err err = { 0 };
	jq_db_rows *rows = NULL;
	assert_int_equal(jq_db_open(&o, &db), 0);
	assert_int_equal(jq_db_job_gauges(db, &rows, &err), JQ_OK);
	bool seen = false;
	for (int i = 0; i < jq_db_rows_count(rows); i++) {
		jq_queue_stats st;
		jq_db_rows_stats(rows, i, &st);
		if (strncmp(st.queue, "g_", 2) == 0)
			assert_string_equal(st.queue, "g_live"); /* no queue of only finished jobs */
		if (strcmp(st.queue, "g_live") != 0)
			continue;
		seen = true;
		assert_int_equal(st.pending, 5);
		assert_int_equal(st.scheduled, 2);
		assert_int_equal(st.processing, 2);
		assert_int_equal(st.failed, 4);
		assert_true(st.oldest_due_age_seconds >= 10 && st.oldest_due_age_seconds < 3600);
	}
	jq_db_rows_free(rows);
	assert_true(seen);
	assert_true(explain_max_rows(c, jq_db_job_gauges_sql()) <= 1000);

	int64_t completed = -1, cancelled = -1;
	assert_int_equal(jq_db_finished_estimates(db, &completed, &cancelled, &err), JQ_OK);
	long long true_completed = jq_test_scalar_ll(c, "SELECT count(*) FROM job_queue WHERE curr_job_status = 'archive_completed'");
	long long true_cancelled = jq_test_scalar_ll(c, "SELECT count(*) FROM job_queue WHERE curr_job_status = 'archive_cancelled'");
	if (!within_pct(completed, true_completed, 15) || !within_pct(cancelled, true_cancelled, 15))
		fail_msg("estimates %lld completed, %lld cancelled; true %lld, %lld", (long long)completed,
			 (long long)cancelled, true_completed, true_cancelled);
	jq_db_close(db);
	jq_test_ok(c, "DELETE FROM job_queue WHERE queue LIKE 'g\\_%'");
	PQfinish(c);
}

/* The console's chart (jq_db_throughput) reads the jobs completed in the last hour through
 * job_queue_finished_idx: 50,000 jobs completed two hours ago are neither counted nor read, and
 * the hour comes as 60 consecutive minutes, the current one last. In a database of its own, so
 * that no other test's jobs count. */
static void the_throughput_reads_only_the_last_hour(void **state)
{
	(void)state;
	char *url = jq_test_db_clone("jq_schema_throughput");
	PGconn *c = jq_test_connect(url);
	jq_test_ok(c, "SELECT count(*) FROM jobq_enqueue_batch("
		      " array_fill('t_old'::text, ARRAY[50000]), NULL, NULL, NULL, NULL, NULL)");
	jq_test_ok(c, "SELECT count(*) FROM jobq_enqueue_batch("
		      " array_fill('t_new'::text, ARRAY[10]), NULL, NULL, NULL, NULL, NULL)");
	jq_test_ok(c, "UPDATE job_queue SET curr_job_status = 'archive_processing', lease_owner = 'b',"
		      " lease_expires_at = now() + interval '1 hour', lease_token = nextval('job_lease_token_seq')");
	jq_test_ok(c, "UPDATE job_queue SET curr_job_status = 'archive_completed', lease_expires_at = NULL");
	/* The status guard owns finished_at: backdate with the table's triggers off. */
	jq_test_ok(c, "BEGIN");
	jq_test_ok(c, "ALTER TABLE job_queue DISABLE TRIGGER USER");
	jq_test_ok(c, "UPDATE job_queue SET finished_at = now() - interval '2 hours' WHERE queue = 't_old'");
	jq_test_ok(c, "UPDATE job_queue SET finished_at = now() - interval '10 minutes'"
		      " WHERE id IN (SELECT id FROM job_queue WHERE queue = 't_new' ORDER BY id LIMIT 3)");
	jq_test_ok(c, "ALTER TABLE job_queue ENABLE TRIGGER USER");
	jq_test_ok(c, "COMMIT");
	jq_test_ok(c, "VACUUM ANALYZE job_queue");

	jq_db *db = NULL;
	jq_db_opts o = { .url = url, .prepared = false };
	jq_db_err err = { 0 };
	jq_db_minute m[JQ_DB_THROUGHPUT_MINUTES];
	assert_int_equal(jq_db_open(&o, &db), 0);
	assert_int_equal(jq_db_throughput(db, m, &err), JQ_OK);
	long long now_ms = jq_test_scalar_ll(c, "SELECT (EXTRACT(EPOCH FROM now()) * 1000)::int8");
	int64_t sum = 0, nonzero = 0;
	for (int i = 0; i < JQ_DB_THROUGHPUT_MINUTES; i++) {
		sum += m[i].completed;
		nonzero += m[i].completed > 0;
		if (i > 0)
			assert_int_equal(m[i].at_ms - m[i - 1].at_ms, 60000);
	}
	assert_true(m[JQ_DB_THROUGHPUT_MINUTES - 1].at_ms <= now_ms && now_ms - m[JQ_DB_THROUGHPUT_MINUTES - 1].at_ms < 120000);
	assert_int_equal(sum, 10);
	assert_true(nonzero >= 2); /* 3 jobs ten minutes ago, 7 now */
	assert_true(explain_max_rows(c, jq_db_throughput_sql()) <= 1000);
	jq_db_close(db);
	PQfinish(c);
	free(url);
}

/* hot_updates: job_queue's n_tup_hot_upd as the statistics show it now. */
static long long hot_updates(PGconn *c)
{
	return jq_test_scalar_ll(c, "SELECT n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'job_queue'");
}

/* A heartbeat must be a HOT update (migration 011): nothing it writes (lease_expires_at,
 * updated_at) is in an index, so it adds no index entry and leaves no dead one. With
 * job_queue_lease_idx on lease_expires_at, none was. The heartbeats go through the service's
 * own statement (jq_db); that session's counts reach pg_stat_user_tables when it ends. A HOT
 * update also needs room on the row's page, and a page is pruned of the old versions only when
 * no snapshot (an autovacuum worker's, say) still sees them, so a few may go elsewhere: nine in
 * ten is the bar, where an index on a heartbeat column gives none. */
static void heartbeats_are_hot_updates(void **state)
{
	(void)state;
	enum { N = 20, ROUNDS = 3 };
	jq_db *db = db_with_jobs("hot_hb", N);
	jq_db_err err = { 0 };
	jq_db_rows *rows = NULL;
	assert_int_equal(jq_db_claim(db, "hot_hb", N, "w", 30, &rows, &err), JQ_OK);
	assert_int_equal(jq_db_rows_count(rows), N);
	jq_db_lease leases[N];
	for (int i = 0; i < N; i++) {
		jq_job j;
		jq_db_rows_job(rows, i, &j);
		leases[i] = (jq_db_lease){ .id = j.id, .lease_token = j.lease_token };
	}
	jq_db_rows_free(rows);

	PGconn *c = jq_test_connect(db_url);
	long long before = hot_updates(c);
	jq_db_item items[N];
	for (int r = 0; r < ROUNDS; r++) {
		assert_int_equal(jq_db_heartbeat(db, leases, N, 60, items, &err), JQ_OK);
		for (int i = 0; i < N; i++)
			assert_int_equal(items[i].code, JQ_OK);
	}
	jq_db_close(db);
	long long after = before, want = N * ROUNDS * 9 / 10;
	for (int tries = 0; tries < 50 && after - before < N * ROUNDS; tries++) {
		usleep(100 * 1000);
		after = hot_updates(c);
	}
	fprintf(stderr, "%lld of %d heartbeats were HOT updates\n", after - before, N * ROUNDS);
	if (after - before < want)
		fail_msg("%lld of %d heartbeats were HOT updates (at least %lld expected)", after - before,
			 N * ROUNDS, want);
	PQfinish(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(every_transition_is_enforced_by_the_database),
		cmocka_unit_test(the_c_table_equals_the_database_table),
		cmocka_unit_test(a_new_job_gets_the_defaults),
		cmocka_unit_test(the_trigger_keeps_prev_job_status_honest),
		cmocka_unit_test(an_enqueue_rolled_back_leaves_no_job),
		cmocka_unit_test(the_enqueue_function_keeps_its_contract),
		cmocka_unit_test(the_queue_check_accepts_exactly_the_documented_names),
		cmocka_unit_test(the_input_rules_hold_on_insert_and_update),
		cmocka_unit_test_teardown(the_guard_runs_only_when_it_would_change_the_row, restore_guard),
		cmocka_unit_test(the_claim_uses_the_partial_index_among_100k_finished_jobs),
		cmocka_unit_test(hot_statements_run_generic_plans_and_a_list_its_own),
		cmocka_unit_test(batch_statements_are_prepared_again_and_keep_answering),
		cmocka_unit_test(plans_are_renewed_under_fresh_names_where_deallocate_fails_too),
		cmocka_unit_test(a_complete_judges_each_lease_by_its_token),
		cmocka_unit_test(the_safety_net_scan_is_cheap_behind_a_backlog_and_exact),
		cmocka_unit_test(the_metrics_job_counts_read_no_finished_job),
		cmocka_unit_test(the_throughput_reads_only_the_last_hour),
		cmocka_unit_test(heartbeats_are_hot_updates),
		cmocka_unit_test(one_notification_per_statement),
		cmocka_unit_test(an_update_announces_each_queue_it_made_claimable_once),
		cmocka_unit_test(the_notification_payload_is_exact),
	};
	return cmocka_run_group_tests_name("schema", tests, setup, teardown);
}
