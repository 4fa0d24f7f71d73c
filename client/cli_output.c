/*
 * cli_output.c — JSON lines and human-readable text for the jobq CLI. The JSON writer is tiny
 * on purpose: the CLI only ever prints flat objects (and arrays of numbers or flat objects).
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

void json_begin(json_out *j, FILE *f)
{
	j->f = f;
	j->first = true;
	fputc('{', f);
}

void json_end(json_out *j)
{
	fputs("}\n", j->f);
	/* One object per line, visible at once to a reader on a pipe (watch, worker). */
	fflush(j->f);
}

void json_key(json_out *j, const char *key)
{
	if (!j->first)
		fputc(',', j->f);
	j->first = false;
	json_write_string(j->f, key, strlen(key));
	fputc(':', j->f);
}

void json_write_string(FILE *f, const char *s, size_t n)
{
	fputc('"', f);
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		switch (ch) {
		case '"':
			fputs("\\\"", f);
			break;
		case '\\':
			fputs("\\\\", f);
			break;
		case '\n':
			fputs("\\n", f);
			break;
		case '\r':
			fputs("\\r", f);
			break;
		case '\t':
			fputs("\\t", f);
			break;
		default:
			if (ch < 0x20)
				fprintf(f, "\\u%04x", ch);
			else
				fputc(ch, f);
		}
	}
	fputc('"', f);
}

void json_str(json_out *j, const char *key, const char *val)
{
	json_key(j, key);
	if (val == NULL) {
		fputs("null", j->f);
		return;
	}
	/* Strings from the service are UTF-8 already; sanitize anyway so the line always parses. */
	size_t n = strlen(val);
	if (utf8_valid((const uint8_t *)val, n)) {
		json_write_string(j->f, val, n);
		return;
	}
	char *buf = malloc(n + 1);
	if (buf == NULL) {
		fputs("null", j->f);
		return;
	}
	size_t m = utf8_sanitize(buf, (const uint8_t *)val, n);
	json_write_string(j->f, buf, m);
	free(buf);
}

void json_i64(json_out *j, const char *key, int64_t v)
{
	json_key(j, key);
	fprintf(j->f, "%" PRId64, v);
}

void json_u64(json_out *j, const char *key, uint64_t v)
{
	json_key(j, key);
	fprintf(j->f, "%" PRIu64, v);
}

void json_double(json_out *j, const char *key, double v)
{
	json_key(j, key);
	/* JSON has no NaN or infinity. */
	if (!isfinite(v))
		v = 0;
	fprintf(j->f, "%.3f", v);
}

void json_bool(json_out *j, const char *key, bool v)
{
	json_key(j, key);
	fputs(v ? "true" : "false", j->f);
}

static void write_base64(FILE *f, const uint8_t *p, size_t n)
{
	static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	fputc('"', f);
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)p[i + 1] << 8;
		if (i + 2 < n)
			v |= p[i + 2];
		fputc(tbl[(v >> 18) & 63], f);
		fputc(tbl[(v >> 12) & 63], f);
		fputc(i + 1 < n ? tbl[(v >> 6) & 63] : '=', f);
		fputc(i + 2 < n ? tbl[v & 63] : '=', f);
	}
	fputc('"', f);
}

void json_bytes(json_out *j, const char *key, const uint8_t *p, size_t n)
{
	if (p == NULL)
		n = 0;
	if (n == 0 || utf8_valid(p, n)) {
		json_key(j, key);
		json_write_string(j->f, (const char *)p, n);
		return;
	}
	char k[64];
	snprintf(k, sizeof(k), "%s_base64", key);
	json_key(j, k);
	write_base64(j->f, p, n);
}

void json_time_ms(json_out *j, const char *key, int64_t ms)
{
	json_i64(j, key, ms);
	if (ms == 0)
		return;
	char k[64], buf[40];
	snprintf(k, sizeof(k), "%s_iso", key);
	json_str(j, k, fmt_time_ms(buf, sizeof(buf), ms));
}

