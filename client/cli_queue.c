/*
 * cli_queue.c — flow control of a queue: jobq pause, jobq resume, jobq queue set.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

enum {
	OPT_CONCURRENCY = OPT_FIRST_COMMAND_OPT,
	OPT_NO_CONCURRENCY,
	OPT_RATE,
	OPT_NO_RATE,
	OPT_KEY_CONCURRENCY,
	OPT_NO_KEY_CONCURRENCY,
};

static const char pause_help[] =
	"Usage: jobq pause QUEUE\n"
	"\n"
	"Pauses a queue on every replica: enqueues are accepted, but Claims get none of its jobs and\n"
	"no announcement of it goes out until `jobq resume`. Running jobs finish normally. A queue\n"
	"with no jobs yet may be paused. Admin only.\n"
	"\n" CLI_GLOBAL_HELP;

static const char resume_help[] =
	"Usage: jobq resume QUEUE\n"
	"\n"
	"Resumes a paused queue: its due jobs are announced at once and Claims take them again.\n"
	"Admin only.\n"
	"\n" CLI_GLOBAL_HELP;

static const char queue_help[] =
	"Usage: jobq queue set QUEUE [--concurrency N | --no-concurrency] [--rate N/PERIOD | --no-rate]\n"
	"                            [--key-concurrency M | --no-key-concurrency]\n"
	"\n"
	"Sets or removes the limits of a queue, enforced by the database across every replica and\n"
	"worker. A limit not named stays as it is. Admin only.\n"
	"\n"
	"  --concurrency N   at most N jobs of the queue processing at once (1..1000000)\n"
	"  --no-concurrency  remove the concurrency limit\n"
	"  --rate N/PERIOD   at most N jobs claimed per PERIOD: [COUNT]UNIT with UNIT ms, s, m, h\n"
	"                    or d (100/s, 10/500ms, 3000/5m); windows start on multiples of PERIOD\n"
	"                    since the Unix epoch; at most a day\n"
	"  --no-rate         remove the rate limit\n"
	"  --key-concurrency M\n"
	"                    at most M jobs with the same concurrency key (`jobq enqueue\n"
	"                    --concurrency-key K`) processing at once (1..1000000); the other keys'\n"
	"                    jobs run meanwhile\n"
	"  --no-key-concurrency\n"
	"                    remove the per-key limit\n"
	"\n"
	"Prints the queue's settings afterwards (`jobq stats` shows them too).\n"
	"\n" CLI_GLOBAL_HELP;

/* fmt_period writes a period in the largest unit that divides it ("1s", "500ms", "5m"). */
static const char *fmt_period(char *buf, size_t size, uint32_t ms)
{
	static const struct {
		const char *unit;
		uint32_t ms;
	} units[] = { { "d", 86400000 }, { "h", 3600000 }, { "m", 60000 }, { "s", 1000 } };
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (ms % units[i].ms == 0) {
			snprintf(buf, size, "%" PRIu32 "%s", ms / units[i].ms, units[i].unit);
			return buf;
		}
	}
	snprintf(buf, size, "%" PRIu32 "ms", ms);
	return buf;
}

const char *cli_fmt_flow(char *buf, size_t size, const jobq_queue_flow *f)
{
	char conc[32] = "", rate[64] = "", per[32], key[40] = "";
	if (f->concurrency_limit > 0)
		snprintf(conc, sizeof(conc), "%sconcurrency %" PRIu32, f->paused ? " " : "", f->concurrency_limit);
	if (f->rate_limit > 0)
		snprintf(rate, sizeof(rate), "%srate %" PRIu32 "/%s", f->paused || conc[0] ? " " : "",
			 f->rate_limit, fmt_period(per, sizeof(per), f->rate_period_ms));
	if (f->key_concurrency_limit > 0)
		snprintf(key, sizeof(key), "%skey-concurrency %" PRIu32, f->paused || conc[0] || rate[0] ? " " : "",
			 f->key_concurrency_limit);
	snprintf(buf, size, "%s%s%s%s", f->paused ? "paused" : "", conc, rate, key);
	if (buf[0] == '\0')
		snprintf(buf, size, "-");
	return buf;
}

void cli_json_flow(json_out *j, const jobq_queue_flow *f)
{
	json_bool(j, "paused", f->paused);
	if (f->concurrency_limit > 0)
		json_u64(j, "concurrency_limit", f->concurrency_limit);
	if (f->rate_limit > 0) {
		json_u64(j, "rate_limit", f->rate_limit);
		json_u64(j, "rate_period_ms", f->rate_period_ms);
	}
	if (f->key_concurrency_limit > 0)
		json_u64(j, "key_concurrency_limit", f->key_concurrency_limit);
}

static void print_settings(const cli *c, const char *queue, const jobq_queue_flow *f)
{
	char buf[160];
	if (!c->json) {
		printf("queue %s: %s\n", queue, cli_fmt_flow(buf, sizeof(buf), f));
		return;
	}
	json_out j;
	json_begin(&j, stdout);
	json_str(&j, "queue", queue);
	cli_json_flow(&j, f);
	json_end(&j);
}

/* parse_rate reads N/PERIOD into *limit and *period_ms; a usage error otherwise. Ranges past
 * the syntax are the service's to judge (it answers INVALID_ARGUMENT with the reason). */
