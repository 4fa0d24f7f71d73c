#include "jq_scheduler.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jq_clock.h"
#include "jq_log.h"
#include "jq_metrics.h"

#define DUE_BATCH 100
#define MAX_SLEEP_MS 1000 /* how soon a schedule added on another replica is seen */
#define MIN_SLEEP_MS 5
#define ERROR_SLEEP_MS 1000
/* Wall-clock candidates tried for one tick before giving up: more than one is needed only
 * around a clock change, where a candidate may map to an instant not after the previous tick. */
#define MAX_CANDIDATES 16

struct jq_scheduler {
	const jq_config *cfg;
	jq_db *db;
	pthread_t thread;
	pthread_mutex_t stop_mu;
	pthread_cond_t stop_cv;
	bool stop;
	_Atomic int64_t ticks, missed, schedules, lateness_us;
	jq_log_limiter log; /* only the scheduler's thread logs through it */
};

jq_code jq_scheduler_next(jq_db *db, const jq_cron *c, const char *zone, int64_t after_local_s,
			  int64_t floor_us, int64_t *next_us, jq_db_err *err)
{
	jq_cron_time t, n;
	jq_cron_time_from_seconds(after_local_s, &t);
	for (int i = 0; i < MAX_CANDIDATES && jq_cron_next(c, &t, &n); i++) {
		jq_code code = jq_db_zone_instant(db, zone, jq_cron_time_to_seconds(&n), next_us, err);
		if (code != JQ_OK)
			return code;
		if (*next_us > floor_us)
			return JQ_OK;
		t = n;
	}
	snprintf(err->msg, sizeof(err->msg), "the expression has no tick within ten years");
	err->sqlstate[0] = '\0';
	return JQ_FAILED_PRECONDITION;
}

/* wait_ms sleeps until the timeout or a stop request; returns true when asked to stop. */
static bool wait_ms(jq_scheduler *s, int64_t ms)
{
	struct timespec ts = jq_clock_timespec_us(jq_clock_mono_us() + ms * 1000);
	pthread_mutex_lock(&s->stop_mu);
	while (!s->stop) {
		if (pthread_cond_timedwait(&s->stop_cv, &s->stop_mu, &ts) == ETIMEDOUT)
			break;
	}
	bool stop = s->stop;
	pthread_mutex_unlock(&s->stop_mu);
	return stop;
}

/* run_due handles one due schedule: its tick on time (within the grace), or its missed ticks
 * by its policy. Returns 0, or -1 after logging. */
static int run_due(jq_scheduler *s, const jq_due_schedule *d)
{
	jq_cron c;
	jq_db_err err;
	char why[200], queue[JQ_DB_QUEUE_MAX + 1];
	int64_t next_us, job_id;
	bool won;

	if (jq_cron_parse(d->cron, &c, why, sizeof(why)) != 0) {
		jq_log_limited(&s->log, JQ_LOG_WARN, "scheduler: schedule %s: cron '%s': %s", d->name, d->cron, why);
		return -1;
	}
	int64_t late_us = d->now_us - d->tick_us;
	bool missed = late_us > (int64_t)JQ_SCHEDULE_GRACE_S * 1000000;
	bool enqueue = !missed || strcmp(d->missed, "once") == 0;
	int64_t run_at_us = missed ? d->now_us : d->tick_us;
	jq_code code = missed ? jq_scheduler_next(s->db, &c, d->time_zone, d->now_local_s, d->now_us, &next_us, &err)
			      : jq_scheduler_next(s->db, &c, d->time_zone, d->tick_local_s, d->tick_us, &next_us, &err);
	if (code == JQ_OK)
		code = jq_db_schedule_tick(s->db, d->name, d->tick_us, next_us, enqueue, run_at_us, &won, &job_id,
					   queue, &err);
	if (code != JQ_OK) {
		jq_log_limited(&s->log, JQ_LOG_WARN, "scheduler: schedule %s: %s", d->name, err.msg);
		return -1;
	}
	if (!won)
		return 0; /* another replica took this tick */
	if (job_id > 0) {
		jq_metrics_jobs(queue, JQ_METRICS_ENQUEUED, 1);
		atomic_fetch_add(&s->ticks, 1);
		atomic_store(&s->lateness_us, late_us);
	}
	if (missed) {
		atomic_fetch_add(&s->missed, 1);
		jq_info("scheduler: schedule %s missed its ticks since %.3f s ago (policy %s)%s", d->name,
			(double)late_us / 1e6, d->missed, job_id > 0 ? "; one job enqueued for them" : "");
	}
	if (job_id > 0)
		jq_debug("scheduler: schedule %s: job %" PRId64 " enqueued in queue %s", d->name, job_id, queue);
	return 0;
}

