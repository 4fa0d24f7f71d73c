/*
 * jq_rpc_server against real nng REQ clients (ipc under /tmp, and once tcp on 127.0.0.1).
 * No database. The test handler understands a few made-up methods:
 *   /echo    OK with the request's payload
 *   /sleep   sleeps <payload> ms (decimal text), then echoes
 *   /block   waits until the test releases it, then echoes
 *   /victim  counts its calls, then OK (the deadline test checks it never ran)
 *   /defer   keeps the request; the deferrer thread echoes it <payload> ms (default 100) after
 *            it was received
 *   /keep    keeps the request on its first call (the test requeues it), answers "second" after
 *   other    UNIMPLEMENTED
 * Client threads never use cmocka asserts (they longjmp); they record results for the main thread.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "jobq.h"
#include "jq_clock.h"
#include "jq_log.h"
#include "jq_rpc_server.h"

#define MAX_WORKERS 8
#define CLIENT_TIMEOUT_MS 5000
#define DEFER_MS 100

/* ---- the world the handler sees ---- */

typedef struct world {
	jq_rpc_server *srv;
	char url[128];
	int worker_ids[MAX_WORKERS];
	void *worker_args[MAX_WORKERS];

	pthread_mutex_t handlers_mu; /* the fields below, which the test handlers update */
	pthread_cond_t cv;
	int calls;
	int bad_worker_arg;
	int victim_calls;
	int sleeping; /* /sleep handlers entered */
	int blocked;  /* /block handlers waiting now */
	bool released;
	int keep_calls;
	jq_rpc_req *kept;

	pthread_t deferrer;
	bool deferrer_running;
	bool deferrer_quit;
	jq_rpc_req *deferred[64];
	int ndeferred;
	int defer_calls;
} world;

static world W;
static int url_seq;

static void sleep_ms(int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static double ms_since(int64_t t0_us)
{
	return (double)(jq_clock_mono_us() - t0_us) / 1000.0;
}

static void finish_echo(jq_rpc_req *req)
{
	const Jobq__V1__RpcRequest *env = jq_rpc_req_envelope(req);
	jq_rpc_req_finish(req, JQ_OK, NULL, env->payload.data, env->payload.len);
}

static int payload_int(const Jobq__V1__RpcRequest *env)
{
	char buf[32];
	size_t n = env->payload.len < sizeof(buf) - 1 ? env->payload.len : sizeof(buf) - 1;
	if (n > 0)
		memcpy(buf, env->payload.data, n);
	buf[n] = '\0';
	return atoi(buf);
}

static void handle_sleep(jq_rpc_req *req)
{
	pthread_mutex_lock(&W.handlers_mu);
	W.sleeping++;
	pthread_cond_broadcast(&W.cv);
	pthread_mutex_unlock(&W.handlers_mu);
	sleep_ms(payload_int(jq_rpc_req_envelope(req)));
	finish_echo(req);
}

static void handle_block(jq_rpc_req *req)
{
	pthread_mutex_lock(&W.handlers_mu);
	W.blocked++;
	pthread_cond_broadcast(&W.cv);
	while (!W.released)
		pthread_cond_wait(&W.cv, &W.handlers_mu);
	W.blocked--;
	pthread_mutex_unlock(&W.handlers_mu);
	finish_echo(req);
}

static void handle_defer(jq_rpc_req *req)
{
	pthread_mutex_lock(&W.handlers_mu);
	W.deferred[W.ndeferred++] = req;
	W.defer_calls++;
	pthread_cond_broadcast(&W.cv);
	pthread_mutex_unlock(&W.handlers_mu);
}

static void handle_keep(jq_rpc_req *req)
{
	static const uint8_t second[] = "second";
	bool first;

	pthread_mutex_lock(&W.handlers_mu);
	first = ++W.keep_calls == 1;
	if (first) {
		W.kept = req;
		pthread_cond_broadcast(&W.cv);
	}
	pthread_mutex_unlock(&W.handlers_mu);
	if (!first)
		jq_rpc_req_finish(req, JQ_OK, NULL, second, sizeof(second) - 1);
}

static void handler(void *arg, jq_rpc_req *req)
{
	const char *m = jq_rpc_req_envelope(req)->method;
	int wid = arg != NULL ? *(int *)arg : -1;

	pthread_mutex_lock(&W.handlers_mu);
	W.calls++;
	if (wid < 0 || wid >= MAX_WORKERS || arg != W.worker_args[wid])
		W.bad_worker_arg++;
	if (strcmp(m, "/victim") == 0)
		W.victim_calls++;
	pthread_mutex_unlock(&W.handlers_mu);

	if (strcmp(m, "/echo") == 0 || strcmp(m, "/victim") == 0)
		finish_echo(req);
	else if (strcmp(m, "/sleep") == 0)
		handle_sleep(req);
	else if (strcmp(m, "/block") == 0)
		handle_block(req);
	else if (strcmp(m, "/defer") == 0)
		handle_defer(req);
	else if (strcmp(m, "/keep") == 0)
		handle_keep(req);
	else
		jq_rpc_req_finish(req, JQ_UNIMPLEMENTED, "unknown method", NULL, 0);
}

/* The owner of deferred requests: finishes each DEFER_MS after it was received. */
static void *deferrer_main(void *p)
{
	(void)p;
	pthread_mutex_lock(&W.handlers_mu);
	for (;;) {
		while (W.ndeferred == 0 && !W.deferrer_quit)
			pthread_cond_wait(&W.cv, &W.handlers_mu);
		if (W.ndeferred == 0)
			break;
		jq_rpc_req *req = W.deferred[0];
		memmove(&W.deferred[0], &W.deferred[1], (size_t)--W.ndeferred * sizeof(W.deferred[0]));
		pthread_mutex_unlock(&W.handlers_mu);
		int delay = payload_int(jq_rpc_req_envelope(req));
		int64_t due = jq_rpc_req_received_us(req) + (delay > 0 ? delay : DEFER_MS) * 1000;
		int64_t left = due - jq_clock_mono_us();
		if (left > 0)
			sleep_ms((int)(left / 1000) + 1);
		finish_echo(req);
		pthread_mutex_lock(&W.handlers_mu);
	}
	pthread_mutex_unlock(&W.handlers_mu);
	return NULL;
}

static void deferrer_start(void)
{
	assert_int_equal(pthread_create(&W.deferrer, NULL, deferrer_main, NULL), 0);
	W.deferrer_running = true;
}

/* wait_until waits until the counter *v (guarded by W.mu) reaches n; false on timeout. */
static bool wait_until(const int *v, int n, int timeout_ms)
{
	struct timespec ts;
	bool ok = true;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += timeout_ms / 1000;
	ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&W.handlers_mu);
	while (ok && *v < n)
		if (pthread_cond_timedwait(&W.cv, &W.handlers_mu, &ts) == ETIMEDOUT)
			ok = *v >= n;
	pthread_mutex_unlock(&W.handlers_mu);
	return ok;
}

