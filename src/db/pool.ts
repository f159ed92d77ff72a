import pg from 'pg';

export interface PoolOptions {
  connectionString: string;
  size: number;
  connectTimeoutMs: number;
}

// int8 (bigint ids, counts) as JS numbers: ids stay far below 2^53 in any realistic table.
pg.types.setTypeParser(pg.types.builtins.INT8, (value) => Number.parseInt(value, 10));

/**
 * The app's pool. It sends no session settings (statement_timeout and friends are database defaults,
 * set by the migrate step): PgBouncer in transaction mode refuses unknown startup parameters, and a
 * session SET would leak to whichever client gets that server connection next. application_name is
 * one PgBouncer tracks, so it is kept.
 */
export function createPool(
  options: PoolOptions,
  logger: { warn(details: object, message: string): void },
): pg.Pool {
  const pool = new pg.Pool({
    connectionString: options.connectionString,
    max: options.size,
    connectionTimeoutMillis: options.connectTimeoutMs,
    idleTimeoutMillis: 30_000,
    application_name: 'node-levels-starter',
  });
  // An idle client losing its server (restart, failover) must not crash the process:
  // the pool drops it and the next query opens a fresh connection.
  pool.on('error', (error) => logger.warn({ err: error }, 'idle PostgreSQL client lost'));
  return pool;
}

const UNAVAILABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EPIPE',
]);

/** True when an error means "the database cannot be reached now", as opposed to a bad query. */
export function isDatabaseUnavailable(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: string }).code ?? '';
  if (UNAVAILABLE_CODES.has(code)) return true;
  // 08xxx connection exceptions, 57P01-57P03 admin shutdown / cannot connect now.
  if (/^08|^57P0[1-3]$/.test(code)) return true;
  return /timeout exceeded when trying to connect|Connection terminated|connect ECONNREFUSED/i.test(
    error.message,
  );
}
