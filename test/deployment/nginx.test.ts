/**
 * deployment/nginx run live with Debian's nginx: the shipped files, rendered only for ports and temp
 * paths (helpers/nginx.ts), in front of real `node dist/main.js` processes, then in front of small
 * recording servers that show what nginx sends upstream.
 */
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { connect as connectTcp, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect as connectTls } from 'node:tls';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AFFINITY_COOKIE } from '../../src/plugins/affinity.js';
import { createTestDatabase } from '../helpers/database.js';
import { startLoad } from '../helpers/load.js';
import { freePort, type ServerProcess, waitForHttp } from '../helpers/process.js';
import { settingDefault } from './helpers/compose.js';
import {
  type BalancedNodes,
  checkNginx,
  NGINX_BIN,
  NGINX_DIR,
  type Nginx,
  renderNginx,
  startAppNode,
  startBalancedNodes,
  startNginx,
} from './helpers/nginx.js';

const hasNginx = existsSync(NGINX_BIN);
const upstreamConf = readFileSync(join(NGINX_DIR, 'upstream.conf'), 'utf8');
const mainConf = readFileSync(join(NGINX_DIR, 'nginx.conf'), 'utf8');
const seconds = (pattern: RegExp, text: string): number => Number(pattern.exec(text)?.[1] ?? Number.NaN);
const failTimeout = seconds(/fail_timeout=(\d+)s/, upstreamConf);