static int read_count(const int *v)
{
	pthread_mutex_lock(&W.handlers_mu);
	int n = *v;
	pthread_mutex_unlock(&W.handlers_mu);
	return n;
}

/* ---- server ---- */

static void use_ipc_url(void)
{
	snprintf(W.url, sizeof(W.url), "ipc:///tmp/jq-rpc-test-%d-%d.sock", (int)getpid(), ++url_seq);
}

static void use_tcp_url(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd);
	snprintf(W.url, sizeof(W.url), "tcp://127.0.0.1:%d", ntohs(a.sin_port));
}

typedef struct server_cfg {
	int contexts;
	int max_queued;
	int nworkers;
	size_t max_message_bytes;
	size_t max_inflight_bytes;
} server_cfg;

static void server_up(server_cfg c)
{
	jq_rpc_server_opts o = {
		.url = W.url,
		.contexts = c.contexts,
		.max_queued = c.max_queued,
		.max_message_bytes = c.max_message_bytes ? c.max_message_bytes : 64 * 1024,
		.default_deadline_ms = 5000,
		.nworkers = c.nworkers,
		.worker_args = W.worker_args,
		.handler = handler,
		.max_inflight_bytes = c.max_inflight_bytes,
	};
	if (W.url[0] == '\0')
		use_ipc_url();
	assert_true(c.nworkers <= MAX_WORKERS);
	assert_int_equal(jq_rpc_server_start(&o, &W.srv), 0);
	assert_non_null(W.srv);
}

static void server_down(void)
{
	jq_rpc_server_stop(W.srv);
	W.srv = NULL;
}

/* ---- clients ---- */

static int client_dial(nng_socket *s, int timeout_ms)
{
	int rv;
	if ((rv = nng_req0_open(s)) != 0)
		return rv;
	if ((rv = nng_socket_set_ms(*s, NNG_OPT_RECVTIMEO, timeout_ms)) != 0 ||
	    (rv = nng_socket_set_ms(*s, NNG_OPT_SENDTIMEO, timeout_ms)) != 0 ||
	    (rv = nng_dial(*s, W.url, NULL, 0)) != 0) {
		nng_close(*s);
		return rv;
	}
	return 0;
}

static nng_socket client(void)
{
	nng_socket s;
	int rv = client_dial(&s, CLIENT_TIMEOUT_MS);
	if (rv != 0)
		fail_msg("dial %s: %s", W.url, nng_strerror(rv));
	return s;
}

static int send_raw(nng_socket s, const void *buf, size_t len)
{
	nng_msg *msg;
	int rv;
	if ((rv = nng_msg_alloc(&msg, len)) != 0)
		return rv;
	if (len > 0)
		memcpy(nng_msg_body(msg), buf, len);
	if ((rv = nng_sendmsg(s, msg, 0)) != 0)
		nng_msg_free(msg);
	return rv;
}

/* recv_resp: 0 and *out (free with __free_unpacked), an nng error, or -1 for an undecodable reply. */
static int recv_resp(nng_socket s, Jobq__V1__RpcResponse **out)
{
	nng_msg *msg;
	int rv;
	*out = NULL;
	if ((rv = nng_recvmsg(s, &msg, 0)) != 0)
		return rv;
	*out = jobq__v1__rpc_response__unpack(NULL, nng_msg_len(msg), nng_msg_body(msg));
	nng_msg_free(msg);
	return *out != NULL ? 0 : -1;
}

static uint8_t *envelope(const char *method, const void *payload, size_t plen, const char *rid,
			 uint32_t deadline_ms, size_t *len)
{
	Jobq__V1__RpcRequest env = JOBQ__V1__RPC_REQUEST__INIT;
	uint8_t *buf;
	env.method = (char *)method;
	env.payload.data = (uint8_t *)payload;
	env.payload.len = plen;
	env.request_id = (char *)(rid != NULL ? rid : "");
	env.deadline_ms = deadline_ms;
	*len = jobq__v1__rpc_request__get_packed_size(&env);
	buf = malloc(*len + 1);
	if (buf != NULL)
		jobq__v1__rpc_request__pack(&env, buf);
	return buf;
}

static int send_call(nng_socket s, const char *method, const void *payload, size_t plen,
		     const char *rid, uint32_t deadline_ms)
{
	size_t len;
	uint8_t *buf = envelope(method, payload, plen, rid, deadline_ms, &len);
	int rv;
	if (buf == NULL)
		return NNG_ENOMEM;
	rv = send_raw(s, buf, len);
	free(buf);
	return rv;
}

