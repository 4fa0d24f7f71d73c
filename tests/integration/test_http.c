/*
 * test_http — jobqd's operator endpoints against a real jobqd: /healthz, /readyz (ready, then
 * 503 with a reason while the test cluster is stopped, then ready again once it is back), and
 * /metrics (every series the manual names is there after some requests, and every line parses
 * as the Prometheus text format; jobs counted by queue, per job of a batch, with a bounded number
 * of queue series; the process_* series; the job counts in the first scrape of a fresh jobqd, or
 * an age of +Inf when its database is down).
 *
 * The readiness test stops the cluster that every test shares; it always starts it again on the
 * same port (JOBQ_PG_PORT) and waits until it answers, also when an assertion failed.
 */
#include <ctype.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "jq_code.h"
#include "jq_rpc_call.h"
#include "jq_svc.h"
#include "jq_svc_api.h"
#include "jq_test.h"

/* The label set of the job counters' overflow series: no queue name can spell it. */
#define OTHER_QUEUE_LABEL "{queue=\"(other)\"}"

static jq_api_svc fx;

static jq_http_resp resp;

static void get_ok(const char *path)
{
	if (jq_svc_http_get(fx.svc.http_port, path, &resp) != 0)
		fail_msg("GET %s: no HTTP answer", path);
}

/* wait_status_on polls path until it answers `status` (true) or timeout_ms passes (false). */
static bool wait_status_on(int port, const char *path, int status, int timeout_ms)
{
	long long deadline = jq_mono_ms() + timeout_ms;
	do {
		if (jq_svc_http_get(port, path, &resp) == 0 && resp.status == status)
			return true;
		jq_sleep_ms(100);
	} while (jq_mono_ms() < deadline);
	return false;
}

static bool wait_status(const char *path, int status, int timeout_ms)
{
	return wait_status_on(fx.svc.http_port, path, status, timeout_ms);
}

static int setup(void **state)
{
	/* JSON logs at debug level (the later flag wins over jq_svc's text): every request logged. */
	static const char *const flags[] = { "--rescue-interval-ms=100", "--backoff-base-ms=10",
					     "--backoff-max-ms=20", "--log-format=json",
					     "--log-level=debug", "--auth-token=tok-SECRET-42", NULL };
	(void)state;
	if (jq_api_svc_start(&fx, "jq_http_test", NULL, flags) != 0)
		return -1;
	fx.rpc.auth_token = "tok-SECRET-42";
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	return jq_api_svc_stop(&fx, 10000);
}

static void test_healthz(void **state)
{
	(void)state;
	/* HTTP starts last, a moment after the RPC listener jq_svc_start waited for. */
	if (!wait_status("/healthz", 200, 10000))
		fail_msg("/healthz did not answer 200");
	assert_string_equal(resp.body, "ok\n");
	get_ok("/nothing-here");
	assert_int_equal(resp.status, 404);
}

static void test_readyz_ready(void **state)
{
	(void)state;
	if (!wait_status("/readyz", 200, 15000))
		fail_msg("/readyz never answered 200; last %d: %s", resp.status, resp.body);
	assert_string_equal(resp.body, "ready\n");
}

/* ---- Prometheus text format ---- */

static const char *skip_name(const char *p)
{
	if (!(isalpha((unsigned char)*p) || *p == '_' || *p == ':'))
		return NULL;
	while (isalnum((unsigned char)*p) || *p == '_' || *p == ':')
		p++;
	return p;
}

/* skip_labels parses {name="value",...}; returns the character after '}' or NULL. */
static const char *skip_labels(const char *p)
{
	if (*p != '{')
		return p;
	p++;
	while (*p != '}') {
		if ((p = skip_name(p)) == NULL || *p++ != '=' || *p++ != '"')
			return NULL;
		while (*p != '"') {
			if (*p == '\0' || *p == '\n')
				return NULL;
			if (*p == '\\' && (p[1] == '\\' || p[1] == '"' || p[1] == 'n'))
				p++;
			p++;
		}
		p++;
		if (*p == ',')
			p++;
		else if (*p != '}')
			return NULL;
	}
	return p + 1;
}

/* sample_line_ok: `name{labels} value` (labels optional), value a float, +Inf, -Inf or NaN. */
static bool sample_line_ok(const char *line)
{
	const char *p = skip_name(line);
	if (p == NULL || (p = skip_labels(p)) == NULL || *p++ != ' ')
		return false;
	if (!strcmp(p, "+Inf") || !strcmp(p, "-Inf") || !strcmp(p, "NaN"))
		return true;
	char *end;
	errno = 0;
	strtod(p, &end);
	return end != p && *end == '\0' && errno == 0;
}

