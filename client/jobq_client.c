/*
 * jobq_client.c — the RPC half of libjobq: one nng REQ socket per client, one nng context per
 * call (so any number of threads can share a client), RpcRequest/RpcResponse envelopes, and the
 * conversion of protobuf results into the plain structs of jobq.h (deep copies: nothing returned
 * points into a protobuf message).
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "jobq/v1/jobq.pb-c.h"
#include "jobq_internal.h"

#define METHOD(name) "/jobq.v1.JobQueue/" name

struct jobq_client {
	nng_socket sock;
	char *rpc_url;
	char *auth_token; /* NULL = none */
	int timeout_ms;
	uint32_t max_reply;        /* the largest reply taken (nng drops a longer one unread) */
	jobqi_link link;           /* connections (tells "unreachable" from "slow") */
	atomic_uint_fast64_t seq;  /* request ids */
};

/* ---- connection ---- */

/* NNG_OPT_RECVMAXSZ counts the SP header too (a 4-byte request id, 4 more per device hop). */
#define SP_HEADER_SLACK 64

/* max_reply_of sets *out to opts->max_reply_bytes, else $JOBQ_MAX_REPLY_BYTES, else the
 * default. Returns JOBQ_OK, or JOBQ_INVALID_ARGUMENT (err says which) for a value that is not a
 * number of bytes in range. */
static int max_reply_of(const jobq_options *opts, uint32_t *out, jobq_error *err)
{
	uint64_t v = opts->max_reply_bytes;
	const char *src = "max_reply_bytes";
	const char *env = getenv("JOBQ_MAX_REPLY_BYTES");
	if (v == 0 && env != NULL && env[0] != '\0') {
		char *end;
		errno = 0;
		unsigned long long n = strtoull(env, &end, 10);
		src = "JOBQ_MAX_REPLY_BYTES";
		v = errno == 0 && *end == '\0' && env[0] != '-' && n > 0 ? n : UINT64_MAX;
	}
	if (v == 0)
		v = JOBQ_DEFAULT_MAX_REPLY_BYTES;
	if (v < JOBQ_MIN_MAX_REPLY_BYTES || v > UINT32_MAX)
		return jobqi_set_err(err, JOBQ_INVALID_ARGUMENT, "%s: a number of bytes from %u to %u",
				     src, JOBQ_MIN_MAX_REPLY_BYTES, UINT32_MAX);
	*out = (uint32_t)v;
	return JOBQ_OK;
}

static char *dup_or_null(const char *s)
{
	return s != NULL && s[0] != '\0' ? strdup(s) : NULL;
}

/* open_socket configures and dials; the dial is non-blocking so jobq_connect succeeds while the
 * service is down, and nng keeps reconnecting in the background. */
static int open_socket(jobq_client *c, const jobq_options *opts, jobq_error *err)
{
	int rv;
	if ((rv = nng_req0_open(&c->sock)) != 0)
		return rv;
	/* No automatic resend: REQ would resend a request whose reply is late or whose connection
	 * dropped, and a resent Enqueue without an idempotency key would enqueue the jobs twice (a
	 * resent Complete or Fail is harmless, but the library cannot tell them apart here). A
	 * caller that wants retries decides them knowing the method. */
	if ((rv = nng_socket_set_ms(c->sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE)) != 0 ||
	    /* The receive limit: nng reads a reply's length first and closes the connection rather
	     * than take more (the service, told the limit, does not send more). */
	    (rv = nng_socket_set_size(c->sock, NNG_OPT_RECVMAXSZ,
				      (size_t)c->max_reply + SP_HEADER_SLACK)) != 0 ||
	    (rv = nng_socket_set_ms(c->sock, NNG_OPT_RECONNMINT, 50)) != 0 ||
	    (rv = nng_socket_set_ms(c->sock, NNG_OPT_RECONNMAXT, 1000)) != 0 ||
	    (rv = jobqi_link_init(&c->link, c->sock)) != 0)
		return rv;
	return jobqi_dial(c->sock, c->rpc_url, opts, &c->link.dialer, err);
}

/* read_token_file reads a credential from the first line of path (a mounted Secret). */
static int read_token_file(const char *path, char **out, jobq_error *err)
{
	char buf[1024];
	FILE *f = fopen(path, "r");
	size_t n;

	if (f == NULL)
		return jobqi_set_err(err, JOBQ_INVALID_ARGUMENT, "auth token file %s: %s", path, strerror(errno));
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	if (buf[0] == '\0')
		return jobqi_set_err(err, JOBQ_INVALID_ARGUMENT, "auth token file %s is empty", path);
	*out = strdup(buf);
	explicit_bzero(buf, sizeof(buf));
	return *out != NULL ? JOBQ_OK : jobqi_set_err(err, JOBQ_RESOURCE_EXHAUSTED, "out of memory");
}

int jobq_connect(const jobq_options *opts, jobq_client **out, jobq_error *err)
{
	jobq_options none = { 0 };
	if (out == NULL)
		return jobqi_set_err(err, JOBQ_INVALID_ARGUMENT, "jobq_connect: out is NULL");
	*out = NULL;
	if (opts == NULL)
		opts = &none;
	if (opts->timeout_ms < 0)
		return jobqi_set_err(err, JOBQ_INVALID_ARGUMENT, "timeout_ms must be >= 0");

	uint32_t max_reply = 0;
	int bad = max_reply_of(opts, &max_reply, err);
	if (bad != JOBQ_OK)
		return bad;

	jobq_client *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return jobqi_set_err(err, JOBQ_RESOURCE_EXHAUSTED, "out of memory");
	c->timeout_ms = opts->timeout_ms ? opts->timeout_ms : JOBQ_DEFAULT_TIMEOUT_MS;
	c->max_reply = max_reply;
	atomic_init(&c->seq, 0);
	c->rpc_url = strdup(jobqi_opt_str(opts->rpc_url, "JOBQ_RPC_URL", JOBQ_DEFAULT_RPC_URL));
	c->auth_token = dup_or_null(jobqi_opt_str(opts->auth_token, "JOBQ_AUTH_TOKEN", NULL));
	if (c->rpc_url == NULL) {
		jobq_close(c);
		return jobqi_set_err(err, JOBQ_RESOURCE_EXHAUSTED, "out of memory");
	}
	const char *token_file = jobqi_opt_str(opts->auth_token_file, "JOBQ_AUTH_TOKEN_FILE", NULL);
	if (c->auth_token == NULL && token_file != NULL) {
		int code = read_token_file(token_file, &c->auth_token, err);
		if (code != JOBQ_OK) {
			jobq_close(c);
			return code;
		}
	}
	jobq_error tls_err = { 0 };
	int rv = open_socket(c, opts, &tls_err);
	if (rv != 0) {
		int code = tls_err.code != 0 ? jobqi_set_err(err, tls_err.code, "%s", tls_err.message)
					     : jobqi_set_err(err, jobqi_nng_code(rv), "cannot dial %s: %s",
							     c->rpc_url, nng_strerror(rv));
		jobq_close(c);
		return code;
	}
	*out = c;
	return JOBQ_OK;
}

/* client_release frees the handle once its socket is closed (jobqi_close). */
static void client_release(void *arg)
{
	jobq_client *c = arg;
	jobqi_link_fini(&c->link);
	free(c->rpc_url);
	free(c->auth_token);
	free(c);
}

void jobq_close(jobq_client *c)
{
	if (c == NULL)
		return;
	/* Closing a never-opened socket (id 0) is harmless: nng answers ECLOSED. */
	(void)jobqi_close(c->sock, client_release, c);
}

/* ---- one call ---- */

/* transport_error explains an nng failure of a call in the caller's terms. */
static int transport_error(jobq_client *c, const char *method, int rv, int timeout_ms,
			   jobq_error *err)
{
	if (rv == NNG_ETIMEDOUT && jobqi_link_up(&c->link) == 0)
		return jobqi_set_err(err, JOBQ_UNAVAILABLE,
				     "%s: no connection to the service at %s within %d ms", method,
				     c->rpc_url, timeout_ms);
	if (rv == NNG_ETIMEDOUT)
		return jobqi_set_err(err, JOBQ_DEADLINE_EXCEEDED,
				     "%s: the service did not answer within %d ms", method, timeout_ms);
	if (rv == NNG_ECONNRESET || rv == NNG_ECONNSHUT)
		return jobqi_set_err(err, JOBQ_UNAVAILABLE,
				     "%s: connection to %s lost; the request may or may not have been "
				     "carried out (a reply over this client's max_reply_bytes, %" PRIu32
				     ", also ends the connection)", method, c->rpc_url, c->max_reply);
	return jobqi_set_err(err, jobqi_nng_code(rv), "%s: %s", method, nng_strerror(rv));
}

