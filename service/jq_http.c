/*
 * jq_http — see jq_http.h.
 *
 * Why a process-wide gate: nng 1.5 tears an HTTP server down asynchronously (its connections are
 * reaped later on nng's threads), so after jq_http_stop returns a handler may in principle still
 * run. Handlers therefore find the live jq_http through `live`, under `gate`; stop clears it
 * under the same mutex before freeing, and a late handler answers 503 without touching freed
 * memory. Handlers hold the gate only to copy a few figures and render text (microseconds).
 *
 * The job counts are read once at start, whether or not anyone scrapes, so that the first scrape
 * after a start carries them (an alert on an absent series would otherwise fire after every
 * restart). A scrape that finds none read yet (it came first, or the start's read failed), or
 * only counts from before a pause in scraping, waits for one read while the database is up or
 * not yet checked, up to COUNTS_WAIT_MS, on `counted` (paired with the gate, which the wait
 * releases). With the database down it does not wait: it answers with what there is, and with no
 * counts at all, without the job gauges and with jobq_jobs_age_seconds +Inf, since any number
 * would be made up.
 */
#include "jq_http.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nng/nng.h>
#include <nng/supplemental/http/http.h>

#include "jq_clock.h"
#include "jq_db.h"
#include "jq_httpd.h"
#include "jq_log.h"
#include "jq_metrics.h"

#define PING_EVERY_MS 1000
#define PING_STALE_MS 3500     /* an older ping (a hung connect, say) no longer proves anything */
#define JOBS_EVERY_MS 5000
#define SCRAPE_INTEREST_MS 120000 /* job counts are refreshed this long after a scrape */
#define COUNTS_WAIT_MS 2000 /* a scrape waits this long for job counts when it has none fresh */
#define PROM_CTYPE "text/plain; version=0.0.4; charset=utf-8"
/* /metrics shows what Stats shows, so it takes the roles that may call Stats. */
#define METRICS_METHOD "/jobq.v1.JobQueue/Stats"

struct jq_http {
	jq_http_sources src;
	nng_http_server *server;
	jq_db *db;
	pthread_t thread;
	bool thread_started;

	pthread_mutex_t poller_mu; /* everything below */
	pthread_cond_t cv;
	bool stop;
	bool db_up;
	int64_t db_checked_ms; /* 0 = never */
	char db_reason[200];
	jq_metrics_queue *queues; /* NULL until the first refresh */
	size_t nqueues, omitted;
	int64_t completed_est, cancelled_est; /* -1: unknown */
	int64_t jobs_at_ms;
	uint64_t jobs_reads; /* job-count reads ended, successful or not */
	int64_t scraped_ms; /* last /metrics */
	jq_log_limiter jobs_log; /* the poller thread's: a database that is down fails every refresh */
};

static pthread_mutex_t gate = PTHREAD_MUTEX_INITIALIZER;
static jq_http *live;
static pthread_cond_t counted; /* with gate: a job-count read ended, or live changed */
static pthread_once_t counted_once = PTHREAD_ONCE_INIT;

static void counted_init(void)
{
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&counted, &ca);
	pthread_condattr_destroy(&ca);
}

/* ---- the poller thread: ping and job counts ---- */

/* first_line copies the first line of s (libpq messages end in "\n", and may have more). */
static void first_line(char *out, size_t cap, const char *prefix, const char *s)
{
	snprintf(out, cap, "%s%.160s", prefix, s);
	out[strcspn(out, "\r\n")] = '\0';
}

/* db_detail: jq_db's message without its "database unavailable: ", which would repeat the
 * "database unreachable: " it goes after. */
static const char *db_detail(const char *msg)
{
	static const char prefix[] = "database unavailable: ";
	return strncmp(msg, prefix, sizeof(prefix) - 1) == 0 ? msg + sizeof(prefix) - 1 : msg;
}

static void ping(jq_http *h)
{
	jq_db_err err = { .msg = "" };
	jq_code c = jq_db_ping(h->db, &err);
	pthread_mutex_lock(&h->poller_mu);
	h->db_up = c == JQ_OK;
	h->db_checked_ms = jq_clock_mono_ms();
	if (c != JQ_OK)
		first_line(h->db_reason, sizeof(h->db_reason), "database unreachable: ", db_detail(err.msg));
	pthread_mutex_unlock(&h->poller_mu);
}

