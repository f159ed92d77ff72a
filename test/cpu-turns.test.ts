import { describe, expect, it } from 'vitest';
import { inTurn, TURN_BUDGET_MS } from '../src/cpu-turns.js';

function busy(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until);
}

describe('CPU-bound pieces in turns of the event loop', () => {
  it('lets the loop turn (timers, I/O) between pieces longer than the budget', async () => {
    const order: string[] = [];
    const pieces = Array.from({ length: 5 }, (_, index) =>
      inTurn(() => {
        busy(TURN_BUDGET_MS * 2);
        order.push(`piece ${index}`);
        return index;
      }),
    );
    setTimeout(() => order.push('timer'), 0);
    expect(await Promise.all(pieces)).toEqual([0, 1, 2, 3, 4]);
    // Run inline, the five pieces would all come before the timer.
    expect(order.indexOf('timer')).toBeGreaterThanOrEqual(0);
    expect(order.indexOf('timer')).toBeLessThanOrEqual(1);
    expect(order.filter((entry) => entry.startsWith('piece'))).toEqual(
      [0, 1, 2, 3, 4].map((i) => `piece ${i}`),
    );
  });

  it('runs small pieces together in one turn', async () => {
    let turned = false;
    const pieces = Array.from({ length: 100 }, (_, index) => inTurn(() => ({ index, turned })));
    setImmediate(() => {
      turned = true;
    });
    const results = await Promise.all(pieces);
    expect(results.every((result) => !result.turned)).toBe(true);
  });

  it("rejects with a piece's error and goes on with the next", async () => {
    const failing = inTurn(() => {
      throw new Error('boom');
    });
    const next = inTurn(() => 'next');
    await expect(failing).rejects.toThrow('boom');
    expect(await next).toBe('next');
  });
});
