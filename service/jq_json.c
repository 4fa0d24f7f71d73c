/*
 * jq_json — see jq_json.h.
 *
 * The reader is a recursive descent over the text, bounded by JQ_JSON_MAX_DEPTH (so the stack
 * is too). Values are allocated one by one and chained on the document for jq_json_free; a
 * string is decoded into its own buffer.
 */
#include "jq_json.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jq_validate.h"

typedef struct node {
	jq_json v;
	struct node *all; /* every node of the document, for freeing */
	char *owned;      /* the decoded string, when this node has one */
	char *owned_key;
} node;

struct jq_json_doc {
	node *all;
	size_t nodes;
	jq_json *root;
};

typedef struct parser {
	const char *p, *start, *end;
	jq_json_doc *doc;
	char *err;
	size_t err_len;
	bool oom;
} parser;

static int fail(parser *ps, const char *what)
{
	if (ps->err_len > 0)
		snprintf(ps->err, ps->err_len, "invalid JSON at byte %zu: %s", (size_t)(ps->p - ps->start), what);
	return -1;
}

static void skip_ws(parser *ps)
{
	while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
		ps->p++;
}

static node *new_node(parser *ps, jq_json_type t)
{
	if (ps->doc->nodes >= JQ_JSON_MAX_NODES) {
		fail(ps, "too many values");
		return NULL;
	}
	node *n = calloc(1, sizeof(*n));
	if (n == NULL) {
		fail(ps, "out of memory");
		return NULL;
	}
	n->v.type = t;
	n->all = ps->doc->all;
	ps->doc->all = n;
	ps->doc->nodes++;
	return n;
}

static int hex4(parser *ps, unsigned *out)
{
	unsigned v = 0;
	if (ps->end - ps->p < 4)
		return fail(ps, "short \\u escape");
	for (int i = 0; i < 4; i++) {
		char c = *ps->p++;
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
		else
			return fail(ps, "bad hex digit in \\u escape");
	}
	*out = v;
	return 0;
}

