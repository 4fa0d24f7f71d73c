/*
 * jq_db_schedule.c — the calls of jq_db.h on schedules (job_schedule): parameters in, rows out.
 */
#include "jq_db_int.h"

#include <stdlib.h>
#include <string.h>

static jq_code nomem(jq_db_err *err)
{
	jq_dbi_set_err(err, NULL, "", "out of memory");
	return JQ_RESOURCE_EXHAUSTED;
}

static jq_code wrap_into(PGresult *r, jq_db_rows **rows, jq_db_err *err)
{
	*rows = jq_dbi_wrap(r);
	return *rows != NULL ? JQ_OK : nomem(err);
}

/* put_ts writes an instant (Unix microseconds) as a binary timestamptz. */
static void put_ts(char out[8], int64_t unix_us)
{
	jq_pgbin_put_i64(out, unix_us - JQ_PG_EPOCH_US);
}

static int64_t ts_us(const PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? 0 : jq_pgbin_i64(r, row, col) + JQ_PG_EPOCH_US;
}

jq_code jq_db_zone_now(jq_db *db, const char *zone, bool *known, int64_t *local_s, int64_t *now_us,
		       jq_db_err *err)
{
	const char *values[1] = { zone };
	int lengths[1] = { (int)strlen(zone) }, formats[1] = { 1 };
	PGresult *r;
	jq_code c = jq_dbi_run(db, S_SCHED_ZONE_NOW, values, lengths, formats, &r, err);
	if (c != JQ_OK)
		return c;
	*known = !PQgetisnull(r, 0, 0);
	*local_s = *known ? jq_pgbin_i64(r, 0, 0) : 0;
	*now_us = ts_us(r, 0, 1);
	PQclear(r);
	return JQ_OK;
}

jq_code jq_db_zone_instant(jq_db *db, const char *zone, int64_t local_s, int64_t *instant_us,
			   jq_db_err *err)
{
	char secs[8];
	jq_pgbin_put_i64(secs, local_s);
	const char *values[2] = { secs, zone };
	int lengths[2] = { 8, (int)strlen(zone) }, formats[2] = { 1, 1 };
	PGresult *r;
	jq_code c = jq_dbi_run(db, S_SCHED_INSTANT, values, lengths, formats, &r, err);
	if (c != JQ_OK)
		return c;
	*instant_us = ts_us(r, 0, 0);
	PQclear(r);
	return JQ_OK;
}

jq_code jq_db_schedule_put(jq_db *db, const jq_db_schedule_spec *s, jq_db_rows **rows, jq_db_err *err)
{
	char prio[2], max[4], next[8];
	bool has_max = s->max_attempts > 0, has_key = s->idempotency_key && s->idempotency_key[0];
	prio[0] = (char)((uint16_t)s->priority >> 8);
	prio[1] = (char)((uint16_t)s->priority & 0xFF);
	jq_pgbin_put_i32(max, s->max_attempts);
	put_ts(next, s->next_run_at_us);
	const char *values[10] = { s->name, s->cron, s->time_zone, s->queue,
				   s->payload ? (const char *)s->payload : "", prio,
				   has_max ? max : NULL, has_key ? s->idempotency_key : NULL,
				   s->missed, next };
	int lengths[10] = { (int)strlen(s->name), (int)strlen(s->cron), (int)strlen(s->time_zone),
			    (int)strlen(s->queue), (int)s->payload_len, 2, 4,
			    has_key ? (int)strlen(s->idempotency_key) : 0, (int)strlen(s->missed), 8 };
	int formats[10] = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 };
	PGresult *r;
	*rows = NULL;
	jq_code c = jq_dbi_run(db, S_SCHED_PUT, values, lengths, formats, &r, err);
	if (c != JQ_OK)
		return c;
	return wrap_into(r, rows, err);
}

jq_code jq_db_schedule_list(jq_db *db, bool include_payload, jq_db_rows **rows, jq_db_err *err)
{
	char inc = include_payload ? 1 : 0;
	const char *values[1] = { &inc };
	int lengths[1] = { 1 }, formats[1] = { 1 };
	PGresult *r;
	*rows = NULL;
	jq_code c = jq_dbi_run(db, S_SCHED_LIST, values, lengths, formats, &r, err);
	if (c != JQ_OK)
		return c;
	return wrap_into(r, rows, err);
}

jq_code jq_db_schedule_remove(jq_db *db, const char *name, bool *removed, jq_db_err *err)
{
	const char *values[1] = { name };
	int lengths[1] = { (int)strlen(name) }, formats[1] = { 1 };
	PGresult *r;
	jq_code c = jq_dbi_run(db, S_SCHED_REMOVE, values, lengths, formats, &r, err);
	if (c != JQ_OK)
		return c;
	*removed = strtoll(PQcmdTuples(r), NULL, 10) > 0;
	PQclear(r);
	return JQ_OK;
}

