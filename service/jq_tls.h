/*
 * jq_tls — TLS for jobqd's nng listeners (RPC and PUB) on tls+tcp:// addresses.
 *
 * Debian 12's libnng is built with the mbed TLS engine. Given a CA file, every client must
 * present a certificate that CA signed (mutual TLS); without one, clients are not asked for a
 * certificate. A tls+tcp:// address without a certificate and key, or an nng without TLS
 * (NNG_ENOTSUP), is a start-up error, never a silent plain-text fallback.
 */
#ifndef JQ_TLS_H
#define JQ_TLS_H

#include <stdbool.h>

#include <nng/nng.h>

/* File paths (borrowed); NULL or "" = not given. */
typedef struct jq_tls_files {
	const char *cert; /* PEM certificate (chain) of this server */
	const char *key;  /* PEM private key of cert (unencrypted) */
	const char *ca;   /* PEM CA bundle that client certificates must chain to */
} jq_tls_files;

/* jq_tls_url: whether url asks for TLS (tls+tcp://, tls+tcp4://, tls+tcp6://). */
bool jq_tls_url(const char *url);

/* jq_tls_setup_listener configures TLS on a created, not yet started listener when url asks for
 * it (otherwise does nothing). Returns 0, or an nng error number (logged, naming `what`). */
int jq_tls_setup_listener(nng_listener l, const char *url, const jq_tls_files *files, const char *what)
	__attribute__((warn_unused_result));

#endif
