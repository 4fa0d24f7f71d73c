#include "jq_config.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

typedef enum opt_kind { OPT_STR, OPT_INT, OPT_SIZE, OPT_BOOL, OPT_LEVEL, OPT_FORMAT } opt_kind;

typedef struct opt {
	const char *flag;
	const char *env;
	opt_kind kind;
	size_t offset;
	const char *def;
	long min, max;
	const char *help;
} opt;

#define F(field) offsetof(jq_config, field)

/* One row per setting: parsing, defaults and --help all come from here. */
static const opt opts[] = {
	{ "database-url", "JOBQ_DATABASE_URL", OPT_STR, F(database_url), NULL, 0, 0,
	  "libpq connection string or postgres:// URI (required)" },
	{ "listen-database-url", "JOBQ_LISTEN_DATABASE_URL", OPT_STR, F(listen_database_url), NULL, 0,
	  0, "session connection for LISTEN (default: the database URL)" },
	{ "rpc-url", "JOBQ_RPC_URL", OPT_STR, F(rpc_url), "tcp://127.0.0.1:7100", 0, 0,
	  "nng REQ/REP address to listen on" },
	{ "pub-url", "JOBQ_PUB_URL", OPT_STR, F(pub_url), "tcp://127.0.0.1:7101", 0, 0,
	  "nng PUB address to listen on" },
	{ "http-addr", "JOBQ_HTTP_ADDR", OPT_STR, F(http_addr), "127.0.0.1:7102", 0, 0,
	  "HTTP address for /healthz, /readyz, /metrics" },
	{ "console-addr", "JOBQ_CONSOLE_ADDR", OPT_STR, F(console_addr), "off", 0, 0,
	  "HTTP address of the operator's console and its JSON API (/api/v1), apart from "
	  "--http-addr: host:port, or off" },
	{ "auth-token", "JOBQ_AUTH_TOKEN", OPT_STR, F(auth_token), NULL, 0, 0,
	  "admin token (default: none); prefer the environment or --auth-token-file: other users "
	  "can read a flag in /proc" },
	{ "auth-token-file", "JOBQ_AUTH_TOKEN_FILE", OPT_STR, F(auth_token_file), NULL, 0, 0,
	  "file holding the admin token (instead of --auth-token)" },
	{ "credentials-file", "JOBQ_CREDENTIALS_FILE", OPT_STR, F(credentials_file), NULL, 0, 0,
	  "named credentials with roles: a file of 'NAME ROLE TOKEN' lines, or a directory of files "
	  "named ROLE or ROLE.NAME holding a token (a Kubernetes Secret volume); re-read on change" },
	{ "credentials-reload-interval-ms", "JOBQ_CREDENTIALS_RELOAD_INTERVAL_MS", OPT_INT,
	  F(credentials_reload_interval_ms), "10000", 0, 86400000,
	  "how often the credentials file is checked for a change; 0: only on SIGHUP" },
	{ "tls-client-role", "JOBQ_TLS_CLIENT_ROLE", OPT_STR, F(tls_client_role), NULL, 0, 0,
	  "role of a request without a token on a connection whose client certificate jobqd "
	  "verified (--tls-ca): producer|worker|reader|admin (default: none)" },
	{ "metrics-auth", "JOBQ_METRICS_AUTH", OPT_BOOL, F(metrics_auth), "off", 0, 0,
	  "on: GET /metrics needs 'Authorization: Bearer TOKEN' with a reader or admin credential "
	  "(/healthz and /readyz stay open for probes): on|off" },
	{ "db-pool-size", "JOBQ_DB_POOL_SIZE", OPT_INT, F(db_pool_size), "4", 1, 256,
	  "database connections serving requests" },
	{ "rpc-contexts", "JOBQ_RPC_CONTEXTS", OPT_INT, F(rpc_contexts), "256", 1, 4096,
	  "requests received at once (nng contexts); above --max-queued, so overload is answered" },
	{ "max-queued", "JOBQ_MAX_QUEUED", OPT_INT, F(max_queued), "128", 1, 1000000,
	  "requests waiting for a database connection before RESOURCE_EXHAUSTED" },
	{ "max-payload-bytes", "JOBQ_MAX_PAYLOAD_BYTES", OPT_SIZE, F(max_payload_bytes), "1048576", 0,
	  256L * 1024 * 1024, "largest job payload" },
	{ "max-message-bytes", "JOBQ_MAX_MESSAGE_BYTES", OPT_SIZE, F(max_message_bytes), "4194304",
	  1024, 1024L * 1024 * 1024,
	  "largest RPC message (one job of --max-payload-bytes, or a batch, must fit)" },
	{ "max-inflight-bytes", "JOBQ_MAX_INFLIGHT_BYTES", OPT_SIZE, F(max_inflight_bytes),
	  "67108864", 65536, 16L * 1024 * 1024 * 1024,
	  "bytes of received requests held at once; past it jobqd reads no more until some are answered" },
	{ "max-waiting-claims", "JOBQ_MAX_WAITING_CLAIMS", OPT_INT, F(max_waiting_claims), "4096", 0,
	  1000000, "Claims waiting for work at once; more are answered at once with no jobs and a "
	  "time to retry (retry_after_ms)" },
	{ "max-waiting-waits", "JOBQ_MAX_WAITING_WAITS", OPT_INT, F(max_waiting_waits), "4096", 0,
	  1000000, "Waits for jobs to finish waiting at once; more are answered at once with no jobs "
	  "and a time to retry (retry_after_ms)" },
	{ "max-reply-bytes", "JOBQ_MAX_REPLY_BYTES", OPT_SIZE, F(max_reply_bytes), "4194304",
	  JQ_REPLY_ONE_JOB_EXTRA, 1024L * 1024 * 1024,
	  "largest Claim or List reply: fewer jobs, or a shorter page, beyond it (at least one job)" },
	{ "default-lease-seconds", "JOBQ_DEFAULT_LEASE_SECONDS", OPT_INT, F(default_lease_seconds),
	  "30", 1, 86400, "lease length when a request gives none" },
	{ "default-deadline-ms", "JOBQ_DEFAULT_DEADLINE_MS", OPT_INT, F(default_deadline_ms), "30000",
	  1, 3600000, "deadline of a request that gives none" },
	{ "rescue-interval-ms", "JOBQ_RESCUE_INTERVAL_MS", OPT_INT, F(rescue_interval_ms), "1000", 10,
	  3600000, "how often expired leases are looked for" },
	{ "retention-seconds", "JOBQ_RETENTION_SECONDS", OPT_INT, F(retention_seconds), "604800", 0,
	  INT_MAX, "delete completed/cancelled jobs older than this; 0 keeps them" },
	{ "retention-interval-ms", "JOBQ_RETENTION_INTERVAL_MS", OPT_INT, F(retention_interval_ms),
	  "10000", 10, 86400000, "how often the retention sweep runs" },
	{ "backoff-base-ms", "JOBQ_BACKOFF_BASE_MS", OPT_INT, F(backoff_base_ms), "1000", 0,
	  86400000, "first retry delay; doubles with each attempt" },
	{ "backoff-max-ms", "JOBQ_BACKOFF_MAX_MS", OPT_INT, F(backoff_max_ms), "3600000", 0,
	  INT_MAX, "largest retry delay" },
	{ "db-prepared", "JOBQ_DB_PREPARED", OPT_BOOL, F(db_prepared), "on", 0, 0,
	  "named prepared statements: on|off (off for PgBouncer < 1.21 in transaction mode)" },
	{ "enqueue-groups", "JOBQ_ENQUEUE_GROUPS", OPT_BOOL, F(enqueue_groups), "on", 0, 0,
	  "small Enqueues that arrive while another's statement runs share the next one: on|off" },
	{ "db-connect-timeout-ms", "JOBQ_DB_CONNECT_TIMEOUT_MS", OPT_INT, F(db_connect_timeout_ms),
	  "5000", 100, 600000,
	  "longest a database connection attempt may take (a request's deadline may end it sooner)" },
	{ "db-tcp-user-timeout-ms", "JOBQ_DB_TCP_USER_TIMEOUT_MS", OPT_INT, F(db_tcp_user_timeout_ms),
	  "10000", 0, 3600000,
	  "drop a database connection whose data stays unacknowledged this long; 0: the kernel's default" },
	{ "db-keepalive-idle-s", "JOBQ_DB_KEEPALIVE_IDLE_S", OPT_INT, F(db_keepalive_idle_s), "10", 0,
	  86400, "TCP keepalive of database connections: idle seconds before the first probe; 0: the kernel's" },
	{ "db-keepalive-interval-s", "JOBQ_DB_KEEPALIVE_INTERVAL_S", OPT_INT, F(db_keepalive_interval_s),
	  "5", 0, 86400, "seconds between keepalive probes; 0: the kernel's" },
	{ "db-keepalive-count", "JOBQ_DB_KEEPALIVE_COUNT", OPT_INT, F(db_keepalive_count), "3", 0, 1000,
	  "unanswered keepalive probes before the connection is dropped; 0: the kernel's" },
	{ "listen-timeout-ms", "JOBQ_LISTEN_TIMEOUT_MS", OPT_INT, F(listen_timeout_ms), "10000", 100,
	  600000, "statement timeout of the LISTEN session; no answer 1 s past it and the listener "
	  "reconnects (not ready meanwhile)" },
	{ "log-level", "JOBQ_LOG_LEVEL", OPT_LEVEL, F(log_level), "info", 0, 0,
	  "debug|info|warn|error" },
	{ "log-format", "JOBQ_LOG_FORMAT", OPT_FORMAT, F(log_format), "json", 0, 0, "json|text" },
	{ "tls-cert", "JOBQ_TLS_CERT", OPT_STR, F(tls_cert), NULL, 0, 0,
	  "PEM certificate for tls+tcp:// RPC and PUB addresses" },
	{ "tls-key", "JOBQ_TLS_KEY", OPT_STR, F(tls_key), NULL, 0, 0, "PEM private key of --tls-cert" },
	{ "tls-ca", "JOBQ_TLS_CA", OPT_STR, F(tls_ca), NULL, 0, 0,
	  "PEM CA bundle; given, clients must present a certificate it signed (mutual TLS)" },
	{ "tls-reload-interval-ms", "JOBQ_TLS_RELOAD_INTERVAL_MS", OPT_INT, F(tls_reload_interval_ms),
	  "10000", 0, 86400000, "how often the TLS files are checked for a rotation; 0: only on SIGHUP" },
	{ "max-connections", "JOBQ_MAX_CONNECTIONS", OPT_INT, F(max_connections), "1024", 1, 1000000,
	  "RPC client connections at once; more are closed as they arrive" },
};

