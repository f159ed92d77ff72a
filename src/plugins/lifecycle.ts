import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { sendProblem } from './errors.js';
import { problem } from './problem.js';

/** What this process has done and whether it is on its way out; read by health and the runtime agent. */
export interface ProcessState {
  startedAt: number;
  requestsServed: number;
  /** Shutting down: new requests get 503 + Connection: close, readiness fails. */
  closing: boolean;
  /** Recycling inside a cluster: requests are still served, but every response closes its connection. */
  draining: boolean;
}

declare module 'fastify' {
  interface FastifyInstance {
    processState: ProcessState;
  }
}

async function lifecyclePlugin(app: FastifyInstance): Promise<void> {
  const state: ProcessState = { startedAt: Date.now(), requestsServed: 0, closing: false, draining: false };
  app.decorate('processState', state);

  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id);
    if (state.closing) {
      reply.header('connection', 'close');
      return sendProblem(
        reply,
        request,
        problem(503, 'The server is shutting down; retry on a new connection'),
      );
    }
  });
  app.addHook('onSend', async (_request, reply) => {
    if (state.draining || state.closing) reply.header('connection', 'close');
  });
  app.addHook('onResponse', async (request, reply) => {
    state.requestsServed += 1;
    // Probes hit every few seconds from every balancer: keep them out of info-level logs.
    const level = request.url.startsWith('/health') ? 'debug' : reply.statusCode >= 500 ? 'error' : 'info';
    request.log[level](
      {
        method: request.method,
        url: request.url,
        statusCode: reply.statusCode,
        ms: Math.round(reply.elapsedTime * 10) / 10,
      },
      'request completed',
    );
  });
}

export default fp(lifecyclePlugin, { name: 'lifecycle' });

/** Shut down: new requests get 503 + close, idle connections close, in-flight requests finish, resources close. */
export async function closeApp(app: FastifyInstance): Promise<void> {
  app.processState.closing = true;
  await app.close();
}
