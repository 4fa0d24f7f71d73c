/*
 * bench_enqueue — enqueue throughput over RPC: THREADS clients (one jobq_client each) enqueue
 * JOBS jobs in all, BATCH per call. With `sub`, a subscriber (jobq_subscribe) listens to the
 * queue meanwhile and counts what it hears, so the cost of publishing is included too. Whether
 * the database notifies at all is run.sh's business (it disables the notify triggers for the
 * "without notifications" figure).
 *
 *   bench_enqueue NAME JOBS BATCH THREADS [sub]      prints `BENCH NAME <jobs/s> jobs/s`
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_util.h"
#include "jobq.h"

#define MAX_BATCH 1000
#define MAX_THREADS 64

typedef struct run {
	char queue[64];
	long jobs_per_thread;
	size_t batch;
	atomic_int failed;
	atomic_int stop_sub;
	atomic_long heard;
} run;

static jobq_client *connect_or_die(void)
{
	jobq_options o = { .timeout_ms = 60000 };
	jobq_client *c = NULL;
	jobq_error e;
	if (jobq_connect(&o, &c, &e) != JOBQ_OK)
		bench_die("jobq_connect: %s", e.message);
	return c;
}

static void *enqueuer(void *arg)
{
	run *r = arg;
	jobq_client *c = connect_or_die();
	jobq_job_spec specs[MAX_BATCH];
	int64_t ids[MAX_BATCH];
	jobq_error e;
	for (size_t i = 0; i < r->batch; i++)
		specs[i] = (jobq_job_spec){ .queue = r->queue, .payload = "{}", .payload_len = 2 };
	for (long sent = 0; sent < r->jobs_per_thread && !atomic_load(&r->failed);) {
		size_t n = r->batch;
		if ((long)n > r->jobs_per_thread - sent)
			n = (size_t)(r->jobs_per_thread - sent);
		if (jobq_enqueue(c, specs, n, ids, &e) != JOBQ_OK) {
			fprintf(stderr, "bench: enqueue: %s\n", e.message);
			atomic_store(&r->failed, 1);
		}
		sent += (long)n;
	}
	return c; /* closed by main once the figure is out (bench_bound_close) */
}

typedef struct sub_ctx {
	run *r;
	jobq_sub *s;
} sub_ctx;

static void *listen_loop(void *arg)
{
	sub_ctx *x = arg;
	jobq_announcement a;
	jobq_error e;
	while (!atomic_load(&x->r->stop_sub)) {
		if (jobq_sub_next(x->s, 100, &a, &e) != JOBQ_OK)
			continue;
		atomic_fetch_add(&x->r->heard, (long)a.n_ids);
		jobq_announcement_free(&a);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 5 && argc != 6)
		bench_die("usage: bench_enqueue NAME JOBS BATCH THREADS [sub]");
	static run r;
	const char *name = argv[1];
	long jobs = bench_arg_long(argv[2], "JOBS");
	r.batch = (size_t)bench_arg_long(argv[3], "BATCH");
	long threads = bench_arg_long(argv[4], "THREADS");
	bool sub = argc == 6 && !strcmp(argv[5], "sub");
	if (r.batch > MAX_BATCH || threads > MAX_THREADS)
		bench_die("BATCH <= %d, THREADS <= %d", MAX_BATCH, MAX_THREADS);
	r.jobs_per_thread = jobs / threads;
	snprintf(r.queue, sizeof(r.queue), "enq_%d", (int)getpid());

	sub_ctx x = { .r = &r };
	pthread_t sub_thread;
	if (sub) {
		jobq_error e;
		if (jobq_subscribe(NULL, r.queue, &x.s, &e) != JOBQ_OK)
			bench_die("jobq_subscribe: %s", e.message);
		pthread_create(&sub_thread, NULL, listen_loop, &x);
		usleep(200 * 1000); /* nng dials asynchronously: let the subscription reach jobqd */
	}
	pthread_t t[MAX_THREADS];
	void *clients[MAX_THREADS];
	int64_t t0 = bench_now_us();
	for (long i = 0; i < threads; i++)
		pthread_create(&t[i], NULL, enqueuer, &r);
	for (long i = 0; i < threads; i++)
		pthread_join(t[i], &clients[i]);
	double secs = (double)(bench_now_us() - t0) / 1e6;
	if (sub) {
		usleep(300 * 1000);
		atomic_store(&r.stop_sub, 1);
		pthread_join(sub_thread, NULL);
	}
	if (atomic_load(&r.failed))
		bench_die("%s failed", name);
	long total = r.jobs_per_thread * threads;
	printf("%s: %ld jobs, batch %zu, %ld clients, %.2f s%s", name, total, r.batch, threads, secs,
	       sub ? "" : "\n");
	if (sub)
		printf(", subscriber heard %ld ids\n", atomic_load(&r.heard));
	bench_print(name, (double)total / secs, "jobs/s");
	bench_bound_close(5);
	if (sub)
		jobq_sub_close(x.s);
	for (long i = 0; i < threads; i++)
		jobq_close(clients[i]);
	return 0;
}