describe('nginx templates (static)', () => {
  it('upstream: balancing method before keepalive, passive health checks, idle timeout below the app keep-alive', () => {
    const body = upstreamConf.replace(/#.*$/gm, '');
    expect(body.indexOf('include affinity.conf;')).toBeGreaterThan(-1);
    expect(body.indexOf('include affinity.conf;')).toBeLessThan(body.indexOf('keepalive '));
    expect(body).toMatch(/server api:3000 max_fails=\d+ fail_timeout=\d+s;/);
    expect(body).toMatch(/zone app_servers \d+k;/); // one state for all nginx workers
    const appKeepAlive = settingDefault('KEEP_ALIVE_TIMEOUT') as number;
    expect(appKeepAlive).toBe(65);
    expect(seconds(/keepalive_timeout (\d+)s;/, body)).toBeLessThan(appKeepAlive);
  });

  it('SESSION_AFFINITY: affinity.conf links to false.conf (least_conn); true.conf hashes the affinity key', () => {
    const code = (file: string) => readFileSync(join(NGINX_DIR, file), 'utf8').replace(/#.*$/gm, '').trim();
    expect(readlinkSync(join(NGINX_DIR, 'affinity.conf'))).toBe('affinity/false.conf');
    expect(code('affinity/false.conf')).toBe('least_conn;');
    expect(code('affinity/true.conf')).toBe('hash $affinity_key consistent;');
    // The cookie the map reads is the one the app issues.
    expect(mainConf).toContain(`map $cookie_${AFFINITY_COOKIE} $affinity_key {`);
    expect(settingDefault('SESSION_AFFINITY')).toBe(false);
  });

  it('retries idempotent requests only, uses HTTP/1.1 upstream and the upgrade map, limits with 429', () => {
    const body = mainConf.replace(/#.*$/gm, '');
    expect(body).toMatch(/proxy_next_upstream error timeout http_502 http_503;/);
    expect(body).not.toContain('non_idempotent');
    expect(body).toContain('proxy_http_version 1.1;');
    expect(body).toMatch(/map \$http_upgrade \$connection_upgrade \{\s*default upgrade;\s*"" "";\s*\}/);
    expect(body).toContain('proxy_set_header Connection $connection_upgrade;');
    expect(body).toContain('limit_req_status 429;');
    expect(body).toContain('client_max_body_size 1m;');
    expect(settingDefault('BODY_LIMIT')).toBe(1024 * 1024);
    expect(body).not.toMatch(/^\s*(user|pid|daemon)\s/m);
  });

  it('sets X-Forwarded-For to the address that connected, never appending to a client-sent one', () => {
    const body = mainConf.replace(/#.*$/gm, '');
    expect(body).toContain('proxy_set_header X-Forwarded-For $remote_addr;');
    expect(body).not.toContain('$proxy_add_x_forwarded_for');
    expect(body).not.toContain('$http_x_forwarded_for');
  });

  it.skipIf(!hasNginx)('nginx -t accepts the files as shipped (upstream name aside)', async () => {
    const dir = renderNginx({ port: await freePort(), upstreamPorts: [await freePort()] });
    const result = await checkNginx(dir);
    rmSync(dir, { recursive: true, force: true });
    expect(result.code, result.output).toBe(0);
  });
});

describe.skipIf(!hasNginx)(`nginx in front of two app processes (${NGINX_BIN})`, () => {
  let balanced: BalancedNodes;
  let nginx: Nginx;
  let ports: number[];
  let nodes: ServerProcess[];

  /** A load run through nginx that no client saw fail, with enough requests to mean something. */
  function expectNoFailures(result: Awaited<ReturnType<ReturnType<typeof startLoad>['stop']>>): void {
    expect(
      result.failures.slice(0, 5),
      `${result.failed} failed; nginx: ${nginx.errors().slice(-3000)}`,
    ).toEqual([]);
    expect(result.ok).toBeGreaterThan(100);
  }

  async function pidVia(): Promise<number> {
    const response = await fetch(`${nginx.baseUrl}/health/worker`, { signal: AbortSignal.timeout(5000) });
    expect(response.status).toBe(200);
    return ((await response.json()) as { pid: number }).pid;
  }

  beforeAll(async () => {
    balanced = await startBalancedNodes();
    ({ nginx, ports, nodes } = balanced);
  });

  afterAll(async () => {
    await balanced?.stop();
  });

  it('spreads requests over both nodes', async () => {
    const pids = new Set(await Promise.all(Array.from({ length: 20 }, () => pidVia())));
    expect([...pids].sort()).toEqual(nodes.map((node) => node.child.pid).sort());
  });

  it('SIGKILL of one node under continuous GET load: no client sees a failure', async () => {
    const [victim, survivor] = nodes as [ServerProcess, ServerProcess];
    const load = startLoad(`${nginx.baseUrl}/health/worker`, 8);
    await sleep(500);
    victim.child.kill('SIGKILL');
    await sleep(1500);
    const result = await load.stop();
    expectNoFailures(result);
    expect(result.pids.has(survivor.child.pid as number)).toBe(true);
    expect(result.pids.has(victim.child.pid as number)).toBe(true);
  });

  it(`takes the node back once it returns on the same port (fail_timeout=${failTimeout}s)`, async () => {
    const returned = await startAppNode(balanced.database.url, ports[0] as number);
    nodes.push(returned);
    const deadline = Date.now() + (failTimeout + 10) * 1000;
    const seen = new Set<number>();
    while (!seen.has(returned.child.pid as number) && Date.now() < deadline) {
      seen.add(await pidVia());
      await sleep(100);
    }
    expect(seen.has(returned.child.pid as number)).toBe(true);
  }, 60_000);

  it('SIGTERM (a rolling restart) of one node under load: it drains, exits 0, and no client sees a failure', async () => {
    const draining = nodes[1] as ServerProcess;
    const load = startLoad(`${nginx.baseUrl}/health/worker`, 8);
    await sleep(500);
    const exit = draining.stop('SIGTERM');
    expect(await exit).toEqual({ code: 0, signal: null });
    await sleep(500);
    expectNoFailures(await load.stop());
  });

  it('answers 429 problem+json past the rate limit, but never limits health checks', async () => {
    const burst = async (path: string) =>
      Promise.all(
        Array.from({ length: 120 }, async () => {
          const response = await fetch(`${nginx.baseUrl}${path}`);
          return { status: response.status, headers: response.headers, body: await response.text() };
        }),
      );
    const health = await burst('/health/live');
    expect(health.filter((answer) => answer.status !== 200)).toEqual([]);

    const answers = await burst('/api/examples/sleep?ms=1');
    const limited = answers.filter((answer) => answer.status === 429);
    const served = answers.filter((answer) => answer.status === 200);
    expect(limited.length + served.length).toBe(answers.length);
    expect(served.length).toBeGreaterThanOrEqual(20);
    expect(limited.length).toBeGreaterThan(0);
    const first = limited[0] as (typeof limited)[number];
    expect(first.headers.get('content-type')).toContain('application/problem+json');
    expect(first.headers.get('retry-after')).toBe('1');
    expect(first.headers.get('x-content-type-options')).toBe('nosniff');
    expect(JSON.parse(first.body)).toMatchObject({ status: 429, title: 'Too Many Requests' });
  });

  it('logs one JSON line per API request and none for health checks', async () => {
    await sleep(200);
    const uris = nginx.accessLog().map((line) => String(line.uri));
    expect(uris.some((uri) => uri.startsWith('/api/examples/sleep'))).toBe(true);
    expect(uris.filter((uri) => uri.startsWith('/health'))).toEqual([]);
  });

  it('sets security headers once, hides its version, passes request ids, refuses bodies over 1 MiB', async () => {
    const response = await fetch(`${nginx.baseUrl}/health/live`, {
      headers: { 'x-request-id': 'trace-123' },
    });
    expect(response.status).toBe(200);
    expect(response.headers.get('x-content-type-options')).toBe('nosniff');
    expect(response.headers.get('x-frame-options')).toBe('SAMEORIGIN');
    // nginx sets these itself on every answer and hides the app's (security-headers.conf).
    expect(response.headers.get('referrer-policy')).toBe('no-referrer');
    expect(response.headers.get('server')).toBe('nginx');
    expect(response.headers.get('x-request-id')).toBe('trace-123');
    expect(response.headers.get('set-cookie')).toBeNull(); // SESSION_AFFINITY=false: no sticky cookie
    const generated = await fetch(`${nginx.baseUrl}/health/live`);
    expect(generated.headers.get('x-request-id')).toMatch(/^[0-9a-f]{32}$/);
    const tooBig = await fetch(`${nginx.baseUrl}/api/items`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'x'.repeat(1024 * 1024 + 10) }),
    });
    expect(tooBig.status).toBe(413);
  });
});

interface Recorded {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  remotePort: number;
}

/**
 * An upstream that records what nginx sends into `seen` (shared by several servers, in arrival order);
 * /fail* drops the connection without answering, /unavailable* answers 503 (as a draining app does),
 * upgrades are echoed back.
 */
async function recordingServer(
  seen: Recorded[] = [],
): Promise<{ server: Server; port: number; seen: Recorded[] }> {
  const server = createServer((req, res) => {
    seen.push({
      method: req.method ?? '',
      url: req.url ?? '',
      headers: req.headers,
      remotePort: req.socket.remotePort ?? 0,
    });
    if (req.url?.startsWith('/fail')) {
      req.socket.destroy();
      return;
    }
    req.resume();
    req.on('end', () => {
      res.statusCode = req.url?.startsWith('/unavailable') ? 503 : 200;
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ ok: res.statusCode === 200 }));
    });
  });
  server.on('upgrade', (req, socket: Socket) => {
    seen.push({
      method: req.method ?? '',
      url: req.url ?? '',
      headers: req.headers,
      remotePort: req.socket.remotePort ?? 0,
    });
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
    socket.on('data', (chunk) => socket.write(chunk));
  });
  server.keepAliveTimeout = 65_000;
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, port: (server.address() as { port: number }).port, seen };
}

