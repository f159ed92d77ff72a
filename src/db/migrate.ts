import { runner } from 'node-pg-migrate';
import pg from 'pg';
import type { Logger } from 'pino';
import { MIGRATIONS_DIR, MIGRATIONS_TABLE } from './migration-status.js';

/**
 * Apply pending SQL migrations. node-pg-migrate holds a PostgreSQL advisory lock while it runs;
 * in "wait" mode a second process blocks until the first is done, then finds nothing to apply,
 * so replicas starting together never apply a migration twice.
 */
export async function migrateUp(databaseUrl: string, logger: Logger): Promise<string[]> {
  const applied = await runner({
    databaseUrl,
    dir: MIGRATIONS_DIR,
    direction: 'up',
    migrationsTable: MIGRATIONS_TABLE,
    advisoryLockMode: 'wait',
    singleTransaction: true,
    checkOrder: true,
    logger: {
      debug: () => {},
      info: () => {},
      warn: (message: string) => logger.warn(message),
      error: (message: string) => logger.error(message),
    },
  });
  const names = applied.map((migration) => migration.name);
  logger.info({ applied: names }, names.length > 0 ? 'migrations applied' : 'migrations up to date');
  return names;
}

export interface DatabaseDefaults {
  statementTimeoutMs: number;
}

/**
 * Session settings as defaults of the database (`ALTER DATABASE ... SET`), which every new server
 * connection picks up, PgBouncer's included; a startup parameter or a session SET would not survive
 * transaction pooling. Run by the migrate step, which has a direct session. Without the privilege
 * (not the database owner) it warns with the statement to run, and migrations still count as done.
 */
export async function applyDatabaseDefaults(
  databaseUrl: string,
  defaults: DatabaseDefaults,
  logger: Logger,
): Promise<void> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  let statement = '';
  try {
    const { rows } = await client.query<{ name: string }>('SELECT current_database() AS name');
    const database = client.escapeIdentifier((rows[0] as { name: string }).name);
    statement =
      defaults.statementTimeoutMs > 0
        ? `ALTER DATABASE ${database} SET statement_timeout = '${Math.trunc(defaults.statementTimeoutMs)}ms'`
        : `ALTER DATABASE ${database} RESET statement_timeout`;
    await client.query(statement);
    logger.info({ statementTimeoutMs: defaults.statementTimeoutMs }, 'database defaults applied');
  } catch (error) {
    if ((error as { code?: string }).code !== '42501') throw error;
    logger.warn({ statement }, 'no privilege to set database defaults; run this as the database owner');
  } finally {
    await client.end();
  }
}
