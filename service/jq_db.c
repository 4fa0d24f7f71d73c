/*
 * jq_db.c — the calls of jq_db.h: each builds its statement's binary parameters (jq_pgbin),
 * runs it (jq_dbi_run) and reads what came back into rows or per-job outcomes.
 */
#include "jq_db_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static jq_db_rows *wrap(PGresult *r)
{
	jq_db_rows *rows = malloc(sizeof(*rows));
	if (rows == NULL) {
		PQclear(r);
		return NULL;
	}
	rows->res = r;
	rows->first = 0;
	rows->n = PQntuples(r);
	rows->cut = false;
	return rows;
}

jq_db_rows *jq_dbi_wrap(PGresult *r)
{
	return wrap(r);
}

/* wrap_budgeted wraps the job rows first .. end of a statement with a byte budget: its C_TAKEN
 * column counts the rows the limit took, of which the budget kept a prefix. */
static jq_db_rows *wrap_budgeted(PGresult *r, int first)
{
	int n = PQntuples(r) - first;
	bool cut = n > 0 && jq_pgbin_i64(r, first, C_TAKEN) > n;
	jq_db_rows *rows = wrap(r);
	if (rows != NULL) {
		rows->first = first;
		rows->n = n;
		rows->cut = cut;
	}
	return rows;
}

/* Arrays of parameters, freed together. */
typedef struct params {
	jq_pgbin_array arr[8];
	int narr;
} params;

static void params_free(params *p)
{
	for (int i = 0; i < p->narr; i++)
		jq_pgbin_array_free(&p->arr[i]);
}

static jq_code nomem(jq_db_err *err)
{
	jq_dbi_set_err(err, NULL, "", "out of memory");
	return JQ_RESOURCE_EXHAUSTED;
}

