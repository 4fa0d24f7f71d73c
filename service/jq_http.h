/*
 * jq_http — jobqd's operator endpoints on nng's HTTP server (cfg->http_addr, "host:port"):
 *
 *   GET /healthz  200 "ok" while the process runs (liveness: no database involved)
 *   GET /readyz   200 "ready" when the database answered a ping within the last few seconds
 *                 AND the notification listener is LISTENing; else 503 with a one-line reason
 *   GET /metrics  Prometheus text format 0.0.4 (jq_metrics); with jq_http_sources.auth, only for
 *                 `Authorization: Bearer TOKEN` whose role may call Stats (reader, admin): 401
 *                 for a missing or unknown token, 403 for another role. The probes stay open.
 *
 * Handlers never touch the database: they run on nng's shared threads, which also carry the
 * RPC traffic. A thread of this module owns one dedicated database connection; it pings every
 * second (the result /readyz reads), reads the job counts by queue and state once at start and,
 * while /metrics has been scraped in the last two minutes, every 5 s (capped at
 * JQ_HTTP_MAX_QUEUES queues), so an unscraped replica runs one count query and no more. A scrape
 * with no fresh counts to show waits for that thread's next read, briefly (see jq_http.c).
 *
 * Only one jq_http may run per process. The module borrows everything in jq_http_sources (they
 * must outlive it: stop it first) and owns its connection, thread and server.
 */
#ifndef JQ_HTTP_H
#define JQ_HTTP_H

#include "jq_auth.h"
#include "jq_config.h"
#include "jq_enqgroup.h"
#include "jq_jobwait.h"
#include "jq_longpoll.h"
#include "jq_notify.h"
#include "jq_publisher.h"
#include "jq_rescuer.h"
#include "jq_scheduler.h"
#include "jq_rpc_server.h"

#define JQ_HTTP_MAX_QUEUES 200

typedef struct jq_http jq_http;

/* What /readyz and /metrics read. Any pointer but cfg may be NULL (its figures are left out;
 * without auth, /metrics is open). */
typedef struct jq_http_sources {
	const jq_config *cfg;
	jq_auth *auth; /* judges /metrics' bearer token (--metrics-auth) */
	jq_rpc_server *rpc;
	jq_notify *notify;
	jq_publisher *pub;
	jq_rescuer *rescuer;
	jq_scheduler *scheduler;
	jq_longpoll *longpoll;
	jq_jobwait *jobwait;
	jq_enqgroup *enqgroup;
	int pool_size;
} jq_http_sources;

/* jq_http_start listens on src->cfg->http_addr ("" or "off": no HTTP, *out = NULL, returns 0).
 * Returns 0, or -1 (logged) when the address is bad or taken. */
int jq_http_start(const jq_http_sources *src, jq_http **out) __attribute__((warn_unused_result));

/* jq_http_stop stops serving (later requests are refused, any in flight answer 503), stops the
 * thread and frees everything. NULL is a no-op. */
void jq_http_stop(jq_http *h);

#endif
