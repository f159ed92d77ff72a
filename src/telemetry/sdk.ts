/**
 * The OpenTelemetry SDK of one process, loaded only when tracing is on (src/telemetry/tracing.ts
 * imports it dynamically). It must start before the app's modules load: pg and ioredis are patched
 * as they are imported (ESM imports through import-in-the-middle's module hooks, CommonJS requires
 * through require-in-the-middle), and Fastify's plugin must be registered before any route.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { register as registerAsyncModuleHooks } from 'node:module';
import { hostname } from 'node:os';
import { FastifyOtelInstrumentation } from '@fastify/otel';
import {
  type Attributes,
  type Context,
  context,
  DiagLogLevel,
  diag,
  isSpanContextValid,
  type Link,
  propagation,
  SpanKind,
  trace,
} from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import {
  CompositePropagator,
  setGlobalErrorHandler,
  W3CBaggagePropagator,
  W3CTraceContextPropagator,
} from '@opentelemetry/core';
import { OTLPTraceExporter as OTLPJsonTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as OTLPProtobufTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { registerInstrumentations } from '@opentelemetry/instrumentation';
import { HttpInstrumentation } from '@opentelemetry/instrumentation-http';
import { IORedisInstrumentation } from '@opentelemetry/instrumentation-ioredis';
import { PgInstrumentation } from '@opentelemetry/instrumentation-pg';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ParentBasedSampler,
  type Sampler,
  SamplingDecision,
  type SamplingResult,
  TraceIdRatioBasedSampler,
  TracerProvider,
} from '@opentelemetry/sdk-trace';
import { BullMQOtel } from 'bullmq-otel';
import type { FastifyPluginAsync } from 'fastify';
import fp from 'fastify-plugin';
import { register as registerModuleHooks, supportsSyncHooks } from 'import-in-the-middle/register-hooks.mjs';
import type { Logger } from 'pino';
import {
  isUntracedPath,
  type ProcessRole,
  parseKeyValueList,
  resourceAttributesOf,
  samplerSpecOf,
  startsTrace,
  type TracingSettings,
  traceResponseHeader,
  tracesUrl,
} from './config.js';
import { spanMetricsMeterProvider } from './span-metrics.js';
import type { Tracing } from './tracing.js';

/** Modules patched on import; the module hooks intercept only these. */
const HOOKED_MODULES = ['pg', 'pg-pool', 'ioredis'];
const ERROR_REPORT_INTERVAL_MS = 60_000;

const packageVersion = (
  JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
).version;

const kindNames: Record<SpanKind, Parameters<typeof startsTrace>[0]> = {
  [SpanKind.INTERNAL]: 'internal',
  [SpanKind.SERVER]: 'server',
  [SpanKind.CLIENT]: 'client',
  [SpanKind.PRODUCER]: 'producer',
  [SpanKind.CONSUMER]: 'consumer',
};

/** The configured sampler, behind a filter that keeps background work from starting traces. */
class RequestAndJobSampler implements Sampler {
  constructor(private readonly configured: Sampler) {}
  shouldSample(
    parent: Context,
    traceId: string,
    name: string,
    kind: SpanKind,
    attributes: Attributes,
    links: Link[],
  ): SamplingResult {
    const parentSpan = trace.getSpanContext(parent);
    const isRoot = !parentSpan || !isSpanContextValid(parentSpan);
    if (isRoot && !startsTrace(kindNames[kind])) return { decision: SamplingDecision.NOT_RECORD };
    return this.configured.shouldSample(parent, traceId, name, kind, attributes, links);
  }
  toString(): string {
    return `RequestAndJobSampler{${this.configured.toString()}}`;
  }
}

function samplerOf(settings: TracingSettings): Sampler {
  const spec = samplerSpecOf(settings);
  const root =
    spec.root === 'always_on'
      ? new AlwaysOnSampler()
      : spec.root === 'always_off'
        ? new AlwaysOffSampler()
        : new TraceIdRatioBasedSampler(spec.ratio);
  return new RequestAndJobSampler(spec.parentBased ? new ParentBasedSampler({ root }) : root);
}

function exporterOf(settings: TracingSettings) {
  const options = {
    url: tracesUrl(settings),
    headers: parseKeyValueList(settings.OTEL_EXPORTER_OTLP_HEADERS),
    timeoutMillis: settings.OTEL_EXPORTER_OTLP_TIMEOUT,
  };
  return settings.OTEL_EXPORTER_OTLP_PROTOCOL === 'http/json'
    ? new OTLPJsonTraceExporter(options)
    : new OTLPProtobufTraceExporter(options);
}

