/**
 * deployment/swarm/stack.yml on a real one-node Docker Swarm (the test engine, helpers/docker-engine.ts;
 * never the machine's own): `docker stack deploy` of the locally built image (APP_IMAGE), the migrate
 * job done and api and worker converged on their healthchecks, a rolling `docker service update` of the
 * API under load without a failed request (tokens issued before still verify: one key, the Docker secret
 * auth_secret), a sign-out through nginx refused by every API task, and a killed API task replaced by Swarm. This kernel has no
 * IPVS, so the routing mesh cannot work: the test runs every service with endpoint_mode: dnsrr behind an
 * nginx task (helpers/swarm.ts says exactly what it changes). The swarm is left and the stack removed at
 * the end, so the next container test finds a normal engine.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLoad } from '../helpers/load.js';
import { freePort } from '../helpers/process.js';
import { signInOverHttp } from '../helpers/user.js';
import { buildAppImage } from './helpers/app-image.js';
import { ensureBaseImages } from './helpers/base-images.js';
import { containerTest } from './helpers/container-test.js';
import { meAfterLogout, meStatus, waitForOk } from './helpers/containers.js';
import type { Engine } from './helpers/docker-engine.js';
import {
  createAuthSecret,
  serviceContainers,
  stackDeploy,
  stackRemove,
  swarmInit,
  testStackFile,
  waitConverged,
} from './helpers/swarm.js';

const { skip, startEngine } = await containerTest('swarm');
const STACK = 'nls';
const TEST_TIMEOUT_MS = 300_000;

describe.skipIf(Boolean(skip))('deployment/swarm/stack.yml on a one-node swarm', () => {
  let engine: Engine;
  let proxy: string;
  let deployed = false;

  beforeAll(async () => {
    engine = await startEngine();
    await ensureBaseImages(engine, ['node', 'postgres', 'redis', 'nginx']);
    const { tag: image } = await buildAppImage(engine);
    await swarmInit(engine, await freePort());
    await createAuthSecret(engine);
    const port = await freePort();
    proxy = `http://127.0.0.1:${port}`;
    await stackDeploy(engine, testStackFile(port, engine.version), STACK, {
      APP_IMAGE: image,
      DATABASE_URL: 'postgres://app:app@postgres:5432/app',
      REDIS_URL: 'redis://redis:6379',
      // No AUTH_SECRET: the API tasks read the Docker secret auth_secret (createAuthSecret).
    });
    deployed = true;
  }, 45 * 60_000);

  afterAll(async () => {
    if (deployed)
      await stackRemove(engine, STACK).catch((error) => process.stdout.write(`[swarm] stack rm: ${error}\n`));
    // Leaving the swarm drops its secrets (auth_secret) too.
    await engine?.docker(['swarm', 'leave', '--force']).catch(() => {});
    await engine?.stop();
  }, 180_000);

  it(
    'stack deploy: the migrate job completes, api (2) and worker (2) converge healthy, nginx answers /health/ready',
    async () => {
      const started = Date.now();
      await waitConverged(engine, `${STACK}_api`, 2);
      await waitConverged(engine, `${STACK}_worker`, 2);
      await waitForOk(`${proxy}/health/ready`, 120_000);
      process.stdout.write(`[swarm] converged ${Date.now() - started} ms after stack deploy\n`);
      // Swarm has no start order: the job may still be on a retry (restart_policy: on-failure, every
      // 5 s) when it started before PostgreSQL accepted connections, while the API is already up.
      const jobStates = () =>
        engine.docker(['service', 'ps', '--format', '{{.CurrentState}}', `${STACK}_migrate`]);
      let job = await jobStates();
      for (let waited = 0; !/^Complete/m.test(job.stdout) && waited < 60_000; waited += 2000) {
        await sleep(2000);
        job = await jobStates();
      }
      expect(job.stdout).toMatch(/^Complete/m);
    },
    TEST_TIMEOUT_MS,
  );

  it(
    'a sign-out through nginx holds on every API task: 20 of 20 requests with the old token refused',
    async () => {
      await waitConverged(engine, `${STACK}_api`, 2);
      const { logout, statuses } = await meAfterLogout(proxy, 20);
      const refused = statuses.filter((status) => status === 401).length;
      process.stdout.write(
        `[swarm] logout through nginx: ${logout}; then ${refused} of ${statuses.length} GET /api/auth/me refused (${statuses.join(',')})\n`,
      );
      expect(logout).toBe(204);
      expect(statuses).toEqual(Array.from({ length: 20 }, () => 401));
    },
    TEST_TIMEOUT_MS,
  );

  it(
    'a rolling docker service update --force of the API under load fails no request and replaces every task',
    async () => {
      const before = await waitConverged(engine, `${STACK}_api`, 2);
      // Signed in on the old tasks; the new ones read the same secret, so the token still verifies.
      const token = await signInOverHttp(proxy);
      const load = startLoad(`${proxy}/health/ready`, 4);
      await sleep(1000);
      const started = Date.now();
      // The shipped update_config (start-first, parallelism 1) with a shorter delay and monitor window.
      await engine.docker(
        [
          'service',
          'update',
          '--detach=false',
          '--force',
          '--update-delay',
          '1s',
          '--update-monitor',
          '5s',
          `${STACK}_api`,
        ],
        { timeoutMs: 240_000 },
      );
      const after = await waitConverged(engine, `${STACK}_api`, 2);
      await sleep(2000);
      const result = await load.stop();
      process.stdout.write(
        `[swarm] rolling update in ${Date.now() - started} ms: ${result.ok} ok, ${result.failed} failed\n`,
      );
      expect(result.failed, result.failures.slice(0, 5).join('\n')).toBe(0);
      expect(result.ok).toBeGreaterThan(100);
      expect(after.filter((id) => before.includes(id))).toEqual([]);
      expect(await meStatus(proxy, token)).toBe(200);
    },
    TEST_TIMEOUT_MS,
  );

  it(
    'an API container killed in the stack is replaced by a new healthy task, and nginx keeps answering',
    async () => {
      const before = await waitConverged(engine, `${STACK}_api`, 2);
      const victim = before[0] as string;
      const load = startLoad(`${proxy}/health/ready`, 4);
      const killed = Date.now();
      await engine.docker(['kill', victim]);
      const deadline = Date.now() + 120_000;
      let after: string[] = [];
      for (;;) {
        const running = await serviceContainers(engine, `${STACK}_api`);
        after = running
          .filter(({ id, state }) => !before.includes(id) && state.Health?.Status === 'healthy')
          .map(({ id }) => id);
        if (after.length === 1 || Date.now() > deadline) break;
        await sleep(250);
      }
      const replacedMs = Date.now() - killed;
      const result = await load.stop();
      process.stdout.write(
        `[swarm] killed task replaced by a healthy one in ${replacedMs} ms; ${result.ok} ok, ${result.failed} failed meanwhile\n`,
      );
      expect(after).toHaveLength(1);
      expect(await waitConverged(engine, `${STACK}_api`, 2)).toContain(after[0]);
      expect(result.failed, result.failures.slice(0, 5).join('\n')).toBe(0);
    },
    TEST_TIMEOUT_MS,
  );
});

if (skip) it.skip(`deployment/swarm/stack.yml on a one-node swarm: skipped, ${skip}`, () => {});
