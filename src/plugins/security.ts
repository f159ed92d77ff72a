import type { IncomingMessage, ServerResponse } from 'node:http';
import cors from '@fastify/cors';
import underPressure from '@fastify/under-pressure';
import type { FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify';
import fp from 'fastify-plugin';
import helmet, { contentSecurityPolicy } from 'helmet';
import type { Settings } from '../settings.js';
import { sendProblem } from './errors.js';
import { problem } from './problem.js';

type SecuritySettings = Pick<
  Settings,
  'CORS_ORIGINS' | 'LOAD_SHED_MAX_EVENT_LOOP_DELAY_MS' | 'LOAD_SHED_MAX_ELU' | 'LOAD_SHED_RETRY_AFTER'
>;

/** under-pressure's sample: the event-loop delay is the mean over this window. */
const LOAD_SHED_SAMPLE_MS = 1000;

type Headers = ReadonlyArray<readonly [name: string, value: string]>;
type HeaderMiddleware = (req: IncomingMessage, res: ServerResponse, next: (error?: unknown) => void) => void;

/**
 * What a browser page on an allowed origin may use: every method and request header of the API
 * (preflighted ones included: PATCH, DELETE, Authorization, JSON bodies), and the answer headers
 * its scripts need to read (where a new resource is, when to retry, rate limits, the request id).
 */
export const CORS_OPTIONS = {
  methods: ['GET', 'HEAD', 'POST', 'PATCH', 'DELETE', 'OPTIONS'],
  allowedHeaders: ['Authorization', 'Content-Type', 'Idempotency-Key', 'X-Request-Id'],
  exposedHeaders: [
    'Idempotent-Replayed',
    'Location',
    'Retry-After',
    'WWW-Authenticate',
    'X-Request-Id',
    'X-RateLimit-Limit',
    'X-RateLimit-Remaining',
    'X-RateLimit-Reset',
    'RateLimit-Policy',
    'RateLimit',
    'traceresponse',
  ],
  // A browser may reuse a preflight answer for 10 minutes instead of asking before every write.
  maxAge: 600,
} as const;

/**
 * The routes load shedding answers with 503 problem+json: the API. Readiness reports the overload in
 * its own shape (routes/health.ts reads `overload()`); liveness, the process's figures and metrics
 * are never shed (a restart cures no load, and an overloaded process should stay observable).
 */
export function shedsLoad(routeUrl: string | undefined): boolean {
  return routeUrl?.startsWith('/api/') ?? false;
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Why this process sheds load now (event loop saturated past the LOAD_SHED_* limits), or undefined. */
    overload(): string | undefined;
  }
}

export function corsOrigins(value: string): string[] | boolean {
  const origins = value
    .split(',')
    .map((origin) => origin.trim())
    .filter(Boolean);
  if (origins.length === 0) return false;
  return origins.includes('*') ? true : origins;
}

/**
 * The headers a helmet middleware sets, computed once: helmet's values depend only on its options,
 * so running it per request (re-parsing the CSP directives each time) buys nothing.
 */
function headersOf(middleware: HeaderMiddleware): Headers {
  const headers = new Map<string, string>();
  const response = {
    setHeader: (name: string, value: string | number) => headers.set(name.toLowerCase(), String(value)),
    removeHeader: (name: string) => headers.delete(name.toLowerCase()),
  } as unknown as ServerResponse;
  middleware({} as IncomingMessage, response, (error) => {
    if (error) throw error;
  });
  return [...headers];
}

/** Helmet's defaults, computed once, without its Content-Security-Policy. */
const HELMET_HEADERS = headersOf(helmet({ contentSecurityPolicy: false }));

/**
 * The headers that protect any response a browser may load, JSON included (the OWASP REST Security
 * Cheat Sheet's set for APIs): HTTPS only, no MIME sniffing, no framing, no cross-origin embedding.
 */
const EVERY_RESPONSE_HEADERS = new Set([
  'strict-transport-security',
  'x-content-type-options',
  'x-frame-options',
  'cross-origin-resource-policy',
]);

/** Sent on every response. Each header costs a JSON answer validation and bytes, so only these. */
export const SECURITY_HEADERS: Headers = HELMET_HEADERS.filter(([name]) => EVERY_RESPONSE_HEADERS.has(name));

/** The rest of helmet's headers (opener policy, referrer policy...) only govern a rendered document. */
export const DOCUMENT_HEADERS: Headers = HELMET_HEADERS.filter(([name]) => !EVERY_RESPONSE_HEADERS.has(name));

/** The content type Fastify gives a serialized JSON answer. */
const JSON_TYPE = 'application/json; charset=utf-8';

/** Responses a browser renders as a document, scripts and all. */
const DOCUMENT_TYPE =
  /^\s*(text\/html|application\/xhtml\+xml|image\/svg\+xml|text\/xml|application\/xml)\s*(;|$)/i;

