import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AFFINITY_COOKIE, hasAffinityCookie } from '../src/plugins/affinity.js';
import { buildTestApp } from './helpers/app.js';
import { createTestDatabase, type TestDatabase } from './helpers/database.js';

describe('hasAffinityCookie', () => {
  it('finds the cookie among others, not a cookie whose name merely ends the same, not an empty one', () => {
    expect(hasAffinityCookie(`a=1; ${AFFINITY_COOKIE}=abc; b=2`)).toBe(true);
    expect(hasAffinityCookie(`${AFFINITY_COOKIE}=abc`)).toBe(true);
    expect(hasAffinityCookie(`x${AFFINITY_COOKIE}=abc`)).toBe(false);
    expect(hasAffinityCookie(`${AFFINITY_COOKIE}=`)).toBe(false);
    expect(hasAffinityCookie(undefined)).toBe(false);
  });
});

describe('SESSION_AFFINITY', () => {
  let database: TestDatabase;
  let sticky: FastifyInstance;
  let plain: FastifyInstance;

  beforeAll(async () => {
    database = await createTestDatabase();
    sticky = await buildTestApp(database.url, { SESSION_AFFINITY: 'true', TRUST_PROXY: 'true' });
    plain = await buildTestApp(database.url);
  });
  afterAll(async () => {
    await Promise.all([sticky?.close(), plain?.close()]);
    await database?.drop();
  });

  it('true: a client without the cookie gets it, carrying the request id the balancer hashed', async () => {
    const response = await sticky.inject({ url: '/health/live', headers: { 'x-request-id': 'f00d' } });
    expect(response.headers['set-cookie']).toBe(`${AFFINITY_COOKIE}=f00d; Path=/; HttpOnly; SameSite=Lax`);
  });

  it('true: Secure behind an HTTPS proxy; on errors too; never issued twice', async () => {
    const https = await sticky.inject({
      url: '/health/live',
      headers: { 'x-request-id': 'beef', 'x-forwarded-proto': 'https' },
    });
    expect(https.headers['set-cookie']).toBe(
      `${AFFINITY_COOKIE}=beef; Path=/; HttpOnly; SameSite=Lax; Secure`,
    );
    const notFound = await sticky.inject({ url: '/nope', headers: { 'x-request-id': 'cafe' } });
    expect(notFound.statusCode).toBe(404);
    expect(notFound.headers['set-cookie']).toBe(`${AFFINITY_COOKIE}=cafe; Path=/; HttpOnly; SameSite=Lax`);
    const returning = await sticky.inject({
      url: '/health/live',
      headers: { cookie: `theme=dark; ${AFFINITY_COOKIE}=f00d` },
    });
    expect(returning.headers['set-cookie']).toBeUndefined();
  });

  it('false (the default): no cookie', async () => {
    const response = await plain.inject({ url: '/health/live' });
    expect(response.statusCode).toBe(200);
    expect(response.headers['set-cookie']).toBeUndefined();
  });
});
