/*
 * jq_api — see jq_api.h.
 *
 * A route reads its input into a protobuf request whose strings and bytes point into the parsed
 * JSON (or small buffers of the route), runs the handler with a jq_call whose reply function
 * renders the response as JSON while the handler still holds what it points into, and frees
 * what it made. The JSON reader refuses fields it does not know: a typo is an error, not a
 * silent default.
 */
#include "jq_api.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jq_clock.h"
#include "jq_handlers.h"
#include "jq_json.h"
#include "jq_log.h"
#include "jq_validate.h"

#define PREFIX "/api/v1/"
#define METHOD_PREFIX "/jobq.v1.JobQueue/"
#define QUERY_VALUE_MAX 256

typedef struct api_call {
	const jq_api_ctx *ctx;
	const jq_api_request *req;
	jq_call call;
	jq_jbuf out; /* the rendered OK reply */
	char role[16];
	int64_t id;          /* the job id of the path, for routes with one */
	const char *query;   /* after '?' ("" when none) */
	const jq_json *body; /* the parsed body, NULL when the route reads none */
} api_call;

uint16_t jq_api_http_status(jq_code code)
{
	switch (code) {
	case JQ_OK: return 200;
	case JQ_CANCELLED: return 499;
	case JQ_INVALID_ARGUMENT: return 400;
	case JQ_DEADLINE_EXCEEDED: return 504;
	case JQ_NOT_FOUND: return 404;
	case JQ_ALREADY_EXISTS: return 409;
	case JQ_PERMISSION_DENIED: return 403;
	case JQ_RESOURCE_EXHAUSTED: return 429;
	case JQ_FAILED_PRECONDITION: return 400;
	case JQ_ABORTED: return 409;
	case JQ_OUT_OF_RANGE: return 400;
	case JQ_UNIMPLEMENTED: return 501;
	case JQ_UNAVAILABLE: return 503;
	case JQ_UNAUTHENTICATED: return 401;
	default: return 500;
	}
}

char *jq_api_error_body(jq_code code, const char *message, size_t *len)
{
	jq_jbuf b = { 0 };
	jq_jbuf_raw(&b, "{\"code\":");
	jq_jbuf_cstr(&b, jq_code_name(code));
	jq_jbuf_raw(&b, ",\"message\":");
	jq_jbuf_cstr(&b, message);
	jq_jbuf_raw(&b, "}\n");
	if (b.oom) {
		free(b.p);
		return NULL;
	}
	*len = b.len;
	return b.p;
}

/* ---- rendering responses ---- */

static const char *state_word(Jobq__V1__JobStatus s)
{
	switch (s) {
	case JOBQ__V1__JOB_STATUS__JOB_STATUS_ARCHIVE_PENDING: return "pending";
	case JOBQ__V1__JOB_STATUS__JOB_STATUS_ARCHIVE_PROCESSING: return "processing";
	case JOBQ__V1__JOB_STATUS__JOB_STATUS_ARCHIVE_COMPLETED: return "completed";
	case JOBQ__V1__JOB_STATUS__JOB_STATUS_ARCHIVE_FAILED: return "failed";
	case JOBQ__V1__JOB_STATUS__JOB_STATUS_ARCHIVE_CANCELLED: return "cancelled";
	default: return "";
	}
}

static void field_i64(jq_jbuf *b, const char *name, int64_t v)
{
	jq_jbuf_printf(b, ",\"%s\":%" PRId64, name, v);
}

static void field_str(jq_jbuf *b, const char *name, const char *s)
{
	jq_jbuf_printf(b, ",\"%s\":", name);
	jq_jbuf_cstr(b, s);
}

/* field_bytes: name_bytes, then the bytes as text under name when they are UTF-8 (what the
 * console shows), else as base64 under name_base64. */
static void field_bytes(jq_jbuf *b, const char *name, const ProtobufCBinaryData *v)
{
	jq_jbuf_printf(b, ",\"%s_bytes\":%" PRId64, name, (int64_t)v->len);
	if (jq_validate_utf8((const char *)v->data, v->len)) {
		jq_jbuf_printf(b, ",\"%s\":", name);
		jq_jbuf_str(b, (const char *)v->data, v->len);
	} else {
		jq_jbuf_printf(b, ",\"%s_base64\":", name);
		jq_jbuf_base64(b, v->data, v->len);
	}
}

static void render_job(jq_jbuf *b, const Jobq__V1__Job *j, bool with_payload)
{
	jq_jbuf_printf(b, "{\"id\":%" PRId64, j->id);
	field_str(b, "queue", j->queue);
	field_str(b, "status", state_word(j->status));
	field_str(b, "prev_status", state_word(j->prev_status));
	field_i64(b, "attempts", j->attempts);
	field_i64(b, "max_attempts", j->max_attempts);
	field_i64(b, "priority", j->priority);
	field_i64(b, "run_at_ms", j->run_at_ms);
	field_i64(b, "lease_expires_at_ms", j->lease_expires_at_ms);
	field_str(b, "lease_owner", j->lease_owner);
	field_i64(b, "lease_token", j->lease_token);
	field_str(b, "last_error", j->last_error);
	field_str(b, "idempotency_key", j->idempotency_key);
	if (j->concurrency_key != NULL && j->concurrency_key[0] != '\0')
		field_str(b, "concurrency_key", j->concurrency_key);
	field_i64(b, "created_at_ms", j->created_at_ms);
	field_i64(b, "updated_at_ms", j->updated_at_ms);
	field_i64(b, "finished_at_ms", j->finished_at_ms);
	if (j->timeout_ms > 0)
		field_i64(b, "timeout_ms", j->timeout_ms);
	/* Progress only when a worker reported some (progress_at_ms != 0), as in Job. */
	if (j->progress_at_ms != 0) {
		field_i64(b, "progress_percent", j->progress_percent);
		field_str(b, "progress_message", j->progress_message);
		field_i64(b, "progress_at_ms", j->progress_at_ms);
	}
	if (with_payload) {
		field_bytes(b, "payload", &j->payload);
		/* The output, when the worker's Complete reported one (Get only). */
		if (j->output.len > 0)
			field_bytes(b, "output", &j->output);
	}
	jq_jbuf_raw(b, "}");
}

