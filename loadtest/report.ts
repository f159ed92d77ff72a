/**
 * `make performance-report`: the newest result per level in loadtest/results/ side by side,
 * as performance-report.md plus hand-written SVG bar charts next to it. Runs nothing itself
 * unless --run is given, which first runs quick loads of levels 1-3.
 *
 *   npx tsx loadtest/report.ts [--run] [--results-dir DIR]
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { comparableSets, loadOf } from './compare.js';
import { DEFAULT_RESULTS_DIR, LOADTEST_DIR, type RouteFigures, type RunResult } from './config.js';

const { values: args } = parseArgs({
  options: {
    run: { type: 'boolean', default: false },
    'results-dir': { type: 'string', default: DEFAULT_RESULTS_DIR },
  },
});
const dir = resolve(args['results-dir'] ?? DEFAULT_RESULTS_DIR);
mkdirSync(dir, { recursive: true });

if (args.run) {
  for (const level of [1, 2, 3]) {
    // A missed threshold still produces a result worth charting; the report goes on.
    spawnSync(
      process.execPath,
      [
        '--import',
        'tsx',
        join(LOADTEST_DIR, 'run.ts'),
        '--level',
        String(level),
        '--quick',
        '--results-dir',
        dir,
      ],
      { stdio: 'inherit' },
    );
  }
}

/** Every result in the directory; comparableSets picks which may stand side by side. */
function allResults(): RunResult[] {
  return readdirSync(dir)
    .filter((n) => /^level-\d-.*\.json$/.test(n))
    .map((name) => JSON.parse(readFileSync(join(dir, name), 'utf8')) as RunResult);
}

const escapeXml = (text: string) =>
  text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

interface Series {
  label: string;
  color: string;
}
interface Group {
  level: number;
  values: number[];
  /** The run's load, printed under its bars. */
  load: string;
}

/** A grouped vertical bar chart: one group per level, one bar per series. */
function barChart(title: string, unit: string, series: Series[], groups: Group[]): string {
  const width = 640;
  const height = 320;
  const left = 60;
  const top = 40;
  const bottom = 50;
  const plotHeight = height - top - bottom;
  const plotWidth = width - left - 20;
  const max = Math.max(1e-9, ...groups.flatMap((g) => g.values));
  const groupWidth = plotWidth / Math.max(1, groups.length);
  const barWidth = Math.min(60, (groupWidth * 0.7) / series.length);
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<title>${escapeXml(title)}</title>`,
    `<rect x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="${width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(title)}</text>`,
    `<line x1="${left}" y1="${top + plotHeight}" x2="${width - 20}" y2="${top + plotHeight}" stroke="#333333"/>`,
    `<line x1="${left}" y1="${top}" x2="${left}" y2="${top + plotHeight}" stroke="#333333"/>`,
    `<text x="${left - 8}" y="${top + 4}" text-anchor="end">${escapeXml(formatNumber(max))}</text>`,
    `<text x="${left - 8}" y="${top + plotHeight + 4}" text-anchor="end">0</text>`,
    `<text x="14" y="${top + plotHeight / 2}" transform="rotate(-90 14 ${top + plotHeight / 2})" text-anchor="middle">${escapeXml(unit)}</text>`,
  ];
  groups.forEach((group, g) => {
    const groupX = left + g * groupWidth + (groupWidth - barWidth * series.length) / 2;
    group.values.forEach((value, s) => {
      const barHeight = (value / max) * plotHeight;
      const x = groupX + s * barWidth;
      const y = top + plotHeight - barHeight;
      const color = series[s]?.color ?? '#888888';
      parts.push(
        `<rect data-level="${group.level}" data-series="${escapeXml(series[s]?.label ?? '')}" x="${x.toFixed(1)}" y="${y.toFixed(1)}" width="${(barWidth - 4).toFixed(1)}" height="${barHeight.toFixed(1)}" fill="${color}"/>`,
        `<text x="${(x + (barWidth - 4) / 2).toFixed(1)}" y="${(y - 4).toFixed(1)}" text-anchor="middle">${escapeXml(formatNumber(value))}</text>`,
      );
    });
    parts.push(
      `<text x="${(left + g * groupWidth + groupWidth / 2).toFixed(1)}" y="${top + plotHeight + 18}" text-anchor="middle">LEVEL=${group.level}</text>`,
      `<text x="${(left + g * groupWidth + groupWidth / 2).toFixed(1)}" y="${top + plotHeight + 32}" text-anchor="middle" font-size="10">${escapeXml(group.load)}</text>`,
    );
  });
  if (series.length > 1) {
    series.forEach((s, i) => {
      const x = left + i * 170;
      parts.push(
        `<rect x="${x}" y="${height - 20}" width="12" height="12" fill="${s.color}"/>`,
        `<text x="${x + 18}" y="${height - 10}">${escapeXml(s.label)}</text>`,
      );
    });
  }
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}

