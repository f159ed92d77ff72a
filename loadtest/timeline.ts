/** Per-second samples of a load run: what completed in each second of the load window. */
import { percentile, round, type SecondSample } from './config.js';

/** Responses of the plain request routes bucketed by the second they completed in. */
export class Timeline {
  private readonly started = performance.now();
  private readonly buckets: { requests: number; errors: number; latencies: number[] }[] = [];
  private bucket() {
    const second = Math.floor((performance.now() - this.started) / 1000);
    while (this.buckets.length <= second) this.buckets.push({ requests: 0, errors: 0, latencies: [] });
    return this.buckets[second] as { requests: number; errors: number; latencies: number[] };
  }
  record(ok: boolean, latencies: number[]): void {
    const bucket = this.bucket();
    bucket.requests += 1;
    if (!ok) bucket.errors += 1;
    bucket.latencies.push(...latencies);
  }
  samples(): SecondSample[] {
    return this.buckets.map((b, second) => {
      const sorted = [...b.latencies].sort((x, y) => x - y);
      return {
        second,
        requests: b.requests,
        errors: b.errors,
        p50Ms: round(percentile(sorted, 50)),
        p95Ms: round(percentile(sorted, 95)),
        p99Ms: round(percentile(sorted, 99)),
      };
    });
  }
}
