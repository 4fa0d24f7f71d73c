/* The bounds Claim, List and a Complete or Fail that claims budget their replies with (jq_handlers.h, jq_config.h), held against
 * protobuf-c's own sizes for the largest value of every field. A field added to Job or to the
 * envelope that breaks a bound fails here, before a reply could outgrow its limit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "jq_config.h"
#include "jq_handlers.h"
#include "jq_validate.h"

/* The widest UTF-8 an idempotency key can hold in the database: 255 characters of 4 bytes. */
#define KEY_BYTES (JQ_MAX_IDEMPOTENCY_KEY_LEN * 4)

static char *text(size_t n)
{
	char *s = malloc(n + 1);
	assert_non_null(s);
	memset(s, 'x', n);
	s[n] = '\0';
	return s;
}

/* worst_job fills m with the widest encoding of every field; the strings are malloc'd (freed by
 * free_job). The payload is only measured, never read, so it needs no memory. */
static void worst_job(Jobq__V1__Job *m, size_t payload_len)
{
	jobq__v1__job__init(m);
	m->id = INT64_MIN;
	m->queue = text(JQ_MAX_QUEUE_LEN);
	m->payload.len = payload_len;
	m->status = JOBQ__V1__JOB_STATUS__JOB_STATUS_ARCHIVE_CANCELLED;
	m->prev_status = JOBQ__V1__JOB_STATUS__JOB_STATUS_ARCHIVE_CANCELLED;
	m->attempts = UINT32_MAX;
	m->lease_token = INT64_MIN;
	m->max_attempts = UINT32_MAX;
	m->priority = INT32_MIN;
	m->run_at_ms = INT64_MIN;
	m->lease_expires_at_ms = INT64_MIN;
	m->lease_owner = text(JQ_MAX_WORKER_ID_LEN);
	m->last_error = text(JQ_MAX_ERROR_LEN);
	m->created_at_ms = INT64_MIN;
	m->updated_at_ms = INT64_MIN;
	m->finished_at_ms = INT64_MIN;
	m->idempotency_key = text(KEY_BYTES);
	m->concurrency_key = text(JQ_MAX_CONCURRENCY_KEY_LEN);
}

static size_t variable_bytes(const Jobq__V1__Job *m)
{
	return m->payload.len + strlen(m->queue) + strlen(m->lease_owner) + strlen(m->last_error) +
	       strlen(m->idempotency_key) + strlen(m->concurrency_key);
}

static void free_job(Jobq__V1__Job *m)
{
	free(m->queue);
	free(m->lease_owner);
	free(m->last_error);
	free(m->idempotency_key);
	free(m->concurrency_key);
}

/* A job in a Claim and in a List reply takes at most JQ_REPLY_JOB_FIXED beyond its variable
 * fields, with a payload of any size a varint length can carry. */
static void a_job_fits_its_fixed_share(void **state)
{
	(void)state;
	const size_t payloads[] = { 0, 1, 127, 128, 1u << 20, 256u << 20, UINT32_MAX };
	for (size_t i = 0; i < sizeof(payloads) / sizeof(payloads[0]); i++) {
		Jobq__V1__Job job, *jobs[1] = { &job };
		worst_job(&job, payloads[i]);
		Jobq__V1__ClaimResponse claim = JOBQ__V1__CLAIM_RESPONSE__INIT;
		claim.n_jobs = 1;
		claim.jobs = jobs;
		size_t got = jobq__v1__claim_response__get_packed_size(&claim);
		assert_true(got <= variable_bytes(&job) + JQ_REPLY_JOB_FIXED);
		/* Two jobs take twice as much: the share is per job. */
		Jobq__V1__Job *two[2] = { &job, &job };
		claim.n_jobs = 2;
		claim.jobs = two;
		assert_true(jobq__v1__claim_response__get_packed_size(&claim) <=
			    2 * (variable_bytes(&job) + JQ_REPLY_JOB_FIXED));
		free_job(&job);
	}
}

/* The envelope and a response's own fields (List's next_after_id) take at most
 * JQ_REPLY_ENVELOPE_MAX beyond the jobs. */
static void the_envelope_fits_its_reserve(void **state)
{
	(void)state;
	Jobq__V1__Job job, *jobs[1] = { &job };
	worst_job(&job, 1u << 20);
	Jobq__V1__ListResponse list = JOBQ__V1__LIST_RESPONSE__INIT;
	list.n_jobs = 1;
	list.jobs = jobs;
	list.next_after_id = INT64_MIN;
	size_t inner = jobq__v1__list_response__get_packed_size(&list);
	char *id = text(128); /* the longest request id jobqd echoes */
	Jobq__V1__RpcResponse env = JOBQ__V1__RPC_RESPONSE__INIT;
	env.request_id = id;
	env.payload.len = inner;
	size_t whole = jobq__v1__rpc_response__get_packed_size(&env);
	assert_true(whole <= variable_bytes(&job) + JQ_REPLY_JOB_FIXED + JQ_REPLY_ENVELOPE_MAX);
	free(id);
	free_job(&job);
}

/* One job of the largest payload always fits a reply limit of max payload + the extra that
 * jobqd's start-up check and the Claim's check of a client's limit use. */
static void one_job_fits_the_extra(void **state)
{
	(void)state;
	size_t others = JQ_MAX_QUEUE_LEN + JQ_MAX_WORKER_ID_LEN + JQ_MAX_ERROR_LEN + KEY_BYTES;
	assert_true(others + JQ_REPLY_JOB_FIXED + JQ_REPLY_ENVELOPE_MAX <= JQ_REPLY_ONE_JOB_EXTRA);
}

/* A Complete or Fail that claims budgets its jobs after JQ_REPLY_ITEM_MAX per result and
 * JQ_REPLY_NEXT_EXTRA for its other fields: the widest results and fields stay within them. */
static void results_and_claim_fields_fit_their_share(void **state)
{
	(void)state;
	char *message = text(JQ_REPLY_ITEM_MESSAGE_MAX);
	Jobq__V1__ItemResult item, *items[3] = { &item, &item, &item };
	jobq__v1__item_result__init(&item);
	item.id = INT64_MIN;
	item.code = UINT32_MAX;
	item.message = message;
	item.lease_expires_at_ms = INT64_MIN;
	item.status = JOBQ__V1__JOB_STATUS__JOB_STATUS_ARCHIVE_CANCELLED;
	item.run_at_ms = INT64_MIN;
	Jobq__V1__CompleteResponse c = JOBQ__V1__COMPLETE_RESPONSE__INIT;
	Jobq__V1__FailResponse f = JOBQ__V1__FAIL_RESPONSE__INIT;
	for (size_t n = 1; n <= 3; n++) {
		c.n_results = f.n_results = n;
		c.results = f.results = items;
		c.retry_after_ms = f.retry_after_ms = UINT32_MAX;
		c.claim_skipped = f.claim_skipped = 1;
		assert_true(jobq__v1__complete_response__get_packed_size(&c) <= n * JQ_REPLY_ITEM_MAX + JQ_REPLY_NEXT_EXTRA);
		assert_true(jobq__v1__fail_response__get_packed_size(&f) <= n * JQ_REPLY_ITEM_MAX + JQ_REPLY_NEXT_EXTRA);
	}
	free(message);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(a_job_fits_its_fixed_share),
		cmocka_unit_test(the_envelope_fits_its_reserve),
		cmocka_unit_test(one_job_fits_the_extra),
		cmocka_unit_test(results_and_claim_fields_fit_their_share),
	};
	return cmocka_run_group_tests_name("reply_bound", tests, NULL, NULL);
}
