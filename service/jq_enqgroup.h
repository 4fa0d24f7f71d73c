/*
 * jq_enqgroup — small Enqueue requests that arrive together go to the database as one statement.
 *
 * Each Enqueue is one statement and one commit (one WAL flush). A service that enqueues one job
 * per call, from many places at once, pays that per job; PostgreSQL's own fixed cost of a
 * statement (executor start, the triggers' and constraints' expressions, the commit) dwarfs what
 * one row costs. Here a request that finds another's statement running waits for it to end, and
 * the requests that gathered meanwhile go in the next statement together (group commit: no
 * request is held back to wait for company; a lone request runs at once, as before).
 *
 * Every request keeps its own answer: its ids, in its order. The group's jobs commit together; a
 * statement that refused a row (INVALID_ARGUMENT: a constraint or trigger said no, so nothing
 * was written) is not the others' fault, and each request then runs again alone, so a bad
 * request fails alone. Any other failure (the connection lost, the deadline passed) may or may
 * not have committed, as for a lone request, and every request of the group gets it: running
 * them again could enqueue their jobs twice.
 *
 * Only requests that the 6-argument jobq_enqueue_batch takes are grouped, of at most
 * JQ_ENQGROUP_MAX_REQUEST_JOBS jobs, without idempotency keys (a key repeated by two requests of
 * one statement would not read as two calls one after the other); other requests run alone.
 *
 * The statement runs on the database handle of the request that leads the group (its worker's),
 * bounded by the latest deadline among its requests. Thread-safe; the caller owns every buffer
 * it passes, which must stay valid for the call.
 */
#ifndef JQ_ENQGROUP_H
#define JQ_ENQGROUP_H

#include <stddef.h>
#include <stdint.h>

#include "jq_code.h"
#include "jq_db.h"

/* A request of more jobs than this is a batch already: it runs alone. */
#define JQ_ENQGROUP_MAX_REQUEST_JOBS 16
/* At most this many jobs go in one grouped statement. */
#define JQ_ENQGROUP_MAX_JOBS 256

typedef struct jq_enqgroup jq_enqgroup;

/* jq_enqgroup_new: a group; 0, or -1 (out of memory). jq_enqgroup_free: no call may be in it;
 * NULL is a no-op. */
int jq_enqgroup_new(jq_enqgroup **out) __attribute__((warn_unused_result));
void jq_enqgroup_free(jq_enqgroup *g);

/* jq_enqgroup_enqueue is jq_db_enqueue (same arguments, results and codes) through the group:
 * db is the caller's handle, used if this request leads a statement; deadline_us is the request's
 * (jq_clock_mono_us clock, 0 = none). g NULL: jq_db_enqueue on db. */
jq_code jq_enqgroup_enqueue(jq_enqgroup *g, jq_db *db, int64_t deadline_us, const jq_db_job_spec *specs,
			    size_t n, int64_t *ids, jq_db_err *err);

/* jq_enqgroup_counts: requests that went through a grouped statement, and those statements
 * (requests / statements is the mean group size). */
void jq_enqgroup_counts(jq_enqgroup *g, int64_t *requests, int64_t *statements);

/* jq_enqgroup_waiting: requests queued for the next statement (not yet taken by a leader). */
int jq_enqgroup_waiting(jq_enqgroup *g);

#endif
