/*
 * jq_rpc_server — the nng REP side of jobqd's RPC.
 *
 * Many nng contexts receive at once (the nng_ctx + nng_aio pattern), so a slow request never
 * holds up other clients. A request keeps the context it came on until it is answered, and
 * another context takes its place at once: the number receiving stays the same however many
 * requests wait (queued, running, or parked by a long-poll), so waiting requests never stop the
 * server from receiving new ones. What bounds the waiting is their owners' limits (max_queued,
 * the workers, the long-poll's cap) and the bytes they hold (max_inflight_bytes: past it, no
 * context receives until some are answered, and nng stops reading from the connections).
 *
 * A received message is size-checked by nng (NNG_OPT_RECVMAXSZ), its credential and method
 * are read straight from the wire and judged by the authorize hook before anything is decoded
 * (a refused request costs no copy and no queue place), then it is decoded as a
 * jobq.v1.RpcRequest envelope and put on a bounded queue served by a fixed set of worker
 * threads; each worker owns one opaque `worker_arg` (jobqd gives each a database connection).
 * A full queue answers RESOURCE_EXHAUSTED at once; a request whose deadline passed while it
 * waited answers DEADLINE_EXCEEDED without running; undecodable bytes answer INVALID_ARGUMENT.
 * This module knows the envelope but nothing of methods or SQL: that is the handler's business.
 *
 * Ownership: the server owns every jq_rpc_req. A handler must call jq_rpc_req_finish exactly once
 * per request, from any thread, now or later (a long-poll keeps the request and finishes it when
 * a job arrives); after that call the request is gone.
 */
#ifndef JQ_RPC_SERVER_H
#define JQ_RPC_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "jobq/v1/jobq.pb-c.h"
#include "jq_code.h"
#include "jq_tls.h"

typedef struct jq_rpc_server jq_rpc_server;
typedef struct jq_rpc_req jq_rpc_req;

/* The handler runs on a worker thread with that worker's argument. It must call
 * jq_rpc_req_finish(req, ...) exactly once, before returning or later from any thread. */
typedef void (*jq_rpc_handler_fn)(void *worker_arg, jq_rpc_req *req);

/* An optional first look at each decoded request, on nng's receiving thread, before it is
 * queued for a worker: true means it took the request (and owes it a jq_rpc_req_finish or a
 * requeue, as a handler does); false sends it on to the workers. It must not block: it runs
 * where nng completes I/O. It saves a request that needs no database the hand-off to a worker. */
typedef bool (*jq_rpc_quick_fn)(void *quick_arg, jq_rpc_req *req);

/* The authorize hook judges a request's credential for its method before the envelope is
 * decoded, on nng's receiving thread (it must not block). method and token are the envelope's
 * (NUL-terminated, "" when absent; a token longer than JQ_RPC_TOKEN_MAX arrives cut to one byte
 * more than that, so it matches no credential); tls_verified tells whether the connection
 * presented a client certificate the server verified. It returns JQ_OK and sets *principal
 * (any int the handler may read back with jq_rpc_req_principal), or a code (UNAUTHENTICATED,
 * PERMISSION_DENIED) and a reason in why, which is answered at once. */
#define JQ_RPC_TOKEN_MAX 256
typedef jq_code (*jq_rpc_authorize_fn)(void *auth_arg, const char *method, const char *token,
					bool tls_verified, int *principal, char *why, size_t why_len);

typedef struct jq_rpc_server_opts {
	const char *url;          /* e.g. "tcp://127.0.0.1:7100", "ipc:///tmp/x" */
	int contexts;             /* nng contexts receiving at once (more are opened for requests held) */
	int max_queued;           /* requests waiting for a worker before RESOURCE_EXHAUSTED */
	size_t max_message_bytes; /* envelope limit, 0 = none: a little over it is answered
				   * RESOURCE_EXHAUSTED; far over it nng drops the connection
				   * unread and the client gets no reply */
	int default_deadline_ms;  /* when the envelope gives none */
	int nworkers;             /* worker threads; worker_args has nworkers entries */
	void **worker_args;
	jq_rpc_handler_fn handler;
	jq_rpc_quick_fn quick;    /* NULL = none */
	void *quick_arg;
	const jq_tls_files *tls;  /* for a tls+tcp:// url; NULL = none */
	int max_connections;      /* client connections at once; more are closed on arrival; 0 = no limit */
	size_t max_inflight_bytes; /* bytes of received requests held at once (queued, running);
				    * past it no context receives until some are answered; 0 = none */
	jq_rpc_authorize_fn authorize; /* NULL = every request is let in, principal 0 */
	void *auth_arg;
} jq_rpc_server_opts;

/* jq_rpc_server_start listens on opts->url and starts the workers. Returns 0 and *out, or -1
 * (logged: contexts, max_queued, nworkers or default_deadline_ms < 1, no url or handler, or what
 * nng refused). The server copies what it needs from opts. */
int jq_rpc_server_start(const jq_rpc_server_opts *opts, jq_rpc_server **out)
	__attribute__((warn_unused_result));

