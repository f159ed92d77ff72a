/**
 * The BullMQ queues this service uses. Deployment templates (KEDA triggers on `<prefix>:<queue>:wait`)
 * and tests read these names, so they are declared once, here.
 */
export const QUEUE_NAMES = ['default', 'cpu'] as const;
export type QueueName = (typeof QUEUE_NAMES)[number];

/** BullMQ's key prefix unless QUEUE_PREFIX says otherwise (use a hash tag such as {bull} on Redis Cluster). */
export const DEFAULT_QUEUE_PREFIX = 'bull';

const PUBLIC_ID = /^([a-z]+)\.([A-Za-z0-9_-]{1,100})$/;

/** `default.42`: the queue travels with the id, so status and cancel need one lookup. */
export function parseTaskId(id: string): { queue: QueueName; jobId: string } | undefined {
  const match = PUBLIC_ID.exec(id);
  if (!match || !(QUEUE_NAMES as readonly string[]).includes(match[1] as string)) return undefined;
  return { queue: match[1] as QueueName, jobId: match[2] as string };
}
