/*
 * jobq.h — libjobq, the C client of the jobq service.
 *
 * Link with build/lib/libjobq.a -lnng -lprotobuf-c -lpthread. No protobuf-c or nng type appears
 * in this header: requests and results are plain C structs.
 *
 * Errors: every fallible call returns a gRPC status code (JOBQ_OK = 0 on success) and, when err
 * is not NULL, fills it with the code and a one-line message. Transport failures map to
 * JOBQ_UNAVAILABLE (service unreachable) or JOBQ_DEADLINE_EXCEEDED (no reply within timeout_ms).
 *
 * Ownership: strings and buffers passed in are borrowed for the duration of the call. Everything
 * returned through an out-pointer is allocated by the library and released by the matching
 * *_free function (named in each comment); results the caller provides arrays for (jobq_result)
 * are filled in place and need no freeing.
 *
 * Threads: a jobq_client may be used by many threads at once (each call uses its own nng
 * context). A jobq_sub is used by one thread at a time.
 */
#ifndef JOBQ_H
#define JOBQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define JOBQ_VERSION "0.1.0"

/* Status codes (gRPC numbering). */
enum {
	JOBQ_OK = 0,
	JOBQ_CANCELLED = 1,
	JOBQ_UNKNOWN = 2,
	JOBQ_INVALID_ARGUMENT = 3,
	JOBQ_DEADLINE_EXCEEDED = 4,
	JOBQ_NOT_FOUND = 5,
	JOBQ_ALREADY_EXISTS = 6,
	JOBQ_PERMISSION_DENIED = 7,
	JOBQ_RESOURCE_EXHAUSTED = 8,
	JOBQ_FAILED_PRECONDITION = 9,
	JOBQ_ABORTED = 10,
	JOBQ_OUT_OF_RANGE = 11,
	JOBQ_UNIMPLEMENTED = 12,
	JOBQ_INTERNAL = 13,
	JOBQ_UNAVAILABLE = 14,
	JOBQ_DATA_LOSS = 15,
	JOBQ_UNAUTHENTICATED = 16,
};

/* Job states, numbered as jobq.v1.JobStatus. */
typedef enum jobq_status {
	JOBQ_STATUS_UNSPECIFIED = 0,
	JOBQ_STATUS_PENDING = 1,    /* archive_pending */
	JOBQ_STATUS_PROCESSING = 2, /* archive_processing */
	JOBQ_STATUS_COMPLETED = 3,  /* archive_completed */
	JOBQ_STATUS_FAILED = 4,     /* archive_failed */
	JOBQ_STATUS_CANCELLED = 5,  /* archive_cancelled */
} jobq_status;

typedef struct jobq_error {
	int code;
	char message[512];
} jobq_error;

typedef struct jobq_client jobq_client;
typedef struct jobq_sub jobq_sub;

typedef struct jobq_options {
	const char *rpc_url;    /* NULL = $JOBQ_RPC_URL, else tcp://127.0.0.1:7100 */
	const char *pub_url;    /* NULL = $JOBQ_PUB_URL, else tcp://127.0.0.1:7101 */
	int timeout_ms;         /* per call; 0 = 10000. Sent to the service as the deadline. */
	const char *auth_token; /* NULL = $JOBQ_AUTH_TOKEN, else the file below, else none */
	const char *auth_token_file; /* NULL = $JOBQ_AUTH_TOKEN_FILE: its first line is the token */
	/* TLS, used only for tls+tcp:// addresses (files are read at connect). NULL = the
	 * environment variable in brackets, else none. With a CA the service's certificate must
	 * chain to it and name the URL's host; without one the link is encrypted but the service
	 * is not verified. cert/key are this client's own (required by a service given --tls-ca). */
	const char *tls_cert; /* [JOBQ_TLS_CERT] PEM certificate */
	const char *tls_key;  /* [JOBQ_TLS_KEY] PEM private key of tls_cert */
	const char *tls_ca;   /* [JOBQ_TLS_CA] PEM CA bundle that signed the service's certificate */
	/* [JOBQ_MAX_REPLY_BYTES] the largest reply this client takes, 4096..4294967295 bytes; 0 =
	 * the variable, else 16 MiB. The service is told: it fills Claim and List replies only up
	 * to it, refuses a Claim when one job of its largest payload would not fit
	 * (JOBQ_INVALID_ARGUMENT) and answers JOBQ_RESOURCE_EXHAUSTED instead of a larger reply. A
	 * larger reply all the same (another server) ends the connection unread: JOBQ_UNAVAILABLE. */
	size_t max_reply_bytes;
} jobq_options;