/* jq_rpc_server_reload_tls rotates the listener's certificate (see jq_tls_reload); a no-op
 * without TLS. Returns 0, or -1 (logged; the old certificate stays). Call it from one thread at a
 * time. */
int jq_rpc_server_reload_tls(jq_rpc_server *srv, const jq_tls_files *tls) __attribute__((warn_unused_result));

/* jq_rpc_server_stop stops receiving, lets every queued and in-flight request finish (their
 * replies are sent), joins the workers and closes the socket. Frees the server. NULL is a no-op.
 * It waits for every request the server has received, so a request a handler kept (deferred)
 * must be finished or requeued by its owner, or stop never returns: stop the long-poll owner
 * concurrently (or first, if it finishes its requests when stopped). Workers keep serving the
 * queue until then. Messages still waiting inside nng when receiving stops get no reply (their
 * REQ clients resend elsewhere or time out). Once every reply is out it waits at most 2 s for nng
 * to close the socket (nng 1.5.2 can hang there); past that it logs a warning and leaves the
 * socket and its memory to the process's exit. Call from a thread that holds no request. */
void jq_rpc_server_stop(jq_rpc_server *srv);

/* jq_rpc_req_envelope returns the decoded envelope (owned by req; valid until finish). */
const Jobq__V1__RpcRequest *jq_rpc_req_envelope(const jq_rpc_req *req);

/* jq_rpc_req_principal returns what the authorize hook set for this request (0 without one). */
int jq_rpc_req_principal(const jq_rpc_req *req);

/* jq_rpc_req_bytes returns the size of the request as received. */
size_t jq_rpc_req_bytes(const jq_rpc_req *req);

/* jq_rpc_req_request_id returns the request id: the client's, or one the server made. */
const char *jq_rpc_req_request_id(const jq_rpc_req *req);

/* jq_rpc_req_deadline_us returns the request's deadline on the CLOCK_MONOTONIC microsecond
 * clock of jq_clock_mono_us. */
int64_t jq_rpc_req_deadline_us(const jq_rpc_req *req);

/* jq_rpc_req_received_us returns when the request arrived (jq_clock_mono_us clock). */
int64_t jq_rpc_req_received_us(const jq_rpc_req *req);

/* jq_rpc_req_finish answers the request: code, message (may be NULL) and, for code 0, the
 * encoded response payload (may be NULL/0; the bytes are copied). The request is gone after. */
void jq_rpc_req_finish(jq_rpc_req *req, jq_code code, const char *message, const uint8_t *payload,
		       size_t payload_len);

/* jq_rpc_req_set_note keeps len bytes at data (malloc'd; the request takes them, and frees them
 * with itself) with the request until it is finished: what a handler that parks a request needs
 * when the request runs again (the results of a Complete that waits to claim). A second note
 * replaces the first. jq_rpc_req_note returns the note and its length, or NULL. */
void jq_rpc_req_set_note(jq_rpc_req *req, uint8_t *data, size_t len);
const uint8_t *jq_rpc_req_note(const jq_rpc_req *req, size_t *len);

/* jq_rpc_req_wait tells the server that req will wait without work for a while (a parked
 * long-poll): its bytes stop counting against max_inflight_bytes until it is requeued, so
 * waiting requests never stop the server from receiving. Their owner bounds them instead. */
void jq_rpc_req_wait(jq_rpc_req *req);

/* jq_rpc_req_finish_message answers the request OK with resp packed straight into the reply
 * message: no other copy of the packed response is made. Returns 0, and the request is gone. When
 * the reply would be larger than the client takes (RpcRequest.max_reply_bytes), or memory runs
 * out, nothing is sent: it returns RESOURCE_EXHAUSTED with the reason in why (why_len bytes),
 * and the request is still the caller's to answer. */
jq_code jq_rpc_req_finish_message(jq_rpc_req *req, const ProtobufCMessage *resp, char *why,
				   size_t why_len) __attribute__((warn_unused_result));

/* jq_rpc_req_requeue puts a request the handler kept back on the work queue, to be handled
 * again by a worker (a long-poll woken by a notification). It bypasses max_queued. Like a new
 * request, it is answered DEADLINE_EXCEEDED instead if its deadline has passed when a worker
 * takes it. */
void jq_rpc_req_requeue(jq_rpc_req *req);

/* jq_rpc_server_connections: client connections open now, and those refused by
 * max_connections since start (metrics). */
void jq_rpc_server_connections(jq_rpc_server *srv, int *open, int64_t *refused);

/* jq_rpc_server_load: workers running a handler now, and requests waiting for one (metrics). */
void jq_rpc_server_load(jq_rpc_server *srv, int *in_use, int *waiting);

/* jq_rpc_server_memory: bytes of requests held now (counted against max_inflight_bytes),
 * contexts receiving now, and contexts open in all (each request held keeps one) (metrics). */
void jq_rpc_server_memory(jq_rpc_server *srv, size_t *held_bytes, int *receiving, int *contexts);


#endif
