import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { afterAll, beforeAll } from 'vitest';
import { buildApp } from '../../src/app.js';
import { loadSettings, type Settings } from '../../src/settings.js';
import { createTestDatabase, type TestDatabase } from './database.js';

export function testSettings(env: Record<string, string> = {}): Settings {
  return loadSettings({ NODE_ENV: 'test', LOG_LEVEL: 'silent', ...env }, { envFile: null });
}

/** The real app (real PostgreSQL) for app.inject tests; close it in afterAll. */
export async function buildTestApp(
  databaseUrl: string,
  env: Record<string, string> = {},
): Promise<FastifyInstance> {
  const settings = testSettings({ DATABASE_URL: databaseUrl, ...env });
  return buildApp(settings, { logger: pino({ level: 'silent' }) });
}

/**
 * The real app on a fresh database for the tests of one file: built in beforeAll, closed and dropped
 * in afterAll. Read `.app` inside tests.
 */
export function useTestApp(env: Record<string, string> = {}): { app: FastifyInstance; databaseUrl: string } {
  const state = {} as { app: FastifyInstance; databaseUrl: string };
  let database: TestDatabase | undefined;
  beforeAll(async () => {
    database = await createTestDatabase();
    state.databaseUrl = database.url;
    state.app = await buildTestApp(database.url, env);
  });
  afterAll(async () => {
    await state.app?.close();
    await database?.drop();
  });
  return state;
}
