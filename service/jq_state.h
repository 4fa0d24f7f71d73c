/*
 * jq_state — the job state machine, written once in C.
 *
 * The same states and legal transitions live in the database (tables job_status and
 * job_status_transition, enforced by foreign keys); the integration test test_schema reads the
 * database's table and fails if the two ever differ. Everything here is static data: no function
 * allocates, every returned string is a constant owned by this module.
 */
#ifndef JQ_STATE_H
#define JQ_STATE_H

#include <stdbool.h>
#include <stddef.h>

typedef enum jq_state {
	JQ_STATE_PENDING = 0,
	JQ_STATE_PROCESSING,
	JQ_STATE_COMPLETED,
	JQ_STATE_FAILED,
	JQ_STATE_CANCELLED,
	JQ_STATE__COUNT
} jq_state;

typedef struct jq_state_edge {
	jq_state from;
	jq_state to;
	const char *why;
} jq_state_edge;

/* jq_state_name returns the database name ("archive_pending"), or NULL for an invalid state. */
const char *jq_state_name(jq_state s);

/* jq_state_from_name parses a database name; returns 0 and sets *out, or -1 if unknown. */
int jq_state_from_name(const char *name, jq_state *out);

/* jq_state_can_move tells whether from -> to is a legal transition. The creation edge
 * (pending -> pending, a new job) is one of them; nothing leaves archive_completed. */
bool jq_state_can_move(jq_state from, jq_state to);

/* jq_state_is_terminal: no transition leaves this state. */
bool jq_state_is_terminal(jq_state s);

/* jq_state_edges returns the table of legal transitions and its length in *n. */
const jq_state_edge *jq_state_edges(size_t *n);

#endif
