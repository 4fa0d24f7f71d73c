/*
 * test_running — running jobs (issue 18) against a real jobqd and its database: a running job
 * cancelled under its worker (and the race of that cancel with the worker's Complete), the
 * "cancel.<queue>" message on the PUB socket, progress reported with heartbeats, and the output
 * a Complete keeps with the job. Fencing throughout: a stale lease changes nothing.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "jobq.h"
#include "jq_rpc_call.h"
#include "jq_svc.h"
#include "jq_svc_api.h"
#include "jq_test.h"

#define MAX_PAYLOAD 4096

static const char *const svc_flags[] = {
	"--rescue-interval-ms=100", "--backoff-base-ms=100", "--max-payload-bytes=4096",
	"--max-waiting-waits=2", "--log-level=info", NULL,
};

static jq_api_svc fx;
static char pub_url[160];

#define RUN_TEST(name) JQ_API_TEST(fx, name)

#define QUEUE(var)   \
	char var[64]; \
	make_queue(var, __func__)

static void make_queue(char *buf, const char *fn)
{
	static int n;
	snprintf(buf, 64, "%.50s-%d", fn, ++n);
}

static int group_setup(void **state)
{
	(void)state;
	if (jq_api_svc_start(&fx, "running", NULL, svc_flags) != 0)
		return -1;
	snprintf(pub_url, sizeof(pub_url), "ipc://%s", fx.svc.pub_path);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	return jq_api_svc_stop(&fx, 10000);
}

static int before(void **state)
{
	(void)state;
	jq_svc_mark_log(&fx.svc);
	return 0;
}

static int after(void **state)
{
	(void)state;
	bool alive = jq_svc_alive(&fx.svc);
	if (fx.test_failed || !alive)
		jq_svc_print_log(&fx.svc);
	return alive ? 0 : -1;
}

static unsigned cancel1(int64_t id)
{
	Jobq__V1__CancelRequest req = JOBQ__V1__CANCEL_REQUEST__INIT;
	Jobq__V1__CancelResponse *r = NULL;
	req.n_ids = 1;
	req.ids = &id;
	unsigned code = jq_api_code(JQ_METHOD("Cancel"), &req, &jobq__v1__cancel_response__descriptor, &r);
	if (r != NULL)
		JQ_FREE(r);
	return code;
}

/* heartbeat2 renews two leases in one (batch) call and returns the response (free with JQ_FREE). */
static Jobq__V1__HeartbeatResponse *heartbeat2(const int64_t *ids, const int64_t *tokens)
{
	Jobq__V1__HeartbeatRequest req = JOBQ__V1__HEARTBEAT_REQUEST__INIT;
	Jobq__V1__JobLease l[2], *lp[2] = { &l[0], &l[1] };
	for (int i = 0; i < 2; i++) {
		jobq__v1__job_lease__init(&l[i]);
		l[i].id = ids[i];
		l[i].lease_token = tokens[i];
	}
	req.n_jobs = 2;
	req.jobs = lp;
	return jq_api_ok(JQ_METHOD("Heartbeat"), &req, &jobq__v1__heartbeat_response__descriptor);
}

/* ================= Cancel of a running job ================= */

RUN_TEST(cancel_ends_a_running_job_and_its_worker_can_no_longer_report_it)
{
	QUEUE(q);
	int64_t ids[2], tokens[2];
	jq_enqueue_many(q, 2, ids);
	jq_claim_one(q, "w", 30, &tokens[0]);
	jq_claim_one(q, "w", 30, &tokens[1]);

	assert_int_equal(cancel1(ids[0]), 0);
	assert_string_equal(jq_db_status(ids[0]), "archive_cancelled");
	assert_int_equal(jq_db_ll("SELECT count(*) FROM job_queue WHERE id = %lld AND lease_expires_at IS NULL"
				  " AND prev_job_status = 'archive_processing' AND finished_at IS NOT NULL",
				  (long long)ids[0]), 1);
	/* Cancelling it again is OK and changes nothing. */
	assert_int_equal(cancel1(ids[0]), 0);

	/* The worker's heartbeat says the job was stopped under its lease; the other job's renews. */
	Jobq__V1__HeartbeatResponse *hb = heartbeat2(ids, tokens);
	assert_int_equal(hb->n_results, 2);
	assert_int_equal(hb->results[0]->code, 9);
	assert_string_equal(hb->results[0]->stop_reason, "cancelled");
	assert_int_equal(hb->results[0]->status, JOBQ__V1__JOB_STATUS__JOB_STATUS_ARCHIVE_CANCELLED);
	assert_int_equal(hb->results[1]->code, 0);
	assert_string_equal(hb->results[1]->stop_reason, "");
	JQ_FREE(hb);
	/* A one-job heartbeat gets the code and a message that says so. */
	assert_int_equal(jq_heartbeat1(ids[0], tokens[0], 30, NULL), 9);
	assert_non_null(strstr(jq_api_msg, "cancelled"));

	/* Complete and Fail from that lease are refused and change nothing. */
	assert_int_equal(jq_complete1(ids[0], tokens[0]), 9);
	assert_non_null(strstr(jq_api_msg, "cancelled"));
	assert_int_equal(jq_fail1(ids[0], tokens[0], "late", false, 0, NULL, NULL, NULL), 9);
	assert_string_equal(jq_db_status(ids[0]), "archive_cancelled");
	assert_int_equal(jq_db_ll("SELECT count(*) FROM job_failure WHERE job_id = %lld", (long long)ids[0]), 0);

	/* A cancelled job can be retried like any other, and a completed one cannot be cancelled. */
	assert_int_equal(jq_complete1(ids[1], tokens[1]), 0);
	assert_int_equal(cancel1(ids[1]), 9);
	assert_non_null(strstr(jq_api_msg, "completed"));
	assert_string_equal(jq_db_status(ids[1]), "archive_completed");
}

