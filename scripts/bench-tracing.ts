/**
 * `make bench-tracing`: what tracing costs on the request path, side by side in one run. The same
 * LEVEL=1 server (GET /api/items?limit=10, one PostgreSQL query per request) with tracing off and
 * with tracing on at 100 % sampling, exporting http/protobuf to a local OTLP sink that accepts and
 * discards (a real collector runs elsewhere; decoding here would bill its CPU to the app).
 * Settings: BENCH_DURATION (s, 10), BENCH_CONNECTIONS (50), BENCH_REPEATS (3, rotated; median run
 * reported; also the server's CPU time per request, steadier on a shared machine), DATABASE_URL (default: the local PostgreSQL on 5432; a scratch database is made in it).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import autocannon from 'autocannon';
import pg from 'pg';
import { pino } from 'pino';
import { migrateUp } from '../src/db/migrate.js';
import { medianRun, repeatsFromEnv, runRotated } from './repeat.js';

const root = resolve(import.meta.dirname, '..');
const duration = Number(process.env.BENCH_DURATION ?? 10);
const connections = Number(process.env.BENCH_CONNECTIONS ?? 50);
const repeats = repeatsFromEnv(3);
const adminUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const path = '/api/items?limit=10';

interface Run {
  requestsPerSecond: number;
  p99Ms: number;
  errors: number;
  /** Server CPU time per request (user + system): steadier than req/s on a machine that is shared. */
  cpuMsPerRequest: number;
}

/** CPU time a process has used so far (Linux /proc; NaN elsewhere), in ms. */
function cpuMs(pid: number | undefined): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // utime + stime, in clock ticks (100/s)
  } catch {
    return Number.NaN;
  }
}

/** OTLP endpoint that reads each batch, counts it and answers success. */
async function startSink(): Promise<{ url: string; batches: () => number; close: () => void }> {
  let batches = 0;
  const server = createServer((request, response) => {
    request.resume();
    request.on('end', () => {
      batches += 1;
      response.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  return { url: `http://127.0.0.1:${port}`, batches: () => batches, close: () => server.close() };
}

async function scratchDatabase(): Promise<{ url: string; drop: () => Promise<void> }> {
  const name = `bench_tracing_${randomBytes(3).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  await migrateUp(url.toString(), pino({ level: 'warn' }));
  return {
    url: url.toString(),
    drop: async () => {
      const client = new pg.Client({ connectionString: adminUrl });
      await client.connect();
      await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await client.end();
    },
  };
}

async function measure(databaseUrl: string, port: number, env: Record<string, string>): Promise<Run> {
  const child = spawn(process.execPath, ['dist/main.js'], {
    cwd: root,
    env: {
      PATH: process.env.PATH ?? '',
      NODE_ENV: 'production',
      LOG_LEVEL: 'warn',
      LEVEL: '1',
      HOST: '127.0.0.1',
      PORT: String(port),
      DATABASE_URL: databaseUrl,
      // Production refuses to start without a strong signing secret.
      AUTH_SECRET: randomBytes(48).toString('base64'),
      LOAD_SHED_MAX_EVENT_LOOP_DELAY_MS: '0',
      ...env,
    },
    stdio: 'ignore',
  });
  try {
    const base = `http://127.0.0.1:${port}`;
    for (let ready = false; !ready; await sleep(50)) {
      ready = await fetch(`${base}/health/ready`).then(
        (response) => response.ok,
        () => false,
      );
    }
    await autocannon({ url: `${base}${path}`, connections, duration: 2 }); // warm-up
    const cpuBefore = cpuMs(child.pid);
    const result = await autocannon({ url: `${base}${path}`, connections, duration });
    return {
      requestsPerSecond: result.requests.average,
      p99Ms: result.latency.p99,
      errors: result.errors + result.non2xx + result.timeouts,
      cpuMsPerRequest: (cpuMs(child.pid) - cpuBefore) / result.requests.total,
    };
  } finally {
    child.kill('SIGTERM');
    await once(child, 'exit');
  }
}

const sink = await startSink();
const database = await scratchDatabase();
try {
  const sides: Record<string, { env: Record<string, string>; runs: Run[] }> = {
    'tracing off': { env: {}, runs: [] },
    'tracing on, 100 %': {
      env: { OTEL_EXPORTER_OTLP_ENDPOINT: sink.url, OTEL_TRACES_SAMPLER: 'always_on' },
      runs: [],
    },
  };
  const probe = createServer().listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const port = Number(process.env.BENCH_PORT ?? (probe.address() as { port: number }).port);
  probe.close();
  await runRotated(
    repeats,
    Object.values(sides).map((side) => async () => {
      side.runs.push(await measure(database.url, port, side.env));
    }),
  );
  const off = medianRun(sides['tracing off']?.runs ?? [], (run) => run.requestsPerSecond);
  const offCpu = medianRun(sides['tracing off']?.runs ?? [], (run) => run.cpuMsPerRequest);
  console.log(
    `GET ${path}, LEVEL=1, ${connections} connections, ${duration} s, median of ${repeats} rotated runs`,
  );
  for (const [name, side] of Object.entries(sides)) {
    const run = medianRun(side.runs, (entry) => entry.requestsPerSecond);
    const cpu = medianRun(side.runs, (entry) => entry.cpuMsPerRequest);
    console.log(
      `${name.padEnd(20)} ${run.requestsPerSecond.toFixed(0).padStart(7)} req/s  p99 ${String(run.p99Ms).padStart(4)} ms  errors ${run.errors}  ratio to off ${(run.requestsPerSecond / off.requestsPerSecond).toFixed(2)}  (runs: ${side.runs.map((entry) => entry.requestsPerSecond.toFixed(0)).join(', ')})`,
    );
    console.log(
      `${''.padEnd(20)} server CPU ${cpu.cpuMsPerRequest.toFixed(3)} ms/request, ${(cpu.cpuMsPerRequest / offCpu.cpuMsPerRequest).toFixed(2)}x off (runs: ${side.runs.map((entry) => entry.cpuMsPerRequest.toFixed(3)).join(', ')})`,
    );
  }
  console.log(`OTLP batches received by the sink: ${sink.batches()}`);
} finally {
  await database.drop();
  sink.close();
}
