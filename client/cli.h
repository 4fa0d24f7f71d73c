/*
 * cli.h — internals shared by the jobq command-line client (client/cli*.c). Not installed and
 * not part of libjobq: the CLI talks to the service only through jobq.h.
 */
#ifndef JOBQ_CLI_H
#define JOBQ_CLI_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "jobq.h"

/* Exit statuses: 0 success, 1 the service (or the network) refused, 2 a usage error. */
enum { CLI_EXIT_OK = 0, CLI_EXIT_FAIL = 1, CLI_EXIT_USAGE = 2 };

/* Long-option ids of the global flags; every command accepts them (see CLI_GLOBAL_OPTIONS). */
enum {
	OPT_RPC_URL = 1000,
	OPT_PUB_URL,
	OPT_TIMEOUT_MS,
	OPT_AUTH_TOKEN,
	OPT_AUTH_TOKEN_FILE,
	OPT_TLS_CERT,
	OPT_TLS_KEY,
	OPT_TLS_CA,
	OPT_JSON,
	OPT_HELP,
	OPT_FIRST_COMMAND_OPT, /* commands number their own options from here */
};

#define CLI_GLOBAL_OPTIONS                                                                          \
	{ "rpc-url", required_argument, NULL, OPT_RPC_URL },                                        \
	{ "pub-url", required_argument, NULL, OPT_PUB_URL },                                        \
	{ "timeout-ms", required_argument, NULL, OPT_TIMEOUT_MS },                                  \
	{ "auth-token", required_argument, NULL, OPT_AUTH_TOKEN },                                  \
	{ "auth-token-file", required_argument, NULL, OPT_AUTH_TOKEN_FILE },                        \
	{ "tls-cert", required_argument, NULL, OPT_TLS_CERT },                                      \
	{ "tls-key", required_argument, NULL, OPT_TLS_KEY },                                        \
	{ "tls-ca", required_argument, NULL, OPT_TLS_CA },                                          \
	{ "json", no_argument, NULL, OPT_JSON },                                                    \
	{ "help", no_argument, NULL, OPT_HELP }

#define CLI_GLOBAL_HELP                                                                             \
	"Global options:\n"                                                                         \
	"  --rpc-url URL      service RPC address (env JOBQ_RPC_URL, default tcp://127.0.0.1:7100)\n" \
	"  --pub-url URL      service PUB address (env JOBQ_PUB_URL, default tcp://127.0.0.1:7101)\n" \
	"  --timeout-ms N     per-call timeout (default 10000)\n"                                     \
	"  --auth-token T     credential (env JOBQ_AUTH_TOKEN; a flag is visible to other users)\n" \
	"  --auth-token-file F  file holding the credential (env JOBQ_AUTH_TOKEN_FILE)\n"           \
	"  --tls-cert F       client certificate, PEM, for tls+tcp:// (env JOBQ_TLS_CERT)\n"        \
	"  --tls-key F        its private key, PEM (env JOBQ_TLS_KEY)\n"                            \
	"  --tls-ca F         CA that signed the service's certificate (env JOBQ_TLS_CA)\n"         \
	"  --json             one JSON object per line on stdout\n"                                 \
	"  --help             this text\n"

/* The state of one command run: what the global flags said, and the connection. */
typedef struct cli {
	const char *cmd; /* "enqueue", ... : names the command in error lines */
	jobq_options opts;
	bool json;
	bool help;
	jobq_client *client;
} cli;

/* A command: parses its own argv (argv[0] is the command name) and returns an exit status. */
typedef int (*cli_command_fn)(cli *c, int argc, char **argv);

/* --- cli.c: option plumbing, errors, connection --- */

/* cli_global_opt applies a global flag; returns true if opt was one. */
bool cli_global_opt(cli *c, int opt, const char *arg);

/* cli_getopt wraps getopt_long with the command's long options and the global ones; it prints
 * an error line and returns '?' for an unknown flag or a missing argument. A leading '+' in
 * shortopts stops at the first operand (the worker's COMMAND). */
int cli_getopt(cli *c, int argc, char **argv, const char *shortopts, const struct option *longopts);

