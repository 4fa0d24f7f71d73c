/* jq_flow: what a replica knows of the queues' flow settings. Q lines (anyone who may connect can
 * NOTIFY the channel) are read strictly, and nothing that is not one changes anything; a queue
 * with nothing set is forgotten; the retry hint of a waiting Claim follows the queue's limits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "jq_flow.h"

static void q_lines_parse_exactly(void **state)
{
	(void)state;
	char q[JQ_DB_QUEUE_MAX + 1];
	jq_queue_flow f;
	assert_int_equal(jq_flow_parse("mail 1 - - -", q, &f), 0);
	assert_string_equal(q, "mail");
	assert_true(f.paused);
	assert_int_equal(f.concurrency_limit, 0);
	assert_int_equal(jq_flow_parse("a.b-c_d 0 5 100 1000", q, &f), 0);
	assert_string_equal(q, "a.b-c_d");
	assert_false(f.paused);
	assert_int_equal(f.concurrency_limit, 5);
	assert_int_equal(f.rate_limit, 100);
	assert_int_equal(f.rate_period_ms, 1000);
	assert_int_equal(f.key_concurrency_limit, 0);
	/* The key limit (migration 019) comes last, only when the queue has one. */
	assert_int_equal(jq_flow_parse("tenant 0 - - - 3", q, &f), 0);
	assert_int_equal(f.key_concurrency_limit, 3);
	assert_int_equal(f.concurrency_limit, 0);
	const char *bad[] = { "tenant 0 - - - 0", "tenant 0 - - - 3 4", "tenant 0 - - - 3x", "tenant 0 - - - ", "", "mail", "mail 2 - - -", "mail 1 - -", "mail 1 - - - -", "mail 1 0 - -",
			      "mail 1 -5 - -", "mail 1 x - -", "mail 1 - - 99999999999", " 1 - - -",
			      "mail 1  - - -", "mail 1 - - -x" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (jq_flow_parse(bad[i], q, &f) == 0)
			fail_msg("accepted '%s'", bad[i]);
	}
	char longq[JQ_DB_QUEUE_MAX + 16];
	memset(longq, 'q', JQ_DB_QUEUE_MAX + 1);
	strcpy(longq + JQ_DB_QUEUE_MAX + 1, " 1 - - -");
	assert_int_equal(jq_flow_parse(longq, q, &f), -1);
}

static void settings_come_and_go(void **state)
{
	(void)state;
	jq_flow *fl;
	assert_int_equal(jq_flow_new(&fl), 0);
	jq_queue_flow paused = { .paused = true }, none = { 0 }, limited = { .concurrency_limit = 2 };
	char name[16];
	for (int i = 0; i < 100; i++) { /* past the first allocation, in no particular order */
		snprintf(name, sizeof(name), "q%d", (i * 37) % 100);
		assert_int_equal(jq_flow_set(fl, name, &paused), 0);
	}
	assert_int_equal(jq_flow_count(fl), 100);
	assert_true(jq_flow_paused(fl, "q0") && jq_flow_paused(fl, "q99") && jq_flow_paused(fl, "q42"));
	assert_false(jq_flow_paused(fl, "q100"));
	assert_int_equal(jq_flow_set(fl, "q42", &none), 0); /* nothing set: forgotten */
	assert_int_equal(jq_flow_count(fl), 99);
	assert_false(jq_flow_paused(fl, "q42"));
	assert_int_equal(jq_flow_set(fl, "q43", &limited), 0);
	assert_false(jq_flow_paused(fl, "q43"));
	assert_true(jq_flow_limited(fl, "q43"));
	jq_flow_clear(fl);
	assert_int_equal(jq_flow_count(fl), 0);
	assert_false(jq_flow_paused(fl, "q0"));
	jq_flow_free(fl);
}

static void a_waiting_claim_looks_again_as_its_limits_need(void **state)
{
	(void)state;
	jq_flow *fl;
	assert_int_equal(jq_flow_new(&fl), 0);
	const int64_t now = 1800000000250; /* 250 ms into a second */
	jq_queue_flow conc = { .concurrency_limit = 3 }, per_sec = { .rate_limit = 5, .rate_period_ms = 1000 },
		      per_100ms = { .rate_limit = 5, .rate_period_ms = 100 }, paused = { .paused = true, .concurrency_limit = 3 };
	jq_flow_set(fl, "conc", &conc);
	jq_flow_set(fl, "sec", &per_sec);
	jq_flow_set(fl, "fast", &per_100ms);
	jq_flow_set(fl, "paused", &paused);
	assert_int_equal(jq_flow_retry_ms(fl, "none", now), 0);     /* announcements suffice */
	assert_int_equal(jq_flow_retry_ms(fl, "paused", now), 0);   /* Resume announces */
	assert_int_equal(jq_flow_retry_ms(fl, "conc", now), JQ_FLOW_SLOT_RETRY_MS);
	assert_int_equal(jq_flow_retry_ms(fl, "sec", now), JQ_FLOW_RATE_RETRY_MAX_MS); /* 751 capped */
	assert_int_equal(jq_flow_retry_ms(fl, "sec", now + 700), 51);  /* the next window, just after */
	assert_int_equal(jq_flow_retry_ms(fl, "fast", now + 30), 21); /* 280 ms: window ends at 300 */
	jq_flow_free(fl);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(q_lines_parse_exactly),
		cmocka_unit_test(settings_come_and_go),
		cmocka_unit_test(a_waiting_claim_looks_again_as_its_limits_need),
	};
	return cmocka_run_group_tests_name("flow settings", tests, NULL, NULL);
}
