/*
 * jq_db — every SQL statement jobqd runs, on one libpq connection per jq_db.
 *
 * A jq_db is used by one thread at a time (each RPC worker owns one; so does the rescuer). It
 * reconnects by itself: a call on a broken connection tries to connect again (at most every
 * 250 ms) and answers JQ_UNAVAILABLE meanwhile. Statements are named prepared statements, or
 * unnamed ones when `prepared` is off (PgBouncer before 1.21 in transaction mode). Parameters
 * and results travel in binary, so payloads are never escaped.
 *
 * No call waits for ever on a connection that went silent (jq_pgconn: keepalives, a TCP user
 * timeout, and every wait bounded). A statement's answer is awaited for the session's
 * statement_timeout plus a second (a slow statement on a live connection ends with the server's
 * own error first), and never past the deadline set by jq_db_set_deadline. A connection left
 * without an answer is closed: the statement may or may not have run, as with any lost
 * connection, and the next call connects again.
 *
 * Errors are values: each call returns a jq_code (0 = OK) and fills a jq_db_err with a message.
 * Rows returned by a call (jq_db_rows) point into libpq's result: they stay valid until
 * jq_db_rows_free, which the caller must call on every path (NULL is a no-op).
 */
#ifndef JQ_DB_H
#define JQ_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "jq_pgconn.h"
#include "jq_code.h"
#include "jq_state.h"

typedef struct jq_db jq_db;
typedef struct jq_db_rows jq_db_rows;

typedef struct jq_db_err {
	char msg[256];
	char sqlstate[6];
} jq_db_err;

typedef struct jq_db_opts {
	const char *url;
	bool prepared;
	int backoff_base_ms; /* first retry delay of a failed job; doubles per attempt, jittered */
	int backoff_max_ms;
	int statement_timeout_ms; /* 0 = none */
	const char *application_name;
	const jq_pgconn_net *net; /* copied; NULL = jq_pgconn_net_default */
} jq_db_opts;

/* A job to enqueue. Strings and payload are borrowed for the duration of the call. */
typedef struct jq_db_job_spec {
	const char *queue;
	const uint8_t *payload;
	size_t payload_len;
	int16_t priority;
	int64_t run_at_us;   /* Unix microseconds; 0 = now (the database's clock) */
	int32_t max_attempts; /* 0 = the table's default */
	const char *idempotency_key; /* NULL = none */
	int32_t timeout_ms;  /* time limit from its claim; 0 = none */
} jq_db_job_spec;

/* A job as read from the database. Pointers point into the jq_db_rows it came from. */
typedef struct jq_job {
	int64_t id;
	const char *queue;
	const uint8_t *payload; /* NULL when not selected */
	size_t payload_len;
	jq_state status;
	jq_state prev_status;
	int32_t attempts;
	int32_t max_attempts;
	int16_t priority;
	int64_t run_at_ms;
	int64_t lease_expires_at_ms; /* 0 when not processing */
	const char *lease_owner;     /* "" when never claimed */
	int64_t lease_token;         /* 0 when never claimed */
	const char *last_error;      /* "" when none */
	const char *idempotency_key; /* "" when none */
	int64_t created_at_ms;
	int64_t updated_at_ms;
	int64_t finished_at_ms;      /* 0 while unfinished */
	int32_t progress_percent;    /* the worker's last report; -1 when none */
	const char *progress_message; /* "" when none */
	int64_t progress_at_ms;      /* 0 when never reported */
	int32_t timeout_ms;          /* 0 = no time limit */
} jq_job;

typedef struct jq_failure_record {
	int32_t attempt;
	const char *worker;
	const char *error;
	int64_t failed_at_ms;
} jq_failure_record;

/* A job named by its lease, for Heartbeat / Complete / Fail. */
typedef struct jq_db_lease {
	int64_t id;
	int64_t lease_token;
	/* Fail only: */
	const char *error;
	bool final;
	int32_t retry_in_ms; /* 0 = backoff */
	const char *worker;  /* recorded in the history; NULL or "" = the lease owner */
	/* Complete only: the job's output (borrowed), kept when has_output. */
	bool has_output;
	const uint8_t *output;
	size_t output_len;
	/* Heartbeat only: progress to store under the lease, when progress_percent >= 0. */
	int32_t progress_percent;
	const char *progress_message; /* borrowed; NULL = "" */
} jq_db_lease;

