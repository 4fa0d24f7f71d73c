/*
 * test_complete_claim — Complete and Fail that claim the next jobs in the same call
 * (CompleteRequest.claim, FailRequest.claim) against a real jobqd and PostgreSQL: the completion
 * and the claim in one call, fencing first (a refused completion claims nothing), the embedded
 * claim checked as a Claim, the reply budget, and the long-poll: a call that waits for a job
 * has done its completion once, before the wait, and the reply that ends the wait carries its
 * results. libjobq's jobq_complete_claim / jobq_fail_claim are the client side.
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
	"--rescue-interval-ms=100", "--backoff-base-ms=100", "--default-lease-seconds=30",
	"--max-payload-bytes=4096", "--log-level=info", NULL,
};

static jq_api_svc fx;
static jobq_client *cl;

#define SVC_TEST(name) JQ_API_TEST(fx, name)

static jobq_client *connect_client(size_t max_reply_bytes)
{
	jobq_options o = { .rpc_url = fx.svc.rpc_url, .timeout_ms = 10000, .max_reply_bytes = max_reply_bytes };
	jobq_client *c = NULL;
	jobq_error err;
	if (jobq_connect(&o, &c, &err) != JOBQ_OK)
		fail_msg("jobq_connect: %s", err.message);
	return c;
}

static int group_setup(void **state)
{
	(void)state;
	if (jq_api_svc_start(&fx, "svc_complete_claim", NULL, svc_flags) != 0)
		return -1;
	cl = connect_client(0);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	jobq_close(cl);
	return jq_api_svc_stop(&fx, 10000);
}

static jobq_claim_next next_of(const char *queue, uint32_t limit, uint32_t wait_ms)
{
	return (jobq_claim_next){ .queue = queue, .limit = limit, .worker_id = "cc-worker",
				  .lease_seconds = 30, .wait_ms = wait_ms };
}

/* status_changed_ms: when the job's status last changed (the database's own record). */
static long long status_changed_ms(int64_t id)
{
	return jq_db_ll("SELECT (extract(epoch FROM status_changed_at) * 1000000)::int8 FROM job_queue"
			" WHERE id = %lld", (long long)id);
}

SVC_TEST(complete_claim_completes_the_job_and_returns_the_next_in_one_call)
{
	JQ_QUEUE(q);
	int64_t token, id1 = jq_enqueue_one(q, "first");
	int64_t id2 = jq_enqueue_one(q, "second");
	assert_int_equal(jq_claim_one(q, "cc-worker", 30, &token), id1);

	jobq_lease l = { .id = id1, .lease_token = token };
	jobq_claim_next next = next_of(q, 5, 0);
	jobq_result r;
	jobq_job *jobs = NULL;
	size_t n = 0;
	bool skipped = true;
	jobq_error err;
	int rc = jobq_complete_claim(cl, &l, 1, &next, &r, &jobs, &n, &skipped, &err);
	assert_int_equal(rc, JOBQ_OK);
	assert_int_equal(r.code, JOBQ_OK);
	assert_int_equal(r.status, JOBQ_STATUS_COMPLETED);
	assert_false(skipped);
	assert_int_equal(n, 1);
	assert_int_equal(jobs[0].id, id2);
	assert_string_equal((const char *)jobs[0].payload, "second");
	assert_int_equal(jobs[0].status, JOBQ_STATUS_PROCESSING);
	assert_string_equal(jobs[0].lease_owner, "cc-worker");
	assert_true(jobs[0].lease_token > token);
	assert_string_equal(jq_db_status(id1), "archive_completed");
	assert_string_equal(jq_db_status(id2), "archive_processing");
	assert_int_equal(jq_db_ll("SELECT lease_token FROM job_queue WHERE id = %lld", (long long)id2),
			 jobs[0].lease_token);
	jobq_jobs_free(jobs, n);
}

