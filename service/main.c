/*
 * jobqd — the jobq service: configuration, then one database connection per RPC worker, the RPC
 * server, the rescuer, the ticker of periodic jobs, the publisher and the notification listener;
 * on SIGTERM or SIGINT it stops receiving, finishes what is in flight, and closes everything in
 * reverse order; on SIGHUP it reloads the TLS certificates.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "jq_auth.h"
#include "jq_config.h"
#include "jq_db.h"
#include "jq_dispatch.h"
#include "jq_console.h"
#include "jq_http.h"
#include "jq_log.h"
#include "jq_longpoll.h"
#include "jq_notify.h"
#include "jq_publisher.h"
#include "jq_rescuer.h"
#include "jq_rpc_server.h"
#include "jq_scheduler.h"

typedef struct service {
	jq_config cfg;
	jq_worker *workers;
	void **worker_args;
	int nworkers;
	jq_rpc_server *rpc;
	jq_rescuer *rescuer;
	jq_scheduler *scheduler;
	jq_publisher *pub;
	jq_notify *notify;
	jq_longpoll *longpoll;
	jq_flow *flow; /* the queues' flow settings as the listener last heard them */
	jq_jobwait *jobwait;
	jq_enqgroup *enqgroup; /* small Enqueues arriving together share a statement */
	jq_http *http;
	jq_console *console;
	jq_auth *auth;
	int workers_up;        /* of nworkers, connected when they opened */
	jq_db_err workers_why; /* when some are not: why (the last one's reason) */
} service;

static int open_workers(service *s)
{
	s->nworkers = s->cfg.db_pool_size;
	s->workers = calloc((size_t)s->nworkers, sizeof(*s->workers));
	s->worker_args = calloc((size_t)s->nworkers, sizeof(*s->worker_args));
	if (s->workers == NULL || s->worker_args == NULL)
		return -1;
	jq_pgconn_net net = jq_pgconn_net_of(&s->cfg);
	jq_db_opts o = { .url = s->cfg.database_url, .prepared = s->cfg.db_prepared,
			 .backoff_base_ms = s->cfg.backoff_base_ms, .backoff_max_ms = s->cfg.backoff_max_ms,
			 .statement_timeout_ms = s->cfg.default_deadline_ms, .application_name = "jobqd",
			 .net = &net };
	for (int i = 0; i < s->nworkers; i++) {
		s->workers[i].cfg = &s->cfg;
		s->workers[i].longpoll = s->longpoll;
		s->workers[i].flow = s->flow;
		s->workers[i].jobwait = s->jobwait;
		s->workers[i].enqgroup = s->enqgroup;
		if (jq_db_open(&o, &s->workers[i].db) != 0)
			return -1;
		/* Read before the RPC server starts: afterwards each handle is its worker's. */
		if (jq_db_connected(s->workers[i].db, &s->workers_why))
			s->workers_up++;
		s->worker_args[i] = &s->workers[i];
	}
	return 0;
}

static void close_all(service *s)
{
	/* The console (which answers the API requests still queued with 503) and HTTP, which reads
	 * every other module's figures, go first (probes then see a refused connection: not ready).
	 * The listener publishes and wakes long-polls, so it stops next. Waiting Claims are answered
	 * (empty) before the RPC server waits for every request in flight; the long-poll is freed
	 * only after that, when no worker can park a request any more. */
	jq_console_stop(s->console);
	jq_http_stop(s->http);
	jq_notify_stop(s->notify);
	jq_publisher_stop(s->pub);
	jq_longpoll_stop(s->longpoll);
	jq_jobwait_stop(s->jobwait);
	jq_rpc_server_stop(s->rpc);
	jq_longpoll_free(s->longpoll);
	jq_flow_free(s->flow);
	jq_jobwait_free(s->jobwait);
	jq_enqgroup_free(s->enqgroup);
	jq_auth_free(s->auth);
	jq_rescuer_stop(s->rescuer);
	jq_scheduler_stop(s->scheduler);
	for (int i = 0; s->workers != NULL && i < s->nworkers; i++)
		jq_db_close(s->workers[i].db);
	free(s->workers);
	free(s->worker_args);
	jq_config_free(&s->cfg);
}

