/**
 * LEVEL 2-4 primary: prepares the shared database once, forks the workers through the supervisor,
 * and turns signals into supervisor operations (one handler per signal, as in Gunicorn).
 */
import cluster from 'node:cluster';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import { AggregatorRegistry } from 'prom-client';
import { prepareDatabase } from '../db/prepare.js';
import type { Settings } from '../settings.js';
import { isWorkerMessage, type PrimaryMessage } from './protocol.js';
import { Supervisor } from './supervisor.js';
import { createSupervisorMetrics } from './supervisor-metrics.js';

const MAX_BOOT_ATTEMPTS = 5;
const STABLE_UPTIME_MS = 30_000;

export function statusFilePath(pidFile: string): string {
  return `${pidFile}.status.json`;
}

export async function runPrimary(settings: Settings, logger: Logger): Promise<void> {
  const log = logger.child({ role: 'primary' });
  const database = await prepareDatabase(settings, log);
  const pidFile = settings.PID_FILE;
  if (pidFile) {
    mkdirSync(dirname(pidFile), { recursive: true });
    writeFileSync(pidFile, `${process.pid}\n`);
  }

  // Round-robin in the primary: even spread, and a closing worker's queued connections are handed
  // to another worker instead of being lost (unlike SO_REUSEPORT listeners).
  cluster.schedulingPolicy = cluster.SCHED_RR;
  const metrics = createSupervisorMetrics();
  const aggregator = new AggregatorRegistry();

  let statusTimer: NodeJS.Timeout | undefined;
  const supervisor = new Supervisor(
    {
      workers: settings.WORKERS,
      supervised: settings.LEVEL >= 3,
      workerTimeoutMs: settings.WORKER_TIMEOUT * 1000,
      bootTimeoutMs: settings.WORKER_BOOT_TIMEOUT * 1000,
      gracefulTimeoutMs: settings.GRACEFUL_TIMEOUT * 1000,
      maxRequests: settings.MAX_REQUESTS,
      maxRequestsJitter: settings.MAX_REQUESTS_JITTER,
      maxWorkerMemoryMb: settings.MAX_WORKER_MEMORY_MB,
      maxBootAttempts: MAX_BOOT_ATTEMPTS,
      stableUptimeMs: STABLE_UPTIME_MS,
    },
    (env) => cluster.fork({ ...env, DATABASE_URL: database.url }),
    log,
    metrics,
    (code) => {
      clearInterval(statusTimer);
      void database.stop().finally(() => {
        if (pidFile) {
          rmSync(pidFile, { force: true });
          rmSync(statusFilePath(pidFile), { force: true });
        }
        log.info({ code }, 'primary exiting');
        process.exit(code);
      });
    },
  );

  // Any worker can answer /metrics: it asks here, and we aggregate every worker plus our own series.
  cluster.on('message', (worker, message: unknown) => {
    if (!isWorkerMessage(message) || message.type !== 'metrics-request') return;
    void Promise.all([aggregator.clusterMetrics(), metrics.registry.metrics()])
      .then(
        ([workers, own]): PrimaryMessage => ({
          type: 'metrics-response',
          requestId: message.requestId,
          text: `${workers}\n${own}`,
        }),
      )
      .catch(
        (error: Error): PrimaryMessage => ({
          type: 'metrics-response',
          requestId: message.requestId,
          error: error.message,
        }),
      )
      .then((response) => {
        if (worker.isConnected()) worker.send(response);
      });
  });

  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      log.warn({ signal }, 'second signal: killing workers now');
      return supervisor.forceStop();
    }
    stopping = true;
    supervisor.shutdown(signal);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.on('SIGHUP', () => supervisor.reload());
  process.on('SIGTTIN', () => supervisor.scaleUp());
  process.on('SIGTTOU', () => supervisor.scaleDown());

  supervisor.start();
  if (pidFile) {
    statusTimer = setInterval(() => {
      writeFileSync(
        statusFilePath(pidFile),
        JSON.stringify({ pid: process.pid, level: settings.LEVEL, ...supervisor.snapshot() }),
      );
    }, 1000);
  }
}
