/**
 * The one message protocol between the supervisor (primary) and each app process (agent).
 * Everything the runtime knows about a worker arrives through these messages.
 */

export interface Heartbeat {
  type: 'heartbeat';
  requestsServed: number;
  rssBytes: number;
  heapUsedBytes: number;
  /** Event-loop utilisation (0-1) since the previous heartbeat. */
  eventLoopUtilization: number;
}

/** Worker → primary. */
export type WorkerMessage = { type: 'ready' } | Heartbeat | { type: 'metrics-request'; requestId: number };

/** Primary → worker. */
export type PrimaryMessage =
  /** Stop taking new work, finish in-flight requests within the deadline, exit 0. */
  | { type: 'drain'; reason: string; deadlineMs: number }
  | { type: 'metrics-response'; requestId: number; text?: string; error?: string };

const WORKER_TYPES = new Set(['ready', 'heartbeat', 'metrics-request']);

export function isWorkerMessage(message: unknown): message is WorkerMessage {
  return (
    typeof message === 'object' &&
    message !== null &&
    WORKER_TYPES.has((message as { type?: string }).type ?? '')
  );
}

export function isPrimaryMessage(message: unknown): message is PrimaryMessage {
  const type = (message as { type?: string } | null)?.type;
  return type === 'drain' || type === 'metrics-response';
}

/** Environment the primary gives each worker it forks (internal, not user configuration). */
export const WORKER_ID_ENV = 'APP_WORKER_ID';
export const WORKER_GENERATION_ENV = 'APP_WORKER_GENERATION';
