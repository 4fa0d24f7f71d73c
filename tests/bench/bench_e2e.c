/*
 * bench_e2e — end-to-end throughput, the shape of graphile-worker's benchmark: PRODUCERS producer
 * processes enqueue JOBS jobs between them in batches of BATCH while WORKERS worker processes
 * claim BATCH at a time, do nothing, and complete what they claimed in one call. The figure is
 * JOBS divided by the time from the start (every producer released at once) to the last
 * completion.
 *
 *   bench_e2e jobq NAME JOBS WORKERS BATCH [PRODUCERS]   through jobqd (libjobq; $JOBQ_RPC_URL)
 *   bench_e2e raw  NAME JOBS WORKERS BATCH [PRODUCERS]   the same statements straight through
 *                                            libpq ($JOBQ_DATABASE_URL): jobqd's own jq_db
 *                                            module, in-process, so the SQL, the prepared
 *                                            statements and the binary parameters are identical
 *   bench_e2e jobq_next ...                  jobq, workers completing and claiming in one call
 *                                            (jobq_complete_claim): one round trip per batch
 *   bench_e2e raw_next ...                   raw, with that call's statement
 *                                            (jq_db_complete_claim)
 *   bench_e2e floor ...                      the smallest correct queue on the same server
 *                                            (tests/bench/floor.sql): enqueue by INSERT ...
 *                                            unnest, claim by the same SKIP LOCKED CTE,
 *                                            complete by one UPDATE checking each lease's token
 *
 * PRODUCERS (default 1): at BATCH 1 one producer's enqueues, each a commit of its own, one after
 * the other, set the pace: the workers mostly wait and the figure measures the producer. Several
 * producers commit side by side, so that the cost of the workers' path shows in the figure.
 *
 * Prints `BENCH NAME <jobs/s> jobs/s`. Producers and workers are processes (forked before any
 * connection is made, each opening its own), as real clients would be; they share only counters
 * in shared memory: the jobs handed to producers (so the total is exact whatever the split), the
 * producers still enqueuing and the jobs completed.
 */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_util.h"
#include "jobq.h"
#include "jq_db.h"

#include <libpq-fe.h>

#define MAX_BATCH 1000
/* jobq workers long-poll (ClaimRequest.wait_ms) when the queue is momentarily empty;
 * $JOBQ_BENCH_CLAIM_WAIT_MS=0 makes them poll with a short sleep like the raw workers. */
static uint32_t claim_wait_ms = 200;
#define RAW_IDLE_US 500   /* raw workers have no long-poll: a short sleep instead of spinning */
#define CALL_TIMEOUT_MS 60000

typedef struct shared {
	atomic_long ready;     /* workers and producers connected */
	atomic_long taken;     /* jobs handed to producers (may pass JOBS: the last takers get none) */
	atomic_long producers_left; /* producers still enqueuing */
	atomic_long done;      /* jobs completed */
	atomic_llong end_us;   /* when the last job was completed */
	atomic_llong enqueued_us; /* when the last producer finished */
	atomic_int failed;
	atomic_long claims, empty_claims; /* how the workers' time was spent */
	atomic_long enqueues;  /* enqueue calls */
	atomic_llong claim_us, complete_us, enqueue_us; /* summed call durations */
} shared;

typedef struct lease {
	int64_t id, token;
} lease;

/* One backend per mode; each process opens its own connection after fork. */
typedef struct backend {
	void *(*open)(void);
	int (*enqueue)(void *h, const char *queue, size_t n);
	int (*claim)(void *h, const char *queue, size_t limit, const char *worker, lease *out, size_t *n);
	int (*complete)(void *h, const lease *l, size_t n);
	/* Complete l[n] and claim up to limit jobs in the same call (*_next modes), without
	 * waiting for a job. */
	int (*complete_claim)(void *h, const lease *l, size_t n, const char *queue, size_t limit,
			      const char *worker, lease *out, size_t *n_out);
	bool idle_sleep; /* true when an empty claim returns at once */
} backend;

static const char PAYLOAD[] = "{}";

/* ---- jobq: through the service ---- */

static void *jq_open(void)
{
	jobq_options o = { .timeout_ms = CALL_TIMEOUT_MS };
	jobq_client *c = NULL;
	jobq_error e;
	if (jobq_connect(&o, &c, &e) != JOBQ_OK)
		bench_die("jobq_connect: %s", e.message);
	return c;
}