static size_t put_utf8(char *o, unsigned cp)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xC0 | (cp >> 6));
		o[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (char)(0xE0 | (cp >> 12));
		o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		o[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	o[0] = (char)(0xF0 | (cp >> 18));
	o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
	o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
	o[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

/* escape decodes one escape (after the backslash) into o; returns bytes written or -1. */
static int escape(parser *ps, char *o)
{
	if (ps->p >= ps->end)
		return fail(ps, "unterminated escape");
	char c = *ps->p++;
	switch (c) {
	case '"': case '\\': case '/':
		o[0] = c;
		return 1;
	case 'b': o[0] = '\b'; return 1;
	case 'f': o[0] = '\f'; return 1;
	case 'n': o[0] = '\n'; return 1;
	case 'r': o[0] = '\r'; return 1;
	case 't': o[0] = '\t'; return 1;
	case 'u': break;
	default:
		return fail(ps, "unknown escape");
	}
	unsigned cp, lo;
	if (hex4(ps, &cp) != 0)
		return -1;
	if (cp >= 0xDC00 && cp <= 0xDFFF)
		return fail(ps, "lone low surrogate");
	if (cp >= 0xD800 && cp <= 0xDBFF) {
		if (ps->end - ps->p < 2 || ps->p[0] != '\\' || ps->p[1] != 'u')
			return fail(ps, "lone high surrogate");
		ps->p += 2;
		if (hex4(ps, &lo) != 0)
			return -1;
		if (lo < 0xDC00 || lo > 0xDFFF)
			return fail(ps, "high surrogate without a low one");
		cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
	}
	return (int)put_utf8(o, cp);
}

/* string reads a string (ps->p after the opening quote) into a new buffer. */
static int string(parser *ps, char **out, size_t *out_len)
{
	const char *q = ps->p;
	/* The decoded text is never longer than the raw one. */
	while (q < ps->end && *q != '"') {
		if (*q == '\\')
			q++;
		q++;
	}
	if (q >= ps->end)
		return fail(ps, "unterminated string");
	char *buf = malloc((size_t)(q - ps->p) + 1);
	if (buf == NULL)
		return fail(ps, "out of memory");
	size_t n = 0;
	while (*ps->p != '"') {
		unsigned char c = (unsigned char)*ps->p;
		if (c < 0x20) {
			free(buf);
			return fail(ps, "control character in string");
		}
		if (c == '\\') {
			ps->p++;
			int k = escape(ps, buf + n);
			if (k < 0) {
				free(buf);
				return -1;
			}
			n += (size_t)k;
			continue;
		}
		buf[n++] = (char)c;
		ps->p++;
	}
	ps->p++;
	buf[n] = '\0';
	if (!jq_validate_utf8(buf, n)) {
		free(buf);
		return fail(ps, "string is not UTF-8");
	}
	*out = buf;
	*out_len = n;
	return 0;
}

static int number(parser *ps, node *n)
{
	const char *s = ps->p;
	bool integer = true;
	if (ps->p < ps->end && *ps->p == '-')
		ps->p++;
	if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9')
		return fail(ps, "bad number");
	if (*ps->p == '0')
		ps->p++;
	else
		while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9')
			ps->p++;
	if (ps->p < ps->end && *ps->p == '.') {
		integer = false;
		ps->p++;
		if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9')
			return fail(ps, "bad fraction");
		while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9')
			ps->p++;
	}
	if (ps->p < ps->end && (*ps->p == 'e' || *ps->p == 'E')) {
		integer = false;
		ps->p++;
		if (ps->p < ps->end && (*ps->p == '+' || *ps->p == '-'))
			ps->p++;
		if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9')
			return fail(ps, "bad exponent");
		while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9')
			ps->p++;
	}
	if (!integer)
		return 0;
	char tmp[32];
	size_t len = (size_t)(ps->p - s);
	if (len >= sizeof(tmp))
		return 0; /* too many digits for an int64 */
	memcpy(tmp, s, len);
	tmp[len] = '\0';
	errno = 0;
	long long v = strtoll(tmp, NULL, 10);
	if (errno == 0) {
		n->v.is_int = true;
		n->v.i = v;
	}
	return 0;
}

static int literal(parser *ps, const char *word)
{
	size_t len = strlen(word);
	if ((size_t)(ps->end - ps->p) < len || memcmp(ps->p, word, len) != 0)
		return fail(ps, "unexpected character");
	ps->p += len;
	return 0;
}

static int value(parser *ps, int depth, node **out);

static bool duplicate_key(const node *obj, const char *key, size_t len)
{
	for (const jq_json *m = obj->v.first; m != NULL; m = m->next) {
		if (m->key_len == len && memcmp(m->key, key, len) == 0)
			return true;
	}
	return false;
}

static int members(parser *ps, int depth, node *n, bool object)
{
	jq_json **tail = &n->v.first;
	char close = object ? '}' : ']';
	skip_ws(ps);
	if (ps->p < ps->end && *ps->p == close) {
		ps->p++;
		return 0;
	}
	for (;;) {
		char *key = NULL;
		size_t key_len = 0;
		node *m;
		skip_ws(ps);
		if (object) {
			if (ps->p >= ps->end || *ps->p != '"')
				return fail(ps, "expected a member name");
			ps->p++;
			if (string(ps, &key, &key_len) != 0)
				return -1;
			if (duplicate_key(n, key, key_len)) {
				free(key);
				return fail(ps, "duplicate member name");
			}
			skip_ws(ps);
			if (ps->p >= ps->end || *ps->p != ':') {
				free(key);
				return fail(ps, "expected ':'");
			}
			ps->p++;
		}
		if (value(ps, depth + 1, &m) != 0) {
			free(key);
			return -1;
		}
		m->owned_key = key;
		m->v.key = key;
		m->v.key_len = key_len;
		*tail = &m->v;
		tail = &m->v.next;
		n->v.len++;
		skip_ws(ps);
		if (ps->p < ps->end && *ps->p == ',') {
			ps->p++;
			continue;
		}
		if (ps->p < ps->end && *ps->p == close) {
			ps->p++;
			return 0;
		}
		return fail(ps, object ? "expected ',' or '}'" : "expected ',' or ']'");
	}
}

static int value(parser *ps, int depth, node **out)
{
	if (depth > JQ_JSON_MAX_DEPTH)
		return fail(ps, "nested too deeply");
	skip_ws(ps);
	if (ps->p >= ps->end)
		return fail(ps, "expected a value");
	char c = *ps->p;
	node *n;
	switch (c) {
	case '{':
	case '[':
		if ((n = new_node(ps, c == '{' ? JQ_JSON_OBJECT : JQ_JSON_ARRAY)) == NULL)
			return -1;
		ps->p++;
		*out = n;
		return members(ps, depth, n, c == '{');
	case '"':
		if ((n = new_node(ps, JQ_JSON_STRING)) == NULL)
			return -1;
		ps->p++;
		*out = n;
		if (string(ps, &n->owned, &n->v.len) != 0)
			return -1;
		n->v.s = n->owned;
		return 0;
	case 't':
	case 'f':
		if ((n = new_node(ps, JQ_JSON_BOOL)) == NULL)
			return -1;
		*out = n;
		n->v.b = c == 't';
		return literal(ps, c == 't' ? "true" : "false");
	case 'n':
		if ((n = new_node(ps, JQ_JSON_NULL)) == NULL)
			return -1;
		*out = n;
		return literal(ps, "null");
	default:
		if (c != '-' && (c < '0' || c > '9'))
			return fail(ps, "unexpected character");
		if ((n = new_node(ps, JQ_JSON_NUMBER)) == NULL)
			return -1;
		*out = n;
		return number(ps, n);
	}
}

int jq_json_parse(const char *text, size_t len, jq_json_doc **out, char *err, size_t err_len)
{
	*out = NULL;
	jq_json_doc *doc = calloc(1, sizeof(*doc));
	if (doc == NULL) {
		snprintf(err, err_len, "out of memory");
		return -1;
	}
	parser ps = { .p = text, .start = text, .end = text + len, .doc = doc, .err = err, .err_len = err_len };
	node *root = NULL;
	if (value(&ps, 1, &root) != 0)
		goto fail;
	skip_ws(&ps);
	if (ps.p != ps.end) {
		fail(&ps, "text after the value");
		goto fail;
	}
	doc->root = &root->v;
	*out = doc;
	return 0;
fail:
	jq_json_free(doc);
	return -1;
}

const jq_json *jq_json_root(const jq_json_doc *doc)
{
	return doc->root;
}

const jq_json *jq_json_get(const jq_json *v, const char *key)
{
	if (v == NULL || v->type != JQ_JSON_OBJECT)
		return NULL;
	size_t len = strlen(key);
	for (const jq_json *m = v->first; m != NULL; m = m->next) {
		if (m->key_len == len && memcmp(m->key, key, len) == 0)
			return m;
	}
	return NULL;
}

const char *jq_json_cstr(const jq_json *v)
{
	if (v == NULL || v->type != JQ_JSON_STRING || strlen(v->s) != v->len)
		return NULL;
	return v->s;
}

void jq_json_free(jq_json_doc *doc)
{
	if (doc == NULL)
		return;
	node *n = doc->all;
	while (n != NULL) {
		node *next = n->all;
		free(n->owned);
		free(n->owned_key);
		free(n);
		n = next;
	}
	free(doc);
}

/* ---- writer ---- */

static bool reserve(jq_jbuf *b, size_t more)
{
	if (b->oom)
		return false;
	if (b->len + more + 1 <= b->cap)
		return true;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->len + more + 1) {
		if (cap > SIZE_MAX / 2) {
			b->oom = true;
			return false;
		}
		cap *= 2;
	}
	char *p = realloc(b->p, cap);
	if (p == NULL) {
		b->oom = true;
		return false;
	}
	b->p = p;
	b->cap = cap;
	return true;
}

static void put(jq_jbuf *b, const char *s, size_t n)
{
	if (!reserve(b, n))
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

void jq_jbuf_raw(jq_jbuf *b, const char *s)
{
	put(b, s, strlen(s));
}

void jq_jbuf_printf(jq_jbuf *b, const char *fmt, ...)
{
	char tmp[128];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(tmp)) {
		b->oom = true; /* only short numbers go through here */
		return;
	}
	put(b, tmp, (size_t)n);
}

/* utf8_len: bytes of the well-formed UTF-8 character at s (at most n bytes), or 0 if none. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	size_t k = s[0] < 0x80 ? 1 : (s[0] & 0xE0) == 0xC0 ? 2 : (s[0] & 0xF0) == 0xE0 ? 3
		 : (s[0] & 0xF8) == 0xF0 ? 4 : 0;
	if (k == 0 || k > n)
		return 0;
	return jq_validate_utf8((const char *)s, k) ? k : 0;
}

void jq_jbuf_str(jq_jbuf *b, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *u = (const unsigned char *)s;
	put(b, "\"", 1);
	for (size_t i = 0; i < len && !b->oom;) {
		unsigned char c = u[i];
		char esc[8];
		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			put(b, esc, 2);
			i++;
		} else if (c < 0x20 || c == '<' || c == '>' || c == '&' || c == '\'' || c == 0x7F) {
			memcpy(esc, "\\u00", 4);
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 0xF];
			put(b, esc, 6);
			i++;
		} else if (c < 0x80) {
			put(b, (const char *)u + i, 1);
			i++;
		} else {
			size_t k = utf8_len(u + i, len - i);
			if (k == 0) {
				put(b, "\\ufffd", 6);
				i++;
			} else if (k == 3 && c == 0xE2 && u[i + 1] == 0x80 && (u[i + 2] == 0xA8 || u[i + 2] == 0xA9)) {
				put(b, u[i + 2] == 0xA8 ? "\\u2028" : "\\u2029", 6);
				i += 3;
			} else {
				put(b, (const char *)u + i, k);
				i += k;
			}
		}
	}
	put(b, "\"", 1);
}

void jq_jbuf_cstr(jq_jbuf *b, const char *s)
{
	jq_jbuf_str(b, s ? s : "", s ? strlen(s) : 0);
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void jq_jbuf_base64(jq_jbuf *b, const uint8_t *data, size_t len)
{
	put(b, "\"", 1);
	if (!reserve(b, (len + 2) / 3 * 4 + 1))
		return;
	char *o = b->p + b->len;
	size_t i = 0;
	for (; i + 3 <= len; i += 3) {
		uint32_t v = (uint32_t)data[i] << 16 | (uint32_t)data[i + 1] << 8 | data[i + 2];
		*o++ = b64[v >> 18];
		*o++ = b64[(v >> 12) & 63];
		*o++ = b64[(v >> 6) & 63];
		*o++ = b64[v & 63];
	}
	if (i < len) {
		uint32_t v = (uint32_t)data[i] << 16 | (i + 1 < len ? (uint32_t)data[i + 1] << 8 : 0);
		*o++ = b64[v >> 18];
		*o++ = b64[(v >> 12) & 63];
		*o++ = i + 1 < len ? b64[(v >> 6) & 63] : '=';
		*o++ = '=';
	}
	b->len = (size_t)(o - b->p);
	b->p[b->len] = '\0';
	put(b, "\"", 1);
}

static int b64_value(char c)
{
	const char *p = c ? strchr(b64, c) : NULL;
	return p ? (int)(p - b64) : -1;
}

int jq_base64_decode(const char *s, size_t len, uint8_t **out, size_t *out_len)
{
	*out = NULL;
	*out_len = 0;
	if (len % 4 != 0)
		return -1;
	size_t pad = len >= 1 && s[len - 1] == '=' ? (len >= 2 && s[len - 2] == '=' ? 2 : 1) : 0;
	uint8_t *buf = malloc(len / 4 * 3 + 1);
	if (buf == NULL)
		return -2;
	size_t n = 0;
	for (size_t i = 0; i < len; i += 4) {
		bool last = i + 4 == len;
		int v[4];
		for (int k = 0; k < 4; k++) {
			bool padded = last && k >= 4 - (int)pad;
			v[k] = padded ? 0 : b64_value(s[i + (size_t)k]);
			if (v[k] < 0) {
				free(buf);
				return -1;
			}
		}
		uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
		/* Bits below the last byte must be zero: one encoding per payload. */
		if (last && ((pad == 1 && (w & 0xFF)) || (pad == 2 && (w & 0xFFFF)))) {
			free(buf);
			return -1;
		}
		buf[n++] = (uint8_t)(w >> 16);
		if (!last || pad < 2)
			buf[n++] = (uint8_t)(w >> 8);
		if (!last || pad < 1)
			buf[n++] = (uint8_t)w;
	}
	*out = buf;
	*out_len = n;
	return 0;
}
