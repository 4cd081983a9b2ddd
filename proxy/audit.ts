import { TokenBucket } from './ratelimit.js';

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

/** Lines about one source address written at once before they are only counted. */
export const AUDIT_BURST = 20;
/** Lines per second a source address earns back. */
export const AUDIT_RATE_PER_SECOND = 5;
/** Lines about all sources together (the whole process) written at once before they are only counted. */
export const AUDIT_TOTAL_BURST = 100;
/** Lines per second the whole process earns back: ~20 lines of ~300 bytes, 6 KB/s at most. */
export const AUDIT_TOTAL_RATE_PER_SECOND = 20;
/**
 * Source addresses whose budget is remembered. Past this, those with a full budget and nothing
 * to report are forgotten, then the longest known; the total budget still bounds what is written.
 */
export const AUDIT_SOURCES_MAX = 1024;

/** Lines about a device's PLC connection failing written at once before they are only counted. */
export const PLC_LOG_BURST = 5;
/** Lines per second about a device's PLC connection: one each 5 s while it keeps failing. */
export const PLC_LOG_RATE_PER_SECOND = 0.2;

/**
 * One token bucket and a count of the lines it refused, for lines no source is to blame for (a
 * device's PLC connection failing, which the reconnect backoff already paces): one per device.
 */
export class AuditLimiter {
  private readonly bucket = new TokenBucket();
  private suppressed = 0;

  constructor(
    private readonly burst: number,
    private readonly ratePerSecond: number,
  ) {}

  /**
   * Whether a line may be written now (`now` in ms): null when not (it is counted), else the
   * fields to add to it: the count of lines refused since the last one written, if any.
   */
  admit(now: number): { suppressed?: number } | null {
    const b = this.bucket;
    b.refill(now, this.ratePerSecond, this.burst);
    if (b.tokens < 1) {
      this.suppressed++;
      return null;
    }
    b.tokens -= 1;
    const n = this.suppressed;
    this.suppressed = 0;
    return n > 0 ? { suppressed: n } : {};
  }
}

/** What the gate remembers of one source address. */
class SourceBudget {
  readonly bucket = new TokenBucket();
  /** Lines about this source refused since its last line written. */
  suppressed = 0;
}

/**
 * The budget of lines a client can cause (denials, would-deny lines in monitor mode, refused
 * connections, framing errors), per source address and for the whole process, so that neither
 * reconnecting (a fresh connection is the same source) nor many sources at once can fill the
 * disk. A line refused is counted: the count rides on the next line written about that source
 * (its `suppressed` field) and in plcguard_audit_suppressed_total.
 *
 * Lines a client can only cause once per connection and per timeout (idle and frame timeouts)
 * don't pass through here: the connection limits and the timeouts already bound them.
 */
export class AuditGate {
  private readonly total = new TokenBucket();
  private readonly sources = new Map<string, SourceBudget>();

  constructor(private readonly maxSources = AUDIT_SOURCES_MAX) {}

  /** Source addresses remembered now (bounded by maxSources). */
  get size(): number {
    return this.sources.size;
  }

  /**
   * May a line about `source` be written at `now` (ms; times from several connections may come out
   * of order)? False: it is counted as suppressed for that source.
   */
  allow(source: string, now: number): boolean {
    const s = this.budget(source, now);
    if (this.take(s, now)) return true;
    s.suppressed++;
    return false;
  }

  /** Lines about `source` refused since its last line written, to report on the line being written; reset to 0. */
  takeSuppressed(source: string): number {
    const s = this.sources.get(source);
    if (s === undefined) return 0;
    const n = s.suppressed;
    s.suppressed = 0;
    return n;
  }

  /**
   * At the end of a connection: when lines about `source` were refused and one may be written now,
   * the count to report on a line of its own (and it is reset); else 0. The summary line isn't an
   * event of its own: refusing it suppresses nothing more.
   */
  flush(source: string, now: number): number {
    const s = this.sources.get(source);
    if (s === undefined || s.suppressed === 0 || !this.take(s, now)) return 0;
    const n = s.suppressed;
    s.suppressed = 0;
    return n;
  }

  /** Takes a line from both budgets, or from neither: a line refused by one costs the other nothing. */
  private take(s: SourceBudget, now: number): boolean {
    const own = s.bucket;
    const total = this.total;
    own.refill(now, AUDIT_RATE_PER_SECOND, AUDIT_BURST);
    total.refill(now, AUDIT_TOTAL_RATE_PER_SECOND, AUDIT_TOTAL_BURST);
    if (own.tokens < 1 || total.tokens < 1) return false;
    own.tokens -= 1;
    total.tokens -= 1;
    return true;
  }

  private budget(source: string, now: number): SourceBudget {
    let s = this.sources.get(source);
    if (s === undefined) {
      if (this.sources.size >= this.maxSources) this.prune(now);
      s = new SourceBudget();
      this.sources.set(source, s);
    }
    return s;
  }

  /**
   * Forgets sources with a full budget and nothing to report (nothing is lost), then, if that
   * wasn't enough (a flood from many addresses), the ones known longest: their counts stay in the
   * metric, and the total budget bounds what a forgotten source's fresh burst can write.
   */
  private prune(now: number): void {
    for (const [source, s] of this.sources) {
      if (s.suppressed === 0 && s.bucket.full(now, AUDIT_RATE_PER_SECOND, AUDIT_BURST)) this.sources.delete(source);
    }
    for (const source of this.sources.keys()) {
      if (this.sources.size < this.maxSources) break;
      this.sources.delete(source);
    }
  }
}
