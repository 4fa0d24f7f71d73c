/*
 * jobq — the command-line client: argument plumbing shared by every command, error lines, the
 * connection, and main(), which dispatches to the command functions in cli_*.c.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define MAX_LONGOPTS 64

static const char main_help[] =
	"Usage: jobq [GLOBAL OPTIONS] COMMAND [OPTIONS]\n"
	"\n"
	"The command-line client of the jobq service, and a ready-made worker runner.\n"
	"\n"
	"Commands:\n"
	"  enqueue     enqueue jobs (--payload, --payload-file or --stdin-lines)\n"
	"  claim       claim due jobs of a queue with a lease\n"
	"  heartbeat   extend a lease\n"
	"  complete    complete a claimed job\n"
	"  fail        fail a claimed job (retried unless --final)\n"
	"  get         one job with its failure history\n"
	"  list        jobs by queue and state\n"
	"  stats       counts by queue and state\n"
	"  retry       failed or cancelled jobs back to pending\n"
	"  cancel      cancel pending, failed or running jobs\n"
	"  watch       print announcements of claimable jobs as they come\n"
	"  worker      run a command for every job of a queue\n"
	"  pause       pause a queue (Claims get none of its jobs) until resume\n"
	"  resume      resume a paused queue\n"
	"  queue set   set or remove a queue's concurrency and rate limits\n"
	"  schedule    periodic jobs: schedule add|list|rm\n"
	"\n"
	"`jobq COMMAND --help` describes each command.\n"
	"\n" CLI_GLOBAL_HELP
	"  --version          print the version\n"
	"\n"
	"Every failure exits non-zero (1; 2 for a usage error) with one line on stderr:\n"
	"  jobq: COMMAND: CODE_NAME: message\n";

static const struct {
	const char *name;
	cli_command_fn fn;
} commands[] = {
	{ "enqueue", cmd_enqueue }, { "claim", cmd_claim },   { "heartbeat", cmd_heartbeat },
	{ "complete", cmd_complete }, { "fail", cmd_fail },   { "get", cmd_get },
	{ "list", cmd_list },       { "stats", cmd_stats },   { "retry", cmd_retry },
	{ "cancel", cmd_cancel },   { "watch", cmd_watch },   { "worker", cmd_worker },
	{ "pause", cmd_pause },     { "resume", cmd_resume }, { "queue", cmd_queue },
	{ "schedule", cmd_schedule },
};

static void verror(const cli *c, int code, const char *fmt, va_list ap)
{
	char msg[1024];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	fprintf(stderr, "jobq: %s: %s: %s\n", c->cmd, jobq_code_name(code), msg);
}

int cli_usage_error(const cli *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	verror(c, JOBQ_INVALID_ARGUMENT, fmt, ap);
	va_end(ap);
	return CLI_EXIT_USAGE;
}

int cli_fail(const cli *c, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	verror(c, code, fmt, ap);
	va_end(ap);
	return CLI_EXIT_FAIL;
}

int cli_fail_err(const cli *c, const jobq_error *err)
{
	/* A library that forgot to set the message still yields a readable line. */
	const char *msg = err->message[0] != '\0' ? err->message : "failed";
	int code = err->code != JOBQ_OK ? err->code : JOBQ_UNKNOWN;
	return cli_fail(c, code, "%s", msg);
}

int cli_help(const char *text)
{
	fputs(text, stdout);
	return CLI_EXIT_OK;
}

bool cli_global_opt(cli *c, int opt, const char *arg)
{
	switch (opt) {
	case OPT_RPC_URL:
		c->opts.rpc_url = arg;
		return true;
	case OPT_PUB_URL:
		c->opts.pub_url = arg;
		return true;
	case OPT_TIMEOUT_MS: {
		int64_t v = 0;
		/* A bad value here is reported on connect; keep the plumbing total. */
		if (cli_parse_i64(c, "--timeout-ms", arg, 1, INT_MAX, &v) != CLI_EXIT_OK)
			c->opts.timeout_ms = -1;
		else
			c->opts.timeout_ms = (int)v;
		return true;
	}
	case OPT_AUTH_TOKEN:
		c->opts.auth_token = arg;
		fprintf(stderr, "jobq: warning: --auth-token is readable by every local user in /proc; "
				"use JOBQ_AUTH_TOKEN or --auth-token-file\n");
		return true;
	case OPT_AUTH_TOKEN_FILE:
		c->opts.auth_token_file = arg;
		return true;
	case OPT_TLS_CERT:
		c->opts.tls_cert = arg;
		return true;
	case OPT_TLS_KEY:
		c->opts.tls_key = arg;
		return true;
	case OPT_TLS_CA:
		c->opts.tls_ca = arg;
		return true;
	case OPT_JSON:
		c->json = true;
		return true;
	case OPT_HELP:
		c->help = true;
		return true;
	default:
		return false;
	}
}

static const struct option global_longopts[] = { CLI_GLOBAL_OPTIONS, { NULL, 0, NULL, 0 } };

int cli_getopt(cli *c, int argc, char **argv, const char *shortopts, const struct option *longopts)
{
	/* getopt_long wants one table: the command's options, then the global ones. */
	static struct option all[MAX_LONGOPTS];
	static char shorts[64];
	size_t n = 0;
	for (const struct option *o = longopts; o != NULL && o->name != NULL && n < MAX_LONGOPTS - 8; o++)
		all[n++] = *o;
	for (const struct option *o = global_longopts; o->name != NULL; o++)
		all[n++] = *o;
	memset(&all[n], 0, sizeof(all[n]));
	/* ':' after a possible '+' makes a missing argument return ':' instead of printing. */
	bool stop_at_operand = shortopts[0] == '+';
	snprintf(shorts, sizeof(shorts), "%s:%s", stop_at_operand ? "+" : "",
		 shortopts + (stop_at_operand ? 1 : 0));
	opterr = 0;
	int opt = getopt_long(argc, argv, shorts, all, NULL);
	if (opt == ':') {
		cli_usage_error(c, "%s needs a value", argv[optind - 1]);
		return '?';
	}
	if (opt == '?') {
		if (optopt != 0 && optopt < OPT_RPC_URL)
			cli_usage_error(c, "unknown option -%c (see jobq %s --help)", optopt, c->cmd);
		else
			cli_usage_error(c, "unknown option %s (see jobq %s --help)", argv[optind - 1], c->cmd);
		return '?';
	}
	return opt;
}

