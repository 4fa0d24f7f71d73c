/*
 * The long-poll's knowledge of empty queues on its own (jq_longpoll_claim_start/_begin/_end,
 * wake, listening), without requests: when a waiting Claim may skip its query, when a Claim is to
 * wait, and every way that knowledge must be dropped. test_longpoll holds the same against a real
 * jobqd.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "jq_clock.h"
#include "jq_longpoll.h"

static int setup(void **state)
{
	jq_longpoll *lp = NULL;
	if (jq_longpoll_start(64, &lp) != 0)
		return -1;
	jq_longpoll_listening(lp, true);
	*state = lp;
	return 0;
}

static int teardown(void **state)
{
	jq_longpoll_free(*state);
	return 0;
}

/* claim starts following a Claim of up to limit jobs of queue, arrived now, that asks to wait
 * a minute (may_wait) or not at all; it reads the long-poll's generation now. */
static jq_longpoll_claim claim(jq_longpoll *lp, const char *queue, int limit, bool may_wait)
{
	jq_longpoll_claim c;
	jq_longpoll_claim_start(lp, &c, queue, limit, jq_clock_mono_us(), may_wait ? 60000 : 0);
	return c;
}

/* query runs one waiting Claim that queries: begin (which must not say "wait"), then end with
 * got, which says "wait" when the Claim got nothing. */
static void query(jq_longpoll *lp, const char *queue, int limit, size_t got)
{
	jq_longpoll_claim c = claim(lp, queue, limit, true);
	assert_false(jq_longpoll_claim_begin(&c));
	assert_int_equal(jq_longpoll_claim_end(&c, got, true), got == 0);
}

/* parks: would a waiting Claim of one job wait without a query? */
static bool parks(jq_longpoll *lp, const char *queue)
{
	jq_longpoll_claim c = claim(lp, queue, 1, true);
	return jq_longpoll_claim_begin(&c);
}

static void make_known_empty(jq_longpoll *lp, const char *queue)
{
	query(lp, queue, 1, 0);
	assert_true(parks(lp, queue));
}

static void an_unknown_queue_is_queried(void **state)
{
	jq_longpoll *lp = *state;
	jq_longpoll_claim c = claim(lp, "q", 1, true);
	assert_false(jq_longpoll_claim_begin(&c));
	assert_false(jq_longpoll_claim_end(&c, 1, true)); /* a full answer proves nothing */
	assert_false(parks(lp, "q"));
}

static void a_short_claim_makes_the_queue_known_empty(void **state)
{
	jq_longpoll *lp = *state;
	query(lp, "q", 10, 3);
	assert_true(parks(lp, "q"));
	assert_true(parks(lp, "q"));
	assert_int_equal(jq_longpoll_unqueried(lp), 2);
	/* A Claim that may not wait is always asked of the database, and never waits. */
	jq_longpoll_claim c = claim(lp, "q", 1, false);
	assert_false(jq_longpoll_claim_known_empty(&c));
	assert_false(jq_longpoll_claim_begin(&c));
	assert_false(jq_longpoll_claim_end(&c, 0, true));
	assert_true(parks(lp, "q"));
	assert_false(parks(lp, "other")); /* other queues know nothing */
}

static void announced_jobs_let_as_many_claims_query(void **state)
{
	jq_longpoll *lp = *state;
	make_known_empty(lp, "q");
	jq_longpoll_wake(lp, "q", 2);
	/* Two Claims go to the database; a third waits for them. */
	jq_longpoll_claim c1 = claim(lp, "q", 1, true), c2 = claim(lp, "q", 1, true);
	assert_false(jq_longpoll_claim_begin(&c1));
	assert_false(jq_longpoll_claim_begin(&c2));
	assert_true(parks(lp, "q"));
	assert_false(jq_longpoll_claim_end(&c1, 1, true));
	assert_false(jq_longpoll_claim_end(&c2, 1, true));
	assert_true(parks(lp, "q"));
}

static void a_claim_that_took_fewer_than_announced_leaves_the_rest_to_others(void **state)
{
	jq_longpoll *lp = *state;
	make_known_empty(lp, "q");
	jq_longpoll_claim c = claim(lp, "q", 2, true); /* its generation: before the announcement */
	jq_longpoll_wake(lp, "q", 3);
	assert_false(jq_longpoll_claim_begin(&c));
	assert_false(jq_longpoll_claim_end(&c, 1, true)); /* its snapshot saw one of the three */
	query(lp, "q", 1, 1);
	query(lp, "q", 1, 1);
	assert_true(parks(lp, "q"));
}

static void a_claim_that_raced_an_announcement_proves_nothing(void **state)
{
	jq_longpoll *lp = *state;
	jq_longpoll_claim c = claim(lp, "q", 1, true);
	assert_false(jq_longpoll_claim_begin(&c));
	jq_longpoll_wake(lp, "q", 1); /* committed after the claim's snapshot */
	/* It waits, and its wait sees the wake through its generation (test_longpoll). */
	assert_true(jq_longpoll_claim_end(&c, 0, true));
	assert_false(parks(lp, "q"));
}

