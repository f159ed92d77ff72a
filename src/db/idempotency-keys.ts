import type pg from 'pg';
import type { KeyRecord, StoredResponse } from '../plugins/idempotency-decision.js';

/** Identifies a key: whose (the signed-in user's id, '' when anonymous) and the key itself. */
export interface KeyId {
  scope: string;
  key: string;
}

interface KeyRow {
  fingerprint: string;
  claim: string;
  claimed_at: Date;
  expires_at: Date;
  status: number | null;
  headers: Record<string, string> | null;
  body: Buffer | null;
  now: Date;
}

function toRecord(row: KeyRow): KeyRecord {
  return {
    fingerprint: row.fingerprint,
    claim: row.claim,
    claimedAt: row.claimed_at,
    expiresAt: row.expires_at,
    response:
      row.status === null
        ? undefined
        : { status: row.status, headers: row.headers ?? {}, body: row.body ?? Buffer.alloc(0) },
    now: row.now,
  };
}

// Every time comes from the database (clock_timestamp()), so replicas with skewed clocks agree.
const EXPIRES = 'clock_timestamp() + make_interval(secs => $5)';

/**
 * Idempotency keys in PostgreSQL, shared by every process and replica. A row is claimed by one
 * attempt (a random `claim` id) and completed, released or taken over only by a statement that still
 * sees that id: a compare-and-set, so two processes never both believe they hold a key.
 */
export class IdempotencyKeyStore {
  constructor(private readonly db: pg.Pool) {}

  /** Claim a key nobody holds: true when this attempt now holds it. */
  async claimNew(id: KeyId, fingerprint: string, claim: string, ttlSeconds: number): Promise<boolean> {
    const { rowCount } = await this.db.query(
      `INSERT INTO idempotency_keys (scope, key, fingerprint, claim, claimed_at, expires_at)
       VALUES ($1, $2, $3, $4, clock_timestamp(), ${EXPIRES})
       ON CONFLICT (scope, key) DO NOTHING`,
      [id.scope, id.key, fingerprint, claim, ttlSeconds],
    );
    return (rowCount ?? 0) > 0;
  }

  async read(id: KeyId): Promise<KeyRecord | undefined> {
    const { rows } = await this.db.query<KeyRow>(
      `SELECT fingerprint, claim, claimed_at, expires_at, status, headers, body, clock_timestamp() AS now
       FROM idempotency_keys WHERE scope = $1 AND key = $2`,
      [id.scope, id.key],
    );
    return rows[0] ? toRecord(rows[0]) : undefined;
  }

  /** Take a row over (expired, or its lease over) if `previous` still holds it: true when taken. */
  async claimFrom(
    id: KeyId,
    fingerprint: string,
    claim: string,
    ttlSeconds: number,
    previous: string,
  ): Promise<boolean> {
    const { rowCount } = await this.db.query(
      `UPDATE idempotency_keys SET fingerprint = $3, claim = $4, claimed_at = clock_timestamp(),
         expires_at = ${EXPIRES}, status = NULL, headers = NULL, body = NULL
       WHERE scope = $1 AND key = $2 AND claim = $6`,
      [id.scope, id.key, fingerprint, claim, ttlSeconds, previous],
    );
    return (rowCount ?? 0) > 0;
  }

  /** Keep the answer; the key then lives `ttlSeconds` from now. False when the claim was lost. */
  async complete(id: KeyId, claim: string, response: StoredResponse, ttlSeconds: number): Promise<boolean> {
    const { rowCount } = await this.db.query(
      `UPDATE idempotency_keys SET status = $4, headers = $6, body = $7, expires_at = ${EXPIRES}
       WHERE scope = $1 AND key = $2 AND claim = $3 AND status IS NULL`,
      [id.scope, id.key, claim, response.status, ttlSeconds, response.headers, response.body],
    );
    return (rowCount ?? 0) > 0;
  }

  /** Free the key (the attempt failed with a 5xx): the next request with it runs afresh. */
  async release(id: KeyId, claim: string): Promise<void> {
    await this.db.query(
      'DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND claim = $3 AND status IS NULL',
      [id.scope, id.key, claim],
    );
  }
}

/** Expired keys: deleted by whichever process gets there first; the statement is idempotent. */
export async function pruneIdempotencyKeys(db: pg.Pool): Promise<number> {
  const { rowCount } = await db.query('DELETE FROM idempotency_keys WHERE expires_at < clock_timestamp()');
  return rowCount ?? 0;
}
