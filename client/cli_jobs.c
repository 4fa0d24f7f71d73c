/*
 * cli_jobs.c — the producer and worker-side commands: enqueue, claim, heartbeat, complete, fail.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

#define MAX_BATCH 1000
#define DEFAULT_BATCH 500
/* A batch also ends at this much payload, so it fits jobqd's default message limit (4 MiB)
 * however long the lines are. */
#define BATCH_PAYLOAD_BYTES (1024 * 1024)

/* ---------------------------------------------------------------- enqueue */

static const char enqueue_help[] =
	"Usage: jobq enqueue --queue Q (--payload TEXT | --payload-file F | --stdin-lines) [OPTIONS]\n"
	"\n"
	"Enqueues jobs and prints each id (one per line; {\"id\":N} with --json).\n"
	"\n"
	"  -q, --queue Q              queue name ([A-Za-z0-9_.-]{1,64})\n"
	"  -p, --payload TEXT         the payload of one job\n"
	"  -f, --payload-file F       the payload of one job, read from file F (\"-\" = stdin)\n"
	"      --stdin-lines          one job per line of stdin (empty lines skipped), in batches\n"
	"      --priority N           lower runs first (-32768..32767, default 0)\n"
	"      --delay-ms N           run no earlier than N ms from now\n"
	"      --run-at-ms N          run no earlier than this Unix time in ms\n"
	"      --max-attempts N       attempts before the job fails for good, 1..1000 (default:\n"
	"                             the service's, 25)\n"
	"      --idempotency-key K    while a job with this key is unfinished, return its id\n"
	"      --batch-size N         jobs per Enqueue call with --stdin-lines (default 500, max 1000;\n"
	"                             a batch also ends at 1 MiB of payload)\n"
	"      --time-limit-ms N      each attempt may run N ms from its claim; past it the service\n"
	"                             fails it (retried per --max-attempts) and stops its worker\n"
	"      --concurrency-key K    the job's concurrency key (e.g. a customer id): at most the\n"
	"                             queue's --key-concurrency jobs with one key run at once\n"
	"      --wait                 (one job) wait until it finishes; print its output to stdout\n"
	"                             (with --json: one more object with status, output (base64) and\n"
	"                             last_error) and exit with its outcome: 0 completed, 3 failed,\n"
	"                             4 cancelled, 5 still unfinished when --wait-ms ran out\n"
	"      --wait-ms N            with --wait: give up after N ms (default: no limit)\n"
	"\n" CLI_GLOBAL_HELP;

/* Exit statuses of `enqueue --wait` beyond CLI_EXIT_OK (completed). */
enum { EXIT_JOB_FAILED = 3, EXIT_JOB_CANCELLED = 4, EXIT_JOB_UNFINISHED = 5 };
/* One Wait call waits at most this long (the service's limit); --wait asks again after it. */
#define WAIT_CALL_MS 300000

enum {
	OPT_STDIN_LINES = OPT_FIRST_COMMAND_OPT,
	OPT_PRIORITY,
	OPT_DELAY_MS,
	OPT_RUN_AT_MS,
	OPT_MAX_ATTEMPTS,
	OPT_IDEM_KEY,
	OPT_BATCH_SIZE,
	OPT_LIMIT,
	OPT_WORKER_ID,
	OPT_LEASE,
	OPT_WAIT_MS,
	OPT_ID,
	OPT_TOKEN,
	OPT_ERROR,
	OPT_FINAL,
	OPT_RETRY_IN_MS,
	OPT_PROGRESS,
	OPT_MESSAGE,
	OPT_OUTPUT,
	OPT_OUTPUT_FILE,
	OPT_WAIT,
	OPT_ENQ_WAIT_MS,
	OPT_TIME_LIMIT_MS,
	OPT_CONC_KEY,
};

typedef struct enqueue_args {
	jobq_job_spec tmpl; /* everything but the payload */
	const char *payload;
	const char *payload_file;
	bool stdin_lines;
	uint32_t batch_size;
	bool wait;
	int64_t wait_ms; /* -1: no limit */
} enqueue_args;

