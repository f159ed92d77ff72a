import { afterAll, describe, expect, it } from 'vitest';
import { authHeaders, buildTestApp } from './helpers/app.js';
import { answeringPids, useClusters } from './helpers/cluster.js';
import { sampleSum } from './helpers/metrics.js';
import type { ServerProcess } from './helpers/process.js';
import { dropPrefix, REDIS_URL, uniquePrefix } from './helpers/tasks.js';
import { signInOverHttp } from './helpers/user.js';

const prefixes: string[] = [];
afterAll(async () => {
  for (const prefix of prefixes) await dropPrefix(prefix);
});
const clusters = useClusters({ LEVEL: '2', WORKERS: '2', REDIS_URL });

function distributedCluster(env: Record<string, string>): Promise<ServerProcess> {
  const prefix = uniquePrefix();
  prefixes.push(prefix);
  return clusters.start({ QUEUE_PREFIX: prefix, ...env });
}

/** A fresh connection per request, so the primary spreads them over both workers. */
const get = (server: ServerProcess, path: string) =>
  fetch(`${server.baseUrl}${path}`, { headers: { connection: 'close' } });

/** A metric summed over the server's workers (one series per worker slot in /metrics). */
async function sample(server: ServerProcess, name: string, labels: Record<string, string>): Promise<number> {
  return sampleSum(await (await get(server, '/metrics')).text(), name, labels);
}

describe('shared state at LEVEL=2 (2 workers)', () => {
  // Redis when a Redis URL is set; PostgreSQL when none is (`make run LEVEL=2` as the README says it).
  it.each([
    ['Redis', {}],
    ['PostgreSQL (no Redis URL)', { REDIS_URL: '' }],
  ])(
    'a limit of N lets exactly N through across both workers, then 429 with Retry-After: %s',
    async (_store, store) => {
      const server = await distributedCluster({ RATE_LIMIT_MAX: '10', RATE_LIMIT_WINDOW: '60', ...store });
      expect((await answeringPids(server, 2)).size).toBe(2); // not rate limited: outside /api
      const statuses: number[] = [];
      let limited: Response | undefined;
      for (let index = 0; index < 16; index += 1) {
        const response = await get(server, '/api/examples/hash?rounds=1');
        statuses.push(response.status);
        if (response.status === 429) limited ??= response;
        else await response.arrayBuffer();
      }
      expect(statuses.filter((status) => status === 200)).toHaveLength(10);
      expect(statuses.filter((status) => status === 429)).toHaveLength(6);
      expect(limited?.headers.get('retry-after')).toMatch(/^\d+$/);
      expect(limited?.headers.get('x-ratelimit-limit')).toBe('10');
      expect(limited?.headers.get('content-type')).toMatch(/problem\+json/);
      expect(((await (limited as Response).json()) as { detail: string }).detail).toMatch(
        /Rate limit exceeded: 10 requests per/,
      );
      // The dashboard's rejection panel: counted in whichever worker refused, summed over both.
      expect(await sample(server, 'rate_limit_rejections_total', { route: '/api/examples/hash' })).toBe(6);
    },
  );

  it('an update through one worker is never served stale by the other after invalidation', async () => {
    const server = await distributedCluster({});
    const auth = await signInOverHttp(server.baseUrl);
    const created = await fetch(`${server.baseUrl}/api/items`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', connection: 'close', ...auth },
      body: JSON.stringify({ name: 'before' }),
    });
    const { id } = (await created.json()) as { id: number };
    // Warm the shared cache through both workers.
    for (let index = 0; index < 6; index += 1)
      expect(((await (await get(server, `/api/items/${id}`)).json()) as { name: string }).name).toBe(
        'before',
      );
    // One load, then hits, whichever worker answered (the dashboard's hit ratio).
    expect(await sample(server, 'cache_lookups_total', { result: 'miss' })).toBe(1);
    expect(await sample(server, 'cache_lookups_total', { result: 'hit' })).toBe(5);
    const patched = await fetch(`${server.baseUrl}/api/items/${id}`, {
      method: 'PATCH',
      headers: { 'content-type': 'application/json', connection: 'close', ...auth },
      body: JSON.stringify({ name: 'after' }),
    });
    expect(patched.status).toBe(200);
    const names = new Set<string>();
    for (let index = 0; index < 10; index += 1)
      names.add(((await (await get(server, `/api/items/${id}`)).json()) as { name: string }).name);
    expect([...names]).toEqual(['after']);
    await fetch(`${server.baseUrl}/api/items/${id}`, {
      method: 'DELETE',
      headers: { connection: 'close', ...auth },
    });
    for (let index = 0; index < 4; index += 1)
      expect((await get(server, `/api/items/${id}`)).status).toBe(404);
  });
});

