/**
 * The primary's end of SO_REUSEPORT listener hand-over (the worker end is listeners.ts): it asks a
 * worker for copies of its listening sockets and passes them to another worker. The primary never
 * accepts on them: a socket passed as a bare handle is not listened on here, and our copy closes as
 * soon as the receiving worker has it.
 */
import type { Worker } from 'node:cluster';
import type { PrimaryMessage, WorkerMessage } from './protocol.js';

/** A worker that does not answer in this time keeps its sockets; the other side binds or goes on. */
const RELAY_TIMEOUT_MS = 2000;

type Handle = { close(): void };

export class ListenerRelay {
  private readonly collecting = new Map<Worker, { handles: Handle[]; done: () => void }>();
  private readonly adopting = new Map<Worker, () => void>();

  /** Route a worker's listener messages here; false for every other message. */
  onMessage(worker: Worker, message: WorkerMessage, handle: unknown): boolean {
    if (message.type === 'listener') {
      if (handle) this.collecting.get(worker)?.handles.push(handle as Handle);
    } else if (message.type === 'listeners-end') {
      this.collecting.get(worker)?.done();
    } else if (message.type === 'listeners-adopted') {
      this.adopting.get(worker)?.();
    } else return false;
    return true;
  }

  /** A worker exited: nothing more will come from it. */
  workerGone(worker: Worker): void {
    this.collecting.get(worker)?.done();
    this.adopting.get(worker)?.();
  }

  /** Copies of every socket `from` holds (it keeps its own); none when it is gone or silent. */
  collect(from: Worker | undefined): Promise<Handle[]> {
    if (!from?.isConnected() || this.collecting.has(from)) return Promise.resolve([]);
    return new Promise((resolve) => {
      const handles: Handle[] = [];
      const done = () => {
        clearTimeout(timer);
        this.collecting.delete(from);
        resolve(handles);
      };
      const timer = setTimeout(done, RELAY_TIMEOUT_MS);
      this.collecting.set(from, { handles, done });
      from.send({ type: 'share-listeners' } satisfies PrimaryMessage);
    });
  }

  /** Pass `handles` to `to`, then `listeners-end`; our copies close once each is sent. */
  forward(to: Worker, handles: Handle[]): void {
    if (!to.isConnected()) {
      for (const handle of handles) handle.close();
      return;
    }
    for (const handle of handles) {
      to.send({ type: 'listener' } satisfies PrimaryMessage, handle as never, () => handle.close());
    }
    to.send({ type: 'listeners-end' } satisfies PrimaryMessage);
  }

  /** Move copies of `from`'s sockets to `to`; resolves once `to` listens on them (or gave no answer). */
  async handOver(from: Worker, to: Worker): Promise<void> {
    const handles = await this.collect(from);
    if (handles.length === 0) return;
    const adopted = new Promise<void>((resolve) => {
      const timer = setTimeout(() => finish(), RELAY_TIMEOUT_MS);
      const finish = () => {
        clearTimeout(timer);
        this.adopting.delete(to);
        resolve();
      };
      this.adopting.set(to, finish);
    });
    this.forward(to, handles);
    await adopted;
  }
}
