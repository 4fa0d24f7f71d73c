/*
 * cli_admin.c — the operator's commands: get, list, stats, retry, cancel (pause, resume and
 * queue set are in cli_queue.c).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define MAX_IDS 1000

enum {
	OPT_STATE = OPT_FIRST_COMMAND_OPT,
	OPT_LIMIT,
	OPT_AFTER_ID,
	OPT_ALL,
	OPT_PAYLOAD,
	OPT_ALL_FAILED,
};

/* parse_plain parses a command that takes only global flags and -q/--queue (when queue is not
 * NULL); operands stay at argv[optind..]. Returns -1 after printing help. */
static int parse_plain(cli *c, int argc, char **argv, const char *help, const char **queue)
{
	static const struct option with_queue[] = {
		{ "queue", required_argument, NULL, 'q' },
		{ NULL, 0, NULL, 0 },
	};
	static const struct option none[] = { { NULL, 0, NULL, 0 } };
	int opt;
	while ((opt = cli_getopt(c, argc, argv, queue != NULL ? "q:" : "", queue != NULL ? with_queue : none)) != -1) {
		if (opt == '?')
			return CLI_EXIT_USAGE;
		if (opt == 'q' && queue != NULL)
			*queue = optarg;
		else
			cli_global_opt(c, opt, optarg);
	}
	if (c->help) {
		cli_help(help);
		return -1;
	}
	return CLI_EXIT_OK;
}

/* ---------------------------------------------------------------- get */

static const char get_help[] =
	"Usage: jobq get ID\n"
	"\n"
	"Prints one job (every field, the payload, the worker's last progress report and the output\n"
	"its Complete kept) and its failure history, oldest first.\n"
	"\n" CLI_GLOBAL_HELP;

static void print_field(const char *name, const char *val)
{
	printf("%-16s %s\n", name, val != NULL && val[0] != '\0' ? val : "-");
}

static void print_time_field(const char *name, int64_t ms)
{
	char buf[40];
	print_field(name, fmt_time_ms(buf, sizeof(buf), ms));
}

static void print_job_human(const jobq_job *jb, const jobq_failure_record *h, size_t nh)
{
	char buf[64];
	snprintf(buf, sizeof(buf), "%" PRId64, jb->id);
	print_field("id:", buf);
	print_field("queue:", jb->queue);
	print_field("status:", jobq_status_name(jb->status) != NULL ? jobq_status_name(jb->status) : "?");
	print_field("previous:", jobq_status_name(jb->prev_status));
	snprintf(buf, sizeof(buf), "%" PRIu32 " of %" PRIu32, jb->attempts, jb->max_attempts);
	print_field("attempts:", buf);
	snprintf(buf, sizeof(buf), "%" PRId32, jb->priority);
	print_field("priority:", buf);
	print_time_field("run_at:", jb->run_at_ms);
	print_field("lease_owner:", jb->lease_owner);
	print_time_field("lease_expires:", jb->lease_expires_at_ms);
	snprintf(buf, sizeof(buf), "%" PRId64, jb->lease_token);
	print_field("lease_token:", buf);
	print_field("idempotency_key:", jb->idempotency_key);
	print_field("concurrency_key:", jb->concurrency_key);
	print_time_field("created_at:", jb->created_at_ms);
	print_time_field("updated_at:", jb->updated_at_ms);
	print_time_field("finished_at:", jb->finished_at_ms);
	print_field("last_error:", jb->last_error);
	if (jb->timeout_ms > 0) {
		snprintf(buf, sizeof(buf), "%" PRIu32 " ms", jb->timeout_ms);
		print_field("time_limit:", buf);
	}
	if (jb->progress_percent >= 0) {
		char when[40];
		printf("%-16s %" PRId32 "%%%s%s (at %s)\n", "progress:", jb->progress_percent,
		       jb->progress_message != NULL && jb->progress_message[0] ? " " : "",
		       jb->progress_message != NULL ? jb->progress_message : "",
		       fmt_time_ms(when, sizeof(when), jb->progress_at_ms));
	}
	printf("%-16s ", "payload:");
	fmt_printable(stdout, jb->payload, jb->payload_len, 2000);
	printf(" (%zu byte%s)\n", jb->payload_len, jb->payload_len == 1 ? "" : "s");
	if (jb->output_len > 0) {
		printf("%-16s ", "output:");
		fmt_printable(stdout, jb->output, jb->output_len, 2000);
		printf(" (%zu byte%s)\n", jb->output_len, jb->output_len == 1 ? "" : "s");
	}
	if (nh == 0)
		return;
	printf("\nfailures:\n  %-8s %-25s %-30s %s\n", "ATTEMPT", "FAILED_AT", "WORKER", "ERROR");
	for (size_t i = 0; i < nh; i++) {
		printf("  %-8" PRIu32 " %-25s %-30s ", h[i].attempt,
		       fmt_time_ms(buf, sizeof(buf), h[i].failed_at_ms), h[i].worker_id ? h[i].worker_id : "-");
		const char *e = h[i].error != NULL ? h[i].error : "";
		fmt_printable(stdout, (const uint8_t *)e, strlen(e), 200);
		putchar('\n');
	}
}

