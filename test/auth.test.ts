import { execFile } from 'node:child_process';
import { join } from 'node:path';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { SignJWT } from 'jose';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { DEVELOPMENT_SECRET, TokenSigner } from '../src/auth/tokens.js';
import { UserRepository } from '../src/auth/users.js';
import { loadSettings, type SettingsError } from '../src/settings.js';
import { buildTestApp, TEST_USER, useTestApp } from './helpers/app.js';
import { openPool } from './helpers/database.js';
import { ROOT } from './helpers/process.js';

// Sign-in through app.inject (sessions in PostgreSQL); test/one-service.test.ts covers replicas,
// workers, nginx and a real OAuth client.
const SECRET = 'k3y-for-tests-0123456789-abcdefghijklmnop';
const OLD_SECRET = 'old-k3y-for-tests-9876543210-zyxwvutsrqpo';
const testApp = useTestApp({
  AUTH_SECRET: SECRET,
  AUTH_PREVIOUS_SECRET: OLD_SECRET,
  LOGIN_RATE_LIMIT_MAX: '1000',
});
const app = () => testApp.app;

interface Tokens {
  access_token: string;
  refresh_token: string;
  token_type: string;
  expires_in: number;
}

const form = (fields: Record<string, string>) =>
  app().inject({
    method: 'POST',
    url: '/api/auth/token',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: new URLSearchParams(fields).toString(),
  });

async function signIn(email = TEST_USER.email, password = TEST_USER.password): Promise<Tokens> {
  const response = await form({ grant_type: 'password', username: email, password });
  expect(response.statusCode, response.body).toBe(200);
  return response.json() as Tokens;
}

const me = (token: string, target: FastifyInstance = app()) =>
  target.inject({ url: '/api/auth/me', headers: { authorization: `Bearer ${token}` } });

function expect401(response: LightMyRequestResponse, detail: RegExp) {
  expect(response.statusCode, response.body).toBe(401);
  expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
  expect(response.headers['www-authenticate']).toMatch(/^Bearer realm="api"/);
  expect(response.json().detail).toMatch(detail);
}

/** RFC 6749 §5.2: 400 JSON with `error` and `error_description`, never cached, no challenge. */
function expectOAuthError(response: LightMyRequestResponse, error: string, description: RegExp) {
  expect(response.statusCode, response.body).toBe(400);
  expect(response.headers['content-type']).toMatch(/^application\/json/);
  expect(response.headers['cache-control']).toBe('no-store');
  expect(response.headers['www-authenticate']).toBeUndefined();
  expect(response.json()).toEqual({ error, error_description: expect.stringMatching(description) });
}

const claimsOf = (token: string) =>
  JSON.parse(Buffer.from(token.split('.')[1] as string, 'base64url').toString()) as {
    sub: string;
    sid: string;
    exp: number;
  };
const grantOf = (token: string) => {
  const { sub, sid } = claimsOf(token);
  return { userId: sub, sessionId: sid, notAfter: Number.MAX_SAFE_INTEGER };
};

