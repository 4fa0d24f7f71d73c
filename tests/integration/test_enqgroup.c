/* Integration tests of jq_enqgroup against a real PostgreSQL: small Enqueues that arrive while a
 * statement runs go in the next statement together, each keeps its own ids, a refused row fails
 * only its own request, and requests that must not be grouped never wait for a group.
 *
 * The timing is made certain, not hoped for: a test trigger (created in setup, on this test's own
 * database) makes the insert of a job whose payload is "slow" wait for an advisory lock that the
 * test holds, so the leader's statement runs for exactly as long as the test wants, and the test
 * releases it only once the other requests are seen queued. */
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "jobq.h"
#include "jq_db.h"
#include "jq_enqgroup.h"
#include "jq_svc.h"
#include "jq_test.h"

#define LOCK_KEY 4242
#define FOLLOWERS 5

static char *db_url;
static PGconn *conn;

static int setup(void **state)
{
	(void)state;
	db_url = jq_test_db_clone("jq_enqgroup_test");
	conn = jq_test_connect(db_url);
	jq_test_ok(conn, "CREATE FUNCTION grp_probe() RETURNS trigger LANGUAGE plpgsql AS $$"
			 " BEGIN"
			 "  IF NEW.payload = 'slow'::bytea THEN"
			 "   PERFORM pg_advisory_lock_shared(4242); PERFORM pg_advisory_unlock_shared(4242);"
			 "  END IF;"
			 "  IF NEW.payload = 'bad'::bytea THEN"
			 "   RAISE EXCEPTION 'bad payload' USING ERRCODE = 'check_violation';"
			 "  END IF;"
			 "  RETURN NEW;"
			 " END $$");
	jq_test_ok(conn, "CREATE TRIGGER grp_probe BEFORE INSERT ON job_queue FOR EACH ROW"
			 " WHEN (NEW.queue LIKE 'grp%') EXECUTE FUNCTION grp_probe()");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	PQfinish(conn);
	free(db_url);
	return 0;
}

static jq_db *open_db(void)
{
	jq_db *db = NULL;
	jq_db_opts o = { .url = db_url, .prepared = true, .backoff_base_ms = 1000, .backoff_max_ms = 60000,
			 .statement_timeout_ms = 30000 };
	assert_int_equal(jq_db_open(&o, &db), 0);
	return db;
}

/* One Enqueue through the group, on a thread of its own. */
typedef struct request {
	jq_enqgroup *g;
	jq_db *db;
	const char *queue;
	const char *payload;
	size_t n; /* jobs, all alike (1 unless set) */
	int64_t ids[JQ_ENQGROUP_MAX_REQUEST_JOBS + 1];
	jq_code code;
	jq_db_err err;
	pthread_t thread;
} request;

static void *request_main(void *arg)
{
	request *r = arg;
	jq_db_job_spec specs[JQ_ENQGROUP_MAX_REQUEST_JOBS + 1];
	size_t n = r->n ? r->n : 1;
	for (size_t i = 0; i < n; i++)
		specs[i] = (jq_db_job_spec){ .queue = r->queue, .payload = (const uint8_t *)r->payload,
					     .payload_len = strlen(r->payload) };
	r->code = jq_enqgroup_enqueue(r->g, r->db, 0, specs, n, r->ids, &r->err);
	return NULL;
}

static void start(request *r)
{
	assert_int_equal(pthread_create(&r->thread, NULL, request_main, r), 0);
}

static void join(request *r)
{
	assert_int_equal(pthread_join(r->thread, NULL), 0);
}

