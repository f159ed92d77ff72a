import { mkdtempSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadSettings } from '../src/settings.js';
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
    expect(settings.TRUST_PROXY).toBe(true);
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
