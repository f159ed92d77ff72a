/**
 * Tracing decisions from settings, pure and free of OpenTelemetry imports: the runtime reads them on
 * every start, and with tracing off nothing of OpenTelemetry may load.
 */
import type { Settings } from '../settings.js';

export type TracingSettings = Pick<
  Settings,
  | 'OTEL_SDK_DISABLED'
  | 'OTEL_EXPORTER_OTLP_ENDPOINT'
  | 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT'
  | 'OTEL_EXPORTER_OTLP_PROTOCOL'
  | 'OTEL_EXPORTER_OTLP_HEADERS'
  | 'OTEL_EXPORTER_OTLP_TIMEOUT'
  | 'OTEL_SERVICE_NAME'
  | 'OTEL_RESOURCE_ATTRIBUTES'
  | 'OTEL_TRACES_SAMPLER'
  | 'OTEL_TRACES_SAMPLER_ARG'
  | 'OTEL_BSP_MAX_QUEUE_SIZE'
  | 'OTEL_BSP_MAX_EXPORT_BATCH_SIZE'
  | 'OTEL_BSP_SCHEDULE_DELAY'
  | 'OTEL_BSP_EXPORT_TIMEOUT'
>;

/** Which kind of process this is, for the resource attributes that tell processes apart. */
export interface ProcessRole {
  role: 'http' | 'task-worker';
  /** Slot under our own primary (LEVEL>=2); absent for a standalone process. */
  workerId?: number;
}

export const DEFAULT_SERVICE_NAME = 'node-levels-starter';

/** On when an OTLP endpoint is configured and the SDK is not disabled. */
export function tracingEnabled(settings: TracingSettings): boolean {
  if (settings.OTEL_SDK_DISABLED) return false;
  return (
    settings.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT !== undefined ||
    settings.OTEL_EXPORTER_OTLP_ENDPOINT !== undefined
  );
}

/** The URL spans are posted to: the traces endpoint as given, or the base endpoint plus /v1/traces. */
export function tracesUrl(settings: TracingSettings): string {
  if (settings.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT !== undefined)
    return settings.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT;
  const base = settings.OTEL_EXPORTER_OTLP_ENDPOINT ?? '';
  return `${base.replace(/\/+$/, '')}/v1/traces`;
}

/**
 * `key1=value1,key2=value2` as OTEL_RESOURCE_ATTRIBUTES and OTEL_EXPORTER_OTLP_HEADERS write it
 * (values percent-encoded); entries without a key or `=` are skipped.
 */
export function parseKeyValueList(text: string): Record<string, string> {
  const result: Record<string, string> = {};
  for (const entry of text.split(',')) {
    const separator = entry.indexOf('=');
    if (separator <= 0) continue;
    const key = entry.slice(0, separator).trim();
    const raw = entry.slice(separator + 1).trim();
    if (!key) continue;
    try {
      result[key] = decodeURIComponent(raw);
    } catch {
      result[key] = raw;
    }
  }
  return result;
}

/**
 * Resource attributes of this process. OTEL_RESOURCE_ATTRIBUTES adds to them; OTEL_SERVICE_NAME wins
 * for the name. service.instance.id is always this process's own: one environment serves every
 * cluster worker and task worker, and each must be told apart.
 */
export function resourceAttributesOf(
  settings: TracingSettings,
  process: ProcessRole & { instanceId: string; pid: number; hostname: string; version: string },
): Record<string, string | number> {
  const extra = parseKeyValueList(settings.OTEL_RESOURCE_ATTRIBUTES);
  return {
    'host.name': process.hostname,
    ...extra,
    'service.name': settings.OTEL_SERVICE_NAME ?? extra['service.name'] ?? DEFAULT_SERVICE_NAME,
    'service.version': extra['service.version'] ?? process.version,
    'service.instance.id': process.instanceId,
    'process.pid': process.pid,
    'app.process.role': process.role,
    ...(process.workerId !== undefined ? { 'app.worker.id': process.workerId } : {}),
  };
}

export interface SamplerSpec {
  root: 'always_on' | 'always_off' | 'ratio';
  ratio: number;
  /** Follow the sampled flag of the parent (an incoming traceparent, the enqueuing request). */
  parentBased: boolean;
}

export function samplerSpecOf(settings: TracingSettings): SamplerSpec {
  const name = settings.OTEL_TRACES_SAMPLER;
  const parentBased = name.startsWith('parentbased_');
  const base = parentBased ? name.slice('parentbased_'.length) : name;
  const root = base === 'traceidratio' ? 'ratio' : (base as 'always_on' | 'always_off');
  return { root, ratio: settings.OTEL_TRACES_SAMPLER_ARG, parentBased };
}

/**
 * Background work starts no trace: a root span of kind INTERNAL or CLIENT comes from a poll loop,
 * a connection set-up or a stalled-job check, never from a request or a job. Traces start at a
 * server span (a request) or a consumer span (a job, scheduled ones included).
 */
export function startsTrace(kind: 'server' | 'client' | 'producer' | 'consumer' | 'internal'): boolean {
  return kind === 'server' || kind === 'consumer' || kind === 'producer';
}

/** Requests the tracer ignores: probes and scrapes arrive every few seconds and say nothing. */
export function isUntracedPath(url: string | undefined): boolean {
  if (!url) return false;
  return url === '/metrics' || url.startsWith('/health') || url.startsWith('/metrics?');
}

/** W3C trace-context `traceresponse` value: version-traceid-parentid-flags. */
export function traceResponseHeader(traceId: string, spanId: string, traceFlags: number): string {
  return `00-${traceId}-${spanId}-${(traceFlags & 0xff).toString(16).padStart(2, '0')}`;
}
