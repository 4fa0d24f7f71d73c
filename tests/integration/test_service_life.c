/*
 * test_service_life — jobqd's life around the requests: retention of finished jobs, a database
 * that cannot be reached, and SIGTERM with requests in flight. Each test starts a jobqd of its
 * own (with the settings it needs, on a private copy of the database) and always stops it; its
 * log is printed when the test fails.
 */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "jq_rpc_call.h"
#include "jq_svc.h"
#include "jq_svc_api.h"
#include "jq_test.h"

static jq_api_svc fx;

#define SVC_TEST(name) JQ_API_TEST(fx, name)

/* start starts this test's jobqd on a fresh copy of the database (db_name) or on url. */
static int start(const char *db_name, const char *url, const char *const *flags)
{
	return jq_api_svc_start(&fx, db_name, url, flags);
}

static int stop(void **state)
{
	(void)state;
	return jq_api_svc_stop(&fx, 10000);
}

/* ================= Retention ================= */

static int start_retention(void **state)
{
	(void)state;
	static const char *const flags[] = { "--retention-seconds=1", "--retention-interval-ms=100",
					     "--rescue-interval-ms=100", "--backoff-base-ms=10", NULL };
	return start("svc_retention", NULL, flags);
}

SVC_TEST(retention_deletes_completed_and_cancelled_jobs_once_old_and_keeps_the_others)
{
	const char *q = "retention", *flaky_q = "retention-flaky";
	int64_t ids[8], tok[5], flaky, flaky_tok;
	jq_enqueue_many(q, 8, ids);
	flaky = jq_enqueue_one(flaky_q, "flaky");
	long long t0 = jq_now_ms();
	/* The flaky job fails once, is claimed again and completes: its history goes with it. */
	jq_claim_one(flaky_q, "w", 600, &flaky_tok);
	assert_int_equal(jq_fail1(flaky, flaky_tok, "flaky", false, 1, NULL, NULL, NULL), 0);
	assert_int_equal(jq_claim_one_within(flaky_q, "w", 600, 5000, &flaky_tok), flaky);
	assert_int_equal(jq_complete1(flaky, flaky_tok), 0);
	for (int i = 0; i < 5; i++)
		assert_int_equal(jq_claim_one(q, "w", 600, &tok[i]), ids[i]);
	for (int i = 0; i < 3; i++)
		assert_int_equal(jq_complete1(ids[i], tok[i]), 0);
	assert_int_equal(jq_fail1(ids[3], tok[3], "fatal", true, 0, NULL, NULL, NULL), 0);
	/* ids[4] stays processing; ids[5] is cancelled; ids[6..7] stay pending. */
	Jobq__V1__CancelRequest cr = JOBQ__V1__CANCEL_REQUEST__INIT;
	cr.n_ids = 1;
	cr.ids = &ids[5];
	JQ_FREE(jq_api_ok(JQ_METHOD("Cancel"), &cr, &jobq__v1__cancel_response__descriptor));
	assert_int_equal(jq_db_ll("SELECT count(*) FROM job_queue WHERE curr_job_status IN"
				  " ('archive_completed', 'archive_cancelled')"), 5);

	JQ_POLL_UNTIL(jq_db_ll("SELECT count(*) FROM job_queue WHERE curr_job_status IN"
			       " ('archive_completed', 'archive_cancelled')") == 0, 10000,
		      "retention to delete the finished jobs");
	/* Not before they were a second old. */
	assert_true(jq_now_ms() - t0 >= 1000);
	char *left = jq_db_str("SELECT string_agg(curr_job_status, ',' ORDER BY id) FROM job_queue");
	assert_string_equal(left, "archive_failed,archive_processing,archive_pending,archive_pending");
	free(left);
	assert_int_equal(jq_db_ll("SELECT count(*) FROM job_failure WHERE job_id = %lld", (long long)flaky), 0);
	assert_int_equal(jq_db_ll("SELECT count(*) FROM job_failure WHERE job_id = %lld", (long long)ids[3]), 1);
	/* Failed jobs wait for a human, however old. */
	jq_sleep_ms(300);
	assert_string_equal(jq_db_status(ids[3]), "archive_failed");
}

