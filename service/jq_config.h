/*
 * jq_config — jobqd's settings: defaults, then the environment (JOBQ_*), then command-line flags.
 * The config owns every string in it (jq_config_free releases them). `jobqd --help` is generated
 * from the same option table that parses, so the two cannot drift.
 */
#ifndef JQ_CONFIG_H
#define JQ_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "jq_log.h"

typedef struct jq_config {
	char *database_url;        /* JOBQ_DATABASE_URL, required */
	char *listen_database_url; /* JOBQ_LISTEN_DATABASE_URL, default database_url */
	char *rpc_url;             /* JOBQ_RPC_URL */
	char *pub_url;             /* JOBQ_PUB_URL */
	char *http_addr;           /* JOBQ_HTTP_ADDR */
	char *console_addr;        /* JOBQ_CONSOLE_ADDR: the operator's console; "off" = none */
	char *auth_token;          /* JOBQ_AUTH_TOKEN, or read from auth_token_file; NULL = none */
	char *auth_token_file;     /* JOBQ_AUTH_TOKEN_FILE */
	char *credentials_file;    /* JOBQ_CREDENTIALS_FILE: named credentials with roles (jq_auth) */
	int credentials_reload_interval_ms; /* check it for a change this often; 0 = SIGHUP only */
	char *tls_client_role;     /* JOBQ_TLS_CLIENT_ROLE: role of a verified client certificate */
	bool metrics_auth;         /* JOBQ_METRICS_AUTH: /metrics needs a reader or admin bearer token */
	int db_pool_size;          /* database connections for requests */
	int rpc_contexts;          /* nng REP contexts receiving at once */
	int max_queued;            /* requests waiting for a connection before RESOURCE_EXHAUSTED */
	size_t max_payload_bytes;  /* per job */
	size_t max_message_bytes;  /* per RPC message, enforced by nng before decoding */
	size_t max_inflight_bytes; /* received requests held at once, in bytes */
	int max_waiting_claims;    /* long-poll Claims parked at once */
	int max_waiting_waits;     /* Waits for jobs' ends parked at once */
	size_t max_reply_bytes;    /* what Claim and List put in one reply (JQ_REPLY_ONE_JOB_EXTRA) */
	int default_lease_seconds;
	int default_deadline_ms;
	int rescue_interval_ms;
	int retention_seconds;     /* 0 = keep finished jobs forever */
	int retention_interval_ms;
	int backoff_base_ms;
	int backoff_max_ms;
	bool db_prepared;          /* named prepared statements (off for PgBouncer < 1.21) */
	bool enqueue_groups;       /* jq_enqgroup: small Enqueues arriving together share a statement */
	int db_connect_timeout_ms;   /* one connection attempt (jq_pgconn) */
	int db_tcp_user_timeout_ms;  /* TCP_USER_TIMEOUT of every database connection; 0 = kernel's */
	int db_keepalive_idle_s;     /* TCP keepalive of every database connection; 0 = kernel's */
	int db_keepalive_interval_s;
	int db_keepalive_count;
	int listen_timeout_ms; /* statement timeout of the LISTEN session; silent 1 s longer = dead */
	jq_log_level log_level;
	jq_log_format log_format;
	char *tls_cert; /* JOBQ_TLS_CERT: PEM certificate for tls+tcp:// listeners, NULL = none */
	char *tls_key;  /* JOBQ_TLS_KEY: its PEM private key */
	char *tls_ca;   /* JOBQ_TLS_CA: given, clients need a certificate it signed (mutual TLS) */
	int tls_reload_interval_ms; /* check the TLS files for a rotation this often; 0 = SIGHUP only */
	int max_connections; /* RPC client connections at once; more are closed on arrival */
	/* Secrets given as flags, which every local user can read in /proc/PID/cmdline: the
	 * names of those flags, for jobqd to warn about once logging is set up. */
	const char *secret_flags[4];
	int nsecret_flags;
} jq_config;

/* What one job adds to a reply beyond its payload, at most: its other fields (a last error of
 * up to 8 KiB, an idempotency key, queue, owner, numbers) and the reply's envelope. A reply limit
 * of max payload + this always fits one job. */
#define JQ_REPLY_ONE_JOB_EXTRA (16 * 1024)

/* jobqd's version (jobqd --version, jobq_build_info). jobqd and libjobq are released together:
 * tests/integration/test_cli_words.sh holds this equal to JOBQ_VERSION in client/jobq.h. */
#define JQ_VERSION "0.1.0"

typedef enum jq_config_result {
	JQ_CONFIG_OK = 0,
	JQ_CONFIG_HELP,    /* --help was given; help is printed, exit 0 */
	JQ_CONFIG_VERSION, /* --version was given: the caller prints it, exit 0 */
	JQ_CONFIG_ERROR,   /* an error is printed to err; exit 2 */
} jq_config_result;

/* jq_config_load fills *cfg from defaults, getenv and argv. On JQ_CONFIG_HELP/ERROR, the text
 * was written to out/err. The caller frees with jq_config_free in every case. */
jq_config_result jq_config_load(jq_config *cfg, int argc, char **argv, FILE *out, FILE *err)
	__attribute__((warn_unused_result));

void jq_config_free(jq_config *cfg);

#endif
