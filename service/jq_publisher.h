/*
 * jq_publisher — jobqd's nng PUB socket. Each message is the topic "pending.<queue>", one NUL
 * byte, then an encoded jobq.v1.JobsAvailable (the framing in ../shared/CONTRACT.md, "Pub/sub");
 * or the topic "cancel.<queue>", NUL, an encoded jobq.v1.JobsStopped (a running job was stopped
 * under its worker). Nothing but claimable jobs goes under "pending.".
 *
 * The publisher owns its socket. jq_publisher_send may be called from any thread at once (nng
 * sockets are thread-safe) and never blocks: PUB drops a message for a subscriber whose queue is
 * full, so announcements are hints and subscribers must also poll slowly as a safety net.
 */
#ifndef JQ_PUBLISHER_H
#define JQ_PUBLISHER_H

#include <stddef.h>
#include <stdint.h>

#include "jq_tls.h"

typedef struct jq_publisher jq_publisher;

/* jq_publisher_start opens a PUB socket listening on url. Returns 0, or -1 (logged). */
int jq_publisher_start(const char *url, jq_publisher **out) __attribute__((warn_unused_result));

/* jq_publisher_start_tls: the same, with TLS files for a tls+tcp:// url (tls may be NULL). */
int jq_publisher_start_tls(const char *url, const jq_tls_files *tls, jq_publisher **out)
	__attribute__((warn_unused_result));

/* jq_publisher_reload_tls rotates the listener's certificate (see jq_tls_reload); a no-op without
 * TLS. Returns 0, or -1 (logged; the old certificate stays). */
int jq_publisher_reload_tls(jq_publisher *p, const jq_tls_files *tls) __attribute__((warn_unused_result));

/* jq_publisher_stop closes the socket and frees everything. NULL is a no-op. Callers must have
 * stopped sending first. */
void jq_publisher_stop(jq_publisher *p);

/* jq_publisher_send announces that jobs of `queue` are pending and due. ids (n of them, may be 0
 * when unknown) are borrowed. Returns 0 when handed to nng, -1 otherwise (nothing to free). */
int jq_publisher_send(jq_publisher *p, const char *queue, const int64_t *ids, size_t n);

/* jq_publisher_send_stop tells the workers of `queue` that job id was stopped under lease_token
 * (reason: "cancelled"). Returns 0 when handed to nng, -1 otherwise. */
int jq_publisher_send_stop(jq_publisher *p, const char *queue, int64_t id, int64_t lease_token,
			   const char *reason);

/* Messages handed to nng since start, for metrics and tests. */
int64_t jq_publisher_sent(const jq_publisher *p);

#endif
