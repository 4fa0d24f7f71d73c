/*
 * jq_tls — TLS for jobqd's nng listeners (RPC and PUB) on tls+tcp:// addresses.
 *
 * Debian 12's libnng is built with the mbed TLS engine. Given a CA file, every client must
 * present a certificate that CA signed (mutual TLS); without one, clients are not asked for a
 * certificate. A tls+tcp:// address without a certificate and key, or an nng without TLS
 * (NNG_ENOTSUP), is a start-up error, never a silent plain-text fallback.
 *
 * Certificates rotate without a restart: jq_tls_reload (jobqd runs it on SIGHUP) builds a new
 * configuration from the same files and swaps it into the running listener. Connections already
 * open keep the certificate they were made with; every connection after the reload gets the new
 * one. A file that does not load leaves the listener as it was.
 */
#ifndef JQ_TLS_H
#define JQ_TLS_H

#include <stdbool.h>

#include <nng/nng.h>
#include <nng/supplemental/tls/tls.h>

/* File paths (borrowed); NULL or "" = not given. */
typedef struct jq_tls_files {
	const char *cert; /* PEM certificate (chain) of this server */
	const char *key;  /* PEM private key of cert (unencrypted) */
	const char *ca;   /* PEM CA bundle that client certificates must chain to */
} jq_tls_files;

/* jq_tls_url: whether url asks for TLS (tls+tcp://, tls+tcp4://, tls+tcp6://). */
bool jq_tls_url(const char *url);

/* A listener's TLS configurations as jobqd holds them: a reference to the one in use, and one to
 * the one it replaced, kept until the next reload or the release. nng 1.5.2 reads a listener's
 * configuration for the next connection before it takes its own hold on it, so the configuration
 * just swapped out must stay alive for a while. All NULL = the listener has no TLS. */
typedef struct jq_tls_slot {
	nng_tls_config *cur;
	nng_tls_config *prev;
} jq_tls_slot;

/* jq_tls_setup_listener configures TLS on a created, not yet started listener when url asks for
 * it (otherwise does nothing) and keeps references in *slot (zeroed by the caller; release it
 * with jq_tls_slot_release after the listener is closed). Returns 0, or an nng error number
 * (logged, naming `what`). */
int jq_tls_setup_listener(nng_listener l, const char *url, const jq_tls_files *files, const char *what,
			  jq_tls_slot *slot) __attribute__((warn_unused_result));

/* jq_tls_reload re-reads the files into a new configuration and gives it to the started listener
 * l. Returns 0 (also when the listener has no TLS: nothing to do), or an nng error number
 * (logged): the listener then keeps the configuration it had. Not thread-safe for one slot. */
int jq_tls_reload(nng_listener l, const jq_tls_files *files, const char *what, jq_tls_slot *slot)
	__attribute__((warn_unused_result));

/* jq_tls_stamp fingerprints the files as they are on disk now (device, inode, size and change
 * time of each, through symbolic links): a different stamp means the files were replaced, as a
 * Kubernetes Secret volume does by switching a symbolic link. 0 when none can be read. */
uint64_t jq_tls_stamp(const jq_tls_files *files);

/* jq_tls_slot_release drops the slot's references (after the listener is closed). */
void jq_tls_slot_release(jq_tls_slot *slot);

#endif
