/*
 * jq_metrics — see jq_metrics.h. Counters are plain arrays of relaxed atomics indexed by method
 * and code; histogram buckets are stored non-cumulative (one add per request) and summed up when
 * rendered.
 */
#include "jq_metrics.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobq/v1/jobq.pb-c.h"
#include "jq_code.h"
#include "jq_config.h" /* JQ_VERSION */

#define MAX_METHODS 32          /* the service has 10; the rest is room to grow */
#define OTHER MAX_METHODS       /* label "other": unknown or malformed method names */
#define NCODES 17               /* gRPC codes 0..16; anything else counts as UNKNOWN (2) */

/* Upper bounds in microseconds; +Inf is implicit (the count). */
static const int64_t bucket_us[] = { 500,    1000,   2500,   5000,    10000,   25000,
				     50000,  100000, 250000, 500000,  1000000, 2500000,
				     5000000, 10000000, 30000000, 60000000 };
#define NBUCKETS (sizeof(bucket_us) / sizeof(bucket_us[0]))

typedef struct method_stats {
	_Atomic uint64_t by_code[NCODES];
	_Atomic uint64_t bucket[NBUCKETS]; /* requests at most bucket_us[i] and above bucket_us[i-1] */
	_Atomic uint64_t count;
	_Atomic uint64_t sum_us;
} method_stats;

static method_stats methods[MAX_METHODS + 1];
static _Atomic uint64_t jobs_retried, jobs_failed;