describe('sign-in (OAuth2 password grant)', () => {
  it('answers RFC 6749 §5.1 tokens to a form and to JSON, and /me says who', async () => {
    const response = await form({
      grant_type: 'password',
      username: TEST_USER.email,
      password: TEST_USER.password,
    });
    expect(response.headers['cache-control']).toBe('no-store');
    const tokens = response.json() as Tokens;
    expect(tokens).toEqual({
      access_token: expect.any(String),
      token_type: 'Bearer',
      expires_in: 900,
      refresh_token: expect.any(String),
    });
    const viaJson = await app().inject({
      method: 'POST',
      url: '/api/auth/token',
      payload: {
        grant_type: 'password',
        username: TEST_USER.email.toUpperCase(),
        password: TEST_USER.password,
      },
    });
    expect(viaJson.statusCode).toBe(200);
    const who = await me(tokens.access_token);
    expect(who.statusCode).toBe(200);
    expect(who.json()).toMatchObject({ email: TEST_USER.email, id: expect.any(String) });
  });

  it('refuses a wrong password and an unknown account alike: 400 invalid_grant (RFC 6749 §5.2)', async () => {
    expectOAuthError(
      await form({ grant_type: 'password', username: TEST_USER.email, password: 'wrong' }),
      'invalid_grant',
      /^Wrong email or password$/,
    );
    expectOAuthError(
      await form({ grant_type: 'password', username: 'nobody@example.com', password: 'x' }),
      'invalid_grant',
      /^Wrong email or password$/,
    );
  });

  it('names what a token request lacks: invalid_request, unsupported_grant_type', async () => {
    expectOAuthError(
      await form({ grant_type: 'password', username: TEST_USER.email }),
      'invalid_request',
      /password is required/,
    );
    const repeated = await app().inject({
      method: 'POST',
      url: '/api/auth/token',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: 'grant_type=password&username=a&username=b&password=x',
    });
    expectOAuthError(repeated, 'invalid_request', /^username is repeated; send each parameter once$/);
    expectOAuthError(
      await form({ grant_type: 'client_credentials' }),
      'unsupported_grant_type',
      /grant_type/,
    );
    expectOAuthError(await form({}), 'invalid_request', /grant_type is required/);
    const xml = await app().inject({
      method: 'POST',
      url: '/api/auth/token',
      headers: { 'content-type': 'application/xml' },
      payload: '<token/>',
    });
    expect(xml.statusCode).toBe(415);
    expect(xml.json()).toEqual({
      error: 'invalid_request',
      error_description: expect.stringMatching(/application\/xml/),
    });
  });
});

describe('protected routes', () => {
  it('refuses writes without a token, allows reads, and accepts a valid token', async () => {
    expect401(
      await app().inject({ method: 'POST', url: '/api/items', payload: { name: 'x' } }),
      /^Sign in first/,
    );
    expect(
      (
        await app().inject({
          method: 'POST',
          url: '/api/tasks',
          payload: { name: 'system.noop', payload: {} },
        })
      ).statusCode,
    ).toBe(401);
    expect((await app().inject({ method: 'DELETE', url: '/api/items/1' })).statusCode).toBe(401);
    expect((await app().inject('/api/items')).statusCode).toBe(200);
    const { access_token } = await signIn();
    const created = await app().inject({
      method: 'POST',
      url: '/api/items',
      headers: { authorization: `Bearer ${access_token}` },
      payload: { name: 'signed in' },
    });
    expect(created.statusCode).toBe(201);
  });

  it('refuses tampered, expired, wrongly signed and refresh-as-access tokens, each 401 problem+json', async () => {
    const { access_token, refresh_token } = await signIn();
    const [header, payload, signature] = access_token.split('.') as [string, string, string];
    const claims = claimsOf(access_token);
    const forged = Buffer.from(JSON.stringify({ ...claims, sub: '999' })).toString('base64url');
    expect401(await me(`${header}.${forged}.${signature}`), /not valid/);
    expect401(await me(`${access_token.slice(0, -2)}xx`), /not valid/);
    expect401(await me('not-a-jwt'), /not valid/);
    const expired = await new TokenSigner(SECRET).sign('access', grantOf(access_token), -60);
    expect401(await me(expired), /expired/);
    const stranger = await new TokenSigner('a-key-this-server-has-never-seen-0123456789').sign(
      'access',
      grantOf(access_token),
      60,
    );
    expect401(await me(stranger), /not valid/);
    // alg=none and a token signed with the key id but another algorithm are refused too.
    const unsigned = `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url')}.${payload}.`;
    expect401(await me(unsigned), /not valid/);
    expect401(await me(refresh_token), /not an access token/);
  });

  it('logout revokes the session: its access and refresh tokens are refused at once', async () => {
    const { access_token, refresh_token } = await signIn();
    const other = await signIn();
    const logout = await app().inject({
      method: 'POST',
      url: '/api/auth/logout',
      headers: { authorization: `Bearer ${access_token}` },
    });
    expect(logout.statusCode).toBe(204);
    expect401(await me(access_token), /session has ended/);
    expectOAuthError(
      await form({ grant_type: 'refresh_token', refresh_token }),
      'invalid_grant',
      /session has ended/,
    );
    expect((await me(other.access_token)).statusCode).toBe(200); // other sessions stay signed in
  });
});

