/*
 * jq_metrics — see jq_metrics.h. Counters are plain arrays of relaxed atomics indexed by method
 * and code; histogram buckets are stored non-cumulative (one add per request) and summed up when
 * rendered.
 *
 * The job counters by queue: a fixed array of queue slots and an open-addressing hash table of
 * pointers to them. A slot is filled (name, zero counters) under queues_mu and then published by
 * a release store, into the table and into nqueue_slots, so readers find it with acquire loads
 * and no lock; slots are never moved or freed, so a pointer once found stays good.
 */
#include "jq_metrics.h"

#include <dirent.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

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

typedef struct queue_slot {
	char name[72]; /* queue names are at most 64 bytes (jq_validate, the table's CHECK) */
	_Atomic uint64_t jobs[JQ_METRICS__JOB_EVENTS];
} queue_slot;

#define QUEUE_TABLE 512 /* a power of two, over twice JQ_METRICS_MAX_QUEUES: probes stay short */

static queue_slot queue_slots[JQ_METRICS_MAX_QUEUES];
static queue_slot other_queues; /* every queue beyond the table */
static _Atomic(queue_slot *) queue_table[QUEUE_TABLE];
static _Atomic size_t nqueue_slots;
static atomic_bool queue_slots_full;
static pthread_mutex_t queues_mu = PTHREAD_MUTEX_INITIALIZER; /* adding a slot */

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

/* FNV-1a: names are short, and the table only needs them spread. */
static size_t queue_hash(const char *name)
{
	uint32_t h = 2166136261u;
	for (const unsigned char *p = (const unsigned char *)name; *p != '\0'; p++)
		h = (h ^ *p) * 16777619u;
	return h;
}

/* find_queue: the slot of name, or NULL with *free_at at the empty entry where it would go
 * (QUEUE_TABLE when the table has no empty entry, which the cap rules out). */
static queue_slot *find_queue(const char *name, size_t h, size_t *free_at)
{
	*free_at = QUEUE_TABLE;
	for (size_t i = 0; i < QUEUE_TABLE; i++) {
		size_t at = (h + i) & (QUEUE_TABLE - 1);
		queue_slot *s = atomic_load_explicit(&queue_table[at], memory_order_acquire);
		if (s == NULL) {
			*free_at = at;
			return NULL;
		}
		if (strcmp(s->name, name) == 0)
			return s;
	}
	return NULL;
}

/* add_queue gives name a slot, unless another thread did first or the table is full (NULL). */
static queue_slot *add_queue(const char *name, size_t h)
{
	size_t at;
	pthread_mutex_lock(&queues_mu);
	queue_slot *s = find_queue(name, h, &at);
	size_t n = atomic_load_explicit(&nqueue_slots, memory_order_relaxed);
	if (s == NULL && n < JQ_METRICS_MAX_QUEUES && at < QUEUE_TABLE) {
		s = &queue_slots[n];
		snprintf(s->name, sizeof(s->name), "%s", name);
		atomic_store_explicit(&queue_table[at], s, memory_order_release);
		atomic_store_explicit(&nqueue_slots, n + 1, memory_order_release);
		if (n + 1 == JQ_METRICS_MAX_QUEUES)
			atomic_store_explicit(&queue_slots_full, true, memory_order_relaxed);
	}
	pthread_mutex_unlock(&queues_mu);
	return s;
}

/* queue_of: name's slot, a new one while there is room, else NULL. */
static queue_slot *queue_of(const char *name)
{
	size_t at;
	if (strlen(name) >= sizeof(queue_slots[0].name))
		return NULL;
	size_t h = queue_hash(name);
	queue_slot *s = find_queue(name, h, &at);
	if (s != NULL || atomic_load_explicit(&queue_slots_full, memory_order_relaxed))
		return s;
	return add_queue(name, h);
}

void jq_metrics_jobs(const char *queue, jq_metrics_job_event ev, uint64_t n)
{
	queue_slot *s = queue_of(queue);
	if ((unsigned)ev < JQ_METRICS__JOB_EVENTS)
		add(&(s != NULL ? s : &other_queues)->jobs[ev], n);
}