static void print_id(const cli *c, int64_t id)
{
	if (!c->json) {
		printf("%" PRId64 "\n", id);
		return;
	}
	json_out j;
	json_begin(&j, stdout);
	json_i64(&j, "id", id);
	json_end(&j);
}

static int enqueue_opt(cli *c, enqueue_args *a, int opt, const char *arg)
{
	int64_t v = 0;
	int rc = CLI_EXIT_OK;
	switch (opt) {
	case 'q':
		a->tmpl.queue = arg;
		break;
	case 'p':
		a->payload = arg;
		break;
	case 'f':
		a->payload_file = arg;
		break;
	case OPT_STDIN_LINES:
		a->stdin_lines = true;
		break;
	case OPT_PRIORITY:
		rc = cli_parse_i64(c, "--priority", arg, -32768, 32767, &v);
		a->tmpl.priority = (int32_t)v;
		break;
	case OPT_DELAY_MS:
		rc = cli_parse_u32(c, "--delay-ms", arg, UINT32_MAX, &a->tmpl.delay_ms);
		break;
	case OPT_RUN_AT_MS:
		rc = cli_parse_i64(c, "--run-at-ms", arg, 0, INT64_MAX, &a->tmpl.run_at_ms);
		break;
	case OPT_MAX_ATTEMPTS:
		rc = cli_parse_u32(c, "--max-attempts", arg, 1000, &a->tmpl.max_attempts);
		/* 0 would mean the service's default: say so rather than take it silently. */
		if (rc == CLI_EXIT_OK && a->tmpl.max_attempts == 0)
			rc = cli_usage_error(c, "--max-attempts must be 1..1000 (leave it out for the "
						"service's default, 25)");
		break;
	case OPT_IDEM_KEY:
		a->tmpl.idempotency_key = arg;
		break;
	case OPT_WAIT:
		a->wait = true;
		break;
	case OPT_CONC_KEY:
		a->tmpl.concurrency_key = arg;
		break;
	case OPT_TIME_LIMIT_MS:
		rc = cli_parse_u32(c, "--time-limit-ms", arg, 604800000, &a->tmpl.timeout_ms);
		break;
	case OPT_ENQ_WAIT_MS:
		rc = cli_parse_i64(c, "--wait-ms", arg, 0, INT64_MAX, &a->wait_ms);
		break;
	case OPT_BATCH_SIZE:
		rc = cli_parse_u32(c, "--batch-size", arg, MAX_BATCH, &a->batch_size);
		if (rc == CLI_EXIT_OK && a->batch_size == 0)
			rc = cli_usage_error(c, "--batch-size must be 1..%d", MAX_BATCH);
		break;
	default:
		if (!cli_global_opt(c, opt, arg))
			rc = CLI_EXIT_USAGE;
	}
	return rc;
}

static int enqueue_check(cli *c, const enqueue_args *a)
{
	int sources = (a->payload != NULL) + (a->payload_file != NULL) + a->stdin_lines;
	if (a->tmpl.queue == NULL)
		return cli_usage_error(c, "--queue is required");
	if (sources != 1)
		return cli_usage_error(c, "give exactly one of --payload, --payload-file, --stdin-lines");
	if (a->tmpl.delay_ms != 0 && a->tmpl.run_at_ms != 0)
		return cli_usage_error(c, "give --delay-ms or --run-at-ms, not both");
	if (a->wait && a->stdin_lines)
		return cli_usage_error(c, "--wait waits for one job: not with --stdin-lines");
	if (a->wait_ms >= 0 && !a->wait)
		return cli_usage_error(c, "--wait-ms goes with --wait");
	if (a->stdin_lines && a->tmpl.idempotency_key != NULL)
		return cli_usage_error(c, "--idempotency-key names one job; it cannot go with --stdin-lines");
	return CLI_EXIT_OK;
}

/* read_all reads a whole stream into a malloc'd buffer. */
static int read_all(FILE *f, uint8_t **out, size_t *len)
{
	size_t cap = 4096, n = 0;
	uint8_t *buf = malloc(cap);
	if (buf == NULL)
		return -1;
	for (;;) {
		if (n == cap) {
			uint8_t *nb = realloc(buf, cap * 2);
			if (nb == NULL)
				goto fail;
			buf = nb;
			cap *= 2;
		}
		size_t got = fread(buf + n, 1, cap - n, f);
		n += got;
		if (got == 0)
			break;
	}
	if (ferror(f))
		goto fail;
	*out = buf;
	*len = n;
	return 0;
fail:
	free(buf);
	return -1;
}

