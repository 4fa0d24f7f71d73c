#include "jq_publisher.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>

#include "jobq/v1/jobq.pb-c.h"
#include "jq_clock.h"
#include "jq_log.h"

#define TOPIC_PREFIX "pending."
#define STOP_TOPIC_PREFIX "cancel."

struct jq_publisher {
	nng_socket sock;
	nng_listener listener;
	jq_tls_slot tls; /* its TLS configurations (jq_tls_reload) */
	_Atomic int64_t sent;
};

int jq_publisher_start(const char *url, jq_publisher **out)
{
	return jq_publisher_start_tls(url, NULL, out);
}

/* listen_on creates the listener, sets TLS when the url asks for it, then starts it. */
static int listen_on(jq_publisher *p, const char *url, const jq_tls_files *tls)
{
	int rv;
	if ((rv = nng_listener_create(&p->listener, p->sock, url)) != 0 ||
	    (rv = jq_tls_setup_listener(p->listener, url, tls, "publisher", &p->tls)) != 0 ||
	    (rv = nng_listener_start(p->listener, 0)) != 0)
		jq_error("publisher: cannot listen on %s: %s", url, nng_strerror(rv));
	return rv;
}

int jq_publisher_start_tls(const char *url, const jq_tls_files *tls, jq_publisher **out)
{
	jq_publisher *p = calloc(1, sizeof(*p));
	int rv;
	if (p == NULL)
		return -1;
	if ((rv = nng_pub0_open(&p->sock)) != 0) {
		jq_error("publisher: cannot open PUB socket: %s", nng_strerror(rv));
		free(p);
		return -1;
	}
	/* A deep per-subscriber queue: PUB drops what does not fit, and a burst of single-job
	 * enqueues (one announcement each) must not overflow nng's default of 16 messages while a
	 * subscriber's connection thread is briefly descheduled. */
	if ((rv = nng_socket_set_int(p->sock, NNG_OPT_SENDBUF, 8192)) != 0)
		jq_warn("publisher: cannot set the send buffer: %s", nng_strerror(rv));
	if (listen_on(p, url, tls) != 0) {
		nng_close(p->sock);
		jq_tls_slot_release(&p->tls);
		free(p);
		return -1;
	}
	*out = p;
	return 0;
}

void jq_publisher_stop(jq_publisher *p)
{
	if (p == NULL)
		return;
	nng_close(p->sock);
	jq_tls_slot_release(&p->tls);
	free(p);
}

int jq_publisher_reload_tls(jq_publisher *p, const jq_tls_files *tls)
{
	return jq_tls_reload(p->listener, tls, "publisher", &p->tls) == 0 ? 0 : -1;
}

/* topic_msg: prefix and queue (the topic), NUL, packed msg, in one nng message (caller owns it). */
static nng_msg *topic_msg(const char *prefix, const char *queue, const ProtobufCMessage *msg)
{
	size_t prelen = strlen(prefix), qlen = strlen(queue), tlen = prelen + qlen + 1;
	size_t plen = protobuf_c_message_get_packed_size(msg);
	nng_msg *m;
	if (nng_msg_alloc(&m, tlen + plen) != 0)
		return NULL;
	uint8_t *b = nng_msg_body(m);
	memcpy(b, prefix, prelen);
	memcpy(b + prelen, queue, qlen);
	b[tlen - 1] = '\0';
	protobuf_c_message_pack(msg, b + tlen);
	return m;
}

/* build_msg: "pending.<queue>", NUL, packed JobsAvailable (caller owns it). */
static nng_msg *build_msg(const char *queue, const int64_t *ids, size_t n)
{
	Jobq__V1__JobsAvailable ja = JOBQ__V1__JOBS_AVAILABLE__INIT;
	ja.queue = (char *)queue;
	ja.n_ids = n;
	ja.ids = (int64_t *)ids; /* protobuf-c only reads it while packing */
	ja.published_at_us = jq_clock_unix_us();
	return topic_msg(TOPIC_PREFIX, queue, &ja.base);
}

/* build_stop_msg: "cancel.<queue>", NUL, packed JobsStopped of one lease (caller owns it). */
static nng_msg *build_stop_msg(const char *queue, int64_t id, int64_t token, const char *reason)
{
	Jobq__V1__JobsStopped js = JOBQ__V1__JOBS_STOPPED__INIT;
	Jobq__V1__JobLease lease = JOBQ__V1__JOB_LEASE__INIT, *leases[1] = { &lease };
	lease.id = id;
	lease.lease_token = token;
	js.queue = (char *)queue;
	js.n_jobs = 1;
	js.jobs = leases;
	js.reason = (char *)reason;
	js.published_at_us = jq_clock_unix_us();
	return topic_msg(STOP_TOPIC_PREFIX, queue, &js.base);
}

/* send_msg hands m to nng without blocking; on failure m is freed here. */
static int send_msg(jq_publisher *p, nng_msg *m, const char *queue)
{
	int rv;
	if (m == NULL) {
		jq_warn("publisher: out of memory for queue %s", queue);
		return -1;
	}
	/* PUB never applies back-pressure; NONBLOCK is belt and braces so the listener thread can
	 * never stall here. On success nng owns the message; on failure we still do. */
	if ((rv = nng_sendmsg(p->sock, m, NNG_FLAG_NONBLOCK)) != 0) {
		nng_msg_free(m);
		jq_warn("publisher: send for queue %s failed: %s", queue, nng_strerror(rv));
		return -1;
	}
	atomic_fetch_add(&p->sent, 1);
	return 0;
}

int jq_publisher_send(jq_publisher *p, const char *queue, const int64_t *ids, size_t n)
{
	return send_msg(p, build_msg(queue, ids, n), queue);
}

int jq_publisher_send_stop(jq_publisher *p, const char *queue, int64_t id, int64_t lease_token,
			   const char *reason)
{
	return send_msg(p, build_stop_msg(queue, id, lease_token, reason), queue);
}

int64_t jq_publisher_sent(const jq_publisher *p)
{
	return atomic_load(&((jq_publisher *)p)->sent);
}
