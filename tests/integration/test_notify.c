/*
 * Notifications end to end: a real jobqd (tests/support/jq_svc) on a private database, an nng SUB
 * socket on its PUB address, jobs changed by plain SQL through libpq. Checks the framing
 * ("pending.<queue>" NUL JobsAvailable), that only jobs becoming pending and due are announced,
 * that scheduled jobs are announced when due and not before, one announcement for a 1000-row
 * insert, the NUL-exact subscription, and LISTEN surviving a PostgreSQL restart.
 * Tests run in order and share the service; each uses its own queue names.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>

#include "jobq_internal.h"
#include "jobq/v1/jobq.pb-c.h"
#include "jq_svc.h"
#include "jq_test.h"

#define RECV_SLICE_MS 50
#define QUIET_MS 300     /* how long "hears nothing" listens */
#define HEAR_MS 3000     /* how long a test waits for an announcement it expects */

static char *db_url;
static jq_svc svc;
static char pub_url[64];
static nng_socket sub;   /* subscribed to all of "pending." */
static PGconn *conn;

/* open_sub opens a SUB socket with the given topic prefixes (length given, so NULs count). */
static nng_socket open_sub(const char *const *topics, const size_t *lens, int n)
{
	nng_socket s;
	assert_int_equal(nng_sub0_open(&s), 0);
	for (int i = 0; i < n; i++)
		assert_int_equal(nng_socket_set(s, NNG_OPT_SUB_SUBSCRIBE, topics[i], lens[i]), 0);
	assert_int_equal(nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, RECV_SLICE_MS), 0);
	assert_int_equal(nng_dial(s, pub_url, NULL, NNG_FLAG_NONBLOCK), 0);
	return s;
}

/* recv_for waits up to timeout_ms on s for an announcement of `queue`, skipping other queues'.
 * Returns it (free with jobq__v1__jobs_available__free_unpacked), or NULL on timeout. The
 * framing is checked on every message: topic, one NUL, a JobsAvailable naming the same queue. */
static Jobq__V1__JobsAvailable *recv_for(nng_socket s, const char *queue, int timeout_ms)
{
	char want[128];
	snprintf(want, sizeof(want), "pending.%s", queue);
	long long deadline = jq_mono_ms() + timeout_ms;
	while (jq_mono_ms() < deadline) {
		nng_msg *m;
		if (nng_recvmsg(s, &m, 0) != 0)
			continue;
		const char *b = nng_msg_body(m);
		size_t len = nng_msg_len(m);
		const char *nul = memchr(b, '\0', len);
		assert_non_null(nul);
		assert_true(strncmp(b, "pending.", 8) == 0);
		size_t tlen = (size_t)(nul - b);
		Jobq__V1__JobsAvailable *ja = jobq__v1__jobs_available__unpack(
			NULL, len - tlen - 1, (const uint8_t *)nul + 1);
		assert_non_null(ja);
		assert_int_equal(strlen(ja->queue), tlen - 8);
		assert_memory_equal(ja->queue, b + 8, tlen - 8);
		bool match = strcmp(b, want) == 0;
		nng_msg_free(m);
		if (match)
			return ja;
		jobq__v1__jobs_available__free_unpacked(ja, NULL);
	}
	return NULL;
}

/* count_for counts announcements of queue during ms. */
static int count_for(nng_socket s, const char *queue, int ms)
{
	int n = 0;
	long long deadline = jq_mono_ms() + ms;
	Jobq__V1__JobsAvailable *ja;
	while (jq_mono_ms() < deadline &&
	       (ja = recv_for(s, queue, (int)(deadline - jq_mono_ms()))) != NULL) {
		jobq__v1__jobs_available__free_unpacked(ja, NULL);
		n++;
	}
	return n;
}

static long long enqueue(const char *queue)
{
	char sql[256];
	snprintf(sql, sizeof(sql), "SELECT jobq_enqueue('%s', 'x'::bytea)", queue);
	return jq_test_scalar_ll(conn, sql);
}

/* expect_id waits for queue's announcement that carries ids and checks it carries exactly `id`.
 * One announcement without ids may come first: a scan of the due queues (the safety net every
 * few seconds, or one a past 'L' time asks for) that runs after the insert committed but before
 * its notification is read announces the queue without ids. */
static void expect_id(const char *queue, long long id)
{
	int rescans = 1;
	Jobq__V1__JobsAvailable *ja = recv_for(sub, queue, HEAR_MS);
	while (ja != NULL && ja->n_ids == 0 && rescans-- > 0) {
		jobq__v1__jobs_available__free_unpacked(ja, NULL);
		ja = recv_for(sub, queue, HEAR_MS);
	}
	if (ja == NULL)
		fail_msg("no announcement for queue %s", queue);
	assert_int_equal(ja->n_ids, 1);
	assert_int_equal(ja->ids[0], id);
	assert_true(ja->published_at_us > 0);
	jobq__v1__jobs_available__free_unpacked(ja, NULL);
}

/* warm_up enqueues into `probe` until s hears it: PUB/SUB has no handshake, so this is the only
 * way to know the subscription reached the publisher (and that jobqd is LISTENing). */
