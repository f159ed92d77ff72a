// Every Redis client of the app comes from here: task queues and workers, the shared rate limiter
// and cache, the cancellation channel, the dashboard. One factory, so connection policy (fail fast on
// the API side, reconnect forever on the worker side, Sentinel or a plain URL) is decided once.
import { Redis, type RedisOptions } from 'ioredis';
import type { RedisTarget } from './target.js';

/**
 * The address part of the options: a URL as ioredis parses it, or Sentinel. With Sentinel, ioredis
 * asks the sentinels for the master on every (re)connect and checks its ROLE, so after a failover
 * the next reconnect lands on the promoted replica. A master killed outright closes our connections
 * (that starts the reconnect); a master demoted alive answers writes with READONLY, which reconnects
 * too (`reconnectOnError`). ioredis's `failoverDetector` stays off: a +switch-master arriving while
 * the client is already reconnecting closes it for good (status "end"), found by the failover test.
 */
function addressOptions(target: RedisTarget): RedisOptions {
  if (target.kind === 'url') return {};
  return {
    sentinels: target.sentinels,
    name: target.name,
    role: 'master',
    ...(target.sentinelPassword ? { sentinelPassword: target.sentinelPassword } : {}),
    ...(target.username ? { username: target.username } : {}),
    ...(target.password ? { password: target.password } : {}),
    ...(target.db !== undefined ? { db: target.db } : {}),
    ...(target.tls ? { tls: {}, enableTLSForSentinelMode: true } : {}),
    // Every sentinel unreachable: keep asking, pausing at most 2 s between rounds.
    sentinelRetryStrategy: (attempt) => Math.min(attempt * 200, 2000),
    // 2: reconnect, then resend the command that met the demoted master.
    reconnectOnError: (error) => (error.message.startsWith('READONLY') ? 2 : false),
  };
}

function connect(target: RedisTarget, options: RedisOptions): Redis {
  const all = { ...options, ...addressOptions(target) };
  return target.kind === 'url' ? new Redis(target.url, all) : new Redis(all);
}

/** How long a producer connection's first attempt may take (also how long start-up waits for it). */
export const PRODUCER_CONNECT_TIMEOUT_MS = 2000;

/**
 * Producer connection (API side): commands fail at once while Redis is unreachable, so an HTTP
 * request never waits on a dead Redis; ioredis keeps reconnecting in the background.
 */
export function createProducerConnection(target: RedisTarget): Redis {
  return connect(target, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: PRODUCER_CONNECT_TIMEOUT_MS,
    retryStrategy: (attempt) => Math.min(attempt * 200, 2000),
    lazyConnect: false,
  });
}

/**
 * Resolves once the connection's first attempt has ended: ready, refused or timed out. A producer
 * queues nothing while disconnected, so an app that listens before its producer is ready answers its
 * first requests 503 (a replaced worker with SO_REUSEPORT takes connections the moment it listens);
 * Redis being down must not hold the start, so a refusal or the timeout ends the wait too.
 */
export function firstAttemptSettled(
  connection: Redis,
  timeoutMs = PRODUCER_CONNECT_TIMEOUT_MS,
): Promise<void> {
  if (connection.status === 'ready') return Promise.resolve();
  return new Promise((resolve) => {
    const settle = () => {
      clearTimeout(timer);
      for (const event of ['ready', 'error', 'end']) connection.off(event, settle);
      resolve();
    };
    const timer = setTimeout(settle, timeoutMs);
    for (const event of ['ready', 'error', 'end']) connection.once(event, settle);
  });
}

/**
 * Worker connection: blocking commands need maxRetriesPerRequest null; commands issued while
 * disconnected (a job finishing during a failover) wait in the offline queue and go to the new master.
 */
export function createWorkerConnection(target: RedisTarget): Redis {
  return connect(target, {
    maxRetriesPerRequest: null,
    enableOfflineQueue: true,
    connectTimeout: 5000,
    retryStrategy: (attempt) => Math.min(attempt * 200, 2000),
  });
}

/** Dashboard connection: may wait a little for Redis (a page load), unlike the API's producer. */
export function createDashboardConnection(target: RedisTarget): Redis {
  return connect(target, { maxRetriesPerRequest: 2, connectTimeout: 2000 });
}

/** host:port of the server this connection is talking to now (after a failover: the new master). */
export function connectedAddress(connection: Redis): string | undefined {
  const socket = connection.stream as { remoteAddress?: string; remotePort?: number } | undefined;
  if (connection.status !== 'ready' || !socket?.remoteAddress) return undefined;
  return `${socket.remoteAddress}:${socket.remotePort}`;
}

// The error helpers need no ioredis: code that only classifies errors imports them from errors.ts.
export { isRedisUnavailable, RedisUnavailableError, withRedis } from './errors.js';
