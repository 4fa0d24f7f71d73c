/*
 * The long-poll's knowledge of empty queues on its own (jq_longpoll_claim_begin/_end, wake,
 * listening), without requests: when a waiting Claim may skip its query, and every way that
 * knowledge must be dropped. test_longpoll holds the same against a real jobqd.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

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

/* query runs one Claim that queries: begin (which must not say "park"), then end with got. */
static void query(jq_longpoll *lp, const char *queue, size_t limit, size_t got)
{
	uint64_t g = jq_longpoll_generation(lp);
	assert_false(jq_longpoll_claim_begin(lp, queue, limit, true));
	jq_longpoll_claim_end(lp, queue, g, limit, got, true);
}

/* parks: would a waiting Claim of one job park without a query? */
static bool parks(jq_longpoll *lp, const char *queue)
{
	return jq_longpoll_claim_begin(lp, queue, 1, true);
}

static void make_known_empty(jq_longpoll *lp, const char *queue)
{
	query(lp, queue, 1, 0);
	assert_true(parks(lp, queue));
}

static void an_unknown_queue_is_queried(void **state)
{
	jq_longpoll *lp = *state;
	assert_false(jq_longpoll_claim_begin(lp, "q", 1, true));
	jq_longpoll_claim_end(lp, "q", 0, 1, 1, true); /* a full answer proves nothing */
	assert_false(parks(lp, "q"));
}

static void a_short_claim_makes_the_queue_known_empty(void **state)
{
	jq_longpoll *lp = *state;
	query(lp, "q", 10, 3);
	assert_true(parks(lp, "q"));
	assert_true(parks(lp, "q"));
	assert_int_equal(jq_longpoll_unqueried(lp), 2);
	/* A Claim that may not wait is always asked of the database. */
	uint64_t g = jq_longpoll_generation(lp);
	assert_false(jq_longpoll_claim_begin(lp, "q", 1, false));
	jq_longpoll_claim_end(lp, "q", g, 1, 0, true);
	assert_true(parks(lp, "q"));
	assert_false(parks(lp, "other")); /* other queues know nothing */
}

static void announced_jobs_let_as_many_claims_query(void **state)
{
	jq_longpoll *lp = *state;
	make_known_empty(lp, "q");
	jq_longpoll_wake(lp, "q", 2);
	uint64_t g = jq_longpoll_generation(lp);
	/* Two Claims go to the database; a third waits for them. */
	assert_false(jq_longpoll_claim_begin(lp, "q", 1, true));
	assert_false(jq_longpoll_claim_begin(lp, "q", 1, true));
	assert_true(parks(lp, "q"));
	jq_longpoll_claim_end(lp, "q", g, 1, 1, true);
	jq_longpoll_claim_end(lp, "q", g, 1, 1, true);
	assert_true(parks(lp, "q"));
}

static void a_claim_that_took_fewer_than_announced_leaves_the_rest_to_others(void **state)
{
	jq_longpoll *lp = *state;
	make_known_empty(lp, "q");
	uint64_t g = jq_longpoll_generation(lp); /* read before the announcement */
	jq_longpoll_wake(lp, "q", 3);
	assert_false(jq_longpoll_claim_begin(lp, "q", 2, true));
	jq_longpoll_claim_end(lp, "q", g, 2, 1, true); /* its snapshot saw one of the three */
	query(lp, "q", 1, 1);
	query(lp, "q", 1, 1);
	assert_true(parks(lp, "q"));
}

static void a_claim_that_raced_an_announcement_proves_nothing(void **state)
{
	jq_longpoll *lp = *state;
	uint64_t g = jq_longpoll_generation(lp);
	assert_false(jq_longpoll_claim_begin(lp, "q", 1, true));
	jq_longpoll_wake(lp, "q", 1); /* committed after the claim's snapshot */
	jq_longpoll_claim_end(lp, "q", g, 1, 0, true);
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
	uint64_t g = jq_longpoll_generation(lp);
	assert_false(jq_longpoll_claim_begin(lp, "q", 1, true));
	assert_true(parks(lp, "q")); /* the querying claim is expected to take the job */
	jq_longpoll_claim_end(lp, "q", g, 1, 0, false);
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
	uint64_t g = jq_longpoll_generation(lp);
	assert_false(jq_longpoll_claim_begin(lp, "q", 1, true));
	jq_longpoll_listening(lp, false);
	jq_longpoll_listening(lp, true);
	jq_longpoll_claim_end(lp, "q", g, 1, 0, true);
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
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
