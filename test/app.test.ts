import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_HASH_ROUNDS } from '../src/routes/examples.js';
import { authHeaders, buildTestApp } from './helpers/app.js';
import { createTestDatabase, type TestDatabase } from './helpers/database.js';

let database: TestDatabase;
let app: FastifyInstance;

beforeAll(async () => {
  database = await createTestDatabase();
  app = await buildTestApp(database.url, { BODY_LIMIT: '1024', CORS_ORIGINS: 'https://app.example.com' });
});
afterAll(async () => {
  await app?.close();
  await database?.drop();
});

function expectProblem(
  response: { statusCode: number; headers: Record<string, unknown>; json(): unknown },
  status: number,
) {
  expect(response.statusCode).toBe(status);
  expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
  const body = response.json() as Record<string, unknown>;
  expect(body).toMatchObject({
    status,
    type: 'about:blank',
    title: expect.any(String),
    detail: expect.any(String),
  });
  return body;
}

describe('health', () => {
  it('answers liveness without touching dependencies', async () => {
    for (const url of ['/health', '/health/live']) {
      const response = await app.inject(url);
      expect(response.statusCode).toBe(200);
      expect(response.json()).toEqual({ status: 'ok' });
    }
  });

  it('reports readiness per dependency', async () => {
    const response = await app.inject('/health/ready');
    expect(response.statusCode).toBe(200);
    expect(response.json()).toMatchObject({ status: 'ready', checks: { database: { status: 'up' } } });
  });

  it('describes the answering process', async () => {
    const response = await app.inject('/health/worker');
    expect(response.statusCode).toBe(200);
    const body = response.json();
    expect(body).toMatchObject({ pid: process.pid, workerId: 0, generation: 0 });
    expect(body.requestsServed).toBeGreaterThan(0);
    expect(body.memory.rssBytes).toBeGreaterThan(0);
    expect(typeof body.eventLoop.utilization).toBe('number');
  });
});

describe('OpenAPI and docs', () => {
  it('generates an OpenAPI 3 document from the route schemas', async () => {
    const response = await app.inject('/openapi.json');
    expect(response.statusCode).toBe(200);
    const spec = response.json();
    expect(spec.openapi).toMatch(/^3\./);
    expect(Object.keys(spec.paths)).toEqual(
      expect.arrayContaining(['/api/items', '/api/items/{id}', '/api/examples/hash', '/health/ready']),
    );
    expect(spec.paths['/api/items'].post.requestBody.content['application/json'].schema.required).toEqual([
      'name',
    ]);
  });

  it('serves the interactive docs UI', async () => {
    const response = await app.inject('/docs/');
    expect(response.statusCode).toBe(200);
    expect(response.headers['content-type']).toMatch(/text\/html/);
    expect(response.body).toContain('swagger-ui');
  });
});

