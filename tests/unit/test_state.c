/* The C state machine on its own; test_schema holds it against the database. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "jq_state.h"

static void names_round_trip(void **state)
{
	(void)state;
	for (int i = 0; i < JQ_STATE__COUNT; i++) {
		jq_state s;
		const char *name = jq_state_name((jq_state)i);
		assert_non_null(name);
		assert_int_equal(jq_state_from_name(name, &s), 0);
		assert_int_equal(s, i);
	}
	jq_state s;
	assert_int_equal(jq_state_from_name("archive_active", &s), -1);
	assert_int_equal(jq_state_from_name(NULL, &s), -1);
	assert_null(jq_state_name(JQ_STATE__COUNT));
	assert_string_equal(jq_state_name(JQ_STATE_PENDING), "archive_pending");
}

static void nothing_leaves_completed(void **state)
{
	(void)state;
	for (int i = 0; i < JQ_STATE__COUNT; i++)
		assert_false(jq_state_can_move(JQ_STATE_COMPLETED, (jq_state)i));
	assert_true(jq_state_is_terminal(JQ_STATE_COMPLETED));
	assert_false(jq_state_is_terminal(JQ_STATE_FAILED));
}

static void the_lifecycle_edges(void **state)
{
	(void)state;
	assert_true(jq_state_can_move(JQ_STATE_PENDING, JQ_STATE_PROCESSING));
	assert_true(jq_state_can_move(JQ_STATE_PROCESSING, JQ_STATE_COMPLETED));
	assert_true(jq_state_can_move(JQ_STATE_PROCESSING, JQ_STATE_FAILED));
	assert_true(jq_state_can_move(JQ_STATE_PROCESSING, JQ_STATE_PENDING));
	assert_true(jq_state_can_move(JQ_STATE_FAILED, JQ_STATE_PENDING));
	/* A running job can be cancelled under its worker (migration 017). */
	assert_true(jq_state_can_move(JQ_STATE_PROCESSING, JQ_STATE_CANCELLED));
	/* Only a claim starts work. */
	assert_false(jq_state_can_move(JQ_STATE_FAILED, JQ_STATE_PROCESSING));
	assert_false(jq_state_can_move(JQ_STATE_PENDING, JQ_STATE_COMPLETED));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(names_round_trip),
		cmocka_unit_test(nothing_leaves_completed),
		cmocka_unit_test(the_lifecycle_edges),
	};
	return cmocka_run_group_tests_name("state", tests, NULL, NULL);
}
