/*
 * test_reply_limit — the size of replies. jobqd fills a Claim or a List reply
 * only up to --max-reply-bytes, or the client's own limit when that is lower: a Claim claims
 * fewer jobs and leaves the rest pending and unclaimed, a List page ends early and its cursor
 * continues exactly there. libjobq has a receive limit: the service, told of it, answers with a
 * code instead of a larger reply, and a larger reply from elsewhere ends the call, not the
 * client. One jobqd (64 KiB payloads, 256 KiB replies) serves the group; each test uses queues of
 * its own.
 */
#include <pthread.h>
#include <setjmp.h>
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

#include "jobq.h"
#include "jq_handlers.h"
#include "jq_rpc_call.h"
#include "jq_svc.h"
#include "jq_svc_api.h"
#include "jq_test.h"

#define MAX_PAYLOAD 65536
#define MAX_REPLY 262144
#define BIG 60000 /* four such payloads fit in a reply of MAX_REPLY, five do not */

static const char *const svc_flags[] = {
	"--max-payload-bytes=65536", "--max-reply-bytes=262144", "--max-message-bytes=4194304",
	"--log-level=info", NULL,
};

static jq_api_svc fx;

#define SVC_TEST(name) JQ_API_TEST(fx, name)

/* The longest request id jobqd echoes: the reply limit holds with it. */
static char long_id[129];

static int group_setup(void **state)
{
	(void)state;
	memset(long_id, 'r', 128);
	return jq_api_svc_start(&fx, "svc_reply_limit", NULL, svc_flags);
}

static int group_teardown(void **state)
{
	(void)state;
	return jq_api_svc_stop(&fx, 10000);
}

/* payload_of returns a malloc'd text of n bytes that starts with the tag. */
static char *payload_of(size_t n, int tag)
{
	char *p = malloc(n + 1);
	assert_non_null(p);
	memset(p, 'x', n);
	p[n] = '\0';
	char head[16];
	int k = snprintf(head, sizeof(head), "p%d-", tag);
	memcpy(p, head, (size_t)k < n ? (size_t)k : n);
	return p;
}

/* enqueue_sized enqueues one job per sizes[i] in one batch; ids[n] receives their ids. */
static void enqueue_sized(const char *queue, const size_t *sizes, size_t n, int64_t *ids)
{
	jq_spec *specs = calloc(n, sizeof(*specs));
	char **payloads = calloc(n, sizeof(*payloads));
	assert_non_null(specs);
	assert_non_null(payloads);
	for (size_t i = 0; i < n; i++) {
		payloads[i] = payload_of(sizes[i], (int)i);
		specs[i] = (jq_spec){ .queue = queue, .payload = payloads[i] };
	}
	jq_enqueue(specs, n, ids);
	for (size_t i = 0; i < n; i++)
		free(payloads[i]);
	free(payloads);
	free(specs);
}

/* call_raw runs a method with the envelope saying the caller takes replies of up to max_reply
 * bytes (0: no limit of its own). Returns the reply envelope (free with JQ_FREE); *len is its
 * size on the wire. */
static Jobq__V1__RpcResponse *call_raw(const char *method, const ProtobufCMessage *req,
				       uint32_t max_reply, size_t *len)
{
	Jobq__V1__RpcRequest env = JOBQ__V1__RPC_REQUEST__INIT;
	size_t n = protobuf_c_message_get_packed_size(req);
	uint8_t *payload = malloc(n ? n : 1);
	assert_non_null(payload);
	env.method = (char *)method;
	env.payload.len = protobuf_c_message_pack(req, payload);
	env.payload.data = payload;
	env.request_id = long_id;
	env.max_reply_bytes = max_reply;
	size_t en = jobq__v1__rpc_request__get_packed_size(&env);
	uint8_t *buf = malloc(en);
	assert_non_null(buf);
	jobq__v1__rpc_request__pack(&env, buf);
	nng_msg *reply = NULL;
	int rv = jq_rpc_send_raw(&fx.rpc, buf, en, &reply);
	free(buf);
	free(payload);
	if (rv != 0)
		fail_msg("%s: no reply: %s", method, nng_strerror(rv));
	*len = nng_msg_len(reply);
	Jobq__V1__RpcResponse *resp = jobq__v1__rpc_response__unpack(NULL, *len, nng_msg_body(reply));
	nng_msg_free(reply);
	assert_non_null(resp);
	return resp;
}

