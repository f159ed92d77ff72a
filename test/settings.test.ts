import { mkdtempSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import { loadSettings, trustProxyOf } from '../src/settings.js';
import { fastifyTrustProxy } from '../src/settings-trust-proxy.js';
import { loadFromEnv, settingsProblemOf } from './helpers/settings.js';

const load = loadFromEnv;
const problemOf = settingsProblemOf;

describe('settings', () => {
  it('has documented defaults', () => {
    const settings = load({});
    expect(settings).toMatchObject({
      LEVEL: 1,
      PORT: 3000,
      BODY_LIMIT: 1048576,
      KEEP_ALIVE_TIMEOUT: 65,
      GRACEFUL_TIMEOUT: 30,
    });
    expect(settings.DATABASE_URL).toBeUndefined();
    expect(settings.WORKERS).toBe(availableParallelism());
  });

  it('applies the LEVEL preset, and an explicit value wins over it', () => {
    expect(load({ LEVEL: '2' }).MAX_REQUESTS).toBe(0);
    expect(load({ LEVEL: '3' })).toMatchObject({ MAX_REQUESTS: 10000, MAX_REQUESTS_JITTER: 1000 });
    expect(load({ LEVEL: '3', MAX_REQUESTS: '50', MAX_REQUESTS_JITTER: '0' })).toMatchObject({
      MAX_REQUESTS: 50,
      MAX_REQUESTS_JITTER: 0,
    });
  });

  it('drops a preset value that contradicts a value the user set (LEVEL=3 MAX_REQUESTS=0)', () => {
    expect(load({ LEVEL: '3', MAX_REQUESTS: '0' })).toMatchObject({
      MAX_REQUESTS: 0,
      MAX_REQUESTS_JITTER: 0,
    });
    expect(load({ LEVEL: '4', MAX_REQUESTS: '0' })).toMatchObject({
      MAX_REQUESTS: 0,
      MAX_REQUESTS_JITTER: 0,
    });
    // The preset's jitter still spreads a user-chosen limit.
    expect(load({ LEVEL: '3', MAX_REQUESTS: '500' })).toMatchObject({
      MAX_REQUESTS: 500,
      MAX_REQUESTS_JITTER: 1000,
    });
    // The user's own contradiction stays an error.
    expect(() => load({ LEVEL: '3', MAX_REQUESTS: '0', MAX_REQUESTS_JITTER: '5' })).toThrow(
      /MAX_REQUESTS_JITTER/,
    );
  });

  it('coerces types and treats an empty value as unset', () => {
    const settings = load({
      PORT: '8080',
      TRUST_PROXY: 'true',
      DATABASE_URL: '',
      KEEP_ALIVE_TIMEOUT: '75.5',
    });
    expect(settings.PORT).toBe(8080);
    expect(settings.TRUST_PROXY).toBe('true');
    expect(settings.DATABASE_URL).toBeUndefined();
    expect(settings.KEEP_ALIVE_TIMEOUT).toBe(75.5);
  });

  it.each([
    [{ LEVEL: '7' }, /^Invalid setting LEVEL: "7" is not valid; expected an integer >= 1 and <= 4/],
    [{ PORT: 'abc' }, /^Invalid setting PORT: "abc" is not valid; expected an integer >= 0 and <= 65535/],
    [
      { GRACEFUL_TIMEOUT: '-5' },
      /^Invalid setting GRACEFUL_TIMEOUT: "-5" is not valid; expected a number > 0/,
    ],
    [{ KEEP_ALIVE_TIMEOUT: '0' }, /^Invalid setting KEEP_ALIVE_TIMEOUT: "0"/],
    [{ LOG_LEVEL: 'loud' }, /^Invalid setting LOG_LEVEL: "loud" is not valid; expected one of fatal, error/],
    [
      { DATABASE_URL: 'not a url' },
      /^Invalid setting DATABASE_URL: "\*\*\*" is not a URL; expected postgres:\/\//,
    ],
    [
      { DATABASE_URL: 'mysql://u:pw@db/app' },
      /^Invalid setting DATABASE_URL: "mysql:\/\/u:\*\*\*@db\/app" has scheme "mysql"/,
    ],
  ])('rejects %j with one clear line', (env, expected) => {
    const message = problemOf(env);
    expect(message).toMatch(expected);
    expect(message.split('\n')).toHaveLength(1);
  });

  it('names every bad variable, one line each', () => {
    const message = problemOf({ PORT: 'x', LEVEL: '0' });
    expect(message.split('\n').sort()).toEqual([
      expect.stringMatching(/^Invalid setting LEVEL/),
      expect.stringMatching(/^Invalid setting PORT/),
    ]);
  });

  it('never prints a password, even for a broken URL', () => {
    const message = problemOf({ DATABASE_URL: 'mysql://admin:hunter2@db/app' });
    expect(message).not.toContain('hunter2');
    expect(problemOf({ DATABASE_URL: 'postgres://admin:hunter2@' })).not.toContain('hunter2');
  });

  it('refuses missing or insecure essentials in production', () => {
    expect(problemOf({ NODE_ENV: 'production' })).toMatch(
      /^Invalid setting DATABASE_URL: is not set, and NODE_ENV=production/,
    );
    expect(
      problemOf({ NODE_ENV: 'production', DATABASE_URL: 'postgres://u:p@db/app', CORS_ORIGINS: '*' }),
    ).toMatch(/^Invalid setting CORS_ORIGINS: "\*" allows any origin/);
    expect(load({ NODE_ENV: 'production', DATABASE_URL: 'postgres://u:p@db/app' }).NODE_ENV).toBe(
      'production',
    );
  });

  it('reads a .env file, and the real environment wins over it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'settings-'));
    const file = join(dir, '.env');
    writeFileSync(file, 'PORT=4000\nLOG_LEVEL=debug\n');
    const settings = loadSettings({ LOG_LEVEL: 'warn' }, { envFile: file });
    expect(settings.PORT).toBe(4000);
    expect(settings.LOG_LEVEL).toBe('warn');
  });
});

