/**
 * Which load-test results may stand side by side: only runs with the same load (rate, duration,
 * scenario mix, runner, quick or not). A 3 s run at 20/s beside a 30 s run at 100/s is not a
 * speed-up, so such runs are set aside (listed with their load, never charted against the others).
 */
import type { RunResult } from './config.js';

export type Comparable = Pick<
  RunResult,
  'level' | 'startedAt' | 'rate' | 'duration' | 'scenario' | 'runner' | 'quick'
>;

export function loadOf(result: Comparable): string {
  return `${result.rate}/s × ${result.duration} s, mix "${result.scenario}", ${result.runner}${result.quick ? ', quick' : ''}`;
}

/**
 * The newest run overall fixes the load; per level, the newest run with that load is compared.
 * Levels without such a run are set aside with their newest run.
 */
export function comparableSets<T extends Comparable>(
  results: T[],
): { load: string; compared: T[]; setAside: T[] } {
  const newestFirst = [...results].sort((a, b) => b.startedAt.localeCompare(a.startedAt));
  const reference = newestFirst[0];
  if (!reference) return { load: '', compared: [], setAside: [] };
  const load = loadOf(reference);
  const compared = new Map<number, T>();
  const setAside = new Map<number, T>();
  for (const result of newestFirst) {
    if (loadOf(result) === load) {
      if (!compared.has(result.level)) compared.set(result.level, result);
    } else if (!setAside.has(result.level)) setAside.set(result.level, result);
  }
  for (const level of compared.keys()) setAside.delete(level);
  const byLevel = (a: T, b: T) => a.level - b.level;
  return {
    load,
    compared: [...compared.values()].sort(byLevel),
    setAside: [...setAside.values()].sort(byLevel),
  };
}
