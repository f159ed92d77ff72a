/**
 * The RateLimit-Policy and RateLimit fields of draft-ietf-httpapi-ratelimit-headers on both rate limits,
 * the /api limit (RATE_LIMIT_MAX) and the failed sign-in limit (LOGIN_RATE_LIMIT_*), counted in
 * PostgreSQL (no Redis configured) and in Redis.
 */
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { limitItem, policyItem } from '../src/plugins/ratelimit-fields.js';
import { buildTestApp } from './helpers/app.js';
import { createTestDatabase, type TestDatabase } from './helpers/database.js';
import { dropPrefix, REDIS_URL, uniquePrefix } from './helpers/tasks.js';

let database: TestDatabase;
const prefixes: string[] = [];
beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  for (const prefix of prefixes) await dropPrefix(prefix);
  await database?.drop();
});

/** The items of a RateLimit field, by policy name: remaining (r) and seconds to reset (t). */
function limitsOf(response: LightMyRequestResponse): Record<string, { r: number; t: number }> {
  const field = String(response.headers.ratelimit ?? '');
  return Object.fromEntries(
    [...field.matchAll(/"([a-z-]+)";r=(\d+);t=(\d+)/g)].map(([, name, r, t]) => [
      name,
      { r: Number(r), t: Number(t) },
    ]),
  );
}

describe.each([
  ['PostgreSQL', 1, (): Record<string, string> => ({})],
  [
    'Redis',
    2,
    (): Record<string, string> => {
      const prefix = uniquePrefix();
      prefixes.push(prefix);
      return { REDIS_URL, QUEUE_PREFIX: prefix };
    },
  ],
])('RateLimit fields, counted in %s', (_store, subnet, storeEnv) => {
  const apps: FastifyInstance[] = [];
  const build = async (env: Record<string, string>) => {
    const app = await buildTestApp(database.url, { ...storeEnv(), ...env });
    apps.push(app);
    return app;
  };
  afterAll(async () => {
    for (const app of apps) await app.close();
  });

  it('the /api limit: on every /api answer, the 429 included, beside the X-RateLimit-* fields', async () => {
    const app = await build({ RATE_LIMIT_MAX: '3', RATE_LIMIT_WINDOW: '60' });
    const remoteAddress = `10.${subnet}.0.1`;
    const answers: LightMyRequestResponse[] = [];
    for (let index = 0; index < 4; index += 1)
      answers.push(await app.inject({ url: '/api/examples/hash?rounds=1', remoteAddress }));
    expect(answers.map((answer) => answer.statusCode)).toEqual([200, 200, 200, 429]);
    for (const answer of answers) expect(answer.headers['ratelimit-policy']).toBe('"api";q=3;w=60');
    const limits = answers.map((answer) => limitsOf(answer).api);
    expect(limits.map((limit) => limit?.r)).toEqual([2, 1, 0, 0]);
    for (const limit of limits) {
      expect(limit?.t).toBeGreaterThan(0);
      expect(limit?.t).toBeLessThanOrEqual(60);
    }
    const limited = answers[3] as LightMyRequestResponse;
    // The draft: Retry-After no earlier than the reset.
    expect(Number(limited.headers['retry-after'])).toBeGreaterThanOrEqual(limits[3]?.t ?? Infinity);
    expect(limited.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(answers[0]?.headers['x-ratelimit-remaining']).toBe('2');
    // Outside /api nothing is limited, so nothing is said.
    const live = await app.inject({ url: '/health/live', remoteAddress });
    expect(live.headers.ratelimit).toBeUndefined();
    expect(live.headers['ratelimit-policy']).toBeUndefined();
  });

  it('the failed sign-in limit: both policies on each failure and on the 429, with the /api limit beside them', async () => {
    const app = await build({
      LOGIN_RATE_LIMIT_MAX: '2',
      LOGIN_RATE_LIMIT_WINDOW: '300',
      RATE_LIMIT_MAX: '100',
    });
    const attempt = () =>
      app.inject({
        method: 'POST',
        url: '/api/auth/token',
        remoteAddress: `10.${subnet}.1.1`,
        payload: { grant_type: 'password', username: 'nobody@example.com', password: 'wrong' },
      });
    const answers = [await attempt(), await attempt(), await attempt()];
    expect(answers.map((answer) => answer.statusCode)).toEqual([400, 400, 429]);
    for (const answer of answers)
      expect(answer.headers['ratelimit-policy']).toBe(
        '"sign-in-address";q=2;w=300, "sign-in-account";q=2;w=300, "api";q=100;w=60',
      );
    const remaining = answers.map((answer) => limitsOf(answer));
    expect(remaining.map((limits) => limits['sign-in-address']?.r)).toEqual([1, 0, 0]);
    expect(remaining.map((limits) => limits['sign-in-account']?.r)).toEqual([1, 0, 0]);
    expect(remaining.map((limits) => limits.api?.r)).toEqual([99, 98, 97]);
    const limited = answers[2] as LightMyRequestResponse;
    const reset = remaining[2]?.['sign-in-account']?.t ?? Infinity;
    expect(reset).toBeGreaterThan(0);
    expect(reset).toBeLessThanOrEqual(300);
    expect(Number(limited.headers['retry-after'])).toBeGreaterThanOrEqual(reset);
    expect(limited.json()).toMatchObject({ error: 'temporarily_unavailable' });
  });
});

it('a page on an allowed origin may read both fields (CORS)', async () => {
  const app = await buildTestApp(database.url, {
    CORS_ORIGINS: 'https://app.example.com',
    RATE_LIMIT_MAX: '100',
  });
  try {
    const answer = await app.inject({
      url: '/api/examples/hash?rounds=1',
      remoteAddress: '10.3.0.1',
      headers: { origin: 'https://app.example.com' },
    });
    expect(answer.headers.ratelimit).toBeDefined();
    const exposed = String(answer.headers['access-control-expose-headers']).toLowerCase().split(/,\s*/);
    expect(exposed).toEqual(expect.arrayContaining(['ratelimit', 'ratelimit-policy']));
  } finally {
    await app.close();
  }
});

it('writes whole, non-negative numbers: windows of at least 1 s, resets rounded up', () => {
  const policy = { name: 'sign-in-address', quota: 10, windowSeconds: 0.5 };
  expect(policyItem(policy)).toBe('"sign-in-address";q=10;w=1');
  expect(policyItem({ ...policy, windowSeconds: 300 })).toBe('"sign-in-address";q=10;w=300');
  expect(limitItem(policy, { remaining: 3, resetSeconds: 41.2 })).toBe('"sign-in-address";r=3;t=42');
  expect(limitItem(policy, { remaining: -1, resetSeconds: Number.NaN })).toBe('"sign-in-address";r=0;t=0');
});