static void check_prometheus(const char *text)
{
	char *copy = strdup(text), *save = NULL;
	int samples = 0;
	assert_non_null(copy);
	assert_true(strlen(text) > 0 && text[strlen(text) - 1] == '\n');
	for (char *l = strtok_r(copy, "\n", &save); l != NULL; l = strtok_r(NULL, "\n", &save)) {
		if (l[0] == '#') {
			if (strncmp(l, "# HELP ", 7) != 0 && strncmp(l, "# TYPE ", 7) != 0)
				fail_msg("unexpected comment line: %s", l);
			continue;
		}
		if (!sample_line_ok(l))
			fail_msg("not a Prometheus sample line: '%s'", l);
		samples++;
	}
	free(copy);
	assert_true(samples > 20);
}

static void expect_series(const char *text, const char *series)
{
	if (strstr(text, series) == NULL)
		fail_msg("/metrics lacks '%s':\n%s", series, text);
}

/* drive makes one job of each kind of outcome and some errors, so the counters move. */
static void drive(void)
{
	int64_t token, id;
	Jobq__V1__JobStatus st;
	id = jq_enqueue_one("httpq", "payload-SECRET-4711");
	id = jq_claim_one("httpq", "w1", 30, &token);
	assert_int_equal(jq_complete1(id, token), JQ_OK);
	jq_enqueue_one("httpq", "b");
	id = jq_claim_one("httpq", "w1", 30, &token);
	assert_int_equal(jq_fail1(id, token, "boom", false, 0, "w1", &st, NULL), JQ_OK);
	assert_int_equal(st, JOBQ__V1__JOB_STATUS__JOB_STATUS_ARCHIVE_PENDING);
	id = jq_claim_one_within("httpq", "w1", 30, 5000, &token);
	assert_int_equal(jq_fail1(id, token, "boom", true, 0, "w1", &st, NULL), JQ_OK);
	assert_int_equal(jq_complete1(id, token + 1000), JQ_FAILED_PRECONDITION);
	/* A lease that runs out: the rescuer (every 100 ms here) takes the job back. */
	jq_enqueue_one("httpq", "c");
	jq_claim_one("httpq", "w1", 1, &token);
	/* A job an hour ahead: pending and scheduled, once each. */
	jq_spec later = { .queue = "httpsched", .delay_ms = 3600 * 1000 };
	jq_enqueue(&later, 1, NULL);
	Jobq__V1__StatsRequest sreq = JOBQ__V1__STATS_REQUEST__INIT;
	assert_int_equal(jq_api_code("/jobq.v1.JobQueue/Nope", &sreq, NULL, NULL), JQ_UNIMPLEMENTED);
}