#define JQ_DB_QUEUE_MAX 64 /* bytes of a queue name (the table's CHECK) */
/* The error of a job failed by its time limit (its history, last_error, the stop reason). */
#define JQ_TIME_LIMIT_ERROR "time limit exceeded"

/* The outcome for one job of a batch (same order as the input). */
typedef struct jq_db_item {
	int64_t id;
	jq_code code;
	jq_state status;      /* after the call, when known */
	bool status_known;
	int64_t lease_expires_at_ms; /* Heartbeat */
	int64_t run_at_ms;           /* Fail: next run of a retried job */
	const char *message;         /* static string; NULL when OK */
	/* Complete, Fail: this call moved the job (completed it; failed or retried it), as opposed
	 * to an OK for the repeat of a call that already did; then queue is the job's queue, read
	 * from the same statement. Fail assumes the ids of a batch distinct (jq_validate). */
	bool changed;
	char queue[JQ_DB_QUEUE_MAX + 1];
	/* Heartbeat: the job was stopped under this very lease ("cancelled", or JQ_TIME_LIMIT_ERROR);
	 * static; NULL = not. */
	const char *stop_reason;
} jq_db_item;

/* A queue's flow settings (job_queue_settings; migration 015): a limit of 0 is none. */
typedef struct jq_queue_flow {
	bool paused;
	int32_t concurrency_limit; /* at most this many of its jobs processing at once */
	int32_t rate_limit;        /* at most this many claimed per window of rate_period_ms */
	int32_t rate_period_ms;
} jq_queue_flow;

typedef struct jq_queue_stats {
	const char *queue;
	int64_t pending, scheduled, processing, completed, failed, cancelled;
	double oldest_due_age_seconds;
	jq_queue_flow flow;
} jq_queue_stats;

/* A queue's settings as Pause, Resume and ConfigureQueue leave them. */
typedef struct jq_queue_settings {
	const char *queue; /* points into the rows */
	jq_queue_flow flow;
	int64_t updated_at_ms;
} jq_queue_settings;

/* What ConfigureQueue changes: a limit whose set_ flag is false stays as it is; set with a
 * limit of 0, it is removed. The values are validated before (jq_validate). */
typedef struct jq_db_flow_change {
	bool set_concurrency;
	int32_t concurrency_limit;
	bool set_rate;
	int32_t rate_limit, rate_period_ms;
} jq_db_flow_change;

/* jq_db_open allocates a handle and tries to connect. It succeeds (0) even when the database is
 * down (calls answer JQ_UNAVAILABLE and reconnect; nothing is logged: see jq_db_connected); it
 * fails only if memory runs out. The opts strings are copied. Free with jq_db_close. */
int jq_db_open(const jq_db_opts *opts, jq_db **out) __attribute__((warn_unused_result));
void jq_db_close(jq_db *db);

/* jq_db_connected tells whether the handle holds a usable connection now; when not, why->msg
 * says why the last attempt failed (one line). Only for the handle's own thread, or before
 * that thread starts. */
bool jq_db_connected(const jq_db *db, jq_db_err *why);

/* jq_db_set_deadline bounds the calls that follow by a request's deadline (deadline_us on the
 * jq_clock_mono_us clock; 0 = none): they stop waiting for the database a little before it (a
 * tenth of the time left, at most 50 ms, so the answer reaches the client in time) and answer
 * DEADLINE_EXCEEDED, and a connection attempt ends there too. A call that starts with no time
 * left answers DEADLINE_EXCEEDED without touching the connection. */
void jq_db_set_deadline(jq_db *db, int64_t deadline_us);

/* jq_db_plan_renewals: how many times this handle has prepared a batch statement again, under a
 * fresh name, so that PostgreSQL plans it afresh (see `replan` in jq_db.c); for tests and
 * diagnostics. */
int64_t jq_db_plan_renewals(const jq_db *db);

/* jq_db_statement_name: the name statement `base` ("jq_claim") is prepared under on the handle's
 * connection now, or NULL (not prepared, or no such statement); for tests. */
