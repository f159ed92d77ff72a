import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { answeringPids, logsWith, until, useClusters, workerInfo } from './helpers/cluster.js';
import { startLoad } from './helpers/load.js';
import { sampleSum, samplesOf } from './helpers/metrics.js';
import { isAlive, type ServerProcess } from './helpers/process.js';

const clusters = useClusters({ LEVEL: '2' });
const cluster = (env: Record<string, string> = {}) => clusters.start(env);

function workerPids(server: ServerProcess): number[] {
  return logsWith(server, 'worker started').map((line) => line.workerPid as number);
}

describe('LEVEL=2: a cluster of N workers', () => {
  it('spreads requests over WORKERS processes sharing one port', async () => {
    const server = await cluster({ WORKERS: '2' });
    const pids = await answeringPids(server, 2);
    expect(pids.size).toBe(2);
    expect([...pids].sort()).toEqual(workerPids(server).sort());
    const ids = new Set<number>();
    for (let index = 0; index < 10 && ids.size < 2; index += 1) ids.add((await workerInfo(server)).workerId);
    expect([...ids].sort()).toEqual([1, 2]);
  });

  it('replaces a worker killed with -9 while the other keeps serving', async () => {
    const server = await cluster();
    const [victim, survivor] = workerPids(server) as [number, number];
    const load = startLoad(`${server.baseUrl}/health/worker`, 4);
    await sleep(300);
    process.kill(victim, 'SIGKILL');
    await server.waitForLog((line) => line.msg === 'worker ready' && line.generation === 2, 20_000);
    await sleep(300);
    const result = await load.stop();
    expect(result.pids.has(survivor)).toBe(true);
    const now = await answeringPids(server, 2);
    expect(now.has(victim)).toBe(false);
    expect(now.size).toBe(2);
    expect(
      logsWith(server, 'worker exited').some((line) => line.signal === 'SIGKILL' && line.reason === 'crash'),
    ).toBe(true);
  });

  it('SIGTERM lets slow in-flight requests complete, then exits 0', async () => {
    const server = await cluster({ GRACEFUL_TIMEOUT: '10' });
    const slow = Array.from({ length: 4 }, () => fetch(`${server.baseUrl}/api/examples/sleep?ms=2500`));
    // Time for a loaded machine to hand the connections to workers; the requests have over a second left.
    await sleep(800);
    server.child.kill('SIGTERM');
    const responses = await Promise.all(slow);
    expect(responses.map((response) => response.status)).toEqual([200, 200, 200, 200]);
    expect(await server.exited).toEqual({ code: 0, signal: null });
    for (const pid of workerPids(server)) expect(isAlive(pid)).toBe(false);
  });

  it('a primary killed with -9 leaves no worker behind', async () => {
    const server = await cluster();
    const pids = workerPids(server);
    process.kill(server.child.pid as number, 'SIGKILL');
    await until(() => pids.every((pid) => !isAlive(pid)), 15_000, 'workers to exit after their primary died');
  });

  it('answers /metrics from any worker with every worker aggregated and the supervisor series', async () => {
    const server = await cluster();
    for (let index = 0; index < 10; index += 1) await workerInfo(server);
    // Memory figures arrive with the next heartbeat of each worker (one a second).
    let text = '';
    await until(
      async () => {
        text = await (await fetch(`${server.baseUrl}/metrics`)).text();
        return ['1', '2'].every((slot) =>
          new RegExp(
            `^cluster_worker_resident_memory_bytes\\{pool="http",worker="${slot}"\\} [1-9]`,
            'm',
          ).test(text),
        );
      },
      10_000,
      'a heartbeat from each worker',
    );
    expect(text).toMatch(/^cluster_workers_ready\{pool="http"\} 2$/m);
    expect(text).toMatch(/^cluster_worker_restarts_total\{pool="http",reason="crash"\} 0$/m);
    expect(text).toMatch(/^cluster_worker_resident_memory_bytes\{pool="http",worker="1"\} \d+/m);
    expect(text).toMatch(/^cluster_worker_resident_memory_bytes\{pool="http",worker="2"\} \d+/m);
    // Requests counted by each worker in its own series (pool and slot labels), at least the 10 above
    // between them, whichever worker answers now.
    const health = { route: '/health/worker', status_code: '200' };
    const perSlot = samplesOf(text, 'http_request_duration_seconds_count', health);
    expect(perSlot.map((sample) => sample.labels.worker).sort()).toEqual(['1', '2']);
    expect(perSlot.every((sample) => sample.labels.pool === 'http')).toBe(true);
    expect(sampleSum(text, 'http_request_duration_seconds_count', health)).toBeGreaterThanOrEqual(10);
  });

  it("a replaced worker resets only its own series: the other worker's counters never go down", async () => {
    const server = await cluster();
    for (let index = 0; index < 20; index += 1) await workerInfo(server);
    const metricsText = async () =>
      (await fetch(`${server.baseUrl}/metrics`, { headers: { connection: 'close' } })).text();
    const before = await metricsText();
    const victim = await workerInfo(server);
    process.kill(victim.pid, 'SIGKILL');
    await server.waitForLog((line) => line.msg === 'worker ready' && line.generation === 2, 20_000);
    const after = await metricsText();
    const survivor = String(victim.workerId === 1 ? 2 : 1);
    const served = (text: string) =>
      sampleSum(text, 'http_request_duration_seconds_count', { route: '/health/worker', worker: survivor });
    expect(served(before)).toBeGreaterThan(0);
    expect(served(after)).toBeGreaterThanOrEqual(served(before));
  });

  it('ignores reload and scaling signals at LEVEL=2 and says so', async () => {
    const server = await cluster();
    server.child.kill('SIGHUP');
    await server.waitForLog((line) => line.msg === 'reload needs LEVEL=3 or 4: ignored');
    expect((await answeringPids(server, 2)).size).toBe(2);
  });
});
