import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { buildApp } from '../../src/app.js';
import { loadSettings, type Settings } from '../../src/settings.js';

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
