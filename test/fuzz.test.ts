import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Ajv } from 'ajv';
import fc from 'fast-check';
import type { LightMyRequestResponse } from 'fastify';
import type pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { CLIENT_DIR } from '../scripts/openapi.js';
import { SessionStore } from '../src/auth/sessions.js';
import { TokenSigner } from '../src/auth/tokens.js';
import { encodeCursor } from '../src/db/items.js';
import { TEST_USER, useTestApp } from './helpers/app.js';
import { openPool } from './helpers/database.js';
import {
  allowedTypes,
  arbitraryFor,
  deref,
  type Field,
  fieldsOf,
  objectsOf,
  type Schema,
} from './helpers/openapi-arbitraries.js';
import { dropPrefix, REDIS_URL, uniquePrefix } from './helpers/tasks.js';

// Schema-driven fuzzing of every operation of the committed document (the drift test keeps it equal to
// what the server serves): valid requests must be accepted, mutated ones refused with the documented
// 4xx, and every answer is documented, never a 5xx, errors in problem+json. Fixed seed, bounded runs.
const SEED = 1313;
const VALID_RUNS = 300;
const MUTATED_RUNS = 500;
const SECRET = 'fuzz-test-signing-key-0123456789-abcdefghij';
const prefix = uniquePrefix();
const testApp = useTestApp({
  AUTH_SECRET: SECRET,
  ENABLE_BACKGROUND_TASKS: 'true',
  REDIS_URL,
  QUEUE_PREFIX: prefix,
  LOGIN_RATE_LIMIT_MAX: '100000',
  // Load shedding answers 503 when the (shared, loaded) machine stalls the event loop: an answer about
  // the host, not the contract. Off here; test/server.test.ts covers it.
  LOAD_SHED_MAX_EVENT_LOOP_DELAY_MS: '0',
});
afterAll(() => dropPrefix(prefix));

interface Parameter {
  name: string;
  in: 'path' | 'query' | 'header';
  required?: boolean;
  schema: Schema;
}
interface Operation {
  id: string;
  method: string;
  path: string;
  parameters: Parameter[];
  body?: { contentTypes: string[]; schema: Schema; required: boolean };
  /** Per status: the documented media type and schema of the body, if any. */
  responses: Map<number, { contentType: string; schema: Schema } | undefined>;
  secured: boolean;
}

const document = JSON.parse(readFileSync(`${CLIENT_DIR}openapi.json`, 'utf8'));
const components = document.components.schemas as Record<string, Schema>;
/** A parameter as written, or the reusable one (`components.parameters`) it references. */
const parameterOf = (parameter: Parameter & { $ref?: string }): Parameter =>
  parameter.$ref
    ? document.components.parameters[parameter.$ref.replace('#/components/parameters/', '')]
    : parameter;
// biome-ignore lint/suspicious/noExplicitAny: the document is JSON read at run time
const operations: Operation[] = Object.entries(document.paths as Record<string, Record<string, any>>).flatMap(
  ([path, methods]) =>
    Object.entries(methods).map(([method, operation]) => {
      const content = operation.requestBody?.content as Record<string, { schema: Schema }> | undefined;
      return {
        id: operation.operationId,
        method: method.toUpperCase(),
        path,
        parameters: (operation.parameters ?? []).map(parameterOf).map((parameter: Parameter) => ({
          ...parameter,
          schema: deref(parameter.schema, components),
        })),
        body: content && {
          contentTypes: Object.keys(content),
          schema: deref(Object.values(content)[0]?.schema, components),
          required: Boolean(operation.requestBody.required),
        },
        responses: new Map(
          Object.entries(
            operation.responses as Record<string, { content?: Record<string, { schema: Schema }> }>,
          ).map(([status, response]) => {
            const [contentType, body] = Object.entries(response.content ?? {})[0] ?? [];
            return [
              Number(status),
              contentType && body ? { contentType, schema: deref(body.schema, components) } : undefined,
            ];
          }),
        ),
        secured: operation.security === undefined,
      };
    }),
);

