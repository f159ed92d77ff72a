import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, openPool, type TestDatabase } from './helpers/database.js';
import { startTopology, type Topology } from './helpers/topologies.js';
import { signInOverHttp } from './helpers/user.js';

// Idempotency-Key across real processes: two LEVEL=1 replicas behind the real nginx on one PostgreSQL.
// A retry that lands on the other replica replays the first answer, concurrent duplicates run once, and
// a request whose process is killed with -9 mid-request is run by a retry once its lease is over.
const LEASE_SECONDS = 4;
let database: TestDatabase;
let service: Topology;
let db: pg.Pool;
let auth: { authorization: string };

beforeAll(async () => {
  database = await createTestDatabase();
  db = openPool(database.url, 4);
  // A server backend whose client died notices within 100 ms, even while it waits for a lock, and
  // abandons the statement (PostgreSQL 14+; docs/api.md). Without it statement_timeout (10 s) would.
  const name = new URL(database.url).pathname.slice(1);
  await db.query(`ALTER DATABASE "${name}" SET client_connection_check_interval = '100ms'`);
  service = await startTopology('replicas-postgres', database.url, {
    IDEMPOTENCY_KEY_LEASE: String(LEASE_SECONDS),
  });
  auth = await signInOverHttp(service.baseUrl);
}, 120_000);
afterAll(async () => {
  await service?.stop();
  await db?.end();
  await database?.drop();
});

const replica = (index: number) => service.processes[index]?.baseUrl as string;
const newKey = () => `"${randomUUID()}"`;

/** POST /api/items on a new connection, with a key; where: a replica's own URL or nginx's. */
async function post(where: string, key: string, body: object): Promise<Answer> {
  await sleep(service.requestIntervalMs); // the nginx template's per-client rate limit
  const response = await fetch(`${where}/api/items`, {
    method: 'POST',
    headers: { ...auth, 'content-type': 'application/json', 'idempotency-key': key, connection: 'close' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(15_000),
  });
  return {
    status: response.status,
    type: response.headers.get('content-type'),
    location: response.headers.get('location'),
    retryAfter: response.headers.get('retry-after'),
    replayed: response.headers.get('idempotent-replayed') === 'true',
    body: await response.text(),
  };
}
interface Answer {
  status: number;
  type: string | null;
  location: string | null;
  retryAfter: string | null;
  replayed: boolean;
  body: string;
}
const sameAnswer = ({ status, type, location, body }: Answer) => ({ status, type, location, body });

const itemsNamed = async (name: string) =>
  (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM items WHERE name = $1', [name])).rows[0]?.n;
const claimed = async (key: string) =>
  (await db.query('SELECT 1 FROM idempotency_keys WHERE key = $1 AND status IS NULL', [JSON.parse(key)]))
    .rowCount === 1;
const insertsWaiting = async () =>
  (
    await db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_activity
       WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO items%'`,
    )
  ).rows[0]?.n ?? 0;

async function until(condition: () => Promise<boolean>, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await sleep(25);
  }
}

/** Hold every INSERT INTO items (the key is claimed first, so its request is then in flight). */
async function holdingInserts<T>(run: (release: () => Promise<void>) => Promise<T>): Promise<T> {
  const lock = await db.connect();
  let held = true;
  const release = async () => {
    if (!held) return;
    held = false;
    await lock.query('COMMIT');
    lock.release();
  };
  await lock.query('BEGIN');
  await lock.query('LOCK TABLE items IN EXCLUSIVE MODE');
  try {
    return await run(release);
  } finally {
    await release();
  }
}

