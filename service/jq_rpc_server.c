/*
 * jq_rpc_server — see jq_rpc_server.h for the contract.
 *
 * Shape: each slot is one nng REP context with two aios, one that only ever receives and one
 * that only ever sends. A slot's life is RECV -> (decode, queue or answer at once) -> SEND ->
 * free list. When a slot receives, another slot (from the free list, or a new one) starts
 * receiving in its place, so `receivers` contexts receive at all times whatever the requests
 * held do (a long-poll parks Claims for minutes). The aio callbacks never block: they decode,
 * take the server mutex briefly and start the next nng operation. Workers pop the FIFO and run
 * the handler; whoever holds a request (worker, handler, or the thread it was deferred to) owns
 * the slot until jq_rpc_req_finish starts the send.
 *
 * Memory: each request held counts its received bytes (held_bytes). When a receipt takes them
 * past max_inflight_bytes, the receives still armed are cancelled (nng keeps their messages in
 * the pipes) and none is armed again until answers free bytes; nng's REP pipes then keep at
 * most one message each and stop reading their connections. Parked requests do not count
 * (jq_rpc_req_wait): their owner bounds them.
 *
 * Why two aios per context: stop must cancel the receives that wait for traffic, but a single
 * aio may already have moved on to sending a reply by the time the cancel lands, and the cancel
 * would then drop that reply. nng_aio_stop on a receive-only aio can never hit a send, it waits
 * for a running callback, and it makes every later receive on that aio fail at once (nng 1.5
 * keeps the stopped flag), so a re-arm racing with stop is harmless.
 *
 * Slots are never freed before the server is: `all` is an append-only list of them, linked only
 * while not stopping, so stop's walk over it meets every slot that can ever receive.
 *
 * Locking: srv->rpc_mu guards the queue, the slot lists, the counters and the stopping/quit flags.
 * No nng call is made with it held (nng may run a completion inline on the calling thread).
 */
#include "jq_rpc_server.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/supplemental/tls/tls.h>

#include "jq_clock.h"
#include "jq_log.h"
#include "jq_metrics.h"
#include "jq_mutex.h"
#include "jq_wire.h"

#define JQ_RPC_ID_MAX 128
#define JQ_RPC_METHOD_MAX 128
#define JQ_RPC_DEADLINE_CAP_MS (3600 * 1000)
/* NNG_OPT_RECVMAXSZ counts the SP header too (a 4-byte request id plus 4 bytes per device
 * hop, at most 15 hops), so nng gets this much slack and the envelope's own limit is checked
 * exactly after receipt. */
#define JQ_RPC_SP_HEADER_MAX 64
/* How long stop waits for nng to close the socket (see socket_close). */
#define JQ_RPC_CLOSE_WAIT_MS 2000
/* A client that stops reading must not hold a context (and so stop) forever. */
#define JQ_RPC_SEND_TIMEOUT_MS 10000

typedef struct jq_rpc_slot jq_rpc_slot;

struct jq_rpc_slot {
	jq_rpc_server *srv;
	nng_ctx ctx;
	nng_aio *recv_aio;
	nng_aio *send_aio;
	/* While a reply is sent: 2 = the send callback and the thread inside nng_ctx_send; the
	 * slot is released when both are done (see jq_rpc_req_finish). */
	atomic_int send_holds;
	bool receiving; /* a receive is armed (guarded by srv->rpc_mu) */
	jq_rpc_slot *next_free;
	jq_rpc_slot *next_all;
};

typedef struct jq_rpc_worker {
	jq_rpc_server *srv;
	void *arg;
	pthread_t thread;
} jq_rpc_worker;

struct jq_rpc_req {
	jq_rpc_slot *slot;
	Jobq__V1__RpcRequest *env; /* NULL only while answering an undecodable message */
	jq_rpc_req *next;          /* queue link */
	bool counted;              /* on the queue and counted against max_queued */
	bool charged;              /* bytes counted in held_bytes */
	size_t bytes;              /* as received */
	int principal;             /* from the authorize hook */
	int64_t received_us;
	int64_t deadline_us;
	uint8_t *note; /* jq_rpc_req_set_note */
	size_t note_len;
	char id[JQ_RPC_ID_MAX + 1];
};

struct jq_rpc_server {
	nng_socket sock;
	bool sock_open;
	nng_listener listener;
	jq_tls_slot tls; /* its TLS configurations (jq_tls_reload) */
	size_t max_message_bytes;
	size_t max_inflight_bytes;
	int max_queued;
	int default_deadline_ms;
	jq_rpc_handler_fn handler;
	jq_rpc_quick_fn quick;
	void *quick_arg;
	jq_rpc_authorize_fn authorize;
	void *auth_arg;

	jq_rpc_worker *workers;
	int nworkers;       /* threads actually started */