const byId = new Map(operations.map((operation) => [operation.id, operation]));
const operationOf = (request: FuzzRequest) => byId.get(request.operationId) as Operation;

// Generators narrowed where the full range costs time, not correctness: a 30 s sleep or a million hash
// rounds per request would make the run minutes long. Cursors are opaque: only issued ones are valid.
const OVERRIDES: Record<string, fc.Arbitrary<string>> = {
  'sleepExample.ms': fc.integer({ min: 0, max: 20 }).map(String),
  'dbSleepExample.ms': fc.integer({ min: 0, max: 20 }).map(String),
  'hashExample.rounds': fc.integer({ min: 1, max: 2000 }).map(String),
  'listItems.cursor': fc.nat({ max: 10_000 }).map(encodeCursor),
};

// Sign-in with the real account too, so the 200 path is fuzzed, not only wrong credentials.
const BODY_OVERRIDES: Record<string, fc.Arbitrary<unknown>> = {
  createToken: fc.oneof(
    arbitraryFor(
      deref(
        document.paths['/api/auth/token'].post.requestBody.content['application/json'].schema,
        components,
      ),
    ),
    fc.constant({ grant_type: 'password', username: TEST_USER.email, password: TEST_USER.password }),
  ),
};

interface FuzzRequest {
  /** By id, so a counterexample prints short. */
  operationId: string;
  pathValues: Record<string, string>;
  query: Record<string, string>;
  headers: Record<string, string>;
  body: unknown;
  contentType?: string;
  rawBody?: string;
  token: 'valid' | 'none' | 'garbage';
}

const parameterValue = (operation: Operation, parameter: Parameter): fc.Arbitrary<string> =>
  OVERRIDES[`${operation.id}.${parameter.name}`] ?? arbitraryFor(parameter.schema).map(String);

/**
 * Idempotency keys are single-use by contract (the same key with another payload is 422), which
 * generated small strings would repeat: each valid request gets fresh ones. A body key and a header
 * must agree (POST /api/tasks), so a body that has one goes without the header.
 */
function freshKeys(request: FuzzRequest): FuzzRequest {
  const body = request.body as Record<string, unknown> | undefined;
  const { 'Idempotency-Key': header, ...headers } = request.headers;
  if (body && typeof body === 'object' && typeof body.idempotencyKey === 'string')
    return { ...request, headers, body: { ...body, idempotencyKey: randomUUID() } };
  return header === undefined
    ? request
    : { ...request, headers: { ...headers, 'Idempotency-Key': `"${randomUUID()}"` } };
}

function validRequest(operation: Operation): fc.Arbitrary<FuzzRequest> {
  const pathParameters = operation.parameters.filter((parameter) => parameter.in === 'path');
  const queryParameters = operation.parameters.filter((parameter) => parameter.in === 'query');
  const headerParameters = operation.parameters.filter((parameter) => parameter.in === 'header');
  const generated = fc.record({
    operationId: fc.constant(operation.id),
    pathValues: fc.record(
      Object.fromEntries(
        pathParameters.map((parameter) => [parameter.name, parameterValue(operation, parameter)]),
      ),
    ),
    query: fc.record(
      Object.fromEntries(
        queryParameters.map((parameter) => [parameter.name, parameterValue(operation, parameter)]),
      ),
      {
        requiredKeys: queryParameters
          .filter((parameter) => parameter.required)
          .map((parameter) => parameter.name),
      },
    ),
    headers: fc.record(
      Object.fromEntries(
        headerParameters.map((parameter) => [parameter.name, parameterValue(operation, parameter)]),
      ),
      {
        requiredKeys: headerParameters
          .filter((parameter) => parameter.required)
          .map((parameter) => parameter.name),
      },
    ),
    body: operation.body
      ? (BODY_OVERRIDES[operation.id] ?? arbitraryFor(operation.body.schema))
      : fc.constant(undefined),
    contentType: operation.body ? fc.constantFrom(...operation.body.contentTypes) : fc.constant(undefined),
    token: fc.constant('valid' as const),
  }) as fc.Arbitrary<FuzzRequest>;
  return generated.map(freshKeys);
}

