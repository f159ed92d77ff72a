/**
 * The BullMQ side of a task-worker process: one Worker per queue, job schedulers, cancellation
 * through Redis pub/sub, metrics, and a shutdown bounded by TASK_SHUTDOWN_TIMEOUT.
 */
import { fileURLToPath } from 'node:url';
import { type Job, Queue, Worker } from 'bullmq';
import type pg from 'pg';
import type { Logger } from 'pino';
import { KeyedCounter, KeyedHistogram } from '../keyed-metrics.js';
import { createWorkerConnection } from '../redis/connection.js';
import { logUnlessConnectionError, watchConnection } from '../redis/connection-events.js';
import { readEvictionPolicy } from '../redis/eviction-policy.js';
import { redisTargetOf } from '../redis/target.js';
import type { Settings } from '../settings.js';
import { queueTelemetry } from '../telemetry/tracing.js';
import { RunningJobs } from './cancellation.js';
import { TASKS } from './definitions/index.js';
import { CANCELLED_REASON, runJob } from './processor.js';
import type { QueueName } from './queues.js';
import { type CancelMessage, cancelChannel, jobOptionsFor, retentionOf } from './service.js';

const sandboxFile = fileURLToPath(
  new URL(`./sandbox${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url),
);

// Updated on every job: keyed metrics (src/keyed-metrics.ts), not prom-client's own (~4 µs a job).
const labels = ['queue', 'task'];
const completed = new KeyedCounter('task_jobs_completed_total', 'Jobs completed', labels);
const failed = new KeyedCounter('task_jobs_failed_total', 'Jobs failed for good', labels);
const retried = new KeyedCounter('task_jobs_retried_total', 'Attempts failed and retried', labels);
const duration = new KeyedHistogram(
  'task_job_duration_seconds',
  'Job run time, start of the last attempt to finish',
  labels,
  [0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300],
);

export interface TaskWorkers {
  workers: ReadonlyMap<QueueName, Worker>;
  jobsProcessed(): number;
  /** Running and connected: false when this process can no longer take jobs. */
  isHealthy(): boolean;
  /** True while Redis answers; until then this process takes no job and is not ready. */
  isConnected(): boolean;
  /** Resolves once Redis answers (at once when it does). */
  whenConnected(): Promise<void>;
  /** Redis's maxmemory-policy (undefined when it cannot be read). */
  evictionPolicy(): Promise<string | undefined>;
  /** Stop taking jobs; wait for active ones up to the timeout, then abandon them (they are retried). */
  close(timeoutMs: number): Promise<void>;
}

export async function startTaskWorkers(
  settings: Settings,
  log: Logger,
  databaseUrl: string,
  db: () => pg.Pool,
): Promise<TaskWorkers> {
  // Worker threads (the cpu queue) read it from their environment.
  process.env.DATABASE_URL = databaseUrl;
  const target = redisTargetOf(settings);
  const connection = createWorkerConnection(target);
  const watch = watchConnection(connection, log, 'tasks');
  const lock = {
    lockDuration: settings.TASK_LOCK_DURATION * 1000,
    stalledInterval: settings.TASK_LOCK_DURATION * 1000,
    maxStalledCount: 1,
  };
  // Tracing on: each job's processing span continues the trace of the request that enqueued it.
  const common = { connection, prefix: settings.QUEUE_PREFIX, telemetry: queueTelemetry(), ...lock };
  const running = new RunningJobs();
  const workers = new Map<QueueName, Worker>([
    [
      'default',
      // One argument: BullMQ then makes no AbortController per job (cancellation.ts makes one on demand).
      new Worker('default', (job) => runJob(job, running.start(job.id ?? ''), { log, db }), {
        ...common,
        concurrency: settings.TASK_CONCURRENCY,
      }),
    ],
    // CPU-heavy handlers run in worker threads; the thread gets DATABASE_URL from the environment.
    [
      'cpu',
      new Worker('cpu', sandboxFile, {
        ...common,
        concurrency: settings.TASK_CPU_CONCURRENCY,
        useWorkerThreads: true,
      }),
    ],
  ]);
  let processed = 0;
  for (const [queue, worker] of workers) {
    // BullMQ's blocking clients fail on every retry while Redis is away; the watch said it once.
    worker.on('error', logUnlessConnectionError(log, { queue }, 'task worker error'));
    // Its worker died holding the job (lock expired): BullMQ puts it back; handlers are idempotent.
    worker.on('stalled', (jobId) => log.warn({ queue, jobId }, 'job stalled; retrying'));
    worker.on('completed', (job: Job) => {
      processed += 1;
      completed.inc([queue, job.name]);
      observeDuration(queue, job);
    });
    worker.on('failed', (job: Job | undefined, error: Error) => {
      processed += 1;
      if (!job) return;
      const willRetry = job.attemptsMade < (job.opts.attempts ?? 1) && error.name !== 'UnrecoverableError';
      (willRetry ? retried : failed).inc([queue, job.name]);
      if (!willRetry) observeDuration(queue, job);
      log[willRetry ? 'info' : 'warn'](
        { queue, task: job.name, jobId: job.id, attempt: job.attemptsMade, err: error.message },
        willRetry ? 'job attempt failed; retrying' : 'job failed',
      );
    });
  }

  // Recurring tasks: upserting a scheduler is idempotent, so every worker process may do it. Not
  // awaited: with Redis down at start-up the worker still starts and catches up when it connects.
  const schedulerQueues = new Map<QueueName, Queue>();
  for (const task of TASKS.filter((definition) => definition.schedule)) {
    const queue =
      schedulerQueues.get(task.queue) ??
      new Queue(task.queue, { connection, prefix: settings.QUEUE_PREFIX, telemetry: queueTelemetry() });
    if (!schedulerQueues.has(task.queue))
      queue.on('error', logUnlessConnectionError(log, { queue: task.queue }, 'scheduler queue error'));
    schedulerQueues.set(task.queue, queue);
    const schedule = task.schedule as { pattern: string; payload: unknown };
    queue
      .upsertJobScheduler(
        task.name,
        { pattern: schedule.pattern },
        { name: task.name, data: schedule.payload, opts: jobOptionsFor(task, retentionOf(settings)) },
      )
      .catch((error: Error) =>
        log.warn({ task: task.name, err: error.message }, 'could not declare the job scheduler'),
      );
  }

  // Cancellation: only the process running a job can abort it, so every worker listens.
  const subscriber = createWorkerConnection(target);
  subscriber.on('error', () => {});
  // Queued until connected; ioredis re-subscribes by itself after a reconnect.
  void subscriber.subscribe(cancelChannel(settings.QUEUE_PREFIX)).catch(() => {});
  subscriber.on('message', (_channel, text) => {
    try {
      const message = JSON.parse(text) as CancelMessage;
      // The default queue's jobs run here (cancellation.ts); the cpu queue's in BullMQ's threads.
      const cancelled =
        message.queue === 'default'
          ? running.cancel(message.jobId, CANCELLED_REASON)
          : workers.get(message.queue)?.cancelJob(message.jobId, CANCELLED_REASON);
      if (cancelled) {
        log.info({ queue: message.queue, jobId: message.jobId }, 'job cancelled');
      }
    } catch {
      log.warn({ text }, 'ignored a malformed cancel message');
    }
  });

  let closing = false;
  return {
    workers,
    jobsProcessed: () => processed,
    isHealthy: () => !closing && watch.isUp() && [...workers.values()].every((worker) => worker.isRunning()),
    isConnected: () => watch.isUp(),
    whenConnected: () => watch.whenUp(),
    evictionPolicy: () => readEvictionPolicy(connection),
    async close(timeoutMs) {
      closing = true;
      // With Redis away no job can be completed or handed back, so waiting would only delay the
      // exit: their locks expire and they are retried (at-least-once).
      const reachable = watch.isUp();
      const timedOut =
        !reachable ||
        (await bounded(Promise.all([...workers.values()].map((worker) => worker.close())), timeoutMs));
      if (timedOut) {
        if (reachable)
          log.warn({ timeoutMs }, 'task shutdown timeout: abandoning active jobs (they will be retried)');
        else log.warn('Redis unreachable: stopping without waiting for active jobs (they will be retried)');
        await bounded(
          Promise.all([...workers.values()].map((worker) => worker.close(true))),
          FORCED_CLOSE_MS,
        );
      }
      if (reachable)
        await bounded(
          Promise.all([...schedulerQueues.values()].map((queue) => queue.close())),
          FORCED_CLOSE_MS,
        );
      else for (const queue of schedulerQueues.values()) void queue.disconnect().catch(() => {});
      subscriber.disconnect();
      connection.disconnect();
    },
  };
}

/** Longest wait for a forced close (BullMQ's close can hang on a dead connection, bullmq#4163). */
const FORCED_CLOSE_MS = 2000;

/** Wait for `work` at most `timeoutMs`; true when the time ran out first. */
async function bounded(work: Promise<unknown>, timeoutMs: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = await Promise.race([
    work.then(() => false),
    new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(true), timeoutMs);
    }),
  ]);
  clearTimeout(timer);
  return timedOut;
}

function observeDuration(queue: QueueName, job: Job): void {
  if (job.processedOn && job.finishedOn)
    duration.observe([queue, job.name], (job.finishedOn - job.processedOn) / 1000);
}
