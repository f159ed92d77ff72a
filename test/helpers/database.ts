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
