/*
 * jobq_internal.h — shared by the libjobq sources; not installed, not part of the API.
 */
#ifndef JOBQ_INTERNAL_H
#define JOBQ_INTERNAL_H

#include <nng/nng.h>

#include "jobq.h"

#define JOBQ_DEFAULT_RPC_URL "tcp://127.0.0.1:7100"
#define JOBQ_DEFAULT_PUB_URL "tcp://127.0.0.1:7101"
#define JOBQ_DEFAULT_TIMEOUT_MS 10000
#define JOBQ_DEFAULT_MAX_REPLY_BYTES (16u * 1024 * 1024)
#define JOBQ_MIN_MAX_REPLY_BYTES 4096u
#define JOBQ_MAX_BATCH 1000
#define JOBQ_MAX_QUEUE_LEN 64

/* jobqi_set_err fills err (may be NULL) and returns code, so callers can `return jobqi_set_err(..)`. */
int jobqi_set_err(jobq_error *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* jobqi_opt_str: the explicit value, else the environment variable (when set and not empty),
 * else the default (may be NULL). */
const char *jobqi_opt_str(const char *given, const char *env_name, const char *dflt);

/* jobqi_dial dials url on sock without blocking (nng keeps reconnecting); for a tls+tcp:// url
 * it first sets up TLS from opts (or the JOBQ_TLS_* environment). Returns 0 or an nng error;
 * on error err (may be NULL) says why. */
int jobqi_dial(nng_socket sock, const char *url, const jobq_options *opts, jobq_error *err);

/* jobqi_nng_code maps an nng error to a status code (see jobq.h: UNAVAILABLE/DEADLINE_EXCEEDED). */
int jobqi_nng_code(int nng_err);

#endif
