#include "jq_validate.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Latest time accepted for run_at: 9999-12-31, beyond which timestamps stop being sensible. */
#define MAX_RUN_AT_MS INT64_C(253402300799000)

static int bad(char *msg, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad(char *msg, size_t len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, len, fmt, ap);
	va_end(ap);
	return -1;
}

bool jq_validate_utf8(const char *str, size_t len)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0;
	while (i < len) {
		unsigned char c = s[i];
		size_t more;
		uint32_t cp;
		if (c < 0x80) {
			i++;
			continue;
		}
		if ((c & 0xE0) == 0xC0)
			more = 1, cp = c & 0x1F;
		else if ((c & 0xF0) == 0xE0)
			more = 2, cp = c & 0x0F;
		else if ((c & 0xF8) == 0xF0)
			more = 3, cp = c & 0x07;
		else
			return false;
		if (len - i - 1 < more)
			return false;
		for (size_t k = 1; k <= more; k++) {
			if ((s[i + k] & 0xC0) != 0x80)
				return false;
			cp = cp << 6 | (s[i + k] & 0x3F);
		}
		/* Overlong forms, surrogates and values past U+10FFFF are not UTF-8. */
		if ((more == 1 && cp < 0x80) || (more == 2 && cp < 0x800) || (more == 3 && cp < 0x10000) ||
		    cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return false;
		i += more + 1;
	}
	return true;
}

/* plain_name: 1..max characters of [A-Za-z0-9_.-], a queue's or a schedule's name (`what`). */
static int plain_name(const char *field, const char *what, const char *s, size_t max, char *msg,
		      size_t msg_len)
{
	size_t n = s ? strlen(s) : 0;
	if (n == 0)
		return bad(msg, msg_len, "%s: a %s name is required", field, what);
	if (n > max)
		return bad(msg, msg_len, "%s: longer than %zu characters", field, max);
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '.' || c == '-'))
			return bad(msg, msg_len, "%s: only letters, digits, '_', '.' and '-' are allowed",
				   field);
	}
	return 0;
}

int jq_validate_queue_name(const char *field, const char *q, char *msg, size_t msg_len)
{
	return plain_name(field, "queue", q, JQ_MAX_QUEUE_LEN, msg, msg_len);
}

/* text_field: valid UTF-8 of at most max bytes; empty allowed when !required. */
static int text_field(const char *field, const char *s, size_t max, bool required, char *msg,
		      size_t msg_len)
{
	size_t n = s ? strlen(s) : 0;
	if (required && n == 0)
		return bad(msg, msg_len, "%s: required", field);
	if (n > max)
		return bad(msg, msg_len, "%s: longer than %zu bytes", field, max);
	if (!jq_validate_utf8(s ? s : "", n))
		return bad(msg, msg_len, "%s: not valid UTF-8", field);
	return 0;
}

/* printable_text: text_field, without control characters. */
static int printable_text(const char *field, const char *s, size_t max, bool required, char *msg,
			  size_t msg_len)
{
	if (text_field(field, s, max, required, msg, msg_len) != 0)
		return -1;
	for (const unsigned char *p = (const unsigned char *)s; p && *p; p++) {
		if (*p < 0x20 || *p == 0x7F)
			return bad(msg, msg_len, "%s: control characters are not allowed", field);
	}
	return 0;
}

static int worker_id(const char *field, const char *s, bool required, char *msg, size_t msg_len)
{
	return printable_text(field, s, JQ_MAX_WORKER_ID_LEN, required, msg, msg_len);
}

static int printable_text_opt(const char *field, const char *s, size_t max, char *msg, size_t msg_len)
{
	return printable_text(field, s, max, false, msg, msg_len);
}