static void warm_up(nng_socket s, const char *probe)
{
	long long deadline = jq_mono_ms() + 15000;
	while (jq_mono_ms() < deadline) {
		enqueue(probe);
		Jobq__V1__JobsAvailable *ja = recv_for(s, probe, 300);
		if (ja != NULL) {
			jobq__v1__jobs_available__free_unpacked(ja, NULL);
			return;
		}
	}
	jq_svc_print_log(&svc);
	fail_msg("the subscriber never heard queue %s", probe);
}

static int setup(void **state)
{
	(void)state;
	char flag[96];
	db_url = jq_test_db_clone("jq_notify_test");
	snprintf(pub_url, sizeof(pub_url), "tcp://127.0.0.1:%d", jq_free_port());
	snprintf(flag, sizeof(flag), "--pub-url=%s", pub_url);
	const char *const flags[] = { flag, NULL };
	jq_svc_start(&svc, "notify", db_url, flags);
	const char *topics[] = { "pending." };
	size_t lens[] = { 8 };
	sub = open_sub(topics, lens, 1);
	conn = jq_test_connect(db_url);
	warm_up(sub, "probe");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	int status = jq_svc_finish(&svc, 5000, false);
	nng_close(sub);
	PQfinish(conn);
	free(db_url);
	return status;
}

static void hears_an_sql_insert(void **state)
{
	(void)state;
	long long id = enqueue("ins");
	expect_id("ins", id);
}

static void hears_a_manual_retry(void **state)
{
	(void)state;
	char sql[256];
	long long id = enqueue("retry");
	expect_id("retry", id);
	snprintf(sql, sizeof(sql),
		 "UPDATE job_queue SET curr_job_status = 'archive_processing', lease_owner = 't',"
		 " lease_expires_at = now() + interval '1 minute',"
		 " lease_token = nextval('job_lease_token_seq') WHERE id = %lld", id);
	jq_test_ok(conn, sql);
	snprintf(sql, sizeof(sql),
		 "UPDATE job_queue SET curr_job_status = 'archive_failed', lease_expires_at = NULL"
		 " WHERE id = %lld", id);
	jq_test_ok(conn, sql);
	assert_int_equal(count_for(sub, "retry", QUIET_MS), 0);
	snprintf(sql, sizeof(sql), "UPDATE job_queue SET curr_job_status = 'archive_pending' WHERE id = %lld", id);
	jq_test_ok(conn, sql);
	/* An UPDATE announces the queue without ids (migration 018: one announcement per queue
	 * however many rows the statement made pending). */
	Jobq__V1__JobsAvailable *ja = recv_for(sub, "retry", HEAR_MS);
	if (ja == NULL)
		fail_msg("no announcement for the retried job");
	assert_int_equal(ja->n_ids, 0);
	jobq__v1__jobs_available__free_unpacked(ja, NULL);
}

static void silent_on_claim_and_complete(void **state)
{
	(void)state;
	char sql[256];
	long long id = enqueue("claimq");
	expect_id("claimq", id);
	snprintf(sql, sizeof(sql),
		 "UPDATE job_queue SET curr_job_status = 'archive_processing', lease_owner = 't',"
		 " lease_expires_at = now() + interval '1 minute',"
		 " lease_token = nextval('job_lease_token_seq') WHERE id = %lld", id);
	jq_test_ok(conn, sql);
	assert_int_equal(count_for(sub, "claimq", QUIET_MS), 0);
	snprintf(sql, sizeof(sql),
		 "UPDATE job_queue SET curr_job_status = 'archive_completed', lease_expires_at = NULL"
		 " WHERE id = %lld", id);
	jq_test_ok(conn, sql);
	assert_int_equal(count_for(sub, "claimq", QUIET_MS), 0);
}

/* expect_announced_when_due enqueues a job of queue due in 1.5 s and fails unless it is announced
 * within 300 ms after that, and not before. */
static void expect_announced_when_due(const char *queue)
{
	char sql[200];
	snprintf(sql, sizeof(sql), "SELECT jobq_enqueue('%s', 'x'::bytea, 0::smallint,"
		 " now() + interval '1500 milliseconds')", queue);
	long long id = jq_test_scalar_ll(conn, sql);
	snprintf(sql, sizeof(sql),
		 "SELECT (extract(epoch FROM run_at) * 1000)::bigint FROM job_queue WHERE id = %lld", id);
	long long due_ms = jq_test_scalar_ll(conn, sql);
	Jobq__V1__JobsAvailable *ja = recv_for(sub, queue, (int)(due_ms - jq_now_ms()) + 2000);
	long long heard_ms = jq_now_ms();
	if (ja == NULL)
		fail_msg("job %lld due at %lld never announced", id, due_ms);
	jobq__v1__jobs_available__free_unpacked(ja, NULL);
	if (heard_ms < due_ms || heard_ms > due_ms + 300)
		fail_msg("announced %lld ms after its due time (want 0..300)", heard_ms - due_ms);
}

static void scheduled_job_is_announced_when_due_not_before(void **state)
{
	(void)state;
	expect_announced_when_due("later");
}

