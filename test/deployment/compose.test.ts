/**
 * docker-compose.yml, deployment/docker-compose.prod.yml and deployment/swarm/stack.yml. No Docker
 * engine runs here: the files are checked by Docker's own parsers where installed (`docker-compose
 * config`, Debian's 1.29; `docker stack config`), always against the Compose Specification JSON schema
 * (fixtures/compose-spec.schema.json), and for what they must say, read as Compose reads them.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ajv } from 'ajv';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { loadSettings, trustProxyOf } from '../../src/settings.js';
import { ROOT } from '../helpers/process.js';
import {
  type ComposeFile,
  type ComposeService,
  durationSeconds,
  envExampleNames,
  interpolate,
  interpolatedNames,
  loadCompose,
  settingDefault,
} from './helpers/compose.js';

const BASE = join(ROOT, 'docker-compose.yml');
const PROD = join(ROOT, 'deployment/docker-compose.prod.yml');
const STACK = join(ROOT, 'deployment/swarm/stack.yml');
const FILES = [BASE, PROD, STACK];
const PROD_ENV = { DATABASE_URL: 'postgres://app:secret@postgres:5432/app', REDIS_URL: 'redis://redis:6379' };
// Only the API signs tokens: workers and migrations run without the key. An AUTH_SECRET set by hand
// wins over the generated one (docker-compose.yml's secrets-init).
const API_ENV = { ...PROD_ENV, AUTH_SECRET: 'compose-test-signing-key-0123456789-abcdef' };

const base = loadCompose(BASE);
const prod = loadCompose(PROD, PROD_ENV);
const stack = loadCompose(STACK, PROD_ENV);
const APP_IMAGE = /node-levels-starter/;
const appServices = (file: ComposeFile) =>
  Object.entries(file.services).filter(([, service]) => APP_IMAGE.test(service.image ?? ''));
const service = (file: ComposeFile, name: string): ComposeService => {
  const found = file.services[name];
  if (!found) throw new Error(`no service ${name}`);
  return found;
};
/** Every string value of a compose file as written (what Compose interpolates; comments are not). */
function rawStrings(path: string): string[] {
  const strings: string[] = [];
  const walk = (value: unknown): void => {
    if (typeof value === 'string') strings.push(value);
    else if (Array.isArray(value)) value.forEach(walk);
    else if (value && typeof value === 'object') Object.values(value).forEach(walk);
  };
  walk(parse(readFileSync(path, 'utf8'), { merge: true }));
  return strings;
}
const command = (svc: ComposeService) => (Array.isArray(svc.command) ? svc.command : undefined);
const defaultSeconds = (name: 'GRACEFUL_TIMEOUT' | 'TASK_SHUTDOWN_TIMEOUT' | 'KEEP_ALIVE_TIMEOUT') =>
  settingDefault(name) as number;

/**
 * Deployment-only, not app settings: the host side of published ports (docker-compose.yml header) and
 * the image the Swarm stack runs (stack.yml header).
 */
const DEPLOY_VARIABLES = [
  'APP_IMAGE',
  'API_HOST_PORT',
  'PROXY_HOST_PORT',
  'TRAEFIK_HOST_PORT',
  'PROMETHEUS_HOST_PORT',
  'GRAFANA_HOST_PORT',
  'OTLP_HOST_PORT',
  'JAEGER_HOST_PORT',
];

const dockerCompose = ['/usr/bin/docker-compose', '/usr/local/bin/docker-compose'].find((path) =>
  existsSync(path),
);
// `docker stack config` (Docker CLI 20.10 and older lack it) renders a stack file without an engine.
const docker = ['/usr/local/bin/docker', '/usr/bin/docker'].find(
  (path) => existsSync(path) && spawnSync(path, ['stack', 'config', '--help']).status === 0,
);

