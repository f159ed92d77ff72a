import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { Redis } from 'ioredis';
import { authHeaders, buildTestApp } from './app.js';
import { freePort, type ServerProcess, startProcess, waitForHttp } from './process.js';

export const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

/** A prefix of its own per test file: queues never collide across files or reruns. */
export function uniquePrefix(): string {
  return `test-${randomBytes(4).toString('hex')}`;
}

export function taskEnv(prefix: string, extra: Record<string, string> = {}): Record<string, string> {
  return { ENABLE_BACKGROUND_TASKS: 'true', REDIS_URL, QUEUE_PREFIX: prefix, ...extra };
}

export async function buildTaskApp(
  databaseUrl: string,
  prefix: string,
  extra: Record<string, string> = {},
): Promise<FastifyInstance> {
  return buildTestApp(databaseUrl, taskEnv(prefix, extra));
}

/** A real task-worker process (node dist/worker.js), ready when its liveness answers. */
export async function startTaskWorker(
  databaseUrl: string,
  env: Record<string, string>,
): Promise<ServerProcess> {
  const healthPort = await freePort();
  const worker = startProcess(
    { DATABASE_URL: databaseUrl, TASK_WORKER_HEALTH_PORT: String(healthPort), ...env },
    'dist/worker.js',
  );
  await waitForHttp(`http://127.0.0.1:${healthPort}/health/live`);
  return { ...worker, port: healthPort, baseUrl: `http://127.0.0.1:${healthPort}` };
}

export interface StatusBody {
  id: string;
  name: string;
  state: string;
  progress: number;
  attempts: number;
  result: unknown;
  error: string | null;
}

export async function status(app: FastifyInstance, id: string): Promise<StatusBody> {
  return (await app.inject(`/api/tasks/${id}`)).json() as StatusBody;
}

export async function waitForState(
  app: FastifyInstance,
  id: string,
  states: string[],
  timeoutMs = 30_000,
): Promise<StatusBody> {
  const deadline = Date.now() + timeoutMs;
  let last: StatusBody | undefined;
  while (Date.now() < deadline) {
    last = await status(app, id);
    if (states.includes(last.state)) return last;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(
    `task ${id} not in ${states.join('/')} after ${timeoutMs} ms; last: ${JSON.stringify(last)}`,
  );
}

export async function enqueue(app: FastifyInstance, name: string, body: object): Promise<string> {
  const response = await app.inject({
    method: 'POST',
    headers: await authHeaders(app),
    url: '/api/tasks',
    payload: { name, ...body },
  });
  if (response.statusCode !== 202)
    throw new Error(`enqueue ${name}: ${response.statusCode} ${response.body}`);
  return (response.json() as { id: string }).id;
}

/** Delete every key of a test prefix. */
export async function dropPrefix(prefix: string): Promise<void> {
  const redis = new Redis(REDIS_URL);
  const keys = await redis.keys(`${prefix}:*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
}
