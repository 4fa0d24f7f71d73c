/* jq_json on its own: the reader takes JSON and only JSON (a table of texts each way), within
 * its depth and size bounds; mutated and cut texts never crash it, and whatever it accepts the
 * writer writes back to a text it reads as the same document; the writer leaves nothing raw
 * that HTML could read as markup; base64 round-trips and has one encoding per payload. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "jq_json.h"
#include "jq_validate.h"

static jq_json_doc *parse_ok(const char *text)
{
	jq_json_doc *d = NULL;
	char err[160];
	if (jq_json_parse(text, strlen(text), &d, err, sizeof(err)) != 0)
		fail_msg("refused %s: %s", text, err);
	return d;
}

static void refused(const char *text, size_t len)
{
	jq_json_doc *d = NULL;
	char err[160] = "";
	if (jq_json_parse(text, len, &d, err, sizeof(err)) == 0) {
		jq_json_free(d);
		fail_msg("accepted %.*s", (int)len, text);
	}
	assert_null(d);
	assert_non_null(strstr(err, "invalid JSON at byte"));
}

static void reads_json(void **state)
{
	(void)state;
	jq_json_doc *d = parse_ok(" {\"a\": [1, -2, 3.5, true, false, null, \"x\\u00e9\\ud83d\\ude00\\n\"], \"b\": {}, \"c\": []} ");
	const jq_json *r = jq_json_root(d);
	assert_int_equal(r->type, JQ_JSON_OBJECT);
	assert_int_equal(r->len, 3);
	const jq_json *a = jq_json_get(r, "a");
	assert_int_equal(a->type, JQ_JSON_ARRAY);
	assert_int_equal(a->len, 7);
	const jq_json *v = a->first;
	assert_true(v->is_int);
	assert_int_equal(v->i, 1);
	v = v->next;
	assert_int_equal(v->i, -2);
	v = v->next;
	assert_int_equal(v->type, JQ_JSON_NUMBER);
	assert_false(v->is_int);
	v = v->next;
	assert_true(v->type == JQ_JSON_BOOL && v->b);
	v = v->next;
	assert_true(v->type == JQ_JSON_BOOL && !v->b);
	v = v->next;
	assert_int_equal(v->type, JQ_JSON_NULL);
	v = v->next;
	assert_int_equal(v->type, JQ_JSON_STRING);
	assert_int_equal(v->len, 1 + 2 + 4 + 1);
	assert_memory_equal(v->s, "x\xc3\xa9\xf0\x9f\x98\x80\n", v->len);
	assert_null(v->next);
	assert_int_equal(jq_json_get(r, "b")->len, 0);
	assert_null(jq_json_get(r, "d"));
	assert_null(jq_json_get(a, "a"));
	jq_json_free(d);

	d = parse_ok("[9223372036854775807, -9223372036854775808, 9223372036854775808, -0, 1e2, 0]");
	v = jq_json_root(d)->first;
	assert_true(v->is_int && v->i == INT64_MAX);
	v = v->next;
	assert_true(v->is_int && v->i == INT64_MIN);
	v = v->next;
	assert_false(v->is_int);
	v = v->next;
	assert_true(v->is_int && v->i == 0);
	v = v->next;
	assert_false(v->is_int);
	jq_json_free(d);

	/* A NUL by escape is kept, and then the string is no C string. */
	d = parse_ok("\"a\\u0000b\"");
	assert_int_equal(jq_json_root(d)->len, 3);
	assert_null(jq_json_cstr(jq_json_root(d)));
	jq_json_free(d);
	d = parse_ok("\"ab\"");
	assert_string_equal(jq_json_cstr(jq_json_root(d)), "ab");
	jq_json_free(d);
}

static void refuses_what_is_not_json(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"", " ", "[1,]", "{\"a\":1,}", "[1 2]", "{\"a\" 1}", "{a:1}", "{'a':1}", "// x\n1",
		"/* x */1", "01", "-", "1.", ".5", "1e", "1e+", "+1", "NaN", "Infinity", "nul", "tru",
		"\"abc", "\"\\x\"", "\"\\u12G4\"", "\"\\ud800\"", "\"\\udc00\"", "\"\\ud800\\u0041\"",
		"\"tab\there\"", "\"\xff\"", "\"\xc0\xaf\"", "\"\xed\xa0\x80\"", "{\"a\":1,\"a\":2}",
		"1 2", "[]]", "{}x", "[", "{", "\"\\", "[\"a\"", "{\"a\":}", "{\"a\"}", "[,1]",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		refused(bad[i], strlen(bad[i]));
	refused("\"a\0b\"", 5); /* a raw NUL is a control character */
}

