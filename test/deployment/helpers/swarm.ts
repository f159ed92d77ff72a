/**
 * A one-node Docker Swarm on the test engine (never the machine's own) and the shipped
 * deployment/swarm/stack.yml deployed on it, with the few changes this machine needs (testStackFile).
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { parse, stringify } from 'yaml';
import { ROOT } from '../../helpers/process.js';
import { TEST_USER_ENV } from '../../helpers/user.js';
import { BASE_IMAGES } from './base-images.js';
import { type ContainerState, containerState } from './containers.js';
import type { Engine } from './docker-engine.js';

const run = promisify(execFile);

/** The machine's first non-loopback IPv4 outside Docker's bridges: Swarm refuses to advertise 127.0.0.1. */
function advertiseAddress(): string {
  for (const [name, addresses] of Object.entries(networkInterfaces())) {
    if (/^(docker|br-|veth|lo)/.test(name)) continue;
    const v4 = addresses?.find((address) => address.family === 'IPv4' && !address.internal);
    if (v4) return v4.address;
  }
  throw new Error('no IPv4 address to advertise the swarm on');
}

export async function swarmInit(engine: Engine, port: number): Promise<void> {
  if (!engine.own) throw new Error('Swarm is only initialised on the engine the tests started');
  await engine.docker(['swarm', 'leave', '--force']).catch(() => {});
  const address = advertiseAddress();
  await engine.docker([
    'swarm',
    'init',
    '--advertise-addr',
    `${address}:${port}`,
    '--listen-addr',
    `${address}:${port}`,
  ]);
}

type Service = Record<string, unknown> & { deploy?: Record<string, unknown>; environment?: object };

/**
 * stack.yml as deployed here. Changed: no IPVS in this kernel, so no routing mesh and no service VIPs:
 * every service gets endpoint_mode: dnsrr, the API loses its ingress port and an nginx task publishes
 * one in host mode (fixtures/swarm-nginx.conf); one node, so 2 API replicas and no
 * max_replicas_per_node (a start-first update needs room for a third task on the node); Docker CLI 20.10's `stack deploy` refuses `mode: replicated-job`
 * ("Unknown mode"), so there the migrate job runs as one replicated task whose on-failure restart policy
 * leaves it Complete after exit 0 (the idiom before jobs). Added: PostgreSQL and Redis tasks for the app,
 * and FIRST_USER_* in the API's environment so that the test can sign in.
 */
export function testStackFile(nginxPort: number, dockerVersion: string): string {
  const stack = parse(readFileSync(join(ROOT, 'deployment/swarm/stack.yml'), 'utf8')) as {
    services: Record<string, Service>;
  };
  const api = stack.services.api as Service;
  delete api.ports;
  api.environment = { ...api.environment, ...TEST_USER_ENV };
  // One node: the cap of 2 per node would leave a start-first update's third task with no node to go to.
  const deploy = api.deploy as Record<string, unknown> & { placement?: Record<string, unknown> };
  deploy.replicas = 2;
  delete deploy.placement?.max_replicas_per_node;
  const dnsrr = { endpoint_mode: 'dnsrr' };
  const migrate = stack.services.migrate as Service;
  if (Number(dockerVersion.split('.')[0]) < 23)
    migrate.deploy = { ...migrate.deploy, mode: 'replicated', replicas: 1 };
  stack.services.postgres = {
    image: BASE_IMAGES.postgres,
    environment: { POSTGRES_USER: 'app', POSTGRES_PASSWORD: 'app', POSTGRES_DB: 'app' },
    deploy: dnsrr,
  };
  stack.services.redis = { image: BASE_IMAGES.redis, deploy: dnsrr };
  stack.services.nginx = {
    image: BASE_IMAGES.nginx,
    volumes: [
      {
        type: 'bind',
        source: join(ROOT, 'test/deployment/fixtures/swarm-nginx.conf'),
        target: '/etc/nginx/nginx.conf',
        read_only: true,
      },
    ],
    ports: [{ target: 80, published: nginxPort, protocol: 'tcp', mode: 'host' }],
    deploy: dnsrr,
  };
  for (const service of Object.values(stack.services))
    if (service !== migrate) service.deploy = { ...service.deploy, ...dnsrr };
  const file = join(mkdtempSync(join(tmpdir(), 'nls-stack-')), 'stack.yml');
  writeFileSync(file, stringify(stack));
  return file;
}

/**
 * What stack.yml's header asks for once, before the first deploy: the signing key as the external
 * Docker secret `auth_secret` (a random 48-byte key, given on stdin so it is in no command line).
 */
export async function createAuthSecret(engine: Engine): Promise<void> {
  await engine.docker(['secret', 'rm', 'auth_secret']).catch(() => {});
  await engine.docker(['secret', 'create', 'auth_secret', '-'], {
    input: randomBytes(48).toString('base64'),
  });
}

/** `docker stack deploy` with the variables stack.yml interpolates (the CLI reads them from its env). */
export async function stackDeploy(
  engine: Engine,
  file: string,
  name: string,
  variables: Record<string, string>,
): Promise<void> {
  await run('/usr/bin/docker', ['stack', 'deploy', '--compose-file', file, name], {
    env: { ...engine.env, ...variables },
  });
}

export interface TaskContainer {
  id: string;
  state: ContainerState;
}

/** The running containers of a stack's service, with their State (health included). */
export async function serviceContainers(engine: Engine, service: string): Promise<TaskContainer[]> {
  const { stdout } = await engine.docker([
    'ps',
    '--quiet',
    '--filter',
    `label=com.docker.swarm.service.name=${service}`,
  ]);
  const ids = stdout.split('\n').filter(Boolean);
  return Promise.all(ids.map(async (id) => ({ id, state: await containerState(engine, id) })));
}

/** Wait until the service has `replicas` running containers, all healthy (when it has a healthcheck). */
export async function waitConverged(
  engine: Engine,
  service: string,
  replicas: number,
  timeoutMs = 180_000,
): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  let seen: TaskContainer[] = [];
  while (Date.now() < deadline) {
    seen = await serviceContainers(engine, service).catch(() => []);
    const ready = seen.filter(
      ({ state }) => state.Status === 'running' && (!state.Health || state.Health.Status === 'healthy'),
    );
    if (ready.length === replicas && seen.length === replicas) return ready.map(({ id }) => id).sort();
    await sleep(500);
  }
  const tasks = await engine
    .docker(['service', 'ps', '--no-trunc', service])
    .catch((e) => ({ stdout: String(e) }));
  throw new Error(
    `${service} did not converge to ${replicas} healthy tasks: ${JSON.stringify(seen.map((c) => c.state))}\n${tasks.stdout}`,
  );
}

/** Remove the stack and wait until its containers and networks are gone. */
export async function stackRemove(engine: Engine, name: string): Promise<void> {
  await engine.docker(['stack', 'rm', name]);
  const deadline = Date.now() + 120_000;
  while (Date.now() < deadline) {
    const { stdout } = await engine.docker([
      'ps',
      '--all',
      '--quiet',
      '--filter',
      `label=com.docker.stack.namespace=${name}`,
    ]);
    const networks = await engine.docker([
      'network',
      'ls',
      '--quiet',
      '--filter',
      `label=com.docker.stack.namespace=${name}`,
    ]);
    if (!stdout.trim() && !networks.stdout.trim()) return;
    await sleep(500);
  }
}
