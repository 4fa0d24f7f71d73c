#include "jq_code.h"

#include <limits.h>

const char *jq_code_name(unsigned code)
{
	const ProtobufCEnumValue *v =
		code <= INT_MAX ? protobuf_c_enum_descriptor_get_value(&jobq__v1__code__descriptor, (int)code)
				: NULL;
	return v != NULL ? v->name : "UNKNOWN";
}
