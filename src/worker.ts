/**
 * Task-worker entry: `node dist/worker.js` (`npm run worker`, `make worker`). Runs BullMQ workers for
 * every registered task. Standalone (its own container or Kubernetes Deployment) it serves liveness
 * and metrics on TASK_WORKER_HEALTH_PORT; forked by the LEVEL=4 primary it speaks the supervisor
 * protocol instead (heartbeat, drain, reload).
 */
import { createServer } from 'node:http';
import closeWithGrace from 'close-with-grace';
import client from 'prom-client';
import { listenOrExit } from './runtime/port-in-use.js';
import {
  isSupervisedWorker,
  linkToSupervisor,
  reportMetricsToPrimary,
  workerIdentity,
} from './runtime/supervisor-link.js';

const supervised = isSupervisedWorker();
// First step under the LEVEL=4 primary, before settings and the task code load: its metric
// collection waits for every worker, booting ones included.
if (supervised) reportMetricsToPrimary('tasks');

const { loadSettingsOrExit } = await import('./runtime/startup.js');
const { createLogger } = await import('./logger.js');
const { reportTracing, startTracing, stopTracing } = await import('./telemetry/tracing.js');
const settings = loadSettingsOrExit();
// Before the task code (BullMQ, ioredis, pg) loads, so that it is instrumented.
const tracing = await startTracing(settings, {
  role: 'task-worker',
  ...(supervised ? { workerId: workerIdentity().workerId } : {}),
});
const logger = createLogger(
  settings,
  { role: 'task-worker', ...(supervised ? { worker: workerIdentity().workerId } : {}) },
  tracing?.logFields,
);
(await import('./console-to-log.js')).routeConsoleToLogger(logger);
reportTracing(logger, settings);

// Process figures (memory, event-loop lag, GC), as the API processes have.
client.collectDefaultMetrics();

async function main(): Promise<void> {
  const link = supervised
    ? linkToSupervisor({
        workerTimeoutMs: settings.WORKER_TIMEOUT * 1000,
        gracefulTimeoutMs: settings.TASK_SHUTDOWN_TIMEOUT * 1000 + 5000,
        served: () => tasks?.jobsProcessed() ?? 0,
        // Booted but not ready: the supervisor's status shows the worker waiting for Redis.
        waitingFor: () => (tasks?.isConnected() === false ? 'redis' : undefined),
      })
    : undefined;
  // The task code (BullMQ, the definitions, the database driver) loads after the responder above.
  const [{ createPool }, { prepareDatabase }, { lazyPool }, runner, relayModule] = await Promise.all([
    import('./db/pool.js'),
    import('./db/prepare.js'),
    import('./tasks/processor.js'),
    import('./tasks/runner.js'),
    import('./tasks/relay.js'),
  ]);
  // The LEVEL=4 primary passes the database it prepared; standalone we resolve it ourselves.
  const database = settings.DATABASE_URL
    ? { url: settings.DATABASE_URL, stop: async () => {} }
    : await prepareDatabase(settings, logger);
  const db = lazyPool(() =>
    createPool(
      {
        connectionString: database.url,
        size: settings.DB_POOL_SIZE,
        connectTimeoutMs: settings.DB_CONNECT_TIMEOUT_MS,
      },
      logger,
    ),
  );
  let tasks: Awaited<ReturnType<typeof runner.startTaskWorkers>> | undefined;
  tasks = await runner.startTaskWorkers(settings, logger, database.url, db);
  const running = tasks;
  // Tasks committed with a write (the outbox, src/tasks/outbox.ts) reach Redis from here: the
  // processes that need both PostgreSQL and Redis anyway, and the fewest that do.
  const relay = relayModule.startOutboxRelay(settings, logger, database.url);
  // Whatever is left of the drain time (TASK_SHUTDOWN_TIMEOUT + 5 s) flushes the last spans.
  const stop = async () => {
    const deadline = Date.now() + (settings.TASK_SHUTDOWN_TIMEOUT + 5) * 1000;
    await relay.stop();
    await running.close(settings.TASK_SHUTDOWN_TIMEOUT * 1000);
    await db().end();
    await database.stop();
    await stopTracing(logger, deadline - Date.now() - 500);
  };
  // Ready means taking jobs, which needs Redis: said once it answers (and keeps jobs), not before.
  void running.whenConnected().then(async () => {
    await checkEvictionPolicy(await running.evictionPolicy().catch(() => undefined));
    logger.info(
      {
        concurrency: settings.TASK_CONCURRENCY,
        cpuConcurrency: settings.TASK_CPU_CONCURRENCY,
        prefix: settings.QUEUE_PREFIX,
      },
      'task worker ready',
    );
  });

  if (link) {
    link.ready(async (reason) => {
      logger.info({ reason }, 'task worker draining');
      await stop();
    });
    return;
  }

  const health =
    settings.TASK_WORKER_HEALTH_PORT > 0
      ? await serveHealth(() =>
          running.isHealthy() ? undefined : running.isConnected() ? 'stopping' : 'redis',
        )
      : undefined;
  closeWithGrace(
    {
      delay: (settings.TASK_SHUTDOWN_TIMEOUT + 5) * 1000,
      logger: { error: (message: unknown) => logger.error(String(message)) },
    },
    async ({ signal, err }) => {
      if (err) logger.error({ err }, 'uncaught error: shutting down');
      logger.info({ signal }, 'task worker shutting down');
      health?.close();
      await stop();
      logger.info('task worker stopped');
    },
  );
}

