import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import {
  answeringPids,
  copyOfBuild,
  logsWith,
  QUIET_SUPERVISION,
  slowModuleLoad,
  until,
  useClusters,
} from './helpers/cluster.js';
import { startLoad } from './helpers/load.js';
import { freePort, isAlive, ROOT, type ServerProcess, startProcess } from './helpers/process.js';

const cleanups: Array<() => void> = [];
afterAll(() => {
  for (const cleanup of cleanups) cleanup();
});
const clusters = useClusters(QUIET_SUPERVISION);
const supervised = (env: Record<string, string> = {}, cwd?: string) => clusters.start(env, cwd);

const startedPids = (server: ServerProcess) =>
  logsWith(server, 'worker started').map((line) => line.workerPid as number);
const readyCount = (server: ServerProcess) => logsWith(server, 'worker ready').length;

describe('LEVEL=3: hang detection', () => {
  it('replaces a stopped (SIGSTOP) worker within WORKER_TIMEOUT + a few seconds, naming it', async () => {
    const server = await supervised({ WORKER_TIMEOUT: '2' });
    const [victim] = startedPids(server) as [number];
    const stoppedAt = Date.now();
    process.kill(victim, 'SIGSTOP');
    const killed = await server.waitForLog(
      (line) => line.reason === 'hang' && line.workerPid === victim,
      10_000,
    );
    expect(killed.msg).toMatch(/^killing worker: no heartbeat for \d+ ms$/);
    expect(killed.lastReport).toMatchObject({
      requestsServed: expect.any(Number),
      rssBytes: expect.any(Number),
    });
    // Detection is the supervisor's job: WORKER_TIMEOUT after the last heartbeat (at most 1 s before the
    // stop), plus its 250 ms tick and scheduling slack.
    expect(Date.parse(killed.time as string) - stoppedAt).toBeLessThan(2000 + 2000);
    await until(() => readyCount(server) >= 3, 20_000, 'the replacement to be ready');
    // The replacement's boot (loading the app) is not, and a loaded CI machine makes it slow.
    const replacement = logsWith(server, 'worker ready').find((line) => line.generation === 2);
    expect(replacement?.worker).toBe(killed.worker);
    expect(Date.now() - stoppedAt - (replacement?.bootMs as number)).toBeLessThan(2000 + 8000);
    expect(isAlive(victim)).toBe(false);
    expect((await answeringPids(server, 2)).has(victim)).toBe(false);
  });

  it('replaces a worker spinning in a synchronous loop', async () => {
    // 3 s of synchronous spinning on one worker, longer than WORKER_TIMEOUT. No request can hold a loop
    // that long (the example routes cap their work), so a signal starts it (the fixture).
    const spinOnSignal = pathToFileURL(join(ROOT, 'test/fixtures/spin-on-signal.mjs')).href;
    const server = await supervised({ WORKER_TIMEOUT: '1', NODE_OPTIONS: `--import=${spinOnSignal}` });
    const [victim] = startedPids(server) as [number];
    process.kill(victim, 'SIGWINCH');
    const killed = await server.waitForLog(
      (line) => line.reason === 'hang' && line.workerPid === victim,
      10_000,
    );
    expect(killed.msg).toMatch(/^killing worker/);
    await until(() => readyCount(server) >= 3, 20_000, 'the replacement to be ready');
    expect(isAlive(victim)).toBe(false);
  });
});

describe('LEVEL=3: recycling keeps capacity', () => {
  it('recycles by MAX_REQUESTS under continuous load with zero failed requests', async () => {
    const server = await supervised({ MAX_REQUESTS: '150', MAX_REQUESTS_JITTER: '30' });
    const original = startedPids(server);
    const load = startLoad(`${server.baseUrl}/health/worker`, 8);
    const exitedPids = () => new Set(logsWith(server, 'worker exited').map((line) => line.workerPid));
    await until(
      () => original.every((pid) => exitedPids().has(pid)),
      40_000,
      'every original worker to be recycled',
    );
    const result = await load.stop();
    expect(result.failures.slice(0, 5)).toEqual([]);
    expect(result.failed).toBe(0);
    expect(result.ok).toBeGreaterThan(450);
    const reasons = logsWith(server, 'worker recycle scheduled').map((line) => line.reason);
    expect(new Set(reasons)).toEqual(new Set(['max_requests']));
    // A recycled worker had served at least its limit.
    for (const line of logsWith(server, 'worker recycle scheduled'))
      expect(line.requestsServed).toBeGreaterThanOrEqual(150);
    const now = await answeringPids(server, 2);
    expect(original.some((pid) => now.has(pid))).toBe(false);
  });

  it('recycles by memory (RSS over MAX_WORKER_MEMORY_MB)', async () => {
    const server = await supervised({ MAX_WORKER_MEMORY_MB: '1' });
    const line = await server.waitForLog(
      (entry) => entry.msg === 'worker recycle scheduled' && entry.reason === 'memory',
      10_000,
    );
    expect(line.worker).toBeGreaterThan(0);
    await server.waitForLog((entry) => entry.msg === 'worker exited' && entry.reason === 'memory', 15_000);
    expect((await fetch(`${server.baseUrl}/health/ready`)).status).toBe(200);
  });
});