static void render_settings(jq_jbuf *b, const Jobq__V1__QueueSettings *q)
{
	jq_jbuf_raw(b, "{\"settings\":{\"queue\":");
	jq_jbuf_cstr(b, q ? q->queue : "");
	jq_jbuf_printf(b, ",\"paused\":%s", q && q->paused ? "true" : "false");
	field_i64(b, "concurrency_limit", q ? q->concurrency_limit : 0);
	field_i64(b, "rate_limit", q ? q->rate_limit : 0);
	field_i64(b, "rate_period_ms", q ? q->rate_period_ms : 0);
	field_i64(b, "key_concurrency_limit", q ? q->key_concurrency_limit : 0);
	field_i64(b, "updated_at_ms", q ? q->updated_at_ms : 0);
	jq_jbuf_raw(b, "}}");
}

static void render_schedule(jq_jbuf *b, const Jobq__V1__Schedule *s)
{
	const Jobq__V1__JobSpec *j = s->job;
	jq_jbuf_raw(b, "{\"name\":");
	jq_jbuf_cstr(b, s->name);
	field_str(b, "cron", s->cron);
	field_str(b, "time_zone", s->time_zone);
	field_str(b, "missed", s->missed == JOBQ__V1__MISSED_POLICY__MISSED_POLICY_ONCE ? "once" : "skip");
	field_i64(b, "next_run_at_ms", s->next_run_at_ms);
	field_i64(b, "last_run_at_ms", s->last_run_at_ms);
	field_i64(b, "created_at_ms", s->created_at_ms);
	field_i64(b, "updated_at_ms", s->updated_at_ms);
	jq_jbuf_raw(b, ",\"job\":{\"queue\":");
	jq_jbuf_cstr(b, j ? j->queue : "");
	field_i64(b, "priority", j ? j->priority : 0);
	field_i64(b, "max_attempts", j ? j->max_attempts : 0);
	field_str(b, "idempotency_key", j ? j->idempotency_key : "");
	if (j != NULL && j->payload.data != NULL)
		field_bytes(b, "payload", &j->payload);
	jq_jbuf_raw(b, "}}");
}

static void render_results(jq_jbuf *b, Jobq__V1__ItemResult **r, size_t n)
{
	jq_jbuf_raw(b, "\"results\":[");
	for (size_t i = 0; i < n; i++) {
		jq_jbuf_printf(b, "%s{\"id\":%" PRId64, i ? "," : "", r[i]->id);
		field_str(b, "code", jq_code_name(r[i]->code));
		field_str(b, "message", r[i]->message);
		if (r[i]->status != JOBQ__V1__JOB_STATUS__JOB_STATUS_UNSPECIFIED)
			field_str(b, "status", state_word(r[i]->status));
		jq_jbuf_raw(b, "}");
	}
	jq_jbuf_raw(b, "]");
}

static void render_stats(jq_jbuf *b, const Jobq__V1__StatsResponse *r)
{
	jq_jbuf_raw(b, "{\"queues\":[");
	for (size_t i = 0; i < r->n_queues; i++) {
		const Jobq__V1__QueueStats *q = r->queues[i];
		jq_jbuf_raw(b, i ? ",{\"queue\":" : "{\"queue\":");
		jq_jbuf_cstr(b, q->queue);
		/* pending counts the scheduled ones too, as in Stats */
		field_i64(b, "pending", (int64_t)q->pending);
		field_i64(b, "scheduled", (int64_t)q->scheduled);
		field_i64(b, "processing", (int64_t)q->processing);
		field_i64(b, "completed", (int64_t)q->completed);
		field_i64(b, "failed", (int64_t)q->failed);
		field_i64(b, "cancelled", (int64_t)q->cancelled);
		jq_jbuf_printf(b, ",\"oldest_due_age_seconds\":%.3f", q->oldest_due_age_seconds);
		/* Flow settings as `jobq stats --json` prints them: paused, and each limit set. */
		jq_jbuf_printf(b, ",\"paused\":%s", q->paused ? "true" : "false");
		if (q->concurrency_limit > 0)
			field_i64(b, "concurrency_limit", q->concurrency_limit);
		if (q->rate_limit > 0) {
			field_i64(b, "rate_limit", q->rate_limit);
			field_i64(b, "rate_period_ms", q->rate_period_ms);
		}
		if (q->key_concurrency_limit > 0)
			field_i64(b, "key_concurrency_limit", q->key_concurrency_limit);
		jq_jbuf_raw(b, "}");
	}
	jq_jbuf_raw(b, "]}");
}

/* reply_end ends the reply rendered in a->out and marks the call answered; RESOURCE_EXHAUSTED
 * when it did not fit in memory. */
static int reply_end(api_call *a)
{
	jq_jbuf_raw(&a->out, "\n");
	if (a->out.oom) {
		jq_call_error(&a->call, JQ_RESOURCE_EXHAUSTED, "out of memory");
		return -1;
	}
	a->call.sent = true;
	return 0;
}

