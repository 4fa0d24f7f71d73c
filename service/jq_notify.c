#include "jq_notify.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "jq_clock.h"
#include "jq_flow.h"
#include "jq_log.h"
#include "jq_pgconn.h"

#define CHANNEL "jobq_pending"
/* Running jobs stopped under their workers: "C <queue> <id> <lease token>" (migration 017). */
#define STOP_CHANNEL "jobq_stop"
/* Jobs somebody waits for that ended: "<id>" (migration 017). */
#define DONE_CHANNEL "jobq_done"
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
/* Even with no timer armed, rescan this often: it re-announces queues that still have due jobs
 * (a subscriber may have lost a message to PUB's drop policy) and re-reads the next due time,
 * which guards against anything the notifications did not describe. */
#define SAFETY_NET_MS 5000
/* An answer is awaited this long past the session's statement_timeout (--listen-timeout-ms):
 * a live server has ended the statement itself by then. The safety-net scan is therefore also
 * the probe that finds a silent connection, within SAFETY_NET_MS + the timeout + this. */
#define SILENCE_GRACE_MS 1000
#define NO_TIMER INT64_MAX
#define JQ_MAX_TOPIC_QUEUE 64 /* a queue name's bytes (the table's CHECK) */
/* The longest a timer is armed for. A later job is found again by the safety-net scans, which
 * re-read the next due time; the bound keeps the clock arithmetic in range whatever a
 * notification (anyone may NOTIFY the channel) or a row says. */
#define MAX_TIMER_MS (24LL * 3600 * 1000)

/* Both scans below walk job_queue_claim_idx (queue, priority, run_at, id WHERE pending) as a
 * "loose index scan": PAIRS_CTE jumps from one (queue, priority) to the next, and within a pair
 * the index is in run_at order, so the earliest due and the earliest future job of each pair are
 * one index probe away. Their cost grows with the number of (queue, priority) pairs, not with
 * the backlog: a scan that read every pending row with a future run_at would keep the listener
 * thread from reading notifications for as long as a large backlog takes to read, at every scan
 * (tests/integration/test_schema.c holds the plan). */
#define PAIRS_CTE \
	"WITH RECURSIVE p(queue, priority) AS (" \
	"  (SELECT queue, priority FROM job_queue WHERE curr_job_status = 'archive_pending'" \
	"    ORDER BY queue, priority LIMIT 1)" \
	"  UNION ALL" \
	"  SELECT n.queue, n.priority FROM p CROSS JOIN LATERAL (" \
	"    SELECT j.queue, j.priority FROM job_queue j" \
	"     WHERE j.curr_job_status = 'archive_pending' AND (j.queue, j.priority) > (p.queue, p.priority)" \
	"     ORDER BY j.queue, j.priority LIMIT 1) n)"

/* Queues with at least one due pending job. */
static const char DUE_QUEUES_SQL[] =
	PAIRS_CTE
	" SELECT DISTINCT p.queue FROM p WHERE EXISTS ("
	"   SELECT 1 FROM job_queue j WHERE j.curr_job_status = 'archive_pending'"
	"      AND j.queue = p.queue AND j.priority = p.priority AND j.run_at <= now())";

/* Milliseconds from the database's now() to the earliest future run_at (NULL when none).
 * Relative to the database clock, so a skewed service clock cannot make the timer spin. */
static const char NEXT_DUE_SQL[] =
	PAIRS_CTE
	" SELECT ceil(extract(epoch FROM min(f.run_at) - now()) * 1000)::bigint"
	"   FROM p CROSS JOIN LATERAL ("
	"     SELECT j.run_at FROM job_queue j"
	"      WHERE j.curr_job_status = 'archive_pending' AND j.queue = p.queue"
	"        AND j.priority = p.priority AND j.run_at > now()"
	"      ORDER BY j.run_at LIMIT 1) f";

/* The flow settings of every configured queue, read after each LISTEN (jq_flow). */
static const char SETTINGS_SQL[] =
	"SELECT queue, paused::int, COALESCE(concurrency_limit, 0), COALESCE(rate_limit, 0),"
	" COALESCE(rate_period_ms, 0), COALESCE(key_concurrency_limit, 0) FROM job_queue_settings";