/* Two callers at once on their own sockets: a worker's Complete and an operator's Cancel. */
typedef struct race_arm {
	const char *method;
	const ProtobufCMessage *req;
	pthread_barrier_t *go;
	unsigned code;
	int rv;
} race_arm;

static void *race_main(void *arg)
{
	race_arm *a = arg;
	jq_rpc_sock s = { 0 };
	Jobq__V1__RpcResponse *resp = NULL;
	a->rv = jq_rpc_open(&s, fx.svc.rpc_url, 5000);
	pthread_barrier_wait(a->go);
	if (a->rv == 0)
		a->rv = jq_rpc_invoke(&s, a->method, a->req, 5000, &resp);
	if (resp != NULL) {
		a->code = resp->code;
		jobq__v1__rpc_response__free_unpacked(resp, NULL);
	}
	jq_rpc_close(&s);
	return NULL;
}

RUN_TEST(a_cancel_racing_a_complete_has_exactly_one_winner_and_the_loser_is_refused)
{
	QUEUE(q);
	int won_complete = 0, won_cancel = 0;
	for (int round = 0; round < 20; round++) {
		int64_t token, id = jq_enqueue_one(q, "race");
		assert_int_equal(jq_claim_one(q, "w", 30, &token), id);
		Jobq__V1__CompleteRequest creq = JOBQ__V1__COMPLETE_REQUEST__INIT;
		Jobq__V1__CancelRequest xreq = JOBQ__V1__CANCEL_REQUEST__INIT;
		creq.id = id;
		creq.lease_token = token;
		xreq.n_ids = 1;
		xreq.ids = &id;
		pthread_barrier_t go;
		pthread_barrier_init(&go, NULL, 2);
		race_arm arms[2] = { { JQ_METHOD("Complete"), &creq.base, &go, 99, 0 },
				     { JQ_METHOD("Cancel"), &xreq.base, &go, 99, 0 } };
		pthread_t th[2];
		for (int i = 0; i < 2; i++)
			assert_int_equal(pthread_create(&th[i], NULL, race_main, &arms[i]), 0);
		for (int i = 0; i < 2; i++)
			pthread_join(th[i], NULL);
		pthread_barrier_destroy(&go);
		assert_int_equal(arms[0].rv, 0);
		assert_int_equal(arms[1].rv, 0);
		const char *st = jq_db_status(id);
		if (arms[0].code == 0) {
			assert_int_equal(arms[1].code, 9);
			assert_string_equal(st, "archive_completed");
			won_complete++;
		} else {
			assert_int_equal(arms[0].code, 9);
			assert_int_equal(arms[1].code, 0);
			assert_string_equal(st, "archive_cancelled");
			won_cancel++;
		}
	}
	print_message("complete won %d, cancel won %d\n", won_complete, won_cancel);
}

/* A heartbeat of two leases on a socket of its own, in a thread. */
typedef struct hb_arg {
	int64_t ids[2], tokens[2];
	int rv;
	unsigned code;
	Jobq__V1__HeartbeatResponse *resp;
} hb_arg;

static void *hb_main(void *arg)
{
	hb_arg *a = arg;
	jq_rpc_sock s = { 0 };
	Jobq__V1__RpcResponse *env = NULL;
	Jobq__V1__HeartbeatRequest req = JOBQ__V1__HEARTBEAT_REQUEST__INIT;
	Jobq__V1__JobLease l[2], *lp[2] = { &l[0], &l[1] };
	for (int i = 0; i < 2; i++) {
		jobq__v1__job_lease__init(&l[i]);
		l[i].id = a->ids[i];
		l[i].lease_token = a->tokens[i];
	}
	req.n_jobs = 2;
	req.jobs = lp;
	a->code = 99;
	a->rv = jq_rpc_open(&s, fx.svc.rpc_url, 10000);
	if (a->rv == 0)
		a->rv = jq_rpc_invoke(&s, JQ_METHOD("Heartbeat"), &req.base, 10000, &env);
	if (env != NULL) {
		a->code = env->code;
		if (env->code == 0)
			a->resp = jobq__v1__heartbeat_response__unpack(NULL, env->payload.len, env->payload.data);
		jobq__v1__rpc_response__free_unpacked(env, NULL);
	}
	jq_rpc_close(&s);
	return NULL;
}

/* The heartbeat's statement reads the jobs as they were when it started; a cancel that commits
 * while it waits for the row is seen only after. Made certain here: a transaction holds the
 * row, the heartbeat waits for it, and the transaction cancels the job and commits. */
RUN_TEST(a_cancel_committed_while_a_heartbeat_waits_for_the_row_is_reported_as_a_cancel)
{
	QUEUE(q);
	hb_arg a = { 0 };
	jq_enqueue_many(q, 2, a.ids);
	for (int i = 0; i < 2; i++)
		assert_int_equal(jq_claim_one(q, "w", 30, &a.tokens[i]), a.ids[i]);
	PGconn *c = jq_test_connect(fx.db_url);
	char sql[256];
	jq_test_ok(c, "BEGIN");
	snprintf(sql, sizeof(sql), "SELECT 1 FROM job_queue WHERE id = %lld FOR UPDATE", (long long)a.ids[0]);
	jq_test_ok(c, sql);
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, hb_main, &a), 0);
	JQ_POLL_UNTIL(jq_db_ll("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
			       " AND datname = current_database()") == 1,
		      5000, "the heartbeat to wait for the row");
	snprintf(sql, sizeof(sql),
		 "UPDATE job_queue SET curr_job_status = 'archive_cancelled', lease_expires_at = NULL WHERE id = %lld",
		 (long long)a.ids[0]);
	jq_test_ok(c, sql);
	jq_test_ok(c, "COMMIT");
	pthread_join(th, NULL);
	PQfinish(c);
	assert_int_equal(a.rv, 0);
	assert_int_equal(a.code, 0);
	assert_non_null(a.resp);
	assert_int_equal(a.resp->results[0]->code, 9);
	assert_string_equal(a.resp->results[0]->stop_reason, "cancelled");
	assert_int_equal(a.resp->results[0]->status, JOBQ__V1__JOB_STATUS__JOB_STATUS_ARCHIVE_CANCELLED);
	assert_int_equal(a.resp->results[1]->code, 0);
	JQ_FREE(a.resp);
}

