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

// The error helpers need no ioredis: code that only classifies errors imports them from errors.ts.
export { isRedisUnavailable, RedisUnavailableError, withRedis } from './errors.js';
