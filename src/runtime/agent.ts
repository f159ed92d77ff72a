/**
 * The piece of the runtime that lives inside each cluster worker: it runs the app, tells the
 * supervisor when it is ready, sends a heartbeat from the event loop, and drains on request.
 */
import type { Logger } from 'pino';
import { buildApp } from '../app.js';
import { closeApp } from '../plugins/lifecycle.js';
import { listensWithReusePort, type Settings } from '../settings.js';
import { stopTracing } from '../telemetry/tracing.js';
import { listenReusePort } from './listeners.js';
import { isPrimaryMessage } from './protocol.js';
import { linkToSupervisor, sendToPrimary, workerIdentity } from './supervisor-link.js';

/** Time a draining worker keeps serving (every response closing its connection) before it stops accepting. */
const DRAIN_SETTLE_MS = 1000;
const METRICS_TIMEOUT_MS = 5000;

const isServiceShutdown = (reason: string) => reason === 'shutdown';

/** Ask the primary for every worker's metrics, aggregated (prom-client cluster mode). */
function clusterMetricsCollector(): () => Promise<string> {
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
      sendToPrimary({ type: 'metrics-request', requestId });
    });
}

export async function runClusterWorker(settings: Settings, logger: Logger): Promise<void> {
  const identity = workerIdentity();
  const log = logger.child({ worker: identity.workerId });
  const link = linkToSupervisor({
    workerTimeoutMs: settings.WORKER_TIMEOUT * 1000,
    gracefulTimeoutMs: settings.GRACEFUL_TIMEOUT * 1000,
    served: () => app.processState.requestsServed,
  });
  const app = await buildApp(settings, {
    logger: log,
    identity,
    metrics: { collect: clusterMetricsCollector() },
  });
  // SO_REUSEPORT: this worker owns listeners and the kernel spreads new connections over the
  // workers' sockets. Otherwise the primary's round-robin handle passes every connection through
  // the primary over IPC, which caps clients that open a connection per request.
  const listeners = listensWithReusePort(settings)
    ? await listenReusePort(app, { host: settings.HOST, port: settings.PORT })
    : undefined;
  if (!listeners) await app.listen({ host: settings.HOST, port: settings.PORT });
  const close = (stop: () => Promise<void>) => Promise.all([stop(), listeners?.close()]);

  /**
   * Recycle, reload, scale-down: other workers take the traffic, so keep serving for a moment with
   * every response closing its connection (clients reconnect elsewhere), then stop accepting.
   * Shutdown: the whole service is stopping, so behave exactly like LEVEL=1 (503 to new requests).
   */
  link.ready(async (reason, deadlineMs) => {
    log.info({ reason }, 'worker draining');
    const deadline = Date.now() + deadlineMs;
    if (isServiceShutdown(reason)) {
      await close(() => closeApp(app));
    } else {
      app.processState.draining = true;
      await new Promise((resolve) => setTimeout(resolve, Math.min(DRAIN_SETTLE_MS, deadlineMs / 2)));
      await close(() => app.close());
    }
    // The spans still queued go out in what is left of the drain time.
    await stopTracing(log, deadline - Date.now() - 500);
  });
}
