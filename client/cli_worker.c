/*
 * cli_worker.c — `jobq worker ... -- COMMAND`: runs COMMAND once per claimed job.
 *
 * One thread, one poll() loop over: a signalfd (SIGCHLD, SIGTERM, SIGINT), the subscription's
 * descriptor, and each running child's stderr pipe; timers (claim poll, heartbeat, per-job
 * timeouts, kill escalation, shutdown grace, report retries) become poll's timeout. Service calls
 * are made from the loop and are short (the client's timeout bounds them).
 *
 * A job's lease is the worker's licence to report it: heartbeats keep it alive while the child
 * runs; a FAILED_PRECONDITION (or NOT_FOUND) from the service means someone else may own the job
 * now, so the child is killed and its result dropped, never re-sent. A job cancelled while it
 * runs is the same case, heard at once from a "cancel.<queue>" message (or at the next
 * heartbeat, whose result says "cancelled"): its command's process group is killed and nothing
 * more is reported for it (the service has already ended the job).
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli_worker.h"

#define ERROR_TEXT_MAX (TAIL_MAX + 256)
#define REPORT_RETRY_MS 500
#define REPORT_RETRY_MAX_MS 5000

static const char worker_help[] =
	"Usage: jobq worker [OPTIONS] -- COMMAND [ARGS...]\n"
	"\n"
	"Runs COMMAND once per job of the queue, at most --concurrency at once, with the payload on\n"
	"its stdin and JOBQ_JOB_ID, JOBQ_ATTEMPT, JOBQ_QUEUE in its environment. Exit 0 completes\n"
	"the job; any other exit (or a signal) fails it with the last 4 KiB of the command's stderr\n"
	"as the error, retried by the service unless the exit code is in --final-exit-codes.\n"
	"Leases are renewed every lease/3 while commands run. A finished job is reported and the\n"
	"next one claimed in the same call; other claims wake on the service's announcements and\n"
	"poll every --poll-ms as a safety net.\n"
	"\n"
	"SIGTERM or SIGINT: stop claiming, let running commands finish for up to --grace seconds,\n"
	"then kill them (their jobs fail with \"worker shutting down\"), report everything, exit 0.\n"
	"A second signal ends the grace period at once.\n"
	"\n"
	"  -q, --queue Q              queue (default \"default\")\n"
	"  -c, --concurrency N        commands at once (1..1000, default 1)\n"
	"      --lease SECONDS        lease length (default 30)\n"
	"      --timeout SECONDS      per-job limit; the command is killed and the job failed with\n"
	"                             \"timed out after Ns\" (0 = none, the default)\n"
	"      --grace SECONDS        shutdown grace period (default 30)\n"
	"      --final-exit-codes L   comma-separated exit codes that fail the job for good (e.g. 2,3)\n"
	"      --poll-ms N            claim poll interval (default 2000)\n"
	"      --worker-id W          lease owner recorded by the service (default jobq-worker@HOST:PID)\n"
	"      --keep-output          the command's stdout becomes the job's output (jobq get shows it;\n"
	"                             enqueue --wait prints it); more than --max-output-bytes fails\n"
	"                             the job with \"output over N bytes\"\n"
	"      --max-output-bytes N   with --keep-output (default 65536; the service refuses more\n"
	"                             than its --max-payload-bytes)\n"
	"\n"
	"Logs go to stderr. With --json, one JSON object per finished job goes to stdout (and the\n"
	"command's stdout is sent to stderr so the stream stays clean).\n"
	"\n" CLI_GLOBAL_HELP;

enum {
	OPT_LEASE = OPT_FIRST_COMMAND_OPT,
	OPT_TIMEOUT,
	OPT_GRACE,
	OPT_FINAL_CODES,
	OPT_POLL_MS,
	OPT_WORKER_ID,
	OPT_KEEP_OUTPUT,
	OPT_MAX_OUTPUT,
};

static void wlog(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void wlog(const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, "jobq worker: %s\n", line);
}

/* first_line copies the first line of text (at most size-1 bytes) for a log line. */
static const char *first_line(const char *text, char *buf, size_t size)
{
	size_t n = strcspn(text, "\n");
	if (n >= size)
		n = size - 1;
	memcpy(buf, text, n);
	buf[n] = '\0';
	return buf;
}

/* ---------------------------------------------------------------- options */

