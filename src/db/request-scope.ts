import { AsyncLocalStorage } from 'node:async_hooks';
import type pg from 'pg';
import { poolQueryWithSignal } from './cancel.js';

/** What running work belongs to, and the signal that ends it: an HTTP request (plugins/deadline.ts). */
export interface WorkOwner {
  readonly abortSignal: AbortSignal;
}

const scope = new AsyncLocalStorage<WorkOwner>();

/** Run `fn`, and everything it starts, on behalf of `owner`: pool queries in it are bound to its signal. */
export function runOnBehalfOf<T>(owner: WorkOwner, fn: () => T): T {
  return scope.run(owner, fn);
}

/** The signal of the request the running code works for, if any: for code that binds its own queries. */
export function currentAbortSignal(): AbortSignal | undefined {
  return scope.getStore()?.abortSignal;
}

/**
 * Run `fn` on behalf of no request: for work meant to outlive the request that starts it (a write
 * after the answer, fire-and-forget), which its request's deadline must not cancel.
 */
export function detached<T>(fn: () => T): T {
  return scope.exit(fn);
}

/** A call the bound path takes: text or a config object (not a Submittable such as a cursor), no callback. */
function isPlainQuery(args: unknown[]): args is [string | pg.QueryConfig, unknown[]?] {
  const [text, values] = args;
  const config =
    typeof text === 'object' && text !== null && typeof (text as { submit?: unknown }).submit !== 'function';
  return (
    args.length <= 2 &&
    (typeof text === 'string' || config) &&
    (values === undefined || Array.isArray(values))
  );
}

/**
 * Bind `pool.query` to the work that runs it, so the repositories built on it need no change: on behalf
 * of a request, a query is cancelled on the server when the request's signal aborts (its deadline
 * passed), and refused once it has. Outside any request (start-up, timers such as the pruning)
 * `pool.query` is what it was. Only `pool.query`: a client from `pool.connect()` holds a transaction whose ROLLBACK must
 * still run after a cancel, so its owner binds the statements it chooses with `queryWithSignal`.
 */
export function bindQueriesToRequests(pool: pg.Pool): void {
  // A connection the pool opens keeps, for its whole life, the context it was opened in: opened on
  // behalf of no request, it holds on to none.
  const connect = pool.connect.bind(pool) as (...args: unknown[]) => unknown;
  pool.connect = ((...args: unknown[]) => scope.exit(() => connect(...args))) as typeof pool.connect;
  const unbound = pool.query.bind(pool) as (...args: unknown[]) => unknown;
  pool.query = ((...args: unknown[]) => {
    const owner = scope.getStore();
    if (!owner || !isPlainQuery(args)) return unbound(...args);
    return poolQueryWithSignal(pool, owner.abortSignal, args[0], args[1]);
  }) as typeof pool.query;
}
