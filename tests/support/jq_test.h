/*
 * jq_test — helpers for tests that run against the real PostgreSQL started by tests/run.sh.
 * Every helper fails the current cmocka test (fail_msg) rather than returning an error, so tests
 * stay straight-line. Returned strings are malloc'd and freed by the caller; PGresults by PQclear.
 */
#ifndef JQ_TEST_H
#define JQ_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <libpq-fe.h>

/* jq_test_env returns a required environment variable, or aborts the run with a clear message. */
const char *jq_test_env(const char *name);

/* jq_test_db_clone creates (or recreates) database `name` as a copy of the migrated test
 * database and returns its URL (caller frees). Gives each test program its own tables. */
char *jq_test_db_clone(const char *name);

/* jq_test_connect opens a connection or fails the test. */
PGconn *jq_test_connect(const char *url);

/* jq_test_exec runs SQL (no parameters) that must succeed; returns the result (caller PQclears). */
PGresult *jq_test_exec(PGconn *c, const char *sql);

/* jq_test_ok runs SQL that must succeed and discards the result. */
void jq_test_ok(PGconn *c, const char *sql);

/* jq_test_sqlstate runs SQL that must fail and returns its SQLSTATE (static buffer). */
const char *jq_test_sqlstate(PGconn *c, const char *sql);

/* jq_test_scalar runs SQL returning one value; returns it as a malloc'd string ("" for NULL). */
char *jq_test_scalar(PGconn *c, const char *sql);

/* jq_test_scalar_ll: jq_test_scalar parsed as an integer. */
long long jq_test_scalar_ll(PGconn *c, const char *sql);

/* jq_test_command_exits runs a shell command and fails the test unless it exits with `status`
 * and its output (stdout and what the command sends there) contains `text`. */
void jq_test_command_exits(const char *cmd, int status, const char *text);

#endif