static int parse_final_codes(worker *w, const char *arg)
{
	const char *p = arg;
	w->n_final = 0;
	while (*p != '\0') {
		char *end = NULL;
		errno = 0;
		long v = strtol(p, &end, 10);
		if (end == p || errno != 0 || v < 0 || v > 255 || (*end != ',' && *end != '\0'))
			return cli_usage_error(w->c, "--final-exit-codes: '%s' is not a list of exit codes (0..255)", arg);
		if (w->n_final == MAX_FINAL_CODES)
			return cli_usage_error(w->c, "--final-exit-codes: at most %d codes", MAX_FINAL_CODES);
		w->final_codes[w->n_final++] = (int)v;
		p = *end == ',' ? end + 1 : end;
	}
	return CLI_EXIT_OK;
}

static int worker_opt(worker *w, int opt, const char *arg)
{
	cli *c = w->c;
	switch (opt) {
	case 'q':
		w->queue = arg;
		return CLI_EXIT_OK;
	case 'c':
		return cli_parse_u32(c, "--concurrency", arg, 1000, &w->concurrency);
	case OPT_LEASE:
		return cli_parse_u32(c, "--lease", arg, 86400, &w->lease_s);
	case OPT_TIMEOUT:
		return cli_parse_u32(c, "--timeout", arg, 86400 * 7, &w->timeout_s);
	case OPT_GRACE:
		return cli_parse_u32(c, "--grace", arg, 86400, &w->grace_s);
	case OPT_FINAL_CODES:
		return parse_final_codes(w, arg);
	case OPT_POLL_MS:
		return cli_parse_u32(c, "--poll-ms", arg, 3600 * 1000, &w->poll_ms);
	case OPT_WORKER_ID:
		snprintf(w->worker_id, sizeof(w->worker_id), "%s", arg);
		return CLI_EXIT_OK;
	case OPT_KEEP_OUTPUT:
		w->keep_output = true;
		return CLI_EXIT_OK;
	case OPT_MAX_OUTPUT:
		return cli_parse_u32(c, "--max-output-bytes", arg, 64u * 1024 * 1024, &w->max_output);
	default:
		return cli_global_opt(c, opt, arg) ? CLI_EXIT_OK : CLI_EXIT_USAGE;
	}
}

static int parse_worker_args(worker *w, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "queue", required_argument, NULL, 'q' },
		{ "concurrency", required_argument, NULL, 'c' },
		{ "lease", required_argument, NULL, OPT_LEASE },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "grace", required_argument, NULL, OPT_GRACE },
		{ "final-exit-codes", required_argument, NULL, OPT_FINAL_CODES },
		{ "poll-ms", required_argument, NULL, OPT_POLL_MS },
		{ "worker-id", required_argument, NULL, OPT_WORKER_ID },
		{ "keep-output", no_argument, NULL, OPT_KEEP_OUTPUT },
		{ "max-output-bytes", required_argument, NULL, OPT_MAX_OUTPUT },
		{ NULL, 0, NULL, 0 },
	};
	int opt, rc;
	/* '+': stop at COMMAND, so its own flags (sh -c) are not taken for ours. */
	while ((opt = cli_getopt(w->c, argc, argv, "+q:c:", longopts)) != -1) {
		if (opt == '?')
			return CLI_EXIT_USAGE;
		if ((rc = worker_opt(w, opt, optarg)) != CLI_EXIT_OK)
			return rc;
	}
	if (w->c->help) {
		cli_help(worker_help);
		return -1;
	}
	if (optind >= argc)
		return cli_usage_error(w->c, "no COMMAND (jobq worker [OPTIONS] -- COMMAND [ARGS...])");
	if (w->concurrency == 0)
		return cli_usage_error(w->c, "--concurrency must be 1..1000");
	if (w->lease_s == 0)
		return cli_usage_error(w->c, "--lease must be 1..86400");
	if (w->poll_ms == 0)
		return cli_usage_error(w->c, "--poll-ms must be positive");
	if (w->worker_id[0] == '\0')
		cli_default_worker_id(w->worker_id, sizeof(w->worker_id), "jobq-worker");
	return worker_prepare_exec(w, argv + optind);
}

/* ---------------------------------------------------------------- signals */

/* block_signals routes SIGCHLD/SIGTERM/SIGINT to a signalfd. It runs before the library starts
 * its threads, so they inherit the mask and no thread takes the signals by default action. */
static int block_signals(worker *w, sigset_t *old)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	if (sigprocmask(SIG_BLOCK, &set, old) != 0)
		return cli_fail(w->c, JOBQ_INTERNAL, "sigprocmask: %s", strerror(errno));
	/* A command that exits early must not kill us while we write its stdin or stderr. */
	signal(SIGPIPE, SIG_IGN);
	w->sig_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (w->sig_fd < 0)
		return cli_fail(w->c, JOBQ_INTERNAL, "signalfd: %s", strerror(errno));
	return CLI_EXIT_OK;
}