	jq_mutex rpc_mu;
	pthread_cond_t work_cv; /* queue not empty, or quit */
	pthread_cond_t idle_cv; /* inflight reached 0 while stopping */
	jq_rpc_req *head;
	jq_rpc_req *tail;
	int queued;   /* counted requests on the queue */
	int inflight; /* received and not yet through the send callback */
	int receivers; /* slots that should be receiving at all times */
	int armed;     /* slots receiving now (or about to) */
	int nslots;    /* slots in all */
	size_t held_bytes;
	jq_rpc_slot *free_slots;
	jq_rpc_slot *all;
	jq_rpc_slot **all_tail;
	atomic_int busy; /* workers inside the handler (metrics: pool in use) */
	int max_connections;         /* 0 = no limit */
	atomic_int connections;      /* pipes past ADD_PRE and not yet removed */
	_Atomic int64_t conns_refused;
	bool stopping;
	bool quit;

	_Atomic uint64_t next_id;
};

/* ---- requests ---- */

const Jobq__V1__RpcRequest *jq_rpc_req_envelope(const jq_rpc_req *req)
{
	return req->env;
}

const char *jq_rpc_req_request_id(const jq_rpc_req *req)
{
	return req->id;
}

int jq_rpc_req_principal(const jq_rpc_req *req)
{
	return req->principal;
}

size_t jq_rpc_req_bytes(const jq_rpc_req *req)
{
	return req->bytes;
}

int64_t jq_rpc_req_deadline_us(const jq_rpc_req *req)
{
	return req->deadline_us;
}

int64_t jq_rpc_req_received_us(const jq_rpc_req *req)
{
	return req->received_us;
}

/* The client's id goes into every log line and back on the wire, so only short printable ids
 * are trusted; anything else is replaced rather than escaped. */
static bool request_id_ok(const char *s, size_t len)
{
	if (len == 0 || len > JQ_RPC_ID_MAX)
		return false;
	for (size_t n = 0; n < len; n++) {
		unsigned char c = (unsigned char)s[n];
		if (c < 0x20 || c > 0x7e)
			return false;
	}
	return true;
}

/* req_new returns a request with a generated id and no envelope, or NULL. */
static jq_rpc_req *req_new(jq_rpc_slot *slot)
{
	jq_rpc_req *req = calloc(1, sizeof(*req));
	if (req == NULL)
		return NULL;
	req->slot = slot;
	req->received_us = jq_clock_mono_us();
	req->deadline_us = req->received_us;
	snprintf(req->id, sizeof(req->id), "r-%" PRIx64,
		 atomic_fetch_add(&slot->srv->next_id, 1) + 1);
	return req;
}

/* req_adopt_envelope gives req its envelope (owned from now on) and deadline. */
static void req_adopt_envelope(jq_rpc_req *req, Jobq__V1__RpcRequest *env)
{
	int64_t ms = env->deadline_ms;
	req->env = env;
	if (ms == 0)
		ms = req->slot->srv->default_deadline_ms;
	if (ms > JQ_RPC_DEADLINE_CAP_MS)
		ms = JQ_RPC_DEADLINE_CAP_MS;
	req->deadline_us = req->received_us + ms * 1000;
}

static void req_free(jq_rpc_req *req)
{
	if (req->env != NULL)
		jobq__v1__rpc_request__free_unpacked(req->env, NULL);
	free(req->note);
	free(req);
}

void jq_rpc_req_set_note(jq_rpc_req *req, uint8_t *data, size_t len)
{
	free(req->note);
	req->note = data;
	req->note_len = len;
}

const uint8_t *jq_rpc_req_note(const jq_rpc_req *req, size_t *len)
{
	*len = req->note_len;
	return req->note;
}

/* ---- the envelope, read straight from the wire (jq_wire) ---- */

/* wire_copy copies at most cap-1 bytes of a field into a NUL-terminated buffer. */
static void wire_copy(char *dst, size_t cap, const uint8_t *src, size_t len)
{
	if (len > cap - 1)
		len = cap - 1;
	if (len > 0)
		memcpy(dst, src, len);
	dst[len] = '\0';
}

/* ---- the queue (callers hold srv->rpc_mu) ---- */

static void queue_push_locked(jq_rpc_server *srv, jq_rpc_req *req, bool counted)
{
	JQ_ASSERT_HELD(&srv->rpc_mu);
	req->next = NULL;
	req->counted = counted;
	if (counted)
		srv->queued++;
	if (srv->tail != NULL)
		srv->tail->next = req;
	else
		srv->head = req;
	srv->tail = req;
	pthread_cond_signal(&srv->work_cv);
}

/* queue_pop waits for a request; NULL once the server tells the workers to quit. */
static jq_rpc_req *queue_pop(jq_rpc_server *srv)
{
	jq_rpc_req *req;
	jq_mutex_lock(&srv->rpc_mu);
	while (srv->head == NULL && !srv->quit)
		jq_mutex_wait(&srv->rpc_mu, &srv->work_cv);
	req = srv->head;
	if (req != NULL) {
		srv->head = req->next;
		if (srv->head == NULL)
			srv->tail = NULL;
		if (req->counted)
			srv->queued--;
		req->counted = false;
		req->next = NULL;
	}
	jq_mutex_unlock(&srv->rpc_mu);
	return req;
}

/* ---- slots: the nng side ---- */

static void recv_cb(void *arg);
static void send_cb(void *arg);

/* slot_new opens a slot and links it into `all`, or returns NULL (out of resources, or the
 * server is stopping: a slot linked after stop walked `all` would receive unseen). */
