// Observations: what the Modbus traffic of a capture did, per server (device), client address
// (source), unit and table, kept as bounded summaries rather than per-request records, so a week
// of traffic fits in memory and the proposal (propose.ts) can be made from it.
//
// Per device → source → unit:
// | what               | kept as                                                                  |
// |--------------------|--------------------------------------------------------------------------|
// | reads, per table   | merged address ranges (overlapping or adjacent ones join), each with count, first/last seen, exceptions |
// | writes, per table  | per address: count, times, exceptions, the lowest and highest value written (unsigned and as int16), or "any" after a mask write (FC22: the result depends on the PLC's value) |
// | other functions    | per function code: count, times, exceptions, and the FC8 sub-functions or FC43 MEI types as ranges |
//
// A request is recorded when its response arrives (matched by transaction id, unit and function,
// MB-TCP §3.1.3), so the exception it got, if any, is recorded with it; requests never answered
// are recorded when their stream ends. Malformed requests (the decoder's violations) are counted
// and not learned: the proxy denies them whatever the policy says.
//
// Ceilings (a warning says when one is reached, and what was done instead):
// | MAX_DEVICES servers; MAX_SOURCES per device | further ones are not learned (their requests are counted as skipped) |
// | MAX_RANGES ranges per table (reads, sub-functions) | the two closest ranges merge, allowing the gap between them |
// | MAX_WRITE_ADDRESSES written addresses per table | further addresses are kept as ranges without value bounds |
// | MAX_OUTSTANDING unanswered requests per stream | the oldest is recorded as unanswered |
// | Cells: a budget of entries (sources, units, ranges, written addresses) over all the observations | a new range merges with the closest one, a new written address joins the "any value" ranges, a new unit or source is not learned |
// So memory is at most about devices × sources × units × (tables × ranges + written addresses),
// whatever the length of the capture; with a cell budget (learn mode: LIVE_MAX_CELLS per device)
// it is at most that many entries, whatever the traffic.

import {
  decodeRequest,
  EXCEPTION_FLAG,
  FunctionCode,
  MAX_ADU_LENGTH,
  MBAP_HEADER_LENGTH,
  ModbusRequest,
} from '../../modbus/index.js';
import type { ModbusStreamSink, StreamAddress, TcpStream } from '../../modbus/capture/index.js';
import type { ReadTable, WriteTable } from '../format.js';
import { formatIp } from '../net.js';

export const MAX_DEVICES = 1024;
export const MAX_SOURCES = 4096;
export const MAX_RANGES = 1024;
export const MAX_WRITE_ADDRESSES = 4096;
export const MAX_OUTSTANDING = 256;
/**
 * The cell budget of a device in learn mode. A cell (a source, a unit, a range with its counts, a
 * written address with its bounds) is under 200 bytes, so a device's observations stay below about
 * 25 MB however long it learns.
 */
export const LIVE_MAX_CELLS = 131_072;

/**
 * The entries the observations may hold. Counted where entries are made and merged away; once
 * used up, new detail is folded into what is there (see the table at the top) and `reached` says so.
 */
export class Cells {
  used = 0;
  reached = false;

  constructor(readonly max = Infinity) {}

  take(): boolean {
    if (this.used >= this.max) {
      this.reached = true;
      return false;
    }
    this.used++;
    return true;
  }
}
/** Exception codes 0..30 each have a bit in `Seen.codes`; others share the last one. */
const OTHER_EXCEPTION_BIT = 31;
const INT16_SIGN = 0x8000;
const UINT16_RANGE = 0x10000;

/** How many requests, when, and how many of them the PLC answered with an exception. */
export class Seen {
  count = 0;
  first = Infinity;
  last = -Infinity;
  exceptions = 0;
  /** Bit c set: exception code c was seen (codes past 30 set bit 31). */
  codes = 0;

  add(timeMs: number, exception: number): void {
    this.count++;
    if (timeMs < this.first) this.first = timeMs;
    if (timeMs > this.last) this.last = timeMs;
    if (exception !== 0) {
      this.exceptions++;
      this.codes |= 1 << Math.min(exception, OTHER_EXCEPTION_BIT);
    }
  }

  merge(o: Seen): void {
    this.count += o.count;
    if (o.first < this.first) this.first = o.first;
    if (o.last > this.last) this.last = o.last;
    this.exceptions += o.exceptions;
    this.codes |= o.codes;
  }

