import { Type } from 'typebox';
import { HASH_SEED, sha256Chain } from '../../routes/examples.js';
import { defineTask } from '../registry.js';

const CHUNKS = 20;

/** CPU-heavy: the work of GET /api/examples/hash, off the request path, with progress. */
export const reportGenerate = defineTask({
  name: 'report.generate',
  description: 'CPU-heavy: N chained SHA-256 rounds in a worker thread, reporting progress',
  queue: 'cpu',
  payload: Type.Object(
    { rounds: Type.Integer({ minimum: 1, maximum: 50_000_000 }) },
    { additionalProperties: false },
  ),
  attempts: 2,
  timeoutMs: 10 * 60_000,
  handler: async ({ rounds }, context) => {
    // In chunks that continue one chain (the result equals the route's digest for the same
    // rounds); between chunks we report progress and notice cancellation.
    let digest: Buffer = HASH_SEED;
    let done = 0;
    while (done < rounds) {
      context.signal.throwIfAborted();
      const size = Math.min(Math.ceil(rounds / CHUNKS), rounds - done);
      digest = sha256Chain(size, digest);
      done += size;
      await context.progress(Math.round((done / rounds) * 100));
    }
    return { rounds, digest: digest.toString('hex') };
  },
});
