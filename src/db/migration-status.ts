/**
 * Whether the schema this code ships with is in the database: read by readiness, so an API whose
 * migrations have not run yet (Swarm starts the migrate job and new API tasks together; Kubernetes
 * may too) takes no traffic. node-pg-migrate itself is not loaded: it records each applied
 * migration by its file name without the extension, in `pgmigrations`.
 */
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';

export const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations', import.meta.url));
export const MIGRATIONS_TABLE = 'pgmigrations';

/** The migrations this code ships with (node-pg-migrate skips dotfiles too). */
export function shippedMigrations(dir: string = MIGRATIONS_DIR): string[] {
  return readdirSync(dir)
    .filter((file) => !file.startsWith('.'))
    .map((file) => file.replace(/\.[^.]+$/, ''))
    .sort();
}

/** Shipped migrations not in `applied`. Extra applied ones (a newer release migrated first) are fine. */
export function pendingOf(shipped: readonly string[], applied: Iterable<string>): string[] {
  const done = new Set(applied);
  return shipped.filter((name) => !done.has(name));
}

const UNDEFINED_TABLE = '42P01';

/** Names of the shipped migrations the database has not applied (all of them before the first run). */
export async function pendingMigrations(pool: pg.Pool, shipped: readonly string[]): Promise<string[]> {
  try {
    const { rows } = await pool.query<{ name: string }>(`SELECT name FROM ${MIGRATIONS_TABLE}`);
    return pendingOf(
      shipped,
      rows.map((row) => row.name),
    );
  } catch (error) {
    if ((error as { code?: string }).code === UNDEFINED_TABLE) return [...shipped];
    throw error;
  }
}

/** The readiness check's failure text: what is missing and how to apply it. */
export function pendingMessage(pending: readonly string[]): string {
  const shown = pending.slice(0, 3).join(', ') + (pending.length > 3 ? ', ...' : '');
  return `${pending.length} migration(s) not applied (${shown}): run node dist/migrate.js`;
}