/* ================= No database ================= */

/* closed_port returns a loopback port nobody listens on (connections are refused). */
static int closed_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = 0 };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &len) == 0)
		port = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

static int start_without_db(void **state)
{
	(void)state;
	/* Sweeps every 100 ms: ten failures a second for the limiter to hold back. */
	static const char *const flags[] = { "--rescue-interval-ms=100", "--retention-interval-ms=100", NULL };
	char url[128];
	snprintf(url, sizeof(url), "postgresql://jobq@127.0.0.1:%d/jobq?connect_timeout=2", closed_port());
	return start("nodb", url, flags);
}

/* expect_unavailable runs a valid request and wants UNAVAILABLE within a second. */
static void expect_unavailable(const char *method, const void *req)
{
	long long t0 = jq_mono_ms();
	unsigned code = jq_api_code(method, req, NULL, NULL);
	long long ms = jq_mono_ms() - t0;
	if (code != 14)
		fail_msg("%s without a database answered %u '%s', expected UNAVAILABLE", method, code, jq_api_msg);
	if (ms > 1000)
		fail_msg("%s without a database took %lld ms to answer", method, ms);
}

SVC_TEST(without_a_database_every_method_answers_unavailable_quickly)
{
	Jobq__V1__JobSpec spec = JOBQ__V1__JOB_SPEC__INIT, *specs[] = { &spec };
	Jobq__V1__EnqueueRequest enq = JOBQ__V1__ENQUEUE_REQUEST__INIT;
	spec.queue = "q";
	enq.n_jobs = 1;
	enq.jobs = specs;
	Jobq__V1__ClaimRequest claim = JOBQ__V1__CLAIM_REQUEST__INIT;
	claim.queue = "q";
	claim.limit = 1;
	claim.worker_id = "w";
	Jobq__V1__HeartbeatRequest hb = JOBQ__V1__HEARTBEAT_REQUEST__INIT;
	hb.id = 1, hb.lease_token = 1;
	Jobq__V1__CompleteRequest comp = JOBQ__V1__COMPLETE_REQUEST__INIT;
	comp.id = 1, comp.lease_token = 1;
	Jobq__V1__FailRequest fail = JOBQ__V1__FAIL_REQUEST__INIT;
	fail.id = 1, fail.lease_token = 1;
	Jobq__V1__GetRequest get = JOBQ__V1__GET_REQUEST__INIT;
	get.id = 1;
	Jobq__V1__ListRequest list = JOBQ__V1__LIST_REQUEST__INIT;
	int64_t one = 1;
	Jobq__V1__RetryRequest retry = JOBQ__V1__RETRY_REQUEST__INIT;
	retry.n_ids = 1, retry.ids = &one;
	Jobq__V1__CancelRequest cancel = JOBQ__V1__CANCEL_REQUEST__INIT;
	cancel.n_ids = 1, cancel.ids = &one;
	Jobq__V1__StatsRequest stats = JOBQ__V1__STATS_REQUEST__INIT;

	/* Twice, the second time after the service's reconnect interval has passed. */
	for (int round = 0; round < 2; round++) {
		expect_unavailable(JQ_METHOD("Enqueue"), &enq);
		expect_unavailable(JQ_METHOD("Claim"), &claim);
		expect_unavailable(JQ_METHOD("Heartbeat"), &hb);
		expect_unavailable(JQ_METHOD("Complete"), &comp);
		expect_unavailable(JQ_METHOD("Fail"), &fail);
		expect_unavailable(JQ_METHOD("Get"), &get);
		expect_unavailable(JQ_METHOD("List"), &list);
		expect_unavailable(JQ_METHOD("Retry"), &retry);
		expect_unavailable(JQ_METHOD("Cancel"), &cancel);
		expect_unavailable(JQ_METHOD("Stats"), &stats);
		jq_sleep_ms(300);
	}
	/* Validation needs no database. */
	get.id = 0;
	jq_api_expect(JQ_METHOD("Get"), &get, 3, "id");
	jq_api_expect(JQ_METHOD("Nope"), &get, 12, NULL);
	assert_true(jq_svc_alive(&fx.svc));
}

