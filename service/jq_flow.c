#include "jq_flow.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct entry {
	char queue[JQ_DB_QUEUE_MAX + 1];
	jq_queue_flow s;
} entry;

struct jq_flow {
	pthread_mutex_t mu; /* everything below */
	entry *v;           /* sorted by queue */
	int n, cap;
};

int jq_flow_new(jq_flow **out)
{
	jq_flow *f = calloc(1, sizeof(*f));
	if (f == NULL)
		return -1;
	pthread_mutex_init(&f->mu, NULL);
	*out = f;
	return 0;
}

void jq_flow_free(jq_flow *f)
{
	if (f == NULL)
		return;
	pthread_mutex_destroy(&f->mu);
	free(f->v);
	free(f);
}

/* find_locked: the index of queue, or where it would go (*found false). */
static int find_locked(const jq_flow *f, const char *queue, bool *found)
{
	int lo = 0, hi = f->n;
	while (lo < hi) {
		int mid = lo + (hi - lo) / 2;
		int c = strcmp(f->v[mid].queue, queue);
		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

static bool is_empty(const jq_queue_flow *s)
{
	return !s->paused && s->concurrency_limit <= 0 && s->rate_limit <= 0 && s->key_concurrency_limit <= 0;
}

int jq_flow_set(jq_flow *f, const char *queue, const jq_queue_flow *s)
{
	int rc = 0;
	bool found;
	if (strlen(queue) > JQ_DB_QUEUE_MAX)
		return -1;
	pthread_mutex_lock(&f->mu);
	int i = find_locked(f, queue, &found);
	if (found && is_empty(s)) {
		memmove(&f->v[i], &f->v[i + 1], (size_t)(f->n - i - 1) * sizeof(*f->v));
		f->n--;
	} else if (found) {
		f->v[i].s = *s;
	} else if (!is_empty(s)) {
		if (f->n == f->cap) {
			int cap = f->cap ? f->cap * 2 : 16;
			entry *v = realloc(f->v, (size_t)cap * sizeof(*v));
			if (v == NULL) {
				rc = -1;
				goto out;
			}
			f->v = v;
			f->cap = cap;
		}
		memmove(&f->v[i + 1], &f->v[i], (size_t)(f->n - i) * sizeof(*f->v));
		snprintf(f->v[i].queue, sizeof(f->v[i].queue), "%s", queue);
		f->v[i].s = *s;
		f->n++;
	}
out:
	pthread_mutex_unlock(&f->mu);
	return rc;
}

void jq_flow_clear(jq_flow *f)
{
	pthread_mutex_lock(&f->mu);
	f->n = 0;
	pthread_mutex_unlock(&f->mu);
}

/* lookup copies queue's settings into *s (all zero when it has none). */
static void lookup(jq_flow *f, const char *queue, jq_queue_flow *s)
{
	bool found;
	memset(s, 0, sizeof(*s));
	pthread_mutex_lock(&f->mu);
	int i = find_locked(f, queue, &found);
	if (found)
		*s = f->v[i].s;
	pthread_mutex_unlock(&f->mu);
}

bool jq_flow_paused(jq_flow *f, const char *queue)
{
	jq_queue_flow s;
	lookup(f, queue, &s);
	return s.paused;
}

bool jq_flow_limited(jq_flow *f, const char *queue)
{
	jq_queue_flow s;
	lookup(f, queue, &s);
	return s.concurrency_limit > 0 || s.key_concurrency_limit > 0;
}

int jq_flow_retry_ms(jq_flow *f, const char *queue, int64_t now_ms)
{
	jq_queue_flow s;
	lookup(f, queue, &s);
	if (s.paused)
		return 0;
	int ms = 0;
	if (s.rate_limit > 0 && s.rate_period_ms > 0) {
		/* The window ends at the next multiple of the period; a millisecond after, the claim
		 * statement's now() is in the next one. */
		int64_t left = s.rate_period_ms - now_ms % s.rate_period_ms + 1;
		ms = left > JQ_FLOW_RATE_RETRY_MAX_MS ? JQ_FLOW_RATE_RETRY_MAX_MS : (int)left;
	}
	if ((s.concurrency_limit > 0 || s.key_concurrency_limit > 0) && (ms == 0 || ms > JQ_FLOW_SLOT_RETRY_MS))
		ms = JQ_FLOW_SLOT_RETRY_MS;
	return ms;
}

int jq_flow_count(jq_flow *f)
{
	pthread_mutex_lock(&f->mu);
	int n = f->n;
	pthread_mutex_unlock(&f->mu);
	return n;
}

/* parse_limit reads a positive int32 or '-' (none: 0); returns the end, or NULL. */
static const char *parse_limit(const char *p, int32_t *out)
{
	if (*p == '-' && (p[1] == ' ' || p[1] == '\0')) {
		*out = 0;
		return p + 1;
	}
	char *end;
	errno = 0;
	long v = strtol(p, &end, 10);
	if (end == p || errno != 0 || v <= 0 || v > INT32_MAX || (*end != ' ' && *end != '\0'))
		return NULL;
	*out = (int32_t)v;
	return end;
}

int jq_flow_parse(const char *text, char *queue, jq_queue_flow *s)
{
	const char *sp = strchr(text, ' ');
	size_t qlen = sp ? (size_t)(sp - text) : 0;
	if (qlen == 0 || qlen > JQ_DB_QUEUE_MAX || (sp[1] != '0' && sp[1] != '1') || sp[2] != ' ')
		return -1;
	memcpy(queue, text, qlen);
	queue[qlen] = '\0';
	s->paused = sp[1] == '1';
	const char *p = sp + 3;
	int32_t *fields[3] = { &s->concurrency_limit, &s->rate_limit, &s->rate_period_ms };
	for (int k = 0; k < 3; k++) {
		if (k > 0 && *p++ != ' ')
			return -1;
		if ((p = parse_limit(p, fields[k])) == NULL)
			return -1;
	}
	s->key_concurrency_limit = 0;
	if (*p == ' ' && ((p = parse_limit(p + 1, &s->key_concurrency_limit)) == NULL || s->key_concurrency_limit == 0))
		return -1;
	return *p == '\0' ? 0 : -1;
}
