/**
 * Which Redis the app talks to, decided from settings alone (no I/O here): a plain URL, or a master
 * found through Redis Sentinel. Every client (queues, workers, rate limiter, cache, cancellation,
 * dashboard) is made from one of these by src/redis/connection.ts.
 */

export interface SentinelAddress {
  host: string;
  port: number;
}

export type RedisTarget =
  | { kind: 'url'; url: string }
  | {
      kind: 'sentinel';
      sentinels: SentinelAddress[];
      /** The master group name the sentinels monitor (`sentinel monitor <name> ...`). */
      name: string;
      sentinelPassword?: string;
      /** Credentials and database of the data nodes (from REDIS_URL when set; its host is ignored). */
      username?: string;
      password?: string;
      db?: number;
      tls: boolean;
    };

export interface RedisTargetSettings {
  REDIS_URL?: string;
  REDIS_SENTINELS?: string;
  REDIS_SENTINEL_NAME?: string;
  REDIS_SENTINEL_PASSWORD?: string;
  SHARED_CACHE_URL?: string;
}

export const DEVELOPMENT_REDIS_URL = 'redis://127.0.0.1:6379';

const HOST_PORT = /^(?:\[([0-9a-fA-F:]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/;

/** `host:port,host:port` (IPv6 as `[::1]:26379`): the addresses, or the first bad entry. */
export function parseSentinels(value: string): SentinelAddress[] | { bad: string } {
  const entries = value.split(',').map((entry) => entry.trim());
  const addresses: SentinelAddress[] = [];
  for (const entry of entries) {
    const match = HOST_PORT.exec(entry);
    const port = Number(match?.[3]);
    if (!match || port < 1 || port > 65535) return { bad: entry };
    addresses.push({ host: (match[1] ?? match[2]) as string, port });
  }
  return addresses;
}

/** The Redis of the task system (and, unless SHARED_CACHE_URL says otherwise, of cache and limits). */
export function redisTargetOf(settings: RedisTargetSettings): RedisTarget {
  if (settings.REDIS_SENTINELS && settings.REDIS_SENTINEL_NAME) {
    const sentinels = parseSentinels(settings.REDIS_SENTINELS);
    if ('bad' in sentinels) throw new Error(`REDIS_SENTINELS entry ${sentinels.bad} is not host:port`);
    const url = settings.REDIS_URL ? new URL(settings.REDIS_URL) : undefined;
    const db = url && url.pathname.length > 1 ? Number(url.pathname.slice(1)) : undefined;
    return {
      kind: 'sentinel',
      sentinels,
      name: settings.REDIS_SENTINEL_NAME,
      ...(settings.REDIS_SENTINEL_PASSWORD ? { sentinelPassword: settings.REDIS_SENTINEL_PASSWORD } : {}),
      ...(url?.username ? { username: decodeURIComponent(url.username) } : {}),
      ...(url?.password ? { password: decodeURIComponent(url.password) } : {}),
      ...(db !== undefined && Number.isInteger(db) ? { db } : {}),
      tls: url?.protocol === 'rediss:',
    };
  }
  return { kind: 'url', url: settings.REDIS_URL ?? DEVELOPMENT_REDIS_URL };
}

/** The Redis behind the shared cache and rate limits: SHARED_CACHE_URL when set, else the task Redis. */
export function sharedCacheTargetOf(settings: RedisTargetSettings): RedisTarget {
  return settings.SHARED_CACHE_URL
    ? { kind: 'url', url: settings.SHARED_CACHE_URL }
    : redisTargetOf(settings);
}

/** True when some Redis is configured explicitly (a URL or sentinels). */
export function redisConfigured(settings: RedisTargetSettings): boolean {
  return (
    settings.REDIS_URL !== undefined ||
    settings.REDIS_SENTINELS !== undefined ||
    settings.SHARED_CACHE_URL !== undefined
  );
}

/** For logs and readiness: where it points, never a password. */
export function describeTarget(target: RedisTarget): string {
  if (target.kind === 'sentinel') {
    return `sentinel master "${target.name}" via ${target.sentinels.map((s) => `${s.host}:${s.port}`).join(',')}`;
  }
  try {
    const url = new URL(target.url);
    return `${url.hostname}:${url.port || 6379}`;
  } catch {
    return '(unparseable URL)';
  }
}

/**
 * BullMQ keys are `<prefix>:<queue>:...`. On Redis Cluster every key of a queue must hash to one slot,
 * which a hash tag does: the part between the first `{` and the next `}` (`{bull}`), non-empty.
 * Returns a problem, or undefined for a prefix that is fine (with or without a tag).
 */
export function queuePrefixProblem(prefix: string): string | undefined {
  const open = prefix.indexOf('{');
  const close = prefix.indexOf('}');
  if (open < 0 && close < 0) return undefined;
  if (close < 0) return 'has a "{" that is never closed';
  if (open < 0 || close < open) return 'has a "}" without an opening "{"';
  if (close === open + 1) return 'has an empty hash tag "{}", which Redis Cluster ignores';
  if (prefix.indexOf('{', open + 1) >= 0 || prefix.indexOf('}', close + 1) >= 0)
    return 'has more than one hash tag; Redis Cluster hashes only the first';
  return undefined;
}