describe('shared store unreachable', () => {
  it('fails open by default and never makes a request hang', async () => {
    const app = await buildTestApp(clusters.databaseUrl, {
      SHARED_CACHE_URL: 'redis://127.0.0.1:1',
      RATE_LIMIT_MAX: '3',
    });
    const writer = await buildTestApp(clusters.databaseUrl);
    const created = await writer.inject({
      method: 'POST',
      url: '/api/items',
      headers: await authHeaders(writer),
      payload: { name: 'x' },
    });
    await writer.close();
    const startedAt = Date.now();
    for (let index = 0; index < 6; index += 1)
      expect((await app.inject(`/api/items/${created.json().id}`)).statusCode).toBe(200);
    // Sessions live in PostgreSQL: signed-in writes go on while Redis is away.
    const write = await app.inject({
      method: 'DELETE',
      url: `/api/items/${created.json().id}`,
      headers: await authHeaders(app),
    });
    expect(write.statusCode).toBe(204);
    expect(Date.now() - startedAt).toBeLessThan(3000);
    await app.close();
  });

  it('fails closed with 503 when RATE_LIMIT_FAIL_OPEN=false', async () => {
    const app = await buildTestApp(clusters.databaseUrl, {
      SHARED_CACHE_URL: 'redis://127.0.0.1:1',
      RATE_LIMIT_MAX: '3',
      RATE_LIMIT_FAIL_OPEN: 'false',
    });
    const startedAt = Date.now();
    const response = await app.inject('/api/examples/hash?rounds=1');
    expect(Date.now() - startedAt).toBeLessThan(3000);
    expect(response.statusCode).toBe(503);
    expect(response.headers['retry-after']).toBeDefined();
    await app.close();
  });
});

describe('shared cache', () => {
  it('loads a missing key once when many callers in several processes miss it together', async () => {
    const { Redis } = await import('ioredis');
    const { RedisCache } = await import('../src/cache/cache.js');
    const prefix = uniquePrefix();
    prefixes.push(prefix);
    const connections = [new Redis(REDIS_URL), new Redis(REDIS_URL)];
    const caches = connections.map((connection) => new RedisCache(connection, `${prefix}:cache:`));
    let loads = 0;
    const load = async () => {
      loads += 1;
      await new Promise((resolve) => setTimeout(resolve, 100));
      return { value: 42 };
    };
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, index) =>
        (caches[index % 2] as InstanceType<typeof RedisCache>).getOrLoad('hot', 30, load),
      ),
    );
    expect(results.every((result) => result.value === 42)).toBe(true);
    expect(loads).toBe(1);
    for (const connection of connections) connection.disconnect();
  });

  it('does not load again when another loader finishes between our miss and our lock', async () => {
    const { Redis } = await import('ioredis');
    const { RedisCache } = await import('../src/cache/cache.js');
    const prefix = uniquePrefix();
    prefixes.push(prefix);
    const redis = new Redis(REDIS_URL);
    const cacheKey = `${prefix}:cache:hot`;
    // The other process stores its value and unlocks exactly when we ask for the lock: the interleaving
    // that made the many-callers test above load twice now and then.
    let interleaved = false;
    const racing = new Proxy(redis, {
      get(target, property, receiver) {
        if (property !== 'set') return Reflect.get(target, property, receiver);
        return async (...args: unknown[]) => {
          if (!interleaved && args.includes('NX')) {
            interleaved = true;
            await target.set(cacheKey, JSON.stringify({ value: 7 }), 'EX', 30);
          }
          return (target.set as (...setArgs: unknown[]) => Promise<unknown>)(...args);
        };
      },
    });
    let loads = 0;
    const value = await new RedisCache(racing, `${prefix}:cache:`).getOrLoad('hot', 30, async () => {
      loads += 1;
      return { value: 1 };
    });
    expect(interleaved).toBe(true);
    expect(value).toEqual({ value: 7 });
    expect(loads).toBe(0);
    redis.disconnect();
  });
});
