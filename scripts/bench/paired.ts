/**
 * The template-cost rows of `make bench`: both apps run at once on their own ports and the load
 * alternates between them in short slices (which one goes first alternates too). A drift in the
 * machine's speed (on this shared 2-core VM, runs of one app minutes apart moved by 40 %) then hits
 * both alike; each pair of slices gives a ratio, and the row reports the median ratio and the range.
 */

import { median } from '../repeat.js';
import { load } from './load.js';

export interface PairedFigures {
  /** Requests per second of each slice, in order, for the first and the second app. */
  first: number[];
  second: number[];
  /** second / first, one per pair of slices. */
  ratios: number[];
}

export async function pairedLoads(
  bases: [string, string],
  path: string,
  options: { slices: number; seconds: number; connections: number },
): Promise<PairedFigures> {
  const figures: PairedFigures = { first: [], second: [], ratios: [] };
  for (let slice = 0; slice < options.slices; slice += 1) {
    const rps: [number, number] = [0, 0];
    for (const index of slice % 2 === 0 ? [0, 1] : [1, 0]) {
      const url = `${bases[index]}${path}`;
      rps[index] = (
        await load(url, { seconds: options.seconds, connections: options.connections })
      ).requestsPerSecond;
    }
    figures.first.push(rps[0]);
    figures.second.push(rps[1]);
    figures.ratios.push(rps[0] > 0 ? rps[1] / rps[0] : 0);
  }
  return figures;
}

/** `median ratio (min-max)` of a paired run. */
export function describeRatios(figures: PairedFigures): string {
  const sorted = [...figures.ratios].sort((a, b) => a - b);
  const fixed = (value: number | undefined) => (value ?? 0).toFixed(2);
  return `${fixed(median(sorted))}x (${fixed(sorted[0])}-${fixed(sorted.at(-1))})`;
}
