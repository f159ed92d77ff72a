import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, LogController } from 'fastify';
import type { Logger } from 'pino';
import authPlugin from './auth/plugin.js';
import { lazyRequestLogger } from './logger.js';
import affinityPlugin from './plugins/affinity.js';
import { useStrictJsonParser } from './plugins/body.js';
import { dashboardOffRoutes } from './plugins/dashboard-off.js';
import dbPlugin from './plugins/db.js';
import deadlinePlugin from './plugins/deadline.js';
import docsPlugin from './plugins/docs.js';
import errorsPlugin from './plugins/errors.js';
import { clientErrorHandler, frameworkErrorHandler } from './plugins/framework-errors.js';
import idempotencyPlugin from './plugins/idempotency.js';
import lifecyclePlugin from './plugins/lifecycle.js';
import metricsPlugin, { type MetricsOptions } from './plugins/metrics.js';
import { ProblemSchema } from './plugins/problem.js';
import readinessPlugin from './plugins/readiness.js';
import { createSchemaCompilers } from './plugins/schema-compilers.js';
import securityPlugin from './plugins/security.js';
import sharedStatePlugin from './plugins/shared-state.js';
import tasksPlugin from './plugins/tasks.js';
import { authRoutes } from './routes/auth.js';
import { exampleRoutes } from './routes/examples.js';
import { healthRoutes, type ProcessIdentity } from './routes/health.js';
import { CreatedItem, Item, itemRoutes } from './routes/items.js';
import { enqueueSchemas, taskRoutes } from './routes/tasks.js';
import { type Settings, trustProxyOf } from './settings.js';
import { fastifyTrustProxy } from './settings-trust-proxy.js';
import { activeTracing } from './telemetry/tracing.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** Compile the route schemas no request has needed yet; resolves with how many. */
    compilePendingSchemas(): Promise<number>;
  }
}

export interface AppOptions {
  logger: Logger;
  identity?: ProcessIdentity;
  metrics?: MetricsOptions;
}

const packageVersion = (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
).version;

const REQUEST_ID = /^[\w.:-]{1,128}$/;
/** How long after listening the schemas no request has used yet are compiled. */
const SCHEMA_WARM_DELAY_MS = 1000;

/**
 * The service as a Fastify instance, ready to listen: external plugins, then app plugins, then routes.
 * It knows nothing about levels, clusters or signals (see src/runtime/).
 */
export async function buildApp(settings: Settings, options: AppOptions): Promise<FastifyInstance> {
  const schemas = createSchemaCompilers();
  const app = Fastify({
    loggerInstance: options.logger as FastifyBaseLogger,
    bodyLimit: settings.BODY_LIMIT,
    keepAliveTimeout: settings.KEEP_ALIVE_TIMEOUT * 1000,
    requestTimeout: settings.REQUEST_TIMEOUT * 1000,
    connectionTimeout: 0,
    trustProxy: fastifyTrustProxy(trustProxyOf(settings)),
    // We answer 503 problem+json ourselves while closing (plugins/lifecycle.ts).
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    // One line per request (plugins/lifecycle.ts) instead of Fastify's two.
    logController: new LogController({ disableRequestLogging: true }),
    // request.log is made when first used: most requests never log through it.
    childLoggerFactory: lazyRequestLogger,
    // Honour a sane incoming x-request-id so a request can be traced across services.
    genReqId: (request) => {
      const incoming = request.headers['x-request-id'];
      return typeof incoming === 'string' && REQUEST_ID.test(incoming) ? incoming : randomUUID();
    },
    // Errors before routing (a malformed URL, a path parameter too long) and bytes Node's parser refuses
    // (headers too large, a bad Content-Length) answer problem+json too (plugins/framework-errors.ts).
    frameworkErrors: frameworkErrorHandler(settings.NODE_ENV === 'production'),
    clientErrorHandler: clientErrorHandler(options.logger as FastifyBaseLogger),
    // Strict bodies, canonical-only coercion of path and query values (plugins/validation.ts),
    // each schema compiled on first use (plugins/schema-compilers.ts).
    schemaController: { compilersFactory: schemas.compilersFactory },
  }).withTypeProvider<TypeBoxTypeProvider>();

  // Tracing on: its plugin comes first so that every hook and route is covered. Off: nothing at all.
  const tracing = activeTracing();
  if (tracing) await app.register(tracing.fastifyPlugin);
  useStrictJsonParser(app as unknown as FastifyInstance);
  app.addSchema(ProblemSchema);
  app.addSchema(Item);
  app.addSchema(CreatedItem);
  for (const schema of enqueueSchemas) app.addSchema(schema);
  await app.register(errorsPlugin, { production: settings.NODE_ENV === 'production' });
  await app.register(lifecyclePlugin);
  // Before every other hook and route: each request's deadline and signal, and the scope binding its queries.
  await app.register(deadlinePlugin, { deadlineMs: settings.REQUEST_DEADLINE_MS });
  await app.register(securityPlugin, settings);
  await app.register(docsPlugin, { enabled: settings.OPENAPI_DOCS, version: packageVersion });
  await app.register(metricsPlugin, options.metrics ?? {});
  await app.register(readinessPlugin);
  await app.register(dbPlugin, settings);
  await app.register(tasksPlugin, settings);
  await app.register(sharedStatePlugin, settings);
  await app.register(authPlugin, settings);
  // Before the routes: it hooks every /api POST and PATCH as they are added (onRoute).
  await app.register(idempotencyPlugin, settings);
  if (settings.SESSION_AFFINITY) await app.register(affinityPlugin);

  await app.register(healthRoutes, { identity: options.identity ?? { workerId: 0, generation: 0 } });
  await app.register(itemRoutes, { cacheTtl: settings.CACHE_TTL });
  await app.register(exampleRoutes);
  await app.register(taskRoutes);
  await app.register(authRoutes, {
    loginLimit: { max: settings.LOGIN_RATE_LIMIT_MAX, windowMs: settings.LOGIN_RATE_LIMIT_WINDOW * 1000 },
  });
  // bull-board, BullMQ and ioredis load only where the dashboard is on.
  if (settings.ENABLE_BACKGROUND_TASKS && settings.BULL_BOARD_USER)
    await app.register((await import('./plugins/dashboard.js')).dashboardPlugin, settings);
  else await app.register(dashboardOffRoutes, settings);
  // Once listening (and the sibling workers have had time to boot), compile the schemas no
  // request has needed yet, so that the first request of a route does not pay for it.
  app.decorate('compilePendingSchemas', () => schemas.compilePending());
  app.addHook('onListen', (done) => {
    setTimeout(() => {
      app
        .compilePendingSchemas()
        .catch((error: unknown) => app.log.error({ err: error }, 'a route schema failed to compile'));
    }, SCHEMA_WARM_DELAY_MS).unref();
    done();
  });
  await app.ready();
  return app as unknown as FastifyInstance;
}
