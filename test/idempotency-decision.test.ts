import { describe, expect, it } from 'vitest';
import {
  canonicalJson,
  decide,
  fingerprint,
  type KeyRecord,
  keepsResponse,
  parseIdempotencyKey,
} from '../src/plugins/idempotency-decision.js';

// The pure half of Idempotency-Key: the header's syntax, what "the same request" is, and every state
// transition, without a database (test/idempotency.test.ts and idempotency-replicas.test.ts do the I/O).

describe('parseIdempotencyKey: an RFC 9651 sf-string, nothing else', () => {
  it.each([
    ['"8e03978e-40d5-43e8-bc93-6894a57f9324"', '8e03978e-40d5-43e8-bc93-6894a57f9324'],
    ['  "spaced"  ', 'spaced'],
    ['"a b!#~"', 'a b!#~'],
    [String.raw`"say \"hi\" \\ bye"`, String.raw`say "hi" \ bye`],
    [`"${'k'.repeat(255)}"`, 'k'.repeat(255)],
  ])('accepts %s', (header, key) => {
    expect(parseIdempotencyKey(header)).toEqual({ ok: true, key });
  });

  it.each([
    ['', /empty/],
    ['8e03978e', /quoted string/],
    ['"unterminated', /closing quote/],
    ['""', /empty string/],
    ['"a", "b"', /one quoted string/],
    ['"a";p=1', /without parameters/],
    [String.raw`"bad \n escape"`, /escape/],
    ['"tab\there"', /printable ASCII/],
    ['"é"', /printable ASCII/],
    ['"nul\u0000"', /printable ASCII/],
    [`"${'k'.repeat(256)}"`, /longer than 255/],
    [`"${'k'.repeat(100_000)}`, /longer than 255/],
  ])('refuses %j', (header, reason) => {
    const parsed = parseIdempotencyKey(header);
    expect(parsed.ok).toBe(false);
    expect(parsed.ok ? '' : parsed.reason).toMatch(reason);
  });
});

describe('fingerprint: method, URL and body, however the JSON was written', () => {
  it('ignores key order and whitespace, not values', () => {
    const a = fingerprint('POST', '/api/items', JSON.parse('{"name":"a","description":null}'));
    const b = fingerprint('POST', '/api/items', JSON.parse('{ "description": null, "name": "a" }'));
    expect(a).toBe(b);
    expect(fingerprint('POST', '/api/items', { name: 'b', description: null })).not.toBe(a);
    expect(fingerprint('PATCH', '/api/items', { name: 'a', description: null })).not.toBe(a);
    expect(fingerprint('POST', '/api/items?x=1', { name: 'a', description: null })).not.toBe(a);
    expect(fingerprint('POST', '/api/items', undefined)).not.toBe(fingerprint('POST', '/api/items', null));
  });

  it('writes canonical JSON for nested objects and arrays', () => {
    expect(canonicalJson({ b: [{ d: 1, c: 2 }], a: 'x', skip: undefined })).toBe(
      '{"a":"x","b":[{"c":2,"d":1}]}',
    );
  });
});

describe('decide: the state machine of a key', () => {
  const now = new Date('2026-12-01T12:00:00Z');
  const at = (secondsFromNow: number) => new Date(now.getTime() + secondsFromNow * 1000);
  const LEASE_MS = 60_000;
  const response = { status: 201, headers: { location: '/api/items/1' }, body: Buffer.from('{}') };
  const record = (overrides: Partial<KeyRecord> = {}): KeyRecord => ({
    fingerprint: 'same',
    claim: 'claim-1',
    claimedAt: at(-1),
    expiresAt: at(3600),
    response: undefined,
    now,
    ...overrides,
  });

  it('new: the store has nothing for the key', () => {
    expect(decide(undefined, 'same', LEASE_MS)).toEqual({ kind: 'new' });
  });

  it('replay: the first request finished, same payload', () => {
    expect(decide(record({ response }), 'same', LEASE_MS)).toEqual({ kind: 'replay', response });
  });

  it('mismatch: another payload, whether the first finished or not', () => {
    expect(decide(record({ response }), 'other', LEASE_MS)).toEqual({ kind: 'mismatch' });
    expect(decide(record(), 'other', LEASE_MS)).toEqual({ kind: 'mismatch' });
  });

  it('in-flight: not finished within its lease, with a short Retry-After', () => {
    expect(decide(record({ claimedAt: at(-1) }), 'same', LEASE_MS)).toEqual({
      kind: 'in-flight',
      retryAfterSeconds: 5,
    });
    expect(decide(record({ claimedAt: at(-58.5) }), 'same', LEASE_MS)).toEqual({
      kind: 'in-flight',
      retryAfterSeconds: 2,
    });
  });

  it('takeover: not finished and its lease is over (its process died)', () => {
    expect(decide(record({ claimedAt: at(-60) }), 'same', LEASE_MS)).toEqual({
      kind: 'takeover',
      previous: 'claim-1',
    });
  });

  it('replace: an expired key is free again, whatever it held', () => {
    for (const expired of [
      record({ response, expiresAt: now }),
      record({ fingerprint: 'x', expiresAt: at(-1) }),
    ])
      expect(decide(expired, 'same', LEASE_MS)).toEqual({ kind: 'replace', previous: 'claim-1' });
  });
});

describe('keepsResponse: which answers are the outcome of the operation', () => {
  it('keeps 2xx and 4xx outcomes; releases 5xx and the "try again" statuses', () => {
    expect([200, 201, 202, 204, 400, 403, 404, 422].every(keepsResponse)).toBe(true);
    expect([408, 409, 425, 429, 500, 502, 503, 504].some(keepsResponse)).toBe(false);
  });
});
