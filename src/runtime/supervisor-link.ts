/**
 * The worker end of the supervisor protocol, shared by HTTP workers (agent.ts) and task workers
 * (worker.ts): drain requests (remembered if they arrive while booting), `ready`, and a heartbeat
 * sent from the event loop so that a blocked or stopped process goes silent.
 */
import { performance } from 'node:perf_hooks';
import client from 'prom-client';
import { heartbeatIntervalMs } from './policy.js';
import { isPrimaryMessage, WORKER_GENERATION_ENV, WORKER_ID_ENV, type WorkerMessage } from './protocol.js';

export type DrainHandler = (reason: string, deadlineMs: number) => Promise<void>;

export interface SupervisorLink {
  /** Tell the supervisor we serve, start the heartbeat, and route drain requests to `onDrain`. */
  ready(onDrain: DrainHandler): void;
}

export function sendToPrimary(message: WorkerMessage): void {
  if (process.connected) process.send?.(message);
}

/** True in a process forked by our own primary (not under another process manager). */
export function isSupervisedWorker(): boolean {
  return Boolean(process.env[WORKER_ID_ENV]) && typeof process.send === 'function';
}

export function workerIdentity(): { workerId: number; generation: number } {
  return {
    workerId: Number(process.env[WORKER_ID_ENV] ?? 0),
    generation: Number(process.env[WORKER_GENERATION_ENV] ?? 0),
  };
}

/**
 * Label every series this worker reports with its pool and slot, and answer the primary's metric
 * collection from the first moment of boot, before the app's code loads: the primary asks every
 * worker and waits for each, so one without prom-client's responder yet holds every /metrics for
 * seconds.
 *
 * The labels: the primary aggregates the workers it has now; summed into one series, a replaced
 * worker's counts would vanish and Prometheus would read the drop as a counter reset (a false spike
 * in every rate). One series per slot resets only when that slot's worker is replaced, which
 * `rate()` handles; the slot (not the pid) keeps the number of series fixed across recycles.
 */
export function reportMetricsToPrimary(pool: 'http' | 'tasks'): void {
  client.register.setDefaultLabels({ pool, worker: String(workerIdentity().workerId) });
  new client.AggregatorRegistry();
}

export function linkToSupervisor(options: {
  workerTimeoutMs: number;
  gracefulTimeoutMs: number;
  served: () => number;
  /** What the process still waits for before it takes work (undefined = nothing). */
  waitingFor?: () => string | undefined;
}): SupervisorLink {
  let pending: { reason: string; deadlineMs: number } | undefined;
  let handler: DrainHandler | undefined;
  let heartbeat: NodeJS.Timeout | undefined;
  let draining = false;
  const requestDrain = (reason: string, deadlineMs: number) => {
    if (!handler) {
      pending = { reason, deadlineMs };
      return;
    }
    if (draining) return;
    draining = true;
    // Past the deadline the supervisor kills us anyway; exiting ourselves first keeps logs clean.
    setTimeout(() => process.exit(1), deadlineMs).unref();
    void handler(reason, deadlineMs).then(() => {
      clearInterval(heartbeat);
      process.exit(0);
    });
  };
  process.on('message', (message: unknown) => {
    if (isPrimaryMessage(message) && message.type === 'drain')
      requestDrain(message.reason, message.deadlineMs);
  });
  // The primary is gone (killed, crashed): nothing holds the port any more; finish and leave.
  process.on('disconnect', () => requestDrain('shutdown', options.gracefulTimeoutMs));
  // The terminal's Ctrl+C reaches the whole process group; the primary coordinates the shutdown.
  process.on('SIGINT', () => {});
  process.on('SIGHUP', () => {});
  process.on('SIGTERM', () => requestDrain('shutdown', options.gracefulTimeoutMs));

  return {
    ready(onDrain) {
      handler = onDrain;
      if (pending) return requestDrain(pending.reason, pending.deadlineMs);
      sendToPrimary({ type: 'ready' });
      heartbeat = startHeartbeat(options, heartbeatIntervalMs(options.workerTimeoutMs));
    },
  };
}

function startHeartbeat(
  options: { served: () => number; waitingFor?: () => string | undefined },
  intervalMs: number,
): NodeJS.Timeout {
  let lastElu: ReturnType<typeof performance.eventLoopUtilization> | undefined;
  const beat = () => {
    // The first beat has no interval behind it: utilisation is reported from the second one on
    // (a figure over a few microseconds of start-up reads as "100 % busy").
    const elu = lastElu && performance.eventLoopUtilization(lastElu);
    lastElu = performance.eventLoopUtilization();
    const memory = process.memoryUsage();
    const waitingFor = options.waitingFor?.();
    sendToPrimary({
      type: 'heartbeat',
      requestsServed: options.served(),
      rssBytes: memory.rss,
      heapUsedBytes: memory.heapUsed,
      ...(elu ? { eventLoopUtilization: Math.round(elu.utilization * 1000) / 1000 } : {}),
      ...(waitingFor ? { waitingFor } : {}),
    });
  };
  beat(); // the supervisor has figures from the first moment, even if the loop stalls at once
  return setInterval(beat, intervalMs);
}
