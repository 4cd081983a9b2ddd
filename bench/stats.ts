// Small pure statistics for the benchmark. No I/O.
import type { LatencySummary } from './ipc.js';

/**
 * Nearest-rank percentile of an ascending array (p in 0..1): the smallest value with at least
 * p of the samples at or below it. 0 for no samples.
 */
export function percentileSorted(sorted: ArrayLike<number>, p: number): number {
  const n = sorted.length;
  if (n === 0) return 0;
  const rank = Math.min(n, Math.max(1, Math.ceil(p * n)));
  return sorted[rank - 1]!;
}

/** Sorts the latencies (µs) in place and summarises them. */
export function summarizeLatencies(us: Float32Array): LatencySummary {
  us.sort();
  let sum = 0;
  for (let i = 0; i < us.length; i++) sum += us[i]!;
  return {
    samples: us.length,
    p50Us: percentileSorted(us, 0.5),
    p90Us: percentileSorted(us, 0.9),
    p99Us: percentileSorted(us, 0.99),
    p999Us: percentileSorted(us, 0.999),
    maxUs: us.length > 0 ? us[us.length - 1]! : 0,
    meanUs: us.length > 0 ? sum / us.length : 0,
  };
}

/** Median of the values (mean of the middle two for an even count); NaN for none. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Bucket bounds of LogHistogram: each GROWTH times the one below, from MIN_US (1 µs … ≈ 290 s). */
const HISTOGRAM_MIN_US = 1;
const HISTOGRAM_GROWTH = 1.05;
const HISTOGRAM_BUCKETS = 400;

/**
 * Latencies (µs) of a run of any length in fixed memory, for the soak, whose hours of samples
 * can't be kept: counts per log-spaced bucket. A percentile is the upper bound of the bucket that
 * holds the nearest-rank sample (as percentileSorted ranks), so at most 5 % above the exact one.
 */
export class LogHistogram {
  private readonly counts = new Float64Array(HISTOGRAM_BUCKETS);
  count = 0;
  maxUs = 0;

  add(us: number): void {
    const i = Math.ceil(Math.log(Math.max(us, HISTOGRAM_MIN_US) / HISTOGRAM_MIN_US) / Math.log(HISTOGRAM_GROWTH));
    this.counts[Math.min(HISTOGRAM_BUCKETS - 1, i)]!++;
    this.count++;
    if (us > this.maxUs) this.maxUs = us;
  }

  /** p in 0..1; never above the largest value seen; 0 for no samples. */
  percentile(p: number): number {
    if (this.count === 0) return 0;
    const rank = Math.min(this.count, Math.max(1, Math.ceil(p * this.count)));
    let i = 0;
    for (let seen = this.counts[0]!; seen < rank; seen += this.counts[++i]!);
    return Math.min(this.maxUs, HISTOGRAM_MIN_US * HISTOGRAM_GROWTH ** i);
  }
}
