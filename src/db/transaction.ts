import type pg from 'pg';
import { currentAbortSignal } from './request-scope.js';

/** A pool or a client inside a transaction: repository methods take either. */
export type Queryable = Pick<pg.Pool, 'query'> | Pick<pg.PoolClient, 'query'>;

/**
 * Run `work` in one transaction on one connection: committed when it resolves, rolled back when it
 * throws. A connection whose ROLLBACK failed is destroyed, never handed to the next caller in an
 * aborted state. Through PgBouncer in transaction mode the whole of it holds one server connection.
 * On behalf of a request whose deadline has passed, it rolls back instead of committing.
 */
export async function inTransaction<T>(
  pool: pg.Pool,
  work: (client: pg.PoolClient) => Promise<T>,
): Promise<T> {
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    await client.query('BEGIN');
    const result = await work(client);
    // The request this runs for passed its deadline and was answered 503: its write must not stand.
    currentAbortSignal()?.throwIfAborted();
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK').catch((rollbackError: Error) => {
      broken = rollbackError;
    });
    throw error;
  } finally {
    client.release(broken);
  }
}
