/**
 * Tracing of this process: started by the runtime (src/main.ts, src/worker.ts) before the app's
 * modules load, read by the app where it wires Fastify and BullMQ, stopped last on shutdown. With
 * tracing off this module is all that loads: the SDK is imported only when an endpoint is set.
 */
import type { Telemetry } from 'bullmq';
import type { FastifyPluginAsync } from 'fastify';
import type { Logger } from 'pino';
import { type ProcessRole, type TracingSettings, tracingEnabled } from './config.js';

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

/** Start the SDK when an OTLP endpoint is configured; must run before the app's modules are imported. */
export async function startTracing(
  settings: TracingSettings,
  role: ProcessRole,
): Promise<Tracing | undefined> {
  if (!tracingEnabled(settings)) return undefined;
  const { startTracingSdk } = await import('./sdk.js');
  active = startTracingSdk(settings, role);
  return active;
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
