import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { afterAll, beforeAll } from 'vitest';
import { buildApp } from '../../src/app.js';
import { loadSettings, type Settings } from '../../src/settings.js';
import { createTestDatabase, type TestDatabase } from './database.js';
import { TEST_USER, TEST_USER_ENV } from './user.js';

export { TEST_USER } from './user.js';

export function testSettings(env: Record<string, string> = {}): Settings {
  return loadSettings({ NODE_ENV: 'test', LOG_LEVEL: 'silent', ...TEST_USER_ENV, ...env }, { envFile: null });
}

const signedIn = new WeakMap<FastifyInstance, Promise<{ authorization: string }>>();

/** Sign in as TEST_USER through the app (once per app); the headers protected routes need. */
export function authHeaders(app: FastifyInstance): Promise<{ authorization: string }> {
  let headers = signedIn.get(app);
  if (!headers) {
    headers = signIn(app);
    signedIn.set(app, headers);
  }
  return headers;
}

async function signIn(app: FastifyInstance): Promise<{ authorization: string }> {
  const response = await app.inject({
    method: 'POST',
    url: '/api/auth/token',
    payload: { grant_type: 'password', username: TEST_USER.email, password: TEST_USER.password },
  });
  if (response.statusCode !== 200) throw new Error(`sign-in failed: ${response.statusCode} ${response.body}`);
  return { authorization: `Bearer ${response.json().access_token}` };
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
