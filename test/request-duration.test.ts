import { AggregatorRegistry, Histogram, type Metric, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { REQUEST_DURATION_BUCKETS } from '../src/plugins/metrics.js';
import { RequestDurationHistogram } from '../src/plugins/request-duration.js';

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
  const ours = new RequestDurationHistogram(NAME, HELP, REQUEST_DURATION_BUCKETS);
  registry.registerMetric(ours as unknown as Metric);
  for (const [method, route, status, seconds] of observations) {
    library.observe({ method, route, status_code: String(status) }, seconds);
    ours.observe(method, route, status, seconds);
  }
  return { reference, registry, ours };
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

describe('the request duration histogram', () => {
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
    const aggregated = AggregatorRegistry.aggregate([
      await first.registry.getMetricsAsJSON(),
      await second.registry.getMetricsAsJSON(),
    ]);
    const reference = AggregatorRegistry.aggregate([
      await first.reference.getMetricsAsJSON(),
      await second.reference.getMetricsAsJSON(),
    ]);
    expect(await aggregated.metrics()).toBe(await reference.metrics());
    expect(await aggregated.metrics()).toContain(
      'http_request_duration_seconds_bucket{le="+Inf",method="POST",route="/api/items",status_code="201"} 4',
    );
  });

  it('starts over on reset, as the registry resets its metrics', async () => {
    const { registry, ours } = both(OBSERVATIONS);
    ours.reset();
    expect(await registry.metrics()).toBe(`# HELP ${NAME} ${HELP}\n# TYPE ${NAME} histogram\n`);
  });
});
