#include "jq_cron.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define SEARCH_YEARS 10 /* Feb 29 can be 8 years away (2096 -> 2104) */

typedef struct field_def {
	const char *name;
	int lo, hi;
	const char *const *names; /* indexed from lo; NULL = numbers only */
} field_def;

static const char *const month_names[] = { "JAN", "FEB", "MAR", "APR", "MAY", "JUN",
					   "JUL", "AUG", "SEP", "OCT", "NOV", "DEC" };
static const char *const dow_names[] = { "SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN" };

enum { F_SEC, F_MIN, F_HOUR, F_DOM, F_MON, F_DOW };

static const field_def fields[] = {
	[F_SEC] = { "second", 0, 59, NULL },
	[F_MIN] = { "minute", 0, 59, NULL },
	[F_HOUR] = { "hour", 0, 23, NULL },
	[F_DOM] = { "day-of-month", 1, 31, NULL },
	[F_MON] = { "month", 1, 12, month_names },
	[F_DOW] = { "day-of-week", 0, 7, dow_names },
};

static const struct {
	const char *name, *expr;
} macros[] = {
	{ "@yearly", "0 0 1 1 *" }, { "@annually", "0 0 1 1 *" }, { "@monthly", "0 0 1 * *" },
	{ "@weekly", "0 0 * * 0" }, { "@daily", "0 0 * * *" },    { "@midnight", "0 0 * * *" },
	{ "@hourly", "0 * * * *" },
};

static int bad(char *why, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad(char *why, size_t len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, len, fmt, ap);
	va_end(ap);
	return -1;
}

/* read_value reads a number or (where the field has them) a three-letter name at *p. */
static int read_value(const field_def *f, const char **p, int *v, char *why, size_t len)
{
	const char *s = *p;
	if (isdigit((unsigned char)*s)) {
		long n = 0;
		while (isdigit((unsigned char)*s)) {
			n = n * 10 + (*s++ - '0');
			if (n > 1000000)
				break;
		}
		if (n < f->lo || n > f->hi)
			return bad(why, len, "%s: %ld is out of range %d-%d", f->name, n, f->lo, f->hi);
		*v = (int)n;
		*p = s;
		return 0;
	}
	if (f->names != NULL && isalpha((unsigned char)*s)) {
		char w[4] = { 0 };
		int n = 0;
		while (isalpha((unsigned char)s[n]) && n < 4)
			n++;
		if (n == 3) {
			for (int i = 0; i < 3; i++)
				w[i] = (char)toupper((unsigned char)s[i]);
			for (int i = 0; i <= f->hi - f->lo; i++) {
				if (strcmp(w, f->names[i]) == 0) {
					*v = f->lo + i;
					*p = s + 3;
					return 0;
				}
			}
		}
		return bad(why, len, "%s: unknown name '%.*s'", f->name, n, s);
	}
	if (*s == '\0')
		return bad(why, len, "%s: a value is missing", f->name);
	return bad(why, len, "%s: unexpected '%c'", f->name, *s);
}

/* parse_part reads one element of a list (`*`, `a`, `a-b`, each with an optional `/step`) from
 * [*p, end) and sets its bits in *bits. */
static int parse_part(const field_def *f, const char *s, const char *end, uint64_t *bits, char *why,
		      size_t len)
{
	int lo = f->lo, hi = f->hi, step = 1;
	bool range = false;
	if (s == end)
		return bad(why, len, "%s: empty list element", f->name);
	if (*s == '*') {
		s++;
		range = true;
	} else {
		if (read_value(f, &s, &lo, why, len) != 0)
			return -1;
		hi = lo;
		if (s < end && *s == '-') {
			s++;
			if (read_value(f, &s, &hi, why, len) != 0)
				return -1;
			if (hi < lo)
				return bad(why, len, "%s: range %d-%d runs backwards", f->name, lo, hi);
			range = true;
		}
	}
	if (s < end && *s == '/') {
		long n = 0;
		s++;
		if (s == end || !isdigit((unsigned char)*s))
			return bad(why, len, "%s: a step needs a number after '/'", f->name);
		while (s < end && isdigit((unsigned char)*s) && n <= 1000)
			n = n * 10 + (*s++ - '0');
		if (n < 1 || n > f->hi - f->lo + 1)
			return bad(why, len, "%s: step %ld is out of range 1-%d", f->name, n, f->hi - f->lo + 1);
		step = (int)n;
		if (!range)
			hi = f->hi; /* a/n: from a to the field's end */
	}
	if (s != end)
		return bad(why, len, "%s: unexpected '%c'", f->name, *s);
	for (int v = lo; v <= hi; v += step)
		*bits |= UINT64_C(1) << v;
	return 0;
}

