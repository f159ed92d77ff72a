import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest, RouteOptions } from 'fastify';
import fp from 'fastify-plugin';
import { IdempotencyKeyStore, type KeyId, pruneIdempotencyKeys } from '../db/idempotency-keys.js';
import { detached } from '../db/request-scope.js';
import type { Settings } from '../settings.js';
import { sendProblem } from './errors.js';
import {
  decide,
  fingerprint,
  KEPT_HEADERS,
  keepsResponse,
  MAX_KEY_LENGTH,
  parseIdempotencyKey,
  type StoredResponse,
} from './idempotency-decision.js';
import { problem, problemResponses } from './problem.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Set while this request holds an Idempotency-Key: the key, and the claim that holds it. */
    idempotency?: KeyId & { claim: string; settled: boolean };
  }
  interface FastifyContextConfig {
    /** A body field that is the route's key when no header is sent (POST /api/tasks: idempotencyKey). */
    idempotencyKeyField?: string;
  }
}

/** Marks an answer that comes from the store, not from running the request again. */
export const REPLAYED_HEADER = 'idempotent-replayed';

/** Writes a key protects: every /api POST and PATCH but signing in and out (nothing to repeat there). */
const UNKEYED = new Set(['/api/auth/token', '/api/auth/logout']);
export function takesIdempotencyKey(method: string, url: string): boolean {
  return (method === 'POST' || method === 'PATCH') && url.startsWith('/api/') && !UNKEYED.has(url);
}

/** The statuses a key adds to each keyed operation, as the document shows them. */
const KEY_PROBLEMS = problemResponses({
  409: 'A request with this Idempotency-Key is still in flight; retry after Retry-After',
  422: 'This Idempotency-Key was used with another payload (method, URL or body)',
});

/** An answer's body over this is kept without it (no route here comes near: an item is at most ~60 KiB). */
const MAX_KEPT_BODY_BYTES = 1024 * 1024;
/** How often each process deletes expired keys. */
const PRUNE_INTERVAL_MS = 5 * 60_000;
/** Claim attempts before answering 409: each lost one means another request just took the key. */
const CLAIM_ATTEMPTS = 3;

type IdempotencySettings = Pick<Settings, 'IDEMPOTENCY_KEY_TTL' | 'IDEMPOTENCY_KEY_LEASE'>;

const keyProblem = (reply: FastifyReply, request: FastifyRequest, message: string) =>
  sendProblem(
    reply,
    request,
    problem(400, `Idempotency-Key ${message}`, {
      errors: [{ field: 'Idempotency-Key', message, in: 'header' }],
    }),
  );

/** The key this request carries (header, or the route's body field), undefined for none, or a 400 sent. */
function keyOf(request: FastifyRequest, reply: FastifyReply): string | undefined | FastifyReply {
  const header = request.headers['idempotency-key'];
  let key: string | undefined;
  if (header !== undefined) {
    const parsed = parseIdempotencyKey(String(header));
    if (!parsed.ok) return keyProblem(reply, request, parsed.reason);
    key = parsed.key;
  }
  const field = request.routeOptions.config.idempotencyKeyField;
  const fromBody = field ? (request.body as Record<string, unknown> | undefined)?.[field] : undefined;
  if (typeof fromBody !== 'string') return key;
  if (key !== undefined && key !== fromBody)
    return keyProblem(reply, request, `differs from the body's ${field}; send one key (the header)`);
  return fromBody;
}

function replay(reply: FastifyReply, response: StoredResponse): FastifyReply {
  reply.code(response.status).headers(response.headers).header(REPLAYED_HEADER, 'true');
  return reply.send(response.body);
}

/** The answer as it is kept: status, the headers that belong to it, the body when it can be kept. */
function keptAnswer(reply: FastifyReply, payload: unknown): StoredResponse {
  const headers: Record<string, string> = {};
  for (const name of KEPT_HEADERS) {
    const value = reply.getHeader(name);
    if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(', ') : String(value);
  }
  let body: Buffer | undefined;
  if (payload === null || payload === undefined) body = Buffer.alloc(0);
  else if (typeof payload === 'string') body = Buffer.from(payload);
  else if (Buffer.isBuffer(payload)) body = payload;
  if (body && body.length <= MAX_KEPT_BODY_BYTES) return { status: reply.statusCode, headers, body };
  // A stream or an oversized body: the status and Location still tell the retry what happened.
  delete headers['content-type'];
  return { status: reply.statusCode, headers, body: Buffer.alloc(0) };
}

/**
 * Idempotency-Key on every /api POST and PATCH (draft-ietf-httpapi-idempotency-key-header): the first
 * answer is kept in PostgreSQL and replayed to a retry with the same key and payload on any process or
 * replica; another payload is 422, a retry while the first is in flight 409. The claim is taken after
 * sign-in and validation, so refused requests never use a key up. See docs/api.md#idempotency-key.
 */
