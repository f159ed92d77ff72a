/**
 * The transactional outbox in one process: the write and its task commit together or not at all
 * (forced failures against the repository), the task reads `pending` until relayed, a second relay
 * of a row queues nothing more, and cancellation before the relay. The relay runs here by hand
 * (relayBatch); test/outbox-reliability.test.ts runs it in real task-worker processes.
 */
import { Queue } from 'bullmq';
import type { FastifyInstance } from 'fastify';
import { Redis } from 'ioredis';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ItemRepository } from '../src/db/items.js';
import { inTransaction } from '../src/db/transaction.js';
import { itemCreated } from '../src/tasks/definitions/items.js';
import { outboxIdOf, recordTask } from '../src/tasks/outbox.js';
import { pruneOutbox, relayBatch } from '../src/tasks/relay.js';
import { retentionOf, TaskService } from '../src/tasks/service.js';
import { authHeaders, buildTestApp, testSettings } from './helpers/app.js';
import { createTestDatabase, openPool, type TestDatabase } from './helpers/database.js';
import { buildTaskApp, dropPrefix, REDIS_URL, status, uniquePrefix } from './helpers/tasks.js';

let database: TestDatabase;
let pool: pg.Pool;
let app: FastifyInstance;
let redis: Redis;
let relayTasks: TaskService;
let queue: Queue;
const prefix = uniquePrefix();

beforeAll(async () => {
  database = await createTestDatabase();
  pool = openPool(database.url, 4);
  app = await buildTaskApp(database.url, prefix);
  redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  relayTasks = new TaskService(redis, prefix, retentionOf(testSettings()));
  queue = new Queue('default', { connection: redis, prefix });
});
afterAll(async () => {
  await queue?.close();
  await relayTasks?.close();
  redis?.disconnect();
  await app?.close();
  await pool?.end();
  await dropPrefix(prefix);
  await database?.drop();
});