#define NOPTS (sizeof(opts) / sizeof(opts[0]))

static int parse_long(const char *s, long min, long max, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

static int parse_bool(const char *s, bool *out)
{
	if (!strcmp(s, "on") || !strcmp(s, "true") || !strcmp(s, "1") || !strcmp(s, "yes"))
		*out = true;
	else if (!strcmp(s, "off") || !strcmp(s, "false") || !strcmp(s, "0") || !strcmp(s, "no"))
		*out = false;
	else
		return -1;
	return 0;
}

/* set_opt stores the text value of one option; on error writes a message naming `source`. */
static int set_opt(jq_config *cfg, const opt *o, const char *val, const char *source, FILE *err)
{
	char *base = (char *)cfg + o->offset;
	long v;

	switch (o->kind) {
	case OPT_STR: {
		char **p = (char **)base;
		char *copy = strdup(val);
		if (copy == NULL)
			goto fail;
		free(*p);
		*p = copy;
		return 0;
	}
	case OPT_INT:
		if (parse_long(val, o->min, o->max, &v) != 0)
			goto fail;
		*(int *)base = (int)v;
		return 0;
	case OPT_SIZE:
		if (parse_long(val, o->min, o->max, &v) != 0)
			goto fail;
		*(size_t *)base = (size_t)v;
		return 0;
	case OPT_BOOL:
		if (parse_bool(val, (bool *)base) != 0)
			goto fail;
		return 0;
	case OPT_LEVEL:
		if (jq_log_parse_level(val, (jq_log_level *)base) != 0)
			goto fail;
		return 0;
	case OPT_FORMAT:
		if (jq_log_parse_format(val, (jq_log_format *)base) != 0)
			goto fail;
		return 0;
	}
fail:
	if (o->kind == OPT_INT || o->kind == OPT_SIZE)
		fprintf(err, "jobqd: %s: invalid value '%s' (an integer from %ld to %ld)\n", source,
			val, o->min, o->max);
	else
		fprintf(err, "jobqd: %s: invalid value '%s'\n", source, val);
	return -1;
}

static void print_help(FILE *out)
{
	fprintf(out, "Usage: jobqd [OPTIONS]\n\n"
		     "The jobq service: a job queue on PostgreSQL, spoken to over nng.\n"
		     "Flags override environment variables, which override defaults.\n\n");
	for (size_t i = 0; i < NOPTS; i++) {
		const opt *o = &opts[i];
		fprintf(out, "  --%s=VALUE\n      %s\n      env %s", o->flag, o->help, o->env);
		if (o->def != NULL)
			fprintf(out, ", default %s", o->def);
		fputc('\n', out);
	}
	fprintf(out, "  --version\n      print the version and exit\n");
	fprintf(out, "  --help\n      this text\n");
}

static const opt *find_flag(const char *name, size_t len)
{
	for (size_t i = 0; i < NOPTS; i++) {
		if (strlen(opts[i].flag) == len && strncmp(opts[i].flag, name, len) == 0)
			return &opts[i];
	}
	return NULL;
}

static int load_defaults_and_env(jq_config *cfg, FILE *err)
{
	for (size_t i = 0; i < NOPTS; i++) {
		const opt *o = &opts[i];
		const char *env = getenv(o->env);
		if (o->def != NULL && set_opt(cfg, o, o->def, o->flag, err) != 0)
			return -1;
		if (env != NULL && *env != '\0' && set_opt(cfg, o, env, o->env, err) != 0)
			return -1;
	}
	return 0;
}

/* url_has_password: does a libpq connection string or URI carry a password? */
static bool url_has_password(const char *url)
{
	PQconninfoOption *o = PQconninfoParse(url, NULL);
	bool found = false;
	for (PQconninfoOption *i = o; i != NULL && i->keyword != NULL; i++)
		if (strcmp(i->keyword, "password") == 0 && i->val != NULL && i->val[0] != '\0')
			found = true;
	PQconninfoFree(o);
	return found;
}

/* note_secret_flag remembers a flag that put a secret on the command line. */
static void note_secret_flag(jq_config *cfg, const opt *o, const char *val)
{
	bool secret = strcmp(o->flag, "auth-token") == 0 ||
		      ((strcmp(o->flag, "database-url") == 0 || strcmp(o->flag, "listen-database-url") == 0) &&
		       url_has_password(val));
	if (!secret)
		return;
	for (int i = 0; i < cfg->nsecret_flags; i++)
		if (strcmp(cfg->secret_flags[i], o->flag) == 0)
			return;
	if (cfg->nsecret_flags < (int)(sizeof(cfg->secret_flags) / sizeof(cfg->secret_flags[0])))
		cfg->secret_flags[cfg->nsecret_flags++] = o->flag;
}

/* read_token_file sets cfg->auth_token from --auth-token-file (first line, no newline). */
static int read_token_file(jq_config *cfg, FILE *err)
{
	char buf[1024];
	FILE *f;
	size_t n;

	if (cfg->auth_token_file == NULL)
		return 0;
	if (cfg->auth_token != NULL) {
		fprintf(err, "jobqd: give the admin token once: --auth-token or --auth-token-file\n");
		return -1;
	}
	if ((f = fopen(cfg->auth_token_file, "r")) == NULL) {
		fprintf(err, "jobqd: --auth-token-file: %s: %s\n", cfg->auth_token_file, strerror(errno));
		return -1;
	}
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	if (buf[0] == '\0') {
		fprintf(err, "jobqd: --auth-token-file: %s is empty\n", cfg->auth_token_file);
		return -1;
	}
	cfg->auth_token = strdup(buf);
	explicit_bzero(buf, sizeof(buf));
	return cfg->auth_token != NULL ? 0 : -1;
}

/* check_limits: the sizes must fit one another, or some valid request could never be sent. */
static int check_limits(const jq_config *cfg, FILE *err)
{
	/* Room for the envelope and a job's other fields around the largest payload. */
	const size_t slack = 64 * 1024;
	if (cfg->max_message_bytes < slack || cfg->max_payload_bytes > cfg->max_message_bytes - slack) {
		fprintf(err, "jobqd: --max-message-bytes (%zu) must exceed --max-payload-bytes (%zu) by at "
			     "least %zu, so a job of the largest payload fits in a message\n",
			cfg->max_message_bytes, cfg->max_payload_bytes, slack);
		return -1;
	}
	if (cfg->max_inflight_bytes < cfg->max_message_bytes) {
		fprintf(err, "jobqd: --max-inflight-bytes (%zu) must be at least --max-message-bytes (%zu)\n",
			cfg->max_inflight_bytes, cfg->max_message_bytes);
		return -1;
	}
	return 0;
}

static int load_args(jq_config *cfg, int argc, char **argv, FILE *err)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *val;
		if (strncmp(a, "--", 2) != 0) {
			fprintf(err, "jobqd: unexpected argument '%s' (see --help)\n", a);
			return -1;
		}
		a += 2;
		const char *eq = strchr(a, '=');
		size_t len = eq ? (size_t)(eq - a) : strlen(a);
		const opt *o = find_flag(a, len);
		if (o == NULL) {
			fprintf(err, "jobqd: unknown option '--%.*s' (see --help)\n", (int)len, a);
			return -1;
		}
		if (eq != NULL) {
			val = eq + 1;
		} else if (i + 1 < argc) {
			val = argv[++i];
		} else {
			fprintf(err, "jobqd: option '--%s' needs a value\n", o->flag);
			return -1;
		}
		char source[80];
		snprintf(source, sizeof(source), "--%s", o->flag);
		if (set_opt(cfg, o, val, source, err) != 0)
			return -1;
		note_secret_flag(cfg, o, val);
	}
	return 0;
}

