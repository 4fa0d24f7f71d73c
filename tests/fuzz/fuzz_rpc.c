/*
 * fuzz_rpc — libFuzzer target for what jobqd does with untrusted bytes before any SQL: decode the
 * RpcRequest envelope, find the method by its full name, decode the method's request and
 * validate it. Besides "never crash", it checks that whatever validation lets through really is
 * within the limits the SQL relies on (batch sizes, payload size, queue names, UTF-8).
 *
 * Two ways in, chosen by the first byte, so the fuzzer reaches deep into each validator without
 * first having to discover the envelope: 0x00..0x7f feeds the whole input to the envelope
 * decoder; 0x80 + k feeds the rest straight to method k's request decoder.
 *
 * Built with clang -fsanitize=fuzzer,address,undefined by `make fuzz`; the same file, linked with
 * tests/fuzz/corpus_main.c, replays the committed corpus in `make test`.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobq/v1/jobq.pb-c.h"
#include "jq_validate.h"
#include "jq_wire.h"

#define FUZZ_MAX_PAYLOAD 1024

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* must: a validated request broke an invariant the database code relies on. */
#define must(cond)                                                                       \
	do {                                                                             \
		if (!(cond)) {                                                           \
			fprintf(stderr, "fuzz_rpc: invariant failed: %s (%s:%d)\n", #cond, \
				__FILE__, __LINE__);                                     \
			abort();                                                         \
		}                                                                        \
	} while (0)

static void check_queue(const char *q)
{
	char msg[256];
	must(jq_validate_queue_name("q", q, msg, sizeof(msg)) == 0);
	must(strlen(q) >= 1 && strlen(q) <= JQ_MAX_QUEUE_LEN);
}

static void after_enqueue(const Jobq__V1__EnqueueRequest *r)
{
	must(r->n_jobs >= 1 && r->n_jobs <= JQ_MAX_BATCH);
	for (size_t i = 0; i < r->n_jobs; i++) {
		check_queue(r->jobs[i]->queue);
		must(r->jobs[i]->payload.len <= FUZZ_MAX_PAYLOAD);
		must(r->jobs[i]->priority >= INT16_MIN && r->jobs[i]->priority <= INT16_MAX);
		must(r->jobs[i]->max_attempts <= JQ_MAX_ATTEMPTS);
		must(jq_validate_utf8(r->jobs[i]->idempotency_key, strlen(r->jobs[i]->idempotency_key)));
	}
}

static void after_claim(const Jobq__V1__ClaimRequest *r)
{
	check_queue(r->queue);
	must(r->limit >= 1 && r->limit <= JQ_MAX_BATCH);
	must(r->lease_seconds <= JQ_MAX_LEASE_SECONDS);
	must(strlen(r->worker_id) >= 1 && strlen(r->worker_id) <= JQ_MAX_WORKER_ID_LEN);
}

/* A Complete or Fail that claims carries a claim held to a Claim's limits. */
static void after_next_claim(const Jobq__V1__ClaimRequest *claim)
{
	if (claim != NULL)
		after_claim(claim);
}

static void after_fail(const Jobq__V1__FailRequest *r)
{
	size_t n = r->n_jobs + (r->id != 0 || r->lease_token != 0);
	must(n >= 1 && n <= JQ_MAX_BATCH);
	must(jq_validate_utf8(r->error, strlen(r->error)));
	for (size_t i = 0; i < r->n_jobs; i++) {
		must(r->jobs[i]->id > 0 && r->jobs[i]->lease_token > 0);
		must(jq_validate_utf8(r->jobs[i]->error, strlen(r->jobs[i]->error)));
	}
	after_next_claim(r->claim);
}

static void after_wait(const Jobq__V1__WaitRequest *r)
{
	must(r->n_ids >= 1 && r->n_ids <= JQ_MAX_WAIT_IDS && r->wait_ms <= JQ_MAX_WAIT_MS);
	for (size_t i = 0; i < r->n_ids; i++)
		must(r->ids[i] > 0);
}

static void after_heartbeat(const Jobq__V1__HeartbeatRequest *r)
{
	for (size_t i = 0; i < r->n_progress; i++) {
		must(r->progress[i]->percent <= 100);
		must(strlen(r->progress[i]->message) <= JQ_MAX_PROGRESS_MESSAGE_LEN);
	}
}

static void after_complete(const Jobq__V1__CompleteRequest *r)
{
	must(r->output.len <= FUZZ_MAX_PAYLOAD);
	for (size_t i = 0; i < r->n_outputs; i++)
		must(r->outputs[i]->output.len <= FUZZ_MAX_PAYLOAD);
}

