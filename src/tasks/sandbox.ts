/**
 * Processor file for the `cpu` queue: BullMQ runs it in worker threads (useWorkerThreads), so a
 * long computation never blocks the worker's event loop and lock renewal keeps going.
 */
import type { SandboxedJob } from 'bullmq';
import { pino } from 'pino';
import { createPool } from '../db/pool.js';
import { cancelSourceOf, lazyPool, runJob } from './processor.js';

const log = pino({ level: process.env.LOG_LEVEL ?? 'info', base: { pid: process.pid, thread: 'sandbox' } });
const db = lazyPool(() =>
  createPool(
    {
      connectionString: process.env.DATABASE_URL ?? '',
      size: 2,
      connectTimeoutMs: 2000,
    },
    log,
  ),
);

export default function processCpuJob(
  job: SandboxedJob,
  _token?: string,
  signal?: AbortSignal,
): Promise<unknown> {
  return runJob(job, cancelSourceOf(signal), { log, db });
}