static void print_job_json(const jobq_job *jb, const jobq_failure_record *h, size_t nh)
{
	json_out j;
	json_begin(&j, stdout);
	json_job_fields(&j, jb, true);
	json_key(&j, "failures");
	putchar('[');
	for (size_t i = 0; i < nh; i++) {
		json_out f;
		if (i > 0)
			putchar(',');
		f.f = stdout;
		f.first = true;
		putchar('{');
		json_u64(&f, "attempt", h[i].attempt);
		json_str(&f, "worker_id", h[i].worker_id);
		json_str(&f, "error", h[i].error);
		json_time_ms(&f, "failed_at_ms", h[i].failed_at_ms);
		putchar('}');
	}
	putchar(']');
	json_end(&j);
}

int cmd_get(cli *c, int argc, char **argv)
{
	int rc = parse_plain(c, argc, argv, get_help, NULL);
	int64_t id = 0;
	if (rc != CLI_EXIT_OK)
		return rc < 0 ? CLI_EXIT_OK : rc;
	if (argc - optind != 1)
		return cli_usage_error(c, "give exactly one job id");
	if ((rc = cli_parse_i64(c, "job id", argv[optind], 1, INT64_MAX, &id)) != CLI_EXIT_OK)
		return rc;
	if ((rc = cli_connect(c)) != CLI_EXIT_OK)
		return rc;
	jobq_job *job = NULL;
	jobq_failure_record *hist = NULL;
	size_t nh = 0;
	jobq_error err = { 0 };
	if (jobq_get(c->client, id, &job, &hist, &nh, &err) != JOBQ_OK)
		return cli_fail_err(c, &err);
	if (c->json)
		print_job_json(job, hist, nh);
	else
		print_job_human(job, hist, nh);
	jobq_jobs_free(job, 1);
	jobq_failures_free(hist, nh);
	return CLI_EXIT_OK;
}

/* ---------------------------------------------------------------- list */

static const char list_help[] =
	"Usage: jobq list [--queue Q] [--state STATE] [--limit N] [--after-id N] [--all] [--payload]\n"
	"\n"
	"Lists jobs by ascending id, one page (or every page with --all). Failed jobs show their\n"
	"last error. Without --all, a further page is announced on stderr with its --after-id.\n"
	"\n"
	"  -q, --queue Q       only this queue\n"
	"  -s, --state STATE   archive_pending|archive_processing|archive_completed|archive_failed|\n"
	"                      archive_cancelled (or pending, processing, ...)\n"
	"  -n, --limit N       jobs per page (1..1000, default 100)\n"
	"      --after-id N    start after job N\n"
	"      --all           follow every page\n"
	"      --payload       include the payloads\n"
	"\n" CLI_GLOBAL_HELP;

static void list_header(void)
{
	printf("%-10s %-16s %-11s %-9s %-5s %-24s %s\n", "ID", "QUEUE", "STATE", "ATTEMPTS", "PRIO",
	       "UPDATED", "ERROR / PAYLOAD");
}

