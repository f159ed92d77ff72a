import { Type } from 'typebox';
import { defineTask } from '../registry.js';

/**
 * Recorded in the outbox with each new item (POST /api/items at LEVEL=4), so it runs exactly when
 * the item committed. Its effect, an audit row, is keyed by the job id (o-<outbox id>): a second
 * run of the same job, which at-least-once delivery allows, records nothing more.
 */
export const itemCreated = defineTask({
  name: 'items.created',
  description: 'Outbox only (POST /api/items): record the audit event of a new item, once',
  queue: 'default',
  payload: Type.Object(
    { itemId: Type.Integer({ minimum: 1 }), name: Type.String({ minLength: 1, maxLength: 200 }) },
    { additionalProperties: false },
  ),
  attempts: 10,
  backoffMs: 1000,
  timeoutMs: 30_000,
  handler: async ({ itemId, name }, context) => {
    const { rowCount } = await context
      .db()
      .query(
        "INSERT INTO item_events (job_id, item_id, kind, item_name) VALUES ($1, $2, 'created', $3) ON CONFLICT (job_id) DO NOTHING",
        [context.jobId, itemId, name],
      );
    return { itemId, recorded: rowCount === 1 };
  },
});
