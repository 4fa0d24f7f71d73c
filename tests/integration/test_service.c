/*
 * test_service — jobqd as its clients see it: a real jobqd process on a private copy of the
 * database, spoken to over a real nng REQ socket, its effects checked in PostgreSQL.
 *
 * One jobqd serves the whole group (short rescue interval and backoff, small payload and
 * message limits); each test works in queues of its own, so tests do not see each other's jobs.
 * The service's log is printed when a test fails, and a service that died during a test fails it.
 * Tests of the service's life (database down, retention, SIGTERM) are in test_service_life.c.
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

#include "jq_rpc_call.h"
#include "jq_svc.h"
#include "jq_svc_api.h"
#include "jq_test.h"

#define MAX_PAYLOAD 4096
#define MAX_MESSAGE 262144

static const char *const svc_flags[] = {
	"--rescue-interval-ms=100", "--backoff-base-ms=100", "--default-lease-seconds=30",
	"--max-payload-bytes=4096", "--max-message-bytes=262144", "--log-level=info", NULL,
};

static jq_api_svc fx;

/* SVC_TEST defines a test whose failure (an assertion longjmps out of the body) is noticed by
 * the teardown, which then prints the service's log. */
#define SVC_TEST(name) JQ_API_TEST(fx, name)

#define assert_between(v, lo, hi)                                                              \
	do {                                                                                   \
		long long v_ = (long long)(v), lo_ = (long long)(lo), hi_ = (long long)(hi);   \
		if (v_ < lo_ || v_ > hi_)                                                      \
			fail_msg("%s = %lld, not within [%lld, %lld]", #v, v_, lo_, hi_);      \
	} while (0)

static int group_setup(void **state)
{
	(void)state;
	return jq_api_svc_start(&fx, "svc_main", NULL, svc_flags);
}

static int group_teardown(void **state)
{
	(void)state;
	return jq_api_svc_stop(&fx, 10000);
}

/* ================= Enqueue ================= */

SVC_TEST(enqueue_stores_a_pending_job_and_returns_its_id)
{
	JQ_QUEUE(q);
	const char payload[] = "hello\0world";
	Jobq__V1__JobSpec spec = JOBQ__V1__JOB_SPEC__INIT;
	Jobq__V1__JobSpec *specs[] = { &spec };
	Jobq__V1__EnqueueRequest req = JOBQ__V1__ENQUEUE_REQUEST__INIT;
	spec.queue = q;
	spec.payload.data = (uint8_t *)payload;
	spec.payload.len = sizeof(payload) - 1; /* binary: the NUL byte is part of it */
	spec.priority = -5;
	req.n_jobs = 1;
	req.jobs = specs;
	Jobq__V1__EnqueueResponse *r = jq_api_ok(JQ_METHOD("Enqueue"), &req,
						 &jobq__v1__enqueue_response__descriptor);
	assert_int_equal(r->n_ids, 1);
	int64_t id = r->ids[0];
	JQ_FREE(r);
	assert_true(id > 0);

	char *row = jq_db_str("SELECT queue || '|' || encode(payload, 'hex') || '|' || priority || '|' ||"
			      " prev_job_status || '|' || curr_job_status || '|' || attempts || '|' ||"
			      " max_attempts || '|' || (run_at <= now()) || '|' || (lease_token IS NULL)"
			      " FROM job_queue WHERE id = %lld", (long long)id);
	char want[256];
	snprintf(want, sizeof(want), "%s|68656c6c6f00776f726c64|-5|archive_pending|archive_pending|0|25|true|true", q);
	assert_string_equal(row, want);
	free(row);
}

SVC_TEST(enqueue_accepts_a_batch_of_1000_jobs_and_answers_ids_in_request_order)
{
	JQ_QUEUE(q);
	int64_t ids[1000];
	jq_enqueue_many(q, 1000, ids);
	for (int i = 1; i < 1000; i++)
		assert_true(ids[i] > ids[i - 1]);
	assert_int_equal(jq_db_ll("SELECT count(*) FROM job_queue WHERE queue = '%s'", q), 1000);
	int probes[] = { 0, 1, 499, 998, 999 };
	for (size_t k = 0; k < sizeof(probes) / sizeof(probes[0]); k++) {
		char *p = jq_db_str("SELECT convert_from(payload, 'UTF8') FROM job_queue WHERE id = %lld",
				    (long long)ids[probes[k]]);
		char want[32];
		snprintf(want, sizeof(want), "job-%d", probes[k]);
		assert_string_equal(p, want);
		free(p);
	}
}

SVC_TEST(enqueue_records_max_attempts_or_the_default_of_25)
{
	JQ_QUEUE(q);
	jq_spec specs[] = { { .queue = q, .max_attempts = 3 }, { .queue = q }, { .queue = q, .max_attempts = 1000 } };
	int64_t ids[3];
	jq_enqueue(specs, 3, ids);
	Jobq__V1__GetResponse *g = jq_get(ids[0]);
	assert_int_equal(g->job->max_attempts, 3);
	JQ_FREE(g);
	g = jq_get(ids[1]);
	assert_int_equal(g->job->max_attempts, 25);
	JQ_FREE(g);
	assert_int_equal(jq_db_ll("SELECT max_attempts FROM job_queue WHERE id = %lld", (long long)ids[2]), 1000);
}

SVC_TEST(a_job_scheduled_for_later_is_not_claimable_before_it_is_due)
{
	JQ_QUEUE(q);
	long long now = jq_now_ms();
	jq_spec specs[] = {
		{ .queue = q, .payload = "at", .run_at_ms = now + 60000 },
		{ .queue = q, .payload = "delay", .delay_ms = 60000 },
		{ .queue = q, .payload = "past", .run_at_ms = now - 5000 },
	};
	int64_t ids[3];
	jq_enqueue(specs, 3, ids);

	/* run_at_ms is stored as given (millisecond precision); delay_ms counts from the enqueue. */
	assert_int_equal(jq_db_ll("SELECT floor(extract(epoch FROM run_at) * 1000)::bigint FROM job_queue WHERE id = %lld",
				  (long long)ids[0]), now + 60000);
	assert_between(jq_db_ll("SELECT (extract(epoch FROM run_at - created_at) * 1000)::bigint FROM job_queue"
				" WHERE id = %lld", (long long)ids[1]), 59000, 61000);

	/* Only the job already due comes out, however large the limit. */
	Jobq__V1__ClaimResponse *c = jq_claim(q, 10, "w", 30);
	assert_int_equal(c->n_jobs, 1);
	assert_int_equal(c->jobs[0]->id, ids[2]);
	JQ_FREE(c);

	/* Make the delayed job due in 300 ms: it is not claimable until then, and is claimable after. */
	jq_db_do("UPDATE job_queue SET run_at = now() + interval '300 milliseconds' WHERE id = %lld",
		 (long long)ids[1]);
	long long due = jq_db_ll("SELECT floor(extract(epoch FROM run_at) * 1000)::bigint FROM job_queue WHERE id = %lld",
				 (long long)ids[1]);
	int64_t got = jq_claim_one_within(q, "w", 30, 5000, NULL);
	assert_int_equal(got, ids[1]);
	assert_true(jq_now_ms() >= due);
	assert_string_equal(jq_db_status(ids[0]), "archive_pending");
}

/* ================= Claim ================= */

SVC_TEST(claim_takes_jobs_by_priority_then_run_at_then_id)
{
	JQ_QUEUE(q);
	long long now = jq_now_ms();
	/* Enqueued out of order; expected claim order: E, C, D, B, A. */
	jq_spec specs[] = {
		{ .queue = q, .payload = "A", .priority = 5, .run_at_ms = now - 9000 },
		{ .queue = q, .payload = "B", .priority = 1, .run_at_ms = now - 1000 },
		{ .queue = q, .payload = "C", .priority = 1, .run_at_ms = now - 3000 },
		{ .queue = q, .payload = "D", .priority = 1, .run_at_ms = now - 3000 },
		{ .queue = q, .payload = "E", .priority = -3, .run_at_ms = now - 500 },
	};
	int64_t ids[5];
	jq_enqueue(specs, 5, ids);
	int64_t want[5] = { ids[4], ids[2], ids[3], ids[1], ids[0] };

	/* One at a time: the order of selection. */
	for (int i = 0; i < 2; i++)
		assert_int_equal(jq_claim_one(q, "w", 30, NULL), want[i]);
	/* Several at once: the same order, also within the reply. */
	Jobq__V1__ClaimResponse *c = jq_claim(q, 10, "w", 30);
	assert_int_equal(c->n_jobs, 3);
	for (int i = 0; i < 3; i++)
		assert_int_equal(c->jobs[i]->id, want[2 + i]);
	JQ_FREE(c);
}

SVC_TEST(a_large_claim_answers_its_jobs_in_claim_order)
{
	JQ_QUEUE(q);
	enum { N = 600 };
	jq_spec *specs = calloc(N, sizeof(*specs));
	assert_non_null(specs);
	long long now = jq_now_ms();
	for (int i = 0; i < N; i++)
		specs[i] = (jq_spec){ .queue = q, .priority = (i * 7) % 5, .run_at_ms = now - 1000 * (i % 3) };
	jq_enqueue(specs, N, NULL);
	free(specs);
	Jobq__V1__ClaimResponse *c = jq_claim(q, 1000, "w", 30);
	assert_int_equal(c->n_jobs, N);
	for (size_t i = 1; i < c->n_jobs; i++) {
		const Jobq__V1__Job *a = c->jobs[i - 1], *b = c->jobs[i];
		bool ordered = a->priority < b->priority ||
			       (a->priority == b->priority && (a->run_at_ms < b->run_at_ms ||
							       (a->run_at_ms == b->run_at_ms && a->id < b->id)));
		if (!ordered) {
			long long ai = a->id, bi = b->id;
			JQ_FREE(c);
			fail_msg("jobs %lld and %lld at positions %zu and %zu are out of claim order", ai, bi, i - 1, i);
		}
	}
	JQ_FREE(c);
}

SVC_TEST(a_claim_reply_larger_than_the_request_limit_arrives_whole)
{
	JQ_QUEUE(q);
	enum { N = 200 };
	char *payload = malloc(MAX_PAYLOAD + 1);
	jq_spec *specs = calloc(N, sizeof(*specs));
	assert_non_null(payload);
	assert_non_null(specs);
	memset(payload, 'P', MAX_PAYLOAD);
	payload[MAX_PAYLOAD] = '\0';
	for (int i = 0; i < N; i++)
		specs[i] = (jq_spec){ .queue = q, .payload = payload };
	/* 200 x 4 KiB in four requests (each under the request limit), one reply of 800 KiB+. */
	for (int i = 0; i < N; i += 50)
		jq_enqueue(specs + i, 50, NULL);
	free(specs);
	Jobq__V1__ClaimResponse *c = jq_claim(q, N, "w", 30);
	assert_int_equal(c->n_jobs, N);
	for (int i = 0; i < N; i++) {
		assert_int_equal(c->jobs[i]->payload.len, MAX_PAYLOAD);
		assert_memory_equal(c->jobs[i]->payload.data, payload, MAX_PAYLOAD);
	}
	JQ_FREE(c);
	free(payload);
}

SVC_TEST(claim_returns_at_most_limit_jobs)
{
	JQ_QUEUE(q);
	jq_enqueue_many(q, 10, NULL);
	unsigned limits[] = { 3, 5, 10, 10 }, expect[] = { 3, 5, 2, 0 };
	for (int i = 0; i < 4; i++) {
		Jobq__V1__ClaimResponse *c = jq_claim(q, limits[i], "w", 30);
		assert_int_equal(c->n_jobs, expect[i]);
		JQ_FREE(c);
	}
	assert_int_equal(jq_db_ll("SELECT count(*) FROM job_queue WHERE queue = '%s'"
				  " AND curr_job_status = 'archive_processing'", q), 10);
}

SVC_TEST(claim_records_the_lease_owner_and_expiry_counts_attempts_and_issues_a_larger_token_every_time)
{
	JQ_QUEUE(q);
	int64_t a = jq_enqueue_one(q, "a"), b = jq_enqueue_one(q, "b");
	long long t0 = jq_now_ms();
	Jobq__V1__ClaimResponse *c = jq_claim(q, 1, "worker-1", 60);
	assert_int_equal(c->n_jobs, 1);
	Jobq__V1__Job *j = c->jobs[0];
	assert_int_equal(j->id, a);
	assert_string_equal(j->queue, q);
	assert_int_equal(j->payload.len, 1);
	assert_memory_equal(j->payload.data, "a", 1);
	assert_int_equal(j->status, JOBQ__V1__JOB_STATUS__JOB_STATUS_ARCHIVE_PROCESSING);
	assert_int_equal(j->attempts, 1);
	assert_string_equal(j->lease_owner, "worker-1");
	assert_between(j->lease_expires_at_ms - t0, 59000, 61000);
	int64_t t1 = j->lease_token;
	assert_true(t1 > 0);
	JQ_FREE(c);
	char *row = jq_db_str("SELECT lease_owner || '|' || lease_token || '|' || attempts FROM job_queue WHERE id = %lld",
			      (long long)a);
	char want[128];
	snprintf(want, sizeof(want), "worker-1|%lld|1", (long long)t1);
	assert_string_equal(row, want);
	free(row);

	/* Another claim: a larger token. The default lease is the service's (30 s here). */
	t0 = jq_now_ms();
	c = jq_claim(q, 1, "worker-2", 0);
	assert_int_equal(c->n_jobs, 1);
	assert_int_equal(c->jobs[0]->id, b);
	int64_t t2 = c->jobs[0]->lease_token;
	assert_true(t2 > t1);
	assert_between(c->jobs[0]->lease_expires_at_ms - t0, 29000, 31000);
	JQ_FREE(c);

	/* The same job claimed again after a retryable failure: attempts 2, a larger token still. */
	assert_int_equal(jq_fail1(a, t1, "try again", false, 1, NULL, NULL, NULL), 0);
	int64_t t3;
	assert_int_equal(jq_claim_one_within(q, "worker-3", 30, 5000, &t3), a);
	assert_true(t3 > t2);
	assert_int_equal(jq_db_ll("SELECT attempts FROM job_queue WHERE id = %lld", (long long)a), 2);
}

/* ================= Heartbeat ================= */

SVC_TEST(heartbeat_extends_the_lease)
{
	JQ_QUEUE(q);
	int64_t id = jq_enqueue_one(q, "x"), token, expires;
	assert_int_equal(jq_claim_one(q, "w", 5, &token), id);
	long long t0 = jq_now_ms();
	assert_int_equal(jq_heartbeat1(id, token, 120, &expires), 0);
	assert_between(expires - t0, 119000, 121000);
	assert_int_equal(jq_db_ll("SELECT floor(extract(epoch FROM lease_expires_at) * 1000)::bigint FROM job_queue"
				  " WHERE id = %lld", (long long)id), expires);
	assert_string_equal(jq_db_status(id), "archive_processing");
}

SVC_TEST(heartbeat_answers_each_job_of_a_batch)
{
	JQ_QUEUE(q);
	int64_t ids[3], tok[3];
	jq_enqueue_many(q, 3, ids);
	for (int i = 0; i < 3; i++)
		assert_int_equal(jq_claim_one(q, "w", 5, &tok[i]), ids[i]);
	char *before_stale = jq_db_str("SELECT lease_expires_at FROM job_queue WHERE id = %lld", (long long)ids[1]);

	Jobq__V1__JobLease l[4] = { JOBQ__V1__JOB_LEASE__INIT, JOBQ__V1__JOB_LEASE__INIT,
				    JOBQ__V1__JOB_LEASE__INIT, JOBQ__V1__JOB_LEASE__INIT };
	Jobq__V1__JobLease *lp[4] = { &l[0], &l[1], &l[2], &l[3] };
	l[0].id = ids[0], l[0].lease_token = tok[0];
	l[1].id = ids[1], l[1].lease_token = tok[1] + 1000; /* not its token */
	l[2].id = ids[2], l[2].lease_token = tok[2];
	l[3].id = INT64_C(900000000000), l[3].lease_token = 1; /* no such job */
	Jobq__V1__HeartbeatRequest req = JOBQ__V1__HEARTBEAT_REQUEST__INIT;
	req.n_jobs = 4;
	req.jobs = lp;
	req.lease_seconds = 300;
	Jobq__V1__HeartbeatResponse *r = jq_api_ok(JQ_METHOD("Heartbeat"), &req,
						   &jobq__v1__heartbeat_response__descriptor);
	assert_int_equal(r->n_results, 4);
	unsigned want[4] = { 0, 9, 0, 5 };
	for (int i = 0; i < 4; i++) {
		assert_int_equal(r->results[i]->id, l[i].id);
		assert_int_equal(r->results[i]->code, want[i]);
	}
	assert_true(r->results[0]->lease_expires_at_ms > jq_now_ms() + 290000);
	assert_int_equal(r->results[1]->lease_expires_at_ms, 0);
	JQ_FREE(r);
	char *after_stale = jq_db_str("SELECT lease_expires_at FROM job_queue WHERE id = %lld", (long long)ids[1]);
	assert_string_equal(before_stale, after_stale);
	free(before_stale);
	free(after_stale);
	assert_int_equal(jq_db_ll("SELECT count(*) FROM job_queue WHERE queue = '%s'"
				  " AND lease_expires_at > now() + interval '290 seconds'", q), 2);
}

SVC_TEST(heartbeat_with_a_stale_token_is_failed_precondition_and_changes_nothing)
{
	JQ_QUEUE(q);
	int64_t id = jq_enqueue_one(q, "x"), token;
	jq_claim_one(q, "w", 5, &token);
	char *before_row = jq_db_str("SELECT lease_expires_at::text || lease_token FROM job_queue WHERE id = %lld",
				     (long long)id);
	assert_int_equal(jq_heartbeat1(id, token - 1 > 0 ? token - 1 : token + 1, 300, NULL), 9);
	assert_non_null(strstr(jq_api_msg, "lease"));
	char *after_row = jq_db_str("SELECT lease_expires_at::text || lease_token FROM job_queue WHERE id = %lld",
				    (long long)id);
	assert_string_equal(before_row, after_row);
	free(before_row);
	free(after_row);
}

/* ================= Complete ================= */

SVC_TEST(complete_finishes_the_job)
{
	JQ_QUEUE(q);
	int64_t id = jq_enqueue_one(q, "x"), token;
	jq_claim_one(q, "w", 30, &token);
	Jobq__V1__CompleteRequest req = JOBQ__V1__COMPLETE_REQUEST__INIT;
	req.id = id;
	req.lease_token = token;
	Jobq__V1__CompleteResponse *r = jq_api_ok(JQ_METHOD("Complete"), &req,
						  &jobq__v1__complete_response__descriptor);
	assert_int_equal(r->n_results, 1);
	assert_int_equal(r->results[0]->code, 0);
	assert_int_equal(r->results[0]->status, JOBQ__V1__JOB_STATUS__JOB_STATUS_ARCHIVE_COMPLETED);
	JQ_FREE(r);
	char *row = jq_db_str("SELECT curr_job_status || '|' || (finished_at IS NOT NULL) || '|' ||"
			      " (lease_expires_at IS NULL) FROM job_queue WHERE id = %lld", (long long)id);
	assert_string_equal(row, "archive_completed|true|true");
	free(row);
	Jobq__V1__GetResponse *g = jq_get(id);
	assert_int_equal(g->job->status, JOBQ__V1__JOB_STATUS__JOB_STATUS_ARCHIVE_COMPLETED);
	assert_int_equal(g->job->prev_status, JOBQ__V1__JOB_STATUS__JOB_STATUS_ARCHIVE_PROCESSING);
	assert_true(g->job->finished_at_ms > 0);
	JQ_FREE(g);
}

SVC_TEST(complete_answers_each_job_of_a_batch_of_good_stale_and_unknown_ids)
{
	JQ_QUEUE(q);
	int64_t ids[3], tok[3];
	jq_enqueue_many(q, 3, ids);
	for (int i = 0; i < 3; i++)
		jq_claim_one(q, "w", 30, &tok[i]);
	Jobq__V1__JobLease l[4] = { JOBQ__V1__JOB_LEASE__INIT, JOBQ__V1__JOB_LEASE__INIT,
				    JOBQ__V1__JOB_LEASE__INIT, JOBQ__V1__JOB_LEASE__INIT };
	Jobq__V1__JobLease *lp[4] = { &l[0], &l[1], &l[2], &l[3] };
	l[0].id = ids[0], l[0].lease_token = tok[0];
	l[1].id = INT64_C(900000000001), l[1].lease_token = 7;
	l[2].id = ids[1], l[2].lease_token = tok[1] + 1000;
	l[3].id = ids[2], l[3].lease_token = tok[2];
	Jobq__V1__CompleteRequest req = JOBQ__V1__COMPLETE_REQUEST__INIT;
	req.n_jobs = 4;
	req.jobs = lp;
	Jobq__V1__CompleteResponse *r = jq_api_ok(JQ_METHOD("Complete"), &req,
						  &jobq__v1__complete_response__descriptor);
	assert_int_equal(r->n_results, 4);
	unsigned want[4] = { 0, 5, 9, 0 };
	for (int i = 0; i < 4; i++) {
		assert_int_equal(r->results[i]->id, l[i].id);
		assert_int_equal(r->results[i]->code, want[i]);
	}
	assert_int_equal(r->results[2]->status, JOBQ__V1__JOB_STATUS__JOB_STATUS_ARCHIVE_PROCESSING);
	JQ_FREE(r);
	assert_string_equal(jq_db_status(ids[0]), "archive_completed");
	assert_string_equal(jq_db_status(ids[1]), "archive_processing");
	assert_string_equal(jq_db_status(ids[2]), "archive_completed");
}

SVC_TEST(completing_again_with_the_same_token_is_ok_and_changes_nothing)
{
	JQ_QUEUE(q);
	int64_t id = jq_enqueue_one(q, "x"), token;
	jq_claim_one(q, "w", 30, &token);
	assert_int_equal(jq_complete1(id, token), 0);
	char *first = jq_db_str("SELECT updated_at::text || finished_at::text FROM job_queue WHERE id = %lld",
				(long long)id);
	assert_int_equal(jq_complete1(id, token), 0); /* the first reply may have been lost */
	char *second = jq_db_str("SELECT updated_at::text || finished_at::text FROM job_queue WHERE id = %lld",
				 (long long)id);
	assert_string_equal(first, second);
	free(first);
	free(second);
	/* ...but not with some other token. */
	assert_int_equal(jq_complete1(id, token + 1), 9);
}

/* ================= Fail ================= */

SVC_TEST(a_retryable_failure_returns_the_job_to_pending_after_a_backoff)
{
	JQ_QUEUE(q);
	int64_t id = jq_enqueue_one(q, "x"), token, run_at;
	Jobq__V1__JobStatus st;
	jq_claim_one(q, "w", 30, &token);
	long long t0 = jq_now_ms();
	assert_int_equal(jq_fail1(id, token, "boom", false, 0, NULL, &st, &run_at), 0);
	assert_int_equal(st, JOBQ__V1__JOB_STATUS__JOB_STATUS_ARCHIVE_PENDING);
	/* Attempt 1 with a base of 100 ms: between 50 and 100 ms from now. */
	assert_between(run_at - t0, 40, 1100);
	char *row = jq_db_str("SELECT curr_job_status || '|' || last_error || '|' || (lease_expires_at IS NULL)"
			      " || '|' || (run_at > updated_at) || '|' || (finished_at IS NULL) FROM job_queue"
			      " WHERE id = %lld", (long long)id);
	assert_string_equal(row, "archive_pending|boom|true|true|true");
	free(row);
	assert_between(run_at - jq_db_ll("SELECT floor(extract(epoch FROM run_at) * 1000)::bigint FROM job_queue"
					 " WHERE id = %lld", (long long)id), -1, 1);
}

SVC_TEST(a_final_failure_fails_the_job_at_once)
{
	JQ_QUEUE(q);
	jq_spec s = { .queue = q, .max_attempts = 5 };
	int64_t id, token;
	Jobq__V1__JobStatus st;
	jq_enqueue(&s, 1, &id);
	jq_claim_one(q, "w", 30, &token);
	assert_int_equal(jq_fail1(id, token, "fatal", true, 0, NULL, &st, NULL), 0);
	assert_int_equal(st, JOBQ__V1__JOB_STATUS__JOB_STATUS_ARCHIVE_FAILED);
	char *row = jq_db_str("SELECT curr_job_status || '|' || attempts || '|' || (finished_at IS NOT NULL)"
			      " FROM job_queue WHERE id = %lld", (long long)id);
	assert_string_equal(row, "archive_failed|1|true");
	free(row);
}

SVC_TEST(a_failure_of_the_last_attempt_fails_the_job)
{
	JQ_QUEUE(q);
	jq_spec s = { .queue = q, .max_attempts = 2 };
	int64_t id, token;
	Jobq__V1__JobStatus st;
	jq_enqueue(&s, 1, &id);
	jq_claim_one(q, "w", 30, &token);
	assert_int_equal(jq_fail1(id, token, "one", false, 0, NULL, &st, NULL), 0);
	assert_int_equal(st, JOBQ__V1__JOB_STATUS__JOB_STATUS_ARCHIVE_PENDING);
	jq_db_make_due(id);
	jq_claim_one(q, "w", 30, &token);
	assert_int_equal(jq_fail1(id, token, "two", false, 0, NULL, &st, NULL), 0);
	assert_int_equal(st, JOBQ__V1__JOB_STATUS__JOB_STATUS_ARCHIVE_FAILED);
	assert_string_equal(jq_db_status(id), "archive_failed");
	assert_int_equal(jq_db_ll("SELECT count(*) FROM job_failure WHERE job_id = %lld", (long long)id), 2);
}

SVC_TEST(failing_again_with_the_same_token_is_ok_and_records_the_failure_once)
{
	JQ_QUEUE(q);
	jq_spec s = { .queue = q, .max_attempts = 5 };
	int64_t ids[2], token, run_at1, run_at2;
	Jobq__V1__JobStatus st;
	jq_enqueue(&s, 1, &ids[0]);
	jq_enqueue(&s, 1, &ids[1]);
	/* Retryable: the repeat (its first reply was lost) is OK and changes nothing. */
	jq_claim_one(q, "w", 30, &token);
	assert_int_equal(jq_fail1(ids[0], token, "oops", false, 60000, NULL, &st, &run_at1), 0);
	assert_int_equal(st, JOBQ__V1__JOB_STATUS__JOB_STATUS_ARCHIVE_PENDING);
	char *first = jq_db_str("SELECT row(j.*)::text FROM job_queue j WHERE id = %lld", (long long)ids[0]);
	assert_int_equal(jq_fail1(ids[0], token, "oops", false, 60000, NULL, &st, &run_at2), 0);
	assert_int_equal(st, JOBQ__V1__JOB_STATUS__JOB_STATUS_ARCHIVE_PENDING);
	assert_int_equal(run_at2, run_at1);
	char *second = jq_db_str("SELECT row(j.*)::text FROM job_queue j WHERE id = %lld", (long long)ids[0]);
	assert_string_equal(first, second);
	free(first);
	free(second);
	assert_int_equal(jq_db_ll("SELECT count(*) FROM job_failure WHERE job_id = %lld", (long long)ids[0]), 1);
	/* Final: the same. */
	jq_claim_one(q, "w", 30, &token);
	assert_int_equal(jq_fail1(ids[1], token, "fatal", true, 0, NULL, &st, NULL), 0);
	assert_int_equal(jq_fail1(ids[1], token, "fatal", true, 0, NULL, &st, NULL), 0);
	assert_int_equal(st, JOBQ__V1__JOB_STATUS__JOB_STATUS_ARCHIVE_FAILED);
	assert_int_equal(jq_db_ll("SELECT count(*) FROM job_failure WHERE job_id = %lld", (long long)ids[1]), 1);
}

SVC_TEST(fail_records_the_history_with_attempt_worker_and_error)
{
	JQ_QUEUE(q);
	jq_spec s = { .queue = q, .max_attempts = 3 };
	int64_t id, token;
	jq_enqueue(&s, 1, &id);
	jq_claim_one(q, "worker-a", 30, &token);
	assert_int_equal(jq_fail1(id, token, "first error", false, 0, NULL, NULL, NULL), 0);
	jq_db_make_due(id);
	jq_claim_one(q, "worker-b", 30, &token);
	/* A worker may name itself more precisely when it fails (e.g. host and process). */
	assert_int_equal(jq_fail1(id, token, "second error", true, 0, "worker-b/pid-42", NULL, NULL), 0);

	Jobq__V1__GetResponse *g = jq_get(id);
	assert_string_equal(g->job->last_error, "second error");
	assert_int_equal(g->n_failures, 2);
	assert_int_equal(g->failures[0]->attempt, 1);
	assert_string_equal(g->failures[0]->worker_id, "worker-a");
	assert_string_equal(g->failures[0]->error, "first error");
	assert_int_equal(g->failures[1]->attempt, 2);
	assert_string_equal(g->failures[1]->worker_id, "worker-b/pid-42");
	assert_string_equal(g->failures[1]->error, "second error");
	assert_true(g->failures[0]->failed_at_ms > 0);
	assert_true(g->failures[1]->failed_at_ms >= g->failures[0]->failed_at_ms);
	JQ_FREE(g);
}

SVC_TEST(an_error_text_over_8_KiB_is_cut_at_a_character_boundary)
{
	JQ_QUEUE(q);
	/* 'x' then 4600 two-byte characters: 9201 bytes, and byte 8192 falls inside a character. */
	size_t n = 1 + 4600 * 2;
	char *err = malloc(n + 1);
	assert_non_null(err);
	err[0] = 'x';
	for (size_t i = 1; i < n; i += 2)
		err[i] = (char)0xC3, err[i + 1] = (char)0xA9; /* é */
	err[n] = '\0';
	int64_t id = jq_enqueue_one(q, "x"), token;
	jq_claim_one(q, "w", 30, &token);
	unsigned code = jq_fail1(id, token, err, false, 0, NULL, NULL, NULL);
	free(err);
	assert_int_equal(code, 0);
	assert_int_equal(jq_db_ll("SELECT octet_length(last_error) FROM job_queue WHERE id = %lld", (long long)id), 8191);
	assert_int_equal(jq_db_ll("SELECT octet_length(error) FROM job_failure WHERE job_id = %lld", (long long)id), 8191);
	assert_int_equal(jq_db_ll("SELECT count(*) FROM job_failure WHERE job_id = %lld"
				  " AND error = 'x' || repeat('é', 4095)", (long long)id), 1);

	/* Exactly 8 KiB is kept whole. */
	char *full = malloc(8193);
	assert_non_null(full);
	memset(full, 'e', 8192);
	full[8192] = '\0';
	id = jq_enqueue_one(q, "y");
	jq_claim_one(q, "w", 30, &token);
	code = jq_fail1(id, token, full, true, 0, NULL, NULL, NULL);
	free(full);
	assert_int_equal(code, 0);
	assert_int_equal(jq_db_ll("SELECT octet_length(last_error) FROM job_queue WHERE id = %lld", (long long)id), 8192);
}

/* ================= Get, List ================= */

SVC_TEST(get_returns_every_field_of_a_job)
{
	JQ_QUEUE(q);
	long long now = jq_now_ms();
	jq_spec s = { .queue = q, .payload = "the payload", .priority = 7, .run_at_ms = now - 1000,
		      .max_attempts = 4, .key = "key-1" };
	int64_t id;
	jq_enqueue(&s, 1, &id);
	Jobq__V1__GetResponse *g = jq_get(id);
	Jobq__V1__Job *j = g->job;
	assert_int_equal(j->id, id);
	assert_string_equal(j->queue, q);
	assert_int_equal(j->payload.len, strlen("the payload"));
	assert_memory_equal(j->payload.data, "the payload", j->payload.len);
	assert_int_equal(j->status, JOBQ__V1__JOB_STATUS__JOB_STATUS_ARCHIVE_PENDING);
	assert_int_equal(j->prev_status, JOBQ__V1__JOB_STATUS__JOB_STATUS_ARCHIVE_PENDING);
	assert_int_equal(j->attempts, 0);
	assert_int_equal(j->max_attempts, 4);
	assert_int_equal(j->priority, 7);
	assert_int_equal(j->run_at_ms, now - 1000);
	assert_int_equal(j->lease_expires_at_ms, 0);
	assert_int_equal(j->lease_token, 0);
	assert_string_equal(j->lease_owner, "");
	assert_string_equal(j->last_error, "");
	assert_string_equal(j->idempotency_key, "key-1");
	assert_between(j->created_at_ms - now, -5000, 5000);
	assert_true(j->updated_at_ms >= j->created_at_ms);
	assert_int_equal(j->finished_at_ms, 0);
	assert_int_equal(g->n_failures, 0);
	JQ_FREE(g);
}

SVC_TEST(get_of_an_unknown_id_is_not_found)
{
	Jobq__V1__GetRequest req = JOBQ__V1__GET_REQUEST__INIT;
	req.id = INT64_C(900000000002);
	jq_api_expect(JQ_METHOD("Get"), &req, 5, "900000000002");
	req.id = 0;
	jq_api_expect(JQ_METHOD("Get"), &req, 3, "id");
}

static Jobq__V1__ListResponse *list(const char *queue, Jobq__V1__JobStatus st, uint32_t limit,
				    int64_t after, bool payload)
{
	Jobq__V1__ListRequest req = JOBQ__V1__LIST_REQUEST__INIT;
	req.queue = (char *)(queue ? queue : "");
	req.status = st;
	req.limit = limit;
	req.after_id = after;
	req.include_payload = payload;
	return jq_api_ok(JQ_METHOD("List"), &req, &jobq__v1__list_response__descriptor);
}

SVC_TEST(list_filters_by_queue_and_status)
{
	JQ_QUEUE(qa);
	JQ_QUEUE(qb);
	int64_t a[3], b[2];
	jq_enqueue_many(qa, 3, a);
	jq_enqueue_many(qb, 2, b);
	assert_int_equal(jq_claim_one(qa, "w", 30, NULL), a[0]);
	Jobq__V1__CancelRequest cr = JOBQ__V1__CANCEL_REQUEST__INIT;
	cr.n_ids = 1;
	cr.ids = &a[1];
	JQ_FREE(jq_api_ok(JQ_METHOD("Cancel"), &cr, &jobq__v1__cancel_response__descriptor));

	Jobq__V1__ListResponse *r = list(qa, 0, 0, 0, false);
	assert_int_equal(r->n_jobs, 3);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(r->jobs[i]->id, a[i]);
		assert_string_equal(r->jobs[i]->queue, qa);
	}
	assert_int_equal(r->jobs[0]->status, JOBQ__V1__JOB_STATUS__JOB_STATUS_ARCHIVE_PROCESSING);
	assert_int_equal(r->jobs[1]->status, JOBQ__V1__JOB_STATUS__JOB_STATUS_ARCHIVE_CANCELLED);
	assert_int_equal(r->jobs[2]->status, JOBQ__V1__JOB_STATUS__JOB_STATUS_ARCHIVE_PENDING);
	assert_int_equal(r->next_after_id, 0);
	JQ_FREE(r);

	r = list(qa, JOBQ__V1__JOB_STATUS__JOB_STATUS_ARCHIVE_PROCESSING, 0, 0, false);
	assert_int_equal(r->n_jobs, 1);
	assert_int_equal(r->jobs[0]->id, a[0]);
	JQ_FREE(r);
	r = list(qb, JOBQ__V1__JOB_STATUS__JOB_STATUS_ARCHIVE_CANCELLED, 0, 0, false);
	assert_int_equal(r->n_jobs, 0);
	JQ_FREE(r);

	/* Every queue: the pending jobs of both, after qa's first id. */
	r = list(NULL, JOBQ__V1__JOB_STATUS__JOB_STATUS_ARCHIVE_PENDING, 1000, a[0], false);
	assert_int_equal(r->n_jobs, 3);
	assert_int_equal(r->jobs[0]->id, a[2]);
	assert_int_equal(r->jobs[1]->id, b[0]);
	assert_int_equal(r->jobs[2]->id, b[1]);
	JQ_FREE(r);
}

