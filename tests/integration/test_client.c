/*
 * libjobq against a real jobqd (tests/support/jq_svc) on a private database: every call's
 * success path and an error path, per-job results of batches, the subscription (exact queue,
 * timeout), an unreachable service answering within timeout_ms, an address where nothing
 * listens answering at once (RPC and subscription), and 8 threads sharing a client.
 * Tests run in order and share the service; each uses its own queue names.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jobq.h"
#include "jq_svc.h"
#include "jq_test.h"

#define HEAR_MS 3000
#define QUIET_MS 300

static char *db_url;
static jq_svc svc;
static char pub_url[96];
static jobq_client *cl;

static jobq_options options(void)
{
	return (jobq_options){ .rpc_url = svc.rpc_url, .pub_url = pub_url, .timeout_ms = 5000 };
}

static int setup(void **state)
{
	(void)state;
	char flag[128];
	jobq_error err;
	db_url = jq_test_db_clone("jq_client_test");
	snprintf(pub_url, sizeof(pub_url), "ipc:///tmp/jobq-client-test-%d.pub", (int)getpid());
	snprintf(flag, sizeof(flag), "--pub-url=%s", pub_url);
	const char *const flags[] = { flag, NULL };
	jq_svc_start(&svc, "client", db_url, flags);
	jobq_options o = options();
	if (jobq_connect(&o, &cl, &err) != JOBQ_OK)
		fail_msg("jobq_connect: %s", err.message);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	jobq_close(cl);
	int status = jq_svc_finish(&svc, 5000, false);
	free(db_url);
	return status;
}

/* ok fails the test with the library's message unless code is JOBQ_OK. */
static void ok(int code, const jobq_error *err, const char *what)
{
	if (code != JOBQ_OK)
		fail_msg("%s: %s (%s)", what, jobq_code_name(code), err->message);
}

static int64_t enqueue1(const char *queue, const char *payload)
{
	jobq_job_spec s = { .queue = queue, .payload = payload, .payload_len = strlen(payload) };
	int64_t id = 0;
	jobq_error err;
	ok(jobq_enqueue(cl, &s, 1, &id, &err), &err, "enqueue");
	return id;
}

/* claim_n claims exactly n jobs of queue (fails the test otherwise); free with jobq_jobs_free. */
static jobq_job *claim_n(const char *queue, size_t n)
{
	jobq_job *jobs = NULL;
	size_t got = 0;
	jobq_error err;
	ok(jobq_claim(cl, queue, (uint32_t)n, "w-test", 60, 0, &jobs, &got, &err), &err, "claim");
	assert_int_equal(got, n);
	return jobs;
}

static jobq_status status_of(int64_t id)
{
	jobq_job *j = NULL;
	jobq_error err;
	ok(jobq_get(cl, id, &j, NULL, NULL, &err), &err, "get");
	jobq_status st = j->status;
	jobq_jobs_free(j, 1);
	return st;
}

static void names(void **state)
{
	(void)state;
	jobq_status st;
	assert_string_equal(jobq_version(), JOBQ_VERSION);
	assert_string_equal(jobq_code_name(JOBQ_FAILED_PRECONDITION), "FAILED_PRECONDITION");
	assert_string_equal(jobq_code_name(99), "UNKNOWN");
	assert_string_equal(jobq_status_name(JOBQ_STATUS_FAILED), "archive_failed");
	assert_null(jobq_status_name(JOBQ_STATUS_UNSPECIFIED));
	assert_int_equal(jobq_status_parse("archive_cancelled", &st), 0);
	assert_int_equal(st, JOBQ_STATUS_CANCELLED);
	assert_int_equal(jobq_status_parse("pending", &st), 0);
	assert_int_equal(st, JOBQ_STATUS_PENDING);
	assert_int_equal(jobq_status_parse("nope", &st), -1);
}

