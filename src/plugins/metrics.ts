import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import client from 'prom-client';
import { KeyedHistogram } from '../keyed-metrics.js';

export interface MetricsOptions {
  /**
   * Produces the exposition text. Defaults to this process's registry; the cluster runtime
   * passes one that asks the primary for every worker's figures aggregated.
   */
  collect?: () => Promise<string>;
}

let defaultsRegistered = false;

export const REQUEST_DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export const httpDuration = new KeyedHistogram(
  'http_request_duration_seconds',
  'HTTP request duration by route, method and status code',
  ['method', 'route', 'status_code'],
  REQUEST_DURATION_BUCKETS,
);

/** The route pattern (/api/items/:id), never the raw URL: label cardinality stays bounded. */
export function routeLabel(request: FastifyRequest): string {
  return request.routeOptions.url ?? 'unmatched';
}

async function metricsPlugin(app: FastifyInstance, options: MetricsOptions): Promise<void> {
  if (!defaultsRegistered) {
    client.collectDefaultMetrics();
    defaultsRegistered = true;
  }
  app.addHook('onResponse', (request, reply, done) => {
    httpDuration.observe(
      [request.method, routeLabel(request), String(reply.statusCode)],
      reply.elapsedTime / 1000,
    );
    done();
  });
  const collect = options.collect ?? (() => client.register.metrics());
  app.get('/metrics', { schema: { hide: true } }, async (_request, reply) =>
    reply.type(client.register.contentType).send(await collect()),
  );
}

export default fp(metricsPlugin, { name: 'metrics' });
