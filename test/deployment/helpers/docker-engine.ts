/**
 * A real Docker engine for the container tests. As root with Debian's dockerd installed, the tests start
 * their own engine (own socket, data root and exec root; never the machine's default socket), keep its
 * data root (built images, build cache) under CACHE_DIR between runs, and put back the two host settings
 * dockerd changes in iptables mode (FORWARD policy, ip_forward) when it stops. CONTAINER_TEST_ENGINE=system
 * uses the engine the docker CLI talks to already (a developer's Docker; Swarm tests then skip).
 * One test file at a time holds the engine (a lock directory), so files never share or fight over it.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const CACHE_DIR = process.env.CONTAINER_TEST_CACHE ?? '/var/cache/node-levels-starter';
/** Debian's 20.10 client and compose v1: a newer docker client earlier on PATH may lack what they need. */
const DOCKER = existsSync('/usr/bin/docker') ? '/usr/bin/docker' : 'docker';
const COMPOSE = existsSync('/usr/bin/docker-compose') ? '/usr/bin/docker-compose' : 'docker-compose';
const DOCKERD = ['/usr/sbin/dockerd', '/usr/bin/dockerd'].find((path) => existsSync(path));
/** Short: Docker puts unix sockets under the exec root, and their paths are limited to 108 bytes. */
const EXEC_ROOT = '/run/nls-docker';
const LOCK_DIR = join(CACHE_DIR, 'engine.lock');

export interface CommandResult {
  stdout: string;
  stderr: string;
}

export interface Engine {
  /** `docker version` of the server, e.g. 20.10.24+dfsg1. */
  version: string;
  /** True when the tests started this engine themselves (Swarm may be initialised on it). */
  own: boolean;
  env: NodeJS.ProcessEnv;
  docker(args: string[], options?: { timeoutMs?: number; input?: string }): Promise<CommandResult>;
  /** Like docker() but streams the output to the test log with a prefix (slow builds show progress). */
  dockerStreamed(args: string[], label: string): Promise<void>;
  compose(project: string, args: string[], env?: Record<string, string>): Promise<CommandResult>;
  stop(): Promise<void>;
}

export type EngineOrSkip = { engine: Engine; skip?: undefined } | { engine?: undefined; skip: string };

function log(message: string): void {
  process.stdout.write(`[docker-engine] ${message}\n`);
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** One holder at a time; a lock left by a dead process is taken over. */
async function acquireLock(timeoutMs = 30 * 60_000): Promise<void> {
  mkdirSync(CACHE_DIR, { recursive: true });
  const deadline = Date.now() + timeoutMs;
  let said = false;
  for (;;) {
    try {
      mkdirSync(LOCK_DIR);
      writeFileSync(join(LOCK_DIR, 'pid'), String(process.pid));
      return;
    } catch {
      const holder = Number(readFileSyncSafe(join(LOCK_DIR, 'pid')));
      if (holder && !processAlive(holder)) {
        rmSync(LOCK_DIR, { recursive: true, force: true });
        continue;
      }
      if (Date.now() > deadline) throw new Error(`the container-test engine is held by pid ${holder}`);
      if (!said) log(`waiting for another test (pid ${holder}) to release the engine`);
      said = true;
      await sleep(1000);
    }
  }
}

function readFileSyncSafe(path: string): string {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return '';
  }
}

function releaseLock(): void {
  if (readFileSyncSafe(join(LOCK_DIR, 'pid')) === String(process.pid)) rmSync(LOCK_DIR, { recursive: true });
}

/**
 * Hold the engine's lock without starting it, for a test that must not overlap a test dockerd: the
 * engine adds and removes network interfaces, and Chromium aborts page loads with
 * ERR_NETWORK_CHANGED when it sees that. Resolves with the release. Where the cache directory cannot
 * be made (not root), no test engine can run either, and there is nothing to hold.
 */
export async function holdEngineLock(): Promise<() => void> {
  try {
    mkdirSync(CACHE_DIR, { recursive: true });
  } catch {
    return () => {};
  }
  await acquireLock();
  return releaseLock;
}

interface HostNetworkState {
  forwardPolicy: string | undefined;
  ipForward: string;
}

async function hostNetworkState(): Promise<HostNetworkState> {
  const rules = await run('iptables', ['-S', 'FORWARD']).catch(() => ({ stdout: '' }));
  return {
    forwardPolicy: /^-P FORWARD (\w+)/m.exec(rules.stdout)?.[1],
    ipForward: readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim(),
  };
}

async function restoreHostNetwork(state: HostNetworkState): Promise<void> {
  if (state.forwardPolicy) await run('iptables', ['-P', 'FORWARD', state.forwardPolicy]).catch(() => {});
  writeFileSync('/proc/sys/net/ipv4/ip_forward', state.ipForward);
}