SVC_TEST(list_pages_through_a_queue_with_keyset_pagination)
{
	JQ_QUEUE(q);
	int64_t ids[25], seen[30];
	size_t n = 0;
	int pages = 0;
	jq_enqueue_many(q, 25, ids);
	int64_t after = 0;
	do {
		Jobq__V1__ListResponse *r = list(q, 0, 10, after, false);
		assert_true(r->n_jobs <= 10);
		for (size_t i = 0; i < r->n_jobs && n < 30; i++)
			seen[n++] = r->jobs[i]->id;
		after = r->next_after_id;
		if (after != 0)
			assert_int_equal(after, r->jobs[r->n_jobs - 1]->id);
		JQ_FREE(r);
		pages++;
	} while (after != 0 && pages < 10);
	assert_int_equal(pages, 3);
	assert_int_equal(n, 25);
	for (size_t i = 0; i < 25; i++)
		assert_int_equal(seen[i], ids[i]);
}

SVC_TEST(list_leaves_payloads_out_unless_asked)
{
	JQ_QUEUE(q);
	jq_enqueue_one(q, "payload-1");
	Jobq__V1__ListResponse *r = list(q, 0, 0, 0, false);
	assert_int_equal(r->n_jobs, 1);
	assert_int_equal(r->jobs[0]->payload.len, 0);
	JQ_FREE(r);
	r = list(q, 0, 0, 0, true);
	assert_int_equal(r->n_jobs, 1);
	assert_int_equal(r->jobs[0]->payload.len, 9);
	assert_memory_equal(r->jobs[0]->payload.data, "payload-1", 9);
	JQ_FREE(r);
}

