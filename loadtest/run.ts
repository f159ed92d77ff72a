/**
 * `make load-test LEVEL=n`: start the service at a level, load it with the scenario of scenarios.json
 * (open model: fixed arrival rates), stop it, print and save the figures, fail when thresholds are missed.
 *
 *   npx tsx loadtest/run.ts --level N [--duration S] [--rate R] [--quick] [--url URL]
 *     [--runner auto|k6|autocannon] [--results-dir DIR] [--scenario NAME] [--port P]
 *     [--p95-ms MS] [--p99-ms MS] [--max-error-rate R]
 *
 * k6 runs the load when it is on the PATH (and --runner is not autocannon), otherwise autocannon,
 * one instance per route at rate × weight, all in parallel. LOADTEST_RUNNER sets the runner too.
 * Without --url the service is `node dist/main.js` with the caller's environment (embedded PostgreSQL
 * unless DATABASE_URL is set), LOG_LEVEL=warn and load shedding off unless set, on a free port.
 */

import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { type ApiClient, type paths, signIn } from '../clients/typescript/index.js';
import {
  DEFAULT_RESULTS_DIR,
  LOADTEST_DIR,
  loadScenarioFile,
  percentile,
  ROOT,
  type RouteFigures,
  type RouteSpec,
  type RunResult,
  resolveScenario,
  round,
  type SecondSample,
  type Thresholds,
} from './config.js';
import { Timeline } from './timeline.js';

const { values: args } = parseArgs({
  options: {
    level: { type: 'string', default: process.env.LEVEL || '1' },
    duration: { type: 'string' },
    rate: { type: 'string' },
    quick: { type: 'boolean', default: false },
    url: { type: 'string' },
    runner: { type: 'string', default: process.env.LOADTEST_RUNNER || 'auto' },
    'results-dir': { type: 'string', default: DEFAULT_RESULTS_DIR },
    scenario: { type: 'string' },
    port: { type: 'string' },
    'p95-ms': { type: 'string' },
    'p99-ms': { type: 'string' },
    'max-error-rate': { type: 'string' },
  },
});

const log = (line: string) => process.stderr.write(`${line}\n`);

function positive(name: string, text: string | undefined, fallback: number): number {
  if (text === undefined || text === '') return fallback;
  const value = Number(text);
  if (!Number.isFinite(value) || value < 0) throw new Error(`--${name} must be a non-negative number`);
  return value;
}

const file = loadScenarioFile();
const level = Number(args.level);
if (![1, 2, 3, 4].includes(level)) throw new Error('--level must be 1, 2, 3 or 4');
const scenario = resolveScenario(file, level, args.scenario);
const quick = args.quick ?? false;
const rate = positive('rate', args.rate, quick ? file.defaults.quick.rate : file.defaults.rate);
const duration = positive(
  'duration',
  args.duration,
  quick ? file.defaults.quick.duration : file.defaults.duration,
);
const limits: Thresholds = { ...file.defaults.thresholds, ...(quick ? file.defaults.quick.thresholds : {}) };
const thresholds: Thresholds = {
  maxErrorRate: positive('max-error-rate', args['max-error-rate'], limits.maxErrorRate),
  p95Ms: positive('p95-ms', args['p95-ms'], limits.p95Ms),
  p99Ms: positive('p99-ms', args['p99-ms'], limits.p99Ms),
};

function k6Available(): boolean {
  try {
    execFileSync('k6', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
const runner: 'k6' | 'autocannon' =
  args.runner === 'autocannon' ? 'autocannon' : args.runner === 'k6' || k6Available() ? 'k6' : 'autocannon';

async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, 'close');
  return port;
}

async function waitReady(url: string, child: ChildProcess | undefined, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child && child.exitCode !== null) throw new Error(`the service exited with code ${child.exitCode}`);
    try {
      if ((await fetch(url)).ok) return;
    } catch {}
    await sleep(100);
  }
  throw new Error(`${url} not ready after ${timeoutMs} ms`);
}