function makeEngine(
  env: NodeJS.ProcessEnv,
  version: string,
  own: boolean,
  stop: () => Promise<void>,
): Engine {
  const docker = async (args: string[], options: { timeoutMs?: number; input?: string } = {}) => {
    const promise = run(DOCKER, args, {
      env,
      maxBuffer: 64 * 1024 * 1024,
      timeout: options.timeoutMs ?? 10 * 60_000,
    });
    if (options.input !== undefined) promise.child.stdin?.end(options.input);
    try {
      return await promise;
    } catch (error) {
      const failed = error as Error & { stderr?: string };
      throw new Error(`docker ${args.join(' ')} failed: ${failed.stderr || failed.message}`);
    }
  };
  return {
    version,
    own,
    env,
    docker,
    dockerStreamed: (args, label) => streamed(DOCKER, args, env, label),
    compose: async (project, args, extraEnv = {}) => {
      try {
        return await run(COMPOSE, ['--project-name', project, ...args], {
          env: { ...env, ...extraEnv },
          maxBuffer: 64 * 1024 * 1024,
          timeout: 10 * 60_000,
        });
      } catch (error) {
        const failed = error as Error & { stderr?: string };
        throw new Error(`docker-compose ${args.join(' ')} failed: ${failed.stderr || failed.message}`);
      }
    },
    stop,
  };
}

function streamed(command: string, args: string[], env: NodeJS.ProcessEnv, label: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let tail = '';
    const forward = (chunk: Buffer) => {
      const text = chunk.toString('utf8');
      tail = (tail + text).slice(-4000);
      for (const line of text.split('\n')) if (line.trim()) process.stdout.write(`[${label}] ${line}\n`);
    };
    child.stdout.on('data', forward);
    child.stderr.on('data', forward);
    child.once('error', reject);
    child.once('exit', (code) =>
      code === 0
        ? resolve()
        : reject(new Error(`${label}: ${command} ${args.join(' ')} exited ${code}\n${tail}`)),
    );
  });
}

async function serverVersion(env: NodeJS.ProcessEnv): Promise<string> {
  const { stdout } = await run(DOCKER, ['version', '--format', '{{.Server.Version}}'], {
    env,
    timeout: 5000,
  });
  return stdout.trim();
}

/** The machine's engine, as the docker CLI finds it (DOCKER_HOST or the default socket). */
async function systemEngine(): Promise<EngineOrSkip> {
  const env = { ...process.env };
  try {
    const version = await serverVersion(env);
    log(`using the system Docker engine ${version}`);
    return { engine: makeEngine(env, version, false, async () => {}) };
  } catch (error) {
    return { skip: `no Docker engine answers the docker CLI: ${(error as Error).message.split('\n')[0]}` };
  }
}

/** Start (or, with CONTAINER_TEST_ENGINE=system, find) the engine; a reason to skip when none can run. */
export async function startEngine(): Promise<EngineOrSkip> {
  if (process.env.CONTAINER_TEST_ENGINE === 'system') return systemEngine();
  const reason = ownEngineSkipReason();
  if (reason) return { skip: reason };
  return startOwnEngine();
}

/** Why this process cannot start its own engine (undefined: it can), known without starting it. */
export function ownEngineSkipReason(): string | undefined {
  if (process.getuid?.() !== 0)
    return 'starting a Docker engine needs root (or CONTAINER_TEST_ENGINE=system)';
  if (!DOCKERD) return 'dockerd is not installed (apt-get install docker.io)';
  return undefined;
}

async function startOwnEngine(): Promise<EngineOrSkip> {
  await acquireLock();
  const socket = join(EXEC_ROOT, 'docker.sock');
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    DOCKER_HOST: `unix://${socket}`,
    DOCKER_BUILDKIT: '1',
    // Compose v1 builds through docker-py, not the CLI, unless told; the tests build with the CLI.
    COMPOSE_DOCKER_CLI_BUILD: '0',
    PATH: `/usr/bin:/usr/sbin:${process.env.PATH ?? ''}`,
  };
  const hostState = await hostNetworkState();
  const dataRoot = join(CACHE_DIR, 'docker');
  mkdirSync(dataRoot, { recursive: true });
  mkdirSync(EXEC_ROOT, { recursive: true });
  const logFd = openSync(join(CACHE_DIR, 'dockerd.log'), 'a');
  const pidFile = join(EXEC_ROOT, 'dockerd.pid');
  rmSync(pidFile, { force: true });
  const started = Date.now();
  const daemon: ChildProcess = spawn(
    DOCKERD as string,
    ['--data-root', dataRoot, '--exec-root', EXEC_ROOT, '-H', `unix://${socket}`, '--pidfile', pidFile],
    { stdio: ['ignore', logFd, logFd], detached: true },
  );
  daemon.unref();
  const exited = new Promise<void>((resolve) => daemon.once('exit', () => resolve()));
  let version = '';
  while (!version) {
    version = await serverVersion(env).catch(() => '');
    if (version) break;
    if (daemon.exitCode !== null || Date.now() - started > 60_000) {
      daemon.kill('SIGKILL');
      await restoreHostNetwork(hostState);
      releaseLock();
      return { skip: `dockerd did not start (see ${join(CACHE_DIR, 'dockerd.log')})` };
    }
    await sleep(200);
  }
  log(`dockerd ${version} (pid ${daemon.pid}) up in ${Date.now() - started} ms, socket ${socket}`);
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await run(DOCKER, ['swarm', 'leave', '--force'], { env }).catch(() => {});
    daemon.kill('SIGTERM');
    const timeout = sleep(60_000).then(() => daemon.kill('SIGKILL'));
    await Promise.race([exited, timeout]);
    await restoreHostNetwork(hostState);
    releaseLock();
    log(
      `dockerd stopped; FORWARD policy ${hostState.forwardPolicy ?? '(none)'} and ip_forward ${hostState.ipForward} restored`,
    );
  };
  return { engine: makeEngine(env, version, true, stop) };
}