#define UNDEFINED_TABLE "42P01"

const char *jq_notify_due_queues_sql(void)
{
	return DUE_QUEUES_SQL;
}

const char *jq_notify_next_due_sql(void)
{
	return NEXT_DUE_SQL;
}

struct jq_notify {
	const jq_config *cfg;
	jq_publisher *pub;
	jq_notify_hooks hooks;
	jq_flow *flow;    /* borrowed; NULL: no queue is ever paused */
	PGconn *conn;     /* NULL while disconnected; only the thread touches it */
	int wake_fd;      /* eventfd: jq_notify_stop writes, the thread's poll wakes */
	pthread_t thread;
	int64_t timer_ms; /* monotonic ms when the earliest scheduled job becomes due */
	int64_t scan_ms;  /* monotonic ms of the next safety-net scan */
	bool lost;        /* the connection failed or went silent under a statement */
	atomic_bool stop;
	atomic_bool listening;
	_Atomic int64_t received, announced, scans;
	pthread_mutex_t health_mu; /* the two below, for jq_notify_health */
	char why[200];      /* why the listener is not listening */
	int64_t down_ms;    /* since when (jq_clock_mono_ms) */
	jq_log_limiter problems; /* the thread's warnings: a database that is down fails every retry */
};

static void announce(jq_notify *n, const char *queue, const int64_t *ids, size_t count)
{
	/* A paused queue's jobs are not claimable: nothing is announced, and its waiting Claims go
	 * on waiting. Resume announces it (sql/015-jobq_notify_settings.sql). */
	if (n->flow != NULL && jq_flow_paused(n->flow, queue))
		return;
	if (jq_publisher_send(n->pub, queue, ids, count) == 0)
		atomic_fetch_add(&n->announced, 1);
	if (n->hooks.announced != NULL)
		n->hooks.announced(n->hooks.arg, queue, ids != NULL ? count : 0);
}

static void arm_timer(jq_notify *n, int64_t deadline_ms)
{
	if (deadline_ms < n->timer_ms)
		n->timer_ms = deadline_ms;
}

/* set_listening keeps the flag (for /readyz) and tells the long-poll of each change. */
static void set_listening(jq_notify *n, bool on)
{
	if (atomic_exchange(&n->listening, on) != on && n->hooks.listening != NULL)
		n->hooks.listening(n->hooks.arg, on);
}

/* warn logs prefix + the first line of text (libpq's messages may go on with hints, and a
 * DETAIL line may quote row values). */
static void warn(jq_notify *n, const char *prefix, const char *text)
{
	char line[200];
	snprintf(line, sizeof(line), "%s", text);
	line[strcspn(line, "\r\n")] = '\0';
	jq_log_limited(&n->problems, JQ_LOG_WARN, "notify: %s%s", prefix, line);
}

/* set_why records, for /readyz, why the listener is down (the first line of text), and logs it. */
static void set_why(jq_notify *n, const char *prefix, const char *text)
{
	pthread_mutex_lock(&n->health_mu);
	snprintf(n->why, sizeof(n->why), "%s%s", prefix, text);
	n->why[strcspn(n->why, "\r\n")] = '\0';
	if (atomic_load(&n->listening) || n->down_ms == 0)
		n->down_ms = jq_clock_mono_ms();
	pthread_mutex_unlock(&n->health_mu);
	warn(n, prefix, text);
}

static void disconnect(jq_notify *n)
{
	set_listening(n, false);
	PQfinish(n->conn);
	n->conn = NULL;
	n->lost = false;
}

/* exec runs one statement and waits for its answer, but not past the session's statement
 * timeout and a grace, nor past jq_notify_stop. NULL when there was no answer: the connection
 * broke or went silent (n->lost; the caller disconnects). An SQL error is a result. */