/* ================= cancel.<queue> on the PUB socket ================= */

/* subscribe_warm subscribes to q's pending announcements (and its cancels when cancels) and
 * enqueues into q until the subscriber hears it: PUB/SUB has no handshake. The warm-up jobs are
 * claimed and completed, so q is empty after. */
static jobq_sub *subscribe_warm(const char *q, bool cancels)
{
	jobq_options o = { .rpc_url = fx.svc.rpc_url, .pub_url = pub_url, .timeout_ms = 5000 };
	jobq_sub *s = NULL;
	jobq_error err;
	jobq_announcement a;
	if (jobq_subscribe(&o, q, &s, &err) != JOBQ_OK || (cancels && jobq_sub_cancels(s, q, &err) != JOBQ_OK))
		fail_msg("subscribe: %s", err.message);
	bool heard = false;
	for (long long dl = jq_mono_ms() + 10000; !heard && jq_mono_ms() < dl;) {
		jq_enqueue_one(q, "warm");
		if (jobq_sub_next(s, 200, &a, &err) == JOBQ_OK) {
			heard = !a.stopped;
			jobq_announcement_free(&a);
		}
	}
	assert_true(heard);
	Jobq__V1__ClaimResponse *c = jq_claim(q, 1000, "warm", 30);
	for (size_t i = 0; i < c->n_jobs; i++)
		assert_int_equal(jq_complete1(c->jobs[i]->id, c->jobs[i]->lease_token), 0);
	JQ_FREE(c);
	while (jobq_sub_next(s, 0, &a, &err) == JOBQ_OK)
		jobq_announcement_free(&a);
	return s;
}

static bool names(const jobq_announcement *a, int64_t id)
{
	for (size_t i = 0; i < a->n_ids; i++)
		if (a->ids[i] == id)
			return true;
	return false;
}

/* hear_until reads s until a message of the kind `stopped` that names id (which *token, when
 * not NULL, receives the lease token of); any message before it naming `forbid` (0: none) fails
 * the test. Other messages are skipped: warm-ups and safety-net rescans announce the queue too. */
static void hear_until(jobq_sub *s, bool stopped, int64_t id, int64_t forbid, int64_t *token, char *reason)
{
	jobq_announcement a;
	jobq_error err;
	for (long long dl = jq_mono_ms() + 5000; jq_mono_ms() < dl;) {
		if (jobq_sub_next(s, 100, &a, &err) != JOBQ_OK)
			continue;
		bool hit = a.stopped == stopped && names(&a, id);
		if (!hit && forbid != 0 && names(&a, forbid))
			fail_msg("heard job %lld (%s) before job %lld", (long long)forbid,
				 a.stopped ? "stopped" : "pending", (long long)id);
		if (hit && token != NULL)
			*token = a.lease_tokens[0];
		if (hit && reason != NULL)
			strcpy(reason, a.reason);
		jobq_announcement_free(&a);
		if (hit)
			return;
	}
	fail_msg("never heard job %lld %s", (long long)id, stopped ? "stopped" : "pending");
}

RUN_TEST(a_cancelled_running_job_is_published_under_cancel_and_never_under_pending)
{
	QUEUE(q);
	jobq_sub *s = subscribe_warm(q, true), *plain = subscribe_warm(q, false);
	int64_t token, heard_token = 0, id = jq_enqueue_one(q, "long");
	char reason[32] = "";
	assert_int_equal(jq_claim_one(q, "w", 30, &token), id);
	hear_until(s, false, id, 0, NULL, NULL);
	hear_until(plain, false, id, 0, NULL, NULL);

	assert_int_equal(cancel1(id), 0);
	hear_until(s, true, id, 0, &heard_token, reason);
	assert_int_equal(heard_token, token);
	assert_string_equal(reason, "cancelled");

	/* The plain subscriber hears nothing of it up to the job enqueued after the cancel (PUB
	 * keeps the order of one publisher's messages). */
	int64_t next = jq_enqueue_one(q, "after");
	hear_until(plain, false, next, id, NULL, NULL);
	/* Cancelling a pending job publishes no stop. */
	assert_int_equal(cancel1(next), 0);
	hear_until(s, false, next, 0, NULL, NULL);
	int64_t last = jq_enqueue_one(q, "last");
	hear_until(s, false, last, next, NULL, NULL);
	jobq_sub_close(s);
	jobq_sub_close(plain);
}

/* ================= Progress ================= */

static unsigned progress1(int64_t id, int64_t token, uint32_t pct, const char *msg)
{
	Jobq__V1__HeartbeatRequest req = JOBQ__V1__HEARTBEAT_REQUEST__INIT;
	Jobq__V1__HeartbeatResponse *resp = NULL;
	Jobq__V1__JobProgress p = JOBQ__V1__JOB_PROGRESS__INIT, *pp[1] = { &p };
	req.id = id;
	req.lease_token = token;
	p.id = id;
	p.percent = pct;
	p.message = (char *)msg;
	req.n_progress = 1;
	req.progress = pp;
	unsigned code = jq_api_code(JQ_METHOD("Heartbeat"), &req, &jobq__v1__heartbeat_response__descriptor,
				    &resp);
	if (resp != NULL)
		JQ_FREE(resp);
	return code;
}

