/**
 * The one message protocol between the supervisor (primary) and each app process (agent).
 * Everything the runtime knows about a worker arrives through these messages.
 */

export interface Heartbeat {
  type: 'heartbeat';
  requestsServed: number;
  rssBytes: number;
  heapUsedBytes: number;
  /** Event-loop utilisation (0-1) since the previous heartbeat; absent in the first (nothing measured yet). */
  eventLoopUtilization?: number;
  /** A dependency the process waits for before it takes work (a task worker's Redis): not ready meanwhile. */
  waitingFor?: string;
}

/**
 * SO_REUSEPORT listeners move between workers (src/runtime/listeners.ts): a listening socket handed
 * on before its old owner closes its copy keeps its accept queue, where closing the last copy would
 * reset every connection still queued in it. `listener` messages carry the socket as their handle.
 */
export type ListenerMessage = { type: 'listener' } | { type: 'listeners-end' };

/** Worker → primary. */
export type WorkerMessage =
  | { type: 'ready' }
  | Heartbeat
  | { type: 'metrics-request'; requestId: number }
  /** A replacement, before it listens: the listeners of the worker it replaces, please. */
  | { type: 'listeners-request' }
  /** Forwarded listeners adopted: their previous owner may close its copies. */
  | { type: 'listeners-adopted' }
  | ListenerMessage;

/** Primary → worker. */
export type PrimaryMessage =
  /** Stop taking new work, finish in-flight requests within the deadline, exit 0. */
  | { type: 'drain'; reason: string; deadlineMs: number }
  | { type: 'metrics-response'; requestId: number; text?: string; error?: string }
  /** Send copies of every listener you hold (keep yours and keep serving), then `listeners-end`. */
  | { type: 'share-listeners' }
  | ListenerMessage;

const WORKER_TYPES = new Set([
  'ready',
  'heartbeat',
  'metrics-request',
  'listeners-request',
  'listeners-adopted',
  'listener',
  'listeners-end',
]);
const PRIMARY_TYPES = new Set(['drain', 'metrics-response', 'share-listeners', 'listener', 'listeners-end']);

export function isWorkerMessage(message: unknown): message is WorkerMessage {
  return (
    typeof message === 'object' &&
    message !== null &&
    WORKER_TYPES.has((message as { type?: string }).type ?? '')
  );
}

export function isPrimaryMessage(message: unknown): message is PrimaryMessage {
  const type = (message as { type?: string } | null)?.type;
  return PRIMARY_TYPES.has(type ?? '');
}

/** Environment the primary gives each worker it forks (internal, not user configuration). */
export const WORKER_ID_ENV = 'APP_WORKER_ID';
export const WORKER_GENERATION_ENV = 'APP_WORKER_GENERATION';
/** Set for a replacement in SO_REUSEPORT mode: take over the old worker's listeners before listening. */
export const INHERIT_LISTENERS_ENV = 'APP_INHERIT_LISTENERS';
