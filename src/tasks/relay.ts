/**
 * The outbox relay: moves committed outbox rows (src/tasks/outbox.ts) to BullMQ, at least once. It
 * runs in every task-worker process (src/worker.ts); any number may run at once, because each batch
 * is claimed with FOR UPDATE SKIP LOCKED and each job's id is its row's, so a row relayed twice is
 * queued once. Plain polling, no LISTEN: it works through PgBouncer in transaction mode.
 */
import { setImmediate, setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import type { Logger } from 'pino';
import client from 'prom-client';
import { createPool } from '../db/pool.js';
import { inTransaction } from '../db/transaction.js';
import { createProducerConnection } from '../redis/connection.js';
import { watchConnection } from '../redis/connection-events.js';
import { isRedisUnavailable, RedisUnavailableError } from '../redis/errors.js';
import { redisTargetOf } from '../redis/target.js';
import type { Settings } from '../settings.js';
import { outboxJobId } from './outbox.js';
import { retentionOf, TaskService } from './service.js';

export interface RelayOptions {
  pollMs: number;
  batchSize: number;
  /** Relayed and cancelled rows are deleted this many seconds after they left the outbox. */
  retentionSeconds: number;
}

/** Longest pause between attempts while Redis or PostgreSQL fails (the poll period doubles up to it). */
const MAX_BACKOFF_MS = 2000;
/** Pruning is a housekeeping delete: every 10 s per relay is plenty, and cheap on the index. */
const PRUNE_EVERY_MS = 10_000;
/** Rows deleted per statement, so a large backlog is pruned in short transactions. */
const PRUNE_BATCH = 5000;

const relayedTotal = new client.Counter({
  name: 'outbox_relayed_total',
  help: 'Outbox rows handed to BullMQ by this process',
});
const relayDelay = new client.Histogram({
  name: 'outbox_relay_delay_seconds',
  help: 'Outbox row insert (its commit) to its BullMQ job, on the database clock',
  buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30],
});

const PROBE = 'SELECT 1 FROM task_outbox WHERE relayed_at IS NULL AND cancelled_at IS NULL LIMIT 1';
const CLAIM = `SELECT id, task, queue, payload FROM task_outbox
  WHERE relayed_at IS NULL AND cancelled_at IS NULL
  ORDER BY created_at LIMIT $1 FOR UPDATE SKIP LOCKED`;
const MARK = `UPDATE task_outbox SET relayed_at = clock_timestamp() WHERE id = ANY($1::uuid[])
  RETURNING EXTRACT(EPOCH FROM relayed_at - created_at)::float8 AS delay`;
const PRUNE = `DELETE FROM task_outbox WHERE id IN (
  SELECT id FROM task_outbox
  WHERE (relayed_at IS NOT NULL OR cancelled_at IS NOT NULL)
    AND COALESCE(relayed_at, cancelled_at) < now() - make_interval(secs => $1)
  LIMIT $2 FOR UPDATE SKIP LOCKED)`;

interface OutboxRow {
  id: string;
  task: string;
  queue: string;
  payload: unknown;
}

/**
 * One batch: claim up to `batchSize` pending rows, add their jobs, mark them relayed, in one short
 * transaction. Redis failing rolls it back: the rows stay pending and unlocked for the next try.
 * A relay dying after the add and before the commit leaves them pending too; the next relay adds
 * them again, which BullMQ ignores (same job ids). Resolves with the number of rows relayed.
 */
export async function relayBatch(db: pg.Pool, tasks: TaskService, batchSize: number): Promise<number> {
  // Claim nothing that could not be handed over; and an idle outbox costs one index probe, no transaction.
  if (!tasks.isReady()) throw new RedisUnavailableError('the relay connection is not ready');
  if ((await db.query(PROBE)).rowCount === 0) return 0;
  const delays = await inTransaction(db, async (transaction) => {
    const { rows } = await transaction.query<OutboxRow>(CLAIM, [batchSize]);
    if (rows.length === 0) return [];
    await tasks.addFromOutbox(
      rows.map((row) => ({
        jobId: outboxJobId(row.id),
        task: row.task,
        queue: row.queue,
        payload: row.payload,
      })),
    );
    const marked = await transaction.query<{ delay: number }>(MARK, [rows.map((row) => row.id)]);
    return marked.rows.map((row) => row.delay);
  });
  for (const delay of delays) relayDelay.observe(delay);
  relayedTotal.inc(delays.length);
  return delays.length;
}

