/**
 * The transactional outbox, database side: a task recorded in the caller's transaction (it exists
 * exactly when the write committed), looked up and cancelled while it waits for the relay
 * (src/tasks/relay.ts). No BullMQ here: routes import it at every level.
 */
import type { Queryable } from '../db/transaction.js';
import type { TaskDefinition } from './registry.js';

/** BullMQ refuses an integer-only custom id, and the prefix keeps outbox jobs apart from other ids. */
export const OUTBOX_JOB_PREFIX = 'o-';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function outboxJobId(outboxId: string): string {
  return `${OUTBOX_JOB_PREFIX}${outboxId}`;
}

/** The outbox row id a BullMQ job id stands for; undefined for any other id (never sent to SQL). */
export function outboxIdOf(jobId: string): string | undefined {
  if (!jobId.startsWith(OUTBOX_JOB_PREFIX)) return undefined;
  const id = jobId.slice(OUTBOX_JOB_PREFIX.length);
  return UUID.test(id) ? id : undefined;
}

/**
 * Record `task` with `payload` through `db`, which must be the client of the write's transaction.
 * Resolves with the public task id (`<queue>.o-<outbox id>`), valid at once for GET /api/tasks/{id}.
 */
export async function recordTask(db: Queryable, task: TaskDefinition, payload: unknown): Promise<string> {
  const { rows } = await db.query<{ id: string }>(
    'INSERT INTO task_outbox (task, queue, payload) VALUES ($1, $2, $3) RETURNING id',
    [task.name, task.queue, JSON.stringify(payload)],
  );
  return `${task.queue}.${outboxJobId((rows[0] as { id: string }).id)}`;
}

/** Where an outbox row stands: still waiting for the relay, cancelled before it, or handed to BullMQ. */
export interface OutboxEntry {
  task: string;
  state: 'pending' | 'cancelled' | 'relayed';
  createdAt: Date;
  cancelledAt: Date | null;
}

/** Reads and cancellation of outbox rows, for the task API. */
export class OutboxStore {
  constructor(private readonly db: Queryable) {}

  /** The row behind the task id `<queue>.<jobId>` (its queue must match too). */
  async find(queue: string, jobId: string): Promise<OutboxEntry | undefined> {
    const id = outboxIdOf(jobId);
    if (!id) return undefined;
    const { rows } = await this.db.query<{
      task: string;
      created_at: Date;
      relayed_at: Date | null;
      cancelled_at: Date | null;
    }>('SELECT task, created_at, relayed_at, cancelled_at FROM task_outbox WHERE id = $1 AND queue = $2', [
      id,
      queue,
    ]);
    const row = rows[0];
    if (!row) return undefined;
    const state = row.relayed_at ? 'relayed' : row.cancelled_at ? 'cancelled' : 'pending';
    return { task: row.task, state, createdAt: row.created_at, cancelledAt: row.cancelled_at };
  }

  /**
   * Cancel the row if it has not been relayed. A relay holding the row (its claim locks it) makes
   * this wait for its commit and then see the row relayed: false, and the caller cancels the job.
   */
  async cancelPending(queue: string, jobId: string): Promise<boolean> {
    const id = outboxIdOf(jobId);
    if (!id) return false;
    const { rowCount } = await this.db.query(
      `UPDATE task_outbox SET cancelled_at = now()
       WHERE id = $1 AND queue = $2 AND relayed_at IS NULL AND cancelled_at IS NULL`,
      [id, queue],
    );
    return rowCount === 1;
  }
}
