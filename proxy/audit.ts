/**
 * Audit and operational log: one JSON object per line. Denials and refused connections are the
 * audit trail; normal operation logs little (start, stop, policy loaded).
 */
export type LogSink = (line: string) => void;

export const stdoutSink: LogSink = (line) => {
  process.stdout.write(line + '\n');
};

export class Logger {
  constructor(
    private readonly sink: LogSink = stdoutSink,
    private readonly clock: () => number = Date.now,
  ) {}

  /** Writes one line: {"time": ISO, "event": event, ...fields}. */
  log(event: string, fields: Record<string, unknown> = {}): void {
    this.sink(JSON.stringify({ time: new Date(this.clock()).toISOString(), event, ...fields }));
  }
}

/** Lines an attacker can make us write per connection before they are only counted. */
export const AUDIT_BURST = 20;
/** Lines per second a connection earns back. */
export const AUDIT_RATE_PER_SECOND = 5;

/**
 * A token bucket for audit lines, so that a flood of denials can't fill the disk: past the burst,
 * lines are counted, and the count of what was suppressed rides on the next line written (and on
 * the connection's close line).
 */
export class AuditLimiter {
  private tokens: number;
  private last: number;
  private suppressed = 0;

  constructor(
    now: number,
    private readonly burst = AUDIT_BURST,
    private readonly ratePerSecond = AUDIT_RATE_PER_SECOND,
  ) {
    this.tokens = burst;
    this.last = now;
  }

  /** True when a line may be written now (`now` in ms, never going back); false: only counted. */
  allow(now: number): boolean {
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.ratePerSecond);
    this.last = now;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return true;
    }
    this.suppressed++;
    return false;
  }

  /** The suppressed count to report now, reset to 0. */
  takeSuppressed(): number {
    const n = this.suppressed;
    this.suppressed = 0;
    return n;
  }
}
