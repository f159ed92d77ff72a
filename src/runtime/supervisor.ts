/**
 * The supervisor: a small state machine over cluster workers, readable top to bottom, one handler
 * per event, in the spirit of Gunicorn's arbiter. Decisions come from policy.ts; this file applies them.
 */
import type { Worker } from 'node:cluster';
import type { Logger } from 'pino';
import { ListenerRelay } from './listener-relay.js';
import {
  isHung,
  isStableUptime,
  memoryLimitBytes,
  nextFreeSlot,
  pickScaleDownVictim,
  type RestartReason,
  recycleReason,
  requestLimitFor,
  restartDelayMs,
  shouldGiveUp,
  unrecoverableExit,
} from './policy.js';
import {
  type Heartbeat,
  INHERIT_LISTENERS_ENV,
  isWorkerMessage,
  type PrimaryMessage,
  type WorkerMessage,
} from './protocol.js';
import type { PoolMetrics } from './supervisor-metrics.js';

export interface SupervisorOptions {
  workers: number;
  /** LEVEL 3: hang detection, recycling, rolling reload and runtime scaling. LEVEL 2: restart on death only. */
  supervised: boolean;
  workerTimeoutMs: number;
  bootTimeoutMs: number;
  gracefulTimeoutMs: number;
  maxRequests: number;
  maxRequestsJitter: number;
  maxWorkerMemoryMb: number;
  /** Boot failures in a row, with no worker ready, before the supervisor gives up. */
  maxBootAttempts: number;
  /** Uptime after which a slot's crash count resets. */
  stableUptimeMs: number;
  /** Workers own SO_REUSEPORT listeners: replacements and survivors take them over (listeners.ts). */
  reusePort?: boolean;
  /**
   * Exit statuses that no restart can cure (the port is taken, the configuration is refused), with
   * the line to log: a worker that exits with one before it was ever ready makes the supervisor give up.
   */
  fatalExits?: Readonly<Record<number, string>>;
}

export type WorkerState = 'booting' | 'ready' | 'draining';

export interface WorkerRecord {
  slot: number;
  generation: number;
  worker: Worker;
  pid: number;
  state: WorkerState;
  startedAt: number;
  readyAt?: number;
  lastHeartbeatAt: number;
  report?: Heartbeat;
  requestLimit: number;
  drainStartedAt?: number;
  /** Why the supervisor is retiring or killed this worker; unset means an exit is a crash. */
  retiring?: RestartReason | 'shutdown';
  /** The worker this one replaces, whose listeners it takes over (SO_REUSEPORT mode). */
  replaces?: WorkerRecord;
}

export type Fork = (env: Record<string, string>) => Worker;

const TICK_MS = 250;
const KILL_GRACE_MS = 1000;

export class Supervisor {
  readonly workers = new Map<number, WorkerRecord>(); // by cluster worker id
  private desired: number;
  private readonly generations = new Map<number, number>();
  private readonly crashCounts = new Map<number, number>();
  private consecutiveBootFailures = 0;
  private readonly retireQueue: Array<{ record: WorkerRecord; reason: RestartReason }> = [];
  private rolling = false;
  private shuttingDown = false;
  private exitCode = 0;
  private exited = false;
  private everReady = false;
  private ticker: NodeJS.Timeout | undefined;
  private readonly readyWaiters = new Map<WorkerRecord, (ready: boolean) => void>();
  private readonly listeners = new ListenerRelay();

  constructor(
    private readonly options: SupervisorOptions,
    private readonly fork: Fork,
    private readonly log: Logger,
    private readonly metrics: PoolMetrics,
    /** Called once when the supervisor gives up on a crash loop, or after shutdown. */
    private readonly exitProcess: (code: number) => void,
  ) {
    this.desired = options.workers;
  }

  start(): void {
    this.log.info({ workers: this.desired, supervised: this.options.supervised }, 'supervisor starting');
    for (let slot = 1; slot <= this.desired; slot += 1) this.spawn(slot);
    this.ticker = setInterval(() => this.tick(), TICK_MS);
  }

