// LISTEN_REUSE_PORT: cluster workers own SO_REUSEPORT listeners instead of the primary's handle.
// Behaviour only (who listens, what fails); the speed of each mode is measured by `make bench`.
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import {
  answeringPids,
  logsWith,
  QUIET_SUPERVISION,
  until,
  useClusters,
  workerInfo,
} from './helpers/cluster.js';
import { listenersOn, listeningInodes } from './helpers/listeners.js';
import { startLoad } from './helpers/load.js';
import { isAlive, type ServerProcess } from './helpers/process.js';

const clusters = useClusters(QUIET_SUPERVISION);
const cluster = (env: Record<string, string>) => clusters.start(env);

/** Pids of the workers alive now (started, not exited). */
function liveWorkerPids(server: ServerProcess): number[] {
  const exited = new Set(logsWith(server, 'worker exited').map((line) => line.workerPid as number));
  return logsWith(server, 'worker started')
    .map((line) => line.workerPid as number)
    .filter((pid) => !exited.has(pid));
}

describe('LISTEN_REUSE_PORT', () => {
  it('on: every worker owns a listener and new connections reach every worker; off: the primary holds the one socket', async () => {
    const server = await cluster({ LISTEN_REUSE_PORT: 'true' });
    const workers = liveWorkerPids(server);
    const owners = listenersOn(server.port, [server.child.pid as number, ...workers]);
    expect([...owners.keys()].sort()).toEqual([...workers].sort());
    expect(listeningInodes(server.port).size).toBe(2);
    expect((await answeringPids(server, 2)).size).toBe(2);

    const shared = await cluster({ LISTEN_REUSE_PORT: 'false' });
    const sharedOwners = listenersOn(shared.port, [shared.child.pid as number, ...liveWorkerPids(shared)]);
    expect([...sharedOwners.keys()]).toEqual([shared.child.pid]);
    expect((await answeringPids(shared, 2)).size).toBe(2);
  });

  it('SIGHUP, recycling and SIGTTOU under Connection: close load fail no request', async () => {
    const server = await cluster({
      LISTEN_REUSE_PORT: 'true',
      MAX_REQUESTS: '1500',
      MAX_REQUESTS_JITTER: '200',
    });
    const load = startLoad(`${server.baseUrl}/health/worker`, 8, { newConnections: true });
    await sleep(500);
    server.child.kill('SIGHUP');
    await server.waitForLog((line) => line.msg === 'reload finished: every worker replaced', 60_000);
    const readyBefore = logsWith(server, 'worker ready').length;
    server.child.kill('SIGTTIN');
    await until(() => logsWith(server, 'worker ready').length > readyBefore, 30_000, 'a third worker');
    server.child.kill('SIGTTOU');
    await until(
      () => logsWith(server, 'worker exited').some((line) => line.reason === 'scale'),
      30_000,
      'the scaled-down worker to exit',
    );
    await until(
      () => logsWith(server, 'worker exited').some((line) => line.reason === 'max_requests'),
      60_000,
      'a worker recycled by request count',
    );
    await sleep(300);
    const result = await load.stop();
    expect(result.failures.slice(0, 5)).toEqual([]);
    expect(result.failed).toBe(0);
    expect(result.ok).toBeGreaterThan(100);
    // The mechanism that makes it safe ran: replacements took sockets over, the survivor adopted some.
    expect(logsWith(server, 'took over the listeners of the replaced worker').length).toBeGreaterThanOrEqual(
      2,
    );
    expect(logsWith(server, 'adopted listeners').length).toBeGreaterThanOrEqual(1);
    // Every socket still listening is held by a live worker; none was left to the primary.
    const owners = listenersOn(server.port, [server.child.pid as number, ...liveWorkerPids(server)]);
    expect(owners.has(server.child.pid as number)).toBe(false);
    const held = new Set([...owners.values()].flatMap((inodes) => [...inodes]));
    expect(held).toEqual(listeningInodes(server.port));
  });

  it("a killed worker's listener is gone and the other worker serves until the replacement listens", async () => {
    const server = await cluster({ LISTEN_REUSE_PORT: 'true' });
    const [victim, survivor] = liveWorkerPids(server) as [number, number];
    const victimSockets = listenersOn(server.port, [victim]).get(victim) as Set<string>;
    expect(victimSockets.size).toBe(1);
    process.kill(victim, 'SIGKILL');
    await until(() => !isAlive(victim), 10_000, 'the killed worker to be gone');
    for (const inode of victimSockets) expect(listeningInodes(server.port).has(inode)).toBe(false);
    // Every new connection lands on a socket that is still listening: none fails.
    for (let request = 0; request < 20; request += 1) {
      const info = await workerInfo(server);
      expect([survivor, ...liveWorkerPids(server)]).toContain(info.pid);
    }
    await until(() => logsWith(server, 'worker ready').length >= 3, 30_000, 'the replacement');
    const now = await answeringPids(server, 2);
    expect(now.has(survivor)).toBe(true);
    expect(now.has(victim)).toBe(false);
    expect(listeningInodes(server.port).size).toBe(2);
  });
});