static int rpc(nng_socket s, const char *method, const void *payload, size_t plen, const char *rid,
	       uint32_t deadline_ms, Jobq__V1__RpcResponse **out)
{
	int rv = send_call(s, method, payload, plen, rid, deadline_ms);
	if (rv != 0) {
		*out = NULL;
		return rv;
	}
	return recv_resp(s, out);
}

/* rpc_ok: a call that must get a reply (any code); fails the test otherwise. */
static Jobq__V1__RpcResponse *rpc_ok(nng_socket s, const char *method, const char *payload,
				     const char *rid, uint32_t deadline_ms)
{
	Jobq__V1__RpcResponse *r;
	int rv = rpc(s, method, payload, payload ? strlen(payload) : 0, rid, deadline_ms, &r);
	if (rv != 0)
		fail_msg("%s: no reply: %s", method, rv > 0 ? nng_strerror(rv) : "undecodable");
	return r;
}

static void assert_payload(const Jobq__V1__RpcResponse *r, const char *want)
{
	assert_int_equal(r->payload.len, strlen(want));
	assert_memory_equal(r->payload.data, want, r->payload.len);
}

/* A call on its own client socket and thread. */
typedef struct call {
	const char *method;
	char payload[32];
	uint32_t deadline_ms;
	pthread_t thread;
	int rv;
	unsigned code;
	char reply[32];
	double ms;
} call;

static void *call_main(void *p)
{
	call *c = p;
	Jobq__V1__RpcResponse *r;
	nng_socket s;
	int64_t t0;

	if ((c->rv = client_dial(&s, CLIENT_TIMEOUT_MS)) != 0)
		return NULL;
	t0 = jq_clock_mono_us();
	c->rv = rpc(s, c->method, c->payload, strlen(c->payload), NULL, c->deadline_ms, &r);
	c->ms = ms_since(t0);
	if (c->rv == 0) {
		size_t n = r->payload.len < sizeof(c->reply) - 1 ? r->payload.len : sizeof(c->reply) - 1;
		c->code = r->code;
		if (n > 0)
			memcpy(c->reply, r->payload.data, n);
		c->reply[n] = '\0';
		jobq__v1__rpc_response__free_unpacked(r, NULL);
	}
	nng_close(s);
	return NULL;
}

static void call_start(call *c, const char *method, const char *payload, uint32_t deadline_ms)
{
	memset(c, 0, sizeof(*c));
	c->method = method;
	snprintf(c->payload, sizeof(c->payload), "%s", payload);
	c->deadline_ms = deadline_ms;
	assert_int_equal(pthread_create(&c->thread, NULL, call_main, c), 0);
}

/* call_join: the call got a reply with this code (and, for OK, its payload back). */
static void call_join(call *c, unsigned want_code)
{
	pthread_join(c->thread, NULL);
	if (c->rv != 0)
		fail_msg("%s(%s): no reply: %s", c->method, c->payload,
			 c->rv > 0 ? nng_strerror(c->rv) : "undecodable");
	assert_int_equal(c->code, want_code);
	if (want_code == JQ_OK)
		assert_string_equal(c->reply, c->payload);
}

/* ---- fixtures ---- */

