/** A Redis that can evict keys (maxmemory-policy allkeys-lru) loses BullMQ jobs: warned, and refused in production. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTestApp } from './helpers/app.js';
import { createTestDatabase, type TestDatabase } from './helpers/database.js';
import { freePort, startProcess } from './helpers/process.js';
import { startRedisServer } from './helpers/redis-server.js';
import { uniquePrefix } from './helpers/tasks.js';

let database: TestDatabase;
let redis: Awaited<ReturnType<typeof startRedisServer>>;

beforeAll(async () => {
  [database, redis] = await Promise.all([
    createTestDatabase(),
    startRedisServer(['--maxmemory', '64mb', '--maxmemory-policy', 'allkeys-lru']),
  ]);
});
afterAll(async () => {
  await redis?.stop();
  await database?.drop();
});

const workerEnv = (extra: Record<string, string>) => ({
  DATABASE_URL: database.url,
  REDIS_URL: redis.url,
  QUEUE_PREFIX: uniquePrefix(),
  TASK_WORKER_HEALTH_PORT: '0',
  ...extra,
});

describe('maxmemory-policy allkeys-lru', () => {
  it('in production a task worker refuses to start, in one line naming the override', async () => {
    const worker = startProcess(workerEnv({ NODE_ENV: 'production' }), 'dist/worker.js');
    const exit = await worker.exited;
    await worker.outputEnded;
    expect(exit.code).toBe(78);
    const refusals = worker.logs.filter((line) => /maxmemory-policy/.test(line.msg ?? ''));
    expect(refusals).toHaveLength(1);
    expect(refusals[0]?.msg).toMatch(/allkeys-lru.*REDIS_ALLOW_EVICTION=true/);
    expect(worker.logs.some((line) => line.msg === 'task worker ready')).toBe(false);
    expect(worker.nonJsonLines()).toEqual([]);
  });

  it('with REDIS_ALLOW_EVICTION=true (or outside production) it starts and warns once', async () => {
    const worker = startProcess(
      workerEnv({
        NODE_ENV: 'production',
        REDIS_ALLOW_EVICTION: 'true',
        TASK_WORKER_HEALTH_PORT: String(await freePort()),
      }),
      'dist/worker.js',
    );
    try {
      await worker.waitForLog((line) => line.msg === 'task worker ready');
      const warnings = worker.logs.filter((line) => /maxmemory-policy is allkeys-lru/.test(line.msg ?? ''));
      expect(warnings).toHaveLength(1);
      expect(warnings[0]?.level).toBe(40);
    } finally {
      await worker.stop();
    }
    expect(worker.nonJsonLines()).toEqual([]);
  });

  it('the API reports it in its readiness details', async () => {
    const app = await buildTestApp(database.url, {
      ENABLE_BACKGROUND_TASKS: 'true',
      REDIS_URL: redis.url,
      QUEUE_PREFIX: uniquePrefix(),
    });
    try {
      const response = await app.inject('/health/ready');
      expect(response.statusCode).toBe(200);
      const body = response.json() as { checks: Record<string, { status: string; warning?: string }> };
      expect(body.checks.redis?.status).toBe('up');
      expect(body.checks.redis?.warning).toMatch(/maxmemory-policy is allkeys-lru.*noeviction/);
    } finally {
      await app.close();
    }
  });
});
