/**
 * `make bench`: the template's own cost and the supervised cluster against PM2 and Watt, side by
 * side in one run on this machine, printing ratios (scripts/bench/setups.ts has the setups).
 *   1. Template cost: LEVEL=1 vs a bare Fastify 5 app that logs one pino line per request, both
 *      logging at info to /dev/null, both running at once with the load alternating between them in
 *      BENCH_SLICES (10) slices of BENCH_SLICE_SECONDS (3) per route (scripts/bench/paired.ts):
 *      GET /api/examples/hash?rounds=1 and /health/live as the median ratio of the pairs, RSS after.
 *   2. Cluster of BENCH_WORKERS: LEVEL=3 with SO_REUSEPORT listeners, LEVEL=3 with the primary's
 *      round-robin, PM2 `-i N`, Watt with N workers; keep-alive and `Connection: close` clients;
 *      start to all workers answering; RSS per process.
 *   3. Reload under load for each cluster setup, both kinds of client: failed requests.
 *   4. The CPU-bound route (BENCH_ROUNDS SHA-256 rounds, 2000) on LEVEL=1 and every cluster setup.
 * Every cluster setup runs BENCH_REPEATS times, rotating the order; each figure is that setup's median run.
 * BENCH_ONLY=cost or BENCH_ONLY=clusters runs one part.
 * Settings: BENCH_DURATION (s, 8), BENCH_CONNECTIONS (32), BENCH_WORKERS (2), BENCH_REPEATS (3),
 * BENCH_ROUNDS (2000), BENCH_PORT (3700), BENCH_SKIP_WATT (1 = leave Watt out). Needs wrk for the Connection: close rows.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { startEmbeddedPostgres } from '../src/db/embedded.js';
import { migrateUp } from '../src/db/migrate.js';
import { hasWrk, type LoadFigures, load } from './bench/load.js';
import { describeRatios, pairedLoads } from './bench/paired.js';
import { bare, ours, pm2, ROOT, type Running, type Setup, watt } from './bench/setups.js';
import { median, medianRun, repeatsFromEnv, runRotated } from './repeat.js';

const duration = Number(process.env.BENCH_DURATION ?? 8);
const connections = Number(process.env.BENCH_CONNECTIONS ?? 32);
const workers = Number(process.env.BENCH_WORKERS ?? 2);
const repeats = repeatsFromEnv(3);
const port = Number(process.env.BENCH_PORT ?? 3700);
const withWatt = process.env.BENCH_SKIP_WATT !== '1';
/** BENCH_ONLY=cost or BENCH_ONLY=clusters runs one part (clusters includes the reloads). */
const only = process.env.BENCH_ONLY;
/** The template-cost rows: alternating slices per app and route, and their length (s). */
const slices = Number(process.env.BENCH_SLICES ?? 10);
const sliceSeconds = Number(process.env.BENCH_SLICE_SECONDS ?? 3);
const HASH = '/api/examples/hash?rounds=1';
/** CPU-bound requests: what more processes buy (LEVEL=1 vs the clusters). */
const CPU = `/api/examples/hash?rounds=${Number(process.env.BENCH_ROUNDS ?? 2000)}`;
const LIVE = '/health/live';

interface Run {
  readyMs: number;
  rssMb: number[];
  figures: Record<string, LoadFigures>;
}

/** Start, warm up, run each load in `loads`, read RSS, stop. */
async function measure(
  setup: Setup,
  env: Record<string, string>,
  loads: Record<string, { path: string; close?: boolean }>,
): Promise<Run> {
  const running: Running = await setup.start(env);
  try {
    await load(`${running.base}${HASH}`, { seconds: 2, connections });
    const figures: Record<string, LoadFigures> = {};
    for (const [key, { path, close }] of Object.entries(loads)) {
      figures[key] = await load(`${running.base}${path}`, { seconds: duration, connections, close });
    }
    return { readyMs: running.readyMs, rssMb: running.rssMb(), figures };
  } finally {
    await running.stop();
    await sleep(300);
  }
}

/** Load for 8 s, a rolling reload at 2 s: how many requests failed. */
async function reloadUnderLoad(setup: Setup, env: Record<string, string>, close: boolean) {
  const running = await setup.start(env);
  try {
    const loading = load(`${running.base}${LIVE}`, { seconds: 8, connections, close });
    await sleep(2000);
    await running.reload?.();
    return await loading;
  } finally {
    await running.stop();
    await sleep(300);
  }
}

const ratio = (a: number, b: number) => (b > 0 ? `${(a / b).toFixed(2)}x` : 'n/a');
const medianOf = (runs: Run[], key: string) => medianRun(runs, (run) => rps(run, key));
const all = (runs: Run[], key: string) => runs.map((run) => rps(run, key).toFixed(0)).join(', ');
const rps = (run: Run, key: string) => run.figures[key]?.requestsPerSecond ?? 0;
const fig = (run: Run, key: string) => run.figures[key] as LoadFigures;

