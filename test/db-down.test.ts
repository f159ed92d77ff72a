import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authHeaders, buildTestApp } from './helpers/app.js';
import { createTestDatabase, type TestDatabase } from './helpers/database.js';
import { TcpProxy } from './helpers/tcp-proxy.js';

let database: TestDatabase;
let proxy: TcpProxy;
let app: FastifyInstance;

beforeAll(async () => {
  database = await createTestDatabase();
  const target = new URL(database.url);
  proxy = new TcpProxy(target.hostname, Number(target.port || 5432));
  const viaProxy = new URL(database.url);
  viaProxy.hostname = '127.0.0.1';
  viaProxy.port = String(await proxy.start());
  app = await buildTestApp(viaProxy.toString(), { DB_CONNECT_TIMEOUT_MS: '500' });
});
afterAll(async () => {
  await app?.close();
  await proxy?.cut();
  await database?.drop();
});

describe('database down and back', () => {
  it('answers 503 problem+json with Retry-After, reports readiness, keeps serving, and recovers', async () => {
    expect(
      (
        await app.inject({
          method: 'POST',
          headers: await authHeaders(app),
          url: '/api/items',
          payload: { name: 'before' },
        })
      ).statusCode,
    ).toBe(201);

    await proxy.cut();
    const started = Date.now();
    const down = await app.inject('/api/items');
    expect(Date.now() - started).toBeLessThan(5000);
    expect(down.statusCode).toBe(503);
    expect(down.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(down.headers['retry-after']).toBeDefined();
    expect(down.json().detail).toMatch(/database is unavailable/);
    expect(
      (
        await app.inject({
          method: 'POST',
          headers: await authHeaders(app),
          url: '/api/items',
          payload: { name: 'lost?' },
        })
      ).statusCode,
    ).toBe(503);

    const ready = await app.inject('/health/ready');
    expect(ready.statusCode).toBe(503);
    expect(ready.json()).toMatchObject({ status: 'not_ready', checks: { database: { status: 'down' } } });
    expect((await app.inject('/health/live')).statusCode).toBe(200);

    await proxy.restore();
    let recovered = 0;
    for (let attempt = 0; attempt < 50 && recovered !== 200; attempt += 1) {
      recovered = (await app.inject('/api/items')).statusCode;
      if (recovered !== 200) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(recovered).toBe(200);
    expect((await app.inject('/health/ready')).statusCode).toBe(200);
  });
});