/* A job to enqueue. */
typedef struct jobq_job_spec {
	const char *queue;
	const void *payload;
	size_t payload_len;
	int32_t priority;        /* lower runs first */
	int64_t run_at_ms;       /* Unix ms; 0 = now */
	uint32_t delay_ms;       /* instead of run_at_ms */
	uint32_t max_attempts;   /* 0 = service default (25) */
	const char *idempotency_key; /* NULL or "" = none */
	uint32_t timeout_ms;     /* time limit of each attempt from its claim; 0 = none, at most 7 days.
				  * Past it the service fails the job (retried per max_attempts) and
				  * tells its worker as for a cancel. */
	const char *concurrency_key; /* NULL or "" = none; at most the queue's key limit of the jobs
				      * with one key run at once (at most 128 bytes) */
} jobq_job_spec;

/* A job as the service returns it. All pointers are owned by the array it came in. */
typedef struct jobq_job {
	int64_t id;
	char *queue;
	uint8_t *payload; /* NUL-terminated for convenience (not counted in payload_len) */
	size_t payload_len;
	jobq_status status;
	jobq_status prev_status;
	uint32_t attempts;
	uint32_t max_attempts;
	int64_t lease_token;
	int32_t priority;
	int64_t run_at_ms;
	int64_t lease_expires_at_ms;
	char *lease_owner;
	char *last_error;
	char *idempotency_key;
	int64_t created_at_ms;
	int64_t updated_at_ms;
	int64_t finished_at_ms;
	/* The worker's last progress report: percent 0..100, or -1 when it never reported one. */
	int32_t progress_percent;
	char *progress_message;
	int64_t progress_at_ms;
	uint32_t timeout_ms; /* its time limit; 0 = none */
	/* What the worker's Complete reported (jobq_get only; NUL-terminated, not counted). */
	uint8_t *output;
	size_t output_len;
	char *concurrency_key; /* "" when none */
} jobq_job;

/* A job named by its lease (Heartbeat, Complete). */
typedef struct jobq_lease {
	int64_t id;
	int64_t lease_token;
} jobq_lease;

/* Progress of one running job (jobq_heartbeat_progress); percent < 0: no report for that job. */
typedef struct jobq_progress {
	int percent;         /* 0..100 */
	const char *message; /* UTF-8, at most 256 bytes, no control characters; NULL = "" */
} jobq_progress;

/* The result of one job (jobq_complete_output); data NULL: none. At most the service's payload
 * limit (--max-payload-bytes). */
typedef struct jobq_output {
	const void *data;
	size_t len;
} jobq_output;

/* A failure report (Fail). */
typedef struct jobq_failure {
	int64_t id;
	int64_t lease_token;
	const char *error;     /* UTF-8; the service keeps up to 8 KiB */
	bool final;            /* do not retry */
	uint32_t retry_in_ms;  /* 0 = the service's backoff */
} jobq_failure;

