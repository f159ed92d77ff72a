import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll } from 'vitest';
import { createTestDatabase, type TestDatabase } from './database.js';
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

/**
 * LEVEL=3 for tests: generous hang and boot timeouts, so a loaded CI machine sees no false hangs (hang
 * tests set their own), and no recycling unless a test asks (a fast machine could push a worker past
 * the preset limit mid-test and start a recycle the test did not expect).
 */
export const QUIET_SUPERVISION = {
  LEVEL: '3',
  WORKER_TIMEOUT: '10',
  WORKER_BOOT_TIMEOUT: '20',
  MAX_WORKER_MEMORY_MB: '0',
  MAX_REQUESTS: '0',
  MAX_REQUESTS_JITTER: '0',
} as const;

export interface ClusterTestBed {
  /** The file's own database (created in beforeAll). */
  readonly databaseUrl: string;
  /** startCluster on that database with `defaults` under `env`; killed in afterAll. */
  start(env?: Record<string, string>, cwd?: string): Promise<ServerProcess>;
  /** Kill this server in afterAll too (one started another way). */
  track(server: ServerProcess): ServerProcess;
}

/**
 * The clusters of one test file on a database of its own: created in beforeAll; in afterAll every
 * cluster is killed, then the database dropped. Call it after the file's own afterAll, whose cleanups
 * then run once the servers are gone (vitest runs after-hooks in reverse order).
 */
export function useClusters(defaults: Record<string, string> = {}): ClusterTestBed {
  let database: TestDatabase | undefined;
  const servers: ServerProcess[] = [];
  beforeAll(async () => {
    database = await createTestDatabase();
  });
  afterAll(async () => {
    await Promise.all(servers.map((server) => server.stop('SIGKILL')));
    await database?.drop();
  });
  const bed: ClusterTestBed = {
    get databaseUrl() {
      if (!database) throw new Error('useClusters: the database exists from beforeAll on');
      return database.url;
    },
    async start(env = {}, cwd) {
      return bed.track(await startCluster({ DATABASE_URL: bed.databaseUrl, ...defaults, ...env }, cwd));
    },
    track(server) {
      servers.push(server);
      return server;
    },
  };
  return bed;
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
