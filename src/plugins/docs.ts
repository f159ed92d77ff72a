import swagger from '@fastify/swagger';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { contentSecurityPolicyHook } from './security.js';

/** OpenAPI 3 generated from the routes' TypeBox schemas, served at /openapi.json, UI at /docs. */
async function docsPlugin(
  app: FastifyInstance,
  options: { enabled: boolean; version: string },
): Promise<void> {
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'node-levels-starter',
        version: options.version,
        description: 'Production-grade Fastify starter that scales by environment flags (LEVEL=1..4).',
      },
      tags: [
        { name: 'health', description: 'Liveness, readiness and per-process figures' },
        { name: 'items', description: 'The example resource, stored in PostgreSQL' },
        { name: 'examples', description: 'Routes that show what more processes buy' },
        { name: 'tasks', description: 'Background tasks on BullMQ (ENABLE_BACKGROUND_TASKS, LEVEL=4)' },
      ],
    },
  });
  if (!options.enabled) return;
  // The UI is the only HTML we serve: its own scope carries the CSP, JSON answers go without.
  await app.register(async (scope) => {
    scope.addHook('onRequest', contentSecurityPolicyHook());
    const { default: swaggerUi } = await import('@fastify/swagger-ui');
    await scope.register(swaggerUi, { routePrefix: '/docs' });
  });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
}

export default fp(docsPlugin, { name: 'docs' });