async function idempotencyPlugin(app: FastifyInstance, settings: IdempotencySettings): Promise<void> {
  const store = new IdempotencyKeyStore(app.db);
  const ttl = settings.IDEMPOTENCY_KEY_TTL;
  const leaseMs = settings.IDEMPOTENCY_KEY_LEASE * 1000;
  app.decorateRequest('idempotency', undefined);

  const inFlight = (request: FastifyRequest, reply: FastifyReply, retryAfterSeconds: number) => {
    reply.header('retry-after', String(retryAfterSeconds));
    return sendProblem(
      reply,
      request,
      problem(409, 'A request with this Idempotency-Key is still in flight; retry after Retry-After'),
    );
  };

  async function claimKey(request: FastifyRequest, reply: FastifyReply) {
    const key = keyOf(request, reply);
    if (typeof key !== 'string') return key;
    const id: KeyId = { scope: request.principal?.userId ?? '', key };
    const print = fingerprint(request.method, request.url, request.body);
    for (let attempt = 0; attempt < CLAIM_ATTEMPTS; attempt += 1) {
      const claim = randomUUID();
      let held = await store.claimNew(id, print, claim, ttl);
      if (!held) {
        const decision = decide(await store.read(id), print, leaseMs);
        if (decision.kind === 'replay') return replay(reply, decision.response);
        if (decision.kind === 'in-flight') return inFlight(request, reply, decision.retryAfterSeconds);
        if (decision.kind === 'mismatch')
          return sendProblem(
            reply,
            request,
            problem(422, 'This Idempotency-Key was already used with another payload; use a new key'),
          );
        // 'new': the row went between our two statements; 'replace'/'takeover': compare-and-set.
        if (decision.kind !== 'new') {
          held = await store.claimFrom(id, print, claim, ttl, decision.previous);
          if (held && decision.kind === 'takeover')
            request.log.warn(
              { key },
              'idempotency key taken over after its lease: running the request again',
            );
        }
      }
      if (held) {
        request.idempotency = { ...id, claim, settled: false };
        return;
      }
    }
    return inFlight(request, reply, 1);
  }

  // Keep the answer before it leaves: once the client has it, a retry replays it.
  async function keepAnswer(request: FastifyRequest, reply: FastifyReply, payload: unknown) {
    const held = request.idempotency;
    if (!held || held.settled) return payload;
    held.settled = true;
    const answer = keepsResponse(reply.statusCode) ? keptAnswer(reply, payload) : undefined;
    try {
      // Outside the request's deadline (db/request-scope.ts): the operation ran, its answer must be kept.
      const kept = await detached(() =>
        answer
          ? store.complete(held, held.claim, answer, ttl)
          : store.release(held, held.claim).then(() => true),
      );
      if (!kept)
        request.log.warn({ key: held.key }, 'idempotency key lost to a takeover; this answer is not kept');
    } catch (error) {
      // The answer still goes out; the key stays in flight until its lease, then a retry runs again.
      request.log.error({ err: error, key: held.key }, 'idempotency key not settled');
    }
    return payload;
  }

  // Safety net: an answer that never passed onSend must not leave its key held until the lease.
  async function releaseUnsettled(request: FastifyRequest) {
    const held = request.idempotency;
    if (!held || held.settled) return;
    held.settled = true;
    // Past its deadline (plugins/deadline.ts) the handler may still be finishing a write: keep the key
    // held, so a retry gets 409 until the lease ends instead of running the write a second time.
    if (request.abortSignal?.aborted) {
      request.log.info(
        { key: held.key },
        'idempotency key kept until its lease: the request passed its deadline',
      );
      return;
    }
    await detached(() => store.release(held, held.claim)).catch((error: Error) =>
      request.log.warn({ err: error.message }, 'idempotency key not released'),
    );
  }

  app.addHook('onRoute', (route: RouteOptions) => {
    if (![route.method].flat().some((method) => takesIdempotencyKey(method, route.url))) return;
    route.preHandler = [...[route.preHandler ?? []].flat(), claimKey];
    route.onSend = [...[route.onSend ?? []].flat(), keepAnswer];
    route.onResponse = [...[route.onResponse ?? []].flat(), releaseUnsettled];
    if (route.schema?.response)
      route.schema.response = { ...KEY_PROBLEMS, ...(route.schema.response as Record<string, unknown>) };
  });

  const pruning = setInterval(() => {
    pruneIdempotencyKeys(app.db).catch((error: Error) =>
      app.log.warn({ err: error.message }, 'idempotency key prune failed'),
    );
  }, PRUNE_INTERVAL_MS).unref();
  app.addHook('onClose', async () => clearInterval(pruning));
}

export default fp(idempotencyPlugin, { name: 'idempotency', dependencies: ['db', 'errors'] });

/** The header as the OpenAPI document describes it, once, for every keyed operation to reference. */
export const IDEMPOTENCY_KEY_PARAMETER = {
  name: 'Idempotency-Key',
  in: 'header',
  required: false,
  description:
    'Makes a retry of this write safe: the first answer (status, Location, body) is kept IDEMPOTENCY_KEY_TTL ' +
    '(default 24 h) and replayed, marked `Idempotent-Replayed: true`, to a retry with the same key and payload. ' +
    'A Structured Field string (RFC 9651): 1-255 printable ASCII characters in double quotes, a UUID is best. ' +
    'Same key, other payload: 422; the first still in flight: 409 with Retry-After. Keys are per user.',
  schema: {
    type: 'string',
    minLength: 3,
    maxLength: MAX_KEY_LENGTH + 2,
    pattern: String.raw`^"(?:[ !#-\[\]-~]|\\["\\])+"$`,
  },
  example: '"8e03978e-40d5-43e8-bc93-6894a57f9324"',
};

interface OpenApiDocument {
  paths?: Record<string, Record<string, { parameters?: unknown[] }>>;
  components?: { parameters?: Record<string, unknown> };
}

/** The document with the parameter in components and referenced by every keyed operation (docs.ts). */
export function withIdempotencyKeyParameter<T extends object>(document: T): T {
  const openapi = document as OpenApiDocument;
  openapi.components = {
    ...openapi.components,
    parameters: { ...openapi.components?.parameters, IdempotencyKey: IDEMPOTENCY_KEY_PARAMETER },
  };
  for (const [path, operations] of Object.entries(openapi.paths ?? {}))
    for (const [method, operation] of Object.entries(operations))
      if (takesIdempotencyKey(method.toUpperCase(), path))
        operation.parameters = [
          ...(operation.parameters ?? []),
          { $ref: '#/components/parameters/IdempotencyKey' },
        ];
  return document;
}
