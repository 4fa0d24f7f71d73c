/* jq_log on its own: one line per message in either format, request lines naming their code,
 * and the limiter of repeated warnings (on a clock the test gives). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "jq_log.h"

static FILE *out;
static char text[16384];

static int open_log(void **state)
{
	(void)state;
	out = tmpfile();
	if (out == NULL)
		return -1;
	jq_log_set_stream(out);
	jq_log_setup(JQ_LOG_DEBUG, JQ_LOG_TEXT);
	return 0;
}

static int close_log(void **state)
{
	(void)state;
	jq_log_set_stream(NULL);
	fclose(out);
	return 0;
}

/* written returns everything logged so far. */
static const char *written(void)
{
	fflush(out);
	rewind(out);
	size_t n = fread(text, 1, sizeof(text) - 1, out);
	text[n] = '\0';
	fseek(out, 0, SEEK_END);
	return text;
}

static int lines(void)
{
	int n = 0;
	for (const char *p = written(); *p; p++)
		n += *p == '\n';
	return n;
}

/* line returns the message part of line i (0-based) of the text log: after "TIME LEVEL ". */
static const char *line(int i)
{
	static char buf[2048];
	const char *p = written();
	for (; i > 0 && p != NULL; i--) {
		p = strchr(p, '\n');
		p = p != NULL ? p + 1 : NULL;
	}
	if (p == NULL || *p == '\0')
		return "";
	size_t len = strcspn(p, "\n");
	snprintf(buf, sizeof(buf), "%.*s", (int)len, p);
	/* "2026-01-01T00:00:00.000Z warn  msg": the level is padded to 5. */
	return strlen(buf) > 31 ? buf + 31 : buf;
}

static void a_message_is_one_line_in_text_and_json(void **state)
{
	(void)state;
	jq_log(JQ_LOG_WARN, "notify: connection lost: %s",
	       "server closed the connection unexpectedly\n\tThis probably means the server terminated\n");
	assert_int_equal(lines(), 1);
	assert_string_equal(line(0), "notify: connection lost: server closed the connection unexpectedly  "
				     "This probably means the server terminated");
	jq_log_setup(JQ_LOG_DEBUG, JQ_LOG_JSON);
	jq_log(JQ_LOG_WARN, "database unavailable: refused\n");
	assert_int_equal(lines(), 2);
	assert_non_null(strstr(written(), "\"msg\":\"database unavailable: refused\"}\n"));
}

static void a_request_line_names_its_code(void **state)
{
	(void)state;
	jq_log_request(JQ_LOG_INFO, "r-1", "/jobq.v1.JobQueue/Get", 5, "NOT_FOUND", 0.5, "job 9: no such job");
	assert_non_null(strstr(line(0), "[r-1] /jobq.v1.JobQueue/Get code=NOT_FOUND 0.500ms job 9: no such job"));
	jq_log_setup(JQ_LOG_DEBUG, JQ_LOG_JSON);
	jq_log_request(JQ_LOG_INFO, "r-2", "/jobq.v1.JobQueue/Get", 5, "NOT_FOUND", 0.5, "job 9: no such job");
	assert_non_null(strstr(written(), "\"request_id\":\"r-2\",\"method\":\"/jobq.v1.JobQueue/Get\","
					  "\"code\":\"NOT_FOUND\",\"grpc_code\":5,\"duration_ms\":0.500}\n"));
}

