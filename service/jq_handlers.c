#include "jq_handlers.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jq_clock.h"
#include "jq_metrics.h"
#include "jq_scheduler.h"
#include "jq_validate.h"

void jq_call_reply(jq_call *call, const ProtobufCMessage *resp)
{
	if (call->send == NULL) {
		jq_call_error(call, JQ_INTERNAL, "no way to send a reply from here");
		return;
	}
	call->code = JQ_OK;
	call->send(call, resp);
}

void jq_call_error(jq_call *call, jq_code code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(call->message, sizeof(call->message), fmt, ap);
	va_end(ap);
	call->code = code;
}

static void db_error(jq_call *call, jq_code code, const jq_db_err *err)
{
	jq_call_error(call, code, "%s", err->msg);
}

static Jobq__V1__JobStatus to_proto_status(jq_state s)
{
	return (Jobq__V1__JobStatus)((int)s + 1);
}

/* job_to_proto fills a Job message whose strings and bytes point into the job (no copies). */
static void job_to_proto(const jq_job *j, Jobq__V1__Job *m)
{
	jobq__v1__job__init(m);
	m->id = j->id;
	m->queue = (char *)j->queue;
	m->payload.data = (uint8_t *)j->payload;
	m->payload.len = j->payload_len;
	m->status = to_proto_status(j->status);
	m->prev_status = to_proto_status(j->prev_status);
	m->attempts = (uint32_t)j->attempts;
	m->lease_token = j->lease_token;
	m->max_attempts = (uint32_t)j->max_attempts;
	m->priority = j->priority;
	m->run_at_ms = j->run_at_ms;
	m->lease_expires_at_ms = j->lease_expires_at_ms;
	m->lease_owner = (char *)j->lease_owner;
	m->last_error = (char *)j->last_error;
	m->created_at_ms = j->created_at_ms;
	m->updated_at_ms = j->updated_at_ms;
	m->finished_at_ms = j->finished_at_ms;
	m->idempotency_key = (char *)j->idempotency_key;
	m->timeout_ms = (uint32_t)j->timeout_ms;
	m->concurrency_key = (char *)j->concurrency_key;
	if (j->progress_percent >= 0) {
		m->progress_percent = (uint32_t)j->progress_percent;
		m->progress_message = (char *)j->progress_message;
		m->progress_at_ms = j->progress_at_ms;
	}
}

/* Job messages made from rows; they point into the rows, so free these first, rows after. */
typedef struct jobs_out {
	Jobq__V1__Job *msgs;
	Jobq__V1__Job **ptrs;
	size_t n;
} jobs_out;

static int jobs_from_rows(const jq_db_rows *rows, jobs_out *out)
{
	out->n = (size_t)jq_db_rows_count(rows);
	out->msgs = calloc(out->n ? out->n : 1, sizeof(*out->msgs));
	out->ptrs = calloc(out->n ? out->n : 1, sizeof(*out->ptrs));
	if (out->msgs == NULL || out->ptrs == NULL)
		return -1;
	for (size_t i = 0; i < out->n; i++) {
		jq_job j;
		jq_db_rows_job(rows, (int)i, &j);
		job_to_proto(&j, &out->msgs[i]);
		out->ptrs[i] = &out->msgs[i];
	}
	return 0;
}

static void jobs_free(jobs_out *out)
{
	free(out->msgs);
	free(out->ptrs);
}

/* reply_budget: the bytes a Claim or List may fill with jobs: the service's reply limit, or the
 * client's when it takes less, without the envelope. */
static int64_t reply_budget(const jq_call *call)
{
	size_t lim = call->cfg->max_reply_bytes;
	if (call->client_max_reply > 0 && call->client_max_reply < lim)
		lim = call->client_max_reply;
	return lim > JQ_REPLY_ENVELOPE_MAX ? (int64_t)(lim - JQ_REPLY_ENVELOPE_MAX) : 0;
}

/* ---- counting jobs by queue (jq_metrics) ---- */

/* A run of jobs of one queue, counted with one call: a batch is most often of one queue. */
typedef struct job_tally {
	const char *queue; /* NULL: nothing counted yet */
	uint64_t n;
	jq_metrics_job_event ev;
} job_tally;

static void tally_flush(job_tally *t)
{
	if (t->queue != NULL && t->n > 0)
		jq_metrics_jobs(t->queue, t->ev, t->n);
	t->queue = NULL;
	t->n = 0;
}

/* tally counts one job of queue (which must stay valid until the next tally or flush). */
static void tally(job_tally *t, const char *queue, jq_metrics_job_event ev)
{
	if (t->queue == NULL || t->ev != ev || strcmp(t->queue, queue) != 0) {
		tally_flush(t);
		t->queue = queue;
		t->ev = ev;
	}
	t->n++;
}

/* ---- Enqueue ---- */