/** An evicting Redis loses jobs: warned once, and refused in production unless REDIS_ALLOW_EVICTION. */
async function checkEvictionPolicy(policy: string | undefined): Promise<void> {
  const { evictionVerdict, evictionWarning } = await import('./redis/eviction-policy.js');
  const verdict = evictionVerdict(policy, {
    production: settings.NODE_ENV === 'production',
    allowEviction: settings.REDIS_ALLOW_EVICTION,
  });
  if (verdict === 'safe' || policy === undefined) return;
  if (verdict === 'warn') return void logger.warn({ policy }, evictionWarning(policy));
  const { EXIT_CONFIG } = await import('./runtime/startup.js');
  logger.fatal(
    { policy, setting: 'REDIS_ALLOW_EVICTION' },
    `${evictionWarning(policy)}; task workers refuse to start in production (REDIS_ALLOW_EVICTION=true overrides)`,
  );
  process.exit(EXIT_CONFIG);
}

/**
 * Liveness for probes: 200 while this process takes jobs, 503 (saying what it waits for) when it
 * cannot; /metrics for Prometheus.
 */
async function serveHealth(unavailableReason: () => string | undefined) {
  const server = createServer((request, response) => {
    if (request.url === '/health/live' || request.url === '/health') {
      const waitingFor = unavailableReason();
      response.writeHead(waitingFor ? 503 : 200, { 'content-type': 'application/json' });
      response.end(JSON.stringify(waitingFor ? { status: 'unavailable', waitingFor } : { status: 'ok' }));
    } else if (request.url === '/metrics') {
      void client.register.metrics().then((text) => {
        response.writeHead(200, { 'content-type': client.register.contentType });
        response.end(text);
      });
    } else {
      response.writeHead(404, { 'content-type': 'application/problem+json' });
      response.end(
        JSON.stringify({
          type: 'about:blank',
          title: 'Not Found',
          status: 404,
          detail: `No route for ${request.url}`,
        }),
      );
    }
  });
  await listenOrExit(
    server,
    settings.TASK_WORKER_HEALTH_PORT,
    settings.HOST,
    'TASK_WORKER_HEALTH_PORT',
    logger,
  );
  logger.info(
    { port: settings.TASK_WORKER_HEALTH_PORT, host: settings.HOST },
    `task worker health and metrics on http://${settings.HOST}:${settings.TASK_WORKER_HEALTH_PORT} (/health/live, /metrics)`,
  );
  return server;
}

main().catch((error: unknown) => {
  logger.fatal(
    { err: error },
    `task worker start-up failed: ${error instanceof Error ? error.message : String(error)}`,
  );
  process.exit(1);
});
