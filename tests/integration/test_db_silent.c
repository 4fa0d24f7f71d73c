/*
 * test_db_silent — database connections that go silent. A TCP proxy (tests/support/jq_proxy)
 * between jobqd and PostgreSQL is paused with SIGSTOP: its kernel still acknowledges what jobqd
 * sends, so nothing fails, nothing answers, and no TCP timeout ever fires. jobqd must notice
 * within bounded time anyway:
 *  - the LISTEN session through the proxy: /readyz reports the listener down with its reason,
 *    Claims then ask the database (a job enqueued meanwhile reaches a waiting Claim at once instead
 *    of after the wait), and after the proxy resumes the listener is back;
 *  - the request pool through the proxy: a request answers DEADLINE_EXCEEDED or UNAVAILABLE within
 *    its deadline, so does the next one (its reconnect through the silent proxy), /readyz fails,
 *    and requests succeed again once the proxy resumes;
 *  - jq_pgconn itself: a connection's socket carries jobqd's keepalives and user timeout unless
 *    the URL sets its own, jq_config's defaults are jq_pgconn's, and a connect or an answer from
 *    a silent peer ends at the deadline.
 */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "jq_clock.h"
#include "jq_code.h"
#include "jq_config.h"
#include "jq_pgconn.h"
#include "jq_proxy.h"
#include "jq_rpc_call.h"
#include "jq_svc.h"
#include "jq_svc_api.h"
#include "jq_test.h"

#define QUEUE "silent"
#define DEADLINE_MS 1500

static jq_api_svc fx;
static jq_proxy proxy;
static char *direct_url, *proxied_url;
static char url_flag[512];
static jq_http_resp resp;

/* ---- fixtures ---- */

/* start_through_proxy: a fresh database, the proxy in front of it, and jobqd with its request
 * connections (pool) or its LISTEN session (!pool) through the proxy, the others direct. */
static int start_through_proxy(const char *name, bool pool, const char *const *more)
{
	const char *flags[8];
	int n = 0;
	direct_url = jq_test_db_clone(name);
	jq_proxy_start(&proxy, direct_url);
	proxied_url = jq_proxy_url(&proxy, direct_url);
	snprintf(url_flag, sizeof(url_flag), "--listen-database-url=%s", pool ? direct_url : proxied_url);
	flags[n++] = url_flag;
	/* A reconnect through the paused proxy gives up after a second, not five. */
	flags[n++] = "--db-connect-timeout-ms=1000";
	for (int i = 0; more[i] != NULL && n < 7; i++)
		flags[n++] = more[i];
	flags[n] = NULL;
	return jq_api_svc_start(&fx, name, pool ? proxied_url : direct_url, flags);
}

static int setup_listen(void **state)
{
	static const char *const more[] = { "--listen-timeout-ms=500", NULL };
	(void)state;
	return start_through_proxy("jq_silent_listen", false, more);
}

static int setup_pool(void **state)
{
	static const char *const more[] = { "--db-pool-size=1", NULL };
	(void)state;
	return start_through_proxy("jq_silent_pool", true, more);
}

static int teardown(void **state)
{
	(void)state;
	/* jobqd's connections must not wait on a frozen proxy while it shuts down. */
	if (proxy.pid > 0)
		kill(proxy.pid, SIGCONT);
	int rc = jq_api_svc_stop(&fx, 15000);
	jq_proxy_stop(&proxy);
	free(direct_url);
	free(proxied_url);
	direct_url = proxied_url = NULL;
	return rc;
}

static int stop_proxy(void **state)
{
	(void)state;
	jq_proxy_stop(&proxy);
	return 0;
}

/* ---- helpers ---- */

/* wait_readyz polls /readyz until it answers `status` with a body containing `text` (NULL: any)
 * and returns how long that took, or fails the test after timeout_ms. */
static long long wait_readyz(int status, const char *text, int timeout_ms)
{
	long long start = jq_mono_ms();
	for (;;) {
		if (jq_svc_http_get(fx.svc.http_port, "/readyz", &resp) == 0 && resp.status == status &&
		    (text == NULL || strstr(resp.body, text) != NULL))
			return jq_mono_ms() - start;
		if (jq_mono_ms() - start > timeout_ms)
			fail_msg("/readyz did not answer %d%s%s within %d ms; last: %d %s", status,
				 text ? " with " : "", text ? text : "", timeout_ms, resp.status, resp.body);
		jq_sleep_ms(50);
	}
}

/* enqueue_within sends one Enqueue with a deadline of deadline_ms and returns its code; the test
 * fails when no answer comes within the deadline and a second more (the reply never came). */