int cli_parse_i64(const cli *c, const char *what, const char *s, int64_t min, int64_t max, int64_t *out)
{
	char *end = NULL;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (s[0] == '\0' || *end != '\0' || errno != 0)
		return cli_usage_error(c, "%s: not a number: '%s'", what, s);
	if (v < min || v > max)
		return cli_usage_error(c, "%s: %lld is out of range %" PRId64 "..%" PRId64, what, v, min, max);
	*out = (int64_t)v;
	return CLI_EXIT_OK;
}

int cli_parse_u32(const cli *c, const char *what, const char *s, uint32_t max, uint32_t *out)
{
	int64_t v = 0;
	int rc = cli_parse_i64(c, what, s, 0, max, &v);
	if (rc == CLI_EXIT_OK)
		*out = (uint32_t)v;
	return rc;
}

int cli_connect(cli *c)
{
	jobq_error err = { 0 };
	if (c->opts.timeout_ms < 0)
		return CLI_EXIT_USAGE; /* cli_global_opt already said why */
	if (jobq_connect(&c->opts, &c->client, &err) != JOBQ_OK)
		return cli_fail_err(c, &err);
	return CLI_EXIT_OK;
}

void cli_default_worker_id(char *buf, size_t size, const char *prefix)
{
	char host[64] = "localhost";
	gethostname(host, sizeof(host) - 1);
	host[sizeof(host) - 1] = '\0';
	snprintf(buf, size, "%s@%s:%ld", prefix, host, (long)getpid());
}

int cli_item_fail(const cli *c, int rc, const jobq_error *err, const jobq_result *r)
{
	if (err->message[0] != '\0')
		return cli_fail(c, rc, "%s", err->message);
	if (r->message[0] != '\0')
		return cli_fail(c, rc, "job %" PRId64 ": %s", r->id, r->message);
	return cli_fail(c, rc, "job %" PRId64 ": failed", r->id);
}

size_t cli_report_results(const cli *c, const jobq_result *r, size_t n)
{
	size_t failed = 0;
	for (size_t i = 0; i < n; i++) {
		if (r[i].code == JOBQ_OK)
			continue;
		cli_fail(c, r[i].code, "job %" PRId64 ": %s", r[i].id,
			 r[i].message[0] != '\0' ? r[i].message : "failed");
		failed++;
	}
	return failed;
}

int64_t cli_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t cli_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* split_global takes "--name=value" or "--name value" at argv[*i]; returns the option id (0 for
 * something that is not a global flag) and sets *val. */
static int split_global(int argc, char **argv, int *i, const char **val)
{
	const char *a = argv[*i] + 2;
	for (const struct option *o = global_longopts; o->name != NULL; o++) {
		size_t len = strlen(o->name);
		if (strncmp(a, o->name, len) != 0 || (a[len] != '\0' && a[len] != '='))
			continue;
		*val = NULL;
		if (o->has_arg == no_argument)
			return a[len] == '\0' ? o->val : 0;
		if (a[len] == '=')
			*val = a + len + 1;
		else if (*i + 1 < argc)
			*val = argv[++*i];
		else
			return 0;
		return o->val;
	}
	return 0;
}

int main(int argc, char **argv)
{
	cli c = { .cmd = "jobq" };
	int i = 1;
	/* Global flags may come before the command too: jobq --rpc-url URL stats. */
	for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
		if (strcmp(argv[i], "--version") == 0) {
			printf("jobq %s\n", jobq_version());
			return CLI_EXIT_OK;
		}
		const char *val = NULL;
		int opt = split_global(argc, argv, &i, &val);
		if (opt == 0) {
			fprintf(stderr, "jobq: %s: INVALID_ARGUMENT: unknown option (see jobq --help)\n", argv[i]);
			return CLI_EXIT_USAGE;
		}
		cli_global_opt(&c, opt, val);
	}
	if (i >= argc) {
		if (c.help)
			return cli_help(main_help);
		fputs(main_help, stderr);
		return CLI_EXIT_USAGE;
	}
	for (size_t k = 0; k < sizeof(commands) / sizeof(commands[0]); k++) {
		if (strcmp(argv[i], commands[k].name) != 0)
			continue;
		c.cmd = commands[k].name;
		optind = 0; /* glibc: start afresh on the command's own argv */
		int rc = commands[k].fn(&c, argc - i, argv + i);
		/* Bounded even when nng 1.5.2 hangs closing the socket (jobq_close). */
		if (c.client != NULL)
			jobq_close(c.client);
		if (fflush(stdout) != 0 && rc == CLI_EXIT_OK)
			return cli_fail(&c, JOBQ_INTERNAL, "writing the output: %s", strerror(errno));
		return rc;
	}
	if (strcmp(argv[i], "help") == 0)
		return cli_help(main_help);
	/* The offending word stands where the command would, keeping the line's three fields. */
	fprintf(stderr, "jobq: %s: INVALID_ARGUMENT: unknown command (see jobq --help)\n", argv[i]);
	return CLI_EXIT_USAGE;
}
