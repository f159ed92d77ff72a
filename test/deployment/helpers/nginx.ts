import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createTestDatabase, type TestDatabase } from '../../helpers/database.js';
import {
  freePort,
  portOpen,
  ROOT,
  type ServerProcess,
  startProcess,
  waitForHttp,
} from '../../helpers/process.js';
import { type Child, type ChildOptions, startChild } from './child.js';

export const NGINX_BIN = process.env.NGINX_BIN ?? '/usr/sbin/nginx';
export const NGINX_DIR = join(ROOT, 'deployment/nginx');

export interface NginxOptions {
  /** Port nginx listens on (127.0.0.1) in place of the template's `listen 80`. */
  port: number;
  /** App servers (127.0.0.1 ports) in place of the template's `server api:3000 ...` line. */
  upstreamPorts: number[];
  /** Enable tls/app-tls.conf.example on this port, with this certificate and key. */
  tls?: { port: number; cert: string; key: string };
  /** SESSION_AFFINITY: which affinity/*.conf becomes affinity.conf, as docker-compose.yml mounts it. */
  sessionAffinity?: boolean;
}

export interface Nginx {
  dir: string;
  child: Child;
  baseUrl: string;
  /** Parsed JSON access-log lines written so far. */
  accessLog(): Array<Record<string, unknown>>;
  /** nginx's error log so far. */
  errors(): string;
  stop(): Promise<void>;
}

/** Replace exactly one match, so a changed template fails the test instead of silently not rendering. */
function replaceOnce(text: string, pattern: RegExp, replacement: (match: RegExpExecArray) => string): string {
  const global = new RegExp(
    pattern.source,
    pattern.flags.includes('g') ? pattern.flags : `${pattern.flags}g`,
  );
  const matches = [...text.matchAll(global)];
  if (matches.length !== 1)
    throw new Error(`expected one match of ${pattern} in the template, found ${matches.length}`);
  const match = matches[0] as RegExpExecArray;
  return text.slice(0, match.index) + replacement(match) + text.slice(match.index + match[0].length);
}

/**
 * Render deployment/nginx for this machine with as little change as possible: the listen port, the
 * upstream server addresses (same parameters), and temp paths inside the render folder (Debian's
 * compiled-in ones are outside it). Everything else is the template as shipped.
 */
