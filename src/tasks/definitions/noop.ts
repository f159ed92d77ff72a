import { Type } from 'typebox';
import { defineTask } from '../registry.js';

/** Does nothing: measures the task system's own cost (make bench-tasks) and smoke-tests a deployment. */
export const systemNoop = defineTask({
  name: 'system.noop',
  description: 'Does nothing; for benchmarks and smoke tests',
  queue: 'default',
  payload: Type.Object({}, { additionalProperties: false }),
  attempts: 1,
  handler: async () => null,
});