SVC_TEST(complete_claim_with_a_stale_token_completes_nothing_and_claims_nothing)
{
	JQ_QUEUE(q);
	int64_t token, id1 = jq_enqueue_one(q, "a");
	int64_t id2 = jq_enqueue_one(q, "b");
	assert_int_equal(jq_claim_one(q, "cc-worker", 30, &token), id1);
	long long changed = status_changed_ms(id1);

	jobq_lease l = { .id = id1, .lease_token = token + 1000 };
	jobq_claim_next next = next_of(q, 5, 0);
	jobq_result r;
	jobq_job *jobs = NULL;
	size_t n = 7;
	int rc = jobq_complete_claim(cl, &l, 1, &next, &r, &jobs, &n, NULL, NULL);
	assert_int_equal(rc, JOBQ_FAILED_PRECONDITION);
	assert_int_equal(r.code, JOBQ_FAILED_PRECONDITION);
	assert_int_equal(n, 0);
	assert_null(jobs);
	assert_string_equal(jq_db_status(id1), "archive_processing");
	assert_int_equal(status_changed_ms(id1), changed);
	assert_string_equal(jq_db_status(id2), "archive_pending");
}

SVC_TEST(a_batch_with_one_stale_lease_completes_the_others_and_claims_nothing)
{
	JQ_QUEUE(q);
	int64_t ids[2];
	jq_enqueue_many(q, 2, ids);
	Jobq__V1__ClaimResponse *c = jq_claim(q, 2, "cc-worker", 30);
	assert_int_equal(c->n_jobs, 2);
	jobq_lease l[2] = { { c->jobs[0]->id, c->jobs[0]->lease_token },
			    { c->jobs[1]->id, c->jobs[1]->lease_token + 1000 } };
	JQ_FREE(c);
	int64_t id3 = jq_enqueue_one(q, "third");

	jobq_claim_next next = next_of(q, 5, 0);
	jobq_result r[2];
	jobq_job *jobs = NULL;
	size_t n = 0;
	bool skipped = false;
	jobq_error err;
	assert_int_equal(jobq_complete_claim(cl, l, 2, &next, r, &jobs, &n, &skipped, &err), JOBQ_OK);
	assert_int_equal(r[0].code, JOBQ_OK);
	assert_int_equal(r[1].code, JOBQ_FAILED_PRECONDITION);
	assert_true(skipped);
	assert_int_equal(n, 0);
	assert_string_equal(jq_db_status(l[0].id), "archive_completed");
	assert_string_equal(jq_db_status(l[1].id), "archive_processing");
	assert_string_equal(jq_db_status(id3), "archive_pending");
}

SVC_TEST(a_batch_naming_an_unknown_job_claims_nothing)
{
	JQ_QUEUE(q);
	int64_t token, id1 = jq_enqueue_one(q, "a");
	assert_int_equal(jq_claim_one(q, "cc-worker", 30, &token), id1);
	int64_t id2 = jq_enqueue_one(q, "b");
	jobq_lease l[2] = { { id1, token }, { 999999999, 1 } };
	jobq_claim_next next = next_of(q, 5, 0);
	jobq_result r[2];
	jobq_job *jobs = NULL;
	size_t n = 0;
	bool skipped = false;
	assert_int_equal(jobq_complete_claim(cl, l, 2, &next, r, &jobs, &n, &skipped, NULL), JOBQ_OK);
	assert_int_equal(r[1].code, JOBQ_NOT_FOUND);
	assert_true(skipped);
	assert_int_equal(n, 0);
	assert_string_equal(jq_db_status(id2), "archive_pending");
}

SVC_TEST(a_repeated_complete_answers_ok_and_claims)
{
	JQ_QUEUE(q);
	int64_t token, id1 = jq_enqueue_one(q, "a");
	assert_int_equal(jq_claim_one(q, "cc-worker", 30, &token), id1);
	assert_int_equal(jq_complete1(id1, token), 0);
	long long changed = status_changed_ms(id1);
	int64_t id2 = jq_enqueue_one(q, "b");

	jobq_lease l = { .id = id1, .lease_token = token };
	jobq_claim_next next = next_of(q, 1, 0);
	jobq_result r;
	jobq_job *jobs = NULL;
	size_t n = 0;
	bool skipped = true;
	assert_int_equal(jobq_complete_claim(cl, &l, 1, &next, &r, &jobs, &n, &skipped, NULL), JOBQ_OK);
	assert_int_equal(r.status, JOBQ_STATUS_COMPLETED);
	assert_false(skipped);
	assert_int_equal(n, 1);
	assert_int_equal(jobs[0].id, id2);
	assert_int_equal(status_changed_ms(id1), changed);
	jobq_jobs_free(jobs, n);
}