static void test_metrics(void **state)
{
	(void)state;
	drive();
	/* The finished jobs are estimated from the table's statistics: there are some once analyzed. */
	jq_db_do("ANALYZE job_queue");
	get_ok("/metrics"); /* the first scrape starts the job counts */
	long long deadline = jq_mono_ms() + 15000;
	do {
		jq_sleep_ms(200);
		get_ok("/metrics");
	} while ((strstr(resp.body, "jobq_jobs{queue=\"httpq\",state=\"archive_failed\"} 1") == NULL ||
		  strstr(resp.body, "jobq_jobs_finished_estimate{state=\"archive_completed\"} ") == NULL ||
		  strstr(resp.body, "jobq_leases_rescued_total 0\n") != NULL) &&
		 jq_mono_ms() < deadline);
	assert_int_equal(resp.status, 200);
	check_prometheus(resp.body);
	const char *const want[] = {
		"jobq_build_info{version=\"",
		"jobq_rpc_requests_total{method=\"Enqueue\",code=\"OK\"} 4\n",
		"jobq_rpc_requests_total{method=\"Complete\",code=\"FAILED_PRECONDITION\"} 1\n",
		"jobq_rpc_requests_total{method=\"other\",code=\"UNIMPLEMENTED\"} 1\n",
		"# TYPE jobq_rpc_duration_seconds histogram\n",
		"jobq_rpc_duration_seconds_bucket{method=\"Claim\",le=\"0.005\"} ",
		"jobq_rpc_duration_seconds_bucket{method=\"Claim\",le=\"+Inf\"} ",
		"jobq_rpc_duration_seconds_sum{method=\"Fail\"} ",
		"jobq_rpc_duration_seconds_count{method=\"Fail\"} 2\n",
		"jobq_jobs{queue=\"httpq\",state=\"archive_failed\"} 1\n",
		"jobq_jobs_scheduled{queue=\"httpq\"} ",
		"jobq_jobs{queue=\"httpsched\",state=\"archive_pending\"} 1\n",
		"jobq_jobs_scheduled{queue=\"httpsched\"} 1\n",
		"jobq_jobs_finished_estimate{state=\"archive_completed\"} ",
		"jobq_jobs_finished_estimate{state=\"archive_cancelled\"} ",
		"jobq_job_retries_total 1\n",
		"jobq_job_failures_total 1\n",
		"jobq_notifications_received_total ",
		"jobq_notifications_published_total ",
		"jobq_notify_scans_total ",
		"jobq_jobs_deleted_total ",
		"jobq_db_pool_size 4\n",
		"jobq_db_pool_in_use ",
		"jobq_rpc_requests_waiting 0\n",
		"jobq_longpoll_waiters 0\n",
		"jobq_database_up 1\n",
		"jobq_notify_listening 1\n",
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		expect_series(resp.body, want[i]);
	if (strstr(resp.body, "jobq_leases_rescued_total 0\n") != NULL)
		fail_msg("no rescued lease counted:\n%s", resp.body);
	if (strstr(resp.body, "jobq_notify_scans_total 0\n") != NULL)
		fail_msg("the listener's first scan was not counted:\n%s", resp.body);
	/* Finished jobs are not counted by queue (that count grows with the table). */
	if (strstr(resp.body, "jobq_jobs{queue=\"httpq\",state=\"archive_completed\"}") != NULL)
		fail_msg("completed jobs counted by queue:\n%s", resp.body);
	/* Payloads never reach the metrics, and queue labels are the only free text. */
	assert_null(strstr(resp.body, "boom"));
	assert_null(strstr(resp.body, "SECRET"));
}

/* family_sum adds up the samples of one metric with labels (`name{...} v`), counting them in
 * *n (may be NULL); `skip` (a label set, may be NULL) is left out. */
static double family_sum(const char *text, const char *name, const char *skip, int *n)
{
	size_t len = strlen(name);
	double sum = 0;
	if (n != NULL)
		*n = 0;
	for (const char *line = text; *line != '\0';) {
		const char *nl = strchr(line, '\n');
		if (strncmp(line, name, len) == 0 && line[len] == '{' &&
		    (skip == NULL || strncmp(line + len, skip, strlen(skip)) != 0)) {
			const char *sp = strchr(line, ' ');
			assert_non_null(sp);
			sum += strtod(sp + 1, NULL);
			if (n != NULL)
				(*n)++;
		}
		if (nl == NULL)
			break;
		line = nl + 1;
	}
	return sum;
}

static double scrape_value(const char *series)
{
	get_ok("/metrics");
	assert_int_equal(resp.status, 200);
	return jq_svc_metric_in(resp.body, series);
}

/* leases_of turns a Claim's jobs [from, from + n) into JobLease messages (msgs, ptrs: n each). */
static void leases_of(const Jobq__V1__ClaimResponse *c, size_t from, size_t n, Jobq__V1__JobLease *msgs,
		      Jobq__V1__JobLease **ptrs)
{
	assert_true(from + n <= c->n_jobs);
	for (size_t i = 0; i < n; i++) {
		jobq__v1__job_lease__init(&msgs[i]);
		msgs[i].id = c->jobs[from + i]->id;
		msgs[i].lease_token = c->jobs[from + i]->lease_token;
		ptrs[i] = &msgs[i];
	}
}

static void complete_batch(Jobq__V1__JobLease **leases, size_t n)
{
	Jobq__V1__CompleteRequest req = JOBQ__V1__COMPLETE_REQUEST__INIT;
	req.n_jobs = n;
	req.jobs = leases;
	JQ_FREE(jq_api_ok(JQ_METHOD("Complete"), &req, &jobq__v1__complete_response__descriptor));
}

/* fail_batch fails jobs [from, from + n) of a Claim in one call. */
static void fail_batch(const Jobq__V1__ClaimResponse *c, size_t from, size_t n, bool final)
{
	Jobq__V1__FailRequest req = JOBQ__V1__FAIL_REQUEST__INIT;
	Jobq__V1__JobFailure msgs[64], *ptrs[64];
	assert_true(n <= 64 && from + n <= c->n_jobs);
	for (size_t i = 0; i < n; i++) {
		jobq__v1__job_failure__init(&msgs[i]);
		msgs[i].id = c->jobs[from + i]->id;
		msgs[i].lease_token = c->jobs[from + i]->lease_token;
		msgs[i].error = "counted";
		msgs[i].final = final;
		ptrs[i] = &msgs[i];
	}
	req.n_jobs = n;
	req.jobs = ptrs;
	req.worker_id = "w-count";
	JQ_FREE(jq_api_ok(JQ_METHOD("Fail"), &req, &jobq__v1__fail_response__descriptor));
}

/* Jobs by queue and what happened to them: a batch counts each of its jobs, per queue; a repeat
 * of a call that already succeeded counts nothing; the older totals are the sums. */
static void test_job_counters(void **state)
{
	Jobq__V1__JobLease lm[64], *lp[64];
	(void)state;
	jq_enqueue_many("cntq", 50, NULL);
	assert_int_equal(scrape_value("jobq_jobs_enqueued_total{queue=\"cntq\"}"), 50);
	assert_int_equal(jq_svc_metric_in(resp.body, "jobq_jobs_completed_total{queue=\"cntq\"}"), 0);

	Jobq__V1__ClaimResponse *c = jq_claim("cntq", 50, "w-count", 60);
	assert_int_equal(c->n_jobs, 50);
	leases_of(c, 0, 20, lm, lp);
	complete_batch(lp, 20);
	complete_batch(lp, 20); /* a repeat (its reply lost, say): OK, and no job completed again */
	fail_batch(c, 20, 10, false);
	fail_batch(c, 30, 5, true);
	/* One batch over two queues; a job whose attempts are used up ends failed without final. */
	jq_spec once = { .queue = "cntq2", .max_attempts = 1 };
	jq_enqueue(&once, 1, NULL);
	jq_enqueue(&once, 1, NULL);
	Jobq__V1__ClaimResponse *c2 = jq_claim("cntq2", 2, "w-count", 60);
	assert_int_equal(c2->n_jobs, 2);
	leases_of(c, 35, 1, lm, lp);
	leases_of(c2, 0, 1, lm + 1, lp + 1);
	complete_batch(lp, 2);
	fail_batch(c2, 1, 1, false);
	JQ_FREE(c);
	JQ_FREE(c2);

	get_ok("/metrics");
	check_prometheus(resp.body);
	const char *const want[] = {
		"# TYPE jobq_jobs_enqueued_total counter\n",
		"jobq_jobs_enqueued_total{queue=\"cntq\"} 50\n",
		"jobq_jobs_completed_total{queue=\"cntq\"} 21\n",
		"jobq_jobs_retried_total{queue=\"cntq\"} 10\n",
		"jobq_jobs_failed_total{queue=\"cntq\"} 5\n",
		"jobq_jobs_enqueued_total{queue=\"cntq2\"} 2\n",
		"jobq_jobs_completed_total{queue=\"cntq2\"} 1\n",
		"jobq_jobs_retried_total{queue=\"cntq2\"} 0\n",
		"jobq_jobs_failed_total{queue=\"cntq2\"} 1\n",
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		expect_series(resp.body, want[i]);
	assert_int_equal(family_sum(resp.body, "jobq_jobs_retried_total", NULL, NULL),
			 jq_svc_metric_in(resp.body, "jobq_job_retries_total"));
	assert_int_equal(family_sum(resp.body, "jobq_jobs_failed_total", NULL, NULL),
			 jq_svc_metric_in(resp.body, "jobq_job_failures_total"));
	assert_null(strstr(resp.body, OTHER_QUEUE_LABEL));
}

/* The process_* series of every Prometheus client, with plausible values. */
static void test_process_metrics(void **state)
{
	struct rlimit rl;
	(void)state;
	double cpu = scrape_value("process_cpu_seconds_total");
	check_prometheus(resp.body);
	double rss = jq_svc_metric_in(resp.body, "process_resident_memory_bytes");
	double vsz = jq_svc_metric_in(resp.body, "process_virtual_memory_bytes");
	double start = jq_svc_metric_in(resp.body, "process_start_time_seconds");
	double fds = jq_svc_metric_in(resp.body, "process_open_fds");
	double max_fds = jq_svc_metric_in(resp.body, "process_max_fds");
	long rss_kb = jq_svc_status_kb(&fx.svc, "VmRSS");
	double now = (double)jq_now_ms() / 1000;
	assert_true(cpu >= 0);
	/* The same process as /proc/PID/status sees, give or take what moved between the reads. */
	assert_true(rss_kb > 0);
	if (rss < rss_kb * 1024.0 / 2 || rss > rss_kb * 1024.0 * 2)
		fail_msg("process_resident_memory_bytes %.0f, VmRSS %ld kB", rss, rss_kb);
	assert_true(vsz >= rss);
	/* jobqd started with this program's setup (whole seconds: the kernel's boot time is). */
	if (start < now - 3600 || start > now + 1)
		fail_msg("process_start_time_seconds %.3f, now %.3f", start, now);
	/* Its sockets, database connections and log at least; the limit is the one it inherited. */
	assert_true(fds > 5);
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
	if (rl.rlim_cur != RLIM_INFINITY)
		assert_int_equal(max_fds, (double)rl.rlim_cur);
	assert_true(fds < max_fds);
	assert_true(scrape_value("process_cpu_seconds_total") >= cpu);
}

/* A second jobqd on the test database, fresh counters and all; its RPC socket in *sock. */
static void start_second(jq_svc *svc, const char *name, const char *url, jq_rpc_sock *sock)
{
	jq_svc_start(svc, name, url, NULL);
	if (!wait_status_on(svc->http_port, "/healthz", 200, 10000))
		fail_msg("%s: /healthz did not answer", name);
	if (sock != NULL) {
		assert_int_equal(jq_rpc_open(sock, svc->rpc_url, 10000), 0);
		jq_api_use(sock, fx.pg);
	}
}

static void stop_second(jq_svc *svc, jq_rpc_sock *sock, bool ok)
{
	if (sock != NULL) {
		jq_rpc_close(sock);
		jq_api_use(&fx.rpc, fx.pg);
	}
	int st = jq_svc_stop(svc, 10000);
	if (!ok || st != 0)
		jq_svc_print_log(svc);
	jq_svc_remove_log(svc);
	assert_int_equal(st, 0);
}

/* The first scrape after a start carries the job counts (an alert on an absent series would
 * fire after every restart), and the counters of the queues they name, at 0. */
static void test_first_scrape_has_jobs(void **state)
{
	jq_svc svc2;
	(void)state;
	jq_enqueue_one("firstq", "x");
	start_second(&svc2, "http-first-scrape", fx.db_url, NULL);
	int got = jq_svc_http_get(svc2.http_port, "/metrics", &resp);
	bool ok = got == 0 && resp.status == 200 &&
		  strstr(resp.body, "jobq_jobs{queue=\"firstq\",state=\"archive_pending\"} 1\n") != NULL &&
		  strstr(resp.body, "jobq_oldest_due_job_age_seconds{queue=\"firstq\"} ") != NULL &&
		  strstr(resp.body, "jobq_jobs_enqueued_total{queue=\"firstq\"} 0\n") != NULL &&
		  jq_svc_metric_in(resp.body, "jobq_jobs_age_seconds") >= 0 &&
		  jq_svc_metric_in(resp.body, "jobq_jobs_age_seconds") < 60;
	stop_second(&svc2, NULL, ok);
	if (!ok)
		fail_msg("the first scrape lacks the job counts:\n%s", resp.body);
	check_prometheus(resp.body);
}

/* With the database down from the start, there are no job counts to give: the first scrape says
 * so (age +Inf) instead of showing numbers it never read. */
static void test_first_scrape_database_down(void **state)
{
	jq_svc svc2;
	char url[128];
	(void)state;
	int port = jq_free_port(); /* nothing listens there */
	assert_true(port > 0);
	snprintf(url, sizeof(url), "postgres://jobq@127.0.0.1:%d/nothing?connect_timeout=2", port);
	start_second(&svc2, "http-first-scrape-down", url, NULL);
	int got = jq_svc_http_get(svc2.http_port, "/metrics", &resp);
	bool ok = got == 0 && resp.status == 200 && strstr(resp.body, "jobq_jobs_age_seconds +Inf\n") != NULL &&
		  strstr(resp.body, "\njobq_jobs{") == NULL && strstr(resp.body, "jobq_database_up 1\n") == NULL;
	stop_second(&svc2, NULL, ok);
	if (!ok)
		fail_msg("expected no job counts and an age of +Inf:\n%s", resp.body);
	check_prometheus(resp.body);
}

/* Queue labels are client-chosen: past JQ_METRICS_MAX_QUEUES queues, jobs count under
 * "(other)", and nothing is lost. */
static void test_job_counters_cap(void **state)
{
	enum { NQ = 203 };
	static char names[NQ][16];
	jq_spec specs[NQ];
	jq_svc svc2;
	jq_rpc_sock sock;
	int n = 0;
	(void)state;
	start_second(&svc2, "http-counter-cap", fx.db_url, &sock);
	for (int i = 0; i < NQ; i++) {
		snprintf(names[i], sizeof(names[i]), "zcap%03d", i);
		specs[i] = (jq_spec){ .queue = names[i] };
	}
	jq_enqueue(specs, NQ, NULL);
	bool got = jq_svc_http_get(svc2.http_port, "/metrics", &resp) == 0 && resp.status == 200;
	double total = got ? family_sum(resp.body, "jobq_jobs_enqueued_total", NULL, NULL) : -1;
	double named = got ? family_sum(resp.body, "jobq_jobs_enqueued_total", OTHER_QUEUE_LABEL, &n) : -1;
	double other = got ? jq_svc_metric_in(resp.body, "jobq_jobs_enqueued_total" OTHER_QUEUE_LABEL) : -1;
	bool ok = got && total == NQ && n == 200 && other >= NQ - 200 && named + other == NQ;
	stop_second(&svc2, &sock, ok);
	jq_db_do("DELETE FROM job_queue WHERE queue LIKE 'zcap%%'");
	if (!ok)
		fail_msg("%d queue series (200 expected), %.0f jobs in all (%d), %.0f under (other):\n%s", n,
			 total, NQ, other, resp.body);
	check_prometheus(resp.body);
}

/* The log: one JSON object per request with id, method, code and duration; never a payload, a
 * worker's error text or the token. */
static void test_log_lines(void **state)
{
	(void)state;
	Jobq__V1__StatsRequest sreq = JOBQ__V1__STATS_REQUEST__INIT;
	fx.rpc.auth_token = "wrong";
	assert_int_equal(jq_api_code("/jobq.v1.JobQueue/Stats", &sreq, NULL, NULL), JQ_UNAUTHENTICATED);
	fx.rpc.auth_token = "tok-SECRET-42";
	if (!jq_svc_log_contains(&fx.svc, "\"method\":\"/jobq.v1.JobQueue/Enqueue\",\"code\":\"OK\","
					  "\"grpc_code\":0,\"duration_ms\":") ||
	    !jq_svc_log_contains(&fx.svc, "\"request_id\":\"") ||
	    !jq_svc_log_contains(&fx.svc, "\"code\":\"UNAUTHENTICATED\",\"grpc_code\":16,") ||
	    !jq_svc_log_contains(&fx.svc, "{\"time\":\"")) {
		jq_svc_print_log(&fx.svc);
		fail_msg("request lines lack request_id/method/code/duration_ms (log above)");
	}
	if (jq_svc_log_contains(&fx.svc, "SECRET") || jq_svc_log_contains(&fx.svc, "boom")) {
		jq_svc_print_log(&fx.svc);
		fail_msg("a payload, an error text or the token reached the log (above)");
	}
}

/* ---- readiness while the database is away ---- */

static void cluster(const char *verb)
{
	char cmd[1024];
	const char *dir = jq_test_env("JOBQ_TEST_PG_DIR");
	const char *url = jq_test_env("JOBQ_TEST_DATABASE_URL");
	const char *port = strrchr(url, ':');
	/* The same port again: every later test keeps using JOBQ_TEST_DATABASE_URL. */
	snprintf(cmd, sizeof(cmd), "JOBQ_PG_PORT=%.*s %s/tests/harness/pgctl.sh %s '%s' >/dev/null",
		 port ? (int)strcspn(port + 1, "/") : 0, port ? port + 1 : "", jq_test_env("JOBQ_TEST_ROOT"),
		 verb, dir);
	if (system(cmd) != 0)
		fprintf(stderr, "test_http: '%s' failed\n", cmd);
}

static bool cluster_answers(void)
{
	return PQping(jq_test_env("JOBQ_TEST_DATABASE_URL")) == PQPING_OK;
}

static bool restart_pending;

static int restore_cluster(void **state)
{
	(void)state;
	if (!restart_pending)
		return 0;
	for (int i = 0; i < 3 && !cluster_answers(); i++)
		cluster("start");
	long long deadline = jq_mono_ms() + 30000;
	while (!cluster_answers() && jq_mono_ms() < deadline)
		jq_sleep_ms(100);
	restart_pending = false;
	return cluster_answers() ? 0 : -1;
}

static void test_readyz_database_down(void **state)
{
	(void)state;
	if (!wait_status("/readyz", 200, 15000))
		fail_msg("/readyz not ready before the test: %s", resp.body);
	PQfinish(fx.pg); /* our own connection would only break */
	fx.pg = NULL;
	restart_pending = true;
	cluster("stop");
	if (!wait_status("/readyz", 503, 10000))
		fail_msg("/readyz still %d with the database stopped: %s", resp.status, resp.body);
	/* The LISTEN session may notice first ("not listening ...", whose reason may quote libpq
	 * naming the database too); the ping's own reason follows within a second. */
	long long deadline = jq_mono_ms() + 5000;
	while (strncmp(resp.body, "database", 8) != 0 && jq_mono_ms() < deadline) {
		jq_sleep_ms(100);
		get_ok("/readyz");
	}
	assert_int_equal(resp.status, 503);
	if (strncmp(resp.body, "database", 8) != 0)
		fail_msg("503 without naming the database: %s", resp.body);
	/* libpq's first line after "database unreachable: ", not jq_db's "database unavailable: " again. */
	if (strstr(resp.body, "database unavailable") != NULL)
		fail_msg("the reason says the same twice: %s", resp.body);
	assert_non_null(strchr(resp.body, '\n'));
	assert_ptr_equal(strchr(resp.body, '\n'), resp.body + strlen(resp.body) - 1); /* one line */
	get_ok("/healthz");
	assert_int_equal(resp.status, 200); /* alive all the same: no restart for a database outage */
	get_ok("/metrics");
	expect_series(resp.body, "jobq_database_up 0\n");

	assert_int_equal(restore_cluster(NULL), 0);
	/* The listener reconnects with backoff (up to 5 s). */
	if (!wait_status("/readyz", 200, 20000))
		fail_msg("/readyz did not recover: %d %s", resp.status, resp.body);
}

/* ---- --max-connections: a connection beyond the limit is closed on arrival ---- */

static void test_max_connections(void **state)
{
	static const char *const flags[] = { "--max-connections=1", NULL };
	jq_svc svc2;
	jq_rpc_sock a, b;
	Jobq__V1__RpcResponse *r = NULL;
	jq_http_resp *m = &resp;
	(void)state;
	jq_svc_start(&svc2, "http-maxconn", fx.db_url, flags);
	/* jq_svc_start's own probe connection is closed, but nng counts it out asynchronously: the
	 * first client may be refused for a moment. */
	long long deadline = jq_mono_ms() + 5000;
	for (;;) {
		assert_int_equal(jq_rpc_open(&a, svc2.rpc_url, 1000), 0);
		int rv0 = jq_rpc_invoke(&a, "/jobq.v1.JobQueue/Stats", NULL, 0, &r);
		if (r != NULL)
			jobq__v1__rpc_response__free_unpacked(r, NULL);
		r = NULL;
		if (rv0 == 0)
			break;
		jq_rpc_close(&a);
		if (jq_mono_ms() > deadline)
			fail_msg("the first client was never served");
		jq_sleep_ms(100);
	}
	/* The second client's connections are closed as they arrive: no answer, ever. */
	assert_int_equal(jq_rpc_open(&b, svc2.rpc_url, 1500), 0);
	int rv = jq_rpc_invoke(&b, "/jobq.v1.JobQueue/Stats", NULL, 0, &r);
	if (r != NULL)
		jobq__v1__rpc_response__free_unpacked(r, NULL);
	jq_rpc_close(&b);
	bool got_metrics = false; /* HTTP starts a moment after the RPC listener */
	for (int i = 0; i < 50 && !got_metrics; i++)
		got_metrics = jq_svc_http_get(svc2.http_port, "/metrics", m) == 0 || (jq_sleep_ms(100), false);
	/* The first one is still served. */
	r = NULL;
	int rv_a = jq_rpc_invoke(&a, "/jobq.v1.JobQueue/Stats", NULL, 0, &r);
	if (r != NULL)
		jobq__v1__rpc_response__free_unpacked(r, NULL);
	jq_rpc_close(&a);
	int st = jq_svc_stop(&svc2, 10000);
	if (rv == 0 || rv_a != 0 || st != 0 || !got_metrics)
		jq_svc_print_log(&svc2);
	jq_svc_remove_log(&svc2);
	assert_int_not_equal(rv, 0);
	assert_int_equal(rv_a, 0);
	assert_int_equal(st, 0);
	assert_true(got_metrics);
	/* Not exactly 1: a refused connection is counted out asynchronously. */
	expect_series(m->body, "jobq_rpc_connections ");
	if (strstr(m->body, "jobq_rpc_connections_refused_total 0\n") != NULL)
		fail_msg("no refused connection counted:\n%s", m->body);
}

/* ---- --metrics-auth: /metrics for reader and admin bearer tokens only, probes open ---- */

#define TOK_PRODUCER "producer-token-http-0123456789"
#define TOK_WORKER "worker-token-http-0123456789"
#define TOK_READER "reader-token-http-0123456789"
#define TOK_ADMIN "admin-token-http-0123456789a"

static char creds_dir[64];

/* write_secret writes one file of a credentials directory, as a Secret volume holds it. */
static void write_secret(const char *name, const char *token)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/%s", creds_dir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(token, f);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(chmod(path, 0400), 0);
}

static void remove_creds(void)
{
	const char *const names[] = { "producer", "worker", "reader", "admin" };
	char path[128];
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", creds_dir, names[i]);
		unlink(path);
	}
	rmdir(creds_dir);
}

