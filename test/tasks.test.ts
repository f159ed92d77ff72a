import { type Job, type Queue, Worker } from 'bullmq';
import type { FastifyInstance } from 'fastify';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chainedSha256 } from '../src/routes/examples.js';
import { TaskService } from '../src/tasks/service.js';
import { authHeaders, buildTestApp } from './helpers/app.js';
import { createTestDatabase, type TestDatabase } from './helpers/database.js';
import type { ServerProcess } from './helpers/process.js';
import {
  buildTaskApp,
  dropPrefix,
  enqueue,
  REDIS_URL,
  startTaskWorker,
  status,
  taskEnv,
  uniquePrefix,
  waitForState,
} from './helpers/tasks.js';

let database: TestDatabase;
let app: FastifyInstance;
let worker: ServerProcess;
const prefix = uniquePrefix();

beforeAll(async () => {
  database = await createTestDatabase();
  // Retention travels with each job (set by the producer) and with the queue (event stream cap).
  const retention = { TASK_KEEP_COMPLETED_COUNT: '5', TASK_EVENTS_MAX_LEN: '100' };
  app = await buildTaskApp(database.url, prefix, retention);
  worker = await startTaskWorker(database.url, taskEnv(prefix, retention));
});
afterAll(async () => {
  await worker?.stop();
  await app?.close();
  await dropPrefix(prefix);
  await database?.drop();
});

async function outboxCount(key: string): Promise<number> {
  const client = new pg.Client({ connectionString: database.url });
  await client.connect();
  const { rows } = await client.query(
    'SELECT count(*)::int AS n FROM outbox_emails WHERE idempotency_key = $1',
    [key],
  );
  await client.end();
  return rows[0].n;
}

