import pg from 'pg';
import { pino } from 'pino';
import { inject } from 'vitest';
import { createScratchDatabase } from '../../scripts/scratch-database.js';
import { migrateUp } from '../../src/db/migrate.js';

export interface TestDatabase {
  url: string;
  drop(): Promise<void>;
}

/** A fresh database per test file (migrated unless told not to), so reruns and parallel files never collide. */
export async function createTestDatabase(options: { migrate?: boolean } = {}): Promise<TestDatabase> {
  const database = await createScratchDatabase(inject('adminDatabaseUrl'), 'test');
  if (options.migrate ?? true) await migrateUp(database.url, pino({ level: 'silent' }));
  return database;
}

/**
 * A pool on a test database for a test's own queries. pool.end() resolves before its sockets close,
 * so a database dropped (WITH FORCE) right after may end a connection on its way out: the pool reports
 * that as an 'error' event no one listens to any more, which must not fail the run.
 */
export function openPool(url: string, max: number): pg.Pool {
  const pool = new pg.Pool({ connectionString: url, max });
  pool.on('error', () => {});
  return pool;
}
