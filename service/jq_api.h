/*
 * jq_api — the console's JSON API under /api/v1 (docs/api.md): each route turns its JSON or
 * query string into the RPC's protobuf request and runs the RPC's own handler (jq_handlers), so
 * validation, codes and messages are the RPC's. The gRPC code becomes an HTTP status
 * (jq_api_http_status) and an error body {"code": "NAME", "message": "..."}.
 *
 *   GET  /api/v1/whoami                 the caller's role                    any credential
 *   GET  /api/v1/queues[?queue=Q]       Stats                                as Stats
 *   POST /api/v1/queues/pause           Pause {"queue": Q}                   as Pause
 *   POST /api/v1/queues/resume          Resume {"queue": Q}                  as Resume
 *   POST /api/v1/queues/configure       ConfigureQueue (its fields by name)  as ConfigureQueue
 *   GET  /api/v1/schedules[?payload=true]  ListSchedules                     as ListSchedules
 *   POST /api/v1/schedules              AddSchedule {name, cron, time_zone, missed, job}  as AddSchedule
 *   POST /api/v1/schedules/remove       RemoveSchedule {"name": N}           as RemoveSchedule
 *   GET  /api/v1/throughput             jobs completed per minute, last hour  as Stats
 *   GET  /api/v1/jobs?queue&state&after_id&limit&payload   List (keyset)     as List
 *   POST /api/v1/jobs                   Enqueue {"jobs": [JobSpec...]}       as Enqueue
 *   GET  /api/v1/jobs/ID                Get: the job and its failures        as Get
 *   POST /api/v1/jobs/ID/retry          Retry one                            as Retry
 *   POST /api/v1/jobs/ID/cancel         Cancel one                           as Cancel
 *   POST /api/v1/retry                  Retry {"ids": [...]} | {"queue": Q, "all_failed": true}
 *   POST /api/v1/cancel                 Cancel {"ids": [...]}
 *
 * A request is judged as an RPC call of the method it runs, by its `Authorization: Bearer
 * TOKEN` (jq_auth_authorize): 401 UNAUTHENTICATED, 403 PERMISSION_DENIED.
 *
 * jq_api_serve runs on the caller's thread and uses ctx->db for the time of the call: call it
 * from a thread that may wait for the database (not nng's), one call per jq_db at a time.
 */
#ifndef JQ_API_H
#define JQ_API_H

#include <stddef.h>
#include <stdint.h>

#include "jq_auth.h"
#include "jq_code.h"
#include "jq_config.h"
#include "jq_db.h"

typedef struct jq_api_ctx {
	jq_db *db;
	const jq_config *cfg;
	jq_auth *auth;
} jq_api_ctx;

typedef struct jq_api_request {
	const char *method;        /* "GET", "POST", ... */
	const char *uri;           /* path and query, as sent ("/api/v1/jobs?queue=a") */
	const char *authorization; /* the Authorization header, or NULL */
	const void *body;
	size_t body_len;
	int64_t deadline_us;       /* jq_clock_mono_us clock; 0 = none */
} jq_api_request;

typedef struct jq_api_reply {
	uint16_t status;
	char *body; /* JSON, owned by the caller once returned (free()); NULL only when out of memory */
	size_t len;
	const char *method; /* the RPC method it ran ("Stats"), or "" */
	jq_code code;
} jq_api_reply;

void jq_api_serve(const jq_api_ctx *ctx, const jq_api_request *req, jq_api_reply *out);

/* jq_api_http_status: the HTTP status of a gRPC code (the usual gRPC-to-HTTP mapping). */
uint16_t jq_api_http_status(jq_code code);

/* jq_api_error_body: {"code": NAME, "message": message} as a new string (*len), or NULL when
 * out of memory. */
char *jq_api_error_body(jq_code code, const char *message, size_t *len);

#endif
