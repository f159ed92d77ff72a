/**
 * deployment/kubernetes: both overlays rendered by `kubectl kustomize`, every object validated with
 * kubernetes-models / @kubernetes-models/keda (schema) and their type declarations (unknown fields),
 * then checked for what the app needs: probes on paths and ports it serves, drain timings, restricted
 * security, KEDA triggers on the real BullMQ wait lists, and network access to the data stores.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSettings } from '../../src/settings.js';
import { DEFAULT_QUEUE_PREFIX, QUEUE_NAMES } from '../../src/tasks/queues.js';
import { tracesUrl, tracingEnabled } from '../../src/telemetry/config.js';
import { buildTestApp } from '../helpers/app.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { ROOT } from '../helpers/process.js';
import { envExampleNames, settingDefault } from './helpers/compose.js';
import {
  type K8sObject,
  KUBECTL,
  kustomize,
  type Labels,
  parseManifests,
  selects,
  unknownFieldErrors,
  validateWithModel,
} from './helpers/kubernetes.js';

interface Probe {
  httpGet?: { path: string; port: string | number };
  periodSeconds?: number;
}
interface Container {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  ports?: Array<{ name: string; containerPort: number }>;
  env?: Array<{ name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } }>;
  envFrom?: Array<{ configMapRef?: { name: string }; secretRef?: { name: string } }>;
  startupProbe?: Probe;
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  lifecycle?: { preStop?: { sleep?: { seconds: number }; exec?: { command: string[] } } };
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: SecurityContext;
  volumeMounts?: Array<{ name: string; mountPath: string }>;
}
interface SecurityContext {
  runAsNonRoot?: boolean;
  runAsUser?: number;
  allowPrivilegeEscalation?: boolean;
  readOnlyRootFilesystem?: boolean;
  privileged?: boolean;
  capabilities?: { drop?: string[]; add?: string[] };
  seccompProfile?: { type: string };
}
interface PodSpec {
  containers: Container[];
  initContainers?: Container[];
  securityContext?: SecurityContext;
  terminationGracePeriodSeconds?: number;
  automountServiceAccountToken?: boolean;
  hostNetwork?: boolean;
  hostPID?: boolean;
  hostIPC?: boolean;
  restartPolicy?: string;
  topologySpreadConstraints?: Array<{ whenUnsatisfiable: string; labelSelector: { matchLabels: Labels } }>;
  volumes?: Array<{ name: string; emptyDir?: unknown; hostPath?: unknown }>;
}
interface PodTemplate {
  metadata: { labels: Labels; annotations?: Record<string, string> };
  spec: PodSpec;
}

const rendered: Record<'base' | 'dev' | 'prod', K8sObject[]> = { base: [], dev: [], prod: [] };
const extras = [
  ...parseManifests(readFileSync(join(ROOT, 'deployment/kubernetes/secret.example.yaml'), 'utf8')),
  ...parseManifests(
    readFileSync(join(ROOT, 'deployment/kubernetes/base/worker-hpa.alternative.yaml'), 'utf8'),
  ),
];

function find(objects: K8sObject[], kind: string, name: string): K8sObject {
  const found = objects.find((object) => object.kind === kind && object.metadata.name === name);
  if (!found) throw new Error(`no ${kind} ${name}`);
  return found;
}
function podTemplate(object: K8sObject): PodTemplate {
  const spec = object.spec as { template?: PodTemplate; jobTemplate?: { spec: { template: PodTemplate } } };
  return (spec.template ?? spec.jobTemplate?.spec.template) as PodTemplate;
}
const workloads = (objects: K8sObject[]) =>
  objects.filter((object) =>
    ['Deployment', 'StatefulSet', 'Job', 'CronJob', 'DaemonSet'].includes(object.kind),
  );
const appWorkloads = (objects: K8sObject[]) =>
  workloads(objects).filter((object) =>
    podTemplate(object).spec.containers.some((c) => /node-levels-starter/.test(c.image)),
  );
function config(objects: K8sObject[]): Record<string, string> {
  const map = objects.find(
    (object) => object.kind === 'ConfigMap' && object.metadata.name.startsWith('app-config'),
  );
  return (map?.data ?? {}) as Record<string, string>;
}
function portNumber(container: Container, port: string | number): number {
  if (typeof port === 'number') return port;
  const found = container.ports?.find((candidate) => candidate.name === port);
  if (!found) throw new Error(`container ${container.name} has no port named ${port}`);
  return found.containerPort;
}

describe.skipIf(!KUBECTL)('kubectl kustomize renders the base and both overlays', () => {
  let database: TestDatabase;
  let app: FastifyInstance;

  beforeAll(async () => {
    rendered.base = kustomize('deployment/kubernetes/base');
    rendered.dev = kustomize('deployment/kubernetes/overlays/dev');
    rendered.prod = kustomize('deployment/kubernetes/overlays/prod');
    database = await createTestDatabase();
    // Load shedding off: the type check in this file blocks the event loop for a few seconds on purpose.
    app = await buildTestApp(database.url, { LOAD_SHED_MAX_EVENT_LOOP_DELAY_MS: '0' });
  });
  afterAll(async () => {
    await app?.close();
    await database?.drop();
  });

  it('renders the expected objects', () => {
    const kinds = (objects: K8sObject[]) =>
      objects.map((object) => `${object.kind}/${object.metadata.name.replace(/-[a-z0-9]{10}$/, '')}`).sort();
    const common = [
      'ConfigMap/app-config',
      'Deployment/api',
      'Deployment/task-worker',
      'HorizontalPodAutoscaler/api',
      'Ingress/api',
      'Job/migrate',
      'NetworkPolicy/api-ingress',
      'NetworkPolicy/postgres-from-app',
      'NetworkPolicy/redis-from-app',
      'NetworkPolicy/task-worker-ingress',
      'PodDisruptionBudget/api',
      'PodDisruptionBudget/task-worker',
      'ScaledObject/task-worker',
      'Service/api',
      'TriggerAuthentication/redis-auth',
    ];
    expect(kinds(rendered.base)).toEqual(common.sort());
    expect(kinds(rendered.dev)).toEqual(
      [
        ...common,
        'ConfigMap/pgbouncer-config',
        'Deployment/pgbouncer',
        'NetworkPolicy/pgbouncer-from-app',
        'Namespace/node-levels-dev',
        'Secret/app-secrets',
        'Service/pgbouncer',
        'Service/postgres',
        'Service/redis',
        'StatefulSet/postgres',
        'StatefulSet/redis',
      ].sort(),
    );
    expect(kinds(rendered.prod)).toEqual([...common, 'Namespace/node-levels'].sort());
    for (const object of rendered.prod.filter((candidate) => candidate.kind !== 'Namespace')) {
      expect(object.metadata.namespace, `${object.kind}/${object.metadata.name}`).toBe('node-levels');
    }
  });

  it('every object validates with kubernetes-models and @kubernetes-models/keda', async () => {
    const all = [...rendered.dev, ...rendered.prod, ...extras];
    expect(all.filter((object) => object.apiVersion.startsWith('keda.sh/')).length).toBe(4);
    for (const object of all) await validateWithModel(object);
  });

  it('no object has a field unknown to the Kubernetes or KEDA types (catches typos the schemas allow)', () => {
    expect(unknownFieldErrors([...rendered.dev, ...rendered.prod, ...extras])).toEqual([]);
    const typo = structuredClone(find(rendered.prod, 'Deployment', 'api'));
    (podTemplate(typo).spec.containers[0] as unknown as Record<string, unknown>).readinesProbe = {};
    expect(unknownFieldErrors([typo]).join()).toContain('\'"readinesProbe"\' does not exist');
  });

  it('probes ask paths the app serves, on the ports it listens on (API: PORT, worker: TASK_WORKER_HEALTH_PORT)', async () => {
    for (const objects of [rendered.dev, rendered.prod]) {
      const settings = config(objects);
      const api = podTemplate(find(objects, 'Deployment', 'api')).spec.containers[0] as Container;
      expect(api.startupProbe?.httpGet?.path).toBe('/health/live');
      expect(api.livenessProbe?.httpGet?.path).toBe('/health/live');
      expect(api.readinessProbe?.httpGet?.path).toBe('/health/ready');
      for (const probe of [api.startupProbe, api.livenessProbe, api.readinessProbe]) {
        expect(portNumber(api, probe?.httpGet?.port as string)).toBe(Number(settings.PORT));
        const response = await app.inject({ method: 'GET', url: probe?.httpGet?.path as string });
        expect(response.statusCode, probe?.httpGet?.path).toBe(200);
      }
      const worker = podTemplate(find(objects, 'Deployment', 'task-worker')).spec.containers[0] as Container;
      expect(worker.args).toEqual(['node', 'dist/worker.js']);
      for (const probe of [worker.startupProbe, worker.livenessProbe]) {
        expect(probe?.httpGet?.path).toBe('/health/live');
        expect(portNumber(worker, probe?.httpGet?.port as string)).toBe(
          Number(settings.TASK_WORKER_HEALTH_PORT),
        );
      }
      // Prometheus scrape annotations name the same ports and a path the app serves.
      for (const [name, port] of [
        ['api', settings.PORT],
        ['task-worker', settings.TASK_WORKER_HEALTH_PORT],
      ] as const) {
        const annotations = podTemplate(find(objects, 'Deployment', name)).metadata.annotations ?? {};
        expect(annotations, name).toEqual({
          'prometheus.io/scrape': 'true',
          'prometheus.io/port': String(port),
          'prometheus.io/path': '/metrics',
        });
      }
      expect((await app.inject({ method: 'GET', url: '/metrics' })).statusCode).toBe(200);
      // The worker serves /health/live on TASK_WORKER_HEALTH_PORT (run for real in image.test.ts).
      expect(readFileSync(join(ROOT, 'src/worker.ts'), 'utf8')).toContain("'/health/live'");
      expect(settings.PORT).toBe(String(settingDefault('PORT')));
    }
  });

  it('drain timings: grace > preStop sleep + GRACEFUL_TIMEOUT (API), > TASK_SHUTDOWN_TIMEOUT + 5 s (workers)', () => {
    for (const objects of [rendered.dev, rendered.prod]) {
      const settings = config(objects);
      const api = podTemplate(find(objects, 'Deployment', 'api')).spec;
      const preStop = (api.containers[0] as Container).lifecycle?.preStop?.sleep?.seconds ?? 0;
      expect(preStop).toBeGreaterThan(0);
      expect(api.terminationGracePeriodSeconds).toBeGreaterThan(preStop + Number(settings.GRACEFUL_TIMEOUT));
      const worker = podTemplate(find(objects, 'Deployment', 'task-worker')).spec;
      expect(worker.terminationGracePeriodSeconds).toBeGreaterThan(
        Number(settings.TASK_SHUTDOWN_TIMEOUT) + 5,
      );
      expect(Number(settings.TASK_SHUTDOWN_TIMEOUT)).toBeGreaterThanOrEqual(
        settingDefault('TASK_SHUTDOWN_TIMEOUT') as number,
      );
    }
  });

  it('every pod meets the restricted Pod Security Standard the namespaces enforce', () => {
    for (const objects of [rendered.dev, rendered.prod]) {
      const namespace = objects.find((object) => object.kind === 'Namespace');
      expect(namespace?.metadata.labels?.['pod-security.kubernetes.io/enforce']).toBe('restricted');
      for (const workload of workloads(objects)) {
        const name = `${workload.kind}/${workload.metadata.name}`;
        const spec = podTemplate(workload).spec;
        expect(spec.hostNetwork || spec.hostPID || spec.hostIPC, name).toBeFalsy();
        expect(
          spec.volumes?.some((volume) => volume.hostPath),
          name,
        ).toBeFalsy();
        expect(spec.automountServiceAccountToken, name).toBe(false);
        for (const container of [...spec.containers, ...(spec.initContainers ?? [])]) {
          const context = { ...spec.securityContext, ...container.securityContext };
          expect(context.runAsNonRoot, name).toBe(true);
          expect(context.runAsUser, name).not.toBe(0);
          expect(context.allowPrivilegeEscalation, name).toBe(false);
          expect(context.privileged, name).toBeFalsy();
          expect(context.capabilities?.drop, name).toContain('ALL');
          expect(context.capabilities?.add ?? [], name).toEqual([]);
          expect(['RuntimeDefault', 'Localhost'], name).toContain(context.seccompProfile?.type);
          expect(context.readOnlyRootFilesystem, name).toBe(true);
          expect(
            container.resources?.requests?.cpu && container.resources.requests.memory,
            name,
          ).toBeTruthy();
          expect(container.resources?.limits?.cpu && container.resources.limits.memory, name).toBeTruthy();
        }
      }
      for (const workload of appWorkloads(objects)) {
        const spec = podTemplate(workload).spec;
        const tmp = spec.volumes?.find((volume) => volume.emptyDir !== undefined);
        for (const container of spec.containers) {
          expect(container.volumeMounts, workload.metadata.name).toContainEqual({
            name: tmp?.name,
            mountPath: '/tmp',
          });
        }
      }
    }
  });

  it('app containers: LEVEL=1, only settings from .env.example, secrets by reference, the image entrypoint kept', () => {
    const names = envExampleNames();
    for (const objects of [rendered.dev, rendered.prod]) {
      const settings = config(objects);
      expect(settings.LEVEL).toBe('1');
      expect(settings.NODE_ENV).toBe('production');
      expect(Object.keys(settings).filter((key) => !names.has(key))).toEqual([]);
      for (const workload of appWorkloads(objects)) {
        for (const container of podTemplate(workload).spec.containers) {
          expect(container.command, `${workload.metadata.name} keeps tini as PID 1`).toBeUndefined();
          for (const variable of container.env ?? []) {
            expect(names.has(variable.name), variable.name).toBe(true);
            expect(variable.value, `${variable.name} comes from the Secret`).toBeUndefined();
          }
          expect(container.envFrom?.map((source) => source.configMapRef?.name)).toEqual([
            objects.find((object) => object.kind === 'ConfigMap')?.metadata.name,
          ]);
        }
      }
    }
  });

  it('tracing: valid OTLP settings, off until an endpoint is set, on for every app pod when it is', () => {
    for (const objects of [rendered.dev, rendered.prod]) {
      const settings = config(objects);
      expect(Object.keys(settings).filter((key) => key.startsWith('OTEL_'))).toContain(
        'OTEL_EXPORTER_OTLP_ENDPOINT',
      );
      // The URLs come from the Secret; production refuses to start without them.
      const secrets = {
        DATABASE_URL: 'postgres://app:app@postgres:5432/app',
        REDIS_URL: 'redis://redis:6379',
      };
      const parsed = loadSettings({ ...settings, ...secrets }, { envFile: null });
      expect(tracingEnabled(parsed)).toBe(false);
      const endpoint = 'http://otel-collector.observability:4318';
      const on = loadSettings(
        { ...settings, ...secrets, OTEL_EXPORTER_OTLP_ENDPOINT: endpoint },
        { envFile: null },
      );
      expect(tracingEnabled(on)).toBe(true);
      expect(tracesUrl(on)).toBe('http://otel-collector.observability:4318/v1/traces');
      expect(on.OTEL_TRACES_SAMPLER).toBe('parentbased_traceidratio');
      // API and task-worker pods read the same ConfigMap, so both export once the endpoint is set.
      for (const workload of appWorkloads(objects)) {
        expect(podTemplate(workload).spec.containers[0]?.envFrom?.[0]?.configMapRef?.name).toMatch(
          /^app-config/,
        );
      }
    }
  });

  it('API: HPA (autoscaling/v2, CPU), PDB maxUnavailable 1, spread ScheduleAnyway, Service and Ingress wired', () => {
    for (const objects of [rendered.dev, rendered.prod]) {
      const deployment = find(objects, 'Deployment', 'api');
      const labels = podTemplate(deployment).metadata.labels;
      expect(deployment.spec?.replicas, 'the HPA owns the replica count').toBeUndefined();
      expect(deployment.spec?.strategy).toMatchObject({ rollingUpdate: { maxUnavailable: 0 } });
      const hpa = find(objects, 'HorizontalPodAutoscaler', 'api');
      expect(hpa.apiVersion).toBe('autoscaling/v2');
      expect(hpa.spec?.scaleTargetRef).toEqual({ apiVersion: 'apps/v1', kind: 'Deployment', name: 'api' });
      expect(hpa.spec?.metrics).toEqual([
        expect.objectContaining({ type: 'Resource', resource: expect.objectContaining({ name: 'cpu' }) }),
      ]);
      const pdb = find(objects, 'PodDisruptionBudget', 'api');
      expect(pdb.spec?.maxUnavailable).toBe(1);
      expect(selects(pdb.spec?.selector as never, labels)).toBe(true);
      const spread = podTemplate(deployment).spec.topologySpreadConstraints ?? [];
      expect(spread.length).toBeGreaterThan(0);
      for (const constraint of spread) {
        expect(constraint.whenUnsatisfiable).toBe('ScheduleAnyway');
        expect(selects(constraint.labelSelector, labels)).toBe(true);
      }
      const service = find(objects, 'Service', 'api');
      expect(selects({ matchLabels: service.spec?.selector as Labels }, labels)).toBe(true);
      expect(((service.spec?.ports ?? []) as Array<{ targetPort: string }>)[0]?.targetPort).toBe('http');
      const ingress = find(objects, 'Ingress', 'api');
      const backend = (
        ingress.spec as {
          rules: Array<{
            http: { paths: Array<{ backend: { service: { name: string; port: { name: string } } } }> };
          }>;
        }
      ).rules[0]?.http.paths[0]?.backend.service;
      expect(backend).toEqual({ name: 'api', port: { name: 'http' } });
    }
  });

  it('KEDA: redis list triggers on <prefix>:<queue>:wait for every queue in src/tasks/queues.ts', () => {
    for (const objects of [rendered.dev, rendered.prod]) {
      expect(config(objects).QUEUE_PREFIX).toBe(DEFAULT_QUEUE_PREFIX);
      const scaled = find(objects, 'ScaledObject', 'task-worker');
      const spec = scaled.spec as {
        minReplicaCount: number;
        maxReplicaCount: number;
        scaleTargetRef: { name: string };
        triggers: Array<{
          type: string;
          metadata: Record<string, string>;
          authenticationRef: { name: string };
        }>;
      };
      expect(spec.triggers.map((trigger) => trigger.metadata.listName).sort()).toEqual(
        QUEUE_NAMES.map((queue) => `${DEFAULT_QUEUE_PREFIX}:${queue}:wait`).sort(),
      );
      expect(QUEUE_NAMES.map((queue) => `${DEFAULT_QUEUE_PREFIX}:${queue}:wait`).sort()).toEqual([
        'bull:cpu:wait',
        'bull:default:wait',
      ]);
      for (const trigger of spec.triggers) {
        expect(trigger.type).toBe('redis');
        expect(Number(trigger.metadata.listLength)).toBeGreaterThan(0);
        find(objects, 'TriggerAuthentication', trigger.authenticationRef.name);
      }
      expect(spec.minReplicaCount).toBeGreaterThanOrEqual(1);
      expect(spec.maxReplicaCount).toBeGreaterThan(spec.minReplicaCount);
      find(objects, 'Deployment', spec.scaleTargetRef.name);
      expect(find(objects, 'Deployment', 'task-worker').spec?.replicas).toBeUndefined();
    }
  });

  it('every Secret and ConfigMap key referenced exists (dev renders its Secret; prod uses secret.example.yaml)', () => {
    const example = extras.find((object) => object.kind === 'Secret') as K8sObject;
    for (const [objects, secrets] of [
      [rendered.dev, rendered.dev.filter((object) => object.kind === 'Secret')],
      [rendered.prod, [example]],
    ] as const) {
      const keys = (name: string) => {
        const secret = secrets.find((candidate) => candidate.metadata.name === name);
        return Object.keys({ ...(secret?.data as object), ...(secret?.stringData as object) });
      };
      for (const workload of workloads(objects)) {
        for (const container of podTemplate(workload).spec.containers) {
          for (const variable of container.env ?? []) {
            const ref = variable.valueFrom?.secretKeyRef;
            if (ref)
              expect(keys(ref.name), `${workload.metadata.name} ${ref.name}.${ref.key}`).toContain(ref.key);
          }
          for (const source of container.envFrom ?? []) {
            if (source.configMapRef) find(objects, 'ConfigMap', source.configMapRef.name);
          }
        }
      }
      const auth = find(objects, 'TriggerAuthentication', 'redis-auth').spec as {
        secretTargetRef: Array<{ parameter: string; name: string; key: string }>;
      };
      expect(auth.secretTargetRef.map((ref) => ref.parameter).sort()).toEqual(['address', 'password']);
      for (const ref of auth.secretTargetRef) expect(keys(ref.name)).toContain(ref.key);
    }
  });

  it('migrations run once as a Job (node dist/migrate.js), never restarted in place', () => {
    const job = find(rendered.prod, 'Job', 'migrate');
    const spec = podTemplate(job).spec;
    expect(spec.restartPolicy).toBe('Never');
    expect(spec.containers[0]?.args).toEqual(['node', 'dist/migrate.js']);
    expect(job.spec?.backoffLimit).toBeGreaterThan(0);
    expect(job.spec?.activeDeadlineSeconds).toBeGreaterThan(0);
  });

  it('network policies: only API and worker pods (and the migrations Job, PostgreSQL only) reach the stores', () => {
    const pods = workloads(rendered.dev).map((workload) => ({
      name: workload.metadata.name,
      labels: podTemplate(workload).metadata.labels,
    }));
    const policies = rendered.dev.filter((object) => object.kind === 'NetworkPolicy');
    const allowed = (target: string, port: number) => {
      const targetLabels = pods.find((pod) => pod.name === target)?.labels as Labels;
      const selecting = policies.filter((policy) => selects(policy.spec?.podSelector as never, targetLabels));
      expect(selecting.length, `a policy selects ${target}`).toBeGreaterThan(0);
      return pods
        .filter((source) =>
          selecting.some((policy) =>
            (
              (policy.spec?.ingress ?? []) as Array<{
                from?: Array<{ podSelector?: never }>;
                ports?: Array<{ port: number }>;
              }>
            ).some(
              (rule) =>
                (rule.ports ?? []).some((candidate) => candidate.port === port) &&
                (rule.from ?? []).some((peer) => selects(peer.podSelector, source.labels)),
            ),
          ),
        )
        .map((source) => source.name)
        .sort();
    };
    expect(allowed('postgres', 5432)).toEqual(['api', 'migrate', 'pgbouncer', 'task-worker']);
    // The app goes through PgBouncer; the migrations Job does not (it needs a session).
    expect(allowed('pgbouncer', 6432)).toEqual(['api', 'task-worker']);
    expect(allowed('redis', 6379)).toEqual(['api', 'task-worker']);
  });

  it('dev runs PostgreSQL, PgBouncer and Redis in the cluster; the URLs in its Secret point at their Services', () => {
    const secret = find(rendered.dev, 'Secret', 'app-secrets').data as Record<string, string>;
    const decode = (key: string) => Buffer.from(secret[key] ?? '', 'base64').toString('utf8');
    const servicePort = (name: string) =>
      ((find(rendered.dev, 'Service', name).spec?.ports ?? []) as Array<{ port: number }>)[0]?.port;
    const app = new URL(decode('DATABASE_URL'));
    expect([app.hostname, Number(app.port)]).toEqual(['pgbouncer', servicePort('pgbouncer')]);
    const direct = new URL(decode('MIGRATIONS_DATABASE_URL'));
    expect([direct.hostname, Number(direct.port)]).toEqual(['postgres', servicePort('postgres')]);
    expect(direct.pathname).toBe(app.pathname);
    // PgBouncer's auth_file line for the same user and password, and its transaction-mode config.
    expect(decode('PGBOUNCER_USERLIST')).toBe(`"${app.username}" "${app.password}"`);
    const ini = Object.values(
      (rendered.dev.find((object) => object.metadata.name.startsWith('pgbouncer-config'))?.data ??
        {}) as Record<string, string>,
    ).join('\n');
    expect(ini).toMatch(/^pool_mode = transaction$/m);
    expect(ini).toMatch(/^listen_port = 6432$/m);
    expect(ini).toMatch(/^\* = host=postgres port=5432$/m);
    expect(new URL(decode('REDIS_URL')).hostname).toBe(find(rendered.dev, 'Service', 'redis').metadata.name);
    expect(decode('REDIS_ADDRESS')).toBe('redis:6379');
    const redis = podTemplate(find(rendered.dev, 'StatefulSet', 'redis')).spec.containers[0]?.args?.join(' ');
    expect(redis).toContain('--appendonly yes');
    expect(redis).toContain('--maxmemory-policy noeviction');
  });

  it('prod: no in-cluster stores, more replicas, stricter resources, a pinned image, TLS', () => {
    expect(rendered.prod.filter((object) => object.kind === 'StatefulSet')).toEqual([]);
    const min = (objects: K8sObject[]) =>
      find(objects, 'HorizontalPodAutoscaler', 'api').spec?.minReplicas as number;
    expect(min(rendered.prod)).toBeGreaterThan(min(rendered.dev));
    expect(min(rendered.prod)).toBeGreaterThanOrEqual(3);
    const workerMin = (objects: K8sObject[]) =>
      find(objects, 'ScaledObject', 'task-worker').spec?.minReplicaCount as number;
    expect(workerMin(rendered.prod)).toBeGreaterThan(workerMin(rendered.dev));
    for (const workload of appWorkloads(rendered.prod)) {
      const container = podTemplate(workload).spec.containers[0] as Container;
      expect(container.image).toMatch(/^registry\.[^:]+:\d+\.\d+\.\d+$/);
      if (workload.kind === 'Deployment')
        expect(container.resources?.requests?.memory).toBe(container.resources?.limits?.memory);
    }
    expect((find(rendered.prod, 'Ingress', 'api').spec as { tls?: unknown[] }).tls).toHaveLength(1);
  });

  it('the plain-HPA alternative for workers targets the same Deployment and keeps at least one worker', () => {
    const hpa = extras.find((object) => object.kind === 'HorizontalPodAutoscaler') as K8sObject;
    expect(hpa.apiVersion).toBe('autoscaling/v2');
    expect(hpa.spec?.scaleTargetRef).toEqual({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      name: 'task-worker',
    });
    expect(hpa.spec?.minReplicas).toBeGreaterThanOrEqual(1);
  });
});
