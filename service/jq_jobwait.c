#include "jq_jobwait.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "jobq/v1/jobq.pb-c.h"
#include "jq_clock.h"
#include "jq_log.h"
#include "jq_metrics.h"
#include "jq_mutex.h"

/* Recent job ends, to see whether one of a Wait's jobs ended since a generation. A generation
 * older than the ring holds is "maybe": the request looks once more, which is always safe. */
#define RECENT 1024
/* A wait ends this long before the request's deadline, so that it is answered with the jobs as
 * they stand rather than DEADLINE_EXCEEDED. */
#define DEADLINE_MARGIN_US 5000
/* A Wait past --max-waiting-waits is told to ask again after this long, spread over as much
 * again. */
#define RETRY_AFTER_MS 1000
#define METHOD "/jobq.v1.JobQueue/Wait"

typedef struct waiter {
	jq_rpc_req *req;
	int64_t until_us;
	size_t n;
	int64_t ids[JQ_JOBWAIT_MAX_IDS];
	struct waiter *next;
} waiter;

struct jq_jobwait {
	jq_mutex jobwait_mu; /* everything below */
	pthread_cond_t expiry_cv;
	pthread_t thread;
	waiter *waiters;
	int nwaiting;
	int max_waiting;
	int64_t refused;
	uint64_t gen;
	int64_t recent[RECENT]; /* recent[g % RECENT]: the job whose end made generation g */
	int64_t sleeps_until;   /* the expiry thread's next look (INT64_MAX: none planned) */
	bool stop;
	bool joined;
};

static void answer_retry(jq_rpc_req *req)
{
	Jobq__V1__WaitResponse resp = JOBQ__V1__WAIT_RESPONSE__INIT;
	uint8_t buf[16];
	resp.retry_after_ms = RETRY_AFTER_MS + (uint32_t)(jq_clock_mono_us() % RETRY_AFTER_MS);
	size_t len = jobq__v1__wait_response__pack(&resp, buf);
	jq_metrics_request(METHOD, JQ_OK, jq_clock_mono_us() - jq_rpc_req_received_us(req));
	jq_rpc_req_finish(req, JQ_OK, NULL, buf, len);
}

static void answer_stopping(jq_rpc_req *req)
{
	jq_metrics_request(METHOD, JQ_UNAVAILABLE, jq_clock_mono_us() - jq_rpc_req_received_us(req));
	jq_rpc_req_finish(req, JQ_UNAVAILABLE, "jobqd is stopping; wait again", NULL, 0);
}

static bool names(const waiter *w, int64_t id)
{
	for (size_t i = 0; i < w->n; i++)
		if (w->ids[i] == id)
			return true;
	return false;
}

/* ended_since_locked: did one of w's jobs end after generation g (or may it have)? */
static bool ended_since_locked(const jq_jobwait *jw, const waiter *w, uint64_t g)
{
	JQ_ASSERT_HELD(&((jq_jobwait *)jw)->jobwait_mu);
	if (jw->gen - g >= RECENT)
		return jw->gen != g;
	for (uint64_t k = g + 1; k <= jw->gen; k++)
		if (names(w, jw->recent[k % RECENT]))
			return true;
	return false;
}

/* take_locked unlinks the waiters that match into a list: those naming id (id > 0), those whose
 * wait ends by t (id == 0), or all (id < 0). */
static waiter *take_locked(jq_jobwait *jw, int64_t id, int64_t t)
{
	JQ_ASSERT_HELD(&jw->jobwait_mu);
	waiter *taken = NULL, **pp = &jw->waiters;
	while (*pp != NULL) {
		waiter *w = *pp;
		bool match = id > 0 ? names(w, id) : id == 0 ? w->until_us <= t : true;
		if (!match) {
			pp = &w->next;
			continue;
		}
		*pp = w->next;
		w->next = taken;
		taken = w;
		jw->nwaiting--;
	}
	return taken;
}

static void release_all(waiter *w, void (*fn)(jq_rpc_req *))
{
	while (w != NULL) {
		waiter *next = w->next;
		fn(w->req);
		free(w);
		w = next;
	}
}

uint64_t jq_jobwait_generation(jq_jobwait *jw)
{
	jq_mutex_lock(&jw->jobwait_mu);
	uint64_t g = jw->gen;
	jq_mutex_unlock(&jw->jobwait_mu);
	return g;
}