void jq_metrics_queue_known(const char *queue)
{
	(void)queue_of(queue);
}

void jq_metrics_reset(void)
{
	memset(methods, 0, sizeof(methods));
	memset(queue_slots, 0, sizeof(queue_slots));
	memset(&other_queues, 0, sizeof(other_queues));
	for (size_t i = 0; i < QUEUE_TABLE; i++)
		atomic_store(&queue_table[i], NULL);
	atomic_store(&nqueue_slots, 0);
	atomic_store(&queue_slots_full, false);
}

/* ---- the process ---- */

/* proc_stat_fields reads /proc/self/stat's fields from the state on (field 3; the command name
 * before it may hold spaces and parentheses, so the fields start after the last ')'): utime,
 * stime (ticks), starttime (ticks after boot), vsize (bytes), rss (pages). */
static bool proc_stat_fields(unsigned long long *cpu_ticks, unsigned long long *start_ticks,
			     unsigned long long *vsize, long long *rss_pages)
{
	char buf[1024];
	FILE *f = fopen("/proc/self/stat", "re");
	if (f == NULL)
		return false;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	const char *p = strrchr(buf, ')');
	unsigned long long utime, stime;
	/* Fields 3..24: state and 10 more, utime stime, 6 more, starttime vsize rss. */
	if (p == NULL || sscanf(p + 1, " %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %llu %llu"
				       " %*s %*s %*s %*s %*s %*s %llu %llu %lld",
				&utime, &stime, start_ticks, vsize, rss_pages) != 5)
		return false;
	*cpu_ticks = utime + stime;
	return true;
}

/* boot_time: the btime line of /proc/stat (Unix seconds), read once: it does not change. */
static double boot_time(void)
{
	static _Atomic long long btime = -1;
	long long t = atomic_load_explicit(&btime, memory_order_relaxed);
	char line[256];
	if (t >= 0)
		return (double)t;
	FILE *f = fopen("/proc/stat", "re");
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (sscanf(line, "btime %lld", &t) == 1 && t >= 0) {
			atomic_store_explicit(&btime, t, memory_order_relaxed);
			break;
		}
	}
	fclose(f);
	return (double)t;
}

/* open_fds counts the entries of /proc/self/fd (the listing's own descriptor included, as every
 * Prometheus client counts it); -1 when it cannot be listed. */
static int64_t open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int64_t n = 0;
	if (d == NULL)
		return -1;
	for (struct dirent *e; (e = readdir(d)) != NULL;)
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