static void enqueue_batch_ids_in_order(void **state)
{
	(void)state;
	const char *payloads[] = { "one", "two", "three" };
	jobq_job_spec specs[3];
	int64_t ids[3] = { 0 };
	jobq_error err;
	for (int i = 0; i < 3; i++)
		specs[i] = (jobq_job_spec){ .queue = "enq", .payload = payloads[i],
					    .payload_len = strlen(payloads[i]), .priority = i };
	ok(jobq_enqueue(cl, specs, 3, ids, &err), &err, "enqueue");
	assert_true(ids[0] > 0 && ids[0] < ids[1] && ids[1] < ids[2]);
	for (int i = 0; i < 3; i++) {
		jobq_job *j = NULL;
		ok(jobq_get(cl, ids[i], &j, NULL, NULL, &err), &err, "get");
		assert_string_equal((char *)j->payload, payloads[i]);
		assert_int_equal(j->priority, i);
		assert_int_equal(j->status, JOBQ_STATUS_PENDING);
		jobq_jobs_free(j, 1);
	}
	/* Errors: client-side misuse, and the service's validation. */
	assert_int_equal(jobq_enqueue(cl, specs, 0, ids, &err), JOBQ_INVALID_ARGUMENT);
	assert_int_equal(err.code, JOBQ_INVALID_ARGUMENT);
	assert_int_equal(jobq_enqueue(cl, specs, 1001, ids, &err), JOBQ_INVALID_ARGUMENT);
	assert_int_equal(jobq_enqueue(cl, NULL, 1, ids, &err), JOBQ_INVALID_ARGUMENT);
	jobq_job_spec bad = { .queue = "no spaces allowed", .payload = "x", .payload_len = 1 };
	assert_int_equal(jobq_enqueue(cl, &bad, 1, ids, &err), JOBQ_INVALID_ARGUMENT);
	assert_non_null(strstr(err.message, "queue"));
}

static void claim_returns_jobs(void **state)
{
	(void)state;
	int64_t a = enqueue1("claimq", "alpha"), b = enqueue1("claimq", "beta");
	jobq_job *jobs = NULL;
	size_t n = 0;
	jobq_error err;
	ok(jobq_claim(cl, "claimq", 5, "w-claim", 60, 0, &jobs, &n, &err), &err, "claim");
	assert_int_equal(n, 2);
	assert_int_equal(jobs[0].id, a);
	assert_int_equal(jobs[1].id, b);
	assert_string_equal(jobs[0].queue, "claimq");
	assert_int_equal(jobs[0].payload_len, 5);
	assert_memory_equal(jobs[0].payload, "alpha", 6); /* NUL-terminated */
	assert_string_equal((char *)jobs[1].payload, "beta");
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(jobs[i].attempts, 1);
		assert_true(jobs[i].lease_token > 0);
		assert_int_equal(jobs[i].status, JOBQ_STATUS_PROCESSING);
		assert_string_equal(jobs[i].lease_owner, "w-claim");
		assert_true(jobs[i].lease_expires_at_ms > jq_now_ms() + 50000);
	}
	jobq_jobs_free(jobs, n);
	/* Nothing left: OK and empty. */
	ok(jobq_claim(cl, "claimq", 5, "w-claim", 60, 0, &jobs, &n, &err), &err, "claim empty");
	assert_int_equal(n, 0);
	assert_null(jobs);
	assert_int_equal(jobq_claim(cl, "claimq", 0, "w", 60, 0, &jobs, &n, &err), JOBQ_INVALID_ARGUMENT);
	assert_int_equal(jobq_claim(cl, "bad queue", 1, "w", 60, 0, &jobs, &n, &err),
			 JOBQ_INVALID_ARGUMENT);
}