describe.skipIf(!hasNginx)('what nginx sends upstream (recording servers)', () => {
  let nginx: Nginx;
  const upstreams: Array<Awaited<ReturnType<typeof recordingServer>>> = [];
  const seen: Recorded[] = [];
  const all = () => seen;

  beforeAll(async () => {
    upstreams.push(await recordingServer(seen), await recordingServer(seen));
    nginx = await startNginx({
      port: await freePort(),
      upstreamPorts: upstreams.map((upstream) => upstream.port),
    });
  });

  afterAll(async () => {
    await nginx?.stop();
    for (const upstream of upstreams) {
      upstream.server.closeAllConnections();
      upstream.server.close();
    }
  });

  it('reuses upstream connections (no Connection header sent) and forwards client details', async () => {
    const agent = new Agent({ connections: 1 });
    const before = all().length;
    for (let index = 0; index < 30; index += 1) {
      const response = await request(`${nginx.baseUrl}/api/keepalive`, { dispatcher: agent });
      await response.body.text();
      expect(response.statusCode).toBe(200);
    }
    await agent.close();
    const requests = all().slice(before);
    expect(requests).toHaveLength(30);
    // 30 requests over one client connection: a handful of upstream connections at most, not 30.
    expect(new Set(requests.map((seen) => seen.remotePort)).size).toBeLessThanOrEqual(4);
    for (const seen of requests) {
      expect(seen.headers.connection).toBeUndefined();
      expect(seen.headers['x-forwarded-for']).toBe('127.0.0.1');
      expect(seen.headers['x-real-ip']).toBe('127.0.0.1');
      expect(seen.headers['x-forwarded-proto']).toBe('http');
      expect(seen.headers['x-request-id']).toMatch(/^[0-9a-f]{32}$/);
    }
  });

  it("replaces a client's own X-Forwarded-For with the address that connected", async () => {
    const response = await fetch(`${nginx.baseUrl}/api/spoofed`, {
      headers: { 'x-forwarded-for': '203.0.113.66, 198.51.100.1', 'x-real-ip': '203.0.113.66' },
    });
    expect(response.status).toBe(200);
    const seen = all().find((request) => request.url === '/api/spoofed');
    expect(seen?.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(seen?.headers['x-real-ip']).toBe('127.0.0.1');
  });

  it('passes a WebSocket upgrade through and relays both ways', async () => {
    const socket = connectTcp(Number(new URL(nginx.baseUrl).port), '127.0.0.1');
    await once(socket, 'connect');
    let received = '';
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString('utf8');
    });
    socket.write(
      'GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
    );
    const until = async (text: string) => {
      for (let attempt = 0; attempt < 50 && !received.includes(text); attempt += 1) await sleep(50);
      expect(received).toContain(text);
    };
    await until('101 Switching Protocols');
    socket.write('ping-through-nginx');
    await until('ping-through-nginx');
    socket.destroy();
    const upgrade = all().find((seen) => seen.url === '/ws');
    expect(upgrade?.headers.connection).toBe('upgrade');
    expect(upgrade?.headers.upgrade).toBe('websocket');
  });

  it('retries a GET that failed or met a 503 on the next server, but never resends a POST', async () => {
    const before = all().length;
    const post = await fetch(`${nginx.baseUrl}/fail-post`, { method: 'POST', body: 'x' });
    expect(post.status).toBe(502);
    expect(
      all()
        .slice(before)
        .filter((seen) => seen.url === '/fail-post'),
    ).toHaveLength(1);

    const get = await fetch(`${nginx.baseUrl}/fail-get`);
    expect(get.status).toBe(502);
    const tries = all().filter((seen) => seen.url === '/fail-get');
    expect(tries).toHaveLength(2);
    expect(new Set(tries.map((seen) => seen.headers['x-request-id'])).size).toBe(1);

    const unavailable = await fetch(`${nginx.baseUrl}/unavailable`);
    expect(unavailable.status).toBe(503);
    expect(all().filter((seen) => seen.url === '/unavailable')).toHaveLength(2);
    const unavailablePost = await fetch(`${nginx.baseUrl}/unavailable-post`, { method: 'POST', body: 'x' });
    expect(unavailablePost.status).toBe(503);
    expect(all().filter((seen) => seen.url === '/unavailable-post')).toHaveLength(1);
  });
});

