/*
 * cli_worker.h — internals of `jobq worker` (cli_worker.c: the event loop and the service calls;
 * cli_worker_child.c: starting, watching and killing the child processes).
 */
#ifndef JOBQ_CLI_WORKER_H
#define JOBQ_CLI_WORKER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "cli.h"

#define TAIL_MAX 4096          /* bytes of a child's stderr kept for the error text */
#define KILL_ESCALATE_MS 5000  /* SIGTERM, then SIGKILL this much later */
#define MAX_FINAL_CODES 32

typedef enum slot_state {
	SLOT_FREE,    /* no job */
	SLOT_RUNNING, /* the child runs */
	SLOT_DONE,    /* the child has ended (or never started); its result waits to be reported */
} slot_state;

/* One job and the child process running it. */
typedef struct slot {
	slot_state state;
	int64_t id;
	int64_t token;
	uint32_t attempt;
	pid_t pid;
	int err_fd;               /* read end of the child's stderr; -1 once closed */
	int out_fd;               /* --keep-output: read end of the child's stdout; -1 once closed */
	uint8_t *out;             /* --keep-output: what it wrote there (owned; NULL = nothing) */
	size_t out_len;
	bool out_over;            /* it wrote more than --max-output-bytes */
	char tail[TAIL_MAX];      /* the last TAIL_MAX bytes of the child's stderr */
	size_t tail_len;
	int64_t started_ms;       /* monotonic */
	int64_t finished_ms;
	int64_t deadline_ms;      /* per-job timeout (monotonic; 0 = none) */
	int64_t kill_at_ms;       /* SIGKILL after an unanswered SIGTERM (0 = not pending) */
	int64_t lease_until_ms;   /* monotonic estimate of the lease's end */
	int64_t next_report_ms;   /* when to (re)try reporting the result */
	int report_tries;
	bool lease_lost;          /* the service says the lease is gone: drop the result */
	char stop_reason[32];     /* the service stopped the job under our lease ("cancelled") */
	int wstatus;              /* waitpid status once SLOT_DONE with pid reaped */
	char reason[160];         /* why we killed it (or could not start it); "" = it ended by itself */
} slot;

typedef struct worker {
	cli *c;
	/* configuration */
	const char *queue;
	uint32_t concurrency, lease_s, timeout_s, grace_s, poll_ms;
	bool keep_output;         /* the command's stdout becomes the job's output */
	uint32_t max_output;      /* bytes of it kept at most */
	int final_codes[MAX_FINAL_CODES];
	size_t n_final;
	char worker_id[160];
	char *exec_path;          /* COMMAND resolved against PATH once, at start */
	char **argv;              /* COMMAND [ARGS...] */
	char **envp;              /* environ without JOBQ_JOB_ID/ATTEMPT/QUEUE, 3 free entries, NULL */
	size_t env_base;
	/* state */
	slot *slots;
	int sig_fd;
	jobq_sub *sub;
	bool stopping;
	int64_t grace_deadline_ms;
	bool wake;                /* claim at the next chance (an announcement, or a full claim) */
	int64_t next_poll_ms, next_hb_ms;
	int exit_code;
	/* The summary's counts: jobs completed; attempts failed, and of them those that failed
	 * their job for good; results not reported (the lease was lost, or the service refused). */
	uint64_t n_completed, n_failed, n_failed_final, n_dropped;
	uint64_t n_stopped;       /* jobs cancelled by the service while their command ran */
} worker;

/* cli_worker_child.c */
int worker_prepare_exec(worker *w, char **argv);
void worker_free_exec(worker *w);
/* worker_spawn starts the child for s (id, token, attempt set) with payload on its stdin. On
 * failure the slot is SLOT_DONE with the reason set. */
void worker_spawn(worker *w, slot *s, const jobq_job *job);
void worker_read_stderr(slot *s);
void worker_close_stderr(slot *s);
/* --keep-output: worker_read_stdout takes what the child wrote (up to w->max_output bytes; more
 * sets out_over); worker_close_stdout closes the pipe, worker_free_output frees the bytes. */
void worker_read_stdout(const worker *w, slot *s);
void worker_close_stdout(slot *s);
void worker_free_output(slot *s);
/* worker_kill sends SIGTERM to the child's process group and arms the SIGKILL escalation. */
void worker_kill(slot *s, const char *reason, int64_t now);
void worker_kill_hard(slot *s);
/* worker_error_text builds the Fail error (reason, stderr tail, exit status) into buf. */
void worker_error_text(const slot *s, char *buf, size_t size);
/* worker_exit_desc: "exit 1", "signal 9", ... */
void worker_exit_desc(const slot *s, char *buf, size_t size);

#endif