/* first_connection: a client that never had a connection waits a moment for its first, and
 * answers at once when nothing listens at the address. *timeout_ms keeps what is left of the
 * call's time. A client that had a connection waits for nng's reconnect as long as the call may
 * (a service restarting). */
static int first_connection(jobq_client *c, const char *method, int *timeout_ms, jobq_error *err)
{
	if (jobqi_link_ever(&c->link))
		return JOBQ_OK;
	nng_time t0 = nng_clock();
	int first_ms = *timeout_ms < JOBQI_FIRST_CONNECT_MS ? *timeout_ms : JOBQI_FIRST_CONNECT_MS;
	int rv = jobqi_link_wait(&c->link, first_ms);
	if (rv == NNG_ECONNREFUSED)
		return jobqi_set_err(err, JOBQ_UNAVAILABLE,
				     "%s: cannot connect to %s: connection refused (is jobqd running there?)",
				     method, c->rpc_url);
	nng_time spent = nng_clock() - t0;
	if (spent >= (nng_time)*timeout_ms)
		return transport_error(c, method, NNG_ETIMEDOUT, *timeout_ms, err);
	*timeout_ms -= (int)spent;
	return JOBQ_OK;
}

/* build_request packs the envelope of req straight into a new nng message. */
static int build_request(jobq_client *c, const char *method, const ProtobufCMessage *req,
			 int timeout_ms, nng_msg **out)
{
	Jobq__V1__RpcRequest env = JOBQ__V1__RPC_REQUEST__INIT;
	char request_id[48];
	uint8_t *payload = NULL;
	int rv = NNG_ENOMEM;

	size_t n = protobuf_c_message_get_packed_size(req);
	if ((payload = malloc(n ? n : 1)) == NULL)
		return NNG_ENOMEM;
	env.payload.len = protobuf_c_message_pack(req, payload);
	env.payload.data = payload;
	snprintf(request_id, sizeof(request_id), "c-%ld-%llu", (long)getpid(),
		 (unsigned long long)atomic_fetch_add(&c->seq, 1) + 1);
	env.method = (char *)method;
	env.request_id = request_id;
	env.deadline_ms = (uint32_t)timeout_ms;
	env.max_reply_bytes = c->max_reply;
	if (c->auth_token != NULL)
		env.auth_token = c->auth_token;
	if ((rv = nng_msg_alloc(out, jobq__v1__rpc_request__get_packed_size(&env))) == 0)
		jobq__v1__rpc_request__pack(&env, nng_msg_body(*out));
	free(payload);
	return rv;
}

/* exchange sends msg on a fresh context and waits for the reply. msg is always consumed.
 * libnng 1.5 (Debian 12) has no nng_ctx_sendmsg/recvmsg, so this goes through an aio, whose
 * timeout plays the part of NNG_OPT_SENDTIMEO/RECVTIMEO for this one call. */
static int exchange(jobq_client *c, nng_msg *msg, int timeout_ms, nng_msg **reply)
{
	nng_aio *aio = NULL;
	nng_ctx ctx;
	int rv;

	if ((rv = nng_aio_alloc(&aio, NULL, NULL)) != 0) {
		nng_msg_free(msg);
		return rv;
	}
	if ((rv = nng_ctx_open(&ctx, c->sock)) != 0) {
		nng_msg_free(msg);
		nng_aio_free(aio);
		return rv;
	}
	nng_aio_set_timeout(aio, timeout_ms);
	nng_aio_set_msg(aio, msg);
	nng_ctx_send(ctx, aio);
	nng_aio_wait(aio);
	if ((rv = nng_aio_result(aio)) != 0) {
		/* A failed send leaves the message with us. */
		nng_msg_free(nng_aio_get_msg(aio));
		goto out;
	}
	/* Sent: the message belongs to nng now. */
	nng_ctx_recv(ctx, aio);
	nng_aio_wait(aio);
	if ((rv = nng_aio_result(aio)) == 0)
		*reply = nng_aio_get_msg(aio);
out:
	nng_ctx_close(ctx);
	nng_aio_free(aio);
	return rv;
}

/* rpc runs one method: req out, *out (a new out_desc message, free_unpacked by the caller) in.
 * Returns the service's code, or a transport code; err explains anything but OK. */
static int rpc(jobq_client *c, const char *method, const ProtobufCMessage *req,
	       const ProtobufCMessageDescriptor *out_desc, int extra_ms, ProtobufCMessage **out,
	       jobq_error *err)
{
	nng_msg *msg = NULL, *reply = NULL;
	Jobq__V1__RpcResponse *resp = NULL;
	int timeout_ms = c->timeout_ms;
	int code;

	*out = NULL;
	if (extra_ms > 0)
		timeout_ms = extra_ms > INT_MAX - timeout_ms ? INT_MAX : timeout_ms + extra_ms;
	int total_ms = timeout_ms;
	if ((code = first_connection(c, method, &timeout_ms, err)) != JOBQ_OK)
		return code;
	int rv = build_request(c, method, req, timeout_ms, &msg);
	if (rv == 0)
		rv = exchange(c, msg, timeout_ms, &reply);
	if (rv != 0)
		return transport_error(c, method, rv, total_ms, err);
	resp = jobq__v1__rpc_response__unpack(NULL, nng_msg_len(reply), nng_msg_body(reply));
	if (resp == NULL) {
		code = jobqi_set_err(err, JOBQ_INTERNAL, "%s: the reply is not a jobq.v1.RpcResponse",
				     method);
		goto out;
	}
	if (resp->code != 0) {
		code = jobqi_set_err(err, resp->code > INT_MAX ? JOBQ_UNKNOWN : (int)resp->code, "%s",
				     resp->message && resp->message[0] ? resp->message
								       : jobq_code_name((int)resp->code));
		goto out;
	}
	*out = protobuf_c_message_unpack(out_desc, NULL, resp->payload.len, resp->payload.data);
	if (*out == NULL) {
		code = jobqi_set_err(err, JOBQ_INTERNAL, "%s: the reply payload is not a valid %s",
				     method, out_desc->name);
		goto out;
	}
	code = JOBQ_OK;
out:
	if (resp != NULL)
		jobq__v1__rpc_response__free_unpacked(resp, NULL);
	nng_msg_free(reply);
	return code;
}

/* ---- conversions (deep copies) ---- */

static jobq_status status_from(int v)
{
	return v >= JOBQ_STATUS_PENDING && v <= JOBQ_STATUS_CANCELLED ? (jobq_status)v
								     : JOBQ_STATUS_UNSPECIFIED;
}

/* str_copy: protobuf-c gives "" for empty strings, but a NULL from elsewhere is tolerated. */
static char *str_copy(const char *s)
{
	return strdup(s != NULL ? s : "");
}

static void job_release(jobq_job *j)
{
	free(j->queue);
	free(j->payload);
	free(j->lease_owner);
	free(j->last_error);
	free(j->idempotency_key);
	free(j->concurrency_key);
	free(j->output);
	free(j->progress_message);
}

static int job_copy(const Jobq__V1__Job *m, jobq_job *j)
{
	memset(j, 0, sizeof(*j));
	j->id = m->id;
	j->status = status_from(m->status);
	j->prev_status = status_from(m->prev_status);
	j->attempts = m->attempts;
	j->max_attempts = m->max_attempts;
	j->lease_token = m->lease_token;
	j->priority = m->priority;
	j->run_at_ms = m->run_at_ms;
	j->lease_expires_at_ms = m->lease_expires_at_ms;
	j->created_at_ms = m->created_at_ms;
	j->updated_at_ms = m->updated_at_ms;
	j->finished_at_ms = m->finished_at_ms;
	j->payload_len = m->payload.len;
	j->payload = malloc(m->payload.len + 1);
	if (j->payload != NULL) {
		if (m->payload.len > 0)
			memcpy(j->payload, m->payload.data, m->payload.len);
		j->payload[m->payload.len] = '\0';
	}
	j->queue = str_copy(m->queue);
	j->lease_owner = str_copy(m->lease_owner);
	j->last_error = str_copy(m->last_error);
	j->idempotency_key = str_copy(m->idempotency_key);
	j->concurrency_key = str_copy(m->concurrency_key);
	j->progress_percent = m->progress_at_ms != 0 ? (int32_t)m->progress_percent : -1;
	j->progress_message = str_copy(m->progress_message);
	j->progress_at_ms = m->progress_at_ms;
	j->timeout_ms = m->timeout_ms;
	j->output_len = m->output.len;
	j->output = malloc(m->output.len + 1);
	if (j->output != NULL) {
		if (m->output.len > 0)
			memcpy(j->output, m->output.data, m->output.len);
		j->output[m->output.len] = '\0';
	}
	if (j->payload == NULL || j->queue == NULL || j->lease_owner == NULL || j->last_error == NULL ||
	    j->idempotency_key == NULL || j->progress_message == NULL || j->output == NULL ||
	    j->concurrency_key == NULL) {
		job_release(j);
		return -1;
	}
	return 0;
}

