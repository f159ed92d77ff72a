import pg from 'pg';
import { inject } from 'vitest';
import { createScratchDatabase } from '../../../scripts/scratch-database.js';
import type { TestDatabase } from '../../helpers/database.js';

/**
 * A fresh database with no tables at all (test/helpers/database.ts migrates its databases; the image
 * test needs an empty one to see `node dist/migrate.js` do the work).
 */
export async function createEmptyDatabase(): Promise<TestDatabase> {
  return createScratchDatabase(inject('adminDatabaseUrl'), 'deploy');
}

/** Names of the tables in the public schema. */
export async function tableNames(url: string): Promise<string[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const result = await client.query<{ table_name: string }>(
      "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name",
    );
    return result.rows.map((row) => row.table_name);
  } finally {
    await client.end();
  }
}
