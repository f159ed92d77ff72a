/**
 * PgBouncer, for real (Debian's, transaction pooling, default_pool_size=5) in front of the test
 * PostgreSQL: migrations over the direct URL, LEVEL=3 with 4 workers x DB_POOL_SIZE=10 fanned into at
 * most 5 server connections under load, and a PgBouncer restart under load answered with 503s only.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, until } from './helpers/cluster.js';
import { createTestDatabase, type TestDatabase } from './helpers/database.js';
import { startLoad } from './helpers/load.js';
import { type PgBouncer, startPgBouncer } from './helpers/pgbouncer.js';
import { freePort, type ServerProcess, startProcess } from './helpers/process.js';
import { signInOverHttp } from './helpers/user.js';

const POOL_SIZE = 5;
let database: TestDatabase;
let bouncer: PgBouncer;
let monitor: pg.Client;
const servers: ServerProcess[] = [];

beforeAll(async () => {
  // Blank: the migrate step below applies the migrations itself, over the direct URL.
  database = await createTestDatabase({ migrate: false });
  bouncer = await startPgBouncer(database.url, { defaultPoolSize: POOL_SIZE });
  monitor = new pg.Client({ connectionString: database.url.replace(/\/[^/?]+(\?|$)/, '/postgres$1') });
  await monitor.connect();
});
afterAll(async () => {
  await Promise.all(servers.map((server) => server.stop('SIGKILL')));
  await monitor?.end();
  await bouncer?.remove();
  await database?.drop();
});

const databaseName = () => new URL(database.url).pathname.slice(1);

/** Server connections PostgreSQL has open for the app's database (PgBouncer's, and anyone else's). */
async function serverConnections(): Promise<number> {
  const { rows } = await monitor.query(
    "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend'",
    [databaseName()],
  );
  return rows[0].n as number;
}

/** Sample serverConnections() until stopped; resolves with the largest count seen. */
function sampleConnections(): { stop: () => Promise<{ max: number; samples: number }> } {
  let running = true;
  let max = 0;
  let samples = 0;
  const loop = (async () => {
    while (running) {
      max = Math.max(max, await serverConnections());
      samples += 1;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return { max, samples };
    },
  };
}

describe('PgBouncer in transaction mode', () => {
  let server: ServerProcess;

  it('migrations use MIGRATIONS_DATABASE_URL; statement_timeout holds through PgBouncer as a database default', async () => {
    // PgBouncer refuses what the pool used to send: a startup parameter.
    const old = new pg.Client({ connectionString: bouncer.urlFor(database.url), statement_timeout: 10_000 });
    await expect(old.connect()).rejects.toThrow(/unsupported startup parameter: statement_timeout/);

    // DATABASE_URL points nowhere: only the direct URL can have applied the migrations.
    const nowhere = `postgres://postgres@127.0.0.1:${await freePort()}/${databaseName()}`;
    const migrate = startProcess(
      {
        NODE_ENV: 'production',
        DATABASE_URL: nowhere,
        MIGRATIONS_DATABASE_URL: database.url,
        DB_STATEMENT_TIMEOUT_MS: '4321',
      },
      'dist/migrate.js',
    );
    const exit = await migrate.exited;
    await migrate.outputEnded;
    expect(exit, migrate.logs.map((line) => JSON.stringify(line)).join('\n')).toEqual({
      code: 0,
      signal: null,
    });
    expect(migrate.logs.some((line) => line.msg === 'migrations applied')).toBe(true);

    const pooled = new pg.Client({ connectionString: bouncer.urlFor(database.url) });
    await pooled.connect();
    expect((await pooled.query('SELECT count(*)::int AS n FROM pgmigrations')).rows[0].n).toBeGreaterThan(0);
    expect((await pooled.query('SHOW statement_timeout')).rows[0].statement_timeout).toBe('4321ms');
    await pooled.end();
  });

  it('LEVEL=3, 4 workers x DB_POOL_SIZE=10 through default_pool_size=5: no error under load, at most 5 server connections', async () => {
    server = await startCluster({
      LEVEL: '3',
      WORKERS: '4',
      DB_POOL_SIZE: '10',
      DATABASE_URL: bouncer.urlFor(database.url),
      MIGRATIONS_DATABASE_URL: database.url,
    });
    servers.push(server);
    const signedIn = await signInOverHttp(server.baseUrl);
    for (let index = 0; index < 30; index += 1) {
      const created = await fetch(`${server.baseUrl}/api/items`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...signedIn },
        body: JSON.stringify({ name: `item ${index}` }),
      });
      expect(created.status, `${await created.text()}\n${bouncer.log()}`).toBe(201);
    }
    const sampler = sampleConnections();
    // 40 keep-alive clients: every app connection of the 4 workers in use at once.
    const load = startLoad(`${server.baseUrl}/api/items?limit=50`, 40);
    await new Promise((resolve) => setTimeout(resolve, 5000));
    const result = await load.stop();
    const connections = await sampler.stop();
    expect(result.failures.slice(0, 5)).toEqual([]);
    expect(result.ok).toBeGreaterThan(200);
    expect(connections.max).toBeLessThanOrEqual(POOL_SIZE);
    // The pool was in real use, not idle: PgBouncer opened more than one server connection.
    expect(connections.max).toBeGreaterThan(1);
    console.log(JSON.stringify({ fanIn: { requests: result.ok, failed: result.failed, ...connections } }));
  }, 90_000);

  it('PgBouncer restarted under load: 503s meanwhile, never a 500 or a dropped request, then recovery by itself', async () => {
    const load = startLoad(`${server.baseUrl}/api/items?limit=5`, 16);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const stoppedAt = Date.now();
    await bouncer.stop();
    await new Promise((resolve) => setTimeout(resolve, 1500));
    await bouncer.start();
    let recoveredAt = 0;
    await until(
      async () => {
        const response = await fetch(`${server.baseUrl}/api/items?limit=1`, {
          headers: { connection: 'close' },
        });
        await response.arrayBuffer();
        if (response.ok) recoveredAt = Date.now();
        return response.ok;
      },
      20_000,
      'the API to answer through PgBouncer again',
    );
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const during = await load.stop();
    // Every failure is a 503 problem (the database is unavailable), none a 500 or a dropped connection.
    expect(
      during.failures.filter((failure) => !/^status 503: .*database is unavailable/.test(failure)),
    ).toEqual([]);
    expect(during.ok).toBeGreaterThan(0);
    // Recovered for good: a fresh burst meets no error.
    const after = startLoad(`${server.baseUrl}/api/items?limit=5`, 16);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const afterResult = await after.stop();
    expect(afterResult.failures.slice(0, 5)).toEqual([]);
    console.log(
      JSON.stringify({
        restart: {
          ok: during.ok,
          answered503: during.failed,
          outageMs: recoveredAt - stoppedAt,
          afterOk: afterResult.ok,
        },
      }),
    );
  }, 60_000);
});
