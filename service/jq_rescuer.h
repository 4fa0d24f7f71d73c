/*
 * jq_rescuer — the background sweeps every replica runs: rescue of expired leases (about every
 * second) and retention of finished jobs. Both statements use SKIP LOCKED, so any number of
 * replicas can run them at once without waiting on each other or on workers. The rescuer has its
 * own database connection and thread; it never touches the RPC path.
 */
#ifndef JQ_RESCUER_H
#define JQ_RESCUER_H

#include <stdint.h>

#include "jq_config.h"

typedef struct jq_rescuer jq_rescuer;

/* jq_rescuer_start starts the thread. cfg must outlive the rescuer. Returns 0, or -1. */
int jq_rescuer_start(const jq_config *cfg, jq_rescuer **out) __attribute__((warn_unused_result));

/* jq_rescuer_stop wakes the thread, waits for it and frees everything. NULL is a no-op. */
void jq_rescuer_stop(jq_rescuer *r);

/* Totals since start, for metrics and tests. */
int64_t jq_rescuer_rescued(const jq_rescuer *r);
int64_t jq_rescuer_deleted(const jq_rescuer *r);

#endif
