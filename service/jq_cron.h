/*
 * jq_cron — cron expressions and their next tick, on local wall-clock times.
 *
 * An expression has five fields, minute hour day-of-month month day-of-week, or six with a
 * leading seconds field (seconds minute hour ...). Each field is `*`, a value, a range `a-b`, a
 * step `*\/n`, `a-b/n` or `a/n` (a to the field's end), or a comma-separated list of those.
 * Months take JAN..DEC and days of the week SUN..SAT (any case); day of week 0 and 7 are
 * Sunday. The macros @yearly (@annually), @monthly, @weekly, @daily (@midnight) and @hourly
 * stand for their five-field forms.
 *
 * Day of month and day of week combine as cron has always combined them: when either field
 * starts with `*`, a day must match both; when both are restricted, a day matching either runs
 * ("0 0 13 * FRI" runs on every 13th and on every Friday).
 *
 * Times here have no zone: jq_cron_time is a calendar date and a time of day in the schedule's
 * zone (proleptic Gregorian calendar). Turning them into instants is the caller's business
 * (jobqd does it in PostgreSQL, which owns the time-zone database it uses). Nothing here reads
 * the process's TZ, so every function is safe on any thread. Nothing allocates.
 */
#ifndef JQ_CRON_H
#define JQ_CRON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JQ_CRON_MAX_LEN 256 /* bytes of an expression */

typedef struct jq_cron {
	uint64_t sec;  /* bit s: second s (0..59); only bit 0 for a five-field expression */
	uint64_t min;  /* bit m: minute m (0..59) */
	uint32_t hour; /* bit h: hour h (0..23) */
	uint32_t dom;  /* bit d: day of month d (1..31) */
	uint16_t mon;  /* bit m: month m (1..12) */
	uint8_t dow;   /* bit w: day of week w (0 = Sunday .. 6) */
	bool dom_star; /* the day-of-month field started with '*' */
	bool dow_star; /* the day-of-week field started with '*' */
	bool seconds;  /* six fields */
} jq_cron;

typedef struct jq_cron_time {
	int year; /* 1..9999 */
	int mon;  /* 1..12 */
	int day;  /* 1..31 */
	int hour, min, sec;
} jq_cron_time;

/* jq_cron_parse reads expr into *out. Returns 0, or -1 after writing into why (why_len bytes) a
 * reason that names the field ("day-of-month: 32 is out of range 1-31"). An expression that
 * parses but can never run ("0 0 30 2 *") is refused too. */
int jq_cron_parse(const char *expr, jq_cron *out, char *why, size_t why_len);

/* jq_cron_next writes the first time strictly after `after` that c matches. Returns false when
 * there is none within the following ten years (or past year 9999). */
bool jq_cron_next(const jq_cron *c, const jq_cron_time *after, jq_cron_time *out);

/* jq_cron_matches: whether t is one of c's times. */
bool jq_cron_matches(const jq_cron *c, const jq_cron_time *t);

/* Calendar helpers (proleptic Gregorian). */
int jq_cron_days_in_month(int year, int mon);
int jq_cron_weekday(int year, int mon, int day); /* 0 = Sunday */

/* Seconds since 1970-01-01 00:00:00 of the wall-clock time t, counted as if it were UTC, and
 * back: the arithmetic that moves wall-clock times across the wire (a PostgreSQL `timestamp`). */
int64_t jq_cron_time_to_seconds(const jq_cron_time *t);
void jq_cron_time_from_seconds(int64_t s, jq_cron_time *t);

#endif
