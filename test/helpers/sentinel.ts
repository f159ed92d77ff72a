/**
 * A real Redis Sentinel topology on private ports: a master, one replica, three sentinels
 * (`redis-server --sentinel`, quorum 2), passwords on data nodes and sentinels. Fast failure
 * detection so a test's failover takes seconds.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { until } from './cluster.js';
import { freePort, portOpen } from './process.js';

export const MASTER_NAME = 'testmaster';
/** Passwords on both sides, so the app's REDIS_URL credentials and REDIS_SENTINEL_PASSWORD are used. */
export const DATA_PASSWORD = 'data-secret';
export const SENTINEL_PASSWORD = 'sentinel-secret';

export interface RedisNode {
  port: number;
  child: ChildProcess;
}

export interface SentinelTopology {
  master: RedisNode;
  replica: RedisNode;
  sentinels: RedisNode[];
  /** The app's Redis settings for this topology (REDIS_URL gives only the data nodes' password). */
  env: Record<string, string>;
  /** The master's port as the sentinels report it now. */
  masterPort(): Promise<number>;
  /** A direct client to one data node (for the test's own checks). */
  client(port: number): Redis;
  /** Wait until the replica has every write the master had when this was called. */
  replicaCaughtUp(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

function startRedis(args: string[]): ChildProcess {
  // stdio ignored: the processes log to files of their own in the topology's folder.
  return spawn('redis-server', args, { stdio: 'ignore' });
}

async function node(args: string[], port: number): Promise<RedisNode> {
  const child = startRedis(args);
  await until(() => portOpen(port), 10_000, `redis on port ${port}`);
  return { port, child };
}

function info(text: string, field: string): string | undefined {
  return new RegExp(`^${field}:(.*)$`, 'm').exec(text)?.[1]?.trim();
}

export async function startSentinelTopology(): Promise<SentinelTopology> {
  const dir = mkdtempSync(join(tmpdir(), 'sentinel-'));
  const [masterPort, replicaPort, ...sentinelPorts] = await Promise.all(
    Array.from({ length: 5 }, () => freePort()),
  );
  const common = [
    ...['--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
    ...['--requirepass', DATA_PASSWORD, '--masterauth', DATA_PASSWORD],
  ];
  const master = await node(
    ['--port', String(masterPort), ...common, '--logfile', join(dir, 'master.log')],
    masterPort as number,
  );
  const replica = await node(
    [
      '--port',
      String(replicaPort),
      ...common,
      '--logfile',
      join(dir, 'replica.log'),
      '--replicaof',
      '127.0.0.1',
      String(masterPort),
    ],
    replicaPort as number,
  );
  const sentinels: RedisNode[] = [];
  for (const port of sentinelPorts) {
    // Sentinel rewrites its config file (it records the topology), so each gets a file of its own.
    const config = join(dir, `sentinel-${port}.conf`);
    writeFileSync(
      config,
      [
        `port ${port}`,
        'bind 127.0.0.1',
        `dir ${dir}`,
        `logfile ${join(dir, `sentinel-${port}.log`)}`,
        `requirepass ${SENTINEL_PASSWORD}`,
        `sentinel sentinel-pass ${SENTINEL_PASSWORD}`,
        `sentinel monitor ${MASTER_NAME} 127.0.0.1 ${masterPort} 2`,
        `sentinel auth-pass ${MASTER_NAME} ${DATA_PASSWORD}`,
        `sentinel down-after-milliseconds ${MASTER_NAME} 1000`,
        `sentinel failover-timeout ${MASTER_NAME} 10000`,
        `sentinel parallel-syncs ${MASTER_NAME} 1`,
        '',
      ].join('\n'),
    );
    sentinels.push(await node([config, '--sentinel'], port as number));
  }
  const client = (port: number) =>
    new Redis({ port, host: '127.0.0.1', password: DATA_PASSWORD, maxRetriesPerRequest: 1 });
  const sentinelClient = new Redis({
    port: sentinels[0]?.port as number,
    host: '127.0.0.1',
    password: SENTINEL_PASSWORD,
    maxRetriesPerRequest: 1,
  });
  const topology: SentinelTopology = {
    master,
    replica,
    sentinels,
    env: {
      REDIS_SENTINELS: sentinels.map((sentinel) => `127.0.0.1:${sentinel.port}`).join(','),
      REDIS_SENTINEL_NAME: MASTER_NAME,
      REDIS_SENTINEL_PASSWORD: SENTINEL_PASSWORD,
      // Host and port are ignored with sentinels: a port nothing listens on proves it.
      REDIS_URL: `redis://:${DATA_PASSWORD}@127.0.0.1:1/0`,
    },
    async masterPort() {
      const [, port] = (await sentinelClient.call('SENTINEL', 'get-master-addr-by-name', MASTER_NAME)) as [
        string,
        string,
      ];
      return Number(port);
    },
    client,
    async replicaCaughtUp(timeoutMs = 10_000) {
      const masterClient = client(master.port);
      const replicaClient = client(replica.port);
      try {
        const target = Number(info(await masterClient.info('replication'), 'master_repl_offset'));
        await until(
          async () =>
            Number(info(await replicaClient.info('replication'), 'slave_repl_offset') ?? -1) >= target,
          timeoutMs,
          'the replica to catch up',
        );
      } finally {
        masterClient.disconnect();
        replicaClient.disconnect();
      }
    },
    async stop() {
      sentinelClient.disconnect();
      for (const each of [master, replica, ...sentinels]) {
        if (each.child.exitCode === null && each.child.signalCode === null) each.child.kill('SIGKILL');
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
  // Every sentinel knows the replica and the other sentinels before a test relies on a failover.
  await until(
    async () => {
      const replicas = (await sentinelClient.call('SENTINEL', 'replicas', MASTER_NAME)) as unknown[];
      const known = (await sentinelClient.call('SENTINEL', 'sentinels', MASTER_NAME)) as unknown[];
      return replicas.length === 1 && known.length === 2;
    },
    20_000,
    'the sentinels to discover the replica and each other',
  );
  return topology;
}
