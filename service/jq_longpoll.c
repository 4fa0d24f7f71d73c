#include "jq_longpoll.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jq_clock.h"
#include "jq_log.h"
#include "jq_metrics.h"
#include "jq_mutex.h"

/* Recent wakes, to see whether a queue was announced since a generation. Older generations than
 * the ring holds are treated as "maybe": the request claims once more, which is always safe. */
#define RECENT 256
#define QUEUE_MAX JQ_LONGPOLL_QUEUE_MAX
/* Queues whose emptiness is tracked (jq_longpoll_claim_begin). An untracked queue is "unknown":
 * its Claims ask the database, as they would without the tracking; so the table only needs room
 * for the queues that workers wait on at the same time, and evicting one is always safe. */
#define TRACKED 64
/* A recent wake with this (impossible) queue name matches every queue: the announcement stream
 * restarted, so any queue may have jobs nobody announced. */
#define ALL_QUEUES ""
/* A Claim is a few hundred bytes; one much larger carries junk and is not kept waiting. */
#define PARK_MAX_BYTES (64 * 1024)
/* When waiting Claims are full, the rest are told to come back after this long, spread over
 * as much again so that they do not all come back at once. */
#define RETRY_AFTER_MS 1000
/* A wait ends this long before the request's deadline: a request requeued after its deadline
 * would be answered DEADLINE_EXCEEDED instead of with an empty claim. */
#define DEADLINE_MARGIN_US 5000
/* A Claim with less of its wait left than this does not wait. */
#define MIN_WAIT_US 1000

typedef struct waiter {
	jq_rpc_req *req;
	int64_t until_us;
	int64_t retry_us; /* requeued then, announced or not (a limited queue); 0 = never */
	int limit; /* jobs its Claim asks for (>= 1) */
	char queue[QUEUE_MAX + 1];
	struct waiter *next;
} waiter;

typedef struct recent_wake {
	uint64_t gen;
	char queue[QUEUE_MAX + 1];
} recent_wake;

/* What this replica knows of a queue's claimable jobs: none when a Claim last came back short,
 * plus the jobs announced since, minus the jobs claimed here since. Jobs other replicas claim are
 * not subtracted, so the count can only be too high (one Claim too many asks the database),
 * except in the cases jq_longpoll.h lists. */
typedef struct tracked {
	char queue[QUEUE_MAX + 1]; /* "" = free slot */
	int64_t avail;
	int64_t inflight; /* limits of Claims of it querying now (they will take announced jobs) */
	/* Limits of Claims that parked without a query although jobs were announced, because the
	 * Claims querying were expected to take them: the only waiters a Claim that took fewer
	 * (jq_longpoll_claim_end) must send to look. The others parked after an empty query, and
	 * the announcement of each job since woke one of them already. */
	int64_t behind;
	uint64_t used;    /* lp->uses when last looked at: the least recently used is evicted */
} tracked;

struct jq_longpoll {
	jq_mutex longpoll_mu; /* everything below */
	pthread_cond_t expiry_cv;  /* the expiry thread's: a sooner wait end, or stop */
	pthread_t thread;
	waiter *waiters;
	int nwaiting;
	int64_t woken; /* requests requeued by wakes, in all */
	uint64_t gen; /* number of wakes so far */
	recent_wake recent[RECENT];
	tracked queues[TRACKED];
	uint64_t uses;       /* stamp source for tracked.used */
	bool listening;      /* announcements arrive; only then can a queue be known empty */
	int64_t sleeps_until; /* the expiry thread's next look (INT64_MAX: none planned) */
	int64_t unqueried;   /* Claims parked without asking the database (metrics) */
	int max_waiting;     /* parked at once; more are answered with a time to retry */
	int64_t refused;     /* Claims answered at once because max_waiting were parked (metrics) */
	bool stop;
	bool joined;
};

/* count_answer counts an answer given here: the dispatcher does not see it. */
static void count_answer(jq_rpc_req *req)
{
	const char *method = jq_rpc_req_envelope(req)->method;
	jq_metrics_request(method ? method : "", JQ_OK, jq_clock_mono_us() - jq_rpc_req_received_us(req));
}

