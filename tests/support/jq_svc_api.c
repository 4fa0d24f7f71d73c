#include "jq_svc_api.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "jq_svc.h"
#include "jq_test.h"

char jq_api_msg[1024];

static jq_rpc_sock *api_sock;
static PGconn *api_db;
static jq_api_svc *api_svc; /* the one jq_api_svc_start started, for the per-test hooks */

void jq_api_use(jq_rpc_sock *sock, PGconn *db)
{
	api_sock = sock;
	api_db = db;
}

int jq_api_svc_start(jq_api_svc *s, const char *name, const char *url, const char *const *flags)
{
	s->db_url = url ? strdup(url) : jq_test_db_clone(name);
	s->pg = url ? NULL : jq_test_connect(s->db_url);
	jq_svc_start(&s->svc, name, s->db_url, flags);
	if (jq_rpc_open(&s->rpc, s->svc.rpc_url, 10000) != 0)
		return -1;
	jq_api_use(&s->rpc, s->pg);
	api_svc = s;
	return 0;
}

int jq_api_svc_before(void **state)
{
	(void)state;
	assert_non_null(api_svc);
	jq_svc_mark_log(&api_svc->svc);
	return 0;
}

int jq_api_svc_after(void **state)
{
	(void)state;
	assert_non_null(api_svc);
	bool alive = jq_svc_alive(&api_svc->svc);
	if (api_svc->test_failed || !alive)
		jq_svc_print_log(&api_svc->svc);
	if (!alive) {
		fprintf(stderr, "jobqd died during the test (status %d)\n", api_svc->svc.exit_status);
		return -1;
	}
	return 0;
}

void jq_api_queue_name(char *buf, size_t size, const char *fn)
{
	static int n;
	snprintf(buf, size, "%.50s-%d", fn, ++n);
}

int jq_api_svc_stop(jq_api_svc *s, int timeout_ms)
{
	jq_rpc_close(&s->rpc);
	int rc = jq_svc_finish(&s->svc, timeout_ms, s->test_failed);
	if (s->pg != NULL)
		PQfinish(s->pg);
	s->pg = NULL;
	free(s->db_url);
	s->db_url = NULL;
	jq_api_use(NULL, NULL);
	if (api_svc == s)
		api_svc = NULL;
	return rc;
}

unsigned jq_api_code(const char *method, const void *req, const ProtobufCMessageDescriptor *out_desc,
		     void *out)
{
	assert_non_null(api_sock);
	return jq_rpc_call(api_sock, method, (const ProtobufCMessage *)req, out_desc,
			   (ProtobufCMessage **)out, jq_api_msg, sizeof(jq_api_msg));
}

void *jq_api_ok(const char *method, const void *req, const ProtobufCMessageDescriptor *out_desc)
{
	void *out = NULL;
	unsigned code = jq_api_code(method, req, out_desc, &out);
	if (code != 0)
		fail_msg("%s answered %u, not OK: %s", method, code, jq_api_msg);
	return out;
}

void jq_api_expect(const char *method, const void *req, unsigned code, const char *text)
{
	void *out = NULL;
	unsigned got = jq_api_code(method, req, NULL, &out);
	if (got != code || (text != NULL && strstr(jq_api_msg, text) == NULL))
		fail_msg("%s answered %u '%s'; expected %u with a message containing '%s'", method, got,
			 jq_api_msg, code, text ? text : "");
}

/* ---- Enqueue ---- */

unsigned jq_enqueue_code(const jq_spec *specs, size_t n, int64_t *ids)
{
	Jobq__V1__EnqueueRequest req = JOBQ__V1__ENQUEUE_REQUEST__INIT;
	Jobq__V1__JobSpec *msgs = calloc(n ? n : 1, sizeof(*msgs));
	Jobq__V1__JobSpec **ptrs = calloc(n ? n : 1, sizeof(*ptrs));
	Jobq__V1__EnqueueResponse *resp = NULL;
	assert_non_null(msgs);
	assert_non_null(ptrs);
	for (size_t i = 0; i < n; i++) {
		Jobq__V1__JobSpec *m = &msgs[i];
		jobq__v1__job_spec__init(m);
		m->queue = (char *)(specs[i].queue ? specs[i].queue : "");
		if (specs[i].payload != NULL) {
			m->payload.data = (uint8_t *)specs[i].payload;
			m->payload.len = strlen(specs[i].payload);
		}
		m->priority = specs[i].priority;
		m->run_at_ms = specs[i].run_at_ms;
		m->delay_ms = specs[i].delay_ms;
		m->max_attempts = specs[i].max_attempts;
		m->idempotency_key = (char *)(specs[i].key ? specs[i].key : "");
		ptrs[i] = m;
	}
	req.n_jobs = n;
	req.jobs = ptrs;
	unsigned code = jq_api_code(JQ_METHOD("Enqueue"), &req, &jobq__v1__enqueue_response__descriptor,
				    &resp);
	free(msgs);
	free(ptrs);
	if (code != 0)
		return code;
	if (resp->n_ids != n) {
		size_t got = resp->n_ids;
		JQ_FREE(resp);
		fail_msg("Enqueue of %zu jobs returned %zu ids", n, got);
	}
	for (size_t i = 0; ids != NULL && i < n; i++)
		ids[i] = resp->ids[i];
	JQ_FREE(resp);
	return 0;
}