SVC_TEST(fail_claim_records_the_failure_once_and_returns_the_next_job)
{
	JQ_QUEUE(q);
	int64_t token, id1 = jq_enqueue_one(q, "a");
	int64_t id2 = jq_enqueue_one(q, "b");
	assert_int_equal(jq_claim_one(q, "cc-worker", 30, &token), id1);

	jobq_failure f = { .id = id1, .lease_token = token, .error = "boom" };
	jobq_claim_next next = next_of(q, 5, 0);
	jobq_result r;
	jobq_job *jobs = NULL;
	size_t n = 0;
	bool skipped = true;
	assert_int_equal(jobq_fail_claim(cl, &f, 1, "cc-worker", &next, &r, &jobs, &n, &skipped, NULL), JOBQ_OK);
	assert_int_equal(r.code, JOBQ_OK);
	assert_int_equal(r.status, JOBQ_STATUS_PENDING);
	assert_true(r.run_at_ms > 0);
	assert_false(skipped);
	/* The failed job is pending again, but not due: only the other one is claimed. */
	assert_int_equal(n, 1);
	assert_int_equal(jobs[0].id, id2);
	jobq_jobs_free(jobs, n);
	assert_int_equal(jq_db_ll("SELECT count(*) FROM job_failure WHERE job_id = %lld AND error = 'boom'",
				  (long long)id1), 1);

	/* A stale Fail claims nothing. */
	int64_t id3 = jq_enqueue_one(q, "c");
	f.lease_token = token + 1000;
	f.error = "late";
	assert_int_equal(jobq_fail_claim(cl, &f, 1, "cc-worker", &next, &r, &jobs, &n, &skipped, NULL),
			 JOBQ_FAILED_PRECONDITION);
	assert_int_equal(n, 0);
	assert_string_equal(jq_db_status(id3), "archive_pending");
	assert_int_equal(jq_db_ll("SELECT count(*) FROM job_failure WHERE job_id = %lld", (long long)id1), 1);
}

/* ---- the embedded claim is checked as a Claim, before anything is done ---- */

static void expect_complete_refused(int64_t id, int64_t token, Jobq__V1__ClaimRequest *claim, unsigned code,
				    const char *text)
{
	Jobq__V1__CompleteRequest req = JOBQ__V1__COMPLETE_REQUEST__INIT;
	req.id = id;
	req.lease_token = token;
	req.claim = claim;
	jq_api_expect(JQ_METHOD("Complete"), &req, code, text);
	assert_string_equal(jq_db_status(id), "archive_processing");
}

SVC_TEST(an_invalid_claim_is_refused_and_completes_nothing)
{
	JQ_QUEUE(q);
	int64_t token, id = jq_enqueue_one(q, "a");
	assert_int_equal(jq_claim_one(q, "cc-worker", 30, &token), id);
	Jobq__V1__ClaimRequest c = jq_claim_request(q, 1, "w", 0);

	c.limit = 0;
	expect_complete_refused(id, token, &c, 3, "claim.limit");
	c.limit = 1001;
	expect_complete_refused(id, token, &c, 3, "claim.limit");
	c.limit = 1;
	c.queue = "bad queue!";
	expect_complete_refused(id, token, &c, 3, "claim.queue");
	c.queue = q;
	c.worker_id = "";
	expect_complete_refused(id, token, &c, 3, "claim.worker_id");
	c.worker_id = "w";
	c.lease_seconds = 86401;
	expect_complete_refused(id, token, &c, 3, "claim.lease_seconds");
	c.lease_seconds = 0;
	c.wait_ms = 300001;
	expect_complete_refused(id, token, &c, 3, "claim.wait_ms");

	Jobq__V1__FailRequest f = JOBQ__V1__FAIL_REQUEST__INIT;
	f.id = id;
	f.lease_token = token;
	f.claim = &c;
	jq_api_expect(JQ_METHOD("Fail"), &f, 3, "claim.wait_ms");
	assert_string_equal(jq_db_status(id), "archive_processing");
	assert_int_equal(jq_db_ll("SELECT count(*) FROM job_failure WHERE job_id = %lld", (long long)id), 0);
}

