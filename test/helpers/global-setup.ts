import { pino } from 'pino';
import type { TestProject } from 'vitest/node';
import { type EmbeddedPostgresHandle, startEmbeddedPostgres } from '../../src/db/embedded.js';

declare module 'vitest' {
  export interface ProvidedContext {
    adminDatabaseUrl: string;
  }
}

let embedded: EmbeddedPostgresHandle | undefined;

/**
 * One PostgreSQL for the run: TEST_DATABASE_URL or DATABASE_URL when set (CI uses the machine's),
 * otherwise the embedded one under .data/test-postgres. Each test file makes its own database in it.
 */
export async function setup(project: TestProject): Promise<void> {
  let url = process.env.TEST_DATABASE_URL || process.env.DATABASE_URL;
  if (!url) {
    embedded = await startEmbeddedPostgres(
      { port: 54339, dataDir: '.data/test-postgres' },
      pino({ level: 'warn' }),
    );
    url = embedded.url;
  }
  project.provide('adminDatabaseUrl', url);
}

export async function teardown(): Promise<void> {
  await embedded?.stop();
}
