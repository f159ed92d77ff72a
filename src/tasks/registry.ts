import type pg from 'pg';
import type { Logger } from 'pino';
import type { Static, TSchema } from 'typebox';
import Compile, { type Validator } from 'typebox/compile';
import type { FieldError } from '../plugins/problem.js';
import type { QueueName } from './queues.js';

/** What a handler gets besides its payload. */
export interface TaskContext {
  jobId: string;
  /** 1 for the first try, 2 for the first retry, ... */
  attempt: number;
  log: Logger;
  /** Fires when the job is cancelled through the API or runs past its timeout. */
  signal: AbortSignal;
  /** Report progress (0-100); visible through GET /api/tasks/{id} and the dashboard. */
  progress(percent: number): Promise<void>;
  /** PostgreSQL pool of this worker process (created on first use). */
  db(): pg.Pool;
}

export interface TaskDefinition<Payload extends TSchema = TSchema> {
  name: string;
  description: string;
  /** `cpu` runs in worker threads (sandboxed) so a long computation never starves lock renewal. */
  queue: QueueName;
  payload: Payload;
  handler: (payload: Static<Payload>, context: TaskContext) => Promise<unknown>;
  /** Tries in all (1 = no retry). */
  attempts?: number;
  /** First retry delay; later ones grow exponentially, with jitter. */
  backoffMs?: number;
  /** 1 (highest) .. 2097151 (2^21 - 1, the BullMQ maximum). */
  priority?: number;
  /** Abort the handler (signal fires) and fail the attempt after this long. */
  timeoutMs?: number;
  /** Recurring schedule (BullMQ job scheduler): a cron pattern and the payload each run gets. */
  schedule?: { pattern: string; payload: Static<Payload> };
}

export function defineTask<Payload extends TSchema>(
  definition: TaskDefinition<Payload>,
): TaskDefinition<Payload> {
  return definition;
}

const validators = new WeakMap<TaskDefinition, Validator>();

/** The task's payload schema compiled once (a job is checked on enqueue and again in the worker). */
function validatorOf(definition: TaskDefinition): Validator {
  let validator = validators.get(definition);
  if (!validator) {
    validator = Compile(definition.payload);
    validators.set(definition, validator);
  }
  return validator;
}

/** Validate a payload against the task's schema; field errors in the same shape as request errors. */
export function payloadErrors(definition: TaskDefinition, payload: unknown): FieldError[] {
  const validator = validatorOf(definition);
  if (validator.Check(payload)) return [];
  return validator.Errors(payload).map((error) => {
    const params = error.params as Record<string, unknown>;
    const base = error.instancePath.replace(/^\//, '');
    const child = params.requiredProperties ?? params.missingProperty ?? params.additionalProperties;
    const childName = Array.isArray(child) ? child.join(',') : typeof child === 'string' ? child : '';
    const field = ['payload', base, childName].filter(Boolean).join('/');
    return { field, message: error.message, in: 'body' };
  });
}
