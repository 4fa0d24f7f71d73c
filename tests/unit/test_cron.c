/* jq_cron on its own: parsing, the reasons it refuses, and the next tick on wall-clock times. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "jq_cron.h"

static jq_cron_time tm(int y, int mo, int d, int h, int mi, int s)
{
	return (jq_cron_time){ .year = y, .mon = mo, .day = d, .hour = h, .min = mi, .sec = s };
}

/* next_str: the tick after `after` of expr as "YYYY-MM-DD HH:MM:SS", or "none". */
static const char *next_str(const char *expr, jq_cron_time after)
{
	static char buf[32];
	jq_cron c;
	jq_cron_time t;
	char why[256];
	if (jq_cron_parse(expr, &c, why, sizeof(why)) != 0)
		fail_msg("'%s' did not parse: %s", expr, why);
	if (!jq_cron_next(&c, &after, &t))
		return "none";
	snprintf(buf, sizeof(buf), "%04d-%02d-%02d %02d:%02d:%02d", t.year, t.mon, t.day, t.hour, t.min,
		 t.sec);
	return buf;
}

/* refused: expr does not parse, and the reason contains `part`. */
static void refused(const char *expr, const char *part)
{
	jq_cron c;
	char why[256] = "";
	if (jq_cron_parse(expr, &c, why, sizeof(why)) == 0)
		fail_msg("'%s' parsed; expected a refusal naming '%s'", expr, part);
	if (strstr(why, part) == NULL)
		fail_msg("'%s': reason '%s' does not name '%s'", expr, why, part);
}

static void every_minute_and_strictly_after(void **state)
{
	(void)state;
	assert_string_equal(next_str("* * * * *", tm(2026, 12, 4, 21, 7, 0)), "2026-12-04 21:08:00");
	assert_string_equal(next_str("* * * * *", tm(2026, 12, 4, 21, 7, 59)), "2026-12-04 21:08:00");
	assert_string_equal(next_str("* * * * *", tm(2026, 12, 31, 23, 59, 30)), "2027-01-01 00:00:00");
	/* six fields: seconds first */
	assert_string_equal(next_str("* * * * * *", tm(2026, 12, 4, 21, 7, 0)), "2026-12-04 21:07:01");
	assert_string_equal(next_str("*/15 * * * * *", tm(2026, 12, 4, 21, 7, 50)), "2026-12-04 21:08:00");
}

static void steps_ranges_lists(void **state)
{
	(void)state;
	assert_string_equal(next_str("*/15 * * * *", tm(2026, 1, 1, 10, 16, 0)), "2026-01-01 10:30:00");
	assert_string_equal(next_str("10-20/5 * * * *", tm(2026, 1, 1, 10, 16, 0)), "2026-01-01 10:20:00");
	assert_string_equal(next_str("10-20/5 * * * *", tm(2026, 1, 1, 10, 20, 0)), "2026-01-01 11:10:00");
	assert_string_equal(next_str("50/5 * * * *", tm(2026, 1, 1, 10, 56, 0)), "2026-01-01 11:50:00");
	assert_string_equal(next_str("0 9,17 * * *", tm(2026, 1, 1, 9, 0, 0)), "2026-01-01 17:00:00");
	assert_string_equal(next_str("0 9,17 * * *", tm(2026, 1, 1, 17, 0, 0)), "2026-01-02 09:00:00");
	assert_string_equal(next_str("0 0 * JAN,jul *", tm(2026, 2, 1, 0, 0, 0)), "2026-07-01 00:00:00");
	assert_string_equal(next_str("30 8 * * MON-FRI", tm(2026, 12, 4, 9, 0, 0)), "2026-12-07 08:30:00");
	assert_string_equal(next_str("@hourly", tm(2026, 12, 4, 9, 0, 0)), "2026-12-04 10:00:00");
	assert_string_equal(next_str("@yearly", tm(2026, 12, 4, 9, 0, 0)), "2027-01-01 00:00:00");
	assert_string_equal(next_str("@weekly", tm(2026, 12, 4, 9, 0, 0)), "2026-12-06 00:00:00");
}

static void sunday_is_0_and_7(void **state)
{
	(void)state;
	/* 2026-12-06 is a Sunday */
	assert_int_equal(jq_cron_weekday(2026, 12, 6), 0);
	assert_int_equal(jq_cron_weekday(1970, 1, 1), 4);
	assert_int_equal(jq_cron_weekday(1969, 12, 31), 3);
	assert_string_equal(next_str("0 0 * * 7", tm(2026, 12, 4, 0, 0, 0)), "2026-12-06 00:00:00");
	assert_string_equal(next_str("0 0 * * 0", tm(2026, 12, 4, 0, 0, 0)), "2026-12-06 00:00:00");
	assert_string_equal(next_str("0 0 * * 5-7", tm(2026, 12, 5, 0, 0, 0)), "2026-12-06 00:00:00");
}

