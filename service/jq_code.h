/*
 * jq_code — the status codes jobqd answers with, and their names.
 *
 * The codes are gRPC's, defined once for jobqd and libjobq alike by enum jobq.v1.Code in the proto
 * (protobuf-c generates the numbers and the names); this header gives them short C names. A code
 * reaches a client as RpcResponse.code or ItemResult.code, and its name appears in logs and
 * metrics labels.
 *
 * jq_code is the error value of every function whose failure can reach a client (see "Conventions"
 * in docs/design.md): JQ_OK is 0, so `if (c != JQ_OK)` and `if (c)` read alike.
 */
#ifndef JQ_CODE_H
#define JQ_CODE_H

#include "jobq/v1/jobq.pb-c.h"

typedef enum jq_code {
	JQ_OK = JOBQ__V1__CODE__OK,
	JQ_CANCELLED = JOBQ__V1__CODE__CANCELLED,
	JQ_UNKNOWN = JOBQ__V1__CODE__UNKNOWN,
	JQ_INVALID_ARGUMENT = JOBQ__V1__CODE__INVALID_ARGUMENT,
	JQ_DEADLINE_EXCEEDED = JOBQ__V1__CODE__DEADLINE_EXCEEDED,
	JQ_NOT_FOUND = JOBQ__V1__CODE__NOT_FOUND,
	JQ_ALREADY_EXISTS = JOBQ__V1__CODE__ALREADY_EXISTS,
	JQ_PERMISSION_DENIED = JOBQ__V1__CODE__PERMISSION_DENIED,
	JQ_RESOURCE_EXHAUSTED = JOBQ__V1__CODE__RESOURCE_EXHAUSTED,
	JQ_FAILED_PRECONDITION = JOBQ__V1__CODE__FAILED_PRECONDITION,
	JQ_ABORTED = JOBQ__V1__CODE__ABORTED,
	JQ_OUT_OF_RANGE = JOBQ__V1__CODE__OUT_OF_RANGE,
	JQ_UNIMPLEMENTED = JOBQ__V1__CODE__UNIMPLEMENTED,
	JQ_INTERNAL = JOBQ__V1__CODE__INTERNAL,
	JQ_UNAVAILABLE = JOBQ__V1__CODE__UNAVAILABLE,
	JQ_DATA_LOSS = JOBQ__V1__CODE__DATA_LOSS,
	JQ_UNAUTHENTICATED = JOBQ__V1__CODE__UNAUTHENTICATED,
} jq_code;

/* jq_code_name returns "OK", "INVALID_ARGUMENT", ... (a static string), or "UNKNOWN" for a number
 * that is no code. */
const char *jq_code_name(unsigned code);

#endif