/** Delete rows that left the outbox more than `retentionSeconds` ago; resolves with how many. */
export async function pruneOutbox(db: pg.Pool, retentionSeconds: number): Promise<number> {
  let deleted = 0;
  for (;;) {
    const { rowCount } = await db.query(PRUNE, [retentionSeconds, PRUNE_BATCH]);
    deleted += rowCount ?? 0;
    if ((rowCount ?? 0) < PRUNE_BATCH) return deleted;
  }
}

/** How long a stopping relay may take to finish its batch before its Redis connection is cut. */
const STOP_WAIT_MS = 1000;

export interface OutboxRelay {
  /** Finish the batch in hand, then stop; closes the relay's Redis connection. */
  stop(): Promise<void>;
}

export function relayOptionsOf(settings: Settings): RelayOptions {
  return {
    pollMs: settings.OUTBOX_POLL_MS,
    batchSize: settings.OUTBOX_BATCH_SIZE,
    retentionSeconds: settings.OUTBOX_RETENTION,
  };
}

/**
 * Poll every `pollMs`, at once again after a full batch; on failure back off (doubling up to 2 s,
 * with jitter). Redis away is not news here (the relay's connection logs once down, once back);
 * any other failure logs once when it starts and once when it ends, never once per retry.
 */
export function runRelay(db: pg.Pool, tasks: TaskService, options: RelayOptions, log: Logger): OutboxRelay {
  const stopping = new AbortController();
  let failures = 0;
  let reported = false;
  let prunedAt = 0;
  const loop = async () => {
    while (!stopping.signal.aborted) {
      const started = Date.now();
      let wait = options.pollMs;
      try {
        if (Date.now() - prunedAt >= PRUNE_EVERY_MS) {
          const pruned = await pruneOutbox(db, options.retentionSeconds);
          prunedAt = Date.now();
          if (pruned > 0) log.debug({ pruned }, 'outbox pruned');
        }
        const relayed = await relayBatch(db, tasks, options.batchSize);
        if (reported) log.info({ failedAttempts: failures }, 'outbox relay recovered');
        failures = 0;
        reported = false;
        if (relayed === options.batchSize) wait = 0;
      } catch (error) {
        failures += 1;
        if (!reported && !isRedisUnavailable(error)) {
          reported = true;
          log.warn(
            { err: error instanceof Error ? error.message : String(error) },
            'outbox relay failed: rows kept, retrying with backoff (logged again once it recovers)',
          );
        }
        wait = Math.min(MAX_BACKOFF_MS, options.pollMs * 2 ** failures) * (0.5 + Math.random() / 2);
      }
      // A period, not a pause: the time the batch took counts towards the next poll.
      wait = Math.max(0, wait - (Date.now() - started));
      // A full batch goes round again at once, but after one turn of the event loop: jobs keep running.
      if (wait === 0) await setImmediate();
      else await sleep(wait, undefined, { signal: stopping.signal }).catch(() => {});
    }
  };
  const done = loop();
  return {
    async stop() {
      stopping.abort();
      await done;
    },
  };
}

/**
 * The relay of a task-worker process, on connections of its own: a fail-fast Redis connection, and
 * one PostgreSQL connection (it works one batch at a time), so busy job handlers holding the
 * worker's pool never delay a relay.
 */
export function startOutboxRelay(settings: Settings, log: Logger, databaseUrl: string): OutboxRelay {
  const db = createPool(
    { connectionString: databaseUrl, size: 1, connectTimeoutMs: settings.DB_CONNECT_TIMEOUT_MS },
    log,
  );
  const connection = createProducerConnection(redisTargetOf(settings));
  // Handles the connection's errors; says once when it goes down and once when it is back.
  watchConnection(connection, log, 'outbox-relay');
  const tasks = new TaskService(connection, settings.QUEUE_PREFIX, retentionOf(settings));
  const relay = runRelay(db, tasks, relayOptionsOf(settings), log.child({ component: 'outbox-relay' }));
  return {
    async stop() {
      const stopped = relay.stop();
      // A command sent on a socket that died without closing (a cut network) never answers: past a
      // short wait, disconnecting fails it, its batch rolls back (rows kept) and the loop ends.
      const inTime = await Promise.race([
        stopped.then(() => true),
        sleep(STOP_WAIT_MS, false, { ref: false }),
      ]);
      if (!inTime) connection.disconnect();
      await stopped;
      // BullMQ's close can hang on a dead connection (bullmq#4163): only when up, and bounded.
      if (tasks.isReady())
        await Promise.race([tasks.close().catch(() => {}), sleep(2000, undefined, { ref: false })]);
      connection.disconnect();
      await db.end();
    },
  };
}
