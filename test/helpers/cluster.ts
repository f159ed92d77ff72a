import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort, type LogLine, ROOT, type ServerProcess, startProcess, waitForHttp } from './process.js';

export interface WorkerInfo {
  pid: number;
  workerId: number;
  generation: number;
  requestsServed: number;
}

/** Start `node dist/main.js` at a cluster level and wait until every worker is ready. */
export async function startCluster(env: Record<string, string>, cwd = ROOT): Promise<ServerProcess> {
  const port = await freePort();
  const server = startProcess({ PORT: String(port), WORKERS: '2', ...env }, 'dist/main.js', cwd);
  try {
    // The HTTP pool's line: at LEVEL=4 the task pool says the same, often first.
    await server.waitForLog((line) => line.msg === 'all workers ready' && line.pool !== 'tasks', 60_000);
    await waitForHttp(`${server.baseUrl}/health/ready`);
  } catch (error) {
    // Never ready: stop it here, or its primary and workers outlive the test run.
    await server.stop().catch(() => {});
    throw error;
  }
  return server;
}

export async function workerInfo(server: ServerProcess): Promise<WorkerInfo> {
  const response = await fetch(`${server.baseUrl}/health/worker`, {
    headers: { connection: 'close' },
    signal: AbortSignal.timeout(5000),
  });
  return (await response.json()) as WorkerInfo;
}

/** The pids answering now, found by asking until `expected` distinct ones answered (or giving up). */
export async function answeringPids(
  server: ServerProcess,
  expected: number,
  attempts = 60,
): Promise<Set<number>> {
  const pids = new Set<number>();
  for (let attempt = 0; attempt < attempts && pids.size < expected; attempt += 1) {
    pids.add((await workerInfo(server)).pid);
  }
  return pids;
}

export function logsWith(server: ServerProcess, message: string): LogLine[] {
  return server.logs.filter((line) => line.msg === message);
}

export async function until(
  condition: () => boolean | Promise<boolean>,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await condition()) return;
    await sleep(100);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

/**
 * Make a built module (in a copy of the build) take `delayMs` longer to load, creating `marker` when
 * its loading starts: whatever a process does before it imports that module has then happened.
 */
export function slowModuleLoad(modulePath: string, marker: string, delayMs: number): void {
  const prelude = `import { writeFileSync as markLoading } from 'node:fs';
markLoading(${JSON.stringify(marker)}, '');
await new Promise((resolve) => setTimeout(resolve, ${delayMs}));
`;
  writeFileSync(modulePath, prelude + readFileSync(modulePath, 'utf8'));
}

/** A copy of the built app in a temp folder, so a test can break its code on disk. */
export function copyOfBuild(): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'build-copy-'));
  cpSync(join(ROOT, 'dist'), join(dir, 'dist'), { recursive: true });
  cpSync(join(ROOT, 'migrations'), join(dir, 'migrations'), { recursive: true });
  cpSync(join(ROOT, 'package.json'), join(dir, 'package.json'));
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}
