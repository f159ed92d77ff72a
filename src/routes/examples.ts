import { createHash } from 'node:crypto';
import { setTimeout } from 'node:timers/promises';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { inTurn } from '../cpu-turns.js';
import { COMMON_PROBLEMS, problemResponses, UNAUTHORIZED } from '../plugins/problem.js';
import { withDefault } from '../plugins/with-default.js';

/**
 * The most rounds one anonymous request may ask for: a request's chain holds the event loop until it
 * ends, so this bounds how long. Measured on a slow 2-core machine: 1.9-3.0 us a round (idle, both cores
 * busy), so 5,000 rounds hold the loop 9-15 ms, 31 ms at worst (19 ms at the 3.7 us the issue saw).
 * Kept that short because a turn of the loop also bounds how fast it accepts connections (one a turn):
 * a probe behind 20 new connections waits 20 turns. Longer chains belong in a background task
 * (report.generate, up to 50,000,000 rounds in a worker thread).
 */
export const MAX_HASH_ROUNDS = 5000;

export const HASH_SEED = Buffer.from('node-levels-starter');

/** N chained SHA-256 rounds from `start`: deliberately CPU-bound work. Chains compose: (a then b) = a + b. */
export function sha256Chain(rounds: number, start: Buffer = HASH_SEED): Buffer {
  let digest = start;
  for (let round = 0; round < rounds; round += 1) digest = createHash('sha256').update(digest).digest();
  return digest;
}

export function chainedSha256(rounds: number): string {
  return sha256Chain(rounds).toString('hex');
}

/** Sleeping holds no CPU (a timer), only a connection: up to 30 s, as a slow upstream might take. */
export const MAX_SLEEP_MS = 30_000;

export const exampleRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    '/api/examples/sleep',
    {
      schema: {
        tags: ['examples'],
        operationId: 'sleepExample',
        security: [],
        summary: 'I/O-bound: wait N ms',
        description:
          'Waits without blocking the event loop, as a slow upstream would: concurrency, not CPUs, is the limit.',
        querystring: Type.Object({
          ms: withDefault(
            Type.Integer({
              minimum: 0,
              maximum: MAX_SLEEP_MS,
              description: 'Milliseconds to wait (0-30000)',
            }),
            100,
          ),
        }),
        response: {
          200: Type.Object({ sleptMs: Type.Integer() }, { description: 'Slept' }),
          ...problemResponses(COMMON_PROBLEMS),
        },
      },
    },
    async (request) => {
      // The request's signal ends the wait at its deadline, as it would a slow upstream call.
      await setTimeout(request.query.ms, undefined, { signal: request.abortSignal });
      return { sleptMs: request.query.ms };
    },
  );

  app.get(
    '/api/examples/db-sleep',
    {
      onRequest: app.authenticate,
      schema: {
        tags: ['examples'],
        operationId: 'dbSleepExample',
        summary: 'Database-bound: a query that runs N ms',
        description:
          'Runs `SELECT pg_sleep(N / 1000)`, a query bound to the request like every `app.db` query: past ' +
          'REQUEST_DEADLINE_MS the answer is 503 and the query is cancelled on the server (a CancelRequest, ' +
          'which PgBouncer forwards), its connection back in the pool. It holds a database connection while ' +
          'it runs, hence signed-in users only.',
        querystring: Type.Object({
          ms: withDefault(
            Type.Integer({
              minimum: 0,
              maximum: MAX_SLEEP_MS,
              description: 'Milliseconds the query sleeps (0-30000)',
            }),
            100,
          ),
        }),
        response: {
          200: Type.Object({ sleptMs: Type.Integer() }, { description: 'The query ran to its end' }),
          ...problemResponses({ ...COMMON_PROBLEMS, 401: UNAUTHORIZED }),
        },
      },
    },
    async (request) => {
      await app.db.query('SELECT pg_sleep($1::float8 / 1000)', [request.query.ms]);
      return { sleptMs: request.query.ms };
    },
  );

  app.get(
    '/api/examples/hash',
    {
      schema: {
        tags: ['examples'],
        operationId: 'hashExample',
        security: [],
        summary: 'CPU-bound: N chained SHA-256 rounds',
        description: `CPU-bound work on the event loop of the process that answers, one request's chain per loop turn (other requests, probes included, are served in between): more processes (LEVEL>=2) are what buys throughput here. At most ${MAX_HASH_ROUNDS} rounds, 9-31 ms of one core measured on a slow 2-core machine; longer work belongs in a background task (report.generate).`,
        querystring: Type.Object({
          rounds: withDefault(
            Type.Integer({
              minimum: 1,
              maximum: MAX_HASH_ROUNDS,
              description: `Rounds (1-${MAX_HASH_ROUNDS}), 2-3 us each`,
            }),
            1000,
          ),
        }),
        response: {
          200: Type.Object({ rounds: Type.Integer(), digest: Type.String() }, { description: 'The digest' }),
          ...problemResponses(COMMON_PROBLEMS),
        },
      },
    },
    async (request) => {
      const { rounds } = request.query;
      return { rounds, digest: await inTurn(() => chainedSha256(rounds)) };
    },
  );
};
