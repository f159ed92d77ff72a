/**
 * The setups `make bench` compares, each started the same way: a bare Fastify app, this app at a
 * LEVEL, the same app under PM2 cluster mode and under Watt. Each reports when all its workers
 * answer, the RSS of its processes, and how to reload it.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { waitOk } from './load.js';

export const ROOT = resolve(import.meta.dirname, '../..');
const BIN = join(ROOT, 'node_modules/.bin');

export interface Running {
  base: string;
  /** From spawning to every worker answering (Watt: to the first answer, its workers share a pid). */
  readyMs: number;
  /** RSS of every process of the setup, MB: [manager, ...workers] where there is a manager. */
  rssMb(): number[];
  /** Start a rolling reload (resolves once it is requested, not when it ends). */
  reload?(): Promise<void>;
  stop(): Promise<void>;
}

export interface Setup {
  name: string;
  start(env: Record<string, string>): Promise<Running>;
}

/** RSS (MB) of `root` and its descendants, root first. */
function treeRssMb(root: number): number[] {
  const rows = execFileSync('ps', ['-eo', 'pid=,ppid=,rss='], { encoding: 'utf8' })
    .trim()
    .split('\n')
    .map((line) => line.trim().split(/\s+/).map(Number) as [number, number, number]);
  const pids = [root];
  for (let index = 0; index < pids.length; index += 1) {
    for (const [pid, ppid] of rows) if (ppid === pids[index]) pids.push(pid);
  }
  // Only node processes count (not the `sh` a tool may wrap around them).
  return pids
    .map((pid) => rows.find(([candidate]) => candidate === pid)?.[2] ?? 0)
    .filter((kb) => kb > 10_000)
    .map((kb) => Math.round(kb / 1024));
}

/** Until `expected` distinct pids have answered /health/worker (new connection each time). */
async function waitWorkers(base: string, expected: number, started: number): Promise<number> {
  await waitOk(`${base}/health/live`);
  const pids = new Set<number>();
  while (pids.size < expected) {
    if (Date.now() - started > 60_000) throw new Error(`only ${pids.size} of ${expected} workers answered`);
    try {
      const response = await fetch(`${base}/health/worker`, { headers: { connection: 'close' } });
      pids.add(((await response.json()) as { pid: number }).pid);
    } catch {}
  }
  return Date.now() - started;
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((done) => child.once('exit', () => done()));
}

function spawnNode(args: string[], env: Record<string, string>): ChildProcess {
  return spawn(process.execPath, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: 'ignore' });
}

/** A bare Fastify 5 app with one pino line per request (scripts/bench/bare-app.ts). */
export const bare: Setup = {
  name: 'bare Fastify + pino',
  async start(env) {
    const child = spawnNode(['scripts/bench/bare-app.ts'], { ...env, HOST: '127.0.0.1' });
    const base = `http://127.0.0.1:${env.PORT}`;
    const readyMs = await waitOk(`${base}/health/live`);
    return {
      base,
      readyMs,
      rssMb: () => treeRssMb(child.pid as number),
      stop: async () => {
        child.kill('SIGTERM');
        await exited(child);
      },
    };
  },
};

/** This app: `node dist/main.js` with LEVEL and the rest from `settings`. */
export function ours(name: string, settings: Record<string, string>): Setup {
  return {
    name,
    async start(env) {
      const started = Date.now();
      const child = spawnNode(['dist/main.js'], { ...env, ...settings });
      const base = `http://127.0.0.1:${env.PORT}`;
      const workers = settings.LEVEL === '1' ? 1 : Number(settings.WORKERS);
      const readyMs = await waitWorkers(base, workers, started);
      return {
        base,
        readyMs,
        rssMb: () => treeRssMb(child.pid as number),
        reload: async () => void child.kill('SIGHUP'),
        stop: async () => {
          child.kill('SIGTERM');
          await exited(child);
        },
      };
    },
  };
}

/** PM2 cluster mode, `pm2 start dist/main.js -i N`: each instance is a LEVEL=1 server. */
export function pm2(workers: number): Setup {
  return {
    name: `PM2 cluster -i ${workers}`,
    async start(env) {
      const home = mkdtempSync(join(tmpdir(), 'pm2-bench-'));
      const run = (args: string[]) =>
        execFileSync(join(BIN, 'pm2'), args, {
          cwd: ROOT,
          env: { ...process.env, ...env, LEVEL: '1', PM2_HOME: home },
          encoding: 'utf8',
        });
      const started = Date.now();
      run(['start', 'dist/main.js', '-i', String(workers), '--name', 'bench', '--kill-timeout', '30000']);
      const base = `http://127.0.0.1:${env.PORT}`;
      const readyMs = await waitWorkers(base, workers, started);
      const daemon = Number(readFileSync(join(home, 'pm2.pid'), 'utf8'));
      return {
        base,
        readyMs,
        rssMb: () => treeRssMb(daemon),
        reload: async () => {
          spawn(join(BIN, 'pm2'), ['reload', 'bench'], {
            cwd: ROOT,
            env: { ...process.env, ...env, LEVEL: '1', PM2_HOME: home },
            stdio: 'ignore',
          });
        },
        stop: async () => {
          try {
            run(['kill']);
          } catch {}
          rmSync(home, { recursive: true, force: true });
        },
      };
    },
  };
}

/**
 * Platformatic Watt (`wattpm start`, production mode) running the same dist/main.js as a
 * @platformatic/node application with `workers` worker threads; Watt sets reusePort on their
 * listen() itself (its `reuseTcpPorts`, on by default).
 */
export function watt(workers: number): Setup {
  return {
    name: `Watt, ${workers} workers`,
    async start(env) {
      const dir = mkdtempSync(join(tmpdir(), 'watt-bench-'));
      writeFileSync(
        join(dir, 'watt.json'),
        JSON.stringify({
          $schema: 'https://schemas.platformatic.dev/@platformatic/node/3.65.0.json',
          module: '@platformatic/node',
          node: { main: join(ROOT, 'dist/main.js') },
          runtime: {
            server: { hostname: '127.0.0.1', port: Number(env.PORT) },
            workers,
            logger: { level: 'warn' },
          },
        }),
      );
      const child = spawn(join(BIN, 'wattpm'), ['start', dir], {
        cwd: dir,
        env: { ...process.env, ...env, LEVEL: '1' },
        stdio: 'ignore',
      });
      const base = `http://127.0.0.1:${env.PORT}`;
      const readyMs = await waitOk(`${base}/health/ready`);
      await sleep(500); // every worker thread listening
      return {
        base,
        readyMs,
        rssMb: () => treeRssMb(child.pid as number),
        reload: async () => {
          spawn(join(BIN, 'wattpm'), ['restart', String(child.pid)], { cwd: dir, stdio: 'ignore' });
        },
        stop: async () => {
          child.kill('SIGTERM');
          await exited(child);
          rmSync(dir, { recursive: true, force: true });
        },
      };
    },
  };
}