static int jq_enqueue(void *h, const char *queue, size_t n)
{
	jobq_job_spec specs[MAX_BATCH];
	int64_t ids[MAX_BATCH];
	jobq_error e;
	for (size_t i = 0; i < n; i++)
		specs[i] = (jobq_job_spec){ .queue = queue, .payload = PAYLOAD, .payload_len = 2 };
	int rc = jobq_enqueue(h, specs, n, ids, &e);
	if (rc != JOBQ_OK)
		fprintf(stderr, "bench: enqueue: %s\n", e.message);
	return rc;
}

static int jq_claim(void *h, const char *queue, size_t limit, const char *worker, lease *out, size_t *n)
{
	jobq_job *jobs = NULL;
	jobq_error e;
	int rc = jobq_claim(h, queue, (uint32_t)limit, worker, 60, claim_wait_ms, &jobs, n, &e);
	if (rc != JOBQ_OK) {
		fprintf(stderr, "bench: claim: %s\n", e.message);
		return rc;
	}
	for (size_t i = 0; i < *n; i++)
		out[i] = (lease){ jobs[i].id, jobs[i].lease_token };
	jobq_jobs_free(jobs, *n);
	return 0;
}

static int jq_complete(void *h, const lease *l, size_t n)
{
	static jobq_lease ls[MAX_BATCH]; /* static: each worker process is single-threaded */
	jobq_result res[MAX_BATCH];
	jobq_error e;
	for (size_t i = 0; i < n; i++)
		ls[i] = (jobq_lease){ l[i].id, l[i].token };
	int rc = jobq_complete(h, ls, n, res, &e);
	for (size_t i = 0; rc == JOBQ_OK && i < n; i++)
		rc = res[i].code;
	if (rc != JOBQ_OK)
		fprintf(stderr, "bench: complete: %s\n", e.message);
	return rc;
}

static int jq_complete_claim(void *h, const lease *l, size_t n, const char *queue, size_t limit,
			     const char *worker, lease *out, size_t *n_out)
{
	static jobq_lease ls[MAX_BATCH];
	jobq_result res[MAX_BATCH];
	jobq_claim_next next = { .queue = queue, .limit = (uint32_t)limit, .worker_id = worker,
				 .lease_seconds = 60, .wait_ms = 0 };
	jobq_job *jobs = NULL;
	jobq_error e;
	for (size_t i = 0; i < n; i++)
		ls[i] = (jobq_lease){ l[i].id, l[i].token };
	int rc = jobq_complete_claim(h, ls, n, &next, res, &jobs, n_out, NULL, &e);
	for (size_t i = 0; rc == JOBQ_OK && i < n; i++)
		rc = res[i].code;
	if (rc != JOBQ_OK) {
		fprintf(stderr, "bench: complete_claim: %s\n", e.message);
		return rc;
	}
	for (size_t i = 0; i < *n_out; i++)
		out[i] = (lease){ jobs[i].id, jobs[i].lease_token };
	jobq_jobs_free(jobs, *n_out);
	return 0;
}

/* ---- raw: the same statements without RPC ---- */

static void *raw_open(void)
{
	const char *url = getenv("JOBQ_DATABASE_URL");
	if (url == NULL)
		bench_die("JOBQ_DATABASE_URL is not set");
	jq_db_opts o = { .url = url, .prepared = true, .statement_timeout_ms = CALL_TIMEOUT_MS,
			 .application_name = "jobq-bench" };
	jq_db *db = NULL;
	jq_db_err e;
	if (jq_db_open(&o, &db) != 0 || jq_db_ping(db, &e) != JQ_OK)
		bench_die("cannot connect to %s", url);
	return db;
}

static int raw_enqueue(void *h, const char *queue, size_t n)
{
	jq_db_job_spec specs[MAX_BATCH];
	int64_t ids[MAX_BATCH];
	jq_db_err e;
	for (size_t i = 0; i < n; i++)
		specs[i] = (jq_db_job_spec){ .queue = queue, .payload = (const uint8_t *)PAYLOAD,
					     .payload_len = 2 };
	jq_code c = jq_db_enqueue(h, specs, n, ids, &e);
	if (c != JQ_OK)
		fprintf(stderr, "bench: enqueue: %s\n", e.msg);
	return (int)c;
}

