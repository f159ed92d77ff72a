import { randomUUID } from 'node:crypto';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UserRepository } from '../src/auth/users.js';
import { pruneIdempotencyKeys } from '../src/db/idempotency-keys.js';
import { fingerprint } from '../src/plugins/idempotency-decision.js';
import { authHeaders, buildTestApp } from './helpers/app.js';
import { createTestDatabase, openPool, type TestDatabase } from './helpers/database.js';
import { dropPrefix, taskEnv, uniquePrefix } from './helpers/tasks.js';

// Idempotency-Key in one process (app.inject, real PostgreSQL): replay, mismatch, in flight, takeover,
// expiry, what is kept and what is not, malformed headers, and the tasks route's body key.
// Across processes and replicas: test/idempotency-replicas.test.ts.
let database: TestDatabase;
let app: FastifyInstance;
let db: pg.Pool;
const OTHER = { email: 'other-user@example.com', password: 'another long password' };
let other: { authorization: string };

beforeAll(async () => {
  database = await createTestDatabase();
  app = await buildTestApp(database.url, { LOAD_SHED_MAX_EVENT_LOOP_DELAY_MS: '0' });
  db = openPool(database.url, 3);
  await new UserRepository(db).createIfMissing(OTHER.email, OTHER.password, 'user');
  const token = await app.inject({
    method: 'POST',
    url: '/api/auth/token',
    payload: { grant_type: 'password', username: OTHER.email, password: OTHER.password },
  });
  other = { authorization: `Bearer ${token.json().access_token}` };
});
afterAll(async () => {
  await app?.close();
  await db?.end();
  await database?.drop();
});

/** A fresh key, as a client makes one: a UUID as an sf-string. */
const newKey = () => `"${randomUUID()}"`;

interface Send {
  method?: 'POST' | 'PATCH' | 'DELETE';
  url?: string;
  key?: string;
  payload?: unknown;
  as?: { authorization: string };
}
const send = async ({ method = 'POST', url = '/api/items', key, payload, as }: Send) =>
  app.inject({
    method,
    url,
    headers: {
      ...(as ?? (await authHeaders(app))),
      ...(key === undefined ? {} : { 'idempotency-key': key }),
    },
    ...(payload === undefined ? {} : { payload: payload as object }),
  });