static size_t count_state(const worker *w, slot_state st)
{
	size_t n = 0;
	for (uint32_t i = 0; i < w->concurrency; i++)
		n += w->slots[i].state == st;
	return n;
}

static void begin_stop(worker *w, int sig, int64_t now)
{
	size_t running = count_state(w, SLOT_RUNNING);
	if (w->stopping) {
		/* A second signal: the operator does not want to wait. */
		wlog("%s again: ending the grace period now", strsignal(sig));
		w->grace_deadline_ms = now;
		return;
	}
	w->stopping = true;
	w->grace_deadline_ms = now + (int64_t)w->grace_s * 1000;
	wlog("%s: stopping; waiting up to %" PRIu32 " s for %zu running job%s", strsignal(sig), w->grace_s,
	     running, running == 1 ? "" : "s");
}

static slot *slot_by_pid(worker *w, pid_t pid)
{
	for (uint32_t i = 0; i < w->concurrency; i++)
		if (w->slots[i].state == SLOT_RUNNING && w->slots[i].pid == pid)
			return &w->slots[i];
	return NULL;
}

static void reap_children(worker *w, int64_t now)
{
	int st;
	pid_t pid;
	while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
		slot *s = slot_by_pid(w, pid);
		if (s == NULL)
			continue;
		/* What it wrote before exiting is in the pipes: take it all before judging. */
		worker_read_stderr(s);
		worker_close_stderr(s);
		worker_read_stdout(w, s);
		worker_close_stdout(s);
		if (s->out_over && s->reason[0] == '\0')
			snprintf(s->reason, sizeof(s->reason), "output over %" PRIu32 " bytes (--max-output-bytes)",
				 w->max_output);
		s->wstatus = st;
		s->state = SLOT_DONE;
		s->finished_ms = now;
		s->next_report_ms = now;
	}
}

static void handle_signals(worker *w, int64_t now)
{
	struct signalfd_siginfo si;
	while (read(w->sig_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo == SIGCHLD)
			continue; /* reaped below, once for all */
		begin_stop(w, (int)si.ssi_signo, now);
	}
	reap_children(w, now);
}

/* ---------------------------------------------------------------- claim */

static bool fatal_code(int code)
{
	return code == JOBQ_INVALID_ARGUMENT || code == JOBQ_UNAUTHENTICATED ||
	       code == JOBQ_PERMISSION_DENIED || code == JOBQ_UNIMPLEMENTED;
}

static slot *free_slot(worker *w)
{
	for (uint32_t i = 0; i < w->concurrency; i++)
		if (w->slots[i].state == SLOT_FREE)
			return &w->slots[i];
	return NULL;
}

/* give_back hands a claimed job the worker has no slot for back to the service at once: a
 * retryable failure, so it is pending again after the backoff instead of waiting out the lease.
 * Only a service that answers a Claim with more jobs than asked for causes this. If the call
 * fails, the lease runs out and the service takes the job back then; nothing is lost. */
static void give_back(worker *w, const jobq_job *job)
{
	jobq_failure f = { .id = job->id, .lease_token = job->lease_token,
			   .error = "jobq worker: no free slot (the service returned more jobs than asked for)" };
	jobq_result r = { .id = job->id };
	jobq_error err = { 0 };
	int rc = jobq_fail(w->c->client, &f, 1, w->worker_id, &r, &err);
	if (rc == JOBQ_OK)
		wlog("job %" PRId64 ": no free slot (more jobs than asked for); given back to the service", job->id);
	else
		wlog("job %" PRId64 ": no free slot (more jobs than asked for), and giving it back failed (%s: %s);"
		     " the service takes it back when its lease runs out", job->id, jobq_code_name(rc),
		     r.message[0] ? r.message : err.message);
}

static void start_job(worker *w, const jobq_job *job, int64_t now)
{
	slot *s = free_slot(w);
	if (s == NULL) {
		give_back(w, job);
		return;
	}
	memset(s, 0, sizeof(*s));
	s->id = job->id;
	s->token = job->lease_token;
	s->attempt = job->attempts;
	s->err_fd = -1;
	s->out_fd = -1;
	s->started_ms = now;
	s->finished_ms = now;
	s->next_report_ms = now;
	s->lease_until_ms = now + (int64_t)w->lease_s * 1000;
	s->deadline_ms = w->timeout_s != 0 ? now + (int64_t)w->timeout_s * 1000 : 0;
	worker_spawn(w, s, job);
	if (s->state == SLOT_RUNNING)
		wlog("job %" PRId64 " started (attempt %" PRIu32 ", pid %ld)", s->id, s->attempt, (long)s->pid);
	else
		wlog("job %" PRId64 ": %s", s->id, s->reason);
}

