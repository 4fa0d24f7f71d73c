/*
 * jq_console — see jq_console.h.
 *
 * nng calls the handler with an aio it has begun; the aio (and the request it carries) stays
 * valid until nng_aio_finish, and nng's connection teardown waits for that finish
 * (nni_aio_stop). A queued request is therefore always finished exactly once, by the worker
 * that takes it or by jq_console_stop's drain, never freed under a worker.
 *
 * Why a process-wide gate, as in jq_http: nng tears a server down asynchronously, so a handler
 * may run after jq_console_stop returned; it finds the live console through `live` under `gate`
 * and answers 503 when there is none.
 */
#include "jq_console.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/supplemental/http/http.h>

#include "jq_api.h"
#include "jq_clock.h"
#include "jq_db.h"
#include "jq_httpd.h"
#include "jq_log.h"

#define CSP "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; " \
	    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
#define JSON_CTYPE "application/json; charset=utf-8"

/* An API request waiting for a worker, and when it came (its deadline counts from then). */
typedef struct waiting_req {
	nng_aio *aio;
	int64_t received_us;
} waiting_req;

typedef struct worker_arg {
	struct jq_console *c;
	int i;
} worker_arg;

struct jq_console {
	jq_console_sources src;
	worker_arg args[JQ_CONSOLE_WORKERS];
	nng_http_server *server;
	jq_db *db[JQ_CONSOLE_WORKERS];
	pthread_t thread[JQ_CONSOLE_WORKERS];
	int nthreads;

	pthread_mutex_t mu; /* everything below */
	pthread_cond_t cv;
	bool stop;
	waiting_req queue[JQ_CONSOLE_MAX_QUEUED]; /* a ring */
	size_t head, count;
};

static pthread_mutex_t gate = PTHREAD_MUTEX_INITIALIZER;
static jq_console *live;

/* ---- answers ---- */

static void reply(nng_aio *aio, uint16_t status, const char *ctype, const void *body, size_t len)
{
	const char *const headers[] = {
		"Content-Security-Policy", CSP, "X-Content-Type-Options", "nosniff", "X-Frame-Options", "DENY",
		"Referrer-Policy", "no-referrer",
		/* RFC 7235: a 401 names the scheme the client should use. */
		status == 401 ? "WWW-Authenticate" : NULL, "Bearer realm=\"jobq\"", NULL,
	};
	jq_httpd_reply(aio, status, ctype, headers, body, len);
}

static void reply_error(nng_aio *aio, jq_code code, const char *message)
{
	size_t len = 0;
	char *body = jq_api_error_body(code, message, &len);
	if (body == NULL) {
		nng_aio_finish(aio, NNG_ENOMEM);
		return;
	}
	reply(aio, jq_api_http_status(code), JSON_CTYPE, body, len);
	free(body);
}

/* ---- the API workers ---- */

static void serve_api(jq_console *c, jq_db *db, nng_aio *aio, int64_t received_us)
{
	nng_http_req *req = nng_aio_get_input(aio, 0);
	void *body = NULL;
	size_t body_len = 0;
	nng_http_req_get_data(req, &body, &body_len);
	jq_api_ctx ctx = { .db = db, .cfg = c->src.cfg, .auth = c->src.auth };
	jq_api_request r = {
		.method = nng_http_req_get_method(req),
		.uri = nng_http_req_get_uri(req),
		.authorization = nng_http_req_get_header(req, "Authorization"),
		.body = body,
		.body_len = body_len,
		.deadline_us = received_us + (int64_t)c->src.cfg->default_deadline_ms * 1000,
	};
	jq_api_reply out;
	jq_api_serve(&ctx, &r, &out);
	if (out.body == NULL) {
		nng_aio_finish(aio, NNG_ENOMEM);
		return;
	}
	reply(aio, out.status, JSON_CTYPE, out.body, out.len);
	free(out.body);
}

static void *worker_main(void *arg)
{
	worker_arg *w = arg;
	jq_console *c = w->c;
	for (;;) {
		pthread_mutex_lock(&c->mu);
		while (!c->stop && c->count == 0)
			pthread_cond_wait(&c->cv, &c->mu);
		if (c->count == 0) {
			pthread_mutex_unlock(&c->mu);
			return NULL;
		}
		waiting_req q = c->queue[c->head];
		c->head = (c->head + 1) % JQ_CONSOLE_MAX_QUEUED;
		c->count--;
		bool stopping = c->stop;
		pthread_mutex_unlock(&c->mu);
		if (stopping)
			reply_error(q.aio, JQ_UNAVAILABLE, "shutting down");
		else
			serve_api(c, c->db[w->i], q.aio, q.received_us);
	}
}

/* ---- the handler (nng's thread) ---- */

static const jq_console_asset *find_asset(const char *uri)
{
	size_t n = strcspn(uri, "?#");
	if (n == 1 && uri[0] == '/')
		uri = "/index.html", n = strlen(uri);
	for (size_t i = 0; i < jq_console_nassets; i++) {
		if (strlen(jq_console_assets[i].path) == n && strncmp(jq_console_assets[i].path, uri, n) == 0)
			return &jq_console_assets[i];
	}
	return NULL;
}

