/**
 * docker-compose.yml on a real Docker engine (compose v1 here; helpers/docker-engine.ts), with the image
 * built from the Dockerfile and official or stand-in bases (helpers/base-images.ts): a bare `up` with no
 * .env and no AUTH_SECRET (secrets-init generates the key, once), migrations once, api and worker
 * healthy, sign-in, the key and its tokens kept across an API restart and down/up, data kept across down/up, a task done by the worker container, a graceful stop with
 * requests in flight, a zero-failure rolling reload (SIGHUP) of a LEVEL=3 API container under load, and
 * the proxy profile's nginx failing over from a killed replica without a failed GET, a sign-out through
 * it refused by every API container, and the monitoring
 * profile's Prometheus finding and scraping every API and worker container of that same stack. Only
 * `prometheus` of the monitoring profile is started (named on `up`): Grafana, the OpenTelemetry
 * collector and Jaeger have no Debian package to stand in for their images (schema-checked elsewhere).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLoad } from '../helpers/load.js';
import { freePort } from '../helpers/process.js';
import { signInOverHttp, TEST_USER_ENV } from '../helpers/user.js';
import { buildAppImage } from './helpers/app-image.js';
import { ensureBaseImages } from './helpers/base-images.js';
import { type ComposeProject, composeProject } from './helpers/compose-project.js';
import { containerTest } from './helpers/container-test.js';
import {
  containerState,
  enqueueTask,
  meAfterLogout,
  meStatus,
  taskState,
  waitExited,
  waitForOk,
  waitHealthy,
} from './helpers/containers.js';
import type { Engine } from './helpers/docker-engine.js';

const { skip, startEngine } = await containerTest('compose-stack');
/** Each step recreates containers and waits on their healthchecks (10 s apart). */
const TEST_TIMEOUT_MS = 240_000;

