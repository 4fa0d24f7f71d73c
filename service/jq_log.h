/*
 * jq_log — the service's log lines on standard error: one JSON object per line by default
 * (time, level, msg, and for requests request_id, method, code (its name), grpc_code,
 * duration_ms), or readable text. Thread-safe; a line is written with one call so lines from
 * threads never interleave, and a message is always one line (text format: a control character
 * becomes a space; trailing blanks go).
 * Never pass a payload or a secret to these functions.
 */
#ifndef JQ_LOG_H
#define JQ_LOG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef enum jq_log_level {
	JQ_LOG_DEBUG = 0,
	JQ_LOG_INFO,
	JQ_LOG_WARN,
	JQ_LOG_ERROR,
} jq_log_level;

typedef enum jq_log_format {
	JQ_LOG_JSON = 0,
	JQ_LOG_TEXT,
} jq_log_format;

/* jq_log_setup sets the lowest level written and the format. Call before threads start. */
void jq_log_setup(jq_log_level min_level, jq_log_format format);

/* jq_log_set_stream sends the lines to f instead of stderr (tests read them back). */
void jq_log_set_stream(FILE *f);

/* jq_log_parse_level / jq_log_parse_format: 0 and *out set, or -1 for an unknown name. */
int jq_log_parse_level(const char *s, jq_log_level *out);
int jq_log_parse_format(const char *s, jq_log_format *out);

/* jq_log_enabled: whether a line of this level would be written (skip costly formatting). */
bool jq_log_enabled(jq_log_level level);

/* jq_log writes one line with a printf-style message. */
void jq_log(jq_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* jq_log_request writes one line about a request: its id, method, result code (number and
 * name, e.g. 5 and "NOT_FOUND") and duration. */
void jq_log_request(jq_log_level level, const char *request_id, const char *method, unsigned code,
		    const char *code_name, double duration_ms, const char *fmt, ...)
	__attribute__((format(printf, 7, 8)));

/*
 * jq_log_limiter — one periodic loop's warnings, without a line per round while a condition
 * lasts (a database that is down would otherwise log every second). A message equal to the
 * last one written is counted, not written, until interval_ms has passed since that line; the
 * next one then says how many were left out: "<msg> (N more times in S s)". A different
 * message, or jq_log_limited_end, first writes the count still untold. A limiter belongs to one
 * thread (its loop); initialise it with JQ_LOG_LIMITER(ms).
 */
typedef struct jq_log_limiter {
	int interval_ms;
	jq_log_level level; /* of the last message */
	char last[512];     /* "" = nothing written yet, or ended */
	int64_t shown_ms;   /* when `last` was last written */
	int64_t seen_ms;    /* when it last came, written or not */
	int64_t untold;     /* times it came since shown_ms without being written */
} jq_log_limiter;

#define JQ_LOG_LIMITER(ms) { .interval_ms = (ms) }

/* Repeats of a periodic warning are written at most this often (JQ_LOG_LIMITER's usual ms). */
#define JQ_LOG_REPEAT_MS 30000

/* jq_log_limited logs through the limiter (see above). */
void jq_log_limited(jq_log_limiter *lim, jq_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* jq_log_limited_at is jq_log_limited at a given time on the CLOCK_MONOTONIC milliseconds
 * clock (for tests). */
void jq_log_limited_at(jq_log_limiter *lim, int64_t now_ms, jq_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* jq_log_limited_end: the condition is over; write the count still untold, and forget the
 * message, so that the next occurrence is written at once. */
void jq_log_limited_end(jq_log_limiter *lim);

#define jq_debug(...) jq_log(JQ_LOG_DEBUG, __VA_ARGS__)
#define jq_info(...) jq_log(JQ_LOG_INFO, __VA_ARGS__)
#define jq_warn(...) jq_log(JQ_LOG_WARN, __VA_ARGS__)
#define jq_error(...) jq_log(JQ_LOG_ERROR, __VA_ARGS__)

#endif