/* print_outcome prints a finished job's output (raw, or a JSON object with its status, output
 * and last error) and returns the exit status its outcome stands for. */
static int print_outcome(const cli *c, const jobq_job *job)
{
	if (c->json) {
		json_out j;
		json_begin(&j, stdout);
		json_i64(&j, "id", job->id);
		json_str(&j, "status", jobq_status_name(job->status));
		json_bytes(&j, "output", job->output, job->output_len);
		json_str(&j, "last_error", job->last_error[0] ? job->last_error : NULL);
		json_end(&j);
	} else if (job->output_len > 0) {
		fwrite(job->output, 1, job->output_len, stdout);
	}
	switch (job->status) {
	case JOBQ_STATUS_COMPLETED:
		return CLI_EXIT_OK;
	case JOBQ_STATUS_CANCELLED:
		fprintf(stderr, "jobq: enqueue: job %" PRId64 " was cancelled\n", job->id);
		return EXIT_JOB_CANCELLED;
	default:
		fprintf(stderr, "jobq: enqueue: job %" PRId64 " failed: %s\n", job->id, job->last_error);
		return EXIT_JOB_FAILED;
	}
}

/* wait_for waits for job id to finish (limit_ms < 0: no limit), then prints its outcome. */
static int wait_for(cli *c, int64_t id, int64_t limit_ms)
{
	int64_t until = limit_ms >= 0 ? cli_mono_ms() + limit_ms : INT64_MAX;
	jobq_error err = { 0 };
	for (;;) {
		int64_t left = until == INT64_MAX ? WAIT_CALL_MS : until - cli_mono_ms();
		jobq_job *jobs = NULL;
		size_t n = 0;
		bool done = false;
		int code = jobq_wait(c->client, &id, 1, (uint32_t)(left < 0 ? 0 : left > WAIT_CALL_MS ? WAIT_CALL_MS : left),
				     &jobs, &n, &done, &err);
		jobq_jobs_free(jobs, n);
		/* A service that stops answers UNAVAILABLE; another replica, or this one back, goes on. */
		if (code == JOBQ_UNAVAILABLE && cli_mono_ms() < until) {
			struct timespec pause = { .tv_sec = 0, .tv_nsec = 200 * 1000000L };
			nanosleep(&pause, NULL);
			continue;
		}
		if (code != JOBQ_OK)
			return cli_fail_err(c, &err);
		if (done)
			break;
		if (cli_mono_ms() >= until) {
			fprintf(stderr, "jobq: enqueue: job %" PRId64 " is not finished after %" PRId64 " ms\n",
				id, limit_ms);
			return EXIT_JOB_UNFINISHED;
		}
	}
	jobq_job *job = NULL;
	if (jobq_get(c->client, id, &job, NULL, NULL, &err) != JOBQ_OK)
		return cli_fail_err(c, &err);
	int rc = print_outcome(c, job);
	jobq_jobs_free(job, 1);
	return rc;
}

static int enqueue_one(cli *c, const enqueue_args *a)
{
	jobq_job_spec spec = a->tmpl;
	jobq_error err = { 0 };
	uint8_t *buf = NULL;
	int64_t id = 0;
	int rc;
	if (a->payload != NULL) {
		spec.payload = a->payload;
		spec.payload_len = strlen(a->payload);
	} else {
		bool use_stdin = strcmp(a->payload_file, "-") == 0;
		FILE *f = use_stdin ? stdin : fopen(a->payload_file, "rb");
		if (f == NULL)
			return cli_usage_error(c, "%s: %s", a->payload_file, strerror(errno));
		int r = read_all(f, &buf, &spec.payload_len);
		int saved = errno;
		if (!use_stdin)
			fclose(f);
		if (r != 0)
			return cli_fail(c, JOBQ_INTERNAL, "reading %s: %s", a->payload_file, strerror(saved));
		spec.payload = buf;
	}
	if ((rc = cli_connect(c)) != CLI_EXIT_OK)
		goto out;
	if (jobq_enqueue(c->client, &spec, 1, &id, &err) != JOBQ_OK) {
		rc = cli_fail_err(c, &err);
		goto out;
	}
	print_id(c, id);
	if (a->wait) {
		fflush(stdout);
		rc = wait_for(c, id, a->wait_ms);
	}
out:
	free(buf);
	return rc;
}

