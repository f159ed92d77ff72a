import { connect } from 'node:net';
import pg from 'pg';

/**
 * How long delivering a cancel may take before we stop waiting for it. Past it the statement runs on
 * until it ends or statement_timeout (DB_STATEMENT_TIMEOUT_MS) ends it: the backstop.
 */
const CANCEL_TIMEOUT_MS = 2000;

/** SQLSTATE query_canceled: a cancel request, or statement_timeout. */
export const QUERY_CANCELED = '57014';

/** The protocol's CancelRequest code (1234 in the high 16 bits, 5678 in the low). */
const CANCEL_REQUEST_CODE = 80877102;

/**
 * What pg keeps on a connected client (not in its types): where it connected, and the key the server
 * sent at start-up (BackendKeyData). Through PgBouncer both are PgBouncer's, which is what we want.
 */
interface CancelKey {
  host: string;
  port: number;
  processID: number | null;
  secretKey: number | null;
}

/** The work a query belongs to was aborted (its request's deadline passed). */
export class QueryAbortedError extends Error {
  readonly code = 'QUERY_ABORTED';

  constructor(reason: unknown) {
    super('The query was abandoned: the work it belongs to was aborted', { cause: reason });
    this.name = 'QueryAbortedError';
  }
}

/** The 16 bytes of a CancelRequest (protocol 3.0: a 4-byte secret key, what node-postgres negotiates). */
export function cancelRequestPacket(processID: number, secretKey: number): Buffer {
  const packet = Buffer.alloc(16);
  packet.writeInt32BE(16, 0);
  packet.writeInt32BE(CANCEL_REQUEST_CODE, 4);
  packet.writeInt32BE(processID, 8);
  packet.writeInt32BE(secretKey, 12);
  return packet;
}

/**
 * Ask the server to cancel what `client`'s backend runs now: a CancelRequest on a connection of its
 * own to where the client connected (node-postgres has no AbortSignal support). Through PgBouncer the
 * bouncer forwards it to the server connection this client holds, which `pg_cancel_backend(pid)` could
 * not find. Resolves once the server has closed that connection (it has signalled the backend by then),
 * or after CANCEL_TIMEOUT_MS; never rejects: nothing more can be done about a lost cancel.
 */
export function sendCancelRequest(client: pg.ClientBase, timeoutMs = CANCEL_TIMEOUT_MS): Promise<void> {
  const { host, port, processID, secretKey } = client as unknown as CancelKey;
  if (processID === null || secretKey === null) return Promise.resolve();
  return new Promise((resolve) => {
    try {
      // node-postgres's convention: a host starting with / is a Unix socket directory.
      const socket = host.startsWith('/') ? connect(`${host}/.s.PGSQL.${port}`) : connect(port, host);
      const settle = () => {
        clearTimeout(timer);
        socket.destroy();
        resolve();
      };
      const timer = setTimeout(settle, timeoutMs);
      // Written, not ended: the server (or PgBouncer) reads the packet and closes the connection itself.
      socket.once('connect', () => socket.write(cancelRequestPacket(processID, secretKey)));
      socket.once('close', settle);
      socket.once('error', settle);
    } catch {
      resolve(); // a malformed address: there is nowhere to send it
    }
  });
}

/**
 * One query on a checked-out client, cancelled on the server if `signal` aborts while it runs, refused
 * if it already has. It settles only once the query has ended and any cancel has been delivered: a cancel
 * still on its way would hit whatever the connection runs next, so the client must not be reused before.
 */
export async function queryWithSignal<R extends pg.QueryResultRow = pg.QueryResultRow>(
  client: pg.ClientBase,
  signal: AbortSignal,
  text: string | pg.QueryConfig,
  values?: unknown[],
): Promise<pg.QueryResult<R>> {
  if (signal.aborted) throw new QueryAbortedError(signal.reason);
  let cancelling: Promise<void> | undefined;
  const cancel = () => {
    cancelling = sendCancelRequest(client);
  };
  signal.addEventListener('abort', cancel, { once: true });
  try {
    return await client.query<R>(text, values);
  } catch (error) {
    if (signal.aborted && (error as { code?: unknown }).code === QUERY_CANCELED)
      throw new QueryAbortedError(signal.reason);
    throw error;
  } finally {
    signal.removeEventListener('abort', cancel);
    await cancelling;
  }
}

/** An error after which the connection is still in step with the server, so fit to go back to the pool. */
function leavesConnectionUsable(error: unknown): boolean {
  return (
    error instanceof QueryAbortedError || (error instanceof pg.DatabaseError && error.severity === 'ERROR')
  );
}

/**
 * `pool.query` bound to a signal. Unlike `pool.query`, which discards the connection after any error,
 * a statement error (the cancel's included) returns the connection to the pool: the server answered and
 * the connection is idle. Only a broken connection is discarded.
 */
export async function poolQueryWithSignal<R extends pg.QueryResultRow = pg.QueryResultRow>(
  pool: pg.Pool,
  signal: AbortSignal,
  text: string | pg.QueryConfig,
  values?: unknown[],
): Promise<pg.QueryResult<R>> {
  if (signal.aborted) throw new QueryAbortedError(signal.reason);
  const client = await pool.connect();
  // A checked-out client has no listener of the pool's: without one, a connection lost mid-query would
  // be an unhandled 'error' event. The query's own rejection reports the failure.
  const ignore = () => {};
  client.on('error', ignore);
  let broken: Error | undefined;
  try {
    return await queryWithSignal<R>(client, signal, text, values);
  } catch (error) {
    if (!leavesConnectionUsable(error)) broken = error instanceof Error ? error : new Error(String(error));
    throw error;
  } finally {
    client.off('error', ignore);
    client.release(broken);
  }
}
