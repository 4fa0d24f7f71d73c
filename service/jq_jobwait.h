/*
 * jq_jobwait — Wait requests that wait for jobs to finish (WaitRequest.wait_ms).
 *
 * The life of a waiting Wait: the handler reads jq_jobwait_generation, marks its jobs (so that
 * their end is notified: migration 017's job_queue_notify_done) and reads them; when some are
 * unfinished and time is left, the dispatcher hands the request to jq_jobwait_park. It waits here
 * (a small record, no thread, no database connection, no receiving context) until the listener
 * reports one of its jobs finished (jq_jobwait_finished), the listener's session starts again
 * (notifications may have been missed), or its wait ends; each puts it back on the RPC work queue
 * and the handler runs again, and answers once its jobs are finished or its time is up. A job
 * reported finished between the handler's read and the park is not missed: the generation read
 * before the query says so, and the request goes straight back.
 *
 * At most max_waiting wait at once; a Wait past that is answered at once with no jobs and
 * WaitResponse.retry_after_ms. Ownership: a parked request belongs to this module until it is
 * requeued or answered. jq_jobwait_stop answers every waiter UNAVAILABLE and makes later parks
 * answer at once (run it before jq_rpc_server_stop); jq_jobwait_free after the server stopped.
 */
#ifndef JQ_JOBWAIT_H
#define JQ_JOBWAIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "jq_rpc_server.h"

#define JQ_JOBWAIT_MAX_IDS 100

typedef struct jq_jobwait jq_jobwait;

/* jq_jobwait_start starts the expiry thread; max_waiting Waits may wait at once. 0, or -1. */
int jq_jobwait_start(int max_waiting, jq_jobwait **out) __attribute__((warn_unused_result));
void jq_jobwait_stop(jq_jobwait *jw);
/* jq_jobwait_free stops jw if needed and frees it. NULL is a no-op. */
void jq_jobwait_free(jq_jobwait *jw);

/* jq_jobwait_generation: how many job ends were reported so far; read before the query. */
uint64_t jq_jobwait_generation(jq_jobwait *jw);

/* jq_jobwait_park keeps req, a Wait for ids[n] (n <= JQ_JOBWAIT_MAX_IDS; copied), until one of
 * them is reported finished or until_us (jq_clock_mono_us; cut a little before the request's
 * deadline), then requeues it; at once when one of them was reported since generation. Takes
 * ownership of req in every case. */
void jq_jobwait_park(jq_jobwait *jw, jq_rpc_req *req, const int64_t *ids, size_t n,
		     uint64_t generation, int64_t until_us);

/* jq_jobwait_finished: the listener heard that job id finished; its waiters go back to work. */
void jq_jobwait_finished(jq_jobwait *jw, int64_t id);

/* jq_jobwait_listening: the listener's session started (true) or ended; either way every waiter
 * looks again, since notifications may have been missed. */
void jq_jobwait_listening(jq_jobwait *jw, bool on);

/* Metrics and tests: Waits waiting now; Waits answered at once because max_waiting waited. */
int jq_jobwait_waiting(jq_jobwait *jw);
int64_t jq_jobwait_refused(jq_jobwait *jw);

#endif
