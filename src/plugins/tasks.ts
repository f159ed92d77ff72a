import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import client from 'prom-client';
import { evictionWarning, readEvictionPolicy, SAFE_POLICY } from '../redis/eviction-policy.js';
import { describeTarget, redisTargetOf } from '../redis/target.js';
import type { Settings } from '../settings.js';
import type { TaskService } from '../tasks/service.js';
import { addReadinessCheck } from './readiness.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** Undefined when ENABLE_BACKGROUND_TASKS is off. */
    tasks: TaskService | undefined;
  }
}

let depthRegistered = false;

/**
 * Queue depth by state, read from Redis at scrape time. Every HTTP worker reports the same figure, in
 * its own series at LEVEL>=2 (pool and slot labels): aggregate with max, never sum.
 */
function registerQueueDepth(service: () => TaskService | undefined): void {
  if (depthRegistered) return;
  depthRegistered = true;
  new client.Gauge({
    name: 'task_queue_jobs',
    help: 'Jobs in each queue by state',
    labelNames: ['queue', 'state'] as const,
    aggregator: 'max',
    async collect() {
      const counts = await service()
        ?.counts()
        .catch(() => undefined);
      this.reset();
      for (const [queue, byState] of Object.entries(counts ?? {})) {
        for (const [state, count] of Object.entries(byState)) this.set({ queue, state }, count);
      }
    },
  });
}

let current: TaskService | undefined;

async function tasksPlugin(app: FastifyInstance, settings: Settings): Promise<void> {
  if (!settings.ENABLE_BACKGROUND_TASKS) {
    app.decorate('tasks', undefined);
    return;
  }
  // Loaded only here: a level without background tasks never loads BullMQ or ioredis.
  const [
    { connectedAddress, createProducerConnection, firstAttemptSettled },
    { watchConnection },
    { retentionOf, TaskService },
    { OutboxStore },
  ] = await Promise.all([
    import('../redis/connection.js'),
    import('../redis/connection-events.js'),
    import('../tasks/service.js'),
    import('../tasks/outbox.js'),
  ]);
  const target = redisTargetOf(settings);
  const connection = createProducerConnection(target);
  // Errors surface per request (503); the connection retries in the background, logged once down and once back.
  watchConnection(connection, app.log, 'tasks');
  // Give Redis a moment to answer at start-up, so the first requests find it ready; never block longer.
  await firstAttemptSettled(connection);
  // The outbox: tasks committed with a write (POST /api/items) report `pending` until relayed.
  const service = new TaskService(
    connection,
    settings.QUEUE_PREFIX,
    retentionOf(settings),
    new OutboxStore(app.db),
  );
  app.decorate('tasks', service);
  current = service;
  registerQueueDepth(() => current);
  // maxmemory-policy: warned once when first reached, and in every readiness answer while unsafe.
  let warned = false;
  const policyWarning = async () => {
    const policy = await readEvictionPolicy(connection);
    if (!policy || policy === SAFE_POLICY) return undefined;
    if (!warned) app.log.warn({ policy }, evictionWarning(policy));
    warned = true;
    return evictionWarning(policy);
  };
  connection.once('ready', () => void policyWarning().catch(() => {}));
  if (connection.status === 'ready') void policyWarning().catch(() => {});
  // The detail names the server answering, so a Sentinel failover shows as a new address here.
  addReadinessCheck(app, 'redis', async () => {
    await service.ping();
    const address = connectedAddress(connection);
    const detail = target.kind === 'sentinel' ? `master ${address} (${describeTarget(target)})` : address;
    return { detail, warning: await policyWarning() };
  });
  app.addHook('onClose', async () => {
    await service.close();
    connection.disconnect();
  });
}

export default fp(tasksPlugin, { name: 'tasks', dependencies: ['readiness', 'db'] });
