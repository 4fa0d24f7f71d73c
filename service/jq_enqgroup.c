/*
 * jq_enqgroup — see jq_enqgroup.h. Leader and followers: a request appends itself to the queue;
 * the first that finds no statement running leads: it takes the requests queued (its own among
 * them, or the oldest ones when they are more than a statement takes), runs them as one statement
 * on its own handle without holding the lock, and marks them done. Requests that queued meanwhile
 * wait for that and then lead the next statement.
 */
#include "jq_enqgroup.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "jq_mutex.h"

/* A request in the queue; it lives on its caller's stack until done. */
typedef struct member {
	const jq_db_job_spec *specs;
	size_t n;
	int64_t *ids;
	int64_t deadline_us;
	jq_code code;
	jq_db_err err;
	bool done;  /* answered: code, err and ids are set, or alone */
	bool alone; /* run it again by itself (the group's statement refused a row) */
	struct member *next;
} member;

struct jq_enqgroup {
	jq_mutex mu;
	pthread_cond_t cv;
	member *head, *tail; /* queued, not yet taken by a leader */
	bool leading;        /* a leader runs a statement now */
	int64_t requests, statements;
};

int jq_enqgroup_new(jq_enqgroup **out)
{
	jq_enqgroup *g = calloc(1, sizeof(*g));
	*out = NULL;
	if (g == NULL)
		return -1;
	if (jq_mutex_init(&g->mu) != 0) {
		free(g);
		return -1;
	}
	if (pthread_cond_init(&g->cv, NULL) != 0) {
		jq_mutex_destroy(&g->mu);
		free(g);
		return -1;
	}
	*out = g;
	return 0;
}

void jq_enqgroup_free(jq_enqgroup *g)
{
	if (g == NULL)
		return;
	pthread_cond_destroy(&g->cv);
	jq_mutex_destroy(&g->mu);
	free(g);
}

void jq_enqgroup_counts(jq_enqgroup *g, int64_t *requests, int64_t *statements)
{
	jq_mutex_lock(&g->mu);
	*requests = g->requests;
	*statements = g->statements;
	jq_mutex_unlock(&g->mu);
}

int jq_enqgroup_waiting(jq_enqgroup *g)
{
	int n = 0;
	jq_mutex_lock(&g->mu);
	for (const member *m = g->head; m != NULL; m = m->next)
		n++;
	jq_mutex_unlock(&g->mu);
	return n;
}

/* groupable: the 6-argument function takes every job, and no idempotency key is given. */
static bool groupable(const jq_db_job_spec *specs, size_t n)
{
	if (n == 0 || n > JQ_ENQGROUP_MAX_REQUEST_JOBS)
		return false;
	for (size_t i = 0; i < n; i++) {
		const jq_db_job_spec *s = &specs[i];
		if (s->idempotency_key != NULL || s->timeout_ms > 0 ||
		    (s->concurrency_key != NULL && s->concurrency_key[0] != '\0'))
			return false;
	}
	return true;
}

/* take unlinks the queued requests from the head, up to JQ_ENQGROUP_MAX_JOBS jobs (the first
 * one whatever its size), and says how many requests and jobs they are and the latest of their
 * deadlines (0 when one has none). The queue is not empty; g->mu is held. */
static member *take(jq_enqgroup *g, size_t *count, size_t *jobs, int64_t *deadline_us)
{
	member *first = g->head, *last = NULL, *m = first;
	bool unbounded = false;
	*count = 0;
	*jobs = 0;
	*deadline_us = 0;
	while (m != NULL && (*count == 0 || *jobs + m->n <= JQ_ENQGROUP_MAX_JOBS)) {
		*jobs += m->n;
		(*count)++;
		unbounded = unbounded || m->deadline_us == 0;
		if (m->deadline_us > *deadline_us)
			*deadline_us = m->deadline_us;
		last = m;
		m = m->next;
	}
	g->head = m;
	if (m == NULL)
		g->tail = NULL;
	last->next = NULL;
	if (unbounded)
		*deadline_us = 0;
	return first;
}

/* run answers the requests of list (count of them, jobs in all) with one statement on db;
 * without g->mu. True when they went in together. */
static bool run(jq_db *db, member *list, size_t count, size_t jobs)
{
	if (count == 1) {
		list->code = jq_db_enqueue(db, list->specs, list->n, list->ids, &list->err);
		return false;
	}
	jq_db_job_spec *specs = malloc(jobs * sizeof(*specs));
	int64_t *ids = malloc(jobs * sizeof(*ids));
	jq_db_err err = { .msg = "" };
	/* Out of memory here: each request runs alone, as it would have without the group. */
	jq_code c = JQ_RESOURCE_EXHAUSTED;
	bool alone = true;
	if (specs != NULL && ids != NULL) {
		size_t k = 0;
		for (member *m = list; m != NULL; m = m->next) {
			memcpy(specs + k, m->specs, m->n * sizeof(*specs));
			k += m->n;
		}
		c = jq_db_enqueue(db, specs, jobs, ids, &err);
		alone = c == JQ_INVALID_ARGUMENT;
	}
	size_t k = 0;
	for (member *m = list; m != NULL; m = m->next) {
		m->alone = alone;
		m->code = c;
		m->err = err;
		if (c == JQ_OK)
			memcpy(m->ids, ids + k, m->n * sizeof(*ids));
		k += m->n;
	}
	free(specs);
	free(ids);
	return !alone;
}

/* lead runs the next statement for the queued requests on db, then gives db back the caller's
 * deadline; g->mu is held on entry and on return (released while the statement runs). */
static void lead(jq_enqgroup *g, jq_db *db, int64_t own_deadline_us)
{
	size_t count, jobs;
	int64_t deadline_us;
	member *list = take(g, &count, &jobs, &deadline_us);
	g->leading = true;
	jq_mutex_unlock(&g->mu);
	jq_db_set_deadline(db, deadline_us);
	bool together = run(db, list, count, jobs);
	jq_db_set_deadline(db, own_deadline_us);
	jq_mutex_lock(&g->mu);
	if (together) {
		g->statements++;
		g->requests += (int64_t)count;
	}
	/* A member's caller may return as soon as the lock is free: read next first. */
	for (member *m = list, *next; m != NULL; m = next) {
		next = m->next;
		m->done = true;
	}
	g->leading = false;
	pthread_cond_broadcast(&g->cv);
}

jq_code jq_enqgroup_enqueue(jq_enqgroup *g, jq_db *db, int64_t deadline_us, const jq_db_job_spec *specs,
			    size_t n, int64_t *ids, jq_db_err *err)
{
	if (g == NULL || !groupable(specs, n))
		return jq_db_enqueue(db, specs, n, ids, err);
	member me = { .specs = specs, .n = n, .ids = ids, .deadline_us = deadline_us, .err = { .msg = "" } };
	jq_mutex_lock(&g->mu);
	if (g->tail != NULL)
		g->tail->next = &me;
	else
		g->head = &me;
	g->tail = &me;
	while (!me.done) {
		if (g->leading)
			jq_mutex_wait(&g->mu, &g->cv);
		else
			lead(g, db, deadline_us);
	}
	jq_mutex_unlock(&g->mu);
	if (me.alone)
		return jq_db_enqueue(db, specs, n, ids, err);
	if (me.code != JQ_OK && err != NULL)
		*err = me.err;
	return me.code;
}
