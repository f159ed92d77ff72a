/**
 * OpenTelemetry tracing against a real OTLP/HTTP receiver (test/helpers/otlp-receiver.ts), with real
 * processes: LEVEL=4 (cluster workers and a task worker), LEVEL=1, a collector that never answers,
 * SIGTERM with spans still queued, and tracing off (nothing of OpenTelemetry loaded at all).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster } from './helpers/cluster.js';
import { createTestDatabase, type TestDatabase } from './helpers/database.js';
import { sampleSum } from './helpers/metrics.js';
import {
  type OtlpReceiver,
  type ReceivedSpan,
  SPAN_KIND,
  startOtlpReceiver,
} from './helpers/otlp-receiver.js';
import { freePort, ROOT, type ServerProcess, startProcess, waitForHttp } from './helpers/process.js';
import { dropPrefix, taskEnv, uniquePrefix } from './helpers/tasks.js';
import { signInOverHttp } from './helpers/user.js';

let database: TestDatabase;
const processes: ServerProcess[] = [];
const receivers: OtlpReceiver[] = [];
const prefixes: string[] = [];

beforeAll(async () => {
  database = await createTestDatabase();
});

afterAll(async () => {
  await Promise.all(processes.map((server) => server.stop('SIGKILL')));
  await Promise.all(receivers.map((receiver) => receiver.close()));
  await Promise.all(prefixes.map((prefix) => dropPrefix(prefix)));
  await database?.drop();
});

async function receiver(): Promise<OtlpReceiver> {
  const started = await startOtlpReceiver();
  receivers.push(started);
  return started;
}

/** Exports within a fraction of a second, so tests wait on spans, not on the 5 s default. */
function tracingEnv(endpoint: string, extra: Record<string, string> = {}): Record<string, string> {
  return { OTEL_EXPORTER_OTLP_ENDPOINT: endpoint, OTEL_BSP_SCHEDULE_DELAY: '100', ...extra };
}

/** The one place that knows the enqueue route and body. */
async function enqueueTask(
  baseUrl: string,
  name: string,
  payload: object,
  headers: Record<string, string> = {},
): Promise<Response> {
  const auth = await signInOverHttp(baseUrl);
  return fetch(`${baseUrl}/api/tasks`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...auth, ...headers },
    body: JSON.stringify({ name, payload }),
  });
}

function traceparent(): { header: string; traceId: string; spanId: string } {
  const traceId = randomBytes(16).toString('hex');
  const spanId = randomBytes(8).toString('hex');
  return { header: `00-${traceId}-${spanId}-01`, traceId, spanId };
}

const inTrace = (spans: ReceivedSpan[], traceId: string) => spans.filter((span) => span.traceId === traceId);
const byId = (spans: ReceivedSpan[], id: string) => spans.find((span) => span.spanId === id);

/** True when `ancestor` is on the parent chain of `span` (within the spans received). */
function descendsFrom(spans: ReceivedSpan[], span: ReceivedSpan, ancestor: ReceivedSpan): boolean {
  let current: ReceivedSpan | undefined = span;
  for (let hops = 0; current && hops < 50; hops += 1) {
    if (current.parentSpanId === ancestor.spanId) return true;
    current = byId(spans, current.parentSpanId);
  }
  return false;
}

