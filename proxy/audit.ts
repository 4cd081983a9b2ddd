import os from 'node:os';
import type { CompiledDevice, Endpoint } from '../policy/types.js';
import { TokenBucket } from './ratelimit.js';

/**
 * Audit and operational log: one JSON object per line. Denials, refused connections and the
 * opening and closing of client connections are the audit trail; normal operation logs little
 * else (start, stop, policy loaded). docs/siem.md maps every field to Elastic ECS and to
 * Suricata's EVE.
 */
export type LogSink = (line: string) => void;

export const stdoutSink: LogSink = (line) => {
  process.stdout.write(line + '\n');
};

/** Who writes the log: on every line, so that a SIEM fed by many plcguards tells them apart. */
export interface LogIdentity {
  /** The machine (os.hostname()). */
  readonly host: string;
  /** This plcguard: stable across restarts (`--instance`, default host:admin-port). */
  readonly instance: string;
}

/**
 * The default instance name: host and admin port, which is what Prometheus calls the instance
 * when it scrapes plcguard by host name, so a log line and a metric series name it alike.
 */
export function defaultInstance(host: string, admin: Endpoint | null): string {
  return admin === null ? host : `${host}:${admin.port}`;
}

/** The identity of this process: `instance` when given, else the default. */
export function logIdentity(instance: string | undefined, admin: Endpoint | null, host = os.hostname()): LogIdentity {
  return { host, instance: instance ?? defaultInstance(host, admin) };
}

export class Logger {
  /** The fields every line carries after time and event: identity, then the policy in force. */
  private common: Readonly<Record<string, unknown>>;

  constructor(
    private readonly sink: LogSink = stdoutSink,
    private readonly identity: LogIdentity | null = null,
    private readonly clock: () => number = Date.now,
  ) {
    this.common = { ...identity };
  }

  /** The policy now in force: every line from now on names it (none before the first). */
  setPolicy(version: number, sha256: string): void {
    this.common = { ...this.identity, policy_version: version, policy_sha256: sha256 };
  }

  /** Writes one line: {"time": ISO, "event": event, host, instance, policy_version, policy_sha256, ...fields}. */
  log(event: string, fields: Record<string, unknown> = {}): void {
    this.sink(JSON.stringify({ time: new Date(this.clock()).toISOString(), event, ...this.common, ...fields }));
  }
}

/** Written values a line carries at most (then `value_count` tells how many there were). */
export const MAX_LOGGED_VALUES = 16;

/**
 * Ids of client connections, unique across restarts of one instance: the process's start time
 * and a count, both base 36 (`lz3k9q2a-1f`). A SIEM joins a connection's lines on it.
 */
export class ConnectionIds {
  private readonly prefix: string;
  private n = 0;

  constructor(startedAt: number = Date.now()) {
    this.prefix = `${startedAt.toString(36)}-`;
  }

  next(): string {
    return this.prefix + (++this.n).toString(36);
  }
}

/** An IPv4-mapped IPv6 address (a dual-stack listener's view of an IPv4 client) as plain IPv4. */
const MAPPED_IPV4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i;

/**
 * The fields that place a line about a client connection: device, connection, client (address and
 * port apart, as SIEMs want them) and the PLC behind the device.
 */
export function connectionFields(device: CompiledDevice, connId: string, address: string, port: number): Record<string, unknown> {
  return {
    device: device.name,
    conn_id: connId,
    src_ip: MAPPED_IPV4.exec(address)?.[1] ?? address,
    src_port: port,
    plc_host: device.upstream.host,
    plc_port: device.upstream.port,
  };
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
 *
 * The other line kinds: connection_opened lines pass a gate of their own (ProxyServer says why),
 * and each one written pays for its connection_closed line too, so pairs stay whole; allowed
 * writes (`log_writes`) pass none (Session says why); PLC failures are paced per device by an
 * AuditLimiter.
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
