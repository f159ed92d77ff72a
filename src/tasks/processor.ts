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

/** How a run learns it was cancelled. `signal()` may make the signal: it is asked only when a handler reads it. */
export interface CancelSource {
  signal(): AbortSignal | undefined;
  readonly cancelled: boolean;
  /** Called once the run ends, however it ends. */
  finish?(): void;
}

/** A CancelSource over a signal BullMQ made (the sandboxed `cpu` queue). */
export function cancelSourceOf(signal: AbortSignal | undefined): CancelSource {
  return {
    signal: () => signal,
    get cancelled() {
      return signal?.aborted === true;
    },
  };
}

/**
 * Run one job with its task's handler: payload checked again (jobs may come from anywhere),
 * timeout and cancellation merged into the handler's AbortSignal. Cancelled, unknown and invalid
 * jobs fail without retry (UnrecoverableError); everything else is retried with backoff.
 */
export async function runJob(
  job: RunnableJob,
  cancel: CancelSource,
  deps: RunDependencies,
): Promise<unknown> {
  try {
    const definition = tasksByName.get(job.name);
    if (!definition) throw new UnrecoverableError(`unknown task ${job.name}`);
    const problems = payloadErrors(definition, job.data);
    if (problems.length > 0) {
      throw new UnrecoverableError(
        `invalid payload: ${problems.map((p) => `${p.field} ${p.message}`).join('; ')}`,
      );
    }
    const timeout = definition.timeoutMs ? AbortSignal.timeout(definition.timeoutMs) : undefined;
    try {
      return await definition.handler(job.data as never, new JobContext(job, cancel, timeout, deps));
    } catch (error) {
      if (cancel.cancelled) throw new UnrecoverableError(CANCELLED_REASON);
      if (timeout?.aborted) throw new Error(`timed out after ${definition.timeoutMs} ms`);
      throw error;
    }
  } finally {
    // However the run ends (refused, done, failed), a cancel no longer reaches it.
    cancel.finish?.();
  }
}

/**
 * What a handler gets. A class, not an object literal: a literal with getters is built on V8's slow
 * path, a visible share of a no-op job. The log and the signal are made on first use: most jobs
 * never log, and a signal costs an AbortController (AbortSignal.any more) per job.
 */
class JobContext implements TaskContext {
  readonly jobId: string;
  readonly attempt: number;
  readonly db: () => pg.Pool;
  #log: Logger | undefined;
  #signal: AbortSignal | undefined;

  constructor(
    private readonly job: RunnableJob,
    private readonly cancel: CancelSource,
    private readonly timeout: AbortSignal | undefined,
    private readonly deps: RunDependencies,
  ) {
    this.jobId = job.id ?? '';
    this.attempt = job.attemptsMade + 1;
    this.db = deps.db;
  }

  get log(): Logger {
    this.#log ??= this.deps.log.child({ task: this.job.name, jobId: this.job.id, attempt: this.attempt });
    return this.#log;
  }

  get signal(): AbortSignal {
    if (this.#signal === undefined) {
      const cancelSignal = this.cancel.signal();
      this.#signal =
        cancelSignal && this.timeout
          ? AbortSignal.any([cancelSignal, this.timeout])
          : // A signal of its own when there is none: listeners a handler adds die with the job.
            (cancelSignal ?? this.timeout ?? new AbortController().signal);
    }
    return this.#signal;
  }

  /** An arrow: handlers may take it out of the context (`const { progress } = context`). */
  readonly progress = (percent: number): Promise<void> => this.job.updateProgress(percent);
}

/** A pg pool created on first use, so processes and threads that never touch the database never connect. */
export function lazyPool(create: () => pg.Pool): () => pg.Pool {
  let pool: pg.Pool | undefined;
  return () => {
    pool ??= create();
    return pool;
  };
}
