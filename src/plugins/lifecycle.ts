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

  // Callback hooks, not async ones: they run on every request and need no promise.
  app.addHook('onRequest', (request, reply, done) => {
    reply.header('x-request-id', request.id);
    if (!state.closing) return done();
    reply.header('connection', 'close');
    sendProblem(reply, request, problem(503, 'The server is shutting down; retry on a new connection'));
  });
  app.addHook('onSend', (_request, reply, payload, done) => {
    if (state.draining || state.closing) reply.header('connection', 'close');
    done(null, payload);
  });
  // The access line has a fixed shape with no secret in it: its own child logger skips the redaction
  // walk (wildcard paths) that every other line pays, about half the cost of writing it.
  const accessLog = app.log.child({}, { redact: { paths: [] } });
  app.addHook('onResponse', (request, reply, done) => {
    state.requestsServed += 1;
    // Probes hit every few seconds from every balancer: keep them out of info-level logs.
    const level = request.url.startsWith('/health') ? 'debug' : reply.statusCode >= 500 ? 'error' : 'info';
    accessLog[level](
      {
        reqId: request.id,
        method: request.method,
        url: request.url,
        statusCode: reply.statusCode,
        ms: Math.round(reply.elapsedTime * 10) / 10,
      },
      'request completed',
    );
    done();
  });
}

export default fp(lifecyclePlugin, { name: 'lifecycle' });

/** Shut down: new requests get 503 + close, idle connections close, in-flight requests finish, resources close. */
export async function closeApp(app: FastifyInstance): Promise<void> {
  app.processState.closing = true;
  await app.close();
}