void jq_enqueue(const jq_spec *specs, size_t n, int64_t *ids)
{
	unsigned code = jq_enqueue_code(specs, n, ids);
	if (code != 0)
		fail_msg("Enqueue answered %u, not OK: %s", code, jq_api_msg);
}

int64_t jq_enqueue_one(const char *queue, const char *payload)
{
	jq_spec s = { .queue = queue, .payload = payload };
	int64_t id;
	jq_enqueue(&s, 1, &id);
	return id;
}

void jq_enqueue_many(const char *queue, size_t n, int64_t *ids)
{
	jq_spec *specs = calloc(n ? n : 1, sizeof(*specs));
	char (*payloads)[32] = calloc(n ? n : 1, sizeof(*payloads));
	assert_non_null(specs);
	assert_non_null(payloads);
	for (size_t i = 0; i < n; i++) {
		snprintf(payloads[i], sizeof(payloads[i]), "job-%zu", i);
		specs[i] = (jq_spec){ .queue = queue, .payload = payloads[i] };
	}
	for (size_t off = 0; off < n; off += 1000) {
		size_t k = n - off < 1000 ? n - off : 1000;
		jq_enqueue(specs + off, k, ids ? ids + off : NULL);
	}
	free(specs);
	free(payloads);
}

/* ---- Claim ---- */

Jobq__V1__ClaimRequest jq_claim_request(const char *queue, uint32_t limit, const char *worker,
					uint32_t lease_seconds)
{
	Jobq__V1__ClaimRequest req = JOBQ__V1__CLAIM_REQUEST__INIT;
	req.queue = (char *)queue;
	req.limit = limit;
	req.worker_id = (char *)worker;
	req.lease_seconds = lease_seconds;
	return req;
}

Jobq__V1__ClaimResponse *jq_claim(const char *queue, uint32_t limit, const char *worker,
				  uint32_t lease_seconds)
{
	Jobq__V1__ClaimRequest req = jq_claim_request(queue, limit, worker, lease_seconds);
	return jq_api_ok(JQ_METHOD("Claim"), &req, &jobq__v1__claim_response__descriptor);
}

int64_t jq_claim_one(const char *queue, const char *worker, uint32_t lease_seconds, int64_t *token)
{
	Jobq__V1__ClaimResponse *r = jq_claim(queue, 1, worker, lease_seconds);
	if (r->n_jobs != 1) {
		size_t n = r->n_jobs;
		JQ_FREE(r);
		fail_msg("Claim on %s returned %zu jobs, expected 1", queue, n);
	}
	int64_t id = r->jobs[0]->id;
	if (token != NULL)
		*token = r->jobs[0]->lease_token;
	JQ_FREE(r);
	return id;
}

int64_t jq_claim_one_within(const char *queue, const char *worker, uint32_t lease_seconds,
			    int timeout_ms, int64_t *token)
{
	long long deadline = jq_mono_ms() + timeout_ms;
	for (;;) {
		Jobq__V1__ClaimResponse *r = jq_claim(queue, 1, worker, lease_seconds);
		if (r->n_jobs == 1) {
			int64_t id = r->jobs[0]->id;
			if (token != NULL)
				*token = r->jobs[0]->lease_token;
			JQ_FREE(r);
			return id;
		}
		JQ_FREE(r);
		if (jq_mono_ms() > deadline)
			fail_msg("no job of %s became claimable within %d ms", queue, timeout_ms);
		jq_sleep_ms(10);
	}
}

/* ---- Heartbeat, Complete, Fail ---- */

unsigned jq_complete1(int64_t id, int64_t token)
{
	Jobq__V1__CompleteRequest req = JOBQ__V1__COMPLETE_REQUEST__INIT;
	Jobq__V1__CompleteResponse *resp = NULL;
	req.id = id;
	req.lease_token = token;
	unsigned code = jq_api_code(JQ_METHOD("Complete"), &req, &jobq__v1__complete_response__descriptor,
				    &resp);
	if (resp != NULL)
		JQ_FREE(resp);
	return code;
}