/* send_json is the jq_call's reply function: it renders resp while the handler holds it. */
static void send_json(jq_call *call, const ProtobufCMessage *resp)
{
	api_call *a = call->send_arg;
	jq_jbuf *b = &a->out;
	const ProtobufCMessageDescriptor *d = resp->descriptor;
	if (d == &jobq__v1__stats_response__descriptor) {
		render_stats(b, (const Jobq__V1__StatsResponse *)resp);
	} else if (d == &jobq__v1__list_response__descriptor) {
		const Jobq__V1__ListResponse *r = (const Jobq__V1__ListResponse *)resp;
		jq_jbuf_raw(b, "{\"jobs\":[");
		for (size_t i = 0; i < r->n_jobs; i++) {
			if (i)
				jq_jbuf_raw(b, ",");
			render_job(b, r->jobs[i], r->jobs[i]->payload.data != NULL);
		}
		jq_jbuf_printf(b, "],\"next_after_id\":%" PRId64 "}", r->next_after_id);
	} else if (d == &jobq__v1__get_response__descriptor) {
		const Jobq__V1__GetResponse *r = (const Jobq__V1__GetResponse *)resp;
		jq_jbuf_raw(b, "{\"job\":");
		render_job(b, r->job, true);
		jq_jbuf_raw(b, ",\"failures\":[");
		for (size_t i = 0; i < r->n_failures; i++) {
			const Jobq__V1__FailureRecord *f = r->failures[i];
			jq_jbuf_printf(b, "%s{\"attempt\":%" PRIu32, i ? "," : "", f->attempt);
			field_str(b, "worker_id", f->worker_id);
			field_str(b, "error", f->error);
			field_i64(b, "failed_at_ms", f->failed_at_ms);
			jq_jbuf_raw(b, "}");
		}
		jq_jbuf_raw(b, "]}");
	} else if (d == &jobq__v1__enqueue_response__descriptor) {
		const Jobq__V1__EnqueueResponse *r = (const Jobq__V1__EnqueueResponse *)resp;
		jq_jbuf_raw(b, "{\"ids\":[");
		for (size_t i = 0; i < r->n_ids; i++)
			jq_jbuf_printf(b, "%s%" PRId64, i ? "," : "", r->ids[i]);
		jq_jbuf_raw(b, "]}");
	} else if (d == &jobq__v1__retry_response__descriptor) {
		const Jobq__V1__RetryResponse *r = (const Jobq__V1__RetryResponse *)resp;
		jq_jbuf_printf(b, "{\"retried\":%" PRIu32 ",", r->retried);
		render_results(b, r->results, r->n_results);
		jq_jbuf_raw(b, "}");
	} else if (d == &jobq__v1__cancel_response__descriptor) {
		const Jobq__V1__CancelResponse *r = (const Jobq__V1__CancelResponse *)resp;
		jq_jbuf_raw(b, "{");
		render_results(b, r->results, r->n_results);
		jq_jbuf_raw(b, "}");
	} else if (d == &jobq__v1__pause_response__descriptor) {
		render_settings(b, ((const Jobq__V1__PauseResponse *)resp)->settings);
	} else if (d == &jobq__v1__resume_response__descriptor) {
		render_settings(b, ((const Jobq__V1__ResumeResponse *)resp)->settings);
	} else if (d == &jobq__v1__configure_queue_response__descriptor) {
		render_settings(b, ((const Jobq__V1__ConfigureQueueResponse *)resp)->settings);
	} else if (d == &jobq__v1__add_schedule_response__descriptor) {
		const Jobq__V1__AddScheduleResponse *r = (const Jobq__V1__AddScheduleResponse *)resp;
		jq_jbuf_raw(b, "{\"schedule\":");
		if (r->schedule != NULL)
			render_schedule(b, r->schedule);
		else
			jq_jbuf_raw(b, "null");
		jq_jbuf_raw(b, "}");
	} else if (d == &jobq__v1__list_schedules_response__descriptor) {
		const Jobq__V1__ListSchedulesResponse *r = (const Jobq__V1__ListSchedulesResponse *)resp;
		jq_jbuf_raw(b, "{\"schedules\":[");
		for (size_t i = 0; i < r->n_schedules; i++) {
			if (i)
				jq_jbuf_raw(b, ",");
			render_schedule(b, r->schedules[i]);
		}
		jq_jbuf_raw(b, "]}");
	} else if (d == &jobq__v1__remove_schedule_response__descriptor) {
		jq_jbuf_raw(b, "{}");
	} else {
		jq_call_error(call, JQ_INTERNAL, "no JSON form for %s", d->name);
		return;
	}
	(void)reply_end(a);
}

/* ---- reading input ---- */

__attribute__((format(printf, 2, 3))) static int bad(api_call *a, const char *fmt, ...);

static int bad(api_call *a, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(a->call.message, sizeof(a->call.message), fmt, ap);
	va_end(ap);
	a->call.code = JQ_INVALID_ARGUMENT;
	return -1;
}

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
	     : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* query_get finds name=value in the request's query string and percent-decodes it into out:
 * 1 found, 0 absent, -1 bad (error set). */
static int query_get(api_call *a, const char *name, char *out, size_t cap)
{
	const char *q = a->query;
	size_t nlen = strlen(name);
	while (q != NULL && *q != '\0') {
		const char *amp = strchr(q, '&');
		size_t plen = amp ? (size_t)(amp - q) : strlen(q);
		if (plen > nlen && strncmp(q, name, nlen) == 0 && q[nlen] == '=') {
			size_t n = 0;
			for (size_t i = nlen + 1; i < plen; i++) {
				char c = q[i];
				if (c == '+') {
					c = ' ';
				} else if (c == '%') {
					int hi = i + 2 < plen ? hexval(q[i + 1]) : -1;
					int lo = i + 2 < plen ? hexval(q[i + 2]) : -1;
					if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
						return bad(a, "%s: bad percent-encoding", name);
					c = (char)(hi * 16 + lo);
					i += 2;
				}
				if (n + 1 >= cap)
					return bad(a, "%s: too long", name);
				out[n++] = c;
			}
			out[n] = '\0';
			return 1;
		}
		q = amp ? amp + 1 : NULL;
	}
	return 0;
}

/* query_known: every parameter of the request's query string is one of names (NULL-terminated
 * list). */
static int query_known(api_call *a, const char *const *names)
{
	const char *q = a->query;
	while (q != NULL && *q != '\0') {
		const char *amp = strchr(q, '&');
		size_t plen = amp ? (size_t)(amp - q) : strlen(q);
		size_t klen = strcspn(q, "=&");
		bool known = false;
		for (const char *const *n = names; *n != NULL && !known; n++)
			known = strlen(*n) == klen && strncmp(q, *n, klen) == 0;
		if (!known && plen > 0) {
			char key[64];
			snprintf(key, sizeof(key), "%.*s", (int)(klen < 40 ? klen : 40), q);
			for (char *k = key; *k; k++)
				if ((unsigned char)*k < 0x20 || (unsigned char)*k > 0x7E)
					*k = '?';
			return bad(a, "unknown query parameter '%s'", key);
		}
		q = amp ? amp + 1 : NULL;
	}
	return 0;
}

