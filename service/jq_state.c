#include "jq_state.h"

#include <string.h>

static const char *const state_names[JQ_STATE__COUNT] = {
	[JQ_STATE_PENDING] = "archive_pending",
	[JQ_STATE_PROCESSING] = "archive_processing",
	[JQ_STATE_COMPLETED] = "archive_completed",
	[JQ_STATE_FAILED] = "archive_failed",
	[JQ_STATE_CANCELLED] = "archive_cancelled",
};

/* Keep in step with migrations (job_status_transition); test_schema compares the two. */
static const jq_state_edge edges[] = {
	{ JQ_STATE_PENDING, JQ_STATE_PENDING, "enqueue: a new job" },
	{ JQ_STATE_PENDING, JQ_STATE_PROCESSING, "claim" },
	{ JQ_STATE_PROCESSING, JQ_STATE_COMPLETED, "complete" },
	{ JQ_STATE_PROCESSING, JQ_STATE_PENDING, "retryable failure, or lease expired and rescued" },
	{ JQ_STATE_PROCESSING, JQ_STATE_FAILED, "final failure, or attempts used up" },
	{ JQ_STATE_FAILED, JQ_STATE_PENDING, "manual retry" },
	{ JQ_STATE_CANCELLED, JQ_STATE_PENDING, "manual retry of a cancelled job" },
	{ JQ_STATE_PENDING, JQ_STATE_CANCELLED, "cancel" },
	{ JQ_STATE_FAILED, JQ_STATE_CANCELLED, "cancel" },
	{ JQ_STATE_PROCESSING, JQ_STATE_CANCELLED, "cancel a running job under its worker" },
};

const char *jq_state_name(jq_state s)
{
	if ((unsigned)s >= JQ_STATE__COUNT)
		return NULL;
	return state_names[s];
}

int jq_state_from_name(const char *name, jq_state *out)
{
	if (name == NULL)
		return -1;
	for (int i = 0; i < JQ_STATE__COUNT; i++) {
		if (strcmp(state_names[i], name) == 0) {
			*out = (jq_state)i;
			return 0;
		}
	}
	return -1;
}

bool jq_state_can_move(jq_state from, jq_state to)
{
	for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++) {
		if (edges[i].from == from && edges[i].to == to)
			return true;
	}
	return false;
}

bool jq_state_is_terminal(jq_state s)
{
	for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++) {
		if (edges[i].from == s)
			return false;
	}
	return (unsigned)s < JQ_STATE__COUNT;
}

const jq_state_edge *jq_state_edges(size_t *n)
{
	*n = sizeof(edges) / sizeof(edges[0]);
	return edges;
}
