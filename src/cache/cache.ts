import type { Redis } from 'ioredis';
import { isRedisUnavailable } from '../redis/errors.js';

/**
 * A small cache a template user reuses: get-or-load with a TTL, invalidate, and stampede protection
 * (N callers missing the same key load it once). In Redis when one is configured, so every worker and
 * node sees the same entries and the same invalidations; otherwise none (PassThroughCache).
 */
export interface Cache {
  getOrLoad<T>(key: string, ttlSeconds: number, load: () => Promise<T>): Promise<T>;
  invalidate(key: string): Promise<void>;
}

/** One load per key at a time inside this process. */
class SingleFlight {
  private readonly inFlight = new Map<string, Promise<unknown>>();

  run<T>(key: string, work: () => Promise<T>): Promise<T> {
    const running = this.inFlight.get(key) as Promise<T> | undefined;
    if (running) return running;
    const started = work().finally(() => this.inFlight.delete(key));
    this.inFlight.set(key, started);
    return started;
  }
}

/**
 * No Redis configured: no cache at all. A per-process copy would serve one replica's stale entry after
 * another replica's write; PostgreSQL, which every process shares, answers every read instead. Single
 * flight still folds concurrent reads of one key in this process into one query.
 */
export class PassThroughCache implements Cache {
  private readonly flights = new SingleFlight();

  getOrLoad<T>(key: string, _ttlSeconds: number, load: () => Promise<T>): Promise<T> {
    return this.flights.run(key, load);
  }

  async invalidate(): Promise<void> {}
}

const LOCK_MS = 5000;
const POLL_MS = 20;

/**
 * Redis-backed: a miss takes a short lock (SET NX PX) so that one process in the whole service
 * loads; the others wait for the value. Redis trouble never fails a request: the value is loaded
 * directly instead (the connection fails fast, so nothing hangs).
 */
export class RedisCache implements Cache {
  private readonly flights = new SingleFlight();

  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {}

  async getOrLoad<T>(key: string, ttlSeconds: number, load: () => Promise<T>): Promise<T> {
    return this.flights.run(key, async () => {
      const cacheKey = `${this.prefix}${key}`;
      try {
        const cached = await this.redis.get(cacheKey);
        if (cached !== null) return JSON.parse(cached) as T;
        const lockKey = `${cacheKey}:lock`;
        const deadline = Date.now() + LOCK_MS;
        const tryLock = async () => (await this.redis.set(lockKey, '1', 'PX', LOCK_MS, 'NX')) === 'OK';
        let locked = await tryLock();
        while (!locked && Date.now() < deadline) {
          await new Promise((resolve) => setTimeout(resolve, POLL_MS));
          const loaded = await this.redis.get(cacheKey);
          if (loaded !== null) return JSON.parse(loaded) as T;
          locked = await tryLock();
        }
        try {
          // Double check under the lock: a loader that finished between our miss and our lock has
          // stored the value (it stores before it unlocks).
          const stored = await this.redis.get(cacheKey);
          if (stored !== null) return JSON.parse(stored) as T;
          const value = await load();
          if (value !== undefined)
            await this.redis.set(cacheKey, JSON.stringify(value), 'EX', Math.ceil(ttlSeconds));
          return value;
        } finally {
          // Only our own lock: past the deadline we load without one, and the lock is someone else's.
          if (locked) await this.redis.del(lockKey).catch(() => {});
        }
      } catch (error) {
        if (isRedisUnavailable(error)) return load();
        throw error;
      }
    });
  }

  /**
   * Redis unreachable: the write it follows has been committed and stands, so it is not failed for
   * this. Reads skip the cache meanwhile; an entry stored before the outage may then be served until
   * its TTL (CACHE_TTL) runs out: the documented staleness bound.
   */
  async invalidate(key: string): Promise<void> {
    try {
      await this.redis.del(`${this.prefix}${key}`);
    } catch (error) {
      if (!isRedisUnavailable(error)) throw error;
    }
  }
}
