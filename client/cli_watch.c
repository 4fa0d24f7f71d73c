/*
 * cli_watch.c — `jobq watch`: prints the service's announcements of claimable jobs as they come,
 * until SIGINT or SIGTERM.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

/* How often the loop looks at the stop flag: the library call, not the signal, ends a wait. */
#define WATCH_TICK_MS 200
/* How long the start waits for the connection before it says there is none; the library says
 * "refused" sooner (in about a second). */
#define WATCH_CONNECT_MS 2000

static volatile sig_atomic_t watch_stop;

static void on_stop(int sig)
{
	(void)sig;
	watch_stop = 1;
}

static const char watch_help[] =
	"Usage: jobq watch [--queue Q]\n"
	"\n"
	"Prints every announcement of claimable jobs (time, queue, ids) as the service publishes\n"
	"it, until SIGINT or SIGTERM. Announcements are hints: a slow or reconnecting subscriber\n"
	"misses some, and \"(some)\" means the service did not list the ids. When the PUB address\n"
	"cannot be reached (at the start, or later), watch says so on stderr and keeps redialing\n"
	"until it answers; the exit status stays 0.\n"
	"\n"
	"  -q, --queue Q   only this queue (default: every queue)\n"
	"\n" CLI_GLOBAL_HELP;

static void print_announcement(const cli *c, const jobq_announcement *a)
{
	char when[40];
	int64_t ms = a->published_at_us != 0 ? a->published_at_us / 1000 : cli_now_ms();
	if (c->json) {
		json_out j;
		json_begin(&j, stdout);
		json_str(&j, "time", fmt_time_ms(when, sizeof(when), ms));
		json_str(&j, "queue", a->queue);
		json_key(&j, "ids");
		putchar('[');
		for (size_t i = 0; i < a->n_ids; i++)
			printf("%s%" PRId64, i ? "," : "", a->ids[i]);
		putchar(']');
		json_i64(&j, "published_at_us", a->published_at_us);
		json_end(&j);
		return;
	}
	printf("%s  %-20s ", fmt_time_ms(when, sizeof(when), ms), a->queue);
	if (a->n_ids == 0)
		fputs("(some)", stdout);
	for (size_t i = 0; i < a->n_ids; i++)
		printf("%s%" PRId64, i ? "," : "", a->ids[i]);
	putchar('\n');
	fflush(stdout);
}

static void say_listening(const cli *c, const char *queue, const char *how)
{
	if (!c->json)
		fprintf(stderr, "jobq: watch: %s for %s%s (Ctrl-C to stop)\n", how, queue ? "queue " : "every queue",
			queue ? queue : "");
}

/* follow_connection tells on stderr when the connection to the publisher comes or goes (the
 * library redials by itself); *up is what was last said. */
static void follow_connection(const cli *c, jobq_sub *sub, const char *queue, bool *up)
{
	jobq_error err = { 0 };
	bool now = jobq_sub_connected(sub, 0, &err) == JOBQ_OK;
	if (now == *up)
		return;
	*up = now;
	if (now)
		say_listening(c, queue, "connected, listening");
	else
		fprintf(stderr, "jobq: watch: %s; redialing\n", err.message);
}

static void install_handlers(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

int cmd_watch(cli *c, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "queue", required_argument, NULL, 'q' },
		{ NULL, 0, NULL, 0 },
	};
	const char *queue = NULL;
	int opt;
	while ((opt = cli_getopt(c, argc, argv, "q:", longopts)) != -1) {
		if (opt == '?')
			return CLI_EXIT_USAGE;
		if (opt == 'q')
			queue = optarg;
		else
			cli_global_opt(c, opt, optarg);
	}
	if (c->help)
		return cli_help(watch_help);
	if (optind < argc)
		return cli_usage_error(c, "unexpected argument '%s'", argv[optind]);
	if (c->opts.timeout_ms < 0)
		return CLI_EXIT_USAGE;
	install_handlers();
	jobq_sub *sub = NULL;
	jobq_error err = { 0 };
	if (jobq_subscribe(&c->opts, queue, &sub, &err) != JOBQ_OK)
		return cli_fail_err(c, &err);
	bool up = jobq_sub_connected(sub, WATCH_CONNECT_MS, &err) == JOBQ_OK;
	if (up)
		say_listening(c, queue, "listening");
	else
		fprintf(stderr, "jobq: watch: %s; redialing until it answers (Ctrl-C to stop)\n", err.message);
	int rc = CLI_EXIT_OK;
	while (!watch_stop) {
		follow_connection(c, sub, queue, &up);
		jobq_announcement a;
		memset(&a, 0, sizeof(a));
		int r = jobq_sub_next(sub, WATCH_TICK_MS, &a, &err);
		if (r == JOBQ_DEADLINE_EXCEEDED)
			continue;
		if (r != JOBQ_OK) {
			/* A wait cut short by our own stop signal is not an error. */
			if (!watch_stop)
				rc = cli_fail_err(c, &err);
			break;
		}
		print_announcement(c, &a);
		jobq_announcement_free(&a);
	}
	jobq_sub_close(sub);
	return rc;
}