static int raw_claim(void *h, const char *queue, size_t limit, const char *worker, lease *out, size_t *n)
{
	jq_db_rows *rows = NULL;
	jq_db_err e;
	jq_code c = jq_db_claim(h, queue, (int)limit, worker, 60, &rows, &e);
	if (c != JQ_OK) {
		fprintf(stderr, "bench: claim: %s\n", e.msg);
		return (int)c;
	}
	*n = (size_t)jq_db_rows_count(rows);
	for (size_t i = 0; i < *n; i++) {
		jq_job j;
		jq_db_rows_job(rows, (int)i, &j);
		out[i] = (lease){ j.id, j.lease_token };
	}
	jq_db_rows_free(rows);
	return 0;
}

static int raw_complete(void *h, const lease *l, size_t n)
{
	static jq_db_lease ls[MAX_BATCH];
	jq_db_item items[MAX_BATCH];
	jq_db_err e;
	for (size_t i = 0; i < n; i++)
		ls[i] = (jq_db_lease){ .id = l[i].id, .lease_token = l[i].token };
	jq_code c = jq_db_complete(h, ls, n, items, &e);
	for (size_t i = 0; c == JQ_OK && i < n; i++)
		c = items[i].code;
	if (c != JQ_OK)
		fprintf(stderr, "bench: complete: %s\n", e.msg);
	return (int)c;
}

static int raw_complete_claim(void *h, const lease *l, size_t n, const char *queue, size_t limit,
			      const char *worker, lease *out, size_t *n_out)
{
	static jq_db_lease ls[MAX_BATCH];
	jq_db_item items[MAX_BATCH];
	jq_db_claim_next next = { .queue = queue, .limit = (int)limit, .worker = worker, .lease_seconds = 60,
				  .max_bytes = INT64_MAX, .per_job_bytes = 0 };
	jq_db_rows *rows = NULL;
	jq_db_err e;
	for (size_t i = 0; i < n; i++)
		ls[i] = (jq_db_lease){ .id = l[i].id, .lease_token = l[i].token };
	jq_code c = jq_db_complete_claim(h, ls, n, &next, items, &rows, &e);
	for (size_t i = 0; c == JQ_OK && i < n; i++)
		c = items[i].code;
	if (c != JQ_OK) {
		fprintf(stderr, "bench: complete_claim: %s\n", e.msg);
		jq_db_rows_free(rows);
		return (int)c;
	}
	*n_out = (size_t)jq_db_rows_count(rows);
	for (size_t i = 0; i < *n_out; i++) {
		jq_job j;
		jq_db_rows_job(rows, (int)i, &j);
		out[i] = (lease){ j.id, j.lease_token };
	}
	jq_db_rows_free(rows);
	return 0;
}

/* ---- floor: the smallest correct queue (tests/bench/floor.sql), straight through libpq ---- */

enum { FLOOR_ENQUEUE, FLOOR_CLAIM, FLOOR_COMPLETE };
static const char *const floor_sql[] = {
	[FLOOR_ENQUEUE] = "INSERT INTO floor_queue (queue, payload) SELECT $1, p FROM unnest($2::bytea[]) p",
	[FLOOR_CLAIM] = "WITH picked AS (SELECT id FROM floor_queue WHERE queue = $1 AND status = 0"
			" AND run_at <= now() ORDER BY run_at, id LIMIT $2 FOR UPDATE SKIP LOCKED)"
			" UPDATE floor_queue f SET status = 1, lease_owner = $3,"
			" lease_expires_at = now() + interval '60 seconds', lease_token = nextval('floor_lease_token')"
			" FROM picked WHERE f.id = picked.id RETURNING f.id, f.lease_token, f.payload",
	[FLOOR_COMPLETE] = "UPDATE floor_queue f SET status = 2, lease_owner = NULL, lease_expires_at = NULL"
			   " FROM unnest($1::bigint[], $2::bigint[]) AS l(id, token)"
			   " WHERE f.id = l.id AND f.lease_token = l.token AND f.status = 1",
};

