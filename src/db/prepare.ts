import type { Logger } from 'pino';
import { migrationsUrlOf, type Settings } from '../settings.js';
import { redactUrl } from '../settings-errors.js';

export interface PreparedDatabase {
  url: string;
  /** Stops the embedded PostgreSQL if this process started it; otherwise does nothing. */
  stop(): Promise<void>;
}

/**
 * Resolve the database every app process will use: DATABASE_URL, or (outside production) the
 * embedded PostgreSQL, started once here and shared by every worker. Outside production pending
 * migrations are applied first; in production they are a separate step (`node dist/migrate.js`).
 * Migrations use MIGRATIONS_DATABASE_URL when set (a direct connection; the app's may be pooled).
 */
export async function prepareDatabase(
  settings: Settings,
  logger: Logger,
  options: { migrate?: boolean } = {},
): Promise<PreparedDatabase> {
  let database: PreparedDatabase;
  if (settings.DATABASE_URL) {
    database = { url: settings.DATABASE_URL, stop: async () => {} };
  } else {
    // The embedded server's code (and the migration runner below) load only when used.
    const { startEmbeddedPostgres } = await import('./embedded.js');
    database = await startEmbeddedPostgres(
      { port: settings.EMBEDDED_PG_PORT, dataDir: settings.EMBEDDED_PG_DIR },
      logger,
    );
  }
  const migrate = options.migrate ?? settings.NODE_ENV !== 'production';
  if (migrate) {
    // A session of its own (advisory lock, ALTER DATABASE): MIGRATIONS_DATABASE_URL when the app's
    // DATABASE_URL goes through PgBouncer.
    const url = migrationsUrlOf(settings, database.url);
    try {
      const { applyDatabaseDefaults, migrateUp } = await import('./migrate.js');
      await migrateUp(url, logger);
      await applyDatabaseDefaults(url, { statementTimeoutMs: settings.DB_STATEMENT_TIMEOUT_MS }, logger);
    } catch (error) {
      await database.stop();
      const reason = error instanceof Error ? error.message : String(error);
      throw new Error(`cannot apply migrations to ${redactUrl(url)}: ${reason}`);
    }
  }
  return database;
}