/* jobs_read_ended counts a job-count read and wakes the scrapes waiting for one. */
static void jobs_read_ended(jq_http *h)
{
	pthread_mutex_lock(&h->poller_mu);
	h->jobs_reads++;
	pthread_mutex_unlock(&h->poller_mu);
	pthread_mutex_lock(&gate);
	pthread_cond_broadcast(&counted);
	pthread_mutex_unlock(&gate);
}

/* read_jobs reads the job counts (jq_db_job_gauges, jq_db_finished_estimates: neither costs
 * more as finished jobs pile up) and swaps in a fresh copy (capped). The queues it finds get
 * their job counters (jq_metrics_queue_known), so those exist from the first scrape too. */
static void read_jobs(jq_http *h)
{
	jq_db_rows *rows = NULL;
	jq_db_err err;
	int64_t completed = -1, cancelled = -1;
	if (jq_db_job_gauges(h->db, &rows, &err) != JQ_OK ||
	    jq_db_finished_estimates(h->db, &completed, &cancelled, &err) != JQ_OK) {
		jq_log_limited(&h->jobs_log, JQ_LOG_WARN, "http: job counts for /metrics: %s", err.msg);
		jq_db_rows_free(rows);
		return;
	}
	jq_log_limited_end(&h->jobs_log);
	size_t total = (size_t)jq_db_rows_count(rows);
	size_t n = total < JQ_HTTP_MAX_QUEUES ? total : JQ_HTTP_MAX_QUEUES;
	jq_metrics_queue *q = calloc(n + 1, sizeof(*q));
	if (q == NULL) {
		jq_db_rows_free(rows);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		jq_queue_stats s;
		jq_db_rows_stats(rows, (int)i, &s);
		q[i] = (jq_metrics_queue){ .pending = s.pending - s.scheduled, .scheduled = s.scheduled,
					   .processing = s.processing, .failed = s.failed,
					   .oldest_due_age_seconds = s.oldest_due_age_seconds,
					   .paused = s.flow.paused,
					   .concurrency_limit = s.flow.concurrency_limit,
					   .rate_limit = s.flow.rate_limit, .rate_period_ms = s.flow.rate_period_ms,
					   .key_concurrency_limit = s.flow.key_concurrency_limit };
		snprintf(q[i].queue, sizeof(q[i].queue), "%s", s.queue);
		jq_metrics_queue_known(q[i].queue);
	}
	jq_db_rows_free(rows);
	pthread_mutex_lock(&h->poller_mu);
	free(h->queues);
	h->queues = q;
	h->nqueues = n;
	h->omitted = total - n;
	h->completed_est = completed;
	h->cancelled_est = cancelled;
	h->jobs_at_ms = jq_clock_mono_ms();
	pthread_mutex_unlock(&h->poller_mu);
}

/* wait_ms sleeps up to ms or until stop or a scrape wakes it; true when asked to stop. */
static bool wait_ms(jq_http *h, int64_t ms)
{
	int64_t until = jq_clock_mono_ms() + ms;
	struct timespec ts = { .tv_sec = until / 1000, .tv_nsec = (long)(until % 1000) * 1000000L };
	pthread_mutex_lock(&h->poller_mu);
	if (!h->stop)
		pthread_cond_timedwait(&h->cv, &h->poller_mu, &ts);
	bool stop = h->stop;
	pthread_mutex_unlock(&h->poller_mu);
	return stop;
}

/* jobs_wanted: the first read after start, then reads while scrapes come. */
static bool jobs_wanted(jq_http *h, int64_t now)
{
	pthread_mutex_lock(&h->poller_mu);
	bool want = h->jobs_reads == 0 ||
		    (h->scraped_ms != 0 && now - h->scraped_ms < SCRAPE_INTEREST_MS &&
		     (h->queues == NULL || now - h->jobs_at_ms >= JOBS_EVERY_MS));
	pthread_mutex_unlock(&h->poller_mu);
	return want;
}

static void *http_poller_main(void *arg)
{
	jq_http *h = arg;
	int64_t next_ping = 0;
	do {
		int64_t now = jq_clock_mono_ms();
		if (now >= next_ping) {
			ping(h);
			next_ping = jq_clock_mono_ms() + PING_EVERY_MS;
		}
		if (jobs_wanted(h, jq_clock_mono_ms())) {
			read_jobs(h);
			jobs_read_ended(h);
		}
	} while (!wait_ms(h, next_ping - jq_clock_mono_ms()));
	return NULL;
}

