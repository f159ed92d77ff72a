import { Client } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster } from './helpers/cluster.js';
import { createTestDatabase, type TestDatabase } from './helpers/database.js';
import type { ServerProcess } from './helpers/process.js';
import { dropPrefix, REDIS_URL, uniquePrefix } from './helpers/tasks.js';
import { TEST_USER } from './helpers/user.js';

// Sign-in across the workers of a LEVEL=2 cluster with Redis (sessions in PostgreSQL, limits and cache in
// Redis). Each undici Client holds one keep-alive connection, so it talks to one worker: we know which
// one answered. test/one-service.test.ts runs the same checks on every deployed topology.
let database: TestDatabase;
let server: ServerProcess;
const prefix = uniquePrefix();
const clients: Client[] = [];

beforeAll(async () => {
  database = await createTestDatabase();
  server = await startCluster({
    LEVEL: '2',
    WORKERS: '2',
    DATABASE_URL: database.url,
    REDIS_URL,
    QUEUE_PREFIX: prefix,
    AUTH_SECRET: 'cluster-test-signing-key-0123456789-abcdefgh',
  });
});
afterAll(async () => {
  await Promise.all(clients.map((client) => client.close()));
  await server?.stop('SIGKILL');
  await dropPrefix(prefix);
  await database?.drop();
});

interface Answer {
  status: number;
  body: Record<string, unknown>;
  contentType: string;
}

async function call(
  client: Client,
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body?: string,
): Promise<Answer> {
  const response = await client.request({
    method: method as 'GET',
    path,
    headers,
    body,
    headersTimeout: 10_000,
  });
  const text = await response.body.text();
  return {
    status: response.statusCode,
    body: text ? (JSON.parse(text) as Record<string, unknown>) : {},
    contentType: String(response.headers['content-type'] ?? ''),
  };
}

const pidOf = async (client: Client) => (await call(client, 'GET', '/health/worker')).body.pid as number;

/** A client on a worker whose pid is not in `exclude` (new connections until one lands there). */
async function clientOnNewWorker(exclude: Set<number>): Promise<{ client: Client; pid: number }> {
  for (let attempt = 0; attempt < 40; attempt += 1) {
    const client = new Client(server.baseUrl, { pipelining: 1, keepAliveTimeout: 60_000 });
    clients.push(client);
    const pid = await pidOf(client);
    if (!exclude.has(pid)) return { client, pid };
    clients.pop();
    await client.close();
  }
  throw new Error(`no connection reached a worker other than ${[...exclude].join(', ')}`);
}

const form = (fields: Record<string, string>) => new URLSearchParams(fields).toString();
const FORM = { 'content-type': 'application/x-www-form-urlencoded' };

async function signIn(client: Client, password = TEST_USER.password): Promise<Answer> {
  return call(
    client,
    'POST',
    '/api/auth/token',
    FORM,
    form({ grant_type: 'password', username: TEST_USER.email, password }),
  );
}

const me = (client: Client, token: string) =>
  call(client, 'GET', '/api/auth/me', { authorization: `Bearer ${token}` });

function expect401(answer: Answer) {
  expect(answer.status).toBe(401);
  expect(answer.contentType).toMatch(/^application\/problem\+json/);
}

/** The token endpoint's RFC 6749 §5.2 answer. */
function expectInvalidGrant(answer: Answer) {
  expect(answer.status).toBe(400);
  expect(answer.contentType).toMatch(/^application\/json/);
  expect(answer.body.error).toBe('invalid_grant');
}

describe('sign-in at LEVEL=2 with 2 workers and Redis', () => {
  it('a token from one worker works on the other; after logout both refuse it at once; a recycled worker accepts valid tokens', async () => {
    const first = await clientOnNewWorker(new Set());
    const second = await clientOnNewWorker(new Set([first.pid]));

    const signedIn = await signIn(first.client);
    expect(signedIn.status).toBe(200);
    const { access_token: access, refresh_token: refresh } = signedIn.body as Record<string, string>;
    expect((await me(second.client, access as string)).status).toBe(200);
    expect((await me(first.client, access as string)).status).toBe(200);
    const created = await call(
      second.client,
      'POST',
      '/api/items',
      { authorization: `Bearer ${access}`, 'content-type': 'application/json' },
      JSON.stringify({ name: 'written on the other worker' }),
    );
    expect(created.status).toBe(201);

    // Logout through the second worker: the very next request on either worker is refused.
    expect(
      (await call(second.client, 'POST', '/api/auth/logout', { authorization: `Bearer ${access}` })).status,
    ).toBe(204);
    expect401(await me(first.client, access as string));
    expect401(await me(second.client, access as string));
    expectInvalidGrant(
      await call(
        first.client,
        'POST',
        '/api/auth/token',
        FORM,
        form({ grant_type: 'refresh_token', refresh_token: refresh as string }),
      ),
    );

    // A worker killed and replaced still accepts a valid token issued before it started.
    const fresh = (await signIn(first.client)).body.access_token as string;
    process.kill(second.pid, 'SIGKILL');
    await server.waitForLog((line) => line.msg === 'worker ready' && line.generation === 2, 30_000);
    const replacement = await clientOnNewWorker(new Set([first.pid, second.pid]));
    expect((await me(replacement.client, fresh)).status).toBe(200);
    expect((await me(first.client, fresh)).status).toBe(200);
  });

  it('a wrong password gets invalid_grant; tampered and foreign tokens 401 problem+json on every worker', async () => {
    const first = await clientOnNewWorker(new Set());
    expectInvalidGrant(await signIn(first.client, 'not the password'));
    const token = (await signIn(first.client)).body.access_token as string;
    const [header, payload, signature] = token.split('.') as [string, string, string];
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString());
    const tampered = `${header}.${Buffer.from(JSON.stringify({ ...claims, sub: '999' })).toString('base64url')}.${signature}`;
    const second = await clientOnNewWorker(new Set([first.pid]));
    for (const client of [first.client, second.client]) {
      expect401(await me(client, tampered));
      expect401(await me(client, `${token}x`));
    }
  });
});