/* The listener's hooks: their argument is the service. */
static void wake_longpoll(void *arg, const char *queue, size_t jobs)
{
	jq_longpoll_wake(((service *)arg)->longpoll, queue, jobs);
}

static void longpoll_listening(void *arg, bool on)
{
	jq_longpoll_listening(((service *)arg)->longpoll, on);
	jq_jobwait_listening(((service *)arg)->jobwait, on);
}

static void job_finished(void *arg, int64_t id)
{
	jq_jobwait_finished(((service *)arg)->jobwait, id);
}

/* open_auth loads the credentials; a request is judged against them before it is decoded. */
static int open_auth(service *s)
{
	jq_auth_opts o = { .credentials_path = s->cfg.credentials_file, .admin_token = s->cfg.auth_token };
	char err[512];
	if (s->cfg.tls_client_role != NULL && !jq_role_parse(s->cfg.tls_client_role, &o.tls_role)) {
		jq_error("--tls-client-role: unknown role '%s' (producer, worker, reader, admin)",
			 s->cfg.tls_client_role);
		return -1;
	}
	if (jq_auth_new(&o, &s->auth, err, sizeof(err)) != 0) {
		jq_error("credentials: %s", err);
		return -1;
	}
	int n = jq_auth_count(s->auth);
	if (jq_auth_required(s->auth))
		jq_info("auth: %d credential%s%s%s", n, n == 1 ? "" : "s",
			o.tls_role != JQ_ROLE_NONE ? "; verified client certificates are " : "",
			o.tls_role != JQ_ROLE_NONE ? jq_role_name(o.tls_role) : "");
	else
		jq_warn("auth: no credentials; every request is served as admin (set JOBQ_CREDENTIALS_FILE or JOBQ_AUTH_TOKEN)");
	return 0;
}

static int start(service *s)
{
	if (open_auth(s) != 0)
		return -1;
	if (jq_longpoll_start(s->cfg.max_waiting_claims, &s->longpoll) != 0) {
		jq_error("could not start the long-poll timer");
		return -1;
	}
	if (jq_flow_new(&s->flow) != 0) {
		jq_error("out of memory for the queue settings");
		return -1;
	}
	if (jq_enqgroup_new(&s->enqgroup) != 0) {
		jq_error("out of memory for the enqueue group");
		return -1;
	}
	if (jq_jobwait_start(s->cfg.max_waiting_waits, &s->jobwait) != 0) {
		jq_error("could not start the Wait timer");
		return -1;
	}
	if (open_workers(s) != 0) {
		jq_error("out of memory opening database connections");
		return -1;
	}
	jq_tls_files tls = { .cert = s->cfg.tls_cert, .key = s->cfg.tls_key, .ca = s->cfg.tls_ca };
	jq_rpc_server_opts ro = {
		.url = s->cfg.rpc_url,
		.contexts = s->cfg.rpc_contexts,
		.max_queued = s->cfg.max_queued,
		.max_message_bytes = s->cfg.max_message_bytes,
		.default_deadline_ms = s->cfg.default_deadline_ms,
		.nworkers = s->nworkers,
		.worker_args = s->worker_args,
		.handler = jq_dispatch_handle,
		.quick = jq_dispatch_quick,
		.quick_arg = &s->workers[0], /* only its cfg, long-poll and flow are read */
		.tls = &tls,
		.max_connections = s->cfg.max_connections,
		.max_inflight_bytes = s->cfg.max_inflight_bytes,
		.authorize = jq_auth_authorize,
		.auth_arg = s->auth,
	};
	if (jq_rpc_server_start(&ro, &s->rpc) != 0)
		return -1;
	if (jq_rescuer_start(&s->cfg, &s->rescuer) != 0) {
		jq_error("could not start the rescuer");
		return -1;
	}
	if (jq_scheduler_start(&s->cfg, &s->scheduler) != 0) {
		jq_error("could not start the scheduler");
		return -1;
	}
	if (jq_publisher_start_tls(s->cfg.pub_url, &tls, &s->pub) != 0)
		return -1;
	jq_notify_hooks hooks = { .announced = wake_longpoll, .listening = longpoll_listening,
				  .finished = job_finished, .arg = s };
	if (jq_notify_start(&s->cfg, s->pub, &hooks, s->flow, &s->notify) != 0) {
		jq_error("could not start the notification listener");
		return -1;
	}
	jq_http_sources hs = { .cfg = &s->cfg, .auth = s->cfg.metrics_auth ? s->auth : NULL,
			       .rpc = s->rpc, .notify = s->notify, .pub = s->pub, .rescuer = s->rescuer,
			       .scheduler = s->scheduler, .longpoll = s->longpoll, .jobwait = s->jobwait,
			       .enqgroup = s->enqgroup, .pool_size = s->nworkers };
	if (jq_http_start(&hs, &s->http) != 0)
		return -1;
	jq_console_sources cs = { .cfg = &s->cfg, .auth = s->auth };
	return jq_console_start(&cs, &s->console);
}

