/** Sentinel, PgBouncer-related and Redis Cluster settings: parsed into targets, refused when wrong. */
import { describe, expect, it } from 'vitest';
import { queuePrefixProblem, redisTargetOf, sharedCacheTargetOf } from '../src/redis/target.js';
import { migrationsUrlOf, sharedStateStoreOf } from '../src/settings.js';
import { loadFromEnv, settingsProblemOf } from './helpers/settings.js';

const load = loadFromEnv;
const problemOf = settingsProblemOf;

const sentinelEnv = {
  REDIS_SENTINELS: 's1:26379, s2:26380,[::1]:26381',
  REDIS_SENTINEL_NAME: 'mymaster',
  REDIS_SENTINEL_PASSWORD: 'sentinel-secret',
};

describe('Redis Sentinel settings', () => {
  it('take precedence over REDIS_URL, whose credentials and db still apply to the master', () => {
    const settings = load({ ...sentinelEnv, REDIS_URL: 'rediss://app:p%40ss@ignored-host:6379/2' });
    expect(redisTargetOf(settings)).toEqual({
      kind: 'sentinel',
      sentinels: [
        { host: 's1', port: 26379 },
        { host: 's2', port: 26380 },
        { host: '::1', port: 26381 },
      ],
      name: 'mymaster',
      sentinelPassword: 'sentinel-secret',
      username: 'app',
      password: 'p@ss',
      db: 2,
      tls: true,
    });
    // The cache and rate limits follow unless SHARED_CACHE_URL names another Redis.
    expect(sharedCacheTargetOf(settings).kind).toBe('sentinel');
    expect(sharedCacheTargetOf(load({ ...sentinelEnv, SHARED_CACHE_URL: 'redis://cache:6379' }))).toEqual({
      kind: 'url',
      url: 'redis://cache:6379',
    });
    expect(redisTargetOf(load({}))).toEqual({ kind: 'url', url: 'redis://127.0.0.1:6379' });
  });

  it('put limits and cache in Redis at any level once one is configured, and satisfy production without REDIS_URL', () => {
    expect(sharedStateStoreOf(load({ ...sentinelEnv, LEVEL: '1' }))).toBe('redis');
    expect(sharedStateStoreOf(load({ REDIS_URL: 'redis://r:6379' }))).toBe('redis');
    expect(sharedStateStoreOf(load({ LEVEL: '2' }))).toBe('postgres');
    expect(sharedStateStoreOf(load({ LEVEL: '4' }))).toBe('postgres'); // tasks' default Redis is not configured
    expect(() => load({ ENABLE_DISTRIBUTED_MODE: 'false' })).toThrow(
      /ENABLE_DISTRIBUTED_MODE: "false" is retired; expected it removed/,
    );
    expect(() =>
      load({ ...sentinelEnv, NODE_ENV: 'production', DATABASE_URL: 'postgres://u:p@db/app', LEVEL: '4' }),
    ).not.toThrow();
  });

  it('refuse a bad address list, a name without sentinels, sentinels without a name; hide the password', () => {
    expect(problemOf({ REDIS_SENTINELS: 's1:26379,s2', REDIS_SENTINEL_NAME: 'm' })).toMatch(
      /^Invalid setting REDIS_SENTINELS: "s1:26379,s2" has the entry "s2", which is not host:port/,
    );
    expect(problemOf({ REDIS_SENTINELS: 's1:99999', REDIS_SENTINEL_NAME: 'm' })).toMatch(/"s1:99999"/);
    expect(problemOf({ REDIS_SENTINELS: 's1:26379' })).toMatch(
      /^Invalid setting REDIS_SENTINEL_NAME: is not set, and REDIS_SENTINELS needs/,
    );
    const orphan = problemOf({ REDIS_SENTINEL_NAME: 'm', REDIS_SENTINEL_PASSWORD: 'hunter2hunter2' });
    expect(orphan).toMatch(/REDIS_SENTINEL_NAME: "m" is set while REDIS_SENTINELS is not/);
    expect(orphan).toMatch(/REDIS_SENTINEL_PASSWORD: \(hidden\) is set while REDIS_SENTINELS is not/);
    expect(orphan).not.toContain('hunter2');
  });
});

describe('QUEUE_PREFIX for Redis Cluster', () => {
  it('accepts no tag or one non-empty hash tag, and refuses tags Redis Cluster would not hash on', () => {
    for (const prefix of ['bull', '{bull}', 'app-{bull}', '{app}.jobs'])
      expect(queuePrefixProblem(prefix), prefix).toBeUndefined();
    expect(load({ QUEUE_PREFIX: '{bull}' }).QUEUE_PREFIX).toBe('{bull}');
    expect(problemOf({ QUEUE_PREFIX: '{bull' })).toMatch(
      /QUEUE_PREFIX: "\{bull" has a "\{" that is never closed/,
    );
    expect(problemOf({ QUEUE_PREFIX: 'bull}' })).toMatch(/without an opening/);
    expect(problemOf({ QUEUE_PREFIX: '{}bull' })).toMatch(/empty hash tag/);
    expect(problemOf({ QUEUE_PREFIX: '{a}{b}' })).toMatch(/more than one hash tag/);
  });
});

describe('MIGRATIONS_DATABASE_URL', () => {
  it('is the migrate step connection when set, DATABASE_URL otherwise; a bad one stops start-up', () => {
    const pooled = 'postgres://app:p@pgbouncer:6432/app';
    const direct = 'postgres://app:p@postgres:5432/app';
    expect(migrationsUrlOf(load({ DATABASE_URL: pooled, MIGRATIONS_DATABASE_URL: direct }), pooled)).toBe(
      direct,
    );
    expect(migrationsUrlOf(load({ DATABASE_URL: pooled }), pooled)).toBe(pooled);
    expect(problemOf({ DATABASE_URL: pooled, MIGRATIONS_DATABASE_URL: 'mysql://x/y' })).toMatch(
      /^Invalid setting MIGRATIONS_DATABASE_URL: "mysql:\/\/x\/y" has scheme "mysql"/,
    );
    expect(problemOf({ MIGRATIONS_DATABASE_URL: direct })).toMatch(/is set while DATABASE_URL is not/);
    expect(
      problemOf({ DATABASE_URL: pooled, MIGRATIONS_DATABASE_URL: 'postgres://app:s3cret@/x' }),
    ).not.toContain('s3cret');
  });
});
