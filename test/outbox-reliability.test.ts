/**
 * The transactional outbox with real processes (dist/main.js, dist/worker.js, a LEVEL=4 cluster, a
 * private redis-server, PgBouncer): every committed POST /api/items runs its items.created task once
 * in effect (one item_events row), whatever fails around it. The relay latency is measured and
 * printed here (docs/level4-background-tasks.md), never asserted: timings belong in the docs.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import type pg from 'pg';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { logsWith, startCluster, until } from './helpers/cluster.js';
import { createTestDatabase, openPool, type TestDatabase } from './helpers/database.js';
import { sampleSum, samplesOf } from './helpers/metrics.js';
import { type PgBouncer, startPgBouncer } from './helpers/pgbouncer.js';
import { freePort, type ServerProcess, startProcess, waitForHttp } from './helpers/process.js';
import { type RedisServer, startRedisServer } from './helpers/redis-server.js';
import { dropPrefix, REDIS_URL, startTaskWorker, taskEnv, uniquePrefix } from './helpers/tasks.js';
import { signInOverHttp } from './helpers/user.js';

const processes: ServerProcess[] = [];
const prefixes: string[] = [];
const cleanups: Array<() => Promise<void>> = [];
// A database per test: a relay takes every pending row of its database, so the processes of one
// test must never see the rows of another.
let database: TestDatabase;
let db: pg.Pool;

beforeEach(async () => {
  database = await createTestDatabase();
  db = openPool(database.url, 2);
});
afterEach(async () => {
  await Promise.all(processes.splice(0).map((child) => child.stop('SIGKILL')));
  for (const cleanup of cleanups.splice(0)) await cleanup().catch(() => {});
  await db?.end();
  await database?.drop();
});
afterAll(async () => {
  for (const prefix of prefixes) await dropPrefix(prefix);
});

function newPrefix(): string {
  const prefix = uniquePrefix();
  prefixes.push(prefix);
  return prefix;
}

function track<T extends ServerProcess>(child: T): T {
  processes.push(child);
  return child;
}

/** An API process (LEVEL=1, background tasks on), ready when its liveness answers. */
async function startApi(env: Record<string, string>): Promise<ServerProcess> {
  const port = await freePort();
  const api = track(startProcess({ PORT: String(port), DATABASE_URL: database.url, ...env }));
  await waitForHttp(`${api.baseUrl}/health/live`);
  return api;
}

interface Created {
  id: number;
  taskId: string;
}

/** POST /api/items `count` times, `parallel` at once; every answer must be a 201 with a taskId. */
async function createItems(
  baseUrl: string,
  headers: Record<string, string>,
  tag: string,
  count: number,
  parallel = 4,
): Promise<Created[]> {
  const created: Created[] = [];
  let next = 0;
  const lane = async () => {
    while (next < count) {
      const index = next++;
      const response = await fetch(`${baseUrl}/api/items`, {
        method: 'POST',
        headers: { ...headers, 'content-type': 'application/json' },
        body: JSON.stringify({ name: `${tag}${index}` }),
      });
      expect(response.status).toBe(201);
      const body = (await response.json()) as Created;
      expect(body.taskId).toMatch(/^default\.o-/);
      created.push(body);
    }
  };
  await Promise.all(Array.from({ length: parallel }, lane));
  return created;
}

/** item_events of the items named `tag...`: rows and distinct items (a duplicate effect shows as rows > items). */
async function effects(tag: string): Promise<{ rows: number; items: number }> {
  const { rows } = await db.query<{ rows: number; items: number }>(
    'SELECT count(*)::int AS rows, count(DISTINCT item_id)::int AS items FROM item_events WHERE item_name LIKE $1',
    [`${tag}%`],
  );
  return rows[0] ?? { rows: -1, items: -1 };
}

const pendingRows = async () =>
  (
    await db.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM task_outbox WHERE relayed_at IS NULL AND cancelled_at IS NULL',
    )
  ).rows[0]?.n ?? -1;

/** BullMQ's own record of the jobs (its `default` queue under `prefix`), read directly. */
function queueOf(redisUrl: string, prefix: string): Queue {
  const connection = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const queue = new Queue('default', { connection, prefix });
  cleanups.push(async () => {
    await queue.close();
    connection.disconnect();
  });
  return queue;
}

function expectJsonOnly(...children: ServerProcess[]): void {
  for (const child of children) expect(child.nonJsonLines()).toEqual([]);
}