/* parse_int reads a decimal integer in [min, max]; false on anything else. */
static bool parse_int(const char *s, int64_t min, int64_t max, int64_t *out)
{
	if (*s == '\0' || strlen(s) > 20 || strspn(s + (*s == '-'), "0123456789") != strlen(s + (*s == '-')) ||
	    s[*s == '-'] == '\0')
		return false;
	errno = 0;
	long long v = strtoll(s, NULL, 10);
	if (errno != 0 || v < min || v > max)
		return false;
	*out = v;
	return true;
}

static bool parse_state(const char *s, Jobq__V1__JobStatus *out)
{
	static const char *const words[] = { "pending", "processing", "completed", "failed", "cancelled" };
	for (int i = 0; i < 5; i++) {
		jq_state st = (jq_state)i;
		if (strcmp(s, words[i]) == 0 || strcmp(s, jq_state_name(st)) == 0) {
			*out = (Jobq__V1__JobStatus)(i + 1);
			return true;
		}
	}
	return false;
}

/* body_json parses the request body, which must be a JSON object. */
static int body_json(api_call *a, jq_json_doc **doc)
{
	char err[160];
	if (jq_json_parse(a->req->body, a->req->body_len, doc, err, sizeof(err)) != 0) {
		jq_call_error(&a->call, JQ_INVALID_ARGUMENT, "body: %s", err);
		return -1;
	}
	if (jq_json_root(*doc)->type != JQ_JSON_OBJECT) {
		jq_json_free(*doc);
		*doc = NULL;
		return bad(a, "body: %s", "must be a JSON object");
	}
	return 0;
}

/* members_known: every member of obj is one of names; field names obj in messages. */
static int members_known(api_call *a, const jq_json *obj, const char *field, const char *const *names)
{
	for (const jq_json *m = obj->first; m != NULL; m = m->next) {
		bool known = false;
		for (const char *const *n = names; *n != NULL && !known; n++)
			known = strlen(*n) == m->key_len && strcmp(*n, m->key) == 0;
		if (!known) {
			char key[48];
			snprintf(key, sizeof(key), "%.40s", m->key);
			for (char *k = key; *k; k++)
				if ((unsigned char)*k < 0x20 || (unsigned char)*k > 0x7E)
					*k = '?';
			jq_call_error(&a->call, JQ_INVALID_ARGUMENT, "%s%sunknown field '%s'", field,
				      field[0] ? ": " : "", key);
			return -1;
		}
	}
	return 0;
}

/* json_int reads obj.key as an integer in [min, max] into *out (absent: unchanged). */
static int json_int(api_call *a, const jq_json *obj, const char *key, const char *field, int64_t min,
		    int64_t max, int64_t *out)
{
	const jq_json *v = jq_json_get(obj, key);
	if (v == NULL)
		return 0;
	if (v->type != JQ_JSON_NUMBER || !v->is_int || v->i < min || v->i > max) {
		jq_call_error(&a->call, JQ_INVALID_ARGUMENT, "%s%s: must be an integer from %" PRId64 " to %" PRId64,
			      field, key, min, max);
		return -1;
	}
	*out = v->i;
	return 0;
}

/* json_str reads obj.key as a string without NUL bytes (absent: *out unchanged). */
static int json_str(api_call *a, const jq_json *obj, const char *key, const char *field, char **out)
{
	const jq_json *v = jq_json_get(obj, key);
	if (v == NULL)
		return 0;
	const char *s = jq_json_cstr(v);
	if (s == NULL) {
		jq_call_error(&a->call, JQ_INVALID_ARGUMENT, "%s%s: must be a string without NUL characters",
			      field, key);
		return -1;
	}
	*out = (char *)s;
	return 0;
}

/* json_bool reads obj.key as true or false into *out (absent: unchanged). */
static int json_bool(api_call *a, const jq_json *obj, const char *key, protobuf_c_boolean *out)
{
	const jq_json *v = jq_json_get(obj, key);
	if (v == NULL)
		return 0;
	if (v->type != JQ_JSON_BOOL)
		return bad(a, "%s: true or false", key);
	*out = v->b;
	return 0;
}

/* json_i32 reads obj.key as an int32 into *out (absent: unchanged); the handler judges the range. */
static int json_i32(api_call *a, const jq_json *obj, const char *key, int32_t *out)
{
	int64_t v = *out;
	if (json_int(a, obj, key, "", INT32_MIN, INT32_MAX, &v) != 0)
		return -1;
	*out = (int32_t)v;
	return 0;
}

/* json_ids reads obj.ids (an array of integers) into a new array (*ids, *n). */
static int json_ids(api_call *a, const jq_json *obj, int64_t **ids, size_t *n)
{
	const jq_json *v = jq_json_get(obj, "ids");
	*ids = NULL;
	*n = 0;
	if (v == NULL)
		return 0;
	if (v->type != JQ_JSON_ARRAY)
		return bad(a, "%s: must be an array of job ids", "ids");
	if (v->len > JQ_MAX_BATCH) {
		jq_call_error(&a->call, JQ_INVALID_ARGUMENT, "ids: at most %d", JQ_MAX_BATCH);
		return -1;
	}
	*ids = calloc(v->len ? v->len : 1, sizeof(**ids));
	if (*ids == NULL) {
		jq_call_error(&a->call, JQ_RESOURCE_EXHAUSTED, "out of memory");
		return -1;
	}
	for (const jq_json *m = v->first; m != NULL; m = m->next) {
		if (m->type != JQ_JSON_NUMBER || !m->is_int) {
			jq_call_error(&a->call, JQ_INVALID_ARGUMENT, "ids[%zu]: must be an integer", *n);
			return -1;
		}
		(*ids)[(*n)++] = m->i;
	}
	return 0;
}

/* ---- routes ---- */

