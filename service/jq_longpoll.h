/*
 * jq_longpoll — Claim requests that wait for work (ClaimRequest.wait_ms).
 *
 * A Claim that finds nothing is parked here: a small record, no thread and no database
 * connection per waiter. When the notification path announces jobs of its queue, the waiter is
 * put back on the RPC work queue and claims again; when its wait ends, it is answered with no
 * jobs. An announcement that lands between the empty claim and the parking is not lost: the
 * caller passes the generation it read before claiming, and a wake of its queue since then sends
 * the request straight back.
 *
 * Ownership: a parked request belongs to the long-poll until it is requeued or answered.
 * Shutdown is two steps: jq_longpoll_stop answers every waiter and makes later parks answer at
 * once (run it before jq_rpc_server_stop, which waits for every request); jq_longpoll_free after
 * the RPC server has stopped, when no worker can park any more.
 */
#ifndef JQ_LONGPOLL_H
#define JQ_LONGPOLL_H

#include <stdint.h>

#include "jq_rpc_server.h"

typedef struct jq_longpoll jq_longpoll;

/* jq_longpoll_start starts the expiry thread. Returns 0, or -1. */
int jq_longpoll_start(jq_longpoll **out) __attribute__((warn_unused_result));

/* jq_longpoll_stop answers every waiter with an empty response and stops the thread. */
void jq_longpoll_stop(jq_longpoll *lp);

/* jq_longpoll_free releases lp (stopping it first if needed). NULL is a no-op. */
void jq_longpoll_free(jq_longpoll *lp);

/* jq_longpoll_generation: read before claiming; pass to jq_longpoll_park. */
uint64_t jq_longpoll_generation(jq_longpoll *lp);

/* jq_longpoll_park keeps req, a Claim of up to `limit` jobs, until a job of queue is announced or
 * until until_us (jq_rpc_now_us clock), then requeues or answers it. Takes ownership of req in
 * every case. */
void jq_longpoll_park(jq_longpoll *lp, jq_rpc_req *req, const char *queue, int limit,
		      int64_t until_us, uint64_t generation);

/* jq_longpoll_wake requeues waiters of queue, the longest-waiting first, until their limits add up
 * to `jobs` (the jobs just announced); jobs == 0 requeues all of them. Waking only as many as the
 * work needs keeps one enqueued job from sending every idle worker's Claim to the database (all
 * but one would come back empty). Requests claiming at that moment are not parked and see the
 * wake through the generation (jq_longpoll_park), so no announced job is left unseen. */
void jq_longpoll_wake(jq_longpoll *lp, const char *queue, size_t jobs);

/* jq_longpoll_waiting: how many requests are parked (metrics, tests). */
int jq_longpoll_waiting(jq_longpoll *lp);

/* jq_longpoll_woken: how many parked requests announcements have requeued so far (metrics). */
int64_t jq_longpoll_woken(jq_longpoll *lp);

#endif
