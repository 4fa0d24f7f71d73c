/*
 * Long-poll Claims (ClaimRequest.wait_ms) against a real jobqd: a waiting claim returns within
 * milliseconds of an enqueue, a wait with nothing to claim ends empty on time, waiters hold no
 * database connection (a 2-connection service keeps serving while 16 claims wait), and SIGTERM
 * answers the waiters and exits cleanly. An announcement wakes only as many waiters as it has
 * jobs, and a Claim it woke is not woken for again.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jobq.h"
#include "jq_svc.h"
#include "jq_test.h"

static char *db_url;
static jq_svc svc;
static char pub_url[96];
static jobq_client *cl;

static int setup(void **state)
{
	(void)state;
	char flag[128];
	jobq_error err;
	db_url = jq_test_db_clone("jq_longpoll_test");
	snprintf(pub_url, sizeof(pub_url), "ipc:///tmp/jobq-longpoll-test-%d.pub", (int)getpid());
	snprintf(flag, sizeof(flag), "--pub-url=%s", pub_url);
	/* Two database connections: waiters must not need one each. */
	const char *const flags[] = { flag, "--db-pool-size=2", NULL };
	jq_svc_start(&svc, "longpoll", db_url, flags);
	jobq_options o = { .rpc_url = svc.rpc_url, .pub_url = pub_url, .timeout_ms = 5000 };
	if (jobq_connect(&o, &cl, &err) != JOBQ_OK)
		fail_msg("jobq_connect: %s", err.message);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	jobq_close(cl);
	int status = jq_svc_finish(&svc, 5000, false);
	free(db_url);
	return status;
}

static int64_t enqueue(const char *queue, const char *payload)
{
	jobq_job_spec spec = { .queue = queue, .payload = payload, .payload_len = strlen(payload) };
	int64_t id = 0;
	jobq_error err;
	if (jobq_enqueue(cl, &spec, 1, &id, &err) != JOBQ_OK)
		fail_msg("enqueue: %s", err.message);
	return id;
}

typedef struct waiter_arg {
	const char *queue;
	uint32_t wait_ms;
	uint32_t limit; /* 0 = 1 */
	int code;
	size_t n;
	int64_t id;
	long long returned_ms; /* jq_mono_ms when the claim returned */
} waiter_arg;

static void *claim_waiting(void *p)
{
	waiter_arg *a = p;
	jobq_job *jobs = NULL;
	jobq_error err;
	a->code = jobq_claim(cl, a->queue, a->limit ? a->limit : 1, "longpoll-test", 30, a->wait_ms, &jobs, &a->n,
			     &err);
	a->returned_ms = jq_mono_ms();
	if (a->code == JOBQ_OK && a->n == 1)
		a->id = jobs[0].id;
	jobq_jobs_free(jobs, a->n);
	return NULL;
}

static void a_waiting_claim_returns_within_milliseconds_of_an_enqueue(void **state)
{
	(void)state;
	waiter_arg a = { .queue = "lp_soon", .wait_ms = 4000 };
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, claim_waiting, &a), 0);
	jq_sleep_ms(400); /* the claim is parked by now */
	long long enqueued_ms = jq_mono_ms();
	int64_t id = enqueue("lp_soon", "x");
	long long committed_ms = jq_mono_ms();
	pthread_join(t, NULL);
	assert_int_equal(a.code, JOBQ_OK);
	assert_int_equal(a.n, 1);
	assert_int_equal(a.id, id);
	long long after = a.returned_ms - committed_ms;
	print_message("long-poll: claim returned %lld ms after the enqueue was acknowledged "
		      "(enqueue took %lld ms)\n", after, committed_ms - enqueued_ms);
	/* Generous for a loaded CI machine; the benchmark measures the real figure. */
	assert_true(after < 500);
}

static void a_wait_with_nothing_to_claim_ends_empty_on_time(void **state)
{
	(void)state;
	waiter_arg a = { .queue = "lp_nothing", .wait_ms = 600 };
	long long start = jq_mono_ms();
	claim_waiting(&a);
	long long took = a.returned_ms - start;
	assert_int_equal(a.code, JOBQ_OK);
	assert_int_equal(a.n, 0);
	assert_true(took >= 550);
	assert_true(took < 2000);
}