describe('LEVEL=4: one trace from the request to the job, across processes', () => {
  let server: ServerProcess;
  let collector: OtlpReceiver;

  beforeAll(async () => {
    collector = await receiver();
    const prefix = uniquePrefix();
    prefixes.push(prefix);
    server = await startCluster({
      LEVEL: '4',
      WORKERS: '2',
      TASK_WORKERS: '1',
      TASK_WORKER_HEALTH_PORT: '0',
      DATABASE_URL: database.url,
      ...taskEnv(prefix),
      ...tracingEnv(collector.url, { OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf' }),
    });
    processes.push(server);
    await server.waitForLog((line) => line.msg === 'task worker ready');
  });

  it('joins an incoming traceparent: server, Redis, enqueue, then the task worker with PostgreSQL', async () => {
    const incoming = traceparent();
    const response = await enqueueTask(
      server.baseUrl,
      'email.send',
      { to: 'trace@example.com', subject: 'traced', body: 'hello' },
      { traceparent: incoming.header },
    );
    expect(response.status).toBe(202);
    const [, responseTraceId, responseParentId] = (response.headers.get('traceresponse') ?? '').split('-');
    expect(responseTraceId).toBe(incoming.traceId);

    // Each process exports on its own schedule: wait until every part has arrived, not just the last.
    const partsOf = (all: ReceivedSpan[]) => {
      const trace = inTrace(all, incoming.traceId);
      return {
        trace,
        server_: trace.find((span) => span.kind === SPAN_KIND.server),
        enqueue: trace.find(
          (span) => span.kind === SPAN_KIND.producer && span.name.startsWith('add default'),
        ),
        processing: trace.find((span) => span.kind === SPAN_KIND.consumer && span.name === 'process default'),
        redis: trace.filter((span) => span.kind === SPAN_KIND.client && span.scope.includes('ioredis')),
        postgres: trace.filter(
          (span) => span.kind === SPAN_KIND.client && span.scope.includes('instrumentation-pg'),
        ),
      };
    };
    const arrived = (all: ReceivedSpan[]) => {
      const parts = partsOf(all);
      return Boolean(
        parts.server_ &&
          parts.enqueue &&
          parts.processing &&
          parts.postgres.some((span) => span.resource['app.process.role'] === 'task-worker'),
      );
    };
    const {
      trace: spans,
      server_,
      enqueue,
      processing,
      redis,
      postgres,
    } = partsOf(await collector.waitFor(arrived));
    expect(server_, 'the API worker server span').toBeDefined();
    expect(enqueue, 'the enqueue span').toBeDefined();
    expect(processing, "the task worker's processing span").toBeDefined();
    if (!server_ || !enqueue || !processing) return;

    // The incoming request's span is the server span's parent; traceresponse names the server span.
    expect(server_.parentSpanId).toBe(incoming.spanId);
    expect(responseParentId).toBe(server_.spanId);
    expect(server_.resource['app.process.role']).toBe('http');
    // In the API worker: the enqueue under the request, Redis commands under the request.
    expect(descendsFrom(spans, enqueue, server_)).toBe(true);
    expect(enqueue.resource['service.instance.id']).toBe(server_.resource['service.instance.id']);
    expect(
      redis.some(
        (span) => span.resource['app.process.role'] === 'http' && descendsFrom(spans, span, server_),
      ),
    ).toBe(true);
    // In the task-worker process: processing is the enqueue's child, PostgreSQL under processing.
    expect(processing.resource['app.process.role']).toBe('task-worker');
    expect(processing.resource['service.instance.id']).not.toBe(server_.resource['service.instance.id']);
    expect(processing.parentSpanId).toBe(enqueue.spanId);
    expect(postgres.some((span) => descendsFrom(spans, span, processing))).toBe(true);
    // Each process's PostgreSQL spans under its own part: the API reads the request's session (sessions
    // live in PostgreSQL), the task worker writes the email.
    const postgresOf = (role: string) =>
      postgres.filter((span) => span.resource['app.process.role'] === role);
    expect(postgresOf('http').length).toBeGreaterThan(0);
    expect(postgresOf('http').every((span) => descendsFrom(spans, span, server_))).toBe(true);
    expect(postgresOf('task-worker').every((span) => descendsFrom(spans, span, processing))).toBe(true);
    expect(postgresOf('http').length + postgresOf('task-worker').length).toBe(postgres.length);
    expect(spans.every((span) => span.encoding === 'protobuf')).toBe(true);

    // The logs of both processes carry the trace id.
    await server.waitForLog(
      (line) => line.msg === 'email written to the outbox' && line.trace_id === incoming.traceId,
    );
    const requestLine = await server.waitForLog(
      (line) => line.msg === 'request completed' && line.trace_id === incoming.traceId,
    );
    expect(requestLine.span_id).toMatch(/^[0-9a-f]{16}$/);
  });

  it('starts a new trace without traceparent, and spans of two cluster workers carry different instance ids', async () => {
    const instanceByWorker = new Map<unknown, unknown>();
    for (let attempt = 0; attempt < 20 && instanceByWorker.size < 2; attempt += 1) {
      // A new connection each time: the primary hands connections round-robin to the workers.
      const response = await fetch(`${server.baseUrl}/api/items?limit=1`, {
        headers: { connection: 'close' },
      });
      expect(response.status).toBe(200);
      const traceId = (response.headers.get('traceresponse') ?? '').split('-')[1] ?? '';
      expect(traceId).toMatch(/^[0-9a-f]{32}$/);
      const [span] = inTrace(
        await collector.waitFor((all) => inTrace(all, traceId).some((s) => s.kind === SPAN_KIND.server)),
        traceId,
      ).filter((s) => s.kind === SPAN_KIND.server);
      expect(span?.parentSpanId).toBe('');
      instanceByWorker.set(span?.resource['app.worker.id'], span?.resource['service.instance.id']);
    }
    expect(instanceByWorker.size).toBe(2);
    expect(new Set(instanceByWorker.values()).size).toBe(2);
  });

  it('traces no probe or scrape', async () => {
    const before = collector.spans.length;
    await fetch(`${server.baseUrl}/health/live`);
    await fetch(`${server.baseUrl}/metrics`);
    const marker = await fetch(`${server.baseUrl}/api/items?limit=1`);
    const traceId = (marker.headers.get('traceresponse') ?? '').split('-')[1] ?? '';
    await collector.waitFor((all) => inTrace(all, traceId).length > 0);
    const newer = collector.spans.slice(before);
    expect(newer.some((span) => String(span.attributes['url.path'] ?? '').startsWith('/health'))).toBe(false);
    expect(newer.some((span) => span.attributes['http.route'] === '/metrics')).toBe(false);
  });
});

describe('LEVEL=1', () => {
  it('exports http/json, and SIGTERM flushes the spans still queued', async () => {
    const collector = await receiver();
    const port = await freePort();
    // A schedule delay far beyond the test: only the shutdown flush can send these spans.
    const server = startProcess({
      PORT: String(port),
      DATABASE_URL: database.url,
      ...tracingEnv(collector.url, {
        OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
        OTEL_BSP_SCHEDULE_DELAY: '600000',
      }),
    });
    processes.push(server);
    await waitForHttp(`${server.baseUrl}/health/ready`);
    await server.waitForLog((line) => line.msg === 'tracing on' && line.protocol === 'http/json');
    const response = await fetch(`${server.baseUrl}/api/items?limit=1`);
    expect(response.status).toBe(200);
    const traceId = (response.headers.get('traceresponse') ?? '').split('-')[1] ?? '';
    await server.waitForLog((line) => line.msg === 'request completed' && line.trace_id === traceId);
    expect(inTrace(collector.spans, traceId)).toHaveLength(0);

    const exit = await server.stop('SIGTERM');
    expect(exit.code).toBe(0);
    await server.waitForLog((line) => line.msg === 'tracing: pending spans flushed');
    const spans = inTrace(collector.spans, traceId);
    expect(spans.find((span) => span.kind === SPAN_KIND.server)?.resource['service.name']).toBe(
      'node-levels-starter',
    );
    expect(spans.some((span) => span.scope.includes('instrumentation-pg'))).toBe(true);
    expect(spans.every((span) => span.encoding === 'json')).toBe(true);
  });

  it('with a collector that never answers: requests are unaffected, spans are dropped and counted', async () => {
    // Accepts connections and never replies: every export hangs until its timeout.
    const sockets = new Set<Socket>();
    const blackHole = createServer((socket) => {
      sockets.add(socket);
      socket.on('error', () => {});
    });
    const holePort = await freePort();
    await new Promise<void>((resolve) => blackHole.listen(holePort, '127.0.0.1', resolve));
    try {
      const port = await freePort();
      const server = startProcess({
        PORT: String(port),
        DATABASE_URL: database.url,
        GRACEFUL_TIMEOUT: '3',
        ...tracingEnv(`http://127.0.0.1:${holePort}`, {
          OTEL_BSP_MAX_QUEUE_SIZE: '8',
          OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '4',
          OTEL_EXPORTER_OTLP_TIMEOUT: '60000',
        }),
      });
      processes.push(server);
      await waitForHttp(`${server.baseUrl}/health/ready`);
      const statuses: number[] = [];
      for (let index = 0; index < 40; index += 1) {
        const response = await fetch(`${server.baseUrl}/api/items?limit=1`, {
          signal: AbortSignal.timeout(5000),
        });
        statuses.push(response.status);
        await response.arrayBuffer();
      }
      expect(statuses.every((status) => status === 200)).toBe(true);
      const metrics = await (await fetch(`${server.baseUrl}/metrics`)).text();
      expect(sampleSum(metrics, 'tracing_spans_dropped_total', { reason: 'queue_full' })).toBeGreaterThan(0);
      expect(sampleSum(metrics, 'tracing_spans_exported_total')).toBe(0);
      // Shutdown is bounded by the graceful timeout even though the flush cannot finish.
      const stopped = await server.stop('SIGTERM');
      expect(stopped.code).toBe(0);
      await server.waitForLog(
        (line) => line.msg === 'tracing: pending spans not flushed (collector unreachable or too slow)',
      );
    } finally {
      for (const socket of sockets) socket.destroy();
      blackHole.close();
    }
  });
});

describe('tracing off', () => {
  /** The module URLs every process of a run loaded (test/fixtures/record-loaded-modules.mjs). */
  async function loadedModules(env: Record<string, string>): Promise<string[]> {
    const dir = mkdtempSync(join(tmpdir(), 'modules-'));
    try {
      const port = await freePort();
      const prefix = uniquePrefix();
      prefixes.push(prefix);
      const server = startProcess({
        PORT: String(port),
        DATABASE_URL: database.url,
        ...taskEnv(prefix),
        NODE_OPTIONS: `--import=${pathToFileURL(join(ROOT, 'test/fixtures/record-loaded-modules.mjs')).href}`,
        RECORD_MODULES_DIR: dir,
        ...env,
      });
      processes.push(server);
      await waitForHttp(`${server.baseUrl}/health/ready`);
      expect((await enqueueTask(server.baseUrl, 'system.noop', {})).status).toBe(202);
      await server.stop('SIGTERM');
      return readdirSync(dir).flatMap((file) => readFileSync(join(dir, file), 'utf8').split('\n'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  // prom-client itself loads @opentelemetry/api (the no-op API, for exemplars), tracing or not.
  const telemetryModule =
    /\/node_modules\/(@opentelemetry\/(?!api\/)|@fastify\/otel\/|bullmq-otel\/|import-in-the-middle\/|require-in-the-middle\/)/;

  it('loads no OpenTelemetry SDK, instrumentation or module hook (the same check sees them when on)', async () => {
    const off = await loadedModules({});
    expect(off.some((url) => url.includes('/node_modules/bullmq/'))).toBe(true);
    expect(off.filter((url) => telemetryModule.test(url))).toEqual([]);
    const collector = await receiver();
    const on = await loadedModules(tracingEnv(collector.url));
    expect(on.some((url) => telemetryModule.test(url))).toBe(true);
    // OTEL_SDK_DISABLED wins over an endpoint.
    const disabled = await loadedModules(tracingEnv(collector.url, { OTEL_SDK_DISABLED: 'true' }));
    expect(disabled.filter((url) => telemetryModule.test(url))).toEqual([]);
  });
});