/* A route fills its request from a->id, a->query and a->body, which serve_route has checked
 * against the route's table entry, and runs the handler (run) or renders a->out (reply_end). */
typedef int (*route_fn)(api_call *a);

static int run(api_call *a, jq_handler_fn fn, const ProtobufCMessage *request)
{
	fn(&a->call, request);
	return 0;
}

static int route_whoami(api_call *a)
{
	jq_jbuf_raw(&a->out, "{\"role\":");
	jq_jbuf_cstr(&a->out, a->role);
	jq_jbuf_printf(&a->out, ",\"auth_required\":%s}", jq_auth_required(a->ctx->auth) ? "true" : "false");
	return reply_end(a);
}

/* query_str: the query parameter name, decoded into buf, as *out (absent: unchanged). */
static int query_str(api_call *a, const char *name, char *buf, size_t cap, char **out)
{
	int got = query_get(a, name, buf, cap);
	if (got > 0)
		*out = buf;
	return got < 0 ? -1 : 0;
}

/* query_bool: the query parameter name, "true" or "false", into *out (absent: unchanged). */
static int query_bool(api_call *a, const char *name, protobuf_c_boolean *out)
{
	char v[QUERY_VALUE_MAX];
	int got = query_get(a, name, v, sizeof(v));
	if (got <= 0)
		return got;
	if (strcmp(v, "true") != 0 && strcmp(v, "false") != 0)
		return bad(a, "%s: true or false", name);
	*out = strcmp(v, "true") == 0;
	return 0;
}

static int route_stats(api_call *a)
{
	Jobq__V1__StatsRequest r = JOBQ__V1__STATS_REQUEST__INIT;
	char queue[QUERY_VALUE_MAX];
	if (query_str(a, "queue", queue, sizeof(queue), &r.queue) != 0)
		return -1;
	return run(a, jq_handle_stats, &r.base);
}

/* The chart of the overview: no RPC method reads it, so it takes Stats' roles. */
static int route_throughput(api_call *a)
{
	jq_db_minute m[JQ_DB_THROUGHPUT_MINUTES];
	jq_db_err err;
	jq_code c = jq_db_throughput(a->ctx->db, m, &err);
	if (c != JQ_OK) {
		jq_call_error(&a->call, c, "%s", err.msg);
		return -1;
	}
	jq_jbuf_raw(&a->out, "{\"minutes\":[");
	for (int i = 0; i < JQ_DB_THROUGHPUT_MINUTES; i++)
		jq_jbuf_printf(&a->out, "%s{\"at_ms\":%" PRId64 ",\"completed\":%" PRId64 "}", i ? "," : "",
			       m[i].at_ms, m[i].completed);
	jq_jbuf_raw(&a->out, "]}");
	return reply_end(a);
}

static int route_list(api_call *a)
{
	Jobq__V1__ListRequest r = JOBQ__V1__LIST_REQUEST__INIT;
	char queue[QUERY_VALUE_MAX], v[QUERY_VALUE_MAX];
	int64_t n;
	int got;
	if (query_str(a, "queue", queue, sizeof(queue), &r.queue) != 0)
		return -1;
	if ((got = query_get(a, "state", v, sizeof(v))) < 0)
		return -1;
	if (got && v[0] != '\0' && !parse_state(v, &r.status))
		return bad(a, "state: %s", "one of pending, processing, completed, failed, cancelled");
	if ((got = query_get(a, "after_id", v, sizeof(v))) < 0)
		return -1;
	if (got) {
		if (!parse_int(v, INT64_MIN, INT64_MAX, &n))
			return bad(a, "%s: must be an integer", "after_id");
		r.after_id = n;
	}
	if ((got = query_get(a, "limit", v, sizeof(v))) < 0)
		return -1;
	if (got) {
		if (!parse_int(v, 0, UINT32_MAX, &n))
			return bad(a, "%s: must be an integer from 0 to 4294967295", "limit");
		r.limit = (uint32_t)n;
	}
	if (query_bool(a, "payload", &r.include_payload) != 0)
		return -1;
	return run(a, jq_handle_list, &r.base);
}

static int route_get(api_call *a)
{
	Jobq__V1__GetRequest r = JOBQ__V1__GET_REQUEST__INIT;
	r.id = a->id;
	return run(a, jq_handle_get, &r.base);
}

static int route_retry_one(api_call *a)
{
	Jobq__V1__RetryRequest r = JOBQ__V1__RETRY_REQUEST__INIT;
	r.n_ids = 1;
	r.ids = &a->id;
	return run(a, jq_handle_retry, &r.base);
}

static int route_cancel_one(api_call *a)
{
	Jobq__V1__CancelRequest r = JOBQ__V1__CANCEL_REQUEST__INIT;
	r.n_ids = 1;
	r.ids = &a->id;
	return run(a, jq_handle_cancel, &r.base);
}

static int route_retry(api_call *a)
{
	Jobq__V1__RetryRequest r = JOBQ__V1__RETRY_REQUEST__INIT;
	int rc = -1;
	if (json_ids(a, a->body, &r.ids, &r.n_ids) == 0 && json_str(a, a->body, "queue", "", &r.queue) == 0 &&
	    json_bool(a, a->body, "all_failed", &r.all_failed) == 0)
		rc = run(a, jq_handle_retry, &r.base);
	free(r.ids);
	return rc;
}

static int route_cancel(api_call *a)
{
	Jobq__V1__CancelRequest r = JOBQ__V1__CANCEL_REQUEST__INIT;
	int rc = -1;
	if (json_ids(a, a->body, &r.ids, &r.n_ids) == 0)
		rc = run(a, jq_handle_cancel, &r.base);
	free(r.ids);
	return rc;
}

/* queue_route runs a request whose one field is the queue (Pause, Resume): queue is that
 * field of request, filled from the body. */
static int queue_route(api_call *a, jq_handler_fn fn, const ProtobufCMessage *request, char **queue)
{
	if (json_str(a, a->body, "queue", "", queue) != 0)
		return -1;
	return run(a, fn, request);
}