describe('request ids and headers', () => {
  it('honours an incoming x-request-id and returns it', async () => {
    const response = await app.inject({ url: '/health', headers: { 'x-request-id': 'trace-123' } });
    expect(response.headers['x-request-id']).toBe('trace-123');
  });

  it('replaces an unsafe x-request-id with a fresh one', async () => {
    const response = await app.inject({ url: '/health', headers: { 'x-request-id': 'bad id\twith spaces' } });
    expect(response.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('sets security headers and CORS from the environment', async () => {
    const response = await app.inject({ url: '/health', headers: { origin: 'https://app.example.com' } });
    expect(response.headers['x-content-type-options']).toBe('nosniff');
    expect(response.headers['strict-transport-security']).toMatch(/max-age=\d+/);
    // A CSP only where a browser renders a document: the HTML docs, not JSON answers.
    expect(response.headers['content-security-policy']).toBeUndefined();
    // JSON answers get the headers that protect any response; documents get helmet's full set.
    expect(response.headers['x-frame-options']).toBe('SAMEORIGIN');
    expect(response.headers['cross-origin-resource-policy']).toBe('same-origin');
    for (const documentOnly of ['referrer-policy', 'cross-origin-opener-policy', 'x-xss-protection'])
      expect(response.headers[documentOnly]).toBeUndefined();
    const docs = await app.inject('/docs/');
    expect(docs.headers['content-security-policy']).toContain("default-src 'self'");
    expect(docs.headers['content-security-policy']).toContain("script-src 'self' 'unsafe-inline'");
    expect(docs.headers).toMatchObject({
      'x-content-type-options': 'nosniff',
      'x-frame-options': 'SAMEORIGIN',
      'referrer-policy': 'no-referrer',
      'cross-origin-opener-policy': 'same-origin',
      'x-xss-protection': '0',
    });
    expect(response.headers['access-control-allow-origin']).toBe('https://app.example.com');
    const other = await app.inject({ url: '/health', headers: { origin: 'https://evil.example' } });
    expect(other.headers['access-control-allow-origin']).toBeUndefined();
  });

  it('allows every method and request header of the API to an allowed origin, and exposes its answer headers', async () => {
    const preflight = await app.inject({
      method: 'OPTIONS',
      url: '/api/items/1',
      headers: {
        origin: 'https://app.example.com',
        'access-control-request-method': 'PATCH',
        'access-control-request-headers': 'authorization,content-type,idempotency-key,x-request-id',
      },
    });
    expect(preflight.statusCode).toBe(204);
    expect(preflight.headers['access-control-allow-origin']).toBe('https://app.example.com');
    const listed = (name: string) =>
      String(preflight.headers[name])
        .split(',')
        .map((value) => value.trim().toLowerCase());
    expect(listed('access-control-allow-methods')).toEqual([
      'get',
      'head',
      'post',
      'patch',
      'delete',
      'options',
    ]);
    expect(listed('access-control-allow-headers')).toEqual([
      'authorization',
      'content-type',
      'idempotency-key',
      'x-request-id',
    ]);
    expect(preflight.headers['access-control-max-age']).toBe('600');
    const answer = await app.inject({ url: '/api/items/1', headers: { origin: 'https://app.example.com' } });
    const exposed = String(answer.headers['access-control-expose-headers']).toLowerCase();
    for (const name of [
      'location',
      'retry-after',
      'x-request-id',
      'www-authenticate',
      'x-ratelimit-remaining',
    ])
      expect(exposed).toContain(name);
  });
});

describe('bad input gets one problem+json shape and never a 500', () => {
  it('malformed JSON → 400', async () => {
    const response = await app.inject({
      method: 'POST',
      url: '/api/items',
      headers: { ...(await authHeaders(app)), 'content-type': 'application/json' },
      payload: '{"name": ',
    });
    expect(expectProblem(response, 400).detail).toMatch(/Malformed JSON/);
  });

  it('body over BODY_LIMIT → 413', async () => {
    const response = await app.inject({
      method: 'POST',
      url: '/api/items',
      headers: { ...(await authHeaders(app)), 'content-type': 'application/json' },
      payload: JSON.stringify({ name: 'x', description: 'y'.repeat(2000) }),
    });
    expectProblem(response, 413);
  });

  it('schema violation → 400 naming the field', async () => {
    const response = await app.inject({
      method: 'POST',
      headers: await authHeaders(app),
      url: '/api/items',
      payload: { name: '' },
    });
    const body = expectProblem(response, 400);
    expect(body.errors).toEqual([expect.objectContaining({ field: 'name', in: 'body' })]);
    const missing = expectProblem(
      await app.inject({ method: 'POST', headers: await authHeaders(app), url: '/api/items', payload: {} }),
      400,
    );
    expect(missing.errors).toEqual([expect.objectContaining({ field: 'name' })]);
    const extra = expectProblem(
      await app.inject({
        method: 'POST',
        headers: await authHeaders(app),
        url: '/api/items',
        payload: { name: 'a', colour: 'red' },
      }),
      400,
    );
    expect(extra.errors).toEqual([expect.objectContaining({ field: 'colour', message: 'is not allowed' })]);
  });

  it('wrong content type → 415', async () => {
    const response = await app.inject({
      method: 'POST',
      url: '/api/items',
      headers: { ...(await authHeaders(app)), 'content-type': 'text/csv' },
      payload: 'name\nx',
    });
    expectProblem(response, 415);
  });

  it('unknown route and unknown method both → 404', async () => {
    expect(expectProblem(await app.inject('/nope'), 404).detail).toBe('No route for GET /nope');
    expect(expectProblem(await app.inject({ method: 'PUT', url: '/health' }), 404).detail).toBe(
      'No route for PUT /health',
    );
  });

  it('out-of-range query → 400 naming the parameter', async () => {
    const body = expectProblem(await app.inject('/api/examples/hash?rounds=0'), 400);
    expect(body.errors).toEqual([expect.objectContaining({ field: 'rounds', in: 'querystring' })]);
    const tooMany = expectProblem(await app.inject(`/api/examples/hash?rounds=${MAX_HASH_ROUNDS + 1}`), 400);
    expect(tooMany.errors).toEqual([
      { field: 'rounds', message: `must be <= ${MAX_HASH_ROUNDS}`, in: 'querystring' },
    ]);
    expectProblem(await app.inject('/api/examples/hash?rounds=abc'), 400);
  });

  it('keeps serving after all of the above', async () => {
    expect((await app.inject('/health/ready')).statusCode).toBe(200);
  });
});

describe('examples', () => {
  it('hashes N rounds deterministically', async () => {
    const one = await app.inject('/api/examples/hash?rounds=3');
    expect(one.statusCode).toBe(200);
    expect(one.json()).toEqual({ rounds: 3, digest: expect.stringMatching(/^[0-9a-f]{64}$/) });
    expect((await app.inject('/api/examples/hash?rounds=3')).json()).toEqual(one.json());
    expect((await app.inject('/api/examples/hash?rounds=4')).json().digest).not.toBe(one.json().digest);
  });
});
