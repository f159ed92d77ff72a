/**
 * The one production entry: `node dist/main.js`. Reads settings, then runs the app the way
 * LEVEL asks: one process (1), a cluster (2) or a supervised cluster (3, 4). Cluster workers
 * start from this same file and become app processes.
 */
import cluster from 'node:cluster';
import { createLogger } from './logger.js';
import { runClusterWorker } from './runtime/agent.js';
import { runPrimary } from './runtime/primary.js';
import { runSingle } from './runtime/single.js';
import { loadSettingsOrExit } from './runtime/startup.js';

const settings = loadSettingsOrExit();
const logger = createLogger(settings);

const run = cluster.isWorker ? runClusterWorker : settings.LEVEL === 1 ? runSingle : runPrimary;

run(settings, logger).catch((error: unknown) => {
  logger.fatal({ err: error }, `start-up failed: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