static void on_request(nng_aio *aio)
{
	nng_http_req *req = nng_aio_get_input(aio, 0);
	const char *uri = nng_http_req_get_uri(req), *method = nng_http_req_get_method(req);
	if (strncmp(uri, "/api/", 5) != 0) {
		static const char not_found[] = "not found\n", not_allowed[] = "method not allowed\n";
		const jq_console_asset *f = find_asset(uri);
		if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
			reply(aio, 405, "text/plain; charset=utf-8", not_allowed, sizeof(not_allowed) - 1);
		else if (f == NULL)
			reply(aio, 404, "text/plain; charset=utf-8", not_found, sizeof(not_found) - 1);
		else
			reply(aio, 200, f->content_type, f->data, f->len);
		return;
	}
	pthread_mutex_lock(&gate);
	jq_console *c = live;
	bool queued = false, full = false;
	if (c != NULL) {
		pthread_mutex_lock(&c->mu);
		full = c->count == JQ_CONSOLE_MAX_QUEUED;
		if (!c->stop && !full) {
			c->queue[(c->head + c->count) % JQ_CONSOLE_MAX_QUEUED] =
				(waiting_req){ .aio = aio, .received_us = jq_clock_mono_us() };
			c->count++;
			queued = true;
			pthread_cond_signal(&c->cv);
		}
		pthread_mutex_unlock(&c->mu);
	}
	pthread_mutex_unlock(&gate);
	if (queued)
		return;
	if (full)
		reply_error(aio, JQ_RESOURCE_EXHAUSTED, "the console's API has too many requests waiting; try again");
	else
		reply_error(aio, JQ_UNAVAILABLE, "shutting down");
}

/* ---- start / stop ---- */

static int server_open(jq_console *c, const char *addr)
{
	nng_http_handler *hd = NULL;
	int rv;
	if (jq_httpd_hold("console", addr, &c->server) != 0)
		return -1;
	/* An enqueue of the largest message, its payloads in base64 and JSON around them. */
	size_t max_body = c->src.cfg->max_message_bytes * 2 + 64 * 1024;
	if ((rv = nng_http_handler_alloc(&hd, "/", on_request)) != 0) {
		jq_error("console: cannot add handlers: %s", nng_strerror(rv));
		return -1;
	}
	/* The server owns the handler once added; before that it is ours to free. */
	if ((rv = nng_http_handler_set_method(hd, NULL)) != 0 || (rv = nng_http_handler_set_tree(hd)) != 0 ||
	    (rv = nng_http_handler_collect_body(hd, true, max_body)) != 0 ||
	    (rv = nng_http_server_add_handler(c->server, hd)) != 0) {
		nng_http_handler_free(hd);
		jq_error("console: cannot add handlers: %s", nng_strerror(rv));
		return -1;
	}
	if (jq_httpd_start("console", addr, c->server) != 0)
		return -1;
	jq_info("console: listening on %s (pages at /, JSON API at /api/v1/)", addr);
	return 0;
}

static void console_free(jq_console *c)
{
	jq_httpd_release(c->server);
	pthread_mutex_lock(&gate);
	if (live == c)
		live = NULL;
	pthread_mutex_unlock(&gate);
	pthread_mutex_lock(&c->mu);
	c->stop = true;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
	for (int i = 0; i < c->nthreads; i++)
		pthread_join(c->thread[i], NULL);
	/* With no worker left, whatever is still queued is answered here. */
	while (c->count > 0) {
		nng_aio *aio = c->queue[c->head].aio;
		c->head = (c->head + 1) % JQ_CONSOLE_MAX_QUEUED;
		c->count--;
		reply_error(aio, JQ_UNAVAILABLE, "shutting down");
	}
	for (int i = 0; i < JQ_CONSOLE_WORKERS; i++)
		jq_db_close(c->db[i]);
	pthread_cond_destroy(&c->cv);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

int jq_console_start(const jq_console_sources *src, jq_console **out)
{
	const jq_config *cfg = src->cfg;
	*out = NULL;
	if (jq_httpd_off(cfg->console_addr))
		return 0;
	jq_console *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return -1;
	c->src = *src;
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	jq_pgconn_net net = jq_pgconn_net_of(cfg);
	jq_db_opts o = { .url = cfg->database_url, .prepared = cfg->db_prepared,
			 .backoff_base_ms = cfg->backoff_base_ms, .backoff_max_ms = cfg->backoff_max_ms,
			 .statement_timeout_ms = cfg->default_deadline_ms,
			 .application_name = "jobqd-console", .net = &net };
	for (int i = 0; i < JQ_CONSOLE_WORKERS; i++) {
		if (jq_db_open(&o, &c->db[i]) != 0)
			goto fail;
	}
	for (int i = 0; i < JQ_CONSOLE_WORKERS; i++) {
		c->args[i] = (worker_arg){ .c = c, .i = i };
		if (pthread_create(&c->thread[i], NULL, worker_main, &c->args[i]) != 0)
			goto fail;
		c->nthreads++;
	}
	pthread_mutex_lock(&gate);
	live = c;
	pthread_mutex_unlock(&gate);
	if (server_open(c, cfg->console_addr) != 0)
		goto fail;
	*out = c;
	return 0;
fail:
	console_free(c);
	return -1;
}

void jq_console_stop(jq_console *c)
{
	if (c != NULL)
		console_free(c);
}
