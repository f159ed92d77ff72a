import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import type { Redis } from 'ioredis';
import client from 'prom-client';
import { type Cache, PassThroughCache, RedisCache } from '../cache/cache.js';
import { withCacheMetrics } from '../cache/metrics.js';
import { sharedCacheTargetOf } from '../redis/target.js';
import { type Settings, sharedStateStoreOf } from '../settings.js';
import { routeLabel } from './metrics.js';
import { postgresRateLimitStore, pruneRateLimits } from './rate-limit-store.js';
import { addRateLimitFields } from './ratelimit-fields.js';

const rateLimitRejections = new client.Counter({
  name: 'rate_limit_rejections_total',
  help: 'Requests answered 429 by the app rate limit (RATE_LIMIT_MAX), by route',
  labelNames: ['route'] as const,
});

const RATE_LIMIT_PRUNE_MS = 60_000;

declare module 'fastify' {
  interface FastifyInstance {
    cache: Cache;
  }
}

/**
 * State that must agree across every process, level and replica: the rate limits and the cache. In
 * Redis when one is configured; otherwise rate limits count in PostgreSQL and there is no cache.
 * Never in this process alone: a limit of N means N for the whole service at every level.
 */
async function sharedStatePlugin(app: FastifyInstance, settings: Settings): Promise<void> {
  let redis: Redis | undefined;
  if (sharedStateStoreOf(settings) === 'redis') {
    const [{ createProducerConnection, firstAttemptSettled }, { watchConnection }] = await Promise.all([
      import('../redis/connection.js'),
      import('../redis/connection-events.js'),
    ]);
    const connection = createProducerConnection(sharedCacheTargetOf(settings));
    redis = connection;
    // Surfaced per call; the connection retries in the background, logged once down and once back.
    watchConnection(connection, app.log, 'shared-state');
    app.addHook('onReady', () => firstAttemptSettled(connection));
    app.addHook('onClose', async () => connection.disconnect());
  }
  const cache: Cache = withCacheMetrics(
    redis ? new RedisCache(redis, `${settings.QUEUE_PREFIX}:cache:`) : new PassThroughCache(),
  );
  app.decorate('cache', cache);

  // Loaded when a limit is on: the /api limit (RATE_LIMIT_MAX, applied to every /api route) or the
  // sign-in limit, whose limiters routes/auth-token.ts makes on the same store.
  if (settings.RATE_LIMIT_MAX > 0 || settings.LOGIN_RATE_LIMIT_MAX > 0) {
    if (!redis) {
      const pruning = setInterval(() => {
        pruneRateLimits(app.db).catch((error: Error) =>
          app.log.warn({ err: error.message }, 'rate-limit prune failed'),
        );
      }, RATE_LIMIT_PRUNE_MS).unref();
      app.addHook('onClose', async () => clearInterval(pruning));
    }
    const { default: rateLimit } = await import('@fastify/rate-limit');
    await app.register(rateLimit, {
      global: settings.RATE_LIMIT_MAX > 0,
      max: settings.RATE_LIMIT_MAX,
      timeWindow: settings.RATE_LIMIT_WINDOW * 1000,
      ...(redis
        ? { redis, nameSpace: `${settings.QUEUE_PREFIX}:rate-limit:` }
        : { store: postgresRateLimitStore(app.db) }),
      // The shared store unreachable: let requests through (default) or refuse them; never wait.
      skipOnError: settings.RATE_LIMIT_FAIL_OPEN,
      allowList: (request) => !request.url.startsWith('/api/'),
      onExceeded: (request) => rateLimitRejections.inc({ route: routeLabel(request) }),
      errorResponseBuilder: (_request, context) => ({
        statusCode: context.statusCode,
        code: 'RATE_LIMITED',
        message: `Rate limit exceeded: ${context.max} requests per ${context.after}; retry later`,
      }),
    });
    if (settings.RATE_LIMIT_MAX > 0) {
      // The plugin's X-RateLimit-* values, said again as the current draft's fields (ratelimit-fields.ts).
      const policy = {
        name: 'api',
        quota: settings.RATE_LIMIT_MAX,
        windowSeconds: settings.RATE_LIMIT_WINDOW,
      };
      app.addHook('onSend', (_request, reply, payload, done) => {
        const remaining = reply.getHeader('x-ratelimit-remaining');
        if (remaining !== undefined)
          addRateLimitFields(reply, policy, {
            remaining: Number(remaining),
            resetSeconds: Number(reply.getHeader('x-ratelimit-reset')),
          });
        done(null, payload);
      });
    }
  }
}

export default fp(sharedStatePlugin, { name: 'shared-state', dependencies: ['db'] });
