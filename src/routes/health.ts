import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { runChecks } from '../plugins/readiness.js';

export interface ProcessIdentity {
  /** 0 for a single process (LEVEL=1); 1..N for cluster workers. */
  workerId: number;
  /** How many times this worker slot has been (re)started by the supervisor. */
  generation: number;
}

const Live = Type.Object({ status: Type.Literal('ok') });
const Check = Type.Object({
  status: Type.Union([Type.Literal('up'), Type.Literal('down')]),
  latencyMs: Type.Number(),
  detail: Type.Optional(Type.String({ description: 'Which server answered (Redis: the master now)' })),
  error: Type.Optional(Type.String()),
  warning: Type.Optional(Type.String()),
});
const Ready = Type.Object({
  status: Type.Union([Type.Literal('ready'), Type.Literal('not_ready'), Type.Literal('shutting_down')]),
  checks: Type.Record(Type.String(), Check),
});
const WorkerInfo = Type.Object({
  pid: Type.Integer(),
  workerId: Type.Integer(),
  generation: Type.Integer(),
  uptimeSeconds: Type.Number(),
  requestsServed: Type.Integer(),
  activeConnections: Type.Integer(),
  eventLoop: Type.Object({ utilization: Type.Number(), delayMs: Type.Number() }),
  memory: Type.Object({
    rssBytes: Type.Integer(),
    heapUsedBytes: Type.Integer(),
    heapTotalBytes: Type.Integer(),
  }),
});

const READY_CHECK_TIMEOUT_MS = 2000;

export const healthRoutes: FastifyPluginAsyncTypebox<{ identity: ProcessIdentity }> = async (
  app,
  { identity },
) => {
  const live = (operationId: string) => ({
    schema: {
      tags: ['health'],
      operationId,
      summary: 'Liveness: no dependency checks',
      description: 'Answers while the event loop runs; for liveness probes (never restarts on a dependency).',
      security: [],
      response: { 200: { ...Live, description: 'Alive' } },
    },
  });
  const ok = async () => ({ status: 'ok' as const });
  app.get('/health', live('health'), ok);
  app.get('/health/live', live('healthLive'), ok);

  app.get(
    '/health/ready',
    {
      schema: {
        tags: ['health'],
        operationId: 'healthReady',
        summary: 'Readiness: dependencies reachable, schema migrated, not shutting down',
        description:
          'Checks each dependency (PostgreSQL, Redis when used) within 2 s, and that the migrations this release ships with are applied; for readiness probes.',
        security: [],
        response: {
          200: { ...Ready, description: 'Ready to serve' },
          503: {
            ...Ready,
            description:
              'A dependency is down, migrations are pending, the process is overloaded (a `load` check, no other run) or shutting down',
          },
        },
      },
    },
    async (_request, reply) => {
      // Overloaded: out of the balancer's pool until the loop frees, without probing the dependencies.
      const overload = app.overload();
      if (overload && !app.processState.closing)
        return reply
          .code(503)
          .send({ status: 'not_ready', checks: { load: { status: 'down', latencyMs: 0, error: overload } } });
      const checks = await runChecks(app.readinessChecks, READY_CHECK_TIMEOUT_MS);
      // A worker draining for a recycle still serves; only a real shutdown makes the service unready.
      const closing = app.processState.closing;
      const allUp = Object.values(checks).every((check) => check.status === 'up');
      const status = closing ? 'shutting_down' : allUp ? 'ready' : 'not_ready';
      return reply.code(status === 'ready' ? 200 : 503).send({ status, checks });
    },
  );

  app.get(
    '/health/worker',
    {
      schema: {
        tags: ['health'],
        operationId: 'healthWorker',
        summary: 'Figures of the process that answered',
        description: 'Pid, worker slot, uptime, requests served, event loop and memory of this process.',
        security: [],
        response: { 200: { ...WorkerInfo, description: 'This process' } },
      },
    },
    async () => {
      const pressure = app.memoryUsage();
      const memory = process.memoryUsage();
      const activeConnections = await new Promise<number>((resolve) =>
        app.server.getConnections((error, count) => resolve(error ? 0 : count)),
      );
      return {
        pid: process.pid,
        workerId: identity.workerId,
        generation: identity.generation,
        uptimeSeconds: Math.round((Date.now() - app.processState.startedAt) / 100) / 10,
        requestsServed: app.processState.requestsServed,
        activeConnections,
        eventLoop: { utilization: pressure.eventLoopUtilized, delayMs: pressure.eventLoopDelay },
        memory: { rssBytes: memory.rss, heapUsedBytes: memory.heapUsed, heapTotalBytes: memory.heapTotal },
      };
    },
  );
};
