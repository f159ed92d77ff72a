import client from 'prom-client';
import type { Heartbeat } from './protocol.js';

/** What one supervisor reports; `pool` tells the HTTP workers from the task workers (LEVEL=4). */
export interface PoolMetrics {
  setReady(count: number): void;
  setDesired(count: number): void;
  restart(reason: string): void;
  reload(result: 'succeeded' | 'failed'): void;
  observeWorker(slot: number, report: Heartbeat): void;
}

const RESTART_REASONS = ['crash', 'hang', 'boot_timeout', 'max_requests', 'memory', 'reload', 'scale'];

/** The primary's own series, in a registry of its own, merged into every /metrics answer. */
export function createSupervisorMetrics() {
  const registry = new client.Registry();
  const pool = ['pool'] as const;
  const perWorker = ['pool', 'worker'] as const;
  const ready = new client.Gauge({
    name: 'cluster_workers_ready',
    help: 'Workers ready',
    labelNames: pool,
    registers: [registry],
  });
  const desired = new client.Gauge({
    name: 'cluster_workers_desired',
    help: 'Workers the supervisor keeps',
    labelNames: pool,
    registers: [registry],
  });
  const restarts = new client.Counter({
    name: 'cluster_worker_restarts_total',
    help: `Worker replacements by reason (${RESTART_REASONS.join(', ')})`,
    labelNames: ['pool', 'reason'] as const,
    registers: [registry],
  });
  const reloads = new client.Counter({
    name: 'cluster_reloads_total',
    help: 'Rolling reloads by result',
    labelNames: ['pool', 'result'] as const,
    registers: [registry],
  });
  const rss = new client.Gauge({
    name: 'cluster_worker_resident_memory_bytes',
    help: 'RSS per worker, from heartbeats',
    labelNames: perWorker,
    registers: [registry],
  });
  const elu = new client.Gauge({
    name: 'cluster_worker_event_loop_utilization',
    help: 'Event-loop utilisation per worker (0-1)',
    labelNames: perWorker,
    registers: [registry],
  });
  const served = new client.Gauge({
    name: 'cluster_worker_requests_served',
    help: 'Requests (HTTP) or jobs (tasks) handled by the current process of each worker slot',
    labelNames: perWorker,
    registers: [registry],
  });

  return {
    registry,
    forPool(name: 'http' | 'tasks'): PoolMetrics {
      for (const reason of RESTART_REASONS) restarts.inc({ pool: name, reason }, 0);
      for (const result of ['succeeded', 'failed']) reloads.inc({ pool: name, result }, 0);
      return {
        setReady: (count) => ready.set({ pool: name }, count),
        setDesired: (count) => desired.set({ pool: name }, count),
        restart: (reason) => restarts.inc({ pool: name, reason }),
        reload: (result) => reloads.inc({ pool: name, result }),
        observeWorker(slot, report) {
          const labels = { pool: name, worker: String(slot) };
          rss.set(labels, report.rssBytes);
          if (report.eventLoopUtilization !== undefined) elu.set(labels, report.eventLoopUtilization);
          served.set(labels, report.requestsServed);
        },
      };
    },
  };
}