  /** The exception codes seen, ascending (31 stands for "another code"). */
  exceptionCodes(): number[] {
    const out: number[] = [];
    for (let c = 0; c <= OTHER_EXCEPTION_BIT; c++) if ((this.codes >>> c) & 1) out.push(c);
    return out;
  }
}

/** Disjoint, sorted, non-adjacent ranges, each with what was seen in it. */
export class ObservedRanges {
  readonly los: number[] = [];
  readonly his: number[] = [];
  readonly seen: Seen[] = [];
  /** The ceiling was reached: some ranges were merged across gaps nobody used. */
  merged = false;

  constructor(
    private readonly max = MAX_RANGES,
    private readonly cells = new Cells(),
  ) {}

  get size(): number {
    return this.los.length;
  }

  /** One request over [lo, hi]. */
  add(lo: number, hi: number, timeMs: number, exception: number): void {
    this.seen[this.place(lo, hi)]!.add(timeMs, exception);
  }

  /** What `s` counts, over [lo, hi]. */
  addSeen(lo: number, hi: number, s: Seen): void {
    this.seen[this.place(lo, hi)]!.merge(s);
  }

  /** Everything another set saw (a union). */
  mergeFrom(o: ObservedRanges): void {
    for (let i = 0; i < o.size; i++) this.seen[this.place(o.los[i]!, o.his[i]!)]!.merge(o.seen[i]!);
    if (o.merged) this.merged = true;
  }

  /**
   * Makes [lo, hi] part of one range, joining the ranges it overlaps or touches; returns that
   * range's index.
   */
  private place(lo: number, hi: number): number {
    // The first range ending at or after lo - 1 (it may touch or overlap).
    let a = 0;
    let b = this.los.length;
    while (a < b) {
      const m = (a + b) >> 1;
      if (this.his[m]! < lo - 1) a = m + 1;
      else b = m;
    }
    const i = a;
    if (i < this.los.length && this.los[i]! <= lo && this.his[i]! >= hi) return i;
    let j = i;
    let nlo = lo;
    let nhi = hi;
    const s = new Seen();
    while (j < this.los.length && this.los[j]! <= hi + 1) {
      nlo = Math.min(nlo, this.los[j]!);
      nhi = Math.max(nhi, this.his[j]!);
      s.merge(this.seen[j]!);
      j++;
    }
    this.los.splice(i, j - i, nlo);
    this.his.splice(i, j - i, nhi);
    this.seen.splice(i, j - i, s);
    if (j > i) {
      this.cells.used -= j - i - 1;
      return i;
    }
    // A new range: within the table's ceiling and the cell budget, or the closest two merge. (A
    // table's first range is always kept: at most one per table past the budget.)
    if (this.los.length > this.max || !this.cells.take()) {
      if (this.los.length > 1) return this.squeeze(i);
      this.cells.used++;
    }
    return i;
  }

  /** Over the ceiling: merges the two ranges with the smallest gap; returns where `keep` went. */
  private squeeze(keep: number): number {
    let best = 1;
    for (let k = 2; k < this.los.length; k++) {
      if (this.los[k]! - this.his[k - 1]! < this.los[best]! - this.his[best - 1]!) best = k;
    }
    this.his[best - 1] = this.his[best]!;
    this.seen[best - 1]!.merge(this.seen[best]!);
    this.los.splice(best, 1);
    this.his.splice(best, 1);
    this.seen.splice(best, 1);
    this.merged = true;
    return keep >= best ? keep - 1 : keep;
  }
}

/** Writes to one address. */
export class AddressWrites {
  readonly seen = new Seen();
  umin = Infinity;
  umax = -Infinity;
  /** The same values read as int16 (registers only). */
  smin = Infinity;
  smax = -Infinity;
  /** A mask write (FC22) was seen: the value written can't be known. */
  any = false;

  value(v: number): void {
    if (v < this.umin) this.umin = v;
    if (v > this.umax) this.umax = v;
    const s = v >= INT16_SIGN ? v - UINT16_RANGE : v;
    if (s < this.smin) this.smin = s;
    if (s > this.smax) this.smax = s;
  }