static jq_rpc_slot *slot_new(jq_rpc_server *srv, bool receiving)
{
	jq_rpc_slot *slot = calloc(1, sizeof(*slot));
	int rv;

	if (slot == NULL)
		return NULL;
	slot->srv = srv;
	if ((rv = nng_ctx_open(&slot->ctx, srv->sock)) != 0 ||
	    (rv = nng_aio_alloc(&slot->recv_aio, recv_cb, slot)) != 0 ||
	    (rv = nng_aio_alloc(&slot->send_aio, send_cb, slot)) != 0) {
		jq_error("rpc: cannot open a context: %s", nng_strerror(rv));
		goto fail;
	}
	nng_aio_set_timeout(slot->send_aio, JQ_RPC_SEND_TIMEOUT_MS);
	jq_mutex_lock(&srv->rpc_mu);
	if (srv->stopping) {
		jq_mutex_unlock(&srv->rpc_mu);
		goto fail;
	}
	*srv->all_tail = slot;
	srv->all_tail = &slot->next_all;
	srv->nslots++;
	slot->receiving = receiving;
	jq_mutex_unlock(&srv->rpc_mu);
	return slot;
fail:
	/* Its context closes with the socket. */
	if (slot->send_aio != NULL)
		nng_aio_free(slot->send_aio);
	if (slot->recv_aio != NULL)
		nng_aio_free(slot->recv_aio);
	free(slot);
	return NULL;
}

static bool over_budget_locked(const jq_rpc_server *srv)
{
	JQ_ASSERT_HELD(&srv->rpc_mu);
	return srv->max_inflight_bytes > 0 && srv->held_bytes >= srv->max_inflight_bytes;
}

/* arm_receives brings the slots receiving back up to `receivers`, unless stopping or over the
 * byte budget. Called whenever a slot stopped receiving or bytes were given back. */
static void arm_receives(jq_rpc_server *srv)
{
	for (;;) {
		jq_rpc_slot *slot;
		jq_mutex_lock(&srv->rpc_mu);
		if (srv->stopping || srv->armed >= srv->receivers || over_budget_locked(srv)) {
			jq_mutex_unlock(&srv->rpc_mu);
			return;
		}
		srv->armed++;
		slot = srv->free_slots;
		if (slot != NULL) {
			srv->free_slots = slot->next_free;
			slot->receiving = true;
		}
		jq_mutex_unlock(&srv->rpc_mu);
		if (slot == NULL && (slot = slot_new(srv, true)) == NULL) {
			/* Out of resources: receiving goes on with fewer contexts; the next
			 * receipt or answer tries again. */
			jq_mutex_lock(&srv->rpc_mu);
			srv->armed--;
			jq_mutex_unlock(&srv->rpc_mu);
			return;
		}
		nng_ctx_recv(slot->ctx, slot->recv_aio);
	}
}

/* pause_receives cancels the receives armed, once a receipt took the held bytes past the
 * budget: each would otherwise still take a message of up to max_message_bytes. A message
 * already on its way to a cancelled receive is delivered as usual; one not yet taken stays in
 * its pipe. The cancelled slots come back through recv_failed. `all` only grows at its tail and
 * no slot is freed before the server, so the walk needs the lock only to read the links. */
static void pause_receives(jq_rpc_server *srv)
{
	jq_mutex_lock(&srv->rpc_mu);
	jq_rpc_slot *slot = srv->all;
	jq_mutex_unlock(&srv->rpc_mu);
	while (slot != NULL) {
		jq_mutex_lock(&srv->rpc_mu);
		bool cancel = slot->receiving && !srv->stopping && over_budget_locked(srv);
		jq_rpc_slot *next = slot->next_all;
		jq_mutex_unlock(&srv->rpc_mu);
		if (cancel)
			nng_aio_cancel(slot->recv_aio);
		slot = next;
	}
}

/* charge / uncharge count a request's bytes against the budget; giving bytes back may let
 * receiving resume. */
static void charge_locked(jq_rpc_server *srv, jq_rpc_req *req)
{
	JQ_ASSERT_HELD(&srv->rpc_mu);
	if (!req->charged) {
		req->charged = true;
		srv->held_bytes += req->bytes;
	}
}

static void charge(jq_rpc_req *req)
{
	jq_rpc_server *srv = req->slot->srv;
	jq_mutex_lock(&srv->rpc_mu);
	charge_locked(srv, req);
	jq_mutex_unlock(&srv->rpc_mu);
}

static void uncharge(jq_rpc_server *srv, jq_rpc_req *req)
{
	bool was;
	jq_mutex_lock(&srv->rpc_mu);
	was = req->charged;
	if (was) {
		req->charged = false;
		srv->held_bytes -= req->bytes;
	}
	jq_mutex_unlock(&srv->rpc_mu);
	if (was)
		arm_receives(srv);
}

/* slot_release runs when a slot's reply has gone out (or could not): the slot goes back to the
 * free list. The in-flight count drops last, so stop cannot free the slot under a thread that is
 * still using it. */
static void slot_release(jq_rpc_slot *slot)
{
	jq_rpc_server *srv = slot->srv;

	jq_mutex_lock(&srv->rpc_mu);
	slot->next_free = srv->free_slots;
	srv->free_slots = slot;
	srv->inflight--;
	if (srv->inflight == 0 && srv->stopping)
		pthread_cond_broadcast(&srv->idle_cv);
	jq_mutex_unlock(&srv->rpc_mu);
}

