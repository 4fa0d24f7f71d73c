/* How long jobqd's listener arms its timer for a time the database (or anyone who may NOTIFY the
 * channel) hands it: never beyond a day, never before now, never by arithmetic that leaves int64
 * (the ASan build's UBSan stops at a signed overflow), and not at all for text that is no
 * number. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "jq_notify.h"

#define DAY_MS (24LL * 3600 * 1000)
#define NOW 1800000000000LL /* a Unix time in ms */

static int64_t delay(const char *text, int64_t now)
{
	int64_t d = -42;
	assert_int_equal(jq_notify_delay_ms(text, now, &d), 0);
	return d;
}

static void a_unix_time_becomes_the_wait_until_then(void **state)
{
	(void)state;
	assert_int_equal(delay("1800000001500", NOW), 1500);
	assert_int_equal(delay("1800000000000", NOW), 0);
	assert_int_equal(delay("1799999999000", NOW), 0); /* already due: scan at once */
}

static void extreme_times_stay_within_a_day_and_in_range(void **state)
{
	(void)state;
	assert_int_equal(delay("9223372036854775807", NOW), DAY_MS);
	assert_int_equal(delay("-9223372036854775808", NOW), 0);
	assert_int_equal(delay("9223372036854775807", 0), DAY_MS);
	/* Relative times (the next-due query). */
	assert_int_equal(delay("5000", -1), 5000);
	assert_int_equal(delay("-5", -1), 0);
	assert_int_equal(delay("9223372036854775807", -1), DAY_MS);
	assert_int_equal(delay("-9223372036854775808", -1), 0);
}

static void text_that_is_no_number_arms_nothing(void **state)
{
	(void)state;
	const char *bad[] = { "", "x", "12x", "1 2", "99999999999999999999", "-99999999999999999999", " " };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int64_t d = -42;
		assert_int_equal(jq_notify_delay_ms(bad[i], NOW, &d), -1);
		assert_int_equal(d, -42);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(a_unix_time_becomes_the_wait_until_then),
		cmocka_unit_test(extreme_times_stay_within_a_day_and_in_range),
		cmocka_unit_test(text_that_is_no_number_arms_nothing),
	};
	return cmocka_run_group_tests_name("notify_delay", tests, NULL, NULL);
}
