import type { RateLimit } from '../policy/types.js';

/** A token bucket refilled continuously; parameters are passed in so a reload applies at once. */
class Bucket {
  private tokens = -1;
  private last = 0;

  take(now: number, perSecond: number, burst: number): boolean {
    if (this.tokens < 0) this.tokens = burst;
    else this.tokens = Math.min(burst, this.tokens + ((now - this.last) / 1000) * perSecond);
    this.last = now;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return true;
    }
    return false;
  }

  /** True when the bucket would be full now: nothing is lost by forgetting it. */
  full(now: number, perSecond: number, burst: number): boolean {
    return this.tokens < 0 || this.tokens + ((now - this.last) / 1000) * perSecond >= burst;
  }
}

/**
 * The rate of one source address on one device, shared by all its connections (a flood split over
 * many connections is still one source).
 */
export class SourceRate {
  private readonly requests = new Bucket();
  private readonly writes = new Bucket();

  /** May a request (a write, when `write`) go on now under `limit`? */
  allow(now: number, limit: Readonly<RateLimit>, write: boolean): boolean {
    if (write && !this.writes.take(now, limit.writesPerSecond, limit.burst)) return false;
    return this.requests.take(now, limit.requestsPerSecond, limit.burst);
  }

  idle(now: number, limit: Readonly<RateLimit> | null): boolean {
    if (limit === null) return true;
    return this.requests.full(now, limit.requestsPerSecond, limit.burst) && this.writes.full(now, limit.writesPerSecond, limit.burst);
  }
}