SVC_TEST(without_a_database_jobqd_says_so_once)
{
	/* The ready line counts the connections that are up, not the ones it tried. jobqd may
	 * answer its first request a moment before that line is written. */
	JQ_POLL_UNTIL(jq_svc_log_contains(&fx.svc, "jobqd ready: "), 5000, "the ready line");
	if (!jq_svc_log_contains(&fx.svc, ", database: 0 of 4 connections up (reconnecting)"))
		fail_msg("the ready line does not say that no database connection is up");
	/* 2 s of sweeps every 100 ms: each failing loop warns once, the repeats are counted. */
	jq_sleep_ms(2000);
	int rescuer = jq_svc_log_count(&fx.svc, "rescuer: "), retention = jq_svc_log_count(&fx.svc, "retention: ");
	if (rescuer != 1 || retention != 1)
		fail_msg("%d rescuer and %d retention warnings in 2 s, expected one each", rescuer, retention);
	assert_true(jq_svc_log_contains(&fx.svc, "rescuer: database unavailable: connection to server at"));
	/* /readyz names the cause once, in libpq's words. */
	jq_http_resp *r = malloc(sizeof(*r));
	assert_non_null(r);
	assert_int_equal(jq_svc_http_get(fx.svc.http_port, "/readyz", r), 0);
	char body[256];
	snprintf(body, sizeof(body), "%.200s", r->body);
	free(r);
	if (strncmp(body, "database unreachable: connection to server at \"127.0.0.1\"", 47) != 0 ||
	    strstr(body, "unavailable") != NULL)
		fail_msg("/readyz: %s", body);
}

/* ================= Database sessions ended by the server ================= */

static int start_for_terminated(void **state)
{
	(void)state;
	static const char *const flags[] = { "--rescue-interval-ms=100", NULL };
	return start("svc_terminated", NULL, flags);
}

/* log_lines_not_starting_with_a_timestamp counts the lines of jobqd's text log that are empty
 * or do not start with "20" (a year): continuation lines of a multi-line message. */
static int log_lines_not_starting_with_a_timestamp(const jq_svc *svc, char *first, size_t cap)
{
	FILE *f = fopen(svc->log_path, "r");
	char line[4096];
	int n = 0;
	first[0] = '\0';
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strncmp(line, "20", 2) == 0)
			continue;
		if (n++ == 0)
			snprintf(first, cap, "%.200s", line);
	}
	fclose(f);
	return n;
}

SVC_TEST(sessions_ended_by_the_server_log_one_line_each)
{
	/* libpq says "FATAL: terminating connection ...\nserver closed the connection
	 * unexpectedly\n\tThis probably means ...\n": three lines, of which the log keeps the first. */
	JQ_POLL_UNTIL(jq_svc_log_count(&fx.svc, "notify: listening on") >= 1, 10000, "the listener");
	assert_true(jq_db_ll("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
			     " WHERE datname = current_database() AND application_name LIKE 'jobqd%%'") >= 2);
	/* The listener notices at once and reconnects; the rescuer on its next sweep. */
	JQ_POLL_UNTIL(jq_svc_log_count(&fx.svc, "notify: listening on") >= 2, 15000, "the listener to reconnect");
	JQ_POLL_UNTIL(jq_svc_log_count(&fx.svc, "rescuer: ") >= 1, 5000, "the rescuer to notice");
	char first[256];
	int n = log_lines_not_starting_with_a_timestamp(&fx.svc, first, sizeof(first));
	if (n != 0)
		fail_msg("%d log lines continue a message, the first: '%s'", n, first);
	assert_true(jq_svc_log_contains(&fx.svc, "notify: connection lost: "));
}

