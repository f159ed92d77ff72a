/**
 * deployment/monitoring/otel-collector/config.yaml and its compose service. The collector image cannot
 * be pulled here, so this checks what the collector itself checks at start-up (every component a
 * pipeline names is configured) plus the wiring: the app's endpoint, the mounted file, Jaeger's port.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { loadSettings } from '../../src/settings.js';
import { tracesUrl } from '../../src/telemetry/config.js';
import { ROOT } from '../helpers/process.js';
import { loadCompose } from './helpers/compose.js';

const CONFIG = 'deployment/monitoring/otel-collector/config.yaml';
type Section = Record<string, Record<string, unknown> | null>;
interface CollectorConfig {
  receivers: Section;
  processors: Section;
  exporters: Section;
  service: { pipelines: Record<string, { receivers: string[]; processors?: string[]; exporters: string[] }> };
}
const config = parse(readFileSync(join(ROOT, CONFIG), 'utf8')) as CollectorConfig;

/** Problems the collector would refuse to start with, and unused components it would only warn about. */
function pipelineProblems(candidate: CollectorConfig): string[] {
  const problems: string[] = [];
  const used = { receivers: new Set<string>(), processors: new Set<string>(), exporters: new Set<string>() };
  for (const [name, pipeline] of Object.entries(candidate.service.pipelines)) {
    if (!/^(traces|metrics|logs)(\/[\w-]+)?$/.test(name)) problems.push(`pipeline ${name}: unknown signal`);
    for (const kind of ['receivers', 'processors', 'exporters'] as const) {
      for (const component of pipeline[kind] ?? []) {
        used[kind].add(component);
        if (!(component in (candidate[kind] ?? {})))
          problems.push(`pipeline ${name}: ${kind} ${component} is not configured`);
      }
    }
    if (pipeline.receivers.length === 0 || pipeline.exporters.length === 0)
      problems.push(`pipeline ${name}: needs a receiver and an exporter`);
  }
  for (const kind of ['receivers', 'processors', 'exporters'] as const) {
    for (const component of Object.keys(candidate[kind] ?? {}))
      if (!used[kind].has(component)) problems.push(`${kind} ${component} is configured but unused`);
  }
  return problems;
}

describe('OpenTelemetry Collector configuration (compose monitoring profile)', () => {
  it('every component a pipeline names is configured, and every configured one is used', () => {
    expect(pipelineProblems(config)).toEqual([]);
  });

  it('the check can fail: an unknown exporter and an unused processor are reported', () => {
    const broken = structuredClone(config);
    broken.service.pipelines.traces = { receivers: ['otlp'], processors: ['batch'], exporters: ['zipkin'] };
    expect(pipelineProblems(broken)).toEqual([
      'pipeline traces: exporters zipkin is not configured',
      'processors memory_limiter is configured but unused',
      'exporters otlp/jaeger is configured but unused',
      'exporters debug is configured but unused',
    ]);
  });

  it('memory limit first, batching last, as the collector documentation orders them', () => {
    const processors = config.service.pipelines.traces?.processors ?? [];
    expect(processors[0]).toBe('memory_limiter');
    expect(processors.at(-1)).toBe('batch');
  });

  it('receives OTLP/HTTP on every interface at the port the app is pointed at', () => {
    const http = (config.receivers.otlp as { protocols: { http: { endpoint: string } } }).protocols.http;
    expect(http.endpoint).toBe('0.0.0.0:4318');
    const compose = loadCompose(join(ROOT, 'docker-compose.yml'));
    const collector = compose.services['otel-collector'] as {
      profiles: string[];
      volumes: string[];
      command: string[];
    };
    expect(collector.profiles).toEqual(['monitoring']);
    expect(collector.volumes).toEqual([`./${CONFIG}:/etc/otelcol/config.yaml:ro`]);
    expect(collector.command).toEqual(['--config=/etc/otelcol/config.yaml']);
    // The endpoint the compose file documents turns tracing on and posts to the collector's port.
    const composeText = readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8');
    const documented = /OTEL_EXPORTER_OTLP_ENDPOINT=(\S+)/.exec(composeText)?.[1] ?? '';
    const url = new URL(
      tracesUrl(loadSettings({ OTEL_EXPORTER_OTLP_ENDPOINT: documented }, { envFile: null })),
    );
    expect(url.hostname).toBe('otel-collector');
    expect(url.port).toBe('4318');
    expect(url.pathname).toBe('/v1/traces');
  });

  it('forwards to the Jaeger service of the same profile over OTLP/gRPC', () => {
    const exporter = config.exporters['otlp/jaeger'] as { endpoint: string; tls: { insecure: boolean } };
    const [host, port] = exporter.endpoint.split(':');
    const compose = loadCompose(join(ROOT, 'docker-compose.yml'));
    expect((compose.services[host as string] as { profiles: string[] }).profiles).toEqual(['monitoring']);
    expect(port).toBe('4317');
    expect(exporter.tls.insecure).toBe(true);
  });
});