RUN_TEST(progress_reported_with_a_heartbeat_is_shown_by_get_and_list_and_fenced_by_the_lease)
{
	QUEUE(q);
	int64_t token, id = jq_enqueue_one(q, "p");
	assert_int_equal(jq_claim_one(q, "w", 30, &token), id);
	Jobq__V1__GetResponse *g = jq_get(id);
	assert_int_equal(g->job->progress_at_ms, 0);
	JQ_FREE(g);

	assert_int_equal(progress1(id, token, 40, "step 2 of 5"), 0);
	g = jq_get(id);
	assert_int_equal(g->job->progress_percent, 40);
	assert_string_equal(g->job->progress_message, "step 2 of 5");
	assert_true(g->job->progress_at_ms > 0);
	assert_true(g->job->lease_expires_at_ms > jq_now_ms());
	JQ_FREE(g);

	Jobq__V1__ListRequest lreq = JOBQ__V1__LIST_REQUEST__INIT;
	lreq.queue = q;
	Jobq__V1__ListResponse *l = jq_api_ok(JQ_METHOD("List"), &lreq, &jobq__v1__list_response__descriptor);
	assert_int_equal(l->n_jobs, 1);
	assert_int_equal(l->jobs[0]->progress_percent, 40);
	assert_string_equal(l->jobs[0]->progress_message, "step 2 of 5");
	JQ_FREE(l);

	/* A plain heartbeat keeps it; a stale token's report is refused and changes nothing. */
	assert_int_equal(jq_heartbeat1(id, token, 30, NULL), 0);
	assert_int_equal(progress1(id, token + 1000, 90, "forged"), 9);
	g = jq_get(id);
	assert_int_equal(g->job->progress_percent, 40);
	assert_string_equal(g->job->progress_message, "step 2 of 5");
	JQ_FREE(g);

	/* The next attempt starts without the last one's progress. */
	assert_int_equal(jq_fail1(id, token, "again", false, 1, NULL, NULL, NULL), 0);
	jq_db_make_due(id);
	assert_int_equal(jq_claim_one_within(q, "w", 30, 5000, &token), id);
	g = jq_get(id);
	assert_int_equal(g->job->progress_at_ms, 0);
	assert_string_equal(g->job->progress_message, "");
	JQ_FREE(g);
}

RUN_TEST(bad_progress_is_invalid_argument_and_changes_nothing)
{
	QUEUE(q);
	int64_t ids[2], token;
	jq_enqueue_many(q, 2, ids);
	assert_int_equal(jq_claim_one(q, "w", 30, &token), ids[0]);
	char long_msg[258];
	memset(long_msg, 'm', 257);
	long_msg[257] = '\0';
	assert_int_equal(progress1(ids[0], token, 101, ""), 3);
	assert_non_null(strstr(jq_api_msg, "percent"));
	assert_int_equal(progress1(ids[0], token, 5, long_msg), 3);
	assert_non_null(strstr(jq_api_msg, "256"));
	assert_int_equal(progress1(ids[0], token, 5, "tab\there"), 3);
	assert_int_equal(progress1(ids[0], token, 5, "\xc3\x28"), 3);

	/* A report for a job the request does not renew. */
	Jobq__V1__HeartbeatRequest req = JOBQ__V1__HEARTBEAT_REQUEST__INIT;
	Jobq__V1__JobProgress p = JOBQ__V1__JOB_PROGRESS__INIT, *pp[2] = { &p, &p };
	req.id = ids[0];
	req.lease_token = token;
	p.id = ids[1];
	p.percent = 5;
	req.n_progress = 1;
	req.progress = pp;
	jq_api_expect(JQ_METHOD("Heartbeat"), &req, 3, "not one of the request's leases");
	/* More reports than leases; the same job twice. */
	p.id = ids[0];
	req.n_progress = 2;
	jq_api_expect(JQ_METHOD("Heartbeat"), &req, 3, "more than the request's 1 leases");
	int64_t token2;
	assert_int_equal(jq_claim_one(q, "w", 30, &token2), ids[1]);
	Jobq__V1__JobLease l2 = JOBQ__V1__JOB_LEASE__INIT, *lp[1] = { &l2 };
	l2.id = ids[1];
	l2.lease_token = token2;
	req.n_jobs = 1;
	req.jobs = lp;
	jq_api_expect(JQ_METHOD("Heartbeat"), &req, 3, "twice");
	assert_int_equal(jq_db_ll("SELECT count(*) FROM job_queue WHERE queue = '%s' AND progress_at IS NOT NULL", q), 0);
}

/* ================= Output ================= */

static unsigned complete_output(int64_t id, int64_t token, const void *data, size_t len)
{
	Jobq__V1__CompleteRequest req = JOBQ__V1__COMPLETE_REQUEST__INIT;
	Jobq__V1__CompleteResponse *resp = NULL;
	req.id = id;
	req.lease_token = token;
	req.output.data = (uint8_t *)data;
	req.output.len = len;
	unsigned code = jq_api_code(JQ_METHOD("Complete"), &req, &jobq__v1__complete_response__descriptor,
				    &resp);
	if (resp != NULL)
		JQ_FREE(resp);
	return code;
}

