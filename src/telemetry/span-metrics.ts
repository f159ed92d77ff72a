/**
 * What became of the finished spans, in Prometheus. The batch span processor reports its own
 * accounting (spans exported, dropped because the queue was full, lost with a failed export; queue
 * size) through the SDK's self-observability meter; this meter writes those figures to prom-client,
 * so a collector that is down or too slow shows up on /metrics instead of vanishing silently.
 */
import {
  type Attributes,
  createNoopMeter,
  type Meter,
  type MeterProvider,
  type ObservableCallback,
  type ObservableResult,
} from '@opentelemetry/api';
import client from 'prom-client';

// Names from the OpenTelemetry semantic conventions for SDK self-observability.
const PROCESSED = 'otel.sdk.processor.span.processed';
const QUEUE_SIZE = 'otel.sdk.processor.span.queue.size';
const ERROR_TYPE = 'error.type';

const exported = new client.Counter({
  name: 'tracing_spans_exported_total',
  help: 'Finished spans the collector accepted',
});
const dropped = new client.Counter({
  name: 'tracing_spans_dropped_total',
  help: 'Finished spans lost: queue_full (export queue full) or the error of the failed export',
  labelNames: ['reason'] as const,
});

const queueCallbacks = new Set<ObservableCallback<Attributes>>();
new client.Gauge({
  name: 'tracing_span_queue_size',
  help: 'Finished spans waiting for export in this process',
  collect() {
    let total = 0;
    const result: ObservableResult<Attributes> = {
      observe: (value) => {
        total += value;
      },
    };
    for (const callback of queueCallbacks) void callback(result);
    this.set(total);
  },
});

function spanOutcome(value: number, attributes: Attributes | undefined): void {
  const reason = attributes?.[ERROR_TYPE];
  if (reason === undefined) exported.inc(value);
  else dropped.inc({ reason: String(reason) }, value);
}

/** A MeterProvider that only understands the span processor's figures; everything else is a no-op. */
export function spanMetricsMeterProvider(): MeterProvider {
  const noop = createNoopMeter();
  const meter: Meter = {
    createHistogram: noop.createHistogram.bind(noop),
    createGauge: noop.createGauge.bind(noop),
    createUpDownCounter: noop.createUpDownCounter.bind(noop),
    createObservableGauge: noop.createObservableGauge.bind(noop),
    createObservableCounter: noop.createObservableCounter.bind(noop),
    addBatchObservableCallback: noop.addBatchObservableCallback.bind(noop),
    removeBatchObservableCallback: noop.removeBatchObservableCallback.bind(noop),
    createCounter(name, options) {
      if (name !== PROCESSED) return noop.createCounter(name, options);
      return { add: spanOutcome };
    },
    createObservableUpDownCounter(name, options) {
      if (name !== QUEUE_SIZE) return noop.createObservableUpDownCounter(name, options);
      return {
        addCallback: (callback) => queueCallbacks.add(callback),
        removeCallback: (callback) => queueCallbacks.delete(callback),
      };
    },
  };
  return { getMeter: () => meter };
}

/** Dropped spans so far, all reasons together (for the shutdown log line). */
export async function droppedSpans(): Promise<number> {
  const values = (await dropped.get()).values;
  return values.reduce((sum, entry) => sum + entry.value, 0);
}