  // ---- events -------------------------------------------------------------------------------

  private onMessage(record: WorkerRecord, message: WorkerMessage, handle: unknown): void {
    if (message.type === 'ready') this.onReady(record);
    else if (message.type === 'heartbeat') this.onHeartbeat(record, message);
    else if (message.type === 'listeners-request') this.onListenersRequest(record);
    else this.listeners.onMessage(record.worker, message, handle);
  }

  /** A replacement is about to listen: give it copies of the sockets of the worker it replaces. */
  private onListenersRequest(record: WorkerRecord): void {
    const from = record.replaces && this.workers.has(record.replaces.worker.id) ? record.replaces : undefined;
    void this.listeners.collect(from?.worker).then((handles) => {
      this.listeners.forward(record.worker, handles);
      record.replaces = undefined;
    });
  }

  private onReady(record: WorkerRecord): void {
    if (record.state === 'draining') {
      // Told to drain while it was booting (shutdown, scale-down): its agent listens now, so say it again.
      this.sendDrain(record);
      return;
    }
    record.state = 'ready';
    record.readyAt = Date.now();
    record.lastHeartbeatAt = record.readyAt;
    this.consecutiveBootFailures = 0;
    this.log.info(
      {
        worker: record.slot,
        workerPid: record.pid,
        generation: record.generation,
        bootMs: record.readyAt - record.startedAt,
      },
      'worker ready',
    );
    this.readyWaiters.get(record)?.(true);
    this.updateGauges();
    if (!this.everReady && this.ready().length >= this.desired) {
      this.everReady = true;
      this.log.info({ workers: this.desired }, 'all workers ready');
    }
  }

  private onHeartbeat(record: WorkerRecord, report: Heartbeat): void {
    record.lastHeartbeatAt = Date.now();
    record.report = report;
    this.metrics.observeWorker(record.slot, report);
    if (!this.options.supervised || record.state !== 'ready' || record.retiring) return;
    const reason = recycleReason(report, {
      requestLimit: record.requestLimit,
      maxRssBytes: memoryLimitBytes(this.options.maxWorkerMemoryMb),
    });
    if (reason) this.retire(record, reason);
  }

  private onWorkerExit(record: WorkerRecord, code: number | null, signal: string | null): void {
    this.workers.delete(record.worker.id);
    this.listeners.workerGone(record.worker);
    this.readyWaiters.get(record)?.(false);
    const uptimeMs = Date.now() - record.startedAt;
    const expected =
      record.retiring !== undefined && record.retiring !== 'hang' && record.retiring !== 'boot_timeout';
    this.log[expected ? 'info' : 'warn'](
      {
        worker: record.slot,
        workerPid: record.pid,
        code,
        signal,
        uptimeMs,
        reason: record.retiring ?? 'crash',
      },
      'worker exited',
    );
    this.updateGauges();
    if (this.shuttingDown) {
      this.finishShutdownIfDone();
      return;
    }
    if (expected) return;
    const fatal = unrecoverableExit(code, record.readyAt !== undefined, this.options.fatalExits);
    if (fatal) {
      this.log.fatal(
        { worker: record.slot, code },
        `${fatal}; giving up (restarting would fail the same way)`,
      );
      this.killAll(code ?? 1);
      return;
    }

    const reason =
      record.retiring === 'hang' || record.retiring === 'boot_timeout' ? record.retiring : 'crash';
    this.metrics.restart(reason);
    if (record.readyAt === undefined) this.consecutiveBootFailures += 1;
    if (
      shouldGiveUp(
        { readyWorkers: this.ready().length, consecutiveBootFailures: this.consecutiveBootFailures },
        this.options.maxBootAttempts,
      )
    ) {
      this.log.fatal(
        { attempts: this.consecutiveBootFailures },
        'workers cannot boot: giving up so the platform sees the failure (check the worker logs above)',
      );
      this.giveUp();
      return;
    }
    // Another worker already holds this slot (a replacement in progress): nothing to restart.
    if (record.slot > this.desired || this.holdersOf(record.slot).length > 0) return;
    const crashes = isStableUptime(uptimeMs, this.options.stableUptimeMs)
      ? 1
      : (this.crashCounts.get(record.slot) ?? 0) + 1;
    this.crashCounts.set(record.slot, crashes);
    const delayMs = restartDelayMs(crashes);
    this.log.info({ worker: record.slot, reason, delayMs, consecutiveCrashes: crashes }, 'restarting worker');
    setTimeout(() => {
      if (!this.shuttingDown && record.slot <= this.desired && this.holdersOf(record.slot).length === 0)
        this.spawn(record.slot);
    }, delayMs);
  }

