/**
 * Repeated, rotated runs for the benchmark scripts: on a 2-core machine one run of a setup moves by
 * 10-20 %, and whichever runs first or last meets a different machine (caches, Redis memory, heat).
 */

/** BENCH_REPEATS from the environment (default given), a whole number >= 1. */
export function repeatsFromEnv(fallback: number): number {
  const repeats = Number(process.env.BENCH_REPEATS ?? fallback);
  if (!Number.isInteger(repeats) || repeats < 1)
    throw new Error(`BENCH_REPEATS must be a whole number >= 1, not ${process.env.BENCH_REPEATS}`);
  return repeats;
}

/**
 * Run every side `repeats` times, rotating which goes first in each repeat. With fewer repeats than
 * sides the rotation balances the order only in part (some side never goes first).
 */
export async function runRotated(repeats: number, sides: Array<() => Promise<unknown>>): Promise<void> {
  for (let repeat = 0; repeat < repeats; repeat += 1) {
    for (let index = 0; index < sides.length; index += 1) {
      await (sides[(repeat + index) % sides.length] as () => Promise<unknown>)();
    }
  }
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2
    ? (sorted[middle] as number)
    : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

/** The median run by `value` (the lower middle for an even count): always one real run, shown whole. */
export function medianRun<T>(runs: T[], value: (run: T) => number): T {
  return [...runs].sort((a, b) => value(a) - value(b))[Math.floor((runs.length - 1) / 2)] as T;
}