const itemsNamed = async (name: string) =>
  (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM items WHERE name = $1', [name])).rows[0]?.n;
const problemOf = (response: LightMyRequestResponse, status: number) => {
  expect(response.statusCode, response.body).toBe(status);
  expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
  return response.json() as { detail: string; errors?: unknown[] };
};
/** What a replay must repeat: status, the answer's own headers, body. */
const answerOf = (response: LightMyRequestResponse) => ({
  status: response.statusCode,
  type: response.headers['content-type'],
  location: response.headers.location,
  body: response.body,
});

describe('Idempotency-Key on POST and PATCH', () => {
  it('replays the first answer to a retry, marked as a replay, and creates one item', async () => {
    const key = newKey();
    const first = await send({ key, payload: { name: 'once', description: 'd' } });
    expect(first.statusCode).toBe(201);
    expect(first.headers['idempotent-replayed']).toBeUndefined();
    // The same JSON written another way is the same payload.
    const retry = await app.inject({
      method: 'POST',
      url: '/api/items',
      headers: { ...(await authHeaders(app)), 'idempotency-key': key, 'content-type': 'application/json' },
      payload: '{ "description": "d",\n "name": "once" }',
    });
    expect(answerOf(retry)).toEqual(answerOf(first));
    expect(retry.headers['idempotent-replayed']).toBe('true');
    expect(retry.headers['x-request-id']).not.toBe(first.headers['x-request-id']);
    expect(retry.headers['x-content-type-options']).toBe('nosniff');
    expect(await itemsNamed('once')).toBe(1);
  });

  it('runs every request without a key, and ignores the header where it does not apply', async () => {
    await send({ payload: { name: 'twice' } });
    await send({ payload: { name: 'twice' } });
    expect(await itemsNamed('twice')).toBe(2);
    const item = (await send({ payload: { name: 'to delete' } })).json();
    // DELETE is idempotent already: the header is not read, so even a malformed one changes nothing.
    expect(
      (await send({ method: 'DELETE', url: `/api/items/${item.id}`, key: 'not quoted' })).statusCode,
    ).toBe(204);
    expect((await app.inject({ url: '/api/items', headers: { 'idempotency-key': 'x' } })).statusCode).toBe(
      200,
    );
  });

  it('answers 422 to the same key with another payload (body, method or URL), and changes nothing', async () => {
    const key = newKey();
    const item = (await send({ key, payload: { name: 'original' } })).json();
    problemOf(await send({ key, payload: { name: 'changed' } }), 422);
    problemOf(
      await send({ method: 'PATCH', url: `/api/items/${item.id}`, key, payload: { name: 'original' } }),
      422,
    );
    expect(await itemsNamed('changed')).toBe(0);
    expect((await send({ key, payload: { name: 'original' } })).headers['idempotent-replayed']).toBe('true');
  });

  it("keeps each user's keys apart", async () => {
    const key = newKey();
    const mine = await send({ key, payload: { name: 'per user' } });
    const theirs = await send({ key, payload: { name: 'per user' }, as: other });
    expect(theirs.statusCode).toBe(201);
    expect(theirs.headers['idempotent-replayed']).toBeUndefined();
    expect(theirs.json().id).not.toBe(mine.json().id);
    expect(await itemsNamed('per user')).toBe(2);
  });

  it('replays a PATCH, and keeps 4xx outcomes of the handler (404, 403)', async () => {
    const item = (await send({ payload: { name: 'patch me' } })).json();
    const key = newKey();
    const patched = await send({
      method: 'PATCH',
      url: `/api/items/${item.id}`,
      key,
      payload: { name: 'patched' },
    });
    const again = await send({
      method: 'PATCH',
      url: `/api/items/${item.id}`,
      key,
      payload: { name: 'patched' },
    });
    expect(answerOf(again)).toEqual(answerOf(patched));
    expect(again.json().updatedAt).toBe(patched.json().updatedAt);
    for (const [url, as, status] of [
      ['/api/items/999999', undefined, 404],
      [`/api/items/${item.id}`, other, 403],
    ] as const) {
      const refusal = newKey();
      problemOf(await send({ method: 'PATCH', url, key: refusal, payload: { name: 'x' }, as }), status);
      const replayed = await send({ method: 'PATCH', url, key: refusal, payload: { name: 'x' }, as });
      problemOf(replayed, status);
      expect(replayed.headers['idempotent-replayed']).toBe('true');
    }
  });

  it('uses no key up when the request is refused before it runs (validation, sign-in)', async () => {
    const key = newKey();
    problemOf(await send({ key, payload: { name: 42 } }), 400);
    expect(
      (
        await app.inject({
          method: 'POST',
          url: '/api/items',
          headers: { 'idempotency-key': key },
          payload: { name: 'n' },
        })
      ).statusCode,
    ).toBe(401);
    const created = await send({ key, payload: { name: 'after refusals' } });
    expect(created.statusCode).toBe(201);
    expect(created.headers['idempotent-replayed']).toBeUndefined();
  });

  it('frees the key after a 5xx: the retry runs again and makes one item', async () => {
    const key = newKey();
    await db.query('ALTER TABLE items RENAME TO items_away');
    try {
      expect((await send({ key, payload: { name: 'after a 500' } })).statusCode).toBeGreaterThanOrEqual(500);
    } finally {
      await db.query('ALTER TABLE items_away RENAME TO items');
    }
    const retry = await send({ key, payload: { name: 'after a 500' } });
    expect(retry.statusCode).toBe(201);
    expect(retry.headers['idempotent-replayed']).toBeUndefined();
    expect(await itemsNamed('after a 500')).toBe(1);
  });

  it('answers 409 with Retry-After while the first is in flight, then replays it', async () => {
    const key = newKey();
    const lock = await db.connect();
    let first: Promise<LightMyRequestResponse> | undefined;
    try {
      await lock.query('BEGIN');
      await lock.query('LOCK TABLE items IN EXCLUSIVE MODE'); // the INSERT waits; the key is claimed
      first = send({ key, payload: { name: 'held' } });
      await until(
        async () =>
          (await db.query('SELECT 1 FROM idempotency_keys WHERE key = $1', [JSON.parse(key)])).rowCount === 1,
      );
      const busy = await send({ key, payload: { name: 'held' } });
      problemOf(busy, 409);
      expect(Number(busy.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    } finally {
      await lock.query('COMMIT');
      lock.release();
    }
    const done = await (first as Promise<LightMyRequestResponse>);
    expect(done.statusCode).toBe(201);
    expect(answerOf(await send({ key, payload: { name: 'held' } }))).toEqual(answerOf(done));
    expect(await itemsNamed('held')).toBe(1);
  });

  it('lets a retry take over a claim past its lease (its process died), and a key expire', async () => {
    const body = { name: 'orphaned' };
    const key = newKey();
    const scope = (await db.query('SELECT id::text FROM users WHERE email = $1', ['tester@example.com']))
      .rows[0].id;
    await db.query(
      `INSERT INTO idempotency_keys (scope, key, fingerprint, claim, claimed_at, expires_at)
       VALUES ($1, $2, $3, gen_random_uuid(), now() - interval '1 hour', now() + interval '1 hour')`,
      [scope, JSON.parse(key), fingerprint('POST', '/api/items', body)],
    );
    const taken = await send({ key, payload: body });
    expect(taken.statusCode).toBe(201);
    expect((await send({ key, payload: body })).headers['idempotent-replayed']).toBe('true');
    // Expired: free again, whatever it held (another payload too), and pruned by any process.
    await db.query("UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE key = $1", [
      JSON.parse(key),
    ]);
    const fresh = await send({ key, payload: { name: 'expired key reused' } });
    expect(fresh.statusCode).toBe(201);
    expect(fresh.headers['idempotent-replayed']).toBeUndefined();
    await db.query("UPDATE idempotency_keys SET expires_at = now() - interval '1 second'");
    expect(await pruneIdempotencyKeys(db)).toBeGreaterThan(0);
    expect(await pruneIdempotencyKeys(db)).toBe(0);
  });

  it.each([
    ['not quoted', 'abc', /quoted string/],
    ['empty', '', /empty/],
    ['two values', '"a", "b"', /one quoted string/],
    ['with parameters', '"a";x=1', /parameters/],
    ['too long', `"${'k'.repeat(256)}"`, /longer than 255/],
    ['not ASCII', '"\u00e9"', /printable ASCII/],
  ])('refuses a malformed header (%s) with 400 naming it, and runs nothing', async (_what, key, detail) => {
    const name = `malformed ${_what}`;
    const refused = problemOf(await send({ key, payload: { name } }), 400);
    expect(refused.detail).toMatch(/^Idempotency-Key /);
    expect(refused.detail).toMatch(detail);
    expect(refused.errors).toEqual([{ field: 'Idempotency-Key', message: expect.any(String), in: 'header' }]);
    expect(await itemsNamed(name)).toBe(0);
  });
});

describe('POST /api/tasks: the body idempotencyKey is the same mechanism as the header', () => {
  const prefix = uniquePrefix();
  let tasksApp: FastifyInstance;
  beforeAll(async () => {
    tasksApp = await buildTestApp(database.url, taskEnv(prefix));
  });
  afterAll(async () => {
    await tasksApp?.close();
    await dropPrefix(prefix);
  });
  const enqueue = async (body: object, key?: string) =>
    tasksApp.inject({
      method: 'POST',
      url: '/api/tasks',
      headers: { ...(await authHeaders(tasksApp)), ...(key ? { 'idempotency-key': key } : {}) },
      payload: { name: 'report.generate', payload: { rounds: 10 }, delayMs: 60_000, ...body },
    });

  it('keeps and replays by the body key, the header with the same key, and refuses two different keys', async () => {
    const first = await enqueue({ idempotencyKey: 'nightly' });
    expect(first.statusCode).toBe(202);
    const again = await enqueue({ idempotencyKey: 'nightly' });
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(again.json()).toEqual(first.json());
    // The header naming the same key is the same key: one store, one mechanism.
    expect((await enqueue({ idempotencyKey: 'nightly' }, '"nightly"')).json()).toEqual(first.json());
    problemOf(await enqueue({ idempotencyKey: 'nightly', priority: 3 }), 422);
    const both = problemOf(await enqueue({ idempotencyKey: 'nightly' }, '"other"'), 400);
    expect(both.detail).toMatch(/differs from the body's idempotencyKey/);
    const byHeader = await enqueue({}, '"by-header"');
    expect(byHeader.statusCode).toBe(202);
    expect((await enqueue({}, '"by-header"')).json()).toEqual(byHeader.json());
    expect(byHeader.json().id).not.toBe(first.json().id);
  });
});

async function until(condition: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
