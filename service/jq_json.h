/*
 * jq_json — a small strict JSON reader and a JSON writer, for the console's API (jq_api).
 *
 * The reader takes RFC 8259 JSON and nothing else: no comments, no trailing commas, no
 * duplicate keys in an object, strings of well-formed UTF-8 (escapes included: a lone surrogate
 * is refused), at most JQ_JSON_MAX_DEPTH levels of nesting and JQ_JSON_MAX_NODES values, and
 * nothing but white space after the value. A number is kept as an int64 when it is an integer
 * that fits (no fraction, no exponent); any other number is read but is_int is false. Every
 * value and string of a document lives in the jq_json_doc (freed at once by jq_json_free).
 *
 * The writer (jq_jbuf) appends to a growing buffer; a failed allocation is remembered (oom) and
 * later appends do nothing, so a caller checks once at the end. Strings are written with every
 * byte that HTML or a script could read as markup escaped (<, >, &, ', U+2028, U+2029 and the
 * control characters), and bytes that are not UTF-8 as U+FFFD: the output is valid JSON, safe
 * to embed anywhere.
 */
#ifndef JQ_JSON_H
#define JQ_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JQ_JSON_MAX_DEPTH 16
#define JQ_JSON_MAX_NODES 100000

typedef enum jq_json_type {
	JQ_JSON_NULL,
	JQ_JSON_BOOL,
	JQ_JSON_NUMBER,
	JQ_JSON_STRING,
	JQ_JSON_ARRAY,
	JQ_JSON_OBJECT,
} jq_json_type;

typedef struct jq_json jq_json;

struct jq_json {
	jq_json_type type;
	const char *key;  /* a member of an object: its name (NUL-terminated, may hold a NUL) */
	size_t key_len;
	bool b;           /* BOOL */
	bool is_int;      /* NUMBER: an integer within int64 */
	int64_t i;        /* NUMBER when is_int */
	const char *s;    /* STRING: decoded, NUL-terminated (may hold a NUL: see len) */
	size_t len;       /* STRING: bytes; ARRAY, OBJECT: members */
	jq_json *first;   /* ARRAY, OBJECT: first member */
	jq_json *next;    /* the next member of the parent */
};

typedef struct jq_json_doc jq_json_doc;

/* jq_json_parse reads text[0..len). Returns 0 and *out (free with jq_json_free), or -1 with a
 * one-line reason naming the byte offset in err (nothing to free). */
int jq_json_parse(const char *text, size_t len, jq_json_doc **out, char *err, size_t err_len)
	__attribute__((warn_unused_result));

const jq_json *jq_json_root(const jq_json_doc *doc);

/* jq_json_get: the member named key of an object, or NULL (also when v is not an object). */
const jq_json *jq_json_get(const jq_json *v, const char *key);

/* jq_json_cstr: a STRING's text when it holds no NUL byte (usable as a C string), else NULL. */
const char *jq_json_cstr(const jq_json *v);

void jq_json_free(jq_json_doc *doc);

/* ---- writer ---- */

typedef struct jq_jbuf {
	char *p;    /* NUL-terminated while not oom; owned: free() it */
	size_t len;
	size_t cap;
	bool oom;
} jq_jbuf;

void jq_jbuf_raw(jq_jbuf *b, const char *s);
void jq_jbuf_printf(jq_jbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* jq_jbuf_str writes s[0..len) as a quoted, escaped JSON string. */
void jq_jbuf_str(jq_jbuf *b, const char *s, size_t len);
void jq_jbuf_cstr(jq_jbuf *b, const char *s); /* NULL as "" */
/* jq_jbuf_base64 writes data[0..len) as a quoted standard base64 string (with padding). */
void jq_jbuf_base64(jq_jbuf *b, const uint8_t *data, size_t len);

/* jq_base64_decode decodes standard base64 (padding required, no white space) into a new
 * buffer (*out, owned, at least 1 byte; *out_len). Returns 0, -1 on bad input (nothing
 * allocated), -2 out of memory. */
int jq_base64_decode(const char *s, size_t len, uint8_t **out, size_t *out_len);

#endif