static void an_announcement_without_a_count_makes_the_queue_unknown(void **state)
{
	jq_longpoll *lp = *state;
	make_known_empty(lp, "q");
	jq_longpoll_wake(lp, "q", 0); /* a rescan, or a '*' line */
	assert_false(parks(lp, "q"));
}

static void a_failed_claim_makes_the_queue_unknown(void **state)
{
	jq_longpoll *lp = *state;
	make_known_empty(lp, "q");
	jq_longpoll_wake(lp, "q", 1);
	jq_longpoll_claim c = claim(lp, "q", 1, true);
	assert_false(jq_longpoll_claim_begin(&c));
	assert_true(parks(lp, "q")); /* the querying claim is expected to take the job */
	assert_false(jq_longpoll_claim_end(&c, 0, false)); /* a failed Claim is answered, not kept */
	assert_false(parks(lp, "q"));
}

static void nothing_is_known_while_not_listening(void **state)
{
	jq_longpoll *lp = *state;
	make_known_empty(lp, "q");
	jq_longpoll_listening(lp, false);
	assert_false(parks(lp, "q"));
	query(lp, "q", 1, 0); /* an empty answer now says nothing of what will be announced */
	assert_false(parks(lp, "q"));
	jq_longpoll_listening(lp, true);
	assert_false(parks(lp, "q"));
	make_known_empty(lp, "q");
}

static void a_claim_across_a_listener_restart_proves_nothing(void **state)
{
	jq_longpoll *lp = *state;
	jq_longpoll_claim c = claim(lp, "q", 1, true);
	assert_false(jq_longpoll_claim_begin(&c));
	jq_longpoll_listening(lp, false);
	jq_longpoll_listening(lp, true);
	assert_true(jq_longpoll_claim_end(&c, 0, true));
	assert_false(parks(lp, "q"));
}

static void the_table_is_bounded_and_keeps_the_recently_used(void **state)
{
	jq_longpoll *lp = *state;
	char name[32];
	for (int i = 0; i < 200; i++) {
		snprintf(name, sizeof(name), "q%d", i);
		make_known_empty(lp, name);
		assert_true(parks(lp, "q0")); /* used again and again, so never evicted */
	}
	int known = 0;
	for (int i = 0; i < 200; i++) {
		snprintf(name, sizeof(name), "q%d", i);
		known += parks(lp, name);
	}
	assert_true(known >= 2);
	assert_true(known <= 64);
	assert_true(parks(lp, "q0"));
	assert_true(parks(lp, "q199"));
}

static void a_claim_without_a_long_poll_never_waits(void **state)
{
	jq_longpoll *lp = *state;
	make_known_empty(lp, "q");
	jq_longpoll_claim c = claim(NULL, "q", 1, true);
	assert_false(jq_longpoll_claim_known_empty(&c));
	assert_false(jq_longpoll_claim_begin(&c));
	assert_false(jq_longpoll_claim_end(&c, 0, true));
}

static void a_claim_whose_wait_is_over_does_not_wait(void **state)
{
	jq_longpoll *lp = *state;
	make_known_empty(lp, "q");
	jq_longpoll_claim c;
	/* Arrived 2 s ago, asked to wait 1 s: a requeued Claim's wait counts from its arrival. */
	jq_longpoll_claim_start(lp, &c, "q", 1, jq_clock_mono_us() - 2000000, 1000);
	assert_false(jq_longpoll_claim_known_empty(&c));
	assert_false(jq_longpoll_claim_begin(&c));
	assert_false(jq_longpoll_claim_end(&c, 0, true));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(an_unknown_queue_is_queried, setup, teardown),
		cmocka_unit_test_setup_teardown(a_short_claim_makes_the_queue_known_empty, setup, teardown),
		cmocka_unit_test_setup_teardown(announced_jobs_let_as_many_claims_query, setup, teardown),
		cmocka_unit_test_setup_teardown(a_claim_that_took_fewer_than_announced_leaves_the_rest_to_others,
						setup, teardown),
		cmocka_unit_test_setup_teardown(a_claim_that_raced_an_announcement_proves_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(an_announcement_without_a_count_makes_the_queue_unknown, setup,
						teardown),
		cmocka_unit_test_setup_teardown(a_failed_claim_makes_the_queue_unknown, setup, teardown),
		cmocka_unit_test_setup_teardown(nothing_is_known_while_not_listening, setup, teardown),
		cmocka_unit_test_setup_teardown(a_claim_across_a_listener_restart_proves_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(the_table_is_bounded_and_keeps_the_recently_used, setup, teardown),
		cmocka_unit_test_setup_teardown(a_claim_without_a_long_poll_never_waits, setup, teardown),
		cmocka_unit_test_setup_teardown(a_claim_whose_wait_is_over_does_not_wait, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