RUN_TEST(complete_keeps_the_output_with_the_job_and_get_returns_it)
{
	QUEUE(q);
	int64_t token, id = jq_enqueue_one(q, "o");
	assert_int_equal(jq_claim_one(q, "w", 30, &token), id);
	const char out[] = "result\0binary";
	/* A stale lease's output is refused and the job stays as it was. */
	assert_int_equal(complete_output(id, token + 1000, out, sizeof(out) - 1), 9);
	assert_string_equal(jq_db_status(id), "archive_processing");
	assert_int_equal(complete_output(id, token, out, sizeof(out) - 1), 0);
	Jobq__V1__GetResponse *g = jq_get(id);
	assert_int_equal(g->job->output.len, sizeof(out) - 1);
	assert_memory_equal(g->job->output.data, out, sizeof(out) - 1);
	JQ_FREE(g);
	/* The repeat of that Complete (its reply lost) is OK and keeps the first output. */
	assert_int_equal(complete_output(id, token, "other", 5), 0);
	g = jq_get(id);
	assert_memory_equal(g->job->output.data, out, sizeof(out) - 1);
	JQ_FREE(g);

	/* List leaves outputs out. */
	Jobq__V1__ListRequest lreq = JOBQ__V1__LIST_REQUEST__INIT;
	lreq.queue = q;
	lreq.include_payload = true;
	Jobq__V1__ListResponse *l = jq_api_ok(JQ_METHOD("List"), &lreq, &jobq__v1__list_response__descriptor);
	assert_int_equal(l->n_jobs, 1);
	assert_int_equal(l->jobs[0]->output.len, 0);
	JQ_FREE(l);
}

RUN_TEST(a_batch_complete_keeps_each_jobs_output)
{
	QUEUE(q);
	int64_t ids[3];
	jq_enqueue_many(q, 3, ids);
	Jobq__V1__ClaimResponse *c = jq_claim(q, 3, "w", 30);
	assert_int_equal(c->n_jobs, 3);
	Jobq__V1__CompleteRequest req = JOBQ__V1__COMPLETE_REQUEST__INIT;
	Jobq__V1__JobLease l[3], *lp[3];
	Jobq__V1__JobOutput o[2], *op[2] = { &o[0], &o[1] };
	for (int i = 0; i < 3; i++) {
		jobq__v1__job_lease__init(&l[i]);
		l[i].id = c->jobs[i]->id;
		l[i].lease_token = c->jobs[i]->lease_token;
		lp[i] = &l[i];
	}
	jobq__v1__job_output__init(&o[0]);
	jobq__v1__job_output__init(&o[1]);
	o[0].id = c->jobs[2]->id;
	o[0].output.data = (uint8_t *)"two";
	o[0].output.len = 3;
	o[1].id = c->jobs[0]->id;
	o[1].output.data = (uint8_t *)"zero";
	o[1].output.len = 4;
	req.n_jobs = 3;
	req.jobs = lp;
	req.n_outputs = 2;
	req.outputs = op;
	JQ_FREE(jq_api_ok(JQ_METHOD("Complete"), &req, &jobq__v1__complete_response__descriptor));
	const char *want[3] = { "zero", "", "two" };
	for (int i = 0; i < 3; i++) {
		Jobq__V1__GetResponse *g = jq_get(c->jobs[i]->id);
		assert_string_equal(g->job->status == JOBQ__V1__JOB_STATUS__JOB_STATUS_ARCHIVE_COMPLETED ? "c" : "?", "c");
		assert_int_equal(g->job->output.len, strlen(want[i]));
		if (g->job->output.len > 0)
			assert_memory_equal(g->job->output.data, want[i], strlen(want[i]));
		JQ_FREE(g);
	}
	JQ_FREE(c);
}

RUN_TEST(a_complete_with_an_output_and_a_claim_keeps_the_output_and_claims_the_next_job)
{
	QUEUE(q);
	int64_t ids[2], token;
	jq_enqueue_many(q, 2, ids);
	assert_int_equal(jq_claim_one(q, "w", 30, &token), ids[0]);
	Jobq__V1__CompleteRequest req = JOBQ__V1__COMPLETE_REQUEST__INIT;
	Jobq__V1__ClaimRequest claim = JOBQ__V1__CLAIM_REQUEST__INIT;
	claim.queue = q;
	claim.limit = 1;
	claim.worker_id = "w";
	req.id = ids[0];
	req.lease_token = token;
	req.output.data = (uint8_t *)"done";
	req.output.len = 4;
	req.claim = &claim;
	/* From a stale lease: refused, nothing kept, nothing claimed. */
	req.lease_token = token + 1000;
	jq_api_expect(JQ_METHOD("Complete"), &req, 9, NULL);
	assert_string_equal(jq_db_status(ids[1]), "archive_pending");
	req.lease_token = token;
	Jobq__V1__CompleteResponse *r = jq_api_ok(JQ_METHOD("Complete"), &req, &jobq__v1__complete_response__descriptor);
	assert_int_equal(r->n_results, 1);
	assert_int_equal(r->results[0]->code, 0);
	assert_int_equal(r->n_claimed, 1);
	assert_int_equal(r->claimed[0]->id, ids[1]);
	JQ_FREE(r);
	Jobq__V1__GetResponse *g = jq_get(ids[0]);
	assert_int_equal(g->job->output.len, 4);
	assert_memory_equal(g->job->output.data, "done", 4);
	JQ_FREE(g);
	assert_string_equal(jq_db_status(ids[1]), "archive_processing");
}