static int parse_rate(const cli *c, const char *s, int32_t *limit, int32_t *period_ms)
{
	static const struct {
		const char *unit;
		int64_t ms;
	} units[] = { { "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "h", 3600000 }, { "d", 86400000 } };
	const char *slash = strchr(s, '/');
	char count[32];
	int64_t n, mult = 1;
	if (slash == NULL || (size_t)(slash - s) >= sizeof(count))
		return cli_usage_error(c, "--rate: '%s' is not N/PERIOD (100/s, 10/500ms)", s);
	memcpy(count, s, (size_t)(slash - s));
	count[slash - s] = '\0';
	if (cli_parse_i64(c, "--rate count", count, INT32_MIN, INT32_MAX, &n) != CLI_EXIT_OK)
		return CLI_EXIT_USAGE;
	const char *p = slash + 1, *unit = p;
	while (*unit >= '0' && *unit <= '9')
		unit++;
	if (unit != p) {
		char digits[16];
		if ((size_t)(unit - p) >= sizeof(digits))
			return cli_usage_error(c, "--rate: period '%s' is too long", p);
		memcpy(digits, p, (size_t)(unit - p));
		digits[unit - p] = '\0';
		if (cli_parse_i64(c, "--rate period", digits, 0, INT32_MAX, &mult) != CLI_EXIT_OK)
			return CLI_EXIT_USAGE;
	}
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(unit, units[i].unit) != 0)
			continue;
		int64_t ms = mult * units[i].ms;
		*limit = (int32_t)n;
		*period_ms = ms > INT32_MAX ? INT32_MAX : (int32_t)ms;
		return CLI_EXIT_OK;
	}
	return cli_usage_error(c, "--rate: period '%s' needs a unit: ms, s, m, h or d", p);
}

typedef int (*pause_fn)(jobq_client *, const char *, jobq_queue_flow *, jobq_error *);

static int run_pause(cli *c, int argc, char **argv, const char *help, pause_fn fn)
{
	static const struct option none[] = { { NULL, 0, NULL, 0 } };
	int opt, rc;
	while ((opt = cli_getopt(c, argc, argv, "", none)) != -1) {
		if (opt == '?')
			return CLI_EXIT_USAGE;
		cli_global_opt(c, opt, optarg);
	}
	if (c->help)
		return cli_help(help);
	if (argc - optind != 1)
		return cli_usage_error(c, "give one queue name");
	if ((rc = cli_connect(c)) != CLI_EXIT_OK)
		return rc;
	jobq_queue_flow f;
	jobq_error err = { 0 };
	if (fn(c->client, argv[optind], &f, &err) != JOBQ_OK)
		return cli_fail_err(c, &err);
	print_settings(c, argv[optind], &f);
	return CLI_EXIT_OK;
}

int cmd_pause(cli *c, int argc, char **argv)
{
	return run_pause(c, argc, argv, pause_help, jobq_pause);
}

int cmd_resume(cli *c, int argc, char **argv)
{
	return run_pause(c, argc, argv, resume_help, jobq_resume);
}

int cmd_queue(cli *c, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "concurrency", required_argument, NULL, OPT_CONCURRENCY },
		{ "no-concurrency", no_argument, NULL, OPT_NO_CONCURRENCY },
		{ "rate", required_argument, NULL, OPT_RATE },
		{ "no-rate", no_argument, NULL, OPT_NO_RATE },
		{ "key-concurrency", required_argument, NULL, OPT_KEY_CONCURRENCY },
		{ "no-key-concurrency", no_argument, NULL, OPT_NO_KEY_CONCURRENCY },
		{ NULL, 0, NULL, 0 },
	};
	jobq_queue_config cfg = { 0 };
	int64_t v;
	int opt, rc;
	while ((opt = cli_getopt(c, argc, argv, "", longopts)) != -1) {
		if (opt == '?')
			return CLI_EXIT_USAGE;
		if (opt == OPT_CONCURRENCY) {
			if (cli_parse_i64(c, "--concurrency", optarg, INT32_MIN, INT32_MAX, &v) != CLI_EXIT_OK)
				return CLI_EXIT_USAGE;
			cfg.set_concurrency_limit = true;
			cfg.concurrency_limit = (int32_t)v;
		} else if (opt == OPT_NO_CONCURRENCY) {
			cfg.clear_concurrency_limit = true;
		} else if (opt == OPT_RATE) {
			if (parse_rate(c, optarg, &cfg.rate_limit, &cfg.rate_period_ms) != CLI_EXIT_OK)
				return CLI_EXIT_USAGE;
			cfg.set_rate_limit = true;
		} else if (opt == OPT_NO_RATE) {
			cfg.clear_rate_limit = true;
		} else if (opt == OPT_KEY_CONCURRENCY) {
			if (cli_parse_i64(c, "--key-concurrency", optarg, INT32_MIN, INT32_MAX, &v) != CLI_EXIT_OK)
				return CLI_EXIT_USAGE;
			cfg.set_key_concurrency_limit = true;
			cfg.key_concurrency_limit = (int32_t)v;
		} else if (opt == OPT_NO_KEY_CONCURRENCY) {
			cfg.clear_key_concurrency_limit = true;
		} else {
			cli_global_opt(c, opt, optarg);
		}
	}
	if (c->help)
		return cli_help(queue_help);
	if (argc - optind != 2 || strcmp(argv[optind], "set") != 0)
		return cli_usage_error(c, "usage: jobq queue set QUEUE [--concurrency N] [--rate N/PERIOD]"
					  " [--key-concurrency M] (see --help)");
	const char *queue = argv[optind + 1];
	if ((rc = cli_connect(c)) != CLI_EXIT_OK)
		return rc;
	jobq_queue_flow f;
	jobq_error err = { 0 };
	if (jobq_configure_queue(c->client, queue, &cfg, &f, &err) != JOBQ_OK)
		return cli_fail_err(c, &err);
	print_settings(c, queue, &f);
	return CLI_EXIT_OK;
}
