/*
 * jq_console — the operator's console: a second HTTP listener (cfg->console_addr, off by
 * default) serving the console's pages, compiled into the binary from service/console/, and
 * its JSON API under /api/v1/ (jq_api).
 *
 * Pages are answered on nng's thread (a copy of a static array). API requests go to a queue
 * that JQ_CONSOLE_WORKERS threads of this module serve, each with its own database connection,
 * so nng's shared threads (which also carry the RPC traffic) never wait for the database; a
 * request that finds JQ_CONSOLE_MAX_QUEUED waiting is answered 429 at once.
 *
 * Every answer carries a strict Content-Security-Policy (scripts and styles from the console's
 * own files only, no framing), X-Content-Type-Options: nosniff and no caching.
 *
 * Only one jq_console may run per process. It borrows src's cfg and auth (they must outlive it:
 * stop it first) and owns its server, threads and connections.
 */
#ifndef JQ_CONSOLE_H
#define JQ_CONSOLE_H

#include <stddef.h>

#include "jq_auth.h"
#include "jq_config.h"

#define JQ_CONSOLE_WORKERS 2
#define JQ_CONSOLE_MAX_QUEUED 64

typedef struct jq_console jq_console;

typedef struct jq_console_sources {
	const jq_config *cfg;
	jq_auth *auth; /* judges every API request's bearer token; never NULL */
} jq_console_sources;

/* jq_console_start listens on src->cfg->console_addr (NULL, "" or "off": no console, *out =
 * NULL, returns 0). Returns 0, or -1 (logged) when the address is bad or taken. */
int jq_console_start(const jq_console_sources *src, jq_console **out) __attribute__((warn_unused_result));

/* jq_console_stop stops serving (requests still queued are answered 503), joins the threads
 * and frees everything. NULL is a no-op. */
void jq_console_stop(jq_console *c);

/* The console's files, generated at build time from service/console/ (service/console/embed.sh)
 * into jq_console_assets.c. */
typedef struct jq_console_asset {
	const char *path; /* "/index.html" */
	const char *content_type;
	const unsigned char *data;
	size_t len;
} jq_console_asset;

extern const jq_console_asset jq_console_assets[];
extern const size_t jq_console_nassets;

#endif
