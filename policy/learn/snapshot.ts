// Observations as JSON, so instances in front of the same PLC can keep what they learn in one
// place (Redis, under the store's prefix) and a restart loses nothing. Plain data, one device per
// snapshot:
//
// | field        | holds                                                                       |
// |--------------|-----------------------------------------------------------------------------|
// | v            | SNAPSHOT_VERSION                                                            |
// | device       | the policy's name, listen and upstream (null: learned from a capture)       |
// | seen         | [count, first ms, last ms, exceptions, exception code bits]; first/last null when count is 0 |
// | connections, malformed, skipped | sums                                                     |
// | sources      | [{ address, connections, seen, units: [{ id, seen, reads, writes, functions }] }] |
// | reads        | { table: [[lo, hi, seen], ...] }                                            |
// | writes       | { table: { addresses: [[address, seen, umin, umax, smin, smax, any], ...], overflow: [[lo, hi, seen], ...] } } |
// | functions    | [[code, seen, subs or null], ...] with subs as [[lo, hi, seen], ...]        |
//
// mergeSnapshots is the union: ranges joined as the model joins them, counts summed, first seen the
// earliest, last seen the latest, value bounds widened to cover both, "any value" if either says
// so; the cell budget bounds the result as it bounds live observations.

import { PlcguardError } from '../../modbus/errors.js';
import { READ_TABLES, WRITE_TABLES } from '../format.js';
import { parseClientAddress, type IpAddress } from '../net.js';
import { AddressWrites, Cells, LIVE_MAX_CELLS, Observations, Seen, type DeviceObservation, type UnitObservation, type ObservedRanges, type PolicyDevice } from './observe.js';

export const SNAPSHOT_VERSION = 1;

type SeenJson = [number, number | null, number | null, number, number];
type RangeJson = [number, number, SeenJson];
type AddressJson = [number, SeenJson, number, number, number, number, boolean];

interface UnitJson {
  id: number;
  seen: SeenJson;
  reads: Record<string, RangeJson[]>;
  writes: Record<string, { addresses: AddressJson[]; overflow: RangeJson[] }>;
  functions: [number, SeenJson, RangeJson[] | null][];
}

interface SourceJson {
  address: string;
  connections: number;
  seen: SeenJson;
  units: UnitJson[];
}

export interface DeviceSnapshot {
  v: number;
  device: PolicyDevice | null;
  /** The PLC's `host:port`. */
  upstream: string;
  seen: SeenJson;
  connections: number;
  malformed: number;
  skipped: number;
  sources: SourceJson[];
}

/** A snapshot that isn't one (another program's key, a newer format): nothing is merged into it. */
export class SnapshotError extends PlcguardError {
  override readonly name = 'SnapshotError';
  constructor(message: string) {
    super('ERR_LEARN_SNAPSHOT', message);
  }
}

const UNKNOWN_ADDRESS: IpAddress = { family: 4, w0: 0, w1: 0, w2: 0, w3: 0 };

function seenJson(s: Seen): SeenJson {
  return [s.count, s.count === 0 ? null : s.first, s.count === 0 ? null : s.last, s.exceptions, s.codes];
}

function seenOf(j: SeenJson): Seen {
  const s = new Seen();
  s.count = j[0];
  if (j[1] !== null) s.first = j[1];
  if (j[2] !== null) s.last = j[2];
  s.exceptions = j[3];
  s.codes = j[4];
  return s;
}

function rangesJson(r: ObservedRanges): RangeJson[] {
  const out: RangeJson[] = [];
  for (let i = 0; i < r.size; i++) out.push([r.los[i]!, r.his[i]!, seenJson(r.seen[i]!)]);
  return out;
}

function unitJson(id: number, u: UnitObservation): UnitJson {
  const reads: UnitJson['reads'] = {};
  for (const t of READ_TABLES) {
    const r = u.readsOf(t);
    if (r !== null) reads[t] = rangesJson(r);
  }
  const writes: UnitJson['writes'] = {};
  for (const t of WRITE_TABLES) {
    const w = u.writesOf(t);
    if (w === null) continue;
    const addresses: AddressJson[] = [...w.byAddress]
      .sort((a, b) => a[0] - b[0])
      .map(([a, aw]) => [a, seenJson(aw.seen), aw.umin, aw.umax, aw.smin, aw.smax, aw.any]);
    writes[t] = { addresses, overflow: rangesJson(w.overflow) };
  }
  const functions = [...u.functions.values()].sort((a, b) => a.code - b.code).map((f): [number, SeenJson, RangeJson[] | null] => [f.code, seenJson(f.seen), f.subs === null ? null : rangesJson(f.subs)]);
  return { id, seen: seenJson(u.seen), reads, writes, functions };
}