const char *jq_db_statement_name(const jq_db *db, const char *base);

/* jq_db_ping checks the connection, reconnecting if needed. */
jq_code jq_db_ping(jq_db *db, jq_db_err *err) __attribute__((warn_unused_result));

/* jq_db_enqueue inserts n jobs in one statement (atomically) and writes their ids to ids[n]. */
jq_code jq_db_enqueue(jq_db *db, const jq_db_job_spec *specs, size_t n, int64_t *ids, jq_db_err *err)
	__attribute__((warn_unused_result));

/* Claim and List bound the bytes of what they return (the reply they end up in): a job counts
 * the bytes of its payload (List: when asked for), queue, lease owner (Claim: the worker), last
 * error and idempotency key, plus per_job_bytes; jobs are taken in order while their running sum
 * stays within max_bytes, and the first job always. The statement applies the budget itself,
 * from the stored lengths: nothing past it is claimed, and no payload past it leaves the
 * database. jq_db_rows_cut tells whether it left jobs out. */

/* jq_db_claim_within moves up to limit due pending jobs of queue to processing in one statement
 * and returns them (with payload) in *rows, within max_bytes (above). Jobs the budget leaves out
 * stay pending and unclaimed. */
jq_code jq_db_claim_within(jq_db *db, const char *queue, int limit, const char *worker,
			   int lease_seconds, int64_t max_bytes, int per_job_bytes, jq_db_rows **rows,
			   jq_db_err *err) __attribute__((warn_unused_result));

/* jq_db_claim: jq_db_claim_within without a byte budget (tests, the raw benchmark). */
jq_code jq_db_claim(jq_db *db, const char *queue, int limit, const char *worker, int lease_seconds,
		    jq_db_rows **rows, jq_db_err *err) __attribute__((warn_unused_result));

/* The claim of jq_db_complete_claim and jq_db_fail_claim: as jq_db_claim_within's arguments,
 * except that the budget is strict: a job is claimed only when it fits within max_bytes, the
 * first one too (the claimed jobs share their reply with the completion's results). */
typedef struct jq_db_claim_next {
	const char *queue;
	int limit;
	const char *worker;
	int lease_seconds;
	int64_t max_bytes;
	int per_job_bytes;
} jq_db_claim_next;

/* jq_db_complete_claim completes n leases as jq_db_complete does and, in the same statement (one
 * round trip, one commit), claims as `next` says when every lease was accepted (items[i].code OK
 * for all i: completed now, or the repeat of a call that did). When a lease is refused nothing is
 * claimed, and *claimed holds no job. n may be 0: a claim alone, with the strict budget. The
 * jobs claimed are in *claimed (free with jq_db_rows_free; set on JQ_OK only). */
jq_code jq_db_complete_claim(jq_db *db, const jq_db_lease *leases, size_t n, const jq_db_claim_next *next,
			     jq_db_item *items, jq_db_rows **claimed, jq_db_err *err)
	__attribute__((warn_unused_result));

/* jq_db_complete_output_claim: jq_db_complete_claim for leases that carry outputs, in two
 * statements: the completion (keeping the outputs), then, when every lease was accepted, the
 * claim alone. Should the claim's statement fail, the completion stands (a repeat of the call is
 * OK for its leases and claims again). */
jq_code jq_db_complete_output_claim(jq_db *db, const jq_db_lease *leases, size_t n,
				    const jq_db_claim_next *next, jq_db_item *items, jq_db_rows **claimed,
				    jq_db_err *err) __attribute__((warn_unused_result));

/* jq_db_fail_claim: jq_db_fail and the claim of `next` in one statement, under the same rule as
 * jq_db_complete_claim. */
jq_code jq_db_fail_claim(jq_db *db, const jq_db_lease *leases, size_t n, const jq_db_claim_next *next,
			 jq_db_item *items, jq_db_rows **claimed, jq_db_err *err)
	__attribute__((warn_unused_result));

/* Heartbeat, Complete, Fail: one statement per batch; items[n] receives each job's outcome.
 * Heartbeat also stores the progress of the leases that carry some (progress_percent >= 0), and
 * Complete the outputs of those with has_output, only where the lease holds. A Heartbeat of a
 * job cancelled under that very lease answers FAILED_PRECONDITION with stop_reason set. */