static void repeats_within_the_interval_are_counted_and_told_once_it_passes(void **state)
{
	(void)state;
	jq_log_limiter lim = JQ_LOG_LIMITER(30000);
	for (int64_t t = 0; t < 30000; t += 1000)
		jq_log_limited_at(&lim, t, JQ_LOG_WARN, "rescuer: %s", "database unavailable");
	assert_int_equal(lines(), 1);
	assert_string_equal(line(0), "rescuer: database unavailable");
	jq_log_limited_at(&lim, 30000, JQ_LOG_WARN, "rescuer: %s", "database unavailable");
	assert_int_equal(lines(), 2);
	assert_string_equal(line(1), "rescuer: database unavailable (30 more times in 30 s)");
	/* The count starts again from that line. */
	jq_log_limited_at(&lim, 31000, JQ_LOG_WARN, "rescuer: %s", "database unavailable");
	assert_int_equal(lines(), 2);
	jq_log_limited_at(&lim, 60000, JQ_LOG_WARN, "rescuer: %s", "database unavailable");
	assert_int_equal(lines(), 3);
	assert_string_equal(line(2), "rescuer: database unavailable (2 more times in 30 s)");
}

static void a_different_message_is_written_at_once_after_the_untold_count(void **state)
{
	(void)state;
	jq_log_limiter lim = JQ_LOG_LIMITER(30000);
	jq_log_limited_at(&lim, 0, JQ_LOG_WARN, "notify: cannot connect: refused");
	jq_log_limited_at(&lim, 5000, JQ_LOG_WARN, "notify: cannot connect: refused");
	jq_log_limited_at(&lim, 10000, JQ_LOG_WARN, "notify: cannot connect: refused");
	jq_log_limited_at(&lim, 12000, JQ_LOG_WARN, "notify: cannot connect: timed out");
	assert_int_equal(lines(), 3);
	assert_string_equal(line(0), "notify: cannot connect: refused");
	assert_string_equal(line(1), "notify: cannot connect: refused (2 more times in 10 s)");
	assert_string_equal(line(2), "notify: cannot connect: timed out");
}

static void the_end_tells_the_count_and_a_recurrence_is_written_at_once(void **state)
{
	(void)state;
	jq_log_limiter lim = JQ_LOG_LIMITER(30000);
	jq_log_limited_end(&lim); /* nothing yet: nothing to say */
	assert_int_equal(lines(), 0);
	jq_log_limited_at(&lim, 0, JQ_LOG_WARN, "retention: down");
	jq_log_limited_end(&lim); /* no repeat untold: nothing to add */
	assert_int_equal(lines(), 1);
	jq_log_limited_at(&lim, 1000, JQ_LOG_WARN, "retention: down");
	jq_log_limited_at(&lim, 2000, JQ_LOG_WARN, "retention: down");
	assert_int_equal(lines(), 2);
	jq_log_limited_end(&lim);
	assert_int_equal(lines(), 3);
	assert_string_equal(line(2), "retention: down (1 more time in 1 s)");
	jq_log_limited_at(&lim, 3000, JQ_LOG_WARN, "retention: down");
	assert_int_equal(lines(), 4);
	assert_string_equal(line(3), "retention: down");
}

static void a_level_below_the_minimum_is_neither_written_nor_counted(void **state)
{
	(void)state;
	jq_log_limiter lim = JQ_LOG_LIMITER(30000);
	jq_log_setup(JQ_LOG_ERROR, JQ_LOG_TEXT);
	jq_log_limited_at(&lim, 0, JQ_LOG_WARN, "quiet");
	jq_log_limited_at(&lim, 1, JQ_LOG_WARN, "quiet");
	jq_log_limited_end(&lim);
	assert_int_equal(lines(), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(a_message_is_one_line_in_text_and_json, open_log, close_log),
		cmocka_unit_test_setup_teardown(a_request_line_names_its_code, open_log, close_log),
		cmocka_unit_test_setup_teardown(repeats_within_the_interval_are_counted_and_told_once_it_passes,
						open_log, close_log),
		cmocka_unit_test_setup_teardown(a_different_message_is_written_at_once_after_the_untold_count,
						open_log, close_log),
		cmocka_unit_test_setup_teardown(the_end_tells_the_count_and_a_recurrence_is_written_at_once,
						open_log, close_log),
		cmocka_unit_test_setup_teardown(a_level_below_the_minimum_is_neither_written_nor_counted,
						open_log, close_log),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
