#include "jq_pgconn.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jq_clock.h"
#include "jq_log.h"

/* Found dead within about 25 s when idle (10 + 3 x 5), within 10 s when data goes unanswered
 * at the TCP level; the kernel's defaults are over two hours and about 15 minutes. */
const jq_pgconn_net jq_pgconn_net_default = {
	.connect_timeout_ms = 5000,
	.tcp_user_timeout_ms = 10000,
	.keepalives_idle_s = 10,
	.keepalives_interval_s = 5,
	.keepalives_count = 3,
};

jq_pgconn_net jq_pgconn_net_of(const jq_config *cfg)
{
	return (jq_pgconn_net){
		.connect_timeout_ms = cfg->db_connect_timeout_ms,
		.tcp_user_timeout_ms = cfg->db_tcp_user_timeout_ms,
		.keepalives_idle_s = cfg->db_keepalive_idle_s,
		.keepalives_interval_s = cfg->db_keepalive_interval_s,
		.keepalives_count = cfg->db_keepalive_count,
	};
}

/* first_line writes prefix + the first line of text (libpq's messages end in "\n", and a second
 * line may follow with hints). */
static void first_line(char *err, size_t cap, const char *prefix, const char *text)
{
	if (err == NULL || cap == 0)
		return;
	snprintf(err, cap, "%s%s", prefix, text != NULL ? text : "");
	err[strcspn(err, "\r\n")] = '\0';
}

/* wait_fd waits until fd is ready for events, until_ms passes, or wake_fd is readable. */
static jq_pgconn_rc wait_fd(int fd, short events, int64_t until_ms, int wake_fd)
{
	if (fd < 0)
		return JQ_PGCONN_BROKEN;
	for (;;) {
		struct pollfd p[2] = { { .fd = fd, .events = events }, { .fd = wake_fd, .events = POLLIN } };
		int64_t left = until_ms == JQ_PGCONN_FOREVER ? INT_MAX : until_ms - jq_clock_mono_ms();
		int timeout = left <= 0 ? 0 : left > INT_MAX ? INT_MAX : (int)left;
		int n = poll(p, wake_fd >= 0 ? 2 : 1, timeout);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return JQ_PGCONN_BROKEN;
		if (wake_fd >= 0 && p[1].revents != 0)
			return JQ_PGCONN_WOKEN;
		if (n > 0)
			return JQ_PGCONN_OK;
		if (left <= 0)
			return JQ_PGCONN_TIMEOUT;
	}
}

/* url_connect_timeout_ms: the connect_timeout the URL (or PGCONNECT_TIMEOUT) gave, in libpq's
 * terms (seconds, at least 2; 0 or less waits for ever: -1 here), or -2 when none was given.
 * jobqd passes none of its own, so any value found is the user's. */
static int url_connect_timeout_ms(PGconn *c)
{
	int ms = -2;
	PQconninfoOption *info = PQconninfo(c);
	for (PQconninfoOption *o = info; o != NULL && o->keyword != NULL; o++) {
		if (strcmp(o->keyword, "connect_timeout") != 0 || o->val == NULL || o->val[0] == '\0')
			continue;
		long s = strtol(o->val, NULL, 10);
		ms = s <= 0 ? -1 : s < 2 ? 2000 : s > INT_MAX / 1000 ? INT_MAX : (int)s * 1000;
	}
	PQconninfoFree(info);
	return ms;
}

/* connect_until: the end of one connection attempt started now. */
static int64_t connect_until(PGconn *c, const jq_pgconn_net *net, int64_t until_ms)
{
	int ms = url_connect_timeout_ms(c);
	if (ms == -2)
		ms = net->connect_timeout_ms > 0 ? net->connect_timeout_ms : -1;
	if (ms < 0)
		return until_ms;
	int64_t end = jq_clock_mono_ms() + ms;
	return end < until_ms ? end : until_ms;
}

/* start begins a connection: jobqd's network settings first, then the URL (expanded, so its
 * values replace those before it), then what jobqd must decide itself. */
static PGconn *start(const jq_pgconn_opts *o, const jq_pgconn_net *net)
{
	char tut[16], idle[16], intvl[16], cnt[16];
	snprintf(tut, sizeof(tut), "%d", net->tcp_user_timeout_ms);
	snprintf(idle, sizeof(idle), "%d", net->keepalives_idle_s);
	snprintf(intvl, sizeof(intvl), "%d", net->keepalives_interval_s);
	snprintf(cnt, sizeof(cnt), "%d", net->keepalives_count);
	const char *keys[] = { "keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count",
			       "tcp_user_timeout", "dbname", "application_name", "options", NULL };
	const char *vals[] = { "1", idle, intvl, cnt, tut, o->url,
			       o->application_name ? o->application_name : "jobqd", o->options, NULL };
	if (o->options == NULL)
		keys[7] = NULL;
	return PQconnectStartParams(keys, vals, 1);
}

/* log_notice writes what the server says outside a statement's result — a NOTICE, or the FATAL
 * it sends before it ends the session — as one log line: severity and primary message only
 * (a DETAIL may quote row values). libpq's default prints the whole text to stderr, which is
 * the log, as lines of their own. */