void jobq_jobs_free(jobq_job *jobs, size_t n)
{
	if (jobs == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		job_release(&jobs[i]);
	free(jobs);
}

/* jobs_copy: *out is NULL when n is 0. */
static int jobs_copy(Jobq__V1__Job *const *ms, size_t n, jobq_job **out, size_t *n_out,
		     jobq_error *err)
{
	*out = NULL;
	*n_out = 0;
	if (n == 0)
		return JOBQ_OK;
	jobq_job *jobs = calloc(n, sizeof(*jobs));
	if (jobs == NULL)
		return jobqi_set_err(err, JOBQ_RESOURCE_EXHAUSTED, "out of memory");
	for (size_t i = 0; i < n; i++) {
		if (job_copy(ms[i], &jobs[i]) != 0) {
			jobq_jobs_free(jobs, i);
			return jobqi_set_err(err, JOBQ_RESOURCE_EXHAUSTED, "out of memory");
		}
	}
	*out = jobs;
	*n_out = n;
	return JOBQ_OK;
}

static void result_set(jobq_result *r, int64_t id, int code, const char *message)
{
	memset(r, 0, sizeof(*r));
	r->id = id;
	r->code = code;
	/* Cut to fit: a job's message is a short reason; the call's full one is in err. */
	snprintf(r->message, sizeof(r->message), "%.*s", (int)sizeof(r->message) - 1,
		 message != NULL ? message : "");
}

/* results_from_call: the whole call failed (or, for one job, that job did): every job gets
 * the call's code and message, so a caller can always read results. */
static void results_from_call(jobq_result *results, const int64_t *ids, size_t n, int code,
			      const jobq_error *err)
{
	if (results == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		result_set(&results[i], ids[i], code, err->message);
}

static int results_from_items(jobq_result *results, const int64_t *ids, size_t n,
			      Jobq__V1__ItemResult *const *items, size_t n_items, jobq_error *err)
{
	if (n_items != n) {
		int code = jobqi_set_err(err, JOBQ_INTERNAL, "the service answered %zu results for %zu jobs",
					 n_items, n);
		results_from_call(results, ids, n, code, err);
		return code;
	}
	if (results == NULL)
		return JOBQ_OK;
	for (size_t i = 0; i < n; i++) {
		const Jobq__V1__ItemResult *it = items[i];
		jobq_result *r = &results[i];
		result_set(r, it->id, it->code > INT_MAX ? JOBQ_UNKNOWN : (int)it->code, it->message);
		r->status = status_from(it->status);
		r->lease_expires_at_ms = it->lease_expires_at_ms;
		r->run_at_ms = it->run_at_ms;
		snprintf(r->stop_reason, sizeof(r->stop_reason), "%.*s", (int)sizeof(r->stop_reason) - 1,
			 it->stop_reason != NULL ? it->stop_reason : "");
	}
	return JOBQ_OK;
}

/* batch_call runs a method answered with per-job ItemResults. The five responses differ in type
 * but all carry `repeated ItemResult results`; its descriptor locates the field, so one function
 * serves them all. ids[] names the jobs, for the results of a failed call. */
static int batch_call(jobq_client *c, const char *method, const ProtobufCMessage *req,
		      const ProtobufCMessageDescriptor *out_desc, const int64_t *ids, size_t n,
		      jobq_result *results, jobq_error *err)
{
	ProtobufCMessage *resp = NULL;
	jobq_error local;
	if (err == NULL)
		err = &local; /* results need the message even when the caller wants none */
	int code = rpc(c, method, req, out_desc, 0, &resp, err);
	if (code != JOBQ_OK) {
		results_from_call(results, ids, n, code, err);
		return code;
	}
	const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(out_desc,
											    "results");
	if (f == NULL || f->label != PROTOBUF_C_LABEL_REPEATED) {
		protobuf_c_message_free_unpacked(resp, NULL);
		return jobqi_set_err(err, JOBQ_INTERNAL, "%s has no repeated results", out_desc->name);
	}
	size_t n_items = *(const size_t *)((const char *)resp + f->quantifier_offset);
	Jobq__V1__ItemResult *const *items =
		*(Jobq__V1__ItemResult *const *const *)((const char *)resp + f->offset);
	code = results_from_items(results, ids, n, items, n_items, err);
	protobuf_c_message_free_unpacked(resp, NULL);
	return code;
}

/* ---- argument checks ---- */

static int check_client(const jobq_client *c, const char *fn, jobq_error *err)
{
	if (c == NULL)
		return jobqi_set_err(err, JOBQ_INVALID_ARGUMENT, "%s: client is NULL", fn);
	return JOBQ_OK;
}

static int check_batch(const jobq_client *c, const void *items, size_t n, const char *fn,
		       jobq_error *err)
{
	if (check_client(c, fn, err) != JOBQ_OK)
		return JOBQ_INVALID_ARGUMENT;
	if (items == NULL)
		return jobqi_set_err(err, JOBQ_INVALID_ARGUMENT, "%s: no jobs given (NULL)", fn);
	if (n == 0 || n > JOBQ_MAX_BATCH)
		return jobqi_set_err(err, JOBQ_INVALID_ARGUMENT, "%s: %zu jobs; a call takes 1..%d", fn,
				     n, JOBQ_MAX_BATCH);
	return JOBQ_OK;
}

/* ---- Enqueue ---- */

int jobq_enqueue(jobq_client *c, const jobq_job_spec *specs, size_t n, int64_t *ids, jobq_error *err)
{
	Jobq__V1__EnqueueRequest req = JOBQ__V1__ENQUEUE_REQUEST__INIT;
	Jobq__V1__EnqueueResponse *resp = NULL;
	Jobq__V1__JobSpec *msgs = NULL, **ptrs = NULL;
	int code = check_batch(c, specs, n, "jobq_enqueue", err);
	if (code != JOBQ_OK)
		return code;
	if (ids == NULL)
		return jobqi_set_err(err, JOBQ_INVALID_ARGUMENT, "jobq_enqueue: ids is NULL");
	msgs = calloc(n, sizeof(*msgs));
	ptrs = calloc(n, sizeof(*ptrs));
	if (msgs == NULL || ptrs == NULL) {
		code = jobqi_set_err(err, JOBQ_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		const jobq_job_spec *s = &specs[i];
		if (s->queue == NULL || (s->payload == NULL && s->payload_len > 0)) {
			code = jobqi_set_err(err, JOBQ_INVALID_ARGUMENT,
					     "jobq_enqueue: job %zu has no queue or a NULL payload", i);
			goto out;
		}
		jobq__v1__job_spec__init(&msgs[i]);
		msgs[i].queue = (char *)s->queue;
		msgs[i].payload.data = (uint8_t *)s->payload;
		msgs[i].payload.len = s->payload_len;
		msgs[i].priority = s->priority;
		msgs[i].run_at_ms = s->run_at_ms;
		msgs[i].delay_ms = s->delay_ms;
		msgs[i].max_attempts = s->max_attempts;
		msgs[i].idempotency_key = (char *)(s->idempotency_key ? s->idempotency_key : "");
		msgs[i].timeout_ms = s->timeout_ms;
		msgs[i].concurrency_key = (char *)(s->concurrency_key ? s->concurrency_key : "");
		ptrs[i] = &msgs[i];
	}
	req.n_jobs = n;
	req.jobs = ptrs;
	code = rpc(c, METHOD("Enqueue"), &req.base, &jobq__v1__enqueue_response__descriptor, 0,
		   (ProtobufCMessage **)&resp, err);
	if (code != JOBQ_OK)
		goto out;
	if (resp->n_ids != n) {
		code = jobqi_set_err(err, JOBQ_INTERNAL, "Enqueue: the service answered %zu ids for %zu jobs",
				     resp->n_ids, n);
		goto out;
	}
	memcpy(ids, resp->ids, n * sizeof(*ids));
out:
	if (resp != NULL)
		jobq__v1__enqueue_response__free_unpacked(resp, NULL);
	free(msgs);
	free(ptrs);
	return code;
}

/* ---- Claim ---- */

static void sleep_ms(int64_t ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

int jobq_claim(jobq_client *c, const char *queue, uint32_t limit, const char *worker_id,
	       uint32_t lease_seconds, uint32_t wait_ms, jobq_job **jobs, size_t *n, jobq_error *err)
{
	Jobq__V1__ClaimRequest req = JOBQ__V1__CLAIM_REQUEST__INIT;
	Jobq__V1__ClaimResponse *resp = NULL;
	int code = check_client(c, "jobq_claim", err);
	if (code != JOBQ_OK)
		return code;
	if (queue == NULL || worker_id == NULL || jobs == NULL || n == NULL)
		return jobqi_set_err(err, JOBQ_INVALID_ARGUMENT,
				     "jobq_claim: queue, worker_id, jobs and n must not be NULL");
	*jobs = NULL;
	*n = 0;
	if (limit == 0 || limit > JOBQ_MAX_BATCH)
		return jobqi_set_err(err, JOBQ_INVALID_ARGUMENT, "jobq_claim: limit %u; must be 1..%d",
				     limit, JOBQ_MAX_BATCH);
	req.queue = (char *)queue;
	req.limit = limit;
	req.worker_id = (char *)worker_id;
	req.lease_seconds = lease_seconds;
	int64_t until = jobqi_mono_ms() + wait_ms;
	for (;;) {
		req.wait_ms = wait_ms;
		/* A long-poll may legitimately take wait_ms before answering: wait that much longer. */
		int extra = wait_ms > INT_MAX ? INT_MAX : (int)wait_ms;
		code = rpc(c, METHOD("Claim"), &req.base, &jobq__v1__claim_response__descriptor, extra,
			   (ProtobufCMessage **)&resp, err);
		if (code != JOBQ_OK)
			return code;
		uint32_t retry_after = resp->retry_after_ms;
		if (resp->n_jobs > 0 || retry_after == 0 || wait_ms == 0)
			break;
		/* The service already keeps as many Claims waiting as it allows: wait here instead,
		 * as long as it asks and no longer than the caller would, then look once more. */
		jobq__v1__claim_response__free_unpacked(resp, NULL);
		resp = NULL;
		int64_t left = until - jobqi_mono_ms();
		if (left <= 0)
			return JOBQ_OK;
		sleep_ms(left < retry_after ? left : retry_after);
		left = until - jobqi_mono_ms();
		wait_ms = left > 0 ? (uint32_t)left : 0;
	}
	code = jobs_copy(resp->jobs, resp->n_jobs, jobs, n, err);
	jobq__v1__claim_response__free_unpacked(resp, NULL);
	return code;
}

/* ---- Heartbeat, Complete, Fail ---- */

/* lease_ids copies the ids of n leases (for results of a failed call); caller frees. */
static int64_t *lease_ids(const jobq_lease *leases, size_t n)
{
	int64_t *ids = malloc(n * sizeof(*ids));
	for (size_t i = 0; ids != NULL && i < n; i++)
		ids[i] = leases[i].id;
	return ids;
}

/* lease_msgs builds JobLease messages for n leases (msgs and ptrs: caller frees both). */
static int lease_msgs(const jobq_lease *leases, size_t n, Jobq__V1__JobLease **msgs,
		      Jobq__V1__JobLease ***ptrs)
{
	*msgs = calloc(n, sizeof(**msgs));
	*ptrs = calloc(n, sizeof(**ptrs));
	if (*msgs == NULL || *ptrs == NULL)
		return -1;
	for (size_t i = 0; i < n; i++) {
		jobq__v1__job_lease__init(&(*msgs)[i]);
		(*msgs)[i].id = leases[i].id;
		(*msgs)[i].lease_token = leases[i].lease_token;
		(*ptrs)[i] = &(*msgs)[i];
	}
	return 0;
}

/* lease_call sends leases in the batch form (`jobs`) of Heartbeat or Complete; for one job the
 * service answers with that job's code, which batch_call returns. */
static int lease_call(jobq_client *c, const char *fn, const char *method, ProtobufCMessage *req,
		      size_t *n_jobs, Jobq__V1__JobLease ***jobs,
		      const ProtobufCMessageDescriptor *out_desc, const jobq_lease *leases, size_t n,
		      jobq_result *results, jobq_error *err)
{
	Jobq__V1__JobLease *msgs = NULL, **ptrs = NULL;
	int64_t *ids = NULL;
	int code = check_batch(c, leases, n, fn, err);
	if (code != JOBQ_OK)
		return code;
	if (lease_msgs(leases, n, &msgs, &ptrs) != 0 || (ids = lease_ids(leases, n)) == NULL) {
		code = jobqi_set_err(err, JOBQ_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	*n_jobs = n;
	*jobs = ptrs;
	code = batch_call(c, method, req, out_desc, ids, n, results, err);
out:
	free(msgs);
	free(ptrs);
	free(ids);
	return code;
}

/* ---- Complete and Fail that claim the next jobs ---- */

/* field_at: where field `name` of message m lives (its descriptor in *f); NULL if it has none. */
static void *field_at(ProtobufCMessage *m, const char *name, const ProtobufCFieldDescriptor **f)
{
	*f = protobuf_c_message_descriptor_get_field_by_name(m->descriptor, name);
	return *f != NULL ? (char *)m + (*f)->offset : NULL;
}

/* check_next checks the claim's arguments as jobq_claim does. */
static int check_next(const jobq_claim_next *next, const char *fn, jobq_error *err)
{
	if (next == NULL || next->queue == NULL || next->worker_id == NULL)
		return jobqi_set_err(err, JOBQ_INVALID_ARGUMENT, "%s: next, its queue and worker_id must not be NULL", fn);
	if (next->limit == 0 || next->limit > JOBQ_MAX_BATCH)
		return jobqi_set_err(err, JOBQ_INVALID_ARGUMENT, "%s: limit %u; must be 1..%d", fn,
				     next->limit, JOBQ_MAX_BATCH);
	return JOBQ_OK;
}

/* next_call runs a Complete or Fail whose request carries a claim (its response type out_desc)
 * and reads both answers: results as batch_call does, the claimed jobs as jobq_claim. When the
 * service could not keep the claim waiting (retry_after_ms), the rest of the wait is a plain
 * jobq_claim, after the pause it asks for: the completion is done. */
static int next_call(jobq_client *c, const char *method, const ProtobufCMessage *req,
		     const ProtobufCMessageDescriptor *out_desc, const int64_t *ids, size_t n,
		     const jobq_claim_next *next, jobq_result *results, jobq_job **jobs, size_t *n_jobs,
		     bool *claim_skipped, jobq_error *err)
{
	ProtobufCMessage *resp = NULL;
	const ProtobufCFieldDescriptor *fr, *fc, *fa, *fs;
	jobq_error local;
	if (err == NULL)
		err = &local;
	if (claim_skipped != NULL)
		*claim_skipped = false;
	int64_t until = jobqi_mono_ms() + next->wait_ms;
	int extra = next->wait_ms > INT_MAX ? INT_MAX : (int)next->wait_ms;
	int code = rpc(c, method, req, out_desc, extra, &resp, err);
	if (code != JOBQ_OK) {
		results_from_call(results, ids, n, code, err);
		return code;
	}
	void *pr = field_at(resp, "results", &fr), *pc = field_at(resp, "claimed", &fc);
	void *pa = field_at(resp, "retry_after_ms", &fa), *ps = field_at(resp, "claim_skipped", &fs);
	if (pr == NULL || pc == NULL || pa == NULL || ps == NULL) {
		protobuf_c_message_free_unpacked(resp, NULL);
		return jobqi_set_err(err, JOBQ_INTERNAL, "%s lacks the fields of a claim", out_desc->name);
	}
	size_t n_items = *(const size_t *)((const char *)resp + fr->quantifier_offset);
	size_t n_claimed = *(const size_t *)((const char *)resp + fc->quantifier_offset);
	uint32_t retry_after = *(const uint32_t *)pa;
	bool skipped = *(const protobuf_c_boolean *)ps;
	code = results_from_items(results, ids, n, *(Jobq__V1__ItemResult *const *const *)pr, n_items, err);
	if (code == JOBQ_OK)
		code = jobs_copy(*(Jobq__V1__Job *const *const *)pc, n_claimed, jobs, n_jobs, err);
	protobuf_c_message_free_unpacked(resp, NULL);
	if (claim_skipped != NULL)
		*claim_skipped = skipped;
	if (code != JOBQ_OK || *n_jobs > 0 || retry_after == 0 || next->wait_ms == 0)
		return code;
	int64_t left = until - jobqi_mono_ms();
	if (left <= 0)
		return JOBQ_OK;
	sleep_ms(left < retry_after ? left : retry_after);
	left = until - jobqi_mono_ms();
	return jobq_claim(c, next->queue, next->limit, next->worker_id, next->lease_seconds,
			  left > 0 ? (uint32_t)left : 0, jobs, n_jobs, err);
}

static void next_msg(const jobq_claim_next *next, Jobq__V1__ClaimRequest *m)
{
	jobq__v1__claim_request__init(m);
	m->queue = (char *)next->queue;
	m->limit = next->limit;
	m->worker_id = (char *)next->worker_id;
	m->lease_seconds = next->lease_seconds;
	m->wait_ms = next->wait_ms;
}

/* output_msgs sets req's outputs from outputs[n] (those with data), for leases[n]; *msgs and
 * *ptrs (caller frees both) back them. -1 when memory runs out. */
static int output_msgs(Jobq__V1__CompleteRequest *req, const jobq_lease *leases, const jobq_output *outputs,
		       size_t n, Jobq__V1__JobOutput **msgs, Jobq__V1__JobOutput ***ptrs)
{
	*msgs = NULL;
	*ptrs = NULL;
	if (outputs == NULL || leases == NULL || n == 0 || n > JOBQ_MAX_BATCH)
		return 0; /* nothing to add; the batch itself is checked by the call */
	*msgs = calloc(n, sizeof(**msgs));
	*ptrs = calloc(n, sizeof(**ptrs));
	if (*msgs == NULL || *ptrs == NULL)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (outputs[i].data == NULL)
			continue;
		Jobq__V1__JobOutput *m = &(*msgs)[req->n_outputs];
		jobq__v1__job_output__init(m);
		m->id = leases[i].id;
		m->output.data = (uint8_t *)outputs[i].data;
		m->output.len = outputs[i].len;
		(*ptrs)[req->n_outputs++] = m;
	}
	req->outputs = *ptrs;
	return 0;
}

/* complete_claim_call: jobq_complete_claim, with the outputs of jobq_complete_output (NULL: none). */
static int complete_claim_call(jobq_client *c, const char *fn, const jobq_lease *leases,
			       const jobq_output *outputs, size_t n, const jobq_claim_next *next,
			       jobq_result *results, jobq_job **jobs, size_t *n_jobs, bool *claim_skipped,
			       jobq_error *err)
{
	Jobq__V1__CompleteRequest req = JOBQ__V1__COMPLETE_REQUEST__INIT;
	Jobq__V1__ClaimRequest claim;
	Jobq__V1__JobLease *msgs = NULL, **ptrs = NULL;
	Jobq__V1__JobOutput *out_msgs = NULL, **out_ptrs = NULL;
	int64_t *ids = NULL;
	if (jobs == NULL || n_jobs == NULL)
		return jobqi_set_err(err, JOBQ_INVALID_ARGUMENT, "%s: jobs and n_jobs must not be NULL", fn);
	*jobs = NULL;
	*n_jobs = 0;
	int code = check_batch(c, leases, n, fn, err);
	if (code == JOBQ_OK)
		code = check_next(next, fn, err);
	if (code != JOBQ_OK)
		return code;
	if (lease_msgs(leases, n, &msgs, &ptrs) != 0 || (ids = lease_ids(leases, n)) == NULL ||
	    output_msgs(&req, leases, outputs, n, &out_msgs, &out_ptrs) != 0) {
		code = jobqi_set_err(err, JOBQ_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	next_msg(next, &claim);
	req.n_jobs = n;
	req.jobs = ptrs;
	req.claim = &claim;
	code = next_call(c, METHOD("Complete"), &req.base, &jobq__v1__complete_response__descriptor, ids, n,
			 next, results, jobs, n_jobs, claim_skipped, err);
out:
	free(msgs);
	free(ptrs);
	free(out_msgs);
	free(out_ptrs);
	free(ids);
	return code;
}

int jobq_complete_claim(jobq_client *c, const jobq_lease *leases, size_t n, const jobq_claim_next *next,
			jobq_result *results, jobq_job **jobs, size_t *n_jobs, bool *claim_skipped,
			jobq_error *err)
{
	return complete_claim_call(c, "jobq_complete_claim", leases, NULL, n, next, results, jobs, n_jobs,
				   claim_skipped, err);
}

int jobq_complete_output_claim(jobq_client *c, const jobq_lease *leases, const jobq_output *outputs,
			       size_t n, const jobq_claim_next *next, jobq_result *results, jobq_job **jobs,
			       size_t *n_jobs, bool *claim_skipped, jobq_error *err)
{
	return complete_claim_call(c, "jobq_complete_output_claim", leases, outputs, n, next, results, jobs,
				   n_jobs, claim_skipped, err);
}

int jobq_heartbeat(jobq_client *c, const jobq_lease *leases, size_t n, uint32_t lease_seconds,
		   jobq_result *results, jobq_error *err)
{
	Jobq__V1__HeartbeatRequest req = JOBQ__V1__HEARTBEAT_REQUEST__INIT;
	req.lease_seconds = lease_seconds;
	return lease_call(c, "jobq_heartbeat", METHOD("Heartbeat"), &req.base, &req.n_jobs, &req.jobs,
			  &jobq__v1__heartbeat_response__descriptor, leases, n, results, err);
}

int jobq_complete(jobq_client *c, const jobq_lease *leases, size_t n, jobq_result *results,
		  jobq_error *err)
{
	Jobq__V1__CompleteRequest req = JOBQ__V1__COMPLETE_REQUEST__INIT;
	return lease_call(c, "jobq_complete", METHOD("Complete"), &req.base, &req.n_jobs, &req.jobs,
			  &jobq__v1__complete_response__descriptor, leases, n, results, err);
}

int jobq_heartbeat_progress(jobq_client *c, const jobq_lease *leases, const jobq_progress *progress,
			    size_t n, uint32_t lease_seconds, jobq_result *results, jobq_error *err)
{
	Jobq__V1__HeartbeatRequest req = JOBQ__V1__HEARTBEAT_REQUEST__INIT;
	Jobq__V1__JobProgress *msgs = NULL, **ptrs = NULL;
	req.lease_seconds = lease_seconds;
	if (progress != NULL && leases != NULL && n > 0 && n <= JOBQ_MAX_BATCH) {
		msgs = calloc(n, sizeof(*msgs));
		ptrs = calloc(n, sizeof(*ptrs));
		if (msgs == NULL || ptrs == NULL) {
			free(msgs);
			free(ptrs);
			return jobqi_set_err(err, JOBQ_RESOURCE_EXHAUSTED, "out of memory");
		}
		for (size_t i = 0; i < n; i++) {
			if (progress[i].percent < 0)
				continue;
			Jobq__V1__JobProgress *m = &msgs[req.n_progress];
			jobq__v1__job_progress__init(m);
			m->id = leases[i].id;
			m->percent = (uint32_t)progress[i].percent;
			m->message = (char *)(progress[i].message != NULL ? progress[i].message : "");
			ptrs[req.n_progress++] = m;
		}
		req.progress = ptrs;
	}
	int code = lease_call(c, "jobq_heartbeat_progress", METHOD("Heartbeat"), &req.base, &req.n_jobs,
			      &req.jobs, &jobq__v1__heartbeat_response__descriptor, leases, n, results, err);
	free(msgs);
	free(ptrs);
	return code;
}

int jobq_complete_output(jobq_client *c, const jobq_lease *leases, const jobq_output *outputs,
			 size_t n, jobq_result *results, jobq_error *err)
{
	Jobq__V1__CompleteRequest req = JOBQ__V1__COMPLETE_REQUEST__INIT;
	Jobq__V1__JobOutput *msgs = NULL, **ptrs = NULL;
	int code = output_msgs(&req, leases, outputs, n, &msgs, &ptrs) != 0
			   ? jobqi_set_err(err, JOBQ_RESOURCE_EXHAUSTED, "out of memory")
			   : lease_call(c, "jobq_complete_output", METHOD("Complete"), &req.base, &req.n_jobs,
					&req.jobs, &jobq__v1__complete_response__descriptor, leases, n, results, err);
	free(msgs);
	free(ptrs);
	return code;
}

/* fail_call sends n failures, with the claim of next when it is not NULL. */
static int fail_call(jobq_client *c, const char *fn, const jobq_failure *failures, size_t n,
		     const char *worker_id, const jobq_claim_next *next, jobq_result *results,
		     jobq_job **jobs, size_t *n_jobs, bool *claim_skipped, jobq_error *err)
{
	Jobq__V1__FailRequest req = JOBQ__V1__FAIL_REQUEST__INIT;
	Jobq__V1__ClaimRequest claim;
	Jobq__V1__JobFailure *msgs = NULL, **ptrs = NULL;
	int64_t *ids = NULL;
	int code = check_batch(c, failures, n, fn, err);
	if (code == JOBQ_OK && next != NULL)
		code = check_next(next, fn, err);
	if (code != JOBQ_OK)
		return code;
	msgs = calloc(n, sizeof(*msgs));
	ptrs = calloc(n, sizeof(*ptrs));
	ids = malloc(n * sizeof(*ids));
	if (msgs == NULL || ptrs == NULL || ids == NULL) {
		code = jobqi_set_err(err, JOBQ_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		jobq__v1__job_failure__init(&msgs[i]);
		msgs[i].id = ids[i] = failures[i].id;
		msgs[i].lease_token = failures[i].lease_token;
		msgs[i].error = (char *)(failures[i].error ? failures[i].error : "");
		msgs[i].final = failures[i].final;
		msgs[i].retry_in_ms = failures[i].retry_in_ms;
		ptrs[i] = &msgs[i];
	}
	req.n_jobs = n;
	req.jobs = ptrs;
	req.worker_id = (char *)(worker_id ? worker_id : "");
	if (next != NULL) {
		next_msg(next, &claim);
		req.claim = &claim;
		code = next_call(c, METHOD("Fail"), &req.base, &jobq__v1__fail_response__descriptor, ids, n,
				 next, results, jobs, n_jobs, claim_skipped, err);
	} else {
		code = batch_call(c, METHOD("Fail"), &req.base, &jobq__v1__fail_response__descriptor, ids,
				  n, results, err);
	}
out:
	free(msgs);
	free(ptrs);
	free(ids);
	return code;
}

int jobq_fail(jobq_client *c, const jobq_failure *failures, size_t n, const char *worker_id,
	      jobq_result *results, jobq_error *err)
{
	return fail_call(c, "jobq_fail", failures, n, worker_id, NULL, results, NULL, NULL, NULL, err);
}

int jobq_fail_claim(jobq_client *c, const jobq_failure *failures, size_t n, const char *worker_id,
		    const jobq_claim_next *next, jobq_result *results, jobq_job **jobs, size_t *n_jobs,
		    bool *claim_skipped, jobq_error *err)
{
	if (jobs == NULL || n_jobs == NULL)
		return jobqi_set_err(err, JOBQ_INVALID_ARGUMENT, "jobq_fail_claim: jobs and n_jobs must not be NULL");
	*jobs = NULL;
	*n_jobs = 0;
	return fail_call(c, "jobq_fail_claim", failures, n, worker_id, next, results, jobs, n_jobs,
			 claim_skipped, err);
}

/* ---- Get, List ---- */

void jobq_failures_free(jobq_failure_record *records, size_t n)
{
	if (records == NULL)
		return;
	for (size_t i = 0; i < n; i++) {
		free(records[i].worker_id);
		free(records[i].error);
	}
	free(records);
}

static int failures_copy(Jobq__V1__FailureRecord *const *ms, size_t n, jobq_failure_record **out,
			 jobq_error *err)
{
	*out = NULL;
	if (n == 0)
		return JOBQ_OK;
	jobq_failure_record *recs = calloc(n, sizeof(*recs));
	if (recs == NULL)
		return jobqi_set_err(err, JOBQ_RESOURCE_EXHAUSTED, "out of memory");
	for (size_t i = 0; i < n; i++) {
		recs[i].attempt = ms[i]->attempt;
		recs[i].failed_at_ms = ms[i]->failed_at_ms;
		recs[i].worker_id = str_copy(ms[i]->worker_id);
		recs[i].error = str_copy(ms[i]->error);
		if (recs[i].worker_id == NULL || recs[i].error == NULL) {
			jobq_failures_free(recs, i + 1);
			return jobqi_set_err(err, JOBQ_RESOURCE_EXHAUSTED, "out of memory");
		}
	}
	*out = recs;
	return JOBQ_OK;
}

int jobq_get(jobq_client *c, int64_t id, jobq_job **job, jobq_failure_record **history,
	     size_t *n_history, jobq_error *err)
{
	Jobq__V1__GetRequest req = JOBQ__V1__GET_REQUEST__INIT;
	Jobq__V1__GetResponse *resp = NULL;
	size_t one = 0;
	int code = check_client(c, "jobq_get", err);
	if (code != JOBQ_OK)
		return code;
	if (job == NULL || (history != NULL && n_history == NULL))
		return jobqi_set_err(err, JOBQ_INVALID_ARGUMENT,
				     "jobq_get: job is NULL, or history without n_history");
	*job = NULL;
	if (history != NULL) {
		*history = NULL;
		*n_history = 0;
	}
	req.id = id;
	code = rpc(c, METHOD("Get"), &req.base, &jobq__v1__get_response__descriptor, 0,
		   (ProtobufCMessage **)&resp, err);
	if (code != JOBQ_OK)
		return code;
	if (resp->job == NULL) {
		code = jobqi_set_err(err, JOBQ_INTERNAL, "Get: the reply has no job");
		goto out;
	}
	if ((code = jobs_copy(&resp->job, 1, job, &one, err)) != JOBQ_OK)
		goto out;
	if (history == NULL)
		goto out;
	if ((code = failures_copy(resp->failures, resp->n_failures, history, err)) != JOBQ_OK) {
		jobq_jobs_free(*job, 1);
		*job = NULL;
		goto out;
	}
	*n_history = resp->n_failures;
out:
	jobq__v1__get_response__free_unpacked(resp, NULL);
	return code;
}

int jobq_list(jobq_client *c, const jobq_list_options *opts, jobq_job **jobs, size_t *n,
	      int64_t *next_after_id, jobq_error *err)
{
	Jobq__V1__ListRequest req = JOBQ__V1__LIST_REQUEST__INIT;
	Jobq__V1__ListResponse *resp = NULL;
	jobq_list_options none = { 0 };
	int code = check_client(c, "jobq_list", err);
	if (code != JOBQ_OK)
		return code;
	if (jobs == NULL || n == NULL)
		return jobqi_set_err(err, JOBQ_INVALID_ARGUMENT, "jobq_list: jobs and n must not be NULL");
	*jobs = NULL;
	*n = 0;
	if (next_after_id != NULL)
		*next_after_id = 0;
	if (opts == NULL)
		opts = &none;
	if (opts->limit > JOBQ_MAX_BATCH)
		return jobqi_set_err(err, JOBQ_INVALID_ARGUMENT, "jobq_list: limit %u; at most %d",
				     opts->limit, JOBQ_MAX_BATCH);
	req.queue = (char *)(opts->queue ? opts->queue : "");
	req.status = (Jobq__V1__JobStatus)opts->status;
	req.limit = opts->limit;
	req.after_id = opts->after_id;
	req.include_payload = opts->include_payload;
	code = rpc(c, METHOD("List"), &req.base, &jobq__v1__list_response__descriptor, 0,
		   (ProtobufCMessage **)&resp, err);
	if (code != JOBQ_OK)
		return code;
	code = jobs_copy(resp->jobs, resp->n_jobs, jobs, n, err);
	if (code == JOBQ_OK && next_after_id != NULL)
		*next_after_id = resp->next_after_id;
	jobq__v1__list_response__free_unpacked(resp, NULL);
	return code;
}

/* ---- Retry, Cancel ---- */

int jobq_wait(jobq_client *c, const int64_t *ids, size_t n, uint32_t wait_ms, jobq_job **jobs,
	      size_t *n_jobs, bool *done, jobq_error *err)
{
	Jobq__V1__WaitRequest req = JOBQ__V1__WAIT_REQUEST__INIT;
	Jobq__V1__WaitResponse *resp = NULL;
	int code = check_client(c, "jobq_wait", err);
	if (code != JOBQ_OK)
		return code;
	if (ids == NULL || jobs == NULL || n_jobs == NULL || done == NULL)
		return jobqi_set_err(err, JOBQ_INVALID_ARGUMENT,
				     "jobq_wait: ids, jobs, n_jobs and done must not be NULL");
	*jobs = NULL;
	*n_jobs = 0;
	*done = false;
	if (n == 0 || n > 100)
		return jobqi_set_err(err, JOBQ_INVALID_ARGUMENT, "jobq_wait: %zu jobs; must be 1..100", n);
	req.n_ids = n;
	req.ids = (int64_t *)ids;
	int64_t until = jobqi_mono_ms() + wait_ms;
	for (;;) {
		int64_t left = until - jobqi_mono_ms();
		req.wait_ms = left > 0 ? (uint32_t)left : 0;
		/* The service answers when the jobs end or wait_ms has passed: wait that much longer. */
		int extra = req.wait_ms > INT_MAX ? INT_MAX : (int)req.wait_ms;
		code = rpc(c, METHOD("Wait"), &req.base, &jobq__v1__wait_response__descriptor, extra,
			   (ProtobufCMessage **)&resp, err);
		if (code != JOBQ_OK)
			return code;
		uint32_t retry_after = resp->retry_after_ms;
		if (retry_after == 0 || req.wait_ms == 0)
			break;
		/* The service keeps as many Waits as it allows: wait here, then ask again. */
		jobq__v1__wait_response__free_unpacked(resp, NULL);
		resp = NULL;
		left = until - jobqi_mono_ms();
		sleep_ms(left < retry_after ? (left > 0 ? left : 0) : retry_after);
	}
	*done = resp->done;
	code = jobs_copy(resp->jobs, resp->n_jobs, jobs, n_jobs, err);
	jobq__v1__wait_response__free_unpacked(resp, NULL);
	return code;
}

int jobq_retry(jobq_client *c, const int64_t *ids, size_t n, jobq_result *results, jobq_error *err)
{
	Jobq__V1__RetryRequest req = JOBQ__V1__RETRY_REQUEST__INIT;
	int code = check_batch(c, ids, n, "jobq_retry", err);
	if (code != JOBQ_OK)
		return code;
	req.n_ids = n;
	req.ids = (int64_t *)ids;
	return batch_call(c, METHOD("Retry"), &req.base, &jobq__v1__retry_response__descriptor, ids, n,
			  results, err);
}

int jobq_cancel(jobq_client *c, const int64_t *ids, size_t n, jobq_result *results, jobq_error *err)
{
	Jobq__V1__CancelRequest req = JOBQ__V1__CANCEL_REQUEST__INIT;
	int code = check_batch(c, ids, n, "jobq_cancel", err);
	if (code != JOBQ_OK)
		return code;
	req.n_ids = n;
	req.ids = (int64_t *)ids;
	return batch_call(c, METHOD("Cancel"), &req.base, &jobq__v1__cancel_response__descriptor, ids,
			  n, results, err);
}

int jobq_retry_all_failed(jobq_client *c, const char *queue, uint32_t *count, jobq_error *err)
{
	Jobq__V1__RetryRequest req = JOBQ__V1__RETRY_REQUEST__INIT;
	Jobq__V1__RetryResponse *resp = NULL;
	int code = check_client(c, "jobq_retry_all_failed", err);
	if (code != JOBQ_OK)
		return code;
	if (queue == NULL)
		return jobqi_set_err(err, JOBQ_INVALID_ARGUMENT, "jobq_retry_all_failed: queue is NULL");
	if (count != NULL)
		*count = 0;
	req.all_failed = true;
	req.queue = (char *)queue;
	code = rpc(c, METHOD("Retry"), &req.base, &jobq__v1__retry_response__descriptor, 0,
		   (ProtobufCMessage **)&resp, err);
	if (code != JOBQ_OK)
		return code;
	if (count != NULL)
		*count = resp->retried;
	jobq__v1__retry_response__free_unpacked(resp, NULL);
	return JOBQ_OK;
}

/* ---- Stats ---- */

void jobq_stats_free(jobq_queue_stats *stats, size_t n)
{
	if (stats == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		free(stats[i].queue);
	free(stats);
}

static int stats_copy(Jobq__V1__QueueStats *const *ms, size_t n, jobq_queue_stats **out,
		      jobq_error *err)
{
	*out = NULL;
	if (n == 0)
		return JOBQ_OK;
	jobq_queue_stats *st = calloc(n, sizeof(*st));
	if (st == NULL)
		return jobqi_set_err(err, JOBQ_RESOURCE_EXHAUSTED, "out of memory");
	for (size_t i = 0; i < n; i++) {
		const Jobq__V1__QueueStats *m = ms[i];
		st[i] = (jobq_queue_stats){
			.queue = str_copy(m->queue),
			.pending = m->pending,
			.scheduled = m->scheduled,
			.processing = m->processing,
			.completed = m->completed,
			.failed = m->failed,
			.cancelled = m->cancelled,
			.oldest_due_age_seconds = m->oldest_due_age_seconds,
			.flow = { .paused = m->paused, .concurrency_limit = m->concurrency_limit,
				  .rate_limit = m->rate_limit, .rate_period_ms = m->rate_period_ms,
				  .key_concurrency_limit = m->key_concurrency_limit },
		};
		if (st[i].queue == NULL) {
			jobq_stats_free(st, i);
			return jobqi_set_err(err, JOBQ_RESOURCE_EXHAUSTED, "out of memory");
		}
	}
	*out = st;
	return JOBQ_OK;
}

int jobq_stats(jobq_client *c, const char *queue, jobq_queue_stats **stats, size_t *n, jobq_error *err)
{
	Jobq__V1__StatsRequest req = JOBQ__V1__STATS_REQUEST__INIT;
	Jobq__V1__StatsResponse *resp = NULL;
	int code = check_client(c, "jobq_stats", err);
	if (code != JOBQ_OK)
		return code;
	if (stats == NULL || n == NULL)
		return jobqi_set_err(err, JOBQ_INVALID_ARGUMENT, "jobq_stats: stats and n must not be NULL");
	*stats = NULL;
	*n = 0;
	req.queue = (char *)(queue ? queue : "");
	code = rpc(c, METHOD("Stats"), &req.base, &jobq__v1__stats_response__descriptor, 0,
		   (ProtobufCMessage **)&resp, err);
	if (code != JOBQ_OK)
		return code;
	code = stats_copy(resp->queues, resp->n_queues, stats, err);
	if (code == JOBQ_OK)
		*n = resp->n_queues;
	jobq__v1__stats_response__free_unpacked(resp, NULL);
	return code;
}

/* ---- Pause, Resume, ConfigureQueue ---- */

static void flow_copy(const Jobq__V1__QueueSettings *m, jobq_queue_flow *out)
{
	if (out == NULL)
		return;
	memset(out, 0, sizeof(*out));
	if (m == NULL)
		return;
	out->paused = m->paused;
	out->concurrency_limit = m->concurrency_limit;
	out->rate_limit = m->rate_limit;
	out->rate_period_ms = m->rate_period_ms;
	out->key_concurrency_limit = m->key_concurrency_limit;
}

/* settings_of: the QueueSettings of a PauseResponse, ResumeResponse or ConfigureQueueResponse. */
static const Jobq__V1__QueueSettings *settings_of(const ProtobufCMessage *resp)
{
	if (resp->descriptor == &jobq__v1__pause_response__descriptor)
		return ((const Jobq__V1__PauseResponse *)resp)->settings;
	if (resp->descriptor == &jobq__v1__resume_response__descriptor)
		return ((const Jobq__V1__ResumeResponse *)resp)->settings;
	return ((const Jobq__V1__ConfigureQueueResponse *)resp)->settings;
}

/* settings_call runs one of those methods and copies the settings it answers into *out. */
static int settings_call(jobq_client *c, const char *fn, const char *method, const ProtobufCMessage *req,
			 const ProtobufCMessageDescriptor *out_desc, jobq_queue_flow *out, jobq_error *err)
{
	ProtobufCMessage *resp = NULL;
	int code = check_client(c, fn, err);
	if (code != JOBQ_OK)
		return code;
	code = rpc(c, method, req, out_desc, 0, &resp, err);
	if (code != JOBQ_OK)
		return code;
	flow_copy(settings_of(resp), out);
	protobuf_c_message_free_unpacked(resp, NULL);
	return JOBQ_OK;
}

int jobq_pause(jobq_client *c, const char *queue, jobq_queue_flow *out, jobq_error *err)
{
	Jobq__V1__PauseRequest req = JOBQ__V1__PAUSE_REQUEST__INIT;
	req.queue = (char *)(queue ? queue : "");
	return settings_call(c, "jobq_pause", METHOD("Pause"), &req.base,
			     &jobq__v1__pause_response__descriptor, out, err);
}

int jobq_resume(jobq_client *c, const char *queue, jobq_queue_flow *out, jobq_error *err)
{
	Jobq__V1__ResumeRequest req = JOBQ__V1__RESUME_REQUEST__INIT;
	req.queue = (char *)(queue ? queue : "");
	return settings_call(c, "jobq_resume", METHOD("Resume"), &req.base,
			     &jobq__v1__resume_response__descriptor, out, err);
}

int jobq_configure_queue(jobq_client *c, const char *queue, const jobq_queue_config *cfg,
			 jobq_queue_flow *out, jobq_error *err)
{
	Jobq__V1__ConfigureQueueRequest req = JOBQ__V1__CONFIGURE_QUEUE_REQUEST__INIT;
	if (cfg == NULL)
		return jobqi_set_err(err, JOBQ_INVALID_ARGUMENT, "jobq_configure_queue: cfg is NULL");
	req.queue = (char *)(queue ? queue : "");
	req.set_concurrency_limit = cfg->set_concurrency_limit;
	req.concurrency_limit = cfg->concurrency_limit;
	req.clear_concurrency_limit = cfg->clear_concurrency_limit;
	req.set_key_concurrency_limit = cfg->set_key_concurrency_limit;
	req.key_concurrency_limit = cfg->key_concurrency_limit;
	req.clear_key_concurrency_limit = cfg->clear_key_concurrency_limit;
	req.set_rate_limit = cfg->set_rate_limit;
	req.rate_limit = cfg->rate_limit;
	req.rate_period_ms = cfg->rate_period_ms;
	req.clear_rate_limit = cfg->clear_rate_limit;
	return settings_call(c, "jobq_configure_queue", METHOD("ConfigureQueue"), &req.base,
			     &jobq__v1__configure_queue_response__descriptor, out, err);
}

/* ---- Schedules ---- */

static void schedule_release(jobq_schedule *s)
{
	free(s->name);
	free(s->cron);
	free(s->time_zone);
	free(s->queue);
	free(s->payload);
	free(s->idempotency_key);
}

void jobq_schedules_free(jobq_schedule *schedules, size_t n)
{
	if (schedules == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		schedule_release(&schedules[i]);
	free(schedules);
}

static int schedule_copy(const Jobq__V1__Schedule *m, jobq_schedule *s)
{
	static const Jobq__V1__JobSpec none = JOBQ__V1__JOB_SPEC__INIT;
	const Jobq__V1__JobSpec *j = m->job ? m->job : &none;
	memset(s, 0, sizeof(*s));
	s->missed = m->missed == JOBQ__V1__MISSED_POLICY__MISSED_POLICY_ONCE ? JOBQ_MISSED_ONCE : JOBQ_MISSED_SKIP;
	s->priority = j->priority;
	s->max_attempts = j->max_attempts;
	s->next_run_at_ms = m->next_run_at_ms;
	s->last_run_at_ms = m->last_run_at_ms;
	s->created_at_ms = m->created_at_ms;
	s->updated_at_ms = m->updated_at_ms;
	s->payload_len = j->payload.len;
	s->payload = malloc(j->payload.len + 1);
	if (s->payload != NULL) {
		if (j->payload.len > 0)
			memcpy(s->payload, j->payload.data, j->payload.len);
		s->payload[j->payload.len] = '\0';
	}
	s->name = str_copy(m->name);
	s->cron = str_copy(m->cron);
	s->time_zone = str_copy(m->time_zone);
	s->queue = str_copy(j->queue);
	s->idempotency_key = str_copy(j->idempotency_key);
	if (s->payload == NULL || s->name == NULL || s->cron == NULL || s->time_zone == NULL ||
	    s->queue == NULL || s->idempotency_key == NULL) {
		schedule_release(s);
		return -1;
	}
	return 0;
}

/* schedules_copy: *out is NULL when n is 0. */
static int schedules_copy(Jobq__V1__Schedule *const *ms, size_t n, jobq_schedule **out, jobq_error *err)
{
	*out = NULL;
	if (n == 0)
		return JOBQ_OK;
	jobq_schedule *s = calloc(n, sizeof(*s));
	if (s == NULL)
		return jobqi_set_err(err, JOBQ_RESOURCE_EXHAUSTED, "out of memory");
	for (size_t i = 0; i < n; i++) {
		if (schedule_copy(ms[i], &s[i]) != 0) {
			jobq_schedules_free(s, i);
			return jobqi_set_err(err, JOBQ_RESOURCE_EXHAUSTED, "out of memory");
		}
	}
	*out = s;
	return JOBQ_OK;
}

int jobq_schedule_add(jobq_client *c, const jobq_schedule_spec *spec, jobq_schedule **stored, jobq_error *err)
{
	Jobq__V1__AddScheduleRequest req = JOBQ__V1__ADD_SCHEDULE_REQUEST__INIT;
	Jobq__V1__Schedule s = JOBQ__V1__SCHEDULE__INIT;
	Jobq__V1__JobSpec job = JOBQ__V1__JOB_SPEC__INIT;
	Jobq__V1__AddScheduleResponse *resp = NULL;
	int code = check_client(c, "jobq_schedule_add", err);
	if (code != JOBQ_OK)
		return code;
	if (spec == NULL)
		return jobqi_set_err(err, JOBQ_INVALID_ARGUMENT, "jobq_schedule_add: spec is NULL");
	if (stored != NULL)
		*stored = NULL;
	s.name = (char *)(spec->name ? spec->name : "");
	s.cron = (char *)(spec->cron ? spec->cron : "");
	s.time_zone = (char *)(spec->time_zone ? spec->time_zone : "");
	s.missed = spec->missed == JOBQ_MISSED_ONCE ? JOBQ__V1__MISSED_POLICY__MISSED_POLICY_ONCE
						    : JOBQ__V1__MISSED_POLICY__MISSED_POLICY_SKIP;
	job.queue = (char *)(spec->job.queue ? spec->job.queue : "");
	job.payload.data = (uint8_t *)spec->job.payload;
	job.payload.len = spec->job.payload ? spec->job.payload_len : 0;
	job.priority = spec->job.priority;
	job.run_at_ms = spec->job.run_at_ms;
	job.delay_ms = spec->job.delay_ms;
	job.max_attempts = spec->job.max_attempts;
	job.idempotency_key = (char *)(spec->job.idempotency_key ? spec->job.idempotency_key : "");
	s.job = &job;
	req.schedule = &s;
	code = rpc(c, METHOD("AddSchedule"), &req.base, &jobq__v1__add_schedule_response__descriptor, 0,
		   (ProtobufCMessage **)&resp, err);
	if (code != JOBQ_OK)
		return code;
	if (stored != NULL && resp->schedule != NULL)
		code = schedules_copy(&resp->schedule, 1, stored, err);
	jobq__v1__add_schedule_response__free_unpacked(resp, NULL);
	return code;
}

int jobq_schedule_list(jobq_client *c, bool include_payload, jobq_schedule **schedules, size_t *n,
		       jobq_error *err)
{
	Jobq__V1__ListSchedulesRequest req = JOBQ__V1__LIST_SCHEDULES_REQUEST__INIT;
	Jobq__V1__ListSchedulesResponse *resp = NULL;
	int code = check_client(c, "jobq_schedule_list", err);
	if (code != JOBQ_OK)
		return code;
	if (schedules == NULL || n == NULL)
		return jobqi_set_err(err, JOBQ_INVALID_ARGUMENT, "jobq_schedule_list: schedules and n must not be NULL");
	*schedules = NULL;
	*n = 0;
	req.include_payload = include_payload;
	code = rpc(c, METHOD("ListSchedules"), &req.base, &jobq__v1__list_schedules_response__descriptor, 0,
		   (ProtobufCMessage **)&resp, err);
	if (code != JOBQ_OK)
		return code;
	code = schedules_copy(resp->schedules, resp->n_schedules, schedules, err);
	if (code == JOBQ_OK)
		*n = resp->n_schedules;
	jobq__v1__list_schedules_response__free_unpacked(resp, NULL);
	return code;
}

int jobq_schedule_remove(jobq_client *c, const char *name, jobq_error *err)
{
	Jobq__V1__RemoveScheduleRequest req = JOBQ__V1__REMOVE_SCHEDULE_REQUEST__INIT;
	Jobq__V1__RemoveScheduleResponse *resp = NULL;
	int code = check_client(c, "jobq_schedule_remove", err);
	if (code != JOBQ_OK)
		return code;
	req.name = (char *)(name ? name : "");
	code = rpc(c, METHOD("RemoveSchedule"), &req.base, &jobq__v1__remove_schedule_response__descriptor, 0,
		   (ProtobufCMessage **)&resp, err);
	if (code != JOBQ_OK)
		return code;
	jobq__v1__remove_schedule_response__free_unpacked(resp, NULL);
	return JOBQ_OK;
}