const ODD_STRINGS = ['a\u0000b', '\u0000', '\ud800', 'x\udfffy', '\udbff\ud7ff'];
// A form cannot carry a lone surrogate (the encoder writes U+FFFD, a valid character): NUL only there.
const ODD_FORM_STRINGS = ['a\u0000b', '\u0000'];
const WRONG_VALUES: unknown[] = [12345, 1.5, true, null, 'text', {}, ['a']];
const typeOf = (value: unknown) =>
  value === null
    ? 'null'
    : Array.isArray(value)
      ? 'array'
      : Number.isInteger(value)
        ? 'integer'
        : typeof value;

/** Set the value at `path` in a copy of `body`; `undefined` deletes it. */
function withValue(body: unknown, path: string[], value: unknown): unknown {
  const copy = structuredClone(body) as Record<string, unknown>;
  let target = copy;
  for (const key of path.slice(0, -1)) target = target[key] as Record<string, unknown>;
  const last = path.at(-1) as string;
  if (value === undefined) delete target[last];
  else target[last] = value;
  return copy;
}

/** An invalid variant of a valid request and the status it must get, or undefined if none applies. */
function mutate(
  request: FuzzRequest,
  kind: string,
  pick: number,
): { request: FuzzRequest; expect: number } | undefined {
  const operation = operationOf(request);
  const choose = <T>(items: T[]): T | undefined => items[pick % Math.max(items.length, 1)];
  const fields: Field[] = operation.body ? fieldsOf(operation.body.schema, request.body) : [];
  const present = fields.filter((field) => {
    let value: unknown = request.body;
    for (const key of field.path) value = (value as Record<string, unknown> | undefined)?.[key];
    return value !== undefined;
  });
  switch (kind) {
    case 'wrong-type': {
      const field = choose(present.filter((candidate) => allowedTypes(candidate.schema).size > 0));
      if (!field) return undefined;
      const allowed = allowedTypes(field.schema);
      const wrong = WRONG_VALUES.filter(
        (value) => !allowed.has(typeOf(value)) && !(allowed.has('number') && typeOf(value) === 'integer'),
      );
      // As JSON: a form body has only strings, so a wrong type cannot be said there.
      const body = withValue(request.body, field.path, choose(wrong));
      return { request: { ...request, body, contentType: 'application/json' }, expect: 400 };
    }
    case 'missing-required': {
      const field = choose(
        present.filter((candidate) => candidate.parent.required?.includes(candidate.path.at(-1) as string)),
      );
      return (
        field && {
          request: { ...request, body: withValue(request.body, field.path, undefined) },
          expect: 400,
        }
      );
    }
    case 'extra-field': {
      const closed = operation.body
        ? objectsOf(operation.body.schema, request.body).filter(
            (field) => field.schema.additionalProperties === false,
          )
        : [];
      const object = choose(closed);
      return (
        object && {
          request: { ...request, body: withValue(request.body, [...object.path, 'fuzzExtra'], 1) },
          expect: 400,
        }
      );
    }
    case 'out-of-bounds': {
      const bounded = present.flatMap((field): unknown[][] => {
        const { schema } = field;
        const values: unknown[] = [];
        if (typeof schema.maximum === 'number' && schema.maximum < Number.MAX_SAFE_INTEGER)
          values.push(schema.maximum + 1);
        if (typeof schema.minimum === 'number') values.push(schema.minimum - 1);
        if (typeof schema.maxLength === 'number') values.push('y'.repeat(schema.maxLength + 1));
        if (typeof schema.minLength === 'number' && schema.minLength > 0) values.push('');
        return values.map((value) => [field.path, value]);
      });
      const [path, value] = (choose(bounded) ?? []) as [string[], unknown];
      return path && { request: { ...request, body: withValue(request.body, path, value) }, expect: 400 };
    }
    case 'odd-string': {
      const field = choose(
        present.filter(
          (candidate) => allowedTypes(candidate.schema).has('string') || candidate.schema.type === undefined,
        ),
      );
      return (
        field && {
          request: {
            ...request,
            body: withValue(
              request.body,
              field.path,
              choose(
                request.contentType === 'application/x-www-form-urlencoded' ? ODD_FORM_STRINGS : ODD_STRINGS,
              ),
            ),
          },
          expect: 400,
        }
      );
    }
    case 'content-type':
      return operation.body && { request: { ...request, contentType: 'text/plain' }, expect: 415 };
    case 'malformed-json':
      return (
        operation.body && {
          request: { ...request, contentType: 'application/json', rawBody: '{"name": ' },
          expect: 400,
        }
      );
    case 'no-token':
      return operation.secured
        ? { request: { ...request, token: choose(['none', 'garbage'] as const) as 'none' }, expect: 401 }
        : undefined;
    case 'bad-parameter': {
      const numeric = operation.parameters.filter((parameter) =>
        ['integer', 'number'].includes(parameter.schema.type ?? ''),
      );
      const patterned = operation.parameters.filter(
        (parameter) => typeof parameter.schema.pattern === 'string',
      );
      const parameter = choose([...numeric, ...patterned]);
      if (!parameter) return undefined;
      const where = ({ path: 'pathValues', query: 'query', header: 'headers' } as const)[parameter.in];
      const current = request[where][parameter.name] ?? '1';
      const variants = patterned.includes(parameter)
        ? ['not-an-id', `${current}/x`, '']
        : [
            `${current}e0`,
            `0x${Number(current).toString(16)}`,
            ` ${current}`,
            `+${current}`,
            `0${current}`,
            'abc',
            `${current}.5`,
          ];
      const value = choose(
        variants.filter((variant) => variant !== '' || parameter.in === 'query'),
      ) as string;
      return {
        request: { ...request, [where]: { ...request[where], [parameter.name]: value } },
        expect: parameter.in === 'path' && value === '' ? 404 : 400,
      };
    }
    default:
      throw new Error(`unknown mutation ${kind}`);
  }
}