static void list_row(const cli *c, const jobq_job *jb, bool payload)
{
	if (c->json) {
		json_out j;
		json_begin(&j, stdout);
		json_job_fields(&j, jb, payload);
		json_end(&j);
		return;
	}
	char buf[40], att[24];
	snprintf(att, sizeof(att), "%" PRIu32 "/%" PRIu32, jb->attempts, jb->max_attempts);
	printf("%-10" PRId64 " %-16s %-11s %-9s %-5" PRId32 " %-24s ", jb->id, jb->queue ? jb->queue : "",
	       status_short(jb->status), att, jb->priority, fmt_time_ms(buf, sizeof(buf), jb->updated_at_ms));
	/* A failed job's error is what the operator is looking for; otherwise the payload. */
	if (jb->last_error != NULL && jb->last_error[0] != '\0' && jb->status != JOBQ_STATUS_COMPLETED) {
		fmt_printable(stdout, (const uint8_t *)jb->last_error, strlen(jb->last_error), 100);
		if (payload)
			fputs("  ", stdout);
	}
	if (jb->status == JOBQ_STATUS_PROCESSING && jb->progress_percent >= 0) {
		printf("[%" PRId32 "%%] ", jb->progress_percent);
		if (jb->progress_message != NULL)
			fmt_printable(stdout, (const uint8_t *)jb->progress_message, strlen(jb->progress_message), 60);
		if (payload)
			fputs("  ", stdout);
	}
	if (payload)
		fmt_printable(stdout, jb->payload, jb->payload_len, 60);
	putchar('\n');
}

typedef struct list_args {
	jobq_list_options o;
	bool all;
} list_args;

static int list_opt(cli *c, list_args *a, int opt, const char *arg)
{
	switch (opt) {
	case 'q':
		a->o.queue = arg;
		return CLI_EXIT_OK;
	case 's':
		if (jobq_status_parse(arg, &a->o.status) != 0)
			return cli_usage_error(c, "--state: unknown state '%s'", arg);
		return CLI_EXIT_OK;
	case 'n':
		return cli_parse_u32(c, "--limit", arg, 1000, &a->o.limit);
	case OPT_AFTER_ID:
		return cli_parse_i64(c, "--after-id", arg, 0, INT64_MAX, &a->o.after_id);
	case OPT_ALL:
		a->all = true;
		return CLI_EXIT_OK;
	case OPT_PAYLOAD:
		a->o.include_payload = true;
		return CLI_EXIT_OK;
	default:
		return cli_global_opt(c, opt, arg) ? CLI_EXIT_OK : CLI_EXIT_USAGE;
	}
}

int cmd_list(cli *c, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "queue", required_argument, NULL, 'q' },
		{ "state", required_argument, NULL, 's' },
		{ "limit", required_argument, NULL, 'n' },
		{ "after-id", required_argument, NULL, OPT_AFTER_ID },
		{ "all", no_argument, NULL, OPT_ALL },
		{ "payload", no_argument, NULL, OPT_PAYLOAD },
		{ NULL, 0, NULL, 0 },
	};
	list_args a = { 0 };
	int opt, rc;
	while ((opt = cli_getopt(c, argc, argv, "q:s:n:", longopts)) != -1) {
		if (opt == '?')
			return CLI_EXIT_USAGE;
		if ((rc = list_opt(c, &a, opt, optarg)) != CLI_EXIT_OK)
			return rc;
	}
	if (c->help)
		return cli_help(list_help);
	if (optind < argc)
		return cli_usage_error(c, "unexpected argument '%s'", argv[optind]);
	if ((rc = cli_connect(c)) != CLI_EXIT_OK)
		return rc;
	bool header = false;
	for (;;) {
		jobq_job *jobs = NULL;
		size_t n = 0;
		int64_t next = 0;
		jobq_error err = { 0 };
		if (jobq_list(c->client, &a.o, &jobs, &n, &next, &err) != JOBQ_OK)
			return cli_fail_err(c, &err);
		if (!c->json && !header && n > 0) {
			list_header();
			header = true;
		}
		for (size_t i = 0; i < n; i++)
			list_row(c, &jobs[i], a.o.include_payload);
		jobq_jobs_free(jobs, n);
		if (next == 0)
			break;
		if (!a.all) {
			fprintf(stderr, "jobq: list: more jobs follow: --after-id %" PRId64 " (or --all)\n", next);
			break;
		}
		a.o.after_id = next;
	}
	if (!c->json && !header)
		printf("no jobs\n"); /* with --json: no line, as for every empty result */
	return CLI_EXIT_OK;
}

/* ---------------------------------------------------------------- stats */