static void bounds_depth_and_size(void **state)
{
	(void)state;
	char deep[2 * JQ_JSON_MAX_DEPTH + 3];
	memset(deep, '[', JQ_JSON_MAX_DEPTH);
	memset(deep + JQ_JSON_MAX_DEPTH, ']', JQ_JSON_MAX_DEPTH);
	deep[2 * JQ_JSON_MAX_DEPTH] = '\0';
	jq_json_free(parse_ok(deep));
	memset(deep, '[', JQ_JSON_MAX_DEPTH + 1);
	memset(deep + JQ_JSON_MAX_DEPTH + 1, ']', JQ_JSON_MAX_DEPTH + 1);
	deep[2 * JQ_JSON_MAX_DEPTH + 2] = '\0';
	refused(deep, strlen(deep));

	/* A million opening brackets stop at the depth bound, not the stack's. */
	size_t n = 1000000;
	char *many = malloc(n);
	assert_non_null(many);
	memset(many, '[', n);
	refused(many, n);
	/* JQ_JSON_MAX_NODES values and no more: [0,0,...] */
	size_t count = JQ_JSON_MAX_NODES; /* the array itself is one value */
	char *arr = malloc(2 * count + 2);
	assert_non_null(arr);
	size_t k = 0;
	arr[k++] = '[';
	for (size_t i = 0; i < count; i++) {
		arr[k++] = '0';
		arr[k++] = ',';
	}
	arr[k - 1] = ']';
	refused(arr, k);
	/* one fewer element fits */
	k = 0;
	arr[k++] = '[';
	for (size_t i = 0; i + 1 < count; i++) {
		arr[k++] = '0';
		arr[k++] = ',';
	}
	arr[k - 1] = ']';
	jq_json_doc *d = NULL;
	char err[160];
	assert_int_equal(jq_json_parse(arr, k, &d, err, sizeof(err)), 0);
	assert_int_equal(jq_json_root(d)->len, count - 1);
	jq_json_free(d);
	free(arr);
	free(many);
}

/* write_value writes v back as JSON with the writer (numbers that are not integers as 0.5: the
 * writer has no float form, and the round trip only compares structure). */
static void write_value(jq_jbuf *b, const jq_json *v)
{
	switch (v->type) {
	case JQ_JSON_NULL: jq_jbuf_raw(b, "null"); break;
	case JQ_JSON_BOOL: jq_jbuf_raw(b, v->b ? "true" : "false"); break;
	case JQ_JSON_NUMBER:
		if (v->is_int)
			jq_jbuf_printf(b, "%lld", (long long)v->i);
		else
			jq_jbuf_raw(b, "0.5");
		break;
	case JQ_JSON_STRING: jq_jbuf_str(b, v->s, v->len); break;
	case JQ_JSON_ARRAY:
	case JQ_JSON_OBJECT:
		jq_jbuf_raw(b, v->type == JQ_JSON_ARRAY ? "[" : "{");
		for (const jq_json *m = v->first; m != NULL; m = m->next) {
			if (m != v->first)
				jq_jbuf_raw(b, ",");
			if (v->type == JQ_JSON_OBJECT) {
				jq_jbuf_str(b, m->key, m->key_len);
				jq_jbuf_raw(b, ":");
			}
			write_value(b, m);
		}
		jq_jbuf_raw(b, v->type == JQ_JSON_ARRAY ? "]" : "}");
		break;
	}
}

/* round_trip: text parses; written back, it parses again and writes the same text. */
static void round_trip(const char *text, size_t len)
{
	jq_json_doc *d = NULL, *d2 = NULL;
	char err[160];
	if (jq_json_parse(text, len, &d, err, sizeof(err)) != 0)
		return;
	jq_jbuf a = { 0 }, b = { 0 };
	write_value(&a, jq_json_root(d));
	assert_false(a.oom);
	if (jq_json_parse(a.p, a.len, &d2, err, sizeof(err)) != 0)
		fail_msg("the writer's text does not read: %s: %s", err, a.p);
	write_value(&b, jq_json_root(d2));
	assert_int_equal(a.len, b.len);
	assert_memory_equal(a.p, b.p, a.len);
	free(a.p);
	free(b.p);
	jq_json_free(d);
	jq_json_free(d2);
}

