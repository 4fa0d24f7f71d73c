/*
 * jq_svc_api — short typed calls of jobqd's methods for integration tests, on top of
 * jq_rpc_call, plus SQL helpers that format their statement (for checking and forcing state in
 * the service's database). Every helper that expects success fails the current cmocka test
 * otherwise, naming the method, the code and the service's message. Not for use from threads.
 *
 * A test first points the helpers at its service and database with jq_api_use, or lets
 * jq_api_svc_start set up both (and the per-test hooks jq_api_svc_before and jq_api_svc_after
 * at that service). The message of the last reply is in jq_api_msg.
 */
#ifndef JQ_SVC_API_H
#define JQ_SVC_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "jq_rpc_call.h"
#include "jq_svc.h"

extern char jq_api_msg[1024];

/* jq_api_use sets the socket and database connection the helpers below use. */
void jq_api_use(jq_rpc_sock *sock, PGconn *db);

/* jq_api_svc: what a test program that calls jobqd works against: a database (a copy of the
 * migrated one, or a given URL), a libpq connection to it (NULL with a given URL), the jobqd
 * process, and a raw RPC socket. Owned by the program; zeroed before jq_api_svc_start. */
typedef struct jq_api_svc {
	jq_svc svc;
	char *db_url;
	PGconn *pg;
	jq_rpc_sock rpc;
	bool test_failed; /* a JQ_API_TEST body has started and not reached its end */
} jq_api_svc;

/* jq_api_svc_start clones the migrated database as `name` (or uses url when not NULL), starts
 * jobqd on it with flags (NULL-terminated; NULL for none), opens the RPC socket and points the
 * helpers at both. Returns 0, or -1 (a cmocka setup's failure). */
int jq_api_svc_start(jq_api_svc *s, const char *name, const char *url, const char *const *flags);

/* The per-test setup and teardown of a group whose tests (JQ_API_TEST) share the service that
 * jq_api_svc_start started: jq_api_svc_before marks jobqd's log; jq_api_svc_after prints the log
 * from the mark when the test failed or jobqd died, and fails (-1) when jobqd died. */
int jq_api_svc_before(void **state);
int jq_api_svc_after(void **state);

/* jq_api_svc_stop stops jobqd (SIGTERM, SIGKILL after timeout_ms) and frees everything. It prints
 * jobqd's log when a test failed (from the last jq_svc_mark_log) or when jobqd did not exit 0
 * (the whole log, and the status). Returns 0 when jobqd exited 0, else -1 (a cmocka teardown's
 * failure). */
int jq_api_svc_stop(jq_api_svc *s, int timeout_ms);

/* JQ_API_TEST(s, name) defines cmocka test `name` whose body follows, with s.test_failed true
 * until the body returns (an assertion jumps out of it, leaving the flag set). */
#define JQ_API_TEST(s, name)                     \
	static void name##_body(void);           \
	static void name(void **state)           \
	{                                        \
		(void)state;                     \
		(s).test_failed = true;          \
		name##_body();                   \
		(s).test_failed = false;         \
	}                                        \
	static void name##_body(void)

/* JQ_QUEUE(var) declares a queue name of the calling test's own (its function's name and a
 * number): tests that share a service do not see each other's jobs. */
#define JQ_QUEUE_NAME_SIZE 64
#define JQ_QUEUE(var)                 \
	char var[JQ_QUEUE_NAME_SIZE]; \
	jq_api_queue_name(var, sizeof(var), __func__)
void jq_api_queue_name(char *buf, size_t size, const char *fn);

#define JQ_FREE(m) protobuf_c_message_free_unpacked((ProtobufCMessage *)(m), NULL)

/* jq_api_code runs a method and returns its code (message in jq_api_msg); *out gets the decoded
 * response when OK and out_desc is given. */
unsigned jq_api_code(const char *method, const void *req, const ProtobufCMessageDescriptor *out_desc,
		     void *out);

/* jq_api_ok runs a method that must answer OK and returns its decoded response. */
void *jq_api_ok(const char *method, const void *req, const ProtobufCMessageDescriptor *out_desc);