static void heartbeat_extends_lease(void **state)
{
	(void)state;
	enqueue1("hbq", "x");
	jobq_job *j = claim_n("hbq", 1);
	jobq_lease l = { j->id, j->lease_token };
	jobq_result r;
	jobq_error err;
	ok(jobq_heartbeat(cl, &l, 1, 600, &r, &err), &err, "heartbeat");
	assert_int_equal(r.code, JOBQ_OK);
	assert_int_equal(r.id, j->id);
	assert_true(r.lease_expires_at_ms > jq_now_ms() + 500000);
	/* A stale token: that job's code, in the return value and the result. */
	l.lease_token += 1000;
	assert_int_equal(jobq_heartbeat(cl, &l, 1, 60, &r, &err), JOBQ_FAILED_PRECONDITION);
	assert_int_equal(err.code, JOBQ_FAILED_PRECONDITION);
	assert_int_equal(r.code, JOBQ_FAILED_PRECONDITION);
	assert_int_equal(r.id, j->id);
	assert_int_equal(jobq_heartbeat(cl, &l, 0, 60, &r, &err), JOBQ_INVALID_ARGUMENT);
	jobq_jobs_free(j, 1);
}

static void complete_single_and_batch_with_stale_token(void **state)
{
	(void)state;
	for (int i = 0; i < 3; i++)
		enqueue1("doneq", "x");
	jobq_job *j = claim_n("doneq", 3);
	jobq_result r[2];
	jobq_error err;
	jobq_lease one = { j[0].id, j[0].lease_token };
	ok(jobq_complete(cl, &one, 1, NULL, &err), &err, "complete one");
	assert_int_equal(status_of(j[0].id), JOBQ_STATUS_COMPLETED);
	/* A repeat with the same token is answered OK (its first reply may have been lost); with
	 * another token the lease is lost. */
	ok(jobq_complete(cl, &one, 1, r, &err), &err, "complete repeat");
	assert_int_equal(r[0].code, JOBQ_OK);
	one.lease_token += 1000;
	assert_int_equal(jobq_complete(cl, &one, 1, r, &err), JOBQ_FAILED_PRECONDITION);
	assert_int_equal(r[0].code, JOBQ_FAILED_PRECONDITION);
	assert_non_null(strstr(err.message, "lease"));

	jobq_lease batch[2] = { { j[1].id, j[1].lease_token }, { j[2].id, j[2].lease_token + 1000 } };
	ok(jobq_complete(cl, batch, 2, r, &err), &err, "complete batch");
	assert_int_equal(r[0].id, j[1].id);
	assert_int_equal(r[0].code, JOBQ_OK);
	assert_int_equal(r[0].status, JOBQ_STATUS_COMPLETED);
	assert_int_equal(r[1].id, j[2].id);
	assert_int_equal(r[1].code, JOBQ_FAILED_PRECONDITION);
	assert_true(r[1].message[0] != '\0');
	assert_int_equal(status_of(j[1].id), JOBQ_STATUS_COMPLETED);
	assert_int_equal(status_of(j[2].id), JOBQ_STATUS_PROCESSING);
	jobq_jobs_free(j, 3);
}