static int batch_size(const char *field, size_t n, char *msg, size_t msg_len)
{
	if (n == 0)
		return bad(msg, msg_len, "%s: at least one job is required", field);
	if (n > JQ_MAX_BATCH)
		return bad(msg, msg_len, "%s: at most %d per request", field, JQ_MAX_BATCH);
	return 0;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

/* ids_ok: every id positive and none twice (a batch names each job once). */
static int ids_ok(const char *field, const int64_t *ids, size_t n, char *msg, size_t msg_len)
{
	int64_t stack[64];
	int64_t *sorted = n <= 64 ? stack : malloc(n * sizeof(*sorted));
	int rc = 0;
	if (sorted == NULL)
		return bad(msg, msg_len, "%s: out of memory", field);
	for (size_t i = 0; i < n; i++) {
		if (ids[i] <= 0) {
			rc = bad(msg, msg_len, "%s[%zu]: id must be positive", field, i);
			goto out;
		}
		sorted[i] = ids[i];
	}
	qsort(sorted, n, sizeof(*sorted), cmp_i64);
	for (size_t i = 1; i < n; i++) {
		if (sorted[i] == sorted[i - 1]) {
			rc = bad(msg, msg_len, "%s: job %lld appears twice", field, (long long)sorted[i]);
			goto out;
		}
	}
out:
	if (sorted != stack)
		free(sorted);
	return rc;
}

int jq_validate_enqueue(const Jobq__V1__EnqueueRequest *r, const jq_limits *lim, char *msg, size_t msg_len)
{
	char field[48];
	if (batch_size("jobs", r->n_jobs, msg, msg_len) != 0)
		return -1;
	for (size_t i = 0; i < r->n_jobs; i++) {
		const Jobq__V1__JobSpec *j = r->jobs[i];
		snprintf(field, sizeof(field), "jobs[%zu].queue", i);
		if (jq_validate_queue_name(field, j->queue, msg, msg_len) != 0)
			return -1;
		if (j->payload.len > lim->max_payload_bytes)
			return bad(msg, msg_len, "jobs[%zu].payload: %zu bytes, over the limit of %zu", i,
				   j->payload.len, lim->max_payload_bytes);
		if (j->priority < INT16_MIN || j->priority > INT16_MAX)
			return bad(msg, msg_len, "jobs[%zu].priority: must be within %d..%d", i, INT16_MIN,
				   INT16_MAX);
		if (j->run_at_ms < 0 || j->run_at_ms > MAX_RUN_AT_MS)
			return bad(msg, msg_len, "jobs[%zu].run_at_ms: out of range", i);
		if (j->run_at_ms != 0 && j->delay_ms != 0)
			return bad(msg, msg_len, "jobs[%zu]: give run_at_ms or delay_ms, not both", i);
		if (j->max_attempts > JQ_MAX_ATTEMPTS)
			return bad(msg, msg_len, "jobs[%zu].max_attempts: at most %d", i, JQ_MAX_ATTEMPTS);
		if (j->timeout_ms > JQ_MAX_TIMEOUT_MS)
			return bad(msg, msg_len, "jobs[%zu].timeout_ms: at most %d (7 days)", i, JQ_MAX_TIMEOUT_MS);
		snprintf(field, sizeof(field), "jobs[%zu].idempotency_key", i);
		if (text_field(field, j->idempotency_key, JQ_MAX_IDEMPOTENCY_KEY_LEN, false, msg, msg_len) != 0)
			return -1;
	}
	return 0;
}

int jq_validate_claim(const Jobq__V1__ClaimRequest *r, char *msg, size_t msg_len)
{
	if (jq_validate_queue_name("queue", r->queue, msg, msg_len) != 0)
		return -1;
	if (r->limit < 1 || r->limit > JQ_MAX_BATCH)
		return bad(msg, msg_len, "limit: must be within 1..%d", JQ_MAX_BATCH);
	if (worker_id("worker_id", r->worker_id, true, msg, msg_len) != 0)
		return -1;
	if (r->lease_seconds > JQ_MAX_LEASE_SECONDS)
		return bad(msg, msg_len, "lease_seconds: at most %d", JQ_MAX_LEASE_SECONDS);
	if (r->wait_ms > JQ_MAX_WAIT_MS)
		return bad(msg, msg_len, "wait_ms: at most %d", JQ_MAX_WAIT_MS);
	return 0;
}

/* lease_list checks a batch named by (id, token) pairs: 1..1000 jobs, every id and token
 * positive, no id twice. ids/tokens are gathered by the caller from the one-job and batch forms. */
static int lease_list(const int64_t *ids, const int64_t *tokens, size_t n, char *msg, size_t msg_len)
{
	if (batch_size("jobs", n, msg, msg_len) != 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (tokens[i] <= 0)
			return bad(msg, msg_len, "jobs[%zu].lease_token: required (the claim's token)", i);
	}
	return ids_ok("jobs", ids, n, msg, msg_len);
}

/* Gathering both forms: the one-job form (id != 0) comes first, then the batch. */
#define GATHER(r, list, nlist, IDS, TOKENS, N)                                      \
	do {                                                                        \
		N = 0;                                                              \
		if ((r)->id != 0 || (r)->lease_token != 0) {                        \
			IDS[N] = (r)->id;                                           \
			TOKENS[N++] = (r)->lease_token;                             \
		}                                                                   \
		for (size_t i_ = 0; i_ < (nlist) && N < JQ_MAX_BATCH + 1; i_++) {   \
			IDS[N] = (list)[i_]->id;                                    \
			TOKENS[N++] = (list)[i_]->lease_token;                      \
		}                                                                   \
	} while (0)

/* The arrays hold one more than the limit so an oversized batch is seen, not truncated. */
typedef struct lease_buf {
	int64_t ids[JQ_MAX_BATCH + 1];
	int64_t tokens[JQ_MAX_BATCH + 1];
} lease_buf;

/* CHECK_LEASES sets rc to lease_list's verdict on request r's one-job form and r->jobs (any
 * request type with id, lease_token and jobs[]), on a heap buffer: 16 KB is not for the stack. */
#define CHECK_LEASES(r, msg, msg_len, rc)                                           \
	do {                                                                        \
		lease_buf *b_ = malloc(sizeof(*b_));                                \
		size_t n_;                                                          \
		if (b_ == NULL) {                                                   \
			rc = bad(msg, msg_len, "out of memory");                    \
			break;                                                      \
		}                                                                   \
		GATHER(r, (r)->jobs, (r)->n_jobs, b_->ids, b_->tokens, n_);        \
		rc = lease_list(b_->ids, b_->tokens, n_, msg, msg_len);             \
		free(b_);                                                           \
	} while (0)

/* lease_named: whether id is the one-job form's id or one of the batch's. */
static bool lease_named(int64_t id, int64_t one_id, Jobq__V1__JobLease **jobs, size_t n_jobs)
{
	if (id == one_id)
		return true;
	for (size_t i = 0; i < n_jobs; i++)
		if (jobs[i]->id == id)
			return true;
	return false;
}

/* next_claim checks the claim a Complete or Fail may carry exactly as a Claim, naming its
 * fields "claim.<field>". */
static int next_claim(const Jobq__V1__ClaimRequest *claim, char *msg, size_t msg_len)
{
	char why[256];
	if (claim == NULL || jq_validate_claim(claim, why, sizeof(why)) == 0)
		return 0;
	return bad(msg, msg_len, "claim.%s", why);
}

/* per_job_ids: the ids of a list of per-job additions (progress, outputs) name jobs of the
 * request's leases, each at most once. id_of reads entry i's id. The count is checked first, so
 * the work stays within leases squared (a request may carry as many entries as fit its bytes). */
static int per_job_ids(const char *field, size_t n, int64_t (*id_of)(const void *list, size_t i),
		       const void *list, int64_t one_id, Jobq__V1__JobLease **jobs, size_t n_jobs,
		       char *msg, size_t msg_len)
{
	if (n > n_jobs + (one_id != 0))
		return bad(msg, msg_len, "%s: %zu entries, more than the request's %zu leases", field, n,
			   n_jobs + (one_id != 0));
	for (size_t i = 0; i < n; i++) {
		int64_t id = id_of(list, i);
		if (id <= 0 || !lease_named(id, one_id, jobs, n_jobs))
			return bad(msg, msg_len, "%s[%zu].id: %lld is not one of the request's leases", field,
				   i, (long long)id);
		for (size_t k = 0; k < i; k++)
			if (id_of(list, k) == id)
				return bad(msg, msg_len, "%s: job %lld appears twice", field, (long long)id);
	}
	return 0;
}

static int64_t progress_id(const void *list, size_t i)
{
	return ((Jobq__V1__JobProgress *const *)list)[i]->id;
}

static int64_t output_id(const void *list, size_t i)
{
	return ((Jobq__V1__JobOutput *const *)list)[i]->id;
}

int jq_validate_heartbeat(const Jobq__V1__HeartbeatRequest *r, char *msg, size_t msg_len)
{
	char field[40];
	int rc;
	CHECK_LEASES(r, msg, msg_len, rc);
	if (rc != 0)
		return -1;
	if (r->lease_seconds > JQ_MAX_LEASE_SECONDS)
		return bad(msg, msg_len, "lease_seconds: at most %d", JQ_MAX_LEASE_SECONDS);
	if (per_job_ids("progress", r->n_progress, progress_id, r->progress, r->id, r->jobs, r->n_jobs,
			msg, msg_len) != 0)
		return -1;
	for (size_t i = 0; i < r->n_progress; i++) {
		if (r->progress[i]->percent > 100)
			return bad(msg, msg_len, "progress[%zu].percent: must be within 0..100", i);
		snprintf(field, sizeof(field), "progress[%zu].message", i);
		if (printable_text_opt(field, r->progress[i]->message, JQ_MAX_PROGRESS_MESSAGE_LEN, msg, msg_len) != 0)
			return -1;
	}
	return 0;
}

int jq_validate_complete(const Jobq__V1__CompleteRequest *r, const jq_limits *lim, char *msg,
			 size_t msg_len)
{
	int rc;
	CHECK_LEASES(r, msg, msg_len, rc);
	if (rc != 0)
		return -1;
	if (r->output.len > 0 && r->id == 0)
		return bad(msg, msg_len, "output: belongs to the one-job form (id, lease_token); use outputs");
	if (r->output.len > lim->max_payload_bytes)
		return bad(msg, msg_len, "output: %zu bytes, over the limit of %zu", r->output.len,
			   lim->max_payload_bytes);
	if (per_job_ids("outputs", r->n_outputs, output_id, r->outputs, r->id, r->jobs, r->n_jobs, msg,
			msg_len) != 0)
		return -1;
	for (size_t i = 0; i < r->n_outputs; i++) {
		if (r->outputs[i]->id == r->id && r->output.len > 0)
			return bad(msg, msg_len, "outputs[%zu]: job %lld has an output already", i,
				   (long long)r->id);
		if (r->outputs[i]->output.len > lim->max_payload_bytes)
			return bad(msg, msg_len, "outputs[%zu].output: %zu bytes, over the limit of %zu", i,
				   r->outputs[i]->output.len, lim->max_payload_bytes);
	}
	return next_claim(r->claim, msg, msg_len);
}

int jq_validate_fail(const Jobq__V1__FailRequest *r, char *msg, size_t msg_len)
{
	char field[40];
	int rc;
	CHECK_LEASES(r, msg, msg_len, rc);
	if (rc != 0)
		return -1;
	/* Error texts longer than the limit are cut by the handler, so only UTF-8 is checked. */
	if (text_field("error", r->error, SIZE_MAX, false, msg, msg_len) != 0)
		return -1;
	if (r->retry_in_ms > JQ_MAX_RETRY_IN_MS)
		return bad(msg, msg_len, "retry_in_ms: at most %d", JQ_MAX_RETRY_IN_MS);
	for (size_t i = 0; i < r->n_jobs; i++) {
		snprintf(field, sizeof(field), "jobs[%zu].error", i);
		if (text_field(field, r->jobs[i]->error, SIZE_MAX, false, msg, msg_len) != 0)
			return -1;
		if (r->jobs[i]->retry_in_ms > JQ_MAX_RETRY_IN_MS)
			return bad(msg, msg_len, "jobs[%zu].retry_in_ms: at most %d", i, JQ_MAX_RETRY_IN_MS);
	}
	if (worker_id("worker_id", r->worker_id, false, msg, msg_len) != 0)
		return -1;
	return next_claim(r->claim, msg, msg_len);
}

int jq_validate_get(const Jobq__V1__GetRequest *r, char *msg, size_t msg_len)
{
	if (r->id <= 0)
		return bad(msg, msg_len, "id: must be positive");
	return 0;
}

static int status_ok(const char *field, int v, bool allow_unspecified, char *msg, size_t msg_len)
{
	if (v == JOBQ__V1__JOB_STATUS__JOB_STATUS_UNSPECIFIED && allow_unspecified)
		return 0;
	if (v < JOBQ__V1__JOB_STATUS__JOB_STATUS_ARCHIVE_PENDING ||
	    v > JOBQ__V1__JOB_STATUS__JOB_STATUS_ARCHIVE_CANCELLED)
		return bad(msg, msg_len, "%s: unknown job status %d", field, v);
	return 0;
}

int jq_validate_list(const Jobq__V1__ListRequest *r, char *msg, size_t msg_len)
{
	if (r->queue[0] != '\0' && jq_validate_queue_name("queue", r->queue, msg, msg_len) != 0)
		return -1;
	if (status_ok("status", (int)r->status, true, msg, msg_len) != 0)
		return -1;
	if (r->limit > JQ_MAX_BATCH)
		return bad(msg, msg_len, "limit: at most %d", JQ_MAX_BATCH);
	if (r->after_id < 0)
		return bad(msg, msg_len, "after_id: must not be negative");
	return 0;
}

int jq_validate_retry(const Jobq__V1__RetryRequest *r, char *msg, size_t msg_len)
{
	if (r->all_failed) {
		if (r->n_ids != 0)
			return bad(msg, msg_len, "ids: give ids or all_failed, not both");
		return jq_validate_queue_name("queue", r->queue, msg, msg_len);
	}
	if (r->queue[0] != '\0')
		return bad(msg, msg_len, "queue: only used with all_failed");
	if (batch_size("ids", r->n_ids, msg, msg_len) != 0)
		return -1;
	return ids_ok("ids", r->ids, r->n_ids, msg, msg_len);
}

int jq_validate_cancel(const Jobq__V1__CancelRequest *r, char *msg, size_t msg_len)
{
	if (batch_size("ids", r->n_ids, msg, msg_len) != 0)
		return -1;
	return ids_ok("ids", r->ids, r->n_ids, msg, msg_len);
}

int jq_validate_stats(const Jobq__V1__StatsRequest *r, char *msg, size_t msg_len)
{
	if (r->queue[0] != '\0')
		return jq_validate_queue_name("queue", r->queue, msg, msg_len);
	return 0;
}

int jq_validate_wait(const Jobq__V1__WaitRequest *r, char *msg, size_t msg_len)
{
	if (r->n_ids == 0)
		return bad(msg, msg_len, "ids: at least one job is required");
	if (r->n_ids > JQ_MAX_WAIT_IDS)
		return bad(msg, msg_len, "ids: at most %d per request", JQ_MAX_WAIT_IDS);
	if (r->wait_ms > JQ_MAX_WAIT_MS)
		return bad(msg, msg_len, "wait_ms: at most %d", JQ_MAX_WAIT_MS);
	return ids_ok("ids", r->ids, r->n_ids, msg, msg_len);
}

/* limit_ok: a limit between 1 and max. */
static int limit_ok(const char *field, int32_t v, int32_t max, char *msg, size_t msg_len)
{
	if (v < 1 || v > max)
		return bad(msg, msg_len, "%s: %d is out of range (1..%d)", field, (int)v, (int)max);
	return 0;
}

int jq_validate_configure_queue(const Jobq__V1__ConfigureQueueRequest *r, char *msg, size_t msg_len)
{
	if (jq_validate_queue_name("queue", r->queue, msg, msg_len) != 0)
		return -1;
	if (!r->set_concurrency_limit && !r->clear_concurrency_limit && !r->set_rate_limit && !r->clear_rate_limit)
		return bad(msg, msg_len, "nothing to change: set or clear a concurrency or rate limit");
	if (r->set_concurrency_limit && r->clear_concurrency_limit)
		return bad(msg, msg_len, "concurrency_limit: set it or clear it, not both");
	if (r->set_rate_limit && r->clear_rate_limit)
		return bad(msg, msg_len, "rate_limit: set it or clear it, not both");
	if (r->set_concurrency_limit &&
	    limit_ok("concurrency_limit", r->concurrency_limit, JQ_MAX_CONCURRENCY_LIMIT, msg, msg_len) != 0)
		return -1;
	if (!r->set_concurrency_limit && r->concurrency_limit != 0)
		return bad(msg, msg_len, "concurrency_limit: only used with set_concurrency_limit");
	if (r->set_rate_limit &&
	    (limit_ok("rate_limit", r->rate_limit, JQ_MAX_RATE_LIMIT, msg, msg_len) != 0 ||
	     limit_ok("rate_period_ms", r->rate_period_ms, JQ_MAX_RATE_PERIOD_MS, msg, msg_len) != 0))
		return -1;
	if (!r->set_rate_limit && (r->rate_limit != 0 || r->rate_period_ms != 0))
		return bad(msg, msg_len, "rate_limit, rate_period_ms: only used with set_rate_limit");
	return 0;
}

int jq_validate_schedule_name(const char *field, const char *name, char *msg, size_t msg_len)
{
	return plain_name(field, "schedule", name, JQ_MAX_SCHEDULE_NAME_LEN, msg, msg_len);
}

/* zone_name: the shape of a tz database name ("Europe/Berlin", "Etc/GMT+5", "UTC"); whether the
 * database knows it is asked there. */
static int zone_name(const char *z, char *msg, size_t msg_len)
{
	size_t n = strlen(z);
	if (n > JQ_MAX_TIME_ZONE_LEN)
		return bad(msg, msg_len, "schedule.time_zone: longer than %d characters", JQ_MAX_TIME_ZONE_LEN);
	for (size_t i = 0; i < n; i++) {
		char c = z[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '/' || c == '-' || c == '+'))
			return bad(msg, msg_len, "schedule.time_zone: '%.64s' is not a time-zone name (e.g. Europe/Berlin)",
				   z);
	}
	return 0;
}