describe('Idempotency-Key across two replicas behind nginx', () => {
  it('replays the first answer on the other replica and through nginx; one item', async () => {
    const key = newKey();
    const body = { name: 'cross-replica', description: 'once' };
    const first = await post(replica(0), key, body);
    expect(first.status, first.body).toBe(201);
    expect(first.replayed).toBe(false);
    const onOther = await post(replica(1), key, body);
    expect(sameAnswer(onOther)).toEqual(sameAnswer(first));
    expect(onOther.replayed).toBe(true);
    expect(sameAnswer(await post(service.baseUrl, key, body))).toEqual(sameAnswer(first));
    expect(await itemsNamed('cross-replica')).toBe(1);
  });

  it('answers 422 on either replica to the same key with another payload', async () => {
    const key = newKey();
    expect((await post(replica(0), key, { name: 'payload-a' })).status).toBe(201);
    const refused = await post(replica(1), key, { name: 'payload-b' });
    expect(refused.status).toBe(422);
    expect(refused.type).toMatch(/^application\/problem\+json/);
    expect(await itemsNamed('payload-b')).toBe(0);
  });

  it('runs concurrent duplicates on two replicas once: 201 and 409 (or the replay)', async () => {
    for (let round = 0; round < 5; round += 1) {
      const key = newKey();
      const name = `concurrent-${round}`;
      const answers = await Promise.all([post(replica(0), key, { name }), post(replica(1), key, { name })]);
      const fresh = answers.filter((answer) => answer.status === 201 && !answer.replayed);
      expect(fresh, JSON.stringify(answers)).toHaveLength(1);
      for (const answer of answers.filter((candidate) => candidate !== fresh[0]))
        expect(answer.status === 409 || answer.replayed, JSON.stringify(answer)).toBe(true);
      expect(await itemsNamed(name)).toBe(1);
    }
  });

  it('answers 409 with Retry-After on the other replica while the first is in flight, then replays it', async () => {
    const key = newKey();
    const body = { name: 'in-flight' };
    const first = await holdingInserts(async (release) => {
      const pending = post(replica(0), key, body);
      await until(() => claimed(key), 'the first request claims its key');
      const busy = await post(replica(1), key, body);
      expect(busy.status).toBe(409);
      expect(busy.type).toMatch(/^application\/problem\+json/);
      expect(Number(busy.retryAfter)).toBeGreaterThanOrEqual(1);
      await release();
      return pending;
    });
    expect(first.status).toBe(201);
    expect(sameAnswer(await post(replica(1), key, body))).toEqual(sameAnswer(first));
    expect(await itemsNamed('in-flight')).toBe(1);
  });

  // Last: it kills replica 0.
  it('kill -9 mid-request: a retry on the other replica runs it once the lease is over; one item', async () => {
    const key = newKey();
    const body = { name: 'killed mid-request' };
    const victim = service.processes[0];
    if (!victim) throw new Error('no replica 0');
    await holdingInserts(async () => {
      const lost = post(replica(0), key, body).catch((error: Error) => error);
      await until(() => claimed(key), 'the request claims its key');
      await until(async () => (await insertsWaiting()) > 0, 'its INSERT waits for the lock');
      victim.child.kill('SIGKILL');
      expect((await victim.exited).signal).toBe('SIGKILL');
      expect(await lost).toBeInstanceOf(Error);
      // Its backend notices the closed connection and drops the INSERT before the lock goes.
      await until(async () => (await insertsWaiting()) === 0, 'the dead client’s INSERT is abandoned');
    });
    const claimedAt = (
      await db.query<{ at: Date }>('SELECT claimed_at AS at FROM idempotency_keys WHERE key = $1', [
        JSON.parse(key),
      ])
    ).rows[0]?.at as Date;
    // Within the lease the claim still holds: 409, on the replica that is left.
    const early = await post(replica(1), key, body);
    expect(early.status).toBe(409);
    let retry = early;
    while (retry.status === 409) {
      await sleep(Math.min(Number(retry.retryAfter) * 1000, 500));
      retry = await post(replica(1), key, body);
    }
    expect(retry.status, retry.body).toBe(201);
    expect(retry.replayed).toBe(false);
    expect(Date.now()).toBeGreaterThanOrEqual(claimedAt.getTime() + LEASE_SECONDS * 1000);
    expect(sameAnswer(await post(service.baseUrl, key, body))).toEqual(sameAnswer(retry));
    expect(await itemsNamed('killed mid-request')).toBe(1);
    const survivor = service.processes[1];
    expect(survivor?.logs.some((line) => line.msg?.includes('taken over after its lease'))).toBe(true);
    for (const process of service.processes) expect(process.nonJsonLines()).toEqual([]);
  });
});
