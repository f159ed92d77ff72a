/**
 * TRUST_PROXY: which peers may tell the app the client's address (X-Forwarded-For) and scheme
 * (X-Forwarded-Proto, -Host). The same forms as Fastify's `trustProxy`: true/false, a hop count, or a
 * comma-separated list of addresses and CIDR ranges.
 */
import { isIP } from 'node:net';

/** The parsed setting: trust every peer, none, the nearest N hops, or the peers in these ranges. */
export type TrustProxy =
  | { kind: 'all' }
  | { kind: 'none' }
  | { kind: 'hops'; hops: number }
  | { kind: 'addresses'; entries: string[] };

/** The names proxy-addr (Fastify's resolver) expands itself: 127.0.0.0/8 and ::1, 169.254.0.0/16 and fe80::/10, and the private ranges with fc00::/7. */
const NAMED_RANGES: ReadonlySet<string> = new Set(['loopback', 'linklocal', 'uniquelocal']);

export const TRUST_PROXY_EXPECTED =
  'true, false, a hop count such as 1, or comma-separated addresses and CIDR ranges such as 10.0.0.0/8,172.16.0.0/12,192.168.0.0/16';

/** Why one list entry is not an address, a CIDR range or a named range; undefined when it is. */
function entryProblem(entry: string): string | undefined {
  if (entry === '') return 'has an empty entry';
  if (NAMED_RANGES.has(entry)) return undefined;
  const slash = entry.indexOf('/');
  const address = slash === -1 ? entry : entry.slice(0, slash);
  const family = isIP(address);
  if (family === 0) return `has "${entry}", which is not an IP address or CIDR range`;
  if (slash === -1) return undefined;
  const prefix = entry.slice(slash + 1);
  const bits = family === 4 ? 32 : 128;
  if (!/^\d{1,3}$/.test(prefix) || Number(prefix) > bits)
    return `has "${entry}", whose prefix length is not 0-${bits}`;
  return undefined;
}

/** Parse TRUST_PROXY; a string is the reason it is refused. */
export function parseTrustProxy(raw: string): TrustProxy | string {
  const value = raw.trim();
  if (value === 'true') return { kind: 'all' };
  if (value === 'false') return { kind: 'none' };
  if (/^\d+$/.test(value)) {
    const hops = Number(value);
    if (!Number.isSafeInteger(hops)) return 'is not a usable hop count';
    return hops === 0 ? { kind: 'none' } : { kind: 'hops', hops };
  }
  const entries = value.split(',').map((entry) => entry.trim());
  for (const entry of entries) {
    const problem = entryProblem(entry);
    if (problem) return problem;
  }
  return { kind: 'addresses', entries };
}

/**
 * The value for Fastify's `trustProxy`. A hop count becomes a function: Fastify 5 treats a bare number
 * as "trust nothing" (a count cannot tell a proxy from a client that reaches the app directly), so
 * the count is honoured here explicitly, for apps that only a proxy can reach.
 */
export function fastifyTrustProxy(
  trust: TrustProxy,
): boolean | string[] | ((address: string, hop: number) => boolean) {
  switch (trust.kind) {
    case 'all':
      return true;
    case 'none':
      return false;
    case 'hops':
      return (_address, hop) => hop < trust.hops;
    case 'addresses':
      return trust.entries;
  }
}
