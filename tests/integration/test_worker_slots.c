/*
 * test_worker_slots — `jobq worker` against a service that answers a Claim with more jobs than
 * the worker asked for. The real jobqd never does (its claim statement has a LIMIT); a buggy or
 * hostile service could, so this test stands in for one: the real protocol on a real nng REP
 * socket, answered from the test. The worker must run the jobs it has slots for, give each other
 * job back at once with a retryable Fail (so none waits out its lease), and keep running. It used
 * to start the extra job in a slot that did not exist (free_slot() returned NULL: a crash).
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>

#include "jobq/v1/jobq.pb-c.h"
#include "jq_svc.h"
#include "jq_test.h"

#define METHOD(name) "/jobq.v1.JobQueue/" name

typedef struct fake {
	nng_socket rep;
	int claims;
	int64_t completed[8], failed[8];
	int n_completed, n_failed;
	char fail_error[256];
} fake;

/* reply sends code and the packed message m (may be NULL) as the RpcResponse. */
static void reply(fake *f, unsigned code, const ProtobufCMessage *m)
{
	Jobq__V1__RpcResponse resp = JOBQ__V1__RPC_RESPONSE__INIT;
	uint8_t payload[4096], out[8192];
	resp.code = code;
	if (m != NULL) {
		assert_true(protobuf_c_message_get_packed_size(m) <= sizeof(payload));
		resp.payload.len = protobuf_c_message_pack(m, payload);
		resp.payload.data = payload;
	}
	assert_true(jobq__v1__rpc_response__get_packed_size(&resp) <= sizeof(out));
	size_t len = jobq__v1__rpc_response__pack(&resp, out);
	assert_int_equal(nng_send(f->rep, out, len, 0), 0);
}

/* claim answers the first Claim with limit + 1 jobs (ids 1001...), every later one with none. */
static void claim(fake *f, const Jobq__V1__ClaimRequest *r)
{
	Jobq__V1__ClaimResponse resp = JOBQ__V1__CLAIM_RESPONSE__INIT;
	Jobq__V1__Job jobs[8], *ptrs[8];
	size_t n = f->claims++ == 0 ? r->limit + 1 : 0;
	assert_true(n <= 8);
	for (size_t i = 0; i < n; i++) {
		jobq__v1__job__init(&jobs[i]);
		jobs[i].id = 1001 + (int64_t)i;
		jobs[i].queue = r->queue;
		jobs[i].payload.data = (uint8_t *)"p";
		jobs[i].payload.len = 1;
		jobs[i].status = JOBQ__V1__JOB_STATUS__JOB_STATUS_ARCHIVE_PROCESSING;
		jobs[i].attempts = 1;
		jobs[i].lease_token = 11 + (int64_t)i;
		ptrs[i] = &jobs[i];
	}
	resp.n_jobs = n;
	resp.jobs = ptrs;
	reply(f, 0, &resp.base);
}

/* ok_results answers a lease call on n jobs with OK for each. */
static void ok_results(fake *f, const int64_t *ids, size_t n, Jobq__V1__JobStatus status,
		       ProtobufCMessage *resp, size_t *n_results, Jobq__V1__ItemResult ***results)
{
	Jobq__V1__ItemResult items[8], *ptrs[8];
	assert_true(n <= 8);
	for (size_t i = 0; i < n; i++) {
		jobq__v1__item_result__init(&items[i]);
		items[i].id = ids[i];
		items[i].status = status;
		items[i].run_at_ms = jq_now_ms() + 60000;
		items[i].lease_expires_at_ms = jq_now_ms() + 30000;
		ptrs[i] = &items[i];
	}
	*n_results = n;
	*results = ptrs;
	reply(f, 0, resp);
}

