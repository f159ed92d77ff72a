import { randomUUID } from 'node:crypto';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { decoyHash, MAX_PASSWORD_LENGTH, verifyPassword } from '../auth/passwords.js';
import { unauthorized } from '../auth/plugin.js';
import { TokenError } from '../auth/tokens.js';
import { useFormParser } from '../plugins/body.js';
import { sendProblem } from '../plugins/errors.js';
import {
  BODY_PROBLEMS,
  COMMON_PROBLEMS,
  problem,
  problemResponses,
  UNAUTHORIZED,
} from '../plugins/problem.js';

// RFC 6749 §4.3.2 (password grant) and §6 (refresh), as form or JSON. scope and client_id are
// accepted and ignored, as OAuth clients such as the Swagger UI send them.
const TokenRequest = Type.Object(
  {
    grant_type: Type.Union([Type.Literal('password'), Type.Literal('refresh_token')], {
      description: 'password to sign in, refresh_token to renew',
    }),
    username: Type.Optional(
      Type.String({ minLength: 1, maxLength: 320, description: 'Email (password grant)' }),
    ),
    password: Type.Optional(Type.String({ minLength: 1, maxLength: MAX_PASSWORD_LENGTH })),
    refresh_token: Type.Optional(Type.String({ minLength: 1, maxLength: 4096 })),
    scope: Type.Optional(Type.String({ maxLength: 1000, description: 'Ignored' })),
    client_id: Type.Optional(Type.String({ maxLength: 200, description: 'Ignored' })),
    client_secret: Type.Optional(Type.String({ maxLength: 200, description: 'Ignored' })),
  },
  {
    additionalProperties: false,
    description: 'RFC 6749 token request',
    // What each grant needs, in the schema itself, so the document (and clients) say it too.
    allOf: [
      {
        if: { properties: { grant_type: { const: 'password' } } },
        // biome-ignore lint/suspicious/noThenProperty: JSON Schema's if/then keyword, never awaited
        then: {
          properties: { username: { type: 'string' }, password: { type: 'string' } },
          required: ['username', 'password'],
        },
      },
      {
        if: { properties: { grant_type: { const: 'refresh_token' } } },
        // biome-ignore lint/suspicious/noThenProperty: JSON Schema's if/then keyword, never awaited
        then: { properties: { refresh_token: { type: 'string' } }, required: ['refresh_token'] },
      },
    ],
  },
);
const TokenResponse = Type.Object(
  {
    access_token: Type.String(),
    token_type: Type.Literal('Bearer'),
    expires_in: Type.Integer({ description: 'Seconds the access token stays valid' }),
    refresh_token: Type.String({ description: 'Use once, with grant_type=refresh_token' }),
  },
  { description: 'Signed in (RFC 6749 §5.1)' },
);
const Me = Type.Object(
  { id: Type.String(), email: Type.String(), createdAt: Type.String({ format: 'date-time' }) },
  { description: 'The signed-in user' },
);

/** What the login limiter counts by: the client address, and the account tried. */
export interface LoginLimit {
  max: number;
  windowMs: number;
}