  merge(o: AddressWrites): void {
    this.seen.merge(o.seen);
    this.umin = Math.min(this.umin, o.umin);
    this.umax = Math.max(this.umax, o.umax);
    this.smin = Math.min(this.smin, o.smin);
    this.smax = Math.max(this.smax, o.smax);
    this.any ||= o.any;
  }
}

/** Writes to one table: per address, and past the ceiling as ranges with any value. */
export class ObservedWrites {
  readonly byAddress = new Map<number, AddressWrites>();
  /** Addresses past MAX_WRITE_ADDRESSES or the cell budget: allowed any value. */
  readonly overflow: ObservedRanges;

  constructor(
    private readonly max = MAX_WRITE_ADDRESSES,
    private readonly cells = new Cells(),
  ) {
    this.overflow = new ObservedRanges(MAX_RANGES, cells);
  }

  /** The entry of a new address, or null (and then the overflow ranges take it). */
  private make(address: number): AddressWrites | null {
    if (this.byAddress.size >= this.max || !this.cells.take()) return null;
    const w = new AddressWrites();
    this.byAddress.set(address, w);
    return w;
  }

  private at(address: number, timeMs: number, exception: number): AddressWrites | null {
    const w = this.byAddress.get(address) ?? this.make(address);
    if (w === null) {
      this.overflow.add(address, address, timeMs, exception);
      return null;
    }
    w.seen.add(timeMs, exception);
    return w;
  }

  add(address: number, value: number, timeMs: number, exception: number): void {
    this.at(address, timeMs, exception)?.value(value);
  }

  addAny(address: number, timeMs: number, exception: number): void {
    const w = this.at(address, timeMs, exception);
    if (w !== null) w.any = true;
  }

  /** What `w` saw at `address`. */
  mergeAddress(address: number, w: AddressWrites): void {
    const mine = this.byAddress.get(address) ?? this.make(address);
    if (mine === null) this.overflow.addSeen(address, address, w.seen);
    else mine.merge(w);
  }

  mergeFrom(o: ObservedWrites): void {
    for (const [address, w] of o.byAddress) this.mergeAddress(address, w);
    this.overflow.mergeFrom(o.overflow);
  }
}

/** A function without an address model (FC7, 8, 11, 12, 17, 20, 21, 43, and codes the spec doesn't define). */
export class FunctionObservation {
  readonly seen = new Seen();
  /** FC8 sub-functions or FC43 MEI types; null for other codes. */
  readonly subs: ObservedRanges | null;

  constructor(
    readonly code: number,
    cells: Cells,
  ) {
    this.subs = code === FunctionCode.DIAGNOSTICS || code === FunctionCode.ENCAPSULATED_INTERFACE_TRANSPORT ? new ObservedRanges(MAX_RANGES, cells) : null;
  }

  mergeFrom(o: FunctionObservation): void {
    this.seen.merge(o.seen);
    if (o.subs !== null) this.subs!.mergeFrom(o.subs);
  }
}

const READ_INDEX: Record<ReadTable, number> = { coils: 0, discrete_inputs: 1, holding_registers: 2, input_registers: 3 };
const WRITE_INDEX: Record<WriteTable, number> = { coils: 0, holding_registers: 1 };

/** What one source did to one unit. (Its function entries, at most 256, are not counted as cells.) */
export class UnitObservation {
  readonly seen = new Seen();
  readonly reads: (ObservedRanges | null)[] = [null, null, null, null];
  readonly writes: (ObservedWrites | null)[] = [null, null];
  readonly functions = new Map<number, FunctionObservation>();

  constructor(private readonly cells = new Cells()) {}

  read(table: ReadTable): ObservedRanges {
    const i = READ_INDEX[table];
    return (this.reads[i] ??= new ObservedRanges(MAX_RANGES, this.cells));
  }

  write(table: WriteTable): ObservedWrites {
    const i = WRITE_INDEX[table];
    return (this.writes[i] ??= new ObservedWrites(MAX_WRITE_ADDRESSES, this.cells));
  }

  readsOf(table: ReadTable): ObservedRanges | null {
    return this.reads[READ_INDEX[table]]!;
  }

  writesOf(table: WriteTable): ObservedWrites | null {
    return this.writes[WRITE_INDEX[table]]!;
  }

  fn(code: number): FunctionObservation {
    let f = this.functions.get(code);
    if (f === undefined) {
      f = new FunctionObservation(code, this.cells);
      this.functions.set(code, f);
    }
    return f;
  }

