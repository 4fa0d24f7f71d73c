#include "bench_util.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int64_t bench_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

long bench_arg_long(const char *text, const char *what)
{
	char *end;
	errno = 0;
	long v = strtol(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0' || v <= 0)
		bench_die("%s: '%s' is not a positive integer", what, text);
	return v;
}

void bench_print(const char *name, double value, const char *unit)
{
	printf("BENCH %s %.3f %s\n", name, value, unit);
	fflush(stdout);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

double bench_percentile(double *v, size_t n, double p)
{
	if (n == 0)
		return 0;
	qsort(v, n, sizeof(*v), cmp_double);
	/* Nearest rank: the smallest value with at least p% of the samples at or below it. */
	size_t rank = (size_t)((p / 100.0) * (double)n + 0.999999);
	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return v[rank - 1];
}

static void close_hung(int sig)
{
	static const char msg[] = "bench: closing the sockets hung (nng 1.5.2); the figures above stand\n";
	(void)sig;
	(void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
	_exit(0);
}

void bench_bound_close(unsigned seconds)
{
	fflush(NULL);
	signal(SIGALRM, close_hung);
	alarm(seconds);
}

void bench_die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("bench: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

int64_t bench_enqueue_one(jobq_client *c, const char *queue)
{
	jobq_job_spec s = { .queue = queue, .payload = "{}", .payload_len = 2 };
	int64_t id;
	jobq_error e;
	if (jobq_enqueue(c, &s, 1, &id, &e) != JOBQ_OK)
		bench_die("enqueue: %s", e.message);
	return id;
}
