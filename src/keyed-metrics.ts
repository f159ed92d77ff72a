/**
 * A histogram and a counter for the metrics updated on every request or job. prom-client's own hash
 * a label object and (the histogram) turn the bucket bound into a string property key on each
 * update: ~0.5 µs a request, ~4 µs of a no-op job's 70 µs in a task worker. These find their series
 * by the label values joined into one string key, and hand prom-client's registry (and so its
 * cluster aggregation, AggregatorRegistry) the values prom-client's own would: the same samples,
 * checked in test/keyed-metrics.test.ts.
 */
import client, { type Aggregator, type Metric, type MetricType, type Registry } from 'prom-client';

interface Sample {
  labels: Record<string, string | number>;
  value: number;
  metricName?: string;
}

/** Series by label values; what each series holds is the subclass's. */
abstract class KeyedMetric<Series> {
  readonly aggregator: Aggregator = 'sum';
  protected readonly series = new Map<string, { labels: Record<string, string>; data: Series }>();

  /** Registered in `registers` (prom-client's default registry unless given), as prom-client's own are. */
  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
    registers: readonly Registry[] = [client.register],
  ) {
    // prom-client's types list its own metric classes; the registry needs only name, get() and reset().
    for (const registry of registers) registry.registerMetric(this as unknown as Metric);
  }

  protected seriesOf(labelValues: readonly string[]): Series {
    const key = labelValues.join('\u0000');
    let entry = this.series.get(key);
    if (entry === undefined) {
      const labels = Object.fromEntries(
        this.labelNames.map((name, index) => [name, labelValues[index] ?? '']),
      );
      entry = { labels, data: this.emptySeries() };
      this.series.set(key, entry);
    }
    return entry.data;
  }

  protected abstract emptySeries(): Series;

  reset(): void {
    this.series.clear();
  }
}

export class KeyedCounter extends KeyedMetric<{ value: number }> {
  readonly type = 'counter' as unknown as MetricType;

  /** Label values in `labelNames` order. */
  inc(labelValues: readonly string[], by = 1): void {
    this.seriesOf(labelValues).value += by;
  }

  protected emptySeries() {
    return { value: 0 };
  }

  async get() {
    const values: Sample[] = [...this.series.values()].map(({ labels, data }) => ({
      labels: { ...labels },
      value: data.value,
    }));
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }
}

interface HistogramSeries {
  /** Observations per bucket, not cumulative; the last one is +Inf. */
  counts: number[];
  sum: number;
  count: number;
}

export class KeyedHistogram extends KeyedMetric<HistogramSeries> {
  readonly type = 'histogram' as unknown as MetricType;

  constructor(
    name: string,
    help: string,
    labelNames: readonly string[],
    readonly upperBounds: readonly number[],
    registers?: readonly Registry[],
  ) {
    super(name, help, labelNames, registers);
  }

  /** Label values in `labelNames` order. */
  observe(labelValues: readonly string[], value: number): void {
    const series = this.seriesOf(labelValues);
    let bucket = 0;
    while (bucket < this.upperBounds.length && value > (this.upperBounds[bucket] as number)) bucket += 1;
    series.counts[bucket] = (series.counts[bucket] as number) + 1;
    series.sum += value;
    series.count += 1;
  }

  protected emptySeries(): HistogramSeries {
    return { counts: new Array(this.upperBounds.length + 1).fill(0), sum: 0, count: 0 };
  }

  /** prom-client's shape: cumulative `_bucket` samples with `le`, then `_sum` and `_count`. */
  async get() {
    const values: Sample[] = [];
    for (const { labels, data } of this.series.values()) {
      let cumulative = 0;
      this.upperBounds.forEach((bound, index) => {
        cumulative += data.counts[index] as number;
        values.push({
          labels: { le: bound, ...labels },
          value: cumulative,
          metricName: `${this.name}_bucket`,
        });
      });
      values.push({
        labels: { le: '+Inf', ...labels },
        value: data.count,
        metricName: `${this.name}_bucket`,
      });
      values.push({ labels: { ...labels }, value: data.sum, metricName: `${this.name}_sum` });
      values.push({ labels: { ...labels }, value: data.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }
}
