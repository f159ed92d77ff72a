import { setTimeout as sleep } from 'node:timers/promises';
import * as oauth from 'oauth4webapi';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UserRepository } from '../src/auth/users.js';
import { createTestDatabase, openPool, type TestDatabase } from './helpers/database.js';
import { startTopology, TOPOLOGIES, type Topology, type TopologyName } from './helpers/topologies.js';
import { TEST_USER } from './helpers/user.js';

// One service, however it is deployed: every check runs against each topology the templates use, with a
// real OAuth client (oauth4webapi) for the token endpoint. Every request opens a new connection, so
// nginx and the cluster spread them over the processes.
let requestIntervalMs = 0;
let lastRequestAt = 0;
/** fetch on a new connection each time, paced as the topology's proxy allows one client. */
const closeEach: typeof fetch = async (input, init) => {
  const wait = lastRequestAt + requestIntervalMs - Date.now();
  if (wait > 0) await sleep(wait);
  lastRequestAt = Date.now();
  return fetch(input, {
    ...init,
    headers: { ...Object.fromEntries(new Headers(init?.headers)), connection: 'close' },
  });
};
const clientOptions = { [oauth.allowInsecureRequests]: true, [oauth.customFetch]: closeEach };
const PASSWORD = 'a long enough password';
const REQUESTS = 20;