  /** Every TICK_MS: hung workers, boots that take too long, drains that overrun. */
  private tick(): void {
    const now = Date.now();
    for (const record of this.workers.values()) {
      if (record.state === 'booting' && now - record.startedAt > this.options.bootTimeoutMs) {
        this.kill(record, 'boot_timeout', `not ready within ${this.options.bootTimeoutMs} ms`);
      } else if (
        this.options.supervised &&
        record.state === 'ready' &&
        record.retiring !== 'hang' &&
        isHung(record.lastHeartbeatAt, now, this.options.workerTimeoutMs)
      ) {
        this.kill(record, 'hang', `no heartbeat for ${now - record.lastHeartbeatAt} ms`);
      } else if (
        record.state === 'draining' &&
        now - (record.drainStartedAt ?? now) > this.options.gracefulTimeoutMs + KILL_GRACE_MS
      ) {
        this.log.warn(
          { worker: record.slot, workerPid: record.pid },
          'drain overran the graceful timeout: killing worker',
        );
        record.worker.process.kill('SIGKILL');
      }
    }
  }

  // ---- operations ---------------------------------------------------------------------------

  /** SIGHUP: replace every worker, one at a time, each only after its replacement is ready. */
  reload(): void {
    if (!this.requireSupervised('reload')) return;
    const current = this.ready().filter((record) => !record.retiring);
    this.log.info({ workers: current.length }, 'reload begun');
    for (const record of current) this.retire(record, 'reload');
  }

  /** SIGTTIN: one more worker. */
  scaleUp(): void {
    if (!this.requireSupervised('scale')) return;
    this.desired += 1;
    const slot = nextFreeSlot(
      [...this.workers.values()].filter((r) => r.state !== 'draining').map((r) => r.slot),
    );
    this.log.info({ workers: this.desired }, 'scaling up');
    this.spawn(slot);
  }

  /** SIGTTOU: one worker fewer (never below one), drained gracefully. */
  scaleDown(): void {
    if (!this.requireSupervised('scale')) return;
    if (this.desired <= 1) return void this.log.warn('already at one worker: not scaling down');
    this.desired -= 1;
    const victim = pickScaleDownVictim(this.live().filter((record) => record.retiring !== 'scale'));
    this.log.info({ workers: this.desired, worker: victim?.slot }, 'scaling down');
    if (!victim) return;
    // SO_REUSEPORT: a survivor takes the victim's sockets first, so closing them resets nothing.
    const heir = this.ready().find((record) => record !== victim && !record.retiring);
    if (!this.options.reusePort || !heir) {
      this.drain(victim, 'scale');
      return;
    }
    victim.retiring = 'scale';
    void this.listeners.handOver(victim.worker, heir.worker).then(() => this.drain(victim, 'scale'));
  }

  /** SIGTERM/SIGINT: drain every worker within the graceful timeout, then exit 0. */
  shutdown(signal: string): void {
    if (this.shuttingDown) return;
    this.shuttingDown = true;
    this.retireQueue.length = 0;
    this.log.info({ signal, workers: this.workers.size }, 'shutting down');
    for (const record of this.workers.values()) this.drain(record, 'shutdown');
    this.finishShutdownIfDone();
  }