static int setup(void **state)
{
	(void)state;
	memset(&W, 0, sizeof(W));
	pthread_mutex_init(&W.handlers_mu, NULL);
	pthread_cond_init(&W.cv, NULL);
	for (int i = 0; i < MAX_WORKERS; i++) {
		W.worker_ids[i] = i;
		W.worker_args[i] = &W.worker_ids[i];
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	/* Let anything a failed test left blocked finish, so stop can return. */
	pthread_mutex_lock(&W.handlers_mu);
	W.released = true;
	W.deferrer_quit = true;
	pthread_cond_broadcast(&W.cv);
	pthread_mutex_unlock(&W.handlers_mu);
	if (W.srv != NULL && W.deferrer_running) {
		/* stop waits for deferred requests, so their owner must outlive it */
		server_down();
	}
	if (W.deferrer_running)
		pthread_join(W.deferrer, NULL);
	if (W.srv != NULL)
		server_down();
	pthread_cond_destroy(&W.cv);
	pthread_mutex_destroy(&W.handlers_mu);
	return 0;
}

/* ---- tests ---- */

static void code_names(void **state)
{
	static const char *const want[] = {
		"OK",		      "CANCELLED",	   "UNKNOWN",	     "INVALID_ARGUMENT",
		"DEADLINE_EXCEEDED",  "NOT_FOUND",	   "ALREADY_EXISTS",  "PERMISSION_DENIED",
		"RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",	     "OUT_OF_RANGE",
		"UNIMPLEMENTED",      "INTERNAL",	   "UNAVAILABLE",     "DATA_LOSS",
		"UNAUTHENTICATED",
	};
	(void)state;
	/* One table (enum jobq.v1.Code): jobqd's and libjobq's names are the same. */
	for (unsigned i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		assert_string_equal(jq_code_name(i), want[i]);
		assert_string_equal(jobq_code_name((int)i), want[i]);
	}
	assert_string_equal(jq_code_name(17), "UNKNOWN");
	assert_string_equal(jobq_code_name(-1), "UNKNOWN");
	assert_string_equal(jq_code_name(~0u), "UNKNOWN");
}

static void bad_options_are_refused(void **state)
{
	jq_rpc_server_opts o = { .url = "ipc:///tmp/never", .contexts = 1, .max_queued = 1,
				 .default_deadline_ms = 1, .nworkers = 1, .handler = handler };
	jq_rpc_server *srv = (jq_rpc_server *)&o;
	(void)state;
	o.contexts = 0;
	assert_int_equal(jq_rpc_server_start(&o, &srv), -1);
	assert_null(srv);
	o.contexts = 1;
	o.url = "nonsense://x";
	assert_int_not_equal(jq_rpc_server_start(&o, &srv), 0);
	assert_null(srv);
	jq_rpc_server_stop(NULL);
}

/* 1. Round trip over TCP; the client's request id comes back, or the server makes one. */
static void echo_round_trip(void **state)
{
	Jobq__V1__RpcResponse *r;
	nng_socket s;
	char long_id[200];
	(void)state;

	use_tcp_url();
	server_up((server_cfg){ .contexts = 4, .max_queued = 16, .nworkers = 2 });
	s = client();

	r = rpc_ok(s, "/echo", "hello", "my-id-1", 0);
	assert_int_equal(r->code, JQ_OK);
	assert_payload(r, "hello");
	assert_string_equal(r->request_id, "my-id-1");
	assert_string_equal(r->message, "");
	jobq__v1__rpc_response__free_unpacked(r, NULL);

	r = rpc_ok(s, "/echo", "", NULL, 0);
	assert_int_equal(r->code, JQ_OK);
	assert_int_equal(r->payload.len, 0);
	assert_true(strncmp(r->request_id, "r-", 2) == 0 && strlen(r->request_id) > 2);
	char first_generated[64];
	snprintf(first_generated, sizeof(first_generated), "%s", r->request_id);
	jobq__v1__rpc_response__free_unpacked(r, NULL);

	r = rpc_ok(s, "/echo", "x", NULL, 0);
	assert_true(strncmp(r->request_id, "r-", 2) == 0);
	assert_string_not_equal(r->request_id, first_generated);
	jobq__v1__rpc_response__free_unpacked(r, NULL);

	/* Ids that are not short printable ASCII are replaced, not echoed. */
	r = rpc_ok(s, "/echo", "x", "bad\nid", 0);
	assert_true(strncmp(r->request_id, "r-", 2) == 0);
	jobq__v1__rpc_response__free_unpacked(r, NULL);
	memset(long_id, 'a', 128);
	long_id[128] = '\0';
	r = rpc_ok(s, "/echo", "x", long_id, 0);
	assert_string_equal(r->request_id, long_id);
	jobq__v1__rpc_response__free_unpacked(r, NULL);
	memset(long_id, 'a', 129);
	long_id[129] = '\0';
	r = rpc_ok(s, "/echo", "x", long_id, 0);
	assert_true(strncmp(r->request_id, "r-", 2) == 0);
	jobq__v1__rpc_response__free_unpacked(r, NULL);

	r = rpc_ok(s, "/nope", "x", "id-2", 0);
	assert_int_equal(r->code, JQ_UNIMPLEMENTED);
	assert_string_equal(r->message, "unknown method");
	assert_int_equal(r->payload.len, 0);
	assert_string_equal(r->request_id, "id-2");
	jobq__v1__rpc_response__free_unpacked(r, NULL);

	nng_close(s);
	server_down();
	assert_int_equal(read_count(&W.bad_worker_arg), 0);
}

/* 2. Many clients at once; each gets its own payload back. */
#define N_CLIENTS 16
#define N_CALLS 200

typedef struct echo_client {
	int id;
	pthread_t thread;
	int ok;
	char err[160];
} echo_client;

static void *echo_client_main(void *p)
{
	echo_client *c = p;
	nng_socket s;
	int rv;

	if ((rv = client_dial(&s, CLIENT_TIMEOUT_MS)) != 0) {
		snprintf(c->err, sizeof(c->err), "dial: %s", nng_strerror(rv));
		return NULL;
	}
	for (int j = 0; j < N_CALLS; j++) {
		Jobq__V1__RpcResponse *r;
		char payload[80], rid[40];
		int n = snprintf(payload, sizeof(payload), "client %d call %d %*s|", c->id, j, j % 23, "");
		snprintf(rid, sizeof(rid), "c%d-%d", c->id, j);
		if ((rv = rpc(s, "/echo", payload, (size_t)n, rid, 0, &r)) != 0) {
			snprintf(c->err, sizeof(c->err), "call %d: %s", j,
				 rv > 0 ? nng_strerror(rv) : "undecodable");
			break;
		}
		bool good = r->code == JQ_OK && r->payload.len == (size_t)n &&
			    memcmp(r->payload.data, payload, (size_t)n) == 0 &&
			    strcmp(r->request_id, rid) == 0;
		if (!good)
			snprintf(c->err, sizeof(c->err), "call %d: code %u id %s", j, r->code,
				 r->request_id);
		jobq__v1__rpc_response__free_unpacked(r, NULL);
		if (!good)
			break;
		c->ok++;
	}
	nng_close(s);
	return NULL;
}

static void many_clients_concurrently(void **state)
{
	echo_client c[N_CLIENTS];
	int ok = 0;
	(void)state;

	server_up((server_cfg){ .contexts = 8, .max_queued = 64, .nworkers = 4 });
	for (int i = 0; i < N_CLIENTS; i++) {
		memset(&c[i], 0, sizeof(c[i]));
		c[i].id = i;
		assert_int_equal(pthread_create(&c[i].thread, NULL, echo_client_main, &c[i]), 0);
	}
	for (int i = 0; i < N_CLIENTS; i++) {
		pthread_join(c[i].thread, NULL);
		if (c[i].err[0] != '\0')
			print_error("client %d: %s\n", i, c[i].err);
		ok += c[i].ok;
	}
	assert_int_equal(ok, N_CLIENTS * N_CALLS);
	assert_int_equal(read_count(&W.calls), N_CLIENTS * N_CALLS);
	assert_int_equal(read_count(&W.bad_worker_arg), 0);
	server_down();
}

/* 3. A slow request holds one worker; other clients are still served at once. */
static void slow_request_does_not_block_others(void **state)
{
	call slow;
	nng_socket s;
	double worst = 0;
	(void)state;

	server_up((server_cfg){ .contexts = 8, .max_queued = 16, .nworkers = 2 });
	call_start(&slow, "/sleep", "500", 0);
	assert_true(wait_until(&W.sleeping, 1, 2000));

	s = client();
	for (int i = 0; i < 20; i++) {
		int64_t t0 = jq_clock_mono_us();
		Jobq__V1__RpcResponse *r = rpc_ok(s, "/echo", "fast", NULL, 0);
		double ms = ms_since(t0);
		assert_int_equal(r->code, JQ_OK);
		jobq__v1__rpc_response__free_unpacked(r, NULL);
		if (ms > worst)
			worst = ms;
	}
	nng_close(s);
	call_join(&slow, JQ_OK);
	print_message("fast calls: worst %.1f ms; slow call %.1f ms\n", worst, slow.ms);
	assert_true(worst < 200.0);
	assert_true(slow.ms >= 500.0);
	server_down();
}

/* 4. One worker, blocked; two requests fill the queue; more get RESOURCE_EXHAUSTED at once. */
static void queue_full_is_refused(void **state)
{
	call blocker, queued[2];
	nng_socket s;
	(void)state;

	server_up((server_cfg){ .contexts = 8, .max_queued = 2, .nworkers = 1 });
	call_start(&blocker, "/block", "b", 0);
	assert_true(wait_until(&W.blocked, 1, 2000));
	call_start(&queued[0], "/echo", "q0", 0);
	call_start(&queued[1], "/echo", "q1", 0);
	sleep_ms(200); /* no hook shows the queue; local delivery takes well under a millisecond */

	s = client();
	for (int i = 0; i < 3; i++) {
		char rid[24];
		snprintf(rid, sizeof(rid), "extra-%d", i);
		int64_t t0 = jq_clock_mono_us();
		Jobq__V1__RpcResponse *r = rpc_ok(s, "/echo", "extra", rid, 0);
		assert_true(ms_since(t0) < 200.0);
		assert_int_equal(r->code, JQ_RESOURCE_EXHAUSTED);
		assert_string_equal(r->request_id, rid);
		assert_int_equal(r->payload.len, 0);
		assert_true(strlen(r->message) > 0);
		jobq__v1__rpc_response__free_unpacked(r, NULL);
	}
	assert_int_equal(read_count(&W.calls), 1);

	pthread_mutex_lock(&W.handlers_mu);
	W.released = true;
	pthread_cond_broadcast(&W.cv);
	pthread_mutex_unlock(&W.handlers_mu);
	call_join(&blocker, JQ_OK);
	call_join(&queued[0], JQ_OK);
	call_join(&queued[1], JQ_OK);

	Jobq__V1__RpcResponse *r = rpc_ok(s, "/echo", "after", NULL, 0);
	assert_int_equal(r->code, JQ_OK);
	assert_payload(r, "after");
	jobq__v1__rpc_response__free_unpacked(r, NULL);
	nng_close(s);
	assert_int_equal(read_count(&W.calls), 4);
	server_down();
}

/* 5. A request whose deadline passes while it waits is answered without running. */
static void deadline_passes_in_queue(void **state)
{
	call slow, victim;
	nng_socket s;
	(void)state;

	server_up((server_cfg){ .contexts = 4, .max_queued = 8, .nworkers = 1 });
	call_start(&slow, "/sleep", "300", 0);
	assert_true(wait_until(&W.sleeping, 1, 2000));
	call_start(&victim, "/victim", "v", 50);
	call_join(&victim, JQ_DEADLINE_EXCEEDED);
	assert_true(victim.ms >= 150.0); /* answered when the worker came free, not before */
	call_join(&slow, JQ_OK);
	assert_int_equal(read_count(&W.victim_calls), 0);

	/* The same method with time to spare does run. */
	s = client();
	Jobq__V1__RpcResponse *r = rpc_ok(s, "/victim", "v", NULL, 50);
	assert_int_equal(r->code, JQ_OK);
	jobq__v1__rpc_response__free_unpacked(r, NULL);
	nng_close(s);
	assert_int_equal(read_count(&W.victim_calls), 1);
	server_down();
}

/* 6. Garbage in: every message is answered and the service keeps serving. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static void send_junk(nng_socket s, const uint8_t *buf, size_t len, int *invalid, int *decoded)
{
	Jobq__V1__RpcRequest *env = jobq__v1__rpc_request__unpack(NULL, len, buf);
	Jobq__V1__RpcResponse *r;
	int rv;

	assert_int_equal(send_raw(s, buf, len), 0);
	rv = recv_resp(s, &r);
	if (rv != 0)
		fail_msg("junk of %zu bytes: no reply: %s", len, rv > 0 ? nng_strerror(rv) : "undecodable");
	if (env == NULL) {
		/* What the server cannot decode, it refuses at once. */
		assert_int_equal(r->code, JQ_INVALID_ARGUMENT);
		assert_string_equal(r->message, "malformed RpcRequest envelope");
		assert_true(strncmp(r->request_id, "r-", 2) == 0);
		(*invalid)++;
	} else {
		/* Random bytes can be a valid (odd) envelope; then the handler answers it. */
		assert_int_equal(r->code, JQ_UNIMPLEMENTED);
		jobq__v1__rpc_request__free_unpacked(env, NULL);
		(*decoded)++;
	}
	jobq__v1__rpc_response__free_unpacked(r, NULL);
}