/* pass runs every due schedule; returns -1 when something failed (logged). */
static int pass(jq_scheduler *s)
{
	int n, rc = 0;
	do {
		jq_db_rows *rows = NULL;
		jq_db_err err;
		jq_code c = jq_db_schedules_due(s->db, DUE_BATCH, &rows, &err);
		if (c != JQ_OK) {
			jq_log_limited(&s->log, JQ_LOG_WARN, "scheduler: %s", err.msg);
			return -1;
		}
		n = jq_db_rows_count(rows);
		for (int i = 0; i < n; i++) {
			jq_due_schedule d;
			jq_db_rows_due(rows, i, &d);
			if (run_due(s, &d) != 0)
				rc = -1;
		}
		jq_db_rows_free(rows);
	} while (n == DUE_BATCH && rc == 0);
	return rc;
}

/* sleep_for: how long to wait for the nearest tick, at most MAX_SLEEP_MS. */
static int64_t sleep_for(jq_scheduler *s)
{
	int64_t count, in_ms;
	jq_db_err err;
	if (jq_db_schedule_soonest(s->db, &count, &in_ms, &err) != JQ_OK) {
		jq_log_limited(&s->log, JQ_LOG_WARN, "scheduler: %s", err.msg);
		return ERROR_SLEEP_MS;
	}
	atomic_store(&s->schedules, count);
	if (in_ms > MAX_SLEEP_MS)
		return MAX_SLEEP_MS;
	return in_ms < MIN_SLEEP_MS ? MIN_SLEEP_MS : in_ms;
}

static void *scheduler_main(void *arg)
{
	jq_scheduler *s = arg;
	int64_t ms;
	do {
		if (pass(s) != 0) {
			ms = ERROR_SLEEP_MS;
			continue;
		}
		jq_log_limited_end(&s->log);
		ms = sleep_for(s);
	} while (!wait_ms(s, ms));
	return NULL;
}

int jq_scheduler_start(const jq_config *cfg, jq_scheduler **out)
{
	jq_scheduler *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return -1;
	s->cfg = cfg;
	s->log = (jq_log_limiter)JQ_LOG_LIMITER(JQ_LOG_REPEAT_MS);
	atomic_store(&s->schedules, -1);
	jq_pgconn_net net = jq_pgconn_net_of(cfg);
	jq_db_opts o = { .url = cfg->database_url, .prepared = cfg->db_prepared,
			 .backoff_base_ms = cfg->backoff_base_ms, .backoff_max_ms = cfg->backoff_max_ms,
			 .statement_timeout_ms = 60000, .application_name = "jobqd-scheduler", .net = &net };
	if (jq_db_open(&o, &s->db) != 0)
		goto fail;
	pthread_mutex_init(&s->stop_mu, NULL);
	if (jq_clock_cond_init(&s->stop_cv) != 0) {
		pthread_mutex_destroy(&s->stop_mu);
		goto fail;
	}
	if (pthread_create(&s->thread, NULL, scheduler_main, s) != 0) {
		pthread_cond_destroy(&s->stop_cv);
		pthread_mutex_destroy(&s->stop_mu);
		goto fail;
	}
	*out = s;
	return 0;
fail:
	jq_db_close(s->db);
	free(s);
	return -1;
}

void jq_scheduler_stop(jq_scheduler *s)
{
	if (s == NULL)
		return;
	pthread_mutex_lock(&s->stop_mu);
	s->stop = true;
	pthread_cond_signal(&s->stop_cv);
	pthread_mutex_unlock(&s->stop_mu);
	pthread_join(s->thread, NULL);
	pthread_cond_destroy(&s->stop_cv);
	pthread_mutex_destroy(&s->stop_mu);
	jq_db_close(s->db);
	free(s);
}

int64_t jq_scheduler_ticks(const jq_scheduler *s)
{
	return atomic_load(&((jq_scheduler *)s)->ticks);
}

int64_t jq_scheduler_missed(const jq_scheduler *s)
{
	return atomic_load(&((jq_scheduler *)s)->missed);
}

double jq_scheduler_lateness_seconds(const jq_scheduler *s)
{
	return (double)atomic_load(&((jq_scheduler *)s)->lateness_us) / 1e6;
}

int64_t jq_scheduler_schedules(const jq_scheduler *s)
{
	return atomic_load(&((jq_scheduler *)s)->schedules);
}
