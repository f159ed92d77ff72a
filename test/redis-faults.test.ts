/**
 * Redis away, then back, then away again, under a real LEVEL=4 server and a standalone task worker:
 * every line both write is one JSON object, each connection says "down" once and "back" once (with
 * its retry count), the task worker is not ready while Redis is away, and SIGTERM with Redis down
 * finishes within 5 s.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './helpers/database.js';
import {
  freePort,
  type LogLine,
  ROOT,
  type ServerProcess,
  startProcess,
  waitForHttp,
} from './helpers/process.js';
import { REDIS_URL, uniquePrefix } from './helpers/tasks.js';
import { TcpProxy } from './helpers/tcp-proxy.js';

const exec = promisify(execFile);
const redis = new URL(REDIS_URL);
const isDown = (line: LogLine) => /^Redis (unreachable|connection lost)/.test(line.msg ?? '');
const isBack = (line: LogLine) => line.msg === 'Redis connection restored';
const taskWorkerReady = (line: LogLine) => line.msg === 'task worker ready';

let database: TestDatabase;
beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database?.drop();
});

/** `make status` (node dist/runtime/status.js) for a server's PID file. */
async function status(pidFile: string): Promise<string> {
  const { stdout } = await exec(process.execPath, ['dist/runtime/status.js'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', PID_FILE: pidFile },
  });
  return stdout;
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    await sleep(200);
  }
  throw new Error(`${what} not seen within ${timeoutMs} ms${last ? `: ${String(last)}` : ''}`);
}

/** The connections that logged a line, by process and connection name: [pid/redis] -> count. */
function countBy(logs: LogLine[], predicate: (line: LogLine) => boolean): Map<string, number> {
  const counts = new Map<string, number>();
  for (const line of logs.filter(predicate)) {
    const key = `${line.pid}/${line.redis}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}

describe('LEVEL=4 with Redis away, back, and away again', () => {
  let server: ServerProcess;
  let proxy: TcpProxy;
  const pidFile = join(mkdtempSync(join(tmpdir(), 'redis-faults-')), 'server.pid');

  beforeAll(async () => {
    proxy = new TcpProxy(redis.hostname, Number(redis.port || 6379));
    await proxy.start();
    await proxy.cut(); // the port is known and refuses connections: Redis "not there" at start
    server = startProcess({
      LEVEL: '4',
      WORKERS: '1',
      TASK_WORKERS: '1',
      PORT: String(await freePort()),
      PID_FILE: pidFile,
      DATABASE_URL: database.url,
      REDIS_URL: `redis://127.0.0.1:${proxy.port}`,
      QUEUE_PREFIX: uniquePrefix(),
    });
    await server.waitForLog((line) => line.msg === 'all workers ready', 60_000);
  });
  afterAll(async () => {
    await server?.stop('SIGKILL');
    await proxy?.cut();
  });

  it('keeps the task worker not ready while Redis is away, and says why', async () => {
    await server.waitForLog((line) => isDown(line) && line.role === 'task-worker');
    const waiting = await until('the task worker shown waiting for Redis', async () => {
      const text = await status(pidFile);
      return /task workers[\s\S]*\bwaiting\b/.test(text) ? text : undefined;
    });
    expect(waiting).toMatch(/redis/);
    expect(server.logs.some(taskWorkerReady)).toBe(false);
  });

  it('logs each lost connection once while it retries, and once when it is back with the retry count', async () => {
    // Several reconnection attempts (200 ms, 400 ms, ... apart) while it stays away.
    await sleep(3000);
    const downs = countBy(server.logs, isDown);
    expect(downs.size).toBeGreaterThanOrEqual(2); // the HTTP worker's connections and the task worker's
    for (const count of downs.values()) expect(count).toBe(1);

    await proxy.restore();
    await server.waitForLog(taskWorkerReady);
    await until('every connection back', async () =>
      [...downs.keys()].every((key) => countBy(server.logs, isBack).has(key)) ? true : undefined,
    );
    for (const line of server.logs.filter(isBack)) {
      expect(line.retries).toBeGreaterThan(0);
      expect(typeof line.downMs).toBe('number');
    }
    await until('the task worker shown ready', async () =>
      /task workers[\s\S]*\bready\b/.test(await status(pidFile)) ? true : undefined,
    );
  });

  it('logs a second outage once per connection, and stops within 5 s with Redis down', async () => {
    const before = server.logs.length;
    await proxy.cut();
    await until('every connection reported down again', async () =>
      countBy(server.logs.slice(before), isDown).size >= 2 ? true : undefined,
    );
    await sleep(3000);
    for (const count of countBy(server.logs.slice(before), isDown).values()) expect(count).toBe(1);
    expect(server.logs.slice(before).some((line) => /Redis connection lost/.test(line.msg ?? ''))).toBe(true);

    const started = Date.now();
    const exit = await server.stop('SIGTERM');
    const shutdownMs = Date.now() - started;
    await server.outputEnded;
    expect(exit.code).toBe(0);
    expect(shutdownMs).toBeLessThan(5000);
    console.info(`LEVEL=4 shutdown with Redis down: ${shutdownMs} ms; ${server.logs.length} log lines`);
    expect(server.nonJsonLines()).toEqual([]);
  });
});

describe('standalone task worker (make worker) with Redis away', () => {
  it('logs its health port, answers 503 waiting for Redis, becomes ready when Redis is back', async () => {
    const proxy = new TcpProxy(redis.hostname, Number(redis.port || 6379));
    await proxy.start();
    await proxy.cut();
    const healthPort = await freePort();
    const worker = startProcess(
      {
        DATABASE_URL: database.url,
        TASK_WORKER_HEALTH_PORT: String(healthPort),
        REDIS_URL: `redis://127.0.0.1:${proxy.port}`,
        QUEUE_PREFIX: uniquePrefix(),
      },
      'dist/worker.js',
    );
    try {
      const announced = await worker.waitForLog((line) => line.port === healthPort);
      expect(announced.msg).toContain(String(healthPort));
      await worker.waitForLog(isDown);
      const unready = await fetch(`http://127.0.0.1:${healthPort}/health/live`);
      expect(unready.status).toBe(503);
      expect(await unready.json()).toEqual({ status: 'unavailable', waitingFor: 'redis' });
      expect(worker.logs.some(taskWorkerReady)).toBe(false);

      await proxy.restore();
      await worker.waitForLog(taskWorkerReady);
      await waitForHttp(`http://127.0.0.1:${healthPort}/health/live`);
      await proxy.cut();
      // The task runner's own connection: the outbox relay's may notice first, and the runner decides
      // how to stop by what its connection knows.
      await worker.waitForLog(
        (line) => line.redis === 'tasks' && /Redis connection lost/.test(line.msg ?? ''),
      );
      const started = Date.now();
      expect((await worker.stop('SIGTERM')).code).toBe(0);
      expect(Date.now() - started).toBeLessThan(5000);
      await worker.outputEnded;
      expect(worker.nonJsonLines()).toEqual([]);
    } finally {
      await worker.stop('SIGKILL');
      await proxy.cut();
    }
  });
});
