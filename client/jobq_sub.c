/*
 * jobq_sub.c — announcements: an nng SUB socket on the service's PUB address. Each message is
 * "pending.<queue>" + NUL + an encoded jobq.v1.JobsAvailable. Subscribing to the topic *with*
 * its NUL makes the prefix match exact ("pending.mail\0" does not match "pending.mailer\0").
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>

#include "jobq/v1/jobq.pb-c.h"
#include "jobq_internal.h"

#define TOPIC_PREFIX "pending."
#define TOPIC_PREFIX_LEN (sizeof(TOPIC_PREFIX) - 1)

struct jobq_sub {
	nng_socket sock;
	jobqi_link link;
	char *url;
};

static int subscribe_topic(nng_socket s, const char *queue)
{
	char topic[TOPIC_PREFIX_LEN + JOBQ_MAX_QUEUE_LEN + 1];
	if (queue == NULL) /* every queue: the bare prefix, without a NUL */
		return nng_socket_set(s, NNG_OPT_SUB_SUBSCRIBE, TOPIC_PREFIX, TOPIC_PREFIX_LEN);
	size_t qlen = strlen(queue);
	memcpy(topic, TOPIC_PREFIX, TOPIC_PREFIX_LEN);
	memcpy(topic + TOPIC_PREFIX_LEN, queue, qlen + 1); /* with its NUL */
	return nng_socket_set(s, NNG_OPT_SUB_SUBSCRIBE, topic, TOPIC_PREFIX_LEN + qlen + 1);
}

int jobq_subscribe(const jobq_options *opts, const char *queue, jobq_sub **out, jobq_error *err)
{
	jobq_options none = { 0 };
	if (out == NULL)
		return jobqi_set_err(err, JOBQ_INVALID_ARGUMENT, "jobq_subscribe: out is NULL");
	*out = NULL;
	if (queue != NULL && (queue[0] == '\0' || strlen(queue) > JOBQ_MAX_QUEUE_LEN))
		return jobqi_set_err(err, JOBQ_INVALID_ARGUMENT,
				     "jobq_subscribe: a queue name has 1..%d characters",
				     JOBQ_MAX_QUEUE_LEN);
	if (opts == NULL)
		opts = &none;
	const char *url = jobqi_opt_str(opts->pub_url, "JOBQ_PUB_URL", JOBQ_DEFAULT_PUB_URL);
	jobq_sub *s = calloc(1, sizeof(*s));
	if (s == NULL || (s->url = strdup(url)) == NULL) {
		free(s);
		return jobqi_set_err(err, JOBQ_RESOURCE_EXHAUSTED, "out of memory");
	}
	int rv = nng_sub0_open(&s->sock);
	if (rv != 0) {
		free(s->url);
		free(s);
		return jobqi_set_err(err, jobqi_nng_code(rv), "cannot open a SUB socket: %s",
				     nng_strerror(rv));
	}
	jobq_error tls_err = { 0 };
	/* Non-blocking dial: the service may start later; nng reconnects by itself. */
	/* A deep receive buffer: PUB drops what a subscriber has no room for, and a worker busy for a
	 * moment should not lose announcements to nng's default of 128 messages. */
	if ((rv = subscribe_topic(s->sock, queue)) != 0 ||
	    (rv = nng_socket_set_int(s->sock, NNG_OPT_RECVBUF, 8192)) != 0 ||
	    (rv = nng_socket_set_ms(s->sock, NNG_OPT_RECONNMINT, 50)) != 0 ||
	    (rv = nng_socket_set_ms(s->sock, NNG_OPT_RECONNMAXT, 1000)) != 0 ||
	    (rv = jobqi_link_init(&s->link, s->sock)) != 0 ||
	    (rv = jobqi_dial(s->sock, url, opts, &s->link.dialer, &tls_err)) != 0) {
		int code = tls_err.code != 0
				   ? jobqi_set_err(err, tls_err.code, "%s", tls_err.message)
				   : jobqi_set_err(err, jobqi_nng_code(rv), "cannot subscribe at %s: %s",
						   url, nng_strerror(rv));
		jobq_sub_close(s);
		return code;
	}
	*out = s;
	return JOBQ_OK;
}

int jobq_sub_fd(jobq_sub *s)
{
	int fd;
	if (s == NULL || nng_socket_get_int(s->sock, NNG_OPT_RECVFD, &fd) != 0)
		return -1;
	return fd;
}

void jobq_announcement_free(jobq_announcement *a)
{
	if (a == NULL)
		return;
	free(a->ids);
	a->ids = NULL;
	a->n_ids = 0;
}