static void *floor_open(void)
{
	const char *url = getenv("JOBQ_DATABASE_URL");
	if (url == NULL)
		bench_die("JOBQ_DATABASE_URL is not set");
	PGconn *c = PQconnectdb(url);
	if (PQstatus(c) != CONNECTION_OK)
		bench_die("cannot connect to %s: %s", url, PQerrorMessage(c));
	/* As jobqd's sessions run (jq_db_conn.c): the same server settings for both. */
	PGresult *jit = PQexec(c, "SET jit = off");
	if (PQresultStatus(jit) != PGRES_COMMAND_OK)
		bench_die("SET jit = off: %s", PQerrorMessage(c));
	PQclear(jit);
	for (int i = 0; i < 3; i++) {
		char name[16];
		snprintf(name, sizeof(name), "floor_%d", i);
		PGresult *r = PQprepare(c, name, floor_sql[i], 0, NULL);
		if (PQresultStatus(r) != PGRES_COMMAND_OK)
			bench_die("prepare %s: %s", name, PQerrorMessage(c));
		PQclear(r);
	}
	return c;
}

/* floor_run executes prepared statement i with text parameters; the result, or NULL (logged). */
static PGresult *floor_run(PGconn *c, int i, int n, const char *const *values)
{
	char name[16];
	snprintf(name, sizeof(name), "floor_%d", i);
	PGresult *r = PQexecPrepared(c, name, n, values, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(r);
	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
		return r;
	fprintf(stderr, "bench: floor statement %d: %s", i, PQerrorMessage(c));
	PQclear(r);
	return NULL;
}

/* id_array returns "{a,b,...}" of the leases' ids (or tokens), malloc'd. */
static char *id_array(const lease *l, size_t n, bool tokens)
{
	char *buf = malloc(n * 24 + 3), *p = buf;
	if (buf == NULL)
		bench_die("out of memory");
	*p++ = '{';
	for (size_t i = 0; i < n; i++)
		p += sprintf(p, "%s%lld", i ? "," : "", (long long)(tokens ? l[i].token : l[i].id));
	strcpy(p, "}");
	return buf;
}

static int floor_enqueue(void *h, const char *queue, size_t n)
{
	/* The payload "{}" as a bytea array literal: {"\\x7b7d",...} */
	static const char item[] = "\"\\\\x7b7d\"";
	char *arr = malloc(n * sizeof(item) + 3), *p = arr;
	if (arr == NULL)
		bench_die("out of memory");
	*p++ = '{';
	for (size_t i = 0; i < n; i++)
		p += sprintf(p, "%s%s", i ? "," : "", item);
	strcpy(p, "}");
	const char *values[2] = { queue, arr };
	PGresult *r = floor_run(h, FLOOR_ENQUEUE, 2, values);
	free(arr);
	PQclear(r);
	return r != NULL ? 0 : 1;
}

static int floor_claim(void *h, const char *queue, size_t limit, const char *worker, lease *out,
		       size_t *n)
{
	char lim[16];
	snprintf(lim, sizeof(lim), "%zu", limit);
	const char *values[3] = { queue, lim, worker };
	PGresult *r = floor_run(h, FLOOR_CLAIM, 3, values);
	if (r == NULL)
		return 1;
	*n = (size_t)PQntuples(r);
	for (size_t i = 0; i < *n; i++)
		out[i] = (lease){ atoll(PQgetvalue(r, (int)i, 0)), atoll(PQgetvalue(r, (int)i, 1)) };
	PQclear(r);
	return 0;
}

static int floor_complete(void *h, const lease *l, size_t n)
{
	char *ids = id_array(l, n, false), *tokens = id_array(l, n, true);
	const char *values[2] = { ids, tokens };
	PGresult *r = floor_run(h, FLOOR_COMPLETE, 2, values);
	int rc = r == NULL || strtoul(PQcmdTuples(r), NULL, 10) != n;
	if (r != NULL && rc)
		fprintf(stderr, "bench: floor complete: %s of %zu leases held\n", PQcmdTuples(r), n);
	free(ids);
	free(tokens);
	PQclear(r);
	return rc;
}

static const backend JOBQ_BACKEND = { jq_open, jq_enqueue, jq_claim, jq_complete, jq_complete_claim, false };
static const backend RAW_BACKEND = { raw_open, raw_enqueue, raw_claim, raw_complete, raw_complete_claim, true };
static const backend FLOOR_BACKEND = { floor_open, floor_enqueue, floor_claim, floor_complete, NULL, true };

/* ---- the benchmark ---- */

/* A worker must not outlive a benchmark that died (run.sh's timeout, Ctrl-C). */
static void prctl_parent_death(void)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
}