/* claim_raw claims up to limit jobs of queue; waits up to wait_ms. Returns the response (free
 * with JQ_FREE); the reply must be OK and within MAX_REPLY bytes. */
static Jobq__V1__ClaimResponse *claim_raw(const char *queue, uint32_t limit, uint32_t wait_ms)
{
	Jobq__V1__ClaimRequest req = jq_claim_request(queue, limit, "w-reply", 600);
	req.wait_ms = wait_ms;
	size_t len;
	Jobq__V1__RpcResponse *env = call_raw(JQ_METHOD("Claim"), &req.base, 0, &len);
	if (env->code != 0)
		fail_msg("Claim answered %u: %s", env->code, env->message);
	assert_true(len <= MAX_REPLY);
	Jobq__V1__ClaimResponse *r = jobq__v1__claim_response__unpack(NULL, env->payload.len,
								       env->payload.data);
	assert_non_null(r);
	JQ_FREE(env);
	return r;
}

static long long count_where(const char *queue, const char *status)
{
	return jq_db_ll("SELECT count(*) FROM job_queue WHERE queue = '%s' AND curr_job_status = '%s'",
			queue, status);
}

/* ---- the long-poll's view of a queue (as in test_longpoll) ---- */

/* scan_now has the listener scan the table now and returns the scan count once it is over; the
 * next safety-net scan is then 5 s away, and every queue is unknown. */
static double scan_now(void)
{
	double before = jq_svc_metric(&fx.svc, "jobq_notify_scans_total");
	assert_true(before >= 1);
	jq_db_do("NOTIFY jobq_pending, '*'");
	long long deadline = jq_mono_ms() + 3000;
	double now;
	while ((now = jq_svc_metric(&fx.svc, "jobq_notify_scans_total")) == before && jq_mono_ms() < deadline)
		jq_sleep_ms(5);
	assert_true(now > before);
	for (double last = -1; now != last && jq_mono_ms() < deadline;) {
		last = now;
		jq_sleep_ms(50);
		now = jq_svc_metric(&fx.svc, "jobq_notify_scans_total");
	}
	return now;
}

/* ================= Claim ================= */

/* A Claim of up to 1000 jobs over 20 jobs of 60,000 bytes takes the four that fit in one reply
 * and claims nothing else: the other 16 stay pending, never claimed, and so do a bystander
 * queue's jobs. The next Claims take the next four, in order, until all 20 were claimed once. */
SVC_TEST(a_claim_over_the_reply_limit_takes_fewer_jobs_and_claims_only_those)
{
	const char *q = "reply-claim", *other = "reply-claim-other";
	size_t sizes[20];
	int64_t ids[20], others[3];
	for (int i = 0; i < 20; i++)
		sizes[i] = BIG;
	enqueue_sized(q, sizes, 20, ids);
	enqueue_sized(other, sizes, 3, others);

	Jobq__V1__ClaimResponse *r = claim_raw(q, 1000, 0);
	assert_int_equal(r->n_jobs, 4);
	for (size_t i = 0; i < r->n_jobs; i++) {
		assert_int_equal(r->jobs[i]->id, ids[i]);
		assert_int_equal(r->jobs[i]->payload.len, BIG);
		assert_int_equal(jq_db_ll("SELECT count(*) FROM job_queue WHERE id = %lld AND lease_token = %lld"
					  " AND curr_job_status = 'archive_processing'",
					  (long long)ids[i], (long long)r->jobs[i]->lease_token), 1);
	}
	JQ_FREE(r);
	assert_int_equal(count_where(q, "archive_processing"), 4);
	assert_int_equal(jq_db_ll("SELECT count(*) FROM job_queue WHERE curr_job_status = 'archive_processing'"), 4);
	/* Locked for the statement, not claimed: no attempt, no lease, no owner. */
	assert_int_equal(jq_db_ll("SELECT count(*) FROM job_queue WHERE queue IN ('%s', '%s')"
				  " AND curr_job_status = 'archive_pending' AND attempts = 0"
				  " AND lease_owner IS NULL AND lease_token IS NULL", q, other), 19);

	int64_t seen[20];
	size_t nseen = 4;
	for (int i = 0; i < 4; i++)
		seen[i] = ids[i];
	while (nseen < 20) {
		r = claim_raw(q, 1000, 0);
		assert_true(r->n_jobs >= 1 && r->n_jobs <= 4);
		for (size_t i = 0; i < r->n_jobs; i++) {
			assert_true(nseen < 20);
			seen[nseen++] = r->jobs[i]->id;
		}
		JQ_FREE(r);
	}
	for (int i = 0; i < 20; i++)
		assert_int_equal(seen[i], ids[i]); /* each once, in claim order */
	assert_int_equal(count_where(q, "archive_processing"), 20);
	assert_int_equal(jq_db_ll("SELECT count(*) FROM job_queue WHERE queue = '%s' AND attempts = 1", q), 20);
	assert_int_equal(count_where(other, "archive_pending"), 3);
}

