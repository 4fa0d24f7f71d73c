/*
 * jq_scheduler — the ticker of periodic jobs (job_schedule) that every replica runs: it wakes
 * at the nearest tick (at most a second apart, so a schedule added on another replica is seen
 * within a second), and for each due schedule enqueues the tick's job and moves next_run_at on,
 * in one statement that only one replica can win per tick (jq_db_schedule_tick). Like the
 * rescuer it has its own thread and database connection and never touches the RPC path.
 *
 * A tick found more than JQ_SCHEDULE_GRACE_S late is missed (no replica ran, or the database was
 * away): the schedule's policy says whether one job is enqueued for all its missed ticks
 * ("once") or none ("skip"); either way it goes on with the first tick after now.
 */
#ifndef JQ_SCHEDULER_H
#define JQ_SCHEDULER_H

#include <stdint.h>

#include "jq_config.h"
#include "jq_cron.h"
#include "jq_db.h"

#define JQ_SCHEDULE_GRACE_S 60

typedef struct jq_scheduler jq_scheduler;

/* jq_scheduler_start starts the thread. cfg must outlive the scheduler. Returns 0, or -1. */
int jq_scheduler_start(const jq_config *cfg, jq_scheduler **out) __attribute__((warn_unused_result));

/* jq_scheduler_stop wakes the thread, waits for it and frees everything. NULL is a no-op. */
void jq_scheduler_stop(jq_scheduler *s);

/* Figures for metrics: jobs enqueued by this replica's ticks, missed ticks it handled (their
 * schedule moved past them), the lateness of its last enqueued tick (seconds after the tick
 * time), and the schedules counted at its last look (-1 before the first). */
int64_t jq_scheduler_ticks(const jq_scheduler *s);
int64_t jq_scheduler_missed(const jq_scheduler *s);
double jq_scheduler_lateness_seconds(const jq_scheduler *s);
int64_t jq_scheduler_schedules(const jq_scheduler *s);

/* jq_scheduler_next: the instant (Unix µs) of c's first tick after wall-clock time after_local_s
 * of zone (jq_cron_time_to_seconds) that also lies after instant floor_us; the zone's times are
 * made instants by the database (jq_db_zone_instant). JQ_FAILED_PRECONDITION when there is no
 * tick within ten years. For AddSchedule and the ticker alike. */
jq_code jq_scheduler_next(jq_db *db, const jq_cron *c, const char *zone, int64_t after_local_s,
			  int64_t floor_us, int64_t *next_us, jq_db_err *err) __attribute__((warn_unused_result));

#endif
