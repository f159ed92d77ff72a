/**
 * Request deadlines (REQUEST_DEADLINE_MS) against the built server, on PostgreSQL directly and through
 * a real PgBouncer in transaction mode: past the deadline the client gets 503 problem+json with
 * Retry-After and its request id, the statement that ran for it is cancelled on the server (gone from
 * pg_stat_activity long before it would have ended), a write never commits, and the connection is
 * back in the pool in working order. Then, in process, which of deadline and statement_timeout fires.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import Fastify from 'fastify';
import pg from 'pg';
import { serialize } from 'pg-protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cancelRequestPacket } from '../src/db/cancel.js';
import deadlinePlugin from '../src/plugins/deadline.js';
import { authHeaders, buildTestApp } from './helpers/app.js';
import { until } from './helpers/cluster.js';
import { createTestDatabase, type TestDatabase } from './helpers/database.js';
import { type PgBouncer, startPgBouncer } from './helpers/pgbouncer.js';
import { freePort, type ServerProcess, startProcess, waitForHttp } from './helpers/process.js';
import { signInOverHttp } from './helpers/user.js';

const DEADLINE_MS = 1000;
let database: TestDatabase;
let bouncer: PgBouncer;
let monitor: pg.Client;
const servers: ServerProcess[] = [];

beforeAll(async () => {
  database = await createTestDatabase();
  bouncer = await startPgBouncer(database.url, { defaultPoolSize: 2 });
  monitor = new pg.Client({ connectionString: database.url });
  await monitor.connect();
});
afterAll(async () => {
  await Promise.all(servers.map((server) => server.stop('SIGKILL')));
  await monitor?.end();
  await bouncer?.remove();
  await database?.drop();
});

const databaseName = () => new URL(database.url).pathname.slice(1);

/** Statements of the app running now on the test database (the monitor's own excluded). */
async function running(pattern: string): Promise<Array<{ pid: number; query: string }>> {
  const { rows } = await monitor.query(
    `SELECT pid, query FROM pg_stat_activity
     WHERE datname = $1 AND state = 'active' AND query LIKE $2 AND pid <> pg_backend_pid()`,
    [databaseName(), pattern],
  );
  return rows;
}

/** The app's own server connections (DB_POOL_SIZE=1: one, whatever it runs). */
async function appBackends(): Promise<number[]> {
  const { rows } = await monitor.query(
    `SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = 'node-levels-starter'`,
    [databaseName()],
  );
  return rows.map((row) => row.pid as number);
}

async function startServer(databaseUrl: string): Promise<ServerProcess> {
  const server = startProcess({
    PORT: String(await freePort()),
    DATABASE_URL: databaseUrl,
    MIGRATIONS_DATABASE_URL: database.url,
    REQUEST_DEADLINE_MS: String(DEADLINE_MS),
    // One connection: a cancelled query's connection that did not come back would stall the next request.
    DB_POOL_SIZE: '1',
  });
  servers.push(server);
  await waitForHttp(`${server.baseUrl}/health/ready`);
  return server;
}

describe.each([
  ['directly', () => database.url],
  ['through PgBouncer (transaction mode)', () => bouncer.urlFor(database.url)],
])('past its deadline, %s', (topology, urlOf) => {
  let server: ServerProcess;
  let auth: { authorization: string };
  beforeAll(async () => {
    server = await startServer(urlOf());
    auth = await signInOverHttp(server.baseUrl);
  });

  it('a read gets 503 with Retry-After and its request id, and its query is cancelled on the server', async () => {
    const before = await appBackends();
    const requestId = `deadline-read-${topology.length}`;
    const started = Date.now();
    const answer = fetch(`${server.baseUrl}/api/examples/db-sleep?ms=8000`, {
      headers: { ...auth, 'x-request-id': requestId },
    });
    await until(async () => (await running('%pg_sleep%')).length === 1, DEADLINE_MS, 'the query to start');
    const response = await answer;
    const elapsed = Date.now() - started;
    expect(response.status).toBe(503);
    expect(response.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(response.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(response.headers.get('x-request-id')).toBe(requestId);
    expect(response.headers.get('x-content-type-options')).toBe('nosniff');
    expect(await response.json()).toMatchObject({
      status: 503,
      requestId,
      detail: `The request did not finish within ${DEADLINE_MS} ms; retry later`,
    });
    expect(elapsed).toBeGreaterThanOrEqual(DEADLINE_MS - 50);
    expect(elapsed).toBeLessThan(DEADLINE_MS + 2000);
    // Cancelled, not left to sleep its 8 s out.
    await until(async () => (await running('%pg_sleep%')).length === 0, 1500, 'the query to be cancelled');
    expect(Date.now() - started).toBeLessThan(4000);

    // The connection came back healthy: with a pool of one, the next request runs on it at once.
    const next = await fetch(`${server.baseUrl}/api/examples/db-sleep?ms=0`, { headers: auth });
    expect(next.status).toBe(200);
    // Directly, it is even the same server connection (through PgBouncer, that is PgBouncer's business).
    if (topology === 'directly') expect(await appBackends()).toEqual(before);
  });

  it('a write past its deadline (POST with a body) gets 503 and never commits', async () => {
    // Hold the items table: the INSERT (one statement: background tasks are off) waits past the deadline.
    const locker = new pg.Client({ connectionString: database.url });
    await locker.connect();
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE items IN ACCESS EXCLUSIVE MODE');
    const name = `late ${topology}`;
    try {
      const response = await fetch(`${server.baseUrl}/api/items`, {
        method: 'POST',
        headers: { ...auth, 'content-type': 'application/json' },
        body: JSON.stringify({ name }),
      });
      expect(response.status).toBe(503);
      expect(response.headers.get('retry-after')).toMatch(/^\d+$/);
      await until(
        async () => (await running('%INSERT INTO items%')).length === 0,
        1500,
        'the INSERT to be cancelled',
      );
    } finally {
      await locker.query('COMMIT');
      await locker.end();
    }
    const { rows } = await monitor.query('SELECT count(*)::int AS n FROM items WHERE name = $1', [name]);
    expect(rows[0].n).toBe(0);
    // The same write in time goes through on the same (single) connection.
    const created = await fetch(`${server.baseUrl}/api/items`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ name: `in time ${topology}` }),
    });
    expect(created.status).toBe(201);
  });

  it('logs one JSON warning per deadline and nothing about the abandoned work', async () => {
    expect(server.nonJsonLines()).toEqual([]);
    expect(server.logs.filter((line) => line.msg?.startsWith('request deadline passed'))).toHaveLength(2);
    const noise = server.logs.filter((line) => /already sent|Promise errored/.test(String(line.msg)));
    expect(noise).toEqual([]);
  });
});