/* A batch of stdin lines: the specs point into lines[], which own the text. */
typedef struct line_batch {
	jobq_job_spec specs[MAX_BATCH];
	char *lines[MAX_BATCH];
	int64_t ids[MAX_BATCH];
	size_t n;
	size_t bytes; /* payload bytes in the batch */
} line_batch;

static void batch_clear(line_batch *b)
{
	for (size_t i = 0; i < b->n; i++)
		free(b->lines[i]);
	b->n = 0;
	b->bytes = 0;
}

static int batch_send(cli *c, line_batch *b, uint64_t *done)
{
	jobq_error err = { 0 };
	if (b->n == 0)
		return CLI_EXIT_OK;
	if (jobq_enqueue(c->client, b->specs, b->n, b->ids, &err) != JOBQ_OK) {
		/* Earlier batches are in: say how far we got so the caller can resume. */
		return cli_fail(c, err.code ? err.code : JOBQ_UNKNOWN, "%s (after %" PRIu64 " job%s enqueued)",
				err.message, *done, *done == 1 ? "" : "s");
	}
	for (size_t i = 0; i < b->n; i++)
		print_id(c, b->ids[i]);
	fflush(stdout);
	*done += b->n;
	batch_clear(b);
	return CLI_EXIT_OK;
}

static int enqueue_lines(cli *c, const enqueue_args *a)
{
	line_batch *b = calloc(1, sizeof(*b));
	char *line = NULL;
	size_t cap = 0;
	uint64_t done = 0;
	ssize_t len;
	int rc;
	if (b == NULL)
		return cli_fail(c, JOBQ_RESOURCE_EXHAUSTED, "out of memory");
	if ((rc = cli_connect(c)) != CLI_EXIT_OK)
		goto out;
	while ((len = getline(&line, &cap, stdin)) >= 0) {
		if (len > 0 && line[len - 1] == '\n')
			line[--len] = '\0';
		if (len == 0)
			continue;
		if (b->n > 0 && b->bytes + (size_t)len > BATCH_PAYLOAD_BYTES &&
		    (rc = batch_send(c, b, &done)) != CLI_EXIT_OK)
			goto out;
		b->bytes += (size_t)len;
		b->specs[b->n] = a->tmpl;
		b->specs[b->n].payload = line;
		b->specs[b->n].payload_len = (size_t)len;
		b->lines[b->n++] = line;
		line = NULL;
		cap = 0;
		if (b->n == a->batch_size && (rc = batch_send(c, b, &done)) != CLI_EXIT_OK)
			goto out;
	}
	if (ferror(stdin)) {
		rc = cli_fail(c, JOBQ_INTERNAL, "reading stdin: %s", strerror(errno));
		goto out;
	}
	rc = batch_send(c, b, &done);
out:
	free(line);
	batch_clear(b);
	free(b);
	return rc;
}