export const authRoutes: FastifyPluginAsyncTypebox<{ loginLimit: LoginLimit }> = async (
  app,
  { loginLimit },
) => {
  useFormParser(app); // this context only: the token endpoint takes forms, other routes answer 415
  const { auth } = app;

  const limiters =
    loginLimit.max > 0
      ? [
          app.createRateLimit({
            max: loginLimit.max,
            timeWindow: loginLimit.windowMs,
            keyGenerator: (request) => `login:address:${request.ip}`,
          }),
          app.createRateLimit({
            max: loginLimit.max,
            timeWindow: loginLimit.windowMs,
            keyGenerator: (request) =>
              `login:account:${((request.body as { username?: string }).username ?? '').toLowerCase()}`,
          }),
        ]
      : [];
  /** Per address always; per account when a username is sent. Answers 429 when either is exceeded. */
  const limitLogin = async (request: FastifyRequest, reply: FastifyReply) => {
    const hasUsername = typeof (request.body as { username?: unknown }).username === 'string';
    const results = await Promise.all(
      limiters.filter((_, index) => index === 0 || hasUsername).map((limiter) => limiter(request)),
    );
    const exceeded = results.find((result) => !result.isAllowed && result.isExceeded);
    if (!exceeded || exceeded.isAllowed) return;
    reply.header('retry-after', String(exceeded.ttlInSeconds));
    return sendProblem(
      reply,
      request,
      problem(429, `Too many sign-in attempts; retry in ${exceeded.ttlInSeconds} s`),
    );
  };

  const issue = async (reply: FastifyReply, userId: string, sessionId: string) => {
    reply.header('cache-control', 'no-store'); // RFC 6749 §5.1
    return {
      access_token: await auth.signer.sign('access', userId, sessionId, auth.accessTtl),
      token_type: 'Bearer' as const,
      expires_in: auth.accessTtl,
      refresh_token: await auth.signer.sign('refresh', userId, sessionId, auth.refreshTtl),
    };
  };

  app.post(
    '/api/auth/token',
    {
      preHandler: limitLogin,
      schema: {
        tags: ['auth'],
        operationId: 'createToken',
        summary: 'Sign in, or refresh a token',
        description:
          'OAuth2 password grant (RFC 6749 §4.3): username (email) and password give an access and a ' +
          'refresh token. grant_type=refresh_token renews them; each refresh token works once (rotation), ' +
          'and reusing one signs the whole session out. Rate-limited per account and per address.',
        security: [],
        consumes: ['application/x-www-form-urlencoded', 'application/json'],
        body: TokenRequest,
        response: {
          200: TokenResponse,
          ...problemResponses({
            ...COMMON_PROBLEMS,
            ...BODY_PROBLEMS,
            400: 'Missing or malformed parameters for the grant',
            401: 'Wrong email or password, or an invalid, expired, reused or revoked refresh token',
            429: 'Too many sign-in attempts for this account or address; retry after Retry-After',
          }),
        },
      },
    },
    async (request, reply) => {
      const body = request.body;
      const missing = (field: string) =>
        sendProblem(
          reply,
          request,
          problem(400, `${field} is required with grant_type=${body.grant_type}`, {
            errors: [{ field, message: 'is required', in: 'body' }],
          }),
        );
      if (body.grant_type === 'password') {
        if (body.username === undefined) return missing('username');
        if (body.password === undefined) return missing('password');
        const found = await auth.users.findForSignIn(body.username);
        const valid = await verifyPassword(body.password, found?.passwordHash ?? (await decoyHash()));
        if (!found || !valid) return unauthorized(request, reply, 'Wrong email or password', false);
        return issue(reply, found.user.id, randomUUID());
      }
      if (body.refresh_token === undefined) return missing('refresh_token');
      try {
        const claims = await auth.signer.verify(body.refresh_token, 'refresh');
        if (await auth.sessions.isRevoked(claims.sid))
          return unauthorized(request, reply, 'The session has been signed out', true);
        const remaining = Math.max(1, claims.exp - Math.floor(Date.now() / 1000));
        if (!(await auth.sessions.claimRefresh(claims.jti, remaining))) {
          // A refresh token used twice was copied: end the session for both holders.
          await auth.sessions.revoke(claims.sid, auth.refreshTtl);
          return unauthorized(
            request,
            reply,
            'The refresh token was already used; the session is signed out',
            true,
          );
        }
        return issue(reply, claims.sub, claims.sid);
      } catch (error) {
        if (error instanceof TokenError)
          return unauthorized(request, reply, `The refresh token is not valid (${error.reason})`, true);
        throw error;
      }
    },
  );

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
          'Revokes the session of the access token: it and every refresh token of the session are refused ' +
          'from the next request on, on every worker and node.',
        response: {
          204: Type.Null({ description: 'Signed out' }),
          ...problemResponses({ ...COMMON_PROBLEMS, 401: UNAUTHORIZED }),
        },
      },
    },
    async (request, reply) => {
      if (request.principal) await auth.sessions.revoke(request.principal.sessionId, auth.refreshTtl);
      return reply.code(204).send(null);
    },
  );
};