static void a_job_for_another_queue_does_not_wake_the_wait(void **state)
{
	(void)state;
	waiter_arg a = { .queue = "lp_quiet", .wait_ms = 800 };
	pthread_t t;
	long long start = jq_mono_ms();
	assert_int_equal(pthread_create(&t, NULL, claim_waiting, &a), 0);
	jq_sleep_ms(200);
	enqueue("lp_quiet_other", "x");
	pthread_join(t, NULL);
	assert_int_equal(a.code, JOBQ_OK);
	assert_int_equal(a.n, 0);
	assert_true(a.returned_ms - start >= 750);
}

#define NWAITERS 16

static void waiters_hold_no_database_connection(void **state)
{
	(void)state;
	waiter_arg a[NWAITERS];
	pthread_t t[NWAITERS];
	for (int i = 0; i < NWAITERS; i++) {
		a[i] = (waiter_arg){ .queue = "lp_many", .wait_ms = 4000 };
		assert_int_equal(pthread_create(&t[i], NULL, claim_waiting, &a[i]), 0);
	}
	jq_sleep_ms(400);
	/* With 16 claims waiting and 2 connections, other requests are served at once. */
	long long start = jq_mono_ms();
	jobq_queue_stats *stats = NULL;
	size_t n = 0;
	jobq_error err;
	assert_int_equal(jobq_stats(cl, "lp_many", &stats, &n, &err), JOBQ_OK);
	jobq_stats_free(stats, n);
	assert_true(jq_mono_ms() - start < 300);

	int64_t ids[NWAITERS];
	for (int i = 0; i < NWAITERS; i++)
		ids[i] = enqueue("lp_many", "x");
	int got = 0;
	for (int i = 0; i < NWAITERS; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(a[i].code, JOBQ_OK);
		if (a[i].n == 1)
			got++;
	}
	/* Every job reached exactly one waiter (a claim decides; none is handed out twice). */
	assert_int_equal(got, NWAITERS);
	for (int i = 0; i < NWAITERS; i++) {
		int seen = 0;
		for (int k = 0; k < NWAITERS; k++)
			seen += a[k].id == ids[i];
		assert_int_equal(seen, 1);
	}
}

/* wait_metric polls series until it equals want (true) or 3 s pass (false). */
static bool wait_metric(const char *series, double want)
{
	long long deadline = jq_mono_ms() + 3000;
	do {
		if (jq_svc_metric(&svc, series) == want)
			return true;
		jq_sleep_ms(20);
	} while (jq_mono_ms() < deadline);
	return false;
}

/* scan_now has the listener scan the table now (a "*" notification asks for that) and returns
 * the scan count once the scan is over (the counter moves at its end): the next safety-net scan
 * is then 5 s away. A scan wakes every waiter of a queue with due jobs, by design, so the tests
 * that count wakes run their counted part inside that gap, and check with scanned_since that no
 * scan came anyway (a slow machine, or one asked for elsewhere). */
static double scan_now(void)
{
	double before = jq_svc_metric(&svc, "jobq_notify_scans_total");
	assert_true(before >= 1);
	PGconn *db = jq_test_connect(db_url);
	jq_test_ok(db, "NOTIFY jobq_pending, '*'");
	PQfinish(db);
	long long deadline = jq_mono_ms() + 3000;
	double now;
	while ((now = jq_svc_metric(&svc, "jobq_notify_scans_total")) == before && jq_mono_ms() < deadline)
		jq_sleep_ms(5);
	assert_true(now > before);
	/* A safety-net scan under way when the notification came ends first, and ours runs right
	 * after it: wait until the count stays still. */
	for (double last = -1; now != last && jq_mono_ms() < deadline;) {
		last = now;
		jq_sleep_ms(50);
		now = jq_svc_metric(&svc, "jobq_notify_scans_total");
	}
	return now;
}

static bool scanned_since(double scans)
{
	return jq_svc_metric(&svc, "jobq_notify_scans_total") != scans;
}

/* herd_once runs the scenario of the test below on `queue`. It returns false, having checked
 * nothing, when a scan of the table ran while the queue had due jobs (see scan_now). */