describe('task API with a real worker process', () => {
  it('runs report.generate in a worker thread, with progress, to the same digest as the route', async () => {
    const response = await app.inject({
      method: 'POST',
      headers: await authHeaders(app),
      url: '/api/tasks',
      payload: { name: 'report.generate', payload: { rounds: 50_000 } },
    });
    expect(response.statusCode).toBe(202);
    const { id } = response.json();
    expect(id).toMatch(/^cpu\.\w+$/);
    expect(response.headers.location).toBe(`/api/tasks/${id}`);
    const done = await waitForState(app, id, ['completed', 'failed']);
    expect(done).toMatchObject({
      name: 'report.generate',
      state: 'completed',
      progress: 100,
      attempts: 1,
      error: null,
    });
    expect(done.result).toEqual({ rounds: 50_000, digest: chainedSha256(50_000) });
  });

  it('retries email.send with backoff, sends once, and stays idempotent', async () => {
    const id = await enqueue(app, 'email.send', {
      payload: {
        to: 'user@example.com',
        subject: 'Hello',
        body: 'Hi',
        messageId: 'welcome-1',
        failFirstAttempts: 2,
      },
    });
    const done = await waitForState(app, id, ['completed', 'failed']);
    expect(done.state).toBe('completed');
    expect(done.attempts).toBe(3);
    expect(done.result).toEqual({ messageId: 'welcome-1', sent: true });
    // The same message again (a duplicate job): no second email.
    const again = await waitForState(
      app,
      await enqueue(app, 'email.send', {
        payload: { to: 'user@example.com', subject: 'Hello', body: 'Hi', messageId: 'welcome-1' },
      }),
      ['completed'],
    );
    expect(again.result).toEqual({ messageId: 'welcome-1', sent: false });
    expect(await outboxCount('welcome-1')).toBe(1);
    expect(
      worker.logs.filter(
        (line) => line.msg === 'job attempt failed; retrying' && line.jobId === id.split('.')[1],
      ),
    ).toHaveLength(2);
  });

  it('lands a job that always fails in the failed set with its error, without blocking the queue', async () => {
    const poison = await enqueue(app, 'email.send', {
      payload: { to: 'x@example.com', subject: 'poison', body: '', failFirstAttempts: 10 },
    });
    const healthy = await enqueue(app, 'email.send', {
      payload: { to: 'y@example.com', subject: 'ok', body: '' },
    });
    expect((await waitForState(app, healthy, ['completed'])).state).toBe('completed');
    const failed = await waitForState(app, poison, ['failed'], 60_000);
    expect(failed.error).toMatch(/mail provider unavailable/);
    expect(failed.attempts).toBe(5);
  }, 90_000);

  it('enqueues once per idempotency key', async () => {
    const body = { payload: { rounds: 10 }, idempotencyKey: 'nightly-2026-11-25' };
    const first = await enqueue(app, 'report.generate', body);
    const second = await enqueue(app, 'report.generate', body);
    expect(second).toBe(first);
    expect(await enqueue(app, 'report.generate', { ...body, idempotencyKey: 'other' })).not.toBe(first);
  });

  it('cancels a delayed job (removed) and a running one (its handler aborts within a second)', async () => {
    const delayed = await enqueue(app, 'report.generate', { payload: { rounds: 10 }, delayMs: 60_000 });
    expect((await status(app, delayed)).state).toBe('delayed');
    expect(
      (await app.inject({ method: 'DELETE', headers: await authHeaders(app), url: `/api/tasks/${delayed}` }))
        .statusCode,
    ).toBe(202);
    expect((await status(app, delayed)).state).toBe('cancelled');

    const running = await enqueue(app, 'report.generate', { payload: { rounds: 20_000_000 } });
    await waitForState(app, running, ['active']);
    const cancelledAt = Date.now();
    expect(
      (await app.inject({ method: 'DELETE', headers: await authHeaders(app), url: `/api/tasks/${running}` }))
        .statusCode,
    ).toBe(202);
    const cancelledLog = await worker.waitForLog(
      (line) => line.msg === 'job cancelled' && line.jobId === running.split('.')[1],
      10_000,
    );
    const finished = await waitForState(app, running, ['cancelled'], 10_000);
    expect(finished.state).toBe('cancelled');
    const failedLog = await worker.waitForLog(
      (line) => line.msg === 'job failed' && line.jobId === running.split('.')[1],
      10_000,
    );
    // The handler stopped within a second of hearing of the cancel, on the worker's own clock...
    expect(Date.parse(failedLog.time as string) - Date.parse(cancelledLog.time as string)).toBeLessThan(1000);
    // ...and long before 20 M rounds (about 30 s here) could finish.
    expect(Date.now() - cancelledAt).toBeLessThan(10_000);
    // A finished job cannot be cancelled.
    const quick = await enqueue(app, 'report.generate', { payload: { rounds: 1 } });
    await waitForState(app, quick, ['completed']);
    expect(
      (await app.inject({ method: 'DELETE', headers: await authHeaders(app), url: `/api/tasks/${quick}` }))
        .statusCode,
    ).toBe(409);
  });

  it('keeps Redis bounded: completed jobs trimmed to TASK_KEEP_COMPLETED_COUNT, event stream capped', async () => {
    const ids = [];
    for (let index = 0; index < 12; index += 1)
      ids.push(await enqueue(app, 'report.generate', { payload: { rounds: 1 } }));
    await waitForState(app, ids.at(-1) as string, ['completed']);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const counts = await app.tasks?.counts();
    expect(counts?.cpu.completed).toBeLessThanOrEqual(6);
    expect((await app.inject(`/api/tasks/${ids[0]}`)).statusCode).toBe(404);
    const redis = new Redis(REDIS_URL);
    expect(await redis.hget(`${prefix}:cpu:meta`, 'opts.maxLenEvents')).toBe('100');
    redis.disconnect();
  });

  it('answers bad input with clear 4xx', async () => {
    const unknown = await app.inject({
      method: 'POST',
      headers: await authHeaders(app),
      url: '/api/tasks',
      payload: { name: 'nope.nothing', payload: {} },
    });
    expect(unknown.statusCode).toBe(400);
    expect(unknown.json().detail).toBe(
      'Unknown task "nope.nothing"; known tasks: report.generate, email.send, maintenance.cleanup, system.noop',
    );
    const nameless = await app.inject({
      method: 'POST',
      headers: await authHeaders(app),
      url: '/api/tasks',
      payload: { payload: {} },
    });
    expect(nameless.json().errors).toContainEqual(expect.objectContaining({ field: 'name' }));
    const invalid = await app.inject({
      method: 'POST',
      headers: await authHeaders(app),
      url: '/api/tasks',
      payload: { name: 'email.send', payload: { to: 'not-an-email', subject: 'x', body: 'y' } },
    });
    expect(invalid.statusCode).toBe(400);
    expect(invalid.json().errors).toEqual([expect.objectContaining({ field: 'payload/to' })]);
    const missing = await app.inject({
      method: 'POST',
      headers: await authHeaders(app),
      url: '/api/tasks',
      payload: { name: 'report.generate', payload: {} },
    });
    expect(missing.json().errors[0].field).toBe('payload/rounds');
    expect(
      (
        await app.inject({
          method: 'POST',
          headers: await authHeaders(app),
          url: '/api/tasks',
          payload: { name: 'report.generate', payload: { rounds: 1 }, priority: 0 },
        })
      ).statusCode,
    ).toBe(400);
    expect(
      (
        await app.inject({
          method: 'POST',
          headers: await authHeaders(app),
          url: '/api/tasks',
          payload: { name: 'report.generate', rounds: 1 },
        })
      ).statusCode,
    ).toBe(400);
    expect((await app.inject('/api/tasks/not-an-id')).statusCode).toBe(400);
    expect((await app.inject('/api/tasks/cpu.999999')).statusCode).toBe(404);
    expect(
      (await app.inject({ method: 'DELETE', headers: await authHeaders(app), url: '/api/tasks/bogus.1' }))
        .statusCode,
    ).toBe(400);
  });

  it('reports Redis in readiness, queue depth and worker figures in metrics, and documents the routes', async () => {
    const ready = await app.inject('/health/ready');
    expect(ready.json().checks.redis.status).toBe('up');
    const metrics = await app.inject('/metrics');
    expect(metrics.body).toMatch(/^task_queue_jobs\{queue="cpu",state="completed"\} \d+$/m);
    const workerMetrics = await (await fetch(`${worker.baseUrl}/metrics`)).text();
    expect(workerMetrics).toMatch(
      /^task_jobs_completed_total\{queue="cpu",task="report.generate"\} [1-9]\d*$/m,
    );
    expect(workerMetrics).toMatch(/^task_jobs_retried_total\{queue="default",task="email.send"\} [1-9]\d*$/m);
    const spec = (await app.inject('/openapi.json')).json();
    expect(Object.keys(spec.paths)).toEqual(expect.arrayContaining(['/api/tasks', '/api/tasks/{id}']));
  });

  it('declares the recurring maintenance.cleanup as a job scheduler', async () => {
    const schedulers = await app.tasks?.schedulers();
    expect(schedulers).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ name: 'maintenance.cleanup', pattern: '0 * * * *' }),
      ]),
    );
  });
});

