import type { Redis } from 'ioredis';
import { withRedis } from '../redis/connection.js';

/**
 * What must agree across workers and nodes about sign-in sessions: which are revoked (logout, reuse of
 * a refresh token) and which refresh tokens were already used. Tokens themselves are stateless.
 */
export interface SessionStore {
  revoke(sessionId: string, ttlSeconds: number): Promise<void>;
  isRevoked(sessionId: string): Promise<boolean>;
  /** True the first time a refresh token id is presented, false for every later time. */
  claimRefresh(tokenId: string, ttlSeconds: number): Promise<boolean>;
}

/** LEVEL=1 (one process): a map with expiry. */
export class MemorySessionStore implements SessionStore {
  private readonly entries = new Map<string, number>();

  async revoke(sessionId: string, ttlSeconds: number): Promise<void> {
    this.set(`revoked:${sessionId}`, ttlSeconds);
  }

  async isRevoked(sessionId: string): Promise<boolean> {
    return this.live(`revoked:${sessionId}`);
  }

  async claimRefresh(tokenId: string, ttlSeconds: number): Promise<boolean> {
    if (this.live(`used:${tokenId}`)) return false;
    this.set(`used:${tokenId}`, ttlSeconds);
    return true;
  }

  private set(key: string, ttlSeconds: number): void {
    const now = Date.now();
    for (const [stored, expiresAt] of this.entries) if (expiresAt <= now) this.entries.delete(stored);
    this.entries.set(key, now + ttlSeconds * 1000);
  }

  private live(key: string): boolean {
    const expiresAt = this.entries.get(key);
    return expiresAt !== undefined && expiresAt > Date.now();
  }
}

/** Distributed mode: Redis keys that expire with the tokens they are about; every worker reads them. */
export class RedisSessionStore implements SessionStore {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {}

  async revoke(sessionId: string, ttlSeconds: number): Promise<void> {
    await withRedis(this.redis, () =>
      this.redis.set(`${this.prefix}revoked:${sessionId}`, '1', 'EX', ttlSeconds),
    );
  }

  async isRevoked(sessionId: string): Promise<boolean> {
    return (await withRedis(this.redis, () => this.redis.exists(`${this.prefix}revoked:${sessionId}`))) === 1;
  }

  async claimRefresh(tokenId: string, ttlSeconds: number): Promise<boolean> {
    const set = await withRedis(this.redis, () =>
      this.redis.set(`${this.prefix}used:${tokenId}`, '1', 'EX', ttlSeconds, 'NX'),
    );
    return set === 'OK';
  }
}