/* The outcome for one job of a batch call. */
typedef struct jobq_result {
	int64_t id;
	int code;
	char message[160];
	jobq_status status;          /* after the call, when known */
	int64_t lease_expires_at_ms; /* Heartbeat */
	int64_t run_at_ms;           /* Fail: when a retried job runs again */
	/* Heartbeat: the job was stopped under this very lease ("cancelled" or "time limit
	 * exceeded"; code JOBQ_FAILED_PRECONDITION): stop its work, its result is not kept. "" = not.
	 * Set only for calls naming two jobs or more: a one-job call gets the code and a message. */
	char stop_reason[32];
} jobq_result;

typedef struct jobq_failure_record {
	uint32_t attempt;
	char *worker_id;
	char *error;
	int64_t failed_at_ms;
} jobq_failure_record;

/* A queue's flow settings (Pause, ConfigureQueue). A limit of 0 is none. */
typedef struct jobq_queue_flow {
	bool paused;                /* its Claims get nothing, its jobs are not announced */
	uint32_t concurrency_limit; /* at most this many of its jobs processing at once */
	uint32_t rate_limit;        /* at most this many claimed per window of rate_period_ms */
	uint32_t rate_period_ms;
	uint32_t key_concurrency_limit; /* at most this many of its jobs with one concurrency key processing */
} jobq_queue_flow;

typedef struct jobq_queue_stats {
	char *queue;
	uint64_t pending, scheduled, processing, completed, failed, cancelled;
	double oldest_due_age_seconds;
	jobq_queue_flow flow;
} jobq_queue_stats;

/* What jobq_configure_queue changes: a limit neither set nor cleared stays as it is. */
typedef struct jobq_queue_config {
	bool set_concurrency_limit;
	int32_t concurrency_limit; /* 1..1000000 */
	bool clear_concurrency_limit;
	bool set_rate_limit;
	int32_t rate_limit;        /* 1..1000000 jobs ... */
	int32_t rate_period_ms;    /* ... per 1..86400000 ms */
	bool clear_rate_limit;
	bool set_key_concurrency_limit;
	int32_t key_concurrency_limit; /* 1..1000000 jobs of one concurrency key processing at once */
	bool clear_key_concurrency_limit;
} jobq_queue_config;

typedef struct jobq_list_options {
	const char *queue;  /* NULL = all */
	jobq_status status; /* UNSPECIFIED = all */
	uint32_t limit;     /* 0 = 100, at most 1000 */
	int64_t after_id;   /* keyset pagination */
	bool include_payload;
} jobq_list_options;

/* What a schedule does with ticks missed by more than 60 s (no replica ran): enqueue nothing
 * for them, or one job for all of them; then it goes on with the next future tick. */
typedef enum jobq_missed {
	JOBQ_MISSED_SKIP = 0,
	JOBQ_MISSED_ONCE = 1,
} jobq_missed;

/* A schedule to add. Strings and payload are borrowed for the duration of the call. */
typedef struct jobq_schedule_spec {
	const char *name;      /* [A-Za-z0-9_.-]{1,64}; an existing schedule of that name is replaced */
	const char *cron;      /* 5 fields (minute hour day-of-month month day-of-week), or 6 with seconds first */
	const char *time_zone; /* IANA name; NULL or "" = UTC */
	jobq_job_spec job;     /* enqueued on every tick; run_at_ms and delay_ms must be 0; {tick} in
				* idempotency_key becomes the tick's UTC time */
	jobq_missed missed;
} jobq_schedule_spec;

/* A schedule as the service returns it. All pointers are owned by the array it came in. */
typedef struct jobq_schedule {
	char *name, *cron, *time_zone;
	char *queue;
	uint8_t *payload; /* NUL-terminated; empty when not asked for */
	size_t payload_len;
	int32_t priority;
	uint32_t max_attempts; /* 0 = service default */
	char *idempotency_key; /* "" = none */
	jobq_missed missed;
	int64_t next_run_at_ms;
	int64_t last_run_at_ms; /* 0 = no job enqueued yet */
	int64_t created_at_ms, updated_at_ms;
} jobq_schedule;

