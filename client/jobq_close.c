/*
 * jobq_close.c — closing one of libjobq's sockets without the risk of waiting for ever.
 *
 * nng 1.5.2 (Debian 12's) can wait for ever in nng_close: when a message's bytes arrive on a TCP
 * connection while the socket closes (an announcement for a subscriber, a late reply for a
 * client), the transport re-arms its read on the closed aio, which never completes, and the
 * connection's teardown waits for that read (fixed after 1.5.2). A program that closes a
 * subscriber on its way out would then never exit. So nng_close runs on a thread of its own and
 * the caller waits for it a bounded time; what the socket's pipe callbacks still point at (the
 * link, the handle) is released by that thread once nng is done, never before, so a late pipe
 * event never touches freed memory.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "jobq_internal.h"

typedef struct closer {
	pthread_mutex_t mu;
	pthread_cond_t cv; /* on CLOCK_MONOTONIC */
	nng_socket sock;
	void (*release)(void *);
	void *arg;
	bool done;      /* nng_close returned and release ran */
	bool abandoned; /* the caller stopped waiting: the thread frees the closer */
} closer;

static void closer_free(closer *c)
{
	pthread_cond_destroy(&c->cv);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

static void *closer_main(void *arg)
{
	closer *c = arg;
	nng_close(c->sock);
	c->release(c->arg);
	pthread_mutex_lock(&c->mu);
	c->done = true;
	bool abandoned = c->abandoned;
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mu);
	if (abandoned)
		closer_free(c);
	return NULL;
}

static int closer_init(closer *c)
{
	pthread_condattr_t ca;
	if (pthread_condattr_init(&ca) != 0)
		return -1;
	int rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 || pthread_cond_init(&c->cv, &ca) != 0;
	pthread_condattr_destroy(&ca);
	if (rc != 0)
		return -1;
	if (pthread_mutex_init(&c->mu, NULL) != 0) {
		pthread_cond_destroy(&c->cv);
		return -1;
	}
	return 0;
}

bool jobqi_close(nng_socket sock, void (*release)(void *), void *arg)
{
	closer *c = calloc(1, sizeof(*c));
	pthread_t th;
	if (c == NULL || closer_init(c) != 0) {
		free(c);
		goto inline_close;
	}
	c->sock = sock;
	c->release = release;
	c->arg = arg;
	if (pthread_create(&th, NULL, closer_main, c) != 0) {
		closer_free(c);
		goto inline_close;
	}
	pthread_detach(th);
	struct timespec until;
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += JOBQI_CLOSE_WAIT_MS / 1000;
	until.tv_nsec += (long)(JOBQI_CLOSE_WAIT_MS % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&c->mu);
	while (!c->done && pthread_cond_timedwait(&c->cv, &c->mu, &until) != ETIMEDOUT)
		;
	bool done = c->done;
	c->abandoned = !done;
	pthread_mutex_unlock(&c->mu);
	if (done)
		closer_free(c);
	return done;
inline_close:
	/* No thread to spare: close here, as nng would have us do anyway. */
	nng_close(sock);
	release(arg);
	return true;
}