const hasOpenssl = existsSync('/usr/bin/openssl');

describe.skipIf(!hasNginx || !hasOpenssl)('the TLS server (tls/app-tls.conf.example)', () => {
  let nginx: Nginx;
  let upstream: Awaited<ReturnType<typeof recordingServer>>;
  let tlsPort: number;
  let certs: string;

  beforeAll(async () => {
    upstream = await recordingServer();
    certs = mkdtempSync(join(tmpdir(), 'certs-'));
    execFileSync(
      '/usr/bin/openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-days',
        '1',
        '-subj',
        '/CN=localhost',
        '-keyout',
        join(certs, 'key.pem'),
        '-out',
        join(certs, 'cert.pem'),
      ],
      { stdio: 'ignore' },
    );
    tlsPort = await freePort();
    nginx = await startNginx({
      port: await freePort(),
      upstreamPorts: [upstream.port],
      tls: { port: tlsPort, cert: join(certs, 'cert.pem'), key: join(certs, 'key.pem') },
    });
  });

  afterAll(async () => {
    await nginx?.stop();
    upstream?.server.closeAllConnections();
    upstream?.server.close();
    if (certs) rmSync(certs, { recursive: true, force: true });
  });

  it('serves HTTPS with TLS 1.3, HSTS and the security headers, telling the app the scheme', async () => {
    const agent = new Agent({ connect: { rejectUnauthorized: false } });
    const response = await request(`https://127.0.0.1:${tlsPort}/api/tls`, { dispatcher: agent });
    await response.body.text();
    await agent.close();
    expect(response.statusCode).toBe(200);
    expect(response.headers['strict-transport-security']).toBe('max-age=63072000');
    expect(response.headers['x-content-type-options']).toBe('nosniff');
    expect(upstream.seen.at(-1)?.headers['x-forwarded-proto']).toBe('https');
    const socket = connectTls({ host: '127.0.0.1', port: tlsPort, rejectUnauthorized: false });
    await once(socket, 'secureConnect');
    expect(socket.getProtocol()).toBe('TLSv1.3');
    socket.destroy();
  });

  it('refuses TLS 1.1', async () => {
    const socket = connectTls({
      host: '127.0.0.1',
      port: tlsPort,
      rejectUnauthorized: false,
      minVersion: 'TLSv1',
      maxVersion: 'TLSv1.1',
      ciphers: 'DEFAULT@SECLEVEL=0',
    });
    const outcome = await new Promise<string>((resolve) => {
      socket.once('secureConnect', () => resolve('connected'));
      socket.once('error', (error) => resolve(error.message));
    });
    socket.destroy();
    expect(outcome).toMatch(/protocol version/);
  });
});

