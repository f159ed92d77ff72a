/**
 * The BullMQ queues this service uses. Deployment templates (KEDA triggers on `<prefix>:<queue>:wait`)
 * and tests read these names, so they are declared once, here.
 */
export const QUEUE_NAMES = ['default', 'cpu'] as const;
export type QueueName = (typeof QUEUE_NAMES)[number];

/** BullMQ's key prefix unless QUEUE_PREFIX says otherwise (use a hash tag such as {bull} on Redis Cluster). */
export const DEFAULT_QUEUE_PREFIX = 'bull';