/* raw_oversized_is_dropped speaks the SP-over-ipc framing by hand: the 8-byte handshake, then
 * a message whose length prefix says `claimed` bytes (a REQ header and a little body follow).
 * True when the server hangs up instead of answering. */
static bool raw_oversized_is_dropped(uint64_t claimed)
{
	static const uint8_t hello[8] = { 0, 'S', 'P', 0, 0x00, 0x30 /* req0 */, 0, 0 };
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = 3 };
	uint8_t frame[9 + 4 + 64] = { 1 };
	uint8_t peer[8];
	bool dropped = false;
	int fd;

	const char *path = W.url + strlen("ipc://");
	if (strlen(path) >= sizeof(a.sun_path))
		return false;
	memcpy(a.sun_path, path, strlen(path) + 1);
	if ((fd = socket(AF_UNIX, SOCK_STREAM, 0)) < 0)
		return false;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
	    write(fd, hello, sizeof(hello)) != (ssize_t)sizeof(hello) ||
	    read(fd, peer, sizeof(peer)) != (ssize_t)sizeof(peer) || peer[1] != 'S' || peer[5] != 0x31)
		goto out;
	for (int i = 0; i < 8; i++)
		frame[1 + i] = (uint8_t)(claimed >> (56 - 8 * i));
	frame[9] = 0x80; /* REQ request id, high bit set */
	(void)!write(fd, frame, sizeof(frame));
	/* The server must close: EOF, or a reset if our unread bytes were discarded. */
	for (;;) {
		ssize_t n = read(fd, peer, sizeof(peer));
		if (n == 0 || (n < 0 && errno == ECONNRESET)) {
			dropped = true;
			break;
		}
		if (n < 0 && errno == EINTR)
			continue;
		break; /* data, or a timeout: not dropped */
	}