static PGresult *exec(jq_notify *n, const char *sql, const char *what)
{
	PGresult *res = NULL;
	int64_t until = jq_clock_mono_ms() + n->cfg->listen_timeout_ms + SILENCE_GRACE_MS;
	jq_pgconn_rc rc = PQsendQuery(n->conn, sql) ? jq_pgconn_result(n->conn, until, n->wake_fd, &res)
						    : JQ_PGCONN_BROKEN;
	if (rc == JQ_PGCONN_OK)
		return res;
	n->lost = true;
	char text[120];
	if (rc == JQ_PGCONN_TIMEOUT)
		snprintf(text, sizeof(text), "no answer within %d ms; reconnecting",
			 n->cfg->listen_timeout_ms + SILENCE_GRACE_MS);
	if (rc != JQ_PGCONN_WOKEN)
		set_why(n, what, rc == JQ_PGCONN_TIMEOUT ? text : PQerrorMessage(n->conn));
	return NULL;
}

/* ---- parsing one notification payload ---- */

int jq_notify_delay_ms(const char *text, int64_t now_real_ms, int64_t *delay_ms)
{
	char *end;
	errno = 0;
	long long v = strtoll(text, &end, 10);
	if (end == text || *end != '\0' || errno != 0)
		return -1;
	int64_t delay;
	if (now_real_ms < 0)
		delay = v;
	else /* v - now_real_ms, without leaving int64 */
		delay = v <= now_real_ms ? 0 : v - now_real_ms > MAX_TIMER_MS ? MAX_TIMER_MS : v - now_real_ms;
	*delay_ms = delay < 0 ? 0 : delay > MAX_TIMER_MS ? MAX_TIMER_MS : delay;
	return 0;
}

/* announce_ids publishes `queue` with the ids in `list` ("1,2,3"); a malformed list still
 * announces the queue, without ids, since the queue itself is known to have due jobs. */
static void announce_ids(jq_notify *n, const char *queue, const char *list)
{
	size_t cap = 1;
	for (const char *p = list; *p; p++)
		cap += *p == ',';
	int64_t *ids = malloc(cap * sizeof(*ids));
	size_t count = 0;
	const char *p = list;
	while (ids != NULL && *p) {
		char *end;
		errno = 0;
		long long v = strtoll(p, &end, 10);
		if (end == p || errno != 0 || (*end != ',' && *end != '\0')) {
			count = 0;
			break;
		}
		ids[count++] = v;
		p = *end == ',' ? end + 1 : end;
	}
	announce(n, queue, ids, count);
	free(ids);
}

/* handle_line acts on one payload line; sets *rescan for "*". Lines it does not know are
 * skipped, so a newer migration can add kinds without breaking an older service. */
static void handle_line(jq_notify *n, char *line, bool *rescan)
{
	if (strcmp(line, "*") == 0) {
		*rescan = true;
		return;
	}
	if (strncmp(line, "L ", 2) == 0) {
		int64_t delay;
		if (jq_notify_delay_ms(line + 2, jq_clock_unix_ms(), &delay) == 0)
			arm_timer(n, jq_clock_mono_ms() + delay);
		else
			jq_debug("notify: not a time: '%.40s'", line);
		return;
	}
	if (strncmp(line, "Q ", 2) == 0) {
		char queue[JQ_DB_QUEUE_MAX + 1];
		jq_queue_flow fs;
		if (jq_flow_parse(line + 2, queue, &fs) != 0)
			jq_debug("notify: not a settings line: '%.80s'", line);
		else if (n->flow != NULL && jq_flow_set(n->flow, queue, &fs) != 0)
			warn(n, "queue settings: ", "out of memory");
		return;
	}
	if (strncmp(line, "D ", 2) != 0) {
		jq_debug("notify: unknown line kind '%c'", line[0]);
		return;
	}
	char *queue = line + 2, *sp = strchr(queue, ' ');
	if (sp == NULL || sp == queue)
		return;
	*sp = '\0';
	if (strcmp(sp + 1, "*") == 0)
		announce(n, queue, NULL, 0);
	else
		announce_ids(n, queue, sp + 1);
}

/* handle_payload splits the payload into lines; returns true when a full rescan is asked for. */
static bool handle_payload(jq_notify *n, const char *payload)
{
	char *copy = strdup(payload), *save = NULL;
	bool rescan = false;
	if (copy == NULL)
		return true; /* cannot parse it: the rescan finds the same work */
	for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		handle_line(n, line, &rescan);
	free(copy);
	return rescan;
}

/* handle_stop publishes "cancel.<queue>" for one jobq_stop payload ("C": cancelled, "T": time
 * limit exceeded); anything else is skipped (anyone may NOTIFY the channel). */