unsigned jq_heartbeat1(int64_t id, int64_t token, uint32_t lease_seconds, int64_t *expires_ms)
{
	Jobq__V1__HeartbeatRequest req = JOBQ__V1__HEARTBEAT_REQUEST__INIT;
	Jobq__V1__HeartbeatResponse *resp = NULL;
	req.id = id;
	req.lease_token = token;
	req.lease_seconds = lease_seconds;
	unsigned code = jq_api_code(JQ_METHOD("Heartbeat"), &req,
				    &jobq__v1__heartbeat_response__descriptor, &resp);
	if (code == 0) {
		assert_int_equal(resp->n_results, 1);
		assert_int_equal(resp->results[0]->id, id);
		assert_int_equal(resp->results[0]->code, 0);
		if (expires_ms != NULL)
			*expires_ms = resp->results[0]->lease_expires_at_ms;
		JQ_FREE(resp);
	}
	return code;
}

unsigned jq_fail1(int64_t id, int64_t token, const char *error, bool final, uint32_t retry_in_ms,
		  const char *worker_id, Jobq__V1__JobStatus *status, int64_t *run_at_ms)
{
	Jobq__V1__FailRequest req = JOBQ__V1__FAIL_REQUEST__INIT;
	Jobq__V1__FailResponse *resp = NULL;
	req.id = id;
	req.lease_token = token;
	req.error = (char *)(error ? error : "");
	req.final = final;
	req.retry_in_ms = retry_in_ms;
	req.worker_id = (char *)(worker_id ? worker_id : "");
	unsigned code = jq_api_code(JQ_METHOD("Fail"), &req, &jobq__v1__fail_response__descriptor, &resp);
	if (code == 0) {
		assert_int_equal(resp->n_results, 1);
		assert_int_equal(resp->results[0]->id, id);
		assert_int_equal(resp->results[0]->code, 0);
		if (status != NULL)
			*status = resp->results[0]->status;
		if (run_at_ms != NULL)
			*run_at_ms = resp->results[0]->run_at_ms;
		JQ_FREE(resp);
	}
	return code;
}

Jobq__V1__GetResponse *jq_get(int64_t id)
{
	Jobq__V1__GetRequest req = JOBQ__V1__GET_REQUEST__INIT;
	req.id = id;
	Jobq__V1__GetResponse *r = jq_api_ok(JQ_METHOD("Get"), &req, &jobq__v1__get_response__descriptor);
	if (r->job == NULL) {
		JQ_FREE(r);
		fail_msg("Get %lld returned no job", (long long)id);
	}
	return r;
}

/* ---- SQL ---- */

static char *vformat(const char *fmt, va_list ap)
{
	char *sql = NULL;
	if (vasprintf(&sql, fmt, ap) < 0)
		fail_msg("out of memory formatting SQL");
	return sql;
}

char *jq_db_str(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *sql = vformat(fmt, ap);
	va_end(ap);
	char *v = jq_test_scalar(api_db, sql);
	free(sql);
	return v;
}

long long jq_db_ll(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *sql = vformat(fmt, ap);
	va_end(ap);
	long long v = jq_test_scalar_ll(api_db, sql);
	free(sql);
	return v;
}

double jq_db_f64(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *sql = vformat(fmt, ap);
	va_end(ap);
	char *s = jq_test_scalar(api_db, sql);
	free(sql);
	double v = strtod(s, NULL);
	free(s);
	return v;
}

void jq_db_do(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *sql = vformat(fmt, ap);
	va_end(ap);
	PGresult *r = PQexec(api_db, sql);
	ExecStatusType st = PQresultStatus(r);
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		char msg[512];
		snprintf(msg, sizeof(msg), "%s", PQresultErrorMessage(r));
		PQclear(r);
		fail_msg("SQL failed: %s\n  %s", sql, msg);
	}
	PQclear(r);
	free(sql);
}

const char *jq_db_status(int64_t id)
{
	static char buf[64];
	char *s = jq_db_str("SELECT coalesce((SELECT curr_job_status FROM job_queue WHERE id = %lld), '')",
			    (long long)id);
	snprintf(buf, sizeof(buf), "%s", s);
	free(s);
	return buf;
}

void jq_db_make_due(int64_t id)
{
	jq_db_do("UPDATE job_queue SET run_at = now() WHERE id = %lld", (long long)id);
}

void jq_db_expire_lease(int64_t id)
{
	jq_db_do("UPDATE job_queue SET lease_expires_at = now() - interval '1 second' WHERE id = %lld",
		 (long long)id);
}