/* report_done counts n completed jobs; whoever completes the last job stops the clock (the
 * monotonic clock is shared by every process on the machine). */
static void report_done(shared *sh, long jobs, size_t n)
{
	if (atomic_fetch_add(&sh->done, (long)n) + (long)n >= jobs)
		atomic_store(&sh->end_us, bench_now_us());
}

/* A worker claims, then completes what it holds: with `next`, completes and claims the next
 * batch in one call, and claims apart only when it holds nothing. Only a claim apart long-polls
 * (jobq's): a call that completed jobs and then waited would hold back their count, and near the
 * end, with jobs still coming but too few for every waiting worker, one that lost the race for
 * the last ones would hold the last completions for its whole wait and stop the clock that much
 * late. A worker holding nothing has nothing to hold back: the last completion stops the clock,
 * and its wait only delays the worker's exit. The jobq CLI's worker, too, completes and claims
 * without waiting. */
static void worker_main(const backend *b, bool next, shared *sh, const char *queue, long jobs,
			size_t batch, int index)
{
	char worker[32];
	lease leases[MAX_BATCH];
	size_t n = 0; /* leases held */
	snprintf(worker, sizeof(worker), "bench-%d", index);
	void *h = b->open();
	atomic_fetch_add(&sh->ready, 1);
	while (atomic_load(&sh->done) < jobs && !atomic_load(&sh->failed)) {
		int64_t t0 = bench_now_us();
		if (n == 0) {
			if (b->claim(h, queue, batch, worker, leases, &n) != 0)
				goto fail;
			atomic_fetch_add(&sh->claims, 1);
			if (n > 0)
				atomic_fetch_add(&sh->claim_us, bench_now_us() - t0);
			if (n == 0) {
				atomic_fetch_add(&sh->empty_claims, 1);
				if (b->idle_sleep)
					usleep(RAW_IDLE_US);
			}
			continue;
		}
		size_t held = n;
		if (next) {
			if (b->complete_claim(h, leases, held, queue, batch, worker, leases, &n) != 0)
				goto fail;
			atomic_fetch_add(&sh->claims, 1);
			if (n == 0)
				atomic_fetch_add(&sh->empty_claims, 1);
		} else {
			if (b->complete(h, leases, held) != 0)
				goto fail;
			n = 0;
		}
		atomic_fetch_add(&sh->complete_us, bench_now_us() - t0);
		report_done(sh, jobs, held);
	}
	_exit(0);
fail:
	atomic_store(&sh->failed, 1);
	_exit(1);
}

/* A producer connects, waits for the start (end of file on go_fd, for every producer at once),
 * then enqueues batches taken from the shared count until every job is taken; the last to finish
 * notes the time. */
static void producer_main(const backend *b, shared *sh, const char *queue, long jobs, size_t batch,
			  int go_fd)
{
	void *h = b->open();
	atomic_fetch_add(&sh->ready, 1);
	char c;
	ssize_t r;
	while ((r = read(go_fd, &c, 1)) < 0 && errno == EINTR)
		;
	if (r != 0)
		goto fail;
	while (!atomic_load(&sh->failed)) {
		long first = atomic_fetch_add(&sh->taken, (long)batch);
		if (first >= jobs)
			break;
		size_t n = (size_t)(jobs - first) < batch ? (size_t)(jobs - first) : batch;
		int64_t t1 = bench_now_us();
		if (b->enqueue(h, queue, n) != 0)
			goto fail;
		atomic_fetch_add(&sh->enqueue_us, bench_now_us() - t1);
		atomic_fetch_add(&sh->enqueues, 1);
	}
	if (atomic_fetch_sub(&sh->producers_left, 1) == 1)
		atomic_store(&sh->enqueued_us, bench_now_us());
	_exit(0);
fail:
	atomic_store(&sh->failed, 1);
	_exit(1);
}

static void wait_ready(shared *sh, long processes)
{
	int64_t until = bench_now_us() + 30 * 1000000LL;
	while (atomic_load(&sh->ready) < processes) {
		if (bench_now_us() > until || atomic_load(&sh->failed))
			bench_die("workers and producers did not start");
		usleep(1000);
	}
}