out:
	close(fd);
	return dropped;
}

static uint8_t *envelope_of_size(size_t want, size_t *len)
{
	size_t plen = want;
	uint8_t *payload = calloc(1, want);
	uint8_t *buf = NULL;

	/* The payload's length prefix shrinks with it; step down until the total fits exactly. */
	for (; plen > 0; plen--) {
		buf = envelope("/echo", payload, plen, "sized", 0, len);
		if (*len == want)
			break;
		free(buf);
		buf = NULL;
	}
	free(payload);
	return buf;
}

static void junk_is_answered(void **state)
{
	const size_t limit = 4096;
	Jobq__V1__RpcResponse *r;
	uint8_t buf[512];
	int invalid = 0, decoded = 0;
	nng_socket s;
	size_t len;
	uint8_t *env;
	(void)state;

	server_up((server_cfg){ .contexts = 4, .max_queued = 16, .nworkers = 2,
				.max_message_bytes = limit });
	s = client();

	for (int i = 0; i < 300; i++) {
		size_t n = 1 + rng() % sizeof(buf);
		for (size_t k = 0; k < n; k++)
			buf[k] = (uint8_t)rng();
		send_junk(s, buf, n, &invalid, &decoded);
	}
	print_message("junk: %d refused as malformed, %d decoded as odd envelopes\n", invalid,
		      decoded);
	assert_true(invalid > 250);

	/* An empty message is an empty envelope: the handler answers the empty method. */
	r = rpc_ok(s, "", NULL, NULL, 0);
	assert_int_equal(r->code, JQ_UNIMPLEMENTED);
	jobq__v1__rpc_response__free_unpacked(r, NULL);
	assert_int_equal(send_raw(s, "", 0), 0);
	assert_int_equal(recv_resp(s, &r), 0);
	assert_int_equal(r->code, JQ_UNIMPLEMENTED);
	jobq__v1__rpc_response__free_unpacked(r, NULL);

	/* A valid envelope cut short. */
	memset(buf, 'p', 100);
	env = envelope("/echo", buf, 100, "cut", 0, &len);
	assert_int_equal(send_raw(s, env, len - 10), 0);
	free(env);
	assert_int_equal(recv_resp(s, &r), 0);
	assert_int_equal(r->code, JQ_INVALID_ARGUMENT);
	jobq__v1__rpc_response__free_unpacked(r, NULL);

	r = rpc_ok(s, "/echo", "still here", NULL, 0);
	assert_int_equal(r->code, JQ_OK);
	assert_payload(r, "still here");
	jobq__v1__rpc_response__free_unpacked(r, NULL);

	/* The limit is on the envelope: exactly max_message_bytes passes, one more is refused. */
	env = envelope_of_size(limit, &len);
	assert_non_null(env);
	assert_int_equal(send_raw(s, env, len), 0);
	free(env);
	assert_int_equal(recv_resp(s, &r), 0);
	assert_int_equal(r->code, JQ_OK);
	jobq__v1__rpc_response__free_unpacked(r, NULL);
	env = envelope_of_size(limit + 1, &len);
	assert_non_null(env);
	assert_int_equal(send_raw(s, env, len), 0);
	free(env);
	assert_int_equal(recv_resp(s, &r), 0);
	assert_int_equal(r->code, JQ_RESOURCE_EXHAUSTED);
	jobq__v1__rpc_response__free_unpacked(r, NULL);
	nng_close(s);

	/* Far over the limit nng drops the connection as soon as it reads the length prefix; the
	 * handler never hears of it. An nng REQ client gets no reply at all: it reconnects and
	 * resends after each drop until its receive times out (NNG_ETIMEDOUT). That is shown here
	 * with a raw ipc client, because an nng client in this process whose connection is dropped
	 * mid-send can hang the process-wide nng reaper (nng 1.5.2 restarts a transfer on a pipe
	 * that is being closed), and the test would hang in nng_close instead of failing. */
	assert_true(raw_oversized_is_dropped(64 * 1024));
	assert_true(raw_oversized_is_dropped(1u << 30));

	s = client();
	r = rpc_ok(s, "/echo", "new client", NULL, 0);
	assert_int_equal(r->code, JQ_OK);
	assert_payload(r, "new client");
	jobq__v1__rpc_response__free_unpacked(r, NULL);
	nng_close(s);
	/* The handler saw the decodable junk, the two empty envelopes, "still here", the one of
	 * exactly the limit and "new client"; nothing refused by the server. */
	assert_int_equal(read_count(&W.calls), decoded + 5);
	server_down();
}

