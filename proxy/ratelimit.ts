import type { RateLimit } from '../policy/types.js';

/**
 * A token bucket refilled continuously; parameters are passed in so a reload applies at once.
 * Rate limits and the audit log's line budgets (proxy/audit.ts) are made of these.
 * Time only moves forward here: the connections of one source share the bucket and each passes
 * the arrival time of its own chunk, which can be older than the last one seen (frames held at
 * max_outstanding are decided later). An older time refills nothing and never rewinds `last`:
 * running the clock backwards would drain tokens that were earned, and re-earn them twice later.
 */
export class TokenBucket {
  tokens = 0;
  private last = 0;
  private started = false;

  refill(now: number, perSecond: number, burst: number): void {
    if (!this.started) {
      this.started = true;
      this.tokens = burst;
      this.last = now;
      return;
    }
    const elapsed = Math.max(0, now - this.last);
    this.tokens = Math.min(burst, this.tokens + (elapsed / 1000) * perSecond);
    if (now > this.last) this.last = now;
  }

  /** True when the bucket would be full now: nothing is lost by forgetting it. */
  full(now: number, perSecond: number, burst: number): boolean {
    return !this.started || this.tokens + (Math.max(0, now - this.last) / 1000) * perSecond >= burst;
  }
}

/**
 * The rate of one source address on one device, shared by all its connections (a flood split over
 * many connections is still one source).
 */
export class SourceRate {
  private readonly requests = new TokenBucket();
  private readonly writes = new TokenBucket();

  /**
   * May a request (a write, when `write`) go on now under `limit`? A request refused by one
   * bucket takes nothing from the other: only what goes on is paid for.
   */
  allow(now: number, limit: Readonly<RateLimit>, write: boolean): boolean {
    const r = this.requests;
    r.refill(now, limit.requestsPerSecond, limit.burst);
    if (write) this.writes.refill(now, limit.writesPerSecond, limit.burst);
    if (r.tokens < 1 || (write && this.writes.tokens < 1)) return false;
    r.tokens -= 1;
    if (write) this.writes.tokens -= 1;
    return true;
  }

  /** True when its buckets have refilled (or there is no limit): forgetting it loses nothing. */
  refilled(now: number, limit: Readonly<RateLimit> | null): boolean {
    if (limit === null) return true;
    return this.requests.full(now, limit.requestsPerSecond, limit.burst) && this.writes.full(now, limit.writesPerSecond, limit.burst);
  }
}
