#include "jq_svc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "jq_rpc_call.h"
#include "jq_test.h"

extern char **environ;

#define START_TIMEOUT_MS 20000 /* generous: a sanitizer build starts slowly on a busy machine */
#define START_ATTEMPTS 5       /* a free port can be taken by someone else before jobqd binds it */
#define MAX_ARGS 64

long long jq_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

long long jq_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void jq_sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

int jq_free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = 0 };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	int port = -1;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0)
		return -1;
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &len) == 0)
		port = ntohs(a.sin_port);
	close(fd);
	return port;
}

/* child_env is the test's environment without JOBQ_* variables (the test's own JOBQ_TEST_*
 * aside), so a developer's settings (an auth token, say) cannot change what the tests see. */
static char **child_env(void)
{
	size_t n = 0, k = 0;
	while (environ[n] != NULL)
		n++;
	char **env = calloc(n + 1, sizeof(*env));
	assert_non_null(env);
	for (size_t i = 0; i < n; i++) {
		if (strncmp(environ[i], "JOBQ_", 5) == 0 && strncmp(environ[i], "JOBQ_TEST_", 10) != 0)
			continue;
		env[k++] = environ[i];
	}
	return env;
}

static pid_t spawn(const char *bin, char **argv, char **envp, const char *log_path)
{
	int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	pid_t parent = getpid();
	if (fd < 0 || devnull < 0)
		fail_msg("cannot open %s: %s", log_path, strerror(errno));
	pid_t pid = fork();
	if (pid < 0)
		fail_msg("fork: %s", strerror(errno));
	if (pid == 0) {
		/* Only async-signal-safe calls from here: the test may have threads. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		dup2(devnull, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		execve(bin, argv, envp);
		_exit(127);
	}
	close(fd);
	close(devnull);
	return pid;
}

/* answers tells whether the service replies to a Stats request within a short time. */
static bool answers(const char *url)
{
	jq_rpc_sock s;
	Jobq__V1__StatsRequest req = JOBQ__V1__STATS_REQUEST__INIT;
	Jobq__V1__RpcResponse *resp = NULL;
	if (jq_rpc_open(&s, url, 300) != 0)
		return false;
	int rv = jq_rpc_invoke(&s, JQ_METHOD("Stats"), &req.base, 0, &resp);
	if (resp != NULL)
		jobq__v1__rpc_response__free_unpacked(resp, NULL);
	jq_rpc_close(&s);
	return rv == 0;
}

static void decode_status(jq_svc *s, int st)
{
	if (WIFEXITED(st))
		s->exit_status = WEXITSTATUS(st);
	else if (WIFSIGNALED(st))
		s->exit_status = -WTERMSIG(st);
	else
		s->exit_status = -1000;
}

bool jq_svc_alive(jq_svc *s)
{
	int st;
	if (s->pid <= 0)
		return false;
	pid_t r = waitpid(s->pid, &st, WNOHANG);
	if (r == 0)
		return true;
	if (r == s->pid)
		decode_status(s, st);
	s->pid = 0;
	return false;
}

bool jq_svc_wait_exit(jq_svc *s, int timeout_ms)
{
	long long deadline = jq_mono_ms() + timeout_ms;
	while (jq_svc_alive(s)) {
		if (jq_mono_ms() >= deadline)
			return false;
		jq_sleep_ms(10);
	}
	return true;
}

int jq_svc_stop(jq_svc *s, int timeout_ms)
{
	if (s->pid > 0) {
		kill(s->pid, SIGTERM);
		if (!jq_svc_wait_exit(s, timeout_ms)) {
			fprintf(stderr, "jq_svc: jobqd (pid %d) did not stop within %d ms of SIGTERM; killing it\n",
				(int)s->pid, timeout_ms);
			kill(s->pid, SIGKILL);
			jq_svc_wait_exit(s, 10000);
			s->exit_status = -SIGKILL;
		}
	}
	if (s->pub_path[0] != '\0')
		unlink(s->pub_path); /* a killed jobqd leaves its socket file behind */
	return s->exit_status;
}

int jq_svc_finish(jq_svc *s, int timeout_ms, bool test_failed)
{
	int st = jq_svc_stop(s, timeout_ms);
	if (st != 0) {
		s->log_mark = 0;
		jq_svc_print_log(s);
		fprintf(stderr, "jobqd exited with status %d on SIGTERM (expected 0)\n", st);
		return -1;
	}
	if (test_failed)
		jq_svc_print_log(s);
	jq_svc_remove_log(s);
	return 0;
}

static void build_args(char **argv, char bufs[][256], const char *bin, const char *db_url,
		       const char *rpc_url, const char *pub_url, int http_port, const char *const *flags)
{
	int n = 0;
	argv[n++] = (char *)bin;
	snprintf(bufs[0], 256, "--database-url=%s", db_url);
	snprintf(bufs[1], 256, "--rpc-url=%s", rpc_url);
	snprintf(bufs[2], 256, "--pub-url=%s", pub_url);
	snprintf(bufs[3], 256, "--http-addr=127.0.0.1:%d", http_port);
	for (int i = 0; i < 4; i++)
		argv[n++] = bufs[i];
	argv[n++] = "--log-format=text";
	for (int i = 0; flags != NULL && flags[i] != NULL && n < MAX_ARGS - 1; i++)
		argv[n++] = (char *)flags[i];
	argv[n] = NULL;
}

void jq_svc_start(jq_svc *s, const char *name, const char *db_url, const char *const *flags)
{
	static int counter;
	char bin[512], pub_url[128];
	char *argv[MAX_ARGS];
	char bufs[4][256];

	memset(s, 0, sizeof(*s));
	s->exit_status = -1000;
	snprintf(bin, sizeof(bin), "%s/bin/jobqd", jq_test_env("JOBQ_TEST_BUILD"));
	char **envp = child_env();
	for (int attempt = 1; attempt <= START_ATTEMPTS; attempt++) {
		int n = ++counter, port = jq_free_port(), http_port = jq_free_port();
		if (port <= 0 || http_port <= 0)
			fail_msg("no free loopback port");
		snprintf(s->rpc_url, sizeof(s->rpc_url), "tcp://127.0.0.1:%d", port);
		snprintf(s->pub_path, sizeof(s->pub_path), "/tmp/jobq-test-%d-%d.pub", (int)getpid(), n);
		snprintf(pub_url, sizeof(pub_url), "ipc://%s", s->pub_path);
		snprintf(s->log_path, sizeof(s->log_path), "/tmp/jobq-test-%s-%d-%d.log", name,
			 (int)getpid(), n);
		s->http_port = http_port;
		build_args(argv, bufs, bin, db_url, s->rpc_url, pub_url, http_port, flags);
		s->pid = spawn(bin, argv, envp, s->log_path);
		s->log_mark = 0;

		long long deadline = jq_mono_ms() + START_TIMEOUT_MS;
		while (jq_svc_alive(s) && jq_mono_ms() < deadline) {
			if (answers(s->rpc_url)) {
				free(envp);
				return;
			}
			jq_sleep_ms(20);
		}
		if (s->pid > 0) {
			jq_svc_print_log(s);
			jq_svc_stop(s, 2000);
			free(envp);
			fail_msg("jobqd did not answer within %d ms (log above)", START_TIMEOUT_MS);
		}
		/* It exited: most likely the port was taken between jq_free_port and its bind. */
		if (attempt == START_ATTEMPTS) {
			jq_svc_print_log(s);
			free(envp);
			fail_msg("jobqd exited with status %d at start (log above)", s->exit_status);
		}
	}
}

void jq_svc_mark_log(jq_svc *s)
{
	FILE *f = fopen(s->log_path, "r");
	if (f == NULL)
		return;
	fseek(f, 0, SEEK_END);
	s->log_mark = ftell(f);
	fclose(f);
}

void jq_svc_print_log(const jq_svc *s)
{
	char buf[4096];
	size_t n;
	FILE *f = fopen(s->log_path, "r");
	if (f == NULL)
		return;
	fprintf(stderr, "---- jobqd log %s (from offset %ld) ----\n", s->log_path, s->log_mark);
	fseek(f, s->log_mark, SEEK_SET);
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		fwrite(buf, 1, n, stderr);
	fprintf(stderr, "---- end of jobqd log ----\n");
	fclose(f);
}

int jq_svc_log_count(const jq_svc *s, const char *text)
{
	FILE *f = fopen(s->log_path, "r");
	char line[4096];
	int n = 0;
	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL)
		n += strstr(line, text) != NULL;
	fclose(f);
	return n;
}

bool jq_svc_log_contains(const jq_svc *s, const char *text)
{
	return jq_svc_log_count(s, text) > 0;
}

void jq_svc_remove_log(const jq_svc *s)
{
	if (s->log_path[0] != '\0')
		unlink(s->log_path);
}

int jq_svc_http_get(int port, const char *path, jq_http_resp *r)
{
	return jq_svc_http_get_with(port, path, NULL, r);
}

int jq_svc_http_get_with(int port, const char *path, const char *headers, jq_http_resp *r)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	struct timeval tv = { .tv_sec = 5 };
	static char raw[sizeof(r->body) + 4096];
	size_t len = 0;
	char req[1024];
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%sConnection: close\r\n\r\n",
			 path, headers != NULL ? headers : "");
	if (n < 0 || (size_t)n >= sizeof(req))
		goto fail;
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || write(fd, req, (size_t)n) != n)
		goto fail;
	for (;;) {
		ssize_t got = read(fd, raw + len, sizeof(raw) - 1 - len);
		if (got <= 0)
			break;
		len += (size_t)got;
		raw[len] = '\0';
		/* Stop once the whole body is in, whether or not the server closes. */
		char *hdr_end = strstr(raw, "\r\n\r\n");
		char *cl = strcasestr(raw, "Content-Length:");
		if (hdr_end != NULL && cl != NULL && cl < hdr_end &&
		    len >= (size_t)(hdr_end + 4 - raw) + strtoul(cl + 15, NULL, 10))
			break;
	}
	raw[len] = '\0';
	close(fd);
	if (sscanf(raw, "HTTP/1.%*d %d", &r->status) != 1)
		return -1;
	char *body = strstr(raw, "\r\n\r\n");
	snprintf(r->headers, sizeof(r->headers), "%.*s", (int)(body ? body - raw : (ptrdiff_t)len), raw);
	snprintf(r->body, sizeof(r->body), "%s", body ? body + 4 : "");
	return 0;
fail:
	close(fd);
	return -1;
}

long jq_svc_status_kb(const jq_svc *s, const char *field)
{
	char path[64], line[256];
	size_t n = strlen(field);
	long kb = -1;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)s->pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, field, n) == 0 && line[n] == ':')
			kb = strtol(line + n + 1, NULL, 10);
	fclose(f);
	return kb;
}

double jq_svc_metric(const jq_svc *s, const char *series)
{
	static jq_http_resp r;
	if (jq_svc_http_get(s->http_port, "/metrics", &r) != 0 || r.status != 200)
		return -1;
	return jq_svc_metric_in(r.body, series);
}

double jq_svc_metric_in(const char *text, const char *series)
{
	size_t n = strlen(series);
	for (const char *line = text; *line != '\0';) {
		if (strncmp(line, series, n) == 0 && line[n] == ' ')
			return strtod(line + n + 1, NULL);
		const char *nl = strchr(line, '\n');
		if (nl == NULL)
			break;
		line = nl + 1;
	}
	return -1;
}