/** Section 1: LEVEL=1 against the bare app; returns LEVEL=1's CPU-bound req/s for section 4. */
async function templateCost(base: Record<string, string>): Promise<number> {
  let levelOneCpu = 0;
  const costEnv = { ...base, LOG_LEVEL: 'info' };
  const levelOne = ours('LEVEL=1', { LEVEL: '1' });
  const bareRunning = await bare.start({ ...costEnv, PORT: String(port) });
  const oursRunning = await levelOne.start({ ...costEnv, PORT: String(port + 1) });
  const bases: [string, string] = [bareRunning.base, oursRunning.base];
  try {
    for (const app of bases) await load(`${app}${HASH}`, { seconds: 2, connections });
    const sliced = { slices, seconds: sliceSeconds, connections };
    const hash = await pairedLoads(bases, HASH, sliced);
    const live = await pairedLoads(bases, LIVE, sliced);
    const rssAfterCost = [bareRunning.rssMb()[0] ?? 0, oursRunning.rssMb()[0] ?? 0] as const;
    const cpu = await pairedLoads(bases, CPU, { ...sliced, slices: 2, seconds: duration });
    const rssAfterCpu = [bareRunning.rssMb()[0] ?? 0, oursRunning.rssMb()[0] ?? 0] as const;
    levelOneCpu = median(cpu.second);
    console.log(
      `\n| template cost (LEVEL=1 vs bare Fastify + pino, ${slices} alternating ${sliceSeconds} s slices each) | bare req/s | LEVEL=1 req/s | ratio: median of pairs (range) | target |`,
    );
    console.log('| --- | --- | --- | --- | --- |');
    for (const [figures, label, target] of [
      [hash, `GET ${HASH}`, '>= 0.85x'],
      [live, `GET ${LIVE}`, '>= 0.9x'],
    ] as const) {
      console.log(
        `| ${label} | ${median(figures.first).toFixed(0)} | ${median(figures.second).toFixed(0)} | ${describeRatios(figures)} | ${target} |`,
      );
    }
    const [bareRss, oursRss] = rssAfterCost;
    console.log(
      `| RSS after warm-up, hash and live loads, MB | ${bareRss} | ${oursRss} | ${ratio(oursRss, bareRss)} | <= 1.3x |`,
    );
    console.log(
      `| RSS after the CPU-bound load too, MB | ${rssAfterCpu[0]} | ${rssAfterCpu[1]} | ${ratio(rssAfterCpu[1], rssAfterCpu[0])} | |`,
    );
  } finally {
    await bareRunning.stop();
    await oursRunning.stop();
  }
  return levelOneCpu;
}

