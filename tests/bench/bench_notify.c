/*
 * bench_notify — notification latency: single enqueues over RPC at RATE jobs/s for SECONDS,
 * while a subscriber (jobq_subscribe, in its own thread) records when it hears each job's id.
 * Latency = receipt minus the moment the enqueue was sent (so it includes the RPC, the commit,
 * PostgreSQL's NOTIFY, jobqd's listener and the PUB hop: an upper bound on commit-to-receipt).
 *
 *   bench_notify RATE SECONDS     prints BENCH notify_p50_ms / notify_p99_ms / notify_missed
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "jobq.h"

typedef struct stamp {
	int64_t id, us;
} stamp;

typedef struct heard {
	jobq_sub *sub;
	stamp *v;
	size_t cap;
	atomic_size_t n;
	atomic_int stop;
} heard;

static void *listen_loop(void *arg)
{
	heard *h = arg;
	jobq_announcement a;
	jobq_error e;
	while (!atomic_load(&h->stop)) {
		if (jobq_sub_next(h->sub, 50, &a, &e) != JOBQ_OK)
			continue;
		int64_t now = bench_now_us();
		for (size_t i = 0; i < a.n_ids; i++) {
			size_t k = atomic_fetch_add(&h->n, 1);
			if (k < h->cap)
				h->v[k] = (stamp){ a.ids[i], now };
		}
		jobq_announcement_free(&a);
	}
	return NULL;
}

static int cmp_stamp(const void *a, const void *b)
{
	int64_t x = ((const stamp *)a)->id, y = ((const stamp *)b)->id;
	return (x > y) - (x < y);
}

/* warm_up enqueues until the subscriber hears something: nng dials asynchronously, so the first
 * messages after jobq_subscribe may go nowhere. */
static void warm_up(jobq_client *c, const char *queue, heard *h)
{
	for (int i = 0; i < 100 && atomic_load(&h->n) == 0; i++) {
		bench_enqueue_one(c, queue);
		usleep(50 * 1000);
	}
	if (atomic_load(&h->n) == 0)
		bench_die("the subscriber heard nothing");
	usleep(100 * 1000);
}

static void sleep_until_us(int64_t t)
{
	struct timespec ts = { .tv_sec = (time_t)(t / 1000000), .tv_nsec = (long)(t % 1000000) * 1000 };
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0) {
	}
}

/* latencies matches sent ids to heard ids; returns how many were heard, latencies in ms. */
static size_t latencies(const stamp *sent, size_t nsent, stamp *got, size_t ngot, double *out)
{
	size_t m = 0;
	qsort(got, ngot, sizeof(*got), cmp_stamp);
	for (size_t i = 0; i < nsent; i++) {
		stamp key = { sent[i].id, 0 };
		const stamp *g = bsearch(&key, got, ngot, sizeof(*got), cmp_stamp);
		if (g != NULL)
			out[m++] = (double)(g->us - sent[i].us) / 1000.0;
	}
	return m;
}

int main(int argc, char **argv)
{
	if (argc != 3)
		bench_die("usage: bench_notify RATE SECONDS");
	long rate = bench_arg_long(argv[1], "RATE"), seconds = bench_arg_long(argv[2], "SECONDS");
	size_t total = (size_t)(rate * seconds);
	char queue[64];
	snprintf(queue, sizeof(queue), "notify_%d", (int)getpid());

	static heard h;
	h.cap = total + 200;
	h.v = calloc(h.cap, sizeof(*h.v));
	stamp *sent = calloc(total, sizeof(*sent));
	double *lat = calloc(total, sizeof(*lat));
	jobq_options o = { .timeout_ms = 10000 };
	jobq_client *c = NULL;
	jobq_error e;
	if (h.v == NULL || sent == NULL || lat == NULL)
		bench_die("out of memory");
	if (jobq_connect(&o, &c, &e) != JOBQ_OK || jobq_subscribe(NULL, queue, &h.sub, &e) != JOBQ_OK)
		bench_die("connect: %s", e.message);
	pthread_t t;
	pthread_create(&t, NULL, listen_loop, &h);
	warm_up(c, queue, &h);

	/* Open-loop pacing: each send has its own slot, so a slow call does not slow the rate. */
	int64_t t0 = bench_now_us();
	for (size_t i = 0; i < total; i++) {
		sleep_until_us(t0 + (int64_t)i * 1000000 / rate);
		sent[i].us = bench_now_us();
		sent[i].id = bench_enqueue_one(c, queue);
	}
	usleep(500 * 1000);
	atomic_store(&h.stop, 1);
	pthread_join(t, NULL);
	size_t ngot = atomic_load(&h.n) < h.cap ? atomic_load(&h.n) : h.cap;
	size_t m = latencies(sent, total, h.v, ngot, lat);
	double p50 = bench_percentile(lat, m, 50), p99 = bench_percentile(lat, m, 99);
	printf("notify: %zu single enqueues at %ld/s over %.1f s; heard %zu; p50 %.2f ms, p90 %.2f ms, "
	       "p99 %.2f ms, max %.2f ms\n", total, rate, (double)(bench_now_us() - t0) / 1e6, m, p50,
	       bench_percentile(lat, m, 90), p99, m ? lat[m - 1] : 0.0);
	bench_print("notify_p50_ms", p50, "ms");
	bench_print("notify_p99_ms", p99, "ms");
	bench_print("notify_missed", (double)(total - m), "jobs");
	bench_bound_close(5);
	jobq_sub_close(h.sub);
	jobq_close(c);
	return 0;
}