static int route_pause(api_call *a)
{
	Jobq__V1__PauseRequest r = JOBQ__V1__PAUSE_REQUEST__INIT;
	return queue_route(a, jq_handle_pause, &r.base, &r.queue);
}

static int route_resume(api_call *a)
{
	Jobq__V1__ResumeRequest r = JOBQ__V1__RESUME_REQUEST__INIT;
	return queue_route(a, jq_handle_resume, &r.base, &r.queue);
}

/* ConfigureQueue: the request's fields by their proto names. */
static int route_configure(api_call *a)
{
	Jobq__V1__ConfigureQueueRequest r = JOBQ__V1__CONFIGURE_QUEUE_REQUEST__INIT;
	const jq_json *o = a->body;
	if (json_str(a, o, "queue", "", &r.queue) != 0 ||
	    json_bool(a, o, "set_concurrency_limit", &r.set_concurrency_limit) != 0 ||
	    json_i32(a, o, "concurrency_limit", &r.concurrency_limit) != 0 ||
	    json_bool(a, o, "clear_concurrency_limit", &r.clear_concurrency_limit) != 0 ||
	    json_bool(a, o, "set_rate_limit", &r.set_rate_limit) != 0 ||
	    json_i32(a, o, "rate_limit", &r.rate_limit) != 0 ||
	    json_i32(a, o, "rate_period_ms", &r.rate_period_ms) != 0 ||
	    json_bool(a, o, "clear_rate_limit", &r.clear_rate_limit) != 0 ||
	    json_bool(a, o, "set_key_concurrency_limit", &r.set_key_concurrency_limit) != 0 ||
	    json_i32(a, o, "key_concurrency_limit", &r.key_concurrency_limit) != 0 ||
	    json_bool(a, o, "clear_key_concurrency_limit", &r.clear_key_concurrency_limit) != 0)
		return -1;
	return run(a, jq_handle_configure_queue, &r.base);
}

/* Enqueue: one JobSpec per element of "jobs"; payloads point into the document, or into a
 * decoded base64 buffer of the spec. */
typedef struct specs {
	Jobq__V1__JobSpec *msgs;
	Jobq__V1__JobSpec **ptrs;
	uint8_t **decoded;
	size_t n;
} specs;

static void specs_free(specs *s)
{
	for (size_t i = 0; s->decoded != NULL && i < s->n; i++)
		free(s->decoded[i]);
	free(s->decoded);
	free(s->msgs);
	free(s->ptrs);
}

static int spec_from_json(api_call *a, const jq_json *o, size_t i, Jobq__V1__JobSpec *m, uint8_t **decoded)
{
	static const char *const names[] = { "queue", "payload", "payload_base64", "priority", "run_at_ms",
					     "delay_ms", "max_attempts", "idempotency_key", "concurrency_key", NULL };
	char field[32];
	int64_t v;
	if (i == SIZE_MAX)
		snprintf(field, sizeof(field), "job"); /* a schedule's */
	else
		snprintf(field, sizeof(field), "jobs[%zu]", i);
	if (o->type != JQ_JSON_OBJECT)
		return bad(a, "%s: must be an object", field);
	if (members_known(a, o, field, names) != 0)
		return -1;
	strcat(field, ".");
	if (json_str(a, o, "queue", field, &m->queue) != 0 ||
	    json_str(a, o, "idempotency_key", field, &m->idempotency_key) != 0 ||
	    json_str(a, o, "concurrency_key", field, &m->concurrency_key) != 0)
		return -1;
	v = 0;
	if (json_int(a, o, "priority", field, INT32_MIN, INT32_MAX, &v) != 0)
		return -1;
	m->priority = (int32_t)v;
	if (json_int(a, o, "run_at_ms", field, INT64_MIN, INT64_MAX, &m->run_at_ms) != 0)
		return -1;
	v = 0;
	if (json_int(a, o, "delay_ms", field, 0, UINT32_MAX, &v) != 0)
		return -1;
	m->delay_ms = (uint32_t)v;
	v = 0;
	if (json_int(a, o, "max_attempts", field, 0, UINT32_MAX, &v) != 0)
		return -1;
	m->max_attempts = (uint32_t)v;
	const jq_json *p = jq_json_get(o, "payload"), *p64 = jq_json_get(o, "payload_base64");
	if (p != NULL && p64 != NULL)
		return bad(a, "%spayload: give payload (text) or payload_base64, not both", field);
	if (p != NULL) {
		if (p->type != JQ_JSON_STRING)
			return bad(a, "%spayload: must be a string (or use payload_base64)", field);
		m->payload.data = (uint8_t *)p->s;
		m->payload.len = p->len;
	} else if (p64 != NULL) {
		int rc = p64->type == JQ_JSON_STRING ? jq_base64_decode(p64->s, p64->len, decoded, &m->payload.len) : -1;
		if (rc == -2) {
			jq_call_error(&a->call, JQ_RESOURCE_EXHAUSTED, "out of memory");
			return -1;
		}
		if (rc != 0)
			return bad(a, "%spayload_base64: must be standard base64 with padding", field);
		m->payload.data = *decoded;
	}
	return 0;
}

