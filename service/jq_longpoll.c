#include "jq_longpoll.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jq_metrics.h"

/* Recent wakes, to see whether a queue was announced since a generation. Older generations than
 * the ring holds are treated as "maybe": the request claims once more, which is always safe. */
#define RECENT 256
#define QUEUE_MAX 64

typedef struct waiter {
	jq_rpc_req *req;
	int64_t until_us;
	int limit; /* jobs its Claim asks for (>= 1) */
	char queue[QUEUE_MAX + 1];
	struct waiter *next;
} waiter;

typedef struct recent_wake {
	uint64_t gen;
	char queue[QUEUE_MAX + 1];
} recent_wake;

struct jq_longpoll {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_t thread;
	waiter *waiters;
	int nwaiting;
	int64_t woken; /* requests requeued by wakes, in all */
	uint64_t gen; /* number of wakes so far */
	recent_wake recent[RECENT];
	bool stop;
	bool joined;
};

/* Parked requests are answered OK with an empty ClaimResponse: zero bytes encode it. Only
 * Claims park, and the dispatcher does not see this answer, so it is counted here. */
static void answer_empty(jq_rpc_req *req)
{
	jq_metrics_request("/jobq.v1.JobQueue/Claim", JQ_OK, jq_rpc_now_us() - jq_rpc_req_received_us(req));
	jq_rpc_req_finish(req, JQ_OK, NULL, NULL, 0);
}

uint64_t jq_longpoll_generation(jq_longpoll *lp)
{
	pthread_mutex_lock(&lp->mu);
	uint64_t g = lp->gen;
	pthread_mutex_unlock(&lp->mu);
	return g;
}

/* woken_since_locked: was queue woken after generation g? */
static bool woken_since_locked(jq_longpoll *lp, const char *queue, uint64_t g)
{
	if (lp->gen == g)
		return false;
	if (lp->gen - g > RECENT)
		return true;
	for (uint64_t k = g + 1; k <= lp->gen; k++) {
		if (strcmp(lp->recent[k % RECENT].queue, queue) == 0)
			return true;
	}
	return false;
}

void jq_longpoll_park(jq_longpoll *lp, jq_rpc_req *req, const char *queue, int limit,
		      int64_t until_us, uint64_t generation)
{
	waiter *w = calloc(1, sizeof(*w));
	if (w == NULL) {
		answer_empty(req);
		return;
	}
	w->req = req;
	w->until_us = until_us;
	w->limit = limit > 0 ? limit : 1;
	strncpy(w->queue, queue, QUEUE_MAX);

	pthread_mutex_lock(&lp->mu);
	bool now = lp->stop || woken_since_locked(lp, queue, generation);
	bool stopping = lp->stop;
	if (!now) {
		w->next = lp->waiters;
		lp->waiters = w;
		lp->nwaiting++;
		pthread_cond_signal(&lp->cv); /* the earliest expiry may have changed */
	}
	pthread_mutex_unlock(&lp->mu);
	if (!now)
		return;
	free(w);
	if (stopping)
		answer_empty(req);
	else
		jq_rpc_req_requeue(req);
}

/* take_locked unlinks into a list the waiters that match (of queue, or expired before t), except
 * the first `keep` matches, which are the newest (park pushes at the head). */
static waiter *take_locked(jq_longpoll *lp, const char *queue, int64_t t, size_t keep)
{
	waiter *taken = NULL, **pp = &lp->waiters;
	while (*pp != NULL) {
		waiter *w = *pp;
		bool match = queue ? strcmp(w->queue, queue) == 0 : w->until_us <= t;
		if (!match || (keep > 0 && keep-- > 0)) {
			pp = &w->next;
			continue;
		}
		*pp = w->next;
		w->next = taken;
		taken = w;
		lp->nwaiting--;
	}
	return taken;
}

/* newest_to_keep_locked: how many of queue's newest waiters can stay parked while the
 * longest-waiting ones, woken, still claim at least `jobs` between them. */
static size_t newest_to_keep_locked(jq_longpoll *lp, const char *queue, size_t jobs)
{
	size_t total = 0, kept_limits = 0, keep = 0;
	for (waiter *w = lp->waiters; w != NULL; w = w->next)
		if (strcmp(w->queue, queue) == 0)
			total += (size_t)w->limit;
	for (waiter *w = lp->waiters; w != NULL; w = w->next) {
		if (strcmp(w->queue, queue) != 0)
			continue;
		if (total - kept_limits - (size_t)w->limit < jobs)
			break;
		kept_limits += (size_t)w->limit;
		keep++;
	}
	return keep;
}