const MUTATIONS = [
  'wrong-type',
  'missing-required',
  'extra-field',
  'out-of-bounds',
  'odd-string',
  'content-type',
  'malformed-json',
  'no-token',
  'bad-parameter',
];

const signer = new TokenSigner(SECRET);

/** An access token of a session of its own (in PostgreSQL, as sign-in makes it), for TEST_USER. */
async function freshSessionToken(): Promise<string> {
  const pool = sessionPool ?? openPool(testApp.databaseUrl, 2);
  sessionPool = pool;
  const { rows } = await pool.query('SELECT id FROM users WHERE lower(email) = lower($1)', [TEST_USER.email]);
  const grant = await new SessionStore(pool, 3600).open(String(rows[0].id));
  return signer.sign(
    'access',
    { userId: grant.userId, sessionId: grant.sessionId, notAfter: grant.expiresAt },
    600,
  );
}
let sessionPool: pg.Pool | undefined;
afterAll(async () => {
  await sessionPool?.end();
});
const ajv = new Ajv({ strict: false, allErrors: true, discriminator: true, validateFormats: false });

function encodeBody(request: FuzzRequest): string | undefined {
  if (request.rawBody !== undefined) return request.rawBody;
  if (request.body === undefined) return undefined;
  if (request.contentType === 'application/x-www-form-urlencoded')
    return new URLSearchParams(
      Object.entries(request.body as Record<string, unknown>).map((entry): [string, string] => [
        entry[0],
        typeof entry[1] === 'string' ? entry[1] : JSON.stringify(entry[1]),
      ]),
    ).toString();
  return JSON.stringify(request.body);
}

async function send(request: FuzzRequest): Promise<LightMyRequestResponse> {
  const operation = operationOf(request);
  const path = operation.path.replace(/\{(\w+)\}/g, (_, name: string) =>
    encodeURIComponent(request.pathValues[name] ?? ''),
  );
  const query = new URLSearchParams(request.query).toString();
  const headers: Record<string, string> = { ...request.headers };
  // A fresh session per request, so a fuzzed logout never signs the next request out.
  if (request.token === 'valid') headers.authorization = `Bearer ${await freshSessionToken()}`;
  if (request.token === 'garbage') headers.authorization = 'Bearer not.a.token';
  const payload = encodeBody(request);
  if (payload !== undefined) headers['content-type'] = request.contentType ?? 'application/json';
  return testApp.app.inject({
    method: operation.method as 'GET',
    url: query ? `${path}?${query}` : path,
    headers,
    ...(payload === undefined ? {} : { payload }),
  });
}