describe.skipIf(Boolean(skip))('docker-compose.yml on a real engine', () => {
  let engine: Engine;
  let project: ComposeProject;
  let api: string;
  let proxy: string;
  let prometheus: string;

  const one = async (service: string): Promise<string> => {
    const [id] = await project.containers(service);
    if (!id) throw new Error(`no ${service} container`);
    return id;
  };

  async function upAndHealthy(env: Record<string, string> = {}): Promise<void> {
    await project.run(['up', '--detach', '--no-build'], env);
    await waitHealthy(engine, await one('api'));
    await waitHealthy(engine, await one('worker'));
    await waitForOk(`${api}/health/ready`);
  }

  beforeAll(async () => {
    engine = await startEngine();
    await ensureBaseImages(engine, ['node', 'postgres', 'redis', 'nginx', 'prometheus']);
    await buildAppImage(engine);
    const port = await freePort();
    const proxyPort = await freePort();
    const prometheusPort = await freePort();
    project = composeProject(engine, `nlscompose${process.pid}`, {
      API_HOST_PORT: String(port),
      PROXY_HOST_PORT: String(proxyPort),
      // No AUTH_SECRET and no .env (the project reads an empty env file): secrets-init makes the key.
      // The first user only, so that the test can sign in.
      ...TEST_USER_ENV,
      PROMETHEUS_HOST_PORT: String(prometheusPort),
    });
    api = `http://127.0.0.1:${port}`;
    proxy = `http://127.0.0.1:${proxyPort}`;
    prometheus = `http://127.0.0.1:${prometheusPort}`;
  }, 45 * 60_000);

  afterAll(async () => {
    await project?.down().catch((error) => process.stdout.write(`[compose-stack] down: ${error}\n`));
    await engine?.stop();
  }, 180_000);

  /** The signing key as an API container reads it (AUTH_SECRET_FILE, the auth-secret volume). */
  const signingKey = async (): Promise<string> =>
    (await engine.docker(['exec', await one('api'), 'cat', '/secrets/auth_secret'])).stdout.trim();

  /** secrets-init's log lines (all JSON) and exit code. */
  async function secretsInitRun(): Promise<{ code: number; lines: Array<Record<string, unknown>> }> {
    const [id] = await project.containers('secrets-init');
    if (!id) throw new Error('no secrets-init container');
    const code = await waitExited(engine, id);
    const { stdout, stderr } = await engine.docker(['logs', id]);
    const lines = `${stdout}${stderr}`
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    return { code, lines };
  }

  it(
    'bare up, no .env and no AUTH_SECRET: secrets-init makes a key once, migrate runs once, api and worker turn healthy, a sign-in works',
    async () => {
      await upAndHealthy();
      const init = await secretsInitRun();
      expect(init.code).toBe(0);
      expect(init.lines).toMatchObject([{ outcome: 'created', file: '/secrets/auth_secret' }]);
      const migrations = await project.containers('migrate');
      expect(migrations).toHaveLength(1);
      expect(await waitExited(engine, migrations[0] as string)).toBe(0);
      expect((await fetch(`${api}/health/ready`)).status).toBe(200);

      // Nothing was given: the API has an empty AUTH_SECRET and reads the generated file.
      const env = JSON.parse(
        (await engine.docker(['inspect', '--format', '{{json .Config.Env}}', await one('api')])).stdout,
      ) as string[];
      expect(env).toContain('AUTH_SECRET=');
      expect(env).toContain('AUTH_SECRET_FILE=/secrets/auth_secret');
      const key = await signingKey();
      expect(Buffer.from(key, 'base64')).toHaveLength(48);
      expect(JSON.stringify(init.lines)).not.toContain(key);
      // The API container may read the key, never change it.
      const write = await engine
        .docker(['exec', await one('api'), 'sh', '-c', 'echo x > /secrets/another_file'])
        .then(
          () => 'written',
          (error: unknown) => String(error),
        );
      expect(write).toMatch(/Read-only file system/);
      expect(await signingKey()).toBe(key);

      const token = await signInOverHttp(api);
      expect(await meStatus(api, token)).toBe(200);
    },
    TEST_TIMEOUT_MS,
  );

  it(
    'the key survives a restart of the api container: a token issued before still verifies',
    async () => {
      const key = await signingKey();
      const token = await signInOverHttp(api);
      const before = await one('api');
      await project.run(['restart', '--timeout', '40', 'api']);
      await waitHealthy(engine, before);
      await waitForOk(`${api}/health/ready`);
      expect(await one('api')).toBe(before);
      expect(await signingKey()).toBe(key);
      expect(await meStatus(api, token)).toBe(200);
    },
    TEST_TIMEOUT_MS,
  );

  it(
    'an item written before down is still there after up (the pgdata volume), and so are the key and its tokens',
    async () => {
      const key = await signingKey();
      const token = await signInOverHttp(api);
      const created = await fetch(`${api}/api/items`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...token },
        body: JSON.stringify({ name: 'kept across down and up' }),
      });
      expect(created.status).toBe(201);
      const { id } = (await created.json()) as { id: string };
      await project.run(['down', '--timeout', '40']);
      await upAndHealthy();
      const read = await fetch(`${api}/api/items/${id}`);
      expect(read.status).toBe(200);
      expect(((await read.json()) as { name: string }).name).toBe('kept across down and up');
      // A new secrets-init container found the key and kept it.
      const init = await secretsInitRun();
      expect(init.code).toBe(0);
      expect(init.lines).toMatchObject([{ outcome: 'kept' }]);
      expect(await signingKey()).toBe(key);
      expect(await meStatus(api, token)).toBe(200);
    },
    TEST_TIMEOUT_MS,
  );

  it(
    'a task enqueued through the API waits while the worker container is stopped and completes once it runs',
    async () => {
      await project.run(['stop', 'worker']);
      const id = await enqueueTask(api);
      expect(await taskState(api, id, (state) => state !== 'waiting', 3000)).toBe('waiting');
      await project.run(['start', 'worker']);
      expect(await taskState(api, id)).toBe('completed');
    },
    TEST_TIMEOUT_MS,
  );

  it(
    'docker stop of the API with slow requests in flight: they complete, the container exits 0 within its grace period',
    async () => {
      const id = await one('api');
      const slow = Array.from({ length: 5 }, () => fetch(`${api}/api/examples/sleep?ms=3000`));
      await sleep(500);
      const started = Date.now();
      await engine.docker(['stop', '--time', '40', id]);
      const stoppedMs = Date.now() - started;
      const answers = await Promise.all(slow);
      expect(answers.map((answer) => answer.status)).toEqual([200, 200, 200, 200, 200]);
      expect(await containerState(engine, id)).toMatchObject({ Status: 'exited', ExitCode: 0 });
      expect(stoppedMs).toBeLessThan(40_000);
      expect(stoppedMs).toBeGreaterThan(2000); // it waited for the requests, not killed them
    },
    TEST_TIMEOUT_MS,
  );

  it(
    'docker kill -s HUP on a LEVEL=3 API container replaces every worker with 0 failed requests under load',
    async () => {
      await upAndHealthy({ LEVEL: '3', WORKERS: '2' });
      const id = await one('api');
      // A new connection per request to find the pids: with SO_REUSEPORT the kernel hashes each
      // connection to a worker, and 4 keep-alive connections all land on one in 1 run of 8.
      const before = startLoad(`${api}/health/worker`, 4, { newConnections: true });
      await sleep(1500);
      const pidsBefore = (await before.stop()).pids;
      const load = startLoad(`${api}/health/worker`, 4);
      await sleep(500);
      await engine.docker(['kill', '--signal', 'HUP', id]);
      const deadline = Date.now() + 90_000;
      while (!(await engine.docker(['logs', id])).stdout.includes('reload finished: every worker replaced')) {
        if (Date.now() > deadline)
          throw new Error(
            `no "reload finished" in the API logs:\n${(await engine.docker(['logs', '--tail', '30', id])).stdout}`,
          );
        await sleep(500);
      }
      await sleep(1000);
      const result = await load.stop();
      expect(result.failed, result.failures.slice(0, 5).join('\n')).toBe(0);
      expect(result.ok).toBeGreaterThan(50);
      const after = startLoad(`${api}/health/worker`, 4, { newConnections: true });
      await sleep(1000);
      const pidsAfter = (await after.stop()).pids;
      expect(pidsBefore.size).toBe(2);
      expect([...pidsAfter].filter((pid) => pidsBefore.has(pid))).toEqual([]);
    },
    TEST_TIMEOUT_MS,
  );

  /** Requests an API container has answered, asked inside it (nginx keeps /health/worker internal). */
  async function requestsServed(id: string): Promise<number> {
    const script =
      "fetch('http://127.0.0.1:3000/health/worker').then(r=>r.json()).then(b=>console.log(b.requestsServed))";
    return Number((await engine.docker(['exec', id, 'node', '-e', script])).stdout.trim());
  }

  it(
    '--profile proxy: killing one API replica behind the shipped nginx under load fails no GET; back, it takes traffic again',
    async () => {
      await project.run(['--profile', 'proxy', 'up', '--detach', '--no-build']);
      const replicas = await project.containers('api-replicas');
      expect(replicas.length).toBeGreaterThanOrEqual(2);
      for (const id of [await one('api'), ...replicas]) await waitHealthy(engine, id);
      const nginx = await one('nginx');
      await waitHealthy(engine, nginx);
      await waitForOk(`${proxy}/health/ready`);
      const victim = replicas[0] as string;
      const load = startLoad(`${proxy}/health/ready`, 4);
      await sleep(2000);
      await engine.docker(['kill', victim]);
      await sleep(5000);
      const result = await load.stop();
      expect(result.failed, result.failures.slice(0, 5).join('\n')).toBe(0);
      expect(result.ok).toBeGreaterThan(50);
      // Back (restart policy or start), then nginx re-resolves `api` (upstream.conf: reload after recreating).
      await engine.docker(['start', victim]);
      await waitHealthy(engine, victim);
      await engine.docker(['exec', nginx, 'nginx', '-s', 'reload']);
      const before = await requestsServed(victim);
      const again = startLoad(`${proxy}/health/ready`, 4);
      await sleep(4000);
      const second = await again.stop();
      expect(second.failed, second.failures.slice(0, 5).join('\n')).toBe(0);
      expect(await requestsServed(victim)).toBeGreaterThan(before + 10);
    },
    TEST_TIMEOUT_MS,
  );

  it(
    '--profile proxy: a sign-out through nginx holds on every API container: 20 of 20 requests with the old token refused',
    async () => {
      const containers = [await one('api'), ...(await project.containers('api-replicas'))];
      expect(containers.length).toBeGreaterThanOrEqual(3);
      const served = async () => Promise.all(containers.map((id) => requestsServed(id)));
      const before = await served();
      const { logout, statuses } = await meAfterLogout(proxy, 20);
      const after = await served();
      const refused = statuses.filter((status) => status === 401).length;
      process.stdout.write(
        `[compose-stack] logout through nginx: ${logout}; then ${refused} of ${statuses.length} GET /api/auth/me refused (${statuses.join(',')}); requests per API container meanwhile: ${after.map((count, index) => count - (before[index] as number)).join(', ')}\n`,
      );
      expect(logout).toBe(204);
      expect(statuses).toEqual(Array.from({ length: 20 }, () => 401));
    },
    TEST_TIMEOUT_MS,
  );

  interface Target {
    labels: { job: string; instance: string };
    health: string;
    lastError: string;
  }

  /** The api and tasks targets Prometheus has discovered, once it has scraped each of them at least once. */
  async function appTargets(expected: number): Promise<Target[]> {
    const deadline = Date.now() + 120_000;
    let targets: Target[] = [];
    while (Date.now() < deadline) {
      const response = await fetch(`${prometheus}/api/v1/targets?state=active`).catch(() => undefined);
      if (response?.ok) {
        const body = (await response.json()) as { data: { activeTargets: Target[] } };
        targets = body.data.activeTargets.filter(({ labels }) => labels.job !== 'prometheus');
        if (targets.length >= expected && targets.every(({ health }) => health !== 'unknown')) return targets;
      }
      await sleep(1000);
    }
    throw new Error(`Prometheus did not scrape ${expected} app targets in time: ${JSON.stringify(targets)}`);
  }

  it(
    '--profile monitoring: Prometheus finds every API and worker container through DNS discovery, all targets up',
    async () => {
      // The proxy test's stack (api, api-replicas, worker) plus Prometheus alone of the monitoring profile.
      await project.run([
        '--profile',
        'proxy',
        '--profile',
        'monitoring',
        'up',
        '--detach',
        '--no-build',
        'prometheus',
      ]);
      await waitHealthy(engine, await one('prometheus'));
      const apis = [await one('api'), ...(await project.containers('api-replicas'))];
      const workers = await project.containers('worker');
      const addressOf = async (id: string) =>
        (
          await engine.docker([
            'inspect',
            '--format',
            '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}',
            id,
          ])
        ).stdout.trim();
      const expected = [
        ...(await Promise.all(apis.map(async (id) => `api ${await addressOf(id)}:3000`))),
        ...(await Promise.all(workers.map(async (id) => `tasks ${await addressOf(id)}:3001`))),
      ].sort();
      const targets = await appTargets(expected.length);
      process.stdout.write(
        `[compose-stack] Prometheus targets: ${targets.map((t) => `${t.labels.job} ${t.labels.instance} ${t.health}`).join(', ')}\n`,
      );
      expect(targets.map(({ labels }) => `${labels.job} ${labels.instance}`).sort()).toEqual(expected);
      expect(
        targets.filter(({ health }) => health !== 'up').map((t) => `${t.labels.instance}: ${t.lastError}`),
      ).toEqual([]);
    },
    TEST_TIMEOUT_MS,
  );
});

if (skip) it.skip(`docker-compose.yml on a real engine: skipped, ${skip}`, () => {});
