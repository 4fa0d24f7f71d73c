/*
 * jobq_names.c — status-code and job-state names, errors, option defaults and the clock shared by
 * the library's sources. The codes' names come from the proto (enum jobq.v1.Code), which jobqd
 * reads them from too.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nng/nng.h>

#include "jobq/v1/jobq.pb-c.h"
#include "jobq_internal.h"

/* jobq.h numbers the codes for programs that see no protobuf type; they are the proto's. */
#define SAME_CODE(name) _Static_assert((int)JOBQ_##name == (int)JOBQ__V1__CODE__##name, #name)
SAME_CODE(OK);
SAME_CODE(CANCELLED);
SAME_CODE(UNKNOWN);
SAME_CODE(INVALID_ARGUMENT);
SAME_CODE(DEADLINE_EXCEEDED);
SAME_CODE(NOT_FOUND);
SAME_CODE(ALREADY_EXISTS);
SAME_CODE(PERMISSION_DENIED);
SAME_CODE(RESOURCE_EXHAUSTED);
SAME_CODE(FAILED_PRECONDITION);
SAME_CODE(ABORTED);
SAME_CODE(OUT_OF_RANGE);
SAME_CODE(UNIMPLEMENTED);
SAME_CODE(INTERNAL);
SAME_CODE(UNAVAILABLE);
SAME_CODE(DATA_LOSS);
SAME_CODE(UNAUTHENTICATED);

/* Database names first; the short forms are accepted by jobq_status_parse for typing comfort. */
static const char *const status_names[] = {
	NULL, "archive_pending", "archive_processing", "archive_completed", "archive_failed",
	"archive_cancelled",
};
static const char *const status_short[] = {
	NULL, "pending", "processing", "completed", "failed", "cancelled",
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

const char *jobq_code_name(int code)
{
	const ProtobufCEnumDescriptor *codes = &jobq__v1__code__descriptor;
	const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(codes, code);
	return v != NULL ? v->name : "UNKNOWN";
}

const char *jobq_status_name(jobq_status s)
{
	if ((int)s <= 0 || (size_t)s >= COUNT(status_names))
		return NULL;
	return status_names[s];
}

int jobq_status_parse(const char *name, jobq_status *out)
{
	if (name == NULL || out == NULL)
		return -1;
	for (size_t i = 1; i < COUNT(status_names); i++) {
		if (strcmp(name, status_names[i]) == 0 || strcmp(name, status_short[i]) == 0) {
			*out = (jobq_status)i;
			return 0;
		}
	}
	return -1;
}

int jobqi_set_err(jobq_error *err, int code, const char *fmt, ...)
{
	if (err == NULL)
		return code;
	va_list ap;
	err->code = code;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	return code;
}

const char *jobqi_opt_str(const char *given, const char *env_name, const char *dflt)
{
	if (given != NULL)
		return given;
	const char *env = getenv(env_name);
	return env != NULL && env[0] != '\0' ? env : dflt;
}

int64_t jobqi_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int jobqi_nng_code(int nng_err)
{
	switch (nng_err) {
	case 0:
		return JOBQ_OK;
	case NNG_ETIMEDOUT:
		return JOBQ_DEADLINE_EXCEEDED;
	case NNG_ENOMEM:
		return JOBQ_RESOURCE_EXHAUSTED;
	case NNG_EINVAL:
	case NNG_EADDRINVAL:
	case NNG_ENOTSUP:
		return JOBQ_INVALID_ARGUMENT;
	default:
		/* ECONNREFUSED, ECONNRESET, ECLOSED, ECONNSHUT, ...: the service is not reachable. */
		return JOBQ_UNAVAILABLE;
	}
}