  mergeFrom(o: UnitObservation): void {
    this.seen.merge(o.seen);
    o.reads.forEach((r, i) => {
      if (r !== null) (this.reads[i] ??= new ObservedRanges(MAX_RANGES, this.cells)).mergeFrom(r);
    });
    o.writes.forEach((w, i) => {
      if (w !== null) (this.writes[i] ??= new ObservedWrites(MAX_WRITE_ADDRESSES, this.cells)).mergeFrom(w);
    });
    for (const [code, f] of o.functions) this.fn(code).mergeFrom(f);
  }
}

/** One client address talking to one device. */
export class SourceObservation {
  readonly seen = new Seen();
  readonly units = new Map<number, UnitObservation>();
  connections = 0;

  constructor(
    readonly address: StreamAddress,
    /** Canonical text (formatIp). */
    readonly text: string,
    private readonly cells: Cells,
  ) {}

  /** The unit's entry; null when it is new and the cell budget is used up. */
  unit(id: number): UnitObservation | null {
    let u = this.units.get(id);
    if (u === undefined) {
      if (!this.cells.take()) return null;
      u = new UnitObservation(this.cells);
      this.units.set(id, u);
    }
    return u;
  }

}

/** The device as a policy names it, when the observations are of a device in learn mode. */
export interface PolicyDevice {
  readonly name: string;
  readonly listen: string;
  readonly upstream: string;
  /** Its `upstream_connections` and `upstream_max_in_flight`, when its clients share PLC connections. */
  readonly sharing?: { readonly connections: number; readonly maxInFlight: number };
  /** Its `tls` and `upstream_tls` as written (paths): a proposal must not turn mbaps into plain Modbus/TCP. */
  readonly tls?: Readonly<Record<string, unknown>>;
  readonly upstreamTls?: Readonly<Record<string, unknown>>;
  /** Its `routes` as written: a proposal must send each unit where learning did. */
  readonly routes?: readonly object[];
}

/** One Modbus server seen in the capture: a device of the proposed policy. */
export class DeviceObservation {
  readonly seen = new Seen();
  readonly sources = new Map<string, SourceObservation>();
  connections = 0;
  /** Malformed requests: counted, not learned. */
  malformed = 0;
  /** Requests from sources past MAX_SOURCES, or of sources and units past the cell budget. */
  skipped = 0;
  /** Set for a device in learn mode: the proposal keeps its name, listen and upstream. */
  policy: PolicyDevice | null = null;

  constructor(
    readonly address: StreamAddress,
    readonly port: number,
    /** `host:port` (`[v6]:port`). */
    readonly text: string,
    private readonly cells: Cells,
  ) {}

  /** The source's entry; null past MAX_SOURCES or the cell budget (the caller says why). */
  source(address: StreamAddress, text: string): SourceObservation | null {
    let s = this.sources.get(text);
    if (s === undefined) {
      if (this.sources.size >= MAX_SOURCES || !this.cells.take()) return null;
      s = new SourceObservation(address, text, this.cells);
      this.sources.set(text, s);
    }
    return s;
  }

  /** Everything another device's observations saw: what the budget can't hold counts as skipped. */
  mergeFrom(o: DeviceObservation): void {
    this.seen.merge(o.seen);
    this.connections += o.connections;
    this.malformed += o.malformed;
    this.skipped += o.skipped;
    this.policy ??= o.policy;
    for (const src of o.sources.values()) {
      const mine = this.source(src.address, src.text);
      if (mine === null) {
        this.skipped += src.seen.count;
        continue;
      }
      mine.seen.merge(src.seen);
      mine.connections += src.connections;
      for (const [id, u] of src.units) {
        const unit = mine.unit(id);
        if (unit === null) this.skipped += u.seen.count;
        else unit.mergeFrom(u);
      }
    }
  }
}

/** Totals over the whole capture, for the summary. */
export class LearnCounts {
  /** Requests recorded (learned). */
  requests = 0;
  /** Of those, answered with an exception. */
  exceptions = 0;
  /** Of those, never answered (stream ended first). */
  unanswered = 0;
  malformed = 0;
  /** Responses matching no outstanding request (the request was before the capture, or lost). */
  unmatchedResponses = 0;
  /** Requests of devices or sources past the ceilings. */
  skipped = 0;
}