RUN_TEST(an_output_over_the_payload_limit_or_for_a_job_not_named_is_invalid_argument)
{
	QUEUE(q);
	int64_t ids[2], token;
	jq_enqueue_many(q, 2, ids);
	assert_int_equal(jq_claim_one(q, "w", 30, &token), ids[0]);
	char *big = calloc(1, MAX_PAYLOAD + 1);
	assert_non_null(big);
	assert_int_equal(complete_output(ids[0], token, big, MAX_PAYLOAD + 1), 3);
	assert_non_null(strstr(jq_api_msg, "over the limit"));
	free(big);
	assert_string_equal(jq_db_status(ids[0]), "archive_processing");

	Jobq__V1__CompleteRequest req = JOBQ__V1__COMPLETE_REQUEST__INIT;
	Jobq__V1__JobOutput o = JOBQ__V1__JOB_OUTPUT__INIT, *op[1] = { &o };
	req.id = ids[0];
	req.lease_token = token;
	o.id = ids[1];
	req.n_outputs = 1;
	req.outputs = op;
	jq_api_expect(JQ_METHOD("Complete"), &req, 3, "not one of the request's leases");
	/* Both forms for one job. */
	o.id = ids[0];
	req.output.data = (uint8_t *)"x";
	req.output.len = 1;
	jq_api_expect(JQ_METHOD("Complete"), &req, 3, "output already");
	assert_string_equal(jq_db_status(ids[0]), "archive_processing");
	assert_int_equal(jq_complete1(ids[0], token), 0);
}

/* ================= Wait ================= */

/* A Wait on a socket of its own, in a thread. */
typedef struct waiter_arg {
	int64_t ids[4];
	size_t n;
	uint32_t wait_ms;
	unsigned code;
	int rv;
	long long took_ms;
	Jobq__V1__WaitResponse *resp;
	pthread_t th;
} waiter_arg;

static void *wait_main(void *arg)
{
	waiter_arg *a = arg;
	jq_rpc_sock s = { 0 };
	Jobq__V1__RpcResponse *env = NULL;
	Jobq__V1__WaitRequest req = JOBQ__V1__WAIT_REQUEST__INIT;
	req.ids = a->ids;
	req.n_ids = a->n;
	req.wait_ms = a->wait_ms;
	a->code = 99;
	a->rv = jq_rpc_open(&s, fx.svc.rpc_url, (int)a->wait_ms + 10000);
	long long t0 = jq_mono_ms();
	if (a->rv == 0)
		a->rv = jq_rpc_invoke(&s, JQ_METHOD("Wait"), &req.base, a->wait_ms + 10000, &env);
	a->took_ms = jq_mono_ms() - t0;
	if (env != NULL) {
		a->code = env->code;
		if (env->code == 0)
			a->resp = jobq__v1__wait_response__unpack(NULL, env->payload.len, env->payload.data);
		jobq__v1__rpc_response__free_unpacked(env, NULL);
	}
	jq_rpc_close(&s);
	return NULL;
}

static void wait_start(waiter_arg *a)
{
	assert_int_equal(pthread_create(&a->th, NULL, wait_main, a), 0);
}

static void wait_join(waiter_arg *a)
{
	pthread_join(a->th, NULL);
	assert_int_equal(a->rv, 0);
}

static long long waited(int64_t id)
{
	return jq_db_ll("SELECT count(*) FROM job_queue WHERE id = %lld AND waited", (long long)id);
}

RUN_TEST(wait_answers_when_the_job_ends_woken_by_the_database_not_by_its_time)
{
	QUEUE(q);
	int64_t token, id = jq_enqueue_one(q, "w");
	assert_int_equal(jq_claim_one(q, "w", 30, &token), id);
	waiter_arg a = { .ids = { id }, .n = 1, .wait_ms = 60000 };
	wait_start(&a);
	/* The Wait has marked the job before it parks; a little later it is parked. */
	JQ_POLL_UNTIL(waited(id) == 1, 5000, "the Wait to mark its job");
	assert_int_equal(jq_complete1(id, token), 0);
	wait_join(&a);
	assert_int_equal(a.code, 0);
	assert_non_null(a.resp);
	assert_true(a.resp->done);
	assert_int_equal(a.resp->n_jobs, 1);
	assert_int_equal(a.resp->jobs[0]->id, id);
	assert_int_equal(a.resp->jobs[0]->status, JOBQ__V1__JOB_STATUS__JOB_STATUS_ARCHIVE_COMPLETED);
	assert_int_equal(a.resp->jobs[0]->payload.len, 0);
	/* Far sooner than its 60 s: the job's end woke it. */
	assert_true(a.took_ms < 30000);
	JQ_FREE(a.resp);
}

RUN_TEST(wait_for_several_jobs_answers_once_all_have_ended_cancelled_and_failed_count)
{
	QUEUE(q);
	int64_t ids[3], tokens[3];
	jq_enqueue_many(q, 3, ids);
	for (int i = 0; i < 3; i++)
		assert_int_equal(jq_claim_one(q, "w", 30, &tokens[i]), ids[i]);
	assert_int_equal(jq_complete1(ids[0], tokens[0]), 0);
	waiter_arg a = { .ids = { ids[0], ids[1], ids[2] }, .n = 3, .wait_ms = 60000 };
	wait_start(&a);
	JQ_POLL_UNTIL(waited(ids[1]) == 1 && waited(ids[2]) == 1, 5000, "the Wait to mark its jobs");
	assert_int_equal(cancel1(ids[1]), 0);
	assert_int_equal(jq_fail1(ids[2], tokens[2], "broken", true, 0, NULL, NULL, NULL), 0);
	wait_join(&a);
	assert_int_equal(a.code, 0);
	assert_true(a.resp->done);
	assert_int_equal(a.resp->n_jobs, 3);
	assert_int_equal(a.resp->jobs[0]->status, JOBQ__V1__JOB_STATUS__JOB_STATUS_ARCHIVE_COMPLETED);
	assert_int_equal(a.resp->jobs[1]->status, JOBQ__V1__JOB_STATUS__JOB_STATUS_ARCHIVE_CANCELLED);
	assert_int_equal(a.resp->jobs[2]->status, JOBQ__V1__JOB_STATUS__JOB_STATUS_ARCHIVE_FAILED);
	assert_string_equal(a.resp->jobs[2]->last_error, "broken");
	assert_true(a.took_ms < 30000);
	JQ_FREE(a.resp);
}

