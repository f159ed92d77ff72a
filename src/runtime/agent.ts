/**
 * The piece of the runtime that lives inside each cluster worker: it runs the app, tells the
 * supervisor when it is ready, sends a heartbeat from the event loop, and drains on request.
 */
import { performance } from 'node:perf_hooks';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { AggregatorRegistry } from 'prom-client';
import { buildApp } from '../app.js';
import { closeApp } from '../plugins/lifecycle.js';
import type { Settings } from '../settings.js';
import { heartbeatIntervalMs } from './policy.js';
import { isPrimaryMessage, WORKER_GENERATION_ENV, WORKER_ID_ENV, type WorkerMessage } from './protocol.js';

/** Time a draining worker keeps serving (every response closing its connection) before it stops accepting. */
const DRAIN_SETTLE_MS = 1000;
const METRICS_TIMEOUT_MS = 5000;

const isServiceShutdown = (reason: string) => reason === 'shutdown';

function send(message: WorkerMessage): void {
  if (process.connected) process.send?.(message);
}

/** Ask the primary for every worker's metrics, aggregated (prom-client cluster mode). */
function clusterMetricsCollector(): () => Promise<string> {
  // Constructing one in a worker installs prom-client's responder to the primary's collection requests.
  new AggregatorRegistry();
  let nextId = 1;
  const pending = new Map<number, { resolve: (text: string) => void; reject: (error: Error) => void }>();
  process.on('message', (message: unknown) => {
    if (!isPrimaryMessage(message) || message.type !== 'metrics-response') return;
    const waiter = pending.get(message.requestId);
    pending.delete(message.requestId);
    if (message.text !== undefined) waiter?.resolve(message.text);
    else waiter?.reject(new Error(message.error ?? 'metrics unavailable'));
  });
  return () =>
    new Promise<string>((resolve, reject) => {
      const requestId = nextId++;
      const timer = setTimeout(() => {
        pending.delete(requestId);
        reject(new Error('the primary did not answer the metrics request'));
      }, METRICS_TIMEOUT_MS);
      pending.set(requestId, {
        resolve: (text) => {
          clearTimeout(timer);
          resolve(text);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      send({ type: 'metrics-request', requestId });
    });
}

function startHeartbeat(app: FastifyInstance, intervalMs: number): NodeJS.Timeout {
  let lastElu = performance.eventLoopUtilization();
  // A timer on the event loop, on purpose: a blocked or stopped loop sends nothing, which is
  // exactly what the supervisor's hang detection watches for.
  const beat = () => {
    const elu = performance.eventLoopUtilization(lastElu);
    lastElu = performance.eventLoopUtilization();
    const memory = process.memoryUsage();
    send({
      type: 'heartbeat',
      requestsServed: app.processState.requestsServed,
      rssBytes: memory.rss,
      heapUsedBytes: memory.heapUsed,
      eventLoopUtilization: Math.round(elu.utilization * 1000) / 1000,
    });
  };
  beat(); // the supervisor has figures from the first moment, even if the loop stalls at once
  return setInterval(beat, intervalMs);
}

export async function runClusterWorker(settings: Settings, logger: Logger): Promise<void> {
  const identity = {
    workerId: Number(process.env[WORKER_ID_ENV] ?? 0),
    generation: Number(process.env[WORKER_GENERATION_ENV] ?? 0),
  };
  const log = logger.child({ worker: identity.workerId });
  // A drain can arrive while the app is still booting (shutdown, scale-down): remember it.
  let drainRequest: { reason: string; deadlineMs: number } | undefined;
  let onDrain = (reason: string, deadlineMs: number) => {
    drainRequest = { reason, deadlineMs };
  };
  process.on('message', (message: unknown) => {
    if (isPrimaryMessage(message) && message.type === 'drain') onDrain(message.reason, message.deadlineMs);
  });
  process.on('disconnect', () => onDrain('shutdown', settings.GRACEFUL_TIMEOUT * 1000));
  // The terminal's Ctrl+C reaches the whole process group; the primary coordinates the shutdown.
  process.on('SIGINT', () => {});
  process.on('SIGHUP', () => {});
  process.on('SIGTERM', () => onDrain('shutdown', settings.GRACEFUL_TIMEOUT * 1000));

  const app = await buildApp(settings, {
    logger: log,
    identity,
    metrics: { collect: clusterMetricsCollector() },
  });
  await app.listen({ host: settings.HOST, port: settings.PORT });

  let heartbeat: NodeJS.Timeout | undefined;
  let draining = false;
  /**
   * Recycle, reload, scale-down: other workers take the traffic, so keep serving for a moment with
   * every response closing its connection (clients reconnect elsewhere), then stop accepting.
   * Shutdown: the whole service is stopping, so behave exactly like LEVEL=1 (503 to new requests).
   */
  const drain = async (reason: string, deadlineMs: number) => {
    if (draining) return;
    draining = true;
    // Past the deadline the supervisor kills us anyway; exiting ourselves first keeps logs clean.
    setTimeout(() => process.exit(1), deadlineMs).unref();
    log.info({ reason }, 'worker draining');
    if (isServiceShutdown(reason)) {
      await closeApp(app);
    } else {
      app.processState.draining = true;
      await new Promise((resolve) => setTimeout(resolve, Math.min(DRAIN_SETTLE_MS, deadlineMs / 2)));
      await app.close();
    }
    clearInterval(heartbeat);
    process.exit(0);
  };

  // From now on a drain request (or the primary going away: nothing holds the port any more) drains at once.
  onDrain = (reason, deadlineMs) => void drain(reason, deadlineMs);
  if (drainRequest) return void drain(drainRequest.reason, drainRequest.deadlineMs);
  send({ type: 'ready' });
  heartbeat = startHeartbeat(app, heartbeatIntervalMs(settings.WORKER_TIMEOUT * 1000));
}