int cmd_enqueue(cli *c, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "queue", required_argument, NULL, 'q' },
		{ "payload", required_argument, NULL, 'p' },
		{ "payload-file", required_argument, NULL, 'f' },
		{ "stdin-lines", no_argument, NULL, OPT_STDIN_LINES },
		{ "priority", required_argument, NULL, OPT_PRIORITY },
		{ "delay-ms", required_argument, NULL, OPT_DELAY_MS },
		{ "run-at-ms", required_argument, NULL, OPT_RUN_AT_MS },
		{ "max-attempts", required_argument, NULL, OPT_MAX_ATTEMPTS },
		{ "idempotency-key", required_argument, NULL, OPT_IDEM_KEY },
		{ "batch-size", required_argument, NULL, OPT_BATCH_SIZE },
		{ "wait", no_argument, NULL, OPT_WAIT },
		{ "time-limit-ms", required_argument, NULL, OPT_TIME_LIMIT_MS },
		{ "concurrency-key", required_argument, NULL, OPT_CONC_KEY },
		{ "wait-ms", required_argument, NULL, OPT_ENQ_WAIT_MS },
		{ NULL, 0, NULL, 0 },
	};
	enqueue_args a = { .batch_size = DEFAULT_BATCH, .wait_ms = -1 };
	int opt, rc;
	while ((opt = cli_getopt(c, argc, argv, "q:p:f:", longopts)) != -1) {
		if (opt == '?')
			return CLI_EXIT_USAGE;
		if ((rc = enqueue_opt(c, &a, opt, optarg)) != CLI_EXIT_OK)
			return rc;
	}
	if (c->help)
		return cli_help(enqueue_help);
	if (optind < argc)
		return cli_usage_error(c, "unexpected argument '%s'", argv[optind]);
	if ((rc = enqueue_check(c, &a)) != CLI_EXIT_OK)
		return rc;
	return a.stdin_lines ? enqueue_lines(c, &a) : enqueue_one(c, &a);
}

/* ---------------------------------------------------------------- claim */

static const char claim_help[] =
	"Usage: jobq claim --queue Q [--limit N] [--worker-id W] [--lease SECONDS] [--wait-ms N]\n"
	"\n"
	"Claims up to N due jobs of Q with a lease and prints them: id, attempts, lease token,\n"
	"payload. Report each with `jobq complete` or `jobq fail` (or extend with `jobq heartbeat`)\n"
	"using its id and lease token before the lease runs out.\n"
	"\n"
	"  -q, --queue Q          queue name\n"
	"  -n, --limit N          at most N jobs (1..1000, default 1)\n"
	"      --worker-id W      recorded as the lease owner (default jobq-cli@HOST:PID)\n"
	"      --lease SECONDS    lease length (1..86400; default: the service's, 30)\n"
	"      --wait-ms N        wait up to N ms for a job when none is ready\n"
	"\n" CLI_GLOBAL_HELP;

static void print_claimed(const cli *c, const jobq_job *jobs, size_t n)
{
	if (!c->json && n == 0)
		printf("no jobs\n"); /* with --json: no line, as for every empty result */
	if (!c->json && n > 0)
		printf("%-10s %-8s %-12s %s\n", "ID", "ATTEMPTS", "LEASE_TOKEN", "PAYLOAD");
	for (size_t i = 0; i < n; i++) {
		const jobq_job *jb = &jobs[i];
		if (!c->json) {
			printf("%-10" PRId64 " %-8" PRIu32 " %-12" PRId64 " ", jb->id, jb->attempts, jb->lease_token);
			fmt_printable(stdout, jb->payload, jb->payload_len, 0);
			putchar('\n');
			continue;
		}
		json_out j;
		json_begin(&j, stdout);
		json_i64(&j, "id", jb->id);
		json_str(&j, "queue", jb->queue);
		json_u64(&j, "attempts", jb->attempts);
		json_u64(&j, "max_attempts", jb->max_attempts);
		json_i64(&j, "lease_token", jb->lease_token);
		json_time_ms(&j, "lease_expires_at_ms", jb->lease_expires_at_ms);
		json_bytes(&j, "payload", jb->payload, jb->payload_len);
		json_end(&j);
	}
}

