/**
 * SESSION_AFFINITY=true live: Debian's nginx with deployment/nginx/affinity/true.conf in front of two
 * real `node dist/main.js` processes that issue the affinity cookie.
 */
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AFFINITY_COOKIE } from '../../src/plugins/affinity.js';
import type { ServerProcess } from '../helpers/process.js';
import { type BalancedNodes, NGINX_BIN, type Nginx, startBalancedNodes } from './helpers/nginx.js';

const hasNginx = existsSync(NGINX_BIN);

describe.skipIf(!hasNginx)('nginx with SESSION_AFFINITY=true in front of two app processes', () => {
  let balanced: BalancedNodes;
  let nginx: Nginx;
  let nodes: ServerProcess[];

  /** One request as a client with this cookie jar (at most the affinity cookie). */
  async function visit(jar: {
    cookie?: string;
  }): Promise<{ pid: number; setCookie: string | null; id: string }> {
    const response = await fetch(`${nginx.baseUrl}/health/worker`, {
      headers: jar.cookie ? { cookie: jar.cookie } : {},
      signal: AbortSignal.timeout(5000),
    });
    expect(response.status).toBe(200);
    const setCookie = response.headers.get('set-cookie');
    if (setCookie) jar.cookie = setCookie.split(';')[0];
    const id = response.headers.get('x-request-id') ?? '';
    return { pid: ((await response.json()) as { pid: number }).pid, setCookie, id };
  }

  beforeAll(async () => {
    balanced = await startBalancedNodes({ env: { SESSION_AFFINITY: 'true' }, sessionAffinity: true });
    ({ nginx, nodes } = balanced);
  });

  afterAll(async () => {
    await balanced?.stop();
  });

  it('a new client gets the cookie on its first answer and stays on that server from its first request on', async () => {
    const firstPids = new Set<number>();
    for (let client = 0; client < 16; client++) {
      const jar: { cookie?: string } = {};
      const first = await visit(jar);
      // The cookie carries the request id nginx hashed for this first request.
      expect(first.setCookie).toBe(`${AFFINITY_COOKIE}=${first.id}; Path=/; HttpOnly; SameSite=Lax`);
      firstPids.add(first.pid);
      for (let again = 0; again < 8; again++) {
        const next = await visit(jar);
        expect(next.pid).toBe(first.pid);
        expect(next.setCookie).toBeNull(); // issued once
      }
    }
    // Stickiness is per client, not one server for everyone: 16 clients land on both servers.
    expect([...firstPids].sort()).toEqual(nodes.map((node) => node.child.pid).sort());
  });

  it("when a client's server dies, the client moves to the other one without a failed GET", async () => {
    const jar: { cookie?: string } = {};
    const home = (await visit(jar)).pid;
    const victim = nodes.find((node) => node.child.pid === home) as ServerProcess;
    victim.child.kill('SIGKILL');
    await victim.exited;
    const after = await Promise.all(Array.from({ length: 5 }, () => visit({ ...jar })));
    expect(new Set(after.map((answer) => answer.pid))).toEqual(
      new Set(nodes.filter((node) => node !== victim).map((node) => node.child.pid)),
    );
  });
});
