import { execFile } from 'node:child_process';
import { join } from 'node:path';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { SignJWT } from 'jose';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { DEVELOPMENT_SECRET, TokenSigner } from '../src/auth/tokens.js';
import { loadSettings, type SettingsError } from '../src/settings.js';
import { buildTestApp, TEST_USER, useTestApp } from './helpers/app.js';
import { ROOT } from './helpers/process.js';

// Sign-in at LEVEL=1 (sessions in this process); test/auth-cluster.test.ts covers workers and Redis.
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

  it('refuses a wrong password and an unknown account alike: 401 problem+json', async () => {
    expect401(
      await form({ grant_type: 'password', username: TEST_USER.email, password: 'wrong' }),
      /^Wrong email or password$/,
    );
    expect401(
      await form({ grant_type: 'password', username: 'nobody@example.com', password: 'x' }),
      /^Wrong email or password$/,
    );
  });

  it('names what a token request lacks', async () => {
    const response = await form({ grant_type: 'password', username: TEST_USER.email });
    expect(response.statusCode).toBe(400);
    expect(response.json().errors).toEqual([{ field: 'password', message: 'is required', in: 'body' }]);
    const repeated = await app().inject({
      method: 'POST',
      url: '/api/auth/token',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: 'grant_type=password&username=a&username=b&password=x',
    });
    expect(repeated.json().detail).toBe('username is repeated; send each parameter once');
    const wrongGrant = await form({ grant_type: 'client_credentials' });
    expect(wrongGrant.json().errors[0].field).toBe('grant_type');
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
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString());
    const forged = Buffer.from(JSON.stringify({ ...claims, sub: '999' })).toString('base64url');
    expect401(await me(`${header}.${forged}.${signature}`), /not valid/);
    expect401(await me(`${access_token.slice(0, -2)}xx`), /not valid/);
    expect401(await me('not-a-jwt'), /not valid/);
    const expired = await new TokenSigner(SECRET).sign('access', claims.sub, claims.sid, -60);
    expect401(await me(expired), /expired/);
    const stranger = await new TokenSigner('a-key-this-server-has-never-seen-0123456789').sign(
      'access',
      claims.sub,
      claims.sid,
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
    expect401(await me(access_token), /signed out/);
    expect401(await form({ grant_type: 'refresh_token', refresh_token }), /signed out/);
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
    expect401(
      await form({ grant_type: 'refresh_token', refresh_token: first.refresh_token }),
      /already used/,
    );
    expect401(await me(second.access_token), /signed out/);
  });

  it('accepts tokens signed with AUTH_PREVIOUS_SECRET and signs new ones with AUTH_SECRET', async () => {
    const { access_token } = await signIn();
    const claims = JSON.parse(Buffer.from(access_token.split('.')[1] as string, 'base64url').toString());
    const old = await new TokenSigner(OLD_SECRET).sign('access', claims.sub, claims.sid, 60);
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

  it('limits sign-in attempts per account and per address, whatever the password, with 429 problem+json', async () => {
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
      // One account from ever-new addresses: the account limit stops the fourth.
      for (const address of ['10.0.0.1', '10.0.0.2', '10.0.0.3'])
        expect((await attempt('victim@example.com', address)).statusCode).toBe(401);
      const byAccount = await attempt('victim@example.com', '10.0.0.4');
      expect(byAccount.statusCode).toBe(429);
      expect(byAccount.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(Number(byAccount.headers['retry-after'])).toBeGreaterThan(0);
      expect(byAccount.json().detail).toMatch(/^Too many sign-in attempts/);
      // One address trying ever-new accounts: the address limit stops the fourth.
      for (const account of ['a', 'b', 'c'])
        expect((await attempt(`${account}@example.com`, '10.0.1.1')).statusCode).toBe(401);
      expect((await attempt('d@example.com', '10.0.1.1')).statusCode).toBe(429);
      // Others are unaffected.
      expect((await attempt('e@example.com', '10.0.2.1')).statusCode).toBe(401);
    } finally {
      await limited.close();
    }
  });

  it('make user (node dist/create-user.js) creates an account that can sign in, once', async () => {
    const createUser = (email: string, password: string) =>
      new Promise<{ code: number | null; output: string }>((resolve) => {
        const child = execFile(
          process.execPath,
          [join(ROOT, 'dist/create-user.js'), email],
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
