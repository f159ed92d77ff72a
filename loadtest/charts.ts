/**
 * The performance report's charts: Vega-Lite specs (pure data in, spec out), compiled with
 * vega-lite and rendered to SVG in Node by vega's headless View (no browser, no canvas).
 */
import type { TopLevelSpec } from 'vega-lite';
import type { RunResult, Thresholds } from './config.js';

const WIDTH = 560;
const PERCENTILES = ['p50', 'p95', 'p99'] as const;
const PERCENTILE_COLORS = ['#4e79a7', '#f28e2b', '#e15759'];
const THRESHOLD_COLOR = '#222222';

const config = {
  font: 'sans-serif',
  background: '#ffffff',
  padding: 12,
  title: { fontSize: 15, subtitleFontSize: 11, subtitleColor: '#555555', anchor: 'start' as const },
  axis: { labelFontSize: 11, titleFontSize: 12, grid: true, gridColor: '#e6e6e6' },
  legend: {
    labelFontSize: 11,
    titleFontSize: 12,
    orient: 'bottom' as const,
    direction: 'horizontal' as const,
  },
  view: { stroke: null },
};

/** Latency in ms on y, one colour per percentile, the same in every chart. */
const latencyByPercentile = {
  y: { field: 'ms', type: 'quantitative' as const, title: 'latency (ms)' },
  color: {
    field: 'percentile',
    title: 'percentile',
    sort: [...PERCENTILES],
    scale: { domain: [...PERCENTILES], range: PERCENTILE_COLORS },
  },
};

const levelLabel = (level: number) => `LEVEL=${level}`;

/** A dashed horizontal rule per threshold, labelled (text) just right of the plot. */
function thresholdLayers(rules: { text: string; value: number }[]) {
  const data = { values: rules };
  return [
    {
      data,
      mark: { type: 'rule' as const, strokeDash: [6, 4], color: THRESHOLD_COLOR, strokeWidth: 1.5 },
      encoding: { y: { field: 'value', type: 'quantitative' as const } },
    },
    {
      data,
      mark: {
        type: 'text' as const,
        // Right of the plot, so it collides neither with bars' value labels nor with lines.
        align: 'left' as const,
        baseline: 'middle' as const,
        dx: 6,
        fontSize: 11,
        color: THRESHOLD_COLOR,
      },
      encoding: {
        x: { value: WIDTH },
        y: { field: 'value', type: 'quantitative' as const },
        text: { field: 'text', type: 'nominal' as const },
      },
    },
  ];
}

/** p50/p95/p99 per level, grouped, with the p95 and p99 thresholds of the scenario config. */
export function percentilesPerLevel(
  results: RunResult[],
  thresholds: Thresholds,
  load: string,
): TopLevelSpec {
  const values = results.flatMap((r) =>
    PERCENTILES.map((p) => ({
      level: levelLabel(r.level),
      percentile: p,
      ms: r.total[`${p}Ms`],
    })),
  );
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: 'Latency percentiles per level (total)', subtitle: load },
    width: WIDTH,
    height: 300,
    config,
    layer: [
      {
        data: { values },
        mark: { type: 'bar', tooltip: true },
        encoding: {
          x: { field: 'level', type: 'nominal', title: 'level', axis: { labelAngle: 0 } },
          xOffset: { field: 'percentile', sort: [...PERCENTILES] },
          ...latencyByPercentile,
        },
      },
      ...thresholdLayers([
        { text: `p95 threshold ${thresholds.p95Ms} ms`, value: thresholds.p95Ms },
        { text: `p99 threshold ${thresholds.p99Ms} ms`, value: thresholds.p99Ms },
      ]),
    ],
  };
}

/** One bar per level of a single figure (throughput, error rate), with an optional threshold rule. */
export function barPerLevel(options: {
  title: string;
  load: string;
  axisTitle: string;
  values: { level: number; value: number }[];
  color: string;
  /** A dashed line, e.g. the maximum error rate or the target rate. */
  threshold?: { text: string; value: number };
  labelInside?: boolean;
}): TopLevelSpec {
  const { title, load, axisTitle, values, color, threshold, labelInside = false } = options;
  const data = { values: values.map((v) => ({ level: levelLabel(v.level), value: v.value })) };
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: title, subtitle: load },
    width: WIDTH,
    height: 260,
    config,
    layer: [
      {
        data,
        mark: { type: 'bar', color },
        encoding: {
          // Narrower bars than the default band: a few levels must not look like a wall.
          x: {
            field: 'level',
            type: 'nominal',
            title: 'level',
            axis: { labelAngle: 0 },
            scale: { paddingInner: 0.5, paddingOuter: 0.25 },
          },
          y: { field: 'value', type: 'quantitative', title: axisTitle },
        },
      },
      {
        data,
        // Inside the bar when a threshold line runs near its top (e.g. the target rate).
        mark: labelInside
          ? { type: 'text', baseline: 'top', dy: 5, fontSize: 11, color: '#ffffff', fontWeight: 'bold' }
          : { type: 'text', baseline: 'bottom', dy: -3, fontSize: 11 },
        encoding: {
          x: { field: 'level', type: 'nominal' },
          y: { field: 'value', type: 'quantitative' },
          text: { field: 'value', type: 'quantitative', format: '~r' },
        },
      },
      ...(threshold ? thresholdLayers([threshold]) : []),
    ],
  };
}

/**
 * One run over time: latency percentiles per second (with the p99 threshold) above, responses and
 * errors per second below, on the same seconds axis.
 */
export function runOverTime(result: RunResult, load: string): TopLevelSpec {
  const samples = result.perSecond ?? [];
  const latency = samples.flatMap((s) =>
    PERCENTILES.map((p) => ({ second: s.second, percentile: p, ms: s[`${p}Ms`] })),
  );
  const counts = samples.flatMap((s) => [
    { second: s.second, series: 'responses', perSecond: s.requests },
    { second: s.second, series: 'errors', perSecond: s.errors },
  ]);
  // Whole seconds, ending at the last sample (a "nice" axis would run past it).
  const seconds = {
    field: 'second',
    type: 'quantitative' as const,
    title: 'seconds since the load started',
    scale: { nice: false },
    axis: { tickMinStep: 1, format: 'd' },
  };
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: `${levelLabel(result.level)} over time (plain request routes)`, subtitle: load },
    config,
    vconcat: [
      {
        width: WIDTH,
        height: 220,
        title: { text: 'latency percentiles per second', fontSize: 12 },
        layer: [
          {
            data: { values: latency },
            mark: { type: 'line', point: true },
            encoding: {
              x: seconds,
              ...latencyByPercentile,
            },
          },
          ...thresholdLayers([
            { text: `p99 threshold ${result.thresholds.p99Ms} ms`, value: result.thresholds.p99Ms },
          ]),
        ],
      },
      {
        width: WIDTH,
        height: 160,
        title: { text: 'throughput and errors per second', fontSize: 12 },
        data: { values: counts },
        mark: { type: 'line', point: true },
        encoding: {
          x: seconds,
          y: { field: 'perSecond', type: 'quantitative', title: 'per second' },
          color: {
            field: 'series',
            title: 'completed',
            scale: { domain: ['responses', 'errors'], range: ['#59a14f', '#e15759'] },
          },
        },
      },
    ],
    resolve: { scale: { color: 'independent' } },
  };
}

/** Compile a Vega-Lite spec and render it to SVG without a browser. */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const [vega, vegaLite] = await Promise.all([import('vega'), import('vega-lite')]);
  const view = new vega.View(vega.parse(vegaLite.compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}