void jq_metrics_read_process(jq_metrics_process *out)
{
	unsigned long long cpu, start, vsize;
	long long rss;
	struct rlimit rl;
	long ticks = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
	double boot = boot_time();
	*out = (jq_metrics_process){ .open_fds = -1, .max_fds = -1 };
	if (ticks <= 0 || page <= 0 || boot < 0 || !proc_stat_fields(&cpu, &start, &vsize, &rss))
		return;
	out->known = true;
	out->cpu_seconds = (double)cpu / (double)ticks;
	out->start_time_seconds = boot + (double)start / (double)ticks;
	out->resident_bytes = rss * (long long)page;
	out->virtual_bytes = (int64_t)vsize;
	out->open_fds = open_fds();
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
		out->max_fds = (int64_t)rl.rlim_cur;
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

/* render_flow: each queue's pause flag, and its limits where it has them (a series per limit
 * set, none for a queue without one: an absent limit is no number). */
static void render_flow(sb *s, const jq_metrics_snapshot *snap)
{
	char q[160];
	header(s, "jobq_queue_paused", "gauge", "1 while the queue is paused (Pause; its Claims get nothing).");
	for (size_t i = 0; i < snap->nqueues; i++)
		sb_printf(s, "jobq_queue_paused{queue=\"%s\"} %d\n",
			  label_value(snap->queues[i].queue, q, sizeof(q)), snap->queues[i].paused ? 1 : 0);
	header(s, "jobq_queue_concurrency_limit", "gauge",
	       "Most jobs of the queue processing at once (ConfigureQueue), for queues with a limit.");
	for (size_t i = 0; i < snap->nqueues; i++)
		if (snap->queues[i].concurrency_limit > 0)
			sb_printf(s, "jobq_queue_concurrency_limit{queue=\"%s\"} %d\n",
				  label_value(snap->queues[i].queue, q, sizeof(q)), (int)snap->queues[i].concurrency_limit);
	header(s, "jobq_queue_key_concurrency_limit", "gauge",
	       "Most jobs of the queue with one concurrency key processing at once, for queues with a key limit.");
	for (size_t i = 0; i < snap->nqueues; i++)
		if (snap->queues[i].key_concurrency_limit > 0)
			sb_printf(s, "jobq_queue_key_concurrency_limit{queue=\"%s\"} %d\n",
				  label_value(snap->queues[i].queue, q, sizeof(q)),
				  (int)snap->queues[i].key_concurrency_limit);
	header(s, "jobq_queue_rate_limit", "gauge",
	       "Most jobs of the queue claimed per jobq_queue_rate_period_seconds, for queues with a rate limit.");
	for (size_t i = 0; i < snap->nqueues; i++)
		if (snap->queues[i].rate_limit > 0)
			sb_printf(s, "jobq_queue_rate_limit{queue=\"%s\"} %d\n",
				  label_value(snap->queues[i].queue, q, sizeof(q)), (int)snap->queues[i].rate_limit);
	header(s, "jobq_queue_rate_period_seconds", "gauge", "The window of the queue's rate limit.");
	for (size_t i = 0; i < snap->nqueues; i++)
		if (snap->queues[i].rate_limit > 0)
			sb_printf(s, "jobq_queue_rate_period_seconds{queue=\"%s\"} %.3f\n",
				  label_value(snap->queues[i].queue, q, sizeof(q)),
				  (double)snap->queues[i].rate_period_ms / 1000.0);
}

static void render_jobs(sb *s, const jq_metrics_snapshot *snap)
{
	static const char *const states[] = { "archive_pending", "archive_processing", "archive_failed" };
	char q[160];
	if (snap->queues == NULL) {
		header(s, "jobq_jobs_age_seconds", "gauge", "How old the job counts are (+Inf: not read yet).");
		sb_printf(s, "jobq_jobs_age_seconds +Inf\n");
		return;
	}
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
	render_flow(s, snap);
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
	one(s, "jobq_jobs_age_seconds", "gauge", "How old the job counts are (+Inf: not read yet).",
	    snap->jobs_age_seconds);
}

static const char *const job_event_names[JQ_METRICS__JOB_EVENTS] = {
	[JQ_METRICS_ENQUEUED] = "jobq_jobs_enqueued_total",
	[JQ_METRICS_COMPLETED] = "jobq_jobs_completed_total",
	[JQ_METRICS_FAILED] = "jobq_jobs_failed_total",
	[JQ_METRICS_RETRIED] = "jobq_jobs_retried_total",
};

static const char *const job_event_help[JQ_METRICS__JOB_EVENTS] = {
	[JQ_METRICS_ENQUEUED] = "Jobs accepted by Enqueue on this replica, by queue.",
	[JQ_METRICS_COMPLETED] = "Jobs completed by Complete on this replica, by queue.",
	[JQ_METRICS_FAILED] = "Jobs that a Fail on this replica left failed for good, by queue.",
	[JQ_METRICS_RETRIED] = "Jobs that a Fail on this replica sent back to pending (backoff), by queue.",
};

/* render_job_counters writes the job counters by queue, and the older totals without a queue
 * (the sums of two of them). */
static void render_job_counters(sb *s)
{
	size_t n = atomic_load_explicit(&nqueue_slots, memory_order_acquire);
	uint64_t total[JQ_METRICS__JOB_EVENTS] = { 0 };
	char q[160];
	bool other = false;
	for (int ev = 0; ev < JQ_METRICS__JOB_EVENTS; ev++)
		other = other || get(&other_queues.jobs[ev]) > 0;
	for (int ev = 0; ev < JQ_METRICS__JOB_EVENTS; ev++) {
		header(s, job_event_names[ev], "counter", job_event_help[ev]);
		for (size_t i = 0; i < n; i++) {
			uint64_t v = get(&queue_slots[i].jobs[ev]);
			total[ev] += v;
			sb_printf(s, "%s{queue=\"%s\"} %llu\n", job_event_names[ev],
				  label_value(queue_slots[i].name, q, sizeof(q)), (unsigned long long)v);
		}
		if (other) {
			uint64_t v = get(&other_queues.jobs[ev]);
			total[ev] += v;
			sb_printf(s, "%s{queue=\"%s\"} %llu\n", job_event_names[ev], JQ_METRICS_OTHER_QUEUE,
				  (unsigned long long)v);
		}
	}
	one(s, "jobq_job_retries_total", "counter",
	    "Deprecated: the sum of jobq_jobs_retried_total over queues.", (double)total[JQ_METRICS_RETRIED]);
	one(s, "jobq_job_failures_total", "counter",
	    "Deprecated: the sum of jobq_jobs_failed_total over queues.", (double)total[JQ_METRICS_FAILED]);
}

static void render_process(sb *s, const jq_metrics_process *p)
{
	if (!p->known)
		return;
	one(s, "process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.",
	    p->cpu_seconds);
	one(s, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
	    (double)p->resident_bytes);
	one(s, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.",
	    (double)p->virtual_bytes);
	one(s, "process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.",
	    p->start_time_seconds);
	if (p->open_fds >= 0)
		one(s, "process_open_fds", "gauge", "Number of open file descriptors.", (double)p->open_fds);
	if (p->max_fds >= 0)
		one(s, "process_max_fds", "gauge", "Maximum number of open file descriptors.", (double)p->max_fds);
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
	if (snap->enqueue_grouped_requests >= 0) {
		one(s, "jobq_enqueue_grouped_requests_total", "counter",
		    "Enqueue requests that went to the database in one statement with others.",
		    (double)snap->enqueue_grouped_requests);
		one(s, "jobq_enqueue_grouped_statements_total", "counter",
		    "Statements that enqueued the jobs of several Enqueue requests.",
		    (double)snap->enqueue_grouped_statements);
		one(s, "jobq_enqueue_waiting", "gauge",
		    "Enqueue requests waiting for the next grouped statement (another's runs).",
		    snap->enqueue_waiting);
	}
	one(s, "jobq_waits_waiting", "gauge", "Waits waiting for jobs to finish.", snap->waits_waiting);
	one(s, "jobq_waits_refused_total", "counter",
	    "Waits answered at once with retry_after_ms: --max-waiting-waits were waiting.",
	    (double)snap->waits_refused);
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
	if (snap->schedules >= 0)
		one(s, "jobq_schedules", "gauge", "Schedules of periodic jobs (job_schedule).",
		    (double)snap->schedules);
	one(s, "jobq_schedule_ticks_total", "counter", "Jobs enqueued by schedule ticks this replica won.",
	    (double)snap->schedule_ticks);
	one(s, "jobq_schedule_missed_total", "counter",
	    "Times this replica moved a schedule past ticks missed by more than 60 s (policy skip or once).",
	    (double)snap->schedule_missed);
	one(s, "jobq_schedule_lateness_seconds", "gauge",
	    "How late after its tick time this replica enqueued its last scheduled job.",
	    snap->schedule_lateness_seconds);
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
	render_job_counters(&s);
	render_snapshot(&s, snap);
	render_jobs(&s, snap);
	render_process(&s, &snap->process);
	if (s.oom) {
		free(s.buf);
		return NULL;
	}
	*len = s.len;
	return s.buf;
}