void jq_jobwait_park(jq_jobwait *jw, jq_rpc_req *req, const int64_t *ids, size_t n,
		     uint64_t generation, int64_t until_us)
{
	waiter *w = calloc(1, sizeof(*w));
	if (w == NULL) {
		jq_rpc_req_requeue(req); /* it answers with the jobs as they stand if its time is up */
		return;
	}
	int64_t deadline = jq_rpc_req_deadline_us(req) - DEADLINE_MARGIN_US;
	w->req = req;
	w->until_us = until_us < deadline ? until_us : deadline;
	w->n = n < JQ_JOBWAIT_MAX_IDS ? n : JQ_JOBWAIT_MAX_IDS;
	memcpy(w->ids, ids, w->n * sizeof(*ids));
	jq_rpc_req_wait(req);

	jq_mutex_lock(&jw->jobwait_mu);
	bool stopping = jw->stop;
	bool now = !stopping && ended_since_locked(jw, w, generation);
	bool full = !stopping && !now && jw->nwaiting >= jw->max_waiting;
	if (full)
		jw->refused++;
	if (!stopping && !now && !full) {
		w->next = jw->waiters;
		jw->waiters = w;
		jw->nwaiting++;
		if (w->until_us < jw->sleeps_until)
			pthread_cond_signal(&jw->expiry_cv);
		jq_mutex_unlock(&jw->jobwait_mu);
		jq_debug("[%s] wait for %zu job%s", jq_rpc_req_request_id(req), w->n, w->n == 1 ? "" : "s");
		return;
	}
	jq_mutex_unlock(&jw->jobwait_mu);
	free(w);
	if (stopping)
		answer_stopping(req);
	else if (full)
		answer_retry(req);
	else
		jq_rpc_req_requeue(req);
}

void jq_jobwait_finished(jq_jobwait *jw, int64_t id)
{
	if (id <= 0)
		return;
	jq_mutex_lock(&jw->jobwait_mu);
	jw->gen++;
	jw->recent[jw->gen % RECENT] = id;
	waiter *w = take_locked(jw, id, 0);
	jq_mutex_unlock(&jw->jobwait_mu);
	release_all(w, jq_rpc_req_requeue);
}

void jq_jobwait_listening(jq_jobwait *jw, bool on)
{
	(void)on;
	jq_mutex_lock(&jw->jobwait_mu);
	/* Older than the ring: every Wait that read its jobs before now looks again. */
	jw->gen += RECENT;
	waiter *w = take_locked(jw, -1, 0);
	jq_mutex_unlock(&jw->jobwait_mu);
	release_all(w, jq_rpc_req_requeue);
}

int jq_jobwait_waiting(jq_jobwait *jw)
{
	jq_mutex_lock(&jw->jobwait_mu);
	int n = jw->nwaiting;
	jq_mutex_unlock(&jw->jobwait_mu);
	return n;
}

int64_t jq_jobwait_refused(jq_jobwait *jw)
{
	jq_mutex_lock(&jw->jobwait_mu);
	int64_t n = jw->refused;
	jq_mutex_unlock(&jw->jobwait_mu);
	return n;
}

static int64_t earliest_locked(jq_jobwait *jw)
{
	JQ_ASSERT_HELD(&jw->jobwait_mu);
	int64_t t = INT64_MAX;
	for (waiter *w = jw->waiters; w != NULL; w = w->next)
		if (w->until_us < t)
			t = w->until_us;
	return t;
}

/* An expired Wait goes back to a worker, which answers it with its jobs as they stand. */
static void *jobwait_expiry_main(void *arg)
{
	jq_jobwait *jw = arg;
	jq_mutex_lock(&jw->jobwait_mu);
	while (!jw->stop) {
		int64_t t = earliest_locked(jw);
		jw->sleeps_until = t;
		if (t == INT64_MAX) {
			jq_mutex_wait(&jw->jobwait_mu, &jw->expiry_cv);
			continue;
		}
		if (t > jq_clock_mono_us()) {
			struct timespec ts = jq_clock_timespec_us(t);
			jq_mutex_timedwait(&jw->jobwait_mu, &jw->expiry_cv, &ts);
			continue;
		}
		waiter *expired = take_locked(jw, 0, jq_clock_mono_us());
		jq_mutex_unlock(&jw->jobwait_mu);
		release_all(expired, jq_rpc_req_requeue);
		jq_mutex_lock(&jw->jobwait_mu);
	}
	jq_mutex_unlock(&jw->jobwait_mu);
	return NULL;
}

int jq_jobwait_start(int max_waiting, jq_jobwait **out)
{
	jq_jobwait *jw = calloc(1, sizeof(*jw));
	if (jw == NULL)
		return -1;
	jw->sleeps_until = INT64_MAX;
	jw->max_waiting = max_waiting;
	jq_mutex_init(&jw->jobwait_mu);
	if (jq_clock_cond_init(&jw->expiry_cv) != 0) {
		jq_mutex_destroy(&jw->jobwait_mu);
		free(jw);
		return -1;
	}
	if (pthread_create(&jw->thread, NULL, jobwait_expiry_main, jw) != 0) {
		pthread_cond_destroy(&jw->expiry_cv);
		jq_mutex_destroy(&jw->jobwait_mu);
		free(jw);
		return -1;
	}
	*out = jw;
	return 0;
}

void jq_jobwait_stop(jq_jobwait *jw)
{
	if (jw == NULL || jw->joined)
		return;
	jq_mutex_lock(&jw->jobwait_mu);
	jw->stop = true;
	waiter *all = take_locked(jw, -1, 0);
	pthread_cond_signal(&jw->expiry_cv);
	jq_mutex_unlock(&jw->jobwait_mu);
	pthread_join(jw->thread, NULL);
	jw->joined = true;
	release_all(all, answer_stopping);
}

void jq_jobwait_free(jq_jobwait *jw)
{
	if (jw == NULL)
		return;
	jq_jobwait_stop(jw);
	pthread_cond_destroy(&jw->expiry_cv);
	jq_mutex_destroy(&jw->jobwait_mu);
	free(jw);
}