/* ---- the reply budget ---- */

SVC_TEST(the_claimed_jobs_fit_the_reply_the_client_takes_and_the_rest_stay_pending)
{
	JQ_QUEUE(q);
	/* The least a client may take for a Claim: one job of the largest payload and its fields. */
	jobq_client *small = connect_client(MAX_PAYLOAD + 16 * 1024);
	char payload[MAX_PAYLOAD];
	memset(payload, 'x', sizeof(payload) - 1);
	payload[sizeof(payload) - 1] = '\0';
	jq_spec specs[12];
	for (int i = 0; i < 12; i++)
		specs[i] = (jq_spec){ .queue = q, .payload = payload };
	jq_enqueue(specs, 12, NULL);
	int64_t token, id;
	id = jq_claim_one(q, "cc-worker", 30, &token);

	jobq_lease l = { .id = id, .lease_token = token };
	jobq_claim_next next = next_of(q, 11, 0);
	jobq_result r;
	jobq_job *jobs = NULL;
	size_t n = 0;
	jobq_error err;
	int rc = jobq_complete_claim(small, &l, 1, &next, &r, &jobs, &n, NULL, &err);
	jobq_close(small);
	assert_int_equal(rc, JOBQ_OK);
	assert_string_equal(jq_db_status(id), "archive_completed");
	/* 20 KiB hold four jobs of 4 KiB beside the results, not eleven. */
	assert_true(n >= 1 && n < 11);
	assert_int_equal(jq_db_ll("SELECT count(*) FROM job_queue WHERE queue = '%s'"
				  " AND curr_job_status = 'archive_processing'", q), (long long)n);
	assert_int_equal(jq_db_ll("SELECT count(*) FROM job_queue WHERE queue = '%s'"
				  " AND curr_job_status = 'archive_pending'", q), 11 - (long long)n);
	jobq_jobs_free(jobs, n);
}

/* ---- waiting for the next job ---- */

typedef struct waiting_call {
	jobq_client *client; /* NULL: the group's */
	jobq_lease lease;
	jobq_failure failure; /* used when fail is set */
	bool fail;
	jobq_claim_next next;
	int rc;
	jobq_result r;
	jobq_job *jobs;
	size_t n;
	char message[512];
} waiting_call;

static void *call_waiting(void *p)
{
	waiting_call *a = p;
	jobq_client *c = a->client != NULL ? a->client : cl;
	jobq_error err = { 0 };
	if (a->fail)
		a->rc = jobq_fail_claim(c, &a->failure, 1, "cc-worker", &a->next, &a->r, &a->jobs, &a->n, NULL, &err);
	else
		a->rc = jobq_complete_claim(c, &a->lease, 1, &a->next, &a->r, &a->jobs, &a->n, NULL, &err);
	snprintf(a->message, sizeof(a->message), "%s", err.message);
	return NULL;
}

static bool is_status(int64_t id, const char *status)
{
	return strcmp(jq_db_status(id), status) == 0;
}

static double waiters(void)
{
	return jq_svc_metric(&fx.svc, "jobq_longpoll_waiters");
}

