import type { TaskDefinition } from '../registry.js';
import { emailSend } from './email.js';
import { maintenanceCleanup } from './maintenance.js';
import { systemNoop } from './noop.js';
import { reportGenerate } from './report.js';

/** Every task this service knows. Add yours here. */
export const TASKS: readonly TaskDefinition[] = [
  reportGenerate,
  emailSend,
  maintenanceCleanup,
  systemNoop,
] as TaskDefinition[];

export const tasksByName: ReadonlyMap<string, TaskDefinition> = new Map(
  TASKS.map((task) => [task.name, task]),
);