function formatNumber(value: number): string {
  return value >= 100 ? value.toFixed(0) : value >= 10 ? value.toFixed(1) : value.toFixed(2);
}

/** The worst p99 among a result's routes of one kind (cpu or io). */
function kindP99(result: RunResult, kind: string): number {
  return Math.max(0, ...result.routes.filter((r: RouteFigures) => r.kind === kind).map((r) => r.p99Ms));
}

const { load, compared: results, setAside } = comparableSets(allResults());
if (results.length === 0) {
  console.error(`no level-N-*.json results in ${dir}; run \`make load-test\` first (or pass --run)`);
  process.exit(1);
}

writeFileSync(
  join(dir, 'throughput.svg'),
  barChart(
    'Throughput per level (total)',
    'responses/s',
    [{ label: 'throughput', color: '#4e79a7' }],
    results.map((r) => ({ level: r.level, values: [r.total.throughput], load: loadOf(r) })),
  ),
);
writeFileSync(
  join(dir, 'p99.svg'),
  barChart(
    'p99 latency per level (total)',
    'ms',
    [{ label: 'p99', color: '#e15759' }],
    results.map((r) => ({ level: r.level, values: [r.total.p99Ms], load: loadOf(r) })),
  ),
);
writeFileSync(
  join(dir, 'cpu-vs-io.svg'),
  barChart(
    'CPU-bound vs I/O-bound route p99 per level',
    'ms',
    [
      { label: 'CPU-bound (hash) p99', color: '#f28e2b' },
      { label: 'I/O-bound (sleep) p99', color: '#59a14f' },
    ],
    results.map((r) => ({ level: r.level, values: [kindP99(r, 'cpu'), kindP99(r, 'io')], load: loadOf(r) })),
  ),
);

const row = (r: RunResult) =>
  `| LEVEL=${r.level} | ${r.runner} | ${r.rate}/s × ${r.duration} s${r.quick ? ' (quick)' : ''} | ${r.total.throughput} | ${r.total.p50Ms} | ${r.total.p95Ms} | ${r.total.p99Ms} | ${(r.total.errorRate * 100).toFixed(2)}% | ${kindP99(r, 'cpu')} | ${kindP99(r, 'io')} | ${r.passed ? 'passed' : `failed: ${r.failures.join('; ')}`} | ${r.startedAt} |`;
const header = `| level | runner | load | req/s | p50 ms | p95 ms | p99 ms | errors | CPU-bound p99 ms | I/O-bound p99 ms | thresholds | started |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |`;
const setAsideSection =
  setAside.length === 0
    ? ''
    : `
## Set aside: runs with another load

These levels have no run at ${load}; their newest runs ran another load, so they are listed here
and left out of the charts (a shorter or lighter run is not a speed-up).

${header}
${setAside.map(row).join('\n')}
`;
const report = `# Performance report

Load-test results from \`${dir}\`, written by \`loadtest/report.ts\`. Only like is compared with
like: every level below ran the same load, **${load}** (the newest run's), on this machine; per
level the newest run with that load is shown, and each chart's bars carry it. Runs with another
load are set aside at the end.

${header}
${results.map(row).join('\n')}

## Throughput

![Throughput per level](throughput.svg)

## p99 latency

![p99 latency per level](p99.svg)

## CPU-bound vs I/O-bound routes

![CPU-bound vs I/O-bound p99 per level](cpu-vs-io.svg)
${setAsideSection}`;
writeFileSync(join(dir, 'performance-report.md'), report);
console.log(`wrote ${join(dir, 'performance-report.md')} and throughput.svg, p99.svg, cpu-vs-io.svg`);
