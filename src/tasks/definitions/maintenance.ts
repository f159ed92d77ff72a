import { Type } from 'typebox';
import { defineTask } from '../registry.js';

/** Recurring: declared with a cron schedule, upserted as a BullMQ job scheduler when workers start. */
export const maintenanceCleanup = defineTask({
  name: 'maintenance.cleanup',
  description: 'Recurring (hourly): delete outbox emails older than the retention',
  queue: 'default',
  payload: Type.Object(
    { olderThanDays: Type.Integer({ minimum: 1, maximum: 3650 }) },
    { additionalProperties: false },
  ),
  attempts: 3,
  backoffMs: 5000,
  schedule: { pattern: '0 * * * *', payload: { olderThanDays: 30 } },
  handler: async ({ olderThanDays }, context) => {
    const { rowCount } = await context
      .db()
      .query('DELETE FROM outbox_emails WHERE sent_at < now() - make_interval(days => $1)', [olderThanDays]);
    context.log.info({ deleted: rowCount }, 'outbox cleaned');
    return { deleted: rowCount ?? 0 };
  },
});