describe('refresh rotation and key rotation', () => {
  it('rotates: a refresh token works once; reusing it signs the session out', async () => {
    const first = await signIn();
    const renewed = await form({ grant_type: 'refresh_token', refresh_token: first.refresh_token });
    expect(renewed.statusCode).toBe(200);
    const second = renewed.json() as Tokens;
    expect(second.refresh_token).not.toBe(first.refresh_token);
    expect((await me(second.access_token)).statusCode).toBe(200);
    expectOAuthError(
      await form({ grant_type: 'refresh_token', refresh_token: first.refresh_token }),
      'invalid_grant',
      /already used/,
    );
    expect401(await me(second.access_token), /session has ended/);
    // The whole family is over: the newest refresh token too.
    expectOAuthError(
      await form({ grant_type: 'refresh_token', refresh_token: second.refresh_token }),
      'invalid_grant',
      /session has ended/,
    );
  });

  it('accepts tokens signed with AUTH_PREVIOUS_SECRET and signs new ones with AUTH_SECRET', async () => {
    const { access_token } = await signIn();
    const claims = claimsOf(access_token);
    const old = await new TokenSigner(OLD_SECRET).sign('access', grantOf(access_token), 60);
    expect((await me(old)).statusCode).toBe(200);
    const header = JSON.parse(Buffer.from(access_token.split('.')[0] as string, 'base64url').toString());
    const current = new SignJWT({ sid: claims.sid, typ: 'access' })
      .setProtectedHeader({ alg: 'HS256', kid: header.kid })
      .setSubject(claims.sub)
      .setJti('j')
      .setExpirationTime('1m');
    expect((await me(await current.sign(new TextEncoder().encode(SECRET)))).statusCode).toBe(200);
    // After the rotation ends (previous key dropped), old tokens are refused.
    const rotated = await buildTestApp(testApp.databaseUrl, { AUTH_SECRET: SECRET });
    expect401(await me(old, rotated), /not valid/);
    await rotated.close();
  });
});

/** SQL on the test database, as an operator would run it. */
async function sql(text: string, values: unknown[] = []): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: testApp.databaseUrl });
  await client.connect();
  try {
    return await client.query(text, values);
  } finally {
    await client.end();
  }
}

async function makeUser(email: string, password = 'a long enough password'): Promise<void> {
  const pool = openPool(testApp.databaseUrl, 1);
  await new UserRepository(pool).createIfMissing(email, password);
  await pool.end();
}

