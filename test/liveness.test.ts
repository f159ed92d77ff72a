import { randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { shedsLoad } from '../src/plugins/security.js';
import { MAX_HASH_ROUNDS, MAX_SLEEP_MS } from '../src/routes/examples.js';
import { until } from './helpers/cluster.js';
import { createTestDatabase, type TestDatabase } from './helpers/database.js';
import { freePort, type ServerProcess, startProcess, waitForHttp } from './helpers/process.js';

let database: TestDatabase;
let server: ServerProcess;

beforeAll(async () => {
  database = await createTestDatabase();
  server = startProcess({
    NODE_ENV: 'production',
    AUTH_SECRET: randomBytes(32).toString('base64'),
    DATABASE_URL: database.url,
    PORT: String(await freePort()),
  });
  await waitForHttp(`${server.baseUrl}/health/ready`);
});
afterAll(async () => {
  await server?.stop();
  await database?.drop();
});

/** How long the clients keep the server busy. */
const LOAD_MS = 2000;

interface Probe {
  status: number;
  ms: number;
  error?: string;
}

/** GET on a connection of its own, closed after, as a kubelet probe does; status 0 on error or timeout. */
function probe(url: string, timeoutMs: number): Promise<Probe> {
  const started = performance.now();
  const ms = () => Math.round(performance.now() - started);
  return new Promise((resolve) => {
    const req = request(
      url,
      { agent: false, headers: { connection: 'close' }, timeout: timeoutMs },
      (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, ms: ms() }));
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (error) => resolve({ status: 0, ms: ms(), error: error.message }));
    req.end();
  });
}

async function hash(rounds: number): Promise<{ status: number; rounds?: number }> {
  const response = await fetch(`${server.baseUrl}/api/examples/hash?rounds=${rounds}`);
  const body = (await response.json()) as { rounds?: number };
  return { status: response.status, rounds: body.rounds };
}

describe('liveness under CPU load (a production process)', () => {
  // 100 clients: run as they are read (one poll of the loop reads them all), their work would hold
  // the loop 1.5 s at a time; in turns (src/cpu-turns.ts) a probe waits about one request's work.
  it.each([20, 100])(
    'answers /health/live 200 within 1 s on new connections while %i clients hash the most rounds allowed',
    async (clients) => {
      // Keep-alive connections first, so that the heavy requests below arrive together on them
      // rather than one accepted connection at a time.
      await Promise.all(Array.from({ length: clients }, () => hash(1)));

      const probes: Probe[] = [];
      let loading = true;
      const polling = (async () => {
        while (loading) {
          probes.push(await probe(`${server.baseUrl}/health/live`, 5000));
          await sleep(50);
        }
      })();
      const started = performance.now();
      // Each client asks again as soon as it has its answer, for LOAD_MS: the loop is never idle.
      const answers = await Promise.all(
        Array.from({ length: clients }, async () => {
          const statuses: number[] = [];
          while (performance.now() - started < LOAD_MS) {
            const answer = await hash(MAX_HASH_ROUNDS);
            expect(answer.rounds).toBe(MAX_HASH_ROUNDS);
            statuses.push(answer.status);
          }
          return statuses;
        }),
      );
      const loadMs = Math.round(performance.now() - started);
      loading = false;
      await polling;

      expect(answers.flat().filter((status) => status !== 200)).toEqual([]);
      expect(probes.length, `${loadMs} ms of load`).toBeGreaterThanOrEqual(10);
      const late = probes.filter((answer) => answer.status !== 200 || answer.ms >= 1000);
      expect(late, JSON.stringify({ loadMs, probes })).toEqual([]);
      expect(server.nonJsonLines()).toEqual([]);
    },
  );

  it('refuses more rounds (or a longer sleep) than the cap: 400 problem+json naming the field', async () => {
    for (const [path, field, limit] of [
      [`/api/examples/hash?rounds=${MAX_HASH_ROUNDS + 1}`, 'rounds', MAX_HASH_ROUNDS],
      [`/api/examples/sleep?ms=${MAX_SLEEP_MS + 1}`, 'ms', MAX_SLEEP_MS],
    ] as const) {
      const response = await fetch(`${server.baseUrl}${path}`);
      expect(response.status, path).toBe(400);
      expect(response.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      const body = (await response.json()) as { detail: string; errors: unknown[]; requestId: string };
      expect(body.errors).toEqual([{ field, message: `must be <= ${limit}`, in: 'querystring' }]);
      expect(body.detail).toContain(field);
      expect(body.requestId).toBe(response.headers.get('x-request-id'));
    }
    // Without the parameter, the default applies.
    const defaulted = await fetch(`${server.baseUrl}/api/examples/hash`);
    expect(await defaulted.json()).toMatchObject({ rounds: 1000 });
  });
});

describe('which routes load shedding answers', () => {
  it('sheds the API only: readiness says why in its own shape; liveness, figures, metrics are never shed', () => {
    for (const url of ['/api/items', '/api/items/:id', '/api/examples/hash'])
      expect(shedsLoad(url), url).toBe(true);
    for (const url of ['/health', '/health/live', '/health/ready', '/health/worker', '/metrics', undefined])
      expect(shedsLoad(url), String(url)).toBe(false);
  });

  it('a production process over its limits: API 503 problem+json, readiness 503 not_ready, the rest 200', async () => {
    // Any utilisation exceeds this limit: the process counts as overloaded from two samples on.
    const overloaded = startProcess({
      NODE_ENV: 'production',
      AUTH_SECRET: randomBytes(32).toString('base64'),
      DATABASE_URL: database.url,
      PORT: String(await freePort()),
      LOAD_SHED_MAX_ELU: '0.000001',
      LOAD_SHED_RETRY_AFTER: '9',
    });
    try {
      await waitForHttp(`${overloaded.baseUrl}/health/live`);
      await until(
        async () => (await fetch(`${overloaded.baseUrl}/api/examples/sleep?ms=0`)).status === 503,
        10_000,
        'load shedding to start',
      );
      const api = await fetch(`${overloaded.baseUrl}/api/items`);
      expect(api.status).toBe(503);
      expect(api.headers.get('retry-after')).toBe('9');
      expect(api.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      expect(((await api.json()) as { detail: string }).detail).toMatch(/^Server overloaded/);

      const ready = await fetch(`${overloaded.baseUrl}/health/ready`);
      expect(ready.status).toBe(503);
      expect(await ready.json()).toEqual({
        status: 'not_ready',
        checks: {
          load: { status: 'down', latencyMs: 0, error: expect.stringMatching(/^Server overloaded/) },
        },
      });
      for (const path of ['/health/live', '/health', '/health/worker', '/metrics'])
        expect((await fetch(`${overloaded.baseUrl}${path}`)).status, path).toBe(200);
      expect(overloaded.nonJsonLines()).toEqual([]);
    } finally {
      await overloaded.stop();
    }
  });
});