jq_code jq_db_heartbeat(jq_db *db, const jq_db_lease *leases, size_t n, int lease_seconds,
			jq_db_item *items, jq_db_err *err) __attribute__((warn_unused_result));
jq_code jq_db_complete(jq_db *db, const jq_db_lease *leases, size_t n, jq_db_item *items,
		       jq_db_err *err) __attribute__((warn_unused_result));
jq_code jq_db_fail(jq_db *db, const jq_db_lease *leases, size_t n, jq_db_item *items,
		   jq_db_err *err) __attribute__((warn_unused_result));

/* jq_db_get reads one job and its failure history: *job_rows holds 0 or 1 job. */
jq_code jq_db_get(jq_db *db, int64_t id, jq_db_rows **job_rows, jq_db_rows **failure_rows,
		  jq_db_err *err) __attribute__((warn_unused_result));

/* jq_db_list: up to limit jobs with id > after_id, ascending, within max_bytes (above); queue
 * NULL = all; status NULL = all. */
jq_code jq_db_list(jq_db *db, const char *queue, const jq_state *status, int64_t after_id, int limit,
		   bool include_payload, int64_t max_bytes, int per_job_bytes, jq_db_rows **rows,
		   jq_db_err *err) __attribute__((warn_unused_result));

/* jq_db_retry: failed or cancelled jobs back to pending (attempts start again). */
jq_code jq_db_retry(jq_db *db, const int64_t *ids, size_t n, jq_db_item *items, jq_db_err *err)
	__attribute__((warn_unused_result));

/* jq_db_retry_failed_batch: up to limit failed jobs of queue whose id is above after_id back to
 * pending, lowest ids first, in one statement; *count = how many, *last_id = the largest id it
 * retried (after_id when none). Passing *last_id as the next after_id goes on from there, so a
 * pass over the queue picks each job once, even one that fails again meanwhile. */
jq_code jq_db_retry_failed_batch(jq_db *db, const char *queue, int64_t after_id, int limit,
				 int64_t *count, int64_t *last_id, jq_db_err *err)
	__attribute__((warn_unused_result));

/* jq_db_cancel: pending, failed or processing jobs to cancelled (a processing job's lease ends
 * with it: see S_CANCEL). A completed job answers FAILED_PRECONDITION. */
jq_code jq_db_cancel(jq_db *db, const int64_t *ids, size_t n, jq_db_item *items, jq_db_err *err)
	__attribute__((warn_unused_result));

/* jq_db_wait_mark marks the unfinished jobs among ids[n] so that their end is notified
 * (channel jobq_done); jq_db_wait_read then reads those that exist, in the order of ids, without
 * payload, into *rows. */
jq_code jq_db_wait_mark(jq_db *db, const int64_t *ids, size_t n, jq_db_err *err)
	__attribute__((warn_unused_result));
jq_code jq_db_wait_read(jq_db *db, const int64_t *ids, size_t n, jq_db_rows **rows, jq_db_err *err)
	__attribute__((warn_unused_result));

/* jq_db_stats: counts by queue and state (queue NULL = all) in *rows, with each queue's flow
 * settings (a queue with settings and no jobs is listed too); read with jq_db_rows_stats. */
jq_code jq_db_stats(jq_db *db, const char *queue, jq_db_rows **rows, jq_db_err *err)
	__attribute__((warn_unused_result));

/* jq_db_queue_pause pauses (paused true) or resumes a queue, giving it a settings row if it has
 * none; *rows holds the row as it is now (read with jq_db_rows_settings). */
jq_code jq_db_queue_pause(jq_db *db, const char *queue, bool paused, jq_db_rows **rows, jq_db_err *err)
	__attribute__((warn_unused_result));

/* jq_db_queue_configure changes a queue's limits (see jq_db_flow_change) in one statement; *rows
 * as for jq_db_queue_pause. */
jq_code jq_db_queue_configure(jq_db *db, const char *queue, const jq_db_flow_change *ch,
			      jq_db_rows **rows, jq_db_err *err) __attribute__((warn_unused_result));

