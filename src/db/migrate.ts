import { fileURLToPath } from 'node:url';
import { runner } from 'node-pg-migrate';
import type { Logger } from 'pino';

export const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations', import.meta.url));

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
    migrationsTable: 'pgmigrations',
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