describe('compose variables', () => {
  it('every variable the compose and stack files interpolate is a setting listed in .env.example', () => {
    const names = envExampleNames();
    const used = [...new Set(FILES.flatMap((file) => interpolatedNames(rawStrings(file).join('\n'))))].sort();
    expect(used).toEqual(expect.arrayContaining(['LEVEL', 'DATABASE_URL', 'REDIS_URL']));
    expect(
      used.filter((name) => !names.has(name) && !DEPLOY_VARIABLES.includes(name)),
      `used: ${used.join(', ')}`,
    ).toEqual([]);
  });

  it('every environment variable given to the app image is a setting listed in .env.example', () => {
    const names = envExampleNames();
    for (const file of [base, prod, stack]) {
      for (const [name, svc] of Object.entries(file.services)) {
        if (!APP_IMAGE.test(svc.image ?? '') && file !== prod) continue;
        if (file === prod && !appServices(base).some(([appName]) => appName === name)) continue;
        const unknown = Object.keys(svc.environment ?? {}).filter((key) => !names.has(key));
        expect(unknown, `${name}`).toEqual([]);
      }
    }
  });
});

describe('compose files against the Compose Specification schema', () => {
  const schema = JSON.parse(
    readFileSync(join(import.meta.dirname, 'fixtures/compose-spec.schema.json'), 'utf8'),
  );
  delete schema.$schema; // draft-07 under an https id Ajv does not know; the keywords are draft-07
  const validate = new Ajv({ strict: false, allErrors: true }).compile(schema);

  it.each([
    ['docker-compose.yml', base],
    ['deployment/docker-compose.prod.yml', prod],
    ['deployment/swarm/stack.yml', stack],
  ])('%s is valid', (_name, file) => {
    expect(validate(file), JSON.stringify(validate.errors, null, 2)).toBe(true);
  });

  it('the schema check can fail: an unknown key and a bad depends_on condition are reported', () => {
    const broken = structuredClone(base);
    (broken.services.api as Record<string, unknown>).restart_policy = 'always';
    (service(broken, 'worker').depends_on as Record<string, { condition: string }>).migrate = {
      condition: 'done',
    };
    expect(validate(broken)).toBe(false);
    expect(JSON.stringify(validate.errors)).toContain('restart_policy');
  });
});

describe.skipIf(!dockerCompose)(`docker-compose config (${dockerCompose})`, () => {
  const emptyEnvFile = join(tmpdir(), 'compose-test-empty.env');
  writeFileSync(emptyEnvFile, '');
  // A clean environment and an empty env file: what `docker compose up` sees with no .env.
  const run = (args: string[], env: Record<string, string> = {}) =>
    spawnSync(dockerCompose as string, ['--env-file', emptyEnvFile, ...args], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: tmpdir(), ...env },
      encoding: 'utf8',
    });

  it('accepts docker-compose.yml with no .env, and with both profiles', () => {
    // docker-compose 1.29 lists every service here whatever the profiles; `up` honours them.
    const every = [
      'api',
      'api-replicas',
      'grafana',
      'jaeger',
      'migrate',
      'nginx',
      'otel-collector',
      'postgres',
      'prometheus',
      'redis',
      'secrets-init',
      'traefik',
      'worker',
    ];
    for (const profiles of [[], ['--profile', 'proxy', '--profile', 'traefik', '--profile', 'monitoring']]) {
      const result = run([...profiles, '-f', BASE, 'config', '--services']);
      expect(result.status, result.stderr).toBe(0);
      expect(result.stdout.trim().split('\n').sort()).toEqual(every);
    }
  });

  it('interpolates the app environment exactly as these tests read it', () => {
    const result = run(['--profile', 'proxy', '-f', BASE, 'config']);
    expect(result.status, result.stderr).toBe(0);
    const rendered = parse(result.stdout) as ComposeFile;
    for (const name of ['api', 'api-replicas', 'worker', 'migrate']) {
      const ours = Object.fromEntries(
        Object.entries(service(base, name).environment ?? {}).map(([key, value]) => [
          key,
          String(value ?? ''),
        ]),
      );
      expect(service(rendered, name).environment, name).toEqual(ours);
    }
  });

  it('SESSION_AFFINITY picks the nginx balancing file that exists in the repository, and reaches the app', () => {
    for (const mode of ['false', 'true']) {
      const result = run(
        ['--profile', 'proxy', '-f', BASE, 'config'],
        mode === 'false' ? {} : { SESSION_AFFINITY: mode },
      );
      expect(result.status, result.stderr).toBe(0);
      const rendered = parse(result.stdout) as ComposeFile;
      const mounts = (service(rendered, 'nginx').volumes ?? []) as Array<
        string | { source: string; target: string }
      >;
      const affinity = mounts
        .map((mount) =>
          typeof mount === 'string' ? { source: mount.split(':')[0], target: mount.split(':')[1] } : mount,
        )
        .find((mount) => mount.target === '/etc/nginx/affinity.conf');
      expect(affinity?.source).toBe(join(ROOT, `deployment/nginx/affinity/${mode}.conf`));
      expect(statSync(affinity?.source as string).isFile()).toBe(true);
      expect(service(rendered, 'api').environment?.SESSION_AFFINITY).toBe(mode);
    }
  });

  it('the production override refuses to render without DATABASE_URL and REDIS_URL, and renders with them (the key generated, or AUTH_SECRET)', () => {
    const missing = run(['-f', BASE, '-f', PROD, 'config'], { REDIS_URL: PROD_ENV.REDIS_URL });
    expect(missing.status).not.toBe(0);
    expect(missing.stderr).toContain('DATABASE_URL');
    const ok = run(['--profile', 'proxy', '-f', BASE, '-f', PROD, 'config'], PROD_ENV);
    expect(ok.status, ok.stderr).toBe(0);
    const rendered = parse(ok.stdout) as ComposeFile;
    expect(service(rendered, 'api').environment?.NODE_ENV).toBe('production');
    expect(service(rendered, 'api').environment?.DATABASE_URL).toBe(PROD_ENV.DATABASE_URL);
    expect(service(rendered, 'api').environment?.LEVEL).toBe('1');
    expect(service(rendered, 'api').environment?.AUTH_SECRET_FILE).toBe('/secrets/auth_secret');
    expect(service(rendered, 'api-replicas').deploy?.replicas).toBe(3);
    const keyed = run(['-f', BASE, '-f', PROD, 'config'], API_ENV);
    expect(keyed.status, keyed.stderr).toBe(0);
    expect(service(parse(keyed.stdout) as ComposeFile, 'api').environment?.AUTH_SECRET).toBe(
      API_ENV.AUTH_SECRET,
    );
  });
});