void jq_handle_enqueue(jq_call *call, const ProtobufCMessage *request)
{
	const Jobq__V1__EnqueueRequest *r = (const Jobq__V1__EnqueueRequest *)request;
	Jobq__V1__EnqueueResponse resp = JOBQ__V1__ENQUEUE_RESPONSE__INIT;
	jq_limits lim = { .max_payload_bytes = call->cfg->max_payload_bytes };
	jq_db_job_spec *specs = NULL;
	int64_t *ids = NULL;
	jq_db_err err;

	if (jq_validate_enqueue(r, &lim, call->message, sizeof(call->message)) != 0) {
		call->code = JQ_INVALID_ARGUMENT;
		return;
	}
	specs = calloc(r->n_jobs, sizeof(*specs));
	ids = calloc(r->n_jobs, sizeof(*ids));
	if (specs == NULL || ids == NULL) {
		jq_call_error(call, JQ_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	int64_t now_us = jq_clock_unix_us();
	for (size_t i = 0; i < r->n_jobs; i++) {
		const Jobq__V1__JobSpec *j = r->jobs[i];
		specs[i] = (jq_db_job_spec){
			.queue = j->queue,
			.payload = j->payload.data,
			.payload_len = j->payload.len,
			.priority = (int16_t)j->priority,
			.run_at_us = j->run_at_ms ? j->run_at_ms * 1000
				   : j->delay_ms ? now_us + (int64_t)j->delay_ms * 1000 : 0,
			.max_attempts = (int32_t)j->max_attempts,
			.idempotency_key = j->idempotency_key[0] ? j->idempotency_key : NULL,
			.timeout_ms = (int32_t)j->timeout_ms,
			.concurrency_key = j->concurrency_key[0] ? j->concurrency_key : NULL,
		};
	}
	jq_code c = jq_enqgroup_enqueue(call->enqgroup, call->db, call->deadline_us, specs, r->n_jobs, ids, &err);
	if (c != JQ_OK) {
		db_error(call, c, &err);
		goto out;
	}
	job_tally t = { 0 };
	for (size_t i = 0; i < r->n_jobs; i++)
		tally(&t, specs[i].queue, JQ_METRICS_ENQUEUED);
	tally_flush(&t);
	resp.n_ids = r->n_jobs;
	resp.ids = ids;
	jq_call_reply(call, &resp.base);
out:
	free(specs);
	free(ids);
}

/* ---- Claim ---- */

/* claim_start: from here the long-poll follows the Claim, which may end up waiting (see
 * jq_longpoll.h); it reads its generation now, before the query. */
static void claim_start(jq_call *call, const Jobq__V1__ClaimRequest *r)
{
	jq_longpoll_claim_start(call->longpoll, &call->claim, r->queue, (int)r->limit, call->received_us,
				r->wait_ms);
	/* A limited queue's Claim looks again by itself: freed slots and new rate windows are not
	 * announced. */
	if (call->flow != NULL)
		jq_longpoll_claim_retry(&call->claim,
					jq_flow_retry_ms(call->flow, r->queue, jq_clock_unix_ms()));
}

/* claim_reply_fits: a Claim runs only for a client that takes a reply of one job of the largest
 * payload. Else the job the claim always takes might not reach it, and would wait under a lease
 * nobody works on. */
static bool claim_reply_fits(jq_call *call)
{
	size_t need = call->cfg->max_payload_bytes + JQ_REPLY_ONE_JOB_EXTRA;
	if (call->client_max_reply == 0 || call->client_max_reply >= need)
		return true;
	jq_call_error(call, JQ_INVALID_ARGUMENT,
		      "max_reply_bytes: this client takes replies of up to %" PRIu32 " bytes; a Claim "
		      "needs %zu (one job of up to --max-payload-bytes %zu, and its other fields)",
		      call->client_max_reply, need, call->cfg->max_payload_bytes);
	return false;
}

bool jq_claim_waits_at_once(jq_call *call, const Jobq__V1__ClaimRequest *r)
{
	if (jq_validate_claim(r, call->message, sizeof(call->message)) != 0 || !claim_reply_fits(call))
		return false;
	claim_start(call, r);
	call->waits = jq_longpoll_claim_known_empty(&call->claim);
	return call->waits;
}

void jq_handle_claim(jq_call *call, const ProtobufCMessage *request)
{
	const Jobq__V1__ClaimRequest *r = (const Jobq__V1__ClaimRequest *)request;
	Jobq__V1__ClaimResponse resp = JOBQ__V1__CLAIM_RESPONSE__INIT;
	jq_db_rows *rows = NULL;
	jobs_out out = { 0 };
	jq_db_err err;

	if (jq_validate_claim(r, call->message, sizeof(call->message)) != 0) {
		call->code = JQ_INVALID_ARGUMENT;
		return;
	}
	if (!claim_reply_fits(call))
		return;
	claim_start(call, r);
	/* A queue known to be empty here: the wait starts without a query (see jq_longpoll.h). */
	if (jq_longpoll_claim_begin(&call->claim)) {
		call->waits = true;
		return;
	}
	int lease = r->lease_seconds ? (int)r->lease_seconds : call->cfg->default_lease_seconds;
	jq_code c = jq_db_claim_within(call->db, r->queue, (int)r->limit, r->worker_id, lease,
				       reply_budget(call), JQ_REPLY_JOB_FIXED, &rows, &err);
	/* A Claim the reply budget cut short leaves due jobs behind that no announcement will name
	 * again: like a failed query, it makes the queue unknown and sends its waiters to look. */
	size_t got = c == JQ_OK ? (size_t)jq_db_rows_count(rows) : 0;
	bool waits = jq_longpoll_claim_end(&call->claim, got, c == JQ_OK && !jq_db_rows_cut(rows));
	if (c != JQ_OK) {
		db_error(call, c, &err);
		return;
	}
	if (waits) {
		call->waits = true;
		goto out;
	}
	if (jobs_from_rows(rows, &out) != 0) {
		jq_call_error(call, JQ_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	resp.n_jobs = out.n;
	resp.jobs = out.ptrs;
	jq_call_reply(call, &resp.base);
out:
	jobs_free(&out);
	jq_db_rows_free(rows);
}

/* ---- Heartbeat, Complete, Fail: batches answered per job ---- */

/* Per-job results of a batch, as ItemResult messages. */
typedef struct items_out {
	Jobq__V1__ItemResult *msgs;
	Jobq__V1__ItemResult **ptrs;
	size_t n;
} items_out;

static int items_to_proto(const jq_db_item *items, size_t n, items_out *out)
{
	out->n = n;
	out->msgs = calloc(n ? n : 1, sizeof(*out->msgs));
	out->ptrs = calloc(n ? n : 1, sizeof(*out->ptrs));
	if (out->msgs == NULL || out->ptrs == NULL)
		return -1;
	for (size_t i = 0; i < n; i++) {
		Jobq__V1__ItemResult *m = &out->msgs[i];
		jobq__v1__item_result__init(m);
		m->id = items[i].id;
		m->code = items[i].code;
		m->message = (char *)(items[i].message ? items[i].message : "");
		m->lease_expires_at_ms = items[i].lease_expires_at_ms;
		m->run_at_ms = items[i].run_at_ms;
		if (items[i].status_known)
			m->status = to_proto_status(items[i].status);
		m->stop_reason = (char *)(items[i].stop_reason ? items[i].stop_reason : "");
		out->ptrs[i] = m;
	}
	return 0;
}

static void items_free(items_out *out)
{
	free(out->msgs);
	free(out->ptrs);
}

/* finish_batch replies with resp, or, when the request named exactly one job and it did not
 * succeed, with that job's code and message (a one-job caller need not look inside results). */
static void finish_batch(jq_call *call, const jq_db_item *items, size_t n, ProtobufCMessage *resp)
{
	if (n == 1 && items[0].code != JQ_OK) {
		jq_call_error(call, items[0].code, "job %lld: %s", (long long)items[0].id,
			      items[0].message ? items[0].message : "failed");
		return;
	}
	jq_call_reply(call, resp);
}

/* reply_items answers a batch with its per-job results: resp's results field (n_results,
 * results) points at ItemResults made from items for the time of the reply. */
static void reply_items(jq_call *call, const jq_db_item *items, size_t n, ProtobufCMessage *resp,
			size_t *n_results, Jobq__V1__ItemResult ***results)
{
	items_out out = { 0 };
	if (items_to_proto(items, n, &out) != 0) {
		jq_call_error(call, JQ_RESOURCE_EXHAUSTED, "out of memory");
	} else {
		*n_results = out.n;
		*results = out.ptrs;
		finish_batch(call, items, n, resp);
	}
	items_free(&out);
}

/* gather_leases flattens the one-job form and the batch form into leases[] (validated before). */
static size_t gather_leases(int64_t id, int64_t token, Jobq__V1__JobLease **list, size_t nlist,
			    jq_db_lease *leases)
{
	size_t n = 0;
	if (id != 0 || token != 0)
		leases[n++] = (jq_db_lease){ .id = id, .lease_token = token, .progress_percent = -1 };
	for (size_t i = 0; i < nlist; i++)
		leases[n++] = (jq_db_lease){ .id = list[i]->id, .lease_token = list[i]->lease_token,
					     .progress_percent = -1 };
	return n;
}

/* lease_of: the lease of job id among leases[n] (validation made sure there is one). */
static jq_db_lease *lease_of(jq_db_lease *leases, size_t n, int64_t id)
{
	for (size_t i = 0; i < n; i++)
		if (leases[i].id == id)
			return &leases[i];
	return NULL;
}

typedef jq_code (*lease_op)(jq_call *call, const jq_db_lease *leases, size_t n, jq_db_item *items,
			    jq_db_err *err, const void *request);

static jq_code op_heartbeat(jq_call *call, const jq_db_lease *leases, size_t n, jq_db_item *items,
			    jq_db_err *err, const void *request)
{
	const Jobq__V1__HeartbeatRequest *r = request;
	int lease = r->lease_seconds ? (int)r->lease_seconds : call->cfg->default_lease_seconds;
	return jq_db_heartbeat(call->db, leases, n, lease, items, err);
}

/* wake_freed: jobs of a concurrency-limited queue left processing, so slots are free: the Claims
 * of the queue waiting here look now (no announcement says so; those waiting on other replicas
 * look within JQ_FLOW_SLOT_RETRY_MS). The call's own claim, when it took `taken` jobs of
 * `taken_queue` in the same statement, used that many of the slots. */
static void wake_freed(jq_call *call, const jq_db_item *items, size_t n, const char *taken_queue,
		       size_t taken)
{
	if (call->flow == NULL || call->longpoll == NULL)
		return;
	for (size_t i = 0; i < n; i++) {
		size_t freed = 0;
		if (!items[i].changed || (i > 0 && strcmp(items[i].queue, items[i - 1].queue) == 0))
			continue; /* a run of one queue is woken once, for all of it */
		for (size_t k = i; k < n && strcmp(items[k].queue, items[i].queue) == 0; k++)
			freed += items[k].changed;
		if (taken_queue != NULL && strcmp(taken_queue, items[i].queue) == 0) {
			size_t used = taken < freed ? taken : freed;
			freed -= used;
			taken -= used;
		}
		if (freed > 0 && jq_flow_limited(call->flow, items[i].queue))
			jq_longpoll_wake(call->longpoll, items[i].queue, freed);
	}
}

static jq_code op_complete(jq_call *call, const jq_db_lease *leases, size_t n, jq_db_item *items,
			   jq_db_err *err, const void *request)
{
	(void)request;
	job_tally t = { 0 };
	jq_code c = jq_db_complete(call->db, leases, n, items, err);
	for (size_t i = 0; c == JQ_OK && i < n; i++) {
		if (items[i].changed)
			tally(&t, items[i].queue, JQ_METRICS_COMPLETED);
	}
	tally_flush(&t);
	if (c == JQ_OK)
		wake_freed(call, items, n, NULL, 0);
	return c;
}

static jq_code op_fail(jq_call *call, const jq_db_lease *leases, size_t n, jq_db_item *items,
		       jq_db_err *err, const void *request)
{
	(void)request;
	job_tally t = { 0 };
	jq_code c = jq_db_fail(call->db, leases, n, items, err);
	for (size_t i = 0; c == JQ_OK && i < n; i++) {
		if (items[i].changed)
			tally(&t, items[i].queue,
			      items[i].status == JQ_STATE_PENDING ? JQ_METRICS_RETRIED : JQ_METRICS_FAILED);
	}
	tally_flush(&t);
	if (c == JQ_OK)
		wake_freed(call, items, n, NULL, 0);
	return c;
}

/* run_leases runs one lease operation over n leases and replies with per-job results through
 * a response of the given descriptor whose first two fields are (n_results, results). */
static void run_leases(jq_call *call, jq_db_lease *leases, size_t n, lease_op op,
		       const void *request, ProtobufCMessage *resp, size_t *n_results,
		       Jobq__V1__ItemResult ***results)
{
	jq_db_item *items = calloc(n, sizeof(*items));
	jq_db_err err;

	if (items == NULL) {
		jq_call_error(call, JQ_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	jq_code c = op(call, leases, n, items, &err, request);
	if (c != JQ_OK)
		db_error(call, c, &err);
	else
		reply_items(call, items, n, resp, n_results, results);
	free(items);
}

/* ---- Complete and Fail that claim the next jobs (CompleteRequest.claim) ---- */

#define CLAIM_METHOD "/jobq.v1.JobQueue/Claim"

/* The fields of CompleteResponse or FailResponse a reply with a claim fills. */
typedef struct next_reply {
	ProtobufCMessage *resp;
	size_t *n_results;
	Jobq__V1__ItemResult ***results;
	size_t *n_claimed;
	Jobq__V1__Job ***claimed;
	protobuf_c_boolean *claim_skipped;
} next_reply;

/* A completion with the claim of the next jobs (one statement), and the same completion alone. */
typedef struct lease_claim_ops {
	jq_code (*with_claim)(jq_db *db, const jq_db_lease *leases, size_t n, const jq_db_claim_next *next,
			      jq_db_item *items, jq_db_rows **claimed, jq_db_err *err);
	jq_code (*alone)(jq_db *db, const jq_db_lease *leases, size_t n, jq_db_item *items, jq_db_err *err);
	bool fail;
} lease_claim_ops;

static const lease_claim_ops COMPLETE_OPS = { jq_db_complete_claim, jq_db_complete, false };
static const lease_claim_ops COMPLETE_OUTPUT_OPS = { jq_db_complete_output_claim, jq_db_complete, false };
static const lease_claim_ops FAIL_OPS = { jq_db_fail_claim, jq_db_fail, true };

/* next_claim_allowed: the caller may Claim as well (the role table is jq_auth's), and takes a
 * reply of one job (as a Claim must). Else the call is refused before anything is done. */
static bool next_claim_allowed(jq_call *call)
{
	if (!jq_role_allows(call->role, CLAIM_METHOD)) {
		jq_call_error(call, JQ_PERMISSION_DENIED, "claim: role %s may not call %s",
			      jq_role_name(call->role), CLAIM_METHOD);
		return false;
	}
	return claim_reply_fits(call);
}

/* next_budget: the bytes the claimed jobs may take in a reply that holds `used` bytes already. */
static int64_t next_budget(const jq_call *call, size_t used)
{
	int64_t b = reply_budget(call) - (int64_t)used - JQ_REPLY_NEXT_EXTRA;
	return b > 0 ? b : 0;
}

static jq_db_claim_next next_of(const jq_call *call, const Jobq__V1__ClaimRequest *cl, int64_t budget)
{
	return (jq_db_claim_next){
		.queue = cl->queue, .limit = (int)cl->limit, .worker = cl->worker_id,
		.lease_seconds = cl->lease_seconds ? (int)cl->lease_seconds : call->cfg->default_lease_seconds,
		.max_bytes = budget, .per_job_bytes = JQ_REPLY_JOB_FIXED,
	};
}

/* next_start: from here the long-poll follows the claim (claim_start); should it wait, it is
 * answered with the completion's results (after_completion). */
static void next_start(jq_call *call, const Jobq__V1__ClaimRequest *cl)
{
	claim_start(call, cl);
	call->claim.after_completion = true;
}

/* tally_items counts the jobs a Complete (fail false) or Fail moved. */
static void tally_items(const jq_db_item *items, size_t n, bool fail)
{
	job_tally t = { 0 };
	for (size_t i = 0; i < n; i++) {
		if (!items[i].changed)
			continue;
		jq_metrics_job_event ev = !fail ? JQ_METRICS_COMPLETED
				       : items[i].status == JQ_STATE_PENDING ? JQ_METRICS_RETRIED : JQ_METRICS_FAILED;
		tally(&t, items[i].queue, ev);
	}
	tally_flush(&t);
}

/* reply_claimed answers with the response nr fills, the jobs of rows as its claimed. */
static void reply_claimed(jq_call *call, const jq_db_rows *rows, const next_reply *nr)
{
	jobs_out out = { 0 };
	if (jobs_from_rows(rows, &out) != 0) {
		jq_call_error(call, JQ_RESOURCE_EXHAUSTED, "out of memory");
	} else {
		*nr->n_claimed = out.n;
		*nr->claimed = out.ptrs;
		jq_call_reply(call, nr->resp);
	}
	jobs_free(&out);
	*nr->n_claimed = 0;
	*nr->claimed = NULL;
}

/* keep_results packs the response as it stands (the results) into call->note, for the wait:
 * false when memory runs out (then the call is answered now, without waiting). */
static bool keep_results(jq_call *call, const next_reply *nr)
{
	size_t len = protobuf_c_message_get_packed_size(nr->resp);
	uint8_t *buf = malloc(len ? len : 1);
	if (buf == NULL)
		return false;
	call->note_len = protobuf_c_message_pack(nr->resp, buf);
	call->note = buf;
	return true;
}

/* run_then_claim completes (or fails) n leases and claims cl's jobs in one statement, and
 * answers with both: the results, and the jobs claimed when no lease was refused (claim_skipped
 * when one was; a request of one job refused answers that job's code, as without a claim). When
 * the claim found nothing and may wait, the request waits as a Claim, its results kept. A queue
 * the long-poll knows to be empty is not asked: the completion runs alone, then the wait (as a
 * Claim of that queue waits without a query). */
static void run_then_claim(jq_call *call, jq_db_lease *leases, size_t n,
			   const Jobq__V1__ClaimRequest *cl, const lease_claim_ops *ops, const next_reply *nr)
{
	jq_db_item *items = calloc(n, sizeof(*items));
	jq_db_rows *rows = NULL;
	items_out out = { 0 };
	jq_db_err err;

	if (items == NULL) {
		jq_call_error(call, JQ_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	next_start(call, cl);
	bool known_empty = jq_longpoll_claim_begin(&call->claim);
	jq_db_claim_next next = next_of(call, cl, next_budget(call, n * JQ_REPLY_ITEM_MAX));
	jq_code c = known_empty ? ops->alone(call->db, leases, n, items, &err)
				: ops->with_claim(call->db, leases, n, &next, items, &rows, &err);
	bool skipped = false;
	for (size_t i = 0; c == JQ_OK && i < n; i++)
		skipped |= items[i].code != JQ_OK;
	bool waits = known_empty && c == JQ_OK && !skipped;
	if (!known_empty) {
		size_t got = c == JQ_OK ? (size_t)jq_db_rows_count(rows) : 0;
		/* A claim that did not run, like one the budget cut short, tells nothing of the queue. */
		waits = jq_longpoll_claim_end(&call->claim, got, c == JQ_OK && !skipped && !jq_db_rows_cut(rows));
	}
	if (c != JQ_OK) {
		db_error(call, c, &err);
		goto out;
	}
	tally_items(items, n, ops->fail);
	wake_freed(call, items, n, cl->queue, (size_t)jq_db_rows_count(rows));
	if (items_to_proto(items, n, &out) != 0) {
		jq_call_error(call, JQ_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	*nr->n_results = out.n;
	*nr->results = out.ptrs;
	*nr->claim_skipped = skipped;
	if (n == 1 && skipped) {
		finish_batch(call, items, n, nr->resp); /* answers the job's code */
		goto out;
	}
	if (waits && keep_results(call, nr)) {
		call->waits = true;
		goto out;
	}
	reply_claimed(call, rows, nr);
out:
	items_free(&out);
	jq_db_rows_free(rows);
	free(items);
}

/* claim_alone runs the claim of next by itself. A budget that holds any one job is the plain
 * Claim's statement (which takes its first job whatever its size, within the budget here);
 * a smaller one, the claim of jq_db_complete_claim with no lease, which holds every job to it. */
static jq_code claim_alone(jq_call *call, const jq_db_claim_next *next, jq_db_rows **rows, jq_db_err *err)
{
	int64_t one_job = (int64_t)(call->cfg->max_payload_bytes + JQ_REPLY_ONE_JOB_EXTRA - JQ_REPLY_ENVELOPE_MAX);
	if (next->max_bytes >= one_job)
		return jq_db_claim_within(call->db, next->queue, next->limit, next->worker, next->lease_seconds,
					  next->max_bytes, next->per_job_bytes, rows, err);
	return jq_db_complete_claim(call->db, NULL, 0, next, NULL, rows, err);
}

/* resume_claim runs the claim of a Complete or Fail (response type desc) whose completion was
 * done before it waited: only the claim, and the reply is the kept results with the jobs. */
static void resume_claim(jq_call *call, const Jobq__V1__ClaimRequest *cl,
			 const ProtobufCMessageDescriptor *desc)
{
	jq_db_rows *rows = NULL;
	jq_db_err err;
	ProtobufCMessage *resp = protobuf_c_message_unpack(desc, NULL, call->resumed_len, call->resumed);
	if (resp == NULL) {
		jq_call_error(call, JQ_INTERNAL, "the results kept across the wait do not decode");
		return;
	}
	next_reply nr;
	if (desc == &jobq__v1__complete_response__descriptor) {
		Jobq__V1__CompleteResponse *m = (Jobq__V1__CompleteResponse *)resp;
		nr = (next_reply){ resp, &m->n_results, &m->results, &m->n_claimed, &m->claimed, &m->claim_skipped };
	} else {
		Jobq__V1__FailResponse *m = (Jobq__V1__FailResponse *)resp;
		nr = (next_reply){ resp, &m->n_results, &m->results, &m->n_claimed, &m->claimed, &m->claim_skipped };
	}

	next_start(call, cl);
	if (jq_longpoll_claim_begin(&call->claim)) {
		call->waits = true; /* the note stays with the request */
		goto out;
	}
	jq_db_claim_next next = next_of(call, cl, next_budget(call, call->resumed_len));
	jq_code c = claim_alone(call, &next, &rows, &err);
	size_t got = c == JQ_OK ? (size_t)jq_db_rows_count(rows) : 0;
	bool waits = jq_longpoll_claim_end(&call->claim, got, c == JQ_OK && !jq_db_rows_cut(rows));
	if (c != JQ_OK) {
		db_error(call, c, &err);
		goto out;
	}
	if (waits) {
		call->waits = true;
		goto out;
	}
	reply_claimed(call, rows, &nr);
out:
	jq_db_rows_free(rows);
	protobuf_c_message_free_unpacked(resp, NULL);
}

void jq_handle_heartbeat(jq_call *call, const ProtobufCMessage *request)
{
	const Jobq__V1__HeartbeatRequest *r = (const Jobq__V1__HeartbeatRequest *)request;
	Jobq__V1__HeartbeatResponse resp = JOBQ__V1__HEARTBEAT_RESPONSE__INIT;
	jq_db_lease leases[JQ_MAX_BATCH];

	if (jq_validate_heartbeat(r, call->message, sizeof(call->message)) != 0) {
		call->code = JQ_INVALID_ARGUMENT;
		return;
	}
	size_t n = gather_leases(r->id, r->lease_token, r->jobs, r->n_jobs, leases);
	for (size_t i = 0; i < r->n_progress; i++) {
		jq_db_lease *l = lease_of(leases, n, r->progress[i]->id);
		if (l != NULL) {
			l->progress_percent = (int32_t)r->progress[i]->percent;
			l->progress_message = r->progress[i]->message;
		}
	}
	run_leases(call, leases, n, op_heartbeat, r, &resp.base, &resp.n_results, &resp.results);
}

void jq_handle_complete(jq_call *call, const ProtobufCMessage *request)
{
	const Jobq__V1__CompleteRequest *r = (const Jobq__V1__CompleteRequest *)request;
	Jobq__V1__CompleteResponse resp = JOBQ__V1__COMPLETE_RESPONSE__INIT;
	jq_db_lease leases[JQ_MAX_BATCH];

	jq_limits lim = { .max_payload_bytes = call->cfg->max_payload_bytes };

	if (jq_validate_complete(r, &lim, call->message, sizeof(call->message)) != 0) {
		call->code = JQ_INVALID_ARGUMENT;
		return;
	}
	if (r->claim != NULL && !next_claim_allowed(call))
		return;
	if (r->claim != NULL && call->resumed != NULL) {
		resume_claim(call, r->claim, &jobq__v1__complete_response__descriptor);
		return;
	}
	size_t n = gather_leases(r->id, r->lease_token, r->jobs, r->n_jobs, leases);
	if (r->output.len > 0) {
		leases[0].has_output = true;
		leases[0].output = r->output.data;
		leases[0].output_len = r->output.len;
	}
	for (size_t i = 0; i < r->n_outputs; i++) {
		jq_db_lease *l = lease_of(leases, n, r->outputs[i]->id);
		if (l != NULL) {
			l->has_output = true;
			l->output = r->outputs[i]->output.data;
			l->output_len = r->outputs[i]->output.len;
		}
	}
	if (r->claim != NULL) {
		next_reply nr = { &resp.base, &resp.n_results, &resp.results, &resp.n_claimed,
				  &resp.claimed, &resp.claim_skipped };
		bool outputs = r->output.len > 0 || r->n_outputs > 0;
		run_then_claim(call, leases, n, r->claim, outputs ? &COMPLETE_OUTPUT_OPS : &COMPLETE_OPS, &nr);
		return;
	}
	run_leases(call, leases, n, op_complete, r, &resp.base, &resp.n_results, &resp.results);
}

/* cut_error bounds an error text to JQ_MAX_ERROR_LEN bytes at a UTF-8 character boundary. */
static const char *cut_error(const char *s, char *buf, size_t buflen)
{
	size_t n = strlen(s);
	if (n <= JQ_MAX_ERROR_LEN)
		return s;
	n = JQ_MAX_ERROR_LEN < buflen - 1 ? JQ_MAX_ERROR_LEN : buflen - 1;
	while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
		n--;
	memcpy(buf, s, n);
	buf[n] = '\0';
	return buf;
}

void jq_handle_fail(jq_call *call, const ProtobufCMessage *request)
{
	const Jobq__V1__FailRequest *r = (const Jobq__V1__FailRequest *)request;
	Jobq__V1__FailResponse resp = JOBQ__V1__FAIL_RESPONSE__INIT;
	jq_db_lease leases[JQ_MAX_BATCH];
	size_t n = 0;
	/* Cut copies of over-long error texts, one buffer per job that needs one. */
	char *cut[JQ_MAX_BATCH] = { 0 };

	if (jq_validate_fail(r, call->message, sizeof(call->message)) != 0) {
		call->code = JQ_INVALID_ARGUMENT;
		return;
	}
	if (r->claim != NULL && !next_claim_allowed(call))
		return;
	if (r->claim != NULL && call->resumed != NULL) {
		resume_claim(call, r->claim, &jobq__v1__fail_response__descriptor);
		return;
	}
	if (r->id != 0 || r->lease_token != 0)
		leases[n++] = (jq_db_lease){ .id = r->id, .lease_token = r->lease_token, .error = r->error,
					     .final = r->final, .retry_in_ms = (int32_t)r->retry_in_ms,
					     .worker = r->worker_id };
	for (size_t i = 0; i < r->n_jobs; i++) {
		const Jobq__V1__JobFailure *f = r->jobs[i];
		leases[n++] = (jq_db_lease){ .id = f->id, .lease_token = f->lease_token, .error = f->error,
					     .final = f->final, .retry_in_ms = (int32_t)f->retry_in_ms,
					     .worker = r->worker_id };
	}
	for (size_t i = 0; i < n; i++) {
		if (strlen(leases[i].error) <= JQ_MAX_ERROR_LEN)
			continue;
		if ((cut[i] = malloc(JQ_MAX_ERROR_LEN + 1)) == NULL) {
			jq_call_error(call, JQ_RESOURCE_EXHAUSTED, "out of memory");
			goto out;
		}
		leases[i].error = cut_error(leases[i].error, cut[i], JQ_MAX_ERROR_LEN + 1);
	}
	if (r->claim != NULL) {
		next_reply nr = { &resp.base, &resp.n_results, &resp.results, &resp.n_claimed,
				  &resp.claimed, &resp.claim_skipped };
		run_then_claim(call, leases, n, r->claim, &FAIL_OPS, &nr);
		goto out;
	}
	run_leases(call, leases, n, op_fail, r, &resp.base, &resp.n_results, &resp.results);
out:
	for (size_t i = 0; i < n; i++)
		free(cut[i]);
}

/* ---- Get, List ---- */

void jq_handle_get(jq_call *call, const ProtobufCMessage *request)
{
	const Jobq__V1__GetRequest *r = (const Jobq__V1__GetRequest *)request;
	Jobq__V1__GetResponse resp = JOBQ__V1__GET_RESPONSE__INIT;
	Jobq__V1__Job job;
	Jobq__V1__FailureRecord *recs = NULL, **ptrs = NULL;
	jq_db_rows *jrows = NULL, *frows = NULL;
	jq_db_err err;

	if (jq_validate_get(r, call->message, sizeof(call->message)) != 0) {
		call->code = JQ_INVALID_ARGUMENT;
		return;
	}
	jq_code c = jq_db_get(call->db, r->id, &jrows, &frows, &err);
	if (c != JQ_OK) {
		db_error(call, c, &err);
		return;
	}
	if (jq_db_rows_count(jrows) == 0) {
		jq_call_error(call, JQ_NOT_FOUND, "job %lld: no such job", (long long)r->id);
		goto out;
	}
	jq_job j;
	jq_db_rows_job(jrows, 0, &j);
	job_to_proto(&j, &job);
	const uint8_t *output;
	jq_db_rows_output(jrows, 0, &output, &job.output.len);
	job.output.data = (uint8_t *)output;
	size_t nf = (size_t)jq_db_rows_count(frows);
	recs = calloc(nf ? nf : 1, sizeof(*recs));
	ptrs = calloc(nf ? nf : 1, sizeof(*ptrs));
	if (recs == NULL || ptrs == NULL) {
		jq_call_error(call, JQ_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < nf; i++) {
		jq_failure_record f;
		jq_db_rows_failure(frows, (int)i, &f);
		jobq__v1__failure_record__init(&recs[i]);
		recs[i].attempt = (uint32_t)f.attempt;
		recs[i].worker_id = (char *)f.worker;
		recs[i].error = (char *)f.error;
		recs[i].failed_at_ms = f.failed_at_ms;
		ptrs[i] = &recs[i];
	}
	resp.job = &job;
	resp.n_failures = nf;
	resp.failures = ptrs;
	jq_call_reply(call, &resp.base);
out:
	free(recs);
	free(ptrs);
	jq_db_rows_free(jrows);
	jq_db_rows_free(frows);
}

void jq_handle_list(jq_call *call, const ProtobufCMessage *request)
{
	const Jobq__V1__ListRequest *r = (const Jobq__V1__ListRequest *)request;
	Jobq__V1__ListResponse resp = JOBQ__V1__LIST_RESPONSE__INIT;
	jq_db_rows *rows = NULL;
	jobs_out out = { 0 };
	jq_db_err err;
	jq_state st;

	if (jq_validate_list(r, call->message, sizeof(call->message)) != 0) {
		call->code = JQ_INVALID_ARGUMENT;
		return;
	}
	int limit = r->limit ? (int)r->limit : 100;
	if (r->status != JOBQ__V1__JOB_STATUS__JOB_STATUS_UNSPECIFIED)
		st = (jq_state)((int)r->status - 1);
	jq_code c = jq_db_list(call->db, r->queue[0] ? r->queue : NULL,
			       r->status != JOBQ__V1__JOB_STATUS__JOB_STATUS_UNSPECIFIED ? &st : NULL,
			       r->after_id, limit, r->include_payload, reply_budget(call),
			       JQ_REPLY_JOB_FIXED, &rows, &err);
	if (c != JQ_OK) {
		db_error(call, c, &err);
		return;
	}
	if (jobs_from_rows(rows, &out) != 0) {
		jq_call_error(call, JQ_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	resp.n_jobs = out.n;
	resp.jobs = out.ptrs;
	/* A full page may have a next one, and so has a page the reply limit ended; any other short
	 * page is the last. */
	resp.next_after_id = out.n > 0 && (out.n == (size_t)limit || jq_db_rows_cut(rows))
				     ? out.msgs[out.n - 1].id : 0;
	jq_call_reply(call, &resp.base);
out:
	jobs_free(&out);
	jq_db_rows_free(rows);
}

/* ---- Retry, Cancel ---- */

#define RETRY_ALL_BATCH 1000
#define ANSWER_MARGIN_US 5000 /* for the answer to reach the caller before it gives up */

/* retry_all_failed retries every failed job of queue a batch (one short statement) at a time, and
 * before each batch checks that it would end before the caller stops waiting (judged by how long
 * the last one took). If not, it stops there and answers DEADLINE_EXCEEDED with how many it
 * retried: those batches have committed, the other jobs are still failed, and the same call
 * again goes on with them. Not OK with the partial count: a script would take it for "all". */
static void retry_all_failed(jq_call *call, const char *queue, Jobq__V1__RetryResponse *resp)
{
	int64_t total = 0, after = 0, n = 0, took_us = 0;
	jq_db_err err;
	do {
		int64_t start = jq_clock_mono_us();
		if (call->deadline_us != 0 && start + took_us + ANSWER_MARGIN_US >= call->deadline_us) {
			jq_call_error(call, JQ_DEADLINE_EXCEEDED,
				      "deadline reached after %lld failed jobs of queue %s went back to pending;"
				      " the others are still failed: retry again to go on", (long long)total, queue);
			return;
		}
		jq_code c = jq_db_retry_failed_batch(call->db, queue, after, RETRY_ALL_BATCH, &n, &after, &err);
		if (c != JQ_OK) {
			jq_call_error(call, c, "%s (%lld failed jobs of queue %s had gone back to pending before)",
				      err.msg, (long long)total, queue);
			return;
		}
		took_us = jq_clock_mono_us() - start;
		total += n;
	} while (n == RETRY_ALL_BATCH);
	resp->retried = total > UINT32_MAX ? UINT32_MAX : (uint32_t)total;
	jq_call_reply(call, &resp->base);
}

typedef jq_code (*ids_op)(jq_db *db, const int64_t *ids, size_t n, jq_db_item *items, jq_db_err *err);

static void run_ids(jq_call *call, const int64_t *ids, size_t n, ids_op op, ProtobufCMessage *resp,
		    size_t *n_results, Jobq__V1__ItemResult ***results, uint32_t *count_ok)
{
	jq_db_item *items = calloc(n, sizeof(*items));
	jq_db_err err;

	if (items == NULL) {
		jq_call_error(call, JQ_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	jq_code c = op(call->db, ids, n, items, &err);
	if (c != JQ_OK) {
		db_error(call, c, &err);
		goto out;
	}
	if (count_ok != NULL) {
		*count_ok = 0;
		for (size_t i = 0; i < n; i++)
			*count_ok += items[i].code == JQ_OK;
	}
	reply_items(call, items, n, resp, n_results, results);
out:
	free(items);
}

void jq_handle_retry(jq_call *call, const ProtobufCMessage *request)
{
	const Jobq__V1__RetryRequest *r = (const Jobq__V1__RetryRequest *)request;
	Jobq__V1__RetryResponse resp = JOBQ__V1__RETRY_RESPONSE__INIT;

	if (jq_validate_retry(r, call->message, sizeof(call->message)) != 0) {
		call->code = JQ_INVALID_ARGUMENT;
		return;
	}
	if (r->all_failed) {
		retry_all_failed(call, r->queue, &resp);
		return;
	}
	run_ids(call, r->ids, r->n_ids, jq_db_retry, &resp.base, &resp.n_results, &resp.results,
		&resp.retried);
}

void jq_handle_cancel(jq_call *call, const ProtobufCMessage *request)
{
	const Jobq__V1__CancelRequest *r = (const Jobq__V1__CancelRequest *)request;
	Jobq__V1__CancelResponse resp = JOBQ__V1__CANCEL_RESPONSE__INIT;

	if (jq_validate_cancel(r, call->message, sizeof(call->message)) != 0) {
		call->code = JQ_INVALID_ARGUMENT;
		return;
	}
	run_ids(call, r->ids, r->n_ids, jq_db_cancel, &resp.base, &resp.n_results, &resp.results, NULL);
}

/* ---- Wait ---- */

/* A Wait with less of its wait left than this answers rather than waits. Each run of the handler
 * (the first, and each time jq_jobwait sends the request back) reads the jobs again; it waits
 * again while some are unfinished and time is left, else it answers. */
#define WAIT_MIN_US 2000

static bool finished(jq_state s)
{
	return s == JQ_STATE_COMPLETED || s == JQ_STATE_FAILED || s == JQ_STATE_CANCELLED;
}

/* wait_answer replies with the jobs as they stand. */
static void wait_answer(jq_call *call, const jq_db_rows *rows, bool done)
{
	Jobq__V1__WaitResponse resp = JOBQ__V1__WAIT_RESPONSE__INIT;
	jobs_out out = { 0 };
	if (jobs_from_rows(rows, &out) != 0) {
		jq_call_error(call, JQ_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	resp.n_jobs = out.n;
	resp.jobs = out.ptrs;
	resp.done = done;
	jq_call_reply(call, &resp.base);
out:
	jobs_free(&out);
}

void jq_handle_wait(jq_call *call, const ProtobufCMessage *request)
{
	const Jobq__V1__WaitRequest *r = (const Jobq__V1__WaitRequest *)request;
	jq_db_rows *rows = NULL;
	jq_db_err err;

	if (jq_validate_wait(r, call->message, sizeof(call->message)) != 0) {
		call->code = JQ_INVALID_ARGUMENT;
		return;
	}
	int64_t until = call->received_us + (int64_t)r->wait_ms * 1000;
	bool may_wait = call->jobwait != NULL && until - jq_clock_mono_us() > WAIT_MIN_US;
	uint64_t gen = call->jobwait != NULL ? jq_jobwait_generation(call->jobwait) : 0;
	jq_code c = may_wait ? jq_db_wait_mark(call->db, r->ids, r->n_ids, &err) : JQ_OK;
	if (c == JQ_OK)
		c = jq_db_wait_read(call->db, r->ids, r->n_ids, &rows, &err);
	if (c != JQ_OK) {
		db_error(call, c, &err);
		return;
	}
	size_t n = (size_t)jq_db_rows_count(rows);
	bool done = true;
	for (size_t i = 0; i < r->n_ids; i++) {
		jq_job j;
		if (i >= n || (jq_db_rows_job(rows, (int)i, &j), j.id != r->ids[i])) {
			jq_call_error(call, JQ_NOT_FOUND, "job %lld: no such job", (long long)r->ids[i]);
			goto out;
		}
		done = done && finished(j.status);
	}
	if (!done && may_wait) {
		call->waits_jobs = true;
		call->wait_generation = gen;
		call->wait_until_us = until;
		call->wait_n = r->n_ids;
		call->wait_ids = r->ids;
		goto out;
	}
	wait_answer(call, rows, done);
out:
	jq_db_rows_free(rows);
}

/* ---- Stats ---- */

void jq_handle_stats(jq_call *call, const ProtobufCMessage *request)
{
	const Jobq__V1__StatsRequest *r = (const Jobq__V1__StatsRequest *)request;
	Jobq__V1__StatsResponse resp = JOBQ__V1__STATS_RESPONSE__INIT;
	Jobq__V1__QueueStats *qs = NULL, **ptrs = NULL;
	jq_db_rows *rows = NULL;
	jq_db_err err;

	if (jq_validate_stats(r, call->message, sizeof(call->message)) != 0) {
		call->code = JQ_INVALID_ARGUMENT;
		return;
	}
	jq_code c = jq_db_stats(call->db, r->queue[0] ? r->queue : NULL, &rows, &err);
	if (c != JQ_OK) {
		db_error(call, c, &err);
		return;
	}
	size_t n = (size_t)jq_db_rows_count(rows);
	qs = calloc(n ? n : 1, sizeof(*qs));
	ptrs = calloc(n ? n : 1, sizeof(*ptrs));
	if (qs == NULL || ptrs == NULL) {
		jq_call_error(call, JQ_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		jq_queue_stats s;
		jq_db_rows_stats(rows, (int)i, &s);
		jobq__v1__queue_stats__init(&qs[i]);
		qs[i].queue = (char *)s.queue;
		qs[i].pending = (uint64_t)s.pending;
		qs[i].scheduled = (uint64_t)s.scheduled;
		qs[i].processing = (uint64_t)s.processing;
		qs[i].completed = (uint64_t)s.completed;
		qs[i].failed = (uint64_t)s.failed;
		qs[i].cancelled = (uint64_t)s.cancelled;
		qs[i].oldest_due_age_seconds = s.oldest_due_age_seconds;
		qs[i].paused = s.flow.paused;
		qs[i].concurrency_limit = (uint32_t)s.flow.concurrency_limit;
		qs[i].rate_limit = (uint32_t)s.flow.rate_limit;
		qs[i].rate_period_ms = (uint32_t)s.flow.rate_period_ms;
		qs[i].key_concurrency_limit = (uint32_t)s.flow.key_concurrency_limit;
		ptrs[i] = &qs[i];
	}
	resp.n_queues = n;
	resp.queues = ptrs;
	jq_call_reply(call, &resp.base);
out:
	free(qs);
	free(ptrs);
	jq_db_rows_free(rows);
}

/* ---- Pause, Resume, ConfigureQueue ---- */

/* reply_settings answers with the settings row a flow statement returned, through a response
 * whose only field is the settings (PauseResponse, ResumeResponse, ConfigureQueueResponse share
 * that shape). */
static void reply_settings(jq_call *call, jq_code c, jq_db_rows *rows, const jq_db_err *err,
			   ProtobufCMessage *resp, Jobq__V1__QueueSettings **field)
{
	Jobq__V1__QueueSettings qs = JOBQ__V1__QUEUE_SETTINGS__INIT;
	jq_queue_settings s;
	if (c != JQ_OK) {
		db_error(call, c, err);
		return;
	}
	if (jq_db_rows_count(rows) != 1) {
		jq_call_error(call, JQ_INTERNAL, "the settings statement returned %d rows", jq_db_rows_count(rows));
		goto out;
	}
	jq_db_rows_settings(rows, 0, &s);
	qs.queue = (char *)s.queue;
	qs.paused = s.flow.paused;
	qs.concurrency_limit = (uint32_t)s.flow.concurrency_limit;
	qs.rate_limit = (uint32_t)s.flow.rate_limit;
	qs.rate_period_ms = (uint32_t)s.flow.rate_period_ms;
	qs.key_concurrency_limit = (uint32_t)s.flow.key_concurrency_limit;
	qs.updated_at_ms = s.updated_at_ms;
	*field = &qs;
	jq_call_reply(call, resp);
out:
	jq_db_rows_free(rows);
}

static void pause_or_resume(jq_call *call, const char *queue, bool paused, ProtobufCMessage *resp,
			    Jobq__V1__QueueSettings **field)
{
	jq_db_rows *rows = NULL;
	jq_db_err err;
	if (jq_validate_queue_name("queue", queue, call->message, sizeof(call->message)) != 0) {
		call->code = JQ_INVALID_ARGUMENT;
		return;
	}
	jq_code c = jq_db_queue_pause(call->db, queue, paused, &rows, &err);
	reply_settings(call, c, rows, &err, resp, field);
}

void jq_handle_pause(jq_call *call, const ProtobufCMessage *request)
{
	const Jobq__V1__PauseRequest *r = (const Jobq__V1__PauseRequest *)request;
	Jobq__V1__PauseResponse resp = JOBQ__V1__PAUSE_RESPONSE__INIT;
	pause_or_resume(call, r->queue, true, &resp.base, &resp.settings);
}

void jq_handle_resume(jq_call *call, const ProtobufCMessage *request)
{
	const Jobq__V1__ResumeRequest *r = (const Jobq__V1__ResumeRequest *)request;
	Jobq__V1__ResumeResponse resp = JOBQ__V1__RESUME_RESPONSE__INIT;
	pause_or_resume(call, r->queue, false, &resp.base, &resp.settings);
}

void jq_handle_configure_queue(jq_call *call, const ProtobufCMessage *request)
{
	const Jobq__V1__ConfigureQueueRequest *r = (const Jobq__V1__ConfigureQueueRequest *)request;
	Jobq__V1__ConfigureQueueResponse resp = JOBQ__V1__CONFIGURE_QUEUE_RESPONSE__INIT;
	jq_db_rows *rows = NULL;
	jq_db_err err;

	if (jq_validate_configure_queue(r, call->message, sizeof(call->message)) != 0) {
		call->code = JQ_INVALID_ARGUMENT;
		return;
	}
	jq_db_flow_change ch = {
		.set_concurrency = r->set_concurrency_limit || r->clear_concurrency_limit,
		.concurrency_limit = r->set_concurrency_limit ? r->concurrency_limit : 0,
		.set_rate = r->set_rate_limit || r->clear_rate_limit,
		.rate_limit = r->set_rate_limit ? r->rate_limit : 0,
		.rate_period_ms = r->set_rate_limit ? r->rate_period_ms : 0,
		.set_key_concurrency = r->set_key_concurrency_limit || r->clear_key_concurrency_limit,
		.key_concurrency_limit = r->set_key_concurrency_limit ? r->key_concurrency_limit : 0,
	};
	jq_code c = jq_db_queue_configure(call->db, r->queue, &ch, &rows, &err);
	reply_settings(call, c, rows, &err, &resp.base, &resp.settings);
}

/* ---- Schedules ---- */

/* A Schedule message and its JobSpec, pointing into a jq_schedule (no copies). */
typedef struct schedule_msg {
	Jobq__V1__Schedule s;
	Jobq__V1__JobSpec job;
} schedule_msg;

static void schedule_to_proto(const jq_schedule *in, schedule_msg *m)
{
	jobq__v1__schedule__init(&m->s);
	jobq__v1__job_spec__init(&m->job);
	m->job.queue = (char *)in->queue;
	m->job.payload.data = (uint8_t *)in->payload;
	m->job.payload.len = in->payload_len;
	m->job.priority = in->priority;
	m->job.max_attempts = (uint32_t)in->max_attempts;
	m->job.idempotency_key = (char *)in->idempotency_key;
	m->s.name = (char *)in->name;
	m->s.cron = (char *)in->cron;
	m->s.time_zone = (char *)in->time_zone;
	m->s.job = &m->job;
	m->s.missed = strcmp(in->missed, "once") == 0 ? JOBQ__V1__MISSED_POLICY__MISSED_POLICY_ONCE
						      : JOBQ__V1__MISSED_POLICY__MISSED_POLICY_SKIP;
	m->s.next_run_at_ms = in->next_run_at_ms;
	m->s.last_run_at_ms = in->last_run_at_ms;
	m->s.created_at_ms = in->created_at_ms;
	m->s.updated_at_ms = in->updated_at_ms;
}

/* first_tick: the instant of the schedule's first tick from now on, in zone; false after
 * setting the call's error (an unknown zone is INVALID_ARGUMENT, and nothing is stored). */
static bool first_tick(jq_call *call, const jq_cron *cron, const char *zone, int64_t *next_us)
{
	bool known;
	int64_t local_s, now_us;
	jq_db_err err;
	jq_code c = jq_db_zone_now(call->db, zone, &known, &local_s, &now_us, &err);
	if (c != JQ_OK) {
		db_error(call, c, &err);
		return false;
	}
	if (!known) {
		jq_call_error(call, JQ_INVALID_ARGUMENT,
			      "schedule.time_zone: unknown time zone '%s' (an IANA name such as Europe/Berlin, or UTC)",
			      zone);
		return false;
	}
	c = jq_scheduler_next(call->db, cron, zone, local_s, now_us, next_us, &err);
	if (c == JQ_FAILED_PRECONDITION) {
		jq_call_error(call, JQ_INVALID_ARGUMENT, "schedule.cron: %s", err.msg);
		return false;
	}
	if (c != JQ_OK) {
		db_error(call, c, &err);
		return false;
	}
	return true;
}

void jq_handle_add_schedule(jq_call *call, const ProtobufCMessage *request)
{
	const Jobq__V1__AddScheduleRequest *r = (const Jobq__V1__AddScheduleRequest *)request;
	Jobq__V1__AddScheduleResponse resp = JOBQ__V1__ADD_SCHEDULE_RESPONSE__INIT;
	jq_limits lim = { .max_payload_bytes = call->cfg->max_payload_bytes };
	jq_cron cron;
	jq_db_rows *rows = NULL;
	jq_db_err err;
	int64_t next_us;

	if (jq_validate_add_schedule(r, &lim, &cron, call->message, sizeof(call->message)) != 0) {
		call->code = JQ_INVALID_ARGUMENT;
		return;
	}
	const Jobq__V1__Schedule *s = r->schedule;
	const char *zone = s->time_zone[0] ? s->time_zone : "UTC";
	if (!first_tick(call, &cron, zone, &next_us))
		return;
	jq_db_schedule_spec spec = {
		.name = s->name, .cron = s->cron, .time_zone = zone, .queue = s->job->queue,
		.payload = s->job->payload.data, .payload_len = s->job->payload.len,
		.priority = (int16_t)s->job->priority, .max_attempts = (int32_t)s->job->max_attempts,
		.idempotency_key = s->job->idempotency_key[0] ? s->job->idempotency_key : NULL,
		.missed = s->missed == JOBQ__V1__MISSED_POLICY__MISSED_POLICY_ONCE ? "once" : "skip",
		.next_run_at_us = next_us,
	};
	jq_code c = jq_db_schedule_put(call->db, &spec, &rows, &err);
	if (c != JQ_OK) {
		db_error(call, c, &err);
		return;
	}
	jq_schedule stored;
	schedule_msg m;
	jq_db_rows_schedule(rows, 0, &stored);
	schedule_to_proto(&stored, &m);
	resp.schedule = &m.s;
	jq_call_reply(call, &resp.base);
	jq_db_rows_free(rows);
}

void jq_handle_list_schedules(jq_call *call, const ProtobufCMessage *request)
{
	const Jobq__V1__ListSchedulesRequest *r = (const Jobq__V1__ListSchedulesRequest *)request;
	Jobq__V1__ListSchedulesResponse resp = JOBQ__V1__LIST_SCHEDULES_RESPONSE__INIT;
	schedule_msg *msgs = NULL;
	Jobq__V1__Schedule **ptrs = NULL;
	jq_db_rows *rows = NULL;
	jq_db_err err;

	if (jq_validate_list_schedules(r, call->message, sizeof(call->message)) != 0) {
		call->code = JQ_INVALID_ARGUMENT;
		return;
	}
	jq_code c = jq_db_schedule_list(call->db, r->include_payload, &rows, &err);
	if (c != JQ_OK) {
		db_error(call, c, &err);
		return;
	}
	size_t n = (size_t)jq_db_rows_count(rows);
	msgs = calloc(n ? n : 1, sizeof(*msgs));
	ptrs = calloc(n ? n : 1, sizeof(*ptrs));
	if (msgs == NULL || ptrs == NULL) {
		jq_call_error(call, JQ_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		jq_schedule s;
		jq_db_rows_schedule(rows, (int)i, &s);
		schedule_to_proto(&s, &msgs[i]);
		ptrs[i] = &msgs[i].s;
	}
	resp.n_schedules = n;
	resp.schedules = ptrs;
	jq_call_reply(call, &resp.base);
out:
	free(msgs);
	free(ptrs);
	jq_db_rows_free(rows);
}

void jq_handle_remove_schedule(jq_call *call, const ProtobufCMessage *request)
{
	const Jobq__V1__RemoveScheduleRequest *r = (const Jobq__V1__RemoveScheduleRequest *)request;
	Jobq__V1__RemoveScheduleResponse resp = JOBQ__V1__REMOVE_SCHEDULE_RESPONSE__INIT;
	jq_db_err err;
	bool removed;

	if (jq_validate_remove_schedule(r, call->message, sizeof(call->message)) != 0) {
		call->code = JQ_INVALID_ARGUMENT;
		return;
	}
	jq_code c = jq_db_schedule_remove(call->db, r->name, &removed, &err);
	if (c != JQ_OK) {
		db_error(call, c, &err);
		return;
	}
	if (!removed) {
		jq_call_error(call, JQ_NOT_FOUND, "schedule %s: no such schedule", r->name);
		return;
	}
	jq_call_reply(call, &resp.base);
}
