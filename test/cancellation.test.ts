import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { RunningJobs } from '../src/tasks/cancellation.js';
import { runJob } from '../src/tasks/processor.js';

describe('cancelling the jobs a worker process runs', () => {
  it('aborts the signal of a running job, made before or after the cancel', () => {
    const running = new RunningJobs();
    const readFirst = running.start('1');
    const signal = readFirst.signal();
    expect(signal.aborted).toBe(false);
    expect(running.cancel('1', 'cancelled through the API')).toBe(true);
    expect([signal.aborted, signal.reason, readFirst.cancelled]).toEqual([
      true,
      'cancelled through the API',
      true,
    ]);

    const readLater = running.start('2');
    expect(running.cancel('2', 'stop')).toBe(true);
    expect(readLater.signal().aborted).toBe(true);
  });

  it('cancels nothing that does not run here, or no longer runs', () => {
    const running = new RunningJobs();
    expect(running.cancel('unknown', 'stop')).toBe(false);
    const job = running.start('3');
    job.finish();
    expect(running.cancel('3', 'stop')).toBe(false);
    expect(job.cancelled).toBe(false);
  });
});

describe('runJob and the running jobs', () => {
  it('forgets a job however its run ends: done, failed, unknown task, invalid payload', async () => {
    const running = new RunningJobs();
    const deps = { log: pino({ level: 'silent' }), db: () => undefined as never };
    const run = (name: string, data: unknown, id: string) =>
      runJob({ id, name, data, attemptsMade: 0, updateProgress: async () => {} }, running.start(id), deps);
    await run('system.noop', {}, 'done');
    await expect(run('no.such.task', {}, 'unknown')).rejects.toThrow('unknown task');
    await expect(run('system.noop', { extra: 1 }, 'invalid')).rejects.toThrow('invalid payload');
    for (const id of ['done', 'unknown', 'invalid']) expect(running.cancel(id, 'stop')).toBe(false);
  });
});