/* The jobs a Claim left behind for want of room are no reason to wait: the queue is not taken
 * for empty (a waiting Claim right after asks the database and gets the next four at once, not
 * after the 5 s safety-net scan). */
SVC_TEST(a_claim_cut_short_by_the_reply_limit_leaves_its_queue_unknown_not_empty)
{
	const char *q = "reply-claim-wait";
	size_t sizes[8];
	int64_t ids[8];
	for (int i = 0; i < 8; i++)
		sizes[i] = BIG;
	enqueue_sized(q, sizes, 8, ids);
	scan_now(); /* the enqueue's announcement is in, and no scan comes for 5 s */
	Jobq__V1__ClaimResponse *r = claim_raw(q, 1000, 0);
	assert_int_equal(r->n_jobs, 4);
	JQ_FREE(r);
	double unqueried = jq_svc_metric(&fx.svc, "jobq_longpoll_unqueried_total");
	assert_true(unqueried >= 0);
	long long t0 = jq_mono_ms();
	r = claim_raw(q, 1000, 4000);
	long long took = jq_mono_ms() - t0;
	assert_int_equal(r->n_jobs, 4);
	assert_int_equal(r->jobs[0]->id, ids[4]);
	JQ_FREE(r);
	/* It asked the database rather than park as if the queue were empty. */
	assert_true(jq_svc_metric(&fx.svc, "jobq_longpoll_unqueried_total") == unqueried);
	print_message("reply limit: the second Claim answered in %lld ms\n", took);
}

/* Jobs that fit are all claimed: the limit cuts only what would not fit. */
SVC_TEST(a_claim_whose_jobs_fit_takes_its_whole_limit)
{
	const char *q = "reply-claim-fit";
	size_t sizes[100];
	int64_t ids[100];
	for (int i = 0; i < 100; i++)
		sizes[i] = 2000; /* 100 x 2,000 bytes and their fields: within 256 KiB */
	enqueue_sized(q, sizes, 100, ids);
	Jobq__V1__ClaimResponse *r = claim_raw(q, 1000, 0);
	assert_int_equal(r->n_jobs, 100);
	JQ_FREE(r);
}

/* ================= List ================= */

/* list_page reads one page of queue (with payloads when asked) after `after`; *len is the
 * reply's size. */
static Jobq__V1__ListResponse *list_page(const char *queue, bool payload, int64_t after,
					 uint32_t max_reply, size_t *len)
{
	Jobq__V1__ListRequest req = JOBQ__V1__LIST_REQUEST__INIT;
	req.queue = (char *)queue;
	req.limit = 1000;
	req.after_id = after;
	req.include_payload = payload;
	Jobq__V1__RpcResponse *env = call_raw(JQ_METHOD("List"), &req.base, max_reply, len);
	if (env->code != 0)
		fail_msg("List answered %u: %s", env->code, env->message);
	Jobq__V1__ListResponse *r = jobq__v1__list_response__unpack(NULL, env->payload.len,
								     env->payload.data);
	assert_non_null(r);
	JQ_FREE(env);
	return r;
}

/* A page of 25 jobs of 10,000 to 60,000 bytes stops where the next job would not fit the reply
 * (the page is as long as the budget allows, no shorter), next_after_id is its last job, and
 * following the cursor lists every job exactly once, in order. Jobs of another queue between
 * them change nothing. Without payloads the 25 fit in one page, the last. */
