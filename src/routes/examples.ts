import { createHash } from 'node:crypto';
import { setTimeout } from 'node:timers/promises';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { COMMON_PROBLEMS, problemResponses } from '../plugins/problem.js';

export const MAX_HASH_ROUNDS = 1_000_000;

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
        querystring: Type.Object({ ms: Type.Integer({ minimum: 0, maximum: MAX_SLEEP_MS, default: 100 }) }),
        response: {
          200: Type.Object({ sleptMs: Type.Integer() }, { description: 'Slept' }),
          ...problemResponses(COMMON_PROBLEMS),
        },
      },
    },
    async (request) => {
      await setTimeout(request.query.ms);
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
        description: 'Runs on the request thread: more processes (LEVEL>=2) are what buys throughput here.',
        querystring: Type.Object({
          rounds: Type.Integer({ minimum: 1, maximum: MAX_HASH_ROUNDS, default: 1000 }),
        }),
        response: {
          200: Type.Object({ rounds: Type.Integer(), digest: Type.String() }, { description: 'The digest' }),
          ...problemResponses(COMMON_PROBLEMS),
        },
      },
    },
    async (request) => ({ rounds: request.query.rounds, digest: chainedSha256(request.query.rounds) }),
  );
};