/* 7. A request kept by the handler and finished later from another thread, and one requeued. */
static void deferred_and_requeued(void **state)
{
	Jobq__V1__RpcResponse *r;
	nng_socket s;
	int64_t t0;
	(void)state;

	server_up((server_cfg){ .contexts = 4, .max_queued = 8, .nworkers = 2 });
	deferrer_start();
	s = client();

	t0 = jq_clock_mono_us();
	r = rpc_ok(s, "/defer", "later", "d-1", 0);
	assert_int_equal(r->code, JQ_OK);
	assert_payload(r, "later");
	assert_string_equal(r->request_id, "d-1");
	jobq__v1__rpc_response__free_unpacked(r, NULL);
	assert_true(ms_since(t0) >= DEFER_MS);

	/* While it is kept, the worker is free for other requests. */
	assert_int_equal(send_call(s, "/keep", "k", 1, "k-1", 0), 0);
	assert_true(wait_until(&W.keep_calls, 1, 2000));
	nng_socket other = client();
	r = rpc_ok(other, "/echo", "meanwhile", NULL, 0);
	assert_int_equal(r->code, JQ_OK);
	jobq__v1__rpc_response__free_unpacked(r, NULL);
	nng_close(other);

	pthread_mutex_lock(&W.handlers_mu);
	jq_rpc_req *kept = W.kept;
	pthread_mutex_unlock(&W.handlers_mu);
	assert_non_null(kept);
	assert_string_equal(jq_rpc_req_request_id(kept), "k-1");
	assert_true(jq_rpc_req_deadline_us(kept) > jq_rpc_req_received_us(kept));
	jq_rpc_req_requeue(kept);

	assert_int_equal(recv_resp(s, &r), 0);
	assert_int_equal(r->code, JQ_OK);
	assert_payload(r, "second");
	assert_string_equal(r->request_id, "k-1");
	jobq__v1__rpc_response__free_unpacked(r, NULL);
	assert_int_equal(read_count(&W.keep_calls), 2);
	nng_close(s);
	/* teardown stops the server before the deferrer, which owns deferred requests */
}

/* 8. stop while requests run, wait in the queue, or are deferred: every one is answered. */
static void *stop_main(void *p)
{
	(void)p;
	jq_rpc_server_stop(W.srv);
	return NULL;
}

static void stop_answers_everything_in_flight(void **state)
{
	call slow[8], deferred;
	pthread_t stopper;
	nng_socket s;
	int64_t t0;
	(void)state;

	server_up((server_cfg){ .contexts = 16, .max_queued = 16, .nworkers = 4 });
	deferrer_start();
	/* kept by the deferrer and finished 400 ms after receipt: well inside stop */
	call_start(&deferred, "/defer", "400", 0);
	assert_true(wait_until(&W.defer_calls, 1, 2000));
	for (int i = 0; i < 8; i++) {
		char p[16];
		snprintf(p, sizeof(p), "%d", 300 + i);
		call_start(&slow[i], "/sleep", p, 0);
	}
	assert_true(wait_until(&W.sleeping, 4, 2000)); /* four run, four wait in the queue */
	sleep_ms(50);

	t0 = jq_clock_mono_us();
	assert_int_equal(pthread_create(&stopper, NULL, stop_main, NULL), 0);
	for (int i = 0; i < 8; i++)
		call_join(&slow[i], JQ_OK);
	call_join(&deferred, JQ_OK);
	pthread_join(stopper, NULL);
	W.srv = NULL;
	print_message("stop took %.1f ms\n", ms_since(t0));
	assert_int_equal(read_count(&W.sleeping), 8);
	/* The queued four could only start after the first four: stop waited for both rounds. */
	assert_true(ms_since(t0) >= 300.0);

	/* Nobody listens any more. */
	assert_int_equal(client_dial(&s, 500), NNG_ECONNREFUSED);
}

/* 9. stop right after heavy traffic, with slow requests still running and queued: no crash,
 * hang or leak, every reply that arrives is right, and every request the handler saw is
 * answered. Clients stop sending before stop is called: a message that arrives
 * while nng closes the socket can wedge nng 1.5.2 (see junk_is_answered), which is nng's
 * problem, not the server's, and would only make this test flaky. */
typedef struct load_client {
	pthread_t thread;
	int id;
	int ok;
	int bad;
	int unanswered;
	atomic_bool *quiet;
} load_client;

static void *load_client_main(void *p)
{
	load_client *c = p;
	nng_socket s;

	if (client_dial(&s, 1000) != 0) {
		c->bad++;
		return NULL;
	}
	for (int j = 0; !atomic_load(c->quiet); j++) {
		Jobq__V1__RpcResponse *r;
		char payload[48];
		bool slow = j % 4 == 3;
		int n = snprintf(payload, sizeof(payload), slow ? "%d" : "load %d/%d",
				 slow ? 20 + c->id : c->id, j);
		/* A request still waiting in nng when receiving stops is never answered. */
		if (rpc(s, slow ? "/sleep" : "/echo", payload, (size_t)n, NULL, 0, &r) != 0) {
			c->unanswered++;
			break;
		}
		if (r->code == JQ_OK && r->payload.len == (size_t)n &&
		    memcmp(r->payload.data, payload, (size_t)n) == 0)
			c->ok++;
		else
			c->bad++;
		jobq__v1__rpc_response__free_unpacked(r, NULL);
	}
	nng_close(s);
	return NULL;
}

/* A /block call with a large payload, on its own socket and thread. */
typedef struct big_call {
	const char *method;
	size_t size;
	pthread_t thread;
	int rv;
	unsigned code;
} big_call;