async function main(): Promise<void> {
  execFileSync('npm', ['run', 'build'], { cwd: ROOT, stdio: 'ignore' });
  const log = pino({ level: 'warn' });
  const embedded = process.env.DATABASE_URL
    ? undefined
    : await startEmbeddedPostgres({ port: 54349, dataDir: join(ROOT, '.data/bench-postgres') }, log);
  const databaseUrl = process.env.DATABASE_URL ?? (embedded?.url as string);
  await migrateUp(databaseUrl, log);
  const base = {
    NODE_ENV: 'production',
    PORT: String(port),
    DATABASE_URL: databaseUrl,
    // Production refuses to start without a strong signing secret (a new one per run).
    AUTH_SECRET: randomBytes(48).toString('base64'),
    // Every row measures capacity: a shed request is a fast 503 that wrk would count as throughput.
    LOAD_SHED_MAX_EVENT_LOOP_DELAY_MS: '0',
  };
  // Recycling by request count off in the throughput rows: at the LEVEL=3 preset (10000) a worker
  // serving 5000 req/s would restart every 2 s, and the rows would measure boots. Reloads below
  // and the tests cover the recycling path.
  const cluster = { LEVEL: '3', WORKERS: String(workers), MAX_REQUESTS: '0', MAX_REQUESTS_JITTER: '0' };
  const clusterSetups: Setup[] = [
    ours(`LEVEL=3 reusePort`, { ...cluster, LISTEN_REUSE_PORT: 'true' }),
    ours(`LEVEL=3 round-robin`, { ...cluster, LISTEN_REUSE_PORT: 'false' }),
    pm2(workers),
    ...(withWatt ? [watt(workers)] : []),
  ];
  console.log(
    `node ${process.versions.node}, ${hasWrk ? 'wrk' : 'autocannon'}, ${connections} connections, ${duration} s per load, ${repeats} rotating repeats, load average ${execFileSync('cat', ['/proc/loadavg'], { encoding: 'utf8' }).trim()}`,
  );
  try {
    // 1. Template cost: both log one line per request (info, to /dev/null), both running at once,
    //    the load alternating between them (scripts/bench/paired.ts).
    let levelOneCpu = 0;
    if (only !== 'clusters') levelOneCpu = await templateCost(base);
    if (only === 'cost') return;

    // 2. Clusters: same app, per-request logging off (process managers write logs differently).
    const clusterEnv = { ...base, LOG_LEVEL: 'warn' };
    const clusterLoads = {
      keepAlive: { path: HASH },
      close: { path: HASH, close: true },
      cpu: { path: CPU },
    };
    const clusterRuns = new Map<Setup, Run[]>(clusterSetups.map((setup) => [setup, []]));
    await runRotated(
      repeats,
      [...clusterRuns].map(
        ([setup, runs]) =>
          async () =>
            void runs.push(await measure(setup, clusterEnv, clusterLoads)),
      ),
    );
    console.log(
      `\n| ${workers} workers, GET ${HASH} | keep-alive req/s | p99 ms | Connection: close req/s | p99 ms | errors | start to all workers answering ms | RSS MB (manager, workers) |`,
    );
    console.log('| --- | --- | --- | --- | --- | --- | --- | --- |');
    const medians = new Map<Setup, { keepAlive: Run; close: Run; readyMs: number; rss: number[] }>();
    for (const [setup, runs] of clusterRuns) {
      const keepAlive = medianOf(runs, 'keepAlive');
      const close = medianOf(runs, 'close');
      const readyMs = median(runs.map((run) => run.readyMs));
      const rss = medianRun(runs, (run) => run.rssMb.reduce((sum, mb) => sum + mb, 0)).rssMb;
      medians.set(setup, { keepAlive, close, readyMs, rss });
      const errors = fig(keepAlive, 'keepAlive').errors + fig(close, 'close').errors;
      console.log(
        `| ${setup.name} | ${rps(keepAlive, 'keepAlive').toFixed(0)} (${all(runs, 'keepAlive')}) | ${fig(keepAlive, 'keepAlive').p99Ms.toFixed(1)} | ${rps(close, 'close').toFixed(0)} (${all(runs, 'close')}) | ${fig(close, 'close').p99Ms.toFixed(1)} | ${errors} | ${readyMs} | ${rss.join(', ')} |`,
      );
    }
    const [reusePort, roundRobin, pm2Setup, wattSetup] = clusterSetups as [Setup, Setup, Setup, Setup?];
    const m = (setup: Setup) => medians.get(setup) as NonNullable<ReturnType<typeof medians.get>>;
    console.log('\n| comparison | keep-alive | Connection: close | target |');
    console.log('| --- | --- | --- | --- |');
    for (const [label, setup, other, target] of [
      ['LEVEL=3 reusePort / PM2', reusePort, pm2Setup, '>= 1.0x / >= 1.5x'],
      ['LEVEL=3 round-robin / PM2', roundRobin, pm2Setup, ''],
      ['LEVEL=3 reusePort / round-robin', reusePort, roundRobin, ''],
      ...(wattSetup ? [['LEVEL=3 reusePort / Watt', reusePort, wattSetup, '']] : []),
    ] as Array<[string, Setup, Setup, string]>) {
      console.log(
        `| ${label} | ${ratio(rps(m(setup).keepAlive, 'keepAlive'), rps(m(other).keepAlive, 'keepAlive'))} | ${ratio(rps(m(setup).close, 'close'), rps(m(other).close, 'close'))} | ${target} |`,
      );
    }
    console.log(`| LEVEL=3 start to all workers answering | ${m(reusePort).readyMs} ms | | <= 1200 ms |`);
    console.log(`\n| GET ${CPU} (CPU-bound, keep-alive) | req/s (runs) | vs LEVEL=1 |`);
    console.log('| --- | --- | --- |');
    console.log(`| LEVEL=1 (logging at info, median of 2 runs) | ${levelOneCpu.toFixed(0)} | 1.00x |`);
    for (const [setup, runs] of clusterRuns) {
      const cpu = rps(medianOf(runs, 'cpu'), 'cpu');
      console.log(`| ${setup.name} | ${cpu.toFixed(0)} (${all(runs, 'cpu')}) | ${ratio(cpu, levelOneCpu)} |`);
    }

    // 3. Reloads under load.
    console.log(
      `\n| reload under load (8 s of GET ${LIVE}, reload at 2 s) | keep-alive: requests / failed | Connection: close: requests / failed |`,
    );
    console.log('| --- | --- | --- |');
    for (const setup of clusterSetups) {
      const keepAlive = await reloadUnderLoad(setup, clusterEnv, false);
      const close = await reloadUnderLoad(setup, clusterEnv, true);
      console.log(
        `| ${setup.name} | ${keepAlive.total} / ${keepAlive.errors} | ${close.total} / ${close.errors} |`,
      );
    }
    console.log(
      `\nload average at the end: ${execFileSync('cat', ['/proc/loadavg'], { encoding: 'utf8' }).trim()}`,
    );
  } finally {
    await embedded?.stop();
  }
}

await main();
