/*
 * jq_log — the service's log lines on standard error: one JSON object per line by default
 * (time, level, msg, and for requests request_id, method, code, duration_ms), or readable text.
 * Thread-safe; a line is written with one call so lines from threads never interleave.
 * Never pass a payload or a secret to these functions.
 */
#ifndef JQ_LOG_H
#define JQ_LOG_H

#include <stdbool.h>

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

/* jq_log_parse_level / jq_log_parse_format: 0 and *out set, or -1 for an unknown name. */
int jq_log_parse_level(const char *s, jq_log_level *out);
int jq_log_parse_format(const char *s, jq_log_format *out);

/* jq_log_enabled: whether a line of this level would be written (skip costly formatting). */
bool jq_log_enabled(jq_log_level level);

/* jq_log writes one line with a printf-style message. */
void jq_log(jq_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* jq_log_request writes one line about a request: its id, method, result code and duration. */
void jq_log_request(jq_log_level level, const char *request_id, const char *method, unsigned code,
		    double duration_ms, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

#define jq_debug(...) jq_log(JQ_LOG_DEBUG, __VA_ARGS__)
#define jq_info(...) jq_log(JQ_LOG_INFO, __VA_ARGS__)
#define jq_warn(...) jq_log(JQ_LOG_WARN, __VA_ARGS__)
#define jq_error(...) jq_log(JQ_LOG_ERROR, __VA_ARGS__)

#endif
