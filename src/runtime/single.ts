import closeWithGrace from 'close-with-grace';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { buildApp } from '../app.js';
import { prepareDatabase } from '../db/prepare.js';
import { closeApp } from '../plugins/lifecycle.js';
import type { Settings } from '../settings.js';
import { stopTracing } from '../telemetry/tracing.js';

/** LEVEL=1: the app in this process, shut down gracefully on SIGTERM/SIGINT. */
export async function runSingle(settings: Settings, logger: Logger): Promise<void> {
  const database = await prepareDatabase(settings, logger);
  let app: FastifyInstance;
  try {
    app = await buildApp({ ...settings, DATABASE_URL: database.url }, { logger });
    await app.listen({ host: settings.HOST, port: settings.PORT });
  } catch (error) {
    await database.stop();
    throw error;
  }
  closeWithGrace(
    {
      delay: settings.GRACEFUL_TIMEOUT * 1000,
      logger: { error: (message: unknown) => logger.error(String(message)) },
      onSecondSignal: (signal) => logger.warn({ signal }, 'second signal: exiting now'),
      onTimeout: (delay) => logger.error({ delayMs: delay }, 'graceful timeout reached: exiting now'),
    },
    async ({ signal, err }) => {
      if (err) logger.error({ err }, 'uncaught error: shutting down');
      logger.info({ signal, gracefulTimeoutS: settings.GRACEFUL_TIMEOUT }, 'shutting down');
      const deadline = Date.now() + settings.GRACEFUL_TIMEOUT * 1000;
      await closeApp(app);
      await database.stop();
      // Last, so the spans of the shutdown itself go too; within the graceful timeout.
      await stopTracing(logger, deadline - Date.now() - 500);
      logger.info('stopped');
    },
  );
}
