import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { type OAuthAnswer, oauthError, oauthErrorOfProblem } from '../auth/oauth-errors.js';
import { decoyHash, MAX_PASSWORD_LENGTH, verifyPassword } from '../auth/passwords.js';
import type { SessionGrant } from '../auth/sessions.js';
import { TokenError } from '../auth/tokens.js';
import { useFormParser } from '../plugins/body.js';
import { toProblem } from '../plugins/errors.js';
import { addRateLimitFields } from '../plugins/ratelimit-fields.js';

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
const OAuthErrorSchema = Type.Object(
  {
    error: Type.Union(
      ['invalid_request', 'invalid_grant', 'unsupported_grant_type', 'temporarily_unavailable'].map((code) =>
        Type.Literal(code),
      ),
    ),
    error_description: Type.String(),
  },
  { description: 'RFC 6749 §5.2 error' },
);
const oauthErrorResponse = (description: string) => ({
  description,
  content: { 'application/json': { schema: OAuthErrorSchema } },
});

/** What the sign-in limiter counts by (LOGIN_RATE_LIMIT_*). */
export interface LoginLimit {
  max: number;
  windowMs: number;
}

/** RFC 6749 §5.1/§5.2: JSON, never cached. */
function sendOAuth(reply: FastifyReply, answer: OAuthAnswer): FastifyReply {
  return reply
    .code(answer.status)
    .header('cache-control', 'no-store')
    .header('pragma', 'no-cache')
    .type('application/json; charset=utf-8')
    .send(answer.body);
}

const SESSION_ENDED =
  'The session has ended (signed out, expired, or the account was removed or disabled); sign in again';

/**
 * POST /api/auth/token, in a context of its own: it takes forms, and its errors are RFC 6749 §5.2
 * JSON (what OAuth client libraries read) instead of problem+json. Server errors stay problem+json.
 */