SVC_TEST(a_list_page_stops_at_the_reply_limit_and_the_cursor_continues_there)
{
	const char *q = "reply-list", *other = "reply-list-other";
	enum { N = 25 };
	size_t sizes[N], one = 30000;
	int64_t ids[N], noise;
	for (int i = 0; i < N; i++) {
		sizes[i] = 10000 + (size_t)(i * 7919) % 50001;
		enqueue_sized(q, &sizes[i], 1, &ids[i]);
		if (i % 5 == 0)
			enqueue_sized(other, &one, 1, &noise);
	}
	/* What each job counts against the budget (jq_db.h): payload, queue, no owner, error or key. */
	const int64_t budget = MAX_REPLY - JQ_REPLY_ENVELOPE_MAX;
	int64_t after = 0;
	int pages = 0, k = 0;
	do {
		size_t len;
		Jobq__V1__ListResponse *r = list_page(q, true, after, 0, &len);
		pages++;
		assert_true(len <= MAX_REPLY);
		assert_true(r->n_jobs >= 1);
		int64_t used = 0;
		for (size_t i = 0; i < r->n_jobs; i++, k++) {
			assert_true(k < N);
			assert_int_equal(r->jobs[i]->id, ids[k]);
			assert_int_equal(r->jobs[i]->payload.len, sizes[k]);
			used += (int64_t)(sizes[k] + strlen(q)) + JQ_REPLY_JOB_FIXED;
		}
		assert_true(used <= budget);
		if (k < N) {
			/* Not cut early: the next job would not have fit. */
			assert_true(used + (int64_t)(sizes[k] + strlen(q)) + JQ_REPLY_JOB_FIXED > budget);
			assert_int_equal(r->next_after_id, ids[k - 1]);
		} else {
			assert_int_equal(r->next_after_id, 0);
		}
		after = r->next_after_id;
		JQ_FREE(r);
	} while (after != 0);
	assert_int_equal(k, N);
	assert_true(pages >= 2);

	size_t len;
	Jobq__V1__ListResponse *r = list_page(q, false, 0, 0, &len);
	assert_int_equal(r->n_jobs, N);
	assert_int_equal(r->next_after_id, 0);
	JQ_FREE(r);
}

/* ================= The client's limit ================= */

/* A caller that takes less than the service's limit gets replies within its own: Claim and List
 * fill them only that far, a Claim that might not fit one job of the largest payload is refused
 * before anything is claimed, and a reply that cannot be made smaller (Get of a job bigger than
 * the limit) is answered RESOURCE_EXHAUSTED. The connection stays up throughout. */
SVC_TEST(a_caller_that_takes_less_gets_smaller_replies_or_a_code)
{
	const char *q = "reply-client";
	size_t sizes[3] = { BIG, BIG, BIG };
	int64_t ids[3];
	enqueue_sized(q, sizes, 3, ids);
	int dropped = jq_rpc_pipes_removed(&fx.rpc);

	Jobq__V1__ClaimRequest claim = jq_claim_request(q, 1000, "w-small", 0);
	size_t len;
	Jobq__V1__RpcResponse *env = call_raw(JQ_METHOD("Claim"), &claim.base, 20000, &len);
	assert_int_equal(env->code, JQ_INVALID_ARGUMENT);
	assert_non_null(strstr(env->message, "max_reply_bytes"));
	JQ_FREE(env);
	assert_int_equal(count_where(q, "archive_pending"), 3);

	Jobq__V1__GetRequest get = JOBQ__V1__GET_REQUEST__INIT;
	get.id = ids[0];
	env = call_raw(JQ_METHOD("Get"), &get.base, 20000, &len);
	assert_int_equal(env->code, JQ_RESOURCE_EXHAUSTED);
	assert_non_null(strstr(env->message, "max_reply_bytes"));
	JQ_FREE(env);

	/* 100,000 bytes: room for one job of the largest payload, not for two of 60,000. */
	Jobq__V1__ListResponse *page = list_page(q, true, 0, 100000, &len);
	assert_true(len <= 100000);
	assert_int_equal(page->n_jobs, 1);
	assert_int_equal(page->next_after_id, ids[0]);
	JQ_FREE(page);

	env = call_raw(JQ_METHOD("Claim"), &claim.base, 100000, &len);
	assert_int_equal(env->code, 0);
	assert_true(len <= 100000);
	Jobq__V1__ClaimResponse *r = jobq__v1__claim_response__unpack(NULL, env->payload.len,
								       env->payload.data);
	assert_non_null(r);
	assert_int_equal(r->n_jobs, 1);
	assert_int_equal(r->jobs[0]->id, ids[0]);
	JQ_FREE(r);
	JQ_FREE(env);
	assert_int_equal(count_where(q, "archive_processing"), 1);
	assert_int_equal(jq_rpc_pipes_removed(&fx.rpc), dropped);
}

