import swagger from '@fastify/swagger';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { withIdempotencyKeyParameter } from './idempotency.js';
import { contentSecurityPolicyHook } from './security.js';

/** OpenAPI 3 generated from the routes' TypeBox schemas, served at /openapi.json, UI at /docs. */
async function docsPlugin(
  app: FastifyInstance,
  options: { enabled: boolean; version: string },
): Promise<void> {
  await app.register(swagger, {
    // Components keep their $id (Problem, Item, report.generate) so generated clients get real names.
    refResolver: {
      buildLocalReference: (json, _baseUri, _fragment, index) => String(json.$id ?? `def-${index}`),
    },
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'node-levels-starter',
        version: options.version,
        description: 'Production-grade Fastify starter that scales by environment flags (LEVEL=1..4).',
      },
      // Relative: the document describes whichever host serves it (behind a proxy too).
      servers: [{ url: '/', description: 'The server that serves this document' }],
      components: {
        securitySchemes: {
          // OAuth2 password flow (as FastAPI's OAuth2PasswordBearer): /docs gets an Authorize button.
          oauth2: {
            type: 'oauth2',
            description: 'Sign in with POST /api/auth/token; send the access token as Bearer',
            flows: {
              password: { tokenUrl: '/api/auth/token', refreshUrl: '/api/auth/token', scopes: {} },
            },
          },
        },
      },
      // Routes that need no token say `security: []`.
      security: [{ oauth2: [] }],
      tags: [
        { name: 'health', description: 'Liveness, readiness and per-process figures' },
        { name: 'items', description: 'The example resource, stored in PostgreSQL' },
        { name: 'examples', description: 'Routes that show what more processes buy' },
        { name: 'tasks', description: 'Background tasks on BullMQ (ENABLE_BACKGROUND_TASKS, LEVEL=4)' },
        { name: 'auth', description: 'Sign in (OAuth2 password grant), refresh, who am I, sign out' },
      ],
    },
    // The Idempotency-Key header: one reusable parameter, referenced by every keyed write.
    transformObject: (document) =>
      'openapiObject' in document
        ? withIdempotencyKeyParameter(document.openapiObject)
        : document.swaggerObject,
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