static void maybe_claim(worker *w, int64_t now)
{
	size_t free_n = count_state(w, SLOT_FREE);
	if (w->stopping || free_n == 0 || (!w->wake && now < w->next_poll_ms))
		return;
	w->wake = false;
	w->next_poll_ms = now + w->poll_ms;
	jobq_job *jobs = NULL;
	size_t n = 0;
	jobq_error err = { 0 };
	int rc = jobq_claim(w->c->client, w->queue, (uint32_t)free_n, w->worker_id, w->lease_s, 0, &jobs, &n, &err);
	if (rc != JOBQ_OK) {
		wlog("claim failed: %s: %s", jobq_code_name(rc), err.message);
		if (fatal_code(rc)) {
			/* Retrying cannot help (a bad queue name, a wrong token): stop like on SIGTERM. */
			cli_fail(w->c, rc, "%s", err.message);
			w->exit_code = CLI_EXIT_FAIL;
			begin_stop(w, SIGTERM, now);
		}
		return;
	}
	for (size_t i = 0; i < n; i++)
		start_job(w, &jobs[i], cli_mono_ms());
	/* A full claim suggests more jobs are due: claim again as soon as a slot frees up. */
	w->wake = n == free_n;
	jobq_jobs_free(jobs, n);
}

/* job_stopped: the service stopped the job under this slot's lease (a cancel): kill the command,
 * report nothing more for it. */
static void job_stopped(slot *s, const char *reason, int64_t now)
{
	if (s->lease_lost)
		return;
	s->lease_lost = true;
	snprintf(s->stop_reason, sizeof(s->stop_reason), "%s", reason);
	wlog("job %" PRId64 ": %s by the service; %s", s->id, reason,
	     s->state == SLOT_RUNNING ? "killing the command" : "its result is not reported");
	worker_kill(s, reason, now);
}

static void hear_stop(worker *w, const jobq_announcement *a, int64_t now)
{
	for (size_t k = 0; k < a->n_ids; k++) {
		for (uint32_t i = 0; i < w->concurrency; i++) {
			slot *s = &w->slots[i];
			if (s->state != SLOT_FREE && s->id == a->ids[k] && s->token == a->lease_tokens[k])
				job_stopped(s, a->reason[0] ? a->reason : "stopped", now);
		}
	}
}

static void drain_announcements(worker *w, int64_t now)
{
	jobq_announcement a;
	jobq_error err = { 0 };
	memset(&a, 0, sizeof(a));
	while (jobq_sub_next(w->sub, 0, &a, &err) == JOBQ_OK) {
		if (a.stopped)
			hear_stop(w, &a, now);
		else
			w->wake = true;
		jobq_announcement_free(&a);
		memset(&a, 0, sizeof(a));
	}
}

/* ---------------------------------------------------------------- heartbeat */

static void lease_lost(slot *s, int code, const char *msg, int64_t now)
{
	if (s->lease_lost)
		return;
	s->lease_lost = true;
	wlog("job %" PRId64 ": lease lost (%s: %s); %s", s->id, jobq_code_name(code), msg,
	     s->state == SLOT_RUNNING ? "killing the command, its result will be dropped" : "result dropped");
	worker_kill(s, "lease lost", now);
}

static bool transient_code(int code)
{
	return code == JOBQ_UNAVAILABLE || code == JOBQ_DEADLINE_EXCEEDED || code == JOBQ_RESOURCE_EXHAUSTED ||
	       code == JOBQ_ABORTED || code == JOBQ_INTERNAL || code == JOBQ_UNKNOWN;
}