static void *big_call_main(void *p)
{
	big_call *c = p;
	Jobq__V1__RpcResponse *r;
	nng_socket s;
	char *payload = calloc(1, c->size);
	if (payload == NULL || (c->rv = client_dial(&s, CLIENT_TIMEOUT_MS)) != 0) {
		free(payload);
		c->rv = c->rv ? c->rv : NNG_ENOMEM;
		return NULL;
	}
	c->rv = rpc(s, c->method, payload, c->size, NULL, 0, &r);
	if (c->rv == 0) {
		c->code = r->code;
		jobq__v1__rpc_response__free_unpacked(r, NULL);
	}
	free(payload);
	nng_close(s);
	return NULL;
}

static void a_full_byte_budget_pauses_receiving_until_answers_free_it(void **state)
{
	/* Static: when an assertion ends the test early, the threads still write their results here,
	 * not into a stack frame that is gone. */
	static big_call big[2];
	big[0] = (big_call){ .method = "/block", .size = 40000 };
	big[1] = (big_call){ .method = "/block", .size = 40000 };
	size_t held;
	int receiving, contexts;
	call echo;
	(void)state;
	server_up((server_cfg){ .contexts = 4, .max_queued = 8, .nworkers = 4,
				.max_inflight_bytes = 64 * 1024 });
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&big[i].thread, NULL, big_call_main, &big[i]), 0);
	assert_true(wait_until(&W.blocked, 2, 5000));
	/* 80 kB held against a 64 KiB budget: no context receives now. */
	jq_rpc_server_memory(W.srv, &held, &receiving, &contexts);
	assert_true(held >= 80000);
	assert_int_equal(receiving, 0);

	int calls = read_count(&W.calls);
	call_start(&echo, "/echo", "waits", 0);
	sleep_ms(300);
	assert_int_equal(read_count(&W.calls), calls); /* not received while the budget is full */

	pthread_mutex_lock(&W.handlers_mu);
	W.released = true;
	pthread_cond_broadcast(&W.cv);
	pthread_mutex_unlock(&W.handlers_mu);
	call_join(&echo, JQ_OK);
	for (int i = 0; i < 2; i++) {
		pthread_join(big[i].thread, NULL);
		assert_int_equal(big[i].rv, 0);
		assert_int_equal(big[i].code, JQ_OK);
	}
	jq_rpc_server_memory(W.srv, &held, &receiving, &contexts);
	assert_int_equal(held, 0);
	assert_int_equal(receiving, 4);
}

/* Requests kept by their handler (a long-poll) keep their context, and others take its place:
 * however many are kept, new requests are received and answered. */
static void kept_requests_do_not_stop_receiving(void **state)
{
	call kept[6], echo;
	(void)state;
	server_up((server_cfg){ .contexts = 2, .max_queued = 16, .nworkers = 2 });
	for (int i = 0; i < 6; i++)
		call_start(&kept[i], "/defer", "0", 0);
	assert_true(wait_until(&W.defer_calls, 6, 5000));
	call_start(&echo, "/echo", "still-heard", 0);
	call_join(&echo, JQ_OK);
	assert_int_equal(read_count(&W.ndeferred), 6);
	deferrer_start(); /* answers the kept ones */
	for (int i = 0; i < 6; i++)
		call_join(&kept[i], JQ_OK);
}

static void stop_after_load(void **state)
{
	load_client c[12];
	atomic_bool quiet = false;
	int ok = 0, bad = 0, unanswered = 0;
	int64_t t0;
	(void)state;

	server_up((server_cfg){ .contexts = 6, .max_queued = 64, .nworkers = 3 });
	for (int i = 0; i < 12; i++) {
		memset(&c[i], 0, sizeof(c[i]));
		c[i].id = i;
		c[i].quiet = &quiet;
		assert_int_equal(pthread_create(&c[i].thread, NULL, load_client_main, &c[i]), 0);
	}
	sleep_ms(300);
	atomic_store(&quiet, true);
	sleep_ms(2); /* let the last sends land */
	t0 = jq_clock_mono_us();
	server_down();
	print_message("stop took %.1f ms\n", ms_since(t0));
	for (int i = 0; i < 12; i++) {
		pthread_join(c[i].thread, NULL);
		ok += c[i].ok;
		bad += c[i].bad;
		unanswered += c[i].unanswered;
	}
	print_message("load: %d answered, %d unanswered at stop\n", ok, unanswered);
	assert_true(ok > 20);
	assert_int_equal(bad, 0);
	/* Every request that reached the handler was answered, and the answer arrived. */
	assert_int_equal(read_count(&W.calls), ok);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(code_names),
		cmocka_unit_test_setup_teardown(bad_options_are_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(echo_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(many_clients_concurrently, setup, teardown),
		cmocka_unit_test_setup_teardown(slow_request_does_not_block_others, setup, teardown),
		cmocka_unit_test_setup_teardown(queue_full_is_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(deadline_passes_in_queue, setup, teardown),
		cmocka_unit_test_setup_teardown(junk_is_answered, setup, teardown),
		cmocka_unit_test_setup_teardown(deferred_and_requeued, setup, teardown),
		cmocka_unit_test_setup_teardown(stop_answers_everything_in_flight, setup, teardown),
		cmocka_unit_test_setup_teardown(stop_after_load, setup, teardown),
		cmocka_unit_test_setup_teardown(a_full_byte_budget_pauses_receiving_until_answers_free_it,
						setup, teardown),
		cmocka_unit_test_setup_teardown(kept_requests_do_not_stop_receiving, setup, teardown),
	};
	/* warn: the junk test would otherwise log a line per refused message */
	jq_log_setup(JQ_LOG_WARN, JQ_LOG_TEXT);
	if (getenv("JQ_TEST_ONLY") != NULL) /* e.g. JQ_TEST_ONLY=junk_is_answered */
		cmocka_set_test_filter(getenv("JQ_TEST_ONLY"));
	int rc = cmocka_run_group_tests_name("rpc_server", tests, NULL, NULL);
	nng_fini();
	return rc;
}