/* ================= A shared token ================= */

static int start_with_token(void **state)
{
	(void)state;
	static const char *const flags[] = { "--auth-token=s3cret-token", NULL };
	return start("svc_auth", NULL, flags);
}

SVC_TEST(with_an_auth_token_only_requests_that_carry_it_are_served)
{
	Jobq__V1__StatsRequest req = JOBQ__V1__STATS_REQUEST__INIT;
	jq_api_expect(JQ_METHOD("Stats"), &req, 16, NULL);
	fx.rpc.auth_token = "s3cret-token-but-longer";
	jq_api_expect(JQ_METHOD("Stats"), &req, 16, NULL);
	fx.rpc.auth_token = "s3cret-toke";
	jq_api_expect(JQ_METHOD("Stats"), &req, 16, NULL);
	/* Checked before the method is looked up: an anonymous caller learns nothing. */
	fx.rpc.auth_token = NULL;
	jq_api_expect("/jobq.v1.JobQueue/Nope", &req, 16, NULL);
	fx.rpc.auth_token = "s3cret-token";
	JQ_FREE(jq_api_ok(JQ_METHOD("Stats"), &req, &jobq__v1__stats_response__descriptor));
	assert_true(jq_enqueue_one("authorised", "x") > 0);
}

/* ================= SIGTERM with requests in flight ================= */

enum { SENDERS = 8, BATCH = 20, MAX_REQUESTS = 4000 };

typedef struct sender {
	const char *url;
	int index;
	int *stop;
	int replies;     /* requests answered */
	int closed;      /* requests ended by the connection closing (at most one) */
	int acked[MAX_REQUESTS];  /* enqueue batches acknowledged (their numbers) */
	int nacked;
	int64_t *claimed;         /* ids received from Claim */
	size_t nclaimed;
	char error[256];
} sender;

static int stopped(const sender *s)
{
	return __atomic_load_n(s->stop, __ATOMIC_SEQ_CST);
}

static void count_reply(sender *s)
{
	__atomic_add_fetch(&s->replies, 1, __ATOMIC_SEQ_CST);
}

/* one_request sends request k (Enqueue when even, Claim when odd); returns false to stop. */
static bool one_request(sender *s, jq_rpc_sock *sock, int k)
{
	char tags[BATCH][48], worker[32];
	Jobq__V1__JobSpec specs[BATCH], *sp[BATCH];
	Jobq__V1__EnqueueRequest enq = JOBQ__V1__ENQUEUE_REQUEST__INIT;
	Jobq__V1__ClaimRequest claim = JOBQ__V1__CLAIM_REQUEST__INIT;
	Jobq__V1__RpcResponse *resp = NULL;
	const ProtobufCMessage *req;

	if (k % 2 == 0) {
		for (int i = 0; i < BATCH; i++) {
			jobq__v1__job_spec__init(&specs[i]);
			snprintf(tags[i], sizeof(tags[i]), "s%d-b%d-%d", s->index, k, i);
			specs[i].queue = "sigterm";
			specs[i].payload.data = (uint8_t *)tags[i];
			specs[i].payload.len = strlen(tags[i]);
			sp[i] = &specs[i];
		}
		enq.n_jobs = BATCH;
		enq.jobs = sp;
		req = &enq.base;
	} else {
		snprintf(worker, sizeof(worker), "sender-%d", s->index);
		claim.queue = "sigterm";
		claim.limit = 5;
		claim.worker_id = worker;
		claim.lease_seconds = 600;
		req = &claim.base;
	}
	int rv = jq_rpc_invoke(sock, k % 2 == 0 ? JQ_METHOD("Enqueue") : JQ_METHOD("Claim"), req, 0, &resp);
	if (rv == NNG_ECONNRESET || rv == NNG_ECLOSED) {
		s->closed++;
		return false;
	}
	if (rv != 0) {
		snprintf(s->error, sizeof(s->error), "request %d: %s", k, nng_strerror(rv));
		return false;
	}
	if (resp->code != 0) {
		snprintf(s->error, sizeof(s->error), "request %d answered %u: %s", k, resp->code, resp->message);
		jobq__v1__rpc_response__free_unpacked(resp, NULL);
		return false;
	}
	if (k % 2 == 0) {
		s->acked[s->nacked++] = k;
	} else {
		Jobq__V1__ClaimResponse *cr = jobq__v1__claim_response__unpack(NULL, resp->payload.len,
									      resp->payload.data);
		if (cr == NULL) {
			snprintf(s->error, sizeof(s->error), "request %d: undecodable ClaimResponse", k);
			jobq__v1__rpc_response__free_unpacked(resp, NULL);
			return false;
		}
		for (size_t i = 0; i < cr->n_jobs && s->nclaimed < MAX_REQUESTS * 5; i++)
			s->claimed[s->nclaimed++] = cr->jobs[i]->id;
		JQ_FREE(cr);
	}
	jobq__v1__rpc_response__free_unpacked(resp, NULL);
	count_reply(s);
	return true;
}