/* Parked requests are answered OK with no jobs: an empty ClaimResponse (zero bytes encode it),
 * or, for the claim of a Complete or Fail, the response its note holds (its results). */
static void answer_empty(jq_rpc_req *req)
{
	size_t len;
	const uint8_t *note = jq_rpc_req_note(req, &len);
	count_answer(req);
	jq_rpc_req_finish(req, JQ_OK, NULL, note, note != NULL ? len : 0);
}

/* put_varint writes v as a protobuf varint at p; returns its length (at most 10). */
static size_t put_varint(uint8_t *p, uint64_t v)
{
	size_t n = 0;
	do {
		p[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
		v >>= 7;
	} while (v != 0);
	return n;
}

/* answer_retry answers a Claim that may not wait: no jobs, and when to ask again, in the
 * response's retry_after_ms (a field appended to the note's encoding: protobuf merges them). */
static void answer_retry(jq_rpc_req *req, bool after_completion)
{
	size_t note_len, len = 0;
	const uint8_t *note = jq_rpc_req_note(req, &note_len);
	uint32_t field = after_completion ? JQ_LONGPOLL_NEXT_RETRY_FIELD : 2; /* ClaimResponse's */
	uint32_t ms = RETRY_AFTER_MS + (uint32_t)(jq_clock_mono_us() % RETRY_AFTER_MS);
	uint8_t *buf = malloc((note != NULL ? note_len : 0) + 20);
	if (buf == NULL) {
		answer_empty(req);
		return;
	}
	if (note != NULL) {
		memcpy(buf, note, note_len);
		len = note_len;
	}
	len += put_varint(buf + len, (uint64_t)field << 3); /* wire type 0: varint */
	len += put_varint(buf + len, ms);
	count_answer(req);
	jq_rpc_req_finish(req, JQ_OK, NULL, buf, len);
	free(buf);
}

/* current_generation: the number of wakes so far; a Claim reads it before it queries. */
static uint64_t current_generation(jq_longpoll *lp)
{
	jq_mutex_lock(&lp->longpoll_mu);
	uint64_t g = lp->gen;
	jq_mutex_unlock(&lp->longpoll_mu);
	return g;
}

/* woken_since_locked: was queue woken after generation g? */
static bool woken_since_locked(jq_longpoll *lp, const char *queue, uint64_t g)
{
	JQ_ASSERT_HELD(&lp->longpoll_mu);
	if (lp->gen == g)
		return false;
	if (lp->gen - g > RECENT)
		return true;
	for (uint64_t k = g + 1; k <= lp->gen; k++) {
		const char *q = lp->recent[k % RECENT].queue;
		if (q[0] == '\0' || strcmp(q, queue) == 0)
			return true;
	}
	return false;
}

/* record_wake_locked starts a new generation for queue (ALL_QUEUES for every queue). */
static void record_wake_locked(jq_longpoll *lp, const char *queue)
{
	JQ_ASSERT_HELD(&lp->longpoll_mu);
	lp->gen++;
	strncpy(lp->recent[lp->gen % RECENT].queue, queue, QUEUE_MAX);
	lp->recent[lp->gen % RECENT].queue[QUEUE_MAX] = '\0';
	lp->recent[lp->gen % RECENT].gen = lp->gen;
}

static waiter *take_locked(jq_longpoll *lp, const char *queue, int64_t t, size_t keep);
static size_t newest_to_keep_locked(jq_longpoll *lp, const char *queue, size_t jobs);

/* next_look: when the expiry thread must act on w: its retry, else the end of its wait. */
static int64_t next_look(const waiter *w)
{
	return w->retry_us != 0 ? w->retry_us : w->until_us;
}

static int64_t count_list(const waiter *w)
{
	int64_t n = 0;
	for (; w != NULL; w = w->next)
		n++;
	return n;
}

/* release_all hands each waiter's request to fn (requeue, or answer) and frees the list.
 * Outside the lock: both take the RPC server's lock. */
static void release_all(waiter *w, void (*fn)(jq_rpc_req *req))
{
	while (w != NULL) {
		waiter *next = w->next;
		fn(w->req);
		free(w);
		w = next;
	}
}

/* ---- what is known of queues' claimable jobs ---- */

static tracked *find_locked(jq_longpoll *lp, const char *queue)
{
	JQ_ASSERT_HELD(&lp->longpoll_mu);
	for (int i = 0; i < TRACKED; i++)
		if (lp->queues[i].queue[0] != '\0' && strcmp(lp->queues[i].queue, queue) == 0)
			return &lp->queues[i];
	return NULL;
}

/* forget_locked makes t's queue unknown again (frees the slot). NULL is a no-op. */
static void forget_locked(tracked *t)
{
	if (t != NULL)
		memset(t, 0, sizeof(*t));
}

/* slot_locked returns queue's entry, or a new one (nothing reserved, known empty) in a free slot
 * or in place of the least recently used queue. */
static tracked *slot_locked(jq_longpoll *lp, const char *queue)
{
	JQ_ASSERT_HELD(&lp->longpoll_mu);
	tracked *t = find_locked(lp, queue), *lru = &lp->queues[0];
	if (t != NULL)
		return t;
	for (int i = 0; i < TRACKED; i++) {
		if (lp->queues[i].queue[0] == '\0') {
			lru = &lp->queues[i];
			break;
		}
		if (lp->queues[i].used < lru->used)
			lru = &lp->queues[i];
	}
	forget_locked(lru);
	snprintf(lru->queue, sizeof(lru->queue), "%s", queue);
	return lru;
}

/* take_covering_locked unlinks queue's longest-waiting waiters whose limits add up to `jobs`
 * (every waiter of the queue when jobs is 0). */
static waiter *take_covering_locked(jq_longpoll *lp, const char *queue, size_t jobs)
{
	JQ_ASSERT_HELD(&lp->longpoll_mu);
	return take_locked(lp, queue, 0, jobs == 0 ? 0 : newest_to_keep_locked(lp, queue, jobs));
}

/* begin_locked: see jq_longpoll_claim_begin; `reserve` false only looks. */
static bool begin_locked(jq_longpoll *lp, const char *queue, size_t limit, bool can_wait, bool reserve)
{
	JQ_ASSERT_HELD(&lp->longpoll_mu);
	bool park = false;
	tracked *t = lp->listening ? find_locked(lp, queue) : NULL;
	if (t != NULL) {
		t->used = ++lp->uses;
		park = can_wait && t->avail <= t->inflight;
		if (park && t->avail > 0)
			t->behind += (int64_t)limit;
		if (!park && reserve)
			t->inflight += (int64_t)limit;
	}
	lp->unqueried += park;
	return park;
}

/* ---- a Claim, from its query to its wait ---- */

void jq_longpoll_claim_start(jq_longpoll *lp, jq_longpoll_claim *c, const char *queue, int limit,
			     int64_t received_us, uint32_t wait_ms)
{
	c->lp = lp;
	snprintf(c->queue, sizeof(c->queue), "%s", queue);
	c->limit = limit > 0 ? limit : 1;
	c->until_us = wait_ms > 0 ? received_us + (int64_t)wait_ms * 1000 : 0;
	c->generation = lp != NULL ? current_generation(lp) : 0;
	c->retry_ms = 0;
	c->after_completion = false;
}

void jq_longpoll_claim_retry(jq_longpoll_claim *c, int retry_ms)
{
	c->retry_ms = retry_ms > 0 ? retry_ms : 0;
}

/* may_wait: the Claim asked to wait and part of its wait is left (a Claim run again after a wake
 * counts from its arrival, so requeues never extend the wait). */
static bool may_wait(const jq_longpoll_claim *c)
{
	return c->lp != NULL && c->until_us != 0 && c->until_us > jq_clock_mono_us() + MIN_WAIT_US;
}

bool jq_longpoll_claim_begin(const jq_longpoll_claim *c)
{
	jq_longpoll *lp = c->lp;
	/* A limited queue may hold jobs that no Claim could take a moment ago: it always asks. */
	if (lp == NULL || c->retry_ms > 0)
		return false;
	bool wait = may_wait(c);
	jq_mutex_lock(&lp->longpoll_mu);
	bool park = begin_locked(lp, c->queue, (size_t)c->limit, wait, true);
	jq_mutex_unlock(&lp->longpoll_mu);
	return park;
}

bool jq_longpoll_claim_known_empty(const jq_longpoll_claim *c)
{
	jq_longpoll *lp = c->lp;
	if (!may_wait(c) || c->retry_ms > 0)
		return false;
	jq_mutex_lock(&lp->longpoll_mu);
	bool park = begin_locked(lp, c->queue, (size_t)c->limit, true, false);
	jq_mutex_unlock(&lp->longpoll_mu);
	return park;
}

/* record_end: see jq_longpoll_claim_end. limited: a Claim of a queue whose limits the database
 * applies (jq_longpoll_claim_retry). */
static void record_end(jq_longpoll *lp, const char *queue, uint64_t generation, size_t limit,
		       size_t got, bool ok, bool limited)
{
	waiter *w = NULL;
	jq_mutex_lock(&lp->longpoll_mu);
	tracked *t = find_locked(lp, queue);
	if (limited) {
		/* A short answer says nothing of the jobs waiting: the limit may have held them back.
		 * The queue stays unknown, and its Claims always ask (they never reserved). */
		forget_locked(t);
		goto out;
	}
	if (!ok) {
		/* Its reservation ends with no answer: whoever parked behind it must look again. */
		forget_locked(t);
		w = take_covering_locked(lp, queue, 0);
		goto out;
	}
	if (t != NULL)
		t->inflight = t->inflight > (int64_t)limit ? t->inflight - (int64_t)limit : 0;
	if (!lp->listening)
		goto out;
	if (got < limit && !woken_since_locked(lp, queue, generation)) {
		/* Nothing claimable at the claim's snapshot, and nothing announced since. */
		if (t == NULL)
			t = slot_locked(lp, queue);
		t->avail = 0;
		t->behind = 0;
		t->used = ++lp->uses;
	} else if (t != NULL) {
		t->avail = t->avail > (int64_t)got ? t->avail - (int64_t)got : 0;
		/* Claims parked while this one was expected to take the announced jobs; it took fewer
		 * (its snapshot predates some of them), so they go and look. Not more of them: a Claim
		 * an announcement woke is not counted in inflight until it begins, and waking another
		 * for its job would send one Claim too many to the database. */
		int64_t missing = t->avail - t->inflight;
		if (missing > t->behind)
			missing = t->behind;
		if (missing > 0) {
			w = take_covering_locked(lp, queue, (size_t)missing);
			t->behind -= missing;
		}
	}
out:
	lp->woken += count_list(w);
	jq_mutex_unlock(&lp->longpoll_mu);
	release_all(w, jq_rpc_req_requeue);
}

bool jq_longpoll_claim_end(const jq_longpoll_claim *c, size_t got, bool ok)
{
	if (c->lp == NULL)
		return false;
	record_end(c->lp, c->queue, c->generation, (size_t)c->limit, got, ok, c->retry_ms > 0);
	return ok && got == 0 && may_wait(c);
}

void jq_longpoll_listening(jq_longpoll *lp, bool on)
{
	jq_mutex_lock(&lp->longpoll_mu);
	lp->listening = on;
	memset(lp->queues, 0, sizeof(lp->queues));
	/* A Claim that began before this must not conclude that its queue is empty. */
	record_wake_locked(lp, ALL_QUEUES);
	jq_mutex_unlock(&lp->longpoll_mu);
}

int64_t jq_longpoll_refused(jq_longpoll *lp)
{
	jq_mutex_lock(&lp->longpoll_mu);
	int64_t n = lp->refused;
	jq_mutex_unlock(&lp->longpoll_mu);
	return n;
}

int64_t jq_longpoll_unqueried(jq_longpoll *lp)
{
	jq_mutex_lock(&lp->longpoll_mu);
	int64_t n = lp->unqueried;
	jq_mutex_unlock(&lp->longpoll_mu);
	return n;
}

/* park keeps req, the Claim c follows, until a job of its queue is announced or until until_us,
 * then requeues or answers it; at once when the queue was woken since c's generation. A Claim
 * with a retry time (jq_longpoll_claim_retry) is requeued after it, announced or not. */
static void park(const jq_longpoll_claim *c, jq_rpc_req *req, int64_t until_us)
{
	jq_longpoll *lp = c->lp;
	const char *queue = c->queue;
	int limit = c->limit;
	uint64_t generation = c->generation;
	size_t note_len = 0;
	jq_rpc_req_note(req, &note_len); /* its bytes count as the request's */
	waiter *w = calloc(1, sizeof(*w));
	if (w == NULL) {
		answer_empty(req);
		return;
	}
	w->req = req;
	w->until_us = until_us;
	int64_t retry_us = c->retry_ms > 0 ? jq_clock_mono_us() + (int64_t)c->retry_ms * 1000 : 0;
	w->retry_us = retry_us > 0 && retry_us < until_us ? retry_us : 0;
	w->limit = limit > 0 ? limit : 1;
	snprintf(w->queue, sizeof(w->queue), "%s", queue);
	/* Before it is on the list, where a wake may requeue it (and count it again) at once. */
	jq_rpc_req_wait(req);

	jq_mutex_lock(&lp->longpoll_mu);
	bool now = lp->stop || woken_since_locked(lp, queue, generation);
	bool stopping = lp->stop;
	bool full = !now && (lp->nwaiting >= lp->max_waiting ||
				  jq_rpc_req_bytes(req) + note_len > PARK_MAX_BYTES);
	if (full)
		lp->refused++;
	if (!now && !full) {
		w->next = lp->waiters;
		lp->waiters = w;
		lp->nwaiting++;
		/* Waking the expiry thread at every park would cost a context switch per Claim; it
		 * only needs to look again when this wait ends before its next look. */
		if (next_look(w) < lp->sleeps_until)
			pthread_cond_signal(&lp->expiry_cv);
	}
	jq_mutex_unlock(&lp->longpoll_mu);
	if (!now && !full)
		return;
	free(w);
	if (full)
		answer_retry(req, c->after_completion);
	else if (stopping)
		answer_empty(req);
	else
		jq_rpc_req_requeue(req);
}

void jq_longpoll_wait(const jq_longpoll_claim *c, jq_rpc_req *req)
{
	int64_t until = c->until_us;
	int64_t deadline = jq_rpc_req_deadline_us(req) - DEADLINE_MARGIN_US;
	if (until > deadline)
		until = deadline;
	assert(c->lp != NULL); /* jq_longpoll_claim_begin/_end/_known_empty said it waits */
	jq_debug("[%s] claim on %s waits for work", jq_rpc_req_request_id(req), c->queue);
	park(c, req, until);
}

/* take_locked unlinks into a list the waiters that match (of queue, or whose next look is due at
 * t), except the first `keep` matches, which are the newest (park pushes at the head). */
static waiter *take_locked(jq_longpoll *lp, const char *queue, int64_t t, size_t keep)
{
	JQ_ASSERT_HELD(&lp->longpoll_mu);
	waiter *taken = NULL, **pp = &lp->waiters;
	while (*pp != NULL) {
		waiter *w = *pp;
		bool match = queue ? strcmp(w->queue, queue) == 0 : next_look(w) <= t;
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
	JQ_ASSERT_HELD(&lp->longpoll_mu);
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
	jq_mutex_lock(&lp->longpoll_mu);
	record_wake_locked(lp, queue);
	tracked *t = find_locked(lp, queue);
	if (jobs == 0)
		forget_locked(t); /* how many is not known: ask the database again */
	else if (t != NULL)
		t->avail += (int64_t)jobs;
	waiter *w = take_covering_locked(lp, queue, jobs);
	lp->woken += count_list(w);
	jq_mutex_unlock(&lp->longpoll_mu);
	release_all(w, jq_rpc_req_requeue);
}

int64_t jq_longpoll_woken(jq_longpoll *lp)
{
	jq_mutex_lock(&lp->longpoll_mu);
	int64_t n = lp->woken;
	jq_mutex_unlock(&lp->longpoll_mu);
	return n;
}

int jq_longpoll_waiting(jq_longpoll *lp)
{
	jq_mutex_lock(&lp->longpoll_mu);
	int n = lp->nwaiting;
	jq_mutex_unlock(&lp->longpoll_mu);
	return n;
}

static int64_t earliest_locked(jq_longpoll *lp)
{
	JQ_ASSERT_HELD(&lp->longpoll_mu);
	int64_t t = INT64_MAX;
	for (waiter *w = lp->waiters; w != NULL; w = w->next)
		if (next_look(w) < t)
			t = next_look(w);
	return t;
}

/* release_due hands each waiter whose wait ended an empty answer, and sends each whose retry
 * came (a limited queue's) back to the database; frees the list. Outside the lock. */
static void release_due(waiter *w)
{
	while (w != NULL) {
		waiter *next = w->next;
		if (w->retry_us != 0)
			jq_rpc_req_requeue(w->req);
		else
			answer_empty(w->req);
		free(w);
		w = next;
	}
}

static void *longpoll_expiry_main(void *arg)
{
	jq_longpoll *lp = arg;
	jq_mutex_lock(&lp->longpoll_mu);
	while (!lp->stop) {
		int64_t t = earliest_locked(lp);
		lp->sleeps_until = t;
		if (t == INT64_MAX) {
			jq_mutex_wait(&lp->longpoll_mu, &lp->expiry_cv);
			continue;
		}
		if (t > jq_clock_mono_us()) {
			struct timespec ts = jq_clock_timespec_us(t);
			jq_mutex_timedwait(&lp->longpoll_mu, &lp->expiry_cv, &ts);
			continue;
		}
		waiter *expired = take_locked(lp, NULL, jq_clock_mono_us(), 0);
		jq_mutex_unlock(&lp->longpoll_mu);
		release_due(expired);
		jq_mutex_lock(&lp->longpoll_mu);
	}
	jq_mutex_unlock(&lp->longpoll_mu);
	return NULL;
}

int jq_longpoll_start(int max_waiting, jq_longpoll **out)
{
	jq_longpoll *lp = calloc(1, sizeof(*lp));
	if (lp == NULL)
		return -1;
	lp->sleeps_until = INT64_MAX;
	lp->max_waiting = max_waiting;
	jq_mutex_init(&lp->longpoll_mu);
	/* Waiters' ends are jq_clock_mono_us times, so the condvar waits on that clock. */
	if (jq_clock_cond_init(&lp->expiry_cv) != 0) {
		jq_mutex_destroy(&lp->longpoll_mu);
		free(lp);
		return -1;
	}
	if (pthread_create(&lp->thread, NULL, longpoll_expiry_main, lp) != 0) {
		pthread_cond_destroy(&lp->expiry_cv);
		jq_mutex_destroy(&lp->longpoll_mu);
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
	jq_mutex_lock(&lp->longpoll_mu);
	lp->stop = true;
	waiter *all = lp->waiters;
	lp->waiters = NULL;
	lp->nwaiting = 0;
	pthread_cond_signal(&lp->expiry_cv);
	jq_mutex_unlock(&lp->longpoll_mu);
	pthread_join(lp->thread, NULL);
	lp->joined = true;
	release_all(all, answer_empty);
}

void jq_longpoll_free(jq_longpoll *lp)
{
	if (lp == NULL)
		return;
	jq_longpoll_stop(lp);
	pthread_cond_destroy(&lp->expiry_cv);
	jq_mutex_destroy(&lp->longpoll_mu);
	free(lp);
}