static bool herd_once(const char *queue)
{
	waiter_arg a[4];
	pthread_t t[4];
	for (int i = 0; i < 4; i++) {
		a[i] = (waiter_arg){ .queue = queue, .wait_ms = 4000 };
		assert_int_equal(pthread_create(&t[i], NULL, claim_waiting, &a[i]), 0);
		jq_sleep_ms(150); /* parks in this order */
	}
	assert_true(wait_metric("jobq_longpoll_waiters", 4));
	double scans0 = scan_now();
	double woken0 = jq_svc_metric(&svc, "jobq_longpoll_wakes_total");
	assert_true(woken0 >= 0);

	int64_t first = enqueue(queue, "x");
	pthread_join(t[0], NULL);
	jq_sleep_ms(300); /* room for a wrong extra wake to show */
	double woken1 = jq_svc_metric(&svc, "jobq_longpoll_wakes_total");
	double waiting1 = jq_svc_metric(&svc, "jobq_longpoll_waiters");

	jobq_job_spec two[2] = { { .queue = queue, .payload = "y", .payload_len = 1 },
				 { .queue = queue, .payload = "z", .payload_len = 1 } };
	int64_t ids[2];
	jobq_error err;
	assert_int_equal(jobq_enqueue(cl, two, 2, ids, &err), JOBQ_OK);
	pthread_join(t[1], NULL);
	pthread_join(t[2], NULL);
	jq_sleep_ms(300);
	double woken2 = jq_svc_metric(&svc, "jobq_longpoll_wakes_total");
	double waiting2 = jq_svc_metric(&svc, "jobq_longpoll_waiters");
	bool scanned = scanned_since(scans0);
	pthread_join(t[3], NULL);
	if (scanned)
		return false;

	assert_int_equal(a[0].code, JOBQ_OK);
	assert_int_equal(a[0].n, 1);
	assert_int_equal(a[0].id, first);
	assert_int_equal(woken1, woken0 + 1);
	assert_int_equal(waiting1, 3);
	assert_int_equal(a[1].n + a[2].n, 2);
	assert_true((a[1].id == ids[0] && a[2].id == ids[1]) || (a[1].id == ids[1] && a[2].id == ids[0]));
	assert_int_equal(woken2, woken0 + 3);
	assert_int_equal(waiting2, 1);
	assert_int_equal(a[3].code, JOBQ_OK);
	assert_int_equal(a[3].n, 0);
	return true;
}

/* An announcement sends back to the database only as many waiting Claims as it has jobs, the
 * longest-waiting first, not every idle worker's (all but one would find nothing): with four
 * one-job claims waiting, one enqueue wakes one; an enqueue of two jobs wakes two more; the last
 * waits out its time. A round that a scan disturbed all the same is run again on a fresh queue. */
static void an_announcement_wakes_as_many_waiters_as_it_has_jobs(void **state)
{
	(void)state;
	static const char *const queues[] = { "lp_herd1", "lp_herd2", "lp_herd3", "lp_herd4" };
	for (size_t i = 0; i < sizeof(queues) / sizeof(queues[0]); i++) {
		if (herd_once(queues[i]))
			return;
		printf("long-poll: a scan of the table fell inside round %zu; again\n", i + 1);
	}
	fail_msg("a scan of the table fell inside every round");
}

/* wait_lock_waits polls until n of jobqd's database sessions wait for a lock (3 s at most): the
 * moment a request is known to hold its worker (a worker busy a moment longer after its answer
 * would pass a check of jobq_db_pool_in_use). */
static bool wait_lock_waits(long long n)
{
	PGconn *db = jq_test_connect(db_url);
	long long deadline = jq_mono_ms() + 3000, got;
	while ((got = jq_test_scalar_ll(db, "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'jobqd%'"
					    " AND wait_event_type = 'Lock'")) != n && jq_mono_ms() < deadline)
		jq_sleep_ms(10);
	PQfinish(db);
	return got == n;
}

static void *enqueue_keyed(void *p)
{
	jobq_job_spec spec = { .queue = p, .payload = "k", .payload_len = 1, .idempotency_key = "held" };
	int64_t id = 0;
	jobq_error err;
	if (jobq_enqueue(cl, &spec, 1, &id, &err) != JOBQ_OK)
		fail_msg("keyed enqueue: %s", err.message);
	return NULL;
}

/* Two jobs announced wake two waiting Claims. With one database worker free they run one after
 * the other, so the first has claimed its job and ended before the second begins; the job left
 * is the second's, and no third waiter is sent to look for it. (The other worker is held by an
 * enqueue waiting on an uncommitted job with the same idempotency key.) */
