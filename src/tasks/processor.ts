import { UnrecoverableError } from 'bullmq';
import type pg from 'pg';
import type { Logger } from 'pino';
import { tasksByName } from './definitions/index.js';
import { payloadErrors, type TaskContext } from './registry.js';

/** The part of a BullMQ job a handler run needs (a Job in process, a SandboxedJob in a thread). */
export interface RunnableJob {
  id?: string;
  name: string;
  data: unknown;
  attemptsMade: number;
  updateProgress(progress: number): Promise<void>;
}

export interface RunDependencies {
  log: Logger;
  db(): pg.Pool;
}

export const CANCELLED_REASON = 'cancelled through the API';

/**
 * Run one job with its task's handler: payload checked again (jobs may come from anywhere),
 * timeout and cancellation merged into the handler's AbortSignal. Cancelled, unknown and invalid
 * jobs fail without retry (UnrecoverableError); everything else is retried with backoff.
 */
export async function runJob(
  job: RunnableJob,
  cancelSignal: AbortSignal | undefined,
  deps: RunDependencies,
): Promise<unknown> {
  const definition = tasksByName.get(job.name);
  if (!definition) throw new UnrecoverableError(`unknown task ${job.name}`);
  const problems = payloadErrors(definition, job.data);
  if (problems.length > 0) {
    throw new UnrecoverableError(
      `invalid payload: ${problems.map((p) => `${p.field} ${p.message}`).join('; ')}`,
    );
  }
  const timeout = definition.timeoutMs ? AbortSignal.timeout(definition.timeoutMs) : undefined;
  // AbortSignal.any only when there are two to merge: it is costly per job (a few % of a no-op job).
  const signal =
    cancelSignal && timeout
      ? AbortSignal.any([cancelSignal, timeout])
      : // A signal of its own when there is none: listeners a handler adds die with the job.
        (cancelSignal ?? timeout ?? new AbortController().signal);
  let log: Logger | undefined;
  const context: TaskContext = {
    jobId: job.id ?? '',
    attempt: job.attemptsMade + 1,
    // Made on first use: most jobs never log, and a child logger per job is not free.
    get log() {
      log ??= deps.log.child({ task: job.name, jobId: job.id, attempt: job.attemptsMade + 1 });
      return log;
    },
    signal,
    progress: (percent) => job.updateProgress(percent),
    db: deps.db,
  };
  try {
    return await definition.handler(job.data as never, context);
  } catch (error) {
    if (cancelSignal?.aborted) throw new UnrecoverableError(CANCELLED_REASON);
    if (signal.aborted) throw new Error(`timed out after ${definition.timeoutMs} ms`);
    throw error;
  }
}

/** A pg pool created on first use, so processes and threads that never touch the database never connect. */
export function lazyPool(create: () => pg.Pool): () => pg.Pool {
  let pool: pg.Pool | undefined;
  return () => {
    pool ??= create();
    return pool;
  };
}
