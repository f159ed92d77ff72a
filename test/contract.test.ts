import type { LightMyRequestResponse } from 'fastify';
import { describe, expect, it } from 'vitest';
import { authHeaders, useTestApp } from './helpers/app.js';

// The strict request contract (src/plugins/validation.ts, body.ts): every case of issue 13 and a few more.
// Load shedding off: a loaded CI machine must not turn a contract answer into a 503.
const testApp = useTestApp({ LOAD_SHED_MAX_EVENT_LOOP_DELAY_MS: '0' });

const rawPost = async (url: string, body: string, contentType = 'application/json') =>
  testApp.app.inject({
    method: 'POST',
    url,
    payload: body,
    headers: { ...(await authHeaders(testApp.app)), 'content-type': contentType },
  });

function problemOf(response: LightMyRequestResponse, status: number) {
  expect(response.statusCode, response.body).toBe(status);
  expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
  return response.json() as { detail: string; errors?: Array<{ field: string; message: string }> };
}

async function countItems(): Promise<number> {
  const response = await testApp.app.inject('/api/items?limit=100');
  return response.json().items.length;
}

describe('bodies are validated strictly, never coerced', () => {
  it.each([
    ['a number', '{"name":12345}', 'must be string'],
    ['a boolean', '{"name":true}', 'must be string'],
    ['an array', '{"name":["a"]}', 'must be string'],
    ['null', '{"name":null}', 'must be string'],
    ['an object', '{"name":{}}', 'must be string'],
  ])('refuses %s for a string field, naming the field and the type', async (_what, body, message) => {
    const before = await countItems();
    const problem = problemOf(await rawPost('/api/items', body), 400);
    expect(problem.errors).toContainEqual({ field: 'name', message, in: 'body' });
    expect(problem.detail).toContain(`name ${message}`);
    expect(await countItems()).toBe(before);
  });

  it('keeps null where the schema allows it, and says "string or null" otherwise', async () => {
    const created = await rawPost('/api/items', '{"name":"n","description":null}');
    expect(created.statusCode).toBe(201);
    expect(created.json().description).toBeNull();
    const withText = (await rawPost('/api/items', '{"name":"n","description":"text"}')).json();
    const cleared = await testApp.app.inject({
      method: 'PATCH',
      headers: await authHeaders(testApp.app),
      url: `/api/items/${withText.id}`,
      payload: { description: null },
    });
    expect(cleared.json().description).toBeNull();
    const wrong = problemOf(await rawPost('/api/items', '{"name":"n","description":5}'), 400);
    expect(wrong.errors).toEqual([{ field: 'description', message: 'must be string or null', in: 'body' }]);
  });

  it('says in words that a body is required, and which field is missing', async () => {
    const none = problemOf(
      await testApp.app.inject({
        method: 'POST',
        url: '/api/items',
        headers: await authHeaders(testApp.app),
      }),
      400,
    );
    expect(none.detail).toBe('A JSON object body is required (Content-Type: application/json)');
    expect(problemOf(await rawPost('/api/items', ''), 400).detail).toMatch(/body is required/);
    expect(problemOf(await rawPost('/api/items', '[]'), 400).detail).toMatch(/body is required/);
    const missing = problemOf(await rawPost('/api/items', '{}'), 400);
    expect(missing.errors).toEqual([{ field: 'name', message: 'is required', in: 'body' }]);
  });

  it('refuses oversize and non-finite numbers', async () => {
    const huge = problemOf(await rawPost('/api/items?limit=1', '{"name":"a","extra":1e400}'), 400);
    expect(huge.errors?.[0]?.field).toBe('extra');
    const item = (await rawPost('/api/items', '{"name":"n"}')).json();
    const tooBig = await testApp.app.inject(`/api/items/${item.id}0000000000000000000`);
    expect(problemOf(tooBig, 400).errors?.[0]?.field).toBe('id');
  });
});