const describeRequest = (request: FuzzRequest, response: LightMyRequestResponse) =>
  `${JSON.stringify(request).slice(0, 600)} -> ${response.statusCode} ${response.body.slice(0, 300)}`;

/**
 * What holds for every answer: documented status, never 5xx, errors in the documented shape (problem+json;
 * RFC 6749 JSON on the token endpoint), bodies as documented.
 */
function checkDocumented(request: FuzzRequest, response: LightMyRequestResponse): void {
  const where = describeRequest(request, response);
  expect(response.statusCode, where).toBeLessThan(500);
  const { responses } = operationOf(request);
  expect([...responses.keys()], where).toContain(response.statusCode);
  const documented = responses.get(response.statusCode);
  const schema = documented?.schema;
  if (response.statusCode >= 400) {
    expect(documented?.contentType, where).toMatch(/^application\/(problem\+)?json$/);
    expect(response.headers['content-type'], where).toContain(documented?.contentType);
    if (documented?.contentType === 'application/problem+json')
      expect(response.json().status, where).toBe(response.statusCode);
  }
  if (schema && response.statusCode !== 204) {
    const validate = ajv.compile(schema);
    expect(validate(response.json()) ? [] : validate.errors, where).toEqual([]);
  }
}

/** Statuses that refuse a request's shape or its (valid) token: a valid request never gets them. */
const refusals = (operation: Operation) =>
  new Set([400, 413, 415, 422, 429, ...(operation.secured ? [401] : [])]);
/** The token endpoint's invalid_grant: well-formed credentials that are wrong, not a malformed request. */
const isWrongCredentials = (response: LightMyRequestResponse) =>
  response.statusCode === 400 &&
  /^application\/json/.test(String(response.headers['content-type'])) &&
  response.json().error === 'invalid_grant';
const found = new Map<string, number>();

describe('schema-driven fuzz of every operation (fast-check, fixed seed)', () => {
  it(`accepts ${VALID_RUNS} valid requests and answers each as documented`, async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(...operations.map(validRequest)), async (request) => {
        const response = await send(request);
        checkDocumented(request, response);
        expect(
          refusals(operationOf(request)).has(response.statusCode) && !isWrongCredentials(response),
          describeRequest(request, response),
        ).toBe(false);
      }),
      { seed: SEED, numRuns: VALID_RUNS, endOnFailure: true },
    );
  }, 120_000);

  it(`refuses ${MUTATED_RUNS} mutated requests with the documented 4xx, in problem+json`, async () => {
    const mutated = fc
      .tuple(fc.oneof(...operations.map(validRequest)), fc.constantFrom(...MUTATIONS), fc.nat())
      .map(([request, kind, pick]) => ({ kind, mutation: mutate(request, kind, pick) }))
      .filter((candidate) => candidate.mutation !== undefined);
    await fc.assert(
      fc.asyncProperty(mutated, async ({ kind, mutation }) => {
        const { request, expect: status } = mutation as { request: FuzzRequest; expect: number };
        const response = await send(request);
        checkDocumented(request, response);
        expect(response.statusCode, `${kind}: ${describeRequest(request, response)}`).toBe(status);
        // Refused for its shape, not let through to a credentials check.
        expect(isWrongCredentials(response), `${kind}: ${describeRequest(request, response)}`).toBe(false);
        found.set(kind, (found.get(kind) ?? 0) + 1);
      }),
      { seed: SEED, numRuns: MUTATED_RUNS, endOnFailure: true },
    );
    // Every kind of mutation was exercised.
    expect([...found.keys()].sort()).toEqual([...MUTATIONS].sort());
  }, 120_000);
});