jq_config_result jq_config_load(jq_config *cfg, int argc, char **argv, FILE *out, FILE *err)
{
	memset(cfg, 0, sizeof(*cfg));
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			print_help(out);
			return JQ_CONFIG_HELP;
		}
		if (strcmp(argv[i], "--version") == 0)
			return JQ_CONFIG_VERSION;
	}
	if (load_defaults_and_env(cfg, err) != 0 || load_args(cfg, argc, argv, err) != 0)
		return JQ_CONFIG_ERROR;
	if (cfg->database_url == NULL || cfg->database_url[0] == '\0') {
		fprintf(err, "jobqd: JOBQ_DATABASE_URL (or --database-url) is required\n");
		return JQ_CONFIG_ERROR;
	}
	if (cfg->listen_database_url == NULL && (cfg->listen_database_url = strdup(cfg->database_url)) == NULL)
		return JQ_CONFIG_ERROR;
	if (check_limits(cfg, err) != 0 || read_token_file(cfg, err) != 0)
		return JQ_CONFIG_ERROR;
	if (cfg->tls_client_role != NULL && (cfg->tls_ca == NULL || cfg->tls_ca[0] == '\0')) {
		fprintf(err, "jobqd: --tls-client-role needs --tls-ca (only then are client certificates verified)\n");
		return JQ_CONFIG_ERROR;
	}
	if (cfg->max_reply_bytes < cfg->max_payload_bytes + JQ_REPLY_ONE_JOB_EXTRA) {
		fprintf(err, "jobqd: --max-reply-bytes must be at least --max-payload-bytes + %d (%zu), so "
			     "that a reply holds one job of the largest payload\n",
			JQ_REPLY_ONE_JOB_EXTRA, cfg->max_payload_bytes + JQ_REPLY_ONE_JOB_EXTRA);
		return JQ_CONFIG_ERROR;
	}
	if (cfg->console_addr != NULL && cfg->http_addr != NULL && strcmp(cfg->console_addr, "off") != 0 &&
	    cfg->console_addr[0] != '\0' && strcmp(cfg->console_addr, cfg->http_addr) == 0) {
		fprintf(err, "jobqd: --console-addr must differ from --http-addr (the console has its own "
			     "address, which /metrics scrapers never reach)\n");
		return JQ_CONFIG_ERROR;
	}
	if (cfg->metrics_auth && cfg->credentials_file == NULL && cfg->auth_token == NULL) {
		fprintf(err, "jobqd: --metrics-auth=on needs credentials (--credentials-file or an admin "
			     "token); without them /metrics would stay open\n");
		return JQ_CONFIG_ERROR;
	}
	return JQ_CONFIG_OK;
}

void jq_config_free(jq_config *cfg)
{
	for (size_t i = 0; i < NOPTS; i++) {
		if (opts[i].kind == OPT_STR) {
			char **p = (char **)((char *)cfg + opts[i].offset);
			free(*p);
			*p = NULL;
		}
	}
}
