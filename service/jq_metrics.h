/*
 * jq_metrics — jobqd's Prometheus metrics.
 *
 * Two kinds of figures. Counters that the request path bumps (requests by method and code,
 * latency histograms by method, Fail outcomes) live here as process-wide atomics: bumping one is
 * a relaxed atomic add, no lock, no allocation, so it costs nothing measurable on the hot path.
 * Everything else (pool use, queue depth, long-poll waiters, notification and rescuer totals, jobs
 * by queue and state) is read from its owner when /metrics is scraped and handed to
 * jq_metrics_render in a jq_metrics_snapshot, so those modules need no metrics code at all.
 *
 * Method labels come from a fixed list (an unknown method counts as "other") so a client cannot
 * create series at will.
 */
#ifndef JQ_METRICS_H
#define JQ_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* jq_metrics_request counts one answered RPC: its full method name ("/jobq.v1.JobQueue/Claim",
 * may be NULL or anything), its gRPC code and how long it took. Thread-safe, lock-free. */
void jq_metrics_request(const char *method, unsigned code, int64_t duration_us);

/* jq_metrics_job_failed counts one job that a Fail ended: retried (back to pending) or not
 * (failed for good). Thread-safe, lock-free. */
void jq_metrics_job_failed(bool retried);

/* Jobs of one queue in the states counted exactly (see jq_db_job_gauges). */
typedef struct jq_metrics_queue {
	char queue[72];
	int64_t pending;   /* due now */
	int64_t scheduled; /* pending, run_at in the future */
	int64_t processing, failed;
	double oldest_due_age_seconds;
} jq_metrics_queue;

/* What the caller reads from the other modules at scrape time. Negative numbers are omitted. */
typedef struct jq_metrics_snapshot {
	bool database_up;
	bool listening;
	int pool_size, pool_in_use, requests_waiting, longpoll_waiters;
	int64_t longpoll_woken; /* parked Claims sent back to the database by announcements */
	int64_t longpoll_unqueried; /* Claims parked without a query: their queue was known empty */
	int64_t longpoll_refused; /* Claims answered at once: --max-waiting-claims were waiting */
	int rpc_connections;
	int64_t rpc_connections_refused;
	int64_t rpc_held_bytes; /* bytes of received requests held (against --max-inflight-bytes) */
	int rpc_receiving, rpc_contexts;
	int64_t notifications_received, notifications_published, notify_scans;
	int64_t leases_rescued, jobs_deleted;
	const jq_metrics_queue *queues; /* borrowed; NULL = no job counts yet */
	size_t nqueues;
	size_t queues_omitted; /* beyond the cap */
	/* Finished jobs in the whole table, estimated (jq_db_finished_estimates); -1 = unknown. */
	int64_t completed_estimate, cancelled_estimate;
	double jobs_age_seconds; /* how old the job counts are */
} jq_metrics_snapshot;

/* jq_metrics_render writes the Prometheus text format (0.0.4) into a malloc'd, NUL-terminated
 * buffer that the caller frees; *len gets its length. NULL when out of memory. */
char *jq_metrics_render(const jq_metrics_snapshot *snap, size_t *len);

/* jq_metrics_reset zeroes the counters (unit tests). */
void jq_metrics_reset(void);

#endif