  /** A second signal: stop waiting. */
  forceStop(): void {
    this.killAll(1);
  }

  snapshot() {
    return {
      desired: this.desired,
      workers: [...this.workers.values()].map((record) => ({
        worker: record.slot,
        pid: record.pid,
        generation: record.generation,
        // A booted process still waiting for a dependency (a task worker's Redis) is not ready.
        state: record.state === 'ready' && record.report?.waitingFor ? 'waiting' : record.state,
        waitingFor: record.report?.waitingFor,
        ageSeconds: Math.round((Date.now() - record.startedAt) / 1000),
        requestsServed: record.report?.requestsServed ?? 0,
        rssBytes: record.report?.rssBytes ?? 0,
        eventLoopUtilization: record.report?.eventLoopUtilization,
      })),
    };
  }

  // ---- mechanics ----------------------------------------------------------------------------

  private spawn(slot: number, replaces?: WorkerRecord): WorkerRecord {
    const generation = (this.generations.get(slot) ?? 0) + 1;
    this.generations.set(slot, generation);
    const inherits = this.options.reusePort === true && replaces !== undefined;
    const worker = this.fork({
      APP_WORKER_ID: String(slot),
      APP_WORKER_GENERATION: String(generation),
      ...(inherits ? { [INHERIT_LISTENERS_ENV]: '1' } : {}),
    });
    const now = Date.now();
    const record: WorkerRecord = {
      slot,
      generation,
      worker,
      pid: worker.process.pid ?? 0,
      state: 'booting',
      startedAt: now,
      lastHeartbeatAt: now,
      requestLimit: requestLimitFor(this.options.maxRequests, this.options.maxRequestsJitter),
      ...(inherits ? { replaces } : {}),
    };
    this.workers.set(worker.id, record);
    worker.on('message', (message: unknown, handle: unknown) => {
      if (isWorkerMessage(message)) this.onMessage(record, message, handle);
    });
    worker.on('exit', (code, signal) => this.onWorkerExit(record, code, signal));
    worker.on('error', (error) => this.log.warn({ worker: slot, err: error }, 'worker IPC error'));
    this.log.info({ worker: slot, workerPid: record.pid, generation }, 'worker started');
    return record;
  }

  /** Queue a replacement-first retirement; the queue runs one worker at a time. */
  private retire(record: WorkerRecord, reason: RestartReason): void {
    if (record.retiring || this.retireQueue.some((job) => job.record === record)) return;
    this.log.info(
      { worker: record.slot, workerPid: record.pid, reason, requestsServed: record.report?.requestsServed },
      'worker recycle scheduled',
    );
    this.retireQueue.push({ record, reason });
    void this.runRetireQueue();
  }

  private async runRetireQueue(): Promise<void> {
    if (this.rolling) return;
    this.rolling = true;
    try {
      for (let job = this.retireQueue.shift(); job && !this.shuttingDown; job = this.retireQueue.shift()) {
        const { record: old, reason } = job;
        if (!this.workers.has(old.worker.id) || old.state !== 'ready') continue;
        const replacement = this.spawn(old.slot, old);
        const ready = await this.waitReady(replacement);
        if (this.shuttingDown) break;
        if (!ready) {
          this.log.error(
            {
              worker: old.slot,
              reason,
              replacementPid: replacement.pid,
              bootTimeoutMs: this.options.bootTimeoutMs,
            },
            reason === 'reload'
              ? 'reload aborted: a new worker did not become ready; the old workers keep serving'
              : 'recycle aborted: the replacement did not become ready; the old worker keeps serving',
          );
          if (reason === 'reload') {
            this.metrics.reload('failed');
            this.dropQueued('reload');
          }
          continue;
        }
        this.metrics.restart(reason);
        this.drain(old, reason);
        if (reason === 'reload' && !this.retireQueue.some((queued) => queued.reason === 'reload')) {
          this.metrics.reload('succeeded');
          this.log.info('reload finished: every worker replaced');
        }
      }
    } finally {
      this.rolling = false;
    }
  }

