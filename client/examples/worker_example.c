/*
 * worker_example.c — a small jobq worker to copy: it claims jobs of one queue in batches,
 * "processes" each (prints its payload), completes the good ones in one batch call and fails
 * the ones whose payload is "fail". It sleeps on the queue's announcements between batches.
 *
 *   build/bin/examples/worker_example [QUEUE]     (default queue "default"; Ctrl-C stops)
 *   build/bin/examples/worker_example --help
 *
 * The service is found through JOBQ_RPC_URL / JOBQ_PUB_URL (defaults tcp://127.0.0.1:7100/7101).
 * Build your own: cc -Iclient my_worker.c build/lib/libjobq.a -lnng -lprotobuf-c -lpthread
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jobq.h"

#define BATCH 16          /* jobs claimed per call */
#define LEASE_SECONDS 30  /* how long a claimed job is ours without a heartbeat */
#define IDLE_WAIT_MS 2000 /* announcements are a wake-up call; poll anyway this often (and
			   notice Ctrl-C within this long) */

static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

/* process does the work of one job; returns NULL on success or an error text. Short jobs like
 * this need no heartbeat. A job that may run longer than LEASE_SECONDS must call
 * jobq_heartbeat (e.g. every LEASE_SECONDS / 3) or the service will hand it to another worker
 * and this worker's Complete will answer FAILED_PRECONDITION. */
static const char *process(const jobq_job *job)
{
	printf("job %lld (attempt %u): %.*s\n", (long long)job->id, job->attempts,
	       (int)job->payload_len, (const char *)job->payload);
	if (strcmp((const char *)job->payload, "fail") == 0)
		return "the payload asked to fail";
	return NULL;
}

/* log_results prints the jobs whose report did not go through. */
static void log_results(const char *what, const jobq_result *results, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (results[i].code != JOBQ_OK)
			fprintf(stderr, "%s job %lld: %s: %s\n", what, (long long)results[i].id,
				jobq_code_name(results[i].code), results[i].message);
}

/* report completes the successes and fails the failures, each group in one call. A result of
 * FAILED_PRECONDITION means the lease was lost (the job was rescued and may run elsewhere):
 * log it and move on, never redo the job blindly. */
static void report(jobq_client *c, const char *worker_id, const jobq_job *jobs, size_t n,
		   const char *const *errors)
{
	jobq_lease done[BATCH];
	jobq_failure failed[BATCH];
	jobq_result results[BATCH];
	size_t nd = 0, nf = 0;
	jobq_error err;

	for (size_t i = 0; i < n; i++) {
		if (errors[i] == NULL)
			done[nd++] = (jobq_lease){ jobs[i].id, jobs[i].lease_token };
		else
			failed[nf++] = (jobq_failure){ .id = jobs[i].id, .lease_token = jobs[i].lease_token,
						       .error = errors[i] };
	}
	/* The per-job results tell everything (a call that failed as a whole gives every job its
	 * code), so the return values are not needed here. */
	if (nd > 0) {
		(void)jobq_complete(c, done, nd, results, &err);
		log_results("complete", results, nd);
	}
	if (nf > 0) {
		(void)jobq_fail(c, failed, nf, worker_id, results, &err);
		log_results("fail", results, nf);
	}
}

/* wait_for_work sleeps until the queue announces jobs or IDLE_WAIT_MS passes. */
static void wait_for_work(jobq_sub *sub)
{
	jobq_announcement a;
	if (jobq_sub_next(sub, IDLE_WAIT_MS, &a, NULL) == JOBQ_OK)
		jobq_announcement_free(&a);
}

static int run(jobq_client *c, jobq_sub *sub, const char *queue, const char *worker_id)
{
	jobq_error err;
	while (!stopping) {
		jobq_job *jobs = NULL;
		size_t n = 0;
		int code = jobq_claim(c, queue, BATCH, worker_id, LEASE_SECONDS, 0, &jobs, &n, &err);
		if (code == JOBQ_UNAVAILABLE || code == JOBQ_DEADLINE_EXCEEDED) {
			fprintf(stderr, "claim: %s: %s (retrying)\n", jobq_code_name(code), err.message);
			sleep(1);
			continue;
		}
		if (code != JOBQ_OK) {
			fprintf(stderr, "claim: %s: %s\n", jobq_code_name(code), err.message);
			return 1;
		}
		if (n == 0) {
			wait_for_work(sub);
			continue;
		}
		const char *errors[BATCH];
		for (size_t i = 0; i < n; i++)
			errors[i] = process(&jobs[i]);
		report(c, worker_id, jobs, n, errors);
		jobq_jobs_free(jobs, n);
	}
	return 0;
}

static const char usage[] =
	"Usage: worker_example [QUEUE]\n"
	"\n"
	"Claims jobs of QUEUE (default \"default\") in batches of 16, prints each payload, completes\n"
	"them, and fails those whose payload is \"fail\". Ctrl-C stops it.\n"
	"The service: JOBQ_RPC_URL and JOBQ_PUB_URL (default tcp://127.0.0.1:7100 and :7101),\n"
	"JOBQ_AUTH_TOKEN or JOBQ_AUTH_TOKEN_FILE, JOBQ_TLS_CERT, JOBQ_TLS_KEY, JOBQ_TLS_CA.\n";

int main(int argc, char **argv)
{
	/* An option is never a queue name: "--help" would otherwise be a queue of its own. */
	if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		fputs(usage, stdout);
		return 0;
	}
	if (argc > 1 && (argv[1][0] == '-' || argc > 2)) {
		const char *bad = argv[1][0] == '-' ? argv[1] : argv[2];
		fprintf(stderr, "worker_example: unexpected argument '%s'\n%s", bad, usage);
		return 2;
	}
	const char *queue = argc > 1 ? argv[1] : "default";
	char worker_id[64];
	jobq_client *c = NULL;
	jobq_sub *sub = NULL;
	jobq_error err;
	int rc = 1;

	snprintf(worker_id, sizeof(worker_id), "worker-example-%ld", (long)getpid());
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (jobq_connect(NULL, &c, &err) != JOBQ_OK || jobq_subscribe(NULL, queue, &sub, &err) != JOBQ_OK) {
		fprintf(stderr, "worker_example: %s: %s\n", jobq_code_name(err.code), err.message);
		goto out;
	}
	rc = run(c, sub, queue, worker_id);
out:
	jobq_sub_close(sub);
	jobq_close(c);
	return rc;
}
