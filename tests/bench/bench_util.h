/*
 * bench_util — small helpers shared by the benchmark programs under tests/bench/: clocks,
 * environment knobs, percentiles and the one output format run.sh and people both read:
 * `BENCH <name> <value> <unit>` on a line of its own.
 */
#ifndef BENCH_UTIL_H
#define BENCH_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "jobq.h"

/* bench_now_us: CLOCK_MONOTONIC in microseconds (all intervals are measured on it). */
int64_t bench_now_us(void);

/* bench_arg_long parses argv-style text as a positive integer or exits with a message. */
long bench_arg_long(const char *text, const char *what);

/* bench_print writes `BENCH name value unit` and flushes, so run.sh sees it even if a later
 * step of the same program fails. */
void bench_print(const char *name, double value, const char *unit);

/* bench_percentile sorts v[n] in place and returns the p-th percentile (0..100, nearest rank). */
double bench_percentile(double *v, size_t n, double p);

/* bench_enqueue_one enqueues one job ("{}") on queue and returns its id, or exits. */
int64_t bench_enqueue_one(jobq_client *c, const char *queue);

/* bench_bound_close arms a watchdog that ends the process with status 0 after `seconds`: call
 * it once a program's figures are printed and only its sockets remain to close. nng 1.5.2's
 * nng_close can hang (client/jobq_close.c has the story); a figure already out must
 * not turn into a failed benchmark after run.sh's 600 s timeout. The watchdog says so on stderr
 * when it fires. */
void bench_bound_close(unsigned seconds);

/* bench_die prints "bench: message" to stderr and exits 1. */
void bench_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
