import { describe, expect, it } from 'vitest';
import type { RouteFigures, RunResult, SecondSample } from '../loadtest/config.js';
import { buildReport } from '../loadtest/performance-report.js';

const figures = (p50Ms: number, p95Ms: number, p99Ms: number, errorRate = 0): RouteFigures => ({
  name: 'total',
  kind: 'total',
  targetRate: 20,
  requests: 60,
  errors: Math.round(60 * errorRate),
  errorRate,
  throughput: 20,
  p50Ms,
  p95Ms,
  p99Ms,
  maxMs: p99Ms + 1,
});

const seconds = (count: number, p99Ms: number): SecondSample[] =>
  Array.from({ length: count }, (_, second) => ({
    second,
    requests: 20,
    errors: second === 1 ? 2 : 0,
    p50Ms: 3,
    p95Ms: 9,
    p99Ms: p99Ms + second,
  }));

const run = (level: number, startedAt: string, rate: number, duration: number, p99Ms: number): RunResult => ({
  level,
  scenario: 'mixed',
  runner: 'autocannon',
  startedAt,
  baseUrl: 'http://127.0.0.1:1',
  rate,
  duration,
  quick: false,
  thresholds: { maxErrorRate: 0.01, p95Ms: 250, p99Ms: 777 },
  routes: [],
  total: figures(3, 9, p99Ms, 0.005),
  perSecond: seconds(duration, p99Ms),
  failures: [],
  passed: true,
});

/** Text of every <text> element of a Vega SVG (titles, axis labels, legend entries). */
const texts = (svg: string) => [...svg.matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map((m) => m[1]);

describe('performance report charts (Vega-Lite)', () => {
  it('draws percentiles, thresholds, errors and per-second series, and never charts unlike runs together', async () => {
    const level1 = run(1, '2026-12-03T10:00:00Z', 20, 3, 40);
    const level2 = run(2, '2026-12-03T10:01:00Z', 20, 3, 30);
    // Another load (100/s for 30 s): set aside, never drawn beside the 20/s runs.
    const level3 = run(3, '2026-12-03T09:00:00Z', 100, 30, 5);
    const report = await buildReport([level3, level1, level2], 'fixtures');
    if (!report) throw new Error('no report');
    const { charts, markdown } = report;
    expect([...charts.keys()].sort()).toEqual([
      'errors.svg',
      'latency-percentiles.svg',
      'over-time-level-1.svg',
      'over-time-level-2.svg',
      'throughput.svg',
    ]);
    for (const [name, svg] of charts) {
      expect(markdown, name).toContain(`](${name})`);
      // Vega's SVG renderer output: a scenegraph of marks with role classes.
      expect(svg, name).toMatch(/^<svg[^>]*class="marks"/);
      expect(svg, name).toContain('role-axis');
      expect(texts(svg), name).not.toContain('LEVEL=3');
    }
    expect(markdown).toMatch(/## Set aside[\s\S]*LEVEL=3/);

    const percentiles = charts.get('latency-percentiles.svg') ?? '';
    const labels = texts(percentiles);
    expect(labels).toEqual(expect.arrayContaining(['latency (ms)', 'level', 'LEVEL=1', 'LEVEL=2']));
    expect(labels).toEqual(expect.arrayContaining(['p50', 'p95', 'p99']));
    expect(labels).toEqual(expect.arrayContaining(['p95 threshold 250 ms', 'p99 threshold 777 ms']));
    // Three bars per level, and the two threshold rules.
    expect(percentiles.match(/<path[^>]*aria-roledescription="bar"/g)).toHaveLength(6);
    expect(percentiles).toContain('mark-rule');

    expect(texts(charts.get('throughput.svg') ?? '')).toEqual(
      expect.arrayContaining(['responses per second', 'target 20/s']),
    );
    const errors = texts(charts.get('errors.svg') ?? '');
    expect(errors).toEqual(expect.arrayContaining(['errors (% of responses)', 'max error rate 1%']));

    const overTime = charts.get('over-time-level-1.svg') ?? '';
    const overTimeLabels = texts(overTime);
    expect(overTimeLabels).toEqual(
      expect.arrayContaining(['seconds since the load started', 'latency (ms)', 'per second']),
    );
    expect(overTimeLabels).toEqual(expect.arrayContaining(['responses', 'errors', 'p99 threshold 777 ms']));
    // One line per percentile above, one for responses and one for errors below.
    expect(overTime.match(/aria-roledescription="line mark"/g)).toHaveLength(5);
  });

  it('says so when a run has no per-second samples (k6 keeps only its summary)', async () => {
    const k6: RunResult = { ...run(1, '2026-12-03T10:00:00Z', 20, 3, 40), runner: 'k6' };
    delete k6.perSecond;
    const report = await buildReport([k6], 'fixtures');
    expect(report?.charts.has('over-time-level-1.svg')).toBe(false);
    expect(report?.markdown).toContain('k6 runs record only its end-of-run summary');
  });
});