/* libjobq says its limit (jobq_options.max_reply_bytes) and gets the service's code and reason
 * for a reply over it; the client keeps working. */
SVC_TEST(libjobq_tells_the_service_its_limit_and_gets_a_clear_error)
{
	const char *q = "reply-libjobq";
	size_t size = BIG;
	int64_t id;
	enqueue_sized(q, &size, 1, &id);
	jobq_options o = { .rpc_url = fx.svc.rpc_url, .timeout_ms = 5000, .max_reply_bytes = 20000 };
	jobq_client *c;
	jobq_error err = { 0 };
	assert_int_equal(jobq_connect(&o, &c, &err), JOBQ_OK);
	jobq_job *job = NULL;
	assert_int_equal(jobq_get(c, id, &job, NULL, NULL, &err), JOBQ_RESOURCE_EXHAUSTED);
	assert_null(job);
	assert_non_null(strstr(err.message, "max_reply_bytes"));
	size_t n = 0;
	assert_int_equal(jobq_claim(c, q, 10, "w", 60, 0, &job, &n, &err), JOBQ_INVALID_ARGUMENT);
	assert_non_null(strstr(err.message, "max_reply_bytes"));
	assert_int_equal(count_where(q, "archive_pending"), 1);
	jobq_queue_stats *stats = NULL;
	assert_int_equal(jobq_stats(c, q, &stats, &n, &err), JOBQ_OK);
	jobq_stats_free(stats, n);
	jobq_close(c);

	/* Out of range: refused at connect, from the options and from the environment. */
	o.max_reply_bytes = 4095;
	assert_int_equal(jobq_connect(&o, &c, &err), JOBQ_INVALID_ARGUMENT);
	assert_non_null(strstr(err.message, "max_reply_bytes"));
	o.max_reply_bytes = 0;
	setenv("JOBQ_MAX_REPLY_BYTES", "16MiB", 1);
	assert_int_equal(jobq_connect(&o, &c, &err), JOBQ_INVALID_ARGUMENT);
	assert_non_null(strstr(err.message, "JOBQ_MAX_REPLY_BYTES"));
	unsetenv("JOBQ_MAX_REPLY_BYTES");
}

/* ---- a server that does not listen to the limit ---- */

typedef struct loud_server {
	nng_socket sock;
	char url[64];
	pthread_t thread;
	size_t queue_len; /* the one queue name of every StatsResponse it sends */
} loud_server;

/* loud_main answers every request with an OK StatsResponse naming one queue of queue_len
 * bytes, whatever the request said of its limit, until the socket closes. */
static void *loud_main(void *arg)
{
	loud_server *s = arg;
	char *name = malloc(s->queue_len + 1);
	assert_non_null(name);
	memset(name, 'q', s->queue_len);
	name[s->queue_len] = '\0';
	Jobq__V1__QueueStats qs = JOBQ__V1__QUEUE_STATS__INIT, *list[1] = { &qs };
	qs.queue = name;
	Jobq__V1__StatsResponse stats = JOBQ__V1__STATS_RESPONSE__INIT;
	stats.n_queues = 1;
	stats.queues = list;
	size_t n = jobq__v1__stats_response__get_packed_size(&stats);
	uint8_t *payload = malloc(n);
	assert_non_null(payload);
	jobq__v1__stats_response__pack(&stats, payload);
	Jobq__V1__RpcResponse env = JOBQ__V1__RPC_RESPONSE__INIT;
	env.payload.data = payload;
	env.payload.len = n;
	for (;;) {
		nng_msg *m;
		if (nng_recvmsg(s->sock, &m, 0) != 0)
			break;
		nng_msg_clear(m);
		size_t en = jobq__v1__rpc_response__get_packed_size(&env);
		if (nng_msg_realloc(m, en) != 0) {
			nng_msg_free(m);
			break;
		}
		jobq__v1__rpc_response__pack(&env, nng_msg_body(m));
		if (nng_sendmsg(s->sock, m, 0) != 0)
			nng_msg_free(m);
	}
	free(payload);
	free(name);
	return NULL;
}