static void log_notice(void *arg, const PGresult *r)
{
	(void)arg;
	const char *sev = PQresultErrorField(r, PG_DIAG_SEVERITY_NONLOCALIZED);
	const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
	bool serious = sev != NULL && (strcmp(sev, "WARNING") == 0 || strcmp(sev, "ERROR") == 0 ||
				       strcmp(sev, "FATAL") == 0 || strcmp(sev, "PANIC") == 0);
	char line[256];
	snprintf(line, sizeof(line), "%s", msg != NULL ? msg : "");
	line[strcspn(line, "\r\n")] = '\0';
	jq_log(serious ? JQ_LOG_WARN : JQ_LOG_DEBUG, "database said: %s: %s",
	       sev != NULL ? sev : "NOTICE", line);
}

jq_pgconn_rc jq_pgconn_open(const jq_pgconn_opts *o, int64_t until_ms, int wake_fd, PGconn **out,
			    char *err, size_t cap)
{
	const jq_pgconn_net *net = o->net != NULL ? o->net : &jq_pgconn_net_default;
	jq_pgconn_rc rc = JQ_PGCONN_BROKEN;
	*out = NULL;
	PGconn *c = start(o, net);
	if (c == NULL) {
		first_line(err, cap, "", "out of memory");
		return JQ_PGCONN_BROKEN;
	}
	PQsetNoticeReceiver(c, log_notice, NULL);
	if (PQstatus(c) == CONNECTION_BAD) {
		first_line(err, cap, "", PQerrorMessage(c));
		goto fail;
	}
	int64_t until = connect_until(c, net, until_ms);
	/* libpq's protocol: act as if the last poll asked to write, wait for what each poll asks. */
	PostgresPollingStatusType st = PGRES_POLLING_WRITING;
	while (st != PGRES_POLLING_OK) {
		if (st == PGRES_POLLING_FAILED) {
			first_line(err, cap, "", PQerrorMessage(c));
			goto fail;
		}
		rc = wait_fd(PQsocket(c), st == PGRES_POLLING_READING ? POLLIN : POLLOUT, until, wake_fd);
		if (rc != JQ_PGCONN_OK) {
			if (rc == JQ_PGCONN_TIMEOUT)
				first_line(err, cap, "", "no answer from the database while connecting (timed out)");
			else
				first_line(err, cap, "", rc == JQ_PGCONN_WOKEN ? "stopping" : PQerrorMessage(c));
			goto fail;
		}
		st = PQconnectPoll(c);
	}
	if (PQsetnonblocking(c, 1) != 0) {
		first_line(err, cap, "", PQerrorMessage(c));
		rc = JQ_PGCONN_BROKEN;
		goto fail;
	}
	*out = c;
	return JQ_PGCONN_OK;
fail:
	PQfinish(c);
	return rc == JQ_PGCONN_OK ? JQ_PGCONN_BROKEN : rc;
}

/* flush sends what libpq has queued. The server may answer (or send notices) before it has read
 * everything, so input is read meanwhile, as libpq's documentation asks. */
static jq_pgconn_rc flush(PGconn *c, int64_t until_ms, int wake_fd)
{
	for (;;) {
		int f = PQflush(c);
		if (f == 0)
			return JQ_PGCONN_OK;
		if (f < 0)
			return JQ_PGCONN_BROKEN;
		jq_pgconn_rc rc = wait_fd(PQsocket(c), POLLIN | POLLOUT, until_ms, wake_fd);
		if (rc != JQ_PGCONN_OK)
			return rc;
		if (!PQconsumeInput(c))
			return JQ_PGCONN_BROKEN;
	}
}

jq_pgconn_rc jq_pgconn_result(PGconn *c, int64_t until_ms, int wake_fd, PGresult **out)
{
	PGresult *keep = NULL;
	jq_pgconn_rc rc = flush(c, until_ms, wake_fd);
	while (rc == JQ_PGCONN_OK) {
		if (PQisBusy(c)) {
			rc = wait_fd(PQsocket(c), POLLIN, until_ms, wake_fd);
			if (rc == JQ_PGCONN_OK && !PQconsumeInput(c))
				rc = JQ_PGCONN_BROKEN;
			continue;
		}
		PGresult *r = PQgetResult(c);
		if (r == NULL)
			break;
		if (keep != NULL && PQresultStatus(keep) == PGRES_FATAL_ERROR) {
			PQclear(r);
		} else {
			PQclear(keep);
			keep = r;
		}
	}
	if (rc == JQ_PGCONN_OK && keep == NULL)
		rc = JQ_PGCONN_BROKEN; /* nothing was sent: PQsend* had failed */
	/* The server's own error came before it closed the connection (a terminated backend):
	 * that error says more than libpq's "server closed the connection". */
	if (rc == JQ_PGCONN_BROKEN && keep != NULL && PQresultStatus(keep) == PGRES_FATAL_ERROR)
		rc = JQ_PGCONN_OK;
	if (rc != JQ_PGCONN_OK) {
		PQclear(keep);
		keep = NULL;
	}
	*out = keep;
	return rc;
}
