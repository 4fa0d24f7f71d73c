/*
 * jq_metrics — jobqd's Prometheus metrics.
 *
 * Two kinds of figures. Counters that the request path bumps (requests by method and code,
 * latency histograms by method, jobs by queue and what happened to them) live here as
 * process-wide atomics: bumping one is a relaxed atomic add, no allocation, so it costs nothing
 * measurable on the hot path. Everything else (pool use, queue depth, long-poll waiters,
 * notification and rescuer totals, jobs by queue and state, the process's memory, CPU and files)
 * is read from its owner when /metrics is scraped and handed to jq_metrics_render in a
 * jq_metrics_snapshot, so those modules need no metrics code at all.
 *
 * Labels a client could multiply are bounded: method labels come from a fixed list (an unknown
 * method counts as "other"), and queue labels of the job counters from a table of
 * JQ_METRICS_MAX_QUEUES queues, filled in the order queues are first seen and never emptied; the
 * jobs of any later queue count under queue="(other)", which no queue name can spell.
 */
#ifndef JQ_METRICS_H
#define JQ_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* jq_metrics_request counts one answered RPC: its full method name ("/jobq.v1.JobQueue/Claim",
 * may be NULL or anything), its gRPC code and how long it took. Thread-safe, lock-free. */
void jq_metrics_request(const char *method, unsigned code, int64_t duration_us);

#define JQ_METRICS_MAX_QUEUES 200
#define JQ_METRICS_OTHER_QUEUE "(other)"

/* What happened to jobs, as the job counters count it. */
typedef enum jq_metrics_job_event {
	JQ_METRICS_ENQUEUED,  /* accepted by an Enqueue */
	JQ_METRICS_COMPLETED, /* completed by a Complete */
	JQ_METRICS_FAILED,    /* left failed for good by a Fail */
	JQ_METRICS_RETRIED,   /* sent back to pending by a Fail, to run again after its backoff */
	JQ_METRICS__JOB_EVENTS
} jq_metrics_job_event;

/* jq_metrics_jobs counts n jobs of queue (NUL-terminated) to which ev happened. Thread-safe;
 * lock-free for a queue that has its series, and once the table is full. The first job of a
 * new queue takes a lock to give it its series. */
void jq_metrics_jobs(const char *queue, jq_metrics_job_event ev, uint64_t n);

/* jq_metrics_queue_known gives queue its job counters (at 0) while there is room, so that its
 * series exist before its first job does anything on this replica. Thread-safe. */
void jq_metrics_queue_known(const char *queue);

/* The process, as the Prometheus process_* metrics describe it (jq_metrics_read_process). */
typedef struct jq_metrics_process {
	bool known; /* false: nothing could be read (no /proc); the process_* series are left out */
	double cpu_seconds;
	double start_time_seconds; /* Unix time */
	int64_t resident_bytes, virtual_bytes;
	int64_t open_fds, max_fds; /* -1: unknown (that series is left out) */
} jq_metrics_process;

/* jq_metrics_read_process reads this process's figures from /proc/self and getrlimit: a few
 * small reads and one directory listing (open descriptors), nothing that grows with load
 * but the descriptors. Thread-safe. */
void jq_metrics_read_process(jq_metrics_process *out);

/* Jobs of one queue in the states counted exactly (see jq_db_job_gauges). */
typedef struct jq_metrics_queue {
	char queue[72];
	int64_t pending;   /* due now */
	int64_t scheduled; /* pending, run_at in the future */
	int64_t processing, failed;
	double oldest_due_age_seconds;
	bool paused;               /* flow settings (migration 015); a limit of 0 is none */
	int32_t concurrency_limit;
	int32_t key_concurrency_limit;
	int32_t rate_limit, rate_period_ms;
} jq_metrics_queue;

/* What the caller reads from the other modules at scrape time. Negative numbers are omitted. */
typedef struct jq_metrics_snapshot {
	bool database_up;
	bool listening;
	int pool_size, pool_in_use, requests_waiting, longpoll_waiters;
	int64_t longpoll_woken; /* parked Claims sent back to the database by announcements */
	int64_t longpoll_unqueried; /* Claims parked without a query: their queue was known empty */
	int64_t longpoll_refused; /* Claims answered at once: --max-waiting-claims were waiting */
	/* Enqueue requests that shared a statement with others, and those statements (jq_enqgroup);
	 * -1 = not counted. */
	int64_t enqueue_grouped_requests, enqueue_grouped_statements;
	int enqueue_waiting; /* queued for the next grouped statement */
	int waits_waiting;        /* Waits waiting for jobs' ends */
	int64_t waits_refused;    /* Waits answered at once: --max-waiting-waits were waiting */
	int rpc_connections;
	int64_t rpc_connections_refused;
	int64_t rpc_held_bytes; /* bytes of received requests held (against --max-inflight-bytes) */
	int rpc_receiving, rpc_contexts;
	int64_t notifications_received, notifications_published, notify_scans;
	int64_t leases_rescued, jobs_deleted;
	/* Periodic jobs (jq_scheduler): schedules (-1 = not counted yet), jobs this replica's ticks
	 * enqueued, missed ticks it handled, lateness of its last enqueued tick. */
	int64_t schedules, schedule_ticks, schedule_missed;
	double schedule_lateness_seconds;
	/* Borrowed; NULL = no job counts read yet: the per-queue job gauges are left out and
	 * jobq_jobs_age_seconds says +Inf (never read), since any number would be made up. */
	const jq_metrics_queue *queues;
	size_t nqueues;
	size_t queues_omitted; /* beyond the cap */
	/* Finished jobs in the whole table, estimated (jq_db_finished_estimates); -1 = unknown. */
	int64_t completed_estimate, cancelled_estimate;
	double jobs_age_seconds; /* how old the job counts are */
	jq_metrics_process process;
} jq_metrics_snapshot;

/* jq_metrics_render writes the Prometheus text format (0.0.4) into a malloc'd, NUL-terminated
 * buffer that the caller frees; *len gets its length. NULL when out of memory. */
char *jq_metrics_render(const jq_metrics_snapshot *snap, size_t *len);

/* jq_metrics_reset zeroes the counters and empties the queue table (unit tests; not while other
 * threads count). */
void jq_metrics_reset(void);

#endif