/* An announcement heard on the PUB socket: jobs of `queue` became claimable; or, with stopped
 * set (only after jobq_sub_cancels), running jobs ids[i] of `queue` were stopped under their
 * leases lease_tokens[i] ("cancel.<queue>"). */
typedef struct jobq_announcement {
	char queue[72];
	int64_t *ids; /* may be NULL (n_ids 0): "some jobs, ask by claiming" */
	size_t n_ids;
	int64_t published_at_us;
	bool stopped;
	int64_t *lease_tokens; /* stopped: n_ids tokens */
	char reason[32];       /* stopped: "cancelled" or "time limit exceeded" */
} jobq_announcement;

/* jobq_version: the library version, a static string. */
const char *jobq_version(void);

/* jobq_code_name: "OK", "INVALID_ARGUMENT", ... (static; "UNKNOWN" for other numbers). */
const char *jobq_code_name(int code);

/* jobq_status_name: "archive_pending", ... (static; NULL for UNSPECIFIED or out of range).
 * jobq_status_parse: the reverse (also accepts "pending", "failed", ...); -1 if unknown. */
const char *jobq_status_name(jobq_status s);
int jobq_status_parse(const char *name, jobq_status *out);

/* jobq_connect dials the RPC socket (nng reconnects by itself). opts may be NULL (defaults and
 * environment). Free with jobq_close, which returns within about 2 s even when nng cannot finish
 * closing the socket (nng 1.5.2 can hang there; the handle is then freed if nng ever finishes).
 * jobq_sub_close likewise. */
int jobq_connect(const jobq_options *opts, jobq_client **out, jobq_error *err);
void jobq_close(jobq_client *c);

/* jobq_enqueue enqueues n (1..1000) jobs atomically; ids[n] receives their ids in order. */
int jobq_enqueue(jobq_client *c, const jobq_job_spec *specs, size_t n, int64_t *ids, jobq_error *err);

/* jobq_claim claims up to limit jobs of queue for lease_seconds (0 = default). wait_ms > 0 waits
 * that long for a job when none is ready (if the service supports it). *jobs (free with
 * jobq_jobs_free(*jobs, *n)) may be empty. */
int jobq_claim(jobq_client *c, const char *queue, uint32_t limit, const char *worker_id,
	       uint32_t lease_seconds, uint32_t wait_ms, jobq_job **jobs, size_t *n, jobq_error *err);
void jobq_jobs_free(jobq_job *jobs, size_t n);

/* Heartbeat, Complete, Fail on n (1..1000) jobs. results[n] (may be NULL) receives each job's
 * outcome. The return value is JOBQ_OK when the call went through, even if some jobs did not
 * (look at results); for n == 1 it is that job's code. */
int jobq_heartbeat(jobq_client *c, const jobq_lease *leases, size_t n, uint32_t lease_seconds,
		   jobq_result *results, jobq_error *err);
int jobq_complete(jobq_client *c, const jobq_lease *leases, size_t n, jobq_result *results,
		  jobq_error *err);
int jobq_fail(jobq_client *c, const jobq_failure *failures, size_t n, const char *worker_id,
	      jobq_result *results, jobq_error *err);

/* jobq_heartbeat_progress: jobq_heartbeat that also reports progress[i] for leases[i] (progress
 * may be NULL). The service keeps it only where the lease holds. */
int jobq_heartbeat_progress(jobq_client *c, const jobq_lease *leases, const jobq_progress *progress,
			    size_t n, uint32_t lease_seconds, jobq_result *results, jobq_error *err);

/* jobq_complete_output: jobq_complete that keeps outputs[i] (may be NULL) with job leases[i];
 * jobq_get returns it. */
int jobq_complete_output(jobq_client *c, const jobq_lease *leases, const jobq_output *outputs,
			 size_t n, jobq_result *results, jobq_error *err);

/* The claim jobq_complete_claim and jobq_fail_claim make in the same call, with jobq_claim's
 * arguments. */