describe.each(Object.keys(TOPOLOGIES) as TopologyName[])('one service: %s', (name) => {
  let database: TestDatabase;
  let service: Topology;
  let as: oauth.AuthorizationServer;
  const client: oauth.Client = { client_id: 'one-service-test' };

  beforeAll(async () => {
    database = await createTestDatabase();
    service = await startTopology(name, database.url, {
      LOGIN_RATE_LIMIT_MAX: '5',
      LOGIN_RATE_LIMIT_WINDOW: '300',
    });
    requestIntervalMs = service.requestIntervalMs;
    as = { issuer: service.baseUrl, token_endpoint: `${service.baseUrl}/api/auth/token` };
  }, 120_000);
  afterAll(async () => {
    await service?.stop();
    await database?.drop();
  });

  const signIn = async (username = TEST_USER.email, password = TEST_USER.password) => {
    const response = await oauth.genericTokenEndpointRequest(
      as,
      client,
      oauth.None(),
      'password',
      new URLSearchParams({ username, password }),
      clientOptions,
    );
    return oauth.processGenericTokenEndpointResponse(as, client, response);
  };
  const refresh = async (refreshToken: string) =>
    oauth.processRefreshTokenResponse(
      as,
      client,
      await oauth.refreshTokenGrantRequest(as, client, oauth.None(), refreshToken, clientOptions),
    );
  /** The OAuth error a grant failed with, as the client library reads it. */
  const grantError = async (grant: Promise<unknown>) => {
    const error = await grant.then(
      () => undefined,
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(oauth.ResponseBodyError);
    const { status, error: code, error_description } = error as oauth.ResponseBodyError;
    return { status, error: code, error_description };
  };
  const api = (path: string, token?: string, init: RequestInit = {}) =>
    closeEach(`${service.baseUrl}${path}`, {
      ...init,
      headers: {
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        ...(init.body ? { 'content-type': 'application/json' } : {}),
      },
      signal: AbortSignal.timeout(10_000),
    });
  /** Statuses of REQUESTS requests, each on a new connection. */
  const statuses = async (path: string, token?: string, init?: RequestInit) => {
    const seen: number[] = [];
    for (let index = 0; index < REQUESTS; index += 1) {
      const response = await api(path, token, init);
      await response.arrayBuffer();
      seen.push(response.status);
    }
    return seen;
  };
  const makeUser = async (email: string) => {
    const pool = openPool(database.url, 1);
    await new UserRepository(pool).createIfMissing(email, PASSWORD);
    await pool.end();
  };

  it('spreads requests over more than one process', async () => {
    const pids = new Set<number>();
    for (let index = 0; index < REQUESTS; index += 1)
      pids.add(((await (await api('/health/worker')).json()) as { pid: number }).pid);
    expect(pids.size).toBeGreaterThanOrEqual(2);
  });

  it(`logout holds on every process: ${REQUESTS} of ${REQUESTS} requests refused`, async () => {
    const tokens = await signIn();
    expect((await statuses('/api/auth/me', tokens.access_token)).every((status) => status === 200)).toBe(
      true,
    );
    const logout = await oauth.protectedResourceRequest(
      tokens.access_token,
      'POST',
      new URL(`${service.baseUrl}/api/auth/logout`),
      new Headers(),
      null,
      clientOptions,
    );
    expect(logout.status).toBe(204);
    const after = await statuses('/api/auth/me', tokens.access_token);
    expect(after.filter((status) => status !== 401)).toEqual([]);
    expect(await grantError(refresh(tokens.refresh_token as string))).toMatchObject({
      status: 400,
      error: 'invalid_grant',
      error_description: expect.stringMatching(/session has ended/),
    });
  });

  it('detects refresh-token reuse on any process and ends the whole family', async () => {
    const first = await signIn();
    const second = await refresh(first.refresh_token as string);
    expect(second.refresh_token).not.toBe(first.refresh_token);
    // The old token again, on whichever process: reuse.
    expect(await grantError(refresh(first.refresh_token as string))).toMatchObject({
      status: 400,
      error: 'invalid_grant',
      error_description: expect.stringMatching(/already used/),
    });
    expect(await grantError(refresh(second.refresh_token as string))).toMatchObject({
      error: 'invalid_grant',
    });
    expect((await statuses('/api/auth/me', second.access_token)).filter((status) => status !== 401)).toEqual(
      [],
    );
  });

  it('refuses a deleted user on the next request everywhere', async () => {
    await makeUser(`gone-${name}@example.com`);
    const tokens = await signIn(`gone-${name}@example.com`, PASSWORD);
    expect((await api('/api/auth/me', tokens.access_token)).status).toBe(200);
    const db = new pg.Client({ connectionString: database.url });
    await db.connect();
    await db.query('DELETE FROM users WHERE email = $1', [`gone-${name}@example.com`]);
    await db.end();
    const writes = await statuses('/api/items', tokens.access_token, {
      method: 'POST',
      body: JSON.stringify({ name: 'from a deleted user' }),
    });
    expect(writes.filter((status) => status !== 401)).toEqual([]);
    expect(await grantError(refresh(tokens.refresh_token as string))).toMatchObject({
      error: 'invalid_grant',
    });
  });

  it('never serves an item stale after a write on another process, and enforces its owner everywhere', async () => {
    await makeUser(`owner-${name}@example.com`);
    await makeUser(`other-${name}@example.com`);
    // New addresses' worth of sign-ins would hit the limit above: these use their own accounts.
    const owner = await signIn(`owner-${name}@example.com`, PASSWORD);
    const other = await signIn(`other-${name}@example.com`, PASSWORD);
    const created = await api('/api/items', owner.access_token, {
      method: 'POST',
      body: JSON.stringify({ name: 'before' }),
    });
    expect(created.status).toBe(201);
    const { id } = (await created.json()) as { id: number };
    for (let index = 0; index < 6; index += 1) await (await api(`/api/items/${id}`)).arrayBuffer(); // warm any cache
    const patched = await api(`/api/items/${id}`, owner.access_token, {
      method: 'PATCH',
      body: JSON.stringify({ name: 'after' }),
    });
    expect(patched.status).toBe(200);
    const names = new Set<string>();
    for (let index = 0; index < REQUESTS; index += 1)
      names.add(((await (await api(`/api/items/${id}`)).json()) as { name: string }).name);
    expect([...names]).toEqual(['after']);

    const foreign = await statuses(`/api/items/${id}`, other.access_token, {
      method: 'PATCH',
      body: JSON.stringify({ name: 'taken over' }),
    });
    expect(foreign.filter((status) => status !== 403)).toEqual([]);
    expect(
      (await statuses(`/api/items/${id}`, other.access_token, { method: 'DELETE' })).every((s) => s === 403),
    ).toBe(true);
    expect((await api(`/api/items/${id}`, owner.access_token, { method: 'DELETE' })).status).toBe(204);
  });
  it('counts failed sign-ins once for the whole service (runs last: the limit then holds for this address)', async () => {
    const attempts: number[] = [];
    for (let index = 0; index < 8; index += 1) {
      const failed = await grantError(signIn(`victim-${name}@example.com`, 'wrong password'));
      attempts.push(failed.status);
    }
    // LOGIN_RATE_LIMIT_MAX=5 failures across the processes, not per process.
    expect(attempts).toEqual([400, 400, 400, 400, 400, 429, 429, 429]);
    const limited = await grantError(signIn(`victim-${name}@example.com`, 'wrong password'));
    expect(limited).toMatchObject({ status: 429, error: 'temporarily_unavailable' });
  });
});