SVC_TEST(a_complete_that_waits_is_answered_with_its_results_and_the_job_that_came)
{
	JQ_QUEUE(q);
	JQ_QUEUE(next_q);
	int64_t token, id = jq_enqueue_one(q, "a");
	assert_int_equal(jq_claim_one(q, "cc-worker", 30, &token), id);
	waiting_call a = { .lease = { id, token }, .next = next_of(next_q, 1, 20000) };
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, call_waiting, &a), 0);

	/* The completion is done before the wait: the job is completed while the call still waits. */
	JQ_POLL_UNTIL(is_status(id, "archive_completed"), 10000, "the completion before the wait");
	JQ_POLL_UNTIL(waiters() >= 1, 10000, "the call to wait");
	/* Were the completion run again when the call wakes, it would now find no job (NOT_FOUND)
	 * and claim nothing: the reply must be the results of the completion made before. */
	jq_db_do("DELETE FROM job_queue WHERE id = %lld", (long long)id);
	int64_t id2 = jq_enqueue_one(next_q, "arrived");
	assert_int_equal(pthread_join(t, NULL), 0);

	if (a.rc != JOBQ_OK)
		fail_msg("complete_claim: %s: %s", jobq_code_name(a.rc), a.message);
	assert_int_equal(a.r.code, JOBQ_OK);
	assert_int_equal(a.r.id, id);
	assert_int_equal(a.r.status, JOBQ_STATUS_COMPLETED);
	assert_int_equal(a.n, 1);
	assert_int_equal(a.jobs[0].id, id2);
	assert_string_equal(jq_db_status(id2), "archive_processing");
	jobq_jobs_free(a.jobs, a.n);
}

/* After the wait the claim runs alone, its jobs sharing the reply with the results kept: a
 * client that takes little gets its job all the same. */
SVC_TEST(a_complete_that_waits_for_a_client_that_takes_little_gets_the_job_that_came)
{
	JQ_QUEUE(q);
	JQ_QUEUE(next_q);
	int64_t token, id = jq_enqueue_one(q, "a");
	assert_int_equal(jq_claim_one(q, "cc-worker", 30, &token), id);
	jobq_client *small = connect_client(MAX_PAYLOAD + 16 * 1024);
	waiting_call a = { .client = small, .lease = { id, token }, .next = next_of(next_q, 5, 20000) };
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, call_waiting, &a), 0);
	JQ_POLL_UNTIL(is_status(id, "archive_completed") && waiters() >= 1, 10000, "the completion, then the wait");
	char payload[MAX_PAYLOAD];
	memset(payload, 'y', sizeof(payload) - 1);
	payload[sizeof(payload) - 1] = '\0';
	jq_spec spec = { .queue = next_q, .payload = payload };
	int64_t id2;
	jq_enqueue(&spec, 1, &id2);
	assert_int_equal(pthread_join(t, NULL), 0);
	jobq_close(small);
	if (a.rc != JOBQ_OK)
		fail_msg("complete_claim: %s: %s", jobq_code_name(a.rc), a.message);
	assert_int_equal(a.r.status, JOBQ_STATUS_COMPLETED);
	assert_int_equal(a.n, 1);
	assert_int_equal(a.jobs[0].id, id2);
	assert_int_equal(a.jobs[0].payload_len, MAX_PAYLOAD - 1);
	jobq_jobs_free(a.jobs, a.n);
}

SVC_TEST(a_complete_whose_wait_ends_empty_is_answered_with_its_results)
{
	JQ_QUEUE(q);
	JQ_QUEUE(next_q);
	int64_t token, id = jq_enqueue_one(q, "a");
	assert_int_equal(jq_claim_one(q, "cc-worker", 30, &token), id);
	waiting_call a = { .lease = { id, token }, .next = next_of(next_q, 1, 300) };
	call_waiting(&a);
	if (a.rc != JOBQ_OK)
		fail_msg("complete_claim: %s: %s", jobq_code_name(a.rc), a.message);
	assert_int_equal(a.r.id, id);
	assert_int_equal(a.r.status, JOBQ_STATUS_COMPLETED);
	assert_int_equal(a.n, 0);
	assert_string_equal(jq_db_status(id), "archive_completed");
}

/* A queue the service knows to be empty (a claim of it came back short, nothing announced
 * since) is not asked: the completion runs alone and the call waits, as such a Claim would. */
