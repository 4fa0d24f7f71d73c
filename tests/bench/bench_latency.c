/*
 * bench_latency — single-call latencies over RPC (libjobq), as the median of ITER calls:
 *
 *   bench_latency claim NAME ITER QUEUE   enqueue one job (untimed), claim it (timed), complete
 *                                         it (untimed); prints `BENCH NAME <p50> ms`. run.sh runs
 *                                         it on an almost empty table and again with 1,000,000
 *                                         finished jobs of the same queue
 *   bench_latency get NAME ITER           Get of one job; prints `BENCH NAME <p50> us`
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "jobq.h"

/* claim_once returns the claim's duration in microseconds. */
static double claim_once(jobq_client *c, const char *queue)
{
	jobq_job *jobs = NULL;
	size_t n = 0;
	jobq_error e;
	bench_enqueue_one(c, queue);
	int64_t t0 = bench_now_us();
	if (jobq_claim(c, queue, 1, "bench-claim", 60, 0, &jobs, &n, &e) != JOBQ_OK || n != 1)
		bench_die("claim: %s (got %zu jobs)", e.message, n);
	double us = (double)(bench_now_us() - t0);
	jobq_lease l = { jobs[0].id, jobs[0].lease_token };
	jobq_jobs_free(jobs, n);
	if (jobq_complete(c, &l, 1, NULL, &e) != JOBQ_OK)
		bench_die("complete: %s", e.message);
	return us;
}

static double get_once(jobq_client *c, int64_t id)
{
	jobq_job *job = NULL;
	jobq_error e;
	int64_t t0 = bench_now_us();
	if (jobq_get(c, id, &job, NULL, NULL, &e) != JOBQ_OK)
		bench_die("get: %s", e.message);
	double us = (double)(bench_now_us() - t0);
	jobq_jobs_free(job, 1);
	return us;
}

int main(int argc, char **argv)
{
	if (argc < 4 || (!strcmp(argv[1], "claim") && argc != 5))
		bench_die("usage: bench_latency claim NAME ITER QUEUE | get NAME ITER");
	const char *name = argv[2];
	long iter = bench_arg_long(argv[3], "ITER");
	bool claim = !strcmp(argv[1], "claim");
	double *v = calloc((size_t)iter, sizeof(*v));
	jobq_options o = { .timeout_ms = 10000 };
	jobq_client *c = NULL;
	jobq_error e;
	if (v == NULL || jobq_connect(&o, &c, &e) != JOBQ_OK)
		bench_die("connect failed");
	int64_t id = claim ? 0 : bench_enqueue_one(c, "bench_get");
	for (int i = 0; i < 20; i++) /* warm caches and the connection first */
		claim ? claim_once(c, argv[4]) : get_once(c, id);
	for (long i = 0; i < iter; i++)
		v[i] = claim ? claim_once(c, argv[4]) : get_once(c, id);
	double p50 = bench_percentile(v, (size_t)iter, 50), p90 = bench_percentile(v, (size_t)iter, 90);
	if (claim) {
		printf("%s: %ld claims, p50 %.3f ms, p90 %.3f ms\n", name, iter, p50 / 1000, p90 / 1000);
		bench_print(name, p50 / 1000, "ms");
	} else {
		printf("%s: %ld Gets, p50 %.1f us, p90 %.1f us\n", name, iter, p50, p90);
		bench_print(name, p50, "us");
	}
	bench_bound_close(5);
	jobq_close(c);
	free(v);
	return 0;
}