static void handle_stop(jq_notify *n, const char *payload)
{
	char kind, queue[JQ_MAX_TOPIC_QUEUE + 1];
	long long id, token;
	int used = 0;
	if (sscanf(payload, "%c %64s %lld %lld%n", &kind, queue, &id, &token, &used) != 4 ||
	    payload[used] != '\0' || id <= 0 || (kind != 'C' && kind != 'T')) {
		jq_debug("notify: not a stop: '%.60s'", payload);
		return;
	}
	const char *reason = kind == 'C' ? "cancelled" : "time limit exceeded";
	if (jq_publisher_send_stop(n->pub, queue, id, token, reason) == 0)
		atomic_fetch_add(&n->announced, 1);
}

/* handle_done hands the id of a job that ended to the finished hook; other payloads are
 * skipped. */
static void handle_done(jq_notify *n, const char *payload)
{
	char *end;
	errno = 0;
	long long id = strtoll(payload, &end, 10);
	if (end == payload || *end != '\0' || errno != 0 || id <= 0) {
		jq_debug("notify: not a job id: '%.40s'", payload);
		return;
	}
	if (n->hooks.finished != NULL)
		n->hooks.finished(n->hooks.arg, id);
}

/* ---- the database side ---- */

/* drain handles every notification libpq has already read; true when one asked for a rescan.
 * Queries also read notifications into libpq's buffer without the socket polling readable
 * again, so it runs after every query too. */
static bool drain(jq_notify *n)
{
	PGnotify *note;
	bool rescan = false;
	while ((note = PQnotifies(n->conn)) != NULL) {
		atomic_fetch_add(&n->received, 1);
		if (strcmp(note->relname, CHANNEL) == 0 && handle_payload(n, note->extra))
			rescan = true;
		else if (strcmp(note->relname, STOP_CHANNEL) == 0)
			handle_stop(n, note->extra);
		else if (strcmp(note->relname, DONE_CHANNEL) == 0)
			handle_done(n, note->extra);
		PQfreemem(note);
	}
	return rescan;
}

static int query_failed(jq_notify *n, PGresult *res, const char *what)
{
	/* A statement error on a live connection (say a timeout) is only logged; the next scan
	 * tries again. */
	/* A connection that died under a statement is reported as lost, whichever statement it
	 * was (the server ending the session can land on any of them); libpq may not have seen the
	 * socket close yet when it hands over the FATAL (class 08, or 57P: terminated). */
	const char *state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	bool ended = state != NULL && (strncmp(state, "08", 2) == 0 || strncmp(state, "57P", 3) == 0);
	if (res != NULL && (ended || PQstatus(n->conn) == CONNECTION_BAD))
		set_why(n, "connection lost: ", PQresultErrorMessage(res));
	else if (res != NULL)
		warn(n, what, PQresultErrorMessage(res));
	PQclear(res);
	return -1;
}

/* scan_once: one pass of scan; -1 when a statement failed (logged). A statement error on a live
 * connection (say a timeout) is retried by the next safety-net scan. */
static int scan_once(jq_notify *n)
{
	n->scan_ms = jq_clock_mono_ms() + SAFETY_NET_MS;
	PGresult *res = exec(n, DUE_QUEUES_SQL, "due queues: ");
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		return query_failed(n, res, "due queues: ");
	for (int i = 0; i < PQntuples(res); i++)
		announce(n, PQgetvalue(res, i, 0), NULL, 0);
	PQclear(res);

	res = exec(n, NEXT_DUE_SQL, "next due time: ");
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
		return query_failed(n, res, "next due time: ");
	n->timer_ms = NO_TIMER;
	int64_t delay;
	if (!PQgetisnull(res, 0, 0) && jq_notify_delay_ms(PQgetvalue(res, 0, 0), -1, &delay) == 0)
		n->timer_ms = jq_clock_mono_ms() + delay;
	PQclear(res);
	return 0;
}

/* scan announces every queue with due pending jobs and re-arms the timer from the table.
 * Several replicas need no coordination here: every listening session receives every NOTIFY
 * (including the "L" lines), so each replica arms its own timer from the same database and
 * announces to its own subscribers; a job announced by two replicas is still claimed once. */