/* parse_field reads one whitespace-free field [s, end). */
static int parse_field(const field_def *f, const char *s, const char *end, uint64_t *bits, char *why,
		       size_t len)
{
	*bits = 0;
	while (s <= end) {
		const char *comma = memchr(s, ',', (size_t)(end - s));
		const char *stop = comma ? comma : end;
		if (parse_part(f, s, stop, bits, why, len) != 0)
			return -1;
		s = stop + 1;
		if (comma == NULL)
			break;
	}
	return 0;
}

static const char *expand_macro(const char *expr, char *why, size_t len)
{
	if (expr[0] != '@')
		return expr;
	for (size_t i = 0; i < sizeof(macros) / sizeof(macros[0]); i++) {
		if (strcmp(expr, macros[i].name) == 0)
			return macros[i].expr;
	}
	bad(why, len, "unknown macro '%.32s' (@yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly)",
	    expr);
	return NULL;
}

/* split cuts expr into at most 7 whitespace-separated fields; returns how many there were. */
static int split(const char *expr, const char *start[7], const char *end[7])
{
	int n = 0;
	const char *p = expr;
	for (;;) {
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '\0')
			return n;
		if (n == 7)
			return n + 1;
		start[n] = p;
		while (*p != '\0' && *p != ' ' && *p != '\t')
			p++;
		end[n++] = p;
	}
}

static bool can_ever_run(const jq_cron *c)
{
	jq_cron_time from = { .year = 2000, .mon = 1, .day = 1 }, t;
	/* Every day-of-month / month combination recurs within 2000..2008 (2000 is a leap year). */
	return jq_cron_next(c, &from, &t);
}

int jq_cron_parse(const char *expr, jq_cron *out, char *why, size_t why_len)
{
	const char *start[7], *end[7];
	uint64_t bits[6];

	memset(out, 0, sizeof(*out));
	if (expr == NULL || expr[0] == '\0')
		return bad(why, why_len, "an expression is required");
	if (strlen(expr) > JQ_CRON_MAX_LEN)
		return bad(why, why_len, "longer than %d bytes", JQ_CRON_MAX_LEN);
	for (const unsigned char *p = (const unsigned char *)expr; *p; p++) {
		if (*p < 0x20 || *p >= 0x7F) {
			if (*p != '\t')
				return bad(why, why_len, "only printable ASCII is allowed");
		}
	}
	if ((expr = expand_macro(expr, why, why_len)) == NULL)
		return -1;
	int n = split(expr, start, end);
	if (n != 5 && n != 6)
		return bad(why, why_len,
			   "%d fields; expected 5 (minute hour day-of-month month day-of-week) or 6 (second first)",
			   n > 7 ? 7 : n);
	int first = n == 6 ? F_SEC : F_MIN;
	bits[F_SEC] = 1;
	for (int i = 0; i < n; i++) {
		if (parse_field(&fields[first + i], start[i], end[i], &bits[first + i], why, why_len) != 0)
			return -1;
	}
	out->seconds = n == 6;
	out->sec = bits[F_SEC];
	out->min = bits[F_MIN];
	out->hour = (uint32_t)bits[F_HOUR];
	out->dom = (uint32_t)bits[F_DOM];
	out->mon = (uint16_t)bits[F_MON];
	/* 7 is Sunday too */
	out->dow = (uint8_t)((bits[F_DOW] | (bits[F_DOW] >> 7)) & 0x7F);
	out->dom_star = *start[F_DOM - first] == '*';
	out->dow_star = *start[F_DOW - first] == '*';
	if (!can_ever_run(out))
		return bad(why, why_len, "the expression never matches a date (day-of-month and month never meet)");
	return 0;
}

