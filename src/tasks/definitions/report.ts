import { setImmediate } from 'node:timers/promises';
import { Type } from 'typebox';
import { HASH_SEED, sha256Chain } from '../../routes/examples.js';
import { defineTask } from '../registry.js';

const SLICE_ROUNDS = 50_000;

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
    // In slices that continue one chain (the result equals the route's digest for the same rounds).
    // Between slices (~0.1 s of work each) we notice cancellation and report progress.
    let digest: Buffer = HASH_SEED;
    let done = 0;
    let reported = 0;
    while (done < rounds) {
      await setImmediate(); // let the cancel message in: a pure CPU loop would never see it
      context.signal.throwIfAborted();
      const size = Math.min(SLICE_ROUNDS, rounds - done);
      digest = sha256Chain(size, digest);
      done += size;
      const percent = Math.floor((done / rounds) * 100);
      if (percent > reported) {
        reported = percent;
        await context.progress(percent);
      }
    }
    return { rounds, digest: digest.toString('hex') };
  },
});
