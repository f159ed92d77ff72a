import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { sendProblem } from '../plugins/errors.js';
import { problem } from '../plugins/problem.js';
import type { Settings } from '../settings.js';
import { SessionStore } from './sessions.js';
import { TokenError, TokenSigner } from './tokens.js';
import { type Role, UserRepository } from './users.js';

export interface Auth {
  signer: TokenSigner;
  sessions: SessionStore;
  users: UserRepository;
  accessTtl: number;
  refreshTtl: number;
}

declare module 'fastify' {
  interface FastifyInstance {
    auth: Auth;
    /** onRequest hook of protected routes: a valid, unrevoked Bearer access token or 401. */
    authenticate: (request: FastifyRequest, reply: FastifyReply) => Promise<unknown>;
  }
  interface FastifyRequest {
    /** Set by `authenticate`: who is signed in, and the session to revoke on logout. */
    principal?: { userId: string; sessionId: string; role: Role };
  }
}

const FIRST_USER_RETRY_MS = 5000;

/** 401 problem+json with the RFC 6750 challenge. */
export function unauthorized(
  request: FastifyRequest,
  reply: FastifyReply,
  detail: string,
  invalidToken: boolean,
) {
  reply.header(
    'www-authenticate',
    invalidToken
      ? `Bearer realm="api", error="invalid_token", error_description="${detail}"`
      : 'Bearer realm="api"',
  );
  return sendProblem(reply, request, problem(401, detail));
}

const TOKEN_DETAIL: Record<TokenError['reason'], string> = {
  expired: 'The access token has expired; refresh it or sign in again',
  invalid: 'The access token is not valid (malformed, tampered or signed with an unknown key)',
  wrong_kind: 'This is not an access token',
};

function bearerOf(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  const match = header ? /^Bearer ([\w.~+/-]+=*)$/i.exec(header.trim()) : null;
  return match?.[1];
}

const SESSION_PRUNE_MS = 15 * 60_000;

/**
 * Sign-in state: token signing, the sessions in PostgreSQL (shared by every process, level and
 * replica, so a logout holds everywhere on the next request) and the first user.
 */
async function authPlugin(app: FastifyInstance, settings: Settings): Promise<void> {
  const sessions = new SessionStore(app.db, settings.AUTH_SESSION_MAX_AGE);
  // Ended sessions are deleted by whichever process gets there first; the statement is idempotent.
  const pruning = setInterval(() => {
    sessions.prune().catch((error: Error) => app.log.warn({ err: error.message }, 'session prune failed'));
  }, SESSION_PRUNE_MS).unref();
  app.addHook('onClose', async () => clearInterval(pruning));
  const auth: Auth = {
    signer: new TokenSigner(settings.AUTH_SECRET, settings.AUTH_PREVIOUS_SECRET),
    sessions,
    users: new UserRepository(app.db),
    accessTtl: settings.AUTH_ACCESS_TOKEN_TTL,
    refreshTtl: settings.AUTH_REFRESH_TOKEN_TTL,
  };
  app.decorate('auth', auth);
  app.decorateRequest('principal', undefined);
  app.decorate('authenticate', async (request: FastifyRequest, reply: FastifyReply) => {
    const token = bearerOf(request);
    if (!token)
      return unauthorized(request, reply, 'Sign in first: send Authorization: Bearer <access token>', false);
    let claims: Awaited<ReturnType<TokenSigner['verify']>>;
    try {
      claims = await auth.signer.verify(token, 'access');
    } catch (error) {
      if (error instanceof TokenError) return unauthorized(request, reply, TOKEN_DETAIL[error.reason], true);
      throw error;
    }
    // Fails closed: with PostgreSQL unreachable the request gets 503, never a pass.
    const principal = await auth.sessions.principalOf(claims.sid);
    if (!principal || principal.userId !== claims.sub)
      return unauthorized(
        request,
        reply,
        'The session has ended (signed out, expired, or the account was removed or disabled)',
        true,
      );
    request.principal = { userId: principal.userId, sessionId: claims.sid, role: principal.role };
  });

  if (settings.FIRST_USER_EMAIL)
    await ensureFirstUser(app, auth.users, settings.FIRST_USER_EMAIL, settings.FIRST_USER_PASSWORD);
}

/**
 * Create the first user: once at start (so it can sign in as soon as the server listens), then in the
 * background every few seconds while the database is unreachable.
 */
async function ensureFirstUser(
  app: FastifyInstance,
  users: UserRepository,
  email: string,
  password: string,
): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  const attempt = async () => {
    try {
      const created = await users.createIfMissing(email, password, 'admin');
      app.log.info({ email, created }, created ? 'first user created' : 'first user exists');
    } catch (error) {
      app.log.warn({ err: (error as Error).message }, 'first user not created yet; retrying');
      if (!closed) timer = setTimeout(attempt, FIRST_USER_RETRY_MS).unref();
    }
  };
  app.addHook('onClose', async () => {
    closed = true;
    clearTimeout(timer);
  });
  await attempt();
}

export default fp(authPlugin, { name: 'auth', dependencies: ['db'] });