/* serve_one answers one request, if one comes within the socket's receive timeout. */
static void serve_one(fake *f)
{
	char *buf = NULL;
	size_t len = 0;
	if (nng_recv(f->rep, &buf, &len, NNG_FLAG_ALLOC) != 0)
		return;
	Jobq__V1__RpcRequest *env = jobq__v1__rpc_request__unpack(NULL, len, (uint8_t *)buf);
	nng_free(buf, len);
	assert_non_null(env);
	const char *m = env->method;
	const uint8_t *p = env->payload.data;
	size_t pl = env->payload.len;
	int64_t ids[8];
	if (strcmp(m, METHOD("Claim")) == 0) {
		Jobq__V1__ClaimRequest *r = jobq__v1__claim_request__unpack(NULL, pl, p);
		assert_non_null(r);
		claim(f, r);
		jobq__v1__claim_request__free_unpacked(r, NULL);
	} else if (strcmp(m, METHOD("Complete")) == 0) {
		Jobq__V1__CompleteRequest *r = jobq__v1__complete_request__unpack(NULL, pl, p);
		Jobq__V1__CompleteResponse resp = JOBQ__V1__COMPLETE_RESPONSE__INIT;
		assert_non_null(r);
		size_t n = 0;
		if (r->id != 0)
			ids[n++] = r->id;
		for (size_t i = 0; i < r->n_jobs && n < 8; i++)
			ids[n++] = r->jobs[i]->id;
		for (size_t i = 0; i < n && f->n_completed < 8; i++)
			f->completed[f->n_completed++] = ids[i];
		ok_results(f, ids, n, JOBQ__V1__JOB_STATUS__JOB_STATUS_ARCHIVE_COMPLETED, &resp.base,
			   &resp.n_results, &resp.results);
		jobq__v1__complete_request__free_unpacked(r, NULL);
	} else if (strcmp(m, METHOD("Fail")) == 0) {
		Jobq__V1__FailRequest *r = jobq__v1__fail_request__unpack(NULL, pl, p);
		Jobq__V1__FailResponse resp = JOBQ__V1__FAIL_RESPONSE__INIT;
		assert_non_null(r);
		size_t n = 0;
		if (r->id != 0) {
			ids[n++] = r->id;
			snprintf(f->fail_error, sizeof(f->fail_error), "%s%s", r->error, r->final ? " (final)" : "");
		}
		for (size_t i = 0; i < r->n_jobs && n < 8; i++) {
			ids[n++] = r->jobs[i]->id;
			snprintf(f->fail_error, sizeof(f->fail_error), "%s%s", r->jobs[i]->error,
				 r->jobs[i]->final ? " (final)" : "");
		}
		for (size_t i = 0; i < n && f->n_failed < 8; i++)
			f->failed[f->n_failed++] = ids[i];
		ok_results(f, ids, n, JOBQ__V1__JOB_STATUS__JOB_STATUS_ARCHIVE_PENDING, &resp.base,
			   &resp.n_results, &resp.results);
		jobq__v1__fail_request__free_unpacked(r, NULL);
	} else if (strcmp(m, METHOD("Heartbeat")) == 0) {
		Jobq__V1__HeartbeatRequest *r = jobq__v1__heartbeat_request__unpack(NULL, pl, p);
		Jobq__V1__HeartbeatResponse resp = JOBQ__V1__HEARTBEAT_RESPONSE__INIT;
		assert_non_null(r);
		size_t n = 0;
		if (r->id != 0)
			ids[n++] = r->id;
		for (size_t i = 0; i < r->n_jobs && n < 8; i++)
			ids[n++] = r->jobs[i]->id;
		ok_results(f, ids, n, JOBQ__V1__JOB_STATUS__JOB_STATUS_ARCHIVE_PROCESSING, &resp.base,
			   &resp.n_results, &resp.results);
		jobq__v1__heartbeat_request__free_unpacked(r, NULL);
	} else {
		reply(f, 12, NULL); /* UNIMPLEMENTED */
	}
	jobq__v1__rpc_request__free_unpacked(env, NULL);
}

static bool has(const int64_t *ids, int n, int64_t id)
{
	for (int i = 0; i < n; i++)
		if (ids[i] == id)
			return true;
	return false;
}

static void print_log(const char *path)
{
	char line[512];
	FILE *in = fopen(path, "r");
	print_message("--- the worker's log\n");
	while (in != NULL && fgets(line, sizeof(line), in) != NULL)
		print_message("%s", line);
	if (in != NULL)
		fclose(in);
}

static void a_claim_answered_with_more_jobs_than_slots_gives_the_rest_back(void **state)
{
	(void)state;
	fake f = { 0 };
	char rpc_url[64], pub_url[64], bin[512], log_path[64];
	snprintf(rpc_url, sizeof(rpc_url), "tcp://127.0.0.1:%d", jq_free_port());
	snprintf(pub_url, sizeof(pub_url), "tcp://127.0.0.1:%d", jq_free_port()); /* nobody publishes */
	snprintf(bin, sizeof(bin), "%s/bin/jobq", jq_test_env("JOBQ_TEST_BUILD"));
	snprintf(log_path, sizeof(log_path), "/tmp/jq-worker-slots-%d.log", (int)getpid());
	assert_int_equal(nng_rep0_open(&f.rep), 0);
	assert_int_equal(nng_socket_set_ms(f.rep, NNG_OPT_RECVTIMEO, 100), 0);
	assert_int_equal(nng_listen(f.rep, rpc_url, NULL, 0), 0);

	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		FILE *log = freopen(log_path, "w", stderr);
		(void)log;
		setenv("JOBQ_RPC_URL", rpc_url, 1);
		setenv("JOBQ_PUB_URL", pub_url, 1);
		unsetenv("JOBQ_AUTH_TOKEN");
		execl(bin, "jobq", "worker", "--queue", "slots", "--concurrency", "1", "--poll-ms", "100",
		      "--", "sh", "-c", "cat >/dev/null", (char *)NULL);
		_exit(127);
	}
	long long deadline = jq_mono_ms() + 15000;
	int status = 0;
	bool exited = false;
	while (!(has(f.completed, f.n_completed, 1001) && has(f.failed, f.n_failed, 1002)) &&
	       jq_mono_ms() < deadline) {
		serve_one(&f);
		if (waitpid(pid, &status, WNOHANG) == pid) {
			exited = true;
			break;
		}
	}
	if (!exited) {
		kill(pid, SIGTERM);
		while (waitpid(pid, &status, WNOHANG) != pid)
			serve_one(&f); /* it reports as it stops */
	}
	nng_close(f.rep);
	print_log(log_path);
	unlink(log_path);

	if (exited || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("the worker %s (status 0x%x)", exited ? "stopped by itself" : "did not exit 0", status);
	assert_int_equal(f.claims >= 1, 1);
	if (!has(f.completed, f.n_completed, 1001))
		fail_msg("job 1001 (in the slot) was not completed");
	if (!has(f.failed, f.n_failed, 1002))
		fail_msg("job 1002 (no slot) was not given back");
	assert_non_null(strstr(f.fail_error, "no free slot"));
	assert_null(strstr(f.fail_error, "(final)"));
	assert_false(has(f.completed, f.n_completed, 1002));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(a_claim_answered_with_more_jobs_than_slots_gives_the_rest_back),
	};
	return cmocka_run_group_tests_name("worker_slots", tests, NULL, NULL);
}