/* key_pattern: the idempotency key pattern must stay within the key's limit once every {tick}
 * is replaced by a UTC time ("2026-12-04T21:00:00Z", 20 bytes). */
static int key_pattern(const char *k, char *msg, size_t msg_len)
{
	if (text_field("schedule.job.idempotency_key", k, JQ_MAX_IDEMPOTENCY_KEY_LEN, false, msg, msg_len) != 0)
		return -1;
	size_t len = strlen(k), ticks = 0;
	for (const char *p = k; (p = strstr(p, "{tick}")) != NULL; p += 6)
		ticks++;
	if (len + ticks * (20 - 6) > JQ_MAX_IDEMPOTENCY_KEY_LEN)
		return bad(msg, msg_len, "schedule.job.idempotency_key: longer than %d bytes once {tick} is replaced",
			   JQ_MAX_IDEMPOTENCY_KEY_LEN);
	return 0;
}

int jq_validate_add_schedule(const Jobq__V1__AddScheduleRequest *r, const jq_limits *lim, jq_cron *cron,
			     char *msg, size_t msg_len)
{
	const Jobq__V1__Schedule *s = r->schedule;
	char why[200];
	if (s == NULL)
		return bad(msg, msg_len, "schedule: required");
	if (jq_validate_schedule_name("schedule.name", s->name, msg, msg_len) != 0)
		return -1;
	if (jq_cron_parse(s->cron, cron, why, sizeof(why)) != 0)
		return bad(msg, msg_len, "schedule.cron: %s", why);
	if (zone_name(s->time_zone, msg, msg_len) != 0)
		return -1;
	if (s->missed != JOBQ__V1__MISSED_POLICY__MISSED_POLICY_SKIP &&
	    s->missed != JOBQ__V1__MISSED_POLICY__MISSED_POLICY_ONCE)
		return bad(msg, msg_len, "schedule.missed: unknown policy %d", (int)s->missed);
	const Jobq__V1__JobSpec *j = s->job;
	if (j == NULL)
		return bad(msg, msg_len, "schedule.job: required (at least its queue)");
	if (jq_validate_queue_name("schedule.job.queue", j->queue, msg, msg_len) != 0)
		return -1;
	if (j->payload.len > lim->max_payload_bytes)
		return bad(msg, msg_len, "schedule.job.payload: %zu bytes, over the limit of %zu", j->payload.len,
			   lim->max_payload_bytes);
	if (j->priority < INT16_MIN || j->priority > INT16_MAX)
		return bad(msg, msg_len, "schedule.job.priority: must be within %d..%d", INT16_MIN, INT16_MAX);
	if (j->run_at_ms != 0 || j->delay_ms != 0)
		return bad(msg, msg_len,
			   "schedule.job: run_at_ms and delay_ms are not for schedules (a tick's job runs at its tick)");
	if (j->max_attempts > JQ_MAX_ATTEMPTS)
		return bad(msg, msg_len, "schedule.job.max_attempts: at most %d", JQ_MAX_ATTEMPTS);
	return key_pattern(j->idempotency_key, msg, msg_len);
}

int jq_validate_list_schedules(const Jobq__V1__ListSchedulesRequest *r, char *msg, size_t msg_len)
{
	(void)r;
	(void)msg;
	(void)msg_len;
	return 0;
}

int jq_validate_remove_schedule(const Jobq__V1__RemoveScheduleRequest *r, char *msg, size_t msg_len)
{
	return jq_validate_schedule_name("name", r->name, msg, msg_len);
}