/* Anyone who may connect can NOTIFY the channel. Times that are out of range or no number at all
 * must neither stop the listener nor throw its timer off (nor, in the ASan build, overflow: UBSan
 * stops jobqd there): a job scheduled afterwards is still announced when due, not before. */
static void times_out_of_range_in_a_notification_disturb_nothing(void **state)
{
	(void)state;
	jq_test_ok(conn, "NOTIFY jobq_pending, 'L -9223372036854775808'");
	jq_test_ok(conn, "NOTIFY jobq_pending, 'L 9223372036854775807'");
	jq_test_ok(conn, "NOTIFY jobq_pending, 'L 99999999999999999999'");
	jq_test_ok(conn, "NOTIFY jobq_pending, 'L soon'");
	long long id = enqueue("after_bad_times");
	expect_id("after_bad_times", id);
	expect_announced_when_due("later_after_bad_times");
	assert_true(jq_svc_alive(&svc));
}

static void one_announcement_for_a_1000_row_insert(void **state)
{
	(void)state;
	jq_test_ok(conn, "SELECT count(*) FROM jobq_enqueue_batch("
			 " array_fill('batch'::text, ARRAY[1000]), NULL, NULL, NULL, NULL, NULL)");
	Jobq__V1__JobsAvailable *ja = recv_for(sub, "batch", HEAR_MS);
	assert_non_null(ja);
	/* Either all ids or none (too many for one notification: "D batch *"). */
	assert_true(ja->n_ids == 1000 || ja->n_ids == 0);
	jobq__v1__jobs_available__free_unpacked(ja, NULL);
	/* Take them out of pending so the safety-net rescan has nothing to re-announce. */
	jq_test_ok(conn, "UPDATE job_queue SET curr_job_status = 'archive_cancelled' WHERE queue = 'batch'");
	assert_int_equal(count_for(sub, "batch", QUIET_MS), 0);
}

static void nothing_to_release(void *arg)
{
	(void)arg;
}

static void nul_terminated_subscription_is_exact(void **state)
{
	(void)state;
	const char *topics[] = { "pending.mail", "pending.probe2" };
	size_t lens[] = { sizeof("pending.mail"), sizeof("pending.probe2") }; /* with the NUL */
	nng_socket s2 = open_sub(topics, lens, 2);
	warm_up(s2, "probe2");
	enqueue("mailer");
	long long id = enqueue("mail");
	Jobq__V1__JobsAvailable *ja = recv_for(s2, "mail", HEAR_MS);
	assert_non_null(ja);
	assert_int_equal(ja->n_ids, 1);
	assert_int_equal(ja->ids[0], id);
	jobq__v1__jobs_available__free_unpacked(ja, NULL);
	assert_int_equal(count_for(s2, "mailer", QUIET_MS), 0);
	/* It was published all the same: the broad subscriber heard it. */
	ja = recv_for(sub, "mailer", HEAR_MS);
	assert_non_null(ja);
	jobq__v1__jobs_available__free_unpacked(ja, NULL);
	/* jobqd goes on announcing (its safety-net scan): closed as libjobq closes its own, bounded
	 * (nng 1.5.2 can wait for ever closing a socket a message arrives on). */
	(void)jobqi_close(s2, nothing_to_release, NULL);
}

/* pgctl runs tests/harness/pgctl.sh verb on the test cluster (its port is kept in the folder). */
static void pgctl(const char *verb)
{
	char cmd[1024];
	snprintf(cmd, sizeof(cmd), "%s/tests/harness/pgctl.sh %s '%s' >/dev/null",
		 jq_test_env("JOBQ_TEST_ROOT"), verb, jq_test_env("JOBQ_TEST_PG_DIR"));
	assert_int_equal(system(cmd), 0);
}

static void listen_recovers_after_postgres_restart(void **state)
{
	(void)state;
	int before = jq_svc_log_count(&svc, "notify: listening on");
	assert_true(before >= 1);
	PQfinish(conn);
	conn = NULL;
	pgctl("stop");
	pgctl("start");
	long long deadline = jq_mono_ms() + 15000;
	while (jq_svc_log_count(&svc, "notify: listening on") <= before && jq_mono_ms() < deadline)
		jq_sleep_ms(50);
	if (jq_svc_log_count(&svc, "notify: listening on") <= before) {
		jq_svc_print_log(&svc);
		fail_msg("jobqd did not LISTEN again after the restart");
	}
	conn = jq_test_connect(db_url);
	/* The id proves the announcement came from a NOTIFY, not from the reconnect catch-up. */
	long long id = enqueue("recover");
	expect_id("recover", id);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(hears_an_sql_insert),
		cmocka_unit_test(hears_a_manual_retry),
		cmocka_unit_test(silent_on_claim_and_complete),
		cmocka_unit_test(scheduled_job_is_announced_when_due_not_before),
		cmocka_unit_test(times_out_of_range_in_a_notification_disturb_nothing),
		cmocka_unit_test(one_announcement_for_a_1000_row_insert),
		cmocka_unit_test(nul_terminated_subscription_is_exact),
		cmocka_unit_test(listen_recovers_after_postgres_restart),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
