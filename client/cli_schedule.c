/*
 * jobq schedule add|list|rm — periodic jobs (AddSchedule, ListSchedules, RemoveSchedule).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char schedule_help[] =
	"Usage: jobq schedule add NAME --cron 'EXPR' --queue Q [--payload TEXT] [OPTIONS]\n"
	"       jobq schedule list\n"
	"       jobq schedule rm NAME\n"
	"\n"
	"Periodic jobs: on every tick of the cron expression the service enqueues the job once,\n"
	"however many replicas run. `add` creates the schedule NAME or replaces it, and prints its\n"
	"next run time.\n"
	"\n"
	"  -c, --cron EXPR            minute hour day-of-month month day-of-week (e.g. '*/5 * * * *',\n"
	"                             '0 9 * * MON-FRI', '@daily'); 6 fields: seconds first\n"
	"      --tz ZONE              IANA time zone of the expression (default UTC)\n"
	"  -q, --queue Q              the job's queue\n"
	"  -p, --payload TEXT         the job's payload (default empty)\n"
	"      --priority N           lower runs first (-32768..32767, default 0)\n"
	"      --max-attempts N       1..1000 (default: the service's, 25)\n"
	"      --idempotency-key K    {tick} in K becomes the tick's UTC time\n"
	"      --missed skip|once     ticks missed while no replica ran (over 60 s late): enqueue\n"
	"                             nothing (skip, the default) or one job for all of them\n"
	"\n" CLI_GLOBAL_HELP;

enum { OPT_TZ = OPT_FIRST_COMMAND_OPT, OPT_PRIORITY, OPT_MAX_ATTEMPTS, OPT_IDEM_KEY, OPT_MISSED };

static const struct option add_opts[] = {
	{ "cron", required_argument, NULL, 'c' },
	{ "tz", required_argument, NULL, OPT_TZ },
	{ "queue", required_argument, NULL, 'q' },
	{ "payload", required_argument, NULL, 'p' },
	{ "priority", required_argument, NULL, OPT_PRIORITY },
	{ "max-attempts", required_argument, NULL, OPT_MAX_ATTEMPTS },
	{ "idempotency-key", required_argument, NULL, OPT_IDEM_KEY },
	{ "missed", required_argument, NULL, OPT_MISSED },
	{ NULL, 0, NULL, 0 },
};

static void json_schedule(const jobq_schedule *s)
{
	json_out j;
	json_begin(&j, stdout);
	json_str(&j, "name", s->name);
	json_str(&j, "cron", s->cron);
	json_str(&j, "time_zone", s->time_zone);
	json_str(&j, "queue", s->queue);
	json_bytes(&j, "payload", s->payload, s->payload_len);
	json_i64(&j, "priority", s->priority);
	json_u64(&j, "max_attempts", s->max_attempts);
	json_str(&j, "idempotency_key", s->idempotency_key[0] ? s->idempotency_key : NULL);
	json_str(&j, "missed", s->missed == JOBQ_MISSED_ONCE ? "once" : "skip");
	json_time_ms(&j, "next_run_at", s->next_run_at_ms);
	json_time_ms(&j, "last_run_at", s->last_run_at_ms);
	json_time_ms(&j, "created_at", s->created_at_ms);
	json_time_ms(&j, "updated_at", s->updated_at_ms);
	json_end(&j);
}

/* add_option applies one of add's flags to spec; returns an exit status (OK to go on). */
static int add_option(cli *c, int opt, const char *arg, jobq_schedule_spec *spec)
{
	int64_t v = 0;
	int rc = CLI_EXIT_OK;
	switch (opt) {
	case 'c':
		spec->cron = arg;
		break;
	case OPT_TZ:
		spec->time_zone = arg;
		break;
	case 'q':
		spec->job.queue = arg;
		break;
	case 'p':
		spec->job.payload = arg;
		spec->job.payload_len = strlen(arg);
		break;
	case OPT_PRIORITY:
		if ((rc = cli_parse_i64(c, "--priority", arg, INT16_MIN, INT16_MAX, &v)) == CLI_EXIT_OK)
			spec->job.priority = (int32_t)v;
		break;
	case OPT_MAX_ATTEMPTS:
		rc = cli_parse_u32(c, "--max-attempts", arg, 1000, &spec->job.max_attempts);
		/* 0 would mean the service's default: say so rather than take it silently. */
		if (rc == CLI_EXIT_OK && spec->job.max_attempts == 0)
			rc = cli_usage_error(c, "--max-attempts must be 1..1000 (leave it out for the "
						"service's default, 25)");
		break;
	case OPT_IDEM_KEY:
		spec->job.idempotency_key = arg;
		break;
	case OPT_MISSED:
		if (strcmp(arg, "skip") == 0)
			spec->missed = JOBQ_MISSED_SKIP;
		else if (strcmp(arg, "once") == 0)
			spec->missed = JOBQ_MISSED_ONCE;
		else
			rc = cli_usage_error(c, "--missed: '%s' is neither skip nor once", arg);
		break;
	default:
		if (!cli_global_opt(c, opt, arg))
			rc = CLI_EXIT_USAGE;
	}
	return rc;
}