static void heartbeat(worker *w, int64_t now)
{
	uint32_t interval = w->lease_s * 1000 / 3;
	jobq_lease leases[1000];
	jobq_result res[1000];
	slot *who[1000];
	size_t n = 0;
	if (now < w->next_hb_ms)
		return;
	w->next_hb_ms = now + (interval < 300 ? 300 : interval);
	for (uint32_t i = 0; i < w->concurrency; i++) {
		slot *s = &w->slots[i];
		if (s->state == SLOT_FREE || s->lease_lost || s->pid == 0)
			continue;
		leases[n] = (jobq_lease){ .id = s->id, .lease_token = s->token };
		memset(&res[n], 0, sizeof(res[n]));
		res[n].id = s->id;
		who[n++] = s;
	}
	if (n == 0)
		return;
	jobq_error err = { 0 };
	int rc = jobq_heartbeat(w->c->client, leases, n, w->lease_s, res, &err);
	if (rc != JOBQ_OK && transient_code(rc)) {
		wlog("heartbeat failed (%s: %s); trying again in 1 s", jobq_code_name(rc), err.message);
		w->next_hb_ms = now + 1000;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		int code = rc != JOBQ_OK ? rc : res[i].code;
		const char *msg = res[i].message[0] ? res[i].message : err.message;
		if (code == JOBQ_OK)
			who[i]->lease_until_ms = now + (int64_t)w->lease_s * 1000;
		else if (code == JOBQ_FAILED_PRECONDITION && rc == JOBQ_OK && res[i].stop_reason[0] != '\0')
			job_stopped(who[i], res[i].stop_reason, now);
		else if (code == JOBQ_FAILED_PRECONDITION || code == JOBQ_NOT_FOUND)
			lease_lost(who[i], code, msg, now);
		else
			wlog("job %" PRId64 ": heartbeat failed: %s: %s", who[i]->id, jobq_code_name(code), msg);
	}
}

/* ---------------------------------------------------------------- timers */

static void check_deadlines(worker *w, int64_t now)
{
	for (uint32_t i = 0; i < w->concurrency; i++) {
		slot *s = &w->slots[i];
		if (s->state != SLOT_RUNNING)
			continue;
		if (s->kill_at_ms != 0 && now >= s->kill_at_ms) {
			worker_kill_hard(s);
			s->kill_at_ms = INT64_MAX; /* sent; wait for SIGCHLD */
		}
		if (s->deadline_ms != 0 && now >= s->deadline_ms && s->kill_at_ms == 0) {
			char why[64];
			snprintf(why, sizeof(why), "timed out after %" PRIu32 "s", w->timeout_s);
			wlog("job %" PRId64 ": %s; killing the command", s->id, why);
			worker_kill(s, why, now);
		}
		if (w->stopping && now >= w->grace_deadline_ms && s->kill_at_ms == 0) {
			wlog("job %" PRId64 ": grace period over; killing the command", s->id);
			worker_kill(s, "worker shutting down", now);
		}
	}
}

static int64_t min_time(int64_t a, int64_t b)
{
	return b != 0 && b < a ? b : a;
}

/* next_timeout: milliseconds until the earliest timer (poll's timeout). */
static int next_timeout(const worker *w, int64_t now)
{
	int64_t t = now + 60000;
	bool leased = false;
	if (!w->stopping && count_state(w, SLOT_FREE) > 0)
		t = min_time(t, w->wake ? now : w->next_poll_ms);
	if (w->stopping)
		t = min_time(t, w->grace_deadline_ms);
	for (uint32_t i = 0; i < w->concurrency; i++) {
		const slot *s = &w->slots[i];
		if (s->state == SLOT_RUNNING) {
			t = min_time(t, s->deadline_ms);
			t = min_time(t, s->kill_at_ms != INT64_MAX ? s->kill_at_ms : 0);
		}
		if (s->state == SLOT_DONE)
			t = min_time(t, s->next_report_ms);
		leased = leased || s->state != SLOT_FREE;
	}
	if (leased)
		t = min_time(t, w->next_hb_ms);
	return t <= now ? 0 : (int)(t - now);
}

/* ---------------------------------------------------------------- reporting results */

static bool is_final_code(const worker *w, const slot *s)
{
	if (s->reason[0] != '\0' || s->pid == 0 || !WIFEXITED(s->wstatus))
		return false;
	for (size_t i = 0; i < w->n_final; i++)
		if (WEXITSTATUS(s->wstatus) == w->final_codes[i])
			return true;
	return false;
}

static bool succeeded(const slot *s)
{
	return s->reason[0] == '\0' && s->pid != 0 && WIFEXITED(s->wstatus) && WEXITSTATUS(s->wstatus) == 0;
}

static void json_event(const worker *w, const slot *s, const char *event, const char *error, const jobq_result *r)
{
	if (!w->c->json)
		return;
	json_out j;
	json_begin(&j, stdout);
	json_str(&j, "event", event);
	json_i64(&j, "id", s->id);
	json_u64(&j, "attempt", s->attempt);
	json_double(&j, "seconds", (double)(s->finished_ms - s->started_ms) / 1000.0);
	if (error != NULL)
		json_str(&j, "error", error);
	if (r != NULL && r->status != JOBQ_STATUS_UNSPECIFIED)
		json_str(&j, "status", jobq_status_name(r->status));
	json_end(&j);
}

static void release(slot *s)
{
	worker_close_stderr(s);
	worker_close_stdout(s);
	worker_free_output(s);
	s->state = SLOT_FREE;
}

