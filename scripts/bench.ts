/**
 * `make bench`: the levels side by side in one run, on this machine, printing ratios.
 *   LEVEL=1 vs LEVEL=2 vs LEVEL=3 vs PM2 cluster mode (`pm2 start -i N`, the same app at LEVEL=1)
 *   on the CPU-bound route; then a reload under load for LEVEL=3 (SIGHUP) and PM2 (`pm2 reload`).
 * Load comes from wrk when it is on the PATH, otherwise autocannon; the same tool for every row.
 * Settings: BENCH_DURATION (s, 10), BENCH_CONNECTIONS (50), BENCH_ROUNDS (hash rounds, 2000), BENCH_WORKERS (2),
 * BENCH_REPEATS (3: every setup runs that often, rotating the order; the median run is reported).
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import autocannon from 'autocannon';
import { pino } from 'pino';
import { startEmbeddedPostgres } from '../src/db/embedded.js';
import { migrateUp } from '../src/db/migrate.js';
import { medianRun, repeatsFromEnv, runRotated } from './repeat.js';

const root = resolve(import.meta.dirname, '..');
const duration = Number(process.env.BENCH_DURATION ?? 10);
const connections = Number(process.env.BENCH_CONNECTIONS ?? 50);
const rounds = Number(process.env.BENCH_ROUNDS ?? 2000);
const repeats = repeatsFromEnv(3);
const workers = Number(process.env.BENCH_WORKERS ?? 2);
const port = Number(process.env.BENCH_PORT ?? 3700);
const path = `/api/examples/hash?rounds=${rounds}`;
const useWrk = (() => {
  try {
    execFileSync('wrk', ['--version'], { stdio: 'ignore' });
    return true;
  } catch (error) {
    return (error as { status?: number }).status === 1; // wrk --version exits 1 but exists
  }
})();

interface LoadFigures {
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  total: number;
}

function parseWrkMs(text: string): number {
  const match = /^([\d.]+)(us|ms|s)$/.exec(text.trim());
  if (!match) return Number.NaN;
  const value = Number(match[1]);
  return match[2] === 'us' ? value / 1000 : match[2] === 's' ? value * 1000 : value;
}

async function load(url: string, seconds: number): Promise<LoadFigures> {
  if (useWrk) {
    const output = await new Promise<string>((done) => {
      const child = spawn('wrk', ['-t2', `-c${connections}`, `-d${seconds}s`, '--latency', url]);
      let text = '';
      child.stdout.on('data', (chunk) => {
        text += chunk;
      });
      child.on('exit', () => done(text));
    });
    const socketErrors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(output);
    const errors =
      Number(/Non-2xx or 3xx responses: (\d+)/.exec(output)?.[1] ?? 0) +
      (socketErrors ? socketErrors.slice(1).reduce((sum, value) => sum + Number(value), 0) : 0);
    return {
      requestsPerSecond: Number(/Requests\/sec:\s+([\d.]+)/.exec(output)?.[1] ?? 0),
      p50Ms: parseWrkMs(/^\s+50%\s+(\S+)/m.exec(output)?.[1] ?? ''),
      p99Ms: parseWrkMs(/^\s+99%\s+(\S+)/m.exec(output)?.[1] ?? ''),
      errors,
      total: Number(/(\d+) requests in/.exec(output)?.[1] ?? 0),
    };
  }
  const result = await autocannon({ url, connections, duration: seconds, workers: 1 });
  return {
    requestsPerSecond: result.requests.average,
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    errors: result.errors + result.non2xx + result.timeouts,
    total: result.requests.total,
  };
}

async function waitReady(url: string, timeoutMs = 60_000): Promise<number> {
  const started = Date.now();
  while (Date.now() - started < timeoutMs) {
    try {
      if ((await fetch(url)).ok) return Date.now() - started;
    } catch {}
    await sleep(50);
  }
  throw new Error(`${url} never became ready`);
}

async function workerRss(base: string, expected: number): Promise<number[]> {
  const byPid = new Map<number, number>();
  for (let attempt = 0; attempt < 50 && byPid.size < expected; attempt += 1) {
    const info = (await (
      await fetch(`${base}/health/worker`, { headers: { connection: 'close' } })
    ).json()) as {
      pid: number;
      memory: { rssBytes: number };
    };
    byPid.set(info.pid, Math.round(info.memory.rssBytes / 1048576));
  }
  return [...byPid.values()];
}

/**
 * Every row runs the same production settings. Load shedding is off so that every row measures
 * capacity: a shed request is a fast 503 that wrk would count as throughput.
 */