static void loud_start(loud_server *s, size_t queue_len)
{
	s->queue_len = queue_len;
	snprintf(s->url, sizeof(s->url), "tcp://127.0.0.1:%d", jq_free_port());
	assert_int_equal(nng_rep0_open(&s->sock), 0);
	assert_int_equal(nng_socket_set_size(s->sock, NNG_OPT_RECVMAXSZ, 0), 0);
	assert_int_equal(nng_listen(s->sock, s->url, NULL, 0), 0);
	assert_int_equal(pthread_create(&s->thread, NULL, loud_main, s), 0);
}

static void loud_stop(loud_server *s)
{
	nng_close(s->sock);
	pthread_join(s->thread, NULL);
}

/* A reply over libjobq's limit from a server that ignores it: nng reads its length and closes the
 * connection rather than take it, so the call fails at once with UNAVAILABLE and a message that
 * names the limit, not after the timeout and not with the reply in memory. The client stays
 * usable, and a client with room enough takes the same reply. */
static void a_reply_over_the_client_limit_ends_the_call_not_the_client(void **state)
{
	(void)state;
	loud_server s;
	loud_start(&s, 200000);
	jobq_options o = { .rpc_url = s.url, .timeout_ms = 5000, .max_reply_bytes = 100000 };
	jobq_client *c;
	jobq_error err = { 0 };
	assert_int_equal(jobq_connect(&o, &c, &err), JOBQ_OK);
	jobq_queue_stats *stats = NULL;
	size_t n = 0;
	for (int i = 0; i < 2; i++) {
		long long t0 = jq_mono_ms();
		int code = jobq_stats(c, NULL, &stats, &n, &err);
		long long took = jq_mono_ms() - t0;
		assert_int_equal(code, JOBQ_UNAVAILABLE);
		assert_null(stats);
		assert_non_null(strstr(err.message, "max_reply_bytes"));
		assert_true(took < 4000); /* not the 5 s timeout: the refusal ends the call */
	}
	jobq_close(c);

	o.max_reply_bytes = 1 << 20;
	assert_int_equal(jobq_connect(&o, &c, &err), JOBQ_OK);
	assert_int_equal(jobq_stats(c, NULL, &stats, &n, &err), JOBQ_OK);
	assert_int_equal(n, 1);
	assert_int_equal(strlen(stats[0].queue), 200000);
	jobq_stats_free(stats, n);
	jobq_close(c);
	loud_stop(&s);
}

/* ================= Start-up ================= */

/* jobqd refuses a reply limit that could not hold one job of the largest payload. */
static void jobqd_refuses_a_reply_limit_below_one_job(void **state)
{
	(void)state;
	char cmd[512];
	snprintf(cmd, sizeof(cmd),
		 "timeout 10 %s/bin/jobqd --database-url=postgresql://nobody@127.0.0.1:1/x"
		 " --max-payload-bytes=65536 --max-reply-bytes=80000 --rpc-url=ipc:///tmp/jobq-reply-limit-%d"
		 " --pub-url=ipc:///tmp/jobq-reply-limit-%d.pub --http-addr=off 2>&1",
		 jq_test_env("JOBQ_TEST_BUILD"), (int)getpid(), (int)getpid());
	jq_test_command_exits(cmd, 2, "--max-reply-bytes must be at least");
}

#define T(name) cmocka_unit_test_setup_teardown(name, jq_api_svc_before, jq_api_svc_after)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(a_claim_over_the_reply_limit_takes_fewer_jobs_and_claims_only_those),
		T(a_claim_cut_short_by_the_reply_limit_leaves_its_queue_unknown_not_empty),
		T(a_claim_whose_jobs_fit_takes_its_whole_limit),
		T(a_list_page_stops_at_the_reply_limit_and_the_cursor_continues_there),
		T(a_caller_that_takes_less_gets_smaller_replies_or_a_code),
		T(libjobq_tells_the_service_its_limit_and_gets_a_clear_error),
		cmocka_unit_test(a_reply_over_the_client_limit_ends_the_call_not_the_client),
		cmocka_unit_test(jobqd_refuses_a_reply_limit_below_one_job),
	};
	return cmocka_run_group_tests_name("reply_limit", tests, group_setup, group_teardown);
}
