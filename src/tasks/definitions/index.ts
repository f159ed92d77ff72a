import type { TaskDefinition } from '../registry.js';
import { emailSend } from './email.js';
import { itemCreated } from './items.js';
import { maintenanceCleanup } from './maintenance.js';
import { systemNoop } from './noop.js';
import { reportGenerate } from './report.js';

/** Every task clients may enqueue through POST /api/tasks. Add yours here. */
export const TASKS: readonly TaskDefinition[] = [
  reportGenerate,
  emailSend,
  maintenanceCleanup,
  systemNoop,
] as TaskDefinition[];

/**
 * Tasks only the service records, in the transaction of its own write (the outbox): not in
 * POST /api/tasks, so no client can forge one (an audit event for an item it did not create).
 */
export const OUTBOX_TASKS: readonly TaskDefinition[] = [itemCreated] as TaskDefinition[];

/** Every task a worker runs and the status route names. */
export const tasksByName: ReadonlyMap<string, TaskDefinition> = new Map(
  [...TASKS, ...OUTBOX_TASKS].map((task) => [task.name, task]),
);
