/*
 * jobq_sub.c — announcements: an nng SUB socket on the service's PUB address. Each message is
 * "pending.<queue>" + NUL + an encoded jobq.v1.JobsAvailable, or (when asked for with
 * jobq_sub_cancels) "cancel.<queue>" + NUL + an encoded jobq.v1.JobsStopped. Subscribing to the
 * topic *with* its NUL makes the prefix match exact ("pending.mail\0" does not match
 * "pending.mailer\0").
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>

#include "jobq/v1/jobq.pb-c.h"
#include "jobq_internal.h"

#define TOPIC_PREFIX "pending."
#define TOPIC_PREFIX_LEN (sizeof(TOPIC_PREFIX) - 1)
#define STOP_PREFIX "cancel."
#define STOP_PREFIX_LEN (sizeof(STOP_PREFIX) - 1)

struct jobq_sub {
	nng_socket sock;
	jobqi_link link;
	char *url;
};

static int subscribe_prefixed(nng_socket s, const char *prefix, const char *queue)
{
	char topic[16 + JOBQ_MAX_QUEUE_LEN + 1];
	size_t plen = strlen(prefix);
	if (queue == NULL) /* every queue: the bare prefix, without a NUL */
		return nng_socket_set(s, NNG_OPT_SUB_SUBSCRIBE, prefix, plen);
	size_t qlen = strlen(queue);
	memcpy(topic, prefix, plen);
	memcpy(topic + plen, queue, qlen + 1); /* with its NUL */
	return nng_socket_set(s, NNG_OPT_SUB_SUBSCRIBE, topic, plen + qlen + 1);
}

static int subscribe_topic(nng_socket s, const char *queue)
{
	return subscribe_prefixed(s, TOPIC_PREFIX, queue);
}

static bool queue_ok(const char *queue)
{
	return queue == NULL || (queue[0] != '\0' && strlen(queue) <= JOBQ_MAX_QUEUE_LEN);
}

int jobq_sub_cancels(jobq_sub *s, const char *queue, jobq_error *err)
{
	if (s == NULL || !queue_ok(queue))
		return jobqi_set_err(err, JOBQ_INVALID_ARGUMENT,
				     "jobq_sub_cancels: a subscription and a queue name of 1..%d characters",
				     JOBQ_MAX_QUEUE_LEN);
	int rv = subscribe_prefixed(s->sock, STOP_PREFIX, queue);
	if (rv != 0)
		return jobqi_set_err(err, jobqi_nng_code(rv), "cannot subscribe to cancels: %s", nng_strerror(rv));
	return JOBQ_OK;
}

int jobq_subscribe(const jobq_options *opts, const char *queue, jobq_sub **out, jobq_error *err)
{
	jobq_options none = { 0 };
	if (out == NULL)
		return jobqi_set_err(err, JOBQ_INVALID_ARGUMENT, "jobq_subscribe: out is NULL");
	*out = NULL;
	if (!queue_ok(queue))
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
	free(a->lease_tokens);
	a->ids = NULL;
	a->lease_tokens = NULL;
	a->n_ids = 0;
}

/* sub_release frees the handle once its socket is closed (jobqi_close). */
static void sub_release(void *arg)
{
	jobq_sub *s = arg;
	jobqi_link_fini(&s->link);
	free(s->url);
	free(s);
}

void jobq_sub_close(jobq_sub *s)
{
	if (s == NULL)
		return;
	(void)jobqi_close(s->sock, sub_release, s);
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

/* topic_is: whether the topic b[0..tlen) is prefix followed by a queue name. */
static bool topic_is(const uint8_t *b, size_t tlen, const char *prefix, size_t plen)
{
	return tlen > plen && memcmp(b, prefix, plen) == 0;
}

/* decode_stop fills *out from a "cancel.<queue>" NUL JobsStopped message naming that same
 * queue; -1 otherwise. */
static int decode_stop(const uint8_t *b, size_t len, size_t tlen, jobq_announcement *out)
{
	Jobq__V1__JobsStopped *js = jobq__v1__jobs_stopped__unpack(NULL, len - tlen - 1, b + tlen + 1);
	if (js == NULL)
		return -1;
	int rc = -1;
	size_t qlen = strlen(js->queue);
	if (qlen >= sizeof(out->queue) || qlen != tlen - STOP_PREFIX_LEN ||
	    memcmp(js->queue, b + STOP_PREFIX_LEN, qlen) != 0 || js->n_jobs == 0)
		goto out;
	out->ids = malloc(js->n_jobs * sizeof(*out->ids));
	out->lease_tokens = malloc(js->n_jobs * sizeof(*out->lease_tokens));
	if (out->ids == NULL || out->lease_tokens == NULL) {
		jobq_announcement_free(out);
		goto out;
	}
	for (size_t i = 0; i < js->n_jobs; i++) {
		out->ids[i] = js->jobs[i]->id;
		out->lease_tokens[i] = js->jobs[i]->lease_token;
	}
	out->n_ids = js->n_jobs;
	out->stopped = true;
	snprintf(out->reason, sizeof(out->reason), "%.*s", (int)sizeof(out->reason) - 1, js->reason);
	memcpy(out->queue, js->queue, qlen + 1);
	out->published_at_us = js->published_at_us;
	rc = 0;
out:
	jobq__v1__jobs_stopped__free_unpacked(js, NULL);
	return rc;
}

/* decode fills *out from one message; -1 when it is not "pending.<queue>" NUL JobsAvailable
 * naming that same queue (or the queue does not fit jobq_announcement.queue), nor a stop. */
static int decode(const uint8_t *b, size_t len, jobq_announcement *out)
{
	const uint8_t *nul = memchr(b, '\0', len);
	if (nul != NULL && topic_is(b, (size_t)(nul - b), STOP_PREFIX, STOP_PREFIX_LEN))
		return decode_stop(b, len, (size_t)(nul - b), out);
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
