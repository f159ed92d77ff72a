import type { FastifyReply } from 'fastify';

/**
 * The RateLimit-Policy and RateLimit fields of draft-ietf-httpapi-ratelimit-headers (-08 to -12): each a
 * Structured Field list (RFC 9651) of items named after a policy, `"api";q=100;w=60` (quota per window
 * in seconds) and `"api";r=50;t=30` (remaining, seconds until the window resets). @fastify/rate-limit
 * writes only the older X-RateLimit-* (or, with enableDraftSpec, drafts 00-06's RateLimit-Limit/-Remaining/
 * -Reset), so these are ours.
 */
export interface QuotaPolicy {
  /** Policy name: lowercase letters, digits and hyphens (it is written as an sf-string). */
  name: string;
  quota: number;
  windowSeconds: number;
}

/** Where a policy stands for one client now. */
export interface ServiceLimit {
  remaining: number;
  resetSeconds: number;
}

/** Non-negative integers only, as the draft's q, w, r and t are. */
const whole = (value: number, minimum = 0) =>
  Number.isFinite(value) ? Math.max(minimum, Math.ceil(value)) : minimum;

/** `"api";q=100;w=60`: the window is whole seconds, at least 1 (sub-second windows are not expressible). */
export function policyItem(policy: QuotaPolicy): string {
  return `"${policy.name}";q=${whole(policy.quota)};w=${whole(policy.windowSeconds, 1)}`;
}

/** `"api";r=50;t=30`. */
export function limitItem(policy: QuotaPolicy, limit: ServiceLimit): string {
  return `"${policy.name}";r=${whole(limit.remaining)};t=${whole(limit.resetSeconds)}`;
}

/** One more item in a list field: several policies can apply to one request (the /api and sign-in limits). */
function appendItem(reply: FastifyReply, field: string, item: string): void {
  const current = reply.getHeader(field);
  reply.header(field, current === undefined || current === '' ? item : `${String(current)}, ${item}`);
}

/** Say where `policy` stands for this request, beside any other policy already reported. */
export function addRateLimitFields(reply: FastifyReply, policy: QuotaPolicy, limit: ServiceLimit): void {
  appendItem(reply, 'ratelimit-policy', policyItem(policy));
  appendItem(reply, 'ratelimit', limitItem(policy, limit));
}
