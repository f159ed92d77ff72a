import type { OutgoingHttpHeaders } from 'node:http';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { runOnBehalfOf } from '../db/request-scope.js';
import { PROBLEM_CONTENT_TYPE, problem } from './problem.js';

declare module 'fastify' {
  interface FastifyRequest {
    /**
     * Aborts when the request's deadline (REQUEST_DEADLINE_MS) passes. The `app.db` queries the request
     * runs are bound to it already (db/request-scope.ts); pass it to any other I/O that takes a signal.
     */
    abortSignal: AbortSignal;
  }
}

/** The reason a request's signal aborts with when its deadline passes. */
export class DeadlineError extends Error {
  readonly code = 'REQUEST_DEADLINE';

  constructor(readonly ms: number) {
    super(`The request did not finish within its ${ms} ms deadline`);
    this.name = 'DeadlineError';
  }
}

/** What the deadline's 503 asks for, as every other 503 of the service (errors.ts). */
const RETRY_AFTER_SECONDS = '5';

/** The signal of every request while deadlines are off: it never aborts. */
const NEVER = new AbortController().signal;

/** Requests whose answer has begun (onSend ran): the deadline has been met, even if hooks still run. */
const answering = new WeakSet<FastifyRequest>();
/** Requests whose deadline passed (read without making their signal). */
const expired = new WeakSet<FastifyRequest>();

/**
 * Each request's controller, made when its signal is first read (a query, a handler) or its deadline
 * passes: most requests (health, cached reads, no database) never need one, and an AbortController per
 * request was measurable memory under load.
 */
const controllers = new WeakMap<FastifyRequest, AbortController>();
function controllerOf(request: FastifyRequest): AbortController {
  let controller = controllers.get(request);
  if (!controller) {
    controller = new AbortController();
    controllers.set(request, controller);
  }
  return controller;
}

/**
 * The 503 a request gets past its deadline, unless its answer has begun. Written on the raw response
 * and the reply hijacked, rather than sent through Fastify: the handler is still running, and a
 * `reply.send` of its own while this answer's async onSend hooks ran would mix the two answers (its
 * status, this body). Hijacked, a later send of the handler's is refused (one warning); onSend hooks do
 * not run for this answer, onResponse hooks (the access log) do.
 */
function expire(request: FastifyRequest, reply: FastifyReply, ms: number): void {
  if (reply.sent || reply.raw.headersSent || answering.has(request)) return;
  expired.add(request);
  controllerOf(request).abort(new DeadlineError(ms)); // cancels its running query (listeners run synchronously)
  request.log.warn({ deadlineMs: ms }, 'request deadline passed: 503, its work cancelled');
  reply.hijack();
  const detail = `The request did not finish within ${ms} ms; retry later`;
  const body = JSON.stringify({ ...problem(503, detail), instance: request.url, requestId: request.id });
  // What the hooks set so far (request id, security headers, CORS, X-RateLimit-*), then the problem's own.
  const headers: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(reply.getHeaders()))
    if (value !== undefined) headers[name] = value;
  try {
    reply.raw.writeHead(503, {
      ...headers,
      'content-type': PROBLEM_CONTENT_TYPE,
      'content-length': Buffer.byteLength(body),
      'retry-after': RETRY_AFTER_SECONDS,
    });
    reply.raw.end(body);
  } catch (error) {
    request.log.warn({ err: error }, 'the deadline answer could not be written');
    reply.raw.destroy();
  }
}

type Handler = (this: unknown, request: FastifyRequest, reply: FastifyReply) => unknown;

const isThenable = (value: unknown): value is PromiseLike<unknown> =>
  typeof (value as { then?: unknown } | null)?.then === 'function';

/**
 * A handler that ends after its request was aborted has nobody to answer: its value or error is dropped
 * (debug line), instead of Fastify sending it again ("Reply was already sent") or logging an error
 * ("Promise errored, but reply.sent = true was set") for work that was cancelled on purpose.
 */
function quietAfterAbort(handler: Handler): Handler {
  return function (this: unknown, request, reply) {
    const result = handler.call(this, request, reply);
    if (!isThenable(result)) return result;
    return Promise.resolve(result).then(
      (value) => (expired.has(request) ? undefined : value),
      (error: unknown) => {
        if (!expired.has(request)) throw error;
        request.log.debug({ err: error }, 'the work of an aborted request ended');
        return undefined;
      },
    );
  };
}

/**
 * Every request gets a deadline, and a signal that aborts at it. Fastify 5's `handlerTimeout` would be
 * the tool, but its timer and `request.signal` listen for the request's 'close', which Node emits as
 * soon as a body has been read: every POST or PATCH with a body lost its deadline on arrival and saw
 * its signal aborted (fastify/fastify#6725). A client that goes away cancels nothing here: a write whose
 * client vanished finishes, so that a retry with the same Idempotency-Key finds its answer.
 */
async function deadlinePlugin(app: FastifyInstance, options: { deadlineMs: number }): Promise<void> {
  const { deadlineMs } = options;
  app.decorateRequest('abortSignal', {
    getter(this: FastifyRequest) {
      return deadlineMs > 0 ? controllerOf(this).signal : NEVER;
    },
  });
  // Callback hooks: no promise per request.
  app.addHook('onRequest', (request, reply, done) => {
    if (deadlineMs > 0) {
      // Created before the request's scope is entered: what its 503 sets off is not the request's work.
      const timer = setTimeout(expire, deadlineMs, request, reply, deadlineMs);
      reply.raw.once('close', () => clearTimeout(timer));
    }
    runOnBehalfOf(request, done);
  });
  if (deadlineMs > 0)
    app.addHook('onSend', (request, _reply, payload, done) => {
      answering.add(request);
      done(null, payload);
    });
  // A body is read from socket events, outside the scope entered above: enter it again for the hooks
  // that follow and the handler.
  app.addHook('preValidation', (request, _reply, done) => runOnBehalfOf(request, done));
  if (deadlineMs > 0)
    app.addHook('onRoute', (route) => {
      route.handler = quietAfterAbort(route.handler as Handler) as typeof route.handler;
    });
}

export default fp(deadlinePlugin, { name: 'deadline' });
