/**
 * `make bench-tasks`: the task system against raw BullMQ, same Redis, same concurrency.
 *   1. end-to-end no-op jobs: TaskService.enqueue + the real worker process (dist/worker.js)
 *      vs Queue.addBulk + a plain BullMQ Worker in a child process;
 *   2. the enqueue endpoint's throughput (POST /api/tasks (system.noop) through app.inject);
 *   3. latency from enqueue to start with no load (p50, p99).
 * Throughput is measured BENCH_REPEATS times, rotating which side goes first, and compared by median
 * (scripts/repeat.ts) and by the median of the per-repeat ratios (each repeat runs every side within
 * seconds, so a drift in the machine's speed hits the sides of one repeat alike).
 * Settings: BENCH_JOBS (20000), BENCH_CONCURRENCY (50), BENCH_REPEATS (7), REDIS_URL (redis://127.0.0.1:6379).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { Queue, QueueEvents } from 'bullmq';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { buildApp } from '../src/app.js';
import { migrateUp } from '../src/db/migrate.js';
import { createProducerConnection } from '../src/redis/connection.js';
import { loadSettings } from '../src/settings.js';
import { systemNoop } from '../src/tasks/definitions/noop.js';
import { jobOptionsFor, retentionOf, TaskService } from '../src/tasks/service.js';
import { median, repeatsFromEnv, runRotated } from './repeat.js';
import { createScratchDatabase } from './scratch-database.js';

const root = resolve(import.meta.dirname, '..');
const jobs = Number(process.env.BENCH_JOBS ?? 20_000);
const concurrency = Number(process.env.BENCH_CONCURRENCY ?? 50);
const repeats = repeatsFromEnv(7);
const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

const serverUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
let databaseUrl = serverUrl;

/** A migrated database of this run's own (the enqueue route signs in: it needs the users table). */
async function createBenchDatabase(): Promise<() => Promise<void>> {
  const database = await createScratchDatabase(serverUrl, 'bench');
  databaseUrl = database.url;
  await migrateUp(databaseUrl, pino({ level: 'warn' }));
  return database.drop;
}

const BENCH_USER = { email: 'bench@example.com', password: randomBytes(12).toString('hex') };

function settingsFor(prefix: string) {
  return loadSettings(
    {
      NODE_ENV: 'production',
      LOG_LEVEL: 'warn',
      DATABASE_URL: databaseUrl,
      REDIS_URL: redisUrl,
      QUEUE_PREFIX: prefix,
      ENABLE_BACKGROUND_TASKS: 'true',
      TASK_CONCURRENCY: String(concurrency),
      TASK_WORKER_HEALTH_PORT: '0',
      // The enqueue endpoint is protected: this run signs in as a user it creates for itself.
      AUTH_SECRET: randomBytes(32).toString('hex'),
      FIRST_USER_EMAIL: BENCH_USER.email,
      FIRST_USER_PASSWORD: BENCH_USER.password,
    },
    { envFile: null, signsTokens: true },
  );
}

/** Every job added has been taken and finished (completed jobs are trimmed, so count what is left). */
async function waitForCompleted(queue: Queue): Promise<void> {
  for (;;) {
    // Not 'delayed': the recurring maintenance job always waits there for its next run.
    const counts = await queue.getJobCounts('waiting', 'prioritized', 'active');
    if (Object.values(counts).every((count) => count === 0)) return;
    await new Promise((done) => setTimeout(done, 20));
  }
}

/** CPU time (µs) a process has used so far, from /proc (Linux); undefined elsewhere. */
function cpuMicros(pid: number | undefined): number | undefined {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    // utime and stime, fields 14 and 15 of stat (11 and 12 after the command name), in clock ticks.
    return ((Number(fields[11]) + Number(fields[12])) * 1e6) / 100;
  } catch {
    return undefined;
  }
}

/** The worker process's CPU per job while the timed jobs ran, µs (NaN where /proc is not). */
const workerCpuPerJob: Record<'raw' | 'signal' | 'ours', number[]> = { raw: [], signal: [], ours: [] };

function envOf(settings: object): Record<string, string> {
  return Object.fromEntries(Object.entries(settings).map(([key, value]) => [key, String(value)]));
}

async function waitForHealth(url: string): Promise<void> {
  for (;;) {
    try {
      if ((await fetch(url)).ok) return;
    } catch {}
    await new Promise((done) => setTimeout(done, 50));
  }
}

async function cleanup(prefix: string): Promise<void> {
  const redis = new Redis(redisUrl);
  const keys = await redis.keys(`${prefix}:*`);
  for (let index = 0; index < keys.length; index += 1000) await redis.del(...keys.slice(index, index + 1000));
  redis.disconnect();
}

