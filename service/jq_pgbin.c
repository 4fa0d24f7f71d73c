#include "jq_pgbin.h"

#include <stdlib.h>
#include <string.h>

/* Header of a one-dimensional array: ndim, has-null flag, element oid, length, lower bound. */
#define ARRAY_HEADER 20

static uint32_t rd32(const char *p)
{
	const unsigned char *u = (const unsigned char *)p;
	return (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 | u[3];
}

static uint64_t rd64(const char *p)
{
	return (uint64_t)rd32(p) << 32 | rd32(p + 4);
}

void jq_pgbin_put_i32(char out[4], int32_t v)
{
	uint32_t u = (uint32_t)v;
	out[0] = (char)(u >> 24);
	out[1] = (char)(u >> 16);
	out[2] = (char)(u >> 8);
	out[3] = (char)u;
}

void jq_pgbin_put_i64(char out[8], int64_t v)
{
	uint64_t u = (uint64_t)v;
	jq_pgbin_put_i32(out, (int32_t)(uint32_t)(u >> 32));
	jq_pgbin_put_i32(out + 4, (int32_t)(uint32_t)u);
}

void jq_pgbin_array_init(jq_pgbin_array *a, uint32_t elem_oid)
{
	memset(a, 0, sizeof(*a));
	a->elem_oid = elem_oid;
	a->len = ARRAY_HEADER;
}

static int reserve(jq_pgbin_array *a, size_t more)
{
	if (a->failed)
		return -1;
	if (a->len + more <= a->cap)
		return 0;
	size_t cap = a->cap ? a->cap : 256;
	while (cap < a->len + more)
		cap *= 2;
	char *p = realloc(a->data, cap);
	if (p == NULL) {
		a->failed = true;
		return -1;
	}
	a->data = p;
	a->cap = cap;
	return 0;
}

void jq_pgbin_array_add(jq_pgbin_array *a, const void *p, int32_t len)
{
	if (len < 0) {
		jq_pgbin_array_add_null(a);
		return;
	}
	if (reserve(a, 4 + (size_t)len) != 0)
		return;
	jq_pgbin_put_i32(a->data + a->len, len);
	if (len > 0)
		memcpy(a->data + a->len + 4, p, (size_t)len);
	a->len += 4 + (size_t)len;
	a->count++;
}

void jq_pgbin_array_add_null(jq_pgbin_array *a)
{
	if (reserve(a, 4) != 0)
		return;
	jq_pgbin_put_i32(a->data + a->len, -1);
	a->len += 4;
	a->count++;
	a->has_null = true;
}

void jq_pgbin_array_add_i64(jq_pgbin_array *a, int64_t v)
{
	char b[8];
	jq_pgbin_put_i64(b, v);
	jq_pgbin_array_add(a, b, 8);
}

void jq_pgbin_array_add_i32(jq_pgbin_array *a, int32_t v)
{
	char b[4];
	jq_pgbin_put_i32(b, v);
	jq_pgbin_array_add(a, b, 4);
}

void jq_pgbin_array_add_i16(jq_pgbin_array *a, int16_t v)
{
	char b[2] = { (char)((uint16_t)v >> 8), (char)v };
	jq_pgbin_array_add(a, b, 2);
}

void jq_pgbin_array_add_bool(jq_pgbin_array *a, bool v)
{
	char b = v ? 1 : 0;
	jq_pgbin_array_add(a, &b, 1);
}

void jq_pgbin_array_add_text(jq_pgbin_array *a, const char *s)
{
	if (s == NULL) {
		jq_pgbin_array_add_null(a);
		return;
	}
	jq_pgbin_array_add(a, s, (int32_t)strlen(s));
}

void jq_pgbin_array_add_ts(jq_pgbin_array *a, int64_t unix_us)
{
	jq_pgbin_array_add_i64(a, unix_us - JQ_PG_EPOCH_US);
}

int jq_pgbin_array_finish(jq_pgbin_array *a)
{
	if (reserve(a, 0) != 0 || (a->data == NULL && reserve(a, ARRAY_HEADER) != 0))
		return -1;
	/* An empty array is written as zero dimensions: PostgreSQL rejects a 1-D array of length 0. */
	jq_pgbin_put_i32(a->data, a->count > 0 ? 1 : 0);
	jq_pgbin_put_i32(a->data + 4, a->has_null ? 1 : 0);
	jq_pgbin_put_i32(a->data + 8, (int32_t)a->elem_oid);
	if (a->count == 0) {
		a->len = 12;
		return 0;
	}
	jq_pgbin_put_i32(a->data + 12, a->count);
	jq_pgbin_put_i32(a->data + 16, 1);
	return 0;
}

void jq_pgbin_array_free(jq_pgbin_array *a)
{
	free(a->data);
	memset(a, 0, sizeof(*a));
}

static const char *value(const PGresult *r, int row, int col, int want)
{
	if (PQgetisnull(r, row, col) || PQgetlength(r, row, col) != want)
		return NULL;
	return PQgetvalue(r, row, col);
}

int64_t jq_pgbin_i64(const PGresult *r, int row, int col)
{
	const char *v = value(r, row, col, 8);
	return v ? (int64_t)rd64(v) : 0;
}

int32_t jq_pgbin_i32(const PGresult *r, int row, int col)
{
	const char *v = value(r, row, col, 4);
	return v ? (int32_t)rd32(v) : 0;
}

int16_t jq_pgbin_i16(const PGresult *r, int row, int col)
{
	const char *v = value(r, row, col, 2);
	if (v == NULL)
		return 0;
	return (int16_t)((uint16_t)(unsigned char)v[0] << 8 | (unsigned char)v[1]);
}

bool jq_pgbin_bool(const PGresult *r, int row, int col)
{
	const char *v = value(r, row, col, 1);
	return v != NULL && v[0] != 0;
}

double jq_pgbin_f64(const PGresult *r, int row, int col)
{
	const char *v = value(r, row, col, 8);
	if (v == NULL)
		return 0;
	uint64_t u = rd64(v);
	double d;
	memcpy(&d, &u, sizeof(d));
	return d;
}

int64_t jq_pgbin_ts_ms(const PGresult *r, int row, int col)
{
	const char *v = value(r, row, col, 8);
	if (v == NULL)
		return 0;
	int64_t us = (int64_t)rd64(v) + JQ_PG_EPOCH_US;
	/* Floor division keeps times before 1970 consistent (never used, but never wrong). */
	return us >= 0 ? us / 1000 : -((-us + 999) / 1000);
}
