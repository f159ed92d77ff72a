/**
 * Redis Sentinel, for real: a master, a replica and three sentinels on private ports; the app at
 * LEVEL=4 finds the master through them. `kill -9` of the master with 200 tasks in flight: the
 * sentinels promote the replica and the app follows it, losing no task and answering throughout.
 */
import pg from 'pg';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, until } from './helpers/cluster.js';
import { createTestDatabase, type TestDatabase } from './helpers/database.js';
import type { ServerProcess } from './helpers/process.js';
import { type SentinelTopology, startSentinelTopology } from './helpers/sentinel.js';
import { uniquePrefix } from './helpers/tasks.js';
import { signInOverHttp } from './helpers/user.js';

let database: TestDatabase;
let topology: SentinelTopology;
const servers: ServerProcess[] = [];

beforeAll(async () => {
  [database, topology] = await Promise.all([createTestDatabase(), startSentinelTopology()]);
});
afterAll(async () => {
  await Promise.all(servers.map((server) => server.stop('SIGKILL')));
  await topology?.stop();
  await database?.drop();
});

interface Answer {
  path: string;
  status: number;
  retryAfter: string | undefined;
  ms: number;
  at: number;
  body: string;
}

/** One request with a bound: a hang shows as status 0 after 10 s, never as a stuck test. */
/** The test user's Authorization header, sent with every call once signed in. */
let signedIn: Record<string, string> = {};

async function call(agent: Agent, base: string, path: string, init: { method?: string; body?: object } = {}) {
  const started = Date.now();
  try {
    const response = await request(`${base}${path}`, {
      dispatcher: agent,
      method: (init.method ?? 'GET') as 'GET',
      headers: { ...signedIn, ...(init.body ? { 'content-type': 'application/json' } : {}) },
      ...(init.body ? { body: JSON.stringify(init.body) } : {}),
      headersTimeout: 10_000,
      bodyTimeout: 10_000,
    });
    const body = await response.body.text();
    const retryAfter = response.headers['retry-after'];
    return {
      path,
      status: response.statusCode,
      retryAfter: typeof retryAfter === 'string' ? retryAfter : undefined,
      ms: Date.now() - started,
      at: started,
      body,
      headers: response.headers,
    };
  } catch (error) {
    return {
      path,
      status: 0,
      retryAfter: undefined,
      ms: Date.now() - started,
      at: started,
      body: String(error),
    };
  }
}

async function outboxKeys(prefix: string): Promise<string[]> {
  const client = new pg.Client({ connectionString: database.url });
  await client.connect();
  const { rows } = await client.query(
    'SELECT idempotency_key FROM outbox_emails WHERE idempotency_key LIKE $1',
    [`${prefix}-%`],
  );
  await client.end();
  return rows.map((row) => row.idempotency_key as string);
}