/* settle handles the service's answer for one reported job; false = try again later. */
static bool settle(worker *w, slot *s, int code, const char *msg, int64_t now)
{
	if (code == JOBQ_OK)
		return true;
	if (code == JOBQ_FAILED_PRECONDITION || code == JOBQ_NOT_FOUND) {
		/* Someone else may hold the job now: log and drop, never re-send. */
		wlog("job %" PRId64 ": lease lost (%s: %s); result dropped", s->id, jobq_code_name(code), msg);
		json_event(w, s, "dropped", msg, NULL);
		w->n_dropped++;
		return true;
	}
	if (transient_code(code) && now < s->lease_until_ms) {
		int64_t delay = (int64_t)REPORT_RETRY_MS << (s->report_tries < 4 ? s->report_tries : 4);
		s->report_tries++;
		s->next_report_ms = now + (delay < REPORT_RETRY_MAX_MS ? delay : REPORT_RETRY_MAX_MS);
		wlog("job %" PRId64 ": report failed (%s: %s); trying again", s->id, jobq_code_name(code), msg);
		return false;
	}
	wlog("job %" PRId64 ": report failed (%s: %s); result dropped", s->id, jobq_code_name(code), msg);
	json_event(w, s, "dropped", msg, NULL);
	w->n_dropped++;
	return true;
}

static const char *plural(uint64_t n, const char *one, const char *many)
{
	return n == 1 ? one : many;
}

/* log_summary says what the counts count: a job retried and failed again is one job but two
 * failed attempts. */
static void log_summary(const worker *w)
{
	char stopped[64] = "";
	if (w->n_stopped > 0)
		snprintf(stopped, sizeof(stopped), ", %" PRIu64 " %s stopped by the service", w->n_stopped,
			 plural(w->n_stopped, "job", "jobs"));
	wlog("stopped: %" PRIu64 " %s completed, %" PRIu64 " %s failed (%" PRIu64 " %s failed for good), "
	     "%" PRIu64 " %s dropped%s",
	     w->n_completed, plural(w->n_completed, "job", "jobs"), w->n_failed,
	     plural(w->n_failed, "attempt", "attempts"), w->n_failed_final,
	     plural(w->n_failed_final, "job", "jobs"), w->n_dropped, plural(w->n_dropped, "result", "results"),
	     stopped);
}

/* next_claim: the claim a report carries (jobq_complete_claim, jobq_fail_claim), so that a slot
 * whose job ends takes the next one in the same call: as many jobs as there are free slots once
 * this one is released. NULL while stopping: a stopping worker claims nothing. */
static const jobq_claim_next *next_claim(worker *w, jobq_claim_next *buf)
{
	if (w->stopping)
		return NULL;
	*buf = (jobq_claim_next){ .queue = w->queue, .limit = (uint32_t)count_state(w, SLOT_FREE) + 1,
				  .worker_id = w->worker_id, .lease_seconds = w->lease_s };
	return buf;
}

/* refused_claim: the report's claim was refused as a Claim would be (a credential that may not
 * Claim, a reply limit too small for one job), so nothing was reported either: the report is
 * made again without it, and the loop's claims say why. */
static bool refused_claim(const jobq_claim_next *next, int rc)
{
	return next != NULL && fatal_code(rc);
}

/* take_claimed starts the jobs a report claimed (its slot released), and counts the report as
 * the loop's claim: the next poll is a poll interval away, and a full claim asks for more. */
