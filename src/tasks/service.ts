import { createHash } from 'node:crypto';
import { type Job, type JobsOptions, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { withRedis } from '../redis/connection.js';
import type { Settings } from '../settings.js';
import { queueTelemetry } from '../telemetry/tracing.js';
import { tasksByName } from './definitions/index.js';
import type { OutboxEntry, OutboxStore } from './outbox.js';
import { parseTaskId, QUEUE_NAMES, type QueueName } from './queues.js';
import type { TaskDefinition } from './registry.js';

/** `pending`: committed in the outbox with its write, not yet relayed to BullMQ (src/tasks/outbox.ts). */
export type TaskState = 'pending' | 'waiting' | 'delayed' | 'active' | 'completed' | 'failed' | 'cancelled';

export interface TaskStatus {
  id: string;
  name: string;
  state: TaskState;
  progress: number | object;
  attempts: number;
  result: unknown;
  error: string | null;
  timestamps: { createdAt: string | null; startedAt: string | null; finishedAt: string | null };
}

/** An outbox row on its way to BullMQ: the job id is `o-<outbox id>` (src/tasks/relay.ts). */
export interface OutboxJob {
  jobId: string;
  task: string;
  queue: string;
  payload: unknown;
}

export interface EnqueueOptions {
  delayMs?: number;
  priority?: number;
  /** Same key, same task: enqueued once; the existing id is returned. */
  idempotencyKey?: string;
}

export interface RetentionOptions {
  keepCompleted: { age: number; count: number };
  keepFailed: { age: number; count: number };
  eventsMaxLen: number;
}

export function retentionOf(settings: Settings): RetentionOptions {
  return {
    keepCompleted: { age: settings.TASK_KEEP_COMPLETED_AGE, count: settings.TASK_KEEP_COMPLETED_COUNT },
    keepFailed: { age: settings.TASK_KEEP_FAILED_AGE, count: settings.TASK_KEEP_FAILED_COUNT },
    eventsMaxLen: settings.TASK_EVENTS_MAX_LEN,
  };
}

export type CancelOutcome = 'cancelled' | 'not_found' | 'finished';

// Pure and free of BullMQ: the routes import it from queues.ts without loading the queue library.
export { parseTaskId } from './queues.js';

export function cancelChannel(prefix: string): string {
  return `${prefix}:task-cancel`;
}

/** Redis channel message telling the worker that owns an active job to abort it. */
export interface CancelMessage {
  queue: QueueName;
  jobId: string;
}

const iso = (epochMs: number | undefined | null) => (epochMs ? new Date(epochMs).toISOString() : null);

export function jobOptionsFor(definition: TaskDefinition, retention: RetentionOptions): JobsOptions {
  return {
    attempts: definition.attempts ?? 3,
    backoff: { type: 'exponential', delay: definition.backoffMs ?? 1000, jitter: 0.5 },
    priority: definition.priority,
    removeOnComplete: retention.keepCompleted,
    removeOnFail: retention.keepFailed,
  };
}

/** The task protocol of the service: enqueue, status, cancel. Used by the HTTP routes. */
export class TaskService {
  private readonly queues = new Map<QueueName, Queue>();

  constructor(
    private readonly connection: Redis,
    private readonly prefix: string,
    private readonly retention: RetentionOptions,
    /** Outbox rows, for the status and cancellation of tasks not yet relayed (absent: none). */
    private readonly outbox?: OutboxStore,
  ) {}

  async enqueue(name: string, payload: unknown, options: EnqueueOptions = {}): Promise<string> {
    const definition = tasksByName.get(name);
    if (!definition) throw new Error(`unknown task ${name}`);
    const jobOptions: JobsOptions = {
      ...jobOptionsFor(definition, this.retention),
      delay: options.delayMs,
      ...(options.priority !== undefined ? { priority: options.priority } : {}),
      ...(options.idempotencyKey !== undefined
        ? { jobId: idempotentJobId(name, options.idempotencyKey) }
        : {}),
    };
    const job = await withRedis(this.connection, () =>
      this.queue(definition.queue).add(name, payload, jobOptions),
    );
    return `${definition.queue}.${job.id}`;
  }

  /** Many jobs of one task in one round trip (BullMQ addBulk); payloads must be valid already. */
  async enqueueMany(name: string, payloads: unknown[]): Promise<string[]> {
    const definition = tasksByName.get(name);
    if (!definition) throw new Error(`unknown task ${name}`);
    const opts = jobOptionsFor(definition, this.retention);
    const jobs = await withRedis(this.connection, () =>
      this.queue(definition.queue).addBulk(payloads.map((data) => ({ name, data, opts }))),
    );
    return jobs.map((job) => `${definition.queue}.${job.id}`);
  }

  /**
   * The relay's jobs, one addBulk per queue. Each has its outbox row's id: BullMQ treats adding an id
   * it holds as a no-op, so a row relayed twice (a relay died before its commit) is queued once.
   */
  async addFromOutbox(jobs: readonly OutboxJob[]): Promise<void> {
    const byQueue = new Map<QueueName, Array<{ name: string; data: unknown; opts: JobsOptions }>>();
    for (const job of jobs) {
      const definition = tasksByName.get(job.task);
      // A task this release no longer knows still gets queued, and fails there saying so.
      const queue = (QUEUE_NAMES as readonly string[]).includes(job.queue)
        ? (job.queue as QueueName)
        : 'default';
      const opts = definition ? jobOptionsFor(definition, this.retention) : { attempts: 1 };
      const list = byQueue.get(queue) ?? [];
      list.push({ name: job.task, data: job.payload, opts: { ...opts, jobId: job.jobId } });
      byQueue.set(queue, list);
    }
    await withRedis(this.connection, () =>
      Promise.all([...byQueue].map(([queue, list]) => this.queue(queue).addBulk(list))),
    );
  }

  /** True while the connection is up: the relay claims no rows it could not hand over. */
  isReady(): boolean {
    return this.connection.status === 'ready';
  }

  async getStatus(id: string): Promise<TaskStatus | undefined> {
    const parsed = parseTaskId(id);
    if (!parsed) return undefined;
    // Still in the outbox (or cancelled there): answered by PostgreSQL, whether Redis is up or not.
    const entry = await this.outbox?.find(parsed.queue, parsed.jobId);
    if (entry && entry.state !== 'relayed') return outboxStatus(id, entry);
    return withRedis(this.connection, async () => {
      const queue = this.queue(parsed.queue);
      // State first, job second: a job that finishes between the two reads then shows its result
      // and final attempt count, never "completed" with the data of its previous attempt.
      let [state, cancelled] = await Promise.all([
        queue.getJobState(parsed.jobId),
        this.connection.exists(this.cancelledKey(parsed.queue, parsed.jobId)),
      ]);
      const job = await queue.getJob(parsed.jobId);
      if (!job) {
        if (!cancelled) return undefined;
        return { ...emptyStatus(id), state: 'cancelled' };
      }
      if (!cancelled && job.finishedOn && !isFinished(state)) state = await queue.getJobState(parsed.jobId);
      return statusOf(id, job, cancelled ? 'cancelled' : toTaskState(state));
    });
  }

  /** Waiting or delayed: removed. Active: the owning worker is told to abort it. */
  async cancel(id: string): Promise<CancelOutcome> {
    const parsed = parseTaskId(id);
    if (!parsed) return 'not_found';
    // Not relayed yet: cancelled in the outbox, and never queued. Relayed: cancelled in BullMQ below.
    if (await this.outbox?.cancelPending(parsed.queue, parsed.jobId)) return 'cancelled';
    return withRedis(this.connection, async () => {
      const queue = this.queue(parsed.queue);
      const job = await queue.getJob(parsed.jobId);
      if (!job) return 'not_found';
      const state = await job.getState();
      if (isFinished(state)) return 'finished';
      await this.markCancelled(parsed.queue, parsed.jobId);
      if (state !== 'active') {
        try {
          await job.remove();
          return 'cancelled';
        } catch {
          // It became active between the two calls: cancel it where it runs.
        }
      }
      const message: CancelMessage = { queue: parsed.queue, jobId: parsed.jobId };
      await this.connection.publish(cancelChannel(this.prefix), JSON.stringify(message));
      return 'cancelled';
    });
  }

  /** Queue depth by state, for metrics and the dashboard-less operator. */
  async counts(): Promise<Record<QueueName, Record<string, number>>> {
    const entries = await Promise.all(
      QUEUE_NAMES.map(async (name) => {
        const counts = await withRedis(this.connection, () =>
          this.queue(name).getJobCounts('waiting', 'prioritized', 'delayed', 'active', 'completed', 'failed'),
        );
        return [name, counts] as const;
      }),
    );
    return Object.fromEntries(entries) as Record<QueueName, Record<string, number>>;
  }

  /** Recurring tasks declared by the workers (BullMQ job schedulers). */
  async schedulers(): Promise<Array<{ name: string; pattern?: string | null; nextRunAt: string | null }>> {
    const lists = await Promise.all(
      QUEUE_NAMES.map((name) => withRedis(this.connection, () => this.queue(name).getJobSchedulers())),
    );
    return lists.flat().map((scheduler) => ({
      name: scheduler.name,
      pattern: scheduler.pattern,
      nextRunAt: iso(scheduler.next),
    }));
  }

  async ping(): Promise<void> {
    await withRedis(this.connection, () => this.connection.ping(), 2000);
  }

  async close(): Promise<void> {
    await Promise.all([...this.queues.values()].map((queue) => queue.close()));
  }

  /**
   * Queues are created on first use, once the connection is ready: BullMQ checks the server when a
   * queue is made, and with the offline queue off (fail fast) that check must not run while down.
   */
  private queue(name: QueueName): Queue {
    let queue = this.queues.get(name);
    if (!queue) {
      queue = new Queue(name, {
        connection: this.connection,
        prefix: this.prefix,
        skipWaitingForReady: true,
        streams: { events: { maxLen: this.retention.eventsMaxLen } },
        // Tracing on: the enqueue span, and the trace context stored in the job for the worker.
        telemetry: queueTelemetry(),
      });
      // Connection errors surface per call (503); the emitter must not print them or throw.
      queue.on('error', () => {});
      this.queues.set(name, queue);
    }
    return queue;
  }

  private cancelledKey(queue: QueueName, jobId: string): string {
    return `${this.prefix}:${queue}:cancelled:${jobId}`;
  }

  private async markCancelled(queue: QueueName, jobId: string): Promise<void> {
    const ttlSeconds = Math.max(this.retention.keepFailed.age, 3600);
    await this.connection.set(this.cancelledKey(queue, jobId), '1', 'EX', ttlSeconds);
  }
}

export function idempotentJobId(name: string, key: string): string {
  return `k-${createHash('sha256').update(`${name}\n${key}`).digest('base64url').slice(0, 32)}`;
}

const isFinished = (state: string) => state === 'completed' || state === 'failed';

function toTaskState(state: string): TaskState {
  if (state === 'prioritized' || state === 'waiting-children' || state === 'unknown') return 'waiting';
  return state as TaskState;
}

function emptyStatus(id: string): TaskStatus {
  return {
    id,
    name: '',
    state: 'waiting',
    progress: 0,
    attempts: 0,
    result: null,
    error: null,
    timestamps: { createdAt: null, startedAt: null, finishedAt: null },
  };
}

function outboxStatus(id: string, entry: OutboxEntry): TaskStatus {
  return {
    ...emptyStatus(id),
    name: entry.task,
    state: entry.state === 'cancelled' ? 'cancelled' : 'pending',
    timestamps: {
      createdAt: iso(entry.createdAt.getTime()),
      startedAt: null,
      finishedAt: iso(entry.cancelledAt?.getTime()),
    },
  };
}

function statusOf(id: string, job: Job, state: TaskState): TaskStatus {
  return {
    id,
    name: job.name,
    state,
    progress: job.progress as number | object,
    attempts: job.attemptsMade,
    result: job.returnvalue ?? null,
    error: job.failedReason || null,
    timestamps: {
      createdAt: iso(job.timestamp),
      startedAt: iso(job.processedOn),
      finishedAt: iso(job.finishedOn),
    },
  };
}
