#include "jq_rescuer.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include "jq_clock.h"
#include "jq_db.h"
#include "jq_log.h"

#define RESCUE_BATCH 1000
#define RETENTION_BATCH 500
#define RETENTION_MAX_BATCHES 40 /* per sweep, so one sweep never runs for long */

struct jq_rescuer {
	const jq_config *cfg;
	jq_db *db;
	pthread_t thread;
	pthread_mutex_t stop_mu; /* stop, and the wait between sweeps */
	pthread_cond_t stop_cv;
	bool stop;
	_Atomic int64_t rescued, deleted, timed_out;
	/* Only the rescuer's thread logs through these: a database that is down fails every sweep. */
	jq_log_limiter rescue_log, retention_log;
};

/* rescue_sweep: false when the database failed it (logged). */
static bool rescue_sweep(jq_rescuer *r)
{
	int64_t n;
	jq_db_err err;
	do {
		jq_code c = jq_db_rescue(r->db, RESCUE_BATCH, &n, &err);
		if (c != JQ_OK) {
			jq_log_limited(&r->rescue_log, JQ_LOG_WARN, "rescuer: %s", err.msg);
			return false;
		}
		jq_log_limited_end(&r->rescue_log);
		if (n > 0) {
			atomic_fetch_add(&r->rescued, n);
			jq_info("rescuer: %lld job%s whose lease expired went back to the queue",
				(long long)n, n == 1 ? "" : "s");
		}
	} while (n == RESCUE_BATCH);
	return true;
}

/* time_limit_sweep fails the jobs that ran past their time limit (JobSpec.timeout_ms). */
static void time_limit_sweep(jq_rescuer *r)
{
	int64_t n;
	jq_db_err err;
	do {
		jq_code c = jq_db_time_limit(r->db, RESCUE_BATCH, &n, &err);
		if (c != JQ_OK) {
			jq_log_limited(&r->rescue_log, JQ_LOG_WARN, "time limits: %s", err.msg);
			return;
		}
		if (n > 0) {
			atomic_fetch_add(&r->timed_out, n);
			jq_info("rescuer: %lld job%s ran past the time limit and failed", (long long)n,
				n == 1 ? "" : "s");
		}
	} while (n == RESCUE_BATCH);
}

static void retention_sweep(jq_rescuer *r)
{
	int64_t n;
	jq_db_err err;
	for (int i = 0; i < RETENTION_MAX_BATCHES; i++) {
		jq_code c = jq_db_retention(r->db, r->cfg->retention_seconds, RETENTION_BATCH, &n, &err);
		if (c != JQ_OK) {
			jq_log_limited(&r->retention_log, JQ_LOG_WARN, "retention: %s", err.msg);
			return;
		}
		jq_log_limited_end(&r->retention_log);
		atomic_fetch_add(&r->deleted, n);
		if (n < RETENTION_BATCH)
			return;
	}
}

/* wait_ms sleeps until the timeout or a stop request; returns true when asked to stop. */
static bool wait_ms(jq_rescuer *r, int ms)
{
	struct timespec ts = jq_clock_timespec_us(jq_clock_mono_us() + (int64_t)ms * 1000);
	pthread_mutex_lock(&r->stop_mu);
	while (!r->stop) {
		if (pthread_cond_timedwait(&r->stop_cv, &r->stop_mu, &ts) == ETIMEDOUT)
			break;
	}
	bool stop = r->stop;
	pthread_mutex_unlock(&r->stop_mu);
	return stop;
}

static void *rescuer_main(void *arg)
{
	jq_rescuer *r = arg;
	int64_t next_retention = jq_clock_mono_ms();
	do {
		/* A database that failed the rescue is warned about once, not once per sweep. */
		if (rescue_sweep(r))
			time_limit_sweep(r);
		if (r->cfg->retention_seconds > 0 && jq_clock_mono_ms() >= next_retention) {
			retention_sweep(r);
			next_retention = jq_clock_mono_ms() + r->cfg->retention_interval_ms;
		}
	} while (!wait_ms(r, r->cfg->rescue_interval_ms));
	return NULL;
}

int jq_rescuer_start(const jq_config *cfg, jq_rescuer **out)
{
	jq_rescuer *r = calloc(1, sizeof(*r));
	if (r == NULL)
		return -1;
	r->cfg = cfg;
	r->rescue_log = r->retention_log = (jq_log_limiter)JQ_LOG_LIMITER(JQ_LOG_REPEAT_MS);
	jq_pgconn_net net = jq_pgconn_net_of(cfg);
	jq_db_opts o = { .url = cfg->database_url, .prepared = cfg->db_prepared,
			 .backoff_base_ms = cfg->backoff_base_ms, .backoff_max_ms = cfg->backoff_max_ms,
			 .statement_timeout_ms = 60000, .application_name = "jobqd-rescuer", .net = &net };
	if (jq_db_open(&o, &r->db) != 0)
		goto fail;
	pthread_mutex_init(&r->stop_mu, NULL);
	if (jq_clock_cond_init(&r->stop_cv) != 0) {
		pthread_mutex_destroy(&r->stop_mu);
		goto fail;
	}
	if (pthread_create(&r->thread, NULL, rescuer_main, r) != 0) {
		pthread_cond_destroy(&r->stop_cv);
		pthread_mutex_destroy(&r->stop_mu);
		goto fail;
	}
	*out = r;
	return 0;
fail:
	jq_db_close(r->db);
	free(r);
	return -1;
}

void jq_rescuer_stop(jq_rescuer *r)
{
	if (r == NULL)
		return;
	pthread_mutex_lock(&r->stop_mu);
	r->stop = true;
	pthread_cond_signal(&r->stop_cv);
	pthread_mutex_unlock(&r->stop_mu);
	pthread_join(r->thread, NULL);
	pthread_cond_destroy(&r->stop_cv);
	pthread_mutex_destroy(&r->stop_mu);
	jq_db_close(r->db);
	free(r);
}

int64_t jq_rescuer_rescued(const jq_rescuer *r)
{
	return atomic_load(&((jq_rescuer *)r)->rescued);
}

int64_t jq_rescuer_deleted(const jq_rescuer *r)
{
	return atomic_load(&((jq_rescuer *)r)->deleted);
}
