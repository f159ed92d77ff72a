import { createHash } from 'node:crypto';

// Pure parts of Idempotency-Key (draft-ietf-httpapi-idempotency-key-header): parsing the header,
// the request fingerprint, and what a request holding a key does given what the store has for it.
// No I/O here, so every transition is unit-tested (test/idempotency-decision.test.ts).

/** Longest key accepted, in characters between the quotes (an escape counts as written). */
export const MAX_KEY_LENGTH = 255;

export type ParsedKey = { ok: true; key: string } | { ok: false; reason: string };

/**
 * The header as an RFC 9651 Item whose bare item is a String (sf-string): `"8e03978e-..."`, printable
 * ASCII, `\"` and `\\` the only escapes. Parameters are not accepted; a repeated field line arrives
 * joined by Node as `"a", "b"` and is refused as more than one value.
 */
export function parseIdempotencyKey(value: string): ParsedKey {
  const text = value.trim();
  if (text.length === 0) return { ok: false, reason: 'is empty' };
  if (text[0] !== '"') return { ok: false, reason: 'must be a quoted string (sf-string), e.g. "8e03978e-…"' };
  if (text.length > MAX_KEY_LENGTH + 2)
    return { ok: false, reason: `is longer than ${MAX_KEY_LENGTH} characters` };
  let key = '';
  for (let index = 1; index < text.length; index += 1) {
    const char = text[index] as string;
    const code = text.charCodeAt(index);
    if (char === '\\') {
      const next = text[index + 1];
      if (next !== '"' && next !== '\\') return { ok: false, reason: 'has an escape other than \\" or \\\\' };
      key += next;
      index += 1;
    } else if (char === '"') {
      if (index !== text.length - 1)
        return { ok: false, reason: 'must be one quoted string, without parameters or a second value' };
      if (key.length === 0) return { ok: false, reason: 'is an empty string' };
      return { ok: true, key };
    } else if (code < 0x20 || code > 0x7e) {
      return { ok: false, reason: 'may hold printable ASCII characters only' };
    } else key += char;
  }
  return { ok: false, reason: 'has no closing quote' };
}

/** JSON with object keys sorted, so the same payload fingerprints the same however it was written. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, child]) => child !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([key, child]) => `${JSON.stringify(key)}:${canonicalJson(child)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/** What "the same request" means: method, URL (path and query) and the parsed body. */
export function fingerprint(method: string, url: string, body: unknown): string {
  return createHash('sha256')
    .update(`${method}\n${url}\n${body === undefined ? '' : canonicalJson(body)}`)
    .digest('base64url');
}

export interface StoredResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/** A key's row as the store has it, with the database's clock (one clock for every replica). */
export interface KeyRecord {
  fingerprint: string;
  /** The attempt that wrote the row last; a takeover must still see it (compare-and-set). */
  claim: string;
  claimedAt: Date;
  expiresAt: Date;
  /** Undefined while the first request is in flight. */
  response: StoredResponse | undefined;
  now: Date;
}

export type Decision =
  | { kind: 'new' }
  | { kind: 'replace'; previous: string }
  | { kind: 'takeover'; previous: string }
  | { kind: 'replay'; response: StoredResponse }
  | { kind: 'mismatch' }
  | { kind: 'in-flight'; retryAfterSeconds: number };

/** Longest Retry-After of a 409: the first request usually ends in milliseconds. */
const MAX_RETRY_AFTER_SECONDS = 5;

/**
 * new: no row. replace: the row expired (the key is free again, whatever it held). mismatch: another
 * payload under this key. replay: the first request finished. in-flight: it has not, within its lease.
 * takeover: it has not and its lease is over (its process died or it outran the lease): run again.
 */
export function decide(record: KeyRecord | undefined, requestFingerprint: string, leaseMs: number): Decision {
  if (!record) return { kind: 'new' };
  const now = record.now.getTime();
  if (record.expiresAt.getTime() <= now) return { kind: 'replace', previous: record.claim };
  if (record.fingerprint !== requestFingerprint) return { kind: 'mismatch' };
  if (record.response) return { kind: 'replay', response: record.response };
  const leftMs = record.claimedAt.getTime() + leaseMs - now;
  if (leftMs > 0)
    return {
      kind: 'in-flight',
      retryAfterSeconds: Math.min(MAX_RETRY_AFTER_SECONDS, Math.max(1, Math.ceil(leftMs / 1000))),
    };
  return { kind: 'takeover', previous: record.claim };
}

/**
 * Which answers are kept and replayed. 5xx: no (the operation may not have happened; the claim is
 * released so a retry runs it). 408, 409, 425, 429 say "try again": no. Any other 2xx-4xx is the
 * operation's outcome (the draft: replay "success or an error"): yes. Refusals before the handler
 * (validation, sign-in, body, rate limit) never reach the store at all.
 */
export function keepsResponse(status: number): boolean {
  return status < 500 && ![408, 409, 425, 429].includes(status);
}

/** Response headers that belong to the answer itself; per-request ones (ids, limits, security) are not kept. */
export const KEPT_HEADERS = [
  'content-type',
  'content-language',
  'location',
  'content-location',
  'etag',
  'last-modified',
  'link',
  'cache-control',
] as const;