static void add(_Atomic uint64_t *c, uint64_t n)
{
	atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static uint64_t get(_Atomic uint64_t *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

/* method_index maps "/jobq.v1.JobQueue/<Method>" to the method's index in the descriptor. */
static int method_index(const char *full)
{
	const ProtobufCServiceDescriptor *svc = &jobq__v1__job_queue__descriptor;
	size_t n = strlen(svc->name);
	if (full == NULL || full[0] != '/' || strncmp(full + 1, svc->name, n) != 0 || full[1 + n] != '/')
		return OTHER;
	for (unsigned i = 0; i < svc->n_methods && i < MAX_METHODS; i++) {
		if (strcmp(svc->methods[i].name, full + 2 + n) == 0)
			return (int)i;
	}
	return OTHER;
}

static const char *method_label(int i)
{
	return i == OTHER ? "other" : jobq__v1__job_queue__descriptor.methods[i].name;
}

void jq_metrics_request(const char *method, unsigned code, int64_t duration_us)
{
	method_stats *m = &methods[method_index(method)];
	size_t b = 0;
	if (duration_us < 0)
		duration_us = 0;
	while (b < NBUCKETS && duration_us > bucket_us[b])
		b++;
	add(&m->by_code[code < NCODES ? code : 2], 1);
	if (b < NBUCKETS)
		add(&m->bucket[b], 1);
	add(&m->count, 1);
	add(&m->sum_us, (uint64_t)duration_us);
}

void jq_metrics_job_failed(bool retried)
{
	add(retried ? &jobs_retried : &jobs_failed, 1);
}

void jq_metrics_reset(void)
{
	memset(methods, 0, sizeof(methods));
	atomic_store(&jobs_retried, 0);
	atomic_store(&jobs_failed, 0);
}

/* ---- rendering ---- */

typedef struct sb {
	char *buf;
	size_t len, cap;
	bool oom;
} sb;

static void sb_printf(sb *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sb *s, const char *fmt, ...)
{
	va_list ap;
	if (s->oom)
		return;
	for (;;) {
		va_start(ap, fmt);
		int n = vsnprintf(s->buf + s->len, s->cap - s->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			s->oom = true;
			return;
		}
		if ((size_t)n < s->cap - s->len) {
			s->len += (size_t)n;
			return;
		}
		size_t cap = (s->cap + (size_t)n + 1) * 2;
		char *p = realloc(s->buf, cap);
		if (p == NULL) {
			s->oom = true;
			return;
		}
		s->buf = p;
		s->cap = cap;
	}
}

/* header writes the # HELP and # TYPE lines of one metric family. */
static void header(sb *s, const char *name, const char *type, const char *help)
{
	sb_printf(s, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* label_value copies v with the escapes the text format wants (\\, \", \n) into out[cap]. */
static const char *label_value(const char *v, char *out, size_t cap)
{
	size_t k = 0;
	for (; *v != '\0' && k + 3 < cap; v++) {
		if (*v == '\\' || *v == '"') {
			out[k++] = '\\';
			out[k++] = *v;
		} else if (*v == '\n') {
			out[k++] = '\\';
			out[k++] = 'n';
		} else {
			out[k++] = *v;
		}
	}
	out[k] = '\0';
	return out;
}

static void render_requests(sb *s)
{
	header(s, "jobq_rpc_requests_total", "counter", "RPC requests answered, by method and status code.");
	for (int i = 0; i <= OTHER; i++) {
		for (int c = 0; c < NCODES; c++) {
			uint64_t n = get(&methods[i].by_code[c]);
			if (n > 0)
				sb_printf(s, "jobq_rpc_requests_total{method=\"%s\",code=\"%s\"} %llu\n",
					  method_label(i), jq_code_name(c), (unsigned long long)n);
		}
	}
}

static void render_histograms(sb *s)
{
	header(s, "jobq_rpc_duration_seconds", "histogram",
	       "Time from receipt to answer of an RPC, by method (long-poll waits included).");
	for (int i = 0; i <= OTHER; i++) {
		method_stats *m = &methods[i];
		uint64_t count = get(&m->count), cum = 0;
		if (count == 0)
			continue;
		for (size_t b = 0; b < NBUCKETS; b++) {
			cum += get(&m->bucket[b]);
			sb_printf(s, "jobq_rpc_duration_seconds_bucket{method=\"%s\",le=\"%g\"} %llu\n",
				  method_label(i), (double)bucket_us[b] / 1e6, (unsigned long long)cum);
		}
		/* count is read after the buckets, so +Inf is never below the last bucket. */
		if (count < cum)
			count = cum;
		sb_printf(s, "jobq_rpc_duration_seconds_bucket{method=\"%s\",le=\"+Inf\"} %llu\n",
			  method_label(i), (unsigned long long)count);
		sb_printf(s, "jobq_rpc_duration_seconds_sum{method=\"%s\"} %.6f\n", method_label(i),
			  (double)get(&m->sum_us) / 1e6);
		sb_printf(s, "jobq_rpc_duration_seconds_count{method=\"%s\"} %llu\n", method_label(i),
			  (unsigned long long)count);
	}
}

static void one(sb *s, const char *name, const char *type, const char *help, double v)
{
	header(s, name, type, help);
	sb_printf(s, "%s %.15g\n", name, v);
}

static void render_jobs(sb *s, const jq_metrics_snapshot *snap)
{
	static const char *const states[] = { "archive_pending", "archive_processing", "archive_failed" };
	char q[160];
	if (snap->queues == NULL)
		return;
	header(s, "jobq_jobs", "gauge",
	       "Jobs by queue and unfinished state, exact (archive_pending includes scheduled jobs).");
	for (size_t i = 0; i < snap->nqueues; i++) {
		const jq_metrics_queue *m = &snap->queues[i];
		int64_t v[] = { m->pending + m->scheduled, m->processing, m->failed };
		label_value(m->queue, q, sizeof(q));
		for (size_t k = 0; k < sizeof(states) / sizeof(states[0]); k++)
			sb_printf(s, "jobq_jobs{queue=\"%s\",state=\"%s\"} %lld\n", q, states[k], (long long)v[k]);
	}
	header(s, "jobq_jobs_scheduled", "gauge", "Pending jobs whose run_at is still in the future, by queue.");
	for (size_t i = 0; i < snap->nqueues; i++)
		sb_printf(s, "jobq_jobs_scheduled{queue=\"%s\"} %lld\n",
			  label_value(snap->queues[i].queue, q, sizeof(q)), (long long)snap->queues[i].scheduled);
	header(s, "jobq_oldest_due_job_age_seconds", "gauge", "Age of the oldest due pending job, by queue (0 when none).");
	for (size_t i = 0; i < snap->nqueues; i++)
		sb_printf(s, "jobq_oldest_due_job_age_seconds{queue=\"%s\"} %.3f\n",
			  label_value(snap->queues[i].queue, q, sizeof(q)), snap->queues[i].oldest_due_age_seconds);
	if (snap->completed_estimate >= 0 && snap->cancelled_estimate >= 0) {
		header(s, "jobq_jobs_finished_estimate", "gauge",
		       "Completed and cancelled jobs in the table, estimated from PostgreSQL's statistics.");
		sb_printf(s, "jobq_jobs_finished_estimate{state=\"archive_completed\"} %lld\n",
			  (long long)snap->completed_estimate);
		sb_printf(s, "jobq_jobs_finished_estimate{state=\"archive_cancelled\"} %lld\n",
			  (long long)snap->cancelled_estimate);
	}
	one(s, "jobq_jobs_queues_omitted", "gauge", "Queues left out of jobq_jobs by the cap.",
	    (double)snap->queues_omitted);
	one(s, "jobq_jobs_age_seconds", "gauge", "How old the job counts are.", snap->jobs_age_seconds);
}

static void render_snapshot(sb *s, const jq_metrics_snapshot *snap)
{
	one(s, "jobq_database_up", "gauge", "1 when the database answered the last ping.", snap->database_up);
	one(s, "jobq_notify_listening", "gauge", "1 while LISTEN is active.", snap->listening);
	one(s, "jobq_db_pool_size", "gauge", "Database connections serving requests.", snap->pool_size);
	one(s, "jobq_db_pool_in_use", "gauge", "Database connections running a request now.", snap->pool_in_use);
	one(s, "jobq_rpc_requests_waiting", "gauge", "Requests waiting for a database connection.",
	    snap->requests_waiting);
	one(s, "jobq_longpoll_waiters", "gauge", "Claims waiting for work (long-poll).", snap->longpoll_waiters);
	one(s, "jobq_longpoll_wakes_total", "counter", "Waiting Claims sent back to claim by an announcement.",
	    (double)snap->longpoll_woken);
	one(s, "jobq_longpoll_unqueried_total", "counter",
	    "Waiting Claims parked without a query, their queue being known empty.",
	    (double)snap->longpoll_unqueried);
	one(s, "jobq_longpoll_refused_total", "counter",
	    "Waiting Claims answered at once with retry_after_ms: --max-waiting-claims were waiting.",
	    (double)snap->longpoll_refused);
	one(s, "jobq_rpc_held_bytes", "gauge",
	    "Bytes of received requests held now; at --max-inflight-bytes receiving pauses.",
	    (double)snap->rpc_held_bytes);
	one(s, "jobq_rpc_receiving", "gauge", "RPC contexts receiving now (--rpc-contexts unless paused).",
	    snap->rpc_receiving);
	one(s, "jobq_rpc_contexts", "gauge", "RPC contexts open: those receiving and one per request held.",
	    snap->rpc_contexts);
	one(s, "jobq_rpc_connections", "gauge", "RPC client connections open.", snap->rpc_connections);
	one(s, "jobq_rpc_connections_refused_total", "counter",
	    "RPC client connections closed on arrival by --max-connections.",
	    (double)snap->rpc_connections_refused);
	one(s, "jobq_notifications_received_total", "counter", "PostgreSQL notifications received.",
	    (double)snap->notifications_received);
	one(s, "jobq_notifications_published_total", "counter", "Announcements published on the PUB socket.",
	    (double)snap->notifications_published);
	one(s, "jobq_notify_scans_total", "counter",
	    "Scans of the table for due jobs (safety net, run_at timer, unknown change).",
	    (double)snap->notify_scans);
	one(s, "jobq_leases_rescued_total", "counter", "Expired leases whose job the rescuer took back.",
	    (double)snap->leases_rescued);
	one(s, "jobq_jobs_deleted_total", "counter", "Finished jobs deleted by retention.",
	    (double)snap->jobs_deleted);
}

char *jq_metrics_render(const jq_metrics_snapshot *snap, size_t *len)
{
	sb s = { .buf = malloc(8192), .cap = 8192 };
	if (s.buf == NULL)
		return NULL;
	s.buf[0] = '\0';
	header(&s, "jobq_build_info", "gauge", "Build information; always 1.");
	sb_printf(&s, "jobq_build_info{version=\"%s\"} 1\n", JQ_VERSION);
	render_requests(&s);
	render_histograms(&s);
	one(&s, "jobq_job_retries_total", "counter", "Failed attempts that went back to pending.",
	    (double)get(&jobs_retried));
	one(&s, "jobq_job_failures_total", "counter", "Jobs that a Fail left failed for good.",
	    (double)get(&jobs_failed));
	render_snapshot(&s, snap);
	render_jobs(&s, snap);
	if (s.oom) {
		free(s.buf);
		return NULL;
	}
	*len = s.len;
	return s.buf;
}
