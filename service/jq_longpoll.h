/*
 * jq_longpoll — Claim requests that wait for work (ClaimRequest.wait_ms), from the Claim's first
 * query to its answer. Everything about a Claim's waiting is decided here: whether it may wait,
 * whether it needs to ask the database at all, how long it waits, what wakes it, and the answer
 * it gets when its wait ends.
 *
 * The life of a waiting Claim:
 *  1. The Claim handler calls jq_longpoll_claim_start (a jq_longpoll_claim follows the Claim),
 *     then jq_longpoll_claim_begin before its query and jq_longpoll_claim_end after it. Either
 *     may say that the Claim waits: begin when its queue is known to be empty (no query),
 *     end when the query found nothing.
 *  2. The dispatcher, told so by the handler, hands the request to jq_longpoll_wait and forgets
 *     it. On nng's receiving thread, the dispatcher's quick look does the same for a Claim of a
 *     known-empty queue (jq_longpoll_claim_known_empty), so that it never takes a worker.
 *  3. The request waits here: a small record, no thread and no database connection per waiter,
 *     and no receiving context of the RPC server (jq_rpc_req_wait). At most max_waiting wait at
 *     once; a Claim past that, or of an implausible size, is answered at once with no jobs and
 *     ClaimResponse.retry_after_ms, so idle workers cannot grow the replica's memory without
 *     bound.
 *  4. When the notification path announces jobs of its queue (jq_longpoll_wake), the request is
 *     put back on the RPC work queue (jq_rpc_req_requeue) and the handler runs again, from 1;
 *     the wait still counts from the request's arrival. When its wait ends first, it is answered
 *     here with no jobs. An announcement that lands between the empty claim and the wait is not
 *     lost: jq_longpoll_claim_start reads the generation before the query, and a wake of the
 *     queue since then sends the request straight back. A Claim of a queue with a concurrency
 *     or rate limit (jq_longpoll_claim_retry) is also sent back after a short retry time.
 *
 * A Claim need not even ask the database when its queue is known to be empty here: a Claim of it
 * came back short, and every job announced since (the notifications list them) has been claimed
 * here (or will be by the Claims querying now). The count can be too low, and a job left waiting,
 * only when a job becomes claimable without being announced:
 *  - a claim elsewhere locked pending jobs (SKIP LOCKED hides them from ours) and then failed,
 *    so they stay pending;
 *  - a job's run_at passed (the listener's timer announces it, without a count);
 *  - the notify triggers were disabled.
 * Then the listener's safety-net scan (every few seconds) announces the queue without a count,
 * which makes it unknown again. While the listener is not listening nothing is known, and every
 * Claim asks the database.
 *
 * A Complete or Fail that claims the next jobs waits the same way, once its completion is done;
 * its answers here are its request's note (jq_longpoll_claim.after_completion).
 *
 * Ownership: a request given to jq_longpoll_wait belongs to the long-poll until it is requeued or
 * answered. Shutdown is two steps: jq_longpoll_stop answers every waiter and makes later waits
 * answer at once (run it before jq_rpc_server_stop, which waits for every request);
 * jq_longpoll_free after the RPC server has stopped, when no worker can hand over a request.
 */
#ifndef JQ_LONGPOLL_H
#define JQ_LONGPOLL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "jq_rpc_server.h"

/* The longest queue name (jq_validate's), as kept by a waiting Claim. */
#define JQ_LONGPOLL_QUEUE_MAX 64

typedef struct jq_longpoll jq_longpoll;

/* One Claim as the long-poll follows it (filled by jq_longpoll_claim_start; read by nothing
 * else). */
typedef struct jq_longpoll_claim {
	jq_longpoll *lp; /* NULL: this Claim never waits */
	char queue[JQ_LONGPOLL_QUEUE_MAX + 1];
	int limit;           /* the jobs it asks for: how many announced jobs it covers */
	int64_t until_us;    /* when its wait ends (arrival + wait_ms); 0 = it does not wait */
	uint64_t generation; /* the long-poll's, read before the Claim queries */
	int retry_ms;        /* a limited queue's: look again this long after parking; 0 = none */
	/* The claim of a Complete or Fail (their `claim`), whose request carries the results of its
	 * completion as its note (jq_rpc_req_set_note): the answers given here are that note, with
	 * retry_after_ms in field JQ_LONGPOLL_NEXT_RETRY_FIELD when the Claim may not wait. false
	 * (jq_longpoll_claim_start's): a Claim, answered with a ClaimResponse. */
	bool after_completion;
} jq_longpoll_claim;