/* jq_db_job_gauges: for /metrics, per queue, exact counts of pending (scheduled ones included,
 * and counted apart too), processing and failed jobs, the oldest due job's age and the flow
 * settings, read with jq_db_rows_stats (completed and cancelled are 0). Its cost follows those
 * jobs only, never the finished ones (it reads partial indexes). */
jq_code jq_db_job_gauges(jq_db *db, jq_db_rows **rows, jq_db_err *err) __attribute__((warn_unused_result));

/* jq_db_finished_estimates: completed and cancelled jobs in the whole table, estimated from
 * PostgreSQL's statistics (as fresh as the last autovacuum and ANALYZE); -1 each while the table
 * has never been analyzed. Costs the same however large the table is. */
jq_code jq_db_finished_estimates(jq_db *db, int64_t *completed, int64_t *cancelled, jq_db_err *err)
	__attribute__((warn_unused_result));

/* jq_db_job_gauges_sql: that statement's text (for tests that EXPLAIN it). */
const char *jq_db_job_gauges_sql(void);

/* jq_db_throughput: jobs completed in each of the last JQ_DB_THROUGHPUT_MINUTES minutes, the
 * current one last (at_ms: the minute's start, Unix ms). Its cost follows the jobs completed in
 * that hour (job_queue_finished_idx). */
#define JQ_DB_THROUGHPUT_MINUTES 60
typedef struct jq_db_minute {
	int64_t at_ms;
	int64_t completed;
} jq_db_minute;
jq_code jq_db_throughput(jq_db *db, jq_db_minute out[JQ_DB_THROUGHPUT_MINUTES], jq_db_err *err)
	__attribute__((warn_unused_result));

/* jq_db_throughput_sql: that statement's text (for tests that EXPLAIN it). */
const char *jq_db_throughput_sql(void);

/* jq_db_rescue returns up to limit jobs whose lease expired to pending (or failed when their
 * attempts are used up), recording "lease expired" in the history; *count = how many. */
jq_code jq_db_rescue(jq_db *db, int limit, int64_t *count, jq_db_err *err)
	__attribute__((warn_unused_result));

/* jq_db_time_limit fails up to limit processing jobs that have run past their time limit (as
 * jq_db_rescue does, with JQ_TIME_LIMIT_ERROR) and notifies jobq_stop for each; *count = how many. */
jq_code jq_db_time_limit(jq_db *db, int limit, int64_t *count, jq_db_err *err)
	__attribute__((warn_unused_result));

/* jq_db_retention deletes up to limit completed/cancelled jobs finished more than older_than_s
 * seconds ago; *count = how many. */
jq_code jq_db_retention(jq_db *db, int older_than_s, int limit, int64_t *count, jq_db_err *err)
	__attribute__((warn_unused_result));

/* Reading rows. A job row's states are always ones this jobqd knows: a call that would return a
 * state it does not know (a newer schema's) answers JQ_INTERNAL instead, naming it. */
int jq_db_rows_count(const jq_db_rows *rows);
void jq_db_rows_job(const jq_db_rows *rows, int i, jq_job *out);
void jq_db_rows_failure(const jq_db_rows *rows, int i, jq_failure_record *out);
/* jq_db_rows_output: the output of job row i of jq_db_get's rows (*len 0 and NULL when none). */
void jq_db_rows_output(const jq_db_rows *rows, int i, const uint8_t **data, size_t *len);
void jq_db_rows_stats(const jq_db_rows *rows, int i, jq_queue_stats *out);
void jq_db_rows_settings(const jq_db_rows *rows, int i, jq_queue_settings *out);
void jq_db_rows_free(jq_db_rows *rows);
/* jq_db_rows_cut: the byte budget of a Claim or List left out jobs the limit would have taken. */
bool jq_db_rows_cut(const jq_db_rows *rows);

/* jq_db_claim_sql returns the claim statement's text (for tests that EXPLAIN it). */
const char *jq_db_claim_sql(void);

/* ---- Schedules (job_schedule; jq_db_schedule.c) ----
 * Wall-clock times of a schedule's zone travel as seconds since 1970-01-01 00:00 of that clock
 * (jq_cron_time_to_seconds); instants as Unix microseconds. */

