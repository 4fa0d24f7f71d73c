/*
 * jq_validate — checks every field of a request before any SQL runs. Each check returns 0, or -1
 * after writing a message that names the field into msg (msg_len bytes). Nothing allocates.
 */
#ifndef JQ_VALIDATE_H
#define JQ_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "jobq/v1/jobq.pb-c.h"
#include "jq_cron.h"

#define JQ_MAX_BATCH 1000
#define JQ_MAX_QUEUE_LEN 64
#define JQ_MAX_WORKER_ID_LEN 128
#define JQ_MAX_IDEMPOTENCY_KEY_LEN 255
#define JQ_MAX_ERROR_LEN 8192
#define JQ_MAX_LEASE_SECONDS 86400
#define JQ_MAX_WAIT_MS 300000
#define JQ_MAX_ATTEMPTS 1000
#define JQ_MAX_SCHEDULE_NAME_LEN 64
#define JQ_MAX_TIME_ZONE_LEN 64
#define JQ_MAX_RETRY_IN_MS INT32_MAX /* the database's int4 (about 24.8 days) */
#define JQ_MAX_PROGRESS_MESSAGE_LEN 256
#define JQ_MAX_TIMEOUT_MS 604800000 /* a job's time limit: 7 days */
#define JQ_MAX_WAIT_IDS 100 /* jq_jobwait's JQ_JOBWAIT_MAX_IDS */
#define JQ_MAX_CONCURRENCY_LIMIT 1000000
#define JQ_MAX_RATE_LIMIT 1000000
#define JQ_MAX_RATE_PERIOD_MS 86400000 /* one day */

typedef struct jq_limits {
	size_t max_payload_bytes;
} jq_limits;

/* jq_validate_utf8 tells whether s[0..len) is well-formed UTF-8 (no overlongs, no surrogates). */
bool jq_validate_utf8(const char *s, size_t len);

/* jq_validate_queue_name: 1..64 characters of [A-Za-z0-9_.-]. */
int jq_validate_queue_name(const char *field, const char *q, char *msg, size_t msg_len);

int jq_validate_enqueue(const Jobq__V1__EnqueueRequest *r, const jq_limits *lim, char *msg, size_t msg_len);
int jq_validate_claim(const Jobq__V1__ClaimRequest *r, char *msg, size_t msg_len);
int jq_validate_heartbeat(const Jobq__V1__HeartbeatRequest *r, char *msg, size_t msg_len);
/* Outputs are bounded by lim's payload limit. */
int jq_validate_complete(const Jobq__V1__CompleteRequest *r, const jq_limits *lim, char *msg,
			 size_t msg_len);
int jq_validate_fail(const Jobq__V1__FailRequest *r, char *msg, size_t msg_len);
int jq_validate_get(const Jobq__V1__GetRequest *r, char *msg, size_t msg_len);
int jq_validate_list(const Jobq__V1__ListRequest *r, char *msg, size_t msg_len);
int jq_validate_retry(const Jobq__V1__RetryRequest *r, char *msg, size_t msg_len);
int jq_validate_cancel(const Jobq__V1__CancelRequest *r, char *msg, size_t msg_len);
int jq_validate_stats(const Jobq__V1__StatsRequest *r, char *msg, size_t msg_len);
/* Wait: 1..JQ_MAX_WAIT_IDS distinct positive ids, wait_ms at most JQ_MAX_WAIT_MS. */
int jq_validate_wait(const Jobq__V1__WaitRequest *r, char *msg, size_t msg_len);
/* Pause and Resume name a queue only: jq_validate_queue_name. */
int jq_validate_configure_queue(const Jobq__V1__ConfigureQueueRequest *r, char *msg, size_t msg_len);

/* jq_validate_schedule_name: 1..64 characters of [A-Za-z0-9_.-]. */
int jq_validate_schedule_name(const char *field, const char *name, char *msg, size_t msg_len);
/* jq_validate_add_schedule also parses the cron expression into *cron. Whether the time zone
 * exists is the database's to say (jq_handlers). */
int jq_validate_add_schedule(const Jobq__V1__AddScheduleRequest *r, const jq_limits *lim, jq_cron *cron,
			     char *msg, size_t msg_len);
int jq_validate_list_schedules(const Jobq__V1__ListSchedulesRequest *r, char *msg, size_t msg_len);
int jq_validate_remove_schedule(const Jobq__V1__RemoveScheduleRequest *r, char *msg, size_t msg_len);

#endif