/* cli_usage_error prints "jobq: CMD: INVALID_ARGUMENT: ..." and returns CLI_EXIT_USAGE. */
int cli_usage_error(const cli *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* cli_fail prints "jobq: CMD: CODE_NAME: message" and returns CLI_EXIT_FAIL. */
int cli_fail(const cli *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* cli_fail_err reports a library error. */
int cli_fail_err(const cli *c, const jobq_error *err);


/* cli_help prints text to stdout and returns CLI_EXIT_OK. */
int cli_help(const char *text);

/* cli_connect dials the service (c->client) or reports why not; returns CLI_EXIT_OK or an exit. */
int cli_connect(cli *c);

/* Strict number parsing for flags and operands: the whole string, in range, else a usage error
 * (the return value is then CLI_EXIT_USAGE, otherwise CLI_EXIT_OK). */
int cli_parse_i64(const cli *c, const char *what, const char *s, int64_t min, int64_t max, int64_t *out);
int cli_parse_u32(const cli *c, const char *what, const char *s, uint32_t max, uint32_t *out);

/* cli_default_worker_id writes "<prefix>@<hostname>:<pid>" (the lease owner the service records). */
void cli_default_worker_id(char *buf, size_t size, const char *prefix);

/* cli_item_fail reports the failure of a one-job call (Heartbeat, Complete, Fail, ...): the
 * message comes from err, or from the item's result when the library put it there. */
int cli_item_fail(const cli *c, int rc, const jobq_error *err, const jobq_result *r);

/* cli_report_results prints one error line per failed item of a batch call; returns how many. */
size_t cli_report_results(const cli *c, const jobq_result *r, size_t n);

/* --- cli_output.c: JSON lines and human-readable text --- */

/* A JSON object being written to a stream: json_begin, fields, json_end (which adds '\n'). */
typedef struct json_out {
	FILE *f;
	bool first;
} json_out;

void json_begin(json_out *j, FILE *f);
void json_end(json_out *j);
void json_key(json_out *j, const char *key); /* for hand-written values (arrays) */
void json_str(json_out *j, const char *key, const char *val); /* NULL writes null */
void json_i64(json_out *j, const char *key, int64_t v);
void json_u64(json_out *j, const char *key, uint64_t v);
void json_double(json_out *j, const char *key, double v);
void json_bool(json_out *j, const char *key, bool v);
/* json_bytes writes "key": the bytes as a string when they are valid UTF-8, else
 * "key_base64": their base64. */
void json_bytes(json_out *j, const char *key, const uint8_t *p, size_t n);
/* json_time_ms writes "key": ms and, for a non-zero time, also "key_iso" ("...Z"). */
void json_time_ms(json_out *j, const char *key, int64_t ms);
void json_write_string(FILE *f, const char *s, size_t n); /* a quoted, escaped JSON string */

/* json_job writes every field of a job (payload only when include_payload). */
void json_job_fields(json_out *j, const jobq_job *job, bool include_payload);

/* utf8_valid tells whether n bytes are valid UTF-8 without NUL bytes. */
bool utf8_valid(const uint8_t *p, size_t n);

/* utf8_sanitize copies n bytes into dst (size >= n + 1), replacing every byte that is not part
 * of a valid UTF-8 sequence (and NUL) with '?'; returns the length written. */
size_t utf8_sanitize(char *dst, const uint8_t *p, size_t n);

/* fmt_time_ms formats Unix ms as "2024-05-01T12:00:00.123Z" ("-" for 0). buf >= 32 bytes. */
const char *fmt_time_ms(char *buf, size_t size, int64_t ms);

/* fmt_printable writes p as one line of text for a table: control characters as \n, \t, \xNN;
 * at most max_chars characters (0 = all), "..." after a cut. */
void fmt_printable(FILE *f, const uint8_t *p, size_t n, size_t max_chars);

/* status_short: "pending", "processing", ... for tables. */
const char *status_short(jobq_status s);

/* cli_now_ms (CLOCK_REALTIME) and cli_mono_ms (CLOCK_MONOTONIC), in milliseconds. */
int64_t cli_now_ms(void);
int64_t cli_mono_ms(void);

/* --- the commands (cli_jobs.c, cli_admin.c, cli_watch.c, cli_worker.c, cli_schedule.c) --- */
int cmd_enqueue(cli *c, int argc, char **argv);
int cmd_claim(cli *c, int argc, char **argv);
int cmd_heartbeat(cli *c, int argc, char **argv);
int cmd_complete(cli *c, int argc, char **argv);
int cmd_fail(cli *c, int argc, char **argv);
int cmd_get(cli *c, int argc, char **argv);
int cmd_list(cli *c, int argc, char **argv);
int cmd_stats(cli *c, int argc, char **argv);
int cmd_retry(cli *c, int argc, char **argv);
int cmd_cancel(cli *c, int argc, char **argv);
int cmd_watch(cli *c, int argc, char **argv);
int cmd_worker(cli *c, int argc, char **argv);
int cmd_pause(cli *c, int argc, char **argv);
int cmd_resume(cli *c, int argc, char **argv);
int cmd_queue(cli *c, int argc, char **argv);

/* cli_queue.c: a queue's flow settings as one word list ("paused concurrency 5 rate 100/1s",
 * "-" for none) and as JSON fields ("paused", and each limit that is set). */
const char *cli_fmt_flow(char *buf, size_t size, const jobq_queue_flow *f);
void cli_json_flow(json_out *j, const jobq_queue_flow *f);
int cmd_schedule(cli *c, int argc, char **argv); /* cli_schedule.c */

#endif
