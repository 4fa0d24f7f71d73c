/*
 * Periodic jobs against real jobqd replicas and PostgreSQL:
 *  - two replicas tick a schedule of every second: each tick is enqueued exactly once (a ledger
 *    of jobs per tick time), none is left out, and the replicas' tick counters add up to the jobs;
 *  - ticks missed by more than the grace: policy skip enqueues nothing, once enqueues one job;
 *    a tick a few seconds late still runs, at its tick time;
 *  - time zones: the first tick in a named zone, and what a tick in a skipped or repeated local
 *    hour becomes (jq_scheduler_next on the database's tz rules);
 *  - bad input answers INVALID_ARGUMENT (or NOT_FOUND) with the reason and changes nothing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobq.h"
#include "jq_cron.h"
#include "jq_db.h"
#include "jq_scheduler.h"
#include "jq_svc.h"
#include "jq_svc_api.h"
#include "jq_test.h"

static jq_api_svc fx;
static jq_svc second; /* the other replica, on the same database */

#define SVC_TEST(name) JQ_API_TEST(fx, name)
#define MAX_PAYLOAD 1024

static int start(void **state)
{
	(void)state;
	static const char *const flags[] = { "--max-payload-bytes=1024", NULL };
	if (jq_api_svc_start(&fx, "svc_schedule", NULL, flags) != 0)
		return -1;
	jq_svc_start(&second, "svc_schedule_b", fx.db_url, flags);
	return 0;
}

static int stop(void **state)
{
	(void)state;
	int b = jq_svc_finish(&second, 10000, fx.test_failed);
	return jq_api_svc_stop(&fx, 10000) | b;
}

typedef struct sched_args {
	const char *name, *cron, *zone, *queue, *payload, *key;
	Jobq__V1__MissedPolicy missed;
	int64_t run_at_ms;
	uint32_t max_attempts;
} sched_args;

/* add_req fills an AddSchedule request from a (its strings are borrowed). */
static void add_req(const sched_args *a, Jobq__V1__AddScheduleRequest *req, Jobq__V1__Schedule *s,
		    Jobq__V1__JobSpec *job)
{
	jobq__v1__add_schedule_request__init(req);
	jobq__v1__schedule__init(s);
	jobq__v1__job_spec__init(job);
	s->name = (char *)(a->name ? a->name : "");
	s->cron = (char *)(a->cron ? a->cron : "");
	s->time_zone = (char *)(a->zone ? a->zone : "");
	s->missed = a->missed;
	job->queue = (char *)(a->queue ? a->queue : "");
	job->payload.data = (uint8_t *)(a->payload ? a->payload : "");
	job->payload.len = a->payload ? strlen(a->payload) : 0;
	job->idempotency_key = (char *)(a->key ? a->key : "");
	job->run_at_ms = a->run_at_ms;
	job->max_attempts = a->max_attempts;
	s->job = job;
	req->schedule = s;
}

/* add_schedule must answer OK; returns the stored schedule's next run (ms). */
static int64_t add_schedule(const sched_args *a)
{
	Jobq__V1__AddScheduleRequest req;
	Jobq__V1__Schedule s;
	Jobq__V1__JobSpec job;
	add_req(a, &req, &s, &job);
	Jobq__V1__AddScheduleResponse *r =
		jq_api_ok(JQ_METHOD("AddSchedule"), &req, &jobq__v1__add_schedule_response__descriptor);
	assert_non_null(r->schedule);
	assert_string_equal(r->schedule->name, a->name);
	int64_t next = r->schedule->next_run_at_ms;
	JQ_FREE(r);
	return next;
}

static void expect_add(const sched_args *a, unsigned code, const char *text)
{
	Jobq__V1__AddScheduleRequest req;
	Jobq__V1__Schedule s;
	Jobq__V1__JobSpec job;
	add_req(a, &req, &s, &job);
	jq_api_expect(JQ_METHOD("AddSchedule"), &req, code, text);
}

static unsigned remove_schedule(const char *name)
{
	Jobq__V1__RemoveScheduleRequest req = JOBQ__V1__REMOVE_SCHEDULE_REQUEST__INIT;
	req.name = (char *)name;
	return jq_api_code(JQ_METHOD("RemoveSchedule"), &req, NULL, NULL);
}

