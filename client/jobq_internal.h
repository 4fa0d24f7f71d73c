/*
 * jobq_internal.h — shared by the libjobq sources; not installed, not part of the API.
 */
#ifndef JOBQ_INTERNAL_H
#define JOBQ_INTERNAL_H

#include <stdbool.h>

#include <nng/nng.h>
#include <nng/supplemental/util/platform.h>

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
 * it first sets up TLS from opts (or the JOBQ_TLS_* environment). Returns 0 and the dialer in
 * *d, or an nng error; on error err (may be NULL) says why. */
int jobqi_dial(nng_socket sock, const char *url, const jobq_options *opts, nng_dialer *d, jobq_error *err);

/* jobqi_link (jobq_link.c): the connections of one dialed socket, kept by nng's pipe events.
 * jobqi_link_init registers them on sock before the dial (nng keeps the pointer: the struct must
 * not move, and lives until after nng_close); set dialer from jobqi_dial; jobqi_link_fini
 * frees it (also after a failed init). */
typedef struct jobqi_link {
	nng_mtx *link_mu;
	nng_cv *cv;        /* woken when a connection comes up */
	nng_dialer dialer;
	int up;            /* connections up now; under link_mu */
	bool ever;         /* a connection was up once; under link_mu */
} jobqi_link;

int jobqi_link_init(jobqi_link *l, nng_socket sock);
void jobqi_link_fini(jobqi_link *l);
int jobqi_link_up(jobqi_link *l);
bool jobqi_link_ever(jobqi_link *l);

/* How long a link that never had a connection waits for its first before it looks at why not:
 * nng redials after 50, 100, 200, 400 ms, so a service that is just starting is found, and an
 * address where nothing listens is reported in a second rather than after a whole timeout. */
#define JOBQI_FIRST_CONNECT_MS 1000

/* jobqi_link_wait waits up to ms for a connection: 0 when one is up. A link that never had one
 * answers NNG_ECONNREFUSED after min(ms, JOBQI_FIRST_CONNECT_MS) when every dial so far was
 * refused (nothing listens at the address). Otherwise NNG_ETIMEDOUT after ms. nng goes on
 * redialing in every case. */
int jobqi_link_wait(jobqi_link *l, int ms);

/* jobqi_close (jobq_close.c) closes sock and then calls release(arg), which frees what nng's
 * callbacks on sock point at; both run on a thread of their own, waited for up to
 * JOBQI_CLOSE_WAIT_MS. True when they finished; false when nng had not (nng 1.5.2 can hang in
 * nng_close), in which case the thread still releases arg if nng ever returns. */
#define JOBQI_CLOSE_WAIT_MS 2000
bool jobqi_close(nng_socket sock, void (*release)(void *), void *arg);

/* jobqi_mono_ms: CLOCK_MONOTONIC in milliseconds (every timeout and wait of the library). */
int64_t jobqi_mono_ms(void);

/* jobqi_nng_code maps an nng error to a status code (see jobq.h: UNAVAILABLE/DEADLINE_EXCEEDED). */
int jobqi_nng_code(int nng_err);

#endif
