/**
 * The performance report's content: from load-test results to one Markdown text and the SVG
 * charts it links (file name -> SVG). No file I/O here; loadtest/report.ts reads and writes.
 */
import { barPerLevel, percentilesPerLevel, renderSvg, runOverTime } from './charts.js';
import { comparableSets } from './compare.js';
import type { RouteFigures, RunResult } from './config.js';

export interface Report {
  markdown: string;
  /** SVG file name -> SVG text, each linked from the Markdown. */
  charts: Map<string, string>;
}

/** The worst p99 among a result's routes of one kind (cpu or io). */
function kindP99(result: RunResult, kind: string): number {
  return Math.max(0, ...result.routes.filter((r: RouteFigures) => r.kind === kind).map((r) => r.p99Ms));
}

const row = (r: RunResult) =>
  `| LEVEL=${r.level} | ${r.runner} | ${r.rate}/s × ${r.duration} s${r.quick ? ' (quick)' : ''} | ${r.total.throughput} | ${r.total.p50Ms} | ${r.total.p95Ms} | ${r.total.p99Ms} | ${(r.total.errorRate * 100).toFixed(2)}% | ${kindP99(r, 'cpu')} | ${kindP99(r, 'io')} | ${r.passed ? 'passed' : `failed: ${r.failures.join('; ')}`} | ${r.startedAt} |`;
const header = `| level | runner | load | req/s | p50 ms | p95 ms | p99 ms | errors | CPU-bound p99 ms | I/O-bound p99 ms | thresholds | started |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |`;

/** Null when there is no result at all. */
export async function buildReport(all: RunResult[], source: string): Promise<Report | null> {
  const { load, compared: results, setAside } = comparableSets(all);
  const reference = results.at(-1);
  if (!reference) return null;
  // Runs with the same load (quick or not) share the scenario file's thresholds.
  const { thresholds } = reference;
  const charts = new Map<string, string>();
  charts.set('latency-percentiles.svg', await renderSvg(percentilesPerLevel(results, thresholds, load)));
  charts.set(
    'throughput.svg',
    await renderSvg(
      barPerLevel({
        title: 'Throughput per level (total)',
        load,
        axisTitle: 'responses per second',
        values: results.map((r) => ({ level: r.level, value: r.total.throughput })),
        color: '#59a14f',
        threshold: { text: `target ${reference.total.targetRate}/s`, value: reference.total.targetRate },
        labelInside: true,
      }),
    ),
  );
  charts.set(
    'errors.svg',
    await renderSvg(
      barPerLevel({
        title: 'Error rate per level (total)',
        load,
        axisTitle: 'errors (% of responses)',
        values: results.map((r) => ({ level: r.level, value: Number((r.total.errorRate * 100).toFixed(2)) })),
        color: '#e15759',
        threshold: {
          text: `max error rate ${thresholds.maxErrorRate * 100}%`,
          value: thresholds.maxErrorRate * 100,
        },
      }),
    ),
  );
  const overTime: string[] = [];
  for (const result of results) {
    if (result.perSecond && result.perSecond.length > 0) {
      const name = `over-time-level-${result.level}.svg`;
      charts.set(name, await renderSvg(runOverTime(result, load)));
      overTime.push(`### LEVEL=${result.level}\n\n![LEVEL=${result.level} over time](${name})\n`);
    } else {
      overTime.push(
        `### LEVEL=${result.level}\n\nNo per-second samples in this run (${result.runner === 'k6' ? 'k6 runs record only its end-of-run summary' : 'recorded before per-second samples existed'}); only the totals above.\n`,
      );
    }
  }

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
  const markdown = `# Performance report

Load-test results from \`${source}\`, written by \`loadtest/report.ts\`. Only like is compared with
like: every level below ran the same load, **${load}** (the newest run's), on this machine; per
level the newest run with that load is shown, and each chart carries it. Runs with another
load are set aside at the end. Thresholds: p95 <= ${thresholds.p95Ms} ms, p99 <= ${thresholds.p99Ms} ms,
errors <= ${thresholds.maxErrorRate * 100}% (dashed lines in the charts).

${header}
${results.map(row).join('\n')}

## Latency percentiles per level

![p50, p95 and p99 per level with the thresholds](latency-percentiles.svg)

## Throughput per level

![Throughput per level](throughput.svg)

## Errors per level

![Error rate per level with the threshold](errors.svg)

## Each run over time

Latency percentiles, responses and errors per second of the load window (plain request routes;
the last point can be a partial second of stragglers).

${overTime.join('\n')}${setAsideSection}`;
  return { markdown, charts };
}