export const tokenRoute: FastifyPluginAsyncTypebox<{ loginLimit: LoginLimit }> = async (
  app,
  { loginLimit },
) => {
  useFormParser(app);
  const { auth } = app;

  app.setErrorHandler((error: FastifyError, request, reply) => {
    const answer = oauthErrorOfProblem(toProblem(error, true, request.headers['content-type']));
    if (!answer) throw error; // the app's handler: problem+json 5xx
    request.log.info({ status: answer.status, code: error.code }, answer.body.error_description);
    return sendOAuth(reply, answer);
  });

  // Failed password sign-ins, per client address and per account *from that address*: knowing someone's
  // email lets nobody lock its owner out from the owner's own address. Refreshes are not counted (a
  // refresh token cannot be guessed), nor are successes (a busy office behind one address signs in).
  const windowSeconds = loginLimit.windowMs / 1000;
  const limiters = (
    [
      ['sign-in-address', (request: FastifyRequest) => `login:address:${request.ip}`],
      [
        'sign-in-account',
        (request: FastifyRequest) =>
          `login:account:${((request.body as { username?: string }).username ?? '').toLowerCase()}:${request.ip}`,
      ],
    ] as const
  ).flatMap(([name, keyGenerator]) =>
    loginLimit.max > 0
      ? [
          {
            policy: { name, quota: loginLimit.max, windowSeconds },
            check: app.createRateLimit({
              max: loginLimit.max,
              timeWindow: loginLimit.windowMs,
              keyGenerator,
            }),
          },
        ]
      : [],
  );
  type LimitResult = Awaited<ReturnType<(typeof limiters)[number]['check']>>;
  /** RateLimit-Policy and RateLimit for both counts (draft-ietf-httpapi-ratelimit-headers). */
  const reportLimits = (reply: FastifyReply, results: LimitResult[]) =>
    limiters.forEach(({ policy }, index) => {
      const result = results[index];
      // isAllowed: true comes only from an allow list, which these limiters have none of.
      if (result && !result.isAllowed)
        addRateLimitFields(reply, policy, { remaining: result.remaining, resetSeconds: result.ttlInSeconds });
    });
  /** 429 once either count has reached the limit; nothing is counted here. */
  const limitLogin = async (request: FastifyRequest, reply: FastifyReply) => {
    if ((request.body as { grant_type?: unknown }).grant_type !== 'password') return;
    const results = await Promise.all(limiters.map(({ check }) => check(request, { increment: false })));
    const exhausted = results.find((result) => !result.isAllowed && result.remaining === 0);
    if (!exhausted || exhausted.isAllowed) return;
    reportLimits(reply, results);
    reply.header('retry-after', String(Math.max(1, exhausted.ttlInSeconds)));
    return sendOAuth(
      reply,
      oauthError(
        'temporarily_unavailable',
        `Too many failed sign-ins; retry in ${exhausted.ttlInSeconds} s`,
        429,
      ),
    );
  };
  /** Count a failed sign-in, and tell the client how many it has left. */
  const countFailure = async (request: FastifyRequest, reply: FastifyReply) =>
    reportLimits(reply, await Promise.all(limiters.map(({ check }) => check(request))));

  const issue = async (reply: FastifyReply, grant: SessionGrant) => {
    const now = Math.floor(Date.now() / 1000);
    const base = { userId: grant.userId, sessionId: grant.sessionId, notAfter: grant.expiresAt };
    reply.header('cache-control', 'no-store').header('pragma', 'no-cache'); // RFC 6749 §5.1
    return {
      access_token: await auth.signer.sign('access', base, auth.accessTtl),
      token_type: 'Bearer' as const,
      expires_in: Math.max(1, Math.min(auth.accessTtl, grant.expiresAt - now)),
      refresh_token: await auth.signer.sign(
        'refresh',
        { ...base, tokenId: grant.refreshTokenId },
        auth.refreshTtl,
      ),
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
          'and reusing one signs the whole session out. A session ends AUTH_SESSION_MAX_AGE after sign-in ' +
          'whatever the refreshes. Errors are RFC 6749 §5.2 JSON (`error`, `error_description`). ' +
          'Rate-limited per address and per account from an address.',
        security: [],
        consumes: ['application/x-www-form-urlencoded', 'application/json'],
        body: TokenRequest,
        response: {
          200: TokenResponse,
          400: oauthErrorResponse(
            'invalid_request (malformed or missing parameters), ' +
              'unsupported_grant_type, or invalid_grant (wrong email or password; an invalid, expired, ' +
              'reused or revoked refresh token)',
          ),
          413: oauthErrorResponse('invalid_request: the body is larger than BODY_LIMIT'),
          415: oauthErrorResponse('invalid_request: send a form or JSON'),
          429: oauthErrorResponse(
            'temporarily_unavailable: too many failed sign-ins; retry after Retry-After',
          ),
          503: {
            description:
              'A dependency is unavailable, the server is overloaded, or the request passed its deadline; retry after Retry-After',
            content: { 'application/problem+json': { schema: Type.Unsafe({ $ref: 'Problem#' }) } },
          },
        },
      },
    },
    async (request, reply) => {
      const body = request.body;
      if (body.grant_type === 'password') {
        // The schema requires both for this grant; narrowed here for the type checker.
        const { username = '', password = '' } = body;
        const found = await auth.users.findForSignIn(username);
        const valid = await verifyPassword(password, found?.passwordHash ?? (await decoyHash()));
        if (!found || !valid) {
          await countFailure(request, reply);
          return sendOAuth(reply, oauthError('invalid_grant', 'Wrong email or password'));
        }
        return issue(reply, await auth.sessions.open(found.user.id));
      }
      let claims: Awaited<ReturnType<typeof auth.signer.verify>>;
      try {
        claims = await auth.signer.verify(body.refresh_token ?? '', 'refresh');
      } catch (error) {
        if (!(error instanceof TokenError)) throw error;
        return sendOAuth(
          reply,
          oauthError('invalid_grant', `The refresh token is not valid (${error.reason})`),
        );
      }
      const outcome = await auth.sessions.refresh(claims.sid, claims.jti);
      if (outcome.kind === 'rotated' && outcome.grant.userId === claims.sub)
        return issue(reply, outcome.grant);
      // A refresh token used twice was copied: the store has ended the session for both holders.
      const description =
        outcome.kind === 'reused'
          ? 'The refresh token was already used; the session is signed out'
          : SESSION_ENDED;
      return sendOAuth(reply, oauthError('invalid_grant', description));
    },
  );
};
