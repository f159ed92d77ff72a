// Redis failures as the API sees them. No ioredis import (types only), so the error handler and the
// cache classify Redis errors without loading the client at levels that never connect to Redis.
import type { Redis } from 'ioredis';

export class RedisUnavailableError extends Error {
  readonly code = 'REDIS_UNAVAILABLE';
  constructor(detail: string) {
    super(`Redis is unavailable: ${detail}`);
    this.name = 'RedisUnavailableError';
  }
}

/** Fail fast when the connection is not ready, and bound every call so nothing hangs. */
export async function withRedis<T>(
  connection: Redis,
  operation: () => Promise<T>,
  timeoutMs = 3000,
): Promise<T> {
  if (connection.status !== 'ready') throw new RedisUnavailableError(`connection is ${connection.status}`);
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      operation(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new RedisUnavailableError(`no answer within ${timeoutMs} ms`)),
          timeoutMs,
        );
      }),
    ]);
  } catch (error) {
    if (error instanceof RedisUnavailableError) throw error;
    if (isRedisUnavailable(error)) throw new RedisUnavailableError((error as Error).message);
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * True when an error means "Redis cannot be reached now": the fail-fast connection refused the call,
 * or (around a failover) the server is a replica, still loading, or unblocked us as it changed role.
 */
export function isRedisUnavailable(error: unknown): boolean {
  if (error instanceof RedisUnavailableError) return true;
  const message = error instanceof Error ? error.message : '';
  return /enableOfflineQueue|Connection is closed|ECONNREFUSED|ETIMEDOUT|max retries|Stream isn't writeable|sentinels are unreachable|^READONLY|^LOADING|^UNBLOCKED/i.test(
    message,
  );
}
