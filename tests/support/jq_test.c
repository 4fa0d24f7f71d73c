#include "jq_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

const char *jq_test_env(const char *name)
{
	const char *v = getenv(name);
	if (v == NULL || *v == '\0') {
		fprintf(stderr, "%s is not set: run the tests with `make test` (tests/run.sh)\n", name);
		exit(2);
	}
	return v;
}

static void quiet(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

PGconn *jq_test_connect(const char *url)
{
	PGconn *c = PQconnectdb(url);
	if (PQstatus(c) != CONNECTION_OK)
		fail_msg("connect %s: %s", url, PQerrorMessage(c));
	PQsetNoticeProcessor(c, quiet, NULL);
	return c;
}

PGresult *jq_test_exec(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	ExecStatusType st = PQresultStatus(r);
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		char msg[1024];
		snprintf(msg, sizeof(msg), "%s", PQresultErrorMessage(r));
		PQclear(r);
		fail_msg("SQL failed: %s\n  %s", sql, msg);
	}
	return r;
}

void jq_test_ok(PGconn *c, const char *sql)
{
	PQclear(jq_test_exec(c, sql));
}

const char *jq_test_sqlstate(PGconn *c, const char *sql)
{
	static char state[8];
	PGresult *r = PQexec(c, sql);
	ExecStatusType st = PQresultStatus(r);
	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
		PQclear(r);
		fail_msg("SQL unexpectedly succeeded: %s", sql);
	}
	const char *s = PQresultErrorField(r, PG_DIAG_SQLSTATE);
	snprintf(state, sizeof(state), "%s", s ? s : "?????");
	PQclear(r);
	return state;
}

char *jq_test_scalar(PGconn *c, const char *sql)
{
	PGresult *r = jq_test_exec(c, sql);
	if (PQntuples(r) != 1 || PQnfields(r) != 1) {
		int n = PQntuples(r);
		PQclear(r);
		fail_msg("expected one value, got %d rows: %s", n, sql);
	}
	char *v = strdup(PQgetvalue(r, 0, 0));
	PQclear(r);
	assert_non_null(v);
	return v;
}

long long jq_test_scalar_ll(PGconn *c, const char *sql)
{
	char *v = jq_test_scalar(c, sql);
	char *end;
	long long n = strtoll(v, &end, 10);
	if (*v == '\0' || *end != '\0') {
		char copy[64];
		snprintf(copy, sizeof(copy), "%s", v);
		free(v);
		fail_msg("not an integer: '%s' from %s", copy, sql);
	}
	free(v);
	return n;
}

/* url_with_db returns base with its database name replaced (base must be a URI). */
static char *url_with_db(const char *base, const char *db)
{
	const char *slash = strrchr(base, '/');
	if (slash == NULL || strstr(base, "://") == NULL)
		fail_msg("JOBQ_TEST_DATABASE_URL must be a postgresql:// URI: %s", base);
	size_t n = (size_t)(slash - base) + strlen(db) + 2;
	char *url = malloc(n);
	assert_non_null(url);
	snprintf(url, n, "%.*s/%s", (int)(slash - base), base, db);
	return url;
}

char *jq_test_db_clone(const char *name)
{
	const char *base = jq_test_env("JOBQ_TEST_DATABASE_URL");
	char *maint = url_with_db(base, "postgres");
	char sql[512];
	/* A template cannot be copied while anyone is connected to it; tests/run.sh runs one test
	 * program at a time and none of them keeps a session on the template. */
	PGconn *c = jq_test_connect(maint);
	snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", name);
	jq_test_ok(c, sql);
	snprintf(sql, sizeof(sql), "CREATE DATABASE %s TEMPLATE jobq", name);
	jq_test_ok(c, sql);
	PQfinish(c);
	free(maint);
	return url_with_db(base, name);
}

void jq_test_command_exits(const char *cmd, int status, const char *text)
{
	char out[1024] = "";
	FILE *p = popen(cmd, "r");
	if (p == NULL)
		fail_msg("cannot run: %s", cmd);
	size_t n = fread(out, 1, sizeof(out) - 1, p);
	out[n] = '\0';
	int st = pclose(p);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != status)
		fail_msg("%s: exit status %d, not %d; it said: %s", cmd, WIFEXITED(st) ? WEXITSTATUS(st) : -1,
			 status, out);
	if (strstr(out, text) == NULL)
		fail_msg("%s: the output lacks '%s'; it said: %s", cmd, text, out);
}