/* ================= Retry, Cancel ================= */

static Jobq__V1__RetryResponse *retry_ids(const int64_t *ids, size_t n, unsigned *code)
{
	Jobq__V1__RetryRequest req = JOBQ__V1__RETRY_REQUEST__INIT;
	Jobq__V1__RetryResponse *r = NULL;
	req.n_ids = n;
	req.ids = (int64_t *)ids;
	*code = jq_api_code(JQ_METHOD("Retry"), &req, &jobq__v1__retry_response__descriptor, &r);
	return r;
}

static Jobq__V1__CancelResponse *cancel_ids(const int64_t *ids, size_t n, unsigned *code)
{
	Jobq__V1__CancelRequest req = JOBQ__V1__CANCEL_REQUEST__INIT;
	Jobq__V1__CancelResponse *r = NULL;
	req.n_ids = n;
	req.ids = (int64_t *)ids;
	*code = jq_api_code(JQ_METHOD("Cancel"), &req, &jobq__v1__cancel_response__descriptor, &r);
	return r;
}

/* fail_for_good claims the queue's next job and fails it finally; returns its id. */
static int64_t fail_for_good(const char *q)
{
	int64_t token, id = jq_claim_one(q, "w", 30, &token);
	assert_int_equal(jq_fail1(id, token, "broken", true, 0, NULL, NULL, NULL), 0);
	return id;
}