static void take_claimed(worker *w, const jobq_claim_next *next, jobq_job *jobs, size_t n, int64_t now)
{
	if (next == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		start_job(w, &jobs[i], cli_mono_ms());
	jobq_jobs_free(jobs, n);
	w->next_poll_ms = now + w->poll_ms;
	w->wake = n == next->limit;
}

static void report_complete(worker *w, slot *s, int64_t now)
{
	jobq_lease l = { .id = s->id, .lease_token = s->token };
	jobq_result r = { .id = s->id };
	jobq_error err = { 0 };
	jobq_claim_next buf;
	const jobq_claim_next *next = next_claim(w, &buf);
	jobq_job *jobs = NULL;
	size_t n = 0;
	/* --keep-output: the command's stdout goes with the completion (NULL: none). */
	jobq_output kept = { .data = s->out != NULL ? (const void *)s->out : "", .len = s->out_len };
	const jobq_output *out = w->keep_output ? &kept : NULL;
	int rc = next != NULL ? jobq_complete_output_claim(w->c->client, &l, out, 1, next, &r, &jobs, &n, NULL, &err)
			      : jobq_complete_output(w->c->client, &l, out, 1, &r, &err);
	if (refused_claim(next, rc)) {
		next = NULL;
		rc = jobq_complete_output(w->c->client, &l, out, 1, &r, &err);
	}
	const char *msg = r.message[0] ? r.message : err.message;
	if (rc != JOBQ_OK) {
		if (settle(w, s, rc, msg, now))
			release(s);
		return;
	}
	wlog("job %" PRId64 " completed (attempt %" PRIu32 ", %.2f s)", s->id, s->attempt,
	     (double)(s->finished_ms - s->started_ms) / 1000.0);
	json_event(w, s, "completed", NULL, &r);
	w->n_completed++;
	release(s);
	take_claimed(w, next, jobs, n, now);
}

static void log_failed(worker *w, const slot *s, const jobq_result *r, const char *error)
{
	char how[96], line[200], when[40];
	worker_exit_desc(s, how, sizeof(how));
	first_line(error, line, sizeof(line));
	double secs = (double)(s->finished_ms - s->started_ms) / 1000.0;
	if (r->status == JOBQ_STATUS_PENDING && r->run_at_ms != 0)
		wlog("job %" PRId64 " failed (attempt %" PRIu32 ", %s, %.2f s), retry at %s: %s", s->id, s->attempt,
		     how, secs, fmt_time_ms(when, sizeof(when), r->run_at_ms), line);
	else if (r->status == JOBQ_STATUS_FAILED)
		wlog("job %" PRId64 " failed for good (attempt %" PRIu32 ", %s, %.2f s): %s", s->id, s->attempt,
		     how, secs, line);
	else
		wlog("job %" PRId64 " failed (attempt %" PRIu32 ", %s, %.2f s): %s", s->id, s->attempt, how, secs, line);
	(void)w;
}

static void report_fail(worker *w, slot *s, int64_t now)
{
	char error[ERROR_TEXT_MAX];
	worker_error_text(s, error, sizeof(error));
	jobq_failure f = { .id = s->id, .lease_token = s->token, .error = error, .final = is_final_code(w, s) };
	jobq_result r = { .id = s->id };
	jobq_error err = { 0 };
	jobq_claim_next buf;
	const jobq_claim_next *next = next_claim(w, &buf);
	jobq_job *jobs = NULL;
	size_t n = 0;
	int rc = next != NULL ? jobq_fail_claim(w->c->client, &f, 1, w->worker_id, next, &r, &jobs, &n, NULL, &err)
			      : jobq_fail(w->c->client, &f, 1, w->worker_id, &r, &err);
	if (refused_claim(next, rc)) {
		next = NULL;
		rc = jobq_fail(w->c->client, &f, 1, w->worker_id, &r, &err);
	}
	const char *msg = r.message[0] ? r.message : err.message;
	if (rc != JOBQ_OK) {
		if (settle(w, s, rc, msg, now))
			release(s);
		return;
	}
	log_failed(w, s, &r, error);
	json_event(w, s, "failed", error, &r);
	w->n_failed++;
	if (r.status == JOBQ_STATUS_FAILED)
		w->n_failed_final++;
	release(s);
	take_claimed(w, next, jobs, n, now);
}

/* report_done reports every finished job whose turn has come. One call per job keeps the
 * single-job semantics (the code is the job's) simple; each call also claims the jobs the freed
 * slots can take (next_claim), so a busy worker needs one call per job. */
static void report_done(worker *w, int64_t now)
{
	for (uint32_t i = 0; i < w->concurrency; i++) {
		slot *s = &w->slots[i];
		if (s->state != SLOT_DONE || now < s->next_report_ms)
			continue;
		if (s->lease_lost && s->stop_reason[0] != '\0') {
			json_event(w, s, strcmp(s->stop_reason, "cancelled") == 0 ? "cancelled" : "stopped",
				   s->stop_reason, NULL);
			w->n_stopped++;
			release(s);
		} else if (s->lease_lost) {
			json_event(w, s, "dropped", "lease lost", NULL);
			w->n_dropped++;
			release(s);
		} else if (succeeded(s)) {
			report_complete(w, s, now);
		} else {
			report_fail(w, s, now);
		}
	}
}

/* ---------------------------------------------------------------- the loop */

static size_t build_pollfds(worker *w, struct pollfd *pfd, slot **owner)
{
	size_t n = 0;
	pfd[n] = (struct pollfd){ .fd = w->sig_fd, .events = POLLIN };
	owner[n++] = NULL;
	if (w->sub != NULL && !w->stopping) {
		pfd[n] = (struct pollfd){ .fd = jobq_sub_fd(w->sub), .events = POLLIN };
		owner[n++] = NULL;
	}
	for (uint32_t i = 0; i < w->concurrency; i++) {
		if (w->slots[i].state != SLOT_RUNNING)
			continue;
		if (w->slots[i].err_fd >= 0) {
			pfd[n] = (struct pollfd){ .fd = w->slots[i].err_fd, .events = POLLIN };
			owner[n++] = &w->slots[i];
		}
		if (w->slots[i].out_fd >= 0) {
			pfd[n] = (struct pollfd){ .fd = w->slots[i].out_fd, .events = POLLIN };
			owner[n++] = &w->slots[i];
		}
	}
	return n;
}

static int run_loop(worker *w)
{
	struct pollfd *pfd = calloc(2 * (size_t)w->concurrency + 2, sizeof(*pfd));
	slot **owner = calloc(2 * (size_t)w->concurrency + 2, sizeof(*owner));
	if (pfd == NULL || owner == NULL) {
		free(pfd);
		free(owner);
		return cli_fail(w->c, JOBQ_RESOURCE_EXHAUSTED, "out of memory");
	}
	while (!w->stopping || count_state(w, SLOT_FREE) < w->concurrency) {
		maybe_claim(w, cli_mono_ms());
		size_t n = build_pollfds(w, pfd, owner);
		int r = poll(pfd, n, next_timeout(w, cli_mono_ms()));
		int64_t now = cli_mono_ms();
		if (r < 0 && errno != EINTR) {
			wlog("poll: %s", strerror(errno));
			break;
		}
		for (size_t i = 0; r > 0 && i < n; i++) {
			if (pfd[i].revents == 0)
				continue;
			if (owner[i] != NULL && pfd[i].fd == owner[i]->out_fd)
				worker_read_stdout(w, owner[i]);
			else if (owner[i] != NULL)
				worker_read_stderr(owner[i]);
			else if (pfd[i].fd == w->sig_fd)
				handle_signals(w, now);
			else
				drain_announcements(w, now);
		}
		check_deadlines(w, now);
		heartbeat(w, now);
		report_done(w, cli_mono_ms());
	}
	free(pfd);
	free(owner);
	return w->exit_code;
}

static void log_start(const worker *w)
{
	char cmd[256] = "";
	size_t off = 0;
	for (char **a = w->argv; *a != NULL && off < sizeof(cmd) - 1; a++)
		off += (size_t)snprintf(cmd + off, sizeof(cmd) - off, "%s%s", off ? " " : "", *a);
	char timeout[32] = "none";
	if (w->timeout_s != 0)
		snprintf(timeout, sizeof(timeout), "%" PRIu32 " s", w->timeout_s);
	wlog("%s: queue %s, concurrency %" PRIu32 ", lease %" PRIu32 " s, timeout %s, command: %s", w->worker_id,
	     w->queue, w->concurrency, w->lease_s, timeout, cmd);
}

static void subscribe(worker *w)
{
	jobq_error err = { 0 };
	if (jobq_subscribe(&w->c->opts, w->queue, &w->sub, &err) != JOBQ_OK ||
	    jobq_sub_cancels(w->sub, w->queue, &err) != JOBQ_OK) {
		jobq_sub_close(w->sub);
		/* Announcements only make us faster; polling alone still works. */
		wlog("cannot subscribe (%s: %s); polling every %" PRIu32 " ms only", jobq_code_name(err.code),
		     err.message, w->poll_ms);
		w->sub = NULL;
	}
}

int cmd_worker(cli *c, int argc, char **argv)
{
	worker w = { .c = c, .queue = "default", .concurrency = 1, .lease_s = 30, .grace_s = 30,
		     .poll_ms = 2000, .sig_fd = -1, .wake = true, .max_output = 65536 };
	sigset_t old;
	int rc = parse_worker_args(&w, argc, argv);
	if (rc != CLI_EXIT_OK) {
		worker_free_exec(&w);
		return rc < 0 ? CLI_EXIT_OK : rc;
	}
	w.slots = calloc(w.concurrency, sizeof(*w.slots));
	if (w.slots == NULL) {
		rc = cli_fail(c, JOBQ_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	if ((rc = block_signals(&w, &old)) != CLI_EXIT_OK || (rc = cli_connect(c)) != CLI_EXIT_OK)
		goto out;
	subscribe(&w);
	log_start(&w);
	rc = run_loop(&w);
	log_summary(&w);
out:
	if (w.sub != NULL)
		jobq_sub_close(w.sub);
	if (w.sig_fd >= 0)
		close(w.sig_fd);
	free(w.slots);
	worker_free_exec(&w);
	return rc;
}