static int scan(jq_notify *n)
{
	do {
		int rc = scan_once(n);
		/* Counted once its announcements are made: a test that waits for the count knows the
		 * scan is over, not just begun. */
		atomic_fetch_add(&n->scans, 1);
		if (rc != 0)
			return n->lost || PQstatus(n->conn) == CONNECTION_BAD ? -1 : 0;
	} while (drain(n));
	return 0;
}

/* load_settings reads every queue's flow settings into n->flow, after LISTEN, so that a change
 * committed later arrives as a Q line. A database without the table (migrations older than
 * 015) has no settings. 0, or -1 (logged). */
static int load_settings(jq_notify *n)
{
	if (n->flow == NULL)
		return 0;
	PGresult *res = exec(n, SETTINGS_SQL, "queue settings: ");
	if (res == NULL)
		return -1;
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	jq_flow_clear(n->flow);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		bool missing = state != NULL && strcmp(state, UNDEFINED_TABLE) == 0;
		if (!missing)
			set_why(n, "queue settings: ", PQresultErrorMessage(res));
		PQclear(res);
		return missing ? 0 : -1;
	}
	for (int i = 0; i < PQntuples(res); i++) {
		jq_queue_flow fs = { .paused = atoi(PQgetvalue(res, i, 1)) != 0,
				     .concurrency_limit = atoi(PQgetvalue(res, i, 2)),
				     .rate_limit = atoi(PQgetvalue(res, i, 3)),
				     .rate_period_ms = atoi(PQgetvalue(res, i, 4)),
				     .key_concurrency_limit = atoi(PQgetvalue(res, i, 5)) };
		if (jq_flow_set(n->flow, PQgetvalue(res, i, 0), &fs) != 0) {
			set_why(n, "queue settings: ", "out of memory");
			PQclear(res);
			return -1;
		}
	}
	PQclear(res);
	return 0;
}

/* connect_listen opens the session and LISTENs; 0 or -1 (logged, n->conn left NULL). */
static int connect_listen(jq_notify *n)
{
	char options[64], why[200];
	jq_pgconn_net net = jq_pgconn_net_of(n->cfg);
	/* No JIT, as in jq_db's sessions: the scan of the due queues is a short statement whose
	 * estimate grows with the pending jobs. */
	snprintf(options, sizeof(options), "-c statement_timeout=%d -c jit=off", n->cfg->listen_timeout_ms);
	jq_pgconn_opts o = { .url = n->cfg->listen_database_url, .application_name = "jobqd-notify",
			     .options = options, .net = &net };
	jq_pgconn_rc rc = jq_pgconn_open(&o, JQ_PGCONN_FOREVER, n->wake_fd, &n->conn, why, sizeof(why));
	if (rc != JQ_PGCONN_OK) {
		if (rc != JQ_PGCONN_WOKEN)
			set_why(n, "cannot connect: ", why);
		goto fail;
	}
	static const char *const listens[] = { "LISTEN " CHANNEL, "LISTEN " STOP_CHANNEL,
					       "LISTEN " DONE_CHANNEL };
	for (size_t i = 0; i < sizeof(listens) / sizeof(listens[0]); i++) {
		PGresult *res = exec(n, listens[i], "LISTEN: ");
		if (res == NULL)
			goto fail;
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			set_why(n, "LISTEN failed: ", PQresultErrorMessage(res));
			PQclear(res);
			goto fail;
		}
		PQclear(res);
	}
	if (load_settings(n) != 0)
		goto fail;
	set_listening(n, true);
	jq_log_limited_end(&n->problems);
	jq_info("notify: listening on %s", CHANNEL);
	return 0;
fail:
	disconnect(n);
	return -1;
}

/* ---- the thread ---- */

/* wait_fds polls the connection (if any) and the wake-up descriptor until timeout_ms.
 * Returns 1 when the connection has input, 0 otherwise (timeout or woken). */
