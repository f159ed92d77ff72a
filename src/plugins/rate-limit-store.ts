import type { FastifyRateLimitStore, FastifyRateLimitStoreCtor } from '@fastify/rate-limit';
import type pg from 'pg';

type Callback = Parameters<FastifyRateLimitStore['incr']>[1];

/** What the plugin hands a store: its merged options, with the route a child store is for. */
interface StoreParams {
  routeInfo?: { method?: string | string[]; url?: string };
}

// One statement per hit: a fresh window when the row is missing or past its end, else one more hit.
const INCREMENT = `
  INSERT INTO rate_limits AS r (key, hits, expires_at)
  VALUES ($1, 1, clock_timestamp() + make_interval(secs => $2 / 1000.0))
  ON CONFLICT (key) DO UPDATE SET
    hits = CASE WHEN r.expires_at <= clock_timestamp() THEN 1 ELSE r.hits + 1 END,
    expires_at = CASE WHEN r.expires_at <= clock_timestamp() THEN EXCLUDED.expires_at ELSE r.expires_at END
  RETURNING hits, GREATEST(0, ceil(extract(epoch FROM r.expires_at - clock_timestamp()) * 1000))::int AS ttl_ms`;

const READ = `
  SELECT hits, GREATEST(0, ceil(extract(epoch FROM expires_at - clock_timestamp()) * 1000))::int AS ttl_ms
  FROM rate_limits WHERE key = $1 AND expires_at > clock_timestamp()`;

/**
 * Fixed-window counters in PostgreSQL, for @fastify/rate-limit when no Redis is configured: every
 * process and replica counts in the same row, so a limit of N means N for the whole service.
 * (continueExceeding and exponentialBackoff are not implemented: the app uses neither.)
 */
export function postgresRateLimitStore(db: pg.Pool, prefix = ''): FastifyRateLimitStoreCtor {
  return class PostgresRateLimitStore implements FastifyRateLimitStore {
    private readonly prefix: string;

    constructor(params: object, routePrefix = prefix) {
      const { routeInfo } = params as StoreParams;
      const route = routeInfo?.url ? `${String(routeInfo.method)} ${routeInfo.url}:` : '';
      this.prefix = `${routePrefix}${route}`;
    }

    incr(key: string, callback: Callback, timeWindowMs: number): void {
      db.query<{ hits: number; ttl_ms: number }>(INCREMENT, [`${this.prefix}${key}`, timeWindowMs]).then(
        ({ rows }) => {
          const row = rows[0] as { hits: number; ttl_ms: number };
          callback(null, { current: row.hits, ttl: row.ttl_ms });
        },
        (error: Error) => callback(error),
      );
    }

    /** The window's count without adding to it (the plugin's `{ increment: false }`). */
    read(key: string, callback: Callback): void {
      db.query<{ hits: number; ttl_ms: number }>(READ, [`${this.prefix}${key}`]).then(
        ({ rows }) =>
          callback(null, rows[0] ? { current: rows[0].hits, ttl: rows[0].ttl_ms } : { current: 0, ttl: 0 }),
        (error: Error) => callback(error),
      );
    }

    child(params: object): FastifyRateLimitStore {
      return new PostgresRateLimitStore(params, this.prefix);
    }
  };
}

/** Windows that ended: deleted by whichever process gets there first. */
export async function pruneRateLimits(db: pg.Pool): Promise<number> {
  const { rowCount } = await db.query('DELETE FROM rate_limits WHERE expires_at < now()');
  return rowCount ?? 0;
}
