import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authHeaders } from './helpers/app.js';
import { copyOfBuild, logsWith, slowModuleLoad, startCluster, until } from './helpers/cluster.js';
import { createTestDatabase, type TestDatabase } from './helpers/database.js';
import { samplesOf } from './helpers/metrics.js';
import { freePort, isAlive, portOpen, type ServerProcess, waitForHttp } from './helpers/process.js';
import {
  buildTaskApp,
  dropPrefix,
  enqueue,
  startTaskWorker,
  taskEnv,
  uniquePrefix,
  waitForState,
} from './helpers/tasks.js';
import { signInOverHttp } from './helpers/user.js';

let database: TestDatabase;
const processes: ServerProcess[] = [];
const apps: FastifyInstance[] = [];
const prefixes: string[] = [];

beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await Promise.all(processes.map((child) => child.stop('SIGKILL')));
  await Promise.all(apps.map((app) => app.close()));
  for (const prefix of prefixes) await dropPrefix(prefix);
  await database?.drop();
});

function newPrefix(): string {
  const prefix = uniquePrefix();
  prefixes.push(prefix);
  return prefix;
}

async function sentKeys(prefix: string): Promise<string[]> {
  const client = new pg.Client({ connectionString: database.url });
  await client.connect();
  const { rows } = await client.query(
    'SELECT idempotency_key FROM outbox_emails WHERE idempotency_key LIKE $1 ORDER BY 1',
    [`${prefix}-%`],
  );
  await client.end();
  return rows.map((row) => row.idempotency_key as string);
}

describe('at-least-once delivery', () => {
  it('completes every job exactly once in the results when a worker is killed -9 mid-run', async () => {
    const prefix = newPrefix();
    // A short lock so the killed worker's jobs come back soon; not so short that a live worker on a
    // loaded machine misses a renewal (every half lock) twice and sees its own job fail as stalled.
    const env = taskEnv(prefix, { TASK_LOCK_DURATION: '4', TASK_CONCURRENCY: '5' });
    const app = await buildTaskApp(database.url, prefix, env);
    apps.push(app);
    const total = 600;
    const ids: string[] = [];
    for (let index = 0; index < total; index += 1) {
      ids.push(
        await enqueue(app, 'email.send', {
          payload: {
            to: 'bulk@example.com',
            subject: `#${index}`,
            latencyMs: 50,
            body: 'x',
            messageId: `${prefix}-${String(index).padStart(3, '0')}`,
          },
        }),
      );
    }
    const first = await startTaskWorker(database.url, env);
    const second = await startTaskWorker(database.url, env);
    processes.push(first, second);
    // Kill the first worker while the queue is still full, so it dies with jobs in hand.
    await until(async () => (await sentKeys(prefix)).length >= 30, 20_000, 'the first jobs to complete');
    first.child.kill('SIGKILL');
    for (const id of ids)
      expect((await waitForState(app, id, ['completed', 'failed'], 60_000)).state).toBe('completed');
    const keys = await sentKeys(prefix);
    expect(keys).toHaveLength(total);
    expect(new Set(keys).size).toBe(total);
    // The killed worker's jobs were found stalled (lock expired) and run again by the other one.
    expect(logsWith(second, 'job stalled; retrying').length).toBeGreaterThan(0);
  }, 120_000);
});

describe('Redis restart', () => {
  it('API and worker reconnect by themselves; readiness reports Redis down meanwhile; nothing crashes', async () => {
    const redisPort = await freePort();
    const startRedis = () => {
      const child = spawn(
        'redis-server',
        ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
        { stdio: 'ignore' },
      );
      return child;
    };
    let redis = startRedis();
    await until(() => portOpen(redisPort), 5000, 'redis-server to listen');
    const prefix = newPrefix();
    const env = taskEnv(prefix, { REDIS_URL: `redis://127.0.0.1:${redisPort}` });
    const app = await buildTaskApp(database.url, prefix, env);
    apps.push(app);
    const worker = await startTaskWorker(database.url, env);
    processes.push(worker);
    await waitForState(app, await enqueue(app, 'report.generate', { payload: { rounds: 10 } }), [
      'completed',
    ]);

    redis.kill('SIGKILL');
    await new Promise((resolve) => redis.once('exit', resolve));
    await until(
      async () => (await app.inject('/health/ready')).statusCode === 503,
      5000,
      'readiness to report Redis down',
    );
    const down = await app.inject({
      method: 'POST',
      headers: await authHeaders(app),
      url: '/api/tasks',
      payload: { name: 'report.generate', payload: { rounds: 10 } },
    });
    expect(down.statusCode).toBe(503);
    await until(
      async () => (await fetch(`${worker.baseUrl}/health/live`)).status === 503,
      5000,
      'worker liveness to fail',
    );

    redis = startRedis();
    await until(
      async () => (await app.inject('/health/ready')).statusCode === 200,
      20_000,
      'readiness to recover',
    );
    await waitForHttp(`${worker.baseUrl}/health/live`, 20_000);
    const after = await enqueue(app, 'report.generate', { payload: { rounds: 10 } });
    expect((await waitForState(app, after, ['completed'], 20_000)).state).toBe('completed');
    expect(isAlive(worker.child.pid as number)).toBe(true);
    redis.kill('SIGKILL');
  }, 90_000);
});