/** The strict CSP of the HTML pages we serve; the docs UI loads its own inline script and styles. */
export const HTML_CSP_DIRECTIVES = {
  'script-src': ["'self'", "'unsafe-inline'"],
  'style-src': ["'self'", "'unsafe-inline'"],
  'img-src': ["'self'", 'data:', 'validator.swagger.io'],
  // TLS ends at the proxy; upgrading would break plain-HTTP development and internal calls.
  'upgrade-insecure-requests': null,
};

type CspDirectives = NonNullable<Parameters<typeof contentSecurityPolicy>[0]>['directives'];

/** Helmet's default CSP for a document whose routes set none (plain HTTP allowed, as above). */
const DEFAULT_DOCUMENT_CSP: Headers = headersOf(
  contentSecurityPolicy({ directives: { 'upgrade-insecure-requests': null } }),
);

/**
 * An onRequest hook that adds a Content-Security-Policy (helmet's defaults merged with `directives`,
 * computed once). Register it in the encapsulated scope of the routes that serve HTML (see docs.ts);
 * an HTML answer without one gets helmet's default policy.
 */
export function contentSecurityPolicyHook(directives: CspDirectives = HTML_CSP_DIRECTIVES) {
  const headers = headersOf(contentSecurityPolicy({ directives }));
  return (_request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void => {
    for (const [name, value] of headers) reply.header(name, value);
    done();
  };
}

/** Add the document-only headers (and a CSP where the route set none) once the answer's type is known. */
function addDocumentHeaders(reply: FastifyReply): void {
  const type = reply.getHeader('content-type');
  // Most answers are JSON: that one comparison before the pattern.
  if (typeof type !== 'string' || type === JSON_TYPE || !DOCUMENT_TYPE.test(type)) return;
  for (const [name, value] of DOCUMENT_HEADERS) reply.header(name, value);
  if (!reply.hasHeader('content-security-policy'))
    for (const [name, value] of DEFAULT_DOCUMENT_CSP) reply.header(name, value);
}

async function securityPlugin(app: FastifyInstance, settings: SecuritySettings): Promise<void> {
  // A callback hook, not an async one: no promise per request for a few constant headers.
  app.addHook('onRequest', (_request, reply, done) => {
    for (const [name, value] of SECURITY_HEADERS) reply.header(name, value);
    done();
  });
  app.addHook('onSend', (_request, reply, payload, done) => {
    addDocumentHeaders(reply);
    done(null, payload);
  });
  // CORS off (the default): no hook at all rather than one that answers "no" on every request.
  const origin = corsOrigins(settings.CORS_ORIGINS);
  if (origin !== false)
    await app.register(cors, {
      origin,
      methods: [...CORS_OPTIONS.methods],
      allowedHeaders: [...CORS_OPTIONS.allowedHeaders],
      exposedHeaders: [...CORS_OPTIONS.exposedHeaders],
      maxAge: CORS_OPTIONS.maxAge,
    });
  // Load shedding: a saturated event loop answers 503 + Retry-After at once instead of queueing forever,
  // on the API only (shedsLoad), and readiness says not ready (overload): an overloaded process should
  // leave the balancer's pool, not fail its liveness probe and be restarted.
  // With every limit at 0 under-pressure adds no hook (only the samples /health/worker reads).
  // The samples that span start-up (loading modules, compiling schemas blocks the loop for seconds
  // on a busy machine) say nothing about load: shed only from two samples after listening on, or a
  // fresh worker would refuse its first requests.
  let shedding = false;
  app.addHook('onListen', (done) => {
    setTimeout(() => {
      shedding = true;
    }, 2 * LOAD_SHED_SAMPLE_MS).unref();
    done();
  });
  await app.register(underPressure, {
    maxEventLoopDelay: settings.LOAD_SHED_MAX_EVENT_LOOP_DELAY_MS,
    maxEventLoopUtilization: settings.LOAD_SHED_MAX_ELU,
    // Utilisation over each sample, like the delay; the default ('cumulative') is since start-up,
    // which a process up for a day would never push past any limit.
    eventLoopUtilizationMode: 'interval',
    retryAfter: settings.LOAD_SHED_RETRY_AFTER,
    sampleInterval: LOAD_SHED_SAMPLE_MS,
    pressureHandler: (request, reply, type, value) => {
      // Returning nothing lets the request through.
      if (!shedding || !shedsLoad(request.routeOptions.url)) return;
      reply.header('retry-after', String(settings.LOAD_SHED_RETRY_AFTER));
      void sendProblem(reply, request, problem(503, `Server overloaded (${type} ${value}); retry later`));
    },
  });
  app.decorate('overload', () => {
    if (!shedding || !app.isUnderPressure()) return undefined;
    const { eventLoopDelay, eventLoopUtilized } = app.memoryUsage();
    return `Server overloaded (event-loop delay ${Math.round(eventLoopDelay)} ms, utilisation ${eventLoopUtilized.toFixed(2)})`;
  });
}

export default fp(securityPlugin, { name: 'security', dependencies: ['errors'] });