static long long waiting_for_lock(void)
{
	return jq_test_scalar_ll(conn, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted");
}

/* wait_until_ll waits up to 10 s for f() to return want, evaluating it on every try. */
static void wait_until_ll(long long (*f)(void), long long want, const char *what)
{
	for (int i = 0; i < 1000 && f() != want; i++)
		jq_sleep_ms(10);
	if (f() != want)
		fail_msg("%s: still %lld, want %lld", what, f(), want);
}

static jq_enqgroup *current;
static long long queued(void)
{
	return jq_enqgroup_waiting(current);
}

/* block_leader: the test holds the lock, and a request of a "slow" job leads a statement that
 * waits for it. */
static void block_leader(request *leader, jq_enqgroup *g, const char *queue)
{
	jq_test_ok(conn, "SELECT pg_advisory_lock(4242)");
	*leader = (request){ .g = g, .db = open_db(), .queue = queue, .payload = "slow" };
	start(leader);
	wait_until_ll(waiting_for_lock, 1, "the leader's statement waiting for the lock");
}

static void release_leader(request *leader)
{
	jq_test_ok(conn, "SELECT pg_advisory_unlock(4242)");
	join(leader);
	assert_int_equal(leader->code, JQ_OK);
	jq_db_close(leader->db);
}

/* payload_of returns the payload of job id as text (caller frees), "" when there is no such job. */
static char *payload_of(int64_t id)
{
	char sql[160];
	snprintf(sql, sizeof(sql), "SELECT COALESCE((SELECT convert_from(payload, 'UTF8') FROM job_queue"
		 " WHERE id = %lld), '')", (long long)id);
	return jq_test_scalar(conn, sql);
}

static void followers_start(request *f, jq_enqgroup *g, const char *queue, const char *const *payloads)
{
	for (int i = 0; i < FOLLOWERS; i++) {
		f[i] = (request){ .g = g, .db = open_db(), .queue = queue, .payload = payloads[i], .n = 1 + (size_t)(i % 2) };
		start(&f[i]);
	}
	current = g;
	wait_until_ll(queued, FOLLOWERS, "requests queued behind the leader");
}

static void followers_end(request *f)
{
	for (int i = 0; i < FOLLOWERS; i++) {
		join(&f[i]);
		jq_db_close(f[i].db);
	}
}

/* Five requests (of one or two jobs) that arrive while a statement runs go in the next one
 * together, and each gets the ids of its own jobs, in its order. */
static void requests_that_arrive_together_share_one_statement(void **state)
{
	(void)state;
	jq_enqgroup *g = NULL;
	assert_int_equal(jq_enqgroup_new(&g), 0);
	request leader, f[FOLLOWERS];
	static const char *const payloads[FOLLOWERS] = { "p0", "p1", "p2", "p3", "p4" };
	block_leader(&leader, g, "grp_together");
	followers_start(f, g, "grp_together", payloads);
	release_leader(&leader);
	followers_end(f);

	int64_t requests, statements;
	jq_enqgroup_counts(g, &requests, &statements);
	assert_int_equal(statements, 1);
	assert_int_equal(requests, FOLLOWERS);
	for (int i = 0; i < FOLLOWERS; i++) {
		assert_int_equal(f[i].code, JQ_OK);
		for (size_t k = 0; k < 1 + (size_t)(i % 2); k++) {
			char *p = payload_of(f[i].ids[k]);
			assert_string_equal(p, payloads[i]);
			free(p);
		}
	}
	assert_int_equal(jq_test_scalar_ll(conn, "SELECT count(DISTINCT id) FROM job_queue WHERE queue = 'grp_together'"),
			 1 + 1 + 2 + 1 + 2 + 1);
	jq_enqgroup_free(g);
}

/* A group whose statement refused a row: every request runs again alone, so only the bad one
 * fails (with the database's reason) and the others' jobs are there, once each. */
static void a_refused_row_fails_only_its_own_request(void **state)
{
	(void)state;
	jq_enqgroup *g = NULL;
	assert_int_equal(jq_enqgroup_new(&g), 0);
	request leader, f[FOLLOWERS];
	static const char *const payloads[FOLLOWERS] = { "q0", "q1", "bad", "q3", "q4" };
	block_leader(&leader, g, "grp_refused");
	followers_start(f, g, "grp_refused", payloads);
	release_leader(&leader);
	followers_end(f);

	for (int i = 0; i < FOLLOWERS; i++) {
		if (i == 2) {
			assert_int_equal(f[i].code, JQ_INVALID_ARGUMENT);
			assert_non_null(strstr(f[i].err.msg, "bad payload"));
			continue;
		}
		assert_int_equal(f[i].code, JQ_OK);
		for (size_t k = 0; k < 1 + (size_t)(i % 2); k++) {
			char *p = payload_of(f[i].ids[k]);
			assert_string_equal(p, payloads[i]);
			free(p);
		}
	}
	assert_int_equal(jq_test_scalar_ll(conn, "SELECT count(*) FROM job_queue WHERE queue = 'grp_refused'"),
			 1 + 1 + 2 + 2 + 1);
	int64_t requests, statements;
	jq_enqgroup_counts(g, &requests, &statements);
	assert_int_equal(statements, 0); /* the grouped statement did not go through */
	jq_enqgroup_free(g);
}

/* A request with an idempotency key, and one of more jobs than a group takes, run at once on
 * their own handle: they do not wait behind a running statement. */
static void requests_that_cannot_be_grouped_do_not_wait(void **state)
{
	(void)state;
	jq_enqgroup *g = NULL;
	assert_int_equal(jq_enqgroup_new(&g), 0);
	request leader;
	block_leader(&leader, g, "grp_alone");
	jq_db *db = open_db();
	jq_db_err err = { .msg = "" };
	int64_t ids[JQ_ENQGROUP_MAX_REQUEST_JOBS + 1];
	jq_db_job_spec keyed = { .queue = "grp_alone", .payload = (const uint8_t *)"k", .payload_len = 1,
				 .idempotency_key = "once" };
	assert_int_equal(jq_enqgroup_enqueue(g, db, 0, &keyed, 1, ids, &err), JQ_OK);
	jq_db_job_spec big[JQ_ENQGROUP_MAX_REQUEST_JOBS + 1];
	for (size_t i = 0; i < JQ_ENQGROUP_MAX_REQUEST_JOBS + 1; i++)
		big[i] = (jq_db_job_spec){ .queue = "grp_alone", .payload = (const uint8_t *)"b", .payload_len = 1 };
	assert_int_equal(jq_enqgroup_enqueue(g, db, 0, big, JQ_ENQGROUP_MAX_REQUEST_JOBS + 1, ids, &err), JQ_OK);
	/* Both are in while the leader's statement still waits. */
	assert_int_equal(waiting_for_lock(), 1);
	assert_int_equal(jq_test_scalar_ll(conn, "SELECT count(*) FROM job_queue WHERE queue = 'grp_alone'"),
			 1 + JQ_ENQGROUP_MAX_REQUEST_JOBS + 1);
	release_leader(&leader);
	jq_db_close(db);
	jq_enqgroup_free(g);
}

/* ---- the same through jobqd: the dispatcher's requests share the group ---- */

static jq_svc svc;

typedef struct client_request {
	const char *payload;
	int64_t id;
	int code;
	jobq_error err;
	pthread_t thread;
} client_request;

static void *client_main(void *arg)
{
	client_request *r = arg;
	jobq_options o = { .rpc_url = svc.rpc_url, .timeout_ms = 20000 };
	jobq_client *c = NULL;
	r->code = jobq_connect(&o, &c, &r->err);
	if (r->code != JOBQ_OK)
		return NULL;
	jobq_job_spec spec = { .queue = "grp_svc", .payload = r->payload, .payload_len = strlen(r->payload) };
	r->code = jobq_enqueue(c, &spec, 1, &r->id, &r->err);
	jobq_close(c);
	return NULL;
}

static long long svc_waiting(void)
{
	return (long long)jq_svc_metric(&svc, "jobq_enqueue_waiting");
}

/* Four clients' Enqueues that reach jobqd while another's statement runs share the next
 * statement (its metrics say so) and each client gets the id of its own job. */
static void through_jobqd_each_client_gets_its_own_job(void **state)
{
	(void)state;
	static const char *const flags[] = { "--db-pool-size=6", NULL };
	jq_svc_start(&svc, "enqgroup", db_url, flags);
	jq_test_ok(conn, "SELECT pg_advisory_lock(4242)");
	client_request leader = { .payload = "slow" }, c[4];
	assert_int_equal(pthread_create(&leader.thread, NULL, client_main, &leader), 0);
	wait_until_ll(waiting_for_lock, 1, "the leader's statement waiting for the lock");
	static const char *const payloads[4] = { "c0", "c1", "c2", "c3" };
	for (int i = 0; i < 4; i++) {
		c[i] = (client_request){ .payload = payloads[i] };
		assert_int_equal(pthread_create(&c[i].thread, NULL, client_main, &c[i]), 0);
	}
	wait_until_ll(svc_waiting, 4, "Enqueues waiting in jobqd for the next statement");
	jq_test_ok(conn, "SELECT pg_advisory_unlock(4242)");
	assert_int_equal(pthread_join(leader.thread, NULL), 0);
	assert_int_equal(leader.code, JOBQ_OK);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(c[i].thread, NULL), 0);
		if (c[i].code != JOBQ_OK)
			fail_msg("client %d: %s", i, c[i].err.message);
		char *p = payload_of(c[i].id);
		assert_string_equal(p, payloads[i]);
		free(p);
	}
	assert_true(jq_svc_metric(&svc, "jobq_enqueue_grouped_statements_total") == 1);
	assert_true(jq_svc_metric(&svc, "jobq_enqueue_grouped_requests_total") == 4);
	assert_int_equal(jq_svc_finish(&svc, 5000, false), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(requests_that_arrive_together_share_one_statement),
		cmocka_unit_test(a_refused_row_fails_only_its_own_request),
		cmocka_unit_test(requests_that_cannot_be_grouped_do_not_wait),
		cmocka_unit_test(through_jobqd_each_client_gets_its_own_job),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