/** Ours: enqueue through TaskService (the API's path), process in the real worker process. */
async function throughputOurs(): Promise<number> {
  const prefix = `bench-ours-${randomBytes(3).toString('hex')}`;
  const settings = settingsFor(prefix);
  const connection = createProducerConnection({ kind: 'url', url: redisUrl });
  await new Promise((done) => connection.once('ready', done));
  const service = new TaskService(connection, prefix, retentionOf(settings));
  const probe = new Queue('default', { connection: new Redis(redisUrl), prefix });
  const healthPort = 3790;
  const worker = spawn(process.execPath, ['dist/worker.js'], {
    cwd: root,
    env: { ...process.env, ...envOf(settings), TASK_WORKER_HEALTH_PORT: String(healthPort) },
    stdio: 'ignore',
  });
  await waitForHealth(`http://127.0.0.1:${healthPort}/health/live`);
  const cpuBefore = cpuMicros(worker.pid);
  const started = performance.now();
  const batch = 500;
  for (let index = 0; index < jobs; index += batch) {
    await service.enqueueMany(
      'system.noop',
      Array.from({ length: Math.min(batch, jobs - index) }, () => ({})),
    );
  }
  await waitForCompleted(probe);
  const elapsed = (performance.now() - started) / 1000;
  workerCpuPerJob.ours.push(((cpuMicros(worker.pid) ?? Number.NaN) - (cpuBefore ?? Number.NaN)) / jobs);
  worker.kill('SIGTERM');
  await new Promise((done) => worker.once('exit', done));
  await service.close();
  connection.disconnect();
  await probe.close();
  await cleanup(prefix);
  return jobs / elapsed;
}

/** Raw BullMQ: Queue.addBulk and a plain Worker in a child process, nothing else. */
const rawOptions = jobOptionsFor(systemNoop, retentionOf(settingsFor('options')));