export function renderNginx(options: NginxOptions): string {
  const dir = mkdtempSync(join(tmpdir(), 'nginx-'));
  chmodSync(dir, 0o755); // nginx workers run as nobody when the tests run as root
  for (const file of ['nginx.conf', 'locations.conf', 'security-headers.conf']) {
    cpSync(join(NGINX_DIR, file), join(dir, file));
  }
  mkdirSync(join(dir, 'tls'));
  cpSync(join(NGINX_DIR, 'affinity'), join(dir, 'affinity'), { recursive: true });
  // What `ln -sf affinity/<mode>.conf affinity.conf` on a host, or the compose mount, does.
  const mode = String(options.sessionAffinity ?? false);
  symlinkSync(`affinity/${mode}.conf`, join(dir, 'affinity.conf'));
  let main = readFileSync(join(dir, 'nginx.conf'), 'utf8');
  main = replaceOnce(
    main,
    /^(\s*)listen 80 default_server;$/m,
    (match) => `${match[1]}listen 127.0.0.1:${options.port} default_server;`,
  );
  const temp = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']
    .map((kind) => `    ${kind}_temp_path ${join(dir, `temp-${kind}`)};`)
    .join('\n');
  main = replaceOnce(main, /^http \{$/m, (match) => `${match[0]}\n${temp}`);
  writeFileSync(join(dir, 'nginx.conf'), main);

  const upstream = replaceOnce(
    readFileSync(join(NGINX_DIR, 'upstream.conf'), 'utf8'),
    /^(\s*)server api:3000( [^;]*);$/m,
    (match) =>
      options.upstreamPorts.map((port) => `${match[1]}server 127.0.0.1:${port}${match[2]};`).join('\n'),
  );
  writeFileSync(join(dir, 'upstream.conf'), upstream);

  if (options.tls) {
    const { port, cert, key } = options.tls;
    let tls = readFileSync(join(NGINX_DIR, 'tls/app-tls.conf.example'), 'utf8');
    tls = replaceOnce(tls, /^(\s*)listen 443 ssl/m, (match) => `${match[1]}listen 127.0.0.1:${port} ssl`);
    tls = replaceOnce(
      tls,
      /^(\s*ssl_certificate )\/etc\/nginx\/certs\/fullchain\.pem;/m,
      (match) => `${match[1]}${cert};`,
    );
    tls = replaceOnce(
      tls,
      /^(\s*ssl_certificate_key )\/etc\/nginx\/certs\/privkey\.pem;/m,
      (match) => `${match[1]}${key};`,
    );
    writeFileSync(join(dir, 'tls/app-tls.conf'), tls);
  }
  return dir;
}

function nginxArgs(dir: string, extra: string[] = []): string[] {
  return [
    '-p',
    `${dir}/`,
    '-c',
    join(dir, 'nginx.conf'),
    '-e',
    join(dir, 'error.log'),
    ...extra,
    '-g',
    `daemon off; pid ${join(dir, 'nginx.pid')};`,
  ];
}

function output(dir: string, name: string): ChildOptions {
  return {
    cwd: dir,
    env: { PATH: process.env.PATH ?? '' },
    outputFiles: { stdout: join(dir, `${name}.stdout`), stderr: join(dir, `${name}.stderr`) },
  };
}

/** `nginx -t` on a rendered folder. */
export async function checkNginx(dir: string): Promise<{ code: number | null; output: string }> {
  const child = startChild(NGINX_BIN, nginxArgs(dir, ['-t']), output(dir, 'check'));
  const exit = await child.exited;
  return { code: exit.code, output: child.stderr() + child.stdout() };
}

/** Render and start nginx in the foreground as a child process; resolves once it accepts connections. */
export async function startNginx(options: NginxOptions): Promise<Nginx> {
  const dir = renderNginx(options);
  const child = startChild(NGINX_BIN, nginxArgs(dir), output(dir, 'run'));
  let exited = false;
  void child.exited.then(() => {
    exited = true;
  });
  const deadline = Date.now() + 10_000;
  while (!(await portOpen(options.port))) {
    const errors = existsSync(join(dir, 'error.log')) ? readFileSync(join(dir, 'error.log'), 'utf8') : '';
    if (exited || Date.now() > deadline) throw new Error(`nginx did not start: ${child.stderr()}${errors}`);
    await sleep(50);
  }
  return {
    dir,
    child,
    baseUrl: `http://127.0.0.1:${options.port}`,
    accessLog: () =>
      child
        .stdout()
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line) as Record<string, unknown>),
    errors: () => child.stderr(),
    stop: async () => {
      await child.stop('SIGTERM', 5000);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** One app process as nginx sees it in these tests: `node dist/main.js` at LEVEL=1 behind a proxy, ready. */
export async function startAppNode(
  databaseUrl: string,
  port: number,
  env: Record<string, string> = {},
): Promise<ServerProcess> {
  const node = startProcess({
    DATABASE_URL: databaseUrl,
    PORT: String(port),
    LEVEL: '1',
    TRUST_PROXY: '127.0.0.1', // nginx's address here: the narrow form the templates use
    LOG_LEVEL: 'warn',
    ...env,
  });
  try {
    await waitForHttp(`${node.baseUrl}/health/ready`);
  } catch (error) {
    await node.stop('SIGKILL'); // never leave a process behind a failed start
    throw error;
  }
  return node;
}

export interface BalancedNodes {
  database: TestDatabase;
  nginx: Nginx;
  /** In port order: nodes[i] listens on ports[i]. Tests may push nodes they start later. */
  ports: number[];
  nodes: ServerProcess[];
  stop(): Promise<void>;
}

/** Two app nodes (startAppNode) on a test database of their own, behind a live nginx, ready. */
export async function startBalancedNodes(
  options: { env?: Record<string, string>; sessionAffinity?: boolean } = {},
): Promise<BalancedNodes> {
  const database = await createTestDatabase();
  const ports = [await freePort(), await freePort()];
  const nodes = await Promise.all(ports.map((port) => startAppNode(database.url, port, options.env)));
  const nginx = await startNginx({
    port: await freePort(),
    upstreamPorts: ports,
    sessionAffinity: options.sessionAffinity,
  });
  await waitForHttp(`${nginx.baseUrl}/health/ready`);
  return {
    database,
    nginx,
    ports,
    nodes,
    stop: async () => {
      await nginx.stop();
      await Promise.all(nodes.map((node) => node.stop('SIGKILL')));
      await database.drop();
    },
  };
}