static int wait_fds(jq_notify *n, int64_t timeout_ms)
{
	struct pollfd fds[2] = { { .fd = n->wake_fd, .events = POLLIN },
				 { .fd = n->conn ? PQsocket(n->conn) : -1, .events = POLLIN } };
	if (timeout_ms > INT_MAX)
		timeout_ms = INT_MAX;
	if (timeout_ms < 0)
		timeout_ms = 0;
	if (poll(fds, 2, (int)timeout_ms) <= 0)
		return 0;
	if (fds[0].revents) {
		uint64_t v;
		/* A failed read only means it was already cleared; the caller checks stop next. */
		ssize_t r = read(n->wake_fd, &v, sizeof(v));
		(void)r;
		return 0;
	}
	return fds[1].revents != 0;
}

/* step waits for the next notification, timer or scan; -1 when the connection was lost. */
static int step(jq_notify *n)
{
	int64_t now = jq_clock_mono_ms();
	int64_t deadline = n->timer_ms < n->scan_ms ? n->timer_ms : n->scan_ms;
	if (now >= deadline)
		return scan(n);
	if (wait_fds(n, deadline - now) == 0)
		return 0;
	if (!PQconsumeInput(n->conn)) {
		set_why(n, "connection lost: ", PQerrorMessage(n->conn));
		return -1;
	}
	return drain(n) ? scan(n) : 0;
}

static void *notify_main(void *arg)
{
	jq_notify *n = arg;
	int backoff = BACKOFF_MIN_MS;
	while (!atomic_load(&n->stop)) {
		if (n->conn == NULL) {
			if (connect_listen(n) != 0) {
				wait_fds(n, backoff);
				backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
				continue;
			}
			backoff = BACKOFF_MIN_MS;
			/* Notifications sent while we were away are lost: catch up from the table. */
			if (scan(n) != 0)
				disconnect(n);
			continue;
		}
		if (step(n) != 0)
			disconnect(n);
	}
	if (n->conn != NULL)
		disconnect(n);
	return NULL;
}

int jq_notify_start(const jq_config *cfg, jq_publisher *pub, const jq_notify_hooks *hooks,
		    jq_flow *flow, jq_notify **out)
{
	jq_notify *n = calloc(1, sizeof(*n));
	if (n == NULL)
		return -1;
	n->cfg = cfg;
	n->pub = pub;
	n->flow = flow;
	n->problems = (jq_log_limiter)JQ_LOG_LIMITER(JQ_LOG_REPEAT_MS);
	if (hooks != NULL)
		n->hooks = *hooks;
	n->timer_ms = NO_TIMER;
	snprintf(n->why, sizeof(n->why), "not connected yet");
	n->down_ms = jq_clock_mono_ms();
	n->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (n->wake_fd < 0)
		goto fail;
	pthread_mutex_init(&n->health_mu, NULL);
	if (pthread_create(&n->thread, NULL, notify_main, n) != 0) {
		pthread_mutex_destroy(&n->health_mu);
		close(n->wake_fd);
		goto fail;
	}
	*out = n;
	return 0;
fail:
	free(n);
	return -1;
}

void jq_notify_stop(jq_notify *n)
{
	uint64_t one = 1;
	if (n == NULL)
		return;
	atomic_store(&n->stop, true);
	if (write(n->wake_fd, &one, sizeof(one)) < 0)
		jq_warn("notify: cannot wake the listener thread: %s", strerror(errno));
	pthread_join(n->thread, NULL);
	pthread_mutex_destroy(&n->health_mu);
	close(n->wake_fd);
	free(n);
}

bool jq_notify_listening(const jq_notify *n)
{
	return n != NULL && atomic_load(&((jq_notify *)n)->listening);
}

bool jq_notify_health(jq_notify *n, char *why, size_t cap)
{
	if (n == NULL) {
		snprintf(why, cap, "no listener");
		return false;
	}
	pthread_mutex_lock(&n->health_mu);
	bool on = atomic_load(&n->listening);
	if (!on)
		snprintf(why, cap, "%s (for %lld ms)", n->why, (long long)(jq_clock_mono_ms() - n->down_ms));
	pthread_mutex_unlock(&n->health_mu);
	return on;
}

int64_t jq_notify_received(const jq_notify *n)
{
	return atomic_load(&((jq_notify *)n)->received);
}

int64_t jq_notify_announced(const jq_notify *n)
{
	return atomic_load(&((jq_notify *)n)->announced);
}

int64_t jq_notify_scans(const jq_notify *n)
{
	return atomic_load(&((jq_notify *)n)->scans);
}
