/**
 * CPU-bound pieces of work, run in arrival order with the event loop turning between them.
 *
 * Requests that arrive together are read in one poll phase of the event loop. Run inline, their
 * synchronous work adds up before the loop reads another socket or accepts another connection (it
 * accepts one a turn): 20 requests of 15 ms hold it 300 ms, and a liveness probe waits all of it.
 * Queued here, the pieces run from a check-phase callback for at most TURN_BUDGET_MS per turn (a longer
 * piece ends its turn alone); then the loop accepts, reads sockets, answers probes and fires timers
 * before the next turn. A turn then lasts about one piece however many are queued. Throughput is
 * the same: one process has one thread for this work either way.
 *
 * One queue per process (module state), as there is one event loop per process.
 */

/** How long small pieces may run back to back in one turn. */
export const TURN_BUDGET_MS = 10;

type Piece = () => void;

const queue: Piece[] = [];
let turnScheduled = false;

function runTurn(): void {
  turnScheduled = false;
  const started = performance.now();
  // At least one piece per turn; small ones share it until the budget is spent.
  do {
    const piece = queue.shift();
    piece?.();
  } while (queue.length > 0 && performance.now() - started < TURN_BUDGET_MS);
  if (queue.length > 0) scheduleTurn();
}

function scheduleTurn(): void {
  if (turnScheduled) return;
  turnScheduled = true;
  setImmediate(runTurn);
}

/** Run `work` (synchronous, CPU-bound) in its turn; resolves with its result or rejects with its error. */
export function inTurn<T>(work: () => T): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    queue.push(() => {
      try {
        resolve(work());
      } catch (error) {
        reject(error);
      }
    });
    scheduleTurn();
  });
}
