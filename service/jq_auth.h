/*
 * jq_auth — who may call what: named credentials, each with one role, and the table of the
 * methods each role may call.
 *
 * Roles (CONTRACT.md): producer (Enqueue, Get), worker (Claim, Heartbeat, Complete, Fail, Get),
 * reader (Get, List, Stats), admin (every method). A credential is a token a request carries in
 * RpcRequest.auth_token; a connection whose client certificate the server verified (mutual TLS)
 * may stand for one role too, for requests that carry no token.
 *
 * Credentials come from a file or a directory (--credentials-file), re-read on jq_auth_reload
 * without a restart (a failed reload keeps the credentials in force), plus the single admin
 * token of --auth-token / JOBQ_AUTH_TOKEN(_FILE), which never changes while running:
 *  - a file: one credential per line, `NAME ROLE TOKEN`, blank lines and `#` comments allowed;
 *  - a directory (a Kubernetes Secret volume): one file per credential, named ROLE or
 *    ROLE.NAME, holding the token; names starting with '.' are skipped (the volume's own).
 * A token is 16 to 256 printable ASCII characters without spaces; tokens and names are unique.
 * Tokens are compared in constant time and never logged.
 *
 * With no credential of any kind, nothing is required: every request is admin (a development
 * service on loopback).
 *
 * Thread safety: jq_auth_authorize may run on any number of threads at once, also during a
 * jq_auth_reload (which swaps the table under a write lock).
 */
#ifndef JQ_AUTH_H
#define JQ_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "jq_code.h"

typedef enum jq_role {
	JQ_ROLE_NONE = 0,
	JQ_ROLE_PRODUCER,
	JQ_ROLE_WORKER,
	JQ_ROLE_READER,
	JQ_ROLE_ADMIN,
} jq_role;

#define JQ_AUTH_TOKEN_MIN 16
#define JQ_AUTH_TOKEN_MAX 256

/* jq_role_name: "producer", ... ("none" for JQ_ROLE_NONE; a static string). */
const char *jq_role_name(jq_role role);

/* jq_role_parse reads a role name; false if it is none of the four. */
bool jq_role_parse(const char *s, jq_role *out);

/* jq_role_allows: may role call method (its full name, "/jobq.v1.JobQueue/Claim")? A method
 * that is not one of the service's is allowed here (the dispatcher answers UNIMPLEMENTED). */
bool jq_role_allows(jq_role role, const char *method);

typedef struct jq_auth jq_auth;

typedef struct jq_auth_opts {
	const char *credentials_path; /* file or directory; NULL = none */
	const char *admin_token;      /* --auth-token; NULL = none */
	jq_role tls_role;             /* for a verified client certificate without a token */
} jq_auth_opts;

/* jq_auth_new loads the credentials. Returns 0 and *out, or -1 with the reason in err (nothing
 * to free). The strings in opts are copied. */
int jq_auth_new(const jq_auth_opts *opts, jq_auth **out, char *err, size_t err_len)
	__attribute__((warn_unused_result));

/* jq_auth_reload re-reads the credentials path. Returns 0, or -1 with the reason in err (the
 * credentials in force stay). A no-op without a path. Call from one thread at a time. */
int jq_auth_reload(jq_auth *a, char *err, size_t err_len) __attribute__((warn_unused_result));

/* jq_auth_stamp: a fingerprint of the credentials path (names, inodes, sizes, times) that
 * changes when its content may have; 0 without a path or when it cannot be read. */
uint64_t jq_auth_stamp(const jq_auth *a);

/* jq_auth_changed: has the path changed since it was last read (by jq_auth_new or
 * jq_auth_reload, whether that read loaded or not)? Same thread as jq_auth_reload. */
bool jq_auth_changed(const jq_auth *a);

/* jq_auth_count: credentials in force (the admin token included). */
int jq_auth_count(jq_auth *a);

/* jq_auth_required: does every request need a credential? */
bool jq_auth_required(const jq_auth *a);

/* jq_auth_authorize is jq_rpc_server's authorize hook (a jq_rpc_authorize_fn; auth is the
 * jq_auth). OK with *principal = the jq_role; UNAUTHENTICATED for a missing or unknown
 * credential; PERMISSION_DENIED for a method outside the credential's role. */
jq_code jq_auth_authorize(void *auth, const char *method, const char *token, bool tls_verified,
			   int *principal, char *why, size_t why_len);

/* jq_auth_bearer copies the token of an HTTP `Authorization: Bearer TOKEN` header value into
 * out (cap bytes; "" when value is NULL, no header); false when the header holds something else
 * or a token too long to be one, which must not be cut down to a credential's prefix. */
bool jq_auth_bearer(const char *value, char *out, size_t cap);

/* jq_auth_free releases a. NULL is a no-op. */
void jq_auth_free(jq_auth *a);

#endif