typedef struct jobq_claim_next {
	const char *queue;
	uint32_t limit;          /* 1..1000 */
	const char *worker_id;
	uint32_t lease_seconds;  /* 0 = the service's default */
	uint32_t wait_ms;        /* > 0: wait that long for a job when none is ready */
} jobq_claim_next;

/* jobq_complete_claim completes n (1..1000) jobs as jobq_complete does and, in the same call (one
 * round trip, one transaction on the service), claims the next jobs as jobq_claim would with
 * next's arguments: what a worker that has just finished a job calls. *jobs and *n_jobs receive
 * the jobs claimed, as from jobq_claim (free with jobq_jobs_free(*jobs, *n_jobs); may be empty).
 * The claim runs only when every job of the completion was accepted: when one was refused (a
 * lost lease, an unknown id) nothing is claimed and *claim_skipped (may be NULL) is set. The
 * return value and results[n] are as jobq_complete's: for n == 1 a refused job's code (then
 * nothing is claimed). With wait_ms the call waits for a job like jobq_claim; the completion is
 * done before it waits, once. A job too large to share the reply with the results is left for a
 * plain jobq_claim. The caller's credential must allow Claim as well as Complete. */
int jobq_complete_claim(jobq_client *c, const jobq_lease *leases, size_t n, const jobq_claim_next *next,
			jobq_result *results, jobq_job **jobs, size_t *n_jobs, bool *claim_skipped,
			jobq_error *err);

/* jobq_complete_output_claim: jobq_complete_claim keeping outputs[i] (may be NULL) with job
 * leases[i], as jobq_complete_output. */
int jobq_complete_output_claim(jobq_client *c, const jobq_lease *leases, const jobq_output *outputs,
			       size_t n, const jobq_claim_next *next, jobq_result *results, jobq_job **jobs,
			       size_t *n_jobs, bool *claim_skipped, jobq_error *err);

/* jobq_fail_claim: jobq_fail, and the claim of next in the same call, as jobq_complete_claim. */
int jobq_fail_claim(jobq_client *c, const jobq_failure *failures, size_t n, const char *worker_id,
		    const jobq_claim_next *next, jobq_result *results, jobq_job **jobs, size_t *n_jobs,
		    bool *claim_skipped, jobq_error *err);

/* jobq_get reads one job (*job: free with jobq_jobs_free(*job, 1)) and, if history is not NULL,
 * its failures (free with jobq_failures_free(*history, *n_history)). */
int jobq_get(jobq_client *c, int64_t id, jobq_job **job, jobq_failure_record **history,
	     size_t *n_history, jobq_error *err);
void jobq_failures_free(jobq_failure_record *records, size_t n);

/* jobq_list: one page; *next_after_id is 0 after the last page. Free with jobq_jobs_free. */
int jobq_list(jobq_client *c, const jobq_list_options *opts, jobq_job **jobs, size_t *n,
	      int64_t *next_after_id, jobq_error *err);

/* jobq_wait waits up to wait_ms for every job of ids[n] (1..100, each once) to finish
 * (archive_completed, archive_failed or archive_cancelled); the service is woken by the jobs'
 * ends, it does not poll. *jobs (free with jobq_jobs_free(*jobs, *n_jobs)) are the jobs in the
 * order of ids as they stand at the answer, without payload and output (jobq_get has them);
 * *done tells whether all are finished. An unknown id answers JOBQ_NOT_FOUND. */
int jobq_wait(jobq_client *c, const int64_t *ids, size_t n, uint32_t wait_ms, jobq_job **jobs,
	      size_t *n_jobs, bool *done, jobq_error *err);

/* jobq_retry / jobq_cancel: by ids (results as for Complete). A running job that is cancelled
 * ends at once; its worker hears of it (jobq_sub_cancels, or its next heartbeat). */
int jobq_retry(jobq_client *c, const int64_t *ids, size_t n, jobq_result *results, jobq_error *err);
int jobq_cancel(jobq_client *c, const int64_t *ids, size_t n, jobq_result *results, jobq_error *err);