async function throughputRaw(processorTakesSignal = false): Promise<number> {
  const prefix = `bench-raw-${randomBytes(3).toString('hex')}`;
  const queue = new Queue('default', { connection: new Redis(redisUrl), prefix });
  const workerSource = `
    import { Worker } from 'bullmq';
    import { Redis } from 'ioredis';
    const worker = new Worker('default', ${processorTakesSignal ? 'async (_job, _token, _signal) => null' : 'async () => null'}, { connection: new Redis(process.env.REDIS_URL, { maxRetriesPerRequest: null }), prefix: process.env.PREFIX, concurrency: Number(process.env.CONCURRENCY) });
    worker.on('ready', () => console.log('ready'));
    process.on('SIGTERM', async () => { await worker.close(); process.exit(0); });`;
  const worker = spawn(process.execPath, ['--input-type=module', '-e', workerSource], {
    cwd: root,
    env: { ...process.env, REDIS_URL: redisUrl, PREFIX: prefix, CONCURRENCY: String(concurrency) },
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  await new Promise<void>((done) => worker.stdout?.once('data', () => done()));
  const cpuBefore = cpuMicros(worker.pid);
  const started = performance.now();
  const batch = 500;
  for (let index = 0; index < jobs; index += batch) {
    await queue.addBulk(
      Array.from({ length: Math.min(batch, jobs - index) }, () => ({
        name: 'noop',
        data: {},
        // The job options the task system gives system.noop (retention by age and count), so the
        // comparison measures our code, not different BullMQ settings.
        opts: rawOptions,
      })),
    );
  }
  await waitForCompleted(queue);
  const elapsed = (performance.now() - started) / 1000;
  workerCpuPerJob[processorTakesSignal ? 'signal' : 'raw'].push(
    ((cpuMicros(worker.pid) ?? Number.NaN) - (cpuBefore ?? Number.NaN)) / jobs,
  );
  worker.kill('SIGTERM');
  await new Promise((done) => worker.once('exit', done));
  await queue.close();
  await cleanup(prefix);
  return jobs / elapsed;
}

/** The HTTP enqueue path: validation, TaskService, Redis, in one process through app.inject. */
async function enqueueEndpoint(): Promise<number> {
  const prefix = `bench-http-${randomBytes(3).toString('hex')}`;
  const app = await buildApp(settingsFor(prefix), { logger: pino({ level: 'warn' }) });
  const count = Math.min(jobs, 5000);
  const token = await app.inject({
    method: 'POST',
    url: '/api/auth/token',
    payload: { grant_type: 'password', username: BENCH_USER.email, password: BENCH_USER.password },
  });
  const headers = { authorization: `Bearer ${token.json().access_token}` };
  const started = performance.now();
  for (let index = 0; index < count; index += 100) {
    await Promise.all(
      Array.from({ length: 100 }, () =>
        app.inject({
          method: 'POST',
          url: '/api/tasks',
          headers,
          payload: { name: 'system.noop', payload: {} },
        }),
      ),
    );
  }
  const rate = count / ((performance.now() - started) / 1000);
  await app.close();
  await cleanup(prefix);
  return rate;
}

/** Enqueue-to-start latency with an idle worker: one job at a time. */
async function startLatency(): Promise<{ p50: number; p99: number }> {
  const prefix = `bench-latency-${randomBytes(3).toString('hex')}`;
  const settings = settingsFor(prefix);
  const connection = createProducerConnection({ kind: 'url', url: redisUrl });
  await new Promise((done) => connection.once('ready', done));
  const service = new TaskService(connection, prefix, retentionOf(settings));
  const worker = spawn(process.execPath, ['dist/worker.js'], {
    cwd: root,
    env: { ...process.env, ...envOf(settings) },
    stdio: 'ignore',
  });
  const events = new QueueEvents('default', {
    connection: new Redis(redisUrl, { maxRetriesPerRequest: null }),
    prefix,
  });
  await events.waitUntilReady();
  await new Promise((done) => setTimeout(done, 1500)); // worker up
  const samples: number[] = [];
  // Listen before enqueueing: a job can start before `enqueue` even returns.
  const started = new Set<string>();
  events.on('active', ({ jobId }) => started.add(jobId));
  for (let index = 0; index < 200; index += 1) {
    const id = await service.enqueue('system.noop', {});
    const jobId = id.split('.')[1] as string;
    while (!started.has(jobId)) await new Promise((done) => setTimeout(done, 1));
    const status = await service.getStatus(id);
    const created = Date.parse(status?.timestamps.createdAt ?? '');
    const startedAt = Date.parse(status?.timestamps.startedAt ?? '');
    if (Number.isFinite(created) && Number.isFinite(startedAt)) samples.push(startedAt - created);
  }
  worker.kill('SIGTERM');
  await new Promise((done) => worker.once('exit', done));
  await events.close();
  await service.close();
  connection.disconnect();
  await cleanup(prefix);
  samples.sort((a, b) => a - b);
  const at = (q: number) =>
    samples[Math.min(samples.length - 1, Math.floor(q * samples.length))] ?? Number.NaN;
  return { p50: at(0.5), p99: at(0.99) };
}

const rawRuns: number[] = [];
const signalRuns: number[] = [];
const ourRuns: number[] = [];
await runRotated(repeats, [
  () => throughputRaw().then((rate) => rawRuns.push(rate)),
  () => throughputRaw(true).then((rate) => signalRuns.push(rate)),
  () => throughputOurs().then((rate) => ourRuns.push(rate)),
]);
const raw = median(rawRuns);
const rawWithSignal = median(signalRuns);
const ours = median(ourRuns);
const runs = (values: number[]) => values.map((value) => value.toFixed(0)).join(', ');
/** Ours against `base` repeat by repeat (each repeat runs every side within seconds): median and range. */
const pairedRatio = (base: number[]) => {
  const ratios = ourRuns.map((rate, index) => rate / (base[index] as number)).sort((a, b) => a - b);
  return `${median(ratios).toFixed(2)}x (${(ratios[0] as number).toFixed(2)}-${(ratios.at(-1) as number).toFixed(2)})`;
};
const dropBenchDatabase = await createBenchDatabase();
const endpoint = await enqueueEndpoint().finally(dropBenchDatabase);
const latency = await startLatency();
console.log(
  `${jobs} no-op jobs, concurrency ${concurrency}, ${repeats} repeats (median), Redis ${redisUrl}\n`,
);
console.log('| measure | value |');
console.log('| --- | --- |');
console.log(`| raw BullMQ (addBulk + Worker), jobs/s end to end | ${raw.toFixed(0)} (${runs(rawRuns)}) |`);
console.log(
  `| raw BullMQ, processor taking the AbortSignal (per-job AbortController, as cancellation needs) | ${rawWithSignal.toFixed(0)} (${runs(signalRuns)}) |`,
);
console.log(`| TaskService + worker process, jobs/s end to end | ${ours.toFixed(0)} (${runs(ourRuns)}) |`);
console.log(
  `| ratio ours / raw, median of per-repeat ratios (range) (target >= 0.97) | ${pairedRatio(rawRuns)} |`,
);
console.log(`| ratio ours / raw taking the signal, per repeat | ${pairedRatio(signalRuns)} |`);
console.log(`| ratio of the medians (ours / raw) | ${(ours / raw).toFixed(2)}x |`);
console.log(
  `| worker process CPU per job, µs (median): raw / raw taking the signal / ours | ${[workerCpuPerJob.raw, workerCpuPerJob.signal, workerCpuPerJob.ours].map((values) => median(values).toFixed(1)).join(' / ')} |`,
);
console.log(`| POST /api/tasks (system.noop), enqueues/s (one process, inject) | ${endpoint.toFixed(0)} |`);
console.log(`| enqueue to start, idle worker, p50 / p99 ms | ${latency.p50} / ${latency.p99} |`);
process.exit(0);