describe('sessions end for good', () => {
  it('refuses a deleted user on the next request: its access token and its refresh token', async () => {
    await makeUser('leaving@example.com');
    const tokens = await signIn('leaving@example.com', 'a long enough password');
    expect((await me(tokens.access_token)).statusCode).toBe(200);
    await sql('DELETE FROM users WHERE email = $1', ['leaving@example.com']);
    expect401(await me(tokens.access_token), /session has ended/);
    const write = await app().inject({
      method: 'POST',
      url: '/api/items',
      headers: { authorization: `Bearer ${tokens.access_token}` },
      payload: { name: 'ghost' },
    });
    expect(write.statusCode).toBe(401);
    expectOAuthError(
      await form({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token }),
      'invalid_grant',
      /session has ended/,
    );
  });

  it('refuses a disabled user at once, and its sign-in', async () => {
    await makeUser('paused@example.com');
    const tokens = await signIn('paused@example.com', 'a long enough password');
    await sql('UPDATE users SET disabled_at = now() WHERE email = $1', ['paused@example.com']);
    expect401(await me(tokens.access_token), /session has ended/);
    expectOAuthError(
      await form({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token }),
      'invalid_grant',
      /session has ended/,
    );
    expectOAuthError(
      await form({
        grant_type: 'password',
        username: 'paused@example.com',
        password: 'a long enough password',
      }),
      'invalid_grant',
      /Wrong email or password/,
    );
  });

  it('ends a session at AUTH_SESSION_MAX_AGE whatever the refreshes; no token outlives it', async () => {
    const short = await buildTestApp(testApp.databaseUrl, {
      AUTH_SECRET: SECRET,
      AUTH_SESSION_MAX_AGE: '120',
      LOGIN_RATE_LIMIT_MAX: '1000', // the file's sign-ins share one address, counted in PostgreSQL
    });
    try {
      const signedIn = await short.inject({
        method: 'POST',
        url: '/api/auth/token',
        payload: { grant_type: 'password', username: TEST_USER.email, password: TEST_USER.password },
      });
      expect(signedIn.statusCode, signedIn.body).toBe(200);
      const tokens = signedIn.json() as Tokens;
      const now = Math.floor(Date.now() / 1000);
      expect(claimsOf(tokens.refresh_token).exp).toBeLessThanOrEqual(now + 121);
      expect(tokens.expires_in).toBeLessThanOrEqual(120);
      // Refreshing slides the refresh token's own TTL, never the session's end.
      const renewed = await short.inject({
        method: 'POST',
        url: '/api/auth/token',
        payload: { grant_type: 'refresh_token', refresh_token: tokens.refresh_token },
      });
      expect(renewed.statusCode, renewed.body).toBe(200);
      const next = renewed.json() as Tokens;
      expect(claimsOf(next.refresh_token).exp).toBeLessThanOrEqual(now + 121);
      // The end reached (moved into the past, as time would): refused everywhere.
      await sql("UPDATE auth_sessions SET expires_at = now() - interval '1 second' WHERE id = $1", [
        claimsOf(next.access_token).sid,
      ]);
      expect401(await me(next.access_token, short), /session has ended/);
      const late = await short.inject({
        method: 'POST',
        url: '/api/auth/token',
        payload: { grant_type: 'refresh_token', refresh_token: next.refresh_token },
      });
      expectOAuthError(late, 'invalid_grant', /session has ended/);
    } finally {
      await short.close();
    }
  });

  it('makes FIRST_USER an admin and later users users; /me says which', async () => {
    const admin = await signIn();
    expect((await me(admin.access_token)).json()).toMatchObject({ role: 'admin' });
    await makeUser('plain@example.com');
    const plain = await signIn('plain@example.com', 'a long enough password');
    expect((await me(plain.access_token)).json()).toMatchObject({ role: 'user' });
  });
});