describe.skipIf(!docker)(`docker stack config (${docker})`, () => {
  it('accepts the swarm stack, and refuses it without DATABASE_URL', () => {
    const env = { PATH: process.env.PATH ?? '', HOME: tmpdir() };
    const output = execFileSync(docker as string, ['stack', 'config', '-c', STACK], {
      env: { ...env, ...API_ENV },
      encoding: 'utf8',
    });
    const rendered = parse(output) as ComposeFile;
    expect(service(rendered, 'api').deploy?.update_config).toMatchObject({
      order: 'start-first',
      failure_action: 'rollback',
    });
    const missing = spawnSync(docker as string, ['stack', 'config', '-c', STACK], {
      env: { ...env, REDIS_URL: PROD_ENV.REDIS_URL },
      encoding: 'utf8',
    });
    expect(missing.status).not.toBe(0);
    expect(missing.stderr).toContain('DATABASE_URL');
  });
});

describe('docker-compose.yml', () => {
  const defaultServices = Object.entries(base.services).filter(([, svc]) => !svc.profiles);

  it('brings up api, worker, postgres, redis, a one-shot migrate and a one-shot secrets-init by default (no profile)', () => {
    expect(defaultServices.map(([name]) => name).sort()).toEqual([
      'api',
      'migrate',
      'postgres',
      'redis',
      'secrets-init',
      'worker',
    ]);
    expect(service(base, 'api').command).toBeUndefined(); // the image's CMD: node dist/main.js
    expect(command(service(base, 'worker'))).toEqual(['node', 'dist/worker.js']);
    expect(command(service(base, 'migrate'))).toEqual(['node', 'dist/migrate.js']);
    for (const [, svc] of appServices(base)) expect(svc.build).toEqual({ context: '.' });
  });

  it('api and worker wait for migrations to complete and for healthy PostgreSQL and Redis; the API for its key too', () => {
    const stores = {
      migrate: { condition: 'service_completed_successfully' },
      postgres: { condition: 'service_healthy' },
      redis: { condition: 'service_healthy' },
    };
    for (const name of ['api', 'api-replicas']) {
      expect(service(base, name).depends_on, name).toEqual({
        'secrets-init': { condition: 'service_completed_successfully' },
        ...stores,
      });
    }
    expect(service(base, 'worker').depends_on).toEqual(stores);
    expect(service(base, 'migrate').depends_on).toEqual({ postgres: { condition: 'service_healthy' } });
    expect(service(base, 'migrate').restart).toBe('no');
    expect(service(base, 'migrate').healthcheck).toEqual({ disable: true });
  });

  it('postgres and redis have health checks; redis keeps jobs (AOF) and never evicts them', () => {
    expect(service(base, 'postgres').healthcheck?.test).toEqual(['CMD-SHELL', 'pg_isready -U app -d app']);
    expect(service(base, 'redis').healthcheck?.test).toEqual(['CMD', 'redis-cli', 'ping']);
    const redis = (command(service(base, 'redis')) ?? []).join(' ');
    expect(redis).toContain('--appendonly yes');
    expect(redis).toContain('--maxmemory-policy noeviction');
    const url = new URL(service(base, 'api').environment?.DATABASE_URL as string);
    const pg = service(base, 'postgres').environment ?? {};
    expect([url.hostname, url.username, url.password, url.pathname]).toEqual([
      'postgres',
      pg.POSTGRES_USER,
      pg.POSTGRES_PASSWORD,
      `/${pg.POSTGRES_DB}`,
    ]);
    expect(new URL(service(base, 'worker').environment?.REDIS_URL as string).hostname).toBe('redis');
  });

  it('every long-running service restarts by itself and has CPU and memory limits', () => {
    for (const [name, svc] of Object.entries(base.services)) {
      expect(svc.deploy?.resources?.limits?.cpus, name).toBeDefined();
      expect(svc.deploy?.resources?.limits?.memory, name).toBeDefined();
      if (name === 'migrate' || name === 'secrets-init') expect(svc.restart, name).toBe('no');
      else expect(svc.restart, name).toMatch(/^(unless-stopped|always)$/);
    }
  });

  it('stop grace periods outlast the drains: GRACEFUL_TIMEOUT for the API, TASK_SHUTDOWN_TIMEOUT + 5 s for workers', () => {
    for (const name of ['api', 'api-replicas']) {
      const graceful = Number(service(base, name).environment?.GRACEFUL_TIMEOUT);
      expect(graceful).toBe(defaultSeconds('GRACEFUL_TIMEOUT'));
      expect(durationSeconds(service(base, name).stop_grace_period ?? '0s')).toBeGreaterThan(graceful);
    }
    const shutdown = Number(service(base, 'worker').environment?.TASK_SHUTDOWN_TIMEOUT);
    expect(shutdown).toBe(defaultSeconds('TASK_SHUTDOWN_TIMEOUT'));
    expect(durationSeconds(service(base, 'worker').stop_grace_period ?? '0s')).toBeGreaterThan(shutdown + 5);
  });

  it('LEVEL and the other app settings pass through, with defaults, to every API container', () => {
    const text = readFileSync(BASE, 'utf8');
    // biome-ignore lint/suspicious/noTemplateCurlyInString: Compose interpolation syntax, not a JS template
    expect(text).toContain('LEVEL: ${LEVEL:-1}');
    for (const name of ['api', 'api-replicas']) {
      const env = service(base, name).environment ?? {};
      expect(env.LEVEL).toBe('1');
      expect(env.NODE_ENV).toBe('production');
      expect(env.KEEP_ALIVE_TIMEOUT).toBe(String(defaultSeconds('KEEP_ALIVE_TIMEOUT')));
      expect(env.TASK_WORKERS).toBe('0');
    }
    const leveled = loadCompose(BASE, { LEVEL: '3', WORKERS: '4' });
    expect(service(leveled, 'api').environment).toMatchObject({ LEVEL: '3', WORKERS: '4' });
  });

  it('health checks ask the liveness path on the port each process serves', () => {
    const test = (svc: ComposeService) => (Array.isArray(svc.healthcheck?.test) ? svc.healthcheck.test : []);
    expect(test(service(base, 'api')).join(' ')).toMatch(/process\.env\.PORT\|\|3000.*\/health\/live/);
    expect(test(service(base, 'worker')).join(' ')).toMatch(
      /process\.env\.TASK_WORKER_HEALTH_PORT\|\|3001.*\/health\/live/,
    );
    expect(settingDefault('PORT')).toBe(3000);
    expect(settingDefault('TASK_WORKER_HEALTH_PORT')).toBe(3001);
  });

  it('profile proxy: nginx in front of the API containers; replicas have no container_name or host port', () => {
    const replicas = service(base, 'api-replicas');
    expect(replicas.profiles).toEqual(['proxy', 'traefik']);
    expect(replicas.container_name).toBeUndefined();
    expect(replicas.ports).toBeUndefined();
    expect(Number(replicas.deploy?.replicas)).toBeGreaterThanOrEqual(2);
    expect(replicas.networks?.default?.aliases).toContain('api');
    // Only loopback for the single default API container.
    expect(service(base, 'api').ports).toEqual(['127.0.0.1:3000:3000']);
    const nginx = service(base, 'nginx');
    expect(nginx.profiles).toEqual(['proxy']);
    expect(nginx.volumes).toEqual([
      './deployment/nginx:/etc/nginx:ro',
      './deployment/nginx/affinity/false.conf:/etc/nginx/affinity.conf:ro', // SESSION_AFFINITY unset
    ]);
    const upstream = readFileSync(join(ROOT, 'deployment/nginx/upstream.conf'), 'utf8');
    const host = /^\s*server ([\w-]+):(\d+) /m.exec(upstream);
    expect(host?.[1]).toBe('api');
    expect(Number(host?.[2])).toBe(settingDefault('PORT'));
    expect(nginx.depends_on).toMatchObject({ 'api-replicas': { condition: 'service_healthy' } });
  });

  it('profile traefik: Traefik v3 with the Docker provider, only labelled containers exposed', () => {
    const traefik = service(base, 'traefik');
    expect(traefik.profiles).toEqual(['traefik']);
    expect(traefik.image).toMatch(/^traefik:v3(\.|$)/);
    const flags = command(traefik) ?? [];
    expect(flags).toContain('--providers.docker=true');
    expect(flags).toContain('--providers.docker.exposedbydefault=false');
    const idle = flags.find((flag) =>
      flag.startsWith('--serverstransport.forwardingtimeouts.idleconntimeout='),
    );
    expect(durationSeconds(idle?.split('=')[1] ?? '')).toBeLessThan(defaultSeconds('KEEP_ALIVE_TIMEOUT'));
    expect(traefik.volumes).toEqual(['/var/run/docker.sock:/var/run/docker.sock:ro']);
  });

  it('AUTH_SECRET: secrets-init writes a generated key to the auth-secret volume, the API containers only read it', () => {
    const init = service(base, 'secrets-init');
    expect(init.image).toBe(service(base, 'api').image); // the app image
    expect(command(init)).toEqual(['node', 'dist/secrets-init.js', '/secrets/auth_secret']);
    expect(init.volumes).toEqual(['auth-secret:/secrets']);
    expect(init.network_mode).toBe('none');
    expect(init.healthcheck).toEqual({ disable: true });
    expect(init.environment ?? {}).not.toHaveProperty('AUTH_SECRET');
    for (const name of ['api', 'api-replicas']) {
      const api = service(base, name);
      expect(api.volumes, name).toEqual(['auth-secret:/secrets:ro']);
      expect(api.environment?.AUTH_SECRET_FILE, name).toBe('/secrets/auth_secret');
      expect(api.environment?.AUTH_SECRET, name).toBe(''); // unset: the file is read
    }
    for (const name of ['worker', 'migrate']) {
      expect(service(base, name).volumes, name).toBeUndefined();
      expect(service(base, name).environment ?? {}, name).not.toHaveProperty('AUTH_SECRET_FILE');
    }
    expect(Object.keys(base.volumes as object)).toContain('auth-secret');
    // An AUTH_SECRET in the environment or .env still reaches the API, and wins over the file.
    const keyed = loadCompose(BASE, { AUTH_SECRET: API_ENV.AUTH_SECRET });
    expect(service(keyed, 'api').environment?.AUTH_SECRET).toBe(API_ENV.AUTH_SECRET);
  });

  it('TRUST_PROXY: the private ranges Docker networks use (nginx and Traefik connect from them), never true', () => {
    for (const name of ['api', 'api-replicas']) {
      const value = String(service(base, name).environment?.TRUST_PROXY);
      expect(value, name).toBe('10.0.0.0/8,172.16.0.0/12,192.168.0.0/16');
      const settings = loadSettings(
        { TRUST_PROXY: value, DATABASE_URL: 'postgres://app:app@postgres:5432/app' },
        { envFile: null },
      );
      expect(trustProxyOf(settings)).toEqual({ kind: 'addresses', entries: value.split(',') });
    }
    expect(String(service(stack, 'api').environment?.TRUST_PROXY)).toBe('false');
  });

  it('app containers run hardened: read-only root with a /tmp tmpfs, no capabilities, no privilege gain', () => {
    for (const [name, svc] of appServices(base)) {
      expect(svc.read_only, name).toBe(true);
      expect(svc.tmpfs, name).toEqual(['/tmp']);
      expect(svc.cap_drop, name).toEqual(['ALL']);
      expect(svc.security_opt, name).toEqual(['no-new-privileges:true']);
    }
  });
});

