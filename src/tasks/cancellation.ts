/**
 * Cancelling the jobs this process runs on the `default` queue. BullMQ hands a processor that takes
 * its third argument an AbortSignal, and so makes an AbortController for every job; here the signal
 * is made only when a handler reads `context.signal`, and a cancel that arrives before that is
 * remembered.
 */
import type { CancelSource } from './processor.js';

export class RunningJob implements CancelSource {
  #controller: AbortController | undefined;
  #reason: string | undefined;
  cancelled = false;

  constructor(
    private readonly running: Map<string, RunningJob>,
    private readonly jobId: string,
  ) {
    running.set(jobId, this);
  }

  signal(): AbortSignal {
    if (!this.#controller) {
      this.#controller = new AbortController();
      if (this.cancelled) this.#controller.abort(this.#reason);
    }
    return this.#controller.signal;
  }

  cancel(reason: string): void {
    this.cancelled = true;
    this.#reason = reason;
    this.#controller?.abort(reason);
  }

  /** The job's run ended: a cancel no longer reaches it. */
  finish(): void {
    this.running.delete(this.jobId);
  }
}

export class RunningJobs {
  readonly #jobs = new Map<string, RunningJob>();

  /** Job `jobId` starts here: cancellable until `finish()`. */
  start(jobId: string): RunningJob {
    return new RunningJob(this.#jobs, jobId);
  }

  /** True when the job runs here (its handler's signal aborts with `reason`). */
  cancel(jobId: string, reason: string): boolean {
    const job = this.#jobs.get(jobId);
    job?.cancel(reason);
    return job !== undefined;
  }
}
