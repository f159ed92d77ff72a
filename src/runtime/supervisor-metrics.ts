import client from 'prom-client';
import type { Heartbeat } from './protocol.js';

/** The supervisor's own series, in a registry of the primary, merged into every /metrics answer. */
export function createSupervisorMetrics() {
  const registry = new client.Registry();
  const workerLabel = ['worker'] as const;
  const metrics = {
    registry,
    workersReady: new client.Gauge({
      name: 'cluster_workers_ready',
      help: 'Workers ready to serve',
      registers: [registry],
    }),
    workersDesired: new client.Gauge({
      name: 'cluster_workers_desired',
      help: 'Workers the supervisor keeps',
      registers: [registry],
    }),
    restarts: new client.Counter({
      name: 'cluster_worker_restarts_total',
      help: 'Worker replacements by reason (crash, hang, boot_timeout, max_requests, memory, reload, scale)',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    reloads: new client.Counter({
      name: 'cluster_reloads_total',
      help: 'Rolling reloads by result',
      labelNames: ['result'] as const,
      registers: [registry],
    }),
    workerRss: new client.Gauge({
      name: 'cluster_worker_resident_memory_bytes',
      help: 'RSS per worker, from heartbeats',
      labelNames: workerLabel,
      registers: [registry],
    }),
    workerElu: new client.Gauge({
      name: 'cluster_worker_event_loop_utilization',
      help: 'Event-loop utilisation per worker (0-1)',
      labelNames: workerLabel,
      registers: [registry],
    }),
    workerRequests: new client.Gauge({
      name: 'cluster_worker_requests_served',
      help: 'Requests served by the current process of each worker slot',
      labelNames: workerLabel,
      registers: [registry],
    }),
    observeWorker(slot: number, report: Heartbeat): void {
      const labels = { worker: String(slot) };
      metrics.workerRss.set(labels, report.rssBytes);
      metrics.workerElu.set(labels, report.eventLoopUtilization);
      metrics.workerRequests.set(labels, report.requestsServed);
    },
  };
  for (const reason of ['crash', 'hang', 'boot_timeout', 'max_requests', 'memory', 'reload', 'scale'])
    metrics.restarts.inc({ reason }, 0);
  for (const result of ['succeeded', 'failed']) metrics.reloads.inc({ result }, 0);
  return metrics;
}

export type SupervisorMetrics = ReturnType<typeof createSupervisorMetrics>;
