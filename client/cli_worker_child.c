/*
 * cli_worker_child.c — the child processes of `jobq worker`: exec path and environment prepared
 * once, fork+execve per job with the payload on stdin (a memfd, so a big payload can never
 * deadlock against a child that does not read it), stderr captured through a non-blocking pipe,
 * killing by process group, and the error text a failed job is reported with.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli_worker.h"

extern char **environ;

/* find_in_path resolves a command name as execvp would; the result is malloc'd. */
static char *find_in_path(const char *name)
{
	if (strchr(name, '/') != NULL)
		return access(name, X_OK) == 0 ? strdup(name) : NULL;
	const char *path = getenv("PATH");
	if (path == NULL || path[0] == '\0')
		path = "/usr/local/bin:/usr/bin:/bin";
	size_t cap = strlen(path) + strlen(name) + 2;
	char *buf = malloc(cap);
	if (buf == NULL)
		return NULL;
	for (const char *p = path; *p != '\0';) {
		const char *end = strchr(p, ':');
		size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
		struct stat st;
		snprintf(buf, cap, "%.*s%s%s", (int)len, len ? p : "", len ? "/" : "./", name);
		if (stat(buf, &st) == 0 && S_ISREG(st.st_mode) && access(buf, X_OK) == 0)
			return buf;
		p += len;
		if (*p == ':')
			p++;
	}
	free(buf);
	return NULL;
}

static bool is_job_env(const char *e)
{
	return strncmp(e, "JOBQ_JOB_ID=", 12) == 0 || strncmp(e, "JOBQ_ATTEMPT=", 13) == 0 ||
	       strncmp(e, "JOBQ_QUEUE=", 11) == 0;
}

int worker_prepare_exec(worker *w, char **argv)
{
	size_t n = 0, k = 0;
	w->argv = argv;
	w->exec_path = find_in_path(argv[0]);
	if (w->exec_path == NULL)
		return cli_usage_error(w->c, "%s: command not found (or not executable)", argv[0]);
	while (environ[n] != NULL)
		n++;
	/* Three slots for the job's variables, filled in before each fork, and the NULL. */
	w->envp = calloc(n + 4, sizeof(char *));
	if (w->envp == NULL)
		return cli_fail(w->c, JOBQ_RESOURCE_EXHAUSTED, "out of memory");
	for (size_t i = 0; i < n; i++)
		if (!is_job_env(environ[i]))
			w->envp[k++] = environ[i];
	w->env_base = k;
	return CLI_EXIT_OK;
}

void worker_free_exec(worker *w)
{
	free(w->exec_path);
	free(w->envp);
	w->exec_path = NULL;
	w->envp = NULL;
}