void json_job_fields(json_out *j, const jobq_job *job, bool include_payload)
{
	json_i64(j, "id", job->id);
	json_str(j, "queue", job->queue);
	json_str(j, "status", jobq_status_name(job->status));
	if (job->prev_status != JOBQ_STATUS_UNSPECIFIED)
		json_str(j, "prev_status", jobq_status_name(job->prev_status));
	json_u64(j, "attempts", job->attempts);
	json_u64(j, "max_attempts", job->max_attempts);
	json_i64(j, "priority", job->priority);
	json_time_ms(j, "run_at_ms", job->run_at_ms);
	json_i64(j, "lease_token", job->lease_token);
	json_str(j, "lease_owner", job->lease_owner != NULL && job->lease_owner[0] ? job->lease_owner : NULL);
	json_time_ms(j, "lease_expires_at_ms", job->lease_expires_at_ms);
	json_str(j, "last_error", job->last_error != NULL && job->last_error[0] ? job->last_error : NULL);
	json_str(j, "idempotency_key",
		 job->idempotency_key != NULL && job->idempotency_key[0] ? job->idempotency_key : NULL);
	json_str(j, "concurrency_key",
		 job->concurrency_key != NULL && job->concurrency_key[0] ? job->concurrency_key : NULL);
	json_time_ms(j, "created_at_ms", job->created_at_ms);
	json_time_ms(j, "updated_at_ms", job->updated_at_ms);
	json_time_ms(j, "finished_at_ms", job->finished_at_ms);
	if (job->timeout_ms > 0)
		json_u64(j, "timeout_ms", job->timeout_ms);
	if (job->progress_percent >= 0) {
		json_i64(j, "progress_percent", job->progress_percent);
		json_str(j, "progress_message",
			 job->progress_message != NULL && job->progress_message[0] ? job->progress_message : NULL);
		json_time_ms(j, "progress_at_ms", job->progress_at_ms);
	}
	if (include_payload)
		json_bytes(j, "payload", job->payload, job->payload_len);
	if (job->output_len > 0)
		json_bytes(j, "output", job->output, job->output_len);
}

/* utf8_seq_len returns the length of the valid UTF-8 sequence at p (n bytes left), or 0. */
static size_t utf8_seq_len(const uint8_t *p, size_t n)
{
	uint8_t b = p[0];
	size_t len;
	uint32_t cp;
	if (b == 0)
		return 0;
	if (b < 0x80)
		return 1;
	if (b >= 0xc2 && b <= 0xdf)
		len = 2, cp = b & 0x1f;
	else if (b >= 0xe0 && b <= 0xef)
		len = 3, cp = b & 0x0f;
	else if (b >= 0xf0 && b <= 0xf4)
		len = 4, cp = b & 0x07;
	else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	/* Overlong forms, surrogates and values past U+10FFFF are not UTF-8. */
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

bool utf8_valid(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n;) {
		size_t len = utf8_seq_len(p + i, n - i);
		if (len == 0)
			return false;
		i += len;
	}
	return true;
}

size_t utf8_sanitize(char *dst, const uint8_t *p, size_t n)
{
	size_t o = 0;
	for (size_t i = 0; i < n;) {
		size_t len = utf8_seq_len(p + i, n - i);
		if (len == 0) {
			dst[o++] = '?';
			i++;
			continue;
		}
		memcpy(dst + o, p + i, len);
		o += len;
		i += len;
	}
	dst[o] = '\0';
	return o;
}

const char *fmt_time_ms(char *buf, size_t size, int64_t ms)
{
	if (ms == 0) {
		snprintf(buf, size, "-");
		return buf;
	}
	time_t secs = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&secs, &tm);
	char base[32];
	strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, size, "%s.%03dZ", base, (int)(ms % 1000));
	return buf;
}

void fmt_printable(FILE *f, const uint8_t *p, size_t n, size_t max_chars)
{
	size_t shown = 0;
	for (size_t i = 0; i < n; i++) {
		if (max_chars != 0 && shown >= max_chars) {
			fputs("...", f);
			return;
		}
		unsigned char ch = p[i];
		shown++;
		if (ch == '\n')
			fputs("\\n", f);
		else if (ch == '\t')
			fputs("\\t", f);
		else if (ch < 0x20 || ch == 0x7f)
			fprintf(f, "\\x%02x", ch);
		else
			fputc(ch, f);
	}
}

const char *status_short(jobq_status s)
{
	const char *name = jobq_status_name(s);
	if (name == NULL)
		return "?";
	/* "archive_pending" -> "pending": tables are narrow. */
	return strncmp(name, "archive_", 8) == 0 ? name + 8 : name;
}