describe('background-task settings', () => {
  it('turns background tasks on with LEVEL=4 and validates the Redis URL', () => {
    expect(load({ LEVEL: '4' }).ENABLE_BACKGROUND_TASKS).toBe(true);
    expect(load({ LEVEL: '3' }).ENABLE_BACKGROUND_TASKS).toBe(false);
    expect(load({ LEVEL: '4', ENABLE_BACKGROUND_TASKS: 'false' }).ENABLE_BACKGROUND_TASKS).toBe(false);
    expect(problemOf({ REDIS_URL: 'http://cache:6379' })).toMatch(
      /^Invalid setting REDIS_URL: "http:\/\/cache:6379\/?" is not a redis:\/\/ URL/,
    );
    expect(
      problemOf({ REDIS_URL: 'redis://:s3cr3t@cache:6379/0', QUEUE_PREFIX: 'bad prefix' }),
    ).not.toContain('s3cr3t');
  });

  it('requires both dashboard credentials or neither, strong in production, and never prints the password', () => {
    expect(problemOf({ BULL_BOARD_USER: 'ops' })).toMatch(
      /^Invalid setting BULL_BOARD_PASSWORD: is empty while the other/,
    );
    const production = {
      NODE_ENV: 'production',
      DATABASE_URL: 'postgres://u:p@db/app',
      REDIS_URL: 'redis://cache:6379',
    };
    const weak = problemOf({ ...production, BULL_BOARD_USER: 'ops', BULL_BOARD_PASSWORD: 'hunter2' });
    expect(weak).toMatch(/^Invalid setting BULL_BOARD_PASSWORD: \(hidden\) is shorter than 12 characters/);
    expect(weak).not.toContain('hunter2');
    expect(problemOf({ NODE_ENV: 'production', DATABASE_URL: 'postgres://u:p@db/app', LEVEL: '4' })).toMatch(
      /^Invalid setting REDIS_URL: is not set, and background tasks are on in production/,
    );
  });
});

describe('TRUST_PROXY', () => {
  const trust = (value: string) => trustProxyOf(load({ TRUST_PROXY: value }));

  it('takes what Fastify takes: true/false, a hop count, or addresses and CIDR ranges', () => {
    expect(trustProxyOf(load({}))).toEqual({ kind: 'none' });
    expect(trust('false')).toEqual({ kind: 'none' });
    expect(trust('true')).toEqual({ kind: 'all' });
    expect(trust('0')).toEqual({ kind: 'none' });
    expect(trust('1')).toEqual({ kind: 'hops', hops: 1 });
    expect(trust('127.0.0.1')).toEqual({ kind: 'addresses', entries: ['127.0.0.1'] });
    expect(trust(' 10.0.0.0/8, 172.16.0.0/12 ,192.168.0.0/16,fd00::/8,::1,uniquelocal ')).toEqual({
      kind: 'addresses',
      entries: ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', 'fd00::/8', '::1', 'uniquelocal'],
    });
  });

  it.each([
    ['yes', /"yes", which is not an IP address or CIDR range/],
    ['10.0.0.0/33', /"10.0.0.0\/33", whose prefix length is not 0-32/],
    ['fd00::/129', /"fd00::\/129", whose prefix length is not 0-128/],
    ['10.0.0.0/', /whose prefix length is not 0-32/],
    ['10.0.0.0/8,', /has an empty entry/],
    ['300.1.1.1', /"300.1.1.1", which is not an IP address/],
    ['-1', /"-1", which is not an IP address/],
    ['1.5', /"1.5", which is not an IP address/],
    ['proxy.internal', /"proxy.internal", which is not an IP address/],
  ])('refuses %j with one line naming TRUST_PROXY', (value, expected) => {
    const message = problemOf({ TRUST_PROXY: value });
    expect(message).toMatch(/^Invalid setting TRUST_PROXY: /);
    expect(message).toMatch(expected);
    expect(message).toMatch(/expected true, false, a hop count/);
    expect(message.split('\n')).toHaveLength(1);
  });

  it('gives Fastify what it resolves the client address with', async () => {
    const addressOf = async (value: string, forwardedFor: string, remoteAddress: string) => {
      const app = Fastify({ trustProxy: fastifyTrustProxy(trust(value)) });
      app.get('/', async (request) => ({ ip: request.ip }));
      const response = await app.inject({
        url: '/',
        headers: { 'x-forwarded-for': forwardedFor },
        remoteAddress,
      });
      await app.close();
      return (response.json() as { ip: string }).ip;
    };
    // A client's own X-Forwarded-For entry, then the address the proxy appended, then the proxy itself.
    const chain = '203.0.113.7, 198.51.100.9';
    expect(await addressOf('false', chain, '10.1.2.3')).toBe('10.1.2.3');
    expect(await addressOf('true', chain, '10.1.2.3')).toBe('203.0.113.7');
    expect(await addressOf('1', chain, '10.1.2.3')).toBe('198.51.100.9');
    expect(await addressOf('2', chain, '10.1.2.3')).toBe('203.0.113.7');
    expect(await addressOf('10.0.0.0/8', chain, '10.1.2.3')).toBe('198.51.100.9');
    // The header is ignored from a peer outside the list, so it cannot choose its own address.
    expect(await addressOf('10.0.0.0/8', chain, '192.0.2.1')).toBe('192.0.2.1');
    expect(await addressOf('uniquelocal', chain, '172.18.0.5')).toBe('198.51.100.9');
  });
});