/* payload_fd returns a readable descriptor positioned at the start of the payload. */
static int payload_fd(const jobq_job *job)
{
	int fd = memfd_create("jobq-payload", MFD_CLOEXEC);
	if (fd < 0) {
		/* Old kernels: an unlinked temporary file does the same. */
		char tmpl[] = "/tmp/jobq-payload.XXXXXX";
		fd = mkostemp(tmpl, O_CLOEXEC);
		if (fd < 0)
			return -1;
		unlink(tmpl);
	}
	for (size_t off = 0; off < job->payload_len;) {
		ssize_t n = write(fd, job->payload + off, job->payload_len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			goto fail;
		off += (size_t)n;
	}
	if (lseek(fd, 0, SEEK_SET) != 0)
		goto fail;
	return fd;
fail:
	close(fd);
	return -1;
}

/* child_exec runs in the forked child: only async-signal-safe calls (libjobq has threads). */
static void child_exec(const worker *w, int in_fd, int err_fd, int out_fd)
{
	sigset_t none;
	struct sigaction dfl;
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	/* Own process group: a timeout or shutdown kills the command's children too, and the
	 * terminal's Ctrl-C reaches only the worker, which then drains. */
	setpgid(0, 0);
	sigaction(SIGPIPE, &dfl, NULL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	/* With --json the worker's stdout carries its own records; the command's goes to the
	 * worker's stderr (before fd 2 becomes the capture pipe). */
	if (out_fd < 0 && w->c->json && dup2(2, 1) < 0)
		_exit(126);
	if (out_fd >= 0 && dup2(out_fd, 1) < 0)
		_exit(126);
	if (dup2(in_fd, 0) < 0 || dup2(err_fd, 2) < 0)
		_exit(126);
	execve(w->exec_path, w->argv, w->envp);
	static const char msg[] = "jobq worker: cannot execute the command\n";
	ssize_t ignored = write(2, msg, sizeof(msg) - 1);
	(void)ignored;
	_exit(127);
}

static void spawn_failed(slot *s, const char *what)
{
	snprintf(s->reason, sizeof(s->reason), "could not start the command: %s: %s", what, strerror(errno));
	s->state = SLOT_DONE;
	s->pid = 0;
}

void worker_spawn(worker *w, slot *s, const jobq_job *job)
{
	static char env_id[48], env_attempt[48], env_queue[96];
	int pipefd[2] = { -1, -1 }, outfd[2] = { -1, -1 };
	int in_fd = payload_fd(job);
	if (in_fd < 0)
		return spawn_failed(s, "payload file");
	if (pipe2(pipefd, O_CLOEXEC) != 0 || (w->keep_output && pipe2(outfd, O_CLOEXEC) != 0)) {
		spawn_failed(s, "pipe");
		close(in_fd);
		if (pipefd[0] >= 0) {
			close(pipefd[0]);
			close(pipefd[1]);
		}
		return;
	}
	snprintf(env_id, sizeof(env_id), "JOBQ_JOB_ID=%" PRId64, job->id);
	snprintf(env_attempt, sizeof(env_attempt), "JOBQ_ATTEMPT=%" PRIu32, job->attempts);
	snprintf(env_queue, sizeof(env_queue), "JOBQ_QUEUE=%s", w->queue);
	w->envp[w->env_base] = env_id;
	w->envp[w->env_base + 1] = env_attempt;
	w->envp[w->env_base + 2] = env_queue;
	w->envp[w->env_base + 3] = NULL;
	pid_t pid = fork();
	if (pid == 0)
		child_exec(w, in_fd, pipefd[1], outfd[1]);
	int saved = errno;
	close(in_fd);
	close(pipefd[1]);
	if (outfd[1] >= 0)
		close(outfd[1]);
	if (pid < 0) {
		close(pipefd[0]);
		if (outfd[0] >= 0)
			close(outfd[0]);
		errno = saved;
		return spawn_failed(s, "fork");
	}
	setpgid(pid, pid); /* also here: whichever runs first, the group exists before a kill */
	fcntl(pipefd[0], F_SETFL, fcntl(pipefd[0], F_GETFL) | O_NONBLOCK);
	s->pid = pid;
	s->err_fd = pipefd[0];
	if (outfd[0] >= 0)
		fcntl(outfd[0], F_SETFL, fcntl(outfd[0], F_GETFL) | O_NONBLOCK);
	s->out_fd = outfd[0];
	s->state = SLOT_RUNNING;
}

static void tail_append(slot *s, const char *p, size_t n)
{
	if (n >= TAIL_MAX) {
		memcpy(s->tail, p + n - TAIL_MAX, TAIL_MAX);
		s->tail_len = TAIL_MAX;
		return;
	}
	if (s->tail_len + n > TAIL_MAX) {
		size_t drop = s->tail_len + n - TAIL_MAX;
		memmove(s->tail, s->tail + drop, s->tail_len - drop);
		s->tail_len -= drop;
	}
	memcpy(s->tail + s->tail_len, p, n);
	s->tail_len += n;
}

void worker_read_stderr(slot *s)
{
	char buf[8192];
	while (s->err_fd >= 0) {
		ssize_t n = read(s->err_fd, buf, sizeof(buf));
		if (n > 0) {
			tail_append(s, buf, (size_t)n);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0)
			worker_close_stderr(s); /* EOF: the child (and its children) closed it */
		return;                         /* EAGAIN: nothing more for now */
	}
}

void worker_close_stderr(slot *s)
{
	if (s->err_fd >= 0)
		close(s->err_fd);
	s->err_fd = -1;
}

/* keep_output appends n bytes to the slot's output, up to max; past it only out_over is set. */
static void keep_output(slot *s, const char *p, size_t n, size_t max)
{
	if (s->out_over || s->out_len + n > max) {
		s->out_over = true;
		return;
	}
	uint8_t *grown = realloc(s->out, s->out_len + n);
	if (grown == NULL) {
		s->out_over = true; /* cannot keep it: reported like an output too large */
		return;
	}
	memcpy(grown + s->out_len, p, n);
	s->out = grown;
	s->out_len += n;
}

void worker_read_stdout(const worker *w, slot *s)
{
	char buf[8192];
	while (s->out_fd >= 0) {
		ssize_t n = read(s->out_fd, buf, sizeof(buf));
		if (n > 0) {
			keep_output(s, buf, (size_t)n, w->max_output);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0)
			worker_close_stdout(s);
		return;
	}
}

void worker_close_stdout(slot *s)
{
	if (s->out_fd >= 0)
		close(s->out_fd);
	s->out_fd = -1;
}

void worker_free_output(slot *s)
{
	free(s->out);
	s->out = NULL;
	s->out_len = 0;
	s->out_over = false;
}

void worker_kill(slot *s, const char *reason, int64_t now)
{
	if (s->state != SLOT_RUNNING || s->kill_at_ms != 0)
		return;
	if (s->reason[0] == '\0')
		snprintf(s->reason, sizeof(s->reason), "%s", reason);
	kill(-s->pid, SIGTERM);
	s->kill_at_ms = now + KILL_ESCALATE_MS;
}

void worker_kill_hard(slot *s)
{
	if (s->state == SLOT_RUNNING)
		kill(-s->pid, SIGKILL);
}

void worker_exit_desc(const slot *s, char *buf, size_t size)
{
	if (s->pid == 0)
		snprintf(buf, size, "not started");
	else if (WIFEXITED(s->wstatus))
		snprintf(buf, size, "exit %d", WEXITSTATUS(s->wstatus));
	else if (WIFSIGNALED(s->wstatus))
		snprintf(buf, size, "signal %d (%s)", WTERMSIG(s->wstatus), strsignal(WTERMSIG(s->wstatus)));
	else
		snprintf(buf, size, "status %d", s->wstatus);
}

/* tail_text: the stderr tail as valid UTF-8 without a partial first character or trailing
 * blank lines; returns its length in out (size >= TAIL_MAX + 1). */
static size_t tail_text(const slot *s, char *out)
{
	size_t start = 0, n = s->tail_len;
	/* The tail may start inside a multi-byte character: skip its continuation bytes. */
	while (start < n && start < 3 && ((unsigned char)s->tail[start] & 0xc0) == 0x80)
		start++;
	while (n > start && (s->tail[n - 1] == '\n' || s->tail[n - 1] == '\r' || s->tail[n - 1] == ' ' ||
			     s->tail[n - 1] == '\t'))
		n--;
	return utf8_sanitize(out, (const uint8_t *)s->tail + start, n - start);
}

void worker_error_text(const slot *s, char *buf, size_t size)
{
	char text[TAIL_MAX + 1];
	char how[96];
	size_t len = tail_text(s, text);
	worker_exit_desc(s, how, sizeof(how));
	if (s->reason[0] != '\0' && len > 0)
		snprintf(buf, size, "%s\n%s", s->reason, text);
	else if (s->reason[0] != '\0')
		snprintf(buf, size, "%s", s->reason);
	else if (len > 0)
		snprintf(buf, size, "%s", text);
	else
		snprintf(buf, size, "command failed (%s) with nothing on stderr", how);
}