static void a_woken_claim_on_its_way_is_not_woken_for_again(void **state)
{
	(void)state;
	PGconn *hold = jq_test_connect(db_url);
	jq_test_ok(hold, "BEGIN");
	jq_test_ok(hold, "SELECT jobq_enqueue_batch(ARRAY['lp_way_hold'], NULL, NULL, NULL, NULL, ARRAY['held'])");
	pthread_t e;
	assert_int_equal(pthread_create(&e, NULL, enqueue_keyed, "lp_way_hold"), 0);
	assert_true(wait_lock_waits(1));

	waiter_arg a[3];
	pthread_t t[3];
	for (int i = 0; i < 3; i++) {
		a[i] = (waiter_arg){ .queue = "lp_way", .wait_ms = 3000 };
		assert_int_equal(pthread_create(&t[i], NULL, claim_waiting, &a[i]), 0);
		jq_sleep_ms(150); /* parks in this order */
	}
	assert_true(wait_metric("jobq_longpoll_waiters", 3));
	double scans0 = scan_now();
	double woken0 = jq_svc_metric(&svc, "jobq_longpoll_wakes_total");
	PGconn *db = jq_test_connect(db_url);
	jq_test_ok(db, "SELECT jobq_enqueue_batch(ARRAY['lp_way', 'lp_way'], NULL, NULL, NULL, NULL, NULL)");
	pthread_join(t[0], NULL);
	pthread_join(t[1], NULL);
	jq_sleep_ms(300); /* room for a wrong extra wake to show */
	double woken = jq_svc_metric(&svc, "jobq_longpoll_wakes_total");
	double waiting = jq_svc_metric(&svc, "jobq_longpoll_waiters");
	bool scanned = scanned_since(scans0);

	jq_test_ok(hold, "ROLLBACK");
	pthread_join(e, NULL);
	pthread_join(t[2], NULL);
	PQfinish(hold);
	PQfinish(db);
	assert_int_equal(a[0].n + a[1].n, 2);
	assert_int_equal(a[2].n, 0);
	if (scanned) {
		printf("long-poll: a scan of the table fell inside the counted part\n");
		return;
	}
	assert_int_equal(woken, woken0 + 2);
	assert_int_equal(waiting, 1);
}

/* wait_claim runs one waiting Claim of queue on this thread. */
static waiter_arg wait_claim(const char *queue, uint32_t wait_ms)
{
	waiter_arg a = { .queue = queue, .wait_ms = wait_ms };
	claim_waiting(&a);
	assert_int_equal(a.code, JOBQ_OK);
	return a;
}

/* A Claim that parked without a query, because a Claim querying then was expected to take the
 * announced jobs, is sent to look when that one takes fewer. Here the first Claim (limit 2) saw
 * one job and is held at its status check (the test locks the pending -> processing row of
 * job_status_transition, which the foreign key check needs); a second job is announced meanwhile, and a
 * waiting Claim parks behind the first. The first ends with one job; the waiting one must get
 * the second at once, not at the next safety-net scan. */
static void a_claim_parked_behind_one_that_took_fewer_is_sent_to_look(void **state)
{
	(void)state;
	assert_int_equal(wait_claim("lp_behind", 100).n, 0); /* now known empty */
	scan_now(); /* before the job: a scan that finds it due makes the queue unknown */
	enqueue("lp_behind", "first");
	PGconn *lock = jq_test_connect(db_url);
	jq_test_ok(lock, "BEGIN");
	jq_test_ok(lock, "SELECT 1 FROM job_status_transition WHERE prev_status = 'archive_pending'"
			 " AND next_status = 'archive_processing' FOR UPDATE");
	waiter_arg first = { .queue = "lp_behind", .limit = 2 }; /* no wait */
	pthread_t c;
	assert_int_equal(pthread_create(&c, NULL, claim_waiting, &first), 0);
	assert_true(wait_lock_waits(1)); /* it is held at the foreign key check */
	double heard = jq_svc_metric(&svc, "jobq_notifications_received_total");
	int64_t second = enqueue("lp_behind", "second");
	/* Its announcement is in before the waiting Claim comes (else it would wake that Claim). */
	assert_true(wait_metric("jobq_notifications_received_total", heard + 1));
	waiter_arg w = { .queue = "lp_behind", .wait_ms = 3000 };
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, claim_waiting, &w), 0);
	assert_true(wait_metric("jobq_longpoll_waiters", 1));
	long long released_ms = jq_mono_ms();
	jq_test_ok(lock, "COMMIT");
	pthread_join(c, NULL);
	pthread_join(t, NULL);
	PQfinish(lock);
	assert_int_equal(first.code, JOBQ_OK);
	assert_int_equal(first.n, 1);
	assert_int_equal(w.code, JOBQ_OK);
	assert_int_equal(w.n, 1);
	assert_int_equal(w.id, second);
	assert_true(w.returned_ms - released_ms < 1000);
}