static long long jobs_in(const char *queue)
{
	return jq_db_ll("SELECT count(*) FROM job_queue WHERE queue = '%s'", queue);
}

SVC_TEST(two_replicas_enqueue_each_tick_once)
{
	const char *q = "sched-ledger";
	add_schedule(&(sched_args){ .name = "every-second", .cron = "* * * * * *", .queue = q,
				    .payload = "tick" });
	JQ_POLL_UNTIL(jobs_in(q) >= 5, 15000, "five ticks of the every-second schedule");
	assert_int_equal(remove_schedule("every-second"), 0);
	/* The ledger: one job per tick time, and no tick left out between the first and the last. */
	long long jobs = jobs_in(q);
	long long ticks = jq_db_ll("SELECT count(DISTINCT run_at) FROM job_queue WHERE queue = '%s'", q);
	long long span = jq_db_ll("SELECT extract(epoch FROM max(run_at) - min(run_at))::int8 + 1"
				  " FROM job_queue WHERE queue = '%s'", q);
	assert_int_equal(jobs, ticks);
	assert_int_equal(jobs, span);
	assert_int_equal(jq_db_ll("SELECT count(*) FROM job_queue WHERE queue = '%s'"
				  " AND run_at <> date_trunc('second', run_at)", q), 0);
	/* Both replicas ran the ticker; their counters add up to the jobs. */
	JQ_POLL_UNTIL(jq_svc_metric(&fx.svc, "jobq_schedule_ticks_total") +
			      jq_svc_metric(&second, "jobq_schedule_ticks_total") == (double)jobs,
		      5000, "the replicas' tick counters to add up to the jobs");
	/* The jobs are ordinary jobs: claimable, with the schedule's payload. */
	int64_t token;
	assert_true(jq_claim_one(q, "w", 30, &token) > 0);
	assert_int_equal(remove_schedule("every-second"), 5); /* gone: NOT_FOUND */
	assert_non_null(strstr(jq_api_msg, "no such schedule"));
}

/* stale sets a schedule's next tick `ago` in the past, as if no replica had run since. */
static void stale(const char *name, const char *ago)
{
	jq_db_do("UPDATE job_schedule SET next_run_at = now() - interval '%s' WHERE name = '%s'", ago, name);
}

static bool moved_on(const char *name)
{
	return jq_db_ll("SELECT count(*) FROM job_schedule WHERE name = '%s' AND next_run_at > now()", name) == 1;
}

SVC_TEST(missed_ticks_skip_enqueues_nothing)
{
	add_schedule(&(sched_args){ .name = "yearly-skip", .cron = "@yearly", .queue = "sched-skip" });
	stale("yearly-skip", "1 hour");
	JQ_POLL_UNTIL(moved_on("yearly-skip"), 5000, "the schedule to move past its missed ticks");
	assert_int_equal(jobs_in("sched-skip"), 0);
	assert_int_equal(jq_db_ll("SELECT count(*) FROM job_schedule WHERE name = 'yearly-skip'"
				  " AND last_run_at IS NULL AND next_run_at = date_trunc('year', now() AT TIME ZONE 'UTC')"
				  "   AT TIME ZONE 'UTC' + interval '1 year'"), 1);
	assert_true(jq_svc_metric(&fx.svc, "jobq_schedule_missed_total") +
			    jq_svc_metric(&second, "jobq_schedule_missed_total") >= 1);
	assert_int_equal(remove_schedule("yearly-skip"), 0);
}