static const char stats_help[] =
	"Usage: jobq stats [--queue Q]\n"
	"\n"
	"Counts jobs by queue and state. PENDING counts every pending job (SCHEDULED of them are\n"
	"not due yet); OLDEST_DUE is how long the oldest due pending job has waited; FLOW is the\n"
	"queue's pause and limits (jobq pause, jobq queue set), \"-\" for none. A queue with\n"
	"settings is listed even without jobs.\n"
	"\n"
	"  -q, --queue Q   only this queue\n"
	"\n" CLI_GLOBAL_HELP;

/* fmt_age: 0s, 4.2s, 3m04s, 5h02m, 3d04h. */
static const char *fmt_age(char *buf, size_t size, double secs)
{
	long s = (long)secs;
	if (secs <= 0)
		snprintf(buf, size, "-");
	else if (secs < 60)
		snprintf(buf, size, "%.1fs", secs);
	else if (s < 3600)
		snprintf(buf, size, "%ldm%02lds", s / 60, s % 60);
	else if (s < 86400)
		snprintf(buf, size, "%ldh%02ldm", s / 3600, (s % 3600) / 60);
	else
		snprintf(buf, size, "%ldd%02ldh", s / 86400, (s % 86400) / 3600);
	return buf;
}

int cmd_stats(cli *c, int argc, char **argv)
{
	const char *queue = NULL;
	int rc = parse_plain(c, argc, argv, stats_help, &queue);
	if (rc != CLI_EXIT_OK)
		return rc < 0 ? CLI_EXIT_OK : rc;
	if (optind < argc)
		return cli_usage_error(c, "unexpected argument '%s'", argv[optind]);
	if ((rc = cli_connect(c)) != CLI_EXIT_OK)
		return rc;
	jobq_queue_stats *st = NULL;
	size_t n = 0;
	jobq_error err = { 0 };
	if (jobq_stats(c->client, queue, &st, &n, &err) != JOBQ_OK)
		return cli_fail_err(c, &err);
	if (!c->json)
		printf("%-20s %9s %9s %10s %9s %7s %9s %10s  %s\n", "QUEUE", "PENDING", "SCHEDULED", "PROCESSING",
		       "COMPLETED", "FAILED", "CANCELLED", "OLDEST_DUE", "FLOW");
	for (size_t i = 0; i < n; i++) {
		const jobq_queue_stats *q = &st[i];
		char age[32], flow[160];
		if (!c->json) {
			printf("%-20s %9" PRIu64 " %9" PRIu64 " %10" PRIu64 " %9" PRIu64 " %7" PRIu64 " %9" PRIu64
			       " %10s  %s\n",
			       q->queue, q->pending, q->scheduled, q->processing, q->completed, q->failed,
			       q->cancelled, fmt_age(age, sizeof(age), q->oldest_due_age_seconds),
			       cli_fmt_flow(flow, sizeof(flow), &q->flow));
			continue;
		}
		json_out j;
		json_begin(&j, stdout);
		json_str(&j, "queue", q->queue);
		json_u64(&j, "pending", q->pending);
		json_u64(&j, "scheduled", q->scheduled);
		json_u64(&j, "processing", q->processing);
		json_u64(&j, "completed", q->completed);
		json_u64(&j, "failed", q->failed);
		json_u64(&j, "cancelled", q->cancelled);
		json_double(&j, "oldest_due_age_seconds", q->oldest_due_age_seconds);
		cli_json_flow(&j, &q->flow);
		json_end(&j);
	}
	jobq_stats_free(st, n);
	return CLI_EXIT_OK;
}

/* ---------------------------------------------------------------- retry, cancel */

static const char retry_help[] =
	"Usage: jobq retry ID...\n"
	"       jobq retry --all-failed --queue Q\n"
	"\n"
	"Puts failed or cancelled jobs back to archive_pending; their attempts start again.\n"
	"\n"
	"  --all-failed    every archive_failed job of the queue\n"
	"  -q, --queue Q   the queue (with --all-failed)\n"
	"\n" CLI_GLOBAL_HELP;

static const char cancel_help[] =
	"Usage: jobq cancel ID...\n"
	"\n"
	"Cancels pending, failed or running jobs. A running job ends archive_cancelled at once:\n"
	"its lease ends, its worker hears of it (jobq worker kills the command) and its later\n"
	"complete or fail is refused. A completed job answers FAILED_PRECONDITION.\n"
	"\n" CLI_GLOBAL_HELP;