describe('deadline and statement_timeout (app.inject)', () => {
  it('REQUEST_DEADLINE_MS=0 is off: a query runs as long as it takes', async () => {
    const app = await buildTestApp(database.url, { REQUEST_DEADLINE_MS: '0' });
    try {
      const response = await app.inject({
        url: '/api/examples/db-sleep?ms=300',
        headers: await authHeaders(app),
      });
      expect(response.statusCode).toBe(200);
      expect(response.json()).toEqual({ sleptMs: 300 });
    } finally {
      await app.close();
    }
  });

  it('with statement_timeout shorter than the deadline, statement_timeout fires first: also a 503', async () => {
    const scratch = await createTestDatabase();
    const admin = new pg.Client({ connectionString: scratch.url });
    await admin.connect();
    await admin.query(
      `ALTER DATABASE "${new URL(scratch.url).pathname.slice(1)}" SET statement_timeout = 300`,
    );
    await admin.end();
    const app = await buildTestApp(scratch.url, { REQUEST_DEADLINE_MS: '5000' });
    try {
      const started = Date.now();
      const response = await app.inject({
        url: '/api/examples/db-sleep?ms=3000',
        headers: await authHeaders(app),
      });
      expect(Date.now() - started).toBeLessThan(2500);
      expect(response.statusCode).toBe(503);
      expect(response.headers['retry-after']).toBeDefined();
      expect(response.json().detail).toBe(
        'A database statement was cancelled before it finished; retry shortly',
      );
    } finally {
      await app.close();
      await scratch.drop();
    }
  });

  it('anonymous callers cannot hold a database connection with db-sleep', async () => {
    const app = await buildTestApp(database.url);
    try {
      expect((await app.inject('/api/examples/db-sleep?ms=10')).statusCode).toBe(401);
    } finally {
      await app.close();
    }
  });
});

describe('the deadline plugin over real HTTP', () => {
  it('holds for a POST with a body, and an answer under way at the deadline is never mixed with the 503', async () => {
    const app = Fastify();
    await app.register(deadlinePlugin, { deadlineMs: 100 });
    // An async onSend hook (the Idempotency-Key plugin has one): an answer takes a while to leave.
    app.addHook('onSend', async (_request, _reply, payload) => {
      await sleep(50);
      return payload;
    });
    // Answers after its deadline, while the 503's own hooks would still be running.
    app.post('/late', async (_request, reply) => {
      await sleep(150);
      return reply.code(201).send({ late: true });
    });
    // Done before the deadline, its onSend hook still running at it: the deadline was met.
    app.post('/in-time', async () => {
      await sleep(70);
      return { inTime: true };
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = app.server.address() as { port: number };
    const post = (path: string) =>
      fetch(`http://127.0.0.1:${port}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ some: 'body' }),
      });
    try {
      const late = await post('/late');
      expect(late.status).toBe(503);
      expect(await late.json()).toMatchObject({ status: 503, instance: '/late' });
      await sleep(200); // the handler's own send comes and is refused
      const inTime = await post('/in-time');
      expect(inTime.status).toBe(200);
      expect(await inTime.json()).toEqual({ inTime: true });
    } finally {
      await app.close();
    }
  });
});

it("the CancelRequest is node-postgres's own, byte for byte (negative keys included)", () => {
  for (const [pid, key] of [
    [4242, 123456789],
    [1, -2],
    [2147483647, -2147483648],
  ] as const)
    expect(cancelRequestPacket(pid, key)).toEqual(serialize.cancel(pid, key));
});
