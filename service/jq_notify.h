/*
 * jq_notify — turns PostgreSQL notifications into announcements on the PUB socket.
 *
 * One thread with its own libpq session (cfg->listen_database_url, never the pool: LISTEN needs a
 * session, so it must go straight to PostgreSQL even when the pool goes through PgBouncer) runs
 * LISTEN jobq_pending and parses each payload (format: migrations/sql/007-jobq_notify_pending.sql).
 * Jobs that are due now are announced at once, unless their queue is paused (jq_flow); a job scheduled for later arms a timer, and when it
 * fires the module asks the database which queues have due pending jobs and announces those.
 * After (re)connecting it does the same catch-up, because notifications sent while it was away
 * are gone. The thread never touches the RPC path.
 * It also LISTENs jobq_stop (a running job cancelled: "C <queue> <id> <token>"), which it
 * publishes as "cancel.<queue>", and jobq_done (a job somebody waits for ended: "<id>"), which it
 * hands to the finished hook (changes/017-running-jobs.yaml). Notifications missed while it was
 * away are not caught up: a worker hears of a cancel at its next heartbeat anyway, and the
 * listening hook sends every Wait to look again.
 *
 * A connection that goes silent (no error, no answer) must not leave the long-poll believing it
 * hears announcements: every statement on the session is awaited for cfg->listen_timeout_ms
 * (also the session's statement_timeout) plus a second, and the safety-net scan every 5 s is the
 * probe. Without an answer in time the listener drops the session, reports not listening (the
 * long-poll then sends every Claim to the database, /readyz fails with the reason) and
 * reconnects; the connection itself has TCP keepalives and a user timeout (jq_pgconn).
 *
 * The module owns its connection, thread and wake-up descriptor; it borrows cfg and pub, which
 * must outlive it.
 */
#ifndef JQ_NOTIFY_H
#define JQ_NOTIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "jq_config.h"
#include "jq_flow.h"
#include "jq_publisher.h"

typedef struct jq_notify jq_notify;

/* What the listener tells the long-poll, on the listener thread. Either function may be NULL. */
typedef struct jq_notify_hooks {
	/* A queue was announced. jobs: how many jobs the announcement lists, or 0 when it does not
	 * say (a rescan, a '*' line): then every waiter of the queue must look. */
	void (*announced)(void *arg, const char *queue, size_t jobs);
	/* LISTEN took effect (true; the catch-up scan follows) or the session ended (false): from
	 * here on, or until here, notifications may have been missed. */
	void (*listening)(void *arg, bool on);
	/* A job somebody waits for has ended (channel jobq_done, migration 017). */
	void (*finished)(void *arg, int64_t id);
	void *arg;
} jq_notify_hooks;

/* jq_notify_start starts the thread; it connects (and keeps reconnecting) by itself, so a
 * database that is down at start-up is not an error. hooks may be NULL; they are copied. flow
 * (borrowed, may be NULL) receives the queues' flow settings: the table after each LISTEN, then
 * each change ('Q' lines); nothing is announced of a queue it says is paused.
 * Returns 0, or -1. */
int jq_notify_start(const jq_config *cfg, jq_publisher *pub, const jq_notify_hooks *hooks,
		    jq_flow *flow, jq_notify **out) __attribute__((warn_unused_result));

/* jq_notify_stop wakes the thread, waits for it, closes the connection, frees. NULL is a no-op. */
void jq_notify_stop(jq_notify *n);

/* jq_notify_listening: true while LISTEN is in effect on a live connection (for /readyz). */
bool jq_notify_listening(const jq_notify *n);

/* jq_notify_health: jq_notify_listening, and when it is false, one line in why saying why and
 * for how long ("due queues: no answer within 11000 ms; reconnecting (for 2300 ms)"). NULL:
 * false. */
bool jq_notify_health(jq_notify *n, char *why, size_t cap);

/* Totals since start, for metrics and tests. */
int64_t jq_notify_received(const jq_notify *n);  /* notifications read from PostgreSQL */
int64_t jq_notify_announced(const jq_notify *n); /* messages published */
int64_t jq_notify_scans(const jq_notify *n);     /* table scans done: safety net, timer, "*" */

/* jq_notify_delay_ms: how long the timer waits for a time the database gave as decimal text:
 * a Unix time in ms ("L" lines) when now_real_ms >= 0, else ms from now (the next-due query).
 * 0 and *delay_ms within [0 ms, 1 day] (later times are re-read by the safety-net scans), or -1
 * for text that is not such a number (nothing is armed). Exposed for tests. */
int jq_notify_delay_ms(const char *text, int64_t now_real_ms, int64_t *delay_ms);

/* The safety-net scan's two queries (static text; for tests that EXPLAIN them). */
const char *jq_notify_due_queues_sql(void);
const char *jq_notify_next_due_sql(void);

#endif
