/**
 * Pure supervision decisions, kept apart from processes and timers so they can be unit-tested.
 */

export type RestartReason =
  | 'crash'
  | 'hang'
  | 'boot_timeout'
  | 'max_requests'
  | 'memory'
  | 'reload'
  | 'scale';

export interface RecycleLimits {
  /** Requests after which this worker is recycled (Infinity = never). */
  requestLimit: number;
  /** RSS above which this worker is recycled (bytes, Infinity = never). */
  maxRssBytes: number;
}

/**
 * A worker's own request limit: MAX_REQUESTS plus a random jitter in [0, jitter], so that workers
 * started together do not all recycle at the same moment.
 */
export function requestLimitFor(
  maxRequests: number,
  jitter: number,
  random: () => number = Math.random,
): number {
  if (maxRequests <= 0) return Number.POSITIVE_INFINITY;
  return maxRequests + Math.floor(random() * (jitter + 1));
}

export function memoryLimitBytes(maxWorkerMemoryMb: number): number {
  return maxWorkerMemoryMb > 0 ? maxWorkerMemoryMb * 1024 * 1024 : Number.POSITIVE_INFINITY;
}

/** Why a worker should be recycled given its latest report, or undefined when it is fine. */
export function recycleReason(
  report: { requestsServed: number; rssBytes: number },
  limits: RecycleLimits,
): 'max_requests' | 'memory' | undefined {
  if (report.requestsServed >= limits.requestLimit) return 'max_requests';
  if (report.rssBytes > limits.maxRssBytes) return 'memory';
  return undefined;
}

export interface BackoffOptions {
  baseMs: number;
  maxMs: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { baseMs: 250, maxMs: 30_000 };

/**
 * Delay before restarting a slot that has crashed `consecutiveCrashes` times in a row (1 = first):
 * the first restart is immediate, then 250 ms, 500 ms, 1 s, ... capped at maxMs.
 */
export function restartDelayMs(
  consecutiveCrashes: number,
  options: BackoffOptions = DEFAULT_BACKOFF,
): number {
  if (consecutiveCrashes <= 1) return 0;
  return Math.min(options.baseMs * 2 ** (consecutiveCrashes - 2), options.maxMs);
}

/** A worker that stayed up this long has proved itself: its slot's crash count starts again. */
export function isStableUptime(uptimeMs: number, stableAfterMs: number): boolean {
  return uptimeMs >= stableAfterMs;
}

/**
 * Give up (exit non-zero so the platform sees it) when workers cannot boot at all: no worker is
 * ready and the last `maxBootAttempts` boots all failed. While some worker serves, keep trying.
 */
export function shouldGiveUp(
  state: { readyWorkers: number; consecutiveBootFailures: number },
  maxBootAttempts: number,
): boolean {
  return state.readyWorkers === 0 && state.consecutiveBootFailures >= maxBootAttempts;
}

/**
 * How often a worker reports: about once a second, and at least three times per WORKER_TIMEOUT
 * so that a short timeout (tests, latency-critical services) never flags a healthy worker.
 */
export function heartbeatIntervalMs(workerTimeoutMs: number): number {
  return Math.max(50, Math.min(1000, Math.floor(workerTimeoutMs / 3)));
}

/** True when a worker has been silent past the timeout: hung (blocked loop) or stopped. */
export function isHung(lastHeartbeatAt: number, now: number, timeoutMs: number): boolean {
  return now - lastHeartbeatAt > timeoutMs;
}

/** Which worker to remove when scaling down: the highest slot, so slots stay 1..N. */
export function pickScaleDownVictim<T extends { slot: number }>(workers: T[]): T | undefined {
  return workers.reduce<T | undefined>(
    (victim, worker) => (!victim || worker.slot > victim.slot ? worker : victim),
    undefined,
  );
}

/** The lowest slot number in 1..∞ that no worker holds. */
export function nextFreeSlot(takenSlots: Iterable<number>): number {
  const taken = new Set(takenSlots);
  let slot = 1;
  while (taken.has(slot)) slot += 1;
  return slot;
}

/**
 * The line to log when a worker's exit status says restarting cannot help (port taken, configuration
 * refused); undefined for ordinary crashes. Only before the worker was ever ready: a ready worker
 * that exits later is an ordinary crash, restarted with backoff.
 */
export function unrecoverableExit(
  code: number | null,
  wasReady: boolean,
  fatalExits: Readonly<Record<number, string>> = {},
): string | undefined {
  if (wasReady || code === null) return undefined;
  return fatalExits[code];
}