jq_code jq_db_schedules_due(jq_db *db, int limit, jq_db_rows **rows, jq_db_err *err)
{
	char lim[4];
	jq_pgbin_put_i32(lim, limit);
	const char *values[1] = { lim };
	int lengths[1] = { 4 }, formats[1] = { 1 };
	PGresult *r;
	*rows = NULL;
	jq_code c = jq_dbi_run(db, S_SCHED_DUE, values, lengths, formats, &r, err);
	if (c != JQ_OK)
		return c;
	return wrap_into(r, rows, err);
}

jq_code jq_db_schedule_soonest(jq_db *db, int64_t *count, int64_t *in_ms, jq_db_err *err)
{
	PGresult *r;
	jq_code c = jq_dbi_run(db, S_SCHED_SOONEST, NULL, NULL, NULL, &r, err);
	if (c != JQ_OK)
		return c;
	*count = jq_pgbin_i64(r, 0, 0);
	*in_ms = PQgetisnull(r, 0, 1) ? INT64_MAX : jq_pgbin_i64(r, 0, 1);
	PQclear(r);
	return JQ_OK;
}

jq_code jq_db_schedule_tick(jq_db *db, const char *name, int64_t tick_us, int64_t next_us, bool enqueue,
			    int64_t run_at_us, bool *won, int64_t *job_id, char *queue, jq_db_err *err)
{
	char tick[8], next[8], run_at[8], enq = enqueue ? 1 : 0;
	put_ts(tick, tick_us);
	put_ts(next, next_us);
	put_ts(run_at, run_at_us);
	const char *values[5] = { name, tick, next, &enq, run_at };
	int lengths[5] = { (int)strlen(name), 8, 8, 1, 8 }, formats[5] = { 1, 1, 1, 1, 1 };
	PGresult *r;
	jq_code c = jq_dbi_run(db, S_SCHED_TICK, values, lengths, formats, &r, err);
	if (c != JQ_OK)
		return c;
	*won = PQntuples(r) > 0;
	*job_id = *won && !PQgetisnull(r, 0, 0) ? jq_pgbin_i64(r, 0, 0) : 0;
	queue[0] = '\0';
	if (*won) {
		size_t len = (size_t)PQgetlength(r, 0, 1);
		if (len > JQ_DB_QUEUE_MAX)
			len = JQ_DB_QUEUE_MAX;
		memcpy(queue, PQgetvalue(r, 0, 1), len);
		queue[len] = '\0';
	}
	PQclear(r);
	return JQ_OK;
}

void jq_db_rows_schedule(const jq_db_rows *rows, int i, jq_schedule *s)
{
	const PGresult *r = rows->res;
	i += rows->first;
	memset(s, 0, sizeof(*s));
	s->name = jq_dbi_text(r, i, SC_NAME);
	s->cron = jq_dbi_text(r, i, SC_CRON);
	s->time_zone = jq_dbi_text(r, i, SC_ZONE);
	s->queue = jq_dbi_text(r, i, SC_QUEUE);
	if (!PQgetisnull(r, i, SC_PAYLOAD)) {
		s->payload = (const uint8_t *)PQgetvalue(r, i, SC_PAYLOAD);
		s->payload_len = (size_t)PQgetlength(r, i, SC_PAYLOAD);
	}
	s->priority = jq_pgbin_i16(r, i, SC_PRIORITY);
	s->max_attempts = PQgetisnull(r, i, SC_MAX_ATTEMPTS) ? 0 : jq_pgbin_i32(r, i, SC_MAX_ATTEMPTS);
	s->idempotency_key = jq_dbi_text(r, i, SC_IDEM);
	s->missed = jq_dbi_text(r, i, SC_MISSED);
	s->next_run_at_ms = jq_pgbin_ts_ms(r, i, SC_NEXT);
	s->last_run_at_ms = jq_pgbin_ts_ms(r, i, SC_LAST);
	s->created_at_ms = jq_pgbin_ts_ms(r, i, SC_CREATED);
	s->updated_at_ms = jq_pgbin_ts_ms(r, i, SC_UPDATED);
}

void jq_db_rows_due(const jq_db_rows *rows, int i, jq_due_schedule *d)
{
	const PGresult *r = rows->res;
	i += rows->first;
	d->name = jq_dbi_text(r, i, 0);
	d->cron = jq_dbi_text(r, i, 1);
	d->time_zone = jq_dbi_text(r, i, 2);
	d->missed = jq_dbi_text(r, i, 3);
	d->tick_us = ts_us(r, i, 4);
	d->tick_local_s = jq_pgbin_i64(r, i, 5);
	d->now_local_s = jq_pgbin_i64(r, i, 6);
	d->now_us = ts_us(r, i, 7);
}