static void feb_29_and_month_ends(void **state)
{
	(void)state;
	assert_string_equal(next_str("0 0 29 2 *", tm(2026, 12, 4, 0, 0, 0)), "2028-02-29 00:00:00");
	/* 2100 is not a leap year: the 29th after 2096 is in 2104, eight years on */
	assert_string_equal(next_str("0 0 29 2 *", tm(2096, 3, 1, 0, 0, 0)), "2104-02-29 00:00:00");
	assert_string_equal(next_str("0 0 31 * *", tm(2026, 1, 31, 0, 0, 0)), "2026-03-31 00:00:00");
	assert_string_equal(next_str("0 0 30 * *", tm(2026, 1, 30, 12, 0, 0)), "2026-03-30 00:00:00");
	assert_string_equal(next_str("59 23 31 12 *", tm(2026, 12, 31, 23, 59, 0)), "2027-12-31 23:59:00");
	assert_int_equal(jq_cron_days_in_month(2000, 2), 29);
	assert_int_equal(jq_cron_days_in_month(1900, 2), 28);
	assert_int_equal(jq_cron_days_in_month(2024, 2), 29);
}

static void dom_dow_or_rule(void **state)
{
	(void)state;
	/* Both restricted: the 13th OR a Friday. 2026-12-04 is a Friday; 2026-12-11 the next. */
	assert_string_equal(next_str("0 0 13 * FRI", tm(2026, 12, 4, 0, 0, 0)), "2026-12-11 00:00:00");
	assert_string_equal(next_str("0 0 13 * FRI", tm(2026, 12, 11, 0, 0, 0)), "2026-12-13 00:00:00");
	/* One field starting with '*': both must match (here: Fridays only). */
	assert_string_equal(next_str("0 0 * * FRI", tm(2026, 12, 11, 0, 0, 0)), "2026-12-18 00:00:00");
	/* '*' with a step still counts as starting with '*': AND. Every other day that is a Sunday. */
	assert_string_equal(next_str("0 0 */2 * SUN", tm(2026, 12, 1, 0, 0, 0)), "2026-12-13 00:00:00");
	/* Feb 29 or a Monday, in February: every Monday of February, not only in leap years */
	assert_string_equal(next_str("0 0 29 2 MON", tm(2026, 12, 4, 0, 0, 0)), "2027-02-01 00:00:00");
}

static void invalid_input_names_the_reason(void **state)
{
	(void)state;
	refused("", "required");
	refused("* * * *", "4 fields");
	refused("* * * * * * *", "7 fields");
	refused("60 * * * *", "minute: 60 is out of range 0-59");
	refused("* 24 * * *", "hour: 24");
	refused("* * 0 * *", "day-of-month: 0 is out of range 1-31");
	refused("* * 32 * *", "day-of-month: 32");
	refused("* * * 13 *", "month: 13");
	refused("* * * * 8", "day-of-week: 8");
	refused("* * * FOO *", "month: unknown name 'FOO'");
	refused("* * * * MONDAY", "day-of-week: unknown name");
	refused("*/0 * * * *", "minute: step 0");
	refused("*/ * * * *", "needs a number");
	refused("5-1 * * * *", "runs backwards");
	refused("1,,2 * * * *", "empty list element");
	refused("1, * * * *", "empty list element");
	refused("a * * * *", "minute: unexpected 'a'");
	refused("1-2-3 * * * *", "unexpected '-'");
	refused("0 0 30 2 *", "never matches");
	refused("0 0 31 4,6,9,11 *", "never matches");
	refused("@reboot", "unknown macro");
	refused("* * * * \x01", "printable");
	refused("99999999999999 * * * *", "out of range");
}

static void seconds_round_trip(void **state)
{
	(void)state;
	jq_cron_time t = tm(2026, 12, 4, 21, 7, 59), back;
	jq_cron_time_from_seconds(jq_cron_time_to_seconds(&t), &back);
	assert_memory_equal(&t, &back, sizeof(t));
	assert_int_equal(jq_cron_time_to_seconds(&(jq_cron_time){ .year = 1970, .mon = 1, .day = 1 }), 0);
	assert_int_equal(jq_cron_time_to_seconds(&(jq_cron_time){ .year = 2000, .mon = 1, .day = 1 }),
			 946684800);
	jq_cron_time_from_seconds(-1, &back);
	assert_int_equal(back.year, 1969);
	assert_int_equal(back.sec, 59);
}

static void matches(void **state)
{
	(void)state;
	jq_cron c;
	char why[128];
	assert_int_equal(jq_cron_parse("0 12 * * MON", &c, why, sizeof(why)), 0);
	jq_cron_time mon_noon = tm(2026, 12, 7, 12, 0, 0), tue_noon = tm(2026, 12, 8, 12, 0, 0);
	assert_true(jq_cron_matches(&c, &mon_noon));
	assert_false(jq_cron_matches(&c, &tue_noon));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(every_minute_and_strictly_after),
		cmocka_unit_test(steps_ranges_lists),
		cmocka_unit_test(sunday_is_0_and_7),
		cmocka_unit_test(feb_29_and_month_ends),
		cmocka_unit_test(dom_dow_or_rule),
		cmocka_unit_test(invalid_input_names_the_reason),
		cmocka_unit_test(seconds_round_trip),
		cmocka_unit_test(matches),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