static int schedule_add(cli *c, int argc, char **argv)
{
	jobq_schedule_spec spec = { 0 };
	int opt, rc;
	while ((opt = cli_getopt(c, argc, argv, "c:q:p:", add_opts)) != -1) {
		if (opt == '?')
			return CLI_EXIT_USAGE;
		if ((rc = add_option(c, opt, optarg, &spec)) != CLI_EXIT_OK)
			return rc;
	}
	if (c->help)
		return cli_help(schedule_help);
	if (optind >= argc)
		return cli_usage_error(c, "a schedule NAME is required");
	if (optind + 1 < argc)
		return cli_usage_error(c, "unexpected argument '%s'", argv[optind + 1]);
	if (spec.cron == NULL)
		return cli_usage_error(c, "--cron is required");
	if (spec.job.queue == NULL)
		return cli_usage_error(c, "--queue is required");
	spec.name = argv[optind];
	if ((rc = cli_connect(c)) != CLI_EXIT_OK)
		return rc;
	jobq_schedule *s = NULL;
	jobq_error err = { 0 };
	if (jobq_schedule_add(c->client, &spec, &s, &err) != JOBQ_OK)
		return cli_fail_err(c, &err);
	if (c->json) {
		json_schedule(s);
	} else {
		char next[40];
		printf("schedule %s: next run %s\n", s->name, fmt_time_ms(next, sizeof(next), s->next_run_at_ms));
	}
	jobq_schedules_free(s, 1);
	return CLI_EXIT_OK;
}

/* plain_args parses a subcommand that takes only global flags and operands. */
static int plain_args(cli *c, int argc, char **argv)
{
	static const struct option none[] = { { NULL, 0, NULL, 0 } };
	int opt;
	while ((opt = cli_getopt(c, argc, argv, "", none)) != -1) {
		if (opt == '?' || !cli_global_opt(c, opt, optarg))
			return CLI_EXIT_USAGE;
	}
	return CLI_EXIT_OK;
}

static int schedule_list(cli *c, int argc, char **argv)
{
	int rc = plain_args(c, argc, argv);
	if (rc != CLI_EXIT_OK)
		return rc;
	if (c->help)
		return cli_help(schedule_help);
	if (optind < argc)
		return cli_usage_error(c, "unexpected argument '%s'", argv[optind]);
	if ((rc = cli_connect(c)) != CLI_EXIT_OK)
		return rc;
	jobq_schedule *s = NULL;
	size_t n = 0;
	jobq_error err = { 0 };
	if (jobq_schedule_list(c->client, c->json, &s, &n, &err) != JOBQ_OK)
		return cli_fail_err(c, &err);
	if (!c->json && n > 0)
		printf("%-20s %-16s %-18s %-16s %-24s %-24s %s\n", "NAME", "CRON", "TZ", "QUEUE", "NEXT_RUN",
		       "LAST_RUN", "MISSED");
	for (size_t i = 0; i < n; i++) {
		char next[40], last[40];
		if (c->json) {
			json_schedule(&s[i]);
			continue;
		}
		printf("%-20s %-16s %-18s %-16s %-24s %-24s %s\n", s[i].name, s[i].cron, s[i].time_zone, s[i].queue,
		       fmt_time_ms(next, sizeof(next), s[i].next_run_at_ms),
		       fmt_time_ms(last, sizeof(last), s[i].last_run_at_ms),
		       s[i].missed == JOBQ_MISSED_ONCE ? "once" : "skip");
	}
	if (!c->json && n == 0)
		printf("no schedules\n");
	jobq_schedules_free(s, n);
	return CLI_EXIT_OK;
}

static int schedule_rm(cli *c, int argc, char **argv)
{
	int rc = plain_args(c, argc, argv);
	if (rc != CLI_EXIT_OK)
		return rc;
	if (c->help)
		return cli_help(schedule_help);
	if (optind >= argc)
		return cli_usage_error(c, "a schedule NAME is required");
	if (optind + 1 < argc)
		return cli_usage_error(c, "unexpected argument '%s'", argv[optind + 1]);
	if ((rc = cli_connect(c)) != CLI_EXIT_OK)
		return rc;
	jobq_error err = { 0 };
	if (jobq_schedule_remove(c->client, argv[optind], &err) != JOBQ_OK)
		return cli_fail_err(c, &err);
	if (c->json) {
		json_out j;
		json_begin(&j, stdout);
		json_str(&j, "removed", argv[optind]);
		json_end(&j);
	} else {
		printf("schedule %s removed\n", argv[optind]);
	}
	return CLI_EXIT_OK;
}

int cmd_schedule(cli *c, int argc, char **argv)
{
	static const struct {
		const char *name, *cmd;
		cli_command_fn fn;
	} subs[] = {
		{ "add", "schedule add", schedule_add },
		{ "list", "schedule list", schedule_list },
		{ "ls", "schedule list", schedule_list },
		{ "rm", "schedule rm", schedule_rm },
		{ "remove", "schedule rm", schedule_rm },
	};
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		if (argc >= 2)
			return cli_help(schedule_help);
		fputs(schedule_help, stderr);
		return CLI_EXIT_USAGE;
	}
	for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
		if (strcmp(argv[1], subs[i].name) == 0) {
			c->cmd = subs[i].cmd;
			optind = 0;
			return subs[i].fn(c, argc - 1, argv + 1);
		}
	}
	return cli_usage_error(c, "unknown subcommand '%s' (add, list, rm)", argv[1]);
}
