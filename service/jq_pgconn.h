/*
 * jq_pgconn — libpq connections with jobqd's network settings, and waits on them that end at a
 * deadline.
 *
 * A connection whose peer goes silent (a host gone, a partition, a hung proxy) gives libpq no
 * error: a blocking call waits until the kernel gives up, and for data the far end has already
 * acknowledged (a frozen proxy's kernel still acknowledges) the kernel never does. So every
 * connection jobqd opens gets TCP keepalives and TCP_USER_TIMEOUT, and every wait here ends at
 * the caller's deadline: connecting, sending and reading all run in libpq's nonblocking mode
 * under poll(). A wait that ends without an answer leaves the connection in the middle of a
 * statement: the caller must close it.
 *
 * The settings go before the URL in libpq's keyword arrays, so a value the URL sets (say
 * `keepalives_idle=60`, `connect_timeout=2`) wins over jobqd's. Deadlines are CLOCK_MONOTONIC
 * milliseconds (jq_clock_mono_ms); JQ_PGCONN_FOREVER is none. What the server says outside a
 * statement's result (a NOTICE, the FATAL before it ends a session) is logged as one line
 * (jq_log). No state; thread-safe.
 */
#ifndef JQ_PGCONN_H
#define JQ_PGCONN_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "jq_config.h"

#define JQ_PGCONN_FOREVER INT64_MAX

typedef struct jq_pgconn_net {
	int connect_timeout_ms;    /* one attempt, TCP to ready; 0 = none */
	int tcp_user_timeout_ms;   /* 0 = the kernel's default */
	int keepalives_idle_s;     /* 0 = the kernel's default, as for the two below */
	int keepalives_interval_s;
	int keepalives_count;
} jq_pgconn_net;

/* The defaults of jq_config's --db-* settings, for handles opened without a config. */
extern const jq_pgconn_net jq_pgconn_net_default;

/* jq_pgconn_net_of reads the --db-* settings of cfg. */
jq_pgconn_net jq_pgconn_net_of(const jq_config *cfg);

typedef struct jq_pgconn_opts {
	const char *url;              /* libpq connection string or URI */
	const char *application_name; /* jobqd's name for this connection (overrides the URL's) */
	const char *options;          /* startup options ("-c statement_timeout=..."), NULL = none */
	const jq_pgconn_net *net;     /* NULL = jq_pgconn_net_default */
} jq_pgconn_opts;

typedef enum jq_pgconn_rc {
	JQ_PGCONN_OK = 0,
	JQ_PGCONN_TIMEOUT, /* the deadline passed first */
	JQ_PGCONN_BROKEN,  /* libpq reported an error: PQerrorMessage says which */
	JQ_PGCONN_WOKEN,   /* wake_fd became readable (the owner is stopping) */
} jq_pgconn_rc;

/* jq_pgconn_open connects, giving up at until_ms or after the connect timeout (the URL's
 * connect_timeout, else net's), whichever is first, or when wake_fd (-1 = none) is readable.
 * On JQ_PGCONN_OK *out is a ready connection in nonblocking mode (the caller PQfinishes it);
 * otherwise *out is NULL and err holds one line saying why. */
jq_pgconn_rc jq_pgconn_open(const jq_pgconn_opts *o, int64_t until_ms, int wake_fd, PGconn **out,
			    char *err, size_t cap) __attribute__((warn_unused_result));

/* jq_pgconn_result sends what the PQsend* call just queued and waits for the statement's
 * results until until_ms (or wake_fd). JQ_PGCONN_OK: *out is its result (an error result when it
 * failed: the first error wins, as with PQexec), which the caller PQclears. Otherwise *out is
 * NULL and the connection must be closed. */
jq_pgconn_rc jq_pgconn_result(PGconn *c, int64_t until_ms, int wake_fd, PGresult **out)
	__attribute__((warn_unused_result));

#endif
