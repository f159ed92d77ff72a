/**
 * deployment/traefik (file provider, for hosts) and the Docker-label version in docker-compose.yml.
 * No Traefik binary is available here: the files are parsed and checked for structure, references
 * between routers, services and middlewares, and for paths and ports the app really serves.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { buildTestApp } from '../helpers/app.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { ROOT } from '../helpers/process.js';
import { durationSeconds, loadCompose, settingDefault } from './helpers/compose.js';

type Tree = { [key: string]: unknown };
const DIR = join(ROOT, 'deployment/traefik');
const staticConfig = parse(readFileSync(join(DIR, 'traefik.yml'), 'utf8')) as Tree;
const dynamicText = readFileSync(join(DIR, 'dynamic.yml'), 'utf8');
const dynamic = parse(dynamicText) as Tree;
const http = dynamic.http as {
  routers: Record<
    string,
    { entryPoints: string[]; rule: string; service: string; middlewares?: string[]; priority?: number }
  >;
  services: Record<
    string,
    {
      loadBalancer: {
        servers: Array<{ url: string }>;
        healthCheck: { path: string; interval: string; timeout: string };
      };
    }
  >;
  middlewares: Record<string, Tree>;
};
const KEEP_ALIVE = settingDefault('KEEP_ALIVE_TIMEOUT') as number;
const PORT = settingDefault('PORT') as number;

/** Paths named by Path(`...`) and PathPrefix(`...`) in a router rule. */
function rulePaths(rule: string): string[] {
  return [...rule.matchAll(/Path(?:Prefix)?\(`([^`]+)`\)/g)].map((match) => match[1] as string);
}

/**
 * Docker labels (`traefik.a.b.c=value`) as a tree with lower-case keys, as Traefik reads them. A key
 * that has both a value and children (`sticky.cookie=true` beside `sticky.cookie.name=...`) keeps its
 * value under `$value`.
 */
function labelTree(labels: string[]): Tree {
  const tree: Tree = {};
  const branch = (node: Tree, part: string): Tree => {
    const current = node[part];
    if (current === undefined || typeof current === 'string') {
      node[part] = current === undefined ? {} : { $value: current };
    }
    return node[part] as Tree;
  };
  for (const label of labels) {
    const [key, ...rest] = label.split('=');
    const path = (key as string).toLowerCase().split('.').slice(1);
    let node = tree;
    for (const part of path.slice(0, -1)) node = branch(node, part);
    const leaf = path.at(-1) as string;
    if (typeof node[leaf] === 'object') (node[leaf] as Tree).$value = rest.join('=');
    else node[leaf] = rest.join('=');
  }
  return tree;
}

/**
 * What Traefik's file provider does with dynamic.yml before parsing it, for the one template action the
 * file uses: `{{ if eq (env "NAME") "value" }}...{{ end }}`. Anything else is refused, so a new action
 * in the file fails here instead of going untested.
 */
function renderTemplate(text: string, env: Record<string, string>): string {
  const conditional = /\{\{ if eq \(env "(\w+)"\) "([^"]*)" \}\}([\s\S]*?)\{\{ end \}\}/g;
  const rendered = text.replace(conditional, (_match, name: string, value: string, body: string) =>
    env[name] === value ? body : '',
  );
  if (rendered.includes('{{')) throw new Error(`unsupported template action in dynamic.yml: ${rendered}`);
  return rendered;
}

/** Lower-case keys and string values (arrays comma-joined), so file and label forms compare equal. */
function normalized(value: unknown): unknown {
  if (Array.isArray(value)) return value.join(',');
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value).map(([key, item]) => [key.toLowerCase(), normalized(item)]),
    );
  }
  return String(value);
}

describe('deployment/traefik/traefik.yml (static)', () => {
  it('uses only Traefik v3 static sections and serves HTTP on :80', () => {
    const known = [
      'global',
      'serversTransport',
      'tcpServersTransport',
      'entryPoints',
      'providers',
      'api',
      'metrics',
      'ping',
      'log',
      'accessLog',
      'tracing',
      'hostResolver',
      'certificatesResolvers',
      'experimental',
      'core',
    ];
    expect(Object.keys(staticConfig).filter((key) => !known.includes(key))).toEqual([]);
    const entryPoints = staticConfig.entryPoints as Record<string, { address: string }>;
    expect(entryPoints.web?.address).toBe(':80');
    expect(staticConfig.ping).toBeDefined();
  });

  it('is the edge: X-Forwarded-* from clients are never trusted (not insecure, no trusted IPs)', () => {
    const web = (staticConfig.entryPoints as { web: { forwardedHeaders?: Tree } }).web;
    expect(web.forwardedHeaders).toEqual({ insecure: false, trustedIPs: [] });
  });

  it('loads dynamic.yml with the file provider, watching it', () => {
    const file = (staticConfig.providers as { file: { filename: string; watch: boolean } }).file;
    expect(file.filename.split('/').at(-1)).toBe('dynamic.yml');
    expect(file.watch).toBe(true);
  });

  it('closes idle upstream connections before the app does (idleConnTimeout < KEEP_ALIVE_TIMEOUT)', () => {
    const timeouts = (staticConfig.serversTransport as { forwardingTimeouts: { idleConnTimeout: string } })
      .forwardingTimeouts;
    expect(durationSeconds(timeouts.idleConnTimeout)).toBeLessThan(KEEP_ALIVE);
  });
});

describe('deployment/traefik/dynamic.yml', () => {
  let database: TestDatabase;
  let app: FastifyInstance;

  beforeAll(async () => {
    database = await createTestDatabase();
    // Load shedding off: only routes are checked here, and other work may block the event loop.
    app = await buildTestApp(database.url, { LOAD_SHED_MAX_EVENT_LOOP_DELAY_MS: '0' });
  });
  afterAll(async () => {
    await app?.close();
    await database?.drop();
  });

  it('has only http routers, services and middlewares', () => {
    expect(Object.keys(dynamic)).toEqual(['http']);
    expect(Object.keys(http).sort()).toEqual(['middlewares', 'routers', 'services']);
  });

  it('every router names a defined entry point, service and middlewares; every middleware is used', () => {
    const entryPoints = Object.keys(staticConfig.entryPoints as Tree);
    const used = new Set<string>();
    for (const [name, router] of Object.entries(http.routers)) {
      expect(router.rule, name).toBeTruthy();
      expect(http.services[router.service], `${name} -> service ${router.service}`).toBeDefined();
      for (const entryPoint of router.entryPoints) expect(entryPoints, name).toContain(entryPoint);
      for (const middleware of router.middlewares ?? []) {
        expect(http.middlewares[middleware], `${name} -> middleware ${middleware}`).toBeDefined();
        used.add(middleware);
      }
    }
    expect(Object.keys(http.middlewares).sort()).toEqual([...used].sort());
  });

  it('defines retry, rateLimit and headers middlewares (Traefik v3 names), each of one known kind', () => {
    const kinds = Object.values(http.middlewares).map((middleware) => Object.keys(middleware));
    for (const kind of kinds) expect(kind).toHaveLength(1);
    const flat = kinds.flat();
    expect(flat).toEqual(expect.arrayContaining(['retry', 'rateLimit', 'headers', 'ipAllowList']));
    expect(flat).not.toContain('ipWhiteList'); // removed in v3
    const byKind = Object.fromEntries(
      Object.values(http.middlewares).map((m) => [Object.keys(m)[0], Object.values(m)[0]]),
    );
    expect((byKind.retry as { attempts: number }).attempts).toBeGreaterThanOrEqual(1);
    expect((byKind.rateLimit as { average: number; burst: number }).average).toBeGreaterThan(0);
    expect((byKind.headers as { contentTypeNosniff: boolean }).contentTypeNosniff).toBe(true);
    // The main router retries and limits; health probes are never rate limited.
    expect(http.routers.app?.middlewares).toEqual(expect.arrayContaining(['app-retry', 'app-ratelimit']));
    expect(http.routers['app-health']?.middlewares).not.toContain('app-ratelimit');
  });

  it('load balances over app servers on the app port, health-checked on /health/ready', () => {
    const { servers, healthCheck } = (http.services.app as (typeof http.services)[string]).loadBalancer;
    expect(servers.length).toBeGreaterThanOrEqual(2);
    for (const server of servers) {
      const url = new URL(server.url);
      expect(url.protocol).toBe('http:');
      expect(Number(url.port)).toBe(PORT);
    }
    expect(healthCheck.path).toBe('/health/ready');
    expect(durationSeconds(healthCheck.timeout)).toBeLessThan(durationSeconds(healthCheck.interval));
  });

  it('every path in a router rule and the health-check path is served by the app', async () => {
    const paths = new Set<string>([http.services.app?.loadBalancer.healthCheck.path as string]);
    for (const router of Object.values(http.routers))
      for (const path of rulePaths(router.rule)) paths.add(path);
    expect(paths.size).toBeGreaterThan(4);
    for (const path of paths) {
      const response = await app.inject({ method: 'GET', url: path === '/' ? '/openapi.json' : path });
      expect(response.statusCode, path).toBe(200);
    }
    expect((await app.inject({ method: 'GET', url: '/health/nope' })).statusCode).toBe(404);
  });
});

/** dynamic.yml's load balancer as Traefik renders the template with this environment. */
const loadBalancer = (env: Record<string, string>) =>
  (parse(renderTemplate(dynamicText, env)) as { http: { services: { app: { loadBalancer: Tree } } } }).http
    .services.app.loadBalancer;

describe('SESSION_AFFINITY in dynamic.yml (a Go template Traefik renders with its environment)', () => {
  it('true: a sticky cookie, HttpOnly, SameSite=Lax; false or unset: no stickiness', () => {
    expect(loadBalancer({ SESSION_AFFINITY: 'true' }).sticky).toEqual({
      cookie: { name: 'lb_sticky', httpOnly: true, sameSite: 'lax' },
    });
    expect(loadBalancer({ SESSION_AFFINITY: 'false' }).sticky).toBeUndefined();
    expect(loadBalancer({}).sticky).toBeUndefined();
    // Everything else is the same either way.
    const { sticky: _sticky, ...rest } = loadBalancer({ SESSION_AFFINITY: 'true' });
    expect(rest).toEqual(loadBalancer({}));
  });

  it('the template renderer here refuses actions it does not know (so the test above can fail)', () => {
    expect(() => renderTemplate('a: {{ env "X" }}', {})).toThrow(/unsupported template action/);
  });
});

describe('the Docker-label version in docker-compose.yml (profile traefik)', () => {
  const compose = (env: Record<string, string> = {}) => loadCompose(join(ROOT, 'docker-compose.yml'), env);
  const labels = compose().services['api-replicas']?.labels as string[];
  const tree = labelTree(labels) as { enable: string; http: Tree };

  it('routes the same way as dynamic.yml: routers, middlewares and health check are equal', () => {
    expect(tree.enable).toBe('true');
    const fromLabels = normalized(tree.http) as Record<string, Tree>;
    const fromFile = normalized(http) as Record<string, Tree>;
    expect(fromLabels.middlewares).toEqual(fromFile.middlewares);
    expect(fromLabels.routers).toEqual(fromFile.routers);
    const labelled = (fromLabels.services as Tree).app as {
      loadbalancer: { healthcheck: Tree; server: { port: string } };
    };
    const filed = (fromFile.services as Tree).app as { loadbalancer: { healthcheck: Tree } };
    expect(labelled.loadbalancer.healthcheck).toEqual(filed.loadbalancer.healthcheck);
    expect(Number(labelled.loadbalancer.server.port)).toBe(PORT);
  });

  it('sticky cookie: switched by SESSION_AFFINITY (only "true" enables it), same cookie as dynamic.yml', () => {
    const stickyCookie = (env: Record<string, string>) => {
      const labelled = compose(env).services['api-replicas']?.labels as string[];
      return (
        (labelTree(labelled).http as Tree).services as { app: { loadbalancer: { sticky: { cookie: Tree } } } }
      ).app.loadbalancer.sticky.cookie;
    };
    expect(stickyCookie({}).$value).toBe('false');
    expect(stickyCookie({ SESSION_AFFINITY: 'true' }).$value).toBe('true');
    const { $value: _enabled, ...cookie } = stickyCookie({});
    const filed = (loadBalancer({ SESSION_AFFINITY: 'true' }).sticky as { cookie: Tree }).cookie;
    expect(cookie).toEqual(normalized(filed));
  });

  it('the compose Traefik gets the same static settings as traefik.yml, as flags', () => {
    const flags = ((compose().services.traefik?.command ?? []) as string[]).map((flag) => flag.toLowerCase());
    const web = (staticConfig.entryPoints as { web: { address: string; transport: Tree } }).web;
    expect(flags).toContain(`--entrypoints.web.address=${web.address}`);
    const lifeCycle = (web.transport as { lifeCycle: { requestAcceptGraceTimeout: string } }).lifeCycle;
    expect(flags).toContain(
      `--entrypoints.web.transport.lifecycle.requestacceptgracetimeout=${lifeCycle.requestAcceptGraceTimeout}`,
    );
    const timeouts = (staticConfig.serversTransport as { forwardingTimeouts: Record<string, string> })
      .forwardingTimeouts;
    for (const [key, value] of Object.entries(timeouts)) {
      expect(flags).toContain(`--serverstransport.forwardingtimeouts.${key.toLowerCase()}=${value}`);
    }
    expect(flags).toContain('--ping=true');
    const forwarded = (staticConfig.entryPoints as { web: { forwardedHeaders: { insecure: boolean } } }).web
      .forwardedHeaders;
    expect(flags).toContain(`--entrypoints.web.forwardedheaders.insecure=${forwarded.insecure}`);
    expect(flags.filter((flag) => flag.includes('forwardedheaders.trustedips'))).toEqual([]);
  });
});