SVC_TEST(missed_ticks_once_enqueues_one_job)
{
	add_schedule(&(sched_args){ .name = "yearly-once", .cron = "0 0 1 1 *", .queue = "sched-once",
				    .payload = "catch up", .missed = JOBQ__V1__MISSED_POLICY__MISSED_POLICY_ONCE });
	/* Many ticks of a minute schedule would be missed as well; one job stands for them all. */
	add_schedule(&(sched_args){ .name = "minutely-once", .cron = "* * * * *", .queue = "sched-once-m",
				    .missed = JOBQ__V1__MISSED_POLICY__MISSED_POLICY_ONCE });
	stale("yearly-once", "2 days");
	stale("minutely-once", "3 hours");
	JQ_POLL_UNTIL(moved_on("yearly-once") && moved_on("minutely-once"), 5000,
		      "the schedules to move past their missed ticks");
	assert_int_equal(jobs_in("sched-once"), 1);
	assert_int_equal(remove_schedule("minutely-once"), 0);
	/* the minute schedule may have ticked on time since: at most one more job */
	assert_in_range(jobs_in("sched-once-m"), 1, 2);
	assert_int_equal(jq_db_ll("SELECT count(*) FROM job_queue j JOIN job_schedule s ON s.queue = j.queue"
				  " WHERE s.name = 'yearly-once' AND s.last_run_at = j.run_at"
				  "   AND j.payload = 'catch up' AND j.run_at > now() - interval '1 minute'"), 1);
	assert_int_equal(remove_schedule("yearly-once"), 0);
}

SVC_TEST(a_tick_a_few_seconds_late_runs_at_its_time)
{
	add_schedule(&(sched_args){ .name = "late", .cron = "@monthly", .queue = "sched-late",
				    .key = "late-{tick}", .max_attempts = 3 });
	/* The tick's job is announced on pending.<queue> like any enqueued job. */
	char pub_url[160];
	snprintf(pub_url, sizeof(pub_url), "ipc://%s", fx.svc.pub_path);
	jobq_options o = { .rpc_url = fx.svc.rpc_url, .pub_url = pub_url, .timeout_ms = 5000 };
	jobq_sub *sub = NULL;
	jobq_error jerr;
	assert_int_equal(jobq_subscribe(&o, "sched-late", &sub, &jerr), JOBQ_OK);
	assert_int_equal(jobq_sub_connected(sub, 5000, &jerr), JOBQ_OK);
	/* the tick, five seconds ago on a whole second, chosen before the row is touched */
	char *tick = jq_db_str("SELECT to_char(date_trunc('second', now() AT TIME ZONE 'UTC') - interval '5 seconds',"
			       " 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')");
	jq_db_do("UPDATE job_schedule SET next_run_at = '%s' WHERE name = 'late'", tick);
	JQ_POLL_UNTIL(jobs_in("sched-late") == 1, 5000, "the late tick's job");
	char want[64];
	snprintf(want, sizeof(want), "late-%s", tick);
	assert_int_equal(jq_db_ll("SELECT count(*) FROM job_queue j JOIN job_schedule s ON s.name = 'late'"
				  " WHERE j.queue = 'sched-late' AND j.idempotency_key = '%s' AND j.max_attempts = 3"
				  "   AND j.run_at = s.last_run_at AND s.next_run_at > now()", want), 1);
	free(tick);
	/* Heard within the notify safety net's period even if the first announcement was sent
	 * before the subscription took hold (PUB drops what no one hears). */
	long long id = jq_db_ll("SELECT id FROM job_queue WHERE queue = 'sched-late'");
	bool heard = false;
	for (long long until = jq_mono_ms() + 12000; !heard && jq_mono_ms() < until;) {
		jobq_announcement a;
		if (jobq_sub_next(sub, 500, &a, &jerr) != JOBQ_OK)
			continue;
		for (size_t i = 0; i < a.n_ids; i++)
			heard = heard || a.ids[i] == id;
		heard = heard || a.n_ids == 0; /* "some jobs of the queue" */
		jobq_announcement_free(&a);
	}
	jobq_sub_close(sub);
	assert_true(heard);
	assert_int_equal(remove_schedule("late"), 0);
}