/* metrics_as GETs /metrics with one Authorization header value (NULL: none); the status. */
static int metrics_as(const jq_svc *svc, const char *authorization)
{
	char hdr[512] = "";
	if (authorization != NULL)
		snprintf(hdr, sizeof(hdr), "Authorization: %s\r\n", authorization);
	if (jq_svc_http_get_with(svc->http_port, "/metrics", hdr, &resp) != 0)
		return -1;
	return resp.status;
}

static void test_metrics_auth(void **state)
{
	static char flag[128];
	jq_svc svc2;
	(void)state;
	snprintf(creds_dir, sizeof(creds_dir), "/tmp/jq-http-creds-%d", (int)getpid());
	assert_int_equal(mkdir(creds_dir, 0700), 0);
	write_secret("producer", TOK_PRODUCER);
	write_secret("worker", TOK_WORKER "\n");
	write_secret("reader", TOK_READER "\n");
	write_secret("admin", TOK_ADMIN);
	snprintf(flag, sizeof(flag), "--credentials-file=%s", creds_dir);
	const char *const flags[] = { flag, "--metrics-auth=on", NULL };
	jq_svc_start(&svc2, "http-metrics-auth", fx.db_url, flags);

	/* The kubelet's probes carry no token. */
	long long deadline = jq_mono_ms() + 20000;
	while ((jq_svc_http_get(svc2.http_port, "/readyz", &resp) != 0 || resp.status != 200) &&
	       jq_mono_ms() < deadline)
		jq_sleep_ms(100);
	int readyz = resp.status;
	int healthz = jq_svc_http_get(svc2.http_port, "/healthz", &resp) == 0 ? resp.status : -1;

	int none = metrics_as(&svc2, NULL);
	bool challenge = none == 401 && strcasestr(resp.headers, "\r\nWWW-Authenticate: Bearer") != NULL;
	bool leaks = none == 200 || strstr(resp.body, "jobq_") != NULL;
	int unknown = metrics_as(&svc2, "Bearer not-a-known-token-0123456789");
	int basic = metrics_as(&svc2, "Basic cmVhZGVyOnJlYWRlcg==");
	int bare = metrics_as(&svc2, TOK_READER);
	int longer = metrics_as(&svc2, "Bearer " TOK_READER "x");
	int trailing = metrics_as(&svc2, "Bearer " TOK_READER " extra");
	int producer = metrics_as(&svc2, "Bearer " TOK_PRODUCER);
	int worker = metrics_as(&svc2, "Bearer " TOK_WORKER);
	int admin = metrics_as(&svc2, "Bearer " TOK_ADMIN);
	int reader = metrics_as(&svc2, "bearer   " TOK_READER); /* the scheme is case-insensitive */
	bool served = reader == 200 && strstr(resp.body, "jobq_build_info{") != NULL;

	int st = jq_svc_stop(&svc2, 10000);
	bool logged_token = jq_svc_log_contains(&svc2, TOK_READER) || jq_svc_log_contains(&svc2, TOK_PRODUCER);
	remove_creds();
	if (st != 0 || !served)
		jq_svc_print_log(&svc2);
	jq_svc_remove_log(&svc2);
	assert_int_equal(healthz, 200);
	assert_int_equal(readyz, 200);
	assert_int_equal(none, 401);
	assert_true(challenge);
	assert_false(leaks);
	assert_int_equal(unknown, 401);
	assert_int_equal(basic, 401);
	assert_int_equal(bare, 401);
	assert_int_equal(longer, 401);
	assert_int_equal(trailing, 401);
	assert_int_equal(producer, 403);
	assert_int_equal(worker, 403);
	assert_int_equal(admin, 200);
	assert_true(served);
	assert_false(logged_token);
	assert_int_equal(st, 0);
}