describe('LEVEL=4: task workers under the supervisor', () => {
  it('runs TASK_WORKERS task processes, reloads them on SIGHUP, drains them on SIGTERM', async () => {
    const prefix = newPrefix();
    const server = await startCluster({
      LEVEL: '4',
      WORKERS: '1',
      TASK_WORKERS: '2',
      DATABASE_URL: database.url,
      ...taskEnv(prefix),
    });
    processes.push(server);
    await until(
      () => logsWith(server, 'worker ready').filter((line) => line.pool === 'tasks').length >= 2,
      20_000,
      'two task workers',
    );
    const response = await fetch(`${server.baseUrl}/api/tasks`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(await signInOverHttp(server.baseUrl)) },
      body: JSON.stringify({ name: 'report.generate', payload: { rounds: 1000 } }),
    });
    expect(response.status).toBe(202);
    const { id } = (await response.json()) as { id: string };
    await until(
      async () =>
        ((await (await fetch(`${server.baseUrl}/api/tasks/${id}`)).json()) as { state: string }).state ===
        'completed',
      20_000,
      'the job to complete',
    );
    const metrics = await (await fetch(`${server.baseUrl}/metrics`)).text();
    expect(metrics).toMatch(/^cluster_workers_ready\{pool="tasks"\} 2$/m);
    // Counted by the task worker that ran it, in that worker's own series (pool and slot labels).
    const completed = samplesOf(metrics, 'task_jobs_completed_total', {
      queue: 'cpu',
      task: 'report.generate',
    });
    expect(completed.map((sample) => [sample.labels.pool, sample.value])).toEqual([['tasks', 1]]);

    const taskPids = () =>
      logsWith(server, 'worker started')
        .filter((line) => line.pool === 'tasks')
        .map((line) => line.workerPid as number);
    const before = taskPids();
    server.child.kill('SIGHUP');
    await until(
      () => logsWith(server, 'reload finished: every worker replaced').some((line) => line.pool === 'tasks'),
      30_000,
      'task reload',
    );
    expect(taskPids().length).toBe(4);
    server.child.kill('SIGTERM');
    expect(await server.exited).toEqual({ code: 0, signal: null });
    for (const pid of taskPids()) expect(isAlive(pid)).toBe(false);
    expect(before.every((pid) => !isAlive(pid))).toBe(true);
  }, 90_000);

  it('answers /metrics at once while a task worker is still loading its task code', async () => {
    const build = copyOfBuild();
    try {
      const server = await startCluster(
        {
          LEVEL: '4',
          WORKERS: '1',
          TASK_WORKERS: '1',
          DATABASE_URL: database.url,
          ...taskEnv(newPrefix()),
        },
        build.dir,
      );
      processes.push(server);
      const taskLogs = (message: string) => logsWith(server, message).filter((line) => line.pool === 'tasks');
      await until(() => taskLogs('worker ready').length >= 1, 20_000, 'the task worker');
      // From now on a task worker spends 10 s loading its task code (BullMQ and the definitions), and
      // says when it starts.
      const loading = join(build.dir, 'tasks-loading');
      slowModuleLoad(join(build.dir, 'dist/tasks/runner.js'), loading, 10_000);
      server.child.kill('SIGHUP');
      await until(() => existsSync(loading), 10_000, 'the new task worker to load its task code');
      // SIGHUP reloads the HTTP workers too: ask once they are done, so only the task worker boots.
      await until(
        () => logsWith(server, 'reload finished: every worker replaced').some((line) => line.pool === 'http'),
        8000,
        'the HTTP reload to finish',
      );
      expect(taskLogs('worker ready').some((line) => line.generation === 2)).toBe(false);
      const askedAt = Date.now();
      const response = await fetch(`${server.baseUrl}/metrics`);
      const text = await response.text();
      // A worker that ignores the collection request would hold every scrape for prom-client's 5 s.
      expect(Date.now() - askedAt).toBeLessThan(2000);
      expect(response.status).toBe(200);
      expect(text).toMatch(/^cluster_workers_desired\{pool="tasks"\} 1$/m);
      await until(
        () =>
          logsWith(server, 'reload finished: every worker replaced').some((line) => line.pool === 'tasks'),
        30_000,
        'the task reload to finish',
      );
      server.child.kill('SIGTERM');
      expect(await server.exited).toEqual({ code: 0, signal: null });
    } finally {
      build.remove();
    }
  }, 90_000);
});