SVC_TEST(a_named_zone_sets_the_first_tick)
{
	int64_t next = add_schedule(&(sched_args){ .name = "ny-nine", .cron = "0 9 * * *",
						   .zone = "America/New_York", .queue = "sched-ny" });
	long long want = jq_db_ll(
		"WITH l AS (SELECT now() AT TIME ZONE 'America/New_York' AS n)"
		" SELECT (extract(epoch FROM (CASE WHEN date_trunc('day', n) + interval '9 hours' > n"
		"   THEN date_trunc('day', n) + interval '9 hours' ELSE date_trunc('day', n) + interval '33 hours' END)"
		"   AT TIME ZONE 'America/New_York') * 1000)::int8 FROM l");
	assert_int_equal(next, want);
	/* ListSchedules shows it as stored */
	Jobq__V1__ListSchedulesRequest req = JOBQ__V1__LIST_SCHEDULES_REQUEST__INIT;
	Jobq__V1__ListSchedulesResponse *r =
		jq_api_ok(JQ_METHOD("ListSchedules"), &req, &jobq__v1__list_schedules_response__descriptor);
	bool seen = false;
	for (size_t i = 0; i < r->n_schedules; i++) {
		if (strcmp(r->schedules[i]->name, "ny-nine") != 0)
			continue;
		seen = true;
		assert_string_equal(r->schedules[i]->cron, "0 9 * * *");
		assert_string_equal(r->schedules[i]->time_zone, "America/New_York");
		assert_string_equal(r->schedules[i]->job->queue, "sched-ny");
		assert_int_equal(r->schedules[i]->next_run_at_ms, next);
		assert_int_equal(r->schedules[i]->last_run_at_ms, 0);
	}
	assert_true(seen);
	JQ_FREE(r);
	assert_int_equal(remove_schedule("ny-nine"), 0);
}

/* next_utc: jq_scheduler_next from local wall-clock time `after` in zone, as "YYYY-MM-DD HH:MI:SS"
 * UTC (static buffer). */
static const char *next_utc(jq_db *db, const char *cron, const char *zone, jq_cron_time after)
{
	static char out[64];
	jq_cron c;
	char why[128];
	jq_db_err err;
	int64_t next_us, floor_us;
	assert_int_equal(jq_cron_parse(cron, &c, why, sizeof(why)), 0);
	assert_int_equal(jq_db_zone_instant(db, zone, jq_cron_time_to_seconds(&after), &floor_us, &err), JQ_OK);
	assert_int_equal(jq_scheduler_next(db, &c, zone, jq_cron_time_to_seconds(&after), floor_us, &next_us, &err),
			 JQ_OK);
	jq_cron_time t;
	jq_cron_time_from_seconds(next_us / 1000000, &t);
	snprintf(out, sizeof(out), "%04d-%02d-%02d %02d:%02d:%02d", t.year, t.mon, t.day, t.hour, t.min, t.sec);
	return out;
}

SVC_TEST(skipped_and_repeated_local_hours)
{
	jq_db *db;
	jq_db_opts o = { .url = fx.db_url, .prepared = true, .application_name = "test_schedule" };
	assert_int_equal(jq_db_open(&o, &db), 0);
	/* New York springs forward on 2026-03-08 at 02:00 (to 03:00 EDT, UTC-4): 02:30 does not
	 * exist that day and runs at 03:30 EDT = 07:30 UTC; the next day at 02:30 EDT. */
	jq_cron_time sat = { 2026, 3, 7, 2, 30, 0 };
	assert_string_equal(next_utc(db, "30 2 * * *", "America/New_York", sat), "2026-03-08 07:30:00");
	jq_cron_time sun = { 2026, 3, 8, 3, 30, 0 };
	assert_string_equal(next_utc(db, "30 2 * * *", "America/New_York", sun), "2026-03-09 06:30:00");
	/* Every 15 minutes across the gap: 01:45 EST, then 03:00 EDT (the gap's ticks fold into it). */
	jq_cron_time before_gap = { 2026, 3, 8, 1, 45, 0 };
	assert_string_equal(next_utc(db, "*/15 * * * *", "America/New_York", before_gap), "2026-03-08 07:00:00");
	/* Falls back on 2026-11-01 at 02:00 EDT to 01:00 EST: 01:30 happens twice and runs once, the
	 * second time (EST, UTC-5): 06:30 UTC. */
	jq_cron_time oct31 = { 2026, 10, 31, 1, 30, 0 };
	assert_string_equal(next_utc(db, "30 1 * * *", "America/New_York", oct31), "2026-11-01 06:30:00");
	/* UTC has no such hours. */
	assert_string_equal(next_utc(db, "30 1 * * *", "UTC", oct31), "2026-11-01 01:30:00");
	jq_db_close(db);
}

