import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { unauthorized } from '../auth/plugin.js';
import { ROLES } from '../auth/users.js';
import { COMMON_PROBLEMS, problemResponses, UNAUTHORIZED } from '../plugins/problem.js';
import { type LoginLimit, tokenRoute } from './auth-token.js';

export type { LoginLimit } from './auth-token.js';

const Me = Type.Object(
  {
    id: Type.String(),
    email: Type.String(),
    role: Type.Union([Type.Literal(ROLES[0]), Type.Literal(ROLES[1])], {
      description: 'admin may change any item; user only its own',
    }),
    createdAt: Type.String({ format: 'date-time' }),
  },
  { description: 'The signed-in user' },
);

export const authRoutes: FastifyPluginAsyncTypebox<{ loginLimit: LoginLimit }> = async (
  app,
  { loginLimit },
) => {
  const { auth } = app;
  await app.register(tokenRoute, { loginLimit });

  app.get(
    '/api/auth/me',
    {
      onRequest: app.authenticate,
      schema: {
        tags: ['auth'],
        operationId: 'getCurrentUser',
        summary: 'The signed-in user',
        description: 'Who the access token belongs to.',
        response: { 200: Me, ...problemResponses({ ...COMMON_PROBLEMS, 401: UNAUTHORIZED }) },
      },
    },
    async (request, reply) => {
      const user = request.principal ? await auth.users.get(request.principal.userId) : undefined;
      return user ?? unauthorized(request, reply, 'The account no longer exists', true);
    },
  );

  app.post(
    '/api/auth/logout',
    {
      onRequest: app.authenticate,
      schema: {
        tags: ['auth'],
        operationId: 'logout',
        summary: 'Sign out',
        description:
          'Ends the session of the access token: it and every refresh token of the session are refused ' +
          'from the next request on, by every process and replica (the session lives in PostgreSQL).',
        response: {
          204: Type.Null({ description: 'Signed out' }),
          ...problemResponses({ ...COMMON_PROBLEMS, 401: UNAUTHORIZED }),
        },
      },
    },
    async (request, reply) => {
      if (request.principal) await auth.sessions.revoke(request.principal.sessionId, 'signed out');
      return reply.code(204).send(null);
    },
  );
};