/* validate decodes payload as the request of method `name` and validates it. */
static void validate(const char *name, const uint8_t *p, size_t n)
{
	const ProtobufCMethodDescriptor *m =
		protobuf_c_service_descriptor_get_method_by_name(&jobq__v1__job_queue__descriptor, name);
	char msg[512];
	if (m == NULL)
		return;
	ProtobufCMessage *in = protobuf_c_message_unpack(m->input, NULL, n, p);
	if (in == NULL)
		return;
	jq_limits lim = { .max_payload_bytes = FUZZ_MAX_PAYLOAD };
	int ok = -1;
	if (!strcmp(name, "Enqueue")) {
		ok = jq_validate_enqueue((void *)in, &lim, msg, sizeof(msg));
		if (ok == 0)
			after_enqueue((void *)in);
	} else if (!strcmp(name, "Claim")) {
		ok = jq_validate_claim((void *)in, msg, sizeof(msg));
		if (ok == 0)
			after_claim((void *)in);
	} else if (!strcmp(name, "Heartbeat")) {
		ok = jq_validate_heartbeat((void *)in, msg, sizeof(msg));
	} else if (!strcmp(name, "Complete")) {
		ok = jq_validate_complete((void *)in, &lim, msg, sizeof(msg));
		if (ok == 0)
			after_next_claim(((Jobq__V1__CompleteRequest *)in)->claim);
	} else if (!strcmp(name, "Fail")) {
		ok = jq_validate_fail((void *)in, msg, sizeof(msg));
		if (ok == 0)
			after_fail((void *)in);
	} else if (!strcmp(name, "Get")) {
		ok = jq_validate_get((void *)in, msg, sizeof(msg));
	} else if (!strcmp(name, "List")) {
		ok = jq_validate_list((void *)in, msg, sizeof(msg));
	} else if (!strcmp(name, "Retry")) {
		ok = jq_validate_retry((void *)in, msg, sizeof(msg));
	} else if (!strcmp(name, "Cancel")) {
		ok = jq_validate_cancel((void *)in, msg, sizeof(msg));
	} else if (!strcmp(name, "Stats")) {
		ok = jq_validate_stats((void *)in, msg, sizeof(msg));
	} else if (!strcmp(name, "Wait")) {
		ok = jq_validate_wait((void *)in, msg, sizeof(msg));
		if (ok == 0)
			after_wait((void *)in);
	} else if (!strcmp(name, "Pause")) {
		ok = jq_validate_queue_name("queue", ((Jobq__V1__PauseRequest *)in)->queue, msg, sizeof(msg));
	} else if (!strcmp(name, "Resume")) {
		ok = jq_validate_queue_name("queue", ((Jobq__V1__ResumeRequest *)in)->queue, msg, sizeof(msg));
	} else if (!strcmp(name, "ConfigureQueue")) {
		ok = jq_validate_configure_queue((void *)in, msg, sizeof(msg));
	} else if (!strcmp(name, "AddSchedule")) {
		jq_cron cron;
		ok = jq_validate_add_schedule((void *)in, &lim, &cron, msg, sizeof(msg));
	} else if (!strcmp(name, "ListSchedules")) {
		ok = jq_validate_list_schedules((void *)in, msg, sizeof(msg));
	} else if (!strcmp(name, "RemoveSchedule")) {
		ok = jq_validate_remove_schedule((void *)in, msg, sizeof(msg));
	}
	if (ok == 0 && !strcmp(name, "Heartbeat"))
		after_heartbeat((void *)in);
	if (ok == 0 && !strcmp(name, "Complete"))
		after_complete((void *)in);
	/* A rejection always says why, in a bounded, terminated message. */
	if (ok != 0)
		must(memchr(msg, '\0', sizeof(msg)) != NULL && msg[0] != '\0');
	protobuf_c_message_free_unpacked(in, NULL);
}

/* same_string: a field of the wire view reads as the decoder's C string. */
static int same_string(const uint8_t *p, size_t n, const char *decoded)
{
	size_t len = p != NULL ? strnlen((const char *)p, n) : 0;
	return strlen(decoded) == len && (len == 0 || memcmp(p, decoded, len) == 0);
}

/* The credential is judged on jq_wire's view before decoding: it must never read another
 * method or token than the decoder does. */
static void check_wire_view(const uint8_t *data, size_t size, const Jobq__V1__RpcRequest *env)
{
	jq_wire_envelope v;
	must(jq_wire_scan_envelope(data, size, &v));
	must(same_string(v.method, v.method_len, env->method));
	must(same_string(v.token, v.token_len, env->auth_token));
	must(same_string(v.request_id, v.request_id_len, env->request_id));
}

static void via_envelope(const uint8_t *data, size_t size)
{
	static const char prefix[] = "/jobq.v1.JobQueue/";
	jq_wire_envelope v;
	Jobq__V1__RpcRequest *env = jobq__v1__rpc_request__unpack(NULL, size, data);
	if (env == NULL) {
		/* Whatever it says of bytes the decoder refuses, its fields lie within them. */
		if (jq_wire_scan_envelope(data, size, &v)) {
			must(v.method == NULL || (v.method >= data && v.method + v.method_len <= data + size));
			must(v.token == NULL || (v.token >= data && v.token + v.token_len <= data + size));
		}
		return;
	}
	check_wire_view(data, size, env);
	if (strncmp(env->method, prefix, sizeof(prefix) - 1) == 0)
		validate(env->method + sizeof(prefix) - 1, env->payload.data, env->payload.len);
	jobq__v1__rpc_request__free_unpacked(env, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	if (data[0] < 0x80) {
		via_envelope(data, size);
		return 0;
	}
	const ProtobufCServiceDescriptor *svc = &jobq__v1__job_queue__descriptor;
	unsigned k = (data[0] - 0x80u) % svc->n_methods;
	validate(svc->methods[k].name, data + 1, size - 1);
	return 0;
}
