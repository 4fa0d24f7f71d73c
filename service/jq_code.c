#include "jq_code.h"

#include <limits.h>

const char *jq_code_name(unsigned code)
{
	const ProtobufCEnumDescriptor *codes = &jobq__v1__code__descriptor;
	if (code > INT_MAX)
		return "UNKNOWN";
	const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(codes, (int)code);
	return v != NULL ? v->name : "UNKNOWN";
}
