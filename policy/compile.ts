// Normalized policy → frozen matcher. Per device: rules with their sources (parsed by validation),
// unit sets and grants. Per connection (forSource): the rules matching the client address, turned into one
// UnitPolicy per unit id (0..255) — per table merged intervals, value-bounded write segments,
// function grants — shared between every view and unit with the same rule set. decide.ts defines
// that layout and evaluates it per frame.

import { FunctionCode, MEI_READ_DEVICE_IDENTIFICATION } from '../modbus/index.js';
import type { ModbusRequest } from '../modbus/index.js';
import { CompiledSourceView, decide, FUNCTION_SLOTS, FunctionGrant, TABLE_COUNT, tableIndex, UnitPolicy } from './decide.js';
import type { DeviceDocument, NormalizedDevice, NormalizedPolicy, NormalizedRule } from './document.js';
import {
  FUNCTION_CODE_BY_NAME,
  LIMIT_FIELDS,
  MAX_COIL_VALUE,
  MAX_MEI_TYPE,
  MAX_REGISTER_VALUE,
  MAX_SUBFUNCTION,
  MAX_UNIT_ID,
  RATE_LIMIT_NONE,
  READ_DEVICE_IDENTIFICATION,
  READ_TABLES,
  WRITE_TABLES,
} from './format.js';
import type { FunctionInput, LimitKey, Mode, OnDeny } from './format.js';
import { IntervalSet, WriteSet } from './intervals.js';
import type { Grant, WriteGrant } from './intervals.js';
import { cidrContains, parseClientAddress } from './net.js';
import type { Cidr } from './net.js';
import type { CompiledDevice, CompiledPolicy, Decision, Endpoint, Limits, RateLimit, Sharing, SourceView } from './types.js';

const UNIT_COUNT = MAX_UNIT_ID + 1;
/**
 * Distinct rule sets a device keeps resolved views for. Sets come from the policy's own CIDR
 * boundaries, so real policies stay far below this; past it the caches start over rather than grow.
 */
export const MAX_CACHED_RULE_SETS = 4096;

/** `5` → [5, 5]; `"10-20"` → [10, 20] (canonical form: validated before). */
function span(x: number | string): [number, number] {
  if (typeof x === 'number') return [x, x];
  const dash = x.indexOf('-');
  return [Number(x.slice(0, dash)), Number(x.slice(dash + 1))];
}
function spans(x: number | string | (number | string)[]): [number, number][] {
  return Array.isArray(x) ? x.map(span) : [span(x)];
}

interface FunctionRuleGrant {
  readonly code: number;
  /** Sub-functions (FC8) or MEI types (FC43) allowed; null: all. */
  readonly narrow: readonly [number, number][] | null;
}

/** One rule, parsed. */
class CompiledRule {
  readonly sources: readonly Cidr[] | null;
  readonly units: Uint8Array;
  readonly read: Grant[][] = Array.from({ length: TABLE_COUNT }, () => []);
  readonly write: WriteGrant[][] = Array.from({ length: TABLE_COUNT }, () => []);
  readonly functions: FunctionRuleGrant[] = [];
  /** Whether the rule can match anything at all (sources, units and grants non-empty). */
  readonly live: boolean;

  constructor(
    readonly index: number,
    rule: NormalizedRule,
  ) {
    const doc = rule.document;
    this.sources = rule.sources;
    this.units = new Uint8Array(UNIT_COUNT);
    if (doc.units === undefined) this.units.fill(1);
    else for (const [lo, hi] of doc.units.map(span)) this.units.fill(1, lo, hi + 1);
    for (const t of READ_TABLES) {
      for (const [lo, hi] of (doc.read?.[t] ?? []).map(span)) this.read[tableIndex(t)]!.push({ lo, hi, rule: index });
    }
    for (const t of WRITE_TABLES) {
      const maxValue = t === 'coils' ? MAX_COIL_VALUE : MAX_REGISTER_VALUE;
      for (const entry of doc.write?.[t] ?? []) {
        const bounded = typeof entry === 'object';
        const addresses = bounded ? spans(entry.addresses) : [span(entry)];
        const values = bounded && entry.values !== undefined ? spans(entry.values) : null;
        for (const [lo, hi] of addresses) {
          if (values === null) this.write[tableIndex(t)]!.push({ lo, hi, rule: index, vlo: 0, vhi: maxValue, bounded: false });
          else for (const [vlo, vhi] of values) this.write[tableIndex(t)]!.push({ lo, hi, rule: index, vlo, vhi, bounded: true });
        }
      }
    }
    for (const f of doc.functions ?? []) this.functions.push(functionGrant(f));
    const grants =
      this.read.some((g) => g.length > 0) ||
      this.write.some((g) => g.length > 0) ||
      this.functions.some((f) => f.narrow === null || f.narrow.length > 0);
    this.live = grants && this.units.includes(1) && (this.sources === null || this.sources.length > 0);
  }