jq_code jq_db_enqueue(jq_db *db, const jq_db_job_spec *specs, size_t n, int64_t *ids, jq_db_err *err)
{
	bool timeouts = false, keys = false;
	for (size_t i = 0; i < n; i++) {
		timeouts = timeouts || specs[i].timeout_ms > 0;
		keys = keys || (specs[i].concurrency_key != NULL && specs[i].concurrency_key[0] != '\0');
	}
	/* The narrowest version of the function that takes what the batch has. */
	params p = { .narr = keys ? 8 : timeouts ? 7 : 6 };
	static const uint32_t oids[8] = { JQ_OID_TEXT, JQ_OID_BYTEA, JQ_OID_INT2, JQ_OID_TIMESTAMPTZ,
					   JQ_OID_INT4, JQ_OID_TEXT, JQ_OID_INT4, JQ_OID_TEXT };
	const char *values[8];
	int lengths[8], formats[8];
	PGresult *r = NULL;
	jq_code c;

	for (int i = 0; i < p.narr; i++)
		jq_pgbin_array_init(&p.arr[i], oids[i]);
	for (size_t i = 0; i < n; i++) {
		const jq_db_job_spec *s = &specs[i];
		jq_pgbin_array_add_text(&p.arr[0], s->queue);
		jq_pgbin_array_add(&p.arr[1], s->payload ? (const void *)s->payload : "", (int32_t)s->payload_len);
		jq_pgbin_array_add_i16(&p.arr[2], s->priority);
		if (s->run_at_us != 0)
			jq_pgbin_array_add_ts(&p.arr[3], s->run_at_us);
		else
			jq_pgbin_array_add_null(&p.arr[3]);
		if (s->max_attempts > 0)
			jq_pgbin_array_add_i32(&p.arr[4], s->max_attempts);
		else
			jq_pgbin_array_add_null(&p.arr[4]);
		jq_pgbin_array_add_text(&p.arr[5], s->idempotency_key);
		if (p.narr > 6)
			jq_pgbin_array_add_i32(&p.arr[6], s->timeout_ms);
		if (p.narr > 7)
			jq_pgbin_array_add_text(&p.arr[7], s->concurrency_key);
	}
	for (int i = 0; i < p.narr; i++) {
		if (jq_pgbin_array_finish(&p.arr[i]) != 0) {
			c = nomem(err);
			goto out;
		}
		values[i] = p.arr[i].data;
		lengths[i] = (int)p.arr[i].len;
		formats[i] = 1;
	}
	c = jq_dbi_run(db, keys ? S_ENQUEUE_KEY : timeouts ? S_ENQUEUE_TIMEOUT : S_ENQUEUE, values, lengths,
		       formats, &r, err);
	if (c != JQ_OK)
		goto out;
	if ((size_t)PQntuples(r) != n) {
		jq_dbi_set_err(err, NULL, "", "enqueue returned a different number of ids");
		c = JQ_INTERNAL;
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		ids[i] = jq_pgbin_i64(r, (int)i, 0);
out:
	PQclear(r);
	params_free(&p);
	return c;
}

/* check_states: both status columns of every job row name a state this jobqd knows. A state it
 * does not know (a newer migration added one, a row written by hand) makes the whole call an
 * error, as read_items does for the lease calls: answering it as any known state would tell the
 * caller something false about the job. On error r is cleared. */
static jq_code check_states(PGresult *r, int first, jq_db_err *err)
{
	static const int cols[] = { C_STATUS, C_PREV };
	for (int i = first; i < PQntuples(r); i++) {
		for (size_t k = 0; k < sizeof(cols) / sizeof(cols[0]); k++) {
			jq_state s;
			if (jq_state_from_name(PQgetvalue(r, i, cols[k]), &s) != 0) {
				jq_dbi_set_err(err, NULL, "unknown job status in the database: ", PQgetvalue(r, i, cols[k]));
				PQclear(r);
				return JQ_INTERNAL;
			}
		}
	}
	return JQ_OK;
}

/* budgeted_rows runs statement id (every parameter binary) and wraps its job rows, checked by
 * check_states, as a budgeted answer (wrap_budgeted) in *rows. */
static jq_code budgeted_rows(jq_db *db, jq_dbi_stmt_id id, const char *const *values, const int *lengths,
			     jq_db_rows **rows, jq_db_err *err)
{
	int formats[16];
	for (int i = 0; i < jq_dbi_stmts[id].nparams; i++)
		formats[i] = 1;
	PGresult *r;
	jq_code c = jq_dbi_run(db, id, values, lengths, formats, &r, err);
	if (c == JQ_OK)
		c = check_states(r, 0, err);
	if (c != JQ_OK)
		return c;
	if ((*rows = wrap_budgeted(r, 0)) == NULL)
		return nomem(err);
	return JQ_OK;
}

jq_code jq_db_claim_within(jq_db *db, const char *queue, int limit, const char *worker,
			   int lease_seconds, int64_t max_bytes, int per_job_bytes, jq_db_rows **rows,
			   jq_db_err *err)
{
	char lim[4], lease[4], max[8], per_job[4];
	size_t qlen = strlen(queue), wlen = strlen(worker);
	jq_pgbin_put_i32(lim, limit);
	jq_pgbin_put_i32(lease, lease_seconds);
	jq_pgbin_put_i64(max, max_bytes);
	/* The queue and the worker (the new lease owner) are the same for every job claimed. Both
	 * are validated short; a per-job size that would not fit an int4 only makes jobs look big. */
	int64_t fixed = (int64_t)per_job_bytes + (int64_t)qlen + (int64_t)wlen;
	jq_pgbin_put_i32(per_job, fixed > INT32_MAX ? INT32_MAX : (int32_t)fixed);
	const char *values[6] = { queue, lim, worker, lease, max, per_job };
	int lengths[6] = { (int)qlen, 4, (int)wlen, 4, 8, 4 };
	return budgeted_rows(db, S_CLAIM, values, lengths, rows, err);
}

jq_code jq_db_claim(jq_db *db, const char *queue, int limit, const char *worker, int lease_seconds,
		    jq_db_rows **rows, jq_db_err *err)
{
	return jq_db_claim_within(db, queue, limit, worker, lease_seconds, INT64_MAX, 0, rows, err);
}

/* Reading the outcome rows of Heartbeat/Complete/Fail/Retry/Cancel:
 * (id, done, time, status before (or after for Fail), token still matches). */
typedef jq_code (*judge_fn)(jq_state status, bool same_token, const char **message);

/* The rows hold those columns from column col0 on, one row per job in request order: rows
 * 0 .. n-1, and nothing else unless `more` (the combined statements' claimed jobs follow).
 * done[i], when not NULL, says instead of column 1 whether the caller's statement changed job i. */
static jq_code read_items_at(PGresult *r, int col0, bool more, size_t n, const bool *done_by_caller,
			     jq_db_item *items, jq_state done_status, judge_fn judge, jq_db_err *err)
{
	if (more ? (size_t)PQntuples(r) < n : (size_t)PQntuples(r) != n) {
		jq_dbi_set_err(err, NULL, "", "batch returned a different number of rows");
		return JQ_INTERNAL;
	}
	for (size_t i = 0; i < n; i++) {
		jq_db_item *it = &items[i];
		int row = (int)i;
		memset(it, 0, sizeof(*it));
		it->id = jq_pgbin_i64(r, row, col0);
		bool done = done_by_caller != NULL ? done_by_caller[i] : jq_pgbin_bool(r, row, col0 + 1);
		bool exists = !PQgetisnull(r, row, col0 + 3);
		jq_state st = done_status;
		if (exists && jq_state_from_name(PQgetvalue(r, row, col0 + 3), &st) != 0) {
			jq_dbi_set_err(err, NULL, "unknown job status in the database: ",
				       PQgetvalue(r, row, col0 + 3));
			return JQ_INTERNAL;
		}
		if (done) {
			it->code = JQ_OK;
			it->status = done_status == JQ_STATE__COUNT ? st : done_status;
			it->status_known = true;
			continue;
		}
		if (!exists) {
			it->code = JQ_NOT_FOUND;
			it->message = "no such job";
			continue;
		}
		it->status = st;
		it->status_known = true;
		it->code = judge(st, jq_pgbin_bool(r, row, col0 + 4), &it->message);
	}
	return JQ_OK;
}

static jq_code read_items(PGresult *r, size_t n, const bool *done_by_caller, jq_db_item *items,
			  jq_state done_status, judge_fn judge, jq_db_err *err)
{
	return read_items_at(r, 0, false, n, done_by_caller, items, done_status, judge, err);
}

/* A lease call that changed nothing: the lease is lost unless this is a repeat of a call that
 * already succeeded with the same token (the reply of the first may have been lost). */
/* A heartbeat that renewed nothing: the lease is lost (jq_db_heartbeat then says whether the job
 * was stopped under it, and why). */
static jq_code judge_heartbeat(jq_state st, bool same_token, const char **message)
{
	(void)st;
	(void)same_token;
	*message = "lease lost: the job is no longer processing under this token";
	return JQ_FAILED_PRECONDITION;
}

static jq_code judge_complete(jq_state st, bool same_token, const char **message)
{
	if (st == JQ_STATE_COMPLETED && same_token)
		return JQ_OK;
	*message = st == JQ_STATE_CANCELLED && same_token
			   ? "the job was cancelled while it ran under this lease; the result is not kept"
			   : "lease lost: the job is no longer processing under this token";
	return JQ_FAILED_PRECONDITION;
}

/* For Fail, same_token also means "and this very failure is already recorded" (see S_FAIL). */
static jq_code judge_fail(jq_state st, bool same_token, const char **message)
{
	if ((st == JQ_STATE_FAILED || st == JQ_STATE_PENDING) && same_token)
		return JQ_OK;
	*message = st == JQ_STATE_CANCELLED ? "lease lost: the job was cancelled"
					    : "lease lost: the job is no longer processing under this token";
	return JQ_FAILED_PRECONDITION;
}

static jq_code judge_retry(jq_state st, bool same_token, const char **message)
{
	(void)same_token;
	if (st == JQ_STATE_PENDING)
		return JQ_OK; /* already waiting to run: retrying it again changes nothing */
	*message = "only archive_failed or archive_cancelled jobs can be retried";
	return JQ_FAILED_PRECONDITION;
}

static jq_code judge_cancel(jq_state st, bool same_token, const char **message)
{
	(void)same_token;
	if (st == JQ_STATE_CANCELLED)
		return JQ_OK;
	*message = "the job has completed; only unfinished or failed jobs can be cancelled";
	return JQ_FAILED_PRECONDITION;
}

/* lease_arrays fills id and token arrays (p->arr[0..1]) from leases. */
static int lease_arrays(params *p, const jq_db_lease *leases, size_t n)
{
	p->narr = 2;
	jq_pgbin_array_init(&p->arr[0], JQ_OID_INT8);
	jq_pgbin_array_init(&p->arr[1], JQ_OID_INT8);
	for (size_t i = 0; i < n; i++) {
		jq_pgbin_array_add_i64(&p->arr[0], leases[i].id);
		jq_pgbin_array_add_i64(&p->arr[1], leases[i].lease_token);
	}
	return jq_pgbin_array_finish(&p->arr[0]) | jq_pgbin_array_finish(&p->arr[1]);
}

/* progress_arrays fills the percent and message arrays (p->arr[2..3]; NULL percent = no report). */
static int progress_arrays(params *p, const jq_db_lease *leases, size_t n)
{
	p->narr = 4;
	jq_pgbin_array_init(&p->arr[2], JQ_OID_INT2);
	jq_pgbin_array_init(&p->arr[3], JQ_OID_TEXT);
	for (size_t i = 0; i < n; i++) {
		if (leases[i].progress_percent < 0) {
			jq_pgbin_array_add_null(&p->arr[2]);
			jq_pgbin_array_add_null(&p->arr[3]);
			continue;
		}
		jq_pgbin_array_add_i16(&p->arr[2], (int16_t)leases[i].progress_percent);
		jq_pgbin_array_add_text(&p->arr[3], leases[i].progress_message ? leases[i].progress_message : "");
	}
	return jq_pgbin_array_finish(&p->arr[2]) | jq_pgbin_array_finish(&p->arr[3]);
}

/* output_array fills the output array (p->arr[2]; NULL = no output for that lease). */
static int output_array(params *p, const jq_db_lease *leases, size_t n)
{
	p->narr = 3;
	jq_pgbin_array_init(&p->arr[2], JQ_OID_BYTEA);
	for (size_t i = 0; i < n; i++) {
		if (leases[i].has_output)
			jq_pgbin_array_add(&p->arr[2], leases[i].output, (int32_t)leases[i].output_len);
		else
			jq_pgbin_array_add_null(&p->arr[2]);
	}
	return jq_pgbin_array_finish(&p->arr[2]);
}

/* note_stop reads row `row` of a heartbeat's or S_LEASE_STATE's result (status in column 3,
 * "same token" in 4, "failed by its time limit" in 5) for a refused lease: the job's status, and
 * whether it was stopped under that very lease, and why. */
static void note_stop(const PGresult *r, int row, jq_db_item *it)
{
	jq_state st;
	if (PQgetisnull(r, row, 3) || jq_state_from_name(PQgetvalue(r, row, 3), &st) != 0)
		return;
	it->status = st;
	it->status_known = true;
	if (PQgetisnull(r, row, 4) || !jq_pgbin_bool(r, row, 4))
		return;
	if (st == JQ_STATE_CANCELLED) {
		it->stop_reason = "cancelled";
		it->message = "the job was cancelled while it ran under this lease: stop working on it";
	} else if (st != JQ_STATE_PROCESSING && !PQgetisnull(r, row, 5) && jq_pgbin_bool(r, row, 5)) {
		it->stop_reason = JQ_TIME_LIMIT_ERROR;
		it->message = "the job ran past its time limit under this lease: stop working on it";
	}
}

jq_code jq_db_heartbeat(jq_db *db, const jq_db_lease *leases, size_t n, int lease_seconds,
			jq_db_item *items, jq_db_err *err)
{
	params p = { 0 };
	PGresult *r = NULL, *now = NULL;
	jq_code c;
	char lease[4];

	if (lease_arrays(&p, leases, n) != 0) {
		c = nomem(err);
		goto out;
	}
	bool progress = false;
	for (size_t i = 0; i < n; i++)
		progress = progress || leases[i].progress_percent >= 0;
	if (progress && progress_arrays(&p, leases, n) != 0) {
		c = nomem(err);
		goto out;
	}
	jq_pgbin_put_i32(lease, lease_seconds);
	const char *values[5] = { p.arr[0].data, p.arr[1].data, lease, p.arr[2].data, p.arr[3].data };
	int lengths[5] = { (int)p.arr[0].len, (int)p.arr[1].len, 4, (int)p.arr[2].len, (int)p.arr[3].len };
	int formats[5] = { 1, 1, 1, 1, 1 };
	c = jq_dbi_run(db, progress ? S_HEARTBEAT_PROGRESS : S_HEARTBEAT, values, lengths, formats, &r, err);
	if (c != JQ_OK)
		goto out;
	c = read_items(r, n, NULL, items, JQ_STATE_PROCESSING, judge_heartbeat, err);
	bool stale = false;
	for (size_t i = 0; c == JQ_OK && i < n; i++) {
		if (items[i].code == JQ_OK) {
			items[i].lease_expires_at_ms = jq_pgbin_ts_ms(r, (int)i, 2);
			continue;
		}
		note_stop(r, (int)i, &items[i]);
		stale = stale || (items[i].status_known && items[i].status == JQ_STATE_PROCESSING);
	}
	/* A refused lease whose job the statement still read as processing under it: the job was
	 * moved after the statement's snapshot and before its row lock (a cancel or a time limit
	 * racing this heartbeat). A new statement reads where it stands now. */
	if (c == JQ_OK && stale)
		c = jq_dbi_run(db, S_LEASE_STATE, values, lengths, formats, &now, err);
	for (size_t i = 0; c == JQ_OK && stale && i < n; i++) {
		if (items[i].code != JQ_OK && items[i].status == JQ_STATE_PROCESSING)
			note_stop(now, (int)i, &items[i]);
	}
out:
	PQclear(r);
	PQclear(now);
	params_free(&p);
	return c;
}

/* note_changed marks an item as moved by the call, with the queue in column col of row. */
static void note_changed(jq_db_item *it, const PGresult *r, int row, int col)
{
	size_t len = PQgetisnull(r, row, col) ? 0 : (size_t)PQgetlength(r, row, col);
	if (len > JQ_DB_QUEUE_MAX)
		len = JQ_DB_QUEUE_MAX;
	memcpy(it->queue, PQgetvalue(r, row, col), len);
	it->queue[len] = '\0';
	it->changed = true;
}

/* note_completed marks the leases that S_COMPLETE's rows (id, token, queue, ord) completed. */
static void note_completed(const PGresult *r, jq_db_item *items, size_t n)
{
	for (int k = 0; k < PQntuples(r); k++) {
		int64_t ord = jq_pgbin_i64(r, k, 3);
		if (ord >= 1 && (size_t)ord <= n)
			note_changed(&items[ord - 1], r, k, 2);
	}
}

/* completed_all: whether the UPDATE's rows (the ids it completed) cover every lease. Each row
 * is a distinct job, so with as many rows as leases every lease completed, unless an id was
 * given twice; then there are fewer rows, and the slow path answers both. */
static bool completed_all(const PGresult *r, size_t n)
{
	return (size_t)PQntuples(r) == n;
}

/* mark_completed sets done[i] for every lease among the UPDATE's rows. By (id, token): the same
 * job named again under a stale token in the same call was not completed by that lease, and is
 * judged like any other. */
static void mark_completed(const PGresult *r, const jq_db_lease *leases, size_t n, bool *done)
{
	int rows = PQntuples(r);
	for (size_t i = 0; i < n; i++) {
		done[i] = false;
		for (int k = 0; k < rows && !done[i]; k++)
			done[i] = jq_pgbin_i64(r, k, 0) == leases[i].id &&
				  jq_pgbin_i64(r, k, 1) == leases[i].lease_token;
	}
}

jq_code jq_db_complete(jq_db *db, const jq_db_lease *leases, size_t n, jq_db_item *items,
		       jq_db_err *err)
{
	params p = { 0 };
	PGresult *r = NULL, *state = NULL;
	bool *done = NULL;
	jq_code c;

	bool output = false;
	for (size_t i = 0; i < n; i++)
		output = output || leases[i].has_output;
	if (lease_arrays(&p, leases, n) != 0 || (output && output_array(&p, leases, n) != 0)) {
		c = nomem(err);
		goto out;
	}
	const char *values[3] = { p.arr[0].data, p.arr[1].data, p.arr[2].data };
	int lengths[3] = { (int)p.arr[0].len, (int)p.arr[1].len, (int)p.arr[2].len };
	int formats[3] = { 1, 1, 1 };
	c = jq_dbi_run(db, output ? S_COMPLETE_OUTPUT : S_COMPLETE, values, lengths, formats, &r, err);
	if (c != JQ_OK)
		goto out;
	if (completed_all(r, n)) {
		for (size_t i = 0; i < n; i++)
			items[i] = (jq_db_item){ .id = leases[i].id, .code = JQ_OK,
						 .status = JQ_STATE_COMPLETED, .status_known = true };
		note_completed(r, items, n);
		goto out;
	}
	/* Some lease did not complete: the UPDATE has committed, and the rest are judged by where
	 * they stand now (a repeat of a Complete that succeeded finds its job completed under the
	 * same token: OK). */
	done = malloc(n * sizeof(*done));
	if (done == NULL) {
		c = nomem(err);
		goto out;
	}
	mark_completed(r, leases, n, done);
	c = jq_dbi_run(db, S_LEASE_STATE, values, lengths, formats, &state, err);
	if (c == JQ_OK)
		c = read_items(state, n, done, items, JQ_STATE_COMPLETED, judge_complete, err);
	if (c == JQ_OK)
		note_completed(r, items, n);
out:
	PQclear(r);
	PQclear(state);
	free(done);
	params_free(&p);
	return c;
}

/* fail_arrays fills the error, final, retry and worker arrays (p->arr[2..5]) from leases. */
static int fail_arrays(params *p, const jq_db_lease *leases, size_t n)
{
	p->narr = 6;
	jq_pgbin_array_init(&p->arr[2], JQ_OID_TEXT);
	jq_pgbin_array_init(&p->arr[3], JQ_OID_BOOL);
	jq_pgbin_array_init(&p->arr[4], JQ_OID_INT4);
	jq_pgbin_array_init(&p->arr[5], JQ_OID_TEXT);
	for (size_t i = 0; i < n; i++) {
		jq_pgbin_array_add_text(&p->arr[2], leases[i].error ? leases[i].error : "");
		jq_pgbin_array_add_bool(&p->arr[3], leases[i].final);
		jq_pgbin_array_add_i32(&p->arr[4], leases[i].retry_in_ms);
		jq_pgbin_array_add_text(&p->arr[5], leases[i].worker ? leases[i].worker : "");
	}
	return jq_pgbin_array_finish(&p->arr[2]) | jq_pgbin_array_finish(&p->arr[3]) |
	       jq_pgbin_array_finish(&p->arr[4]) | jq_pgbin_array_finish(&p->arr[5]);
}

/* The eight parameters of S_FAIL and of S_FAIL_CLAIM's first eight: the lease and failure arrays
 * (in p, which the caller frees) and the backoff. values point into p and into this struct. */
typedef struct fail_values {
	char base[4], max[4];
	const char *values[8];
	int lengths[8];
} fail_values;

static int fail_params(const jq_db *db, params *p, const jq_db_lease *leases, size_t n, fail_values *v)
{
	if (lease_arrays(p, leases, n) != 0 || fail_arrays(p, leases, n) != 0)
		return -1;
	jq_pgbin_put_i32(v->base, db->backoff_base_ms);
	jq_pgbin_put_i32(v->max, db->backoff_max_ms);
	const char *values[8] = { p->arr[0].data, p->arr[1].data, p->arr[2].data, p->arr[3].data,
				  p->arr[4].data, v->base, v->max, p->arr[5].data };
	int lengths[8] = { (int)p->arr[0].len, (int)p->arr[1].len, (int)p->arr[2].len,
			   (int)p->arr[3].len, (int)p->arr[4].len, 4, 4, (int)p->arr[5].len };
	memcpy(v->values, values, sizeof(values));
	memcpy(v->lengths, lengths, sizeof(lengths));
	return 0;
}

jq_code jq_db_fail(jq_db *db, const jq_db_lease *leases, size_t n, jq_db_item *items, jq_db_err *err)
{
	params p = { 0 };
	PGresult *r = NULL;
	jq_code c;
	fail_values v;

	if (fail_params(db, &p, leases, n, &v) != 0) {
		c = nomem(err);
		goto out;
	}
	int formats[8] = { 1, 1, 1, 1, 1, 1, 1, 1 };
	c = jq_dbi_run(db, S_FAIL, v.values, v.lengths, formats, &r, err);
	if (c != JQ_OK)
		goto out;
	/* JQ_STATE__COUNT: the status after the call is in the row (pending or failed). */
	c = read_items(r, n, NULL, items, JQ_STATE__COUNT, judge_fail, err);
	for (size_t i = 0; c == JQ_OK && i < n; i++) {
		if (items[i].code == JQ_OK && items[i].status == JQ_STATE_PENDING)
			items[i].run_at_ms = jq_pgbin_ts_ms(r, (int)i, 2);
		if (items[i].code == JQ_OK && jq_pgbin_bool(r, (int)i, 1))
			note_changed(&items[i], r, (int)i, 5);
	}
out:
	PQclear(r);
	params_free(&p);
	return c;
}

/* ---- a completion or failure and the claim of the next jobs, in one statement ---- */

/* The columns of a combined statement's lease rows (CLAIM_AND_ANSWER in jq_db_sql.c): read_items'
 * from LEASE_COL0, then the job's queue. */
#define LEASE_COL0 (C_TAKEN + 1)
#define LEASE_COL_TIME (LEASE_COL0 + 2)
#define LEASE_COL_QUEUE (LEASE_COL0 + 5)

/* Values of the claim's six parameters, in the statements' order: queue, limit, worker, lease
 * seconds, budget, fixed bytes per job. */
typedef struct claim_values {
	char lim[4], lease[4], max[8], fixed[4];
	const char *values[6];
	int lengths[6];
} claim_values;

static void claim_values_set(claim_values *v, const jq_db_claim_next *next)
{
	size_t qlen = strlen(next->queue), wlen = strlen(next->worker);
	int64_t fixed = (int64_t)next->per_job_bytes + (int64_t)qlen + (int64_t)wlen;
	jq_pgbin_put_i32(v->lim, next->limit);
	jq_pgbin_put_i32(v->lease, next->lease_seconds);
	jq_pgbin_put_i64(v->max, next->max_bytes);
	jq_pgbin_put_i32(v->fixed, fixed > INT32_MAX ? INT32_MAX : (int32_t)fixed);
	const char *vals[6] = { next->queue, v->lim, next->worker, v->lease, v->max, v->fixed };
	int lens[6] = { (int)qlen, 4, (int)wlen, 4, 8, 4 };
	memcpy(v->values, vals, sizeof(vals));
	memcpy(v->lengths, lens, sizeof(lens));
}

/* combined_run runs a combined statement whose first nlease parameters are given, then the
 * claim's, and reads its n lease rows into items and its claimed jobs into *claimed. */
static jq_code combined_run(jq_db *db, jq_dbi_stmt_id id, const char **lease_values,
			    const int *lease_lengths, int nlease, const jq_db_claim_next *next, size_t n,
			    jq_db_item *items, jq_state done_status, judge_fn judge,
			    jq_db_rows **claimed, jq_db_err *err)
{
	claim_values cv;
	const char *values[16];
	int lengths[16], formats[16];
	PGresult *r;

	claim_values_set(&cv, next);
	for (int i = 0; i < nlease + 6; i++) {
		values[i] = i < nlease ? lease_values[i] : cv.values[i - nlease];
		lengths[i] = i < nlease ? lease_lengths[i] : cv.lengths[i - nlease];
		formats[i] = 1;
	}
	jq_code c = jq_dbi_run(db, id, values, lengths, formats, &r, err);
	if (c != JQ_OK)
		return c;
	c = read_items_at(r, LEASE_COL0, true, n, NULL, items, done_status, judge, err);
	if (c == JQ_OK)
		c = check_states(r, (int)n, err);
	else
		PQclear(r);
	if (c != JQ_OK)
		return c; /* check_states cleared r */
	for (size_t i = 0; i < n; i++) {
		if (items[i].code != JQ_OK)
			continue;
		if (items[i].status == JQ_STATE_PENDING)
			items[i].run_at_ms = jq_pgbin_ts_ms(r, (int)i, LEASE_COL_TIME);
		if (jq_pgbin_bool(r, (int)i, LEASE_COL0 + 1))
			note_changed(&items[i], r, (int)i, LEASE_COL_QUEUE);
	}
	if ((*claimed = wrap_budgeted(r, (int)n)) == NULL)
		return nomem(err);
	return JQ_OK;
}

jq_code jq_db_complete_claim(jq_db *db, const jq_db_lease *leases, size_t n, const jq_db_claim_next *next,
			     jq_db_item *items, jq_db_rows **claimed, jq_db_err *err)
{
	params p = { 0 };
	jq_code c;

	if (lease_arrays(&p, leases, n) != 0) {
		c = nomem(err);
		goto out;
	}
	const char *values[2] = { p.arr[0].data, p.arr[1].data };
	int lengths[2] = { (int)p.arr[0].len, (int)p.arr[1].len };
	c = combined_run(db, S_COMPLETE_CLAIM, values, lengths, 2, next, n, items, JQ_STATE_COMPLETED,
			 judge_complete, claimed, err);
out:
	params_free(&p);
	return c;
}

jq_code jq_db_fail_claim(jq_db *db, const jq_db_lease *leases, size_t n, const jq_db_claim_next *next,
			 jq_db_item *items, jq_db_rows **claimed, jq_db_err *err)
{
	params p = { 0 };
	jq_code c;
	fail_values v;

	if (fail_params(db, &p, leases, n, &v) != 0) {
		c = nomem(err);
		goto out;
	}
	/* JQ_STATE__COUNT: the status after the call is in the row (pending or failed). */
	c = combined_run(db, S_FAIL_CLAIM, v.values, v.lengths, 8, next, n, items, JQ_STATE__COUNT, judge_fail,
			 claimed, err);
out:
	params_free(&p);
	return c;
}

jq_code jq_db_get(jq_db *db, int64_t id, jq_db_rows **job_rows, jq_db_rows **failure_rows,
		  jq_db_err *err)
{
	char idb[8];
	jq_pgbin_put_i64(idb, id);
	const char *values[1] = { idb };
	int lengths[1] = { 8 }, formats[1] = { 1 };
	PGresult *r1, *r2;

	*job_rows = *failure_rows = NULL;
	jq_code c = jq_dbi_run(db, S_GET, values, lengths, formats, &r1, err);
	if (c == JQ_OK)
		c = check_states(r1, 0, err);
	if (c != JQ_OK)
		return c;
	c = jq_dbi_run(db, S_GET_FAILURES, values, lengths, formats, &r2, err);
	if (c != JQ_OK) {
		PQclear(r1);
		return c;
	}
	*job_rows = wrap(r1);
	*failure_rows = wrap(r2);
	if (*job_rows == NULL || *failure_rows == NULL) {
		jq_db_rows_free(*job_rows);
		jq_db_rows_free(*failure_rows);
		*job_rows = *failure_rows = NULL;
		return nomem(err);
	}
	return JQ_OK;
}

jq_code jq_db_list(jq_db *db, const char *queue, const jq_state *status, int64_t after_id, int limit,
		   bool include_payload, int64_t max_bytes, int per_job_bytes, jq_db_rows **rows,
		   jq_db_err *err)
{
	char after[8], lim[4], inc = include_payload ? 1 : 0, max[8], per_job[4];
	const char *st = status ? jq_state_name(*status) : NULL;
	jq_pgbin_put_i64(after, after_id);
	jq_pgbin_put_i32(lim, limit);
	jq_pgbin_put_i64(max, max_bytes);
	jq_pgbin_put_i32(per_job, per_job_bytes);
	const char *values[7] = { queue, st, after, lim, &inc, max, per_job };
	int lengths[7] = { queue ? (int)strlen(queue) : 0, st ? (int)strlen(st) : 0, 8, 4, 1, 8, 4 };
	return budgeted_rows(db, S_LIST, values, lengths, rows, err);
}

/* ids_param builds the int8[] parameter of ids (free with jq_pgbin_array_free). */
static int ids_param(jq_pgbin_array *a, const int64_t *ids, size_t n)
{
	jq_pgbin_array_init(a, JQ_OID_INT8);
	for (size_t i = 0; i < n; i++)
		jq_pgbin_array_add_i64(a, ids[i]);
	return jq_pgbin_array_finish(a);
}

/* ids_call runs a statement whose only parameter is an int8[] of ids and reads its items. */
static jq_code ids_call(jq_db *db, jq_dbi_stmt_id id, const int64_t *ids, size_t n, judge_fn judge,
			jq_state done_status, jq_db_item *items, jq_db_err *err)
{
	jq_pgbin_array a;
	PGresult *r = NULL;
	jq_code c;

	if (ids_param(&a, ids, n) != 0) {
		c = nomem(err);
		goto out;
	}
	const char *values[1] = { a.data };
	int lengths[1] = { (int)a.len }, formats[1] = { 1 };
	c = jq_dbi_run(db, id, values, lengths, formats, &r, err);
	if (c == JQ_OK)
		c = read_items(r, n, NULL, items, done_status, judge, err);
out:
	PQclear(r);
	jq_pgbin_array_free(&a);
	return c;
}

jq_code jq_db_retry(jq_db *db, const int64_t *ids, size_t n, jq_db_item *items, jq_db_err *err)
{
	return ids_call(db, S_RETRY, ids, n, judge_retry, JQ_STATE_PENDING, items, err);
}

jq_code jq_db_cancel(jq_db *db, const int64_t *ids, size_t n, jq_db_item *items, jq_db_err *err)
{
	return ids_call(db, S_CANCEL, ids, n, judge_cancel, JQ_STATE_CANCELLED, items, err);
}

jq_code jq_db_wait_mark(jq_db *db, const int64_t *ids, size_t n, jq_db_err *err)
{
	jq_pgbin_array a;
	PGresult *r = NULL;
	jq_code c = ids_param(&a, ids, n) != 0 ? nomem(err) : JQ_OK;
	if (c == JQ_OK) {
		const char *values[1] = { a.data };
		int lengths[1] = { (int)a.len }, formats[1] = { 1 };
		c = jq_dbi_run(db, S_WAIT_MARK, values, lengths, formats, &r, err);
	}
	PQclear(r);
	jq_pgbin_array_free(&a);
	return c;
}

jq_code jq_db_wait_read(jq_db *db, const int64_t *ids, size_t n, jq_db_rows **rows, jq_db_err *err)
{
	jq_pgbin_array a;
	PGresult *r = NULL;
	*rows = NULL;
	jq_code c = ids_param(&a, ids, n) != 0 ? nomem(err) : JQ_OK;
	if (c == JQ_OK) {
		const char *values[1] = { a.data };
		int lengths[1] = { (int)a.len }, formats[1] = { 1 };
		c = jq_dbi_run(db, S_WAIT_READ, values, lengths, formats, &r, err);
	}
	jq_pgbin_array_free(&a);
	if (c == JQ_OK)
		c = check_states(r, 0, err); /* clears r on error */
	if (c != JQ_OK)
		return c;
	if ((*rows = wrap(r)) == NULL)
		return nomem(err);
	return JQ_OK;
}

/* count_call runs a statement that reports only how many rows it touched. */
static jq_code count_call(jq_db *db, jq_dbi_stmt_id id, const char *const *values, const int *lengths,
			  const int *formats, int64_t *count, jq_db_err *err)
{
	PGresult *r;
	jq_code c = jq_dbi_run(db, id, values, lengths, formats, &r, err);
	if (c != JQ_OK)
		return c;
	*count = strtoll(PQcmdTuples(r), NULL, 10);
	PQclear(r);
	return JQ_OK;
}

jq_code jq_db_retry_failed_batch(jq_db *db, const char *queue, int64_t after_id, int limit,
				 int64_t *count, int64_t *last_id, jq_db_err *err)
{
	char lim[4], after[8];
	jq_pgbin_put_i32(lim, limit);
	jq_pgbin_put_i64(after, after_id);
	const char *values[3] = { queue, lim, after };
	int lengths[3] = { (int)strlen(queue), 4, 8 }, formats[3] = { 1, 1, 1 };
	PGresult *r;
	jq_code c = jq_dbi_run(db, S_RETRY_ALL, values, lengths, formats, &r, err);
	if (c != JQ_OK)
		return c;
	*count = jq_pgbin_i64(r, 0, 0);
	*last_id = jq_pgbin_i64(r, 0, 1);
	PQclear(r);
	return JQ_OK;
}

jq_code jq_db_stats(jq_db *db, const char *queue, jq_db_rows **rows, jq_db_err *err)
{
	const char *values[1] = { queue };
	int lengths[1] = { queue ? (int)strlen(queue) : 0 }, formats[1] = { 1 };
	PGresult *r;
	jq_code c = jq_dbi_run(db, S_STATS, values, lengths, formats, &r, err);
	if (c != JQ_OK)
		return c;
	if ((*rows = wrap(r)) == NULL)
		return nomem(err);
	return JQ_OK;
}

/* rows_call runs a statement and hands its rows to the caller. */
static jq_code rows_call(jq_db *db, jq_dbi_stmt_id id, const char *const *values, const int *lengths,
			 const int *formats, jq_db_rows **rows, jq_db_err *err)
{
	PGresult *r;
	jq_code c = jq_dbi_run(db, id, values, lengths, formats, &r, err);
	if (c != JQ_OK)
		return c;
	if ((*rows = wrap(r)) == NULL)
		return nomem(err);
	return JQ_OK;
}

jq_code jq_db_queue_pause(jq_db *db, const char *queue, bool paused, jq_db_rows **rows, jq_db_err *err)
{
	char p = paused ? 1 : 0;
	const char *values[2] = { queue, &p };
	int lengths[2] = { (int)strlen(queue), 1 }, formats[2] = { 1, 1 };
	return rows_call(db, S_QUEUE_PAUSE, values, lengths, formats, rows, err);
}

jq_code jq_db_queue_configure(jq_db *db, const char *queue, const jq_db_flow_change *ch,
			      jq_db_rows **rows, jq_db_err *err)
{
	char set_conc = ch->set_concurrency, set_rate = ch->set_rate, conc[4], rate[4], period[4];
	char set_key = ch->set_key_concurrency, key[4];
	jq_pgbin_put_i32(key, ch->key_concurrency_limit);
	jq_pgbin_put_i32(conc, ch->concurrency_limit);
	jq_pgbin_put_i32(rate, ch->rate_limit);
	jq_pgbin_put_i32(period, ch->rate_period_ms);
	/* A limit of 0 is sent as NULL: none. */
	const char *values[8] = { queue, &set_conc, ch->concurrency_limit > 0 ? conc : NULL, &set_rate,
				  ch->rate_limit > 0 ? rate : NULL, ch->rate_limit > 0 ? period : NULL,
				  &set_key, ch->key_concurrency_limit > 0 ? key : NULL };
	int lengths[8] = { (int)strlen(queue), 1, 4, 1, 4, 4, 1, 4 };
	int formats[8] = { 1, 1, 1, 1, 1, 1, 1, 1 };
	return rows_call(db, S_QUEUE_CONFIGURE, values, lengths, formats, rows, err);
}

jq_code jq_db_job_gauges(jq_db *db, jq_db_rows **rows, jq_db_err *err)
{
	PGresult *r;
	jq_code c = jq_dbi_run(db, S_JOB_GAUGES, NULL, NULL, NULL, &r, err);
	if (c != JQ_OK)
		return c;
	if ((*rows = wrap(r)) == NULL)
		return nomem(err);
	return JQ_OK;
}

jq_code jq_db_throughput(jq_db *db, jq_db_minute out[JQ_DB_THROUGHPUT_MINUTES], jq_db_err *err)
{
	PGresult *r;
	jq_code c = jq_dbi_run(db, S_THROUGHPUT, NULL, NULL, NULL, &r, err);
	if (c != JQ_OK)
		return c;
	if (PQntuples(r) != JQ_DB_THROUGHPUT_MINUTES || PQnfields(r) != 2) {
		PQclear(r);
		jq_dbi_set_err(err, NULL, "", "throughput: not one row per minute of the hour");
		return JQ_INTERNAL;
	}
	for (int i = 0; i < JQ_DB_THROUGHPUT_MINUTES; i++)
		out[i] = (jq_db_minute){ .at_ms = jq_pgbin_i64(r, i, 0), .completed = jq_pgbin_i64(r, i, 1) };
	PQclear(r);
	return JQ_OK;
}

jq_code jq_db_finished_estimates(jq_db *db, int64_t *completed, int64_t *cancelled, jq_db_err *err)
{
	PGresult *r;
	jq_code c = jq_dbi_run(db, S_FINISHED_ESTIMATES, NULL, NULL, NULL, &r, err);
	if (c != JQ_OK)
		return c;
	/* Analyzed, a state missing from the sample is as good as none; never analyzed, unknown. */
	*completed = *cancelled = PQntuples(r) > 0 ? 0 : -1;
	for (int i = 0; i < PQntuples(r); i++) {
		const char *state = PQgetvalue(r, i, 0);
		if (strcmp(state, jq_state_name(JQ_STATE_COMPLETED)) == 0)
			*completed = jq_pgbin_i64(r, i, 1);
		else if (strcmp(state, jq_state_name(JQ_STATE_CANCELLED)) == 0)
			*cancelled = jq_pgbin_i64(r, i, 1);
	}
	PQclear(r);
	return JQ_OK;
}

jq_code jq_db_rescue(jq_db *db, int limit, int64_t *count, jq_db_err *err)
{
	char lim[4], base[4], max[4];
	jq_pgbin_put_i32(lim, limit);
	jq_pgbin_put_i32(base, db->backoff_base_ms);
	jq_pgbin_put_i32(max, db->backoff_max_ms);
	const char *values[3] = { lim, base, max };
	int lengths[3] = { 4, 4, 4 }, formats[3] = { 1, 1, 1 };
	return count_call(db, S_RESCUE, values, lengths, formats, count, err);
}

jq_code jq_db_time_limit(jq_db *db, int limit, int64_t *count, jq_db_err *err)
{
	char lim[4], base[4], max[4];
	jq_pgbin_put_i32(lim, limit);
	jq_pgbin_put_i32(base, db->backoff_base_ms);
	jq_pgbin_put_i32(max, db->backoff_max_ms);
	const char *values[3] = { lim, base, max };
	int lengths[3] = { 4, 4, 4 }, formats[3] = { 1, 1, 1 };
	PGresult *r;
	jq_code c = jq_dbi_run(db, S_TIME_LIMIT, values, lengths, formats, &r, err);
	if (c != JQ_OK)
		return c;
	*count = PQntuples(r) == 1 ? jq_pgbin_i64(r, 0, 0) : 0;
	PQclear(r);
	return JQ_OK;
}

jq_code jq_db_retention(jq_db *db, int older_than_s, int limit, int64_t *count, jq_db_err *err)
{
	char age[4], lim[4];
	jq_pgbin_put_i32(age, older_than_s);
	jq_pgbin_put_i32(lim, limit);
	const char *values[2] = { age, lim };
	int lengths[2] = { 4, 4 }, formats[2] = { 1, 1 };
	return count_call(db, S_RETENTION, values, lengths, formats, count, err);
}

int jq_db_rows_count(const jq_db_rows *rows)
{
	return rows ? rows->n : 0;
}

const char *jq_dbi_text(const PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? "" : PQgetvalue(r, row, col);
}

/* state_of reads a status column that check_states has passed. */
static jq_state state_of(const PGresult *r, int row, int col)
{
	jq_state s = JQ_STATE__COUNT;
	(void)jq_state_from_name(PQgetvalue(r, row, col), &s);
	return s;
}

void jq_db_rows_job(const jq_db_rows *rows, int i, jq_job *j)
{
	const PGresult *r = rows->res;
	i += rows->first;
	memset(j, 0, sizeof(*j));
	j->id = jq_pgbin_i64(r, i, C_ID);
	j->queue = jq_dbi_text(r, i, C_QUEUE);
	if (!PQgetisnull(r, i, C_PAYLOAD)) {
		j->payload = (const uint8_t *)PQgetvalue(r, i, C_PAYLOAD);
		j->payload_len = (size_t)PQgetlength(r, i, C_PAYLOAD);
	}
	j->status = state_of(r, i, C_STATUS);
	j->prev_status = state_of(r, i, C_PREV);
	j->attempts = jq_pgbin_i32(r, i, C_ATTEMPTS);
	j->max_attempts = jq_pgbin_i32(r, i, C_MAX_ATTEMPTS);
	j->priority = jq_pgbin_i16(r, i, C_PRIORITY);
	j->run_at_ms = jq_pgbin_ts_ms(r, i, C_RUN_AT);
	j->lease_expires_at_ms = jq_pgbin_ts_ms(r, i, C_LEASE_EXPIRES);
	j->lease_owner = jq_dbi_text(r, i, C_LEASE_OWNER);
	j->lease_token = jq_pgbin_i64(r, i, C_LEASE_TOKEN);
	j->last_error = jq_dbi_text(r, i, C_LAST_ERROR);
	j->idempotency_key = jq_dbi_text(r, i, C_IDEM);
	j->created_at_ms = jq_pgbin_ts_ms(r, i, C_CREATED);
	j->updated_at_ms = jq_pgbin_ts_ms(r, i, C_UPDATED);
	j->finished_at_ms = jq_pgbin_ts_ms(r, i, C_FINISHED);
	j->progress_percent = PQgetisnull(r, i, C_PROGRESS_PCT) ? -1 : jq_pgbin_i16(r, i, C_PROGRESS_PCT);
	j->progress_message = jq_dbi_text(r, i, C_PROGRESS_MSG);
	j->progress_at_ms = jq_pgbin_ts_ms(r, i, C_PROGRESS_AT);
	j->timeout_ms = PQgetisnull(r, i, C_TIMEOUT) ? 0 : jq_pgbin_i32(r, i, C_TIMEOUT);
	j->concurrency_key = jq_dbi_text(r, i, C_KEY);
}

void jq_db_rows_output(const jq_db_rows *rows, int i, const uint8_t **data, size_t *len)
{
	const PGresult *r = rows->res;
	i += rows->first;
	*data = NULL;
	*len = 0;
	if (PQnfields(r) <= C_OUTPUT || PQgetisnull(r, i, C_OUTPUT))
		return;
	*data = (const uint8_t *)PQgetvalue(r, i, C_OUTPUT);
	*len = (size_t)PQgetlength(r, i, C_OUTPUT);
}

void jq_db_rows_failure(const jq_db_rows *rows, int i, jq_failure_record *f)
{
	const PGresult *r = rows->res;
	f->attempt = jq_pgbin_i32(r, i, 0);
	f->worker = jq_dbi_text(r, i, 1);
	f->error = jq_dbi_text(r, i, 2);
	f->failed_at_ms = jq_pgbin_ts_ms(r, i, 3);
}

/* int4_or_0 reads a nullable int4 column: NULL (no limit) is 0. */
static int32_t int4_or_0(const PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? 0 : jq_pgbin_i32(r, row, col);
}

/* read_flow reads (paused, concurrency_limit, rate_limit, rate_period_ms) from column col on. */
static void read_flow(const PGresult *r, int row, int col, jq_queue_flow *f)
{
	f->paused = jq_pgbin_bool(r, row, col);
	f->concurrency_limit = int4_or_0(r, row, col + 1);
	f->rate_limit = int4_or_0(r, row, col + 2);
	f->rate_period_ms = int4_or_0(r, row, col + 3);
}

void jq_db_rows_stats(const jq_db_rows *rows, int i, jq_queue_stats *s)
{
	const PGresult *r = rows->res;
	s->queue = jq_dbi_text(r, i, 0);
	s->pending = jq_pgbin_i64(r, i, 1);
	s->scheduled = jq_pgbin_i64(r, i, 2);
	s->processing = jq_pgbin_i64(r, i, 3);
	s->completed = jq_pgbin_i64(r, i, 4);
	s->failed = jq_pgbin_i64(r, i, 5);
	s->cancelled = jq_pgbin_i64(r, i, 6);
	s->oldest_due_age_seconds = jq_pgbin_f64(r, i, 7);
	read_flow(r, i, 8, &s->flow);
	s->flow.key_concurrency_limit = int4_or_0(r, i, 12);
}

void jq_db_rows_settings(const jq_db_rows *rows, int i, jq_queue_settings *s)
{
	const PGresult *r = rows->res;
	s->queue = jq_dbi_text(r, i, 0);
	read_flow(r, i, 1, &s->flow);
	s->updated_at_ms = jq_pgbin_ts_ms(r, i, 5);
	s->flow.key_concurrency_limit = int4_or_0(r, i, 6);
}

bool jq_db_rows_cut(const jq_db_rows *rows)
{
	return rows != NULL && rows->cut;
}

void jq_db_rows_free(jq_db_rows *rows)
{
	if (rows == NULL)
		return;
	PQclear(rows->res);
	free(rows);
}

jq_code jq_db_complete_output_claim(jq_db *db, const jq_db_lease *leases, size_t n,
				    const jq_db_claim_next *next, jq_db_item *items, jq_db_rows **claimed,
				    jq_db_err *err)
{
	*claimed = NULL;
	jq_code c = jq_db_complete(db, leases, n, items, err);
	if (c != JQ_OK)
		return c;
	for (size_t i = 0; i < n; i++) {
		if (items[i].code != JQ_OK)
			return JQ_OK; /* a lease refused: nothing is claimed */
	}
	return jq_db_complete_claim(db, NULL, 0, next, NULL, claimed, err);
}