RUN_TEST(wait_answers_unfinished_jobs_as_they_stand_when_its_time_is_up)
{
	QUEUE(q);
	int64_t id = jq_enqueue_one(q, "w");
	waiter_arg a = { .ids = { id }, .n = 1, .wait_ms = 300 };
	wait_start(&a);
	wait_join(&a);
	assert_int_equal(a.code, 0);
	assert_false(a.resp->done);
	assert_int_equal(a.resp->jobs[0]->status, JOBQ__V1__JOB_STATUS__JOB_STATUS_ARCHIVE_PENDING);
	assert_true(a.took_ms >= 290);
	JQ_FREE(a.resp);
	/* wait_ms 0 answers at once, and marks nothing. */
	int64_t other = jq_enqueue_one(q, "w");
	waiter_arg b = { .ids = { other }, .n = 1, .wait_ms = 0 };
	wait_start(&b);
	wait_join(&b);
	assert_false(b.resp->done);
	assert_int_equal(waited(other), 0);
	JQ_FREE(b.resp);
}

RUN_TEST(waits_past_max_waiting_waits_are_told_to_come_back)
{
	QUEUE(q);
	int64_t token, id = jq_enqueue_one(q, "w");
	assert_int_equal(jq_claim_one(q, "w", 30, &token), id);
	waiter_arg a[3];
	for (int i = 0; i < 3; i++) {
		a[i] = (waiter_arg){ .ids = { id }, .n = 1, .wait_ms = 60000 };
		wait_start(&a[i]);
	}
	/* Two park (--max-waiting-waits=2); the third is answered at once with a time to retry. */
	int told = -1;
	for (long long dl = jq_mono_ms() + 10000; told < 0 && jq_mono_ms() < dl; jq_sleep_ms(10)) {
		for (int i = 0; i < 3 && told < 0; i++) {
			if (pthread_tryjoin_np(a[i].th, NULL) == 0)
				told = i;
		}
	}
	assert_true(told >= 0);
	assert_true(jq_svc_metric(&fx.svc, "jobq_waits_refused_total") >= 1);
	assert_int_equal(a[told].code, 0);
	assert_true(a[told].resp->retry_after_ms > 0);
	assert_int_equal(a[told].resp->n_jobs, 0);
	JQ_FREE(a[told].resp);
	assert_int_equal(jq_complete1(id, token), 0);
	for (int i = 0; i < 3; i++) {
		if (i == told)
			continue;
		wait_join(&a[i]);
		assert_int_equal(a[i].code, 0);
		assert_true(a[i].resp->done);
		JQ_FREE(a[i].resp);
	}
}

RUN_TEST(bad_waits_are_invalid_argument_and_an_unknown_job_is_not_found)
{
	Jobq__V1__WaitRequest req = JOBQ__V1__WAIT_REQUEST__INIT;
	int64_t ids[101];
	for (int i = 0; i < 101; i++)
		ids[i] = i + 1;
	req.ids = ids;
	jq_api_expect(JQ_METHOD("Wait"), &req, 3, "at least one");
	req.n_ids = 101;
	jq_api_expect(JQ_METHOD("Wait"), &req, 3, "at most 100");
	req.n_ids = 2;
	ids[1] = ids[0];
	jq_api_expect(JQ_METHOD("Wait"), &req, 3, "twice");
	req.n_ids = 1;
	req.wait_ms = 300001;
	jq_api_expect(JQ_METHOD("Wait"), &req, 3, "wait_ms");
	ids[0] = INT64_C(900000000007);
	req.wait_ms = 1000;
	jq_api_expect(JQ_METHOD("Wait"), &req, 5, "900000000007");
}

/* ================= Time limits ================= */

/* enqueue_limited enqueues one job of q with a time limit and max_attempts; returns its id. */
static int64_t enqueue_limited(const char *q, uint32_t timeout_ms, uint32_t max_attempts)
{
	Jobq__V1__JobSpec spec = JOBQ__V1__JOB_SPEC__INIT, *specs[1] = { &spec };
	Jobq__V1__EnqueueRequest req = JOBQ__V1__ENQUEUE_REQUEST__INIT;
	spec.queue = (char *)q;
	spec.timeout_ms = timeout_ms;
	spec.max_attempts = max_attempts;
	req.n_jobs = 1;
	req.jobs = specs;
	Jobq__V1__EnqueueResponse *r = jq_api_ok(JQ_METHOD("Enqueue"), &req, &jobq__v1__enqueue_response__descriptor);
	int64_t id = r->ids[0];
	JQ_FREE(r);
	return id;
}

