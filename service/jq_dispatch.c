#include "jq_dispatch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jq_auth.h"
#include "jq_clock.h"
#include "jq_handlers.h"
#include "jq_log.h"
#include "jq_metrics.h"

typedef struct route {
	const char *method; /* short name, as in the service descriptor */
	jq_handler_fn fn;
} route;

static const route routes[] = {
	{ "Enqueue", jq_handle_enqueue },
	{ "Claim", jq_handle_claim },
	{ "Heartbeat", jq_handle_heartbeat },
	{ "Complete", jq_handle_complete },
	{ "Fail", jq_handle_fail },
	{ "Get", jq_handle_get },
	{ "List", jq_handle_list },
	{ "Retry", jq_handle_retry },
	{ "Cancel", jq_handle_cancel },
	{ "Stats", jq_handle_stats },
	{ "Pause", jq_handle_pause },
	{ "Resume", jq_handle_resume },
	{ "ConfigureQueue", jq_handle_configure_queue },
	{ "Wait", jq_handle_wait },
	{ "AddSchedule", jq_handle_add_schedule },
	{ "ListSchedules", jq_handle_list_schedules },
	{ "RemoveSchedule", jq_handle_remove_schedule },
};

#define NROUTES (sizeof(routes) / sizeof(routes[0]))

/* find_method matches "/<package>.<Service>/<Method>" against the service descriptor. */
static const ProtobufCMethodDescriptor *find_method(const char *full)
{
	const ProtobufCServiceDescriptor *svc = &jobq__v1__job_queue__descriptor;
	size_t svc_len = strlen(svc->name);
	if (full[0] != '/' || strncmp(full + 1, svc->name, svc_len) != 0 || full[1 + svc_len] != '/')
		return NULL;
	const char *name = full + 2 + svc_len;
	for (unsigned i = 0; i < svc->n_methods; i++) {
		if (strcmp(svc->methods[i].name, name) == 0)
			return &svc->methods[i];
	}
	return NULL;
}

static jq_handler_fn find_handler(const char *short_name)
{
	for (size_t i = 0; i < NROUTES; i++) {
		if (strcmp(routes[i].method, short_name) == 0)
			return routes[i].fn;
	}
	return NULL;
}

int jq_dispatch_method_count(void)
{
	const ProtobufCServiceDescriptor *svc = &jobq__v1__job_queue__descriptor;
	int n = 0;
	for (unsigned i = 0; i < svc->n_methods; i++)
		n += find_handler(svc->methods[i].name) != NULL;
	return n;
}

static jq_log_level level_for(jq_code code)
{
	switch (code) {
	case JQ_OK:
		return JQ_LOG_DEBUG;
	case JQ_INVALID_ARGUMENT:
	case JQ_NOT_FOUND:
	case JQ_FAILED_PRECONDITION:
	case JQ_UNAUTHENTICATED:
	case JQ_PERMISSION_DENIED:
	case JQ_UNIMPLEMENTED:
	case JQ_DEADLINE_EXCEEDED:
		return JQ_LOG_INFO;
	default:
		return JQ_LOG_WARN;
	}
}

bool jq_dispatch_quick(void *worker_arg, jq_rpc_req *req)
{
	jq_worker *w = worker_arg;
	const Jobq__V1__RpcRequest *env = jq_rpc_req_envelope(req);
	if (w->longpoll == NULL || env->method == NULL)
		return false;
	const ProtobufCMethodDescriptor *m = find_method(env->method);
	if (m == NULL || find_handler(m->name) != jq_handle_claim)
		return false;
	/* The credential was judged on receipt (jq_auth_authorize); this is the decoded method. */
	if (!jq_role_allows((jq_role)jq_rpc_req_principal(req), env->method))
		return false;
	Jobq__V1__ClaimRequest *r = jobq__v1__claim_request__unpack(NULL, env->payload.len, env->payload.data);
	if (r == NULL)
		return false;
	jq_call call = { .cfg = w->cfg, .request_id = jq_rpc_req_request_id(req),
			 .received_us = jq_rpc_req_received_us(req), .longpoll = w->longpoll,
			 .flow = w->flow, .client_max_reply = env->max_reply_bytes };
	bool waits = jq_claim_waits_at_once(&call, r);
	jobq__v1__claim_request__free_unpacked(r, NULL);
	if (waits)
		jq_longpoll_wait(&call.claim, req);
	return waits;
}

/* log_answer counts and logs an answer; request_id must outlive the call (not the request's). */
static void log_answer(const jq_call *call, const char *request_id, const char *method, jq_code code)
{
	int64_t us = jq_clock_mono_us() - call->received_us;
	jq_metrics_request(method, code, us);
	if (jq_log_enabled(level_for(code)))
		jq_log_request(level_for(code), request_id, method, code, jq_code_name(code),
			       (double)us / 1000.0, "%s", code ? call->message : "ok");
}