static void fail_retryable_and_final_with_history(void **state)
{
	(void)state;
	enqueue1("failq", "r");
	enqueue1("failq", "f");
	jobq_job *j = claim_n("failq", 2);
	jobq_failure f[2] = {
		{ .id = j[0].id, .lease_token = j[0].lease_token, .error = "try again", .retry_in_ms = 60000 },
		{ .id = j[1].id, .lease_token = j[1].lease_token, .error = "broken for good", .final = true },
	};
	jobq_result r[2];
	jobq_error err;
	long long before = jq_now_ms();
	ok(jobq_fail(cl, f, 2, "w-fail", r, &err), &err, "fail");
	assert_int_equal(r[0].code, JOBQ_OK);
	assert_int_equal(r[0].status, JOBQ_STATUS_PENDING);
	assert_true(r[0].run_at_ms >= before + 59000);
	assert_int_equal(r[1].code, JOBQ_OK);
	assert_int_equal(r[1].status, JOBQ_STATUS_FAILED);

	jobq_job *g = NULL;
	jobq_failure_record *h = NULL;
	size_t nh = 0;
	ok(jobq_get(cl, j[1].id, &g, &h, &nh, &err), &err, "get");
	assert_int_equal(g->status, JOBQ_STATUS_FAILED);
	assert_int_equal(g->prev_status, JOBQ_STATUS_PROCESSING);
	assert_string_equal(g->last_error, "broken for good");
	assert_int_equal(nh, 1);
	assert_int_equal(h[0].attempt, 1);
	assert_string_equal(h[0].worker_id, "w-fail");
	assert_string_equal(h[0].error, "broken for good");
	assert_true(h[0].failed_at_ms >= before - 1000);
	jobq_failures_free(h, nh);
	jobq_jobs_free(g, 1);

	/* Not under another token. */
	f[1].lease_token += 1000;
	assert_int_equal(jobq_fail(cl, &f[1], 1, "w-fail", r, &err), JOBQ_FAILED_PRECONDITION);
	assert_int_equal(r[0].code, JOBQ_FAILED_PRECONDITION);
	assert_int_equal(jobq_get(cl, 999999999, &g, &h, &nh, &err), JOBQ_NOT_FOUND);
	assert_null(g);
	assert_null(h);
	jobq_jobs_free(j, 2);
}

static void list_pages(void **state)
{
	(void)state;
	int64_t ids[5];
	for (int i = 0; i < 5; i++)
		ids[i] = enqueue1("listq", "p");
	jobq_list_options o = { .queue = "listq", .status = JOBQ_STATUS_PENDING, .limit = 2,
				.include_payload = true };
	jobq_error err;
	int seen = 0, pages = 0;
	do {
		jobq_job *jobs = NULL;
		size_t n = 0;
		int64_t next = -1;
		ok(jobq_list(cl, &o, &jobs, &n, &next, &err), &err, "list");
		for (size_t i = 0; i < n; i++) {
			assert_int_equal(jobs[i].id, ids[seen++]);
			assert_string_equal((char *)jobs[i].payload, "p");
		}
		jobq_jobs_free(jobs, n);
		o.after_id = next;
		pages++;
	} while (o.after_id != 0 && pages < 10);
	assert_int_equal(seen, 5);
	assert_int_equal(pages, 3);
	jobq_job *jobs = NULL;
	size_t n = 0;
	o.limit = 1001;
	assert_int_equal(jobq_list(cl, &o, &jobs, &n, NULL, &err), JOBQ_INVALID_ARGUMENT);
	o.limit = 0;
	o.queue = "bad queue";
	assert_int_equal(jobq_list(cl, &o, &jobs, &n, NULL, &err), JOBQ_INVALID_ARGUMENT);
}