/* Longest a shutdown may take after SIGTERM before the process exits anyway. nng 1.5.2 can hang
 * in nng_close when bytes arrive on a connection as it closes (its TCP transport starts a read on
 * a stopped aio that never completes); the RPC server bounds its own close (jq_rpc_server_stop),
 * this is the last resort for anything else. Below Kubernetes' grace period (45 s in deploy/k8s). */
#define SHUTDOWN_LIMIT_S 40

static void *shutdown_watchdog(void *arg)
{
	(void)arg;
	sleep(SHUTDOWN_LIMIT_S);
	jq_error("jobqd: shutdown did not finish within %d s; exiting now", SHUTDOWN_LIMIT_S);
	_exit(1);
	return NULL;
}

/* reload_tls re-reads the TLS files (certificate rotation without a restart). Each listener
 * keeps its old certificate when the new files do not load. */
static void reload_tls(service *s, const char *why)
{
	jq_tls_files tls = { .cert = s->cfg.tls_cert, .key = s->cfg.tls_key, .ca = s->cfg.tls_ca };
	jq_info("jobqd: %s, reloading TLS certificates", why);
	int rpc = jq_rpc_server_reload_tls(s->rpc, &tls);
	int pub = jq_publisher_reload_tls(s->pub, &tls);
	if (rpc != 0 || pub != 0)
		jq_warn("jobqd: TLS reload incomplete (see above); the service goes on");
}

/* reload_credentials re-reads the credentials file; a file that does not load leaves the
 * credentials in force. */
static void reload_credentials(service *s, const char *why)
{
	char err[512];
	if (s->cfg.credentials_file == NULL)
		return;
	if (jq_auth_reload(s->auth, err, sizeof(err)) != 0)
		jq_error("auth: %s, but the credentials did not load (the previous ones stay): %s", why, err);
	else
		jq_info("auth: %s, %d credential%s loaded", why, jq_auth_count(s->auth),
			jq_auth_count(s->auth) == 1 ? "" : "s");
}

/* log_ready says what the service listens on and how many database connections it has: it
 * serves (UNAVAILABLE) while the database is away, and reconnects by itself. */
static void log_ready(const service *s)
{
	const char *rest = "";
	if (s->workers_up == 0)
		rest = " (reconnecting)";
	else if (s->workers_up < s->nworkers)
		rest = " (the rest reconnecting)";
	if (s->workers_up < s->nworkers)
		jq_warn("%s", s->workers_why.msg);
	jq_info("jobqd ready: rpc %s, pub %s, database: %d of %d connections up%s", s->cfg.rpc_url,
		s->cfg.pub_url, s->workers_up, s->nworkers, rest);
}

