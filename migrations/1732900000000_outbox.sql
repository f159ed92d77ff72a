-- Up Migration
-- The transactional outbox (src/tasks/outbox.ts, src/tasks/relay.ts): a route that writes and
-- enqueues inserts its task here in the write's own transaction, so the task exists exactly when the
-- write committed. The relay in the task workers moves pending rows to BullMQ with the job id
-- 'o-' || id (a second relay of the same row is then a no-op) and stamps relayed_at; relayed and
-- cancelled rows are pruned after OUTBOX_RETENTION seconds.
-- A uuid, not a sequence: a database restored from a backup would hand out ids again, and a job id
-- still retained in Redis would swallow the new row's task.
CREATE TABLE task_outbox (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  task text NOT NULL,
  queue text NOT NULL,
  payload jsonb NOT NULL,
  -- clock_timestamp(), not now(): the insert's own time, close to the commit, so relayed_at minus
  -- created_at is the commit-to-enqueue delay, both read on the database's clock.
  created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  relayed_at timestamptz,
  -- Cancelled through DELETE /api/tasks/{id} before it was relayed: never relayed.
  cancelled_at timestamptz
);
-- What each relay poll reads: only the pending rows, oldest first.
CREATE INDEX task_outbox_pending ON task_outbox (created_at) WHERE relayed_at IS NULL AND cancelled_at IS NULL;
-- What pruning reads.
CREATE INDEX task_outbox_done ON task_outbox ((COALESCE(relayed_at, cancelled_at)))
  WHERE relayed_at IS NOT NULL OR cancelled_at IS NOT NULL;

-- The effect of the items.created example task: one audit row per created item, keyed by the job
-- id (o-<outbox id>), so a job run twice (at-least-once delivery) records once. No foreign key to
-- items: the audit outlives a deleted item.
CREATE TABLE item_events (
  job_id text PRIMARY KEY,
  item_id bigint NOT NULL,
  kind text NOT NULL,
  item_name text NOT NULL,
  recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX item_events_item_id ON item_events (item_id);

-- Down Migration
DROP TABLE item_events;
DROP TABLE task_outbox;