/* ---- handlers ---- */

static void reply(nng_aio *aio, uint16_t status, const char *ctype, const char *body, size_t len)
{
	jq_httpd_reply(aio, status, ctype, NULL, body, len);
}

static void reply_text(nng_aio *aio, uint16_t status, const char *line)
{
	char buf[256];
	int n = snprintf(buf, sizeof(buf), "%s\n", line);
	size_t len = (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1;
	/* RFC 7235: a 401 names the scheme the client should use. */
	const char *const headers[] = { status == 401 ? "WWW-Authenticate" : NULL, "Bearer realm=\"jobq\"", NULL };
	jq_httpd_reply(aio, status, "text/plain; charset=utf-8", headers, buf, len);
}

static void on_healthz(nng_aio *aio)
{
	reply_text(aio, 200, "ok");
}

/* readiness writes why the replica is not ready into why; true when it is. Gate held. */
static bool readiness(jq_http *h, char *why, size_t cap)
{
	bool ok = false;
	char detail[200];
	pthread_mutex_lock(&h->poller_mu);
	if (h->db_checked_ms == 0)
		snprintf(why, cap, "database not checked yet");
	else if (jq_clock_mono_ms() - h->db_checked_ms > PING_STALE_MS)
		snprintf(why, cap, "database check overdue (last answer %lld ms ago)",
			 (long long)(jq_clock_mono_ms() - h->db_checked_ms));
	else if (!h->db_up)
		snprintf(why, cap, "%s", h->db_reason);
	else if (!jq_notify_health(h->src.notify, detail, sizeof(detail)))
		snprintf(why, cap, "not listening for notifications: %s", detail);
	else
		ok = true;
	pthread_mutex_unlock(&h->poller_mu);
	return ok;
}

static void on_readyz(nng_aio *aio)
{
	char why[256];
	pthread_mutex_lock(&gate);
	bool ok = live != NULL && readiness(live, why, sizeof(why));
	if (live == NULL)
		snprintf(why, sizeof(why), "shutting down");
	pthread_mutex_unlock(&gate);
	reply_text(aio, ok ? 200 : 503, ok ? "ready" : why);
}

/* snapshot fills s from the sources and the cached counts. Gate and h->poller_mu held. */
static void snapshot(jq_http *h, jq_metrics_snapshot *s)
{
	const jq_http_sources *src = &h->src;
	int64_t now = jq_clock_mono_ms();
	s->database_up = h->db_up && h->db_checked_ms != 0 && now - h->db_checked_ms <= PING_STALE_MS;
	s->listening = jq_notify_listening(src->notify);
	s->pool_size = src->pool_size;
	if (src->rpc != NULL) {
		jq_rpc_server_load(src->rpc, &s->pool_in_use, &s->requests_waiting);
		jq_rpc_server_connections(src->rpc, &s->rpc_connections, &s->rpc_connections_refused);
		size_t held;
		jq_rpc_server_memory(src->rpc, &held, &s->rpc_receiving, &s->rpc_contexts);
		s->rpc_held_bytes = (int64_t)held;
	}
	if (src->longpoll != NULL) {
		s->longpoll_waiters = jq_longpoll_waiting(src->longpoll);
		s->longpoll_woken = jq_longpoll_woken(src->longpoll);
		s->longpoll_unqueried = jq_longpoll_unqueried(src->longpoll);
		s->longpoll_refused = jq_longpoll_refused(src->longpoll);
	}
	s->enqueue_grouped_requests = s->enqueue_grouped_statements = -1;
	if (src->enqgroup != NULL) {
		jq_enqgroup_counts(src->enqgroup, &s->enqueue_grouped_requests, &s->enqueue_grouped_statements);
		s->enqueue_waiting = jq_enqgroup_waiting(src->enqgroup);
	}
	if (src->jobwait != NULL) {
		s->waits_waiting = jq_jobwait_waiting(src->jobwait);
		s->waits_refused = jq_jobwait_refused(src->jobwait);
	}
	if (src->notify != NULL) {
		s->notifications_received = jq_notify_received(src->notify);
		s->notify_scans = jq_notify_scans(src->notify);
	}
	if (src->pub != NULL)
		s->notifications_published = jq_publisher_sent(src->pub);
	if (src->rescuer != NULL) {
		s->leases_rescued = jq_rescuer_rescued(src->rescuer);
		s->jobs_deleted = jq_rescuer_deleted(src->rescuer);
	}
	s->schedules = -1;
	if (src->scheduler != NULL) {
		s->schedules = jq_scheduler_schedules(src->scheduler);
		s->schedule_ticks = jq_scheduler_ticks(src->scheduler);
		s->schedule_missed = jq_scheduler_missed(src->scheduler);
		s->schedule_lateness_seconds = jq_scheduler_lateness_seconds(src->scheduler);
	}
	s->queues = h->queues;
	s->nqueues = h->nqueues;
	s->queues_omitted = h->omitted;
	s->completed_estimate = h->queues ? h->completed_est : -1;
	s->cancelled_estimate = h->queues ? h->cancelled_est : -1;
	s->jobs_age_seconds = h->queues ? (double)(now - h->jobs_at_ms) / 1000.0 : 0;
}

/* metrics_refusal: 0 when the request may read /metrics (no auth configured, or a bearer token
 * whose role may call Stats), else the status to answer, with the reason in why. Gate held: the
 * jq_auth is freed only after jq_http_stop, which clears `live` under the gate first. */
static uint16_t metrics_refusal(const jq_http *h, nng_aio *aio, char *why, size_t cap)
{
	char token[JQ_AUTH_TOKEN_MAX + 1];
	int principal;
	if (h->src.auth == NULL)
		return 0;
	nng_http_req *req = nng_aio_get_input(aio, 0);
	const char *value = req != NULL ? nng_http_req_get_header(req, "Authorization") : NULL;
	if (!jq_auth_bearer(value, token, sizeof(token))) {
		snprintf(why, cap, "unauthenticated: expected 'Authorization: Bearer TOKEN'");
		return 401;
	}
	if (token[0] == '\0') {
		snprintf(why, cap, "unauthenticated: /metrics needs 'Authorization: Bearer TOKEN' (reader or admin)");
		return 401;
	}
	unsigned code = jq_auth_authorize(h->src.auth, METRICS_METHOD, token, false, &principal, why, cap);
	explicit_bzero(token, sizeof(token));
	if (code == JQ_OK)
		return 0;
	if (code == JQ_PERMISSION_DENIED) {
		snprintf(why, cap, "permission denied: /metrics is for the reader and admin roles");
		return 403;
	}
	snprintf(why, cap, "unauthenticated: unknown token");
	return 401;
}

/* await_counts: when no job counts were read yet, or none since scrapes stopped (older than
 * SCRAPE_INTEREST_MS), and the database is up or not checked yet, asks the thread for a read and
 * waits until one ends, or COUNTS_WAIT_MS. Gate held (released while waiting); live may be NULL
 * after. */
static void await_counts(void)
{
	int64_t now = jq_clock_mono_ms(), until = now + COUNTS_WAIT_MS;
	struct timespec ts = { .tv_sec = until / 1000, .tv_nsec = (long)(until % 1000) * 1000000L };
	jq_http *h = live;
	pthread_mutex_lock(&h->poller_mu);
	bool stale = h->queues == NULL || now - h->jobs_at_ms > SCRAPE_INTEREST_MS;
	bool wait = stale && (h->db_checked_ms == 0 || h->db_up);
	uint64_t reads = h->jobs_reads;
	h->scraped_ms = jq_clock_mono_ms();
	pthread_cond_signal(&h->cv);
	pthread_mutex_unlock(&h->poller_mu);
	while (wait) {
		if (pthread_cond_timedwait(&counted, &gate, &ts) != 0 || live != h)
			return;
		pthread_mutex_lock(&h->poller_mu);
		wait = h->jobs_reads == reads;
		pthread_mutex_unlock(&h->poller_mu);
	}
}

static void on_metrics(nng_aio *aio)
{
	jq_metrics_snapshot s = { 0 };
	char *text = NULL, why[160];
	size_t len = 0;
	uint16_t refused = 0;
	pthread_mutex_lock(&gate);
	if (live != NULL && (refused = metrics_refusal(live, aio, why, sizeof(why))) != 0) {
		pthread_mutex_unlock(&gate);
		reply_text(aio, refused, why);
		return;
	}
	pthread_mutex_unlock(&gate);
	jq_metrics_read_process(&s.process); /* reads files: not under the gate */
	pthread_mutex_lock(&gate);
	if (live != NULL)
		await_counts();
	if (live != NULL) {
		pthread_mutex_lock(&live->poller_mu);
		live->scraped_ms = jq_clock_mono_ms();
		snapshot(live, &s);
		text = jq_metrics_render(&s, &len);
		pthread_cond_signal(&live->cv); /* first scrape in a while: count jobs now */
		pthread_mutex_unlock(&live->poller_mu);
	}
	bool stopping = live == NULL;
	pthread_mutex_unlock(&gate);
	if (text == NULL) {
		reply_text(aio, stopping ? 503 : 500, stopping ? "shutting down" : "out of memory");
		return;
	}
	reply(aio, 200, PROM_CTYPE, text, len);
	free(text);
}

/* ---- start / stop ---- */

static int add_handler(nng_http_server *srv, const char *path, void (*cb)(nng_aio *))
{
	nng_http_handler *hd;
	int rv = nng_http_handler_alloc(&hd, path, cb);
	if (rv != 0)
		return rv;
	/* The server owns the handler once added; before that it is ours to free. */
	if ((rv = nng_http_handler_set_method(hd, "GET")) != 0 ||
	    (rv = nng_http_server_add_handler(srv, hd)) != 0) {
		nng_http_handler_free(hd);
		return rv;
	}
	return 0;
}

/* server_open starts nng's HTTP server on the address with this module's handlers. */
static int server_open(jq_http *h, const char *addr)
{
	int rv;
	if (jq_httpd_hold("http", addr, &h->server) != 0)
		return -1;
	if ((rv = add_handler(h->server, "/healthz", on_healthz)) != 0 ||
	    (rv = add_handler(h->server, "/readyz", on_readyz)) != 0 ||
	    (rv = add_handler(h->server, "/metrics", on_metrics)) != 0) {
		jq_error("http: cannot add handlers: %s", nng_strerror(rv));
		return -1;
	}
	if (jq_httpd_start("http", addr, h->server) != 0)
		return -1;
	jq_info("http: listening on %s (/healthz, /readyz, /metrics%s)", addr,
		h->src.auth != NULL ? " for a reader or admin bearer token" : "");
	return 0;
}

static void http_free(jq_http *h)
{
	jq_httpd_release(h->server);
	pthread_mutex_lock(&gate);
	if (live == h)
		live = NULL;
	pthread_cond_broadcast(&counted); /* scrapes waiting for job counts answer now */
	pthread_mutex_unlock(&gate);
	if (h->thread_started) {
		pthread_mutex_lock(&h->poller_mu);
		h->stop = true;
		pthread_cond_signal(&h->cv);
		pthread_mutex_unlock(&h->poller_mu);
		pthread_join(h->thread, NULL);
	}
	jq_db_close(h->db);
	pthread_cond_destroy(&h->cv);
	pthread_mutex_destroy(&h->poller_mu);
	free(h->queues);
	free(h);
}

int jq_http_start(const jq_http_sources *src, jq_http **out)
{
	const jq_config *cfg = src->cfg;
	pthread_condattr_t ca;
	*out = NULL;
	if (jq_httpd_off(cfg->http_addr))
		return 0;
	pthread_once(&counted_once, counted_init);
	jq_http *h = calloc(1, sizeof(*h));
	if (h == NULL)
		return -1;
	h->src = *src;
	h->jobs_log = (jq_log_limiter)JQ_LOG_LIMITER(JQ_LOG_REPEAT_MS);
	pthread_mutex_init(&h->poller_mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&h->cv, &ca);
	pthread_condattr_destroy(&ca);
	/* A ping needs no prepared statements, and the job-count queries are cheap to plan every 5 s. */
	jq_pgconn_net net = jq_pgconn_net_of(cfg);
	jq_db_opts o = { .url = cfg->database_url, .prepared = false, .backoff_base_ms = cfg->backoff_base_ms,
			 .backoff_max_ms = cfg->backoff_max_ms, .statement_timeout_ms = 2000,
			 .application_name = "jobqd-http", .net = &net };
	if (jq_db_open(&o, &h->db) != 0)
		goto fail;
	pthread_mutex_lock(&gate);
	live = h;
	pthread_mutex_unlock(&gate);
	if (pthread_create(&h->thread, NULL, http_poller_main, h) != 0)
		goto fail;
	h->thread_started = true;
	if (server_open(h, cfg->http_addr) != 0)
		goto fail;
	*out = h;
	return 0;
fail:
	http_free(h);
	return -1;
}

void jq_http_stop(jq_http *h)
{
	if (h != NULL)
		http_free(h);
}