int jq_cron_days_in_month(int year, int mon)
{
	static const int days[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
	return mon == 2 && leap ? 29 : days[mon - 1];
}

/* days_from_civil: days since 1970-01-01 of a proleptic Gregorian date. */
static int64_t days_from_civil(int y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

int jq_cron_weekday(int year, int mon, int day)
{
	int64_t z = days_from_civil(year, mon, day);
	return (int)(((z % 7) + 7 + 4) % 7); /* 1970-01-01 was a Thursday */
}

int64_t jq_cron_time_to_seconds(const jq_cron_time *t)
{
	return days_from_civil(t->year, t->mon, t->day) * 86400 + t->hour * 3600 + t->min * 60 + t->sec;
}

void jq_cron_time_from_seconds(int64_t s, jq_cron_time *t)
{
	int64_t z = s >= 0 ? s / 86400 : (s - 86399) / 86400;
	int64_t secs = s - z * 86400;
	z += 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	int64_t doe = z - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int64_t mp = (5 * doy + 2) / 153;
	int d = (int)(doy - (153 * mp + 2) / 5 + 1);
	int m = (int)(mp < 10 ? mp + 3 : mp - 9);
	t->year = (int)(yoe + era * 400 + (m <= 2));
	t->mon = m;
	t->day = d;
	t->hour = (int)(secs / 3600);
	t->min = (int)(secs / 60 % 60);
	t->sec = (int)(secs % 60);
}

static bool day_matches(const jq_cron *c, int year, int mon, int day)
{
	bool dom = (c->dom >> day) & 1;
	bool dow = (c->dow >> jq_cron_weekday(year, mon, day)) & 1;
	if (c->dom_star || c->dow_star)
		return dom && dow;
	return dom || dow;
}

bool jq_cron_matches(const jq_cron *c, const jq_cron_time *t)
{
	return ((c->mon >> t->mon) & 1) && day_matches(c, t->year, t->mon, t->day) &&
	       ((c->hour >> t->hour) & 1) && ((c->min >> t->min) & 1) && ((c->sec >> t->sec) & 1);
}

/* first_bit: the lowest set bit of bits at or above from, or -1 when none is below limit. */
static int first_bit(uint64_t bits, int from, int limit)
{
	for (int i = from; i < limit; i++) {
		if ((bits >> i) & 1)
			return i;
	}
	return -1;
}

/* next_day moves t to the start of the following day. */
static void next_day(jq_cron_time *t)
{
	t->hour = t->min = t->sec = 0;
	if (++t->day > jq_cron_days_in_month(t->year, t->mon)) {
		t->day = 1;
		if (++t->mon > 12) {
			t->mon = 1;
			t->year++;
		}
	}
}

/* time_in_day: the first matching time of day at or after t's, within t's day; false when none. */
static bool time_in_day(const jq_cron *c, jq_cron_time *t)
{
	for (int h = first_bit(c->hour, t->hour, 24); h >= 0; h = first_bit(c->hour, h + 1, 24)) {
		int m0 = h == t->hour ? t->min : 0;
		for (int m = first_bit(c->min, m0, 60); m >= 0; m = first_bit(c->min, m + 1, 60)) {
			int s0 = h == t->hour && m == t->min ? t->sec : 0;
			int s = first_bit(c->sec, s0, 60);
			if (s >= 0) {
				t->hour = h;
				t->min = m;
				t->sec = s;
				return true;
			}
		}
	}
	return false;
}

bool jq_cron_next(const jq_cron *c, const jq_cron_time *after, jq_cron_time *out)
{
	jq_cron_time t;
	jq_cron_time_from_seconds(jq_cron_time_to_seconds(after) + 1, &t);
	int last_year = after->year + SEARCH_YEARS;
	if (last_year > 9999)
		last_year = 9999;
	while (t.year <= last_year) {
		if (!((c->mon >> t.mon) & 1)) {
			t.day = jq_cron_days_in_month(t.year, t.mon);
			next_day(&t);
			continue;
		}
		if (day_matches(c, t.year, t.mon, t.day) && time_in_day(c, &t)) {
			*out = t;
			return true;
		}
		next_day(&t);
	}
	return false;
}