/* jobq_retry_all_failed: every failed job of queue back to pending; *count = how many. */
int jobq_retry_all_failed(jobq_client *c, const char *queue, uint32_t *count, jobq_error *err);

/* jobq_stats: by queue (queue NULL = all). Free with jobq_stats_free(*stats, *n). */
int jobq_stats(jobq_client *c, const char *queue, jobq_queue_stats **stats, size_t *n, jobq_error *err);
void jobq_stats_free(jobq_queue_stats *stats, size_t n);

/* jobq_pause / jobq_resume: a paused queue accepts enqueues, but its Claims get nothing and its
 * jobs are not announced until it is resumed; running jobs finish normally. jobq_configure_queue
 * sets or removes its limits. Each writes the queue's settings as they are now to *out (may be
 * NULL). Admin only. */
int jobq_pause(jobq_client *c, const char *queue, jobq_queue_flow *out, jobq_error *err);
int jobq_resume(jobq_client *c, const char *queue, jobq_queue_flow *out, jobq_error *err);
int jobq_configure_queue(jobq_client *c, const char *queue, const jobq_queue_config *cfg,
			 jobq_queue_flow *out, jobq_error *err);
/* jobq_schedule_add creates or replaces schedule spec->name (admin). *stored (may be NULL; free
 * with jobq_schedules_free(*stored, 1)) receives it as stored, with its next run time. */
int jobq_schedule_add(jobq_client *c, const jobq_schedule_spec *spec, jobq_schedule **stored,
		      jobq_error *err);

/* jobq_schedule_list: every schedule, by name. Free with jobq_schedules_free(*schedules, *n). */
int jobq_schedule_list(jobq_client *c, bool include_payload, jobq_schedule **schedules, size_t *n,
		       jobq_error *err);
void jobq_schedules_free(jobq_schedule *schedules, size_t n);

/* jobq_schedule_remove deletes schedule name (admin); JOBQ_NOT_FOUND when there is none. */
int jobq_schedule_remove(jobq_client *c, const char *name, jobq_error *err);

/* jobq_subscribe dials the PUB socket and hears announcements of queue (exactly that queue; NULL
 * = every queue). Free with jobq_sub_close. */
int jobq_subscribe(const jobq_options *opts, const char *queue, jobq_sub **out, jobq_error *err);

/* jobq_sub_cancels makes the subscription also hear of running jobs of queue (NULL = every
 * queue) cancelled under their workers: jobq_sub_next then returns those with stopped set. */
int jobq_sub_cancels(jobq_sub *s, const char *queue, jobq_error *err);

/* jobq_sub_fd: a descriptor that polls readable when an announcement may be waiting. */
int jobq_sub_fd(jobq_sub *s);

/* jobq_sub_next waits up to timeout_ms (0 = do not wait, -1 = forever) for an announcement.
 * Returns JOBQ_OK and fills *out (free its ids with jobq_announcement_free), or
 * JOBQ_DEADLINE_EXCEEDED when none came. Undecodable messages are skipped. */
int jobq_sub_next(jobq_sub *s, int timeout_ms, jobq_announcement *out, jobq_error *err);
void jobq_announcement_free(jobq_announcement *a);
void jobq_sub_close(jobq_sub *s);

/* jobq_sub_connected waits up to timeout_ms (0 = do not wait) for a connection to the PUB
 * address: JOBQ_OK when there is one; JOBQ_UNAVAILABLE, after at most a second, when there never
 * was one and every attempt was refused (nothing listens there); JOBQ_DEADLINE_EXCEEDED
 * otherwise. The subscription redials by itself whatever the answer: announcements come once
 * the publisher is reached. */
int jobq_sub_connected(jobq_sub *s, int timeout_ms, jobq_error *err);

#ifdef __cplusplus
}
#endif

#endif