void jobq_sub_close(jobq_sub *s)
{
	if (s == NULL)
		return;
	nng_close(s->sock);
	jobqi_link_fini(&s->link);
	free(s->url);
	free(s);
}

int jobq_sub_connected(jobq_sub *s, int timeout_ms, jobq_error *err)
{
	if (s == NULL)
		return jobqi_set_err(err, JOBQ_INVALID_ARGUMENT, "jobq_sub_connected: sub is NULL");
	int rv = jobqi_link_wait(&s->link, timeout_ms);
	if (rv == 0)
		return JOBQ_OK;
	if (rv == NNG_ECONNREFUSED)
		return jobqi_set_err(err, JOBQ_UNAVAILABLE, "cannot connect to %s: connection refused", s->url);
	return jobqi_set_err(err, JOBQ_DEADLINE_EXCEEDED, "no connection to %s", s->url);
}

/* decode fills *out from one message; -1 when it is not "pending.<queue>" NUL JobsAvailable
 * naming that same queue (or the queue does not fit jobq_announcement.queue). */
static int decode(const uint8_t *b, size_t len, jobq_announcement *out)
{
	const uint8_t *nul = memchr(b, '\0', len);
	if (nul == NULL || (size_t)(nul - b) < TOPIC_PREFIX_LEN ||
	    memcmp(b, TOPIC_PREFIX, TOPIC_PREFIX_LEN) != 0)
		return -1;
	size_t off = (size_t)(nul - b) + 1;
	Jobq__V1__JobsAvailable *ja = jobq__v1__jobs_available__unpack(NULL, len - off, b + off);
	if (ja == NULL)
		return -1;
	int rc = -1;
	size_t qlen = strlen(ja->queue);
	if (qlen >= sizeof(out->queue) || qlen != (size_t)(nul - b) - TOPIC_PREFIX_LEN ||
	    memcmp(ja->queue, b + TOPIC_PREFIX_LEN, qlen) != 0)
		goto out;
	if (ja->n_ids > 0 && (out->ids = malloc(ja->n_ids * sizeof(*out->ids))) == NULL)
		goto out;
	if (ja->n_ids > 0)
		memcpy(out->ids, ja->ids, ja->n_ids * sizeof(*out->ids));
	out->n_ids = ja->n_ids;
	memcpy(out->queue, ja->queue, qlen + 1);
	out->published_at_us = ja->published_at_us;
	rc = 0;
out:
	jobq__v1__jobs_available__free_unpacked(ja, NULL);
	return rc;
}

/* receive waits for one message until the deadline (-1: none; 0 with wait_ms 0: do not wait). */
static int receive(jobq_sub *s, int timeout_ms, long long deadline, nng_msg **m)
{
	if (timeout_ms == 0)
		return nng_recvmsg(s->sock, m, NNG_FLAG_NONBLOCK);
	nng_duration left = NNG_DURATION_INFINITE;
	if (timeout_ms > 0) {
		long long rest = deadline - jobqi_mono_ms();
		if (rest <= 0)
			return NNG_ETIMEDOUT;
		left = (nng_duration)rest;
	}
	int rv = nng_socket_set_ms(s->sock, NNG_OPT_RECVTIMEO, left);
	return rv != 0 ? rv : nng_recvmsg(s->sock, m, 0);
}

int jobq_sub_next(jobq_sub *s, int timeout_ms, jobq_announcement *out, jobq_error *err)
{
	if (s == NULL || out == NULL)
		return jobqi_set_err(err, JOBQ_INVALID_ARGUMENT, "jobq_sub_next: sub and out must not be NULL");
	memset(out, 0, sizeof(*out));
	long long deadline = timeout_ms > 0 ? jobqi_mono_ms() + timeout_ms : 0;
	for (;;) {
		nng_msg *m = NULL;
		int rv = receive(s, timeout_ms, deadline, &m);
		if (rv == NNG_ETIMEDOUT || rv == NNG_EAGAIN)
			return jobqi_set_err(err, JOBQ_DEADLINE_EXCEEDED,
					     "no announcement within %d ms", timeout_ms);
		if (rv != 0)
			return jobqi_set_err(err, jobqi_nng_code(rv), "receiving an announcement: %s",
					     nng_strerror(rv));
		int bad = decode(nng_msg_body(m), nng_msg_len(m), out);
		nng_msg_free(m);
		if (!bad)
			return JOBQ_OK;
		/* Undecodable (another version, a stray publisher): skip it, keep waiting. */
		memset(out, 0, sizeof(*out));
	}
}