describe('strings PostgreSQL cannot store are refused at the edge', () => {
  it.each([
    ['a NUL', '{"name":"a\\u0000b"}', 'NUL'],
    ['a lone high surrogate', '{"name":"a\\ud800b"}', 'surrogate'],
    ['a lone low surrogate', '{"name":"\\udc00"}', 'surrogate'],
  ])('%s in a field: 400 naming it, nothing stored', async (_what, body, word) => {
    const before = await countItems();
    const problem = problemOf(await rawPost('/api/items', body), 400);
    expect(problem.errors?.[0]?.field).toBe('name');
    expect(problem.detail).toContain(word);
    expect(await countItems()).toBe(before);
  });

  it('accepts a properly paired surrogate (emoji) and stores it verbatim', async () => {
    const created = await rawPost('/api/items', '{"name":"ok \\ud83d\\ude00"}');
    expect(created.statusCode).toBe(201);
    expect(created.json().name).toBe('ok 😀');
  });

  it('refuses a NUL nested in any body, naming its path (task payloads too)', async () => {
    const problem = problemOf(
      await rawPost(
        '/api/tasks',
        '{"name":"email.send","payload":{"to":"a@b.co","subject":"s\\u0000","body":""}}',
      ),
      400,
    );
    expect(problem.errors?.[0]?.field).toBe('payload/subject');
  });

  it('refuses a NUL in a key', async () => {
    const problem = problemOf(await rawPost('/api/items', '{"na\\u0000me":"x"}'), 400);
    expect(problem.detail).toContain('NUL');
  });
});

describe('content types, JSON syntax and prototype keys', () => {
  it('answers 415 for a content type the route does not take', async () => {
    for (const type of ['text/plain', 'application/xml', 'application/x-www-form-urlencoded']) {
      const problem = problemOf(await rawPost('/api/items', 'name=x', type), 415);
      expect(problem.detail).toBe(`Content-Type ${type} is not accepted here; send application/json`);
    }
  });

  it('accepts application/json with a charset', async () => {
    expect((await rawPost('/api/items', '{"name":"c"}', 'application/json; charset=utf-8')).statusCode).toBe(
      201,
    );
  });

  it('says what was refused: malformed JSON, __proto__ and constructor.prototype keys', async () => {
    expect(problemOf(await rawPost('/api/items', '{"name":'), 400).detail).toMatch(/^Malformed JSON/);
    const proto = problemOf(await rawPost('/api/items', '{"name":"x","__proto__":{"admin":true}}'), 400);
    expect(proto.detail).toBe('__proto__ is not allowed: "__proto__" keys are refused (prototype pollution)');
    const nested = problemOf(
      await rawPost('/api/items', '{"name":"x","a":{"constructor":{"prototype":{}}}}'),
      400,
    );
    expect(nested.errors?.[0]?.field).toBe('a/constructor');
  });

  it('survives deeply nested JSON', async () => {
    const deep = `${'['.repeat(50_000)}${']'.repeat(50_000)}`;
    const response = await rawPost('/api/items', deep);
    expect(problemOf(response, 400).detail).toBe('The body nests deeper than 64 levels');
    expect((await testApp.app.inject('/health')).statusCode).toBe(200);
  });
});

describe('path and query values: only the canonical spelling', () => {
  it.each(['1e3', '0x10', '%207', '7%20', '+7', '007', '7.0', '0b1', '1_0'])(
    'refuses /api/items/%s with 400 naming id',
    async (id) => {
      const problem = problemOf(await testApp.app.inject(`/api/items/${id}`), 400);
      expect(problem.errors?.[0]?.field).toBe('id');
    },
  );

  it('still reads the canonical id and canonical query numbers', async () => {
    const item = (await rawPost('/api/items', '{"name":"canon"}')).json();
    expect((await testApp.app.inject(`/api/items/${item.id}`)).statusCode).toBe(200);
    expect((await testApp.app.inject('/api/items?limit=5')).statusCode).toBe(200);
    expect(problemOf(await testApp.app.inject('/api/items?limit=1e1'), 400).errors?.[0]?.field).toBe('limit');
    expect(problemOf(await testApp.app.inject('/api/examples/sleep?ms=0x1'), 400).errors?.[0]?.field).toBe(
      'ms',
    );
  });
});
