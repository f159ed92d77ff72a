import client from 'prom-client';
import type { Cache } from './cache.js';

const lookups = new client.Counter({
  name: 'cache_lookups_total',
  help: 'Cache lookups by result: hit (answered from the cache) or miss (this call loaded the value)',
  labelNames: ['result'] as const,
});
// Both series exist from the start, so a hit ratio is defined before the first miss.
lookups.inc({ result: 'hit' }, 0);
lookups.inc({ result: 'miss' }, 0);

/** The same cache, counting hits and misses for the hit-ratio panel and alerts. */
export function withCacheMetrics(cache: Cache): Cache {
  return {
    async getOrLoad<T>(key: string, ttlSeconds: number, load: () => Promise<T>): Promise<T> {
      let loaded = false;
      const value = await cache.getOrLoad(key, ttlSeconds, () => {
        loaded = true;
        return load();
      });
      lookups.inc({ result: loaded ? 'miss' : 'hit' });
      return value;
    },
    invalidate: (key) => cache.invalidate(key),
  };
}