SVC_TEST(bad_input_is_refused_and_changes_nothing)
{
	const char *q = "sched-bad";
	add_schedule(&(sched_args){ .name = "keep", .cron = "0 3 * * *", .queue = q, .payload = "p" });
	char *before = jq_db_str("SELECT row(s.*)::text FROM job_schedule s WHERE name = 'keep'");
	sched_args good = { .name = "keep", .cron = "0 4 * * *", .queue = q };
	struct {
		sched_args a;
		const char *text;
	} cases[] = {
		{ { .name = "keep", .cron = "0 25 * * *", .queue = q }, "schedule.cron: hour: 25 is out of range 0-23" },
		{ { .name = "keep", .cron = "* * * *", .queue = q }, "schedule.cron: 4 fields" },
		{ { .name = "keep", .cron = "0 0 30 2 *", .queue = q }, "never matches" },
		{ { .name = "keep", .cron = "0 4 * * *", .zone = "Mars/Olympus_Mons", .queue = q },
		  "unknown time zone 'Mars/Olympus_Mons'" },
		{ { .name = "keep", .cron = "0 4 * * *", .zone = "EST5EDT,M3.2.0,M11.1.0", .queue = q },
		  "not a time-zone name" },
		{ { .name = "keep", .cron = "0 4 * * *", .zone = "UTC+5", .queue = q }, "unknown time zone" },
		{ { .name = "keep", .cron = "0 4 * * *", .queue = "bad queue" }, "schedule.job.queue" },
		{ { .name = "keep", .cron = "0 4 * * *" }, "schedule.job.queue: a queue name is required" },
		{ { .name = "bad name!", .cron = "0 4 * * *", .queue = q }, "schedule.name" },
		{ { .name = "", .cron = "0 4 * * *", .queue = q }, "schedule.name: a schedule name is required" },
		{ { .name = "keep", .cron = "0 4 * * *", .queue = q, .run_at_ms = 1 }, "run_at_ms and delay_ms" },
		{ { .name = "keep", .cron = "0 4 * * *", .queue = q, .max_attempts = 1001 }, "max_attempts" },
		{ { .name = "keep", .cron = "0 4 * * *", .queue = q, .missed = 7 }, "schedule.missed" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		expect_add(&cases[i].a, 3, cases[i].text);
	char big[MAX_PAYLOAD + 2];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	good.payload = big;
	expect_add(&good, 3, "schedule.job.payload: 1025 bytes, over the limit of 1024");
	char key[300];
	memset(key, 'k', 240);
	strcpy(key + 240, "{tick}");
	good.payload = NULL;
	good.key = key;
	expect_add(&good, 3, "once {tick} is replaced");
	Jobq__V1__AddScheduleRequest empty = JOBQ__V1__ADD_SCHEDULE_REQUEST__INIT;
	jq_api_expect(JQ_METHOD("AddSchedule"), &empty, 3, "schedule: required");
	assert_int_equal(remove_schedule("no-such"), 5);
	assert_int_equal(remove_schedule("bad name!"), 3);
	/* nothing changed */
	char *after = jq_db_str("SELECT row(s.*)::text FROM job_schedule s WHERE name = 'keep'");
	assert_string_equal(before, after);
	assert_int_equal(jq_db_ll("SELECT count(*) FROM job_schedule WHERE name <> 'keep'"), 0);
	free(before);
	free(after);
	/* A good replace changes it, keeping created_at. */
	good.key = "k-{tick}";
	add_schedule(&good);
	assert_int_equal(jq_db_ll("SELECT count(*) FROM job_schedule WHERE name = 'keep' AND cron = '0 4 * * *'"
				  " AND idempotency_key = 'k-{tick}' AND updated_at > created_at"), 1);
	assert_int_equal(remove_schedule("keep"), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(two_replicas_enqueue_each_tick_once),
		cmocka_unit_test(missed_ticks_skip_enqueues_nothing),
		cmocka_unit_test(missed_ticks_once_enqueues_one_job),
		cmocka_unit_test(a_tick_a_few_seconds_late_runs_at_its_time),
		cmocka_unit_test(a_named_zone_sets_the_first_tick),
		cmocka_unit_test(skipped_and_repeated_local_hours),
		cmocka_unit_test(bad_input_is_refused_and_changes_nothing),
	};
	return cmocka_run_group_tests(tests, start, stop);
}
