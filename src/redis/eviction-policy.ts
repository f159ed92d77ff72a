/**
 * Redis's `maxmemory-policy`: anything but `noeviction` lets Redis delete BullMQ's keys under memory
 * pressure, which silently loses jobs (BullMQ's most reported data-loss cause). Read at start and
 * in readiness; the decision is pure.
 */
import type { Redis } from 'ioredis';

export const SAFE_POLICY = 'noeviction';

/** The policy, from CONFIG GET or, where managed Redis disables CONFIG, from INFO memory. */
export async function readEvictionPolicy(client: Redis): Promise<string | undefined> {
  try {
    const reply = (await client.call('CONFIG', 'GET', 'maxmemory-policy')) as string[];
    if (reply[1]) return reply[1];
  } catch {}
  const info = await client.info('memory');
  return /^maxmemory_policy:(\S+)/m.exec(info)?.[1];
}

export type EvictionVerdict = 'safe' | 'warn' | 'refuse';

/** For a task worker: refused in production unless REDIS_ALLOW_EVICTION; a warning otherwise. */
export function evictionVerdict(
  policy: string | undefined,
  options: { production: boolean; allowEviction: boolean },
): EvictionVerdict {
  if (policy === undefined || policy === SAFE_POLICY) return 'safe';
  return options.production && !options.allowEviction ? 'refuse' : 'warn';
}

export function evictionWarning(policy: string): string {
  return `Redis maxmemory-policy is ${policy}: under memory pressure Redis deletes keys and BullMQ jobs are lost; set maxmemory-policy ${SAFE_POLICY}`;
}