/** What a stream has to do with the observations: found once, on its first frame. */
interface StreamContext {
  device: DeviceObservation | null;
  source: SourceObservation | null;
  /** Requests awaiting their response, by transaction id, in arrival order. */
  pending: Map<number, Pending>;
}

interface Pending {
  readonly bytes: Buffer;
  length: number;
  timeMs: number;
}

/** Everything observed: devices by `host:port`, and what the ceilings cost. */
export class Observations {
  readonly devices = new Map<string, DeviceObservation>();
  readonly counts = new LearnCounts();
  /** One line per ceiling reached (set: each is said once). */
  readonly warnings = new Set<string>();

  constructor(readonly cells = new Cells()) {}

  /**
   * The device's entry, made if new; null past MAX_DEVICES (with a warning). Keyed by `host:port`,
   * or by `key` (a policy's device name: two devices may front one PLC).
   */
  device(address: StreamAddress, port: number, key = endpoint(address, port)): DeviceObservation | null {
    let d = this.devices.get(key);
    if (d === undefined) {
      if (this.devices.size >= MAX_DEVICES) {
        this.warnings.add(`more than ${MAX_DEVICES} servers: the ones after that are not learned`);
        return null;
      }
      d = new DeviceObservation(address, port, endpoint(address, port), this.cells);
      this.devices.set(key, d);
    }
    return d;
  }
}

/**
 * Records one decoded request of `source` to `device` (null: past a ceiling, counted as skipped)
 * with the exception code the PLC answered (0: none), at `t` (ms since the epoch).
 */
export function observeRequest(
  obs: Observations,
  device: DeviceObservation,
  source: SourceObservation | null,
  r: ModbusRequest,
  t: number,
  exception: number,
  unanswered: boolean,
): void {
  const counts = obs.counts;
  if (source !== null && r.violation !== 'none') {
    counts.malformed++;
    device.malformed++;
    return;
  }
  const unit = source?.unit(r.unitId) ?? null;
  if (unit === null) {
    counts.skipped++;
    device.skipped++;
    return;
  }
  counts.requests++;
  if (exception !== 0) counts.exceptions++;
  if (unanswered) counts.unanswered++;
  device.seen.add(t, exception);
  source!.seen.add(t, exception);
  unit.seen.add(t, exception);
  switch (r.kind) {
    case 'read':
      unit.read(r.readTable as ReadTable).add(r.readStart, r.readStart + r.readQuantity - 1, t, exception);
      break;
    case 'read_write':
      unit.read('holding_registers').add(r.readStart, r.readStart + r.readQuantity - 1, t, exception);
      observeWrites(unit, r, t, exception);
      break;
    case 'write':
      observeWrites(unit, r, t, exception);
      break;
    case 'mask_write':
      unit.write('holding_registers').addAny(r.writeStart, t, exception);
      break;
    default: {
      const f = unit.fn(r.functionCode);
      f.seen.add(t, exception);
      const sub = r.functionCode === FunctionCode.DIAGNOSTICS ? r.subFunction : r.meiType;
      f.subs?.add(sub, sub, t, exception);
    }
  }
}

function observeWrites(unit: UnitObservation, r: ModbusRequest, t: number, exception: number): void {
  const w = unit.write(r.writeTable as WriteTable);
  for (let i = 0; i < r.writeQuantity; i++) w.add(r.writeStart + i, r.valueAt(i), t, exception);
}

/** Warnings for the ceilings reached inside the per-table summaries and the cell budget. */
export function ceilingWarnings(obs: Observations): void {
  for (const d of obs.devices.values()) {
    for (const s of d.sources.values()) {
      for (const [id, u] of s.units) {
        const where = `${d.text}, source ${s.text}, unit ${id}`;
        if (u.reads.some((r) => r?.merged === true) || [...u.functions.values()].some((f) => f.subs?.merged === true)) {
          obs.warnings.add(`${where}: more than ${MAX_RANGES} separate ranges in a table; the closest were merged, allowing the addresses between them`);
        }
        if (u.writes.some((w) => w !== null && w.overflow.size > 0)) {
          obs.warnings.add(`${where}: more than ${MAX_WRITE_ADDRESSES} written addresses in a table; the rest are allowed any value`);
        }
      }
    }
  }
  if (obs.cells.reached) obs.warnings.add(cellsWarning(obs.cells.max));
}