void jq_longpoll_wake(jq_longpoll *lp, const char *queue, size_t jobs)
{
	pthread_mutex_lock(&lp->mu);
	lp->gen++;
	strncpy(lp->recent[lp->gen % RECENT].queue, queue, QUEUE_MAX);
	lp->recent[lp->gen % RECENT].queue[QUEUE_MAX] = '\0';
	lp->recent[lp->gen % RECENT].gen = lp->gen;
	waiter *w = take_locked(lp, queue, 0, jobs == 0 ? 0 : newest_to_keep_locked(lp, queue, jobs));
	for (waiter *c = w; c != NULL; c = c->next)
		lp->woken++;
	pthread_mutex_unlock(&lp->mu);
	/* Outside the lock: requeueing takes the RPC server's lock. */
	while (w != NULL) {
		waiter *next = w->next;
		jq_rpc_req_requeue(w->req);
		free(w);
		w = next;
	}
}

int64_t jq_longpoll_woken(jq_longpoll *lp)
{
	pthread_mutex_lock(&lp->mu);
	int64_t n = lp->woken;
	pthread_mutex_unlock(&lp->mu);
	return n;
}

int jq_longpoll_waiting(jq_longpoll *lp)
{
	pthread_mutex_lock(&lp->mu);
	int n = lp->nwaiting;
	pthread_mutex_unlock(&lp->mu);
	return n;
}

static void answer_all(waiter *w)
{
	while (w != NULL) {
		waiter *next = w->next;
		answer_empty(w->req);
		free(w);
		w = next;
	}
}

static int64_t earliest_locked(jq_longpoll *lp)
{
	int64_t t = INT64_MAX;
	for (waiter *w = lp->waiters; w != NULL; w = w->next)
		if (w->until_us < t)
			t = w->until_us;
	return t;
}

static void *run(void *arg)
{
	jq_longpoll *lp = arg;
	pthread_mutex_lock(&lp->mu);
	while (!lp->stop) {
		int64_t t = earliest_locked(lp);
		if (t == INT64_MAX) {
			pthread_cond_wait(&lp->cv, &lp->mu);
			continue;
		}
		if (t > jq_rpc_now_us()) {
			struct timespec ts = { .tv_sec = t / 1000000, .tv_nsec = (long)(t % 1000000) * 1000 };
			pthread_cond_timedwait(&lp->cv, &lp->mu, &ts);
			continue;
		}
		waiter *expired = take_locked(lp, NULL, jq_rpc_now_us(), 0);
		pthread_mutex_unlock(&lp->mu);
		answer_all(expired);
		pthread_mutex_lock(&lp->mu);
	}
	pthread_mutex_unlock(&lp->mu);
	return NULL;
}

int jq_longpoll_start(jq_longpoll **out)
{
	jq_longpoll *lp = calloc(1, sizeof(*lp));
	pthread_condattr_t ca;
	if (lp == NULL)
		return -1;
	pthread_mutex_init(&lp->mu, NULL);
	/* jq_rpc_now_us is CLOCK_MONOTONIC, so the condvar waits on the same clock. */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&lp->cv, &ca);
	pthread_condattr_destroy(&ca);
	if (pthread_create(&lp->thread, NULL, run, lp) != 0) {
		pthread_cond_destroy(&lp->cv);
		pthread_mutex_destroy(&lp->mu);
		free(lp);
		return -1;
	}
	*out = lp;
	return 0;
}

void jq_longpoll_stop(jq_longpoll *lp)
{
	if (lp == NULL || lp->joined)
		return;
	pthread_mutex_lock(&lp->mu);
	lp->stop = true;
	waiter *all = lp->waiters;
	lp->waiters = NULL;
	lp->nwaiting = 0;
	pthread_cond_signal(&lp->cv);
	pthread_mutex_unlock(&lp->mu);
	pthread_join(lp->thread, NULL);
	lp->joined = true;
	answer_all(all);
}

void jq_longpoll_free(jq_longpoll *lp)
{
	if (lp == NULL)
		return;
	jq_longpoll_stop(lp);
	pthread_cond_destroy(&lp->cv);
	pthread_mutex_destroy(&lp->mu);
	free(lp);
}
