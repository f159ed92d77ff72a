import type { Redis } from 'ioredis';
import { isRedisUnavailable } from '../redis/errors.js';

/**
 * A small cache a template user reuses: get-or-load with a TTL, invalidate, and stampede protection
 * (N callers missing the same key load it once). In process at LEVEL=1; in Redis when distributed,
 * so every worker and node sees the same entries and the same invalidations.
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

export class MemoryCache implements Cache {
  private readonly entries = new Map<string, { value: unknown; expiresAt: number }>();
  private readonly flights = new SingleFlight();

  async getOrLoad<T>(key: string, ttlSeconds: number, load: () => Promise<T>): Promise<T> {
    const entry = this.entries.get(key);
    if (entry && entry.expiresAt > Date.now()) return entry.value as T;
    return this.flights.run(key, async () => {
      const value = await load();
      if (value !== undefined) this.entries.set(key, { value, expiresAt: Date.now() + ttlSeconds * 1000 });
      return value;
    });
  }

  async invalidate(key: string): Promise<void> {
    this.entries.delete(key);
  }
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

  async invalidate(key: string): Promise<void> {
    await this.redis.del(`${this.prefix}${key}`);
  }
}