  matchesSource(ip: ReturnType<typeof parseClientAddress>): boolean {
    if (this.sources === null) return true;
    if (ip === null) return false;
    for (const c of this.sources) if (cidrContains(c, ip)) return true;
    return false;
  }
}

function functionGrant(f: FunctionInput): FunctionRuleGrant {
  if (typeof f === 'number') return { code: f, narrow: null };
  const name = typeof f === 'string' ? f : f.code;
  const code = typeof name === 'number' ? name : FUNCTION_CODE_BY_NAME.get(name)!;
  if (name === READ_DEVICE_IDENTIFICATION) {
    return { code, narrow: [[MEI_READ_DEVICE_IDENTIFICATION, MEI_READ_DEVICE_IDENTIFICATION]] };
  }
  if (typeof f === 'string') return { code, narrow: null };
  const narrow = f.subfunctions ?? f.mei_types;
  return { code, narrow: narrow === undefined ? null : narrow.map(span) };
}

function buildUnitPolicy(rules: readonly CompiledRule[], names: readonly string[]): UnitPolicy {
  const read: (IntervalSet | null)[] = [];
  const write: (WriteSet | null)[] = [];
  for (let t = 0; t < TABLE_COUNT; t++) {
    const r = rules.flatMap((rule) => rule.read[t]!);
    read.push(r.length > 0 ? new IntervalSet(r, names) : null);
    const w = rules.flatMap((rule) => rule.write[t]!);
    write.push(w.length > 0 ? new WriteSet(w, names) : null);
  }
  const functions: (FunctionGrant | null)[] = new Array<FunctionGrant | null>(FUNCTION_SLOTS).fill(null);
  const byCode = new Map<number, { rule: number; narrow: FunctionRuleGrant['narrow'] }[]>();
  for (const rule of rules) {
    for (const f of rule.functions) {
      if (f.narrow !== null && f.narrow.length === 0) continue;
      const list = byCode.get(f.code) ?? [];
      list.push({ rule: rule.index, narrow: f.narrow });
      byCode.set(f.code, list);
    }
  }
  for (const [code, list] of byCode) {
    const all = list.find((g) => g.narrow === null);
    const allRule = all === undefined ? null : names[all.rule]!;
    let sub: IntervalSet | null = null;
    if (code === FunctionCode.DIAGNOSTICS || code === FunctionCode.ENCAPSULATED_INTERFACE_TRANSPORT) {
      const max = code === FunctionCode.DIAGNOSTICS ? MAX_SUBFUNCTION : MAX_MEI_TYPE;
      sub = new IntervalSet(
        list.flatMap((g) => (g.narrow ?? [[0, max]]).map(([lo, hi]): Grant => ({ lo, hi, rule: g.rule }))),
        names,
      );
    }
    functions[code] = new FunctionGrant(allRule, names[list[0]!.rule]!, sub);
  }
  return new UnitPolicy(read, write, functions);
}

/** `Limits` (camelCase, for the proxy) from a normalized device's limits. */
function limitsOf(d: DeviceDocument): Limits {
  const out = {} as Record<string, number>;
  for (const [k, f] of Object.entries(LIMIT_FIELDS)) out[f.key] = d.limits[k as LimitKey];
  return out as unknown as Limits;
}

function rateLimitOf(d: DeviceDocument): RateLimit | null {
  const r = d.rate_limit;
  if (r === RATE_LIMIT_NONE) return null;
  return { requestsPerSecond: r.requests_per_second, writesPerSecond: r.writes_per_second, burst: r.burst };
}