/* slot_unhold drops one hold on a sending slot; the last one releases the slot. */
static void slot_unhold(jq_rpc_slot *slot)
{
	if (atomic_fetch_sub(&slot->send_holds, 1) == 1)
		slot_release(slot);
}

/* response_msg encodes a reply straight into a new nng message; NULL when out of memory. */
static nng_msg *response_msg(jq_code code, const char *message, const uint8_t *payload,
			     size_t payload_len, const char *request_id)
{
	Jobq__V1__RpcResponse resp = JOBQ__V1__RPC_RESPONSE__INIT;
	nng_msg *msg;
	size_t len;

	resp.code = code;
	resp.message = (char *)(message != NULL ? message : "");
	resp.request_id = (char *)request_id;
	/* The envelope carries a payload only with OK (proto: "when code == 0"). */
	if (code == JQ_OK && payload != NULL && payload_len > 0) {
		resp.payload.data = (uint8_t *)payload;
		resp.payload.len = payload_len;
	}
	len = jobq__v1__rpc_response__get_packed_size(&resp);
	if (nng_msg_alloc(&msg, len) != 0)
		return NULL;
	jobq__v1__rpc_response__pack(&resp, nng_msg_body(msg));
	return msg;
}

/* answer replies to a request the handler never saw. The handler logs its own requests, so
 * only these answers are logged here. method is the envelope's, when known. */
static void answer_as(jq_rpc_req *req, const char *method, jq_code code, const char *message)
{
	jq_log_level level = code == JQ_RESOURCE_EXHAUSTED ? JQ_LOG_WARN : JQ_LOG_INFO;
	int64_t us = jq_clock_mono_us() - req->received_us;
	jq_metrics_request(method, code, us);
	if (jq_log_enabled(level))
		jq_log_request(level, req->id, method != NULL ? method : "", code, jq_code_name(code),
			       (double)us / 1000.0, "%s", message);
	jq_rpc_req_finish(req, code, message, NULL, 0);
}

static void answer(jq_rpc_req *req, jq_code code, const char *message)
{
	answer_as(req, req->env != NULL ? req->env->method : NULL, code, message);
}

/* send_message answers req with msg (owned from here) and frees req. NULL msg: out of memory
 * encoding the reply; the client's REQ socket times out or resends, and the context goes on
 * serving. */
static void send_message(jq_rpc_req *req, nng_msg *msg)
{
	jq_rpc_slot *slot = req->slot;

	uncharge(slot->srv, req);
	req_free(req);
	if (msg == NULL) {
		jq_error("rpc: out of memory encoding a reply; dropped");
		slot_release(slot);
		return;
	}
	/* The send callback may run (on an nng thread) before nng_ctx_send returns here. Were it
	 * to release the slot alone, stop could close the socket while this thread is still inside
	 * nng_ctx_send, and nng 1.5.2 then frees the context under it (nni_ctx_rele wakes the
	 * closer before it finishes the context). So the slot waits for both. */
	atomic_store(&slot->send_holds, 2);
	nng_aio_set_msg(slot->send_aio, msg);
	nng_ctx_send(slot->ctx, slot->send_aio);
	slot_unhold(slot);
}

void jq_rpc_req_finish(jq_rpc_req *req, jq_code code, const char *message, const uint8_t *payload,
		       size_t payload_len)
{
	if (req == NULL)
		return;
	send_message(req, response_msg(code, message, payload, payload_len, req->id));
}

void jq_rpc_req_wait(jq_rpc_req *req)
{
	uncharge(req->slot->srv, req);
}

/* RpcResponse's fields as jq_rpc_req_finish_message writes them: payload = 3 and request_id = 4,
 * both length-delimited (wire type 2). Code 0 and an empty message are not written in proto3. */
#define ENVELOPE_PAYLOAD_TAG ((3u << 3) | 2u)
#define ENVELOPE_REQUEST_ID_TAG ((4u << 3) | 2u)