SVC_TEST(a_complete_of_a_queue_known_empty_waits_without_asking_and_gets_the_job_that_came)
{
	JQ_QUEUE(q);
	JQ_QUEUE(next_q);
	int64_t ids[2], tokens[2];
	jq_enqueue_many(q, 2, ids);
	assert_int_equal(jq_claim_one(q, "cc-worker", 30, &tokens[0]), ids[0]);
	assert_int_equal(jq_claim_one(q, "cc-worker", 30, &tokens[1]), ids[1]);
	waiting_call first = { .lease = { ids[0], tokens[0] }, .next = next_of(next_q, 1, 100) };
	call_waiting(&first);
	assert_int_equal(first.rc, JOBQ_OK);
	assert_int_equal(first.n, 0);

	double unqueried = jq_svc_metric(&fx.svc, "jobq_longpoll_unqueried_total");
	waiting_call a = { .lease = { ids[1], tokens[1] }, .next = next_of(next_q, 1, 20000) };
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, call_waiting, &a), 0);
	JQ_POLL_UNTIL(is_status(ids[1], "archive_completed") && waiters() >= 1, 10000, "the completion, then the wait");
	assert_true(jq_svc_metric(&fx.svc, "jobq_longpoll_unqueried_total") == unqueried + 1);
	int64_t id3 = jq_enqueue_one(next_q, "arrived");
	assert_int_equal(pthread_join(t, NULL), 0);
	if (a.rc != JOBQ_OK)
		fail_msg("complete_claim: %s: %s", jobq_code_name(a.rc), a.message);
	assert_int_equal(a.r.id, ids[1]);
	assert_int_equal(a.r.status, JOBQ_STATUS_COMPLETED);
	assert_int_equal(a.n, 1);
	assert_int_equal(a.jobs[0].id, id3);
	jobq_jobs_free(a.jobs, a.n);
}

SVC_TEST(a_fail_that_waits_records_one_failure_and_returns_the_job_that_came)
{
	JQ_QUEUE(q);
	JQ_QUEUE(next_q);
	int64_t token, id = jq_enqueue_one(q, "a");
	assert_int_equal(jq_claim_one(q, "cc-worker", 30, &token), id);
	long long before_ms = status_changed_ms(id);
	waiting_call a = { .failure = { .id = id, .lease_token = token, .error = "waits", .final = true },
			   .fail = true, .next = next_of(next_q, 1, 20000) };
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, call_waiting, &a), 0);
	JQ_POLL_UNTIL(is_status(id, "archive_failed"), 10000, "the failure before the wait");
	JQ_POLL_UNTIL(waiters() >= 1, 10000, "the call to wait");
	long long failed_ms = status_changed_ms(id);
	assert_true(failed_ms > before_ms);
	/* Were the failure reported again when the call wakes, it would no longer find itself in
	 * the history (a repeat is known by its error text there) and be refused. */
	jq_db_do("UPDATE job_failure SET error = 'recorded before the wait' WHERE job_id = %lld", (long long)id);
	int64_t id2 = jq_enqueue_one(next_q, "arrived");
	assert_int_equal(pthread_join(t, NULL), 0);

	if (a.rc != JOBQ_OK)
		fail_msg("fail_claim: %s: %s", jobq_code_name(a.rc), a.message);
	assert_int_equal(a.r.code, JOBQ_OK);
	assert_int_equal(a.r.status, JOBQ_STATUS_FAILED);
	assert_int_equal(a.n, 1);
	assert_int_equal(a.jobs[0].id, id2);
	jobq_jobs_free(a.jobs, a.n);
	assert_int_equal(jq_db_ll("SELECT count(*) FROM job_failure WHERE job_id = %lld", (long long)id), 1);
	assert_int_equal(status_changed_ms(id), failed_ms);
}

/* enqueue_later enqueues one job of queue after after_ms, through its own client (the helpers of
 * jq_svc_api are not for threads). */
typedef struct enqueue_later_arg {
	const char *rpc_url;
	const char *queue;
	int after_ms;
	int64_t id;
} enqueue_later_arg;

