import { setTimeout } from 'node:timers/promises';
import { Type } from 'typebox';
import { defineTask } from '../registry.js';

/**
 * I/O-bound and idempotent: "sends" by writing to the outbox table, keyed by an idempotency key,
 * so a retry or a duplicate job never sends twice. Swap the INSERT for your mail provider's call
 * (passing the same key as its idempotency key).
 */
export const emailSend = defineTask({
  name: 'email.send',
  description: 'I/O: send an email (to the outbox table), idempotent, retried with backoff',
  queue: 'default',
  payload: Type.Object(
    {
      to: Type.String({ format: 'email', maxLength: 320 }),
      subject: Type.String({ minLength: 1, maxLength: 200 }),
      body: Type.String({ maxLength: 100_000 }),
      /** Key that makes the send happen once; defaults to the job id. */
      messageId: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
      /** Demo and tests: the provider's response time. */
      latencyMs: Type.Optional(Type.Integer({ minimum: 0, maximum: 10_000 })),
      /** Demo and tests: fail the first N attempts, as a flaky mail provider would. */
      failFirstAttempts: Type.Optional(Type.Integer({ minimum: 0, maximum: 10 })),
    },
    { additionalProperties: false },
  ),
  attempts: 5,
  backoffMs: 1000,
  timeoutMs: 30_000,
  handler: async (payload, context) => {
    if (context.attempt <= (payload.failFirstAttempts ?? 0)) {
      throw new Error(`mail provider unavailable (simulated failure ${context.attempt})`);
    }
    if (payload.latencyMs) await setTimeout(payload.latencyMs, undefined, { signal: context.signal });
    const key = payload.messageId ?? context.jobId;
    const { rowCount } = await context
      .db()
      .query(
        'INSERT INTO outbox_emails (idempotency_key, recipient, subject, body) VALUES ($1, $2, $3, $4) ON CONFLICT (idempotency_key) DO NOTHING',
        [key, payload.to, payload.subject, payload.body],
      );
    // One line per send: with tracing on it carries the trace_id of the request that enqueued it.
    context.log.info({ messageId: key, sent: rowCount === 1 }, 'email written to the outbox');
    return { messageId: key, sent: rowCount === 1 };
  },
});