describe('deployment/docker-compose.prod.yml', () => {
  it('requires DATABASE_URL and REDIS_URL (no development defaults) and runs NODE_ENV=production', () => {
    expect(() => loadCompose(PROD)).toThrow(/DATABASE_URL/);
    for (const name of ['api', 'api-replicas', 'worker', 'migrate']) {
      expect(service(prod, name).environment, name).toMatchObject({ NODE_ENV: 'production', ...PROD_ENV });
    }
    // The key is the base file's: generated by secrets-init (or AUTH_SECRET), never required here.
    for (const name of ['api', 'api-replicas', 'worker', 'migrate'])
      expect(service(prod, name).environment?.AUTH_SECRET, name).toBeUndefined();
    for (const name of Object.keys(prod.services)) {
      expect(base.services[name], `${name} exists in docker-compose.yml`).toBeDefined();
    }
    expect(service(prod, 'postgres').environment?.POSTGRES_PASSWORD_FILE).toBe(
      '/run/secrets/postgres_password',
    );
    // biome-ignore lint/suspicious/noTemplateCurlyInString: Compose interpolation syntax, not a JS template
    expect(interpolate('${LEVEL:-1}', {})).toBe('1');
  });
});

describe('deployment/swarm/stack.yml', () => {
  it('API: replicas, start-first rolling updates that roll back, health check on readiness, grace period', () => {
    const api = service(stack, 'api');
    expect(Number(api.deploy?.replicas)).toBeGreaterThanOrEqual(2);
    expect(api.deploy?.update_config).toMatchObject({ order: 'start-first', failure_action: 'rollback' });
    expect(api.deploy?.rollback_config).toMatchObject({ order: 'start-first' });
    expect(((api.healthcheck?.test ?? []) as string[]).join(' ')).toContain('/health/ready');
    expect(durationSeconds(api.stop_grace_period ?? '0s')).toBeGreaterThan(
      defaultSeconds('GRACEFUL_TIMEOUT'),
    );
    expect(api.environment?.LEVEL).toBe('1');
  });

  it('API: the signing key from the external Docker secret auth_secret, never from the environment', () => {
    const api = service(stack, 'api');
    expect(api.secrets).toEqual(['auth_secret']);
    expect(api.environment?.AUTH_SECRET_FILE).toBe('/run/secrets/auth_secret');
    expect(api.environment).not.toHaveProperty('AUTH_SECRET');
    expect(stack.secrets).toEqual({ auth_secret: { external: true } });
    for (const name of ['worker', 'migrate']) expect(service(stack, name).secrets, name).toBeUndefined();
  });

  it('worker and migrate: health-checked workers with a long grace period, migrations as a job', () => {
    const worker = service(stack, 'worker');
    expect(command(worker)).toEqual(['node', 'dist/worker.js']);
    expect(worker.deploy?.update_config).toMatchObject({ order: 'start-first', failure_action: 'rollback' });
    expect(((worker.healthcheck?.test ?? []) as string[]).join(' ')).toContain('/health/live');
    expect(durationSeconds(worker.stop_grace_period ?? '0s')).toBeGreaterThan(
      defaultSeconds('TASK_SHUTDOWN_TIMEOUT') + 5,
    );
    const migrate = service(stack, 'migrate');
    expect(command(migrate)).toEqual(['node', 'dist/migrate.js']);
    expect(migrate.deploy?.mode).toBe('replicated-job');
    expect(migrate.deploy?.restart_policy).toMatchObject({ condition: 'on-failure' });
  });
});