const NO_UNITS: readonly (UnitPolicy | null)[] = Object.freeze(new Array<UnitPolicy | null>(UNIT_COUNT).fill(null));

class CompiledDeviceImpl implements CompiledDevice {
  readonly name: string;
  readonly listen: Endpoint;
  readonly upstream: Endpoint;
  readonly sharing: Readonly<Sharing> | null;
  readonly mode: Mode;
  readonly onDeny: OnDeny;
  readonly limits: Readonly<Limits>;
  readonly rateLimit: Readonly<RateLimit> | null;
  readonly ruleCount: number;
  readonly document: DeviceDocument;
  private readonly rules: readonly CompiledRule[];
  private readonly names: readonly string[];
  /** Rule set (indexes joined) → the units array of a view. */
  private readonly views = new Map<string, readonly (UnitPolicy | null)[]>();
  /** Rule set → its UnitPolicy (null: no rule), shared by views and units. */
  private readonly unitPolicies = new Map<string, UnitPolicy | null>();

  constructor(device: NormalizedDevice) {
    const document = device.document;
    this.document = document;
    this.name = document.name;
    this.listen = Object.freeze(device.listen);
    this.upstream = Object.freeze(device.upstream);
    const n = document.upstream_connections;
    this.sharing = n === undefined ? null : Object.freeze({ connections: n, maxInFlight: document.upstream_max_in_flight! });
    this.mode = document.mode;
    this.onDeny = document.on_deny;
    this.limits = Object.freeze(limitsOf(document));
    const rate = rateLimitOf(document);
    this.rateLimit = rate === null ? null : Object.freeze(rate);
    this.rules = device.rules.map((r, i) => new CompiledRule(i, r));
    this.names = document.rules.map((r) => r.name);
    this.ruleCount = this.rules.length;
    Object.freeze(this);
  }

  forSource(address: string): SourceView {
    const ip = parseClientAddress(address);
    const matching = this.rules.filter((r) => r.live && r.matchesSource(ip));
    if (matching.length === 0) return new CompiledSourceView(this, false, NO_UNITS);
    const key = matching.map((r) => r.index).join(',');
    let units = this.views.get(key);
    if (units === undefined) {
      if (this.views.size >= MAX_CACHED_RULE_SETS) this.views.clear();
      units = Object.freeze(Array.from({ length: UNIT_COUNT }, (_, u) => this.unitPolicy(matching.filter((r) => r.units[u] === 1))));
      this.views.set(key, units);
    }
    return new CompiledSourceView(this, true, units);
  }

  private unitPolicy(rules: readonly CompiledRule[]): UnitPolicy | null {
    if (rules.length === 0) return null;
    const key = rules.map((r) => r.index).join(',');
    let p = this.unitPolicies.get(key);
    if (p === undefined) {
      if (this.unitPolicies.size >= MAX_CACHED_RULE_SETS) this.unitPolicies.clear();
      p = buildUnitPolicy(rules, this.names);
      this.unitPolicies.set(key, p);
    }
    return p;
  }

  decide(view: SourceView, req: ModbusRequest, out: Decision): Decision {
    return decide(this, view, req, out);
  }
}

export interface CompileMeta {
  /** sha256 of the source text, hex. */
  readonly sha256: string;
  /** Store version; 0 for a file. */
  readonly version: number;
}

/** Compiles a normalized policy into the frozen policy the proxy swaps in whole. */
export function compilePolicy(normalized: NormalizedPolicy, meta: CompileMeta): CompiledPolicy {
  // Freezes every device's and rule's document too: they are the same objects.
  const doc = deepFreeze(normalized.document);
  const devices = new Map<string, CompiledDevice>();
  for (const d of normalized.devices) devices.set(d.document.name, new CompiledDeviceImpl(d));
  return Object.freeze({ sha256: meta.sha256, version: meta.version, devices, document: doc });
}

function deepFreeze<T>(x: T): T {
  if (typeof x === 'object' && x !== null && !Object.isFrozen(x)) {
    Object.freeze(x);
    for (const v of Object.values(x)) deepFreeze(v);
  }
  return x;
}