/** SDK errors (failed exports, mostly) as one JSON log line now and then, never one per batch. */
function reportErrorsTo(logger: Logger): void {
  let suppressed = 0;
  let lastReport = 0;
  setGlobalErrorHandler((error) => {
    const now = Date.now();
    if (now - lastReport < ERROR_REPORT_INTERVAL_MS) {
      suppressed += 1;
      return;
    }
    logger.warn(
      { err: error instanceof Error ? error.message : String(error), alsoSince: suppressed },
      'tracing: span export failed (spans are dropped and counted in tracing_spans_dropped_total)',
    );
    suppressed = 0;
    lastReport = now;
  });
  diag.setLogger(
    {
      error: (message) => logger.error({ component: 'opentelemetry' }, message),
      warn: (message) => logger.warn({ component: 'opentelemetry' }, message),
      info: () => {},
      debug: () => {},
      verbose: () => {},
    },
    DiagLogLevel.WARN,
  );
}

/** traceresponse on every traced response, then @fastify/otel's spans for hooks and handlers. */
function fastifyPluginOf(instrumentation: FastifyOtelInstrumentation): FastifyPluginAsync {
  return fp(
    async (app) => {
      // Added before @fastify/otel, so it runs in the HTTP server span's context, not a hook span's.
      app.addHook('onRequest', (_request, reply, done) => {
        const span = trace.getActiveSpan();
        if (span) {
          const { traceId, spanId, traceFlags } = span.spanContext();
          reply.header('traceresponse', traceResponseHeader(traceId, spanId, traceFlags));
        }
        done();
      });
      await app.register(instrumentation.plugin());
    },
    { name: 'tracing' },
  );
}

export function startTracingSdk(settings: TracingSettings, role: ProcessRole): Tracing {
  // ESM imports of pg and ioredis are patched only through module hooks registered before them.
  // In-thread hooks where Node has working ones (24.11+, 22.22.3+); the loader thread before that.
  if (supportsSyncHooks()) registerModuleHooks({ include: HOOKED_MODULES });
  else
    registerAsyncModuleHooks('import-in-the-middle/hook.mjs', import.meta.url, {
      data: { include: HOOKED_MODULES },
    });

  const contextManager = new AsyncLocalStorageContextManager();
  contextManager.enable();
  context.setGlobalContextManager(contextManager);
  propagation.setGlobalPropagator(
    new CompositePropagator({ propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()] }),
  );
  const provider = new TracerProvider({
    resource: resourceFromAttributes(
      resourceAttributesOf(settings, {
        ...role,
        instanceId: randomUUID(),
        pid: process.pid,
        hostname: hostname(),
        version: packageVersion,
      }),
    ),
    sampler: samplerOf(settings),
    spanProcessors: [
      new BatchSpanProcessor({
        exporter: exporterOf(settings),
        maxQueueSize: settings.OTEL_BSP_MAX_QUEUE_SIZE,
        maxExportBatchSize: settings.OTEL_BSP_MAX_EXPORT_BATCH_SIZE,
        scheduledDelayMillis: settings.OTEL_BSP_SCHEDULE_DELAY,
        exportTimeoutMillis: settings.OTEL_BSP_EXPORT_TIMEOUT,
        selfObsMeterProvider: spanMetricsMeterProvider(),
      }),
    ],
  });
  trace.setGlobalTracerProvider(provider);

  // No span per hook: a dozen hooks run on every request, and their spans cost more than they tell
  // (one request became ~16 spans); the request and handler spans remain.
  const fastify = new FastifyOtelInstrumentation({
    ignorePaths: (route) => isUntracedPath(route.url),
    instrumentHooks: false,
  });
  registerInstrumentations({
    tracerProvider: provider,
    instrumentations: [
      new HttpInstrumentation({ ignoreIncomingRequestHook: (request) => isUntracedPath(request.url) }),
      new PgInstrumentation({ requireParentSpan: true }),
      new IORedisInstrumentation({ requireParentSpan: true }),
      fastify,
    ],
  });

  return {
    fastifyPlugin: fastifyPluginOf(fastify),
    bullmq: new BullMQOtel({ tracerName: 'bullmq', version: packageVersion }),
    logFields(): Record<string, string> {
      const span = trace.getActiveSpan();
      if (!span) return {};
      const { traceId, spanId, traceFlags } = span.spanContext();
      return { trace_id: traceId, span_id: spanId, trace_flags: `0${traceFlags.toString(16)}` };
    },
    reportTo: reportErrorsTo,
    async shutdown(timeoutMs) {
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), Math.max(0, timeoutMs));
      });
      const flushed = provider.shutdown().then(
        () => true,
        () => false,
      );
      const done = await Promise.race([flushed, timedOut]);
      clearTimeout(timer);
      return done;
    },
  };
}