static void *enqueue_later(void *p)
{
	enqueue_later_arg *a = p;
	jobq_options o = { .rpc_url = a->rpc_url, .timeout_ms = 10000 };
	jobq_client *c = NULL;
	jq_sleep_ms(a->after_ms);
	a->id = -1;
	if (jobq_connect(&o, &c, NULL) != JOBQ_OK)
		return NULL;
	jobq_job_spec spec = { .queue = a->queue, .payload = "later", .payload_len = 5 };
	if (jobq_enqueue(c, &spec, 1, &a->id, NULL) != JOBQ_OK)
		a->id = -1;
	jobq_close(c);
	return NULL;
}

/* A service that keeps no Claim waiting (--max-waiting-claims=0) answers a Complete whose claim
 * would wait with its results and retry_after_ms, as it answers such a Claim; libjobq then waits
 * as asked and claims again. */
SVC_TEST(a_complete_past_the_waiting_cap_gets_its_results_and_retry_after)
{
	JQ_QUEUE(q);
	JQ_QUEUE(next_q);
	static const char *const flags[] = { "--max-waiting-claims=0", NULL };
	jq_svc capped = { 0 };
	jq_rpc_sock sock = { 0 };
	char *url = jq_test_db_clone("svc_complete_claim_cap");
	PGconn *pg = jq_test_connect(url);
	jq_svc_start(&capped, "complete_claim_cap", url, flags);
	assert_int_equal(jq_rpc_open(&sock, capped.rpc_url, 10000), 0);
	jq_api_use(&sock, pg);

	int64_t token, id = jq_enqueue_one(q, "a");
	assert_int_equal(jq_claim_one(q, "cc-worker", 30, &token), id);
	Jobq__V1__ClaimRequest c = jq_claim_request(next_q, 1, "cc-worker", 0);
	c.wait_ms = 5000;
	Jobq__V1__CompleteRequest req = JOBQ__V1__COMPLETE_REQUEST__INIT;
	req.id = id;
	req.lease_token = token;
	req.claim = &c;
	Jobq__V1__CompleteResponse *r = jq_api_ok(JQ_METHOD("Complete"), &req,
						  &jobq__v1__complete_response__descriptor);
	bool ok = r->n_results == 1 && r->results[0]->id == id && r->results[0]->code == 0 &&
		  r->results[0]->status == JOBQ__V1__JOB_STATUS__JOB_STATUS_ARCHIVE_COMPLETED &&
		  r->n_claimed == 0 && r->retry_after_ms > 0 && !r->claim_skipped;
	JQ_FREE(r);
	bool completed = is_status(id, "archive_completed");

	/* libjobq then waits as asked and claims again for the rest of wait_ms: a job enqueued
	 * meanwhile comes back from the same call. */
	jobq_options o = { .rpc_url = capped.rpc_url, .timeout_ms = 10000 };
	jobq_client *capped_cl = NULL;
	assert_int_equal(jobq_connect(&o, &capped_cl, NULL), JOBQ_OK);
	int64_t token2, id2 = jq_enqueue_one(q, "b");
	assert_int_equal(jq_claim_one(q, "cc-worker", 30, &token2), id2);
	jobq_lease l = { .id = id2, .lease_token = token2 };
	jobq_claim_next next = next_of(next_q, 1, 5000);
	jobq_result res;
	jobq_job *jobs = NULL;
	size_t n = 0;
	jobq_error err = { 0 };
	pthread_t t;
	enqueue_later_arg later = { .rpc_url = capped.rpc_url, .queue = next_q, .after_ms = 300 };
	assert_int_equal(pthread_create(&t, NULL, enqueue_later, &later), 0);
	int rc = jobq_complete_claim(capped_cl, &l, 1, &next, &res, &jobs, &n, NULL, &err);
	assert_int_equal(pthread_join(t, NULL), 0);
	jobq_close(capped_cl);
	bool fallback_ok = rc == JOBQ_OK && res.code == JOBQ_OK && res.status == JOBQ_STATUS_COMPLETED &&
			   n == 1 && jobs[0].id == later.id && is_status(id2, "archive_completed");
	if (!fallback_ok)
		fprintf(stderr, "complete_claim past the cap: rc %d (%s), result %d, %zu jobs\n", rc,
			err.message, res.code, n);
	jobq_jobs_free(jobs, n);

	jq_api_use(&fx.rpc, fx.pg);
	jq_rpc_close(&sock);
	int stopped = jq_svc_finish(&capped, 10000, !ok || !completed || !fallback_ok);
	PQfinish(pg);
	free(url);
	assert_true(ok);
	assert_true(completed);
	assert_true(fallback_ok);
	assert_int_equal(stopped, 0);
}

