#include "jq_proxy.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
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
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>

#define MAX_PAIRS 64

/* ---- the child: only system calls and static memory (it is forked from a threaded program) ---- */

typedef struct pair {
	int fd[2]; /* the client's side, PostgreSQL's side; -1 when free */
} pair;

static pair pairs[MAX_PAIRS];
static char buf[64 * 1024];

static void close_pair(pair *p)
{
	close(p->fd[0]);
	close(p->fd[1]);
	p->fd[0] = p->fd[1] = -1;
}

static int write_all(int fd, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, data, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

static void accept_one(int lfd, const struct sockaddr_storage *up, socklen_t up_len)
{
	int c = accept(lfd, NULL, NULL);
	if (c < 0)
		return;
	int u = socket(up->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (u < 0 || connect(u, (const struct sockaddr *)up, up_len) != 0) {
		close(c);
		if (u >= 0)
			close(u);
		return;
	}
	for (int i = 0; i < MAX_PAIRS; i++) {
		if (pairs[i].fd[0] < 0) {
			pairs[i].fd[0] = c;
			pairs[i].fd[1] = u;
			return;
		}
	}
	close(c);
	close(u);
}

/* forward moves what is readable on side s of p to the other side; a closed or failed side
 * closes both. */
static void forward(pair *p, int s)
{
	ssize_t n = read(p->fd[s], buf, sizeof(buf));
	if (n < 0 && errno == EINTR)
		return;
	if (n <= 0 || write_all(p->fd[1 - s], buf, (size_t)n) != 0)
		close_pair(p);
}

static void serve(int lfd, const struct sockaddr_storage *up, socklen_t up_len, pid_t parent)
{
	struct pollfd fds[1 + 2 * MAX_PAIRS];
	for (int i = 0; i < MAX_PAIRS; i++)
		pairs[i].fd[0] = pairs[i].fd[1] = -1;
	for (;;) {
		if (getppid() != parent)
			_exit(0);
		fds[0] = (struct pollfd){ .fd = lfd, .events = POLLIN };
		for (int i = 0; i < MAX_PAIRS; i++) {
			fds[1 + 2 * i] = (struct pollfd){ .fd = pairs[i].fd[0], .events = POLLIN };
			fds[2 + 2 * i] = (struct pollfd){ .fd = pairs[i].fd[1], .events = POLLIN };
		}
		if (poll(fds, 1 + 2 * MAX_PAIRS, 1000) <= 0)
			continue;
		if (fds[0].revents != 0)
			accept_one(lfd, up, up_len);
		for (int i = 0; i < MAX_PAIRS; i++) {
			for (int s = 0; s < 2; s++) {
				if (pairs[i].fd[s] >= 0 && fds[1 + 2 * i + s].revents != 0)
					forward(&pairs[i], s);
			}
		}
	}
}

/* ---- the parent ---- */

/* conninfo_value returns keyword's value in db_url (static storage of opts; NULL if unset). */
static const char *conninfo_value(PQconninfoOption *opts, const char *keyword)
{
	for (PQconninfoOption *o = opts; o != NULL && o->keyword != NULL; o++) {
		if (strcmp(o->keyword, keyword) == 0 && o->val != NULL && o->val[0] != '\0')
			return o->val;
	}
	return NULL;
}

static void resolve(const char *db_url, struct sockaddr_storage *up, socklen_t *up_len)
{
	char *errmsg = NULL;
	PQconninfoOption *opts = PQconninfoParse(db_url, &errmsg);
	if (opts == NULL)
		fail_msg("jq_proxy: cannot parse the database URL: %s", errmsg ? errmsg : "out of memory");
	const char *host = conninfo_value(opts, "hostaddr");
	if (host == NULL)
		host = conninfo_value(opts, "host");
	const char *port = conninfo_value(opts, "port");
	if (host == NULL || host[0] == '/')
		fail_msg("jq_proxy: the database URL must name a TCP host");
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *ai = NULL;
	int rv = getaddrinfo(host, port ? port : "5432", &hints, &ai);
	if (rv != 0) {
		PQconninfoFree(opts);
		fail_msg("jq_proxy: cannot resolve the database host: %s", gai_strerror(rv));
	}
	memcpy(up, ai->ai_addr, ai->ai_addrlen);
	*up_len = ai->ai_addrlen;
	freeaddrinfo(ai);
	PQconninfoFree(opts);
}

static int listen_loopback(int *port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, 64) != 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
		close(fd);
		return -1;
	}
	*port = ntohs(a.sin_port);
	return fd;
}

void jq_proxy_start(jq_proxy *p, const char *db_url)
{
	struct sockaddr_storage up;
	socklen_t up_len;
	memset(p, 0, sizeof(*p));
	resolve(db_url, &up, &up_len);
	int lfd = listen_loopback(&p->port);
	if (lfd < 0)
		fail_msg("jq_proxy: cannot listen on loopback: %s", strerror(errno));
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		close(lfd);
		fail_msg("jq_proxy: fork: %s", strerror(errno));
	}
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		/* Copies of the test's own connections would keep them open after the test closes them. */
		for (int fd = 3; fd < 1024; fd++) {
			if (fd != lfd)
				close(fd);
		}
		serve(lfd, &up, up_len, parent);
	}
	close(lfd);
	p->pid = pid;
}

/* append_kv appends ` key='value'` with libpq's quoting. */
static void append_kv(char *out, size_t cap, const char *key, const char *val)
{
	size_t n = strlen(out);
	n += (size_t)snprintf(out + n, cap - n, "%s%s='", n ? " " : "", key);
	for (const char *v = val; *v && n + 3 < cap; v++) {
		if (*v == '\'' || *v == '\\')
			out[n++] = '\\';
		out[n++] = *v;
	}
	snprintf(out + n, cap - n, "'");
}

char *jq_proxy_url(const jq_proxy *p, const char *db_url)
{
	char *errmsg = NULL, port[16];
	PQconninfoOption *opts = PQconninfoParse(db_url, &errmsg);
	char *out = calloc(1, 4096);
	if (opts == NULL || out == NULL)
		fail_msg("jq_proxy: cannot parse the database URL: %s", errmsg ? errmsg : "out of memory");
	snprintf(port, sizeof(port), "%d", p->port);
	append_kv(out, 4096, "host", "127.0.0.1");
	append_kv(out, 4096, "port", port);
	for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
		if (o->val == NULL || !strcmp(o->keyword, "host") || !strcmp(o->keyword, "hostaddr") ||
		    !strcmp(o->keyword, "port"))
			continue;
		append_kv(out, 4096, o->keyword, o->val);
	}
	PQconninfoFree(opts);
	return out;
}

void jq_proxy_pause(jq_proxy *p)
{
	if (p->pid <= 0 || kill(p->pid, SIGSTOP) != 0)
		fail_msg("jq_proxy: cannot pause the proxy");
	/* Stopped for certain before the test goes on. */
	int status;
	if (waitpid(p->pid, &status, WUNTRACED) != p->pid || !WIFSTOPPED(status))
		fail_msg("jq_proxy: the proxy did not stop");
}

void jq_proxy_resume(jq_proxy *p)
{
	if (p->pid <= 0 || kill(p->pid, SIGCONT) != 0)
		fail_msg("jq_proxy: cannot resume the proxy");
}

void jq_proxy_stop(jq_proxy *p)
{
	if (p->pid <= 0)
		return;
	kill(p->pid, SIGKILL);
	waitpid(p->pid, NULL, 0);
	p->pid = 0;
}