SVC_TEST(retry_returns_failed_and_cancelled_jobs_to_pending_with_fresh_attempts)
{
	JQ_QUEUE(q);
	int64_t ids[2];
	unsigned code;
	jq_enqueue_many(q, 2, ids);
	assert_int_equal(fail_for_good(q), ids[0]);
	JQ_FREE(cancel_ids(&ids[1], 1, &code));
	assert_int_equal(code, 0);

	Jobq__V1__RetryResponse *r = retry_ids(ids, 2, &code);
	assert_int_equal(code, 0);
	assert_int_equal(r->retried, 2);
	assert_int_equal(r->n_results, 2);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(r->results[i]->id, ids[i]);
		assert_int_equal(r->results[i]->code, 0);
		assert_int_equal(r->results[i]->status, JOBQ__V1__JOB_STATUS__JOB_STATUS_ARCHIVE_PENDING);
	}
	JQ_FREE(r);
	assert_int_equal(jq_db_ll("SELECT count(*) FROM job_queue WHERE queue = '%s' AND curr_job_status ="
				  " 'archive_pending' AND attempts = 0 AND run_at <= now() AND finished_at IS NULL", q), 2);
	/* The history of the failed attempt stays. */
	assert_int_equal(jq_db_ll("SELECT count(*) FROM job_failure WHERE job_id = %lld", (long long)ids[0]), 1);
	Jobq__V1__ClaimResponse *c = jq_claim(q, 10, "w", 30);
	assert_int_equal(c->n_jobs, 2);
	JQ_FREE(c);
}

SVC_TEST(retry_all_failed_retries_every_failed_job_of_one_queue)
{
	JQ_QUEUE(qa);
	JQ_QUEUE(qb);
	int64_t a[4], b[1];
	jq_enqueue_many(qa, 4, a);
	jq_enqueue_many(qb, 1, b);
	for (int i = 0; i < 3; i++)
		fail_for_good(qa);
	fail_for_good(qb);

	Jobq__V1__RetryRequest req = JOBQ__V1__RETRY_REQUEST__INIT;
	req.all_failed = true;
	req.queue = qa;
	Jobq__V1__RetryResponse *r = jq_api_ok(JQ_METHOD("Retry"), &req, &jobq__v1__retry_response__descriptor);
	assert_int_equal(r->retried, 3);
	JQ_FREE(r);
	assert_int_equal(jq_db_ll("SELECT count(*) FROM job_queue WHERE queue = '%s' AND curr_job_status = 'archive_pending'", qa), 4);
	assert_string_equal(jq_db_status(b[0]), "archive_failed");
	/* Nothing left to retry: 0. */
	r = jq_api_ok(JQ_METHOD("Retry"), &req, &jobq__v1__retry_response__descriptor);
	assert_int_equal(r->retried, 0);
	JQ_FREE(r);
}

typedef struct retry_call {
	const char *url, *queue;
	uint32_t deadline_ms;
	unsigned code;
	char message[512];
	bool answered;
} retry_call;

/* retry_all_main sends one "retry every failed job" of its queue from a socket of its own. */
static void *retry_all_main(void *arg)
{
	retry_call *rc = arg;
	jq_rpc_sock s;
	Jobq__V1__RetryRequest req = JOBQ__V1__RETRY_REQUEST__INIT;
	Jobq__V1__RpcResponse *resp = NULL;
	req.all_failed = true;
	req.queue = (char *)rc->queue;
	if (jq_rpc_open(&s, rc->url, 30000) != 0)
		return NULL;
	if (jq_rpc_invoke(&s, JQ_METHOD("Retry"), &req.base, rc->deadline_ms, &resp) == 0) {
		rc->answered = true;
		rc->code = resp->code;
		snprintf(rc->message, sizeof(rc->message), "%s", resp->message);
		jobq__v1__rpc_response__free_unpacked(resp, NULL);
	}
	jq_rpc_close(&s);
	return NULL;
}

/* "Retry every failed job" goes a batch of 1000 at a time and looks at its caller's deadline
 * before each batch: past it, it stops and answers DEADLINE_EXCEEDED with how many went back
 * (those are pending, the others still failed), and the same call again does the rest. The first
 * batch is held for 1.1 s of the 2 s deadline by a lock on the failed -> pending edge, which its
 * foreign-key check must share: it ends in time (a statement still running at the deadline is
 * cut off by jq_db), and a second one as long would not. */
SVC_TEST(retry_all_failed_stops_between_batches_once_the_deadline_has_passed)
{
	JQ_QUEUE(q);
	jq_db_do("SELECT count(*) FROM jobq_enqueue_batch(array_fill('%s'::text, ARRAY[2500]), NULL, NULL, NULL, NULL, NULL)", q);
	jq_db_do("UPDATE job_queue SET curr_job_status = 'archive_processing', lease_owner = 'w',"
		 " lease_expires_at = now() + interval '1 hour', lease_token = nextval('job_lease_token_seq')"
		 " WHERE queue = '%s'", q);
	jq_db_do("UPDATE job_queue SET curr_job_status = 'archive_failed', lease_expires_at = NULL WHERE queue = '%s'", q);

	PGconn *lock = jq_test_connect(fx.db_url);
	jq_test_ok(lock, "BEGIN");
	jq_test_ok(lock, "SELECT 1 FROM job_status_transition WHERE prev_status = 'archive_failed'"
			 " AND next_status = 'archive_pending' FOR UPDATE");
	retry_call rc = { .url = fx.svc.rpc_url, .queue = q, .deadline_ms = 2000 };
	pthread_t th;
	long long sent = jq_mono_ms();
	assert_int_equal(pthread_create(&th, NULL, retry_all_main, &rc), 0);
	JQ_POLL_UNTIL(jq_db_ll("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'jobqd'"
			       " AND wait_event_type = 'Lock' AND query LIKE '%%archive_failed%%'") == 1,
		      10000, "the first batch to wait for the lock");
	while (jq_mono_ms() < sent + 1100)
		jq_sleep_ms(20);
	jq_test_ok(lock, "COMMIT");
	PQfinish(lock);
	pthread_join(th, NULL);

	assert_true(rc.answered);
	if (rc.code != 4 /* DEADLINE_EXCEEDED */ || strstr(rc.message, "after 1000 failed jobs") == NULL)
		fail_msg("answered %u: %s", rc.code, rc.message);
	assert_int_equal(jq_db_ll("SELECT count(*) FROM job_queue WHERE queue = '%s' AND curr_job_status = 'archive_pending'", q), 1000);
	assert_int_equal(jq_db_ll("SELECT count(*) FROM job_queue WHERE queue = '%s' AND curr_job_status = 'archive_failed'", q), 1500);

	Jobq__V1__RetryRequest req = JOBQ__V1__RETRY_REQUEST__INIT;
	req.all_failed = true;
	req.queue = q;
	Jobq__V1__RetryResponse *r = jq_api_ok(JQ_METHOD("Retry"), &req, &jobq__v1__retry_response__descriptor);
	assert_int_equal(r->retried, 1500);
	JQ_FREE(r);
	assert_int_equal(jq_db_ll("SELECT count(*) FROM job_queue WHERE queue = '%s' AND curr_job_status = 'archive_pending'", q), 2500);
}

/* A state this jobqd does not know (one a newer migration added) is an error naming it, the same
 * in every call that reads a job: never reported as some state it knows (Get and List said
 * "pending"), and nothing changes. */
