import { describe, expect, it } from 'vitest';
import {
  heartbeatIntervalMs,
  isHung,
  isStableUptime,
  memoryLimitBytes,
  nextFreeSlot,
  pickScaleDownVictim,
  recycleReason,
  requestLimitFor,
  restartDelayMs,
  shouldGiveUp,
} from '../src/runtime/policy.js';

describe('supervision policy', () => {
  it('gives each worker a request limit of MAX_REQUESTS plus jitter in [0, jitter]', () => {
    expect(requestLimitFor(0, 100)).toBe(Number.POSITIVE_INFINITY);
    expect(requestLimitFor(1000, 100, () => 0)).toBe(1000);
    expect(requestLimitFor(1000, 100, () => 0.999999)).toBe(1100);
    const limits = new Set(Array.from({ length: 500 }, () => requestLimitFor(1000, 10)));
    for (const limit of limits) {
      expect(limit).toBeGreaterThanOrEqual(1000);
      expect(limit).toBeLessThanOrEqual(1010);
    }
    expect(limits.size).toBeGreaterThan(5);
  });

  it('recycles by request count first, then by memory', () => {
    const limits = { requestLimit: 100, maxRssBytes: memoryLimitBytes(64) };
    expect(recycleReason({ requestsServed: 99, rssBytes: 10 }, limits)).toBeUndefined();
    expect(recycleReason({ requestsServed: 100, rssBytes: 10 }, limits)).toBe('max_requests');
    expect(recycleReason({ requestsServed: 1, rssBytes: 64 * 1024 * 1024 + 1 }, limits)).toBe('memory');
    expect(
      recycleReason(
        { requestsServed: 1e9, rssBytes: 1e12 },
        { requestLimit: Infinity, maxRssBytes: memoryLimitBytes(0) },
      ),
    ).toBeUndefined();
  });

  it('restarts the first crash at once, then backs off exponentially up to a cap', () => {
    expect([1, 2, 3, 4, 5].map((crashes) => restartDelayMs(crashes))).toEqual([0, 250, 500, 1000, 2000]);
    expect(restartDelayMs(50)).toBe(30_000);
    expect(restartDelayMs(3, { baseMs: 10, maxMs: 15 })).toBe(15);
    expect(isStableUptime(30_000, 30_000)).toBe(true);
    expect(isStableUptime(29_999, 30_000)).toBe(false);
  });

  it('gives up only when nothing serves and boots keep failing', () => {
    expect(shouldGiveUp({ readyWorkers: 0, consecutiveBootFailures: 5 }, 5)).toBe(true);
    expect(shouldGiveUp({ readyWorkers: 0, consecutiveBootFailures: 4 }, 5)).toBe(false);
    expect(shouldGiveUp({ readyWorkers: 1, consecutiveBootFailures: 50 }, 5)).toBe(false);
  });

  it('calls a worker hung only past the timeout, and beats often enough for short timeouts', () => {
    expect(isHung(1000, 31_000, 30_000)).toBe(false);
    expect(isHung(1000, 31_001, 30_000)).toBe(true);
    expect(heartbeatIntervalMs(30_000)).toBe(1000);
    expect(heartbeatIntervalMs(1500)).toBe(500);
    expect(heartbeatIntervalMs(10)).toBe(50);
  });

  it('scales down the highest slot and fills the lowest free one', () => {
    expect(pickScaleDownVictim([{ slot: 1 }, { slot: 3 }, { slot: 2 }])).toEqual({ slot: 3 });
    expect(pickScaleDownVictim([])).toBeUndefined();
    expect(nextFreeSlot([1, 2, 4])).toBe(3);
    expect(nextFreeSlot([])).toBe(1);
  });
});