function commonEnv(databaseUrl: string): Record<string, string> {
  return {
    NODE_ENV: 'production',
    LOG_LEVEL: 'warn',
    PORT: String(port),
    DATABASE_URL: databaseUrl,
    LOAD_SHED_MAX_EVENT_LOOP_DELAY_MS: '0',
  };
}

interface Row {
  name: string;
  figures: LoadFigures;
  readyMs: number;
  rssMb: number[];
}

async function benchOurs(name: string, env: Record<string, string>, databaseUrl: string): Promise<Row> {
  const started = Date.now();
  const child = spawn(process.execPath, ['dist/main.js'], {
    cwd: root,
    env: { ...process.env, ...commonEnv(databaseUrl), ...env },
    stdio: 'ignore',
  });
  const base = `http://127.0.0.1:${port}`;
  await waitReady(`${base}/health/ready`);
  const readyMs = Date.now() - started;
  await load(`${base}${path}`, 2); // warm-up
  const figures = await load(`${base}${path}`, duration);
  const rssMb = await workerRss(base, Number(env.WORKERS ?? 1));
  child.kill('SIGTERM');
  await new Promise((done) => child.once('exit', done));
  return { name, figures, readyMs, rssMb };
}

function pm2(home: string, args: string[], env: Record<string, string> = {}): string {
  return execFileSync(join(root, 'node_modules/.bin/pm2'), args, {
    cwd: root,
    env: { ...process.env, PM2_HOME: home, ...env },
    encoding: 'utf8',
  });
}

async function benchPm2(
  databaseUrl: string,
  withReload: boolean,
): Promise<{ row: Row; reload?: LoadFigures }> {
  const home = mkdtempSync(join(tmpdir(), 'pm2-bench-'));
  const env = { ...commonEnv(databaseUrl), LEVEL: '1' };
  const started = Date.now();
  try {
    pm2(
      home,
      ['start', 'dist/main.js', '-i', String(workers), '--name', 'bench', '--kill-timeout', '30000'],
      env,
    );
    const base = `http://127.0.0.1:${port}`;
    await waitReady(`${base}/health/ready`);
    const readyMs = Date.now() - started; // measured as for our rows: the first ready answer
    await sleep(500); // every instance listening
    await load(`${base}${path}`, 2);
    const figures = await load(`${base}${path}`, duration);
    const rssMb = await workerRss(base, workers);
    const row = { name: `PM2 cluster -i ${workers}`, figures, readyMs, rssMb };
    if (!withReload) return { row };
    const reloading = load(`${base}/health/live`, 8);
    await sleep(2000);
    pm2(home, ['reload', 'bench'], env);
    return { row, reload: await reloading };
  } finally {
    try {
      pm2(home, ['kill']);
    } catch {}
    rmSync(home, { recursive: true, force: true });
  }
}

async function reloadOurs(databaseUrl: string): Promise<LoadFigures> {
  const child = spawn(process.execPath, ['dist/main.js'], {
    cwd: root,
    env: { ...process.env, ...commonEnv(databaseUrl), LEVEL: '3', WORKERS: String(workers) },
    stdio: 'ignore',
  });
  const base = `http://127.0.0.1:${port}`;
  await waitReady(`${base}/health/ready`);
  await sleep(500);
  const reloading = load(`${base}/health/live`, 8);
  await sleep(2000);
  child.kill('SIGHUP');
  const figures = await reloading;
  child.kill('SIGTERM');
  await new Promise((done) => child.once('exit', done));
  return figures;
}