static void *sender_main(void *arg)
{
	sender *s = arg;
	jq_rpc_sock sock;
	if (jq_rpc_open(&sock, s->url, 10000) != 0) {
		snprintf(s->error, sizeof(s->error), "cannot open a socket");
		return NULL;
	}
	/* A request that cannot even be sent (the service is gone) is not "in flight": give up
	 * quickly rather than wait for a connection that will not come. */
	nng_socket_set_ms(sock.sock, NNG_OPT_SENDTIMEO, 500);
	for (int k = 0; k < MAX_REQUESTS && !stopped(s); k++) {
		if (jq_rpc_pipes_removed(&sock) > 0)
			break;
		if (!one_request(s, &sock, k))
			break;
	}
	/* A send that timed out after the close is not an error. */
	if (strstr(s->error, "Timed out") != NULL && jq_rpc_pipes_removed(&sock) > 0)
		s->error[0] = '\0';
	jq_rpc_close(&sock);
	return NULL;
}

static int start_for_sigterm(void **state)
{
	(void)state;
	static const char *const flags[] = { "--db-pool-size=4", "--rpc-contexts=16", NULL };
	return start("svc_sigterm", NULL, flags);
}

static int total_replies(sender *s, int n)
{
	int t = 0;
	for (int i = 0; i < n; i++)
		t += __atomic_load_n(&s[i].replies, __ATOMIC_SEQ_CST);
	return t;
}