/**
 * Who the load test signs in as: FIRST_USER_EMAIL/FIRST_USER_PASSWORD from the environment (an
 * existing account with --url), else a user the started service creates when missing. That default
 * password is fixed (reruns on the same database sign in again) and only fit for a local service.
 */
const credentials = {
  email: process.env.FIRST_USER_EMAIL || 'loadtest@example.com',
  password: process.env.FIRST_USER_PASSWORD || 'loadtest-local-only-password',
};
type TaskRequest = paths['/api/tasks']['post']['requestBody']['content']['application/json'];

/** Signed in through the generated client before the load; every write sends its token. */
let api: ApiClient;
let authorization = '';

async function signInForLoad(base: string): Promise<void> {
  const signedIn = await signIn(base, credentials.email, credentials.password);
  api = signedIn.api;
  authorization = `Bearer ${signedIn.tokens.access_token}`;
}

/** Headers of a route's request: JSON and the token when it sends a body (the write routes). */
function headersOf(route: { body?: unknown }): Record<string, string> {
  return route.body === undefined ? {} : { 'content-type': 'application/json', authorization };
}

async function startService(port: number): Promise<ChildProcess> {
  const child = spawn(process.execPath, [join(ROOT, 'dist/main.js')], {
    cwd: ROOT,
    env: {
      ...process.env,
      LEVEL: String(level),
      PORT: String(port),
      HOST: process.env.HOST ?? '127.0.0.1',
      LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn',
      LOAD_SHED_MAX_EVENT_LOOP_DELAY_MS: process.env.LOAD_SHED_MAX_EVENT_LOOP_DELAY_MS ?? '0',
      FIRST_USER_EMAIL: credentials.email,
      FIRST_USER_PASSWORD: credentials.password,
      // One sign-in per run; a rerun within the window must not be locked out.
      LOGIN_RATE_LIMIT_MAX: process.env.LOGIN_RATE_LIMIT_MAX ?? '1000',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout?.pipe(process.stderr);
  child.stderr?.pipe(process.stderr);
  return child;
}

async function stopService(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 45_000);
  await exited;
  clearTimeout(timer);
}

/** A seed item so GET /api/items/{itemId} has something to read. */
async function seedItem(base: string): Promise<number> {
  await signInForLoad(base);
  const { data, response } = await api.POST('/api/items', { body: { name: 'load test seed' } });
  if (!data) throw new Error(`seeding an item failed: ${response.status}`);
  return data.id;
}

/** A few sequential requests per route (routes in parallel), not counted, so the first seconds are not cold. */
async function warmUp(base: string, itemId: number): Promise<void> {
  await Promise.all(
    scenario.routes
      .filter((route) => route.flow === undefined)
      .map(async (route) => {
        for (let i = 0; i < (file.defaults.warmupRequests ?? 0); i += 1) {
          const response = await fetch(`${base}${route.path.replace('{itemId}', String(itemId))}`, {
            method: route.method,
            headers: headersOf(route),
            body: route.body === undefined ? undefined : JSON.stringify(route.body),
          });
          await response.arrayBuffer();
        }
      }),
  );
}

class Recorder {
  latencies: number[] = [];
  requests = 0;
  errors = 0;
  constructor(
    readonly route: RouteSpec,
    readonly targetRate: number,
    readonly timeline?: Timeline,
  ) {}
  figures(elapsedSeconds: number): RouteFigures {
    return figuresOf(this.route.name, this.route.kind, this.targetRate, this, elapsedSeconds);
  }
}

function figuresOf(
  name: string,
  kind: string,
  targetRate: number,
  data: { latencies: number[]; requests: number; errors: number },
  elapsedSeconds: number,
): RouteFigures {
  const sorted = [...data.latencies].sort((a, b) => a - b);
  return {
    name,
    kind,
    targetRate: round(targetRate),
    requests: data.requests,
    errors: data.errors,
    errorRate: data.requests ? round(data.errors / data.requests, 4) : 0,
    throughput: round(data.requests / Math.max(elapsedSeconds, 0.001)),
    p50Ms: round(percentile(sorted, 50)),
    p95Ms: round(percentile(sorted, 95)),
    p99Ms: round(percentile(sorted, 99)),
    maxMs: round(sorted.at(-1) ?? 0),
  };
}

/**
 * One autocannon per route at overallRate = rate × weight. autocannon holds a fixed number of
 * connections, so a slow response delays the next send (coordinated omission): each latency is
 * recorded with the requests that should have been sent meanwhile, like HdrHistogram's
 * recordValueWithExpectedInterval.
 */
function runRoute(base: string, recorder: Recorder, itemId: number): Promise<void> {
  const { route } = recorder;
  const routeRate = Math.max(1, Math.round(recorder.targetRate));
  const connections = Math.min(routeRate, Math.max(2, Math.ceil(routeRate / 4)));
  const expectedIntervalMs = (1000 * connections) / routeRate;
  return new Promise((done, fail) => {
    const instance = autocannon(
      {
        url: `${base}${route.path.replace('{itemId}', String(itemId))}`,
        method: route.method,
        headers: headersOf(route),
        body: route.body === undefined ? undefined : JSON.stringify(route.body),
        connections,
        overallRate: routeRate,
        duration,
        timeout: 10,
      },
      (error) => (error ? fail(error) : done()),
    );
    instance.on('response', (_client, statusCode, _bytes, responseTime) => {
      const ok = statusCode >= 200 && statusCode < 400;
      recorder.requests += 1;
      if (!ok) recorder.errors += 1;
      const latencies = [responseTime];
      for (let missed = responseTime - expectedIntervalMs, n = 0; missed > 0 && n < 1000; n += 1) {
        latencies.push(missed);
        missed -= expectedIntervalMs;
      }
      recorder.latencies.push(...latencies);
      recorder.timeline?.record(ok, latencies);
    });
    instance.on('reqError', () => {
      recorder.requests += 1;
      recorder.errors += 1;
      recorder.timeline?.record(false, []);
    });
  });
}

/** Task flows at a fixed arrival rate through the generated client: enqueue, poll until completed; latency is end to end. */
async function runTaskFlow(recorder: Recorder): Promise<void> {
  const { route } = recorder;
  const interval = 1000 / Math.max(recorder.targetRate, 0.1);
  const timeoutMs = route.timeoutMs ?? 30_000;
  const flows: Promise<void>[] = [];
  const flow = async () => {
    const started = performance.now();
    let ok = false;
    try {
      // Through the generated client: the scenario's body is a task request of the document.
      const { data: enqueued } = await api.POST('/api/tasks', { body: route.body as TaskRequest });
      if (enqueued) {
        const { id } = enqueued;
        while (performance.now() - started < timeoutMs) {
          await sleep(route.pollIntervalMs ?? 100);
          const { data: status } = await api.GET('/api/tasks/{id}', { params: { path: { id } } });
          const state = status?.state;
          if (state === 'completed') ok = true;
          if (state === 'completed' || state === 'failed' || state === 'cancelled') break;
        }
      }
    } catch {}
    recorder.requests += 1;
    if (ok) recorder.latencies.push(performance.now() - started);
    else recorder.errors += 1;
  };
  const end = performance.now() + duration * 1000;
  for (let next = performance.now(); next < end; next += interval) {
    const wait = next - performance.now();
    if (wait > 0) await sleep(wait);
    flows.push(flow());
  }
  await Promise.all(flows);
}

async function runAutocannon(
  base: string,
): Promise<{ recorders: Recorder[]; elapsed: number; perSecond: SecondSample[] }> {
  const itemId = await seedItem(base);
  await warmUp(base, itemId);
  const timeline = new Timeline();
  const recorders = scenario.routes.map(
    (route) => new Recorder(route, rate * route.weight, route.flow === undefined ? timeline : undefined),
  );
  const started = performance.now();
  const progress = setInterval(() => {
    const requests = recorders.reduce((sum, r) => sum + r.requests, 0);
    const errors = recorders.reduce((sum, r) => sum + r.errors, 0);
    const seconds = (performance.now() - started) / 1000;
    log(`[${seconds.toFixed(0)}s/${duration}s] ${requests} responses, ${errors} errors`);
  }, 1000);
  try {
    await Promise.all(
      recorders.map((recorder) =>
        recorder.route.flow === 'task' ? runTaskFlow(recorder) : runRoute(base, recorder, itemId),
      ),
    );
  } finally {
    clearInterval(progress);
  }
  // Throughput over the load window; per-second samples keep the stragglers after it too.
  return { recorders, elapsed: duration, perSecond: timeline.samples() };
}

interface K6Metric {
  count?: number;
  value?: number;
  med?: number;
  max?: number;
  'p(95)'?: number;
  'p(99)'?: number;
}

async function runK6(base: string): Promise<{ routes: RouteFigures[]; total: RouteFigures }> {
  await warmUp(base, await seedItem(base));
  const summaryFile = join(tmpdir(), `k6-summary-${process.pid}-${Date.now()}.json`);
  const child = spawn(
    'k6',
    [
      'run',
      `--summary-export=${summaryFile}`,
      '-e',
      `BASE_URL=${base}`,
      '-e',
      `AUTHORIZATION=${authorization}`,
      '-e',
      `LEVEL=${level}`,
      '-e',
      `SCENARIO=${scenario.name}`,
      '-e',
      `RATE=${rate}`,
      '-e',
      `DURATION=${duration}`,
      '-e',
      `P95_MS=${thresholds.p95Ms}`,
      '-e',
      `P99_MS=${thresholds.p99Ms}`,
      '-e',
      `MAX_ERROR_RATE=${thresholds.maxErrorRate}`,
      join(LOADTEST_DIR, 'k6.js'),
    ],
    { stdio: ['ignore', 'inherit', 'inherit'] },
  );
  await once(child, 'exit'); // exit code 99 = thresholds crossed; judged again below from the figures
  const metrics = (JSON.parse(readFileSync(summaryFile, 'utf8')) as { metrics: Record<string, K6Metric> })
    .metrics;
  const figures = (name: string, kind: string, targetRate: number, tag: string): RouteFigures => {
    const isTask = kind === 'task';
    const latency = metrics[isTask ? 'task_duration' : `http_req_duration${tag}`] ?? {};
    const requests = isTask ? (metrics.task_flows?.count ?? 0) : (metrics[`http_reqs${tag}`]?.count ?? 0);
    const errorRate = metrics[isTask ? 'task_failed' : `http_req_failed${tag}`]?.value ?? 0;
    return {
      name,
      kind,
      targetRate: round(targetRate),
      requests,
      errors: Math.round(requests * errorRate),
      errorRate: round(errorRate, 4),
      throughput: round(requests / duration),
      p50Ms: round(latency.med ?? 0),
      p95Ms: round(latency['p(95)'] ?? 0),
      p99Ms: round(latency['p(99)'] ?? 0),
      maxMs: round(latency.max ?? 0),
    };
  };
  return {
    routes: scenario.routes.map((r) => figures(r.name, r.kind, rate * r.weight, `{route:${r.name}}`)),
    total: figures('total', 'total', rate, ''),
  };
}

function judge(total: RouteFigures, routes: RouteFigures[]): string[] {
  const failures: string[] = [];
  const check = (label: string, figures: RouteFigures, limits: Thresholds) => {
    if (figures.requests === 0) failures.push(`${label}: no responses at all`);
    if (figures.errorRate > limits.maxErrorRate)
      failures.push(
        `${label}: error rate ${(figures.errorRate * 100).toFixed(2)}% > ${(limits.maxErrorRate * 100).toFixed(2)}%`,
      );
    if (figures.p95Ms > limits.p95Ms) failures.push(`${label}: p95 ${figures.p95Ms} ms > ${limits.p95Ms} ms`);
    if (figures.p99Ms > limits.p99Ms) failures.push(`${label}: p99 ${figures.p99Ms} ms > ${limits.p99Ms} ms`);
  };
  check('total', total, thresholds);
  for (const route of scenario.routes) {
    const figures = routes.find((r) => r.name === route.name);
    if (route.thresholds && figures) check(route.name, figures, { ...thresholds, ...route.thresholds });
  }
  return failures;
}

function table(result: RunResult): string {
  const lines = [
    '| route | target/s | req/s | requests | errors | p50 ms | p95 ms | p99 ms | max ms |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ];
  for (const r of [...result.routes, result.total]) {
    lines.push(
      `| ${r.name === 'total' ? '**total**' : r.name} | ${r.targetRate} | ${r.throughput} | ${r.requests} | ${r.errors} | ${r.p50Ms} | ${r.p95Ms} | ${r.p99Ms} | ${r.maxMs} |`,
    );
  }
  return lines.join('\n');
}

function markdown(result: RunResult): string {
  const t = result.thresholds;
  return `# Load test: LEVEL=${result.level}, scenario ${result.scenario}

- started: ${result.startedAt}
- runner: ${result.runner}; open model, ${result.rate} requests/s for ${result.duration} s${result.quick ? ' (quick mode)' : ''}
- target: ${result.baseUrl}
- thresholds: error rate <= ${t.maxErrorRate * 100}%, p95 <= ${t.p95Ms} ms, p99 <= ${t.p99Ms} ms (total of the request routes)
- verdict: **${result.passed ? 'PASSED' : 'FAILED'}**
${result.failures.map((f) => `  - ${f}`).join('\n')}

${table(result)}
`;
}

async function main(): Promise<number> {
  const startedAt = new Date();
  let child: ChildProcess | undefined;
  let base = args.url?.replace(/\/$/, '');
  if (!base) {
    const port = args.port ? Number(args.port) : await freePort();
    base = `http://127.0.0.1:${port}`;
    log(`starting LEVEL=${level} on ${base} (node dist/main.js)`);
    child = await startService(port);
  }
  let routes: RouteFigures[];
  let total: RouteFigures;
  let perSecond: SecondSample[] | undefined;
  try {
    await waitReady(`${base}/health/ready`, child);
    log(`load: ${runner}, scenario ${scenario.name}, ${rate}/s for ${duration} s (open model)`);
    if (runner === 'k6') {
      ({ routes, total } = await runK6(base));
    } else {
      const { recorders, elapsed, ...rest } = await runAutocannon(base);
      perSecond = rest.perSecond;
      routes = recorders.map((r) => r.figures(elapsed));
      const plain = recorders.filter((r) => r.route.flow === undefined);
      total = figuresOf(
        'total',
        'total',
        plain.reduce((sum, r) => sum + r.targetRate, 0),
        {
          latencies: plain.flatMap((r) => r.latencies),
          requests: plain.reduce((sum, r) => sum + r.requests, 0),
          errors: plain.reduce((sum, r) => sum + r.errors, 0),
        },
        elapsed,
      );
    }
  } finally {
    if (child) {
      log('stopping the service (SIGTERM)');
      await stopService(child);
    }
  }
  const failures = judge(total, routes);
  const result: RunResult = {
    level,
    scenario: scenario.name,
    runner,
    startedAt: startedAt.toISOString(),
    baseUrl: base,
    rate,
    duration,
    quick,
    thresholds,
    routes,
    total,
    ...(perSecond ? { perSecond } : {}),
    failures,
    passed: failures.length === 0,
  };
  const dir = resolve(args['results-dir'] ?? DEFAULT_RESULTS_DIR);
  mkdirSync(dir, { recursive: true });
  const stem = join(dir, `level-${level}-${startedAt.toISOString().replace(/[:.]/g, '-')}`);
  writeFileSync(`${stem}.json`, `${JSON.stringify(result, null, 2)}\n`);
  writeFileSync(`${stem}.md`, markdown(result));
  console.log(`\nLEVEL=${level}, ${runner}, ${rate}/s for ${duration} s\n\n${table(result)}\n`);
  console.log(`results: ${stem}.json, ${stem}.md`);
  if (failures.length > 0) {
    console.log('\nTHRESHOLDS MISSED:');
    for (const failure of failures) console.log(`  - ${failure}`);
    return 1;
  }
  console.log('\nall thresholds met');
  return 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error);
    process.exit(2);
  },
);
