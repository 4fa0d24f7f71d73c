-- The floor: the smallest correct PostgreSQL queue, for bench_e2e's `floor` mode. One table (id,
-- queue, payload, status, run_at, lease columns), one partial index on pending rows, and nothing
-- else: no triggers, no foreign keys, no history, no notifications. What any PostgreSQL queue
-- pays at least on the same server; jobq's schema is measured against it (docs/benchmarks.md).
CREATE TABLE IF NOT EXISTS floor_queue (
  id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  queue            text        NOT NULL,
  payload          bytea       NOT NULL,
  status           smallint    NOT NULL DEFAULT 0, -- 0 pending, 1 processing, 2 completed
  run_at           timestamptz NOT NULL DEFAULT now(),
  lease_owner      text,
  lease_expires_at timestamptz,
  lease_token      bigint
);
CREATE INDEX IF NOT EXISTS floor_queue_pending ON floor_queue (queue, run_at, id) WHERE status = 0;
CREATE SEQUENCE IF NOT EXISTS floor_lease_token;
