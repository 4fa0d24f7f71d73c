/*
 * jq_pgbin — PostgreSQL's binary wire format, for parameters and results.
 *
 * jobqd sends batches as one-dimensional arrays in binary format (no escaping of payloads, one
 * statement per batch) and reads results in binary (no hex decoding of bytea). An array builder
 * owns its buffer: jq_pgbin_array_free releases it; data/len stay valid until then.
 */
#ifndef JQ_PGBIN_H
#define JQ_PGBIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

/* Type OIDs of the element types jobq sends (from pg_type.h, stable across versions). */
#define JQ_OID_BOOL 16
#define JQ_OID_BYTEA 17
#define JQ_OID_INT8 20
#define JQ_OID_INT2 21
#define JQ_OID_INT4 23
#define JQ_OID_TEXT 25
#define JQ_OID_TIMESTAMPTZ 1184

/* Microseconds between the Unix epoch and PostgreSQL's (2000-01-01). */
#define JQ_PG_EPOCH_US INT64_C(946684800000000)

typedef struct jq_pgbin_array {
	char *data;
	size_t len, cap;
	int32_t count;
	uint32_t elem_oid;
	bool has_null;
	bool failed; /* an allocation failed; finish reports it */
} jq_pgbin_array;

/* jq_pgbin_array_init starts an empty array of elements of type elem_oid. */
void jq_pgbin_array_init(jq_pgbin_array *a, uint32_t elem_oid);

/* Append one element: raw bytes (len < 0 means SQL NULL), or a typed value. */
void jq_pgbin_array_add(jq_pgbin_array *a, const void *p, int32_t len);
void jq_pgbin_array_add_null(jq_pgbin_array *a);
void jq_pgbin_array_add_i64(jq_pgbin_array *a, int64_t v);
void jq_pgbin_array_add_i32(jq_pgbin_array *a, int32_t v);
void jq_pgbin_array_add_i16(jq_pgbin_array *a, int16_t v);
void jq_pgbin_array_add_bool(jq_pgbin_array *a, bool v);
void jq_pgbin_array_add_text(jq_pgbin_array *a, const char *s);
/* A timestamp given as Unix microseconds. */
void jq_pgbin_array_add_ts(jq_pgbin_array *a, int64_t unix_us);

/* jq_pgbin_array_finish writes the array header; returns 0, or -1 if memory ran out. After it
 * a->data/a->len are the parameter value. */
int jq_pgbin_array_finish(jq_pgbin_array *a) __attribute__((warn_unused_result));

void jq_pgbin_array_free(jq_pgbin_array *a);

/* Readers of binary result values (PQgetvalue of a result fetched with resultFormat 1).
 * A NULL value reads as 0 / false / ""; check PQgetisnull where NULL means something. */
int64_t jq_pgbin_i64(const PGresult *r, int row, int col);
int32_t jq_pgbin_i32(const PGresult *r, int row, int col);
int16_t jq_pgbin_i16(const PGresult *r, int row, int col);
bool jq_pgbin_bool(const PGresult *r, int row, int col);
double jq_pgbin_f64(const PGresult *r, int row, int col);
/* A timestamptz as Unix milliseconds (0 for NULL). */
int64_t jq_pgbin_ts_ms(const PGresult *r, int row, int col);

/* Big-endian encoders for scalar parameters sent in binary. */
void jq_pgbin_put_i64(char out[8], int64_t v);
void jq_pgbin_put_i32(char out[4], int32_t v);

#endif
