import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UserRepository } from '../src/auth/users.js';
import { authHeaders, buildTestApp } from './helpers/app.js';
import { createTestDatabase, openPool, type TestDatabase } from './helpers/database.js';

let database: TestDatabase;
let app: FastifyInstance;

beforeAll(async () => {
  database = await createTestDatabase();
  app = await buildTestApp(database.url);
});
afterAll(async () => {
  await app?.close();
  await database?.drop();
});

const create = async (payload: object) =>
  app.inject({ method: 'POST', headers: await authHeaders(app), url: '/api/items', payload });

describe('items API on PostgreSQL', () => {
  it('creates (201 + Location) and reads back', async () => {
    const created = await create({ name: 'first', description: 'hello' });
    expect(created.statusCode).toBe(201);
    // Background tasks are off here: no outbox task, so taskId is null (test/outbox.test.ts has it on).
    const { taskId, ...item } = created.json();
    expect(taskId).toBeNull();
    expect(item).toMatchObject({ id: expect.any(Number), name: 'first', description: 'hello' });
    expect(Date.parse(item.createdAt)).not.toBeNaN();
    expect(created.headers.location).toBe(`/api/items/${item.id}`);
    const fetched = await app.inject(created.headers.location as string);
    expect(fetched.statusCode).toBe(200);
    expect(fetched.json()).toEqual(item);
  });

  it('answers 404 for a missing item, on get, patch and delete', async () => {
    for (const method of ['GET', 'PATCH', 'DELETE'] as const) {
      const response = await app.inject({
        method,
        headers: await authHeaders(app),
        url: '/api/items/999999',
        ...(method === 'PATCH' ? { payload: { name: 'x' } } : {}),
      });
      expect(response.statusCode).toBe(404);
      expect(response.json().detail).toBe('Item 999999 does not exist');
    }
  });

  it('updates with PATCH, validated, and moves updatedAt', async () => {
    const item = (await create({ name: 'before' })).json();
    const patched = await app.inject({
      method: 'PATCH',
      headers: await authHeaders(app),
      url: `/api/items/${item.id}`,
      payload: { name: 'after' },
    });
    expect(patched.statusCode).toBe(200);
    expect(patched.json()).toMatchObject({ id: item.id, name: 'after', description: null });
    expect(Date.parse(patched.json().updatedAt)).toBeGreaterThanOrEqual(Date.parse(item.updatedAt));
    const cleared = await app.inject({
      method: 'PATCH',
      headers: await authHeaders(app),
      url: `/api/items/${item.id}`,
      payload: { description: null },
    });
    expect(cleared.json().name).toBe('after');
    expect(
      (
        await app.inject({
          method: 'PATCH',
          headers: await authHeaders(app),
          url: `/api/items/${item.id}`,
          payload: {},
        })
      ).statusCode,
    ).toBe(400);
    const tooLong = await app.inject({
      method: 'PATCH',
      headers: await authHeaders(app),
      url: `/api/items/${item.id}`,
      payload: { name: 'x'.repeat(201) },
    });
    expect(tooLong.statusCode).toBe(400);
    expect(tooLong.json().errors[0].field).toBe('name');
  });

  it('deletes with 204, then 404', async () => {
    const item = (await create({ name: 'doomed' })).json();
    const deleted = await app.inject({
      method: 'DELETE',
      headers: await authHeaders(app),
      url: `/api/items/${item.id}`,
    });
    expect(deleted.statusCode).toBe(204);
    expect(deleted.body).toBe('');
    expect((await app.inject(`/api/items/${item.id}`)).statusCode).toBe(404);
  });

  it('lists with cursor pagination and a bounded page size', async () => {
    const names = Array.from({ length: 7 }, (_, index) => `page-${index}`);
    for (const name of names) await create({ name });
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const query: string = cursor ? `limit=3&cursor=${cursor}` : 'limit=3';
      const response = await app.inject(`/api/items?${query}`);
      expect(response.statusCode).toBe(200);
      const page = response.json();
      expect(page.items.length).toBeLessThanOrEqual(3);
      seen.push(...page.items.map((item: { name: string }) => item.name));
      cursor = page.nextCursor;
      pages += 1;
    } while (cursor && pages < 20);
    expect(seen.filter((name) => name.startsWith('page-'))).toEqual(names);
    expect(new Set(seen).size).toBe(seen.length);
    expect((await app.inject('/api/items?limit=101')).statusCode).toBe(400);
    const badCursor = await app.inject('/api/items?cursor=not-a-cursor');
    expect(badCursor.statusCode).toBe(400);
    expect(badCursor.json().errors[0].field).toBe('cursor');
  });

  it('rejects malformed ids with 400 naming the parameter', async () => {
    for (const id of ['abc', '0', '-1', '1.5', '99999999999999999999']) {
      const response = await app.inject(`/api/items/${id}`);
      expect(response.statusCode, id).toBe(400);
      expect(response.json().errors[0].field).toBe('id');
    }
  });

  it('stores hostile strings verbatim (parameterised SQL)', async () => {
    const name = "Robert'); DROP TABLE items;--";
    const item = (await create({ name })).json();
    expect((await app.inject(`/api/items/${item.id}`)).json().name).toBe(name);
  });
});

