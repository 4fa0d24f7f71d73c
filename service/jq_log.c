#include "jq_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "jq_clock.h"

static jq_log_level min_level = JQ_LOG_INFO;
static jq_log_format log_format = JQ_LOG_JSON;
static FILE *out_stream; /* NULL = stderr */

static const char *const level_names[] = { "debug", "info", "warn", "error" };

void jq_log_setup(jq_log_level level, jq_log_format format)
{
	min_level = level;
	log_format = format;
}

void jq_log_set_stream(FILE *f)
{
	out_stream = f;
}

int jq_log_parse_level(const char *s, jq_log_level *out)
{
	for (int i = 0; i <= JQ_LOG_ERROR; i++) {
		if (strcmp(s, level_names[i]) == 0) {
			*out = (jq_log_level)i;
			return 0;
		}
	}
	return -1;
}

int jq_log_parse_format(const char *s, jq_log_format *out)
{
	if (strcmp(s, "json") == 0)
		*out = JQ_LOG_JSON;
	else if (strcmp(s, "text") == 0)
		*out = JQ_LOG_TEXT;
	else
		return -1;
	return 0;
}

bool jq_log_enabled(jq_log_level level)
{
	return level >= min_level;
}

/* A growing-by-truncation line buffer: a log line longer than this is cut, never overflows. */
typedef struct line {
	char buf[4096];
	size_t len;
} line;

static void line_add(line *l, const char *s, size_t n)
{
	size_t room = sizeof(l->buf) - 1 - l->len;
	if (n > room)
		n = room;
	memcpy(l->buf + l->len, s, n);
	l->len += n;
}

static void line_addf(line *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void line_addf(line *l, const char *fmt, ...)
{
	va_list ap;
	size_t room = sizeof(l->buf) - 1 - l->len;
	va_start(ap, fmt);
	int n = vsnprintf(l->buf + l->len, room + 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	l->len += (size_t)n > room ? room : (size_t)n;
}

/* JSON string body: escapes quotes, backslashes and control characters. */
static void line_add_json(line *l, const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			char esc[2] = { '\\', (char)c };
			line_add(l, esc, 2);
		} else if (c < 0x20) {
			line_addf(l, "\\u%04x", c);
		} else {
			line_add(l, (const char *)&c, 1);
		}
	}
}

static void line_add_time(line *l)
{
	struct timespec ts;
	struct tm tm;
	char buf[32];
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
	line_addf(l, "%s.%03ldZ", buf, ts.tv_nsec / 1000000);
}

/* one_line trims trailing blanks and line ends from msg; in text format it also turns every
 * other control character into a space, so that a message is one line of the log. */
static void one_line(char *msg)
{
	size_t n = strlen(msg);
	while (n > 0 && ((unsigned char)msg[n - 1] < 0x20 || msg[n - 1] == ' '))
		msg[--n] = '\0';
	if (log_format != JQ_LOG_TEXT)
		return;
	for (char *p = msg; *p; p++)
		if ((unsigned char)*p < 0x20)
			*p = ' ';
}

static void write_line(jq_log_level level, const char *request_id, const char *method, int code,
		       const char *code_name, double duration_ms, char *msg)
{
	line l = { .len = 0 };

	one_line(msg);
	if (log_format == JQ_LOG_TEXT) {
		line_add_time(&l);
		line_addf(&l, " %-5s ", level_names[level]);
		if (request_id != NULL)
			line_addf(&l, "[%s] %s code=%s %.3fms ", request_id, method ? method : "-",
				  code_name, duration_ms);
		line_add(&l, msg, strlen(msg));
	} else {
		line_add(&l, "{\"time\":\"", 9);
		line_add_time(&l);
		line_addf(&l, "\",\"level\":\"%s\",\"msg\":\"", level_names[level]);
		line_add_json(&l, msg);
		line_add(&l, "\"", 1);
		if (request_id != NULL) {
			line_add(&l, ",\"request_id\":\"", 15);
			line_add_json(&l, request_id);
			line_add(&l, "\",\"method\":\"", 12);
			line_add_json(&l, method ? method : "");
			line_add(&l, "\",\"code\":\"", 10);
			line_add_json(&l, code_name);
			line_addf(&l, "\",\"grpc_code\":%d,\"duration_ms\":%.3f", code, duration_ms);
		}
		line_add(&l, "}", 1);
	}
	l.buf[l.len++] = '\n';
	fwrite(l.buf, 1, l.len, out_stream != NULL ? out_stream : stderr);
}

void jq_log(jq_log_level level, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;
	if (!jq_log_enabled(level))
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	write_line(level, NULL, NULL, 0, NULL, 0, msg);
}

void jq_log_request(jq_log_level level, const char *request_id, const char *method, unsigned code,
		    const char *code_name, double duration_ms, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;
	if (!jq_log_enabled(level))
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	write_line(level, request_id ? request_id : "", method, (int)code, code_name ? code_name : "",
		   duration_ms, msg);
}

/* ---- repeated messages ---- */

/* tell_untold writes the last message with how often it came since it was last written. */
static void tell_untold(jq_log_limiter *lim)
{
	if (lim->untold == 0 || lim->last[0] == '\0')
		return;
	jq_log(lim->level, "%s (%lld more time%s in %lld s)", lim->last, (long long)lim->untold,
	       lim->untold == 1 ? "" : "s", (long long)((lim->seen_ms - lim->shown_ms + 999) / 1000));
	lim->untold = 0;
}

static void limited(jq_log_limiter *lim, int64_t now_ms, jq_log_level level, const char *fmt,
		    va_list ap)
{
	char msg[sizeof(lim->last)];
	if (!jq_log_enabled(level))
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (lim->last[0] != '\0' && strcmp(msg, lim->last) == 0) {
		lim->seen_ms = now_ms;
		if (now_ms - lim->shown_ms < lim->interval_ms) {
			lim->untold++;
			return;
		}
		lim->untold++; /* this one, told with the others */
		tell_untold(lim);
		lim->shown_ms = now_ms;
		return;
	}
	tell_untold(lim);
	jq_log(level, "%s", msg);
	snprintf(lim->last, sizeof(lim->last), "%s", msg);
	lim->level = level;
	lim->shown_ms = lim->seen_ms = now_ms;
	lim->untold = 0;
}

void jq_log_limited(jq_log_limiter *lim, jq_log_level level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	limited(lim, jq_clock_mono_ms(), level, fmt, ap);
	va_end(ap);
}

void jq_log_limited_at(jq_log_limiter *lim, int64_t now_ms, jq_log_level level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	limited(lim, now_ms, level, fmt, ap);
	va_end(ap);
}

void jq_log_limited_end(jq_log_limiter *lim)
{
	tell_untold(lim);
	lim->last[0] = '\0';
}
