/**
 * Readiness waits for the schema: a production API started before its migrations ran (Swarm starts the
 * migrate job and new API tasks together) answers /health/ready 503 naming what is missing, and turns
 * ready by itself once `node dist/migrate.js` has run. Real processes, real PostgreSQL.
 */
import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MIGRATIONS_DIR, pendingMessage, pendingOf, shippedMigrations } from '../src/db/migration-status.js';
import { until } from './helpers/cluster.js';
import { createTestDatabase, type TestDatabase } from './helpers/database.js';
import { freePort, type ServerProcess, startProcess, waitForHttp } from './helpers/process.js';

describe('which shipped migrations are pending', () => {
  it('names every file of the migrations folder without its extension, in order', () => {
    const files = readdirSync(MIGRATIONS_DIR);
    expect(shippedMigrations()).toEqual(files.map((file) => file.replace(/\.sql$/, '')).sort());
    expect(shippedMigrations().length).toBeGreaterThan(0);
  });

  it('lists the missing ones in shipped order; extra applied ones (a newer release) are fine', () => {
    const shipped = ['1_items', '2_outbox', '3_users'];
    expect(pendingOf(shipped, [])).toEqual(shipped);
    expect(pendingOf(shipped, ['3_users', '1_items'])).toEqual(['2_outbox']);
    expect(pendingOf(shipped, [...shipped, '4_newer'])).toEqual([]);
  });

  it('says how many are missing, a few names, and the command that applies them', () => {
    expect(pendingMessage(['1_a', '2_b', '3_c', '4_d'])).toBe(
      '4 migration(s) not applied (1_a, 2_b, 3_c, ...): run node dist/migrate.js',
    );
  });
});

describe('a production API started before its migrations', () => {
  let database: TestDatabase;
  let server: ServerProcess | undefined;

  beforeAll(async () => {
    database = await createTestDatabase({ migrate: false });
  });
  afterAll(async () => {
    await server?.stop('SIGKILL');
    await database?.drop();
  });

  it('is live but not ready until `node dist/migrate.js` runs, then ready without a restart', async () => {
    const env = {
      NODE_ENV: 'production',
      DATABASE_URL: database.url,
      AUTH_SECRET: randomBytes(32).toString('base64'),
    };
    server = startProcess({ ...env, PORT: String(await freePort()) });
    await waitForHttp(`${server.baseUrl}/health/live`);

    const before = await fetch(`${server.baseUrl}/health/ready`);
    expect(before.status).toBe(503);
    const pending = shippedMigrations().length;
    expect(await before.json()).toMatchObject({
      status: 'not_ready',
      checks: {
        database: { status: 'up' },
        migrations: {
          status: 'down',
          error: expect.stringContaining(`${pending} migration(s) not applied`),
        },
      },
    });

    const migrate = startProcess(env, 'dist/migrate.js');
    expect(await migrate.exited).toEqual({ code: 0, signal: null });

    await until(async () => (await fetch(`${server?.baseUrl}/health/ready`)).ok, 10_000, 'ready');
    const after = await (await fetch(`${server.baseUrl}/health/ready`)).json();
    expect(after).toMatchObject({
      status: 'ready',
      checks: { migrations: { status: 'up', detail: `schema up to date (${pending} migrations)` } },
    });
    // The process kept serving throughout and wrote nothing but JSON.
    expect(server.child.exitCode).toBeNull();
    expect(server.nonJsonLines()).toEqual([]);
  });
});