describe('Redis down', () => {
  it('writes still answer 201; once Redis is back every task runs, none lost, none twice in effect', async () => {
    const redis: RedisServer = await startRedisServer();
    cleanups.push(() => redis.stop());
    const prefix = newPrefix();
    const env = taskEnv(prefix, { REDIS_URL: redis.url });
    const api = await startApi(env);
    const worker = track(await startTaskWorker(database.url, env));
    const headers = await signInOverHttp(api.baseUrl);
    await createItems(api.baseUrl, headers, 'up-', 20);
    await until(async () => (await effects('up-')).rows === 20, 20_000, 'the first tasks to run');

    await redis.stop();
    const written = await createItems(api.baseUrl, headers, 'down-', 100);
    expect(written).toHaveLength(100);
    // Answered by PostgreSQL while Redis is away.
    const first = await (await fetch(`${api.baseUrl}/api/tasks/${written[0]?.taskId}`)).json();
    expect(first).toMatchObject({ state: 'pending', name: 'items.created' });
    expect(await pendingRows()).toBe(100);
    // Long enough for the relay to fail and back off a few times.
    await sleep(3000);
    expect(await pendingRows()).toBe(100);

    await redis.start();
    await until(async () => (await effects('down-')).rows === 100, 30_000, 'every task written while down');
    const queue = queueOf(redis.url, prefix);
    await until(
      async () => (await queue.getJobCounts('completed')).completed === 100,
      10_000,
      'BullMQ to record 100 completed jobs',
    );
    for (const { taskId } of written) {
      const job = await queue.getJob(taskId.slice('default.'.length));
      expect(job?.finishedOn).toBeGreaterThan(0);
      expect(job?.attemptsMade).toBe(1);
    }
    const after = await effects('down-');
    expect(after).toEqual({ rows: 100, items: 100 });
    expect(await pendingRows()).toBe(0);
    // Said once each by the relay's connection, not once per retry.
    const relayConnection = (message: string) =>
      logsWith(worker, message).filter((line) => line.redis === 'outbox-relay');
    expect(
      relayConnection('Redis connection lost: reconnecting (logged again once it is back)'),
    ).toHaveLength(1);
    expect(relayConnection('Redis connection restored')).toHaveLength(1);
    expect(
      worker.logs.filter((line) => line.msg?.startsWith('outbox relay failed')).length,
    ).toBeLessThanOrEqual(1);
    console.log(
      JSON.stringify({
        outboxRedisDown: {
          writtenWhileDown: written.length,
          ranAfterReturn: after.rows,
          duplicates: after.rows - after.items,
        },
      }),
    );
    expectJsonOnly(api, worker);
  }, 120_000);
});

describe('API process killed with SIGKILL right after its commit', () => {
  it('runs the task of every committed write, and no task of a write that did not commit', async () => {
    const prefix = newPrefix();
    const env = taskEnv(prefix);
    // No task worker yet: nothing can relay the tasks before the API dies.
    const api = await startApi(env);
    const headers = await signInOverHttp(api.baseUrl);
    const post = (index: number) =>
      fetch(`${api.baseUrl}/api/items`, {
        method: 'POST',
        headers: { ...headers, 'content-type': 'application/json' },
        body: JSON.stringify({ name: `killed-${index}` }),
      });
    // Twenty writes in flight; the process is killed the moment the first 201 arrives.
    const inFlight = Array.from({ length: 20 }, (_, index) => post(index).catch(() => undefined));
    const first = (await Promise.race(inFlight)) as Response;
    expect(first.status).toBe(201);
    api.child.kill('SIGKILL');
    expect((await api.exited).signal).toBe('SIGKILL');
    await Promise.all(inFlight);

    const { rows } = await db.query<{ id: number }>("SELECT id FROM items WHERE name LIKE 'killed-%'");
    const committed = rows.map((row) => row.id).sort((a, b) => a - b);
    expect(committed.length).toBeGreaterThanOrEqual(1);
    expect(await pendingRows()).toBe(committed.length);

    const worker = track(await startTaskWorker(database.url, env));
    await until(async () => (await effects('killed-')).rows === committed.length, 20_000, 'the tasks to run');
    const { rows: events } = await db.query<{ item_id: number }>(
      "SELECT item_id FROM item_events WHERE item_name LIKE 'killed-%' ORDER BY item_id",
    );
    expect(events.map((row) => row.item_id)).toEqual(committed);
    expectJsonOnly(api, worker);
  }, 60_000);
});