describe('Redis Sentinel failover at LEVEL=4', () => {
  it('kill -9 of the master: replica promoted, all 200 tasks complete, API answers throughout, limits and cache work after', async () => {
    const prefix = uniquePrefix();
    const server = await startCluster({
      LEVEL: '4',
      WORKERS: '2',
      TASK_WORKERS: '1',
      DATABASE_URL: database.url,
      ...topology.env,
      QUEUE_PREFIX: prefix,
      TASK_CONCURRENCY: '5',
      // Jobs whose completion died with the master come back after about this long (at-least-once).
      TASK_LOCK_DURATION: '5',
      RATE_LIMIT_MAX: '100000',
    });
    servers.push(server);
    const base = server.baseUrl;
    const agent = new Agent({ connections: 8 });
    const oldMaster = `127.0.0.1:${topology.master.port}`;
    const newMaster = `127.0.0.1:${topology.replica.port}`;

    // Ready, with the master named (asked until 200: a loaded machine may shed the first asks).
    let before: { checks?: { redis?: { detail?: string } } } = {};
    await until(
      async () => {
        const ready = await call(agent, base, '/health/ready');
        before = JSON.parse(ready.body);
        return ready.status === 200;
      },
      30_000,
      'readiness before the kill',
    );
    expect(before.checks?.redis?.detail).toContain(`master ${oldMaster}`);
    signedIn = await signInOverHttp(base);
    const item = JSON.parse(
      (await call(agent, base, '/api/items', { method: 'POST', body: { name: 'before' } })).body,
    );

    // 200 tasks, ~4 s of work at concurrency 5: many are waiting, some active, when the master dies.
    const ids: string[] = [];
    const enqueue = async (key: string) => {
      const answer = await call(agent, base, '/api/tasks', {
        method: 'POST',
        body: {
          name: 'email.send',
          payload: { to: 'a@example.com', subject: key, body: 'x', latencyMs: 100, messageId: key },
        },
      });
      return answer.status === 202 ? (JSON.parse(answer.body).id as string) : undefined;
    };
    for (let index = 0; index < 200; index += 1) {
      const id = await enqueue(`${prefix}-${index}`);
      expect(id).toBeDefined();
      ids.push(id as string);
    }
    await until(async () => (await outboxKeys(prefix)).length >= 20, 30_000, 'the first tasks to complete');
    // What the replica has not received yet is what asynchronous replication loses (docs/shared-services.md):
    // the test kills only once the acknowledged enqueues are on the replica.
    await topology.replicaCaughtUp();

    const answers: Answer[] = [];
    const acknowledged: string[] = [];
    let polling = true;
    let extra = 0;
    const poll = async () => {
      while (polling) {
        answers.push(await call(agent, base, `/api/items/${item.id}`));
        answers.push(await call(agent, base, `/api/tasks/${ids[0]}`));
        extra += 1;
        const id = await enqueue(`${prefix}-during-${extra}`);
        if (id) acknowledged.push(id);
        answers.push(await call(agent, base, '/health/ready'));
      }
    };
    const killedAt = Date.now();
    topology.master.child.kill('SIGKILL');
    const pollers = [poll(), poll()];
    let switchedAt = 0;
    await until(
      async () => {
        const ready = await call(agent, base, '/health/ready');
        if (
          ready.status === 200 &&
          JSON.parse(ready.body).checks.redis.detail?.includes(`master ${newMaster}`)
        )
          switchedAt = Date.now();
        return switchedAt > 0;
      },
      60_000,
      'readiness to report the promoted replica as master',
    );
    expect(await topology.masterPort()).toBe(topology.replica.port);
    await new Promise((resolve) => setTimeout(resolve, 2000));
    polling = false;
    await Promise.all(pollers);

    // Every task completes: the 200 and each enqueue the API acknowledged during and after the switch.
    const keysWanted = new Set([...ids.map((_, index) => `${prefix}-${index}`)]);
    await until(
      async () => {
        const done = new Set(await outboxKeys(prefix));
        return [...keysWanted].every((key) => done.has(key));
      },
      60_000,
      'all 200 tasks to run',
    ).catch(async (error) => {
      const redis = topology.client(topology.replica.port);
      const counts = {
        wait: await redis.llen(`${prefix}:default:wait`),
        active: await redis.llen(`${prefix}:default:active`),
        completed: await redis.zcard(`${prefix}:default:completed`),
        failed: await redis.zcard(`${prefix}:default:failed`),
        clients: (await redis.client('LIST')) as string,
      };
      redis.disconnect();
      const workerLogs = server.logs.filter((line) => line.pool === 'tasks' || line.role === 'task-worker');
      throw new Error(
        `${error.message}\n${JSON.stringify(counts)}\n${workerLogs
          .slice(-30)
          .map((l) => JSON.stringify(l))
          .join('\n')}`,
      );
    });
    const states = new Map<string, string>();
    await until(
      async () => {
        for (const id of [...ids, ...acknowledged]) {
          if (states.get(id) === 'completed') continue;
          const answer = await call(agent, base, `/api/tasks/${id}`);
          states.set(
            id,
            answer.status === 200 ? JSON.parse(answer.body).state : `http ${answer.status} ${answer.body}`,
          );
        }
        return [...states.values()].every((state) => state === 'completed');
      },
      30_000,
      'every task to show completed',
    ).catch((error) => {
      const pending = [...states].filter(([, state]) => state !== 'completed');
      throw new Error(`${error.message}: ${JSON.stringify(pending.slice(0, 10))} (${pending.length} in all)`);
    });

    // The API answered throughout: no 500, no hang; 503s carry Retry-After.
    const byStatus = new Map<number, number>();
    for (const answer of answers) byStatus.set(answer.status, (byStatus.get(answer.status) ?? 0) + 1);
    const bad = answers.filter(
      (answer) => answer.status === 0 || (answer.status >= 500 && answer.status !== 503),
    );
    expect(bad, JSON.stringify(bad.slice(0, 5))).toEqual([]);
    const api503 = answers.filter((answer) => answer.status === 503 && answer.path.startsWith('/api/'));
    for (const answer of api503) expect(answer.retryAfter, `${answer.path} ${answer.body}`).toMatch(/^\d+$/);
    expect(Math.max(...answers.map((answer) => answer.ms))).toBeLessThan(10_000);
    // The items route needs no Redis (cache and limiter degrade open): never a Redis 503 there. Only
    // load shedding on a busy machine may answer 503.
    const items = answers.filter((answer) => answer.path.startsWith('/api/items/'));
    expect(items.filter((answer) => answer.status !== 200 && answer.status !== 503)).toEqual([]);
    expect(items.filter((answer) => /Redis/.test(answer.body))).toEqual([]);
    expect(items.filter((answer) => answer.status === 200).length).toBeGreaterThan(0);

    // Rate limits and the cache live on the new master now.
    const promoted = topology.client(topology.replica.port);
    const first = await call(agent, base, `/api/items/${item.id}`);
    const second = await call(agent, base, `/api/items/${item.id}`);
    expect(
      Number((second as { headers: Record<string, string> }).headers['x-ratelimit-remaining']),
    ).toBeLessThan(Number((first as { headers: Record<string, string> }).headers['x-ratelimit-remaining']));
    expect((await promoted.keys(`${prefix}:rate-limit:*`)).length).toBeGreaterThan(0);
    await call(agent, base, `/api/items/${item.id}`, { method: 'PATCH', body: { name: 'after' } });
    expect(JSON.parse((await call(agent, base, `/api/items/${item.id}`)).body).name).toBe('after');
    expect(JSON.parse((await promoted.get(`${prefix}:cache:item:${item.id}`)) ?? '{}').name).toBe('after');
    promoted.disconnect();
    await agent.close();

    console.log(
      JSON.stringify({
        failoverMs: switchedAt - killedAt,
        answers: Object.fromEntries(byStatus),
        acknowledgedDuringSwitch: acknowledged.length,
        tasksCompleted: ids.length + acknowledged.length,
        slowestAnswerMs: Math.max(...answers.map((answer) => answer.ms)),
      }),
    );
  }, 150_000);
});