describe('LEVEL=3: rolling reload on SIGHUP', () => {
  it('replaces every worker under continuous load with zero failed requests', async () => {
    const server = await supervised({ WORKERS: '2' });
    const original = startedPids(server);
    const load = startLoad(`${server.baseUrl}/health/worker`, 8);
    await sleep(500);
    server.child.kill('SIGHUP');
    await server.waitForLog((line) => line.msg === 'reload finished: every worker replaced', 60_000);
    await until(() => logsWith(server, 'worker exited').length >= 2, 10_000, 'old workers to exit');
    await sleep(300);
    const result = await load.stop();
    expect(result.failures.slice(0, 5)).toEqual([]);
    expect(result.failed).toBe(0);
    const now = await answeringPids(server, 2);
    expect(now.size).toBe(2);
    for (const pid of original) {
      expect(now.has(pid)).toBe(false);
      expect(isAlive(pid)).toBe(false);
    }
    const reloads = await (await fetch(`${server.baseUrl}/metrics`)).text();
    expect(reloads).toMatch(/^cluster_reloads_total\{pool="http",result="succeeded"\} 1$/m);
  });

  it('keeps the old workers serving when the new code cannot start', async () => {
    const build = copyOfBuild();
    cleanups.push(build.remove);
    const server = await supervised({ WORKER_BOOT_TIMEOUT: '10' }, build.dir);
    const original = startedPids(server);
    writeFileSync(join(build.dir, 'dist/app.js'), "throw new Error('bad deploy: app fails at import');\n");
    const load = startLoad(`${server.baseUrl}/health/worker`, 4);
    server.child.kill('SIGHUP');
    const aborted = await server.waitForLog((line) => /^reload aborted/.test(line.msg ?? ''), 40_000);
    expect(aborted.reason).toBe('reload');
    await sleep(500);
    const result = await load.stop();
    expect(result.failed).toBe(0);
    const now = await answeringPids(server, 2);
    expect([...now].sort()).toEqual([...original].sort());
  });
});

describe('LEVEL=3: shutdown in the middle of an operation', () => {
  it('SIGTERM during a rolling reload stops every worker, booting ones included, and exits 0', async () => {
    const server = await supervised({ WORKERS: '2', GRACEFUL_TIMEOUT: '5' });
    server.child.kill('SIGHUP');
    await server.waitForLog((line) => line.msg === 'worker started' && line.generation === 2);
    server.child.kill('SIGTERM');
    const startedAt = Date.now();
    expect(await server.exited).toEqual({ code: 0, signal: null });
    expect(Date.now() - startedAt).toBeLessThan(15_000);
    await until(() => startedPids(server).every((pid) => !isAlive(pid)), 3000, 'every worker to be gone');
  });
});

describe('LEVEL=3: runtime scaling and crash loops', () => {
  it('SIGTTIN adds a worker and SIGTTOU removes one gracefully', async () => {
    const server = await supervised({ WORKERS: '2' });
    server.child.kill('SIGTTIN');
    await until(() => readyCount(server) >= 3, 15_000, 'a third worker');
    expect((await answeringPids(server, 3)).size).toBe(3);
    server.child.kill('SIGTTOU');
    await until(() => logsWith(server, 'worker exited').length >= 1, 15_000, 'one worker to drain');
    // Identical signals sent back to back may be merged by the kernel: send the second one later.
    server.child.kill('SIGTTOU');
    await until(() => logsWith(server, 'worker exited').length >= 2, 15_000, 'two workers to drain');
    const exited = logsWith(server, 'worker exited');
    expect(exited.every((line) => line.reason === 'scale' && line.code === 0)).toBe(true);
    await sleep(300);
    expect((await answeringPids(server, 2, 20)).size).toBe(1);
  });

  it('answers /metrics at once while a new worker is still loading the app', async () => {
    const build = copyOfBuild();
    cleanups.push(build.remove);
    const server = await supervised({ WORKERS: '1' }, build.dir);
    // The next worker spends 4 s loading the app (a large app, a cold disk), and says when it starts.
    const loading = join(build.dir, 'app-loading');
    slowModuleLoad(join(build.dir, 'dist/app.js'), loading, 4000);
    server.child.kill('SIGTTIN');
    await until(() => existsSync(loading), 10_000, 'the new worker to load the app');
    expect(readyCount(server)).toBe(1);
    const askedAt = Date.now();
    const response = await fetch(`${server.baseUrl}/metrics`);
    const text = await response.text();
    // A worker that ignores the collection request would hold every scrape for prom-client's 5 s.
    expect(Date.now() - askedAt).toBeLessThan(2000);
    expect(response.status).toBe(200);
    // The ready worker's figures, the booting one having none to add yet.
    expect(text).toMatch(/^process_resident_memory_bytes\{pool="http",worker="1"\} \d+/m);
    expect(text).toMatch(/^cluster_workers_ready\{pool="http"\} 1$/m);
    await until(() => readyCount(server) >= 2, 20_000, 'the slow worker to be ready');
  });

  it('gives up with a non-zero exit when workers cannot boot at all', async () => {
    const build = copyOfBuild();
    cleanups.push(build.remove);
    writeFileSync(join(build.dir, 'dist/app.js'), "throw new Error('broken at start-up');\n");
    const server = startProcess(
      { LEVEL: '3', WORKERS: '2', DATABASE_URL: clusters.databaseUrl, PORT: String(await freePort()) },
      'dist/main.js',
      build.dir,
    );
    clusters.track(server);
    const startedAt = Date.now();
    const exit = await server.exited;
    expect(exit.code).toBe(1);
    expect(Date.now() - startedAt).toBeLessThan(30_000);
    await server.outputEnded;
    expect(
      logsWith(
        server,
        'workers cannot boot: giving up so the platform sees the failure (check the worker logs above)',
      ),
    ).toHaveLength(1);
    for (const pid of startedPids(server)) expect(isAlive(pid)).toBe(false);
  });
});