/* A schedule to store. Strings and payload are borrowed for the duration of the call. */
typedef struct jq_db_schedule_spec {
	const char *name, *cron, *time_zone, *queue;
	const uint8_t *payload;
	size_t payload_len;
	int16_t priority;
	int32_t max_attempts;        /* 0 = the jobs get the table's default */
	const char *idempotency_key; /* pattern; NULL = none */
	const char *missed;          /* "skip" or "once" */
	int64_t next_run_at_us;
} jq_db_schedule_spec;

/* A schedule as read. Pointers point into the jq_db_rows it came from. */
typedef struct jq_schedule {
	const char *name, *cron, *time_zone, *queue, *missed;
	const uint8_t *payload; /* NULL when not selected */
	size_t payload_len;
	int16_t priority;
	int32_t max_attempts;        /* 0 = default */
	const char *idempotency_key; /* "" when none */
	int64_t next_run_at_ms, last_run_at_ms; /* last: 0 when never */
	int64_t created_at_ms, updated_at_ms;
} jq_schedule;

/* A due schedule, for the ticker. */
typedef struct jq_due_schedule {
	const char *name, *cron, *time_zone, *missed;
	int64_t tick_us;     /* next_run_at: the tick that is due */
	int64_t tick_local_s; /* the same on the zone's wall clock */
	int64_t now_local_s;  /* the database's now() on the zone's wall clock */
	int64_t now_us;
} jq_due_schedule;

/* jq_db_zone_now: *known tells whether zone is a time-zone name of the database's tz database;
 * when it is, *local_s is the zone's wall clock now. *now_us: the database's now(). */
jq_code jq_db_zone_now(jq_db *db, const char *zone, bool *known, int64_t *local_s, int64_t *now_us,
		       jq_db_err *err) __attribute__((warn_unused_result));

/* jq_db_zone_instant: the instant of wall-clock time local_s in zone (see S_SCHED_INSTANT for
 * times the clock skips or repeats). */
jq_code jq_db_zone_instant(jq_db *db, const char *zone, int64_t local_s, int64_t *instant_us,
			   jq_db_err *err) __attribute__((warn_unused_result));

/* jq_db_schedule_put creates or replaces (by name) a schedule; *rows holds it as stored. */
jq_code jq_db_schedule_put(jq_db *db, const jq_db_schedule_spec *s, jq_db_rows **rows, jq_db_err *err)
	__attribute__((warn_unused_result));

/* jq_db_schedule_list: every schedule, by name. */
jq_code jq_db_schedule_list(jq_db *db, bool include_payload, jq_db_rows **rows, jq_db_err *err)
	__attribute__((warn_unused_result));

/* jq_db_schedule_remove deletes schedule name; *removed: whether there was one. */
jq_code jq_db_schedule_remove(jq_db *db, const char *name, bool *removed, jq_db_err *err)
	__attribute__((warn_unused_result));

/* jq_db_schedules_due: up to limit schedules whose next_run_at has come, earliest first. */
jq_code jq_db_schedules_due(jq_db *db, int limit, jq_db_rows **rows, jq_db_err *err)
	__attribute__((warn_unused_result));

/* jq_db_schedule_soonest: *count schedules; *in_ms until the nearest tick (negative when due;
 * INT64_MAX when there is none). */
jq_code jq_db_schedule_soonest(jq_db *db, int64_t *count, int64_t *in_ms, jq_db_err *err)
	__attribute__((warn_unused_result));

/* jq_db_schedule_tick moves schedule name from tick_us to next_us if it still waits for tick_us
 * (*won), and in the same transaction, when enqueue, enqueues its job with run_at run_at_us
 * (*job_id; 0 when none; queue, JQ_DB_QUEUE_MAX + 1 bytes, gets its queue). */
jq_code jq_db_schedule_tick(jq_db *db, const char *name, int64_t tick_us, int64_t next_us, bool enqueue,
			    int64_t run_at_us, bool *won, int64_t *job_id, char *queue, jq_db_err *err)
	__attribute__((warn_unused_result));

void jq_db_rows_schedule(const jq_db_rows *rows, int i, jq_schedule *out);
void jq_db_rows_due(const jq_db_rows *rows, int i, jq_due_schedule *out);

#endif
