import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import type pg from 'pg';
import { pendingMessage, pendingMigrations, shippedMigrations } from '../db/migration-status.js';
import { createPool } from '../db/pool.js';
import { bindQueriesToRequests } from '../db/request-scope.js';
import type { Settings } from '../settings.js';
import { addReadinessCheck } from './readiness.js';

declare module 'fastify' {
  interface FastifyInstance {
    db: pg.Pool;
  }
}

type DbSettings = Pick<Settings, 'DATABASE_URL' | 'DB_POOL_SIZE' | 'DB_CONNECT_TIMEOUT_MS'>;

async function dbPlugin(app: FastifyInstance, settings: DbSettings): Promise<void> {
  if (!settings.DATABASE_URL)
    throw new Error('DATABASE_URL must be resolved before buildApp (the runner starts the embedded one)');
  const pool = createPool(
    {
      connectionString: settings.DATABASE_URL,
      size: settings.DB_POOL_SIZE,
      connectTimeoutMs: settings.DB_CONNECT_TIMEOUT_MS,
    },
    app.log,
  );
  // Queries run on behalf of a request are cancelled with it (plugins/deadline.ts).
  bindQueriesToRequests(pool);
  app.decorate('db', pool);
  addReadinessCheck(app, 'database', async () => {
    await pool.query('SELECT 1');
    return undefined;
  });
  // Not ready until this code's schema is in: read until it is, then never again (a schema does not
  // go back; a newer release migrating first leaves extra migrations, which is fine).
  const shipped = shippedMigrations();
  let schemaCurrent = false;
  addReadinessCheck(app, 'migrations', async () => {
    if (!schemaCurrent) {
      const pending = await pendingMigrations(pool, shipped);
      if (pending.length > 0) throw new Error(pendingMessage(pending));
      schemaCurrent = true;
    }
    return `schema up to date (${shipped.length} migrations)`;
  });
  app.addHook('onClose', async () => {
    await pool.end();
  });
}

export default fp(dbPlugin, { name: 'db', dependencies: ['readiness'] });