  private waitReady(record: WorkerRecord): Promise<boolean> {
    if (record.state === 'ready') return Promise.resolve(true);
    return new Promise((resolve) => {
      this.readyWaiters.set(record, (ready) => {
        this.readyWaiters.delete(record);
        resolve(ready);
      });
    });
  }

  private drain(record: WorkerRecord, reason: RestartReason | 'shutdown'): void {
    if (record.state === 'draining') return;
    record.state = 'draining';
    record.drainStartedAt = Date.now();
    record.retiring = reason;
    this.log.info(
      { worker: record.slot, workerPid: record.pid, reason, requestsServed: record.report?.requestsServed },
      'worker draining',
    );
    this.sendDrain(record);
    this.updateGauges();
  }

  private sendDrain(record: WorkerRecord): void {
    const reason = record.retiring ?? 'shutdown';
    const message: PrimaryMessage = { type: 'drain', reason, deadlineMs: this.options.gracefulTimeoutMs };
    if (record.worker.isConnected()) record.worker.send(message);
    else record.worker.process.kill('SIGTERM');
  }

  /** Hung or never ready: SIGABRT first (a core dump and a signal line in the exit log), then SIGKILL. */
  private kill(record: WorkerRecord, reason: 'hang' | 'boot_timeout', why: string): void {
    record.retiring = reason;
    this.log.error(
      {
        worker: record.slot,
        workerPid: record.pid,
        reason,
        lastReport: record.report,
        lastHeartbeatAgoMs: Date.now() - record.lastHeartbeatAt,
      },
      `killing worker: ${why}`,
    );
    record.worker.process.kill('SIGABRT');
    setTimeout(() => {
      if (record.worker.process.exitCode === null && record.worker.process.signalCode === null) {
        record.worker.process.kill('SIGKILL');
      }
    }, KILL_GRACE_MS).unref();
  }

  private dropQueued(reason: RestartReason): void {
    for (let index = this.retireQueue.length - 1; index >= 0; index -= 1) {
      if (this.retireQueue[index]?.reason === reason) this.retireQueue.splice(index, 1);
    }
  }

  private giveUp(): void {
    this.killAll(1);
  }

  /** SIGKILL every worker and exit with `code` once they are all gone (none left holding the port). */
  private killAll(code: number): void {
    if (this.exited) return;
    this.shuttingDown = true;
    this.exitCode = code;
    this.retireQueue.length = 0;
    for (const record of this.workers.values()) record.worker.process.kill('SIGKILL');
    this.finishShutdownIfDone();
  }

  private finishShutdownIfDone(): void {
    if (this.workers.size > 0 || this.exited) return;
    this.exited = true;
    this.stopTicker();
    this.log.info('all workers stopped');
    this.exitProcess(this.exitCode);
  }

  private stopTicker(): void {
    clearInterval(this.ticker);
  }

  private requireSupervised(operation: string): boolean {
    if (this.options.supervised && !this.shuttingDown) return true;
    this.log.warn(
      { operation },
      this.shuttingDown ? 'shutting down: ignored' : `${operation} needs LEVEL=3 or 4: ignored`,
    );
    return false;
  }

  private ready(): WorkerRecord[] {
    return [...this.workers.values()].filter((record) => record.state === 'ready');
  }

  private live(): WorkerRecord[] {
    return [...this.workers.values()].filter((record) => record.state !== 'draining');
  }

  private holdersOf(slot: number): WorkerRecord[] {
    return this.live().filter((record) => record.slot === slot);
  }

  private updateGauges(): void {
    this.metrics.setReady(this.ready().length);
    this.metrics.setDesired(this.desired);
  }
}