const count = async (table: 'items' | 'task_outbox' | 'item_events') =>
  (await pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`)).rows[0]?.n ?? -1;

async function createItem(name: string): Promise<{ id: number; taskId: string | null }> {
  const response = await app.inject({
    method: 'POST',
    headers: await authHeaders(app),
    url: '/api/items',
    payload: { name },
  });
  expect(response.statusCode).toBe(201);
  return response.json();
}

describe('a write and its task commit together', () => {
  const items = () => new ItemRepository(pool);
  const owner = async () =>
    String((await pool.query<{ id: number }>('SELECT min(id) AS id FROM users')).rows[0]?.id);
  // The route's own sequence: the item, then its outbox row, on one transaction's client.
  const createWithTask = (ownerId: string, after: () => Promise<void> = async () => {}) =>
    inTransaction(pool, async (client) => {
      const item = await items().create(ownerId, 'rolled back', null, client);
      await recordTask(client, itemCreated, { itemId: item.id, name: item.name });
      await after();
    });

  it('a failure after both inserts rolls both back, and the connection is reusable', async () => {
    await createItem('make the first user exist');
    const before = { items: await count('items'), outbox: await count('task_outbox') };
    await expect(
      createWithTask(await owner(), async () => {
        throw new Error('forced failure');
      }),
    ).rejects.toThrow('forced failure');
    expect({ items: await count('items'), outbox: await count('task_outbox') }).toEqual(before);
    // Every connection of the pool still works (none was handed back inside an aborted transaction).
    await Promise.all([1, 2, 3, 4].map(() => pool.query('SELECT 1')));
  });

  it('a failing COMMIT (a deferred constraint) leaves neither the item nor the outbox row', async () => {
    await pool.query(`CREATE FUNCTION refuse_item() RETURNS trigger LANGUAGE plpgsql AS
      $$ BEGIN RAISE EXCEPTION 'forced failure at commit'; END $$`);
    await pool.query(`CREATE CONSTRAINT TRIGGER refuse_item AFTER INSERT ON items
      DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_item()`);
    try {
      const before = { items: await count('items'), outbox: await count('task_outbox') };
      await expect(createWithTask(await owner())).rejects.toThrow('forced failure at commit');
      expect({ items: await count('items'), outbox: await count('task_outbox') }).toEqual(before);
      // Through the route: a 5xx problem, and still nothing written.
      const response = await app.inject({
        method: 'POST',
        headers: await authHeaders(app),
        url: '/api/items',
        payload: { name: 'refused at commit' },
      });
      expect(response.statusCode).toBe(500);
      expect({ items: await count('items'), outbox: await count('task_outbox') }).toEqual(before);
    } finally {
      await pool.query('DROP TRIGGER refuse_item ON items; DROP FUNCTION refuse_item()');
    }
  });
});

describe('the task of a write', () => {
  it('is pending until relayed, then waiting in BullMQ under the outbox id; a second relay queues nothing', async () => {
    const { id, taskId } = await createItem('pending first');
    expect(taskId).toMatch(/^default\.o-[0-9a-f-]{36}$/);
    const pending = await status(app, taskId as string);
    expect(pending).toMatchObject({ id: taskId, name: 'items.created', state: 'pending', attempts: 0 });
    // The same job id under another queue is another task: none.
    expect(
      (await app.inject(`/api/tasks/${(taskId as string).replace('default.', 'cpu.')}`)).statusCode,
    ).toBe(404);

    expect(await relayBatch(pool, relayTasks, 100)).toBeGreaterThanOrEqual(1);
    const jobId = (taskId as string).slice('default.'.length);
    const job = await queue.getJob(jobId);
    expect(job?.data).toEqual({ itemId: id, name: 'pending first' });
    expect((await status(app, taskId as string)).state).toBe('waiting');

    // The relay died after adding the job and before its commit: the row is pending again.
    await pool.query('UPDATE task_outbox SET relayed_at = NULL WHERE id = $1', [outboxIdOf(jobId)]);
    const waitingBefore = await queue.getWaitingCount();
    expect(await relayBatch(pool, relayTasks, 100)).toBe(1);
    expect(await queue.getWaitingCount()).toBe(waitingBefore);
    expect(await relayBatch(pool, relayTasks, 100)).toBe(0);
  });

  it('a cancel before the relay keeps it out of the queue; after the relay, BullMQ cancels it', async () => {
    const first = (await createItem('cancelled in the outbox')).taskId as string;
    const cancel = async (id: string) =>
      app.inject({ method: 'DELETE', headers: await authHeaders(app), url: `/api/tasks/${id}` });
    expect((await cancel(first)).statusCode).toBe(202);
    expect(await status(app, first)).toMatchObject({ state: 'cancelled', name: 'items.created' });
    expect(await relayBatch(pool, relayTasks, 100)).toBe(0);
    expect(await queue.getJob(first.slice('default.'.length))).toBeUndefined();

    const second = (await createItem('cancelled in the queue')).taskId as string;
    expect(await relayBatch(pool, relayTasks, 100)).toBe(1);
    expect((await cancel(second)).statusCode).toBe(202);
    expect((await status(app, second)).state).toBe('cancelled');
  });

  it('relays in batches of the given size, oldest first, and prunes what left the outbox', async () => {
    await relayBatch(pool, relayTasks, 1000);
    for (let index = 0; index < 5; index += 1) await createItem(`batch ${index}`);
    const stillPending = async () =>
      (
        await pool.query<{ name: string }>(
          `SELECT payload->>'name' AS name FROM task_outbox WHERE relayed_at IS NULL AND cancelled_at IS NULL ORDER BY 1`,
        )
      ).rows.map((row) => row.name);
    expect(await relayBatch(pool, relayTasks, 2)).toBe(2);
    expect(await stillPending()).toEqual(['batch 2', 'batch 3', 'batch 4']);
    expect(await relayBatch(pool, relayTasks, 2)).toBe(2);
    expect(await stillPending()).toEqual(['batch 4']);
    expect(await relayBatch(pool, relayTasks, 2)).toBe(1);
    const { rows: delays } = await pool.query<{ ms: number }>(
      `SELECT EXTRACT(EPOCH FROM relayed_at - created_at)::float8 * 1000 AS ms FROM task_outbox
       WHERE relayed_at IS NOT NULL`,
    );
    expect(delays.every((row) => row.ms >= 0)).toBe(true);

    expect(await pruneOutbox(pool, 3600)).toBe(0);
    const done = (
      await pool.query<{ n: number }>(
        'SELECT count(*)::int AS n FROM task_outbox WHERE relayed_at IS NOT NULL OR cancelled_at IS NOT NULL',
      )
    ).rows[0]?.n;
    expect(await pruneOutbox(pool, 0)).toBe(done);
    expect(await count('task_outbox')).toBe(0);
  });

  it('answers 404, never a 5xx, for outbox-looking ids that are not', async () => {
    for (const id of ['default.o-not-a-uuid', 'default.o-00000000-0000-0000-0000-000000000000', 'cpu.o-x']) {
      expect((await app.inject(`/api/tasks/${id}`)).statusCode).toBe(404);
      const cancel = await app.inject({
        method: 'DELETE',
        headers: await authHeaders(app),
        url: `/api/tasks/${id}`,
      });
      expect(cancel.statusCode).toBe(404);
    }
  });

  it('items.created cannot be enqueued through POST /api/tasks (only its write records it)', async () => {
    const response = await app.inject({
      method: 'POST',
      headers: await authHeaders(app),
      url: '/api/tasks',
      payload: { name: 'items.created', payload: { itemId: 1, name: 'forged' } },
    });
    expect(response.statusCode).toBe(400);
    expect(response.json().errors).toEqual([{ field: 'name', message: 'is not a known value', in: 'body' }]);
  });
});

describe('background tasks off', () => {
  it('writes no outbox row and answers taskId null', async () => {
    const plain = await buildTestApp(database.url);
    try {
      const before = await count('task_outbox');
      const response = await plain.inject({
        method: 'POST',
        headers: await authHeaders(plain),
        url: '/api/items',
        payload: { name: 'no tasks here' },
      });
      expect(response.statusCode).toBe(201);
      expect(response.json().taskId).toBeNull();
      expect(await count('task_outbox')).toBe(before);
    } finally {
      await plain.close();
    }
  });
});