static size_t varint_len(uint64_t v)
{
	size_t n = 1;
	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

static uint8_t *put_varint(uint8_t *p, uint64_t v)
{
	while (v >= 0x80) {
		*p++ = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	*p++ = (uint8_t)v;
	return p;
}

jq_code jq_rpc_req_finish_message(jq_rpc_req *req, const ProtobufCMessage *resp, char *why,
				   size_t why_len)
{
	size_t inner = protobuf_c_message_get_packed_size(resp);
	size_t id_len = strlen(req->id);
	/* An empty payload is left out, as protobuf-c would (proto3). */
	size_t head = inner > 0 ? 1 + varint_len(inner) : 0;
	size_t total = head + inner + 1 + varint_len(id_len) + id_len;
	uint32_t client_max = req->env != NULL ? req->env->max_reply_bytes : 0;
	nng_msg *msg;

	if (client_max > 0 && total > client_max) {
		snprintf(why, why_len, "the reply is %zu bytes, more than the %" PRIu32 " this client "
			 "takes (its max_reply_bytes)", total, client_max);
		return JQ_RESOURCE_EXHAUSTED;
	}
	if (nng_msg_alloc(&msg, total) != 0) {
		snprintf(why, why_len, "out of memory for a reply of %zu bytes", total);
		return JQ_RESOURCE_EXHAUSTED;
	}
	uint8_t *p = nng_msg_body(msg);
	if (inner > 0) {
		*p++ = ENVELOPE_PAYLOAD_TAG;
		p = put_varint(p, inner);
		p += protobuf_c_message_pack(resp, p);
	}
	*p++ = ENVELOPE_REQUEST_ID_TAG;
	p = put_varint(p, id_len);
	memcpy(p, req->id, id_len);
	send_message(req, msg);
	return JQ_OK;
}

void jq_rpc_req_requeue(jq_rpc_req *req)
{
	jq_rpc_server *srv = req->slot->srv;
	charge(req);
	jq_mutex_lock(&srv->rpc_mu);
	queue_push_locked(srv, req, false);
	jq_mutex_unlock(&srv->rpc_mu);
}

static void send_cb(void *arg)
{
	jq_rpc_slot *slot = arg;
	int rv = nng_aio_result(slot->send_aio);

	if (rv != 0) {
		/* A failed send leaves the message with us. */
		nng_msg *msg = nng_aio_get_msg(slot->send_aio);
		nng_aio_set_msg(slot->send_aio, NULL);
		if (msg != NULL)
			nng_msg_free(msg);
		jq_warn("rpc: reply not sent: %s", nng_strerror(rv));
	}
	slot_unhold(slot);
}

/* recv_failed: a receive ended without a message. Stop's cancellations (and a closed socket)
 * leave the slot quiet; any other failure, or pause_receives' cancellation, puts the slot back on
 * the free list and lets arm_receives decide whether another receives in its place. */
static void recv_failed(jq_rpc_slot *slot, int rv)
{
	jq_rpc_server *srv = slot->srv;

	jq_mutex_lock(&srv->rpc_mu);
	slot->receiving = false;
	if (srv->stopping || rv == NNG_ECLOSED) {
		jq_mutex_unlock(&srv->rpc_mu);
		return;
	}
	srv->armed--;
	slot->next_free = srv->free_slots;
	srv->free_slots = slot;
	jq_mutex_unlock(&srv->rpc_mu);
	if (rv != NNG_ECANCELED)
		jq_warn("rpc: receive failed: %s", nng_strerror(rv));
	/* Safe without the in-flight count: stop's nng_aio_stop waits for this callback. */
	arm_receives(srv);
}

/* tls_verified tells whether msg came on a connection whose client certificate was verified. */
static bool tls_verified(nng_msg *msg)
{
	bool verified = false;
	nng_pipe p = nng_msg_get_pipe(msg);
	if (nng_pipe_id(p) < 0 || nng_pipe_get_bool(p, NNG_OPT_TLS_VERIFIED, &verified) != 0)
		return false;
	return verified;
}

/* admit judges the request's credential from the raw bytes: true lets it on to decoding; false
 * means it was answered (and msg freed). */
static bool admit(jq_rpc_req *req, nng_msg *msg)
{
	jq_rpc_server *srv = req->slot->srv;
	char method[JQ_RPC_METHOD_MAX + 1], token[JQ_RPC_TOKEN_MAX + 2], why[160];
	jq_wire_envelope v;

	if (!jq_wire_scan_envelope(nng_msg_body(msg), nng_msg_len(msg), &v)) {
		nng_msg_free(msg);
		answer(req, JQ_INVALID_ARGUMENT, "malformed RpcRequest envelope");
		return false;
	}
	if (request_id_ok((const char *)v.request_id, v.request_id_len))
		wire_copy(req->id, sizeof(req->id), v.request_id, v.request_id_len);
	if (srv->authorize == NULL)
		return true;
	wire_copy(method, sizeof(method), v.method, v.method_len);
	wire_copy(token, sizeof(token), v.token, v.token_len);
	why[0] = '\0';
	jq_code code = srv->authorize(srv->auth_arg, method, token, tls_verified(msg),
				       &req->principal, why, sizeof(why));
	explicit_bzero(token, sizeof(token));
	if (code == JQ_OK)
		return true;
	nng_msg_free(msg);
	answer_as(req, method, code, why[0] != '\0' ? why : jq_code_name(code));
	return false;
}

/* route_received decides a received message's fate: an answer now, or the work queue. It owns req
 * and msg. */
static void route_received(jq_rpc_req *req, nng_msg *msg)
{
	jq_rpc_server *srv = req->slot->srv;
	Jobq__V1__RpcRequest *env;
	char why[96];

	if (srv->max_message_bytes > 0 && nng_msg_len(msg) > srv->max_message_bytes) {
		nng_msg_free(msg);
		snprintf(why, sizeof(why), "message larger than %zu bytes", srv->max_message_bytes);
		answer(req, JQ_RESOURCE_EXHAUSTED, why);
		return;
	}
	if (!admit(req, msg))
		return;
	env = jobq__v1__rpc_request__unpack(NULL, nng_msg_len(msg), nng_msg_body(msg));
	nng_msg_free(msg);
	if (env == NULL) {
		answer(req, JQ_INVALID_ARGUMENT, "malformed RpcRequest envelope");
		return;
	}
	req_adopt_envelope(req, env);
	if (srv->quick != NULL && jq_clock_mono_us() < req->deadline_us && srv->quick(srv->quick_arg, req))
		return;

	jq_mutex_lock(&srv->rpc_mu);
	if (srv->queued >= srv->max_queued) {
		jq_mutex_unlock(&srv->rpc_mu);
		answer(req, JQ_RESOURCE_EXHAUSTED, "server busy: request queue is full");
		return;
	}
	queue_push_locked(srv, req, true);
	jq_mutex_unlock(&srv->rpc_mu);
}

static void recv_cb(void *arg)
{
	jq_rpc_slot *slot = arg;
	jq_rpc_server *srv = slot->srv;
	int rv = nng_aio_result(slot->recv_aio);
	jq_rpc_req *req;
	nng_msg *msg;

	if (rv != 0) {
		recv_failed(slot, rv);
		return;
	}
	msg = nng_aio_get_msg(slot->recv_aio);
	nng_aio_set_msg(slot->recv_aio, NULL);
	req = req_new(slot);
	/* Counted before anything can answer it, so stop waits for its reply; charged before
	 * another slot is armed, so the budget sees it. */
	jq_mutex_lock(&srv->rpc_mu);
	slot->receiving = false;
	srv->armed--;
	srv->inflight++;
	bool was_over = over_budget_locked(srv);
	if (req != NULL) {
		req->bytes = nng_msg_len(msg);
		charge_locked(srv, req);
	}
	bool pause = !was_over && over_budget_locked(srv);
	jq_mutex_unlock(&srv->rpc_mu);
	if (pause)
		pause_receives(srv);
	arm_receives(srv);
	if (req == NULL) {
		nng_msg_free(msg);
		jq_error("rpc: out of memory for a request; dropped");
		slot_release(slot);
		return;
	}
	route_received(req, msg);
}

/* ---- workers ---- */

static void *worker_main(void *p)
{
	jq_rpc_worker *w = p;
	jq_rpc_server *srv = w->srv;
	jq_rpc_req *req;

	while ((req = queue_pop(srv)) != NULL) {
		/* Also for a requeued request: its caller has given up by now either way. */
		if (jq_clock_mono_us() >= req->deadline_us) {
			answer(req, JQ_DEADLINE_EXCEEDED, "deadline exceeded before the request could start");
			continue;
		}
		/* req may be gone once the handler returns: do not touch it again. */
		atomic_fetch_add(&srv->busy, 1);
		srv->handler(w->arg, req);
		atomic_fetch_sub(&srv->busy, 1);
	}
	return NULL;
}

/* workers_start starts n workers. They inherit the caller's signal mask (jobqd blocks its stop
 * signals before starting anything). */
static int workers_start(jq_rpc_server *srv, int n, void **args)
{
	int rc = 0;

	srv->workers = calloc((size_t)n, sizeof(*srv->workers));
	if (srv->workers == NULL)
		return NNG_ENOMEM;
	for (int i = 0; i < n; i++) {
		jq_rpc_worker *w = &srv->workers[i];
		w->srv = srv;
		w->arg = args != NULL ? args[i] : NULL;
		rc = pthread_create(&w->thread, NULL, worker_main, w);
		if (rc != 0) {
			jq_error("rpc: cannot start worker thread: %s", strerror(rc));
			return NNG_ENOMEM;
		}
		srv->nworkers++;
	}
	return 0;
}

static void workers_join(jq_rpc_server *srv)
{
	jq_mutex_lock(&srv->rpc_mu);
	srv->quit = true;
	pthread_cond_broadcast(&srv->work_cv);
	jq_mutex_unlock(&srv->rpc_mu);
	for (int i = 0; i < srv->nworkers; i++)
		pthread_join(srv->workers[i].thread, NULL);
	srv->nworkers = 0;
}

/* ---- start / stop ---- */

/* slots_open opens the first `n` slots onto the free list, so a start that cannot open them
 * fails at once rather than receiving with fewer. */
static int slots_open(jq_rpc_server *srv, int n)
{
	for (int i = 0; i < n; i++) {
		jq_rpc_slot *slot = slot_new(srv, false);
		if (slot == NULL)
			return NNG_ENOMEM;
		slot->next_free = srv->free_slots;
		srv->free_slots = slot;
	}
	return 0;
}

/* listener_open listens on url. Create and start are separate so transport options (TLS)
 * can be set on the listener in between. */
static int listener_open(jq_rpc_server *srv, const char *url, const jq_tls_files *tls)
{
	int rv, port;

	if ((rv = nng_listener_create(&srv->listener, srv->sock, url)) != 0) {
		jq_error("rpc: bad listen address %s: %s", url, nng_strerror(rv));
		return rv;
	}
	if ((rv = jq_tls_setup_listener(srv->listener, url, tls, "rpc", &srv->tls)) != 0)
		return rv;
	if ((rv = nng_listener_start(srv->listener, 0)) != 0) {
		jq_error("rpc: cannot listen on %s: %s", url, nng_strerror(rv));
		return rv;
	}
	if (nng_listener_get_int(srv->listener, NNG_OPT_TCP_BOUND_PORT, &port) == 0)
		jq_info("rpc: listening on %s (port %d)", url, port);
	else
		jq_info("rpc: listening on %s", url);
	return 0;
}

int jq_rpc_server_reload_tls(jq_rpc_server *srv, const jq_tls_files *tls)
{
	return jq_tls_reload(srv->listener, tls, "rpc", &srv->tls) == 0 ? 0 : -1;
}

/* A socket close that waits on nng's own threads: closer_main runs nng_close, and whichever of
 * it and socket_close finishes last frees the closer. */
typedef struct closer {
	jq_mutex closer_mu;
	pthread_cond_t done_cv;
	nng_socket sock;
	bool done;
	bool abandoned;
} closer;

static void closer_free(closer *c)
{
	pthread_cond_destroy(&c->done_cv);
	jq_mutex_destroy(&c->closer_mu);
	free(c);
}

static void *closer_main(void *arg)
{
	closer *c = arg;
	nng_close(c->sock);
	jq_mutex_lock(&c->closer_mu);
	c->done = true;
	bool abandoned = c->abandoned;
	pthread_cond_signal(&c->done_cv);
	jq_mutex_unlock(&c->closer_mu);
	if (abandoned)
		closer_free(c);
	return NULL;
}

/* socket_close closes the socket and tells whether nng finished within JQ_RPC_CLOSE_WAIT_MS.
 * nng 1.5.2 can wait forever in nng_close: when a message's bytes arrive on a TCP connection while
 * it closes, the transport re-arms its read on the closed aio, which never completes, and the
 * connection's teardown (on nng's reaper thread) waits for that read. Every request has been
 * answered by then, so stop goes on without it. */
static bool socket_close(jq_rpc_server *srv)
{
	closer *c = calloc(1, sizeof(*c));
	pthread_t th;

	if (c == NULL || jq_clock_cond_init(&c->done_cv) != 0) {
		free(c);
		nng_close(srv->sock);
		return true;
	}
	jq_mutex_init(&c->closer_mu);
	c->sock = srv->sock;
	if (pthread_create(&th, NULL, closer_main, c) != 0) {
		closer_free(c);
		nng_close(srv->sock);
		return true;
	}
	pthread_detach(th);
	struct timespec until = jq_clock_timespec_us(jq_clock_mono_us() + JQ_RPC_CLOSE_WAIT_MS * 1000);
	jq_mutex_lock(&c->closer_mu);
	while (!c->done && jq_mutex_timedwait(&c->closer_mu, &c->done_cv, &until) == 0)
		;
	bool done = c->done;
	c->abandoned = !done;
	jq_mutex_unlock(&c->closer_mu);
	if (done)
		closer_free(c);
	return done;
}

/* server_free joins the workers, closes the socket and frees everything. Nothing may be in
 * flight. Closing the socket first ends any operation still pending on an aio, and
 * nng_aio_free waits for a running callback; a send callback may still arm a receive, so the
 * send aios go before the receive aios. A close that does not finish leaves the slots, their
 * aios and the server allocated: nng's threads may still reach them. */
static void server_free(jq_rpc_server *srv)
{
	jq_rpc_slot *slot, *next;

	workers_join(srv);
	if (srv->sock_open && !socket_close(srv)) {
		jq_warn("rpc: the socket did not close within %d ms (an nng 1.5.2 defect); left open",
			JQ_RPC_CLOSE_WAIT_MS);
		return;
	}
	for (slot = srv->all; slot != NULL; slot = slot->next_all)
		nng_aio_free(slot->send_aio);
	for (slot = srv->all; slot != NULL; slot = next) {
		next = slot->next_all;
		nng_aio_free(slot->recv_aio);
		free(slot);
	}
	free(srv->workers);
	jq_tls_slot_release(&srv->tls);
	pthread_cond_destroy(&srv->idle_cv);
	pthread_cond_destroy(&srv->work_cv);
	jq_mutex_destroy(&srv->rpc_mu);
	free(srv);
}

static bool opts_ok(const jq_rpc_server_opts *o)
{
	return o != NULL && o->url != NULL && o->contexts > 0 && o->max_queued > 0 &&
	       o->default_deadline_ms > 0 && o->nworkers > 0 && o->handler != NULL;
}

/* on_pipe bounds the number of client connections. nng offers no such option, but a pipe closed
 * in its ADD_PRE callback is refused before the protocol sees it, and nng runs REM_POST for
 * every pipe that saw ADD_PRE (refused ones too), so the count stays balanced. */
static void on_pipe(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	jq_rpc_server *srv = arg;
	if (ev == NNG_PIPE_EV_REM_POST) {
		atomic_fetch_sub(&srv->connections, 1);
		return;
	}
	int n = atomic_fetch_add(&srv->connections, 1) + 1;
	if (srv->max_connections <= 0 || n <= srv->max_connections)
		return;
	nng_pipe_close(p);
	/* One line per 100 refusals: a client storm must not become a log storm. */
	if (atomic_fetch_add(&srv->conns_refused, 1) % 100 == 0)
		jq_warn("rpc: connection refused: %d open, --max-connections is %d", n - 1,
			srv->max_connections);
}

/* socket_open opens the REP socket with the size limit (plus header slack, see above). */
static int socket_open(jq_rpc_server *srv)
{
	size_t max = srv->max_message_bytes;
	int rv;

	if ((rv = nng_rep0_open(&srv->sock)) != 0) {
		jq_error("rpc: cannot open REP socket: %s", nng_strerror(rv));
		return rv;
	}
	srv->sock_open = true;
	if (max > 0 && max <= SIZE_MAX - JQ_RPC_SP_HEADER_MAX)
		max += JQ_RPC_SP_HEADER_MAX;
	if ((rv = nng_socket_set_size(srv->sock, NNG_OPT_RECVMAXSZ, max)) != 0) {
		jq_error("rpc: cannot set the message size limit: %s", nng_strerror(rv));
		return rv;
	}
	if ((rv = nng_pipe_notify(srv->sock, NNG_PIPE_EV_ADD_PRE, on_pipe, srv)) != 0 ||
	    (rv = nng_pipe_notify(srv->sock, NNG_PIPE_EV_REM_POST, on_pipe, srv)) != 0) {
		jq_error("rpc: cannot watch connections: %s", nng_strerror(rv));
		return rv;
	}
	return 0;
}

int jq_rpc_server_start(const jq_rpc_server_opts *opts, jq_rpc_server **out)
{
	jq_rpc_server *srv;

	if (out == NULL)
		return -1;
	*out = NULL;
	if (!opts_ok(opts)) {
		jq_error("rpc: invalid server options");
		return -1;
	}
	if ((srv = calloc(1, sizeof(*srv))) == NULL) {
		jq_error("rpc: out of memory starting the server");
		return -1;
	}
	jq_mutex_init(&srv->rpc_mu);
	pthread_cond_init(&srv->work_cv, NULL);
	pthread_cond_init(&srv->idle_cv, NULL);
	srv->all_tail = &srv->all;
	srv->max_message_bytes = opts->max_message_bytes;
	srv->max_inflight_bytes = opts->max_inflight_bytes;
	srv->max_queued = opts->max_queued;
	srv->max_connections = opts->max_connections;
	srv->default_deadline_ms = opts->default_deadline_ms;
	srv->handler = opts->handler;
	srv->quick = opts->quick;
	srv->quick_arg = opts->quick_arg;
	srv->authorize = opts->authorize;
	srv->auth_arg = opts->auth_arg;
	srv->receivers = opts->contexts;

	/* Each step logs its own failure. */
	if (socket_open(srv) != 0 || slots_open(srv, opts->contexts) != 0 ||
	    workers_start(srv, opts->nworkers, opts->worker_args) != 0 ||
	    listener_open(srv, opts->url, opts->tls) != 0)
		goto fail;
	arm_receives(srv);
	*out = srv;
	return 0;
fail:
	srv->stopping = true;
	server_free(srv);
	return -1;
}

/*
 * Order matters:
 * 1. stopping = true (under the mutex): no slot is armed or linked from now on.
 * 2. nng_aio_stop on the receive aio of every slot in `all`: a waiting receive is cancelled, a
 *    running callback is waited for (it counts its request in inflight before returning), and
 *    an arm that lost the race with step 1 fails at once. No reply is touched: sends use the
 *    other aio.
 * 3. Wait until inflight is 0: every queued, running and deferred request has been finished
 *    and its send callback has run. A deferred request must be finished by its owner, or stop
 *    waits forever; workers keep running meanwhile, so requeued requests are served.
 * 4. Join the workers, close the socket, free.
 */
void jq_rpc_server_stop(jq_rpc_server *srv)
{
	jq_rpc_slot *slot;

	if (srv == NULL)
		return;
	jq_mutex_lock(&srv->rpc_mu);
	srv->stopping = true;
	slot = srv->all;
	jq_mutex_unlock(&srv->rpc_mu);

	while (slot != NULL) {
		nng_aio_stop(slot->recv_aio);
		jq_mutex_lock(&srv->rpc_mu);
		slot = slot->next_all;
		jq_mutex_unlock(&srv->rpc_mu);
	}

	jq_mutex_lock(&srv->rpc_mu);
	if (srv->inflight > 0)
		jq_info("rpc: stopping; waiting for %d request%s to finish", srv->inflight,
			srv->inflight == 1 ? "" : "s");
	while (srv->inflight > 0)
		jq_mutex_wait(&srv->rpc_mu, &srv->idle_cv);
	jq_mutex_unlock(&srv->rpc_mu);

	server_free(srv);
	jq_info("rpc: stopped");
}

void jq_rpc_server_connections(jq_rpc_server *srv, int *open, int64_t *refused)
{
	*open = atomic_load(&srv->connections);
	*refused = atomic_load(&srv->conns_refused);
}

void jq_rpc_server_load(jq_rpc_server *srv, int *in_use, int *waiting)
{
	*in_use = atomic_load(&srv->busy);
	jq_mutex_lock(&srv->rpc_mu);
	*waiting = srv->queued;
	jq_mutex_unlock(&srv->rpc_mu);
}

void jq_rpc_server_memory(jq_rpc_server *srv, size_t *held_bytes, int *receiving, int *contexts)
{
	jq_mutex_lock(&srv->rpc_mu);
	*held_bytes = srv->held_bytes;
	*receiving = srv->armed;
	*contexts = srv->nslots;
	jq_mutex_unlock(&srv->rpc_mu);
}