/** What it means that the cell budget is used up. */
export function cellsWarning(max: number): string {
  return `the observations reached their ceiling of ${max} entries: further detail is merged into what is there, and new sources or units are not learned`;
}

/** Turns the frames of every stream into Observations. */
export class Learner implements ModbusStreamSink {
  readonly observations = new Observations();
  private readonly req = new ModbusRequest();
  /** Pending records' buffers, reused. */
  private readonly free: Pending[] = [];

  private context(stream: TcpStream): StreamContext {
    let ctx = stream.context as StreamContext | undefined;
    if (ctx !== undefined) return ctx;
    const obs = this.observations;
    const device = obs.device(stream.server, stream.serverPort);
    let source: SourceObservation | null = null;
    if (device !== null) {
      source = device.source(stream.client, formatIp(stream.client));
      if (source === null && device.sources.size >= MAX_SOURCES) {
        obs.warnings.add(`${device.text}: more than ${MAX_SOURCES} client addresses: the ones after that are not learned`);
      }
      device.connections++;
      if (source !== null) source.connections++;
    }
    ctx = { device, source, pending: new Map() };
    stream.context = ctx;
    return ctx;
  }

  request(stream: TcpStream, buf: Buffer, start: number, end: number, timeMs: number): void {
    const ctx = this.context(stream);
    const tid = (buf[start]! << 8) | buf[start + 1]!;
    const earlier = ctx.pending.get(tid);
    if (earlier !== undefined) {
      // The same transaction id again before an answer: the first will never be matched.
      ctx.pending.delete(tid);
      this.settle(ctx, earlier, 0, true);
    } else if (ctx.pending.size >= MAX_OUTSTANDING) {
      const [oldTid, oldest] = ctx.pending.entries().next().value!;
      ctx.pending.delete(oldTid);
      this.settle(ctx, oldest, 0, true);
    }
    const p = this.free.pop() ?? { bytes: Buffer.allocUnsafe(MAX_ADU_LENGTH), length: 0, timeMs: 0 };
    buf.copy(p.bytes, 0, start, end);
    p.length = end - start;
    p.timeMs = timeMs;
    ctx.pending.set(tid, p);
  }

  response(stream: TcpStream, buf: Buffer, start: number, end: number): void {
    const ctx = this.context(stream);
    const tid = (buf[start]! << 8) | buf[start + 1]!;
    const p = ctx.pending.get(tid);
    const fc = buf[start + MBAP_HEADER_LENGTH]!;
    // The same unit and function as the request, or it answers something else.
    if (p === undefined || p.bytes[6] !== buf[start + 6] || p.bytes[MBAP_HEADER_LENGTH] !== (fc & ~EXCEPTION_FLAG)) {
      this.observations.counts.unmatchedResponses++;
      return;
    }
    ctx.pending.delete(tid);
    const exception = fc & EXCEPTION_FLAG ? (end - start > MBAP_HEADER_LENGTH + 1 ? buf[start + MBAP_HEADER_LENGTH + 1]! : 0xff) : 0;
    this.settle(ctx, p, exception, false);
  }

  closed(stream: TcpStream): void {
    const ctx = stream.context as StreamContext | undefined;
    if (ctx === undefined) return;
    for (const p of ctx.pending.values()) this.settle(ctx, p, 0, true);
    ctx.pending.clear();
  }

  /** Records a request with its outcome and frees its buffer. */
  private settle(ctx: StreamContext, p: Pending, exception: number, unanswered: boolean): void {
    this.record(ctx, p.bytes, p.length, p.timeMs, exception, unanswered);
    this.free.push(p);
  }

  private record(ctx: StreamContext, bytes: Buffer, length: number, t: number, exception: number, unanswered: boolean): void {
    const { device, source } = ctx;
    if (device === null) {
      this.observations.counts.skipped++;
      return;
    }
    observeRequest(this.observations, device, source, decodeRequest(bytes, 0, length, this.req), t, exception, unanswered);
  }

  /** Ceilings reached inside the per-table summaries, as warnings (call once, after the capture). */
  finish(): void {
    ceilingWarnings(this.observations);
  }
}

/** `host:port`, IPv6 in brackets. */
export function endpoint(a: StreamAddress, port: number): string {
  const ip = formatIp(a);
  return a.family === 6 ? `[${ip}]:${port}` : `${ip}:${port}`;
}
