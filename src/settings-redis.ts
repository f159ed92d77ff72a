/** Fail-fast checks of the Redis settings: a URL or Sentinel, and a QUEUE_PREFIX Redis Cluster accepts. */
import { parseSentinels, queuePrefixProblem } from './redis/target.js';
import type { SettingProblem } from './settings-errors.js';

export interface RedisSettings {
  REDIS_URL?: string;
  REDIS_SENTINELS?: string;
  REDIS_SENTINEL_NAME?: string;
  REDIS_SENTINEL_PASSWORD?: string;
  SHARED_CACHE_URL?: string;
  QUEUE_PREFIX: string;
  ENABLE_BACKGROUND_TASKS: boolean;
}

const EXPECTED_URL = 'redis://[:password@]host:6379[/db] or rediss://...';

function urlProblem(value: string): string | undefined {
  let protocol = '';
  try {
    protocol = new URL(value).protocol;
  } catch {}
  return protocol === 'redis:' || protocol === 'rediss:' ? undefined : 'is not a redis:// URL';
}

export function checkRedisSettings(settings: RedisSettings, production: boolean): SettingProblem[] {
  const problems: SettingProblem[] = [];
  for (const name of ['REDIS_URL', 'SHARED_CACHE_URL'] as const) {
    const value = settings[name];
    const problem = value === undefined ? undefined : urlProblem(value);
    if (problem) problems.push({ name, value, problem, expected: EXPECTED_URL });
  }

  const sentinels = settings.REDIS_SENTINELS;
  if (sentinels !== undefined) {
    const parsed = parseSentinels(sentinels);
    if ('bad' in parsed) {
      problems.push({
        name: 'REDIS_SENTINELS',
        value: sentinels,
        problem: `has the entry "${parsed.bad}", which is not host:port`,
        expected: 'a comma-separated list such as sentinel-1:26379,sentinel-2:26379,sentinel-3:26379',
      });
    }
    if (settings.REDIS_SENTINEL_NAME === undefined) {
      problems.push({
        name: 'REDIS_SENTINEL_NAME',
        value: undefined,
        problem: 'is not set, and REDIS_SENTINELS needs the name of the master group to ask for',
        expected: 'the name from `sentinel monitor <name> ...` in sentinel.conf, such as mymaster',
      });
    }
  } else {
    for (const name of ['REDIS_SENTINEL_NAME', 'REDIS_SENTINEL_PASSWORD'] as const) {
      if (settings[name] !== undefined) {
        problems.push({
          name,
          value: settings[name],
          problem: 'is set while REDIS_SENTINELS is not',
          expected: 'REDIS_SENTINELS set too, or neither',
        });
      }
    }
  }

  if (
    production &&
    settings.ENABLE_BACKGROUND_TASKS &&
    settings.REDIS_URL === undefined &&
    sentinels === undefined
  ) {
    problems.push({
      name: 'REDIS_URL',
      value: undefined,
      problem: 'is not set, and background tasks are on in production (nor is REDIS_SENTINELS)',
      expected: EXPECTED_URL,
    });
  }

  const prefixProblem = queuePrefixProblem(settings.QUEUE_PREFIX);
  if (prefixProblem) {
    problems.push({
      name: 'QUEUE_PREFIX',
      value: settings.QUEUE_PREFIX,
      problem: prefixProblem,
      expected: 'a prefix such as bull, or with one non-empty hash tag such as {bull} for Redis Cluster',
    });
  }
  return problems;
}
