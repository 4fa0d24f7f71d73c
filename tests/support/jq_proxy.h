/*
 * jq_proxy — a TCP proxy between a test's jobqd and PostgreSQL, in a child process, to make
 * database connections go silent. jq_proxy_pause stops the process (SIGSTOP): its kernel still
 * accepts connections and acknowledges data, but nothing is forwarded either way, which is what
 * a frozen host or a hung middlebox looks like to libpq (no error, no answer, no TCP timeout).
 * jq_proxy_resume lets it go on. The child dies with the test program (PR_SET_PDEATHSIG).
 *
 * Functions that can fail fail the current cmocka test; jq_proxy_stop is safe in teardowns.
 */
#ifndef JQ_PROXY_H
#define JQ_PROXY_H

#include <sys/types.h>

typedef struct jq_proxy {
	pid_t pid; /* 0 when not running */
	int port;  /* where it listens on 127.0.0.1 */
} jq_proxy;

/* jq_proxy_start forwards 127.0.0.1:p->port to the host and port of the libpq URL db_url
 * (which must name a TCP host). */
void jq_proxy_start(jq_proxy *p, const char *db_url);

/* jq_proxy_url returns db_url with its host and port replaced by the proxy's, as a libpq
 * keyword/value string (caller frees). */
char *jq_proxy_url(const jq_proxy *p, const char *db_url);

void jq_proxy_pause(jq_proxy *p);
void jq_proxy_resume(jq_proxy *p);

/* jq_proxy_stop kills the child and reaps it; a proxy never started is a no-op. */
void jq_proxy_stop(jq_proxy *p);

#endif