int cmd_claim(cli *c, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "queue", required_argument, NULL, 'q' },
		{ "limit", required_argument, NULL, 'n' },
		{ "worker-id", required_argument, NULL, OPT_WORKER_ID },
		{ "lease", required_argument, NULL, OPT_LEASE },
		{ "wait-ms", required_argument, NULL, OPT_WAIT_MS },
		{ NULL, 0, NULL, 0 },
	};
	const char *queue = NULL, *worker_id = NULL;
	uint32_t limit = 1, lease = 0, wait_ms = 0;
	char wid[160];
	int opt, rc = CLI_EXIT_OK;
	while ((opt = cli_getopt(c, argc, argv, "q:n:", longopts)) != -1 && rc == CLI_EXIT_OK) {
		if (opt == '?')
			return CLI_EXIT_USAGE;
		if (opt == 'q')
			queue = optarg;
		else if (opt == 'n')
			rc = cli_parse_u32(c, "--limit", optarg, MAX_BATCH, &limit);
		else if (opt == OPT_WORKER_ID)
			worker_id = optarg;
		else if (opt == OPT_LEASE)
			rc = cli_parse_u32(c, "--lease", optarg, 86400, &lease);
		else if (opt == OPT_WAIT_MS)
			rc = cli_parse_u32(c, "--wait-ms", optarg, UINT32_MAX, &wait_ms);
		else
			cli_global_opt(c, opt, optarg);
	}
	if (rc != CLI_EXIT_OK)
		return rc;
	if (c->help)
		return cli_help(claim_help);
	if (optind < argc)
		return cli_usage_error(c, "unexpected argument '%s'", argv[optind]);
	if (queue == NULL)
		return cli_usage_error(c, "--queue is required");
	if (worker_id == NULL) {
		cli_default_worker_id(wid, sizeof(wid), "jobq-cli");
		worker_id = wid;
	}
	if ((rc = cli_connect(c)) != CLI_EXIT_OK)
		return rc;
	/* The call may wait wait_ms on the service: give the transport that much more. */
	jobq_job *jobs = NULL;
	size_t n = 0;
	jobq_error err = { 0 };
	if (jobq_claim(c->client, queue, limit, worker_id, lease, wait_ms, &jobs, &n, &err) != JOBQ_OK)
		return cli_fail_err(c, &err);
	print_claimed(c, jobs, n);
	jobq_jobs_free(jobs, n);
	return CLI_EXIT_OK;
}

/* ---------------------------------------------------------------- heartbeat, complete, fail */

static const char heartbeat_help[] =
	"Usage: jobq heartbeat --id N --token T [--lease SECONDS] [--progress P [--message TEXT]]\n"
	"\n"
	"Extends the lease of claimed job N (lease token T) by SECONDS from now (default 30).\n"
	"A lease that is no longer held answers FAILED_PRECONDITION; when the job was cancelled\n"
	"under this lease the message says so (stop working on it).\n"
	"\n"
	"  --progress P       report progress: P percent (0..100), shown by jobq get and list\n"
	"  --message TEXT     with --progress: a short note (at most 256 bytes)\n"
	"\n" CLI_GLOBAL_HELP;

static const char complete_help[] =
	"Usage: jobq complete --id N --token T [--output TEXT | --output-file F]\n"
	"\n"
	"Completes claimed job N (lease token T). A lease that is no longer held (or a job\n"
	"cancelled meanwhile) answers FAILED_PRECONDITION and changes nothing.\n"
	"\n"
	"  --output TEXT      the job's result, kept with it (jobq get shows it; at most the\n"
	"                     service's payload limit)\n"
	"  --output-file F    the result read from file F (\"-\" = stdin)\n"
	"\n" CLI_GLOBAL_HELP;

static const char fail_help[] =
	"Usage: jobq fail --id N --token T --error TEXT [--final] [--retry-in-ms N]\n"
	"\n"
	"Fails claimed job N (lease token T) with TEXT. The job is retried after a backoff until\n"
	"its attempts are used up, unless --final. A lease that is no longer held answers\n"
	"FAILED_PRECONDITION and changes nothing.\n"
	"\n"
	"  --error TEXT       what went wrong (kept in the job's failure history)\n"
	"  --final            do not retry: the job is archive_failed at once\n"
	"  --retry-in-ms N    retry after N ms instead of the service's backoff\n"
	"  --worker-id W      recorded in the failure history (default jobq-cli@HOST:PID)\n"
	"\n" CLI_GLOBAL_HELP;

typedef struct lease_args {
	jobq_failure f; /* id, token, and for fail the rest */
	bool have_id, have_token;
	uint32_t lease;
	const char *worker_id;
	int64_t progress;  /* -1 = none */
	const char *message;
	const char *output, *output_file;
} lease_args;

