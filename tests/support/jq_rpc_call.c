#include "jq_rpc_call.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <nng/protocol/reqrep0/req.h>

static void on_pipe(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	jq_rpc_sock *s = arg;
	(void)p;
	if (ev == NNG_PIPE_EV_ADD_POST)
		__atomic_add_fetch(&s->pipes_added, 1, __ATOMIC_SEQ_CST);
	else if (ev == NNG_PIPE_EV_REM_POST)
		__atomic_add_fetch(&s->pipes_removed, 1, __ATOMIC_SEQ_CST);
}

int jq_rpc_open(jq_rpc_sock *s, const char *url, int recv_timeout_ms)
{
	int rv;
	memset(s, 0, sizeof(*s));
	if ((rv = nng_req0_open(&s->sock)) != 0)
		return rv;
	s->open = true;
	/* A request is never resent behind the test's back: a resend after a dropped connection
	 * would turn "no reply" into a second execution. */
	if ((rv = nng_socket_set_ms(s->sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE)) != 0 ||
	    (rv = nng_socket_set_ms(s->sock, NNG_OPT_RECVTIMEO, recv_timeout_ms)) != 0 ||
	    (rv = nng_socket_set_ms(s->sock, NNG_OPT_SENDTIMEO, recv_timeout_ms)) != 0 ||
	    /* Replies are not bound by the service's request limit (a Claim of many jobs). */
	    (rv = nng_socket_set_size(s->sock, NNG_OPT_RECVMAXSZ, 0)) != 0 ||
	    (rv = nng_socket_set_ms(s->sock, NNG_OPT_RECONNMINT, 20)) != 0 ||
	    (rv = nng_socket_set_ms(s->sock, NNG_OPT_RECONNMAXT, 100)) != 0 ||
	    (rv = nng_pipe_notify(s->sock, NNG_PIPE_EV_ADD_POST, on_pipe, s)) != 0 ||
	    (rv = nng_pipe_notify(s->sock, NNG_PIPE_EV_REM_POST, on_pipe, s)) != 0 ||
	    (rv = nng_dial(s->sock, url, NULL, NNG_FLAG_NONBLOCK)) != 0) {
		jq_rpc_close(s);
		return rv;
	}
	return 0;
}

void jq_rpc_close(jq_rpc_sock *s)
{
	if (!s->open)
		return;
	nng_close(s->sock);
	s->open = false;
}

int jq_rpc_pipes_removed(jq_rpc_sock *s)
{
	return __atomic_load_n(&s->pipes_removed, __ATOMIC_SEQ_CST);
}

int jq_rpc_send_raw(jq_rpc_sock *s, const void *data, size_t len, nng_msg **reply)
{
	nng_msg *m;
	int rv;
	*reply = NULL;
	if ((rv = nng_msg_alloc(&m, 0)) != 0)
		return rv;
	if (len > 0 && (rv = nng_msg_append(m, data, len)) != 0) {
		nng_msg_free(m);
		return rv;
	}
	if ((rv = nng_sendmsg(s->sock, m, 0)) != 0) {
		nng_msg_free(m);
		return rv;
	}
	return nng_recvmsg(s->sock, reply, 0);
}

int jq_rpc_invoke(jq_rpc_sock *s, const char *method, const ProtobufCMessage *req,
		  uint32_t deadline_ms, Jobq__V1__RpcResponse **resp)
{
	Jobq__V1__RpcRequest env = JOBQ__V1__RPC_REQUEST__INIT;
	uint8_t *payload = NULL, *buf = NULL;
	nng_msg *reply = NULL;
	int rv = NNG_ENOMEM;

	*resp = NULL;
	env.method = (char *)method;
	env.deadline_ms = deadline_ms;
	if (s->auth_token != NULL)
		env.auth_token = (char *)s->auth_token;
	if (req != NULL) {
		size_t n = protobuf_c_message_get_packed_size(req);
		if ((payload = malloc(n ? n : 1)) == NULL)
			goto out;
		env.payload.len = protobuf_c_message_pack(req, payload);
		env.payload.data = payload;
	}
	size_t n = jobq__v1__rpc_request__get_packed_size(&env);
	if ((buf = malloc(n ? n : 1)) == NULL)
		goto out;
	n = jobq__v1__rpc_request__pack(&env, buf);
	if ((rv = jq_rpc_send_raw(s, buf, n, &reply)) != 0)
		goto out;
	*resp = jobq__v1__rpc_response__unpack(NULL, nng_msg_len(reply), nng_msg_body(reply));
	rv = *resp != NULL ? 0 : NNG_EPROTO;
out:
	if (reply != NULL)
		nng_msg_free(reply);
	free(payload);
	free(buf);
	return rv;
}

unsigned jq_rpc_call(jq_rpc_sock *s, const char *method, const ProtobufCMessage *req,
		     const ProtobufCMessageDescriptor *out_desc, ProtobufCMessage **out, char *msg,
		     size_t msg_len)
{
	Jobq__V1__RpcResponse *resp;
	if (out != NULL)
		*out = NULL;
	int rv = jq_rpc_invoke(s, method, req, 0, &resp);
	if (rv != 0)
		fail_msg("%s: no reply: %s", method, nng_strerror(rv));
	unsigned code = resp->code;
	if (msg != NULL)
		snprintf(msg, msg_len, "%s", resp->message ? resp->message : "");
	if (code == 0 && out_desc != NULL && out != NULL) {
		*out = protobuf_c_message_unpack(out_desc, NULL, resp->payload.len, resp->payload.data);
		if (*out == NULL) {
			jobq__v1__rpc_response__free_unpacked(resp, NULL);
			fail_msg("%s: the reply payload is not a valid %s", method, out_desc->name);
		}
	}
	jobq__v1__rpc_response__free_unpacked(resp, NULL);
	return code;
}
