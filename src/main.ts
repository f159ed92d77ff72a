/**
 * The one production entry: `node dist/main.js`. Reads settings, then runs the app the way
 * LEVEL asks: one process (1), a cluster (2) or a supervised cluster (3, 4).
 */
import { createLogger } from './logger.js';
import { runSingle } from './runtime/single.js';
import { loadSettingsOrExit } from './runtime/startup.js';

const settings = loadSettingsOrExit();
const logger = createLogger(settings);

runSingle(settings, logger).catch((error: unknown) => {
  logger.fatal({ err: error }, `start-up failed: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