static int lease_opt(cli *c, lease_args *a, int opt, const char *arg)
{
	switch (opt) {
	case OPT_ID:
		a->have_id = true;
		return cli_parse_i64(c, "--id", arg, 1, INT64_MAX, &a->f.id);
	case OPT_TOKEN:
		a->have_token = true;
		return cli_parse_i64(c, "--token", arg, INT64_MIN, INT64_MAX, &a->f.lease_token);
	case OPT_LEASE:
		return cli_parse_u32(c, "--lease", arg, 86400, &a->lease);
	case OPT_ERROR:
		a->f.error = arg;
		return CLI_EXIT_OK;
	case OPT_FINAL:
		a->f.final = true;
		return CLI_EXIT_OK;
	case OPT_RETRY_IN_MS:
		return cli_parse_u32(c, "--retry-in-ms", arg, UINT32_MAX, &a->f.retry_in_ms);
	case OPT_WORKER_ID:
		a->worker_id = arg;
		return CLI_EXIT_OK;
	case OPT_PROGRESS:
		return cli_parse_i64(c, "--progress", arg, 0, 100, &a->progress);
	case OPT_MESSAGE:
		a->message = arg;
		return CLI_EXIT_OK;
	case OPT_OUTPUT:
		a->output = arg;
		return CLI_EXIT_OK;
	case OPT_OUTPUT_FILE:
		a->output_file = arg;
		return CLI_EXIT_OK;
	default:
		return cli_global_opt(c, opt, arg) ? CLI_EXIT_OK : CLI_EXIT_USAGE;
	}
}

/* parse_lease_cmd parses the options of heartbeat/complete/fail (the table says which). */
static int parse_lease_cmd(cli *c, int argc, char **argv, const struct option *longopts,
			   const char *help, lease_args *a)
{
	int opt, rc;
	while ((opt = cli_getopt(c, argc, argv, "", longopts)) != -1) {
		if (opt == '?')
			return CLI_EXIT_USAGE;
		if ((rc = lease_opt(c, a, opt, optarg)) != CLI_EXIT_OK)
			return rc;
	}
	if (c->help) {
		cli_help(help);
		return -1;
	}
	if (optind < argc)
		return cli_usage_error(c, "unexpected argument '%s'", argv[optind]);
	if (!a->have_id || !a->have_token)
		return cli_usage_error(c, "--id and --token are required");
	return cli_connect(c);
}

static void print_item(const cli *c, const jobq_result *r, const char *human)
{
	char when[40];
	if (!c->json) {
		printf("job %" PRId64 " %s", r->id, human);
		if (r->lease_expires_at_ms != 0)
			printf(" (lease until %s)", fmt_time_ms(when, sizeof(when), r->lease_expires_at_ms));
		else if (r->status == JOBQ_STATUS_PENDING && r->run_at_ms != 0)
			printf(" (retry at %s)", fmt_time_ms(when, sizeof(when), r->run_at_ms));
		else if (r->status == JOBQ_STATUS_FAILED)
			printf(" (failed for good)");
		putchar('\n');
		return;
	}
	json_out j;
	json_begin(&j, stdout);
	json_i64(&j, "id", r->id);
	if (r->status != JOBQ_STATUS_UNSPECIFIED)
		json_str(&j, "status", jobq_status_name(r->status));
	if (r->lease_expires_at_ms != 0)
		json_time_ms(&j, "lease_expires_at_ms", r->lease_expires_at_ms);
	if (r->run_at_ms != 0)
		json_time_ms(&j, "run_at_ms", r->run_at_ms);
	json_end(&j);
}