describe('task API when background tasks are off or Redis is unreachable', () => {
  it('answers 404 saying background tasks are disabled', async () => {
    const off = await buildTestApp(database.url);
    const response = await off.inject({
      method: 'POST',
      headers: await authHeaders(off),
      url: '/api/tasks',
      payload: { name: 'report.generate', payload: { rounds: 1 } },
    });
    expect(response.statusCode).toBe(404);
    expect(response.json().detail).toMatch(/Background tasks are disabled/);
    await off.close();
  });

  it('answers 503 with Retry-After at once when Redis is unreachable, and readiness says so', async () => {
    const down = await buildTaskApp(database.url, prefix, { REDIS_URL: 'redis://127.0.0.1:1' });
    const startedAt = Date.now();
    const response = await down.inject({
      method: 'POST',
      headers: await authHeaders(down),
      url: '/api/tasks',
      payload: { name: 'report.generate', payload: { rounds: 1 } },
    });
    expect(Date.now() - startedAt).toBeLessThan(1000);
    expect(response.statusCode).toBe(503);
    expect(response.headers['retry-after']).toBeDefined();
    expect((await down.inject('/api/tasks/cpu.1')).statusCode).toBe(503);
    const ready = await down.inject('/health/ready');
    expect(ready.statusCode).toBe(503);
    expect(ready.json().checks.redis.status).toBe('down');
    await down.close();
  });
});

describe('task status read while the job finishes', () => {
  it('never reports "completed" with the data of the attempt before', async () => {
    const racePrefix = uniquePrefix();
    const connection = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
    await connection.ping();
    const keep = { age: 3600, count: 100 };
    const service = new TaskService(connection, racePrefix, {
      keepCompleted: keep,
      keepFailed: keep,
      eventsMaxLen: 100,
    });
    const id = await service.enqueue('system.noop', {});
    // A worker driven by hand: the job is active until this test completes it.
    const manual = new Worker('default', null, { connection, prefix: racePrefix });
    const token = 'status-race';
    const job = (await manual.getNextJob(token, { block: false })) as Job;
    expect(`default.${job.id}`).toBe(id);
    // The job completes right after the status makes its first read, whichever read that is.
    const queue = (service as unknown as { queue(name: string): Queue }).queue('default');
    let finishedMidRead = false;
    const finishAfter =
      <Args extends unknown[], Result>(read: (...args: Args) => Promise<Result>) =>
      async (...args: Args): Promise<Result> => {
        const result = await read(...args);
        if (!finishedMidRead) {
          finishedMidRead = true;
          await job.moveToCompleted({ sent: true }, token, false);
        }
        return result;
      };
    queue.getJob = finishAfter(queue.getJob.bind(queue));
    queue.getJobState = finishAfter(queue.getJobState.bind(queue));
    const status = await service.getStatus(id);
    expect(finishedMidRead).toBe(true);
    expect(status).toMatchObject({ state: 'completed', attempts: 1, result: { sent: true } });
    expect(status?.timestamps.finishedAt).not.toBeNull();
    await manual.close();
    await service.close();
    await dropPrefix(racePrefix);
    connection.disconnect();
  });
});