static int min_positive(int a, int b)
{
	if (a <= 0)
		return b;
	if (b <= 0)
		return a;
	return a < b ? a : b;
}

/* wait_for_stop waits for SIGTERM or SIGINT and returns it. Meanwhile SIGHUP reloads the TLS
 * files and the credentials, and so does a change of the files themselves, checked every
 * tls_reload_interval_ms (while a listener uses TLS) and credentials_reload_interval_ms: a
 * Kubernetes Secret volume is updated in place, and nothing sends the pod a signal. */
static int wait_for_stop(service *s, const sigset_t *signals)
{
	jq_tls_files tls = { .cert = s->cfg.tls_cert, .key = s->cfg.tls_key, .ca = s->cfg.tls_ca };
	bool watch_tls = s->cfg.tls_reload_interval_ms > 0 &&
			 (jq_tls_url(s->cfg.rpc_url) || jq_tls_url(s->cfg.pub_url));
	bool watch_creds = s->cfg.credentials_reload_interval_ms > 0 && s->cfg.credentials_file != NULL;
	uint64_t stamp = watch_tls ? jq_tls_stamp(&tls) : 0;
	int ms = min_positive(watch_tls ? s->cfg.tls_reload_interval_ms : 0,
			      watch_creds ? s->cfg.credentials_reload_interval_ms : 0);
	if (ms <= 0)
		ms = 3600 * 1000;
	for (;;) {
		struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };
		int sig = sigtimedwait(signals, NULL, &ts);
		if (sig == SIGINT || sig == SIGTERM)
			return sig;
		if (sig == SIGHUP) {
			reload_tls(s, "SIGHUP received");
			reload_credentials(s, "SIGHUP received");
			stamp = watch_tls ? jq_tls_stamp(&tls) : 0;
			continue;
		}
		uint64_t now = watch_tls ? jq_tls_stamp(&tls) : 0;
		if (now != stamp && now != 0) {
			reload_tls(s, "TLS files changed");
			stamp = now;
		}
		if (watch_creds && jq_auth_changed(s->auth))
			reload_credentials(s, "credentials changed");
	}
}

int main(int argc, char **argv)
{
	service s = { 0 };
	sigset_t signals;
	int sig = 0;

	switch (jq_config_load(&s.cfg, argc, argv, stdout, stderr)) {
	case JQ_CONFIG_HELP:
		jq_config_free(&s.cfg);
		return 0;
	case JQ_CONFIG_VERSION:
		printf("jobqd %s\n", JQ_VERSION);
		jq_config_free(&s.cfg);
		return 0;
	case JQ_CONFIG_ERROR:
		jq_config_free(&s.cfg);
		return 2;
	case JQ_CONFIG_OK:
		break;
	}
	jq_log_setup(s.cfg.log_level, s.cfg.log_format);
	for (int i = 0; i < s.cfg.nsecret_flags; i++)
		jq_warn("--%s carries a secret on the command line, which every local user can read in "
			"/proc/%d/cmdline; use its environment variable or a file instead",
			s.cfg.secret_flags[i], (int)getpid());
	signal(SIGPIPE, SIG_IGN);
	/* Blocked before any thread starts, so only sigwait below ever sees them. */
	sigemptyset(&signals);
	sigaddset(&signals, SIGINT);
	sigaddset(&signals, SIGTERM);
	sigaddset(&signals, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &signals, NULL);

	if (start(&s) != 0) {
		close_all(&s);
		return 1;
	}
	log_ready(&s);
	sig = wait_for_stop(&s, &signals);
	jq_info("jobqd: %s received, finishing requests in flight", sig == SIGTERM ? "SIGTERM" : "SIGINT");
	pthread_t watchdog;
	if (pthread_create(&watchdog, NULL, shutdown_watchdog, NULL) == 0)
		pthread_detach(watchdog);
	close_all(&s);
	jq_info("jobqd stopped");
	return 0;
}