/* --metrics-auth=on with no credential to check would leave /metrics open: a start-up error. */
static void test_metrics_auth_needs_credentials(void **state)
{
	char cmd[512];
	(void)state;
	snprintf(cmd, sizeof(cmd),
		 "env -u JOBQ_AUTH_TOKEN -u JOBQ_AUTH_TOKEN_FILE -u JOBQ_CREDENTIALS_FILE "
		 "%s/bin/jobqd --database-url=postgres://nowhere/x --metrics-auth=on 2>&1",
		 jq_test_env("JOBQ_TEST_BUILD"));
	jq_test_command_exits(cmd, 2, "--metrics-auth=on needs credentials");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_healthz),
		cmocka_unit_test(test_readyz_ready),
		cmocka_unit_test(test_metrics),
		cmocka_unit_test(test_job_counters),
		cmocka_unit_test(test_process_metrics),
		cmocka_unit_test(test_first_scrape_has_jobs),
		cmocka_unit_test(test_first_scrape_database_down),
		cmocka_unit_test(test_job_counters_cap),
		cmocka_unit_test(test_log_lines),
		cmocka_unit_test(test_max_connections),
		cmocka_unit_test(test_metrics_auth),
		cmocka_unit_test(test_metrics_auth_needs_credentials),
		cmocka_unit_test_teardown(test_readyz_database_down, restore_cluster),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
