import { createConnection, createServer, type Server, type Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authHeaders, buildTestApp } from './helpers/app.js';
import { createTestDatabase, type TestDatabase } from './helpers/database.js';
import { dropPrefix, uniquePrefix } from './helpers/tasks.js';

// A Redis that answers its connections only after a delay (a TCP relay to the real one that waits
// before relaying): the app must not take requests before its Redis connections are ready.
const HANDSHAKE_DELAY_MS = 500;
let relay: Server;
let relayPort = 0;
const sockets: Socket[] = [];
let database: TestDatabase;
const prefix = uniquePrefix();

beforeAll(async () => {
  relay = createServer((client) => {
    sockets.push(client);
    client.pause();
    setTimeout(() => {
      const upstream = createConnection(6379, '127.0.0.1');
      sockets.push(upstream);
      upstream.on('error', () => client.destroy());
      client.on('error', () => upstream.destroy());
      client.pipe(upstream).pipe(client);
      client.resume();
    }, HANDSHAKE_DELAY_MS);
  });
  await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
  relayPort = (relay.address() as { port: number }).port;
  database = await createTestDatabase();
});
afterAll(async () => {
  for (const socket of sockets) socket.destroy();
  await new Promise((resolve) => relay?.close(resolve));
  await dropPrefix(prefix);
  await database?.drop();
});

describe('start-up with Redis slow to answer', () => {
  it('is ready to serve sign-in and the shared cache (Redis) on its very first requests', async () => {
    const started = Date.now();
    const app: FastifyInstance = await buildTestApp(database.url, {
      REDIS_URL: `redis://127.0.0.1:${relayPort}`,
      QUEUE_PREFIX: prefix,
    });
    try {
      // The build waited for the relay's delay, and not much longer.
      expect(Date.now() - started).toBeGreaterThanOrEqual(HANDSHAKE_DELAY_MS - 50);
      const headers = await authHeaders(app);
      const me = await app.inject({ url: '/api/auth/me', headers });
      expect(me.statusCode).toBe(200);
      const created = await app.inject({
        method: 'POST',
        url: '/api/items',
        headers,
        payload: { name: 'first' },
      });
      expect(created.statusCode).toBe(201);
      const read = await app.inject({ url: created.headers.location as string, headers });
      expect(read.statusCode).toBe(200);
    } finally {
      await app.close();
    }
  });
});
