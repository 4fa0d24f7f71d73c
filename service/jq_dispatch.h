/*
 * jq_dispatch — from an RPC envelope to a handler: authentication, method lookup by full name
 * ("/jobq.v1.JobQueue/Claim") from the protobuf-c service descriptor, decoding of the request,
 * the handler call, and the reply. A method added to the proto is one row in the handler table
 * away; a method without a row answers UNIMPLEMENTED.
 *
 * jq_dispatch_handle is the jq_rpc_server handler; its worker argument is a jq_worker, owned by
 * main (one per RPC worker thread, each with its own database connection).
 */
#ifndef JQ_DISPATCH_H
#define JQ_DISPATCH_H

#include "jq_config.h"
#include "jq_db.h"
#include "jq_flow.h"
#include "jq_enqgroup.h"
#include "jq_jobwait.h"
#include "jq_longpoll.h"
#include "jq_rpc_server.h"

typedef struct jq_worker {
	jq_db *db;
	const jq_config *cfg;
	jq_longpoll *longpoll; /* NULL: Claim never waits */
	jq_flow *flow;         /* the queues' flow settings (hints for the long-poll); may be NULL */
	jq_jobwait *jobwait;   /* NULL: Wait never waits */
	jq_enqgroup *enqgroup; /* NULL: every Enqueue is a statement of its own */
} jq_worker;

/* jq_dispatch_handle decodes, runs and answers one request (a jq_rpc_handler_fn). */
void jq_dispatch_handle(void *worker_arg, jq_rpc_req *req);

/* jq_dispatch_quick is the jq_rpc_server's quick look (a jq_rpc_quick_fn), on nng's receiving
 * thread: a Claim that the long-poll says waits without a query (its queue is known to be empty)
 * goes to jq_longpoll_wait there, without a worker. Its argument is a jq_worker of which it reads
 * only cfg, longpoll and flow. */
bool jq_dispatch_quick(void *worker_arg, jq_rpc_req *req);

/* jq_dispatch_method_count: methods of the JobQueue service that have a handler. */
int jq_dispatch_method_count(void);

#endif
