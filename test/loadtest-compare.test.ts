import { describe, expect, it } from 'vitest';
import { type Comparable, comparableSets } from '../loadtest/compare.js';

const run = (
  level: number,
  startedAt: string,
  rate: number,
  duration: number,
  quick = false,
): Comparable => ({
  level,
  startedAt,
  rate,
  duration,
  quick,
  scenario: 'mixed',
  runner: 'autocannon',
});

describe('performance report: like with like', () => {
  it('never puts a quick 20/s run beside a full 100/s run', () => {
    const full1 = run(1, '2026-12-03T10:00:00Z', 100, 30);
    const quick3 = run(3, '2026-12-03T09:00:00Z', 20, 3, true);
    const full3 = run(3, '2026-12-03T08:00:00Z', 100, 30);
    const { load, compared, setAside } = comparableSets([quick3, full1, full3]);
    expect(load).toBe('100/s × 30 s, mix "mixed", autocannon');
    // LEVEL=3's newest run is the quick one; its older full run is the one comparable with LEVEL=1.
    expect(compared).toEqual([full1, full3]);
    expect(setAside).toEqual([]);
  });

  it('sets aside a level that has no run with the same load', () => {
    const full1 = run(1, '2026-12-03T10:00:00Z', 100, 30);
    const quick2 = run(2, '2026-12-03T09:00:00Z', 20, 3, true);
    const { compared, setAside } = comparableSets([full1, quick2]);
    expect(compared).toEqual([full1]);
    expect(setAside).toEqual([quick2]);
  });
});
