import cors from '@fastify/cors';
import helmet from '@fastify/helmet';
import underPressure from '@fastify/under-pressure';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import type { Settings } from '../settings.js';
import { sendProblem } from './errors.js';
import { problem } from './problem.js';

type SecuritySettings = Pick<
  Settings,
  'CORS_ORIGINS' | 'LOAD_SHED_MAX_EVENT_LOOP_DELAY_MS' | 'LOAD_SHED_MAX_ELU' | 'LOAD_SHED_RETRY_AFTER'
>;

export function corsOrigins(value: string): string[] | boolean {
  const origins = value
    .split(',')
    .map((origin) => origin.trim())
    .filter(Boolean);
  if (origins.length === 0) return false;
  return origins.includes('*') ? true : origins;
}

async function securityPlugin(app: FastifyInstance, settings: SecuritySettings): Promise<void> {
  await app.register(helmet, {
    // The docs UI loads its own inline script and styles; everything else keeps helmet's strict CSP.
    contentSecurityPolicy: {
      directives: {
        'script-src': ["'self'", "'unsafe-inline'"],
        'style-src': ["'self'", "'unsafe-inline'"],
        'img-src': ["'self'", 'data:', 'validator.swagger.io'],
        // TLS ends at the proxy; upgrading would break plain-HTTP development and internal calls.
        'upgrade-insecure-requests': null,
      },
    },
  });
  await app.register(cors, { origin: corsOrigins(settings.CORS_ORIGINS) });
  // Load shedding: a saturated event loop answers 503 + Retry-After at once instead of queueing forever.
  await app.register(underPressure, {
    maxEventLoopDelay: settings.LOAD_SHED_MAX_EVENT_LOOP_DELAY_MS,
    maxEventLoopUtilization: settings.LOAD_SHED_MAX_ELU,
    retryAfter: settings.LOAD_SHED_RETRY_AFTER,
    pressureHandler: (request, reply, type, value) => {
      reply.header('retry-after', String(settings.LOAD_SHED_RETRY_AFTER));
      void sendProblem(reply, request, problem(503, `Server overloaded (${type} ${value}); retry later`));
    },
  });
}

export default fp(securityPlugin, { name: 'security', dependencies: ['errors'] });
