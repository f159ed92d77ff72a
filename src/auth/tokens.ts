import { createHash, randomUUID } from 'node:crypto';
import { errors, type JWTPayload, jwtVerify, SignJWT } from 'jose';

/** Used when AUTH_SECRET is empty outside production (settings refuse that in production). */
export const DEVELOPMENT_SECRET = 'node-levels-starter development signing key: never use in production';

export type TokenKind = 'access' | 'refresh';

export interface TokenClaims {
  /** User id. */
  sub: string;
  /** Sign-in session: logout revokes it, and with it every token it issued. */
  sid: string;
  /** Token id: a refresh token is accepted once (rotation). */
  jti: string;
  typ: TokenKind;
  exp: number;
}

/** What a token is issued for. */
export interface TokenGrant {
  userId: string;
  sessionId: string;
  /** The token id (a refresh token's is its session's current one); random when absent. */
  tokenId?: string;
  /** Unix seconds the token may not outlive. */
  notAfter: number;
}

interface SigningKey {
  id: string;
  key: Uint8Array;
}

const keyOf = (secret: string): SigningKey => ({
  // The key id names the key without revealing it, so a verifier picks the right one.
  id: createHash('sha256').update(secret).digest('hex').slice(0, 16),
  key: new TextEncoder().encode(secret),
});

export class TokenError extends Error {
  constructor(readonly reason: 'expired' | 'invalid' | 'wrong_kind') {
    super(reason === 'expired' ? 'The token has expired' : 'The token is not valid');
    this.name = 'TokenError';
  }
}

/**
 * Signs with the current key (HS256) and verifies with the current or the previous one, so a key can
 * rotate without signing everyone out: set AUTH_PREVIOUS_SECRET to the old key, AUTH_SECRET to the
 * new, and drop the old one after AUTH_REFRESH_TOKEN_TTL.
 */
export class TokenSigner {
  private readonly current: SigningKey;
  private readonly accepted: Map<string, SigningKey>;

  constructor(secret: string, previousSecret = '') {
    this.current = keyOf(secret || DEVELOPMENT_SECRET);
    const keys = [this.current, ...(previousSecret ? [keyOf(previousSecret)] : [])];
    this.accepted = new Map(keys.map((key) => [key.id, key]));
  }

  /** A token that expires after `ttlSeconds`, never after `notAfter` (the session's absolute end). */
  async sign(kind: TokenKind, grant: TokenGrant, ttlSeconds: number): Promise<string> {
    const expiresAt = Math.min(Math.floor(Date.now() / 1000) + ttlSeconds, grant.notAfter);
    return new SignJWT({ sid: grant.sessionId, typ: kind })
      .setProtectedHeader({ alg: 'HS256', kid: this.current.id, typ: 'JWT' })
      .setSubject(grant.userId)
      .setJti(grant.tokenId ?? randomUUID())
      .setIssuedAt()
      .setExpirationTime(expiresAt)
      .sign(this.current.key);
  }

  async verify(token: string, kind: TokenKind): Promise<TokenClaims> {
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, (header) => this.keyFor(header.kid), { algorithms: ['HS256'] }));
    } catch (error) {
      throw new TokenError(error instanceof errors.JWTExpired ? 'expired' : 'invalid');
    }
    const { sub, sid, jti, typ, exp } = payload as Partial<TokenClaims>;
    if (!sub || typeof sid !== 'string' || !jti || typeof exp !== 'number') throw new TokenError('invalid');
    if (typ !== kind) throw new TokenError('wrong_kind');
    return { sub, sid, jti, typ, exp };
  }

  private keyFor(kid: string | undefined): Uint8Array {
    const key = kid ? this.accepted.get(kid) : undefined;
    if (!key) throw new TokenError('invalid');
    return key.key;
  }
}
