/**
 * Tracing of this process: started by the runtime (src/main.ts, src/worker.ts) before the app's
 * modules load, read by the app where it wires Fastify and BullMQ, stopped last on shutdown. With
 * tracing off this module is all that loads: the SDK is imported only when an endpoint is set.
 */
import type { Telemetry } from 'bullmq';
import type { FastifyPluginAsync } from 'fastify';
import type { Logger } from 'pino';
import { redactUrl } from '../settings-errors.js';
import { type ProcessRole, type TracingSettings, tracesUrl, tracingEnabled } from './config.js';

export interface Tracing {
  /** Registered first in buildApp: traceresponse header and Fastify's hook and handler spans. */
  fastifyPlugin: FastifyPluginAsync;
  /** BullMQ's own telemetry, for every Queue and Worker (the job carries the trace context). */
  bullmq: Telemetry;
  /** trace_id and span_id of the active span, for every log line (pino mixin). */
  logFields(): Record<string, string>;
  /** Send SDK errors (failed exports) to the process log, rate-limited. */
  reportTo(logger: Logger): void;
  /** Flush the spans still queued and stop; false when it did not finish within the time. */
  shutdown(timeoutMs: number): Promise<boolean>;
}

let active: Tracing | undefined;
let startFailure: unknown;

/**
 * Start the SDK when an OTLP endpoint is configured; must run before the app's modules are imported.
 * A failure to start leaves the service running untraced (reported by reportTracing).
 */
export async function startTracing(
  settings: TracingSettings,
  role: ProcessRole,
): Promise<Tracing | undefined> {
  if (!tracingEnabled(settings)) return undefined;
  try {
    const { startTracingSdk } = await import('./sdk.js');
    active = startTracingSdk(settings, role);
  } catch (error) {
    startFailure = error;
  }
  return active;
}

/** Once the logger exists: one line saying where spans go (or why tracing could not start). */
export function reportTracing(logger: Logger, settings: TracingSettings): void {
  if (startFailure) {
    logger.error({ err: startFailure }, 'tracing could not start; running without it');
    return;
  }
  if (!active) return;
  active.reportTo(logger);
  logger.info(
    {
      url: redactUrl(tracesUrl(settings)),
      protocol: settings.OTEL_EXPORTER_OTLP_PROTOCOL,
      sampler: settings.OTEL_TRACES_SAMPLER,
    },
    'tracing on',
  );
}

/** This process's tracing, or undefined when it is off. */
export function activeTracing(): Tracing | undefined {
  return active;
}

/** BullMQ's `telemetry` option: undefined when tracing is off, so BullMQ skips all of it. */
export function queueTelemetry(): Telemetry | undefined {
  return active?.bullmq;
}

/** Flush and stop within the time left; logs what happened. Nothing when tracing is off. */
export async function stopTracing(logger: Logger, timeoutMs: number): Promise<void> {
  if (!active) return;
  const flushed = await active.shutdown(timeoutMs);
  if (flushed) logger.info('tracing: pending spans flushed');
  else
    logger.warn(
      { timeoutMs: Math.round(timeoutMs) },
      'tracing: pending spans not flushed (collector unreachable or too slow)',
    );
  active = undefined;
}