static void retry_and_cancel(void **state)
{
	(void)state;
	enqueue1("rcq", "x");
	jobq_job *j = claim_n("rcq", 1);
	jobq_failure f = { .id = j->id, .lease_token = j->lease_token, .error = "e", .final = true };
	jobq_result r[2];
	jobq_error err;
	ok(jobq_fail(cl, &f, 1, "w", NULL, &err), &err, "fail");
	enqueue1("rcq", "y");
	jobq_job *running = claim_n("rcq", 1);

	/* Retry: the failed job comes back; a running one cannot be retried. */
	int64_t ids[2] = { j->id, running->id };
	ok(jobq_retry(cl, ids, 2, r, &err), &err, "retry");
	assert_int_equal(r[0].code, JOBQ_OK);
	assert_int_equal(r[0].status, JOBQ_STATUS_PENDING);
	assert_int_equal(r[1].code, JOBQ_FAILED_PRECONDITION);
	assert_int_equal(status_of(j->id), JOBQ_STATUS_PENDING);

	/* Cancel: the pending job goes, and so does the running one, under its worker, whose
	 * heartbeat result then says so (stop_reason). */
	enqueue1("rcq-other", "z");
	jobq_job *other = claim_n("rcq-other", 1);
	ok(jobq_cancel(cl, ids, 2, r, &err), &err, "cancel");
	assert_int_equal(r[0].code, JOBQ_OK);
	assert_int_equal(r[0].status, JOBQ_STATUS_CANCELLED);
	assert_int_equal(r[1].code, JOBQ_OK);
	assert_int_equal(r[1].status, JOBQ_STATUS_CANCELLED);
	assert_int_equal(status_of(j->id), JOBQ_STATUS_CANCELLED);
	assert_int_equal(status_of(running->id), JOBQ_STATUS_CANCELLED);
	jobq_lease hb[2] = { { running->id, running->lease_token }, { other->id, other->lease_token } };
	jobq_progress pr[2] = { { .percent = 10, .message = "ten" }, { .percent = 70, .message = "seventy" } };
	ok(jobq_heartbeat_progress(cl, hb, pr, 2, 30, r, &err), &err, "heartbeat");
	assert_int_equal(r[0].code, JOBQ_FAILED_PRECONDITION);
	assert_string_equal(r[0].stop_reason, "cancelled");
	assert_int_equal(r[1].code, JOBQ_OK);
	assert_string_equal(r[1].stop_reason, "");
	jobq_output out = { .data = "done", .len = 4 };
	ok(jobq_complete_output(cl, &hb[1], &out, 1, r, &err), &err, "complete with output");
	jobq_job *got = NULL;
	ok(jobq_get(cl, other->id, &got, NULL, NULL, &err), &err, "get");
	assert_int_equal(got->progress_percent, 70);
	assert_string_equal(got->progress_message, "seventy");
	assert_int_equal(got->output_len, 4);
	assert_string_equal((const char *)got->output, "done");
	jobq_jobs_free(got, 1);
	jobq_jobs_free(other, 1);
	assert_int_equal(jobq_complete(cl, &hb[0], 1, r, &err), JOBQ_FAILED_PRECONDITION);
	assert_non_null(strstr(err.message, "cancelled"));
	assert_int_equal(jobq_retry(cl, ids, 0, r, &err), JOBQ_INVALID_ARGUMENT);
	int64_t missing = 999999999;
	assert_int_equal(jobq_cancel(cl, &missing, 1, r, &err), JOBQ_NOT_FOUND);
	assert_int_equal(r[0].code, JOBQ_NOT_FOUND);
	jobq_jobs_free(running, 1);
	jobq_jobs_free(j, 1);

	/* Retry every failed job of a queue. */
	for (int i = 0; i < 2; i++)
		enqueue1("rallq", "x");
	j = claim_n("rallq", 2);
	jobq_failure fs[2] = {
		{ .id = j[0].id, .lease_token = j[0].lease_token, .error = "e", .final = true },
		{ .id = j[1].id, .lease_token = j[1].lease_token, .error = "e", .final = true },
	};
	ok(jobq_fail(cl, fs, 2, "w", NULL, &err), &err, "fail");
	uint32_t count = 0;
	ok(jobq_retry_all_failed(cl, "rallq", &count, &err), &err, "retry all");
	assert_int_equal(count, 2);
	assert_int_equal(status_of(j[1].id), JOBQ_STATUS_PENDING);
	assert_int_equal(jobq_retry_all_failed(cl, "bad queue", &count, &err), JOBQ_INVALID_ARGUMENT);
	jobq_jobs_free(j, 2);
}

static void stats_by_queue(void **state)
{
	(void)state;
	enqueue1("statq", "x");
	enqueue1("statq", "y");
	jobq_job *j = claim_n("statq", 1);
	jobq_queue_stats *st = NULL;
	size_t n = 0;
	jobq_error err;
	ok(jobq_stats(cl, "statq", &st, &n, &err), &err, "stats");
	assert_int_equal(n, 1);
	assert_string_equal(st[0].queue, "statq");
	assert_int_equal(st[0].pending, 1);
	assert_int_equal(st[0].processing, 1);
	assert_true(st[0].oldest_due_age_seconds >= 0.0);
	jobq_stats_free(st, n);
	ok(jobq_stats(cl, NULL, &st, &n, &err), &err, "stats all");
	assert_true(n > 1);
	jobq_stats_free(st, n);
	assert_int_equal(jobq_stats(cl, "bad queue", &st, &n, &err), JOBQ_INVALID_ARGUMENT);
	assert_null(st);
	jobq_jobs_free(j, 1);
}