typedef int (*by_ids_fn)(jobq_client *, const int64_t *, size_t, jobq_result *, jobq_error *);

/* run_by_ids parses the id operands, calls fn, prints the jobs that went through and one error
 * line for each that did not. */
static int run_by_ids(cli *c, int argc, char **argv, by_ids_fn fn, jobq_status after, const char *verb)
{
	size_t n = (size_t)(argc - optind);
	int64_t ids[MAX_IDS];
	jobq_result res[MAX_IDS];
	jobq_error err = { 0 };
	int rc;
	if (n == 0)
		return cli_usage_error(c, "give at least one job id");
	if (n > MAX_IDS)
		return cli_usage_error(c, "at most %d ids at once", MAX_IDS);
	for (size_t i = 0; i < n; i++)
		if ((rc = cli_parse_i64(c, "job id", argv[optind + (int)i], 1, INT64_MAX, &ids[i])) != CLI_EXIT_OK)
			return rc;
	if ((rc = cli_connect(c)) != CLI_EXIT_OK)
		return rc;
	memset(res, 0, sizeof(res[0]) * n);
	for (size_t i = 0; i < n; i++)
		res[i].id = ids[i];
	rc = fn(c->client, ids, n, res, &err);
	if (rc != JOBQ_OK && n == 1)
		return cli_item_fail(c, rc, &err, &res[0]); /* the code is the job's (or the call's) */
	if (rc != JOBQ_OK)
		return cli_fail_err(c, &err); /* the call itself failed */
	for (size_t i = 0; i < n; i++) {
		if (res[i].code != JOBQ_OK)
			continue;
		if (c->json) {
			json_out j;
			json_begin(&j, stdout);
			json_i64(&j, "id", ids[i]);
			json_str(&j, "status", jobq_status_name(res[i].status != JOBQ_STATUS_UNSPECIFIED ? res[i].status : after));
			json_end(&j);
		} else {
			printf("job %" PRId64 " %s\n", ids[i], verb);
		}
	}
	return cli_report_results(c, res, n) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
}

int cmd_retry(cli *c, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "queue", required_argument, NULL, 'q' },
		{ "all-failed", no_argument, NULL, OPT_ALL_FAILED },
		{ NULL, 0, NULL, 0 },
	};
	const char *queue = NULL;
	bool all_failed = false;
	int opt, rc;
	while ((opt = cli_getopt(c, argc, argv, "q:", longopts)) != -1) {
		if (opt == '?')
			return CLI_EXIT_USAGE;
		if (opt == 'q')
			queue = optarg;
		else if (opt == OPT_ALL_FAILED)
			all_failed = true;
		else
			cli_global_opt(c, opt, optarg);
	}
	if (c->help)
		return cli_help(retry_help);
	if (!all_failed)
		return queue != NULL ? cli_usage_error(c, "--queue goes with --all-failed")
				     : run_by_ids(c, argc, argv, jobq_retry, JOBQ_STATUS_PENDING, "retried");
	if (queue == NULL || optind < argc)
		return cli_usage_error(c, "--all-failed needs --queue Q and no ids");
	if ((rc = cli_connect(c)) != CLI_EXIT_OK)
		return rc;
	uint32_t count = 0;
	jobq_error err = { 0 };
	if (jobq_retry_all_failed(c->client, queue, &count, &err) != JOBQ_OK)
		return cli_fail_err(c, &err);
	if (c->json) {
		json_out j;
		json_begin(&j, stdout);
		json_str(&j, "queue", queue);
		json_u64(&j, "retried", count);
		json_end(&j);
	} else {
		printf("retried %" PRIu32 " failed job%s of queue %s\n", count, count == 1 ? "" : "s", queue);
	}
	return CLI_EXIT_OK;
}

int cmd_cancel(cli *c, int argc, char **argv)
{
	int rc = parse_plain(c, argc, argv, cancel_help, NULL);
	if (rc != CLI_EXIT_OK)
		return rc < 0 ? CLI_EXIT_OK : rc;
	return run_by_ids(c, argc, argv, jobq_cancel, JOBQ_STATUS_CANCELLED, "cancelled");
}
