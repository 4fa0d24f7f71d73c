/*
 * jq_wire — the RpcRequest envelope read straight from its protobuf wire bytes, without decoding
 * it: where the method, the credential and the request id are. jobqd judges a request's
 * credential from this view before it spends a copy of the payload (jobq_rpc_request__unpack
 * copies every bytes field) or a place in the work queue on it.
 *
 * The view agrees with the decoder: when jobq__v1__rpc_request__unpack accepts the bytes, the
 * scan does too and finds the same fields (the last occurrence of a field wins, as in the
 * decoder). tests/fuzz/fuzz_rpc.c checks that on every input.
 */
#ifndef JQ_WIRE_H
#define JQ_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Pointers into the scanned bytes (not NUL-terminated; NULL and 0 when absent). */
typedef struct jq_wire_envelope {
	const uint8_t *method, *token, *request_id;
	size_t method_len, token_len, request_id_len;
} jq_wire_envelope;

/* jq_wire_scan_envelope walks the top-level fields of n bytes at p. False: they are not a
 * well-formed protobuf message (*out is then unspecified). */
bool jq_wire_scan_envelope(const uint8_t *p, size_t n, jq_wire_envelope *out)
	__attribute__((warn_unused_result));

#endif
