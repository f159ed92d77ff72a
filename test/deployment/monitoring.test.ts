/**
 * deployment/monitoring: the Prometheus configuration and alert rules checked and unit-tested with
 * Debian's promtool, then a real Prometheus (Debian's) scraping a real LEVEL=3 server and a task
 * worker, answering queries over all workers, with every Grafana dashboard query run against it.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { startCluster } from '../helpers/cluster.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { freePort, ROOT, type ServerProcess, waitForHttp } from '../helpers/process.js';
import { dropPrefix, startTaskWorker, taskEnv, uniquePrefix } from '../helpers/tasks.js';
import { signInOverHttp } from '../helpers/user.js';
import { type Child, startChild } from './helpers/child.js';
import { loadCompose } from './helpers/compose.js';
import { exportedMetricNames, metricNames } from './helpers/promql.js';
import { typeErrors } from './helpers/typecheck.js';

const DIR = join(ROOT, 'deployment/monitoring');
const PROMTOOL = process.env.PROMTOOL_BIN ?? '/usr/bin/promtool';
const PROMETHEUS = process.env.PROMETHEUS_BIN ?? '/usr/bin/prometheus';
const hasPromtool = existsSync(PROMTOOL);
const hasPrometheus = existsSync(PROMETHEUS);

type Tree = Record<string, unknown>;
interface Panel {
  title: string;
  type: string;
  datasource?: { uid: string };
  targets?: Array<{ expr: string; datasource: { uid: string } }>;
}
const dashboard = JSON.parse(readFileSync(join(DIR, 'grafana/dashboards/service.json'), 'utf8')) as {
  uid: string;
  panels: Panel[];
};
const queries = dashboard.panels.flatMap((panel) =>
  (panel.targets ?? []).map((target) => ({ panel: panel.title, expr: target.expr })),
);
const alertRules = (
  parse(readFileSync(join(DIR, 'prometheus/alerts.yml'), 'utf8')) as {
    groups: Array<{ rules: Array<{ alert: string; expr: string; annotations: { runbook: string } }> }>;
  }
).groups.flatMap((group) => group.rules);
const ALERTS = [
  'ServiceDown',
  'NoReadyWorkers',
  'WorkersBelowDesired',
  'WorkerRestartStorm',
  'TaskQueueStuck',
  'HighErrorRate',
];

const promtool = (...args: string[]) =>
  spawnSync(PROMTOOL, args, { cwd: join(DIR, 'prometheus'), encoding: 'utf8' });

describe.skipIf(!hasPromtool)(`Prometheus configuration and alert rules (${PROMTOOL})`, () => {
  it('promtool check config accepts prometheus.yml and the rule file it loads', () => {
    const result = promtool('check', 'config', 'prometheus.yml');
    expect(result.status, result.stdout + result.stderr).toBe(0);
    expect(result.stdout).toContain(`${ALERTS.length} rules found`);
  });

  it('promtool check rules accepts alerts.yml', () => {
    const result = promtool('check', 'rules', 'alerts.yml');
    expect(result.status, result.stdout + result.stderr).toBe(0);
  });

  it('promtool test rules: every alert fires on its fault and not on the healthy look-alike', () => {
    const result = promtool('test', 'rules', 'alerts.test.yml');
    expect(result.status, result.stdout + result.stderr).toBe(0);
    const tested = new Set(
      [...readFileSync(join(DIR, 'prometheus/alerts.test.yml'), 'utf8').matchAll(/alertname: (\w+)/g)].map(
        (match) => match[1],
      ),
    );
    expect([...tested].sort()).toEqual([...ALERTS].sort());
  });

  it('the unit tests can fail: a wrong expectation is reported', () => {
    const dir = mkdtempSync(join(tmpdir(), 'promtool-'));
    copyFileSync(join(DIR, 'prometheus/alerts.yml'), join(dir, 'alerts.yml'));
    const tests = readFileSync(join(DIR, 'prometheus/alerts.test.yml'), 'utf8');
    writeFileSync(join(dir, 'alerts.test.yml'), tests.replace('queue: default }', 'queue: cpu }'));
    const result = spawnSync(PROMTOOL, ['test', 'rules', 'alerts.test.yml'], { cwd: dir, encoding: 'utf8' });
    rmSync(dir, { recursive: true, force: true });
    expect(result.status).not.toBe(0);
    expect(result.stdout + result.stderr).toContain('TaskQueueStuck');
  });
});

describe('alerts, dashboard and compose wiring (static)', () => {
  it('the alerts are the ones documented, each with a runbook section in docs/observability.md', () => {
    expect(alertRules.map((rule) => rule.alert).sort()).toEqual([...ALERTS].sort());
    const doc = readFileSync(join(ROOT, 'docs/observability.md'), 'utf8');
    for (const rule of alertRules) {
      expect(rule.annotations.runbook).toBe(`docs/observability.md#${rule.alert.toLowerCase()}`);
      expect(doc, rule.alert).toMatch(new RegExp(`^### ${rule.alert}$`, 'm'));
    }
  });

  it('the PromQL metric-name reader finds metrics, not functions, labels, durations or strings', () => {
    expect(
      metricNames(
        'histogram_quantile(0.95, sum by (route, le) (rate(http_request_duration_seconds_bucket{status_code=~"5.."}[$__rate_interval])))',
      ),
    ).toEqual(['http_request_duration_seconds_bucket']);
    expect(
      metricNames(
        'max by (queue) (task_queue_jobs{state="waiting"}) >= max by (queue) (task_queue_jobs offset 10m)',
      ),
    ).toEqual(['task_queue_jobs']);
    expect(metricNames('sum(a_total) / sum(b_total) > 0.05 and on (job) up == 1')).toEqual([
      'a_total',
      'b_total',
      'up',
    ]);
  });

  it("the dashboard matches Grafana 11.3's own type declarations (@grafana/schema): no unknown field", () => {
    const check = (dashboardJson: unknown) =>
      typeErrors(
        join(ROOT, 'test/deployment/__dashboard_typecheck__.ts'),
        [
          "import type { Dashboard } from '@grafana/schema';",
          // The JSON holds Grafana's enum values as plain strings.
          // biome-ignore lint/suspicious/noTemplateCurlyInString: TypeScript source text, not a template
          'type Json<T> = T extends string ? `${T}` : T extends readonly (infer U)[] ? Json<U>[] : T extends object ? { [K in keyof T]: Json<T[K]> } : T;',
          `export const dashboard: Json<Dashboard> = ${JSON.stringify(dashboardJson)};`,
        ].join('\n'),
      ).map((error) => error.message);
    expect(check(dashboard)).toEqual([]);
    // The check can fail: a misspelt panel field is reported.
    const broken = structuredClone(dashboard) as unknown as { panels: Array<Record<string, unknown>> };
    (broken.panels[1] as Record<string, unknown>).gridPoss = {};
    expect(check(broken).join('\n')).toMatch(/'"gridPoss"' does not exist/);
  });

  it('every dashboard query uses the provisioned Prometheus data source', () => {
    const provisioned = parse(
      readFileSync(join(DIR, 'grafana/provisioning/datasources/prometheus.yml'), 'utf8'),
    ) as { datasources: Array<{ uid: string; url: string }> };
    const uid = provisioned.datasources[0]?.uid;
    expect(queries.length).toBeGreaterThan(15);
    for (const panel of dashboard.panels.filter((candidate) => candidate.type !== 'row')) {
      expect(panel.datasource?.uid, panel.title).toBe(uid);
      for (const target of panel.targets ?? []) expect(target.datasource.uid, panel.title).toBe(uid);
    }
    expect(provisioned.datasources[0]?.url).toBe('http://prometheus:9090');
  });

  it('compose profile monitoring mounts exactly the files Prometheus and Grafana are told to read', () => {
    const compose = loadCompose(join(ROOT, 'docker-compose.yml'));
    const prometheus = compose.services.prometheus as Tree & { volumes: string[]; command: string[] };
    const grafana = compose.services.grafana as Tree & { volumes: string[]; environment: Tree };
    expect(prometheus.profiles).toEqual(['monitoring']);
    expect(grafana.profiles).toEqual(['monitoring']);
    expect(prometheus.volumes).toContain('./deployment/monitoring/prometheus:/etc/prometheus:ro');
    expect(prometheus.command).toContain('--config.file=/etc/prometheus/prometheus.yml');
    expect(grafana.volumes).toContain(
      './deployment/monitoring/grafana/provisioning:/etc/grafana/provisioning:ro',
    );
    expect(grafana.volumes).toContain(
      './deployment/monitoring/grafana/dashboards:/etc/grafana/dashboards:ro',
    );
    const providers = parse(
      readFileSync(join(DIR, 'grafana/provisioning/dashboards/dashboards.yml'), 'utf8'),
    ) as { providers: Array<{ options: { path: string } }> };
    expect(providers.providers[0]?.options.path).toBe('/etc/grafana/dashboards');
    expect(grafana.environment.GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH).toBe(
      '/etc/grafana/dashboards/service.json',
    );
    // Scrape targets are the compose service names and the ports the app listens on.
    const config = parse(readFileSync(join(DIR, 'prometheus/prometheus.yml'), 'utf8')) as {
      scrape_configs: Array<{ job_name: string; dns_sd_configs?: Array<{ names: string[]; port: number }> }>;
    };
    const sd = Object.fromEntries(
      config.scrape_configs.map((job) => [job.job_name, job.dns_sd_configs?.[0]]),
    );
    expect(sd.api).toEqual(expect.objectContaining({ names: ['api'], port: 3000 }));
    expect(sd.tasks).toEqual(expect.objectContaining({ names: ['worker'], port: 3001 }));
    expect(compose.services.worker).toBeDefined();
  });
});

interface QueryResult {
  status: string;
  error?: string;
  data: { result: Array<{ metric: Record<string, string>; value: [number, string] }> };
}

describe.skipIf(!hasPrometheus)(
  `a real Prometheus against a LEVEL=3 server and a task worker (${PROMETHEUS})`,
  () => {
    let database: TestDatabase;
    let server: ServerProcess;
    let taskWorker: ServerProcess;
    let prometheus: Child;
    let prometheusUrl: string;
    let dir: string;
    const prefix = uniquePrefix();
    const HASH_REQUESTS = 40;

    async function query(expr: string): Promise<QueryResult> {
      const url = new URL('/api/v1/query', prometheusUrl);
      url.searchParams.set('query', expr.replaceAll('$__rate_interval', '1m'));
      const response = await fetch(url);
      return (await response.json()) as QueryResult;
    }

    async function until(expr: string, accept: (result: QueryResult) => boolean, timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      let last: QueryResult | undefined;
      while (Date.now() < deadline) {
        last = await query(expr);
        if (last.status === 'success' && accept(last)) return last;
        await sleep(250);
      }
      throw new Error(`${expr}: never accepted; last answer ${JSON.stringify(last)}`);
    }

    beforeAll(async () => {
      database = await createTestDatabase();
      const env = taskEnv(prefix);
      server = await startCluster({ LEVEL: '3', WORKERS: '2', DATABASE_URL: database.url, ...env });
      taskWorker = await startTaskWorker(database.url, env);

      // The shipped configuration with only what differs here: fast intervals and local targets.
      dir = mkdtempSync(join(tmpdir(), 'prometheus-'));
      const config = parse(readFileSync(join(DIR, 'prometheus/prometheus.yml'), 'utf8')) as {
        global: Tree;
        scrape_configs: Array<Tree & { job_name: string }>;
      };
      config.global.scrape_interval = '1s';
      config.global.scrape_timeout = '1s';
      config.global.evaluation_interval = '1s';
      const targets: Record<string, number> = { api: server.port, tasks: taskWorker.port };
      for (const job of config.scrape_configs) {
        const port = targets[job.job_name];
        if (port === undefined) continue;
        delete job.dns_sd_configs;
        job.static_configs = [{ targets: [`127.0.0.1:${port}`] }];
      }
      writeFileSync(join(dir, 'prometheus.yml'), stringify(config));
      copyFileSync(join(DIR, 'prometheus/alerts.yml'), join(dir, 'alerts.yml'));
      const port = await freePort();
      prometheusUrl = `http://127.0.0.1:${port}`;
      prometheus = startChild(
        PROMETHEUS,
        [
          `--config.file=${join(dir, 'prometheus.yml')}`,
          `--storage.tsdb.path=${join(dir, 'data')}`,
          `--web.listen-address=127.0.0.1:${port}`,
        ],
        { cwd: dir, env: { PATH: process.env.PATH ?? '' } },
      );
      await waitForHttp(`${prometheusUrl}/-/ready`).catch((error: Error) => {
        throw new Error(`${error.message}\nprometheus: ${prometheus.stderr().slice(-2000)}`);
      });

      // A first scrape of both targets before any traffic, so rates see the counters move.
      await until('up{job=~"api|tasks"} == 1', (result) => result.data.result.length === 2);
      // Traffic for the panels: requests spread over both workers, a cache hit, a few jobs.
      for (let index = 0; index < HASH_REQUESTS; index += 1) {
        const response = await fetch(`${server.baseUrl}/api/examples/hash?rounds=1`, {
          headers: { connection: 'close' },
        });
        expect(response.status).toBe(200);
      }
      const auth = await signInOverHttp(server.baseUrl);
      const created = await fetch(`${server.baseUrl}/api/items`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...auth },
        body: JSON.stringify({ name: 'watched' }),
      });
      const { id } = (await created.json()) as { id: number };
      for (let index = 0; index < 3; index += 1) await fetch(`${server.baseUrl}/api/items/${id}`);
      for (let index = 0; index < 5; index += 1) {
        const response = await fetch(`${server.baseUrl}/api/tasks`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...auth },
          body: JSON.stringify({ name: 'system.noop', payload: {} }),
        });
        expect(response.status).toBe(202);
      }
    }, 120_000);

    afterAll(async () => {
      await prometheus?.stop('SIGTERM', 5000);
      await Promise.all([server?.stop(), taskWorker?.stop()]);
      if (dir) rmSync(dir, { recursive: true, force: true });
      await dropPrefix(prefix);
      await database?.drop();
    });

    it('scrapes the API and the task worker, and answers a query over all workers of the server', async () => {
      await until(
        'up{job=~"api|tasks"}',
        (result) =>
          result.data.result.length === 2 && result.data.result.every((series) => series.value[1] === '1'),
      );
      // One scrape of the server answers for both workers: each has its own series...
      const perWorker = await until(
        'cluster_worker_requests_served{job="api", pool="http"}',
        (result) =>
          result.data.result.length === 2 &&
          result.data.result.every((series) => Number(series.value[1]) > 0),
      );
      expect(new Set(perWorker.data.result.map((series) => series.metric.worker)).size).toBe(2);
      // ...and so does the request histogram, one series per worker slot, adding up to exactly the
      // requests sent.
      const bySlot = await until(
        'sum by (pool, worker) (http_request_duration_seconds_count{job="api", route="/api/examples/hash"})',
        (result) =>
          result.data.result.reduce((total, series) => total + Number(series.value[1]), 0) === HASH_REQUESTS,
      );
      const slots = bySlot.data.result.map((series) => `${series.metric.pool}/${series.metric.worker}`);
      expect(slots.sort()).toEqual(['http/1', 'http/2']);
      await until(
        'sum(cluster_workers_ready{pool="http"})',
        (result) => result.data.result[0]?.value[1] === '2',
      );
    });

    it('loads the alert rules, all healthy, none firing on a healthy service', async () => {
      type Rule = { name: string; health: string; state: string };
      const readRules = async () => {
        const body = (await (await fetch(`${prometheusUrl}/api/v1/rules`)).json()) as {
          data: { groups: Array<{ rules: Rule[] }> };
        };
        return body.data.groups.flatMap((group) => group.rules);
      };
      let loaded = await readRules();
      expect(loaded.map((rule) => rule.name).sort()).toEqual([...ALERTS].sort());
      // One slow scrape on a loaded machine makes ServiceDown pending for an evaluation; it must never
      // fire, and every rule must settle back to inactive.
      const deadline = Date.now() + 10_000;
      while (loaded.some((rule) => rule.state !== 'inactive') && Date.now() < deadline) {
        for (const rule of loaded) expect(rule.state, rule.name).not.toBe('firing');
        await sleep(500);
        loaded = await readRules();
      }
      for (const rule of loaded) expect(rule.health, rule.name).toBe('ok');
      for (const rule of loaded) expect(rule.state, rule.name).toBe('inactive');
    });

    it('every dashboard query names metrics the app and the task worker export, and runs', async () => {
      const exported = new Set<string>();
      for (const target of [server.baseUrl, taskWorker.baseUrl]) {
        const text = await (await fetch(`${target}/metrics`)).text();
        for (const name of exportedMetricNames(text)) exported.add(name);
      }
      for (const { panel, expr } of queries) {
        const names = metricNames(expr);
        expect(names.length, `${panel}: ${expr}`).toBeGreaterThan(0);
        for (const name of names) expect(exported.has(name), `${panel}: ${name} is not exported`).toBe(true);
        const result = await query(expr);
        expect(result.status, `${panel}: ${result.error}`).toBe('success');
      }
    });

    it('the panels for traffic, workers, queues, jobs and cache show data', async () => {
      const withData = [
        'Requests/s by route',
        'Latency p50 / p95 / p99 by route',
        'Workers ready / desired',
        'Event-loop utilisation per worker',
        'Memory (RSS) per worker',
        'Queue depth by state',
        'Jobs/s: completed, retried, failed',
        'Job duration p50 / p95 by task',
        'Cache lookups/s',
        'Cache hit ratio',
      ];
      for (const title of withData) {
        const panel = dashboard.panels.find((candidate) => candidate.title === title);
        expect(panel, title).toBeDefined();
        const expr = panel?.targets?.[0]?.expr as string;
        await until(expr, (result) => result.data.result.length > 0);
      }
    }, 60_000);

    it('reads the task worker: completed jobs counted by task, and its process figures', async () => {
      await until('process_resident_memory_bytes{job="tasks"}', (result) => result.data.result.length === 1);
      await until(
        'sum(task_jobs_completed_total{job="tasks", task="system.noop"})',
        (result) => Number(result.data.result[0]?.value[1]) === 5,
      );
    });
  },
);
