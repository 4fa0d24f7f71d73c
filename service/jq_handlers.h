/*
 * jq_handlers — one function per RPC method: validate the decoded request, call jq_db, build the
 * response. Handlers know protobuf and jq_db; they know nothing of nng or of SQL text.
 *
 * A handler gets a jq_call and the decoded request (owned by the dispatcher). It ends with either
 * jq_call_reply (the dispatcher sends the response at once, packed straight into the reply
 * message, while the handler still holds what the response points into) or jq_call_error (a
 * code and a message, answered by the dispatcher when the handler returns). A Claim may end a
 * third way: the long-poll says it waits (call->waits), and the dispatcher hands the request to
 * jq_longpoll_wait. So may a Complete or Fail that claims the next jobs (CompleteRequest.claim),
 * once its completion is done: its results travel with the request (call->note), and when it runs
 * again only the claim runs.
 */
#ifndef JQ_HANDLERS_H
#define JQ_HANDLERS_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "jq_auth.h"
#include "jq_config.h"
#include "jq_db.h"
#include "jq_flow.h"
#include "jq_enqgroup.h"
#include "jq_jobwait.h"
#include "jq_longpoll.h"

/* Bytes a job takes in a reply beyond the contents of its payload, queue, lease owner, last
 * error and idempotency key: its numbers, tags and length prefixes, and its own tag and length in
 * the response (141 for the widest Job the proto allows; tests/unit/test_reply_bound.c holds
 * the bound). */
#define JQ_REPLY_JOB_FIXED 256
/* Bytes of the reply's envelope (RpcResponse) beyond its payload: tags, lengths, request id. */
#define JQ_REPLY_ENVELOPE_MAX 256
/* Bytes one ItemResult of a Complete or Fail takes in its response, with a message of up to
 * JQ_REPLY_ITEM_MESSAGE_MAX bytes (jq_db's are shorter), and what a response's claim adds beside
 * the jobs (retry_after_ms, claim_skipped): what the completion's results take from the budget
 * of a claim made in the same statement, before their sizes are known
 * (tests/unit/test_reply_bound.c holds both). */
#define JQ_REPLY_ITEM_MESSAGE_MAX 96
#define JQ_REPLY_ITEM_MAX 160
#define JQ_REPLY_NEXT_EXTRA 16

typedef struct jq_call jq_call;

/* How jq_call_reply answers: sends resp at once (the dispatcher's; see jq_dispatch.c). It sets
 * call->sent, or call->code and call->message when the reply could not go out as it is. */
typedef void (*jq_reply_fn)(jq_call *call, const ProtobufCMessage *resp);

struct jq_call {
	jq_db *db;
	const jq_config *cfg;
	const char *request_id;
	int64_t received_us; /* when the request arrived (jq_clock_mono_us clock) */
	int64_t deadline_us; /* when its caller stops waiting (same clock); 0 = not known */
	jq_longpoll *longpoll; /* NULL: Claims never wait */
	jq_flow *flow;         /* the queues' flow settings, for the long-poll's hints; may be NULL */
	uint32_t client_max_reply; /* RpcRequest.max_reply_bytes: 0, or the largest reply the client takes */
	jq_code code;
	char message[512];
	jq_reply_fn send; /* NULL: no reply can be sent from here (a request that may only park) */
	void *send_arg;
	bool sent;        /* the reply went out (the request is gone) */
	/* Set by a Claim that waits (the long-poll said so): the dispatcher hands the request to
	 * jq_longpoll_wait with `claim` instead of answering. */
	bool waits;
	jq_longpoll_claim claim;
	jq_role role; /* the caller's (jq_auth): a Complete or Fail that claims must be let Claim too */
	/* A Complete or Fail that claims and waits: its results, to answer with when the wait ends
	 * (the response packed, malloc'd; the dispatcher gives it to the request as its note, or
	 * frees it). resumed: that note when the request runs again after the wait (the completion
	 * is done: only the claim runs), else NULL. */
	uint8_t *note;
	size_t note_len;
	const uint8_t *resumed;
	size_t resumed_len;
	/* Waits for jobs to finish: NULL = a Wait answers at once. A Wait that is to wait sets
	 * waits_jobs, and the dispatcher hands the request to jq_jobwait_park with what follows. */
	jq_jobwait *jobwait;
	jq_enqgroup *enqgroup; /* NULL: every Enqueue is a statement of its own */
	bool waits_jobs;
	uint64_t wait_generation;
	int64_t wait_until_us;
	size_t wait_n;
	const int64_t *wait_ids; /* the request's ids: valid until the dispatcher frees the request */
};

typedef void (*jq_handler_fn)(jq_call *call, const ProtobufCMessage *request);

/* jq_call_reply answers OK with resp through call->send. */
void jq_call_reply(jq_call *call, const ProtobufCMessage *resp);

/* jq_call_error sets a non-OK code and a message. */
void jq_call_error(jq_call *call, jq_code code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

void jq_handle_enqueue(jq_call *call, const ProtobufCMessage *request);
void jq_handle_claim(jq_call *call, const ProtobufCMessage *request);
/* jq_claim_waits_at_once: true when Claim r is valid and the long-poll says it waits without a
 * query (jq_longpoll_claim_known_empty): call is then set to wait, as jq_handle_claim would set
 * it, without a database. false: nothing is set or reserved; run jq_handle_claim. */
bool jq_claim_waits_at_once(jq_call *call, const Jobq__V1__ClaimRequest *r);

void jq_handle_heartbeat(jq_call *call, const ProtobufCMessage *request);
void jq_handle_complete(jq_call *call, const ProtobufCMessage *request);
void jq_handle_fail(jq_call *call, const ProtobufCMessage *request);
void jq_handle_get(jq_call *call, const ProtobufCMessage *request);
void jq_handle_list(jq_call *call, const ProtobufCMessage *request);
void jq_handle_retry(jq_call *call, const ProtobufCMessage *request);
void jq_handle_cancel(jq_call *call, const ProtobufCMessage *request);
void jq_handle_stats(jq_call *call, const ProtobufCMessage *request);
void jq_handle_pause(jq_call *call, const ProtobufCMessage *request);
void jq_handle_resume(jq_call *call, const ProtobufCMessage *request);
void jq_handle_configure_queue(jq_call *call, const ProtobufCMessage *request);
void jq_handle_wait(jq_call *call, const ProtobufCMessage *request);
void jq_handle_add_schedule(jq_call *call, const ProtobufCMessage *request);
void jq_handle_list_schedules(jq_call *call, const ProtobufCMessage *request);
void jq_handle_remove_schedule(jq_call *call, const ProtobufCMessage *request);

#endif