static uint64_t rng = 0x9E3779B97F4A7C15u;
static uint64_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void mutations_never_crash(void **state)
{
	(void)state;
	static const char *const seeds[] = {
		"{\"jobs\":[{\"queue\":\"mail\",\"payload\":\"hi \\\"there\\\" \\u00e9\\ud83d\\ude00\",\"priority\":-5,\"delay_ms\":100}]}",
		"{\"ids\":[1,2,3,9223372036854775807],\"queue\":\"q\",\"all_failed\":true}",
		"[[[[{\"a\":[null,true,false,1.5e-3,\"\\/\\b\\f\\n\\r\\t\"]}]]]]",
		"{\"payload_base64\":\"AP8B\",\"k\":{\"k\":{\"k\":[]}}}",
	};
	static const char alphabet[] = "{}[]\",:\\u0123456789eE+-.tfnrl aq\xc3\xa9\xed\xa0\x80\xff\x00\n";
	char buf[512];
	for (size_t s = 0; s < sizeof(seeds) / sizeof(seeds[0]); s++) {
		size_t len = strlen(seeds[s]);
		for (size_t cut = 0; cut <= len; cut++)
			round_trip(seeds[s], cut); /* every prefix: refused or read, never a crash */
		round_trip(seeds[s], len);
		for (int m = 0; m < 20000; m++) {
			memcpy(buf, seeds[s], len);
			size_t n = len;
			int edits = 1 + (int)(next_rand() % 4);
			for (int e = 0; e < edits; e++) {
				size_t at = (size_t)(next_rand() % (n + 1));
				char c = alphabet[next_rand() % (sizeof(alphabet) - 1)];
				switch (next_rand() % 3) {
				case 0: /* replace */
					if (at < n)
						buf[at] = c;
					break;
				case 1: /* insert */
					if (n + 1 < sizeof(buf)) {
						memmove(buf + at + 1, buf + at, n - at);
						buf[at] = c;
						n++;
					}
					break;
				default: /* delete */
					if (at < n) {
						memmove(buf + at, buf + at + 1, n - at - 1);
						n--;
					}
				}
			}
			round_trip(buf, n);
		}
	}
}

static void writer_escapes_markup(void **state)
{
	(void)state;
	const char in[] = "<script>&'\"\\\x01\x1f\x7f \xe2\x80\xa8\xe2\x80\xa9 \xff\xc3 \xc3\xa9";
	jq_jbuf b = { 0 };
	jq_jbuf_str(&b, in, sizeof(in) - 1);
	assert_false(b.oom);
	assert_string_equal(b.p, "\"\\u003cscript\\u003e\\u0026\\u0027\\\"\\\\\\u0001\\u001f\\u007f "
				 "\\u2028\\u2029 \\ufffd\\ufffd \xc3\xa9\"");
	/* Valid UTF-8 reads back as itself. */
	const char ok[] = "<a href='x'>\xe2\x80\xa8\xf0\x9f\x98\x80\t\"\\</a>";
	jq_jbuf c = { 0 };
	jq_jbuf_str(&c, ok, sizeof(ok) - 1);
	jq_json_doc *d = parse_ok(c.p);
	assert_int_equal(jq_json_root(d)->len, sizeof(ok) - 1);
	assert_memory_equal(jq_json_root(d)->s, ok, sizeof(ok) - 1);
	assert_null(strpbrk(c.p, "<>&'"));
	jq_json_free(d);
	free(b.p);
	free(c.p);
	/* Any bytes at all: the output is JSON text whose string is UTF-8. */
	for (int round = 0; round < 2000; round++) {
		char raw[64];
		size_t n = (size_t)(next_rand() % sizeof(raw));
		for (size_t i = 0; i < n; i++)
			raw[i] = (char)next_rand();
		jq_jbuf e = { 0 };
		jq_jbuf_str(&e, raw, n);
		assert_null(strpbrk(e.p, "<>&'"));
		jq_json_doc *dd = parse_ok(e.p);
		assert_true(jq_validate_utf8(jq_json_root(dd)->s, jq_json_root(dd)->len));
		if (jq_validate_utf8(raw, n))
			assert_memory_equal(jq_json_root(dd)->s, raw, n);
		jq_json_free(dd);
		free(e.p);
	}
}

static void base64_round_trip_and_refusals(void **state)
{
	(void)state;
	for (size_t n = 0; n < 300; n++) {
		uint8_t raw[300];
		for (size_t i = 0; i < n; i++)
			raw[i] = (uint8_t)next_rand();
		jq_jbuf b = { 0 };
		jq_jbuf_base64(&b, raw, n);
		assert_int_equal(b.len, 2 + (n + 2) / 3 * 4);
		uint8_t *out = NULL;
		size_t out_len = 0;
		assert_int_equal(jq_base64_decode(b.p + 1, b.len - 2, &out, &out_len), 0);
		assert_int_equal(out_len, n);
		if (n > 0)
			assert_memory_equal(out, raw, n);
		free(out);
		free(b.p);
	}
	static const char *const bad[] = { "A", "AB", "ABC", "A===", "AB=A", "eB==", "eA=", "e A=", "eA==eA==", "****" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint8_t *out = (uint8_t *)1;
		size_t out_len = 7;
		if (jq_base64_decode(bad[i], strlen(bad[i]), &out, &out_len) != -1)
			fail_msg("decoded %s", bad[i]);
		assert_null(out);
	}
	uint8_t *out = NULL;
	size_t out_len = 0;
	assert_int_equal(jq_base64_decode("AP8B", 4, &out, &out_len), 0);
	assert_int_equal(out_len, 3);
	assert_memory_equal(out, "\x00\xff\x01", 3);
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(reads_json),
		cmocka_unit_test(refuses_what_is_not_json),
		cmocka_unit_test(bounds_depth_and_size),
		cmocka_unit_test(mutations_never_crash),
		cmocka_unit_test(writer_escapes_markup),
		cmocka_unit_test(base64_round_trip_and_refusals),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