/* The field number of retry_after_ms in CompleteResponse and FailResponse. */
#define JQ_LONGPOLL_NEXT_RETRY_FIELD 11

/* jq_longpoll_start starts the expiry thread; at most max_waiting Claims wait at once (0: none
 * waits). Returns 0, or -1. */
int jq_longpoll_start(int max_waiting, jq_longpoll **out) __attribute__((warn_unused_result));

/* jq_longpoll_stop answers every waiter with an empty response and stops the thread. */
void jq_longpoll_stop(jq_longpoll *lp);

/* jq_longpoll_free releases lp (stopping it first if needed). NULL is a no-op. */
void jq_longpoll_free(jq_longpoll *lp);

/* jq_longpoll_claim_start begins following a valid Claim of up to limit jobs of queue, received
 * at received_us (jq_clock_mono_us) and willing to wait wait_ms (0: it does not wait). lp NULL:
 * the Claim never waits, and the calls below say so. */
void jq_longpoll_claim_start(jq_longpoll *lp, jq_longpoll_claim *c, const char *queue, int limit,
			     int64_t received_us, uint32_t wait_ms);

/* jq_longpoll_claim_retry marks a started Claim as one of a queue whose flow limits the database
 * applies (jq_flow_retry_ms > 0): an empty answer then says nothing of the queue's jobs (the limit
 * may have held them back), so the queue is never known empty for it and it always queries; and
 * when it waits, it is sent back to the database after retry_ms even if nothing is announced
 * (freed slots and a new rate window are not announced), besides the usual wakes. */
void jq_longpoll_claim_retry(jq_longpoll_claim *c, int retry_ms);

/* jq_longpoll_claim_begin is called before the Claim queries. True: its queue is known to have no
 * job it could get (none, or only as many as Claims querying now will take), and it may wait:
 * it waits without a query (counted: jq_longpoll_unqueried); hand the request to
 * jq_longpoll_wait. False: query, then call jq_longpoll_claim_end. */
bool jq_longpoll_claim_begin(const jq_longpoll_claim *c);

/* jq_longpoll_claim_end records the outcome of the query: `got` jobs, or !ok for a query that
 * failed or that the reply budget cut short (jobs were left that no announcement will name). A
 * short answer with no announcement of the queue since makes the queue known empty; jobs claimed
 * are taken off what was announced; a failed or cut query makes the queue unknown and sends its
 * waiters to look. True: the Claim found nothing and may wait; hand the request to
 * jq_longpoll_wait. */
bool jq_longpoll_claim_end(const jq_longpoll_claim *c, size_t got, bool ok);

/* jq_longpoll_claim_known_empty is jq_longpoll_claim_begin for a Claim that will not query now
 * either way (jobqd's receiving thread): true, counted, when it is to wait; false reserves
 * nothing (the Claim goes to a worker, which starts it again). */
bool jq_longpoll_claim_known_empty(const jq_longpoll_claim *c);

/* jq_longpoll_wait keeps req, the Claim c follows, until a job of its queue is announced or its
 * wait ends (a little before the request's deadline, so that it is answered with no jobs rather
 * than DEADLINE_EXCEEDED), then requeues or answers it. Takes ownership of req in every case. */
void jq_longpoll_wait(const jq_longpoll_claim *c, jq_rpc_req *req);

/* jq_longpoll_wake requeues waiters of queue, the longest-waiting first, until their limits add up
 * to `jobs` (the jobs just announced); jobs == 0 requeues all of them. Waking only as many as the
 * work needs keeps one enqueued job from sending every idle worker's Claim to the database (all
 * but one would come back empty). Claims querying at that moment are not waiting yet and see the
 * wake through their generation, so no announced job is left unseen. */
void jq_longpoll_wake(jq_longpoll *lp, const char *queue, size_t jobs);

/* jq_longpoll_listening tells whether announcements arrive (the listener's LISTEN is in effect).
 * Either way what was known is forgotten: notifications may have been missed. */
void jq_longpoll_listening(jq_longpoll *lp, bool on);

/* jq_longpoll_refused: Claims answered at once because max_waiting were waiting (metrics). */
int64_t jq_longpoll_refused(jq_longpoll *lp);

/* jq_longpoll_unqueried: Claims that waited without asking the database (metrics). */
int64_t jq_longpoll_unqueried(jq_longpoll *lp);

/* jq_longpoll_waiting: how many requests wait now (metrics, tests). */
int jq_longpoll_waiting(jq_longpoll *lp);

/* jq_longpoll_woken: how many waiting requests announcements have requeued so far (metrics). */
int64_t jq_longpoll_woken(jq_longpoll *lp);

#endif
