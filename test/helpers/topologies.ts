import { startAppNode, startNginx } from '../deployment/helpers/nginx.js';
import { startCluster } from './cluster.js';
import { freePort, type ServerProcess } from './process.js';
import { dropPrefix, REDIS_URL, uniquePrefix } from './tasks.js';

/**
 * The service as the templates deploy it, on one database: what every cross-process test runs against.
 *  - `replicas`: N LEVEL=1 processes behind the real nginx template (Kubernetes, Swarm, compose's proxy
 *    profile), with or without Redis;
 *  - `level2`: `make run LEVEL=2` as the README says it, no Redis URL.
 */
export type TopologyName = 'replicas-postgres' | 'replicas-redis' | 'level2-postgres';

export interface Topology {
  name: TopologyName;
  /** Where clients talk to the service (nginx, or the cluster's port). */
  baseUrl: string;
  /** The app processes: replicas, or the cluster's primary. */
  processes: ServerProcess[];
  /**
   * Least time between two requests of one client: the nginx template allows 20 requests/s per client
   * address (burst 40) and answers 429 past it, which a test must not mistake for the app's.
   */
  requestIntervalMs: number;
  stop(): Promise<void>;
}

export const TOPOLOGIES: Record<TopologyName, string> = {
  'replicas-postgres': '2 LEVEL=1 replicas behind nginx, no Redis',
  'replicas-redis': '2 LEVEL=1 replicas behind nginx, with Redis',
  'level2-postgres': 'LEVEL=2 with 2 workers, no Redis',
};

/** Start one topology on `databaseUrl`; `env` goes to every app process. */
export async function startTopology(
  name: TopologyName,
  databaseUrl: string,
  env: Record<string, string> = {},
): Promise<Topology> {
  if (name === 'level2-postgres') {
    const cluster = await startCluster({
      DATABASE_URL: databaseUrl,
      LEVEL: '2',
      WORKERS: '2',
      ...env,
    });
    return {
      name,
      baseUrl: cluster.baseUrl,
      processes: [cluster],
      requestIntervalMs: 0,
      stop: async () => void (await cluster.stop('SIGKILL')),
    };
  }
  const prefix = name === 'replicas-redis' ? uniquePrefix() : undefined;
  const shared: Record<string, string> = prefix ? { REDIS_URL, QUEUE_PREFIX: prefix } : {};
  const ports = [await freePort(), await freePort()];
  const replicas: ServerProcess[] = [];
  try {
    for (const port of ports) replicas.push(await startAppNode(databaseUrl, port, { ...shared, ...env }));
    const nginx = await startNginx({ port: await freePort(), upstreamPorts: ports });
    return {
      name,
      baseUrl: nginx.baseUrl,
      processes: replicas,
      requestIntervalMs: 60,
      stop: async () => {
        await nginx.stop();
        await Promise.all(replicas.map((replica) => replica.stop('SIGKILL')));
        if (prefix) await dropPrefix(prefix);
      },
    };
  } catch (error) {
    await Promise.all(replicas.map((replica) => replica.stop('SIGKILL')));
    throw error;
  }
}