typedef struct reply_to {
	jq_rpc_req *req;
	const char *method;
} reply_to;

/* send_reply is jq_call_reply's way out (a jq_reply_fn): the response is packed straight into
 * the reply message while the handler still holds what it points into. A reply the client would
 * not take is answered by jq_dispatch_handle instead, with the code set here. */
static void send_reply(jq_call *call, const ProtobufCMessage *resp)
{
	reply_to *to = call->send_arg;
	/* The request, its id and its envelope (the method's name) are gone once the reply is sent.
	 * The method is one of the service's, whose names are short. */
	char id[160], method[128];
	snprintf(id, sizeof(id), "%s", call->request_id);
	snprintf(method, sizeof(method), "%s", to->method);
	call->code = jq_rpc_req_finish_message(to->req, resp, call->message, sizeof(call->message));
	if (call->code != JQ_OK)
		return;
	call->sent = true;
	call->request_id = NULL;
	log_answer(call, id, method, JQ_OK);
}

void jq_dispatch_handle(void *worker_arg, jq_rpc_req *req)
{
	jq_worker *w = worker_arg;
	const Jobq__V1__RpcRequest *env = jq_rpc_req_envelope(req);
	const char *method = env->method ? env->method : "";
	reply_to to = { .req = req, .method = method };
	jq_call call = { .db = w->db, .cfg = w->cfg, .request_id = jq_rpc_req_request_id(req),
			 .received_us = jq_rpc_req_received_us(req), .deadline_us = jq_rpc_req_deadline_us(req),
			 .longpoll = w->longpoll, .flow = w->flow, .client_max_reply = env->max_reply_bytes,
			 .send = send_reply, .send_arg = &to, .role = (jq_role)jq_rpc_req_principal(req),
			 .jobwait = w->jobwait, .enqgroup = w->enqgroup };
	ProtobufCMessage *in = NULL;

	/* No wait for the database outlasts the request (a silent connection included). */
	jq_db_set_deadline(w->db, jq_rpc_req_deadline_us(req));

	/* The credential was judged on receipt, from the envelope's raw bytes, before anything was
	 * decoded (jq_auth_authorize). Judged again here on the decoded method, so that no way of
	 * spelling the envelope can make the two readings differ. */
	if (!jq_role_allows((jq_role)jq_rpc_req_principal(req), method)) {
		jq_call_error(&call, JQ_PERMISSION_DENIED, "role %s may not call %.128s",
			      jq_role_name((jq_role)jq_rpc_req_principal(req)), method);
		goto reply;
	}
	const ProtobufCMethodDescriptor *m = find_method(method);
	jq_handler_fn fn = m ? find_handler(m->name) : NULL;
	if (fn == NULL) {
		jq_call_error(&call, JQ_UNIMPLEMENTED, "unknown method '%.128s'", method);
		goto reply;
	}
	in = protobuf_c_message_unpack(m->input, NULL, env->payload.len, env->payload.data);
	if (in == NULL) {
		jq_call_error(&call, JQ_INVALID_ARGUMENT, "payload is not a valid %s", m->input->name);
		goto reply;
	}
	call.resumed = jq_rpc_req_note(req, &call.resumed_len);
	fn(&call, in);
	/* A Wait that waits: jq_jobwait owns it from here (jq_jobwait.h); its ids are copied there
	 * before the decoded request goes. */
	if (!call.sent && call.waits_jobs) {
		jq_jobwait_park(call.jobwait, req, call.wait_ids, call.wait_n, call.wait_generation,
				call.wait_until_us);
		protobuf_c_message_free_unpacked(in, NULL);
		goto out;
	}
	protobuf_c_message_free_unpacked(in, NULL);
	if (call.sent)
		goto out;
	/* A Claim that waits: the long-poll owns it from here (jq_longpoll.h). */
	if (call.waits) {
		if (call.note != NULL)
			jq_rpc_req_set_note(req, call.note, call.note_len);
		call.note = NULL;
		jq_longpoll_wait(&call.claim, req);
		return;
	}
reply:
	/* Logged before finishing: the request (and its id) is gone after jq_rpc_req_finish. Here
	 * code is not OK (an OK reply went out through send_reply), or, should a handler end with
	 * neither reply nor error, OK with no payload. */
	log_answer(&call, call.request_id, method, call.code);
	jq_rpc_req_finish(req, call.code, call.code ? call.message : NULL, NULL, 0);
out:
	free(call.note);
}