static unsigned enqueue_within(int deadline_ms, long long *took_ms, char *msg, size_t cap)
{
	jq_rpc_sock s = { 0 };
	Jobq__V1__EnqueueRequest req = JOBQ__V1__ENQUEUE_REQUEST__INIT;
	Jobq__V1__JobSpec spec = JOBQ__V1__JOB_SPEC__INIT, *specs[1] = { &spec };
	Jobq__V1__RpcResponse *r = NULL;
	spec.queue = QUEUE;
	spec.payload.data = (uint8_t *)"p";
	spec.payload.len = 1;
	req.jobs = specs;
	req.n_jobs = 1;
	assert_int_equal(jq_rpc_open(&s, fx.svc.rpc_url, deadline_ms + 1000), 0);
	long long start = jq_mono_ms();
	int rv = jq_rpc_invoke(&s, JQ_METHOD("Enqueue"), &req.base, (uint32_t)deadline_ms, &r);
	*took_ms = jq_mono_ms() - start;
	jq_rpc_close(&s);
	if (rv != 0)
		fail_msg("Enqueue with a %d ms deadline: no answer after %lld ms (%s)", deadline_ms,
			 *took_ms, nng_strerror(rv));
	unsigned code = r->code;
	snprintf(msg, cap, "%s", r->message ? r->message : "");
	jobq__v1__rpc_response__free_unpacked(r, NULL);
	return code;
}

static Jobq__V1__ClaimResponse *claim_waiting(uint32_t wait_ms)
{
	Jobq__V1__ClaimRequest req = JOBQ__V1__CLAIM_REQUEST__INIT;
	req.queue = QUEUE;
	req.limit = 1;
	req.worker_id = "silent-test";
	req.lease_seconds = 30;
	req.wait_ms = wait_ms;
	return jq_api_ok(JQ_METHOD("Claim"), &req, &jobq__v1__claim_response__descriptor);
}

/* ---- the LISTEN session goes silent ---- */

JQ_API_TEST(fx, a_silent_listen_session_fails_readyz_and_claims_ask_the_database)
{
	wait_readyz(200, "ready", 15000);
	/* A waiting Claim that comes back short while the listener listens: the queue is known empty,
	 * and a waiting Claim of it would park without asking the database. */
	Jobq__V1__ClaimResponse *c = claim_waiting(100);
	assert_int_equal(c->n_jobs, 0);
	JQ_FREE(c);

	jq_proxy_pause(&proxy);
	/* The next safety-net scan (within 5 s) gets no answer within --listen-timeout-ms + 1 s. */
	long long took = wait_readyz(503, "not listening for notifications", 12000);
	print_message("listener reported down %lld ms after the pause: %s\n", took, resp.body);

	/* Its notification is lost in the proxy; the Claim must look in the table, not wait 5 s. */
	int64_t id = jq_enqueue_one(QUEUE, "while-silent");
	long long start = jq_mono_ms();
	c = claim_waiting(5000);
	long long waited = jq_mono_ms() - start;
	if (c->n_jobs != 1)
		fail_msg("a waiting Claim got %zu jobs after %lld ms, not the job enqueued while the "
			 "listener was down", c->n_jobs, waited);
	assert_int_equal(c->jobs[0]->id, id);
	JQ_FREE(c);

	jq_proxy_resume(&proxy);
	took = wait_readyz(200, "ready", 15000);
	print_message("listener back %lld ms after the proxy resumed\n", took);
}

/* ---- a request connection goes silent ---- */

JQ_API_TEST(fx, a_silent_pool_connection_answers_within_the_deadline_and_recovers)
{
	char msg[512];
	long long took;
	wait_readyz(200, "ready", 15000);
	assert_int_equal(enqueue_within(DEADLINE_MS, &took, msg, sizeof(msg)), 0);

	jq_proxy_pause(&proxy);
	/* The first waits on the silent connection, the next ones on a reconnect through it. */
	for (int i = 0; i < 3; i++) {
		unsigned code = enqueue_within(DEADLINE_MS, &took, msg, sizeof(msg));
		print_message("Enqueue %d while silent: code %u after %lld ms: %s\n", i, code, took, msg);
		if (code != JQ_DEADLINE_EXCEEDED && code != JQ_UNAVAILABLE)
			fail_msg("Enqueue on a silent database answered %u: %s", code, msg);
	}
	/* The HTTP thread's own connection goes through the proxy too. */
	wait_readyz(503, NULL, 10000);
	print_message("/readyz while silent: %s\n", resp.body);

	jq_proxy_resume(&proxy);
	long long start = jq_mono_ms();
	unsigned code;
	while ((code = enqueue_within(DEADLINE_MS, &took, msg, sizeof(msg))) != 0) {
		if (jq_mono_ms() - start > 15000)
			fail_msg("Enqueue still answers %u 15 s after the proxy resumed: %s", code, msg);
		jq_sleep_ms(100);
	}
	wait_readyz(200, "ready", 15000);
	print_message("served again %lld ms after the proxy resumed\n", jq_mono_ms() - start);
}

/* ---- jq_pgconn ---- */