describe('items have owners', () => {
  const signInAs = async (email: string) => {
    const pool = openPool(database.url, 1);
    await new UserRepository(pool).createIfMissing(email, 'a long enough password');
    await pool.end();
    const response = await app.inject({
      method: 'POST',
      url: '/api/auth/token',
      payload: { grant_type: 'password', username: email, password: 'a long enough password' },
    });
    return { authorization: `Bearer ${response.json().access_token}` };
  };

  it('lets only the owner or an admin change or delete an item; another user gets 403', async () => {
    const alice = await signInAs('alice@example.com');
    const bob = await signInAs('bob@example.com');
    const admin = await authHeaders(app); // FIRST_USER is an admin
    const me = (await app.inject({ url: '/api/auth/me', headers: alice })).json();
    const created = await app.inject({
      method: 'POST',
      url: '/api/items',
      headers: alice,
      payload: { name: 'hers' },
    });
    const item = created.json();
    expect(item.ownerId).toBe(me.id);

    const byBob = await app.inject({
      method: 'PATCH',
      url: `/api/items/${item.id}`,
      headers: bob,
      payload: { name: 'his' },
    });
    expect(byBob.statusCode).toBe(403);
    expect(byBob.headers['content-type']).toMatch(/problem\+json/);
    expect(byBob.json().detail).toMatch(/belongs to another user/);
    expect(
      (await app.inject({ method: 'DELETE', url: `/api/items/${item.id}`, headers: bob })).statusCode,
    ).toBe(403);
    expect((await app.inject(`/api/items/${item.id}`)).json().name).toBe('hers'); // unchanged

    const byOwner = await app.inject({
      method: 'PATCH',
      url: `/api/items/${item.id}`,
      headers: alice,
      payload: { name: 'hers, renamed' },
    });
    expect(byOwner.statusCode).toBe(200);
    const byAdmin = await app.inject({
      method: 'PATCH',
      url: `/api/items/${item.id}`,
      headers: admin,
      payload: { description: 'moderated' },
    });
    expect(byAdmin.json()).toMatchObject({ name: 'hers, renamed', description: 'moderated', ownerId: me.id });
    expect(
      (await app.inject({ method: 'DELETE', url: `/api/items/${item.id}`, headers: bob })).statusCode,
    ).toBe(403);
    expect(
      (await app.inject({ method: 'DELETE', url: `/api/items/${item.id}`, headers: alice })).statusCode,
    ).toBe(204);
    // Gone: 404 for everyone, owner included.
    expect(
      (await app.inject({ method: 'DELETE', url: `/api/items/${item.id}`, headers: alice })).statusCode,
    ).toBe(404);
  });
});