static int reap(long processes)
{
	int bad = 0, st;
	for (long i = 0; i < processes; i++) {
		if (wait(&st) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
			bad = 1;
	}
	return bad;
}

int main(int argc, char **argv)
{
	if (argc != 6 && argc != 7)
		bench_die("usage: bench_e2e jobq|jobq_next|raw|raw_next|floor NAME JOBS WORKERS BATCH [PRODUCERS]");
	backend b_jobq = JOBQ_BACKEND;
	const char *wait = getenv("JOBQ_BENCH_CLAIM_WAIT_MS");
	if (wait != NULL && *wait != '\0') {
		claim_wait_ms = (uint32_t)strtoul(wait, NULL, 10);
		b_jobq.idle_sleep = claim_wait_ms == 0;
	}
	const backend *b = !strncmp(argv[1], "raw", 3)  ? &RAW_BACKEND
			   : !strcmp(argv[1], "floor") ? &FLOOR_BACKEND
						       : &b_jobq;
	bool next = strstr(argv[1], "_next") != NULL;
	if (next && b->complete_claim == NULL)
		bench_die("%s: no call that completes and claims", argv[1]);
	const char *name = argv[2];
	long jobs = bench_arg_long(argv[3], "JOBS");
	long workers = bench_arg_long(argv[4], "WORKERS");
	size_t batch = (size_t)bench_arg_long(argv[5], "BATCH");
	long producers = argc == 7 ? bench_arg_long(argv[6], "PRODUCERS") : 1;
	if (batch > MAX_BATCH)
		bench_die("BATCH is at most %d", MAX_BATCH);

	/* A queue of its own, so leftovers of an earlier run never count. */
	char queue[64];
	snprintf(queue, sizeof(queue), "e2e_%s_%d", argv[1], (int)getpid());
	shared *sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		bench_die("mmap failed");
	memset(sh, 0, sizeof(*sh));
	atomic_store(&sh->producers_left, producers);

	for (long i = 0; i < workers; i++) {
		pid_t pid = fork();
		if (pid < 0)
			bench_die("fork failed");
		if (pid == 0) {
			prctl_parent_death();
			worker_main(b, next, sh, queue, jobs, batch, (int)i);
		}
	}
	/* The start signal: closing the pipe's only write end left (this process's) releases every
	 * producer at once. The workers were forked before it and hold no end of it. */
	int go[2];
	if (pipe(go) != 0)
		bench_die("pipe failed");
	for (long i = 0; i < producers; i++) {
		pid_t pid = fork();
		if (pid < 0)
			bench_die("fork failed");
		if (pid == 0) {
			prctl_parent_death();
			close(go[1]);
			producer_main(b, sh, queue, jobs, batch, go[0]);
		}
	}
	close(go[0]);
	wait_ready(sh, workers + producers);
	int64_t t0 = bench_now_us();
	close(go[1]);
	if (reap(workers + producers) || atomic_load(&sh->failed))
		bench_die("%s failed", name);
	double secs = (double)(atomic_load(&sh->end_us) - t0) / 1e6;
	printf("%s: %ld jobs, %ld producers, %ld workers, batch %zu: enqueued in %.2f s, all completed in %.2f s\n",
	       name, jobs, producers, workers, batch, (double)(atomic_load(&sh->enqueued_us) - t0) / 1e6, secs);
	long claims = atomic_load(&sh->claims), empty = atomic_load(&sh->empty_claims);
	long calls = claims - empty > 0 ? claims - empty : 1;
	long enqueues = atomic_load(&sh->enqueues) > 0 ? atomic_load(&sh->enqueues) : 1;
	printf("  %ld claims (%ld empty), %.1f jobs per non-empty claim; mean ms per call: "
	       "enqueue %.2f, claim %.2f, complete %.2f\n", claims, empty, (double)jobs / (double)calls,
	       (double)atomic_load(&sh->enqueue_us) / 1000.0 / (double)enqueues,
	       (double)atomic_load(&sh->claim_us) / 1000.0 / (double)calls,
	       (double)atomic_load(&sh->complete_us) / 1000.0 / (double)calls);
	bench_print(name, (double)jobs / secs, "jobs/s");
	return 0;
}