static int sockopt(int fd, int level, int name)
{
	int v = -1;
	socklen_t len = sizeof(v);
	if (getsockopt(fd, level, name, &v, &len) != 0)
		fail_msg("getsockopt %d/%d failed", level, name);
	return v;
}

static PGconn *open_ok(const char *url, const jq_pgconn_net *net)
{
	jq_pgconn_opts o = { .url = url, .application_name = "jq-silent-test", .net = net };
	PGconn *c = NULL;
	char why[200] = "";
	if (jq_pgconn_open(&o, JQ_PGCONN_FOREVER, -1, &c, why, sizeof(why)) != JQ_PGCONN_OK)
		fail_msg("jq_pgconn_open: %s", why);
	return c;
}

static void every_connection_carries_keepalives_and_a_user_timeout_and_the_url_wins(void **state)
{
	(void)state;
	const char *url = jq_test_env("JOBQ_TEST_DATABASE_URL");
	jq_pgconn_net net = { .connect_timeout_ms = 5000, .tcp_user_timeout_ms = 7000,
			      .keepalives_idle_s = 11, .keepalives_interval_s = 4, .keepalives_count = 6 };
	PGconn *c = open_ok(url, &net);
	int fd = PQsocket(c);
	assert_int_equal(sockopt(fd, SOL_SOCKET, SO_KEEPALIVE), 1);
	assert_int_equal(sockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE), 11);
	assert_int_equal(sockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL), 4);
	assert_int_equal(sockopt(fd, IPPROTO_TCP, TCP_KEEPCNT), 6);
	assert_int_equal(sockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT), 7000);
	PQfinish(c);

	char own[1024];
	snprintf(own, sizeof(own), "%s%ckeepalives_idle=30&tcp_user_timeout=2500", url,
		 strchr(url, '?') ? '&' : '?');
	c = open_ok(own, &net);
	fd = PQsocket(c);
	assert_int_equal(sockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE), 30);
	assert_int_equal(sockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT), 2500);
	assert_int_equal(sockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL), 4);
	PQfinish(c);

	jq_config cfg;
	char *argv[] = { "jobqd", "--database-url=postgres://x/y", NULL };
	assert_int_equal(jq_config_load(&cfg, 2, argv, stdout, stderr), JQ_CONFIG_OK);
	jq_pgconn_net from_cfg = jq_pgconn_net_of(&cfg);
	assert_memory_equal(&from_cfg, &jq_pgconn_net_default, sizeof(from_cfg));
	jq_config_free(&cfg);
}

static void a_connect_or_an_answer_from_a_silent_peer_ends_at_the_deadline(void **state)
{
	(void)state;
	const char *url = jq_test_env("JOBQ_TEST_DATABASE_URL");
	jq_pgconn_net net = jq_pgconn_net_default;
	jq_proxy_start(&proxy, url);
	char *through = jq_proxy_url(&proxy, url);
	PGconn *c = open_ok(through, &net);

	jq_proxy_pause(&proxy);
	PGresult *r = NULL;
	assert_int_equal(PQsendQuery(c, "SELECT 1"), 1);
	long long start = jq_mono_ms();
	assert_int_equal(jq_pgconn_result(c, jq_clock_mono_ms() + 300, -1, &r), JQ_PGCONN_TIMEOUT);
	assert_null(r);
	print_message("answer abandoned after %lld ms\n", jq_mono_ms() - start);
	PQfinish(c);

	net.connect_timeout_ms = 300;
	jq_pgconn_opts o = { .url = through, .net = &net };
	char why[200] = "";
	start = jq_mono_ms();
	assert_int_equal(jq_pgconn_open(&o, JQ_PGCONN_FOREVER, -1, &c, why, sizeof(why)), JQ_PGCONN_TIMEOUT);
	assert_null(c);
	print_message("connect abandoned after %lld ms: %s\n", jq_mono_ms() - start, why);
	/* The caller's deadline ends it too, before the connect timeout. */
	net.connect_timeout_ms = 60000;
	assert_int_equal(jq_pgconn_open(&o, jq_clock_mono_ms() + 300, -1, &c, why, sizeof(why)),
			 JQ_PGCONN_TIMEOUT);

	jq_proxy_resume(&proxy);
	c = open_ok(through, &net);
	PQfinish(c);
	jq_proxy_stop(&proxy);
	free(through);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(every_connection_carries_keepalives_and_a_user_timeout_and_the_url_wins),
		cmocka_unit_test_teardown(a_connect_or_an_answer_from_a_silent_peer_ends_at_the_deadline,
					  stop_proxy),
		cmocka_unit_test_setup_teardown(a_silent_listen_session_fails_readyz_and_claims_ask_the_database,
						setup_listen, teardown),
		cmocka_unit_test_setup_teardown(a_silent_pool_connection_answers_within_the_deadline_and_recovers,
						setup_pool, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
