/*
 * jq_rpc_call — one jobq RPC over a raw nng REQ socket, for tests: the envelope
 * (jobq.v1.RpcRequest / RpcResponse) is built and read here with the generated protobuf-c code,
 * so a test talks to jobqd exactly as any client on the wire does.
 *
 * Two layers: jq_rpc_invoke / jq_rpc_send_raw never fail the test (usable from threads and for
 * tests of broken connections); jq_rpc_call fails the current cmocka test on a transport error
 * and returns the status code. A socket serves one request at a time (REQ without contexts):
 * give each thread its own.
 */
#ifndef JQ_RPC_CALL_H
#define JQ_RPC_CALL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nng/nng.h>
#include <protobuf-c/protobuf-c.h>

#include "jobq/v1/jobq.pb-c.h"

/* The full method name of a JobQueue method: JQ_METHOD("Claim") = "/jobq.v1.JobQueue/Claim". */
#define JQ_METHOD(name) "/jobq.v1.JobQueue/" name

/* A REQ socket dialed to a service, and what its pipe did (for tests of dropped connections). */
typedef struct jq_rpc_sock {
	nng_socket sock;
	bool open;
	int pipes_added;   /* connections established so far */
	int pipes_removed; /* connections lost so far */
	const char *auth_token; /* sent in every envelope when not NULL (set after jq_rpc_open) */
} jq_rpc_sock;

/* jq_rpc_open dials url (in the background: the dial is retried until the service listens) with
 * a receive timeout; returns 0 or an nng error. *s must stay at the same address while open
 * (the pipe counters are updated through it). */
int jq_rpc_open(jq_rpc_sock *s, const char *url, int recv_timeout_ms);

/* jq_rpc_close closes the socket; a closed or never-opened socket is a no-op. */
void jq_rpc_close(jq_rpc_sock *s);

/* jq_rpc_pipes_removed reads the count of lost connections (thread-safe). */
int jq_rpc_pipes_removed(jq_rpc_sock *s);

/* jq_rpc_send_raw sends bytes as one message and waits for one reply (*reply, caller frees with
 * nng_msg_free). Returns 0 or the nng error (NNG_ETIMEDOUT when nothing came back in time). */
int jq_rpc_send_raw(jq_rpc_sock *s, const void *data, size_t len, nng_msg **reply);

/* jq_rpc_invoke sends {method, packed req} (req may be NULL: empty payload) and decodes the
 * reply envelope into *resp (free with jobq__v1__rpc_response__free_unpacked). Returns 0, an nng
 * error, or NNG_EPROTO when the reply is not an RpcResponse. deadline_ms goes in the envelope. */
int jq_rpc_invoke(jq_rpc_sock *s, const char *method, const ProtobufCMessage *req,
		  uint32_t deadline_ms, Jobq__V1__RpcResponse **resp);

/* jq_rpc_call: jq_rpc_invoke that fails the test on a transport error. Returns the reply's code;
 * its message is copied to msg (msg_len bytes, may be NULL). When the code is 0 and out_desc is
 * not NULL, the reply payload is unpacked into *out (free with protobuf_c_message_free_unpacked);
 * otherwise *out is NULL. */
unsigned jq_rpc_call(jq_rpc_sock *s, const char *method, const ProtobufCMessage *req,
		     const ProtobufCMessageDescriptor *out_desc, ProtobufCMessage **out, char *msg,
		     size_t msg_len);

#endif