describe('secrets from files (X_FILE)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'settings-files-'));
  const secretFile = join(dir, 'auth_secret');
  const secret = 'file-held-signing-key-0123456789-abcdefghijklmnop';
  writeFileSync(secretFile, `${secret}\n`);

  it('reads AUTH_SECRET and AUTH_PREVIOUS_SECRET from their files, trimmed', () => {
    const previous = join(dir, 'previous');
    writeFileSync(previous, '  previous-signing-key-0123456789-abcdefghijkl \n');
    const settings = load({ AUTH_SECRET_FILE: secretFile, AUTH_PREVIOUS_SECRET_FILE: previous });
    expect(settings.AUTH_SECRET).toBe(secret);
    expect(settings.AUTH_PREVIOUS_SECRET).toBe('previous-signing-key-0123456789-abcdefghijkl');
  });

  it('lets AUTH_SECRET set directly win, without reading the file', () => {
    const direct = 'direct-signing-key-0123456789-abcdefghijklmnopq';
    expect(load({ AUTH_SECRET: direct, AUTH_SECRET_FILE: secretFile }).AUTH_SECRET).toBe(direct);
    expect(load({ AUTH_SECRET: direct, AUTH_SECRET_FILE: join(dir, 'missing') }).AUTH_SECRET).toBe(direct);
    // Empty counts as unset (compose passes AUTH_SECRET: ${AUTH_SECRET:-}): the file is read.
    expect(load({ AUTH_SECRET: '', AUTH_SECRET_FILE: secretFile }).AUTH_SECRET).toBe(secret);
  });

  it('a .env file may name the secret file too', () => {
    const envFile = join(dir, '.env');
    writeFileSync(envFile, `AUTH_SECRET_FILE=${secretFile}\n`);
    expect(loadSettings({}, { envFile }).AUTH_SECRET).toBe(secret);
  });

  it('a missing, unreadable or empty file is one line naming the variable, never a secret', () => {
    const missing = problemOf({ AUTH_SECRET_FILE: join(dir, 'missing') });
    expect(missing).toMatch(
      /^Invalid setting AUTH_SECRET_FILE: ".*missing" cannot be read \(ENOENT\); expected a readable file holding AUTH_SECRET/,
    );
    expect(missing.split('\n')).toHaveLength(1);
    expect(problemOf({ AUTH_SECRET_FILE: dir })).toMatch(/^Invalid setting AUTH_SECRET_FILE: .* \(EISDIR\)/);
    const empty = join(dir, 'empty');
    writeFileSync(empty, '\n');
    expect(problemOf({ AUTH_PREVIOUS_SECRET_FILE: empty })).toMatch(
      /^Invalid setting AUTH_PREVIOUS_SECRET_FILE: ".*empty" is an empty file/,
    );
    // A weak key from a file is refused like one set directly, and its value stays hidden.
    const weak = join(dir, 'weak');
    writeFileSync(weak, 'short-key\n');
    const message = problemOf({ AUTH_SECRET_FILE: weak });
    expect(message).toMatch(/^Invalid setting AUTH_SECRET: \(hidden\) is shorter than 32 characters/);
    expect(message).not.toContain('short-key');
  });
});
