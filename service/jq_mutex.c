#include "jq_mutex.h"

/* A thread's tag is the address of its own copy of this variable: unique among live threads,
 * never 0, and free to read. */
static _Thread_local char thread_tag;

static uintptr_t self(void)
{
	return (uintptr_t)&thread_tag;
}

int jq_mutex_init(jq_mutex *m)
{
	atomic_init(&m->holder, 0);
	return pthread_mutex_init(&m->mutex, NULL);
}

void jq_mutex_destroy(jq_mutex *m)
{
	assert(atomic_load_explicit(&m->holder, memory_order_relaxed) == 0);
	pthread_mutex_destroy(&m->mutex);
}

void jq_mutex_lock(jq_mutex *m)
{
	pthread_mutex_lock(&m->mutex);
	atomic_store_explicit(&m->holder, self(), memory_order_relaxed);
}

void jq_mutex_unlock(jq_mutex *m)
{
	JQ_ASSERT_HELD(m);
	atomic_store_explicit(&m->holder, 0, memory_order_relaxed);
	pthread_mutex_unlock(&m->mutex);
}

void jq_mutex_wait(jq_mutex *m, pthread_cond_t *cv)
{
	JQ_ASSERT_HELD(m);
	atomic_store_explicit(&m->holder, 0, memory_order_relaxed);
	pthread_cond_wait(cv, &m->mutex);
	atomic_store_explicit(&m->holder, self(), memory_order_relaxed);
}

int jq_mutex_timedwait(jq_mutex *m, pthread_cond_t *cv, const struct timespec *abstime)
{
	JQ_ASSERT_HELD(m);
	atomic_store_explicit(&m->holder, 0, memory_order_relaxed);
	int rc = pthread_cond_timedwait(cv, &m->mutex, abstime);
	atomic_store_explicit(&m->holder, self(), memory_order_relaxed);
	return rc;
}

bool jq_mutex_held(const jq_mutex *m)
{
	return atomic_load_explicit(&((jq_mutex *)m)->holder, memory_order_relaxed) == self();
}