SVC_TEST(sigterm_with_requests_in_flight_answers_them_and_exits_0)
{
	static sender snd[SENDERS];
	pthread_t th[SENDERS];
	int stop_flag = 0;
	for (int i = 0; i < SENDERS; i++) {
		snd[i] = (sender){ .url = fx.svc.rpc_url, .index = i, .stop = &stop_flag };
		snd[i].claimed = malloc(MAX_REQUESTS * 5 * sizeof(int64_t));
		assert_non_null(snd[i].claimed);
		assert_int_equal(pthread_create(&th[i], NULL, sender_main, &snd[i]), 0);
	}
	/* Let traffic flow, then SIGTERM in the middle of it. */
	long long deadline = jq_mono_ms() + 10000;
	while (total_replies(snd, SENDERS) < 200 && jq_mono_ms() < deadline)
		jq_sleep_ms(5);
	int before_kill = total_replies(snd, SENDERS);
	long long t_kill = jq_mono_ms();
	assert_int_equal(kill(fx.svc.pid, SIGTERM), 0);
	bool exited = jq_svc_wait_exit(&fx.svc, 10000);
	long long took = jq_mono_ms() - t_kill;
	__atomic_store_n(&stop_flag, 1, __ATOMIC_SEQ_CST);
	for (int i = 0; i < SENDERS; i++)
		pthread_join(th[i], NULL);

	assert_true(before_kill >= 200);
	if (!exited)
		fail_msg("jobqd did not exit within 10 s of SIGTERM");
	if (fx.svc.exit_status != 0)
		fail_msg("jobqd exited with status %d after SIGTERM", fx.svc.exit_status);
	if (took > 5000)
		fail_msg("jobqd took %lld ms to exit after SIGTERM", took);
	for (int i = 0; i < SENDERS; i++) {
		if (snd[i].error[0] != '\0')
			fail_msg("sender %d: %s", i, snd[i].error);
	}

	/* Nothing half-done: every batch is all there or not at all; every batch in the database was
	 * acknowledged (no reply lost for work that was done); every claimed job is processing
	 * under a lease someone was told about, and no other job is. */
	assert_int_equal(jq_db_ll("SELECT count(*) FROM (SELECT substring(convert_from(payload, 'UTF8')"
				  " FROM '^s[0-9]+-b[0-9]+') AS tag, count(*) AS n FROM job_queue GROUP BY 1) t"
				  " WHERE n <> %d", BATCH), 0);
	long long batches = jq_db_ll("SELECT count(DISTINCT substring(convert_from(payload, 'UTF8')"
				     " FROM '^s[0-9]+-b[0-9]+')) FROM job_queue");
	long long acked = 0, claimed = 0;
	for (int i = 0; i < SENDERS; i++) {
		acked += snd[i].nacked;
		claimed += (long long)snd[i].nclaimed;
		for (int k = 0; k < snd[i].nacked; k++) {
			if (jq_db_ll("SELECT count(*) FROM job_queue WHERE payload = convert_to('s%d-b%d-0', 'UTF8')",
				     i, snd[i].acked[k]) != 1)
				fail_msg("acknowledged batch s%d-b%d is not in the database", i, snd[i].acked[k]);
		}
		for (size_t k = 0; k < snd[i].nclaimed; k++) {
			char *who = jq_db_str("SELECT coalesce((SELECT curr_job_status || '/' || lease_owner FROM job_queue"
					      " WHERE id = %lld), 'missing')", (long long)snd[i].claimed[k]);
			char want[64];
			snprintf(want, sizeof(want), "archive_processing/sender-%d", i);
			if (strcmp(who, want) != 0) {
				fail_msg("job %lld claimed by sender %d is %s", (long long)snd[i].claimed[k], i, who);
			}
			free(who);
		}
		free(snd[i].claimed);
	}
	if (batches != acked)
		fail_msg("%lld batches are in the database but %lld were acknowledged: replies were lost",
			 batches, acked);
	assert_int_equal(jq_db_ll("SELECT count(*) FROM job_queue WHERE curr_job_status = 'archive_processing'"), claimed);
	assert_true(jq_svc_log_contains(&fx.svc, "SIGTERM"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(retention_deletes_completed_and_cancelled_jobs_once_old_and_keeps_the_others,
						start_retention, stop),
		cmocka_unit_test_setup_teardown(without_a_database_every_method_answers_unavailable_quickly,
						start_without_db, stop),
		cmocka_unit_test_setup_teardown(without_a_database_jobqd_says_so_once, start_without_db, stop),
		cmocka_unit_test_setup_teardown(sessions_ended_by_the_server_log_one_line_each,
						start_for_terminated, stop),
		cmocka_unit_test_setup_teardown(with_an_auth_token_only_requests_that_carry_it_are_served,
						start_with_token, stop),
		cmocka_unit_test_setup_teardown(sigterm_with_requests_in_flight_answers_them_and_exits_0,
						start_for_sigterm, stop),
	};
	return cmocka_run_group_tests_name("service life", tests, NULL, NULL);
}