RUN_TEST(a_job_past_its_time_limit_fails_though_its_worker_heartbeats_and_the_worker_is_told)
{
	QUEUE(q);
	jobq_sub *s = subscribe_warm(q, true);
	int64_t ids[2], tokens[2];
	ids[0] = enqueue_limited(q, 300, 2);
	ids[1] = jq_enqueue_one(q, "no limit");
	assert_int_equal(jq_claim_one(q, "w", 30, &tokens[0]), ids[0]);
	assert_int_equal(jq_claim_one(q, "w", 30, &tokens[1]), ids[1]);
	Jobq__V1__GetResponse *g = jq_get(ids[0]);
	assert_int_equal(g->job->timeout_ms, 300);
	JQ_FREE(g);

	/* The worker heartbeats both leases until the service stops the limited one: the time limit
	 * racing the heartbeats, each either renewed first or refused after. */
	Jobq__V1__HeartbeatResponse *hb = NULL;
	for (long long dl = jq_mono_ms() + 10000; jq_mono_ms() < dl; jq_sleep_ms(20)) {
		hb = heartbeat2(ids, tokens);
		if (hb->results[0]->code != 0)
			break;
		JQ_FREE(hb);
		hb = NULL;
	}
	assert_non_null(hb);
	assert_int_equal(hb->results[0]->code, 9);
	assert_string_equal(hb->results[0]->stop_reason, "time limit exceeded");
	assert_int_equal(hb->results[1]->code, 0);
	JQ_FREE(hb);
	int64_t heard = 0;
	char reason[32] = "";
	hear_until(s, true, ids[0], 0, &heard, reason);
	assert_int_equal(heard, tokens[0]);
	assert_string_equal(reason, "time limit exceeded");
	jobq_sub_close(s);

	/* Retried per its attempts, with the reason in its history; a late Complete is refused. */
	assert_string_equal(jq_db_status(ids[0]), "archive_pending");
	assert_int_equal(jq_complete1(ids[0], tokens[0]), 9);
	g = jq_get(ids[0]);
	assert_int_equal(g->n_failures, 1);
	assert_string_equal(g->failures[0]->error, "time limit exceeded");
	assert_string_equal(g->job->last_error, "time limit exceeded");
	JQ_FREE(g);
	/* The second attempt runs past it too: its attempts are used up. */
	jq_db_make_due(ids[0]);
	assert_int_equal(jq_claim_one_within(q, "w", 30, 5000, &tokens[0]), ids[0]);
	JQ_POLL_UNTIL(strcmp(jq_db_status(ids[0]), "archive_failed") == 0, 5000, "the second attempt to fail");
	assert_string_equal(jq_db_status(ids[1]), "archive_processing");
	assert_int_equal(jq_db_ll("SELECT count(*) FROM job_failure WHERE job_id = %lld AND error = 'lease expired'",
				  (long long)ids[0]), 0);
}

RUN_TEST(a_time_limit_over_7_days_is_invalid_and_old_callers_of_the_enqueue_function_still_work)
{
	QUEUE(q);
	Jobq__V1__JobSpec spec = JOBQ__V1__JOB_SPEC__INIT, *specs[1] = { &spec };
	Jobq__V1__EnqueueRequest req = JOBQ__V1__ENQUEUE_REQUEST__INIT;
	spec.queue = q;
	spec.timeout_ms = 604800001;
	req.n_jobs = 1;
	req.jobs = specs;
	jq_api_expect(JQ_METHOD("Enqueue"), &req, 3, "timeout_ms");
	assert_int_equal(jq_db_ll("SELECT count(*) FROM job_queue WHERE queue = '%s'", q), 0);
	/* The 6-argument function other services call is unchanged; the 7-argument one sets limits
	 * on the jobs it creates only (an idempotency key's earlier job keeps its own). */
	assert_int_equal(jq_db_ll("SELECT count(*) FROM jobq_enqueue_batch(ARRAY['%s', '%s'], NULL, NULL, NULL,"
				  " NULL, ARRAY['k1', NULL])", q, q), 2);
	assert_int_equal(jq_db_ll("SELECT count(*) FROM jobq_enqueue_batch(ARRAY['%s', '%s'], NULL, NULL, NULL,"
				  " NULL, ARRAY['k1', 'k2'], ARRAY[5000, 7000])", q, q), 2);
	char *v = jq_db_str("SELECT string_agg(coalesce(idempotency_key, '-') || ':' || coalesce(timeout_ms::text, '-'), ','"
			    " ORDER BY id) FROM job_queue WHERE queue = '%s'", q);
	assert_string_equal(v, "k1:-,-:-,k2:7000");
	free(v);
}

#define T(name) cmocka_unit_test_setup_teardown(name, before, after)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(cancel_ends_a_running_job_and_its_worker_can_no_longer_report_it),
		T(a_cancel_racing_a_complete_has_exactly_one_winner_and_the_loser_is_refused),
		T(a_cancel_committed_while_a_heartbeat_waits_for_the_row_is_reported_as_a_cancel),
		T(a_cancelled_running_job_is_published_under_cancel_and_never_under_pending),
		T(progress_reported_with_a_heartbeat_is_shown_by_get_and_list_and_fenced_by_the_lease),
		T(bad_progress_is_invalid_argument_and_changes_nothing),
		T(complete_keeps_the_output_with_the_job_and_get_returns_it),
		T(a_batch_complete_keeps_each_jobs_output),
		T(a_complete_with_an_output_and_a_claim_keeps_the_output_and_claims_the_next_job),
		T(an_output_over_the_payload_limit_or_for_a_job_not_named_is_invalid_argument),
		T(wait_answers_when_the_job_ends_woken_by_the_database_not_by_its_time),
		T(wait_for_several_jobs_answers_once_all_have_ended_cancelled_and_failed_count),
		T(wait_answers_unfinished_jobs_as_they_stand_when_its_time_is_up),
		T(waits_past_max_waiting_waits_are_told_to_come_back),
		T(bad_waits_are_invalid_argument_and_an_unknown_job_is_not_found),
		T(a_job_past_its_time_limit_fails_though_its_worker_heartbeats_and_the_worker_is_told),
		T(a_time_limit_over_7_days_is_invalid_and_old_callers_of_the_enqueue_function_still_work),
	};
	return cmocka_run_group_tests_name("running", tests, group_setup, group_teardown);
}
