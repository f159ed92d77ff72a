/** Small waits and reads on containers of the test engine, shared by every container test. */
import { setTimeout as sleep } from 'node:timers/promises';
import { signInOverHttp } from '../../helpers/user.js';
import type { Engine } from './docker-engine.js';

export interface ContainerState {
  Status: string;
  ExitCode: number;
  Health?: { Status: string; Log?: Array<{ Output: string }> };
}

export async function containerState(engine: Engine, id: string): Promise<ContainerState> {
  const { stdout } = await engine.docker(['inspect', '--format', '{{json .State}}', id]);
  return JSON.parse(stdout) as ContainerState;
}

/** Wait until the container's own HEALTHCHECK says healthy; fail at once if it exits. */
export async function waitHealthy(engine: Engine, id: string, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let state = await containerState(engine, id);
  while (state.Health?.Status !== 'healthy') {
    if (state.Status === 'exited' || Date.now() > deadline) {
      const { stdout, stderr } = await engine
        .docker(['logs', '--tail', '40', id])
        .catch(() => ({ stdout: '', stderr: '' }));
      throw new Error(`${id} is ${state.Status}/${state.Health?.Status ?? 'no health'}:\n${stdout}${stderr}`);
    }
    await sleep(500);
    state = await containerState(engine, id);
  }
}

/** Wait until the container has exited; its exit code. */
export async function waitExited(engine: Engine, id: string, timeoutMs = 120_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const state = await containerState(engine, id);
    if (state.Status === 'exited') return state.ExitCode;
    if (Date.now() > deadline) throw new Error(`${id} still ${state.Status} after ${timeoutMs} ms`);
    await sleep(300);
  }
}

/** Poll a URL until it answers 200 (an engine-published port needs a moment after start). */
export async function waitForOk(url: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(3000) });
      await response.arrayBuffer();
      if (response.ok) return;
      last = `status ${response.status}`;
    } catch (error) {
      last = String(error);
    }
    await sleep(300);
  }
  throw new Error(`${url} did not answer 200 within ${timeoutMs} ms (${last})`);
}

/** The host port the engine published for a container port (`docker port`). */
export async function publishedPort(engine: Engine, id: string, containerPort: number): Promise<number> {
  const { stdout } = await engine.docker(['port', id, `${containerPort}/tcp`]);
  const port = Number(/:(\d+)\s*$/m.exec(stdout.trim())?.[1]);
  if (!port) throw new Error(`${id} publishes no port for ${containerPort}: ${stdout}`);
  return port;
}

/** Enqueue a no-op task through the API's task route, signed in as the test user: its id. (The one place that knows the route.) */
export async function enqueueTask(baseUrl: string): Promise<string> {
  const created = await fetch(`${baseUrl}/api/tasks`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(await signInOverHttp(baseUrl)) },
    body: JSON.stringify({ name: 'system.noop', payload: {} }),
  });
  if (created.status !== 202) throw new Error(`enqueue answered ${created.status}: ${await created.text()}`);
  return ((await created.json()) as { id: string }).id;
}

/** A task's state as the API reports it, polled until `done` says so or the deadline passes. */
export async function taskState(
  baseUrl: string,
  id: string,
  done: (state: string) => boolean = (state) => state === 'completed' || state === 'failed',
  timeoutMs = 60_000,
): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { state } = (await (await fetch(`${baseUrl}/api/tasks/${id}`)).json()) as { state: string };
    if (done(state) || Date.now() > deadline) return state;
    await sleep(250);
  }
}

/** Enqueue a task through the API and wait until it finished: its final state. */
export async function runTaskThroughApi(baseUrl: string): Promise<string> {
  return taskState(baseUrl, await enqueueTask(baseUrl));
}

/** fetch on a new TCP connection (`Connection: close`), so a proxy in front picks a server afresh. */
function fetchOnNewConnection(url: string, init: RequestInit = {}): Promise<Response> {
  return fetch(url, {
    ...init,
    headers: { ...Object.fromEntries(new Headers(init.headers)), connection: 'close' },
    signal: AbortSignal.timeout(10_000),
  });
}

export interface LogoutCheck {
  /** Status of POST /api/auth/logout (204 when signed out). */
  logout: number;
  /** Statuses of GET /api/auth/me with the signed-out access token, one new connection each. */
  statuses: number[];
}

/**
 * Sign in through `baseUrl` (a proxy in front of several API containers), sign out, then ask
 * GET /api/auth/me `count` times with the old access token, each on a new connection so the proxy
 * spreads them over the containers: every one must answer 401, whichever container it reaches.
 */
export async function meAfterLogout(baseUrl: string, count = 20): Promise<LogoutCheck> {
  const authorization = await signInOverHttp(baseUrl);
  const logout = await fetchOnNewConnection(`${baseUrl}/api/auth/logout`, {
    method: 'POST',
    headers: authorization,
  });
  await logout.arrayBuffer();
  const statuses: number[] = [];
  for (let index = 0; index < count; index += 1) {
    const response = await fetchOnNewConnection(`${baseUrl}/api/auth/me`, { headers: authorization });
    await response.arrayBuffer();
    statuses.push(response.status);
  }
  return { logout: logout.status, statuses };
}

/** Status of GET /api/auth/me with these headers (a token issued earlier still verifies: 200). */
export async function meStatus(baseUrl: string, authorization: { authorization: string }): Promise<number> {
  const response = await fetchOnNewConnection(`${baseUrl}/api/auth/me`, { headers: authorization });
  await response.arrayBuffer();
  return response.status;
}