describe('LEVEL=4: two task workers relay at once', () => {
  it('each outbox row is queued once, each task has one effect, the outbox is pruned', async () => {
    const prefix = newPrefix();
    const server = track(
      await startCluster({
        LEVEL: '4',
        WORKERS: '1',
        TASK_WORKERS: '2',
        DATABASE_URL: database.url,
        OUTBOX_RETENTION: '0',
        ...taskEnv(prefix),
      }),
    );
    await until(
      () => logsWith(server, 'worker ready').filter((line) => line.pool === 'tasks').length >= 2,
      20_000,
      'two task workers',
    );
    const headers = await signInOverHttp(server.baseUrl);
    const total = 300;
    const written = await createItems(server.baseUrl, headers, 'two-', total, 8);
    await until(async () => (await effects('two-')).rows === total, 30_000, 'every task to run');
    expect(await effects('two-')).toEqual({ rows: total, items: total });

    const queue = queueOf(REDIS_URL, prefix);
    await until(
      async () => (await queue.getJobCounts('completed')).completed === total,
      10_000,
      'BullMQ to record every job completed',
    );
    const jobs = await Promise.all(
      written.map(({ taskId }) => queue.getJob(taskId.slice('default.'.length))),
    );
    expect(jobs.every((job) => job?.attemptsMade === 1)).toBe(true);
    // Relayed once each: the rows both relays report together are the rows written.
    const metrics = await (await fetch(`${server.baseUrl}/metrics`)).text();
    expect(sampleSum(metrics, 'outbox_relayed_total', { pool: 'tasks' })).toBe(total);
    const split = samplesOf(metrics, 'outbox_relayed_total', { pool: 'tasks' }).map((sample) => sample.value);
    console.log(JSON.stringify({ outboxTwoRelays: { total, relayedByEach: split } }));
    // OUTBOX_RETENTION=0: pruned at the next prune round (every 10 s per relay).
    await until(
      async () => (await db.query('SELECT 1 FROM task_outbox')).rowCount === 0,
      25_000,
      'the outbox to be pruned',
    );
    expectJsonOnly(server);
  }, 120_000);
});

describe('through PgBouncer in transaction mode', () => {
  it('relays and runs every task', async () => {
    const bouncer: PgBouncer = await startPgBouncer(database.url, { defaultPoolSize: 3 });
    cleanups.push(() => bouncer.remove());
    const prefix = newPrefix();
    const env = taskEnv(prefix, { DATABASE_URL: bouncer.urlFor(database.url), DB_POOL_SIZE: '4' });
    const api = await startApi(env);
    const worker = track(await startTaskWorker(bouncer.urlFor(database.url), env));
    const headers = await signInOverHttp(api.baseUrl);
    const written = await createItems(api.baseUrl, headers, 'bouncer-', 100, 8);
    await until(async () => (await effects('bouncer-')).rows === 100, 30_000, 'every task to run');
    expect(await effects('bouncer-')).toEqual({ rows: 100, items: 100 });
    const last = await (await fetch(`${api.baseUrl}/api/tasks/${written.at(-1)?.taskId}`)).json();
    expect(last).toMatchObject({ state: 'completed', name: 'items.created' });
    expect(
      logsWith(
        worker,
        'outbox relay failed: rows kept, retrying with backoff (logged again once it recovers)',
      ),
    ).toEqual([]);
    expectJsonOnly(api, worker);
  }, 60_000);
});

describe('relay latency with Redis up (measured, not asserted)', () => {
  it('relays a steady stream of writes; prints commit-to-enqueue p50/p99', async () => {
    const prefix = newPrefix();
    const env = taskEnv(prefix);
    const api = await startApi(env);
    const worker = track(await startTaskWorker(database.url, env));
    const headers = await signInOverHttp(api.baseUrl);
    const total = 500;
    const written = await createItems(api.baseUrl, headers, 'latency-', total, 4);
    await until(async () => (await effects('latency-')).rows === total, 30_000, 'every task to run');
    // On the database clock: relayed_at (stamped right after the jobs were added) minus created_at.
    const { rows } = await db.query<{ p50: number; p99: number; max: number }>(
      `SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS p50,
              percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) AS p99, max(ms) AS max
       FROM (SELECT EXTRACT(EPOCH FROM relayed_at - created_at)::float8 * 1000 AS ms FROM task_outbox
             WHERE payload->>'name' LIKE 'latency-%') AS delays`,
    );
    // Cross-check: BullMQ's job timestamp (the relay's clock, the same machine here) minus created_at.
    const queue = queueOf(REDIS_URL, prefix);
    const { rows: created } = await db.query<{ id: string; at: number }>(
      `SELECT id::text, EXTRACT(EPOCH FROM created_at)::float8 * 1000 AS at FROM task_outbox
       WHERE payload->>'name' LIKE 'latency-%'`,
    );
    const byJob = await Promise.all(
      created.map(async (row) => ((await queue.getJob(`o-${row.id}`))?.timestamp ?? Number.NaN) - row.at),
    );
    const sorted = byJob.sort((a, b) => a - b);
    const at = (q: number) =>
      sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? Number.NaN;
    const figures = {
      items: written.length,
      database: { p50: rows[0]?.p50, p99: rows[0]?.p99, max: rows[0]?.max },
      bullmqTimestamp: { p50: at(0.5), p99: at(0.99), max: sorted.at(-1) },
    };
    console.log(JSON.stringify({ outboxRelayLatencyMs: figures }));
    expect(sorted.every((delay) => Number.isFinite(delay))).toBe(true);
    expect(await pendingRows()).toBe(0);
    expectJsonOnly(api, worker);
  }, 90_000);
});
