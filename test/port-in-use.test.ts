/** Port already taken: one JSON line naming the port and its setting, a non-zero exit, no crash loop. */
import { once } from 'node:events';
import { createServer, type Server } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './helpers/database.js';
import { type LogLine, startProcess } from './helpers/process.js';
import { REDIS_URL, uniquePrefix } from './helpers/tasks.js';

let database: TestDatabase;
let squatter: Server;
let port: number;

beforeAll(async () => {
  database = await createTestDatabase();
  squatter = createServer();
  squatter.listen(0, '127.0.0.1');
  await once(squatter, 'listening');
  port = (squatter.address() as { port: number }).port;
});
afterAll(async () => {
  squatter?.close();
  await database?.drop();
});

const inUse = (line: LogLine) => /already in use/.test(line.msg ?? '');

// LEVEL=2 runs the same supervisor code as 3 (restart on death only); 3 and 4 stand for both.
// Concurrent: each case only waits for its own process to give up.
describe.concurrent.each([
  ['1', {}],
  ['3', { WORKERS: '2' }],
  ['4', { WORKERS: '2', TASK_WORKERS: '1', REDIS_URL, QUEUE_PREFIX: uniquePrefix() }],
])('LEVEL=%s with PORT taken', (level, extra) => {
  it('says so in one line naming the port and PORT, and exits non-zero without restarting workers', async () => {
    const server = startProcess({ LEVEL: level, PORT: String(port), DATABASE_URL: database.url, ...extra });
    const exit = await Promise.race([
      server.exited,
      new Promise<never>((_, reject) =>
        setTimeout(() => reject(new Error(`still running; logs: ${JSON.stringify(server.logs)}`)), 40_000),
      ),
    ]);
    await server.outputEnded;
    expect(exit.code).not.toBe(0);
    expect(exit.code).not.toBeNull();
    const lines = server.logs.filter(inUse);
    expect(lines).toHaveLength(1);
    expect(lines[0]?.msg).toContain(`port ${port}`);
    expect(lines[0]?.msg).toContain('PORT');
    expect(lines[0]?.stack ?? (lines[0]?.err as { stack?: string } | undefined)?.stack).toBeUndefined();
    // No crash loop: each HTTP slot was started once.
    const httpStarts = server.logs.filter((line) => line.msg === 'worker started' && line.pool === 'http');
    expect(httpStarts.length).toBeLessThanOrEqual(Number((extra as Record<string, string>).WORKERS ?? 0));
    expect(server.nonJsonLines()).toEqual([]);
  });
});

describe('make worker with TASK_WORKER_HEALTH_PORT taken', () => {
  it('says so in one line naming the port and TASK_WORKER_HEALTH_PORT, and exits non-zero', async () => {
    const worker = startProcess(
      {
        DATABASE_URL: database.url,
        TASK_WORKER_HEALTH_PORT: String(port),
        REDIS_URL,
        QUEUE_PREFIX: uniquePrefix(),
      },
      'dist/worker.js',
    );
    const exit = await worker.exited;
    await worker.outputEnded;
    expect(exit.code).not.toBe(0);
    const lines = worker.logs.filter(inUse);
    expect(lines).toHaveLength(1);
    expect(lines[0]?.msg).toContain(`port ${port}`);
    expect(lines[0]?.msg).toContain('TASK_WORKER_HEALTH_PORT');
    expect(worker.nonJsonLines()).toEqual([]);
  });
});