const ratio = (a: number, b: number) => (b > 0 ? `${(a / b).toFixed(2)}x` : 'n/a');

async function main(): Promise<void> {
  execFileSync('npm', ['run', 'build'], { cwd: root, stdio: 'ignore' });
  const log = pino({ level: 'warn' });
  const embedded = process.env.DATABASE_URL
    ? undefined
    : await startEmbeddedPostgres({ port: 54349, dataDir: join(root, '.data/bench-postgres') }, log);
  const databaseUrl = process.env.DATABASE_URL ?? (embedded?.url as string);
  await migrateUp(databaseUrl, log);
  console.log(
    `load: ${useWrk ? 'wrk' : 'autocannon'}, ${connections} connections, ${duration} s per row, GET ${path}, ${workers} workers`,
  );
  try {
    // Every run of each setup, in setup order: LEVEL=1, 2, 3, PM2.
    const runs: [Row[], Row[], Row[], Row[]] = [[], [], [], []];
    let pm2Reload: LoadFigures | undefined;
    const ours = (level: 1 | 2 | 3) => () =>
      benchOurs(
        level === 1 ? 'LEVEL=1' : `LEVEL=${level} WORKERS=${workers}`,
        { LEVEL: String(level), ...(level === 1 ? {} : { WORKERS: String(workers) }) },
        databaseUrl,
      ).then((row) => runs[level - 1]?.push(row));
    await runRotated(repeats, [
      ours(1),
      ours(2),
      ours(3),
      () =>
        benchPm2(databaseUrl, pm2Reload === undefined).then(({ row, reload }) => {
          runs[3].push(row);
          pm2Reload ??= reload;
        }),
    ]);
    const ourReload = await reloadOurs(databaseUrl);
    // Each setup's median run by req/s, its latencies and errors with it.
    const [level1, level2, level3, pm2Row] = runs.map((rows) =>
      medianRun(rows, (row) => row.figures.requestsPerSecond),
    ) as [Row, Row, Row, Row];
    const reqs = (rows: Row[]) => rows.map((row) => row.figures.requestsPerSecond.toFixed(0)).join(', ');

    console.log(
      `\n| setup | req/s (median of ${repeats}) | all runs | p50 ms | p99 ms | errors | start to ready ms | RSS per process MB |`,
    );
    console.log('| --- | --- | --- | --- | --- | --- | --- | --- |');
    for (const [index, row] of [level1, level2, level3, pm2Row].entries()) {
      const f = row.figures;
      console.log(
        `| ${row.name} | ${f.requestsPerSecond.toFixed(0)} | ${reqs(runs[index] as Row[])} | ${f.p50Ms.toFixed(1)} | ${f.p99Ms.toFixed(1)} | ${f.errors} | ${row.readyMs} | ${row.rssMb.join(', ')} |`,
      );
    }
    const rps = (row: Row) => row.figures.requestsPerSecond;
    console.log('\n| comparison | ratio | target |');
    console.log('| --- | --- | --- |');
    console.log(`| LEVEL=2 / LEVEL=1 | ${ratio(rps(level2), rps(level1))} | >= 1.7x |`);
    console.log(`| LEVEL=3 / LEVEL=2 | ${ratio(rps(level3), rps(level2))} | >= 0.97x |`);
    console.log(`| LEVEL=3 / PM2 | ${ratio(rps(level3), rps(pm2Row))} | >= 1.05x |`);
    console.log('\n| reload under load (8 s of GET /health/live, reload at 2 s) | requests | failed |');
    console.log('| --- | --- | --- |');
    console.log(`| LEVEL=3 SIGHUP | ${ourReload.total} | ${ourReload.errors} |`);
    console.log(`| pm2 reload | ${pm2Reload?.total} | ${pm2Reload?.errors} |`);
  } finally {
    await embedded?.stop();
  }
}

await main();
