import { describe, expect, it } from 'vitest';
import { loadSettings, SettingsError } from '../src/settings.js';
import {
  isUntracedPath,
  parseKeyValueList,
  resourceAttributesOf,
  samplerSpecOf,
  startsTrace,
  traceResponseHeader,
  tracesUrl,
  tracingEnabled,
} from '../src/telemetry/config.js';

const settings = (env: Record<string, string> = {}) => loadSettings(env, { envFile: null });
const processInfo = { role: 'http' as const, instanceId: 'id-1', pid: 42, hostname: 'box', version: '0.1.0' };

describe('tracing settings', () => {
  it('is off by default, on with either endpoint, off again with OTEL_SDK_DISABLED', () => {
    expect(tracingEnabled(settings())).toBe(false);
    expect(tracingEnabled(settings({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' }))).toBe(true);
    expect(tracingEnabled(settings({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://c:4318/v1/traces' }))).toBe(
      true,
    );
    expect(
      tracingEnabled(
        settings({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318', OTEL_SDK_DISABLED: 'true' }),
      ),
    ).toBe(false);
  });

  it('posts to <endpoint>/v1/traces, or to the traces endpoint exactly as given', () => {
    expect(tracesUrl(settings({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/' }))).toBe(
      'http://collector:4318/v1/traces',
    );
    expect(
      tracesUrl(
        settings({
          OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318',
          OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://vendor.example/otlp/traces',
        }),
      ),
    ).toBe('https://vendor.example/otlp/traces');
  });

  it('refuses grpc, non-http endpoints, bad samplers and ratios, naming the variable', () => {
    const problems = (env: Record<string, string>) => {
      try {
        settings(env);
        return [];
      } catch (error) {
        return (error as SettingsError).problems.map((problem) => problem.name);
      }
    };
    expect(problems({ OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' })).toEqual(['OTEL_EXPORTER_OTLP_PROTOCOL']);
    expect(problems({ OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4317' })).toEqual([
      'OTEL_EXPORTER_OTLP_ENDPOINT',
    ]);
    expect(problems({ OTEL_TRACES_SAMPLER: 'sometimes' })).toEqual(['OTEL_TRACES_SAMPLER']);
    expect(problems({ OTEL_TRACES_SAMPLER_ARG: '1.5' })).toEqual(['OTEL_TRACES_SAMPLER_ARG']);
    expect(problems({ OTEL_BSP_MAX_QUEUE_SIZE: '10', OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '20' })).toEqual([
      'OTEL_BSP_MAX_EXPORT_BATCH_SIZE',
    ]);
  });

  it('never prints the export headers (they carry API keys)', () => {
    const attempt = () =>
      settings({ OTEL_EXPORTER_OTLP_HEADERS: 'api-key=s3cret', OTEL_TRACES_SAMPLER: 'bad' });
    expect(attempt).toThrow(SettingsError);
    expect(attempt).not.toThrow(/s3cret/);
  });
});

describe('tracing decisions', () => {
  it('parses key=value lists with percent-encoded values, skipping junk', () => {
    expect(parseKeyValueList('a=1, b = two%20words ,junk,=x,c=%ZZ')).toEqual({
      a: '1',
      b: 'two words',
      c: '%ZZ',
    });
    expect(parseKeyValueList('')).toEqual({});
  });

  it('names the service from OTEL_SERVICE_NAME, then OTEL_RESOURCE_ATTRIBUTES, then the default', () => {
    expect(resourceAttributesOf(settings(), processInfo)['service.name']).toBe('node-levels-starter');
    const fromAttributes = settings({
      OTEL_RESOURCE_ATTRIBUTES: 'service.name=shop,deployment.environment.name=prod',
    });
    expect(resourceAttributesOf(fromAttributes, processInfo)).toMatchObject({
      'service.name': 'shop',
      'deployment.environment.name': 'prod',
    });
    const both = settings({ OTEL_RESOURCE_ATTRIBUTES: 'service.name=shop', OTEL_SERVICE_NAME: 'api' });
    expect(resourceAttributesOf(both, processInfo)['service.name']).toBe('api');
  });

  it('keeps each process its own service.instance.id, whatever the shared environment says', () => {
    const shared = settings({ OTEL_RESOURCE_ATTRIBUTES: 'service.instance.id=pod-1' });
    const worker = resourceAttributesOf(shared, { ...processInfo, role: 'task-worker', workerId: 3 });
    expect(worker).toMatchObject({
      'service.instance.id': 'id-1',
      'app.process.role': 'task-worker',
      'app.worker.id': 3,
    });
    expect(resourceAttributesOf(shared, processInfo)).not.toHaveProperty('app.worker.id');
  });

  it('maps the OTEL_TRACES_SAMPLER names', () => {
    expect(samplerSpecOf(settings())).toEqual({ root: 'always_on', ratio: 1, parentBased: true });
    expect(
      samplerSpecOf(settings({ OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.25' })),
    ).toEqual({ root: 'ratio', ratio: 0.25, parentBased: false });
    expect(samplerSpecOf(settings({ OTEL_TRACES_SAMPLER: 'parentbased_always_off' }))).toMatchObject({
      root: 'always_off',
      parentBased: true,
    });
  });

  it('starts traces at requests and jobs only, and not for probes or scrapes', () => {
    expect(['server', 'consumer', 'producer'].every((kind) => startsTrace(kind as 'server'))).toBe(true);
    expect(startsTrace('internal')).toBe(false);
    expect(startsTrace('client')).toBe(false);
    expect(isUntracedPath('/health/ready')).toBe(true);
    expect(isUntracedPath('/metrics')).toBe(true);
    expect(isUntracedPath('/api/items')).toBe(false);
  });

  it('writes traceresponse as version-traceid-parentid-flags', () => {
    expect(traceResponseHeader('0af7651916cd43dd8448eb211c80319c', 'b7ad6b7169203331', 1)).toBe(
      '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
    );
  });
});