describe('first user, rate limit and settings', () => {
  it('creates FIRST_USER once, however many apps start on the database', async () => {
    const apps = await Promise.all(
      [1, 2, 3].map(() => buildTestApp(testApp.databaseUrl, { AUTH_SECRET: SECRET })),
    );
    await Promise.all(apps.map((other) => other.close()));
    const client = new pg.Client({ connectionString: testApp.databaseUrl });
    await client.connect();
    const { rows } = await client.query('SELECT password_hash FROM users WHERE lower(email) = $1', [
      TEST_USER.email,
    ]);
    await client.end();
    expect(rows).toHaveLength(1);
    expect(rows[0].password_hash).toMatch(/^scrypt\$15\$8\$1\$/);
  });

  it('limits sign-in attempts per address and per account from an address: 429, and never locks the owner out', async () => {
    const limited = await buildTestApp(testApp.databaseUrl, {
      AUTH_SECRET: SECRET,
      LOGIN_RATE_LIMIT_MAX: '3',
    });
    const attempt = (username: string, remoteAddress: string) =>
      limited.inject({
        method: 'POST',
        url: '/api/auth/token',
        remoteAddress,
        payload: { grant_type: 'password', username, password: 'wrong' },
      });
    try {
      // Someone who knows the owner's email, from one address: stopped at the fourth attempt.
      for (let index = 0; index < 3; index += 1)
        expect((await attempt(TEST_USER.email, '10.0.0.1')).statusCode).toBe(400);
      const byAccount = await attempt(TEST_USER.email, '10.0.0.1');
      expect(byAccount.statusCode).toBe(429);
      expect(byAccount.headers['content-type']).toMatch(/^application\/json/);
      expect(Number(byAccount.headers['retry-after'])).toBeGreaterThan(0);
      expect(byAccount.json()).toEqual({
        error: 'temporarily_unavailable',
        error_description: expect.stringMatching(/^Too many failed sign-ins/),
      });
      // ... while the owner, from the owner's own address, signs in at once.
      const owner = await limited.inject({
        method: 'POST',
        url: '/api/auth/token',
        remoteAddress: '10.9.9.9',
        payload: { grant_type: 'password', username: TEST_USER.email, password: TEST_USER.password },
      });
      expect(owner.statusCode, owner.body).toBe(200);
      // One address trying ever-new accounts: the address limit stops the fourth.
      for (const account of ['a', 'b', 'c'])
        expect((await attempt(`${account}@example.com`, '10.0.1.1')).statusCode).toBe(400);
      expect((await attempt('d@example.com', '10.0.1.1')).statusCode).toBe(429);
      // Others are unaffected.
      expect((await attempt('e@example.com', '10.0.2.1')).statusCode).toBe(400);
    } finally {
      await limited.close();
    }
  });

  it('make user (node dist/create-user.js) creates an account that can sign in, once', async () => {
    const createUser = (email: string, password: string, role?: string) =>
      new Promise<{ code: number | null; output: string }>((resolve) => {
        const child = execFile(
          process.execPath,
          [join(ROOT, 'dist/create-user.js'), email, ...(role ? [role] : [])],
          {
            env: { PATH: process.env.PATH, NODE_ENV: 'test', DATABASE_URL: testApp.databaseUrl },
            timeout: 30_000,
          },
          (_error, stdout) => resolve({ code: child.exitCode, output: stdout }),
        );
        child.stdin?.end(`${password}\n`);
      });
    const made = await createUser('made@example.com', 'a long enough password');
    expect(made.code).toBe(0);
    expect(JSON.parse(made.output.trim().split('\n').at(-1) as string)).toMatchObject({
      msg: 'user created',
    });
    expect(await signIn('made@example.com', 'a long enough password')).toHaveProperty('access_token');
    expect((await createUser('MADE@example.com', 'another password')).code).toBe(1);
    expect((await createUser('not-an-email', 'a long enough password')).code).toBe(2);
    expect((await createUser('boss@example.com', 'a long enough password', 'root')).code).toBe(2);
    expect((await createUser('boss@example.com', 'a long enough password', 'admin')).code).toBe(0);
    const roles = await sql('SELECT email, role FROM users WHERE email IN ($1, $2) ORDER BY email', [
      'boss@example.com',
      'made@example.com',
    ]);
    expect(roles.rows).toEqual([
      { email: 'boss@example.com', role: 'admin' },
      { email: 'made@example.com', role: 'user' }, // not the first user: FIRST_USER is
    ]);
  });

  it('refuses a missing or weak signing key in production, and a short one anywhere', () => {
    const production = { NODE_ENV: 'production', DATABASE_URL: 'postgres://u@db/x' };
    const problemsOf = (env: Record<string, string>) => {
      try {
        loadSettings({ NODE_ENV: 'test', ...env }, { envFile: null, signsTokens: true });
        return [];
      } catch (error) {
        return (error as SettingsError).problems.map((problem) => `${problem.name} ${problem.problem}`);
      }
    };
    expect(problemsOf(production)).toContainEqual(expect.stringMatching(/^AUTH_SECRET is not set/));
    expect(problemsOf({ ...production, AUTH_SECRET: 'a'.repeat(40) })).toContainEqual(
      'AUTH_SECRET has fewer than 8 distinct characters',
    );
    expect(
      problemsOf({ ...production, AUTH_SECRET: 'please-change-me-please-change-me-123' }),
    ).toContainEqual('AUTH_SECRET looks like a placeholder');
    expect(problemsOf({ AUTH_SECRET: 'short' })).toContainEqual('AUTH_SECRET is shorter than 32 characters');
    expect(
      problemsOf({
        ...production,
        AUTH_SECRET: SECRET,
        FIRST_USER_EMAIL: 'a@b.co',
        FIRST_USER_PASSWORD: 'short-pw',
      }),
    ).toContainEqual(expect.stringMatching(/^FIRST_USER_PASSWORD is shorter than 12/));
    expect(problemsOf({ AUTH_SECRET: SECRET })).toEqual([]);
    expect(DEVELOPMENT_SECRET.length).toBeGreaterThanOrEqual(32);
    // Task workers and migrations do not sign tokens: they start without the key.
    expect(() => loadSettings(production, { envFile: null })).not.toThrow();
  });
});
