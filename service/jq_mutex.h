/*
 * jq_mutex — a pthread mutex that knows which thread holds it, so that a comment such as
 * "callers hold srv->rpc_mu" becomes an assert: JQ_ASSERT_HELD(&srv->rpc_mu).
 *
 * pthread_mutex_trylock failing with EBUSY only says that some thread holds a mutex, not that the
 * caller does; here lock records the holder and unlock clears it, so jq_mutex_held answers for
 * the calling thread. The cost is one relaxed atomic store on each side of the lock. Condition
 * variables wait through jq_mutex_wait / jq_mutex_timedwait, which keep the record right across
 * the wait.
 *
 * Asserts are on in every build jobq makes (none defines NDEBUG): a broken invariant stops the
 * process where it broke, in the tests and in production alike.
 */
#ifndef JQ_MUTEX_H
#define JQ_MUTEX_H

#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

typedef struct jq_mutex {
	pthread_mutex_t mutex;
	_Atomic uintptr_t holder; /* the holding thread's tag (see jq_mutex.c); 0 = none */
} jq_mutex;

/* jq_mutex_init: 0, or pthread_mutex_init's error. jq_mutex_destroy: the mutex is not held. */
int jq_mutex_init(jq_mutex *m);
void jq_mutex_destroy(jq_mutex *m);

void jq_mutex_lock(jq_mutex *m);
/* jq_mutex_unlock: only by the thread that holds m (asserted). */
void jq_mutex_unlock(jq_mutex *m);

/* jq_mutex_wait / jq_mutex_timedwait: pthread_cond_wait / pthread_cond_timedwait on cv with m,
 * which the caller holds (asserted) and holds again on return. timedwait returns as
 * pthread_cond_timedwait does (0, ETIMEDOUT). */
void jq_mutex_wait(jq_mutex *m, pthread_cond_t *cv);
int jq_mutex_timedwait(jq_mutex *m, pthread_cond_t *cv, const struct timespec *abstime);

/* jq_mutex_held: the calling thread holds m. */
bool jq_mutex_held(const jq_mutex *m);

/* JQ_ASSERT_HELD(m): the calling thread holds m. */
#define JQ_ASSERT_HELD(m) assert(jq_mutex_held(m))

#endif