static double unqueried(void)
{
	double v = jq_svc_metric(&svc, "jobq_longpoll_unqueried_total");
	assert_true(v >= 0);
	return v;
}

/* Once a Claim of a queue came back empty, later waiting Claims of it park without a query, and
 * an enqueue still wakes them at once; the Claim that takes the announced job leaves the queue
 * known empty again. */
static void a_known_empty_queue_parks_claims_without_a_query(void **state)
{
	(void)state;
	assert_int_equal(wait_claim("lp_known", 300).n, 0); /* asks the database: now known empty */
	double u0 = unqueried();
	assert_int_equal(wait_claim("lp_known", 300).n, 0);
	assert_int_equal(unqueried(), u0 + 1);

	waiter_arg a = { .queue = "lp_known", .wait_ms = 4000 };
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, claim_waiting, &a), 0);
	assert_true(wait_metric("jobq_longpoll_waiters", 1));
	assert_int_equal(unqueried(), u0 + 2);
	double scans0 = scan_now();
	int64_t id = enqueue("lp_known", "x");
	long long committed_ms = jq_mono_ms();
	pthread_join(t, NULL);
	assert_int_equal(a.n, 1);
	assert_int_equal(a.id, id);
	assert_true(a.returned_ms - committed_ms < 500);
	/* A scan while the job was due would have made the queue unknown (by design); then the next
	 * Claim asks the database, and there is nothing left to check. */
	bool scanned = scanned_since(scans0);
	assert_int_equal(wait_claim("lp_known", 200).n, 0);
	if (scanned) {
		printf("long-poll: a scan of the table fell between the enqueue and its claim\n");
		return;
	}
	assert_int_equal(unqueried(), u0 + 3);
}

static void *enqueue_quick(void *p)
{
	(void)p;
	enqueue("lp_quick", "x");
	return NULL;
}

/* Such a Claim parks on the thread that received it: it needs no database worker even for a
 * moment. Both of the service's two workers are held by enqueues waiting for a table lock, and a
 * waiting Claim of a known-empty queue is parked all the same; when the lock goes, the enqueues
 * commit and wake it with a job. */
static void a_claim_of_a_known_empty_queue_parks_without_a_worker(void **state)
{
	(void)state;
	PGconn *db = jq_test_connect(db_url);
	assert_int_equal(wait_claim("lp_quick", 200).n, 0);
	jq_test_ok(db, "BEGIN");
	jq_test_ok(db, "LOCK TABLE job_queue IN ACCESS EXCLUSIVE MODE");
	pthread_t e[2];
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&e[i], NULL, enqueue_quick, NULL), 0);
	long long deadline = jq_mono_ms() + 3000;
	while (jq_svc_metric(&svc, "jobq_db_pool_in_use") != 2 && jq_mono_ms() < deadline)
		jq_sleep_ms(20);
	assert_int_equal(jq_svc_metric(&svc, "jobq_db_pool_in_use"), 2);

	waiter_arg a = { .queue = "lp_quick", .wait_ms = 5000 };
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, claim_waiting, &a), 0);
	assert_true(wait_metric("jobq_longpoll_waiters", 1));
	assert_int_equal(jq_svc_metric(&svc, "jobq_rpc_requests_waiting"), 0);
	jq_test_ok(db, "COMMIT");
	for (int i = 0; i < 2; i++)
		pthread_join(e[i], NULL);
	pthread_join(t, NULL);
	assert_int_equal(a.code, JOBQ_OK);
	assert_int_equal(a.n, 1);
	PQfinish(db);
}

