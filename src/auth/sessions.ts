import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import type { Role } from './users.js';

/** Who a live session belongs to, read fresh from PostgreSQL on every authenticated request. */
export interface SessionPrincipal {
  userId: string;
  role: Role;
}

/** A session just opened or rotated: the refresh token id to sign, and the absolute end. */
export interface SessionGrant {
  sessionId: string;
  userId: string;
  refreshTokenId: string;
  /** Absolute end of the session (unix seconds): no token of it may outlive this. */
  expiresAt: number;
}

export type RefreshOutcome =
  | { kind: 'rotated'; grant: SessionGrant }
  /** An older refresh token of the family was presented: the session is now revoked. */
  | { kind: 'reused' }
  /** Unknown, revoked, expired, or its user deleted or disabled. */
  | { kind: 'ended' };

const seconds = (date: Date) => Math.floor(date.getTime() / 1000);

/**
 * Sign-in sessions in PostgreSQL, the store every process of every level and every replica shares:
 * a logout, a reused refresh token, a deleted or disabled user hold on the next request everywhere.
 * Tokens stay signed JWTs; each request checks its session here (one primary-key read with the user).
 */
export class SessionStore {
  constructor(
    private readonly db: pg.Pool,
    private readonly maxAgeSeconds: number,
  ) {}

  async open(userId: string): Promise<SessionGrant> {
    const sessionId = randomUUID();
    const refreshTokenId = randomUUID();
    const { rows } = await this.db.query<{ expires_at: Date }>(
      `INSERT INTO auth_sessions (id, user_id, refresh_token_id, expires_at)
       VALUES ($1, $2, $3, now() + make_interval(secs => $4)) RETURNING expires_at`,
      [sessionId, userId, refreshTokenId, this.maxAgeSeconds],
    );
    return {
      sessionId,
      userId,
      refreshTokenId,
      expiresAt: seconds((rows[0] as { expires_at: Date }).expires_at),
    };
  }

  /** The session's user and role while the session is live and the user active; undefined otherwise. */
  async principalOf(sessionId: string): Promise<SessionPrincipal | undefined> {
    const { rows } = await this.db.query<{ user_id: string; role: Role }>(
      `SELECT s.user_id, u.role FROM auth_sessions s JOIN users u ON u.id = s.user_id
       WHERE s.id = $1 AND s.revoked_at IS NULL AND s.expires_at > now() AND u.disabled_at IS NULL`,
      [sessionId],
    );
    const row = rows[0];
    return row ? { userId: String(row.user_id), role: row.role } : undefined;
  }

  /**
   * Rotate the family: only the current refresh token id moves it on (row lock: of two replicas
   * presenting the same token at once, one rotates and the other sees reuse).
   */
  async refresh(sessionId: string, presentedTokenId: string): Promise<RefreshOutcome> {
    const next = randomUUID();
    const { rows } = await this.db.query<{ user_id: string; expires_at: Date }>(
      `UPDATE auth_sessions s SET refresh_token_id = $3, refreshed_at = now()
       FROM users u
       WHERE s.id = $1 AND s.refresh_token_id = $2 AND s.revoked_at IS NULL AND s.expires_at > now()
         AND u.id = s.user_id AND u.disabled_at IS NULL
       RETURNING s.user_id, s.expires_at`,
      [sessionId, presentedTokenId, next],
    );
    const row = rows[0];
    if (row)
      return {
        kind: 'rotated',
        grant: {
          sessionId,
          userId: String(row.user_id),
          refreshTokenId: next,
          expiresAt: seconds(row.expires_at),
        },
      };
    // Not rotated: a live session whose current token is another one was handed an old token.
    const revoked = await this.db.query(
      `UPDATE auth_sessions SET revoked_at = now(), revoked_reason = 'refresh token reused'
       WHERE id = $1 AND refresh_token_id <> $2 AND revoked_at IS NULL AND expires_at > now()`,
      [sessionId, presentedTokenId],
    );
    return (revoked.rowCount ?? 0) > 0 ? { kind: 'reused' } : { kind: 'ended' };
  }

  async revoke(sessionId: string, reason: string): Promise<void> {
    await this.db.query(
      'UPDATE auth_sessions SET revoked_at = now(), revoked_reason = $2 WHERE id = $1 AND revoked_at IS NULL',
      [sessionId, reason],
    );
  }

  /** Sessions past their end (a day of grace for forensics): any process may run it, any time. */
  async prune(): Promise<number> {
    const { rowCount } = await this.db.query(
      "DELETE FROM auth_sessions WHERE expires_at < now() - interval '1 day'",
    );
    return rowCount ?? 0;
  }
}
