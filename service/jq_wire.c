#include "jq_wire.h"

#include <string.h>

/* Field numbers of jobq.v1.RpcRequest (proto/jobq/v1/jobq.proto). */
enum { F_METHOD = 1, F_REQUEST_ID = 3, F_AUTH_TOKEN = 5 };
enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

/* varint reads one varint at *p (at most 10 bytes, not past end). */
static bool varint(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
	uint64_t v = 0;
	for (int shift = 0; shift < 70 && *p < end; shift += 7) {
		uint8_t b = *(*p)++;
		v |= (uint64_t)(b & 0x7f) << shift;
		if ((b & 0x80) == 0) {
			*out = v;
			return true;
		}
	}
	return false;
}

/* skip moves past a fixed-size field. */
static bool skip(const uint8_t **p, const uint8_t *end, size_t n)
{
	if ((size_t)(end - *p) < n)
		return false;
	*p += n;
	return true;
}

static void keep(uint64_t field, const uint8_t *p, size_t len, jq_wire_envelope *out)
{
	switch (field) {
	case F_METHOD:
		out->method = p, out->method_len = len;
		break;
	case F_REQUEST_ID:
		out->request_id = p, out->request_id_len = len;
		break;
	case F_AUTH_TOKEN:
		out->token = p, out->token_len = len;
		break;
	default:
		break;
	}
}

bool jq_wire_scan_envelope(const uint8_t *p, size_t n, jq_wire_envelope *out)
{
	const uint8_t *end = p + n;
	uint64_t key, v;

	memset(out, 0, sizeof(*out));
	while (p < end) {
		/* Field number 0 is not valid protobuf, but protobuf-c skips it as an unknown field
		 * when its key is spelled in more than one byte (80 00); so does this scan, so that it
		 * never refuses what the decoder accepts (the fuzz target checks that). */
		if (!varint(&p, end, &key))
			return false;
		switch (key & 7) {
		case WT_VARINT:
			if (!varint(&p, end, &v))
				return false;
			break;
		case WT_I64:
			if (!skip(&p, end, 8))
				return false;
			break;
		case WT_I32:
			if (!skip(&p, end, 4))
				return false;
			break;
		case WT_LEN:
			if (!varint(&p, end, &v) || v > (uint64_t)(end - p))
				return false;
			keep(key >> 3, p, (size_t)v, out);
			p += v;
			break;
		default:
			return false; /* groups (3, 4) and the unused 6, 7 */
		}
	}
	return true;
}
