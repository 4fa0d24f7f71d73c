/*
 * jq_flow — what this jobqd knows of each queue's flow settings (pause, concurrency limit, rate
 * limit; migration 015), for the two decisions that are hints and may lag the database by a
 * notification: whether to announce a queue (jq_notify announces nothing of a paused queue) and
 * how soon a waiting Claim of a limited queue looks again without an announcement (jq_longpoll).
 * The limits themselves are enforced by the claim statement in the database, never here.
 *
 * The listener (jq_notify) fills it: the whole table after each (re)connect, then one queue per
 * 'Q' line of a notification. Any thread may read it. The table holds only queues with settings,
 * sorted by name (binary search); its size follows the configured queues.
 *
 * The caller owns the jq_flow (jq_flow_new / jq_flow_free); every call is thread-safe.
 */
#ifndef JQ_FLOW_H
#define JQ_FLOW_H

#include <stdbool.h>
#include <stdint.h>

#include "jq_db.h"

typedef struct jq_flow jq_flow;

/* How long a waiting Claim of a concurrency-limited queue waits before it looks again, when no
 * completion on this replica woke it (slots freed on another replica, or by the rescuer, are not
 * announced). */
#define JQ_FLOW_SLOT_RETRY_MS 250
/* The longest a waiting Claim of a rate-limited queue waits for its next window. */
#define JQ_FLOW_RATE_RETRY_MAX_MS 250

int jq_flow_new(jq_flow **out) __attribute__((warn_unused_result));
void jq_flow_free(jq_flow *f);

/* jq_flow_set records queue's settings; settings with nothing set (not paused, no limit) remove
 * the queue. Returns 0, or -1 when out of memory (the queue is then removed: unknown). */
int jq_flow_set(jq_flow *f, const char *queue, const jq_queue_flow *s);

/* jq_flow_clear forgets every queue (before the table is read again). */
void jq_flow_clear(jq_flow *f);

/* jq_flow_parse reads the rest of a 'Q' line, "<queue> <paused 0|1> <limit|-> <rate|-> <period|->
 * [<key limit>]" (sql/019-jobq_notify_settings.sql), into queue (JQ_DB_QUEUE_MAX + 1 bytes) and *s. 0, or -1
 * for a line that is not one. */
int jq_flow_parse(const char *text, char *queue, jq_queue_flow *s);

bool jq_flow_paused(jq_flow *f, const char *queue);

/* jq_flow_limited: the queue has a concurrency or key limit (a completion frees a slot). */
bool jq_flow_limited(jq_flow *f, const char *queue);

/* jq_flow_retry_ms: how long a Claim of queue that found nothing may wait before it looks again
 * without an announcement, at Unix time now_ms: 0 when an announcement will come (no limit, or
 * paused: Resume announces). A rate-limited queue looks again when the next window starts (on
 * this clock, so at most JQ_FLOW_RATE_RETRY_MAX_MS: the database's may differ), a
 * concurrency- or key-limited one after JQ_FLOW_SLOT_RETRY_MS. */
int jq_flow_retry_ms(jq_flow *f, const char *queue, int64_t now_ms);

/* jq_flow_count: queues with settings (tests). */
int jq_flow_count(jq_flow *f);

#endif