/* hear waits for an announcement of queue on s (skipping others); returns it or fails. */
static void hear(jobq_sub *s, const char *queue, int ms, jobq_announcement *a)
{
	long long deadline = jq_mono_ms() + ms;
	jobq_error err;
	while (jq_mono_ms() < deadline) {
		int code = jobq_sub_next(s, (int)(deadline - jq_mono_ms()) + 1, a, &err);
		if (code == JOBQ_DEADLINE_EXCEEDED)
			break;
		ok(code, &err, "sub_next");
		if (strcmp(a->queue, queue) == 0)
			return;
		jobq_announcement_free(a);
	}
	fail_msg("no announcement of queue %s within %d ms", queue, ms);
}

/* warm_up enqueues into queue until s hears it: PUB/SUB has no handshake, so this is the only
 * way to know the subscription has reached the publisher. */
static void warm_up(jobq_sub *s, const char *queue)
{
	long long deadline = jq_mono_ms() + 15000;
	jobq_announcement a;
	jobq_error err;
	while (jq_mono_ms() < deadline) {
		enqueue1(queue, "warm");
		if (jobq_sub_next(s, 300, &a, &err) == JOBQ_OK) {
			jobq_announcement_free(&a);
			/* Drain whatever else the warm-up produced. */
			while (jobq_sub_next(s, 100, &a, &err) == JOBQ_OK)
				jobq_announcement_free(&a);
			return;
		}
	}
	fail_msg("the subscriber never heard queue %s", queue);
}

static void subscribe_hears_only_its_queue(void **state)
{
	(void)state;
	jobq_options o = options();
	jobq_sub *s = NULL, *all = NULL;
	jobq_announcement a;
	jobq_error err;
	ok(jobq_subscribe(&o, "mail", &s, &err), &err, "subscribe");
	ok(jobq_subscribe(&o, NULL, &all, &err), &err, "subscribe all");
	assert_true(jobq_sub_fd(s) >= 0);
	/* Each subscriber connects on its own: both must be warm before the real announcements.
	 * `s` last, since its warm-up drains what it heard and `all` only ever skips to a queue. */
	warm_up(all, "mail");
	warm_up(s, "mail");

	int64_t other = enqueue1("mailer", "x");
	int64_t mine = enqueue1("mail", "x");
	hear(s, "mail", HEAR_MS, &a);
	assert_string_equal(a.queue, "mail");
	assert_int_equal(a.n_ids, 1);
	assert_int_equal(a.ids[0], mine);
	assert_true(a.published_at_us > 0);
	jobq_announcement_free(&a);
	assert_null(a.ids);
	/* "mail" never hears "mailer", though it was published: the broad subscriber hears it. */
	while (jobq_sub_next(s, QUIET_MS, &a, &err) == JOBQ_OK) {
		assert_string_equal(a.queue, "mail");
		jobq_announcement_free(&a);
	}
	hear(all, "mailer", HEAR_MS, &a);
	assert_int_equal(a.ids[0], other);
	jobq_announcement_free(&a);

	/* Timeouts: a bounded wait, and no wait at all. */
	long long t0 = jq_mono_ms();
	assert_int_equal(jobq_sub_next(s, 150, &a, &err), JOBQ_DEADLINE_EXCEEDED);
	long long took = jq_mono_ms() - t0;
	assert_true(took >= 140 && took < 1500);
	assert_int_equal(err.code, JOBQ_DEADLINE_EXCEEDED);
	assert_int_equal(jobq_sub_next(s, 0, &a, &err), JOBQ_DEADLINE_EXCEEDED);
	jobq_sub *bad = NULL;
	assert_int_equal(jobq_subscribe(&o, "", &bad, &err), JOBQ_INVALID_ARGUMENT);
	assert_null(bad);
	jobq_sub_close(s);
	jobq_sub_close(all);
}