SVC_TEST(a_job_in_a_state_unknown_to_the_service_is_an_internal_error_everywhere)
{
	JQ_QUEUE(q);
	int64_t id = jq_enqueue_one(q, "x");
	jq_db_do("INSERT INTO job_status (name, description, is_terminal) VALUES ('archive_paused', 'test', false)");
	jq_db_do("INSERT INTO job_status_transition (prev_status, next_status, description)"
		 " VALUES ('archive_pending', 'archive_paused', 'test'), ('archive_paused', 'archive_pending', 'test')");
	jq_db_do("UPDATE job_queue SET curr_job_status = 'archive_paused' WHERE id = %lld", (long long)id);

	Jobq__V1__GetRequest get = JOBQ__V1__GET_REQUEST__INIT;
	get.id = id;
	jq_api_expect(JQ_METHOD("Get"), &get, 13, "unknown job status in the database: archive_paused");
	Jobq__V1__ListRequest list = JOBQ__V1__LIST_REQUEST__INIT;
	list.queue = q;
	jq_api_expect(JQ_METHOD("List"), &list, 13, "unknown job status in the database: archive_paused");
	Jobq__V1__CancelRequest cancel = JOBQ__V1__CANCEL_REQUEST__INIT;
	cancel.n_ids = 1;
	cancel.ids = &id;
	jq_api_expect(JQ_METHOD("Cancel"), &cancel, 13, "unknown job status in the database: archive_paused");
	assert_string_equal(jq_db_status(id), "archive_paused");

	jq_db_do("DELETE FROM job_queue WHERE id = %lld", (long long)id);
	jq_db_do("DELETE FROM job_status_transition WHERE 'archive_paused' IN (prev_status, next_status)");
	jq_db_do("DELETE FROM job_status WHERE name = 'archive_paused'");
}

SVC_TEST(retrying_a_completed_or_processing_job_is_failed_precondition)
{
	JQ_QUEUE(q);
	int64_t ids[2], token;
	unsigned code;
	jq_enqueue_many(q, 2, ids);
	jq_claim_one(q, "w", 30, &token);
	assert_int_equal(jq_complete1(ids[0], token), 0);
	jq_claim_one(q, "w", 30, NULL);

	Jobq__V1__RetryResponse *r = retry_ids(&ids[0], 1, &code);
	assert_null(r);
	assert_int_equal(code, 9);
	r = retry_ids(&ids[1], 1, &code);
	assert_int_equal(code, 9);
	int64_t unknown = INT64_C(900000000003);
	r = retry_ids(&unknown, 1, &code);
	assert_int_equal(code, 5);
	assert_string_equal(jq_db_status(ids[0]), "archive_completed");
	assert_string_equal(jq_db_status(ids[1]), "archive_processing");
}

SVC_TEST(cancel_cancels_pending_and_failed_jobs)
{
	JQ_QUEUE(q);
	int64_t ids[2];
	unsigned code;
	jq_enqueue_many(q, 2, ids);
	assert_int_equal(fail_for_good(q), ids[0]);
	Jobq__V1__CancelResponse *r = cancel_ids(ids, 2, &code);
	assert_int_equal(code, 0);
	assert_int_equal(r->n_results, 2);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(r->results[i]->code, 0);
		assert_int_equal(r->results[i]->status, JOBQ__V1__JOB_STATUS__JOB_STATUS_ARCHIVE_CANCELLED);
	}
	JQ_FREE(r);
	assert_int_equal(jq_db_ll("SELECT count(*) FROM job_queue WHERE queue = '%s' AND curr_job_status ="
				  " 'archive_cancelled' AND finished_at IS NOT NULL", q), 2);
	Jobq__V1__ClaimResponse *c = jq_claim(q, 10, "w", 30);
	assert_int_equal(c->n_jobs, 0);
	JQ_FREE(c);
	/* Cancelling again changes nothing and is fine. */
	JQ_FREE(cancel_ids(ids, 1, &code));
	assert_int_equal(code, 0);
}

/* A running job can be cancelled (test_running.c goes further). */
SVC_TEST(cancelling_a_completed_job_is_failed_precondition)
{
	JQ_QUEUE(q);
	int64_t ids[2], token;
	unsigned code;
	jq_enqueue_many(q, 2, ids);
	jq_claim_one(q, "w", 30, &token);
	jq_claim_one(q, "w", 30, NULL);
	assert_int_equal(jq_complete1(ids[0], token), 0);
	Jobq__V1__CancelResponse *r = cancel_ids(&ids[1], 1, &code);
	assert_int_equal(code, 0);
	JQ_FREE(r);
	assert_string_equal(jq_db_status(ids[1]), "archive_cancelled");
	r = cancel_ids(&ids[0], 1, &code);
	assert_null(r);
	assert_int_equal(code, 9);
	assert_non_null(strstr(jq_api_msg, "completed"));
	assert_string_equal(jq_db_status(ids[0]), "archive_completed");
}

SVC_TEST(cancelling_an_unknown_job_is_not_found)
{
	int64_t id = INT64_C(900000000004);
	unsigned code;
	Jobq__V1__CancelResponse *r = cancel_ids(&id, 1, &code);
	assert_null(r);
	assert_int_equal(code, 5);
}

/* ================= Stats ================= */

SVC_TEST(stats_counts_jobs_by_queue_and_state_and_the_age_of_the_oldest_due_job)
{
	JQ_QUEUE(q);
	JQ_QUEUE(other);
	int64_t ids[6], token;
	unsigned code;
	jq_enqueue_many(q, 6, ids);
	jq_spec later = { .queue = q, .delay_ms = 600000 };
	jq_enqueue(&later, 1, NULL);
	jq_enqueue_one(other, "x");
	/* ids[0] processing, ids[1] completed, ids[2] failed, ids[3] cancelled, ids[4..5] due. */
	jq_claim_one(q, "w", 30, NULL);
	jq_claim_one(q, "w", 30, &token);
	assert_int_equal(jq_complete1(ids[1], token), 0);
	assert_int_equal(fail_for_good(q), ids[2]);
	JQ_FREE(cancel_ids(&ids[3], 1, &code));
	jq_db_do("UPDATE job_queue SET run_at = now() - interval '100 seconds' WHERE id = %lld", (long long)ids[4]);

	Jobq__V1__StatsRequest req = JOBQ__V1__STATS_REQUEST__INIT;
	req.queue = q;
	Jobq__V1__StatsResponse *r = jq_api_ok(JQ_METHOD("Stats"), &req, &jobq__v1__stats_response__descriptor);
	assert_int_equal(r->n_queues, 1);
	Jobq__V1__QueueStats *s = r->queues[0];
	assert_string_equal(s->queue, q);
	assert_int_equal(s->pending, 3);
	assert_int_equal(s->scheduled, 1);
	assert_int_equal(s->processing, 1);
	assert_int_equal(s->completed, 1);
	assert_int_equal(s->failed, 1);
	assert_int_equal(s->cancelled, 1);
	assert_true(s->oldest_due_age_seconds >= 100.0 && s->oldest_due_age_seconds < 130.0);
	JQ_FREE(r);

	/* All queues: both of ours among them. */
	req.queue = "";
	r = jq_api_ok(JQ_METHOD("Stats"), &req, &jobq__v1__stats_response__descriptor);
	int found = 0;
	for (size_t i = 0; i < r->n_queues; i++) {
		if (strcmp(r->queues[i]->queue, q) == 0)
			found += r->queues[i]->pending == 3;
		if (strcmp(r->queues[i]->queue, other) == 0)
			found += r->queues[i]->pending == 1 && r->queues[i]->oldest_due_age_seconds < 60.0;
	}
	JQ_FREE(r);
	assert_int_equal(found, 2);
}

/* ================= Validation: INVALID_ARGUMENT naming the field ================= */

static void expect_enqueue_invalid(const jq_spec *specs, size_t n, const char *field)
{
	unsigned code = jq_enqueue_code(specs, n, NULL);
	if (code != 3 || strstr(jq_api_msg, field) == NULL)
		fail_msg("Enqueue answered %u '%s'; expected INVALID_ARGUMENT naming '%s'", code, jq_api_msg, field);
}

SVC_TEST(enqueue_rejects_a_queue_name_with_bad_characters_or_too_long)
{
	JQ_QUEUE(q);
	jq_spec s[2] = { { .queue = q }, { .queue = "bad queue!" } };
	expect_enqueue_invalid(s, 2, "jobs[1].queue");
	/* Atomic: the good job of the rejected batch was not enqueued either. */
	assert_int_equal(jq_db_ll("SELECT count(*) FROM job_queue WHERE queue = '%s'", q), 0);
	char long_name[66];
	memset(long_name, 'q', 65);
	long_name[65] = '\0';
	s[0].queue = long_name;
	expect_enqueue_invalid(s, 1, "jobs[0].queue");
	s[0].queue = "caf\xc3\xa9";
	expect_enqueue_invalid(s, 1, "jobs[0].queue");
}

SVC_TEST(enqueue_rejects_an_empty_queue_name)
{
	jq_spec s = { .queue = "" };
	expect_enqueue_invalid(&s, 1, "jobs[0].queue");
}

SVC_TEST(enqueue_rejects_a_payload_over_the_limit)
{
	JQ_QUEUE(q);
	char *p = malloc(MAX_PAYLOAD + 2);
	assert_non_null(p);
	memset(p, 'p', MAX_PAYLOAD + 1);
	p[MAX_PAYLOAD + 1] = '\0';
	jq_spec s = { .queue = q, .payload = p };
	expect_enqueue_invalid(&s, 1, "jobs[0].payload");
	p[MAX_PAYLOAD] = '\0'; /* exactly the limit is fine */
	unsigned code = jq_enqueue_code(&s, 1, NULL);
	free(p);
	assert_int_equal(code, 0);
}

SVC_TEST(enqueue_rejects_a_batch_of_1001_jobs_and_an_empty_batch)
{
	JQ_QUEUE(q);
	jq_spec *s = calloc(1001, sizeof(*s));
	assert_non_null(s);
	for (int i = 0; i < 1001; i++)
		s[i].queue = q;
	unsigned code = jq_enqueue_code(s, 1001, NULL);
	free(s);
	if (code != 3 || strstr(jq_api_msg, "jobs") == NULL)
		fail_msg("Enqueue of 1001 answered %u '%s'", code, jq_api_msg);
	assert_int_equal(jq_db_ll("SELECT count(*) FROM job_queue WHERE queue = '%s'", q), 0);
	expect_enqueue_invalid(NULL, 0, "jobs");
}

SVC_TEST(enqueue_rejects_both_run_at_ms_and_delay_ms)
{
	JQ_QUEUE(q);
	jq_spec s = { .queue = q, .run_at_ms = jq_now_ms() + 1000, .delay_ms = 1000 };
	expect_enqueue_invalid(&s, 1, "run_at_ms");
	assert_non_null(strstr(jq_api_msg, "delay_ms"));
}

SVC_TEST(enqueue_rejects_bad_priority_max_attempts_and_idempotency_key)
{
	JQ_QUEUE(q);
	jq_spec s = { .queue = q, .priority = 40000 };
	expect_enqueue_invalid(&s, 1, "jobs[0].priority");
	s = (jq_spec){ .queue = q, .max_attempts = 1001 };
	expect_enqueue_invalid(&s, 1, "jobs[0].max_attempts");
	s = (jq_spec){ .queue = q, .key = "\xff" };
	expect_enqueue_invalid(&s, 1, "jobs[0].idempotency_key");
	s = (jq_spec){ .queue = q, .run_at_ms = -1 };
	expect_enqueue_invalid(&s, 1, "jobs[0].run_at_ms");
}

static void expect_claim_invalid(const char *queue, uint32_t limit, const char *worker, uint32_t lease,
				 const char *field)
{
	Jobq__V1__ClaimRequest req = jq_claim_request(queue, limit, worker, lease);
	jq_api_expect(JQ_METHOD("Claim"), &req, 3, field);
}

SVC_TEST(claim_rejects_a_limit_of_0_or_1001)
{
	JQ_QUEUE(q);
	expect_claim_invalid(q, 0, "w", 30, "limit");
	expect_claim_invalid(q, 1001, "w", 30, "limit");
	JQ_FREE(jq_claim(q, 1000, "w", 30));
	expect_claim_invalid("", 1, "w", 30, "queue");
}

SVC_TEST(a_lease_longer_than_a_day_is_rejected)
{
	JQ_QUEUE(q);
	expect_claim_invalid(q, 1, "w", 86401, "lease_seconds");
	Jobq__V1__HeartbeatRequest hb = JOBQ__V1__HEARTBEAT_REQUEST__INIT;
	hb.id = 1;
	hb.lease_token = 1;
	hb.lease_seconds = 86401;
	jq_api_expect(JQ_METHOD("Heartbeat"), &hb, 3, "lease_seconds");
}

