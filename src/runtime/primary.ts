/**
 * LEVEL 2-4 primary: prepares the shared database once, runs the HTTP workers (and at LEVEL=4 the
 * task workers) through supervisors, and turns signals into their operations (one handler per
 * signal, as in Gunicorn). It never loads the app's code.
 */
import cluster from 'node:cluster';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { Logger } from 'pino';
import { AggregatorRegistry } from 'prom-client';
import { prepareDatabase } from '../db/prepare.js';
import { listensWithReusePort, type Settings } from '../settings.js';
import { EXIT_PORT_IN_USE, portInUseMessage } from './port-in-use.js';
import { isWorkerMessage, type PrimaryMessage } from './protocol.js';
import { EXIT_CONFIG } from './startup.js';
import { type Fork, Supervisor, type SupervisorOptions } from './supervisor.js';
import { createSupervisorMetrics } from './supervisor-metrics.js';

const MAX_BOOT_ATTEMPTS = 5;
const STABLE_UPTIME_MS = 30_000;

export function statusFilePath(pidFile: string): string {
  return `${pidFile}.status.json`;
}

/** True when this primary also runs task workers (LEVEL=4 with background tasks on). */
export function runsTaskWorkers(settings: Settings): boolean {
  return settings.LEVEL >= 4 && settings.ENABLE_BACKGROUND_TASKS && settings.TASK_WORKERS > 0;
}

function supervisorOptions(settings: Settings): SupervisorOptions {
  return {
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
    reusePort: listensWithReusePort(settings),
    fatalExits: {
      [EXIT_PORT_IN_USE]: portInUseMessage(settings.PORT, 'PORT'),
      [EXIT_CONFIG]: 'a worker refused its configuration (its own line above says why)',
    },
  };
}

/** Task workers: same supervision, their own count and drain time, never recycled by job count. */
function taskSupervisorOptions(settings: Settings): SupervisorOptions {
  return {
    ...supervisorOptions(settings),
    workers: settings.TASK_WORKERS,
    gracefulTimeoutMs: (settings.TASK_SHUTDOWN_TIMEOUT + 5) * 1000,
    maxRequests: 0,
    maxRequestsJitter: 0,
    reusePort: false, // task workers do not listen
  };
}

/** Fork a cluster worker running `entry` (dist/main.js for HTTP, dist/worker.js for tasks). */
function forkerOf(entry: string, databaseUrl: string): Fork {
  return (env) => {
    cluster.setupPrimary({ exec: entry });
    return cluster.fork({ ...env, DATABASE_URL: databaseUrl });
  };
}

export async function runPrimary(settings: Settings, logger: Logger): Promise<void> {
  const log = logger.child({ role: 'primary' });
  const database = await prepareDatabase(settings, log);
  const pidFile = settings.PID_FILE;
  if (pidFile) {
    mkdirSync(dirname(pidFile), { recursive: true });
    writeFileSync(pidFile, `${process.pid}\n`);
  }

  // Without LISTEN_REUSE_PORT: round-robin in the primary, an even spread, and a closing worker's
  // queued connections go to another worker. With it, workers bind their own listeners (agent.ts).
  cluster.schedulingPolicy = cluster.SCHED_RR;
  const metrics = createSupervisorMetrics();
  const aggregator = new AggregatorRegistry();
  const mainEntry = resolve(process.argv[1] as string);
  const taskEntry = resolve(dirname(mainEntry), `worker${mainEntry.endsWith('.ts') ? '.ts' : '.js'}`);

  let statusTimer: NodeJS.Timeout | undefined;
  let running = 0;
  let exitCode = 0;
  // The process exits when every supervisor has finished; the first failure decides the code.
  const onSupervisorExit = (code: number) => {
    exitCode ||= code;
    running -= 1;
    if (code !== 0) for (const supervisor of supervisors) supervisor.forceStop();
    if (running > 0) return;
    clearInterval(statusTimer);
    void database.stop().finally(() => {
      if (pidFile) {
        rmSync(pidFile, { force: true });
        rmSync(statusFilePath(pidFile), { force: true });
      }
      log.info({ code: exitCode }, 'primary exiting');
      process.exit(exitCode);
    });
  };
  const supervisors: Supervisor[] = [
    new Supervisor(
      supervisorOptions(settings),
      forkerOf(mainEntry, database.url),
      log.child({ pool: 'http' }),
      metrics.forPool('http'),
      onSupervisorExit,
    ),
  ];
  const tasks = runsTaskWorkers(settings)
    ? new Supervisor(
        taskSupervisorOptions(settings),
        forkerOf(taskEntry, database.url),
        log.child({ pool: 'tasks' }),
        metrics.forPool('tasks'),
        onSupervisorExit,
      )
    : undefined;
  if (tasks) supervisors.push(tasks);
  const http = supervisors[0] as Supervisor;

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
      for (const supervisor of supervisors) supervisor.forceStop();
      return;
    }
    stopping = true;
    for (const supervisor of supervisors) supervisor.shutdown(signal);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.on('SIGHUP', () => {
    for (const supervisor of supervisors) supervisor.reload();
  });
  process.on('SIGTTIN', () => http.scaleUp());
  process.on('SIGTTOU', () => http.scaleDown());

  running = supervisors.length;
  for (const supervisor of supervisors) supervisor.start();
  if (pidFile) {
    statusTimer = setInterval(() => {
      const status = {
        pid: process.pid,
        level: settings.LEVEL,
        writtenAt: Date.now(),
        ...http.snapshot(),
        tasks: tasks?.snapshot(),
      };
      writeFileSync(statusFilePath(pidFile), JSON.stringify(status));
    }, 1000);
  }
}