/* silent_enqueue adds a job of queue with the notify triggers off: nobody is told. */
static void silent_enqueue(PGconn *db, const char *queue)
{
	char sql[512];
	jq_test_ok(db, "ALTER TABLE job_queue DISABLE TRIGGER job_queue_notify_insert");
	snprintf(sql, sizeof(sql), "SELECT jobq_enqueue_batch(ARRAY['%s'], NULL, NULL, NULL, NULL, NULL)", queue);
	jq_test_ok(db, sql);
	jq_test_ok(db, "ALTER TABLE job_queue ENABLE TRIGGER job_queue_notify_insert");
}

/* The one case the long-poll cannot see: a job that became claimable unannounced. A waiting
 * Claim of a known-empty queue then gets it from the listener's safety-net scan (every 5 s); a
 * Claim that does not wait asks the database and gets it at once. */
static void an_unannounced_job_is_claimed_within_the_safety_net(void **state)
{
	(void)state;
	PGconn *db = jq_test_connect(db_url);
	assert_int_equal(wait_claim("lp_silent", 200).n, 0);
	double u0 = unqueried();
	silent_enqueue(db, "lp_silent");
	long long start = jq_mono_ms();
	waiter_arg a = wait_claim("lp_silent", 9000);
	long long took = jq_mono_ms() - start;
	print_message("long-poll: an unannounced job was claimed after %lld ms\n", took);
	assert_int_equal(a.n, 1);
	assert_true(took < 7000);
	assert_int_equal(unqueried(), u0 + 1);

	silent_enqueue(db, "lp_silent");
	assert_int_equal(wait_claim("lp_silent", 0).n, 1);
	PQfinish(db);
}

/* While the listener reconnects, notifications may be missed: what was known is forgotten, and
 * the first waiting Claim after the restart asks the database again. */
static void a_listener_restart_forgets_empty_queues(void **state)
{
	(void)state;
	PGconn *db = jq_test_connect(db_url);
	assert_int_equal(wait_claim("lp_restart", 200).n, 0);
	int before = jq_svc_log_count(&svc, "notify: listening on");
	jq_test_ok(db, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
		       "WHERE application_name = 'jobqd-notify' AND datname = current_database()");
	long long deadline = jq_mono_ms() + 15000;
	while (jq_svc_log_count(&svc, "notify: listening on") <= before && jq_mono_ms() < deadline)
		jq_sleep_ms(50);
	assert_true(jq_svc_log_count(&svc, "notify: listening on") > before);
	double u0 = unqueried();
	assert_int_equal(wait_claim("lp_restart", 200).n, 0);
	assert_int_equal(unqueried(), u0);
	assert_int_equal(wait_claim("lp_restart", 200).n, 0); /* known empty again */
	assert_int_equal(unqueried(), u0 + 1);
	PQfinish(db);
}

static void sigterm_answers_waiting_claims_and_exits_cleanly(void **state)
{
	(void)state;
	waiter_arg a = { .queue = "lp_shutdown", .wait_ms = 20000 };
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, claim_waiting, &a), 0);
	jq_sleep_ms(400);
	long long start = jq_mono_ms();
	int status = jq_svc_stop(&svc, 5000);
	pthread_join(t, NULL);
	assert_int_equal(status, 0);
	assert_int_equal(a.code, JOBQ_OK);
	assert_int_equal(a.n, 0);
	assert_true(a.returned_ms - start < 3000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(a_waiting_claim_returns_within_milliseconds_of_an_enqueue),
		cmocka_unit_test(a_wait_with_nothing_to_claim_ends_empty_on_time),
		cmocka_unit_test(a_job_for_another_queue_does_not_wake_the_wait),
		cmocka_unit_test(waiters_hold_no_database_connection),
		cmocka_unit_test(an_announcement_wakes_as_many_waiters_as_it_has_jobs),
		cmocka_unit_test(a_woken_claim_on_its_way_is_not_woken_for_again),
		cmocka_unit_test(a_claim_parked_behind_one_that_took_fewer_is_sent_to_look),
		cmocka_unit_test(a_known_empty_queue_parks_claims_without_a_query),
		cmocka_unit_test(a_claim_of_a_known_empty_queue_parks_without_a_worker),
		cmocka_unit_test(an_unannounced_job_is_claimed_within_the_safety_net),
		cmocka_unit_test(a_listener_restart_forgets_empty_queues),
		cmocka_unit_test(sigterm_answers_waiting_claims_and_exits_cleanly),
	};
	return cmocka_run_group_tests_name("longpoll", tests, setup, teardown);
}
