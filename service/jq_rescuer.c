#include "jq_rescuer.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "jq_db.h"
#include "jq_log.h"

#define RESCUE_BATCH 1000
#define RETENTION_BATCH 500
#define RETENTION_MAX_BATCHES 40 /* per sweep, so one sweep never runs for long */

struct jq_rescuer {
	const jq_config *cfg;
	jq_db *db;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop;
	_Atomic int64_t rescued, deleted;
	/* Only the rescuer's thread logs through these: a database that is down fails every sweep. */
	jq_log_limiter rescue_log, retention_log;
};

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void rescue_sweep(jq_rescuer *r)
{
	int64_t n;
	jq_db_err err;
	do {
		jq_code c = jq_db_rescue(r->db, RESCUE_BATCH, &n, &err);
		if (c != JQ_OK) {
			jq_log_limited(&r->rescue_log, JQ_LOG_WARN, "rescuer: %s", err.msg);
			return;
		}
		jq_log_limited_end(&r->rescue_log);
		if (n > 0) {
			atomic_fetch_add(&r->rescued, n);
			jq_info("rescuer: %lld job%s whose lease expired went back to the queue",
				(long long)n, n == 1 ? "" : "s");
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
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&r->mu);
	while (!r->stop) {
		if (pthread_cond_timedwait(&r->cv, &r->mu, &ts) == ETIMEDOUT)
			break;
	}
	bool stop = r->stop;
	pthread_mutex_unlock(&r->mu);
	return stop;
}

static void *run(void *arg)
{
	jq_rescuer *r = arg;
	int64_t next_retention = mono_ms();
	do {
		rescue_sweep(r);
		if (r->cfg->retention_seconds > 0 && mono_ms() >= next_retention) {
			retention_sweep(r);
			next_retention = mono_ms() + r->cfg->retention_interval_ms;
		}
	} while (!wait_ms(r, r->cfg->rescue_interval_ms));
	return NULL;
}

int jq_rescuer_start(const jq_config *cfg, jq_rescuer **out)
{
	jq_rescuer *r = calloc(1, sizeof(*r));
	pthread_condattr_t ca;
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
	pthread_mutex_init(&r->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&r->cv, &ca);
	pthread_condattr_destroy(&ca);
	if (pthread_create(&r->thread, NULL, run, r) != 0) {
		pthread_cond_destroy(&r->cv);
		pthread_mutex_destroy(&r->mu);
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
	pthread_mutex_lock(&r->mu);
	r->stop = true;
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
	pthread_join(r->thread, NULL);
	pthread_cond_destroy(&r->cv);
	pthread_mutex_destroy(&r->mu);
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
