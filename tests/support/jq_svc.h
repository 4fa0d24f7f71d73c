/*
 * jq_svc — a real jobqd process for integration tests: started from $JOBQ_TEST_BUILD/bin/jobqd
 * on a free loopback TCP port with text logs going to a file under /tmp, waited for until it
 * answers an RPC, and stopped with SIGTERM (then SIGKILL after a timeout). The child gets
 * PR_SET_PDEATHSIG, so a test program that dies (crash, timeout) never leaves a jobqd behind.
 *
 * jq_svc_start fails the current cmocka test when the service does not come up; the stop and
 * log functions never fail a test, so they are safe in teardowns.
 */
#ifndef JQ_SVC_H
#define JQ_SVC_H

#include <stdbool.h>
#include <sys/types.h>

typedef struct jq_svc {
	pid_t pid;            /* 0 when not running */
	char rpc_url[64];     /* tcp://127.0.0.1:PORT */
	char log_path[128];   /* jobqd's stdout and stderr */
	char pub_path[96];    /* the ipc:// socket file of its PUB address (removed at stop) */
	long log_mark;        /* jq_svc_print_log prints from here */
	int exit_status;      /* after a stop: exit code, or -signal when killed, or -1000 unknown */
	int http_port;        /* its --http-addr port on 127.0.0.1 */
} jq_svc;

/* jq_svc_start starts jobqd against db_url with extra flags (a NULL-terminated list of
 * "--name=value" strings; NULL for none) and waits until it answers an RPC (any answer counts: a
 * service without its database answers UNAVAILABLE). `name` makes the log file recognisable. */
void jq_svc_start(jq_svc *s, const char *name, const char *db_url, const char *const *flags);

/* jq_svc_alive tells whether the process still runs (reaping it, and setting exit_status, if
 * it has exited). */
bool jq_svc_alive(jq_svc *s);

/* jq_svc_wait_exit waits up to timeout_ms for the process to exit by itself; returns true and
 * sets exit_status if it did. */
bool jq_svc_wait_exit(jq_svc *s, int timeout_ms);

/* jq_svc_stop sends SIGTERM, waits up to timeout_ms, then SIGKILLs. Returns the exit status
 * (see exit_status). Safe on a service that never started or already stopped. */
int jq_svc_stop(jq_svc *s, int timeout_ms);

/* jq_svc_finish is a test program's teardown of its service: jq_svc_stop, then, when jobqd did
 * not exit 0, its whole log and status on stderr (the log file is kept); otherwise the log from
 * the mark when test_failed, and the file is removed. Returns 0 when jobqd exited 0, else -1. */
int jq_svc_finish(jq_svc *s, int timeout_ms, bool test_failed);

/* jq_svc_mark_log remembers the current end of the log (a test's output starts there). */
void jq_svc_mark_log(jq_svc *s);

/* jq_svc_print_log copies the log from the mark to stderr, under a header naming the file. */
void jq_svc_print_log(const jq_svc *s);

/* jq_svc_log_contains tells whether the log (whole file) contains text. */
bool jq_svc_log_contains(const jq_svc *s, const char *text);

/* jq_svc_log_count counts the log's lines that contain text. */
int jq_svc_log_count(const jq_svc *s, const char *text);

/* jq_svc_remove_log deletes the log file (after a passing run). */
void jq_svc_remove_log(const jq_svc *s);

typedef struct jq_http_resp {
	int status;
	char headers[4096]; /* the status line and headers, CRLF-separated (cut at the size) */
	char body[256 * 1024];
} jq_http_resp;

/* jq_svc_http_get fetches http://127.0.0.1:port/path; returns 0 and fills *r, or -1 (no answer). */
int jq_svc_http_get(int port, const char *path, jq_http_resp *r);

/* jq_svc_http_get_with is jq_svc_http_get with extra request header lines (each ending in
 * "\r\n"; NULL for none), e.g. "Authorization: Bearer T\r\n". */
int jq_svc_http_get_with(int port, const char *path, const char *headers, jq_http_resp *r);

/* jq_svc_metric reads one series without labels ("jobq_longpoll_waiters") from the service's
 * /metrics; -1 when there is no answer or no such line. Not thread-safe (a static buffer). */
double jq_svc_metric(const jq_svc *s, const char *series);

/* jq_svc_metric_in reads the sample `series` (its name and labels as rendered, e.g.
 * `jobq_jobs{queue="q",state="archive_pending"}`) from a /metrics text; -1 when absent. */
double jq_svc_metric_in(const char *text, const char *series);

/* jq_svc_status_kb reads a kB field of the process's /proc status ("VmRSS", "VmHWM": the peak
 * resident set), or -1. */
long jq_svc_status_kb(const jq_svc *s, const char *field);

/* jq_free_port asks the kernel for an unused loopback TCP port; -1 on error. */
int jq_free_port(void);

/* jq_now_ms: CLOCK_REALTIME in Unix milliseconds; jq_mono_ms: CLOCK_MONOTONIC milliseconds. */
long long jq_now_ms(void);
long long jq_mono_ms(void);

/* jq_sleep_ms sleeps (for polling loops with a deadline). */
void jq_sleep_ms(int ms);

#endif