SVC_TEST(list_rejects_an_unknown_status)
{
	Jobq__V1__ListRequest req = JOBQ__V1__LIST_REQUEST__INIT;
	req.status = (Jobq__V1__JobStatus)99;
	jq_api_expect(JQ_METHOD("List"), &req, 3, "status");
	req.status = 0;
	req.limit = 1001;
	jq_api_expect(JQ_METHOD("List"), &req, 3, "limit");
}

SVC_TEST(a_worker_id_that_is_missing_or_not_utf8_is_rejected)
{
	JQ_QUEUE(q);
	expect_claim_invalid(q, 1, "\xff\xfe", 30, "worker_id");
	expect_claim_invalid(q, 1, "", 30, "worker_id");
	expect_claim_invalid(q, 1, "tab\there", 30, "worker_id");
	Jobq__V1__FailRequest f = JOBQ__V1__FAIL_REQUEST__INIT;
	f.id = 1;
	f.lease_token = 1;
	f.worker_id = "\xc3\x28";
	jq_api_expect(JQ_METHOD("Fail"), &f, 3, "worker_id");
}

SVC_TEST(an_error_text_that_is_not_utf8_is_rejected)
{
	Jobq__V1__FailRequest f = JOBQ__V1__FAIL_REQUEST__INIT;
	f.id = 1;
	f.lease_token = 1;
	f.error = "bad \xc3\x28 byte";
	jq_api_expect(JQ_METHOD("Fail"), &f, 3, "error");

	Jobq__V1__JobFailure jf = JOBQ__V1__JOB_FAILURE__INIT, *jfp = &jf;
	Jobq__V1__FailRequest fb = JOBQ__V1__FAIL_REQUEST__INIT;
	jf.id = 2;
	jf.lease_token = 1;
	jf.error = "\xed\xa0\x80"; /* a UTF-16 surrogate encoded as UTF-8 */
	fb.n_jobs = 1;
	fb.jobs = &jfp;
	jq_api_expect(JQ_METHOD("Fail"), &fb, 3, "jobs[0].error");
}

/* retry_in_ms travels as uint32 and is stored as int4 milliseconds. 2^31 + 5 must not be cut to
 * 5 ms (the job would run again at once instead of in 24.8 days): beyond int4 is refused, and
 * the job keeps its lease. */
SVC_TEST(a_retry_delay_beyond_int32_is_rejected_not_cut)
{
	JQ_QUEUE(q);
	int64_t token;
	jq_enqueue_one(q, "x");
	int64_t id = jq_claim_one(q, "w", 30, &token);
	assert_int_equal(jq_fail1(id, token, "boom", false, 2147483648u + 5, "w", NULL, NULL), 3);
	assert_non_null(strstr(jq_api_msg, "retry_in_ms"));
	Jobq__V1__JobFailure jf = JOBQ__V1__JOB_FAILURE__INIT, *jfp = &jf;
	Jobq__V1__FailRequest fb = JOBQ__V1__FAIL_REQUEST__INIT;
	jf.id = id;
	jf.lease_token = token;
	jf.error = "boom";
	jf.retry_in_ms = UINT32_MAX;
	fb.n_jobs = 1;
	fb.jobs = &jfp;
	jq_api_expect(JQ_METHOD("Fail"), &fb, 3, "jobs[0].retry_in_ms");
	assert_string_equal(jq_db_status(id), "archive_processing");
	assert_int_equal(jq_db_ll("SELECT count(*) FROM job_failure WHERE job_id = %lld", (long long)id), 0);
	/* The largest accepted delay is kept as given: about 24.8 days ahead. */
	Jobq__V1__JobStatus st;
	int64_t run_at_ms = 0;
	assert_int_equal(jq_fail1(id, token, "boom", false, 2147483647u, "w", &st, &run_at_ms), 0);
	assert_int_equal(st, JOBQ__V1__JOB_STATUS__JOB_STATUS_ARCHIVE_PENDING);
	assert_between(run_at_ms - jq_now_ms(), 2147483647LL - 60000, 2147483647LL);
}

SVC_TEST(a_batch_naming_a_job_twice_is_rejected)
{
	Jobq__V1__JobLease l = JOBQ__V1__JOB_LEASE__INIT;
	Jobq__V1__JobLease *lp[2] = { &l, &l };
	l.id = 12345;
	l.lease_token = 1;
	Jobq__V1__CompleteRequest c = JOBQ__V1__COMPLETE_REQUEST__INIT;
	c.n_jobs = 2;
	c.jobs = lp;
	jq_api_expect(JQ_METHOD("Complete"), &c, 3, "12345");
	/* The one-job form and the batch form together name it twice as well. */
	c.id = 12345;
	c.lease_token = 1;
	c.n_jobs = 1;
	jq_api_expect(JQ_METHOD("Complete"), &c, 3, "jobs");

	int64_t ids[2] = { 777, 777 };
	unsigned code;
	cancel_ids(ids, 2, &code);
	assert_int_equal(code, 3);
	assert_non_null(strstr(jq_api_msg, "ids"));
	retry_ids(ids, 2, &code);
	assert_int_equal(code, 3);
	assert_non_null(strstr(jq_api_msg, "ids"));
}

SVC_TEST(a_lease_call_without_a_token_is_rejected)
{
	Jobq__V1__CompleteRequest c = JOBQ__V1__COMPLETE_REQUEST__INIT;
	c.id = 5;
	jq_api_expect(JQ_METHOD("Complete"), &c, 3, "lease_token");
	Jobq__V1__HeartbeatRequest h = JOBQ__V1__HEARTBEAT_REQUEST__INIT;
	h.id = 5;
	jq_api_expect(JQ_METHOD("Heartbeat"), &h, 3, "lease_token");
	Jobq__V1__FailRequest f = JOBQ__V1__FAIL_REQUEST__INIT;
	f.id = 5;
	jq_api_expect(JQ_METHOD("Fail"), &f, 3, "lease_token");
	/* Naming no job at all. */
	Jobq__V1__CompleteRequest none = JOBQ__V1__COMPLETE_REQUEST__INIT;
	jq_api_expect(JQ_METHOD("Complete"), &none, 3, "jobs");
}

/* ================= The envelope and the transport ================= */

SVC_TEST(an_unknown_method_is_unimplemented)
{
	Jobq__V1__StatsRequest req = JOBQ__V1__STATS_REQUEST__INIT;
	jq_api_expect("/jobq.v1.JobQueue/Frobnicate", &req, 12, "Frobnicate");
	jq_api_expect("/other.v1.Service/Stats", &req, 12, NULL);
	jq_api_expect("Stats", &req, 12, NULL);
	jq_api_expect("/jobq.v1.JobQueue/Stats/", &req, 12, NULL);
}

SVC_TEST(an_empty_method_is_unimplemented)
{
	Jobq__V1__StatsRequest req = JOBQ__V1__STATS_REQUEST__INIT;
	jq_api_expect("", &req, 12, NULL);
}

SVC_TEST(a_payload_that_is_not_the_request_message_is_invalid_argument)
{
	Jobq__V1__RpcRequest env = JOBQ__V1__RPC_REQUEST__INIT;
	uint8_t junk[] = { 0x0a, 0x7f, 0x01 }; /* field 1, length 127, 1 byte: truncated */
	uint8_t buf[128];
	nng_msg *reply;
	env.method = JQ_METHOD("Claim");
	env.payload.data = junk;
	env.payload.len = sizeof(junk);
	size_t n = jobq__v1__rpc_request__pack(&env, buf);
	assert_int_equal(jq_rpc_send_raw(&fx.rpc, buf, n, &reply), 0);
	Jobq__V1__RpcResponse *r = jobq__v1__rpc_response__unpack(NULL, nng_msg_len(reply), nng_msg_body(reply));
	nng_msg_free(reply);
	assert_non_null(r);
	assert_int_equal(r->code, 3);
	assert_non_null(strstr(r->message, "ClaimRequest"));
	jobq__v1__rpc_response__free_unpacked(r, NULL);
}

/* still_serves makes one valid request on a fresh connection. */
static void still_serves(void)
{
	jq_rpc_sock s;
	Jobq__V1__StatsRequest req = JOBQ__V1__STATS_REQUEST__INIT;
	Jobq__V1__RpcResponse *r = NULL;
	assert_int_equal(jq_rpc_open(&s, fx.svc.rpc_url, 10000), 0);
	int rv = jq_rpc_invoke(&s, JQ_METHOD("Stats"), &req.base, 0, &r);
	jq_rpc_close(&s);
	if (rv != 0)
		fail_msg("a valid request after the bad one got no reply: %s", nng_strerror(rv));
	assert_int_equal(r->code, 0);
	jobq__v1__rpc_response__free_unpacked(r, NULL);
	assert_true(jq_svc_alive(&fx.svc));
}

/* send_bad sends bytes on a socket of its own; returns the reply's code, or -1 when the
 * service closed the connection instead of answering (no reply is ever silently dropped: a
 * timeout fails the test). */
static int send_bad(const void *data, size_t len)
{
	jq_rpc_sock s;
	nng_msg *reply = NULL;
	int code = -1;
	assert_int_equal(jq_rpc_open(&s, fx.svc.rpc_url, 10000), 0);
	int rv = jq_rpc_send_raw(&s, data, len, &reply);
	if (rv == 0) {
		Jobq__V1__RpcResponse *r = jobq__v1__rpc_response__unpack(NULL, nng_msg_len(reply),
									  nng_msg_body(reply));
		nng_msg_free(reply);
		if (r == NULL) {
			jq_rpc_close(&s);
			fail_msg("the reply to %zu bad bytes is not an RpcResponse", len);
		}
		code = (int)r->code;
		jobq__v1__rpc_response__free_unpacked(r, NULL);
	} else if (rv != NNG_ECONNRESET && rv != NNG_ECLOSED) {
		jq_rpc_close(&s);
		fail_msg("%zu bad bytes: neither a reply nor a closed connection: %s", len, nng_strerror(rv));
	}
	jq_rpc_close(&s);
	return code;
}

SVC_TEST(junk_bytes_are_answered_and_the_service_keeps_serving)
{
	const uint8_t junk[][12] = {
		{ 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01 }, /* bad varint */
		{ 0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 'a', 'b', 'c', 0, 0, 0 },           /* huge length */
		{ 0x07, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b }, /* wire type 7 */
	};
	for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
		int code = send_bad(junk[i], sizeof(junk[i]));
		if (code != 3 && code != -1)
			fail_msg("junk #%zu answered %d, expected INVALID_ARGUMENT", i, code);
		still_serves();
	}
	/* And on the group's own connection too. */
	JQ_FREE(jq_api_ok(JQ_METHOD("Stats"), &(Jobq__V1__StatsRequest)JOBQ__V1__STATS_REQUEST__INIT,
			  &jobq__v1__stats_response__descriptor));
}

SVC_TEST(an_empty_message_is_answered_and_the_service_keeps_serving)
{
	/* Zero bytes are a valid, empty RpcRequest: no method. */
	int code = send_bad("", 0);
	if (code != 12 && code != 3 && code != -1)
		fail_msg("an empty message answered %d, expected UNIMPLEMENTED or INVALID_ARGUMENT", code);
	still_serves();
}

/* envelope_of_size packs a Stats request padded with an unknown field so that the whole
 * RpcRequest is exactly `size` bytes (a valid message that protobuf-c decodes). */
