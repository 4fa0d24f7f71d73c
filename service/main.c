/* jobqd — the jobq service. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "jq_config.h"
#include "jq_log.h"

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

int main(int argc, char **argv)
{
	jq_config cfg;
	int rc = 1;

	switch (jq_config_load(&cfg, argc, argv, stdout, stderr)) {
	case JQ_CONFIG_HELP:
		jq_config_free(&cfg);
		return 0;
	case JQ_CONFIG_ERROR:
		jq_config_free(&cfg);
		return 2;
	case JQ_CONFIG_OK:
		break;
	}
	jq_log_setup(cfg.log_level, cfg.log_format);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);

	PGconn *conn = PQconnectdb(cfg.database_url);
	if (PQstatus(conn) != CONNECTION_OK) {
		jq_error("database: %s", PQerrorMessage(conn));
		goto out;
	}
	jq_info("jobqd connected to the database; waiting for SIGTERM");
	while (!stop_requested)
		pause();
	jq_info("jobqd stopping");
	rc = 0;
out:
	PQfinish(conn);
	jq_config_free(&cfg);
	return rc;
}