static void unreachable_service_answers_within_timeout(void **state)
{
	(void)state;
	/* A port nothing listens on: the one of a service that was started and stopped. */
	jq_svc dead;
	jq_svc_start(&dead, "client-dead", db_url, NULL);
	jq_svc_stop(&dead, 5000);
	jq_svc_remove_log(&dead);
	jobq_options o = { .rpc_url = dead.rpc_url, .timeout_ms = 300 };
	jobq_client *c = NULL;
	jobq_error err;
	ok(jobq_connect(&o, &c, &err), &err, "connect (the dial is in the background)");
	jobq_job_spec s = { .queue = "dead", .payload = "x", .payload_len = 1 };
	int64_t id;
	long long t0 = jq_mono_ms();
	int code = jobq_enqueue(c, &s, 1, &id, &err);
	long long took = jq_mono_ms() - t0;
	assert_true(code == JOBQ_UNAVAILABLE || code == JOBQ_DEADLINE_EXCEEDED);
	assert_int_equal(err.code, code);
	assert_true(took < 300 + 700);
	print_message("unreachable: %s after %lld ms: %s\n", jobq_code_name(code), took, err.message);
	/* Batch results carry the call's code. */
	jobq_lease l = { 1, 1 };
	jobq_result r;
	code = jobq_complete(c, &l, 1, &r, &err);
	assert_true(code == JOBQ_UNAVAILABLE || code == JOBQ_DEADLINE_EXCEEDED);
	assert_int_equal(r.code, code);
	jobq_close(c);
}

/* Nothing listens at the address: the call says so in about a second (the library's short wait
 * for a first connection), not after its 10 s timeout; the subscription says so too, and says
 * connected for the service's real PUB address. */
static void refused_connection_answers_at_once(void **state)
{
	(void)state;
	char url[64];
	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", jq_free_port());
	jobq_options o = { .rpc_url = url, .pub_url = url, .timeout_ms = 10000 };
	jobq_client *c = NULL;
	jobq_error err;
	ok(jobq_connect(&o, &c, &err), &err, "connect (the dial is in the background)");
	jobq_queue_stats *st = NULL;
	size_t n = 0;
	long long t0 = jq_mono_ms();
	int code = jobq_stats(c, NULL, &st, &n, &err);
	long long took = jq_mono_ms() - t0;
	print_message("refused: %s after %lld ms: %s\n", jobq_code_name(code), took, err.message);
	assert_int_equal(code, JOBQ_UNAVAILABLE);
	assert_non_null(strstr(err.message, "connection refused"));
	assert_non_null(strstr(err.message, url));
	assert_true(took < 3000);
	jobq_close(c);

	jobq_sub *s = NULL;
	ok(jobq_subscribe(&o, "refused", &s, &err), &err, "subscribe (the dial is in the background)");
	t0 = jq_mono_ms();
	code = jobq_sub_connected(s, 10000, &err);
	took = jq_mono_ms() - t0;
	assert_int_equal(code, JOBQ_UNAVAILABLE);
	assert_non_null(strstr(err.message, "connection refused"));
	assert_true(took < 3000);
	jobq_sub_close(s);

	jobq_options live = options();
	ok(jobq_subscribe(&live, "refused", &s, &err), &err, "subscribe");
	ok(jobq_sub_connected(s, HEAR_MS, &err), &err, "connected to the service's PUB address");
	jobq_sub_close(s);
}

#define THREADS 8
#define PER_THREAD 25

