import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTestApp } from './helpers/app.js';
import { createTestDatabase, type TestDatabase } from './helpers/database.js';
import { ROOT } from './helpers/process.js';
import { taskEnv, uniquePrefix } from './helpers/tasks.js';

let database: TestDatabase;
let tasksOn: FastifyInstance;
let tasksOff: FastifyInstance;

beforeAll(async () => {
  database = await createTestDatabase();
  tasksOn = await buildTestApp(database.url, taskEnv(uniquePrefix()));
  tasksOff = await buildTestApp(database.url);
});
afterAll(async () => {
  await tasksOn?.close();
  await tasksOff?.close();
  await database?.drop();
});

describe('/admin/queues while the dashboard is off', () => {
  it.each(['/admin/queues', '/admin/queues/api/queues'])(
    '%s answers a 404 problem saying how to enable it',
    async (url) => {
      const response = await tasksOn.inject(url);
      expect(response.statusCode).toBe(404);
      expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
      const body = response.json() as { detail: string };
      expect(body.detail).toMatch(/jobs dashboard is off.*BULL_BOARD_USER and BULL_BOARD_PASSWORD.*\.env/);
      expect(body.detail).not.toContain('ENABLE_BACKGROUND_TASKS');
    },
  );

  it('names background tasks too when they are off', async () => {
    const body = (await tasksOff.inject('/admin/queues')).json() as { detail: string };
    expect(body.detail).toMatch(/BULL_BOARD_USER.*ENABLE_BACKGROUND_TASKS=true \(or LEVEL=4\)/);
  });

  it('is one README line away', () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const line = readme.split('\n').find((text) => text.includes('/admin/queues'));
    expect(line).toMatch(/BULL_BOARD_USER/);
    expect(line).toMatch(/BULL_BOARD_PASSWORD/);
  });
});
