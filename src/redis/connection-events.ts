/**
 * Connection-state logging for the Redis clients of src/redis/connection.ts: one line when a
 * connection goes down (or cannot be reached at start), one when it is back with the number of
 * reconnection attempts it took; never one per retry. Errors of BullMQ's own clients that only
 * repeat "Redis is down" are dropped here too, since the watched connection already said it.
 */
import type { Redis } from 'ioredis';
import type { BaseLogger } from 'pino';
import { isRedisUnavailable } from './connection.js';

/** Network failures: what a reconnecting client reports on every attempt while Redis is away. */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
]);

/** True for errors that mean "Redis cannot be reached now" rather than a bug or a bad command. */
export function isConnectionError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return (typeof code === 'string' && NETWORK_CODES.has(code)) || isRedisUnavailable(error);
}

/** Any pino logger, Fastify's included. */
type Log = Pick<BaseLogger, 'info' | 'warn' | 'error'>;

export interface ConnectionWatch {
  /** True from the first `ready` until the connection is lost again. */
  isUp(): boolean;
  /** Resolves at the next `ready` (at once when up). */
  whenUp(): Promise<void>;
}

/** Where a client points, without credentials. */
function targetOf(client: Redis): string {
  const { host, port, path, sentinels, name } = client.options;
  if (sentinels?.length) return `sentinel master ${name ?? 'mymaster'}`;
  return path ?? `${host ?? '127.0.0.1'}:${port ?? 6379}`;
}

/**
 * Watch one client: its `error` events are handled here (so none reaches ioredis's or BullMQ's
 * console fallback), and its state changes become single log lines.
 */
export function watchConnection(client: Redis, log: Log, name: string): ConnectionWatch {
  const fields = { redis: name, target: targetOf(client) };
  let lastError: string | undefined;
  let down: { since: number; retries: number; reported: boolean } | undefined = {
    since: Date.now(),
    retries: 0,
    reported: false,
  };
  let everUp = false;
  let waiters: Array<() => void> = [];
  const reportDown = () => {
    if (!down || down.reported) return;
    down.reported = true;
    log.warn(
      { ...fields, err: lastError },
      everUp
        ? 'Redis connection lost: reconnecting (logged again once it is back)'
        : 'Redis unreachable: retrying until it answers (logged again once it does)',
    );
  };
  client.on('error', (error: Error) => {
    lastError = error.message;
    // Not a connection failure (a bad command, a script error): that is news every time.
    if (!isConnectionError(error)) log.error({ ...fields, err: error.message }, 'Redis client error');
  });
  client.on('reconnecting', () => {
    down ??= { since: Date.now(), retries: 0, reported: false };
    down.retries += 1;
    reportDown();
  });
  client.on('ready', () => {
    if (down?.reported)
      log.info(
        { ...fields, retries: down.retries, downMs: Date.now() - down.since },
        'Redis connection restored',
      );
    down = undefined;
    everUp = true;
    for (const resolve of waiters) resolve();
    waiters = [];
  });
  return {
    isUp: () => client.status === 'ready',
    whenUp: () =>
      client.status === 'ready' ? Promise.resolve() : new Promise<void>((resolve) => waiters.push(resolve)),
  };
}

/** An `error` listener for BullMQ queues and workers: connection failures are the watch's to report. */
export function logUnlessConnectionError(log: Log, fields: object, message: string) {
  return (error: Error) => {
    if (!isConnectionError(error)) log.warn({ ...fields, err: error.message }, message);
  };
}