static int route_enqueue(api_call *a)
{
	Jobq__V1__EnqueueRequest r = JOBQ__V1__ENQUEUE_REQUEST__INIT;
	const jq_json *jobs = jq_json_get(a->body, "jobs");
	specs s = { 0 };
	int rc = -1;
	if (jobs == NULL || jobs->type != JQ_JSON_ARRAY)
		return bad(a, "%s: must be an array of jobs", "jobs");
	if (jobs->len > JQ_MAX_BATCH) {
		/* the handler says so too, but not before this has built them all */
		jq_call_error(&a->call, JQ_INVALID_ARGUMENT, "jobs: at most %d per request", JQ_MAX_BATCH);
		return -1;
	}
	s.n = jobs->len;
	s.msgs = calloc(s.n ? s.n : 1, sizeof(*s.msgs));
	s.ptrs = calloc(s.n ? s.n : 1, sizeof(*s.ptrs));
	s.decoded = calloc(s.n ? s.n : 1, sizeof(*s.decoded));
	if (s.msgs == NULL || s.ptrs == NULL || s.decoded == NULL) {
		jq_call_error(&a->call, JQ_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	size_t i = 0;
	for (const jq_json *j = jobs->first; j != NULL; j = j->next, i++) {
		jobq__v1__job_spec__init(&s.msgs[i]);
		s.ptrs[i] = &s.msgs[i];
		if (spec_from_json(a, j, i, &s.msgs[i], &s.decoded[i]) != 0)
			goto out;
	}
	r.n_jobs = s.n;
	r.jobs = s.ptrs;
	rc = run(a, jq_handle_enqueue, &r.base);
out:
	specs_free(&s);
	return rc;
}

static int route_list_schedules(api_call *a)
{
	Jobq__V1__ListSchedulesRequest r = JOBQ__V1__LIST_SCHEDULES_REQUEST__INIT;
	if (query_bool(a, "payload", &r.include_payload) != 0)
		return -1;
	return run(a, jq_handle_list_schedules, &r.base);
}

/* AddSchedule: {"name", "cron", "time_zone", "missed": "skip"|"once", "job": JobSpec as for
 * Enqueue}; the handler refuses what a schedule's job may not have (run_at_ms, delay_ms). */
static int route_add_schedule(api_call *a)
{
	Jobq__V1__AddScheduleRequest r = JOBQ__V1__ADD_SCHEDULE_REQUEST__INIT;
	Jobq__V1__Schedule sch = JOBQ__V1__SCHEDULE__INIT;
	Jobq__V1__JobSpec spec = JOBQ__V1__JOB_SPEC__INIT;
	const jq_json *o = a->body, *job = jq_json_get(o, "job");
	uint8_t *decoded = NULL;
	char *missed = NULL;
	int rc = -1;
	if (json_str(a, o, "name", "", &sch.name) != 0 || json_str(a, o, "cron", "", &sch.cron) != 0 ||
	    json_str(a, o, "time_zone", "", &sch.time_zone) != 0 || json_str(a, o, "missed", "", &missed) != 0)
		return -1;
	if (missed != NULL && strcmp(missed, "skip") != 0 && strcmp(missed, "once") != 0)
		return bad(a, "%s: skip or once", "missed");
	sch.missed = missed != NULL && strcmp(missed, "once") == 0 ? JOBQ__V1__MISSED_POLICY__MISSED_POLICY_ONCE
								    : JOBQ__V1__MISSED_POLICY__MISSED_POLICY_SKIP;
	if (job != NULL) {
		if (spec_from_json(a, job, SIZE_MAX, &spec, &decoded) != 0)
			goto out;
		sch.job = &spec;
	}
	r.schedule = &sch;
	rc = run(a, jq_handle_add_schedule, &r.base);
out:
	free(decoded);
	return rc;
}

static int route_remove_schedule(api_call *a)
{
	Jobq__V1__RemoveScheduleRequest r = JOBQ__V1__REMOVE_SCHEDULE_REQUEST__INIT;
	if (json_str(a, a->body, "name", "", &r.name) != 0)
		return -1;
	return run(a, jq_handle_remove_schedule, &r.base);
}

/* What a route takes, checked before it runs: query parameters by name (an unknown one is an
 * error), and for a POST the body's members (a JSON object; an unknown member is an error). */
#define NAMES(...) ((const char *const[]){ __VA_ARGS__, NULL })
#define NO_NAMES ((const char *const[]){ NULL })

typedef enum body_kind {
	BODY_IGNORED,  /* not read (GET) */
	BODY_REQUIRED, /* a JSON object */
	BODY_OPTIONAL, /* a JSON object; an empty body stands for {} */
} body_kind;

typedef struct route {
	const char *http_method;
	const char *path;   /* after /api/v1/; "#" stands for a job id */
	const char *method; /* the RPC method whose roles apply ("" = any credential) */
	route_fn fn;
	const char *const *params;  /* the query parameters it takes */
	body_kind body;
	const char *const *members; /* the body's members it takes (not BODY_IGNORED) */
} route;

static const route routes[] = {
	{ "GET", "whoami", "", route_whoami, NO_NAMES, BODY_IGNORED, NULL },
	{ "GET", "queues", "Stats", route_stats, NAMES("queue"), BODY_IGNORED, NULL },
	{ "POST", "queues/pause", "Pause", route_pause, NO_NAMES, BODY_REQUIRED, NAMES("queue") },
	{ "POST", "queues/resume", "Resume", route_resume, NO_NAMES, BODY_REQUIRED, NAMES("queue") },
	{ "POST", "queues/configure", "ConfigureQueue", route_configure, NO_NAMES, BODY_REQUIRED,
	  NAMES("queue", "set_concurrency_limit", "concurrency_limit", "clear_concurrency_limit", "set_rate_limit",
		"rate_limit", "rate_period_ms", "clear_rate_limit", "set_key_concurrency_limit",
		"key_concurrency_limit", "clear_key_concurrency_limit") },
	{ "GET", "schedules", "ListSchedules", route_list_schedules, NAMES("payload"), BODY_IGNORED, NULL },
	{ "POST", "schedules", "AddSchedule", route_add_schedule, NO_NAMES, BODY_REQUIRED,
	  NAMES("name", "cron", "time_zone", "missed", "job") },
	{ "POST", "schedules/remove", "RemoveSchedule", route_remove_schedule, NO_NAMES, BODY_REQUIRED,
	  NAMES("name") },
	{ "GET", "throughput", "Stats", route_throughput, NO_NAMES, BODY_IGNORED, NULL },
	{ "GET", "jobs", "List", route_list, NAMES("queue", "state", "after_id", "limit", "payload"),
	  BODY_IGNORED, NULL },
	{ "POST", "jobs", "Enqueue", route_enqueue, NO_NAMES, BODY_REQUIRED, NAMES("jobs") },
	{ "GET", "jobs/#", "Get", route_get, NO_NAMES, BODY_IGNORED, NULL },
	{ "POST", "jobs/#/retry", "Retry", route_retry_one, NO_NAMES, BODY_OPTIONAL, NO_NAMES },
	{ "POST", "jobs/#/cancel", "Cancel", route_cancel_one, NO_NAMES, BODY_OPTIONAL, NO_NAMES },
	{ "POST", "retry", "Retry", route_retry, NO_NAMES, BODY_REQUIRED, NAMES("ids", "queue", "all_failed") },
	{ "POST", "cancel", "Cancel", route_cancel, NO_NAMES, BODY_REQUIRED, NAMES("ids") },
};

/* serve_route checks a's query and body against r, then runs r's function, on the parsed body
 * (a->body, NULL when not read) which lives until the function returns. */
static void serve_route(api_call *a, const route *r)
{
	jq_json_doc *doc = NULL;
	if (query_known(a, r->params) != 0)
		return;
	if (r->body == BODY_REQUIRED || (r->body == BODY_OPTIONAL && a->req->body_len > 0)) {
		if (body_json(a, &doc) != 0)
			return;
		a->body = jq_json_root(doc);
		if (members_known(a, a->body, "body", r->members) != 0)
			goto out;
	}
	r->fn(a);
out:
	jq_json_free(doc);
}

/* path_matches: path (no query) against a route's pattern; a job id goes to *id. */
static bool path_matches(const char *path, size_t len, const char *pattern, int64_t *id, bool *bad_id)
{
	while (*pattern != '\0') {
		if (*pattern == '#') {
			size_t n = 0;
			while (n < len && path[n] != '/')
				n++;
			char tmp[32];
			if (n == 0)
				return false;
			snprintf(tmp, sizeof(tmp), "%.*s", (int)(n < 31 ? n : 31), path);
			if (n >= 31 || !parse_int(tmp, INT64_MIN, INT64_MAX, id))
				*bad_id = true;
			path += n;
			len -= n;
			pattern++;
			continue;
		}
		if (len == 0 || *path != *pattern)
			return false;
		path++;
		len--;
		pattern++;
	}
	return len == 0;
}

static void finish(api_call *a, jq_api_reply *out)
{
	out->code = a->call.sent ? JQ_OK : a->call.code;
	if (out->code == JQ_OK && !a->call.sent) {
		out->code = JQ_INTERNAL;
		snprintf(a->call.message, sizeof(a->call.message), "no answer");
	}
	out->status = jq_api_http_status(out->code);
	if (out->code == JQ_OK) {
		out->body = a->out.p;
		out->len = a->out.len;
		return;
	}
	free(a->out.p);
	out->body = jq_api_error_body(out->code, a->call.message, &out->len);
}

void jq_api_serve(const jq_api_ctx *ctx, const jq_api_request *req, jq_api_reply *out)
{
	api_call a = { .ctx = ctx, .req = req };
	a.call = (jq_call){ .db = ctx->db, .cfg = ctx->cfg, .request_id = "console",
			    .received_us = jq_clock_mono_us(), .deadline_us = req->deadline_us,
			    .send = send_json, .send_arg = &a, .code = JQ_INTERNAL };
	const char *uri = req->uri, *query = strchr(uri, '?');
	size_t plen = query ? (size_t)(query - uri) : strlen(uri);
	const route *found = NULL;
	bool other_method = false, bad_id = false;
	char token[JQ_AUTH_TOKEN_MAX + 1], why[160], full[64];
	int principal;

	*out = (jq_api_reply){ .method = "" };
	a.query = query ? query + 1 : "";
	if (plen >= strlen(PREFIX) && strncmp(uri, PREFIX, strlen(PREFIX)) == 0) {
		for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
			bool b = false;
			if (!path_matches(uri + strlen(PREFIX), plen - strlen(PREFIX), routes[i].path, &a.id, &b))
				continue;
			if (strcmp(routes[i].http_method, req->method) != 0) {
				other_method = true;
				continue;
			}
			found = &routes[i];
			bad_id = b;
			break;
		}
	}
	if (found == NULL) {
		if (other_method)
			jq_call_error(&a.call, JQ_UNIMPLEMENTED, "method %.16s is not served on this path", req->method);
		else
			jq_call_error(&a.call, JQ_NOT_FOUND, "no such API route (see docs/api.md)");
		finish(&a, out);
		if (other_method)
			out->status = 405;
		return;
	}
	out->method = found->method;
	snprintf(full, sizeof(full), "%s%s", METHOD_PREFIX, found->method[0] ? found->method : "-");
	if (!jq_auth_bearer(req->authorization, token, sizeof(token))) {
		jq_call_error(&a.call, JQ_UNAUTHENTICATED, "expected 'Authorization: Bearer TOKEN'");
		goto done;
	}
	jq_code c = jq_auth_authorize(ctx->auth, full, token, false, &principal, why, sizeof(why));
	explicit_bzero(token, sizeof(token));
	if (c == JQ_UNAUTHENTICATED && req->authorization == NULL) {
		jq_call_error(&a.call, c, "missing credential: send 'Authorization: Bearer TOKEN'");
		goto done;
	}
	if (c != JQ_OK) {
		jq_call_error(&a.call, c, "%s", why);
		goto done;
	}
	snprintf(a.role, sizeof(a.role), "%s", jq_role_name((jq_role)principal));
	if (bad_id) {
		jq_call_error(&a.call, JQ_INVALID_ARGUMENT, "id: not a job id");
		goto done;
	}
	jq_db_set_deadline(ctx->db, req->deadline_us);
	serve_route(&a, found);
done:
	finish(&a, out);
	jq_log_level lvl = out->code == JQ_OK ? JQ_LOG_DEBUG : out->status >= 500 ? JQ_LOG_WARN : JQ_LOG_INFO;
	if (jq_log_enabled(lvl))
		jq_log_request(lvl, "console", found->method[0] ? found->method : "whoami", out->code,
			       jq_code_name(out->code), (double)(jq_clock_mono_us() - a.call.received_us) / 1000.0,
			       "%s %s", req->method, out->code == JQ_OK ? "ok" : a.call.message);
}
