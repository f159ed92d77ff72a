/** `node dist/migrate.js`: apply pending migrations once (a one-shot step in compose and Kubernetes). */
import { prepareDatabase } from './db/prepare.js';
import { createLogger } from './logger.js';
import { loadSettingsOrExit } from './runtime/startup.js';

const settings = loadSettingsOrExit();
const logger = createLogger(settings);
try {
  const database = await prepareDatabase(settings, logger, { migrate: true });
  await database.stop();
} catch (error) {
  logger.fatal(error instanceof Error ? error.message : String(error));
  process.exit(1);
}
