import { AggregatorRegistry, Counter, Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { KeyedCounter, KeyedHistogram } from '../src/keyed-metrics.js';
import { REQUEST_DURATION_BUCKETS } from '../src/plugins/metrics.js';

const NAME = 'http_request_duration_seconds';
const HELP = 'HTTP request duration by route, method and status code';

/** Ours and prom-client's own Histogram, each in its own registry, given the same observations. */
function both(observations: [method: string, route: string, status: number, seconds: number][]) {
  const reference = new Registry();
  const library = new Histogram({
    name: NAME,
    help: HELP,
    labelNames: ['method', 'route', 'status_code'],
    buckets: REQUEST_DURATION_BUCKETS,
    registers: [reference],
  });
  const registry = new Registry();
  const ours = new KeyedHistogram(NAME, HELP, ['method', 'route', 'status_code'], REQUEST_DURATION_BUCKETS, [
    registry,
  ]);
  for (const [method, route, status, seconds] of observations) {
    library.observe({ method, route, status_code: String(status) }, seconds);
    ours.observe([method, route, String(status)], seconds);
  }
  return { reference, registry, ours };
}

/** Two workers' registries as the cluster primary aggregates them (prom-client's AggregatorRegistry). */
async function aggregatedText(first: Registry, second: Registry): Promise<string> {
  return AggregatorRegistry.aggregate([
    await first.getMetricsAsJSON(),
    await second.getMetricsAsJSON(),
  ]).metrics();
}

// Values on, between and beyond the bounds, several series, one value past the last bucket.
const OBSERVATIONS: [string, string, number, number][] = [
  ['GET', '/api/items/:id', 200, 0.004],
  ['GET', '/api/items/:id', 200, 0.005],
  ['GET', '/api/items/:id', 200, 0.0051],
  ['GET', '/api/items/:id', 404, 0.3],
  ['POST', '/api/items', 201, 2.5],
  ['POST', '/api/items', 201, 12],
  ['GET', 'unmatched', 404, 0],
  ['GET', '/api/items/:id', 200, 1],
];

describe('the keyed histogram (the request duration one)', () => {
  it("exposes exactly what prom-client's Histogram exposes for the same observations", async () => {
    const { reference, registry } = both(OBSERVATIONS);
    const text = await registry.metrics();
    expect(text).toBe(await reference.metrics());
    expect(text).toContain(
      'http_request_duration_seconds_bucket{le="0.005",method="GET",route="/api/items/:id",status_code="200"} 2',
    );
    expect(text).toContain(
      'http_request_duration_seconds_count{method="POST",route="/api/items",status_code="201"} 2',
    );
  });

  it('aggregates across workers as the cluster primary does, the same as the library', async () => {
    const first = both(OBSERVATIONS);
    const second = both(OBSERVATIONS.slice(2));
    const aggregated = await aggregatedText(first.registry, second.registry);
    expect(aggregated).toBe(await aggregatedText(first.reference, second.reference));
    expect(aggregated).toContain(
      'http_request_duration_seconds_bucket{le="+Inf",method="POST",route="/api/items",status_code="201"} 4',
    );
  });

  it('starts over on reset, as the registry resets its metrics', async () => {
    const { registry, ours } = both(OBSERVATIONS);
    ours.reset();
    expect(await registry.metrics()).toBe(`# HELP ${NAME} ${HELP}\n# TYPE ${NAME} histogram\n`);
  });
});

describe('the keyed counter', () => {
  it("exposes and aggregates what prom-client's Counter does", async () => {
    const build = (increments: [string, string, number][]) => {
      const reference = new Registry();
      const library = new Counter({
        name: 'task_jobs_completed_total',
        help: 'Jobs completed',
        labelNames: ['queue', 'task'],
        registers: [reference],
      });
      const registry = new Registry();
      const ours = new KeyedCounter(
        'task_jobs_completed_total',
        'Jobs completed',
        ['queue', 'task'],
        [registry],
      );
      for (const [queue, task, by] of increments) {
        library.inc({ queue, task }, by);
        ours.inc([queue, task], by);
      }
      return { reference, registry };
    };
    const first = build([
      ['default', 'email.send', 1],
      ['default', 'email.send', 1],
      ['cpu', 'report.generate', 3],
    ]);
    const second = build([['default', 'email.send', 2]]);
    expect(await first.registry.metrics()).toBe(await first.reference.metrics());
    expect(await first.registry.metrics()).toContain(
      'task_jobs_completed_total{queue="default",task="email.send"} 2',
    );
    const aggregated = await aggregatedText(first.registry, second.registry);
    expect(aggregated).toBe(await aggregatedText(first.reference, second.reference));
    expect(aggregated).toContain('task_jobs_completed_total{queue="default",task="email.send"} 4');
  });
});