/** One failed sign-in (wrong password) as `account`, claiming to come from `forwardedFor`. */
async function failedSignIn(baseUrl: string, account: string, forwardedFor: string): Promise<number> {
  const response = await fetch(`${baseUrl}/api/auth/token`, {
    method: 'POST',
    headers: { 'x-forwarded-for': forwardedFor },
    body: new URLSearchParams({ grant_type: 'password', username: account, password: 'wrong password 123' }),
    signal: AbortSignal.timeout(10_000),
  });
  await response.arrayBuffer();
  return response.status;
}

/** 20 failed sign-ins, each as another account and claiming another address (203.0.113.1, .2, ...). */
async function spoofedAttempts(baseUrl: string, label: string): Promise<number[]> {
  const statuses: number[] = [];
  for (let attempt = 1; attempt <= 20; attempt += 1)
    statuses.push(await failedSignIn(baseUrl, `${label}-${attempt}@example.com`, `203.0.113.${attempt}`));
  return statuses;
}

const LOGIN_LIMIT = 5;
/** A wrong password: invalid_grant, 400 (RFC 6749 section 5.2); the limit answers 429. */
const refused = (status: number) => status === 400;

describe.skipIf(!hasNginx)(
  'behind nginx, a made-up X-Forwarded-For cannot dodge the per-address sign-in limit',
  () => {
    const started: Array<() => Promise<unknown>> = [];
    afterAll(async () => {
      for (const stop of started.reverse()) await stop();
    });

    // The app trusts nginx only (its address, or the one hop in front of it); every attempt below
    // claims another client address and tries another account, so only the per-address limit can
    // answer 429. A database each: the limit's counters may live there, shared by every process.
    it.each(['127.0.0.1', '1'])(
      `TRUST_PROXY=%s, LOGIN_RATE_LIMIT_MAX=${LOGIN_LIMIT}: 20 attempts with 20 spoofed addresses, 429 after the first ${LOGIN_LIMIT}`,
      async (trustProxy) => {
        const database = await createTestDatabase();
        started.push(() => database.drop());
        const port = await freePort();
        const node = await startAppNode(database.url, port, {
          TRUST_PROXY: trustProxy,
          LOGIN_RATE_LIMIT_MAX: String(LOGIN_LIMIT),
        });
        started.push(() => node.stop('SIGKILL'));
        const proxy = await startNginx({ port: await freePort(), upstreamPorts: [port] });
        started.push(() => proxy.stop());
        await waitForHttp(`${proxy.baseUrl}/health/ready`);

        const statuses = await spoofedAttempts(proxy.baseUrl, 'via-nginx');
        expect(statuses.slice(0, LOGIN_LIMIT).every(refused), String(statuses)).toBe(true);
        expect(statuses.slice(LOGIN_LIMIT), String(statuses)).toEqual(
          Array.from({ length: 20 - LOGIN_LIMIT }, () => 429),
        );

        // The control: straight to the app, from 127.0.0.1 (a peer it trusts), the same made-up
        // header is believed, so each attempt counts for another address and none is limited. What
        // stops the spoof above is nginx replacing the header, not the app ignoring it.
        const direct = await spoofedAttempts(node.baseUrl, 'direct');
        expect(direct.every(refused), String(direct)).toBe(true);
      },
      60_000,
    );
  },
);