typedef struct worker_arg {
	int idx;
	int64_t ids[PER_THREAD];
	int failures;
} worker_arg;

/* thread_main enqueues, claims and completes its own queue's jobs through the shared client. */
static void *thread_main(void *p)
{
	worker_arg *w = p;
	char queue[32], worker[32];
	jobq_error err;
	snprintf(queue, sizeof(queue), "thr%d", w->idx);
	snprintf(worker, sizeof(worker), "w-thr%d", w->idx);
	for (int i = 0; i < PER_THREAD; i++) {
		jobq_job_spec s = { .queue = queue, .payload = "t", .payload_len = 1 };
		jobq_job *jobs = NULL;
		size_t n = 0;
		if (jobq_enqueue(cl, &s, 1, &w->ids[i], &err) != JOBQ_OK ||
		    jobq_claim(cl, queue, 1, worker, 30, 0, &jobs, &n, &err) != JOBQ_OK || n != 1 ||
		    jobs[0].id != w->ids[i]) {
			w->failures++;
			jobq_jobs_free(jobs, n);
			continue;
		}
		jobq_lease l = { jobs[0].id, jobs[0].lease_token };
		w->failures += jobq_complete(cl, &l, 1, NULL, &err) != JOBQ_OK;
		jobq_jobs_free(jobs, n);
	}
	return NULL;
}

static void threads_share_a_client(void **state)
{
	(void)state;
	pthread_t t[THREADS];
	static worker_arg args[THREADS];
	for (int i = 0; i < THREADS; i++) {
		args[i] = (worker_arg){ .idx = i };
		assert_int_equal(pthread_create(&t[i], NULL, thread_main, &args[i]), 0);
	}
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_join(t[i], NULL), 0);
	for (int i = 0; i < THREADS; i++) {
		assert_int_equal(args[i].failures, 0);
		for (int k = 0; k < PER_THREAD; k++)
			assert_int_equal(status_of(args[i].ids[k]), JOBQ_STATUS_COMPLETED);
	}
}

static void misuse_is_invalid_argument(void **state)
{
	(void)state;
	jobq_error err;
	jobq_job *j = NULL;
	jobq_options o = { .timeout_ms = -1 };
	jobq_client *c = NULL;
	assert_int_equal(jobq_connect(&o, &c, &err), JOBQ_INVALID_ARGUMENT);
	assert_null(c);
	assert_int_equal(jobq_get(NULL, 1, &j, NULL, NULL, &err), JOBQ_INVALID_ARGUMENT);
	assert_int_equal(jobq_get(cl, 1, NULL, NULL, NULL, &err), JOBQ_INVALID_ARGUMENT);
	assert_int_equal(jobq_complete(cl, NULL, 1, NULL, NULL), JOBQ_INVALID_ARGUMENT);
	assert_int_equal(jobq_sub_next(NULL, 0, NULL, &err), JOBQ_INVALID_ARGUMENT);
	assert_int_equal(jobq_sub_connected(NULL, 0, &err), JOBQ_INVALID_ARGUMENT);
	jobq_close(NULL);
	jobq_sub_close(NULL);
	jobq_jobs_free(NULL, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(names),
		cmocka_unit_test(enqueue_batch_ids_in_order),
		cmocka_unit_test(claim_returns_jobs),
		cmocka_unit_test(heartbeat_extends_lease),
		cmocka_unit_test(complete_single_and_batch_with_stale_token),
		cmocka_unit_test(fail_retryable_and_final_with_history),
		cmocka_unit_test(list_pages),
		cmocka_unit_test(retry_and_cancel),
		cmocka_unit_test(stats_by_queue),
		cmocka_unit_test(subscribe_hears_only_its_queue),
		cmocka_unit_test(unreachable_service_answers_within_timeout),
		cmocka_unit_test(refused_connection_answers_at_once),
		cmocka_unit_test(threads_share_a_client),
		cmocka_unit_test(misuse_is_invalid_argument),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