/** The device's observations as plain data (sorted: the same observations, the same JSON). */
export function toSnapshot(d: DeviceObservation): DeviceSnapshot {
  const sources = [...d.sources.keys()]
    .sort()
    .map((k) => d.sources.get(k)!)
    .map((s) => ({
      address: s.text,
      connections: s.connections,
      seen: seenJson(s.seen),
      units: [...s.units].sort((a, b) => a[0] - b[0]).map(([id, u]) => unitJson(id, u)),
    }));
  return { v: SNAPSHOT_VERSION, device: d.policy, upstream: d.text, seen: seenJson(d.seen), connections: d.connections, malformed: d.malformed, skipped: d.skipped, sources };
}

/** Host and port of `host:port` or `[v6]:port`. */
function splitEndpoint(text: string): { address: IpAddress; port: number } {
  const colon = text.lastIndexOf(':');
  const host = text.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
  return { address: parseClientAddress(host) ?? UNKNOWN_ADDRESS, port: Number(text.slice(colon + 1)) };
}

function addRanges(into: ObservedRanges, list: RangeJson[]): void {
  for (const [lo, hi, s] of list) into.addSeen(lo, hi, seenOf(s));
}

/** Adds a snapshot to `obs` (its device made if new), within obs' cell budget. */
export function addSnapshot(obs: Observations, snap: unknown): DeviceObservation {
  const s = snap as DeviceSnapshot;
  if (typeof s !== 'object' || s === null || s.v !== SNAPSHOT_VERSION || !Array.isArray(s.sources) || typeof s.upstream !== 'string') {
    throw new SnapshotError(`not a plcguard learn snapshot of version ${SNAPSHOT_VERSION}`);
  }
  const at = splitEndpoint(s.upstream);
  const d = obs.device(at.address, at.port, s.device?.name ?? s.upstream)!;
  // A throwaway device of the same budget holds the snapshot; then the model's own merge adds it.
  const one = new Observations(new Cells(Infinity)).device(at.address, at.port)!;
  one.policy = s.device;
  one.seen.merge(seenOf(s.seen));
  one.connections = s.connections;
  one.malformed = s.malformed;
  one.skipped = s.skipped;
  for (const src of s.sources) {
    const so = one.source(parseClientAddress(src.address) ?? UNKNOWN_ADDRESS, src.address)!;
    so.connections = src.connections;
    so.seen.merge(seenOf(src.seen));
    for (const uj of src.units) {
      const u = so.unit(uj.id)!;
      u.seen.merge(seenOf(uj.seen));
      for (const t of READ_TABLES) if (uj.reads[t] !== undefined) addRanges(u.read(t), uj.reads[t]);
      for (const t of WRITE_TABLES) {
        const wj = uj.writes[t];
        if (wj === undefined) continue;
        const w = u.write(t);
        for (const [a, sj, umin, umax, smin, smax, any] of wj.addresses) {
          const aw = new AddressWrites();
          aw.seen.merge(seenOf(sj));
          Object.assign(aw, { umin, umax, smin, smax, any });
          w.mergeAddress(a, aw);
        }
        addRanges(w.overflow, wj.overflow);
      }
      for (const [code, sj, subs] of uj.functions) {
        const f = u.fn(code);
        f.seen.merge(seenOf(sj));
        if (subs !== null && f.subs !== null) addRanges(f.subs, subs);
      }
    }
  }
  d.mergeFrom(one);
  // The latest name, listen and upstream win (a reload may have changed them).
  if (s.device !== null) d.policy = s.device;
  return d;
}

/**
 * The union of two snapshots of one device (pure): what Redis holds merged with what an instance
 * learned since it last wrote. At most `maxCells` entries, as live observations.
 */
export function mergeSnapshots(a: unknown, b: unknown, maxCells = LIVE_MAX_CELLS): DeviceSnapshot {
  const obs = new Observations(new Cells(maxCells));
  addSnapshot(obs, a);
  return toSnapshot(addSnapshot(obs, b));
}
