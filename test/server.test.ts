import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { MAX_HASH_ROUNDS } from '../src/routes/examples.js';
import { until, useClusters } from './helpers/cluster.js';
import { get, openConnection, parseResponses } from './helpers/http.js';
import { freePort, portOpen, type ServerProcess, startProcess, waitForHttp } from './helpers/process.js';
import { signInOverHttp } from './helpers/user.js';

// The file's database, and every server it starts killed in afterAll.
const bed = useClusters();

async function startServer(env: Record<string, string> = {}): Promise<ServerProcess> {
  const port = await freePort();
  const server = bed.track(startProcess({ DATABASE_URL: bed.databaseUrl, PORT: String(port), ...env }));
  await waitForHttp(`${server.baseUrl}/health/ready`);
  return server;
}

describe('the built server (node dist/main.js, LEVEL=1)', () => {
  it('serves the API over real HTTP and logs JSON with secrets redacted', async () => {
    const server = await startServer();
    const { authorization } = await signInOverHttp(server.baseUrl);
    const created = await fetch(`${server.baseUrl}/api/items`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        authorization,
        cookie: 'session=abc',
      },
      body: JSON.stringify({ name: 'over http' }),
    });
    expect(created.status).toBe(201);
    const location = created.headers.get('location');
    expect((await fetch(`${server.baseUrl}${location}`)).status).toBe(200);
    await server.stop();
    const output = JSON.stringify(server.logs);
    expect(server.logs.length).toBeGreaterThan(2);
    expect(output).not.toContain(authorization.slice('Bearer '.length));
    expect(output).not.toContain(new URL(bed.databaseUrl).password || 'no-password-in-url');
  });

  it('on SIGTERM: in-flight requests finish, new requests on open connections get 503 + close, exit 0', async () => {
    const server = await startServer();
    const slow = fetch(`${server.baseUrl}/api/examples/sleep?ms=2500`);
    // A keep-alive connection with a slow request in flight.
    const busy = await openConnection(server.port);
    busy.socket.write(get('/api/examples/sleep?ms=2000'));
    // A keep-alive connection whose next request has begun (headers partly sent) when the signal lands.
    const arriving = await openConnection(server.port);
    arriving.socket.write(get('/health'));
    await sleep(100);
    arriving.socket.write('GET /health HTTP/1.1\r\nHost: localhost\r\n');
    // An idle keep-alive connection.
    const idle = await openConnection(server.port);
    idle.socket.write(get('/health'));
    // Time for a loaded machine to read the slow requests; they still have over a second to run.
    await sleep(800);

    const signalledAt = Date.now();
    server.child.kill('SIGTERM');
    await server.waitForLog((line) => line.msg === 'shutting down', 5000);
    arriving.socket.write('Connection: keep-alive\r\n\r\n');
    // New connections are refused once the listener is closed.
    await until(async () => !(await portOpen(server.port)), 5000, 'the listener to close');
    await expect(fetch(`${server.baseUrl}/health`)).rejects.toThrow();

    const slowResponse = await slow;
    expect(slowResponse.status).toBe(200);
    expect(await slowResponse.json()).toEqual({ sleptMs: 2500 });

    // The in-flight response completes and tells the client not to reuse the connection.
    const busyResponses = parseResponses(await busy.closed);
    expect(busyResponses.map((response) => response.status)).toEqual([200]);
    expect(busyResponses[0]?.headers.connection).toBe('close');

    const [before, during] = parseResponses(await arriving.closed);
    expect(before?.status).toBe(200);
    expect(during?.status).toBe(503);
    expect(during?.headers.connection).toBe('close');
    expect(during?.headers['content-type']).toMatch(/problem\+json/);

    // The idle keep-alive connection was closed by the server, not left to time out.
    expect(parseResponses(await idle.closed)).toHaveLength(1);

    const exit = await server.exited;
    expect(exit).toEqual({ code: 0, signal: null });
    expect(Date.now() - signalledAt).toBeLessThan(5000);
    expect(server.logs.some((line) => line.msg === 'shutting down')).toBe(true);
  });

  it('forces exit at GRACEFUL_TIMEOUT, and at once on a second signal', async () => {
    const deadline = await startServer({ GRACEFUL_TIMEOUT: '1' });
    void fetch(`${deadline.baseUrl}/api/examples/sleep?ms=10000`).catch(() => {});
    await sleep(800);
    let signalledAt = Date.now();
    deadline.child.kill('SIGTERM');
    expect((await deadline.exited).code).toBe(1);
    expect(Date.now() - signalledAt).toBeLessThan(3000);
    await deadline.outputEnded;
    expect(deadline.logs.some((line) => line.msg === 'graceful timeout reached: exiting now')).toBe(true);

    const twice = await startServer();
    void fetch(`${twice.baseUrl}/api/examples/sleep?ms=10000`).catch(() => {});
    await sleep(800);
    signalledAt = Date.now();
    twice.child.kill('SIGTERM');
    await twice.waitForLog((line) => line.msg === 'shutting down', 5000);
    twice.child.kill('SIGINT');
    expect((await twice.exited).code).toBe(1);
    expect(Date.now() - signalledAt).toBeLessThan(2000);
  });

  it('refuses bad configuration with one clear line and a non-zero exit', async () => {
    const cases: Array<[Record<string, string>, RegExp]> = [
      [{ PORT: 'abc' }, /^Invalid setting PORT: "abc" is not valid; expected an integer/],
      [{ LEVEL: '9' }, /^Invalid setting LEVEL: "9"/],
      [
        { DATABASE_URL: 'redis://user:topsecret@host/0' },
        /^Invalid setting DATABASE_URL: "redis:\/\/user:\*\*\*@host\/0"/,
      ],
      [
        {
          NODE_ENV: 'production',
          DATABASE_URL: '',
          AUTH_SECRET: 'server-test-signing-key-0123456789-abcdef',
        },
        /^Invalid setting DATABASE_URL: is not set/,
      ],
      [{ NODE_ENV: 'production' }, /^Invalid setting AUTH_SECRET: is not set/],
    ];
    for (const [env, expected] of cases) {
      const server = startProcess({ DATABASE_URL: bed.databaseUrl, ...env });
      const exit = await server.exited;
      expect(exit.code).toBe(78);
      await server.outputEnded;
      expect(server.stderr().trim().split('\n')).toHaveLength(1);
      expect(server.stderr()).toMatch(expected);
      expect(server.stderr()).not.toContain('topsecret');
    }
  });

  it('sheds the API with 503 + Retry-After when the event loop is saturated, never liveness, then serves again', async () => {
    const server = await startServer({ LOAD_SHED_MAX_ELU: '0.5', LOAD_SHED_RETRY_AFTER: '7' });
    // Utilisation is measured over each one-second sample. A few clients asking back to back for the
    // most hashing a request may do keep the loop busy whole samples, whatever the speed of the
    // machine, until the server sheds (their requests get 503 too, the loop frees, and it serves again).
    let stalling = true;
    const heavy = Promise.all(
      Array.from({ length: 4 }, async () => {
        while (stalling) {
          const response = await fetch(`${server.baseUrl}/api/examples/hash?rounds=${MAX_HASH_ROUNDS}`);
          await response.arrayBuffer();
        }
      }),
    );
    const statuses: number[] = [];
    const probes: string[] = [];
    let retryAfter: string | null = null;
    const deadline = Date.now() + 20_000;
    while (retryAfter === null && Date.now() < deadline) {
      const response = await fetch(`${server.baseUrl}/api/examples/sleep?ms=0`);
      statuses.push(response.status);
      if (response.status === 503) retryAfter = response.headers.get('retry-after');
      await response.arrayBuffer();
      // Liveness and the process's figures are never shed: a restart cures no load.
      for (const path of ['/health/live', '/health/worker']) {
        const probe = await fetch(`${server.baseUrl}${path}`);
        probes.push(`${path} ${probe.status}`);
        await probe.arrayBuffer();
      }
      await sleep(20);
    }
    stalling = false;
    await heavy;
    expect(statuses).toContain(503);
    expect(retryAfter).toBe('7');
    expect(probes.filter((probe) => !probe.endsWith(' 200'))).toEqual([]);
    // Once the stall ends, the next sample clears the pressure.
    const recoveredBy = Date.now() + 5000;
    let recovered = 0;
    while (recovered !== 200 && Date.now() < recoveredBy) {
      recovered = (await fetch(`${server.baseUrl}/api/examples/sleep?ms=0`)).status;
      if (recovered !== 200) await sleep(100);
    }
    expect(recovered).toBe(200);
  });
});
