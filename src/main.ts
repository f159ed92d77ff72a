/**
 * The one production entry: `node dist/main.js`. Reads settings, then runs the app the way
 * LEVEL asks: one process (1), a cluster (2) or a supervised cluster (3, 4). Cluster workers
 * start from this same file and become app processes.
 *
 * Runners are imported lazily: the primary of a cluster never loads the app's code, so a broken
 * deploy fails in the workers (where the supervisor can keep the old ones serving), not here.
 */
import cluster from 'node:cluster';
import module from 'node:module';
import type { Logger } from 'pino';
import { EXIT_PORT_IN_USE, exitPortInUse, isAddressInUse } from './runtime/port-in-use.js';
import { isSupervisedWorker, reportMetricsToPrimary, workerIdentity } from './runtime/supervisor-link.js';
import type { Settings } from './settings.js';

// V8's code cache on disk (Node 22.1+, under the OS temp dir): the workers after the first, and every
// later start, skip compiling the same modules again (LEVEL=3 start to all workers ready, 2 workers,
// quiet machine: median 1.37 s vs 1.65 s without). NODE_DISABLE_COMPILE_CACHE=1 turns it off.
module.enableCompileCache?.();

// Only workers forked by our own primary carry a worker id; under another process manager
// (PM2 cluster mode, say) each process is simply a LEVEL=1 server.
const supervisedWorker = cluster.isWorker && isSupervisedWorker();
// A worker's first step, before settings and the app load: the primary's metric collection waits
// for every worker, booting ones included.
if (supervisedWorker) reportMetricsToPrimary('http');

const { loadSettingsOrExit } = await import('./runtime/startup.js');
const { createLogger } = await import('./logger.js');
const { reportTracing, startTracing } = await import('./telemetry/tracing.js');
const settings = loadSettingsOrExit({ signsTokens: true });
// Tracing starts in the processes that run the app (never in the primary), before the app loads.
const runsApp = supervisedWorker || settings.LEVEL === 1;
const tracing = runsApp
  ? await startTracing(settings, {
      role: 'http',
      ...(supervisedWorker ? { workerId: workerIdentity().workerId } : {}),
    })
  : undefined;
const logger = createLogger(settings, {}, tracing?.logFields);
(await import('./console-to-log.js')).routeConsoleToLogger(logger);
reportTracing(logger, settings);

async function run(): Promise<void> {
  let runner: (settings: Settings, logger: Logger) => Promise<void>;
  if (supervisedWorker) runner = (await import('./runtime/agent.js')).runClusterWorker;
  else if (settings.LEVEL === 1) runner = (await import('./runtime/single.js')).runSingle;
  else runner = (await import('./runtime/primary.js')).runPrimary;
  await runner(settings, logger);
}

run().catch((error: unknown) => {
  if (isAddressInUse(error)) {
    // A cluster worker only exits with the status: its primary says it once for the whole pool.
    if (supervisedWorker) process.exit(EXIT_PORT_IN_USE);
    exitPortInUse(logger, settings.PORT, 'PORT');
  }
  logger.fatal({ err: error }, `start-up failed: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