static uint8_t *envelope_of_size(size_t size)
{
	Jobq__V1__RpcRequest env = JOBQ__V1__RPC_REQUEST__INIT;
	env.method = JQ_METHOD("Stats");
	uint8_t *payload = calloc(size + 8, 1);
	assert_non_null(payload);
	for (size_t pad = size; pad > 0; pad--) {
		/* Unknown field 15, wire type 2: tag 0x7a, varint length, bytes. */
		size_t body = pad, hdr = 1 + (body < 128 ? 1 : body < 16384 ? 2 : 3);
		payload[0] = 0x7a;
		size_t k = 1, v = body;
		while (v >= 128) {
			payload[k++] = (uint8_t)(v | 0x80);
			v >>= 7;
		}
		payload[k++] = (uint8_t)v;
		assert_int_equal(k, hdr);
		memset(payload + k, 'z', body);
		env.payload.data = payload;
		env.payload.len = hdr + body;
		if (jobq__v1__rpc_request__get_packed_size(&env) == size) {
			uint8_t *buf = malloc(size);
			assert_non_null(buf);
			jobq__v1__rpc_request__pack(&env, buf);
			free(payload);
			return buf;
		}
	}
	free(payload);
	fail_msg("cannot build an envelope of %zu bytes", size);
	return NULL;
}

SVC_TEST(a_message_at_the_size_limit_is_served_and_one_byte_more_is_refused)
{
	uint8_t *at = envelope_of_size(MAX_MESSAGE);
	int code = send_bad(at, MAX_MESSAGE);
	free(at);
	assert_int_equal(code, 0);
	uint8_t *over = envelope_of_size(MAX_MESSAGE + 1);
	code = send_bad(over, MAX_MESSAGE + 1);
	free(over);
	if (code != 8 && code != -1)
		fail_msg("a message one byte over the limit answered %d, expected RESOURCE_EXHAUSTED", code);
	still_serves();
}

SVC_TEST(an_oversized_message_is_refused_and_the_service_keeps_serving)
{
	size_t n = 4 * MAX_MESSAGE;
	uint8_t *big = envelope_of_size(n);
	int code = send_bad(big, n);
	free(big);
	if (code != 8 && code != -1)
		fail_msg("a message four times the limit answered %d, expected RESOURCE_EXHAUSTED or a close", code);
	still_serves();
}

/* ================= Fencing and the rescuer ================= */

SVC_TEST(a_stale_lease_cannot_complete_heartbeat_or_fail_after_the_job_was_rescued_and_claimed_again)
{
	JQ_QUEUE(q);
	jq_spec s = { .queue = q, .payload = "fenced", .max_attempts = 5 };
	int64_t id, t1, t2;
	jq_enqueue(&s, 1, &id);
	assert_int_equal(jq_claim_one(q, "worker-1", 2, &t1), id);
	jq_db_expire_lease(id);
	JQ_POLL_UNTIL(strcmp(jq_db_status(id), "archive_pending") == 0, 5000, "the rescuer to return the job");
	char *hist = jq_db_str("SELECT attempt || '|' || worker || '|' || error FROM job_failure WHERE job_id = %lld",
			       (long long)id);
	assert_string_equal(hist, "1|worker-1|lease expired");
	free(hist);
	char *row = jq_db_str("SELECT last_error || '|' || (lease_expires_at IS NULL) FROM job_queue WHERE id = %lld",
			      (long long)id);
	assert_string_equal(row, "lease expired|true");
	free(row);

	/* Rescued but not yet claimed again: the old lease is over all the same. */
	assert_int_equal(jq_complete1(id, t1), 9);
	assert_int_equal(jq_heartbeat1(id, t1, 600, NULL), 9);
	assert_int_equal(jq_fail1(id, t1, "late failure", false, 0, NULL, NULL, NULL), 9);
	assert_string_equal(jq_db_status(id), "archive_pending");
	assert_int_equal(jq_db_ll("SELECT count(*) FROM job_failure WHERE job_id = %lld", (long long)id), 1);

	/* The rescued job waits out its backoff, then a second worker claims it with a larger token. */
	assert_int_equal(jq_claim_one_within(q, "worker-2", 60, 5000, &t2), id);
	assert_true(t2 > t1);
	char *before_row = jq_db_str("SELECT row(j.*)::text FROM job_queue j WHERE id = %lld", (long long)id);

	/* The first worker, unaware, tries everything: refused, nothing changes. */
	assert_int_equal(jq_complete1(id, t1), 9);
	assert_int_equal(jq_heartbeat1(id, t1, 600, NULL), 9);
	assert_int_equal(jq_fail1(id, t1, "late failure", false, 0, NULL, NULL, NULL), 9);
	assert_int_equal(jq_fail1(id, t1, "late failure", true, 0, NULL, NULL, NULL), 9);
	char *after_row = jq_db_str("SELECT row(j.*)::text FROM job_queue j WHERE id = %lld", (long long)id);
	assert_string_equal(before_row, after_row);
	free(before_row);
	free(after_row);
	assert_int_equal(jq_db_ll("SELECT count(*) FROM job_failure WHERE job_id = %lld", (long long)id), 1);

	/* The second worker completes; the first still cannot. */
	assert_int_equal(jq_complete1(id, t2), 0);
	assert_string_equal(jq_db_status(id), "archive_completed");
	assert_int_equal(jq_complete1(id, t1), 9);
}

SVC_TEST(the_rescuer_returns_only_expired_leases_to_the_queue)
{
	JQ_QUEUE(q);
	int64_t ids[2], tok[2];
	jq_enqueue_many(q, 2, ids);
	jq_claim_one(q, "w", 60, &tok[0]);
	jq_claim_one(q, "w", 60, &tok[1]);
	jq_db_expire_lease(ids[0]);
	JQ_POLL_UNTIL(strcmp(jq_db_status(ids[0]), "archive_pending") == 0, 5000, "the rescuer");
	/* Several sweeps later the live lease is still held. */
	jq_sleep_ms(300);
	assert_string_equal(jq_db_status(ids[1]), "archive_processing");
	assert_int_equal(jq_heartbeat1(ids[1], tok[1], 60, NULL), 0);
	assert_int_equal(jq_db_ll("SELECT attempts FROM job_queue WHERE id = %lld", (long long)ids[0]), 1);
	/* The rescued job's retry is delayed like any failure: attempt 1, base 100 ms. */
	assert_between(jq_db_ll("SELECT (extract(epoch FROM run_at - updated_at) * 1000)::bigint FROM job_queue"
				" WHERE id = %lld", (long long)ids[0]), 50, 100);
}

SVC_TEST(the_rescuer_fails_a_job_whose_attempts_are_used_up)
{
	JQ_QUEUE(q);
	jq_spec s = { .queue = q, .max_attempts = 1 };
	int64_t id;
	jq_enqueue(&s, 1, &id);
	int64_t token;
	jq_claim_one(q, "w-last", 60, &token);
	jq_db_expire_lease(id);
	JQ_POLL_UNTIL(strcmp(jq_db_status(id), "archive_failed") == 0, 5000, "the rescuer to fail the job");
	/* The worker, late: its lease is gone, whatever it reports. */
	assert_int_equal(jq_fail1(id, token, "late failure", true, 0, NULL, NULL, NULL), 9);
	assert_int_equal(jq_fail1(id, token, "late failure", false, 0, NULL, NULL, NULL), 9);
	assert_int_equal(jq_complete1(id, token), 9);
	assert_int_equal(jq_heartbeat1(id, token, 60, NULL), 9);
	char *row = jq_db_str("SELECT (finished_at IS NOT NULL) || '|' || last_error || '|' ||"
			      " (SELECT string_agg(attempt || ':' || worker || ':' || error, ',') FROM job_failure"
			      "   WHERE job_id = j.id) FROM job_queue j WHERE id = %lld", (long long)id);
	assert_string_equal(row, "true|lease expired|1:w-last:lease expired");
	free(row);
}

/* ================= Backoff ================= */

SVC_TEST(retries_back_off_exponentially_from_the_base)
{
	JQ_QUEUE(q);
	jq_spec s = { .queue = q, .max_attempts = 10 };
	int64_t id, token, run_at;
	jq_enqueue(&s, 1, &id);
	for (int n = 1; n <= 4; n++) {
		if (n > 1)
			jq_db_make_due(id);
		jq_claim_one(q, "w", 30, &token);
		assert_int_equal(jq_fail1(id, token, "again", false, 0, NULL, NULL, &run_at), 0);
		/* run_at and updated_at come from the same now(): their difference is the delay. */
		long long delay = jq_db_ll("SELECT round(extract(epoch FROM run_at - updated_at) * 1000)::bigint"
					   " FROM job_queue WHERE id = %lld", (long long)id);
		long long nominal = 100LL << (n - 1);
		assert_between(delay, nominal / 2, nominal);
		long long db_run_at = jq_db_ll("SELECT floor(extract(epoch FROM run_at) * 1000)::bigint FROM job_queue"
					       " WHERE id = %lld", (long long)id);
		assert_between(run_at - db_run_at, -1, 1);
	}
	/* A worker's own retry_in_ms overrides the backoff. */
	jq_db_make_due(id);
	jq_claim_one(q, "w", 30, &token);
	assert_int_equal(jq_fail1(id, token, "later", false, 5000, NULL, NULL, NULL), 0);
	assert_int_equal(jq_db_ll("SELECT round(extract(epoch FROM run_at - updated_at) * 1000)::bigint"
				  " FROM job_queue WHERE id = %lld", (long long)id), 5000);
}

SVC_TEST(retries_of_jobs_that_failed_together_are_spread_by_jitter)
{
	JQ_QUEUE(q);
	enum { N = 20 };
	int64_t ids[N];
	jq_enqueue_many(q, N, ids);
	Jobq__V1__ClaimResponse *c = jq_claim(q, N, "w", 30);
	assert_int_equal(c->n_jobs, N);
	Jobq__V1__JobFailure f[N], *fp[N];
	for (int i = 0; i < N; i++) {
		jobq__v1__job_failure__init(&f[i]);
		f[i].id = c->jobs[i]->id;
		f[i].lease_token = c->jobs[i]->lease_token;
		f[i].error = "dependency down";
		fp[i] = &f[i];
	}
	Jobq__V1__FailRequest req = JOBQ__V1__FAIL_REQUEST__INIT;
	req.n_jobs = N;
	req.jobs = fp;
	Jobq__V1__FailResponse *r = jq_api_ok(JQ_METHOD("Fail"), &req, &jobq__v1__fail_response__descriptor);
	assert_int_equal(r->n_results, N);
	for (int i = 0; i < N; i++) {
		assert_int_equal(r->results[i]->id, f[i].id);
		assert_int_equal(r->results[i]->code, 0);
		assert_int_equal(r->results[i]->status, JOBQ__V1__JOB_STATUS__JOB_STATUS_ARCHIVE_PENDING);
	}
	JQ_FREE(r);
	JQ_FREE(c);
	assert_int_equal(jq_db_ll("SELECT count(*) FROM job_queue WHERE queue = '%s' AND"
				  " extract(epoch FROM run_at - updated_at) * 1000 BETWEEN 50 AND 100", q), N);
	assert_true(jq_db_ll("SELECT count(DISTINCT run_at - updated_at) FROM job_queue WHERE queue = '%s'", q) > 3);
	assert_int_equal(jq_db_ll("SELECT count(*) FROM job_failure f JOIN job_queue j ON j.id = f.job_id"
				  " WHERE j.queue = '%s' AND f.error = 'dependency down'", q), N);
}

/* ================= Idempotency ================= */

