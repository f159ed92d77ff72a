// Every Redis client of the app comes from here: task queues and workers, the shared rate limiter
// and cache, the dashboard. One factory, so connection policy (fail fast on the API side, reconnect
// forever on the worker side) is decided once.
import { Redis, type RedisOptions } from 'ioredis';

/**
 * Producer connection (API side): commands fail at once while Redis is unreachable, so an HTTP
 * request never waits on a dead Redis; ioredis keeps reconnecting in the background.
 */
export function createProducerConnection(url: string): Redis {
  return new Redis(url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 2000,
    retryStrategy: (attempt) => Math.min(attempt * 200, 2000),
    lazyConnect: false,
  });
}

/** Worker connection: blocking commands need maxRetriesPerRequest null; reconnects forever. */
export function workerConnectionOptions(): RedisOptions {
  return {
    maxRetriesPerRequest: null,
    enableOfflineQueue: true,
    connectTimeout: 5000,
    retryStrategy: (attempt) => Math.min(attempt * 200, 2000),
  };
}

export function createWorkerConnection(url: string): Redis {
  return new Redis(url, workerConnectionOptions());
}

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

/** True when an error means "Redis cannot be reached now" (the fail-fast connection refused the call). */
export function isRedisUnavailable(error: unknown): boolean {
  if (error instanceof RedisUnavailableError) return true;
  const message = error instanceof Error ? error.message : '';
  return /enableOfflineQueue|Connection is closed|ECONNREFUSED|ETIMEDOUT|max retries|Stream isn't writeable/i.test(
    message,
  );
}