int cmd_heartbeat(cli *c, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "id", required_argument, NULL, OPT_ID },
		{ "token", required_argument, NULL, OPT_TOKEN },
		{ "lease", required_argument, NULL, OPT_LEASE },
		{ "progress", required_argument, NULL, OPT_PROGRESS },
		{ "message", required_argument, NULL, OPT_MESSAGE },
		{ NULL, 0, NULL, 0 },
	};
	lease_args a = { .progress = -1 };
	int rc = parse_lease_cmd(c, argc, argv, longopts, heartbeat_help, &a);
	if (rc != CLI_EXIT_OK)
		return rc < 0 ? CLI_EXIT_OK : rc;
	if (a.message != NULL && a.progress < 0)
		return cli_usage_error(c, "--message goes with --progress");
	jobq_lease l = { .id = a.f.id, .lease_token = a.f.lease_token };
	jobq_progress p = { .percent = (int)a.progress, .message = a.message };
	jobq_result r = { .id = a.f.id };
	jobq_error err = { 0 };
	rc = jobq_heartbeat_progress(c->client, &l, a.progress >= 0 ? &p : NULL, 1, a.lease, &r, &err);
	if (rc != JOBQ_OK)
		return cli_item_fail(c, rc, &err, &r);
	r.id = a.f.id;
	print_item(c, &r, "lease extended");
	return CLI_EXIT_OK;
}

int cmd_complete(cli *c, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "id", required_argument, NULL, OPT_ID },
		{ "token", required_argument, NULL, OPT_TOKEN },
		{ "output", required_argument, NULL, OPT_OUTPUT },
		{ "output-file", required_argument, NULL, OPT_OUTPUT_FILE },
		{ NULL, 0, NULL, 0 },
	};
	lease_args a = { 0 };
	uint8_t *file = NULL;
	jobq_output out = { 0 };
	int rc = parse_lease_cmd(c, argc, argv, longopts, complete_help, &a);
	if (rc != CLI_EXIT_OK)
		return rc < 0 ? CLI_EXIT_OK : rc;
	if (a.output != NULL && a.output_file != NULL)
		return cli_usage_error(c, "give --output or --output-file, not both");
	if (a.output != NULL)
		out = (jobq_output){ .data = a.output, .len = strlen(a.output) };
	if (a.output_file != NULL) {
		FILE *f = strcmp(a.output_file, "-") == 0 ? stdin : fopen(a.output_file, "rb");
		int bad = f == NULL || read_all(f, &file, &out.len) != 0;
		if (f != NULL && f != stdin)
			fclose(f);
		if (bad)
			return cli_fail(c, JOBQ_INVALID_ARGUMENT, "--output-file %s: %s", a.output_file,
					strerror(errno));
		out.data = file;
	}
	jobq_lease l = { .id = a.f.id, .lease_token = a.f.lease_token };
	jobq_result r = { .id = a.f.id };
	jobq_error err = { 0 };
	rc = jobq_complete_output(c->client, &l, out.data != NULL ? &out : NULL, 1, &r, &err);
	free(file);
	if (rc != JOBQ_OK)
		return cli_item_fail(c, rc, &err, &r);
	r.id = a.f.id;
	if (r.status == JOBQ_STATUS_UNSPECIFIED)
		r.status = JOBQ_STATUS_COMPLETED;
	print_item(c, &r, "completed");
	return CLI_EXIT_OK;
}

int cmd_fail(cli *c, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "id", required_argument, NULL, OPT_ID },
		{ "token", required_argument, NULL, OPT_TOKEN },
		{ "error", required_argument, NULL, OPT_ERROR },
		{ "final", no_argument, NULL, OPT_FINAL },
		{ "retry-in-ms", required_argument, NULL, OPT_RETRY_IN_MS },
		{ "worker-id", required_argument, NULL, OPT_WORKER_ID },
		{ NULL, 0, NULL, 0 },
	};
	lease_args a = { 0 };
	char wid[160];
	int rc = parse_lease_cmd(c, argc, argv, longopts, fail_help, &a);
	if (rc != CLI_EXIT_OK)
		return rc < 0 ? CLI_EXIT_OK : rc;
	if (a.f.error == NULL)
		return cli_usage_error(c, "--error is required");
	if (a.worker_id == NULL) {
		cli_default_worker_id(wid, sizeof(wid), "jobq-cli");
		a.worker_id = wid;
	}
	jobq_result r = { .id = a.f.id };
	jobq_error err = { 0 };
	rc = jobq_fail(c->client, &a.f, 1, a.worker_id, &r, &err);
	if (rc != JOBQ_OK)
		return cli_item_fail(c, rc, &err, &r);
	r.id = a.f.id;
	print_item(c, &r, "failed");
	return CLI_EXIT_OK;
}