SVC_TEST(an_idempotency_key_returns_the_first_job_while_it_is_unfinished)
{
	JQ_QUEUE(q);
	JQ_QUEUE(other);
	jq_spec s = { .queue = q, .payload = "first", .key = "order-42" };
	int64_t first, again, elsewhere, after, token;
	jq_enqueue(&s, 1, &first);
	s.payload = "second";
	jq_enqueue(&s, 1, &again);
	assert_int_equal(again, first);
	assert_int_equal(jq_db_ll("SELECT count(*) FROM job_queue WHERE queue = '%s'", q), 1);
	char *p = jq_db_str("SELECT convert_from(payload, 'UTF8') FROM job_queue WHERE id = %lld", (long long)first);
	assert_string_equal(p, "first");
	free(p);

	/* Twice in one batch: one job. */
	jq_spec two[2] = { { .queue = q, .key = "batch-key" }, { .queue = q, .key = "batch-key" } };
	int64_t ids[2];
	jq_enqueue(two, 2, ids);
	assert_int_equal(ids[0], ids[1]);

	/* The same key in another queue is another job. */
	s.queue = other;
	jq_enqueue(&s, 1, &elsewhere);
	assert_true(elsewhere != first);

	/* While processing, still the same job; once completed, the key is free again. */
	s.queue = q;
	assert_int_equal(jq_claim_one(q, "w", 30, &token), first);
	jq_enqueue(&s, 1, &again);
	assert_int_equal(again, first);
	assert_int_equal(jq_complete1(first, token), 0);
	jq_enqueue(&s, 1, &after);
	assert_true(after != first);
	assert_int_equal(jq_db_ll("SELECT count(*) FROM job_queue WHERE queue = '%s' AND idempotency_key = 'order-42'", q), 2);
}

/* ================= Concurrency ================= */

enum { CLAIMERS = 16, CLAIM_JOBS = 2000 };

typedef struct claimer {
	const char *url;
	const char *queue;
	int index;
	int64_t *ids; /* CLAIM_JOBS capacity */
	size_t n;
	char error[256];
} claimer;

static void *claimer_main(void *arg)
{
	claimer *c = arg;
	jq_rpc_sock s;
	char worker[32];
	uint32_t limit = (uint32_t)(1 + c->index % 10);
	snprintf(worker, sizeof(worker), "claimer-%d", c->index);
	if (jq_rpc_open(&s, c->url, 10000) != 0) {
		snprintf(c->error, sizeof(c->error), "cannot open a socket");
		return NULL;
	}
	for (int round = 0; round < CLAIM_JOBS + 10; round++) {
		Jobq__V1__ClaimRequest req = jq_claim_request(c->queue, limit, worker, 600);
		Jobq__V1__RpcResponse *resp = NULL;
		int rv = jq_rpc_invoke(&s, JQ_METHOD("Claim"), &req.base, 0, &resp);
		if (rv != 0 || resp->code != 0) {
			snprintf(c->error, sizeof(c->error), "claim: %s %u %s", rv ? nng_strerror(rv) : "",
				 resp ? resp->code : 0, resp ? resp->message : "");
			if (resp != NULL)
				jobq__v1__rpc_response__free_unpacked(resp, NULL);
			break;
		}
		Jobq__V1__ClaimResponse *cr = jobq__v1__claim_response__unpack(NULL, resp->payload.len,
									      resp->payload.data);
		jobq__v1__rpc_response__free_unpacked(resp, NULL);
		if (cr == NULL) {
			snprintf(c->error, sizeof(c->error), "undecodable ClaimResponse");
			break;
		}
		size_t got = cr->n_jobs;
		if (got > limit)
			snprintf(c->error, sizeof(c->error), "claim with limit %u returned %zu jobs", limit, got);
		for (size_t i = 0; i < got && c->n < CLAIM_JOBS; i++)
			c->ids[c->n++] = cr->jobs[i]->id;
		JQ_FREE(cr);
		if (got == 0 || c->error[0] != '\0')
			break;
	}
	jq_rpc_close(&s);
	return NULL;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

SVC_TEST(sixteen_concurrent_claimers_never_get_the_same_job_twice_and_together_get_all)
{
	JQ_QUEUE(q);
	int64_t *want = malloc(CLAIM_JOBS * sizeof(*want));
	int64_t *all = malloc(CLAIM_JOBS * CLAIMERS * sizeof(*all));
	claimer cl[CLAIMERS];
	pthread_t th[CLAIMERS];
	assert_non_null(want);
	assert_non_null(all);
	jq_enqueue_many(q, CLAIM_JOBS, want);

	for (int i = 0; i < CLAIMERS; i++) {
		cl[i] = (claimer){ .url = fx.svc.rpc_url, .queue = q, .index = i,
				   .ids = all + (size_t)i * CLAIM_JOBS };
		assert_int_equal(pthread_create(&th[i], NULL, claimer_main, &cl[i]), 0);
	}
	size_t total = 0;
	for (int i = 0; i < CLAIMERS; i++) {
		pthread_join(th[i], NULL);
		if (cl[i].error[0] != '\0')
			fail_msg("claimer %d: %s", i, cl[i].error);
		/* Each claimer's jobs carry its name as lease owner: a job handed to two claimers
		 * shows up as a claimer that received more jobs than it owns. */
		long long owned = jq_db_ll("SELECT count(*) FROM job_queue WHERE queue = '%s'"
					   " AND lease_owner = 'claimer-%d'", q, i);
		if (owned != (long long)cl[i].n)
			fail_msg("claimer %d received %zu jobs but owns %lld in the database", i, cl[i].n, owned);
		memmove(all + total, cl[i].ids, cl[i].n * sizeof(*all));
		total += cl[i].n;
	}
	qsort(all, total, sizeof(*all), cmp_i64);
	for (size_t i = 1; i < total; i++) {
		if (all[i] == all[i - 1])
			fail_msg("job %lld was claimed twice", (long long)all[i]);
	}
	assert_int_equal(total, CLAIM_JOBS);
	qsort(want, CLAIM_JOBS, sizeof(*want), cmp_i64);
	assert_memory_equal(all, want, CLAIM_JOBS * sizeof(*all));
	assert_int_equal(jq_db_ll("SELECT count(*) FROM job_queue WHERE queue = '%s'"
				  " AND curr_job_status = 'archive_processing' AND attempts = 1", q), CLAIM_JOBS);
	free(want);
	free(all);
}

/* ================= The database connection ================= */

SVC_TEST(the_service_reconnects_after_its_database_connections_are_killed)
{
	JQ_QUEUE(q);
	jq_enqueue_one(q, "before");
	char *db = jq_db_str("SELECT current_database()");
	long long killed = jq_db_ll("SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
				    " WHERE datname = '%s' AND application_name LIKE 'jobqd%%') t", db);
	free(db);
	assert_true(killed >= 2); /* the request connections and the rescuer's */

	/* Requests answer UNAVAILABLE (never anything else) until each connection is back. */
	long long deadline = jq_mono_ms() + 10000;
	int ok_in_a_row = 0;
	while (ok_in_a_row < 8) {
		int64_t id;
		jq_spec s = { .queue = q, .payload = "after" };
		unsigned code = jq_enqueue_code(&s, 1, &id);
		if (code != 0 && code != 14)
			fail_msg("Enqueue after the connections were killed answered %u: %s", code, jq_api_msg);
		ok_in_a_row = code == 0 ? ok_in_a_row + 1 : 0;
		if (jq_mono_ms() > deadline)
			fail_msg("the service did not reconnect within 10 s: %s", jq_api_msg);
		if (code != 0)
			jq_sleep_ms(20);
	}
	/* The rescuer reconnected too. */
	int64_t id = jq_enqueue_one(q, "rescue me");
	JQ_FREE(jq_claim(q, 100, "w", 60));
	jq_db_expire_lease(id);
	JQ_POLL_UNTIL(strcmp(jq_db_status(id), "archive_pending") == 0, 5000, "the rescuer after reconnecting");
}

#define T(name) cmocka_unit_test_setup_teardown(name, jq_api_svc_before, jq_api_svc_after)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(enqueue_stores_a_pending_job_and_returns_its_id),
		T(enqueue_accepts_a_batch_of_1000_jobs_and_answers_ids_in_request_order),
		T(enqueue_records_max_attempts_or_the_default_of_25),
		T(a_job_scheduled_for_later_is_not_claimable_before_it_is_due),
		T(claim_takes_jobs_by_priority_then_run_at_then_id),
		T(a_large_claim_answers_its_jobs_in_claim_order),
		T(a_claim_reply_larger_than_the_request_limit_arrives_whole),
		T(claim_returns_at_most_limit_jobs),
		T(claim_records_the_lease_owner_and_expiry_counts_attempts_and_issues_a_larger_token_every_time),
		T(heartbeat_extends_the_lease),
		T(heartbeat_answers_each_job_of_a_batch),
		T(heartbeat_with_a_stale_token_is_failed_precondition_and_changes_nothing),
		T(complete_finishes_the_job),
		T(complete_answers_each_job_of_a_batch_of_good_stale_and_unknown_ids),
		T(completing_again_with_the_same_token_is_ok_and_changes_nothing),
		T(a_retryable_failure_returns_the_job_to_pending_after_a_backoff),
		T(a_final_failure_fails_the_job_at_once),
		T(a_failure_of_the_last_attempt_fails_the_job),
		T(failing_again_with_the_same_token_is_ok_and_records_the_failure_once),
		T(fail_records_the_history_with_attempt_worker_and_error),
		T(an_error_text_over_8_KiB_is_cut_at_a_character_boundary),
		T(get_returns_every_field_of_a_job),
		T(get_of_an_unknown_id_is_not_found),
		T(list_filters_by_queue_and_status),
		T(list_pages_through_a_queue_with_keyset_pagination),
		T(list_leaves_payloads_out_unless_asked),
		T(retry_returns_failed_and_cancelled_jobs_to_pending_with_fresh_attempts),
		T(retry_all_failed_retries_every_failed_job_of_one_queue),
		T(retry_all_failed_stops_between_batches_once_the_deadline_has_passed),
		T(a_job_in_a_state_unknown_to_the_service_is_an_internal_error_everywhere),
		T(a_retry_delay_beyond_int32_is_rejected_not_cut),
		T(retrying_a_completed_or_processing_job_is_failed_precondition),
		T(cancel_cancels_pending_and_failed_jobs),
		T(cancelling_a_completed_job_is_failed_precondition),
		T(cancelling_an_unknown_job_is_not_found),
		T(stats_counts_jobs_by_queue_and_state_and_the_age_of_the_oldest_due_job),
		T(enqueue_rejects_a_queue_name_with_bad_characters_or_too_long),
		T(enqueue_rejects_an_empty_queue_name),
		T(enqueue_rejects_a_payload_over_the_limit),
		T(enqueue_rejects_a_batch_of_1001_jobs_and_an_empty_batch),
		T(enqueue_rejects_both_run_at_ms_and_delay_ms),
		T(enqueue_rejects_bad_priority_max_attempts_and_idempotency_key),
		T(claim_rejects_a_limit_of_0_or_1001),
		T(a_lease_longer_than_a_day_is_rejected),
		T(list_rejects_an_unknown_status),
		T(a_worker_id_that_is_missing_or_not_utf8_is_rejected),
		T(an_error_text_that_is_not_utf8_is_rejected),
		T(a_batch_naming_a_job_twice_is_rejected),
		T(a_lease_call_without_a_token_is_rejected),
		T(an_unknown_method_is_unimplemented),
		T(an_empty_method_is_unimplemented),
		T(a_payload_that_is_not_the_request_message_is_invalid_argument),
		T(junk_bytes_are_answered_and_the_service_keeps_serving),
		T(an_empty_message_is_answered_and_the_service_keeps_serving),
		T(a_message_at_the_size_limit_is_served_and_one_byte_more_is_refused),
		T(an_oversized_message_is_refused_and_the_service_keeps_serving),
		T(a_stale_lease_cannot_complete_heartbeat_or_fail_after_the_job_was_rescued_and_claimed_again),
		T(the_rescuer_returns_only_expired_leases_to_the_queue),
		T(the_rescuer_fails_a_job_whose_attempts_are_used_up),
		T(retries_back_off_exponentially_from_the_base),
		T(retries_of_jobs_that_failed_together_are_spread_by_jitter),
		T(an_idempotency_key_returns_the_first_job_while_it_is_unfinished),
		T(sixteen_concurrent_claimers_never_get_the_same_job_twice_and_together_get_all),
		T(the_service_reconnects_after_its_database_connections_are_killed),
	};
	return cmocka_run_group_tests_name("service", tests, group_setup, group_teardown);
}
