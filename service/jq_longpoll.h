/*
 * jq_longpoll — Claim requests that wait for work (ClaimRequest.wait_ms).
 *
 * A Claim that finds nothing is parked here: a small record, no thread and no database
 * connection per waiter, and no receiving context of the RPC server (jq_rpc_req_wait). At most
 * max_waiting wait at once; a Claim past that, or of an implausible size, is answered at once
 * with no jobs and ClaimResponse.retry_after_ms, so idle workers cannot grow the replica's
 * memory without bound. When the notification path announces jobs of its queue, the waiter is
 * put back on the RPC work queue and claims again; when its wait ends, it is answered with no
 * jobs. An announcement that lands between the empty claim and the parking is not lost: the
 * caller passes the generation it read before claiming, and a wake of its queue since then sends
 * the request straight back.
 *
 * A Claim need not even ask the database when its queue is known to be empty here: a Claim of it
 * came back short, and every job announced since (the notifications list them) has been claimed
 * here (or will be by the Claims querying now). Such a Claim parks at once
 * (jq_longpoll_claim_begin). The count can be too low, and a job left waiting, only when a job
 * becomes claimable without being announced:
 *  - a claim elsewhere locked pending jobs (SKIP LOCKED hides them from ours) and then failed,
 *    so they stay pending;
 *  - a job's run_at passed (the listener's timer announces it, without a count);
 *  - the notify triggers were disabled.
 * Then the listener's safety-net scan (every few seconds) announces the queue without a count,
 * which makes it unknown again. While the listener is not listening nothing is known, and every
 * Claim asks the database.
 *
 * Ownership: a parked request belongs to the long-poll until it is requeued or answered.
 * Shutdown is two steps: jq_longpoll_stop answers every waiter and makes later parks answer at
 * once (run it before jq_rpc_server_stop, which waits for every request); jq_longpoll_free after
 * the RPC server has stopped, when no worker can park any more.
 */
#ifndef JQ_LONGPOLL_H
#define JQ_LONGPOLL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "jq_rpc_server.h"

typedef struct jq_longpoll jq_longpoll;

/* jq_longpoll_start starts the expiry thread; at most max_waiting Claims park at once (0: none
 * waits). Returns 0, or -1. */
int jq_longpoll_start(int max_waiting, jq_longpoll **out) __attribute__((warn_unused_result));

/* jq_longpoll_stop answers every waiter with an empty response and stops the thread. */
void jq_longpoll_stop(jq_longpoll *lp);

/* jq_longpoll_free releases lp (stopping it first if needed). NULL is a no-op. */
void jq_longpoll_free(jq_longpoll *lp);

/* jq_longpoll_generation: read before claiming; pass to jq_longpoll_park. */
uint64_t jq_longpoll_generation(jq_longpoll *lp);

/* jq_longpoll_park keeps req, a Claim of up to `limit` jobs, until a job of queue is announced or
 * until until_us (jq_clock_mono_us clock), then requeues or answers it. Takes ownership of req in
 * every case. */
void jq_longpoll_park(jq_longpoll *lp, jq_rpc_req *req, const char *queue, int limit,
		      int64_t until_us, uint64_t generation);

/* jq_longpoll_wake requeues waiters of queue, the longest-waiting first, until their limits add up
 * to `jobs` (the jobs just announced); jobs == 0 requeues all of them. Waking only as many as the
 * work needs keeps one enqueued job from sending every idle worker's Claim to the database (all
 * but one would come back empty). Requests claiming at that moment are not parked and see the
 * wake through the generation (jq_longpoll_park), so no announced job is left unseen. */
void jq_longpoll_wake(jq_longpoll *lp, const char *queue, size_t jobs);

/* jq_longpoll_claim_begin is called before a Claim of up to `limit` jobs queries. True: the
 * queue is known to have no job this Claim could get (none, or only as many as Claims querying
 * now will take); a Claim that may wait then parks without a query, and is counted as such
 * (jq_longpoll_unqueried). False: query, and call jq_longpoll_claim_end afterwards. */
bool jq_longpoll_claim_begin(jq_longpoll *lp, const char *queue, size_t limit, bool may_wait);

/* jq_longpoll_known_empty is jq_longpoll_claim_begin for a waiting Claim of up to `limit` jobs
 * that will not query now either way (jobqd's receiving thread): true, counted, when the Claim is
 * to park; false reserves nothing. */
bool jq_longpoll_known_empty(jq_longpoll *lp, const char *queue, size_t limit);

/* jq_longpoll_claim_end records the outcome of a Claim that queried: `got` of `limit` jobs, or
 * !ok for a failed query. `generation` was read before jq_longpoll_claim_begin. A short answer
 * with no announcement of the queue since makes the queue known empty; jobs claimed are taken
 * off what was announced; a failed query makes the queue unknown and its waiters look again. */
void jq_longpoll_claim_end(jq_longpoll *lp, const char *queue, uint64_t generation, size_t limit,
			   size_t got, bool ok);

/* jq_longpoll_listening tells whether announcements arrive (the listener's LISTEN is in effect).
 * Either way what was known is forgotten: notifications may have been missed. */
void jq_longpoll_listening(jq_longpoll *lp, bool on);

/* jq_longpoll_refused: Claims answered at once because max_waiting were parked (metrics). */
int64_t jq_longpoll_refused(jq_longpoll *lp);

/* jq_longpoll_unqueried: Claims parked without asking the database (metrics). */
int64_t jq_longpoll_unqueried(jq_longpoll *lp);

/* jq_longpoll_waiting: how many requests are parked (metrics, tests). */
int jq_longpoll_waiting(jq_longpoll *lp);

/* jq_longpoll_woken: how many parked requests announcements have requeued so far (metrics). */
int64_t jq_longpoll_woken(jq_longpoll *lp);

#endif