/* jq_api_expect fails the test unless the method answers `code` with a message containing
 * `text` (NULL: any message). */
void jq_api_expect(const char *method, const void *req, unsigned code, const char *text);

/* A job to enqueue; zero fields mean "not given". */
typedef struct jq_spec {
	const char *queue;
	const char *payload; /* NUL-terminated text; NULL = empty */
	int32_t priority;
	int64_t run_at_ms;
	uint32_t delay_ms;
	uint32_t max_attempts;
	const char *key;
} jq_spec;

/* jq_enqueue_code enqueues n jobs; on OK fills ids[n] (may be NULL). Returns the code. */
unsigned jq_enqueue_code(const jq_spec *specs, size_t n, int64_t *ids);
/* jq_enqueue enqueues n jobs that must be accepted. */
void jq_enqueue(const jq_spec *specs, size_t n, int64_t *ids);
/* jq_enqueue_one enqueues one plain job and returns its id. */
int64_t jq_enqueue_one(const char *queue, const char *payload);
/* jq_enqueue_many enqueues n plain jobs (payload "job-<i>") in batches of up to 1000. */
void jq_enqueue_many(const char *queue, size_t n, int64_t *ids);

/* jq_claim_request: a ClaimRequest (its strings point to the arguments); it calls nothing, so
 * threads may use it. */
Jobq__V1__ClaimRequest jq_claim_request(const char *queue, uint32_t limit, const char *worker,
					uint32_t lease_seconds);
/* jq_claim claims (must answer OK); free with JQ_FREE. */
Jobq__V1__ClaimResponse *jq_claim(const char *queue, uint32_t limit, const char *worker,
				  uint32_t lease_seconds);
/* jq_claim_one claims exactly one job (fails the test otherwise): returns its id, *token. */
int64_t jq_claim_one(const char *queue, const char *worker, uint32_t lease_seconds, int64_t *token);
/* jq_claim_one_within polls Claim until one job comes (for jobs due soon). */
int64_t jq_claim_one_within(const char *queue, const char *worker, uint32_t lease_seconds,
			    int timeout_ms, int64_t *token);

/* One-job lease calls: return the code (message in jq_api_msg). */
unsigned jq_complete1(int64_t id, int64_t token);
unsigned jq_heartbeat1(int64_t id, int64_t token, uint32_t lease_seconds, int64_t *expires_ms);
/* jq_fail1: on OK, *status and *run_at_ms (may be NULL) get the job's new state. */
unsigned jq_fail1(int64_t id, int64_t token, const char *error, bool final, uint32_t retry_in_ms,
		  const char *worker_id, Jobq__V1__JobStatus *status, int64_t *run_at_ms);

/* jq_get returns the job and its history (must exist); free with JQ_FREE. */
Jobq__V1__GetResponse *jq_get(int64_t id);

/* SQL on the service's database, printf-style. */
char *jq_db_str(const char *fmt, ...) __attribute__((format(printf, 1, 2)));       /* caller frees */
long long jq_db_ll(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
double jq_db_f64(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void jq_db_do(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* jq_db_status returns the job's curr_job_status ("" when there is no such job; static buffer). */
const char *jq_db_status(int64_t id);
/* jq_db_make_due sets run_at to now (skips a backoff wait). */
void jq_db_make_due(int64_t id);
/* jq_db_expire_lease puts lease_expires_at in the past (the rescuer will take the job). */
void jq_db_expire_lease(int64_t id);

/* JQ_POLL_UNTIL waits, polling every 10 ms, until cond holds; fails the test after ms. */
#define JQ_POLL_UNTIL(cond, ms, what)                                                        \
	do {                                                                                 \
		long long jq_dl_ = jq_mono_ms() + (ms);                                      \
		while (!(cond)) {                                                            \
			if (jq_mono_ms() > jq_dl_)                                           \
				fail_msg("timed out after %d ms waiting for %s", (int)(ms), what); \
			jq_sleep_ms(10);                                                     \
		}                                                                            \
	} while (0)

#endif
