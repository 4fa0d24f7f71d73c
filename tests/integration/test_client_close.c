/* libjobq's closes return in bounded time while messages keep arriving.
 *
 * nng 1.5.2 can wait for ever in nng_close when a message's bytes arrive on a TCP connection as
 * the socket closes (client/jobq_close.c). Here a real nng PUB socket publishes as fast as it can
 * to subscribers that are opened and closed one after the other: with a plain nng_close some of
 * those closes never return (seen within a few closes on the 2-core machine); jobq_sub_close
 * must return within JOBQI_CLOSE_WAIT_MS (2 s) and a little. A close that takes longer than
 * CLOSE_LIMIT_S ends the program through SIGALRM, so a regression fails here instead of hanging
 * the suite until its time limit. */
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>

#include "jobq.h"
#include "jobq/v1/jobq.pb-c.h"
#include "jq_svc.h"

#define CLOSES 10
#define CLOSE_LIMIT_S 5

static atomic_int stop_flood;
static nng_socket pub;

/* flood publishes announcements of queue "flood" (topic, NUL, a packed JobsAvailable) until
 * told to stop. */
static void *flood(void *arg)
{
	(void)arg;
	Jobq__V1__JobsAvailable ja = JOBQ__V1__JOBS_AVAILABLE__INIT;
	ja.queue = "flood";
	uint8_t msg[128];
	static const char topic[] = "pending.flood";
	memcpy(msg, topic, sizeof(topic)); /* with its NUL */
	size_t len = sizeof(topic) + jobq__v1__jobs_available__pack(&ja, msg + sizeof(topic));
	while (!atomic_load(&stop_flood))
		(void)nng_send(pub, msg, len, 0);
	return NULL;
}

/* Under AddressSanitizer: the messages that the publisher thread (flood) had sent to subscribers
 * whose close nng never finished stay with those sockets, which this program leaves as the
 * library does (client/jobq_close.c); they are not leaks of the library's. Read only by
 * LeakSanitizer. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
	return "leak:flood\n";
}

static void too_slow(int sig)
{
	(void)sig;
	static const char msg[] = "test_client_close: a close took longer than " "5" " s\n";
	(void)!write(2, msg, sizeof(msg) - 1);
	_exit(1);
}

static void closing_a_subscriber_while_messages_arrive_returns(void **state)
{
	(void)state;
	char url[64];
	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", jq_free_port());
	assert_int_equal(nng_pub0_open(&pub), 0);
	assert_int_equal(nng_listen(pub, url, NULL, 0), 0);
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, flood, NULL), 0);
	signal(SIGALRM, too_slow);

	jobq_options o = { .pub_url = url, .timeout_ms = 2000 };
	long long worst = 0;
	int heard = 0;
	for (int i = 0; i < CLOSES; i++) {
		jobq_sub *s = NULL;
		jobq_error err;
		if (jobq_subscribe(&o, NULL, &s, &err) != JOBQ_OK)
			fail_msg("subscribe: %s", err.message);
		jobq_announcement a;
		/* Hearing one makes sure messages are flowing on the connection being closed. */
		if (jobq_sub_next(s, 2000, &a, &err) == JOBQ_OK) {
			heard++;
			jobq_announcement_free(&a);
		}
		long long t0 = jq_mono_ms();
		alarm(CLOSE_LIMIT_S);
		jobq_sub_close(s);
		alarm(0);
		long long took = jq_mono_ms() - t0;
		worst = took > worst ? took : worst;
	}
	atomic_store(&stop_flood, 1);
	assert_int_equal(pthread_join(th, NULL), 0);
	/* pub stays open: closing it can meet the same wait in nng (its connections to the
	 * subscribers whose close nng never finished), and the program ends here anyway. */
	print_message("%d closes, %d heard a message first; the longest took %lld ms\n", CLOSES, heard, worst);
	assert_true(heard > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(closing_a_subscriber_while_messages_arrive_returns),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