/* SIGTERM answers a Complete that waits, as it answers a waiting Claim: with no job, and here
 * with the results of its completion; jobqd exits 0. */
SVC_TEST(sigterm_answers_a_waiting_complete_with_its_results)
{
	JQ_QUEUE(q);
	JQ_QUEUE(next_q);
	jq_svc other = { 0 };
	jq_rpc_sock sock = { 0 };
	char *url = jq_test_db_clone("svc_complete_claim_stop");
	PGconn *pg = jq_test_connect(url);
	jq_svc_start(&other, "complete_claim_stop", url, NULL);
	assert_int_equal(jq_rpc_open(&sock, other.rpc_url, 10000), 0);
	jq_api_use(&sock, pg);
	int64_t token, id = jq_enqueue_one(q, "a");
	assert_int_equal(jq_claim_one(q, "cc-worker", 30, &token), id);

	jobq_options o = { .rpc_url = other.rpc_url, .timeout_ms = 10000 };
	jobq_client *c = NULL;
	assert_int_equal(jobq_connect(&o, &c, NULL), JOBQ_OK);
	waiting_call a = { .client = c, .lease = { id, token }, .next = next_of(next_q, 1, 30000) };
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, call_waiting, &a), 0);
	long long until = jq_mono_ms() + 10000;
	while (!(is_status(id, "archive_completed") && jq_svc_metric(&other, "jobq_longpoll_waiters") >= 1) &&
	       jq_mono_ms() < until)
		jq_sleep_ms(10);
	bool waited = jq_svc_metric(&other, "jobq_longpoll_waiters") >= 1;
	int status = jq_svc_stop(&other, 10000);
	assert_int_equal(pthread_join(t, NULL), 0);
	jobq_close(c);
	jq_api_use(&fx.rpc, fx.pg);
	jq_rpc_close(&sock);
	bool ok = waited && status == 0 && a.rc == JOBQ_OK && a.r.code == JOBQ_OK &&
		  a.r.status == JOBQ_STATUS_COMPLETED && a.n == 0;
	if (!ok)
		fprintf(stderr, "waited %d, exit %d, rc %d (%s), result %d, %zu jobs\n", waited, status, a.rc,
			a.message, a.r.code, a.n);
	int finished = jq_svc_finish(&other, 1000, !ok);
	PQfinish(pg);
	free(url);
	jobq_jobs_free(a.jobs, a.n);
	assert_true(ok);
	assert_int_equal(finished, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, jq_api_svc_before, jq_api_svc_after)
		T(complete_claim_completes_the_job_and_returns_the_next_in_one_call),
		T(complete_claim_with_a_stale_token_completes_nothing_and_claims_nothing),
		T(a_batch_with_one_stale_lease_completes_the_others_and_claims_nothing),
		T(a_batch_naming_an_unknown_job_claims_nothing),
		T(a_repeated_complete_answers_ok_and_claims),
		T(fail_claim_records_the_failure_once_and_returns_the_next_job),
		T(an_invalid_claim_is_refused_and_completes_nothing),
		T(the_claimed_jobs_fit_the_reply_the_client_takes_and_the_rest_stay_pending),
		T(a_complete_that_waits_is_answered_with_its_results_and_the_job_that_came),
		T(a_complete_that_waits_for_a_client_that_takes_little_gets_the_job_that_came),
		T(a_complete_whose_wait_ends_empty_is_answered_with_its_results),
		T(a_complete_of_a_queue_known_empty_waits_without_asking_and_gets_the_job_that_came),
		T(a_fail_that_waits_records_one_failure_and_returns_the_job_that_came),
		T(a_complete_past_the_waiting_cap_gets_its_results_and_retry_after),
		T(sigterm_answers_a_waiting_complete_with_its_results),
#undef T
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
