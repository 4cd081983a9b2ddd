// Normalized policy → frozen matcher, built whole here, at load: nothing is compiled on the
// connection path. Per device:
//   1. Rules: sources (parsed by validation), unit ranges, grants.
//   2. Source regions: each address family's space (IPv4 and IPv6 apart; addresses as 128-bit
//      numbers, a CIDR as an interval) cut at the bounds of every rule's CIDRs. All addresses of a
//      region match the same rules; each distinct rule set gets one prebuilt view, and forSource
//      is a binary search over the region starts.
//   3. Per view, per unit id: the rules covering that unit, built once per distinct set into a
//      UnitPolicy (per table merged intervals, value-bounded write segments, function grants) that
//      every view and unit with that set shares; each of its parts (a table, the function table)
//      is built once per distinct set of rules granting in it. decide.ts defines that layout.
// What this builds grows with rules × regions × units × grants, and overlapping sources or YAML
// aliases make that huge from a small file (a 23 KB policy exhausted the heap at the
// first connection). So it is counted first, stage by stage, each stage costing no more than the
// count already found within the budget, and a policy over MAX_COMPILE_ENTRIES is refused before
// anything big is built.

import { FunctionCode, MEI_READ_DEVICE_IDENTIFICATION } from '../modbus/index.js';
import type { ModbusRequest } from '../modbus/index.js';
import { CompiledSourceView, decide, decideLearning, FUNCTION_SLOTS, FunctionGrant, TABLE_COUNT, tableIndex, UnitPolicy } from './decide.js';
import type { DeviceDocument, NormalizedDevice, NormalizedPolicy, RuleDocument } from './document.js';
import { PolicyTooComplexError } from './errors.js';
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
  span,
  WRITE_TABLES,
} from './format.js';
import type { FunctionInput, LimitKey, Mode, OnDeny } from './format.js';
import { IntervalSet, WriteSet, writeSetSize } from './intervals.js';
import type { Grant, WriteGrant } from './intervals.js';
import { parseClientAddress } from './net.js';
import type { Cidr, IpAddress } from './net.js';
import type { CompiledDevice, CompiledPolicy, Decision, Endpoint, Limits, RateLimit, Route, Sharing, SourceView } from './types.js';
import { formatEndpoint } from './net.js';

const UNIT_COUNT = MAX_UNIT_ID + 1;

/**
 * What compiling one policy may build, in entries, all devices together. An entry is about one
 * slot of the compiled tables, counted as:
 * - per rule, one per grant: read range, write range × value range, function (plus its narrowing);
 * - per source region (a range of client addresses matching the same rules): one, plus one per
 *   matching rule;
 * - per distinct rule set of the regions: one per unit id (its view's unit table), one per unit
 *   range of its rules, and one per rule in each run of unit ids those ranges cut;
 * - per distinct rule set of a unit: one, plus, for each part (table) not yet built for the same
 *   rules, their grants there, a write grant once per address segment it spans; a function table
 *   adds one per function code.
 * Compiling costs well under a microsecond per entry: a 1,000-rule site policy needs ~340,000, and
 * the worst shapes at the budget take under a second, once, at load (README, "Policy complexity").
 */
export const MAX_COMPILE_ENTRIES = 1_000_000;

function spans(x: number | string | (number | string)[]): [number, number][] {
  return Array.isArray(x) ? x.map(span) : [span(x)];
}
function spanCount(x: number | string | (number | string)[]): number {
  return Array.isArray(x) ? x.length : 1;
}

interface FunctionRuleGrant {
  readonly code: number;
  /** Sub-functions (FC8) or MEI types (FC43) allowed; null: all. */
  readonly narrow: readonly [number, number][] | null;
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

// The parts of a unit policy, each built once per distinct set of rules granting anything in it
// and shared by every unit policy with that set: the read tables, the write tables, the functions.
const READ_PART = 0;
const WRITE_PART = TABLE_COUNT;
const FUNCTIONS_PART = 2 * TABLE_COUNT;
const PART_COUNT = FUNCTIONS_PART + 1;

/**
 * Grants a rule's document expands to per part, without expanding them: a write entry is every
 * address range × every value range, which aliases can make far larger than the file. A function
 * counts with its narrowing; one narrowed to nothing grants nothing.
 */
function partGrants(doc: RuleDocument, functions: readonly FunctionRuleGrant[]): Int32Array {
  const n = new Int32Array(PART_COUNT);
  for (const t of READ_TABLES) n[READ_PART + tableIndex(t)] = doc.read?.[t]?.length ?? 0;
  for (const t of WRITE_TABLES) {
    for (const e of doc.write?.[t] ?? []) n[WRITE_PART + tableIndex(t)]! += typeof e === 'object' ? spanCount(e.addresses) * (e.values === undefined ? 1 : spanCount(e.values)) : 1;
  }
  for (const f of functions) if (f.narrow === null || f.narrow.length > 0) n[FUNCTIONS_PART]! += 1 + (f.narrow?.length ?? 0);
  return n;
}

/** Sorted, disjoint, non-adjacent [lo, hi] ranges covering the same numbers. */
function mergeRanges(ranges: [number, number][]): [number, number][] {
  const out: [number, number][] = [];
  for (const [lo, hi] of ranges.sort((a, b) => a[0] - b[0])) {
    const last = out[out.length - 1];
    if (last !== undefined && lo <= last[1] + 1) last[1] = Math.max(last[1], hi);
    else out.push([lo, hi]);
  }
  return out;
}

/** One rule: what the source and unit sweeps need, and its grants' size. Grants come later. */
class CompiledRule {
  readonly sources: readonly Cidr[] | null;
  /** Merged unit id ranges (all of 0..255 when units are omitted). */
  readonly units: readonly [number, number][];
  readonly functions: readonly FunctionRuleGrant[];
  /** Grants per part of a unit policy (see PART_COUNT). */
  readonly parts: Int32Array;
  /** All of them. */
  readonly grants: number;
  /** Whether the rule can match anything at all (sources, units and grants non-empty). */
  readonly live: boolean;

  constructor(
    readonly index: number,
    readonly document: RuleDocument,
    sources: readonly Cidr[] | null,
    /** The client role the plan is for (null: no role, or one no rule names). */
    role: string | null,
  ) {
    this.sources = sources;
    this.units = document.units === undefined ? [[0, MAX_UNIT_ID]] : mergeRanges(document.units.map(span));
    this.functions = (document.functions ?? []).map(functionGrant);
    this.parts = partGrants(document, this.functions);
    this.grants = this.parts.reduce((a, b) => a + b, 0);
    const roleMatches = document.roles === undefined || (role !== null && document.roles.includes(role));
    this.live = roleMatches && this.grants > 0 && this.units.length > 0 && (sources === null || sources.length > 0);
  }
}

/** A rule's read and write grants per table, expanded (once the budget allows it). */
class RuleGrants {
  readonly read: Grant[][] = Array.from({ length: TABLE_COUNT }, () => []);
  readonly write: WriteGrant[][] = Array.from({ length: TABLE_COUNT }, () => []);

  constructor(rule: CompiledRule) {
    const doc = rule.document;
    const index = rule.index;
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
  }
}

// ---------------------------------------------------------------------------------------------
// Sweeps: slots 0..n−1 (source regions, unit ids), each rule active over some [from, to) ranges
// ---------------------------------------------------------------------------------------------

/** Ranges of slots per rule, disjoint and non-adjacent within a rule. */
class Ranges {
  readonly rule: number[] = [];
  readonly from: number[] = [];
  readonly to: number[] = [];
  add(rule: number, from: number, to: number): void {
    this.rule.push(rule);
    this.from.push(from);
    this.to.push(to);
  }
}

/** Where runs start: at slot 0 and wherever a range starts or ends. */
function runStarts(n: number, r: Ranges): Uint8Array {
  const mark = new Uint8Array(n);
  mark[0] = 1;
  for (let i = 0; i < r.from.length; i++) {
    mark[r.from[i]!] = 1;
    if (r.to[i]! < n) mark[r.to[i]!] = 1;
  }
  return mark;
}

/** Runs, and rules summed over runs, without listing them: what `sweep` will cost. */
function countRuns(n: number, r: Ranges, always: number): { runs: number; members: number } {
  const mark = runStarts(n, r);
  const delta = new Int32Array(n + 1);
  for (let i = 0; i < r.from.length; i++) {
    delta[r.from[i]!]!++;
    delta[r.to[i]!]!--;
  }
  let active = always;
  let runs = 0;
  let members = 0;
  for (let k = 0; k < n; k++) {
    active += delta[k]!;
    if (mark[k] === 1) {
      runs++;
      members += active;
    }
  }
  return { runs, members };
}

/** Indexes of `slots` grouped by value 0..n: group k is items[offsets[k], offsets[k + 1]). */
function bySlot(n: number, slots: readonly number[]): { offsets: Int32Array; items: Int32Array } {
  const offsets = new Int32Array(n + 3);
  for (const s of slots) offsets[s + 2]!++;
  for (let k = 2; k < offsets.length; k++) offsets[k]! += offsets[k - 1]!;
  const items = new Int32Array(slots.length);
  slots.forEach((s, i) => (items[offsets[s + 1]!++] = i));
  return { offsets, items };
}

/**
 * Calls `run(from, to, rules)` for each run of slots with the same active rules (`always` are
 * active everywhere), the rules sorted. `slot` is scratch of one entry per rule, all −1, and is
 * left so. Costs O(ranges + n + the rules of every run × log).
 */
function sweep(n: number, r: Ranges, always: readonly number[], slot: Int32Array, run: (from: number, to: number, rules: Int32Array) => void): void {
  const mark = runStarts(n, r);
  const starts = bySlot(n, r.from);
  const ends = bySlot(n, r.to);
  const active: number[] = [];
  const add = (rule: number): void => {
    slot[rule] = active.length;
    active.push(rule);
  };
  always.forEach(add);
  let runFrom = 0;
  let rules = new Int32Array(0);
  for (let k = 0; k < n; k++) {
    if (mark[k] === 0) continue;
    if (k > 0) run(runFrom, k, rules);
    for (let e = ends.offsets[k]!; e < ends.offsets[k + 1]!; e++) {
      // Swap-remove: order is restored by the sort below.
      const rule = r.rule[ends.items[e]!]!;
      const last = active.pop()!;
      if (last !== rule) {
        active[slot[rule]!] = last;
        slot[last] = slot[rule]!;
      }
      slot[rule] = -1;
    }
    for (let s = starts.offsets[k]!; s < starts.offsets[k + 1]!; s++) add(r.rule[starts.items[s]!]!);
    runFrom = k;
    rules = Int32Array.from(active).sort();
  }
  run(runFrom, n, rules);
  for (const rule of active) slot[rule] = -1;
}

/** Distinct rule sets, numbered in the order first seen. */
class RuleSets {
  private readonly index = new Map<string, number>();
  readonly sets: Int32Array[] = [];
  /** The number of `rules`, added when new. */
  of(rules: Int32Array): number {
    const key = rules.join(',');
    let i = this.index.get(key);
    if (i === undefined) {
      i = this.sets.length;
      this.sets.push(rules);
      this.index.set(key, i);
    }
    return i;
  }
}

// ---------------------------------------------------------------------------------------------
// Source regions
// ---------------------------------------------------------------------------------------------

const FAMILIES = [4, 6] as const;
const FAMILY_BITS = { 4: 32n, 6: 128n } as const;
const WORD_BITS = 32n;
const WORD_MASK = 0xffffffffn;

/** A CIDR as [first address, first address after], addresses as numbers of its family's bits. */
function cidrInterval(c: Cidr): [bigint, bigint] {
  const lo = (BigInt(c.w0) << 96n) | (BigInt(c.w1) << 64n) | (BigInt(c.w2) << 32n) | BigInt(c.w3);
  return [lo, lo + (1n << (FAMILY_BITS[c.family] - BigInt(c.prefix)))];
}

/** One family's address space cut into regions at the rules' CIDR bounds. */
class FamilyRegions {
  /** Start of each region (the first is 0); a region ends where the next starts. */
  readonly starts: bigint[];
  readonly ranges = new Ranges();

  constructor(family: 4 | 6, rules: readonly CompiledRule[]) {
    // Rules often share one list of sources (an anchor, aliased in each): each distinct list is
    // turned into intervals once.
    const lists = new Map<string, { intervals: [bigint, bigint][]; rules: number[] }>();
    for (const r of rules) {
      if (!r.live || r.sources === null) continue;
      const key = r.document.sources!.join(',');
      let list = lists.get(key);
      if (list === undefined) {
        list = { intervals: r.sources.filter((c) => c.family === family).map(cidrInterval), rules: [] };
        lists.set(key, list);
      }
      list.rules.push(r.index);
    }
    const end = 1n << FAMILY_BITS[family];
    const points = new Set<bigint>([0n]);
    for (const { intervals } of lists.values()) {
      for (const [lo, after] of intervals) {
        points.add(lo);
        points.add(after);
      }
    }
    points.delete(end);
    this.starts = [...points].sort((a, b) => (a < b ? -1 : 1));
    const slotOf = new Map(this.starts.map((p, k) => [p, k]));
    slotOf.set(end, this.starts.length);
    for (const { intervals, rules: using } of lists.values()) {
      const merged = mergeRanges(intervals.map(([lo, after]): [number, number] => [slotOf.get(lo)!, slotOf.get(after)! - 1]));
      for (const rule of using) for (const [from, last] of merged) this.ranges.add(rule, from, last + 1);
    }
  }
}

/** The regions of one family as forSource searches them: starts as four 32-bit words each. */
class RegionTable {
  private readonly words: Uint32Array;

  constructor(
    starts: readonly bigint[],
    private readonly views: readonly SourceView[],
  ) {
    this.words = new Uint32Array(4 * starts.length);
    starts.forEach((s, k) => {
      for (let w = 0; w < 4; w++) this.words[4 * k + w] = Number((s >> (WORD_BITS * BigInt(3 - w))) & WORD_MASK);
    });
  }

  /** The view of the region holding `a`: the last region starting at or below it (region 0 starts at 0). */
  find(a: IpAddress): SourceView {
    let lo = 1;
    let hi = this.views.length - 1;
    let found = 0;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (this.startsAtOrBelow(mid, a)) {
        found = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    return this.views[found]!;
  }

  private startsAtOrBelow(k: number, a: IpAddress): boolean {
    const w = this.words;
    const i = 4 * k;
    if (w[i] !== a.w0) return w[i]! < a.w0;
    if (w[i + 1] !== a.w1) return w[i + 1]! < a.w1;
    if (w[i + 2] !== a.w2) return w[i + 2]! < a.w2;
    return w[i + 3]! <= a.w3;
  }
}

// ---------------------------------------------------------------------------------------------
// The plan: everything counted, nothing big built
// ---------------------------------------------------------------------------------------------

/** Entries counted against the budget, across the devices of one policy. */
class Budget {
  used = 0;
  /** Whether `n` more entries would stay within the budget (nothing counted). */
  fits(n: number): boolean {
    return this.used + n <= MAX_COMPILE_ENTRIES;
  }
  /** Counts `n` more entries; false once the total is over the budget. */
  charge(n: number): boolean {
    this.used += n;
    return this.used <= MAX_COMPILE_ENTRIES;
  }
}

interface DevicePlan {
  readonly rules: readonly CompiledRule[];
  /** Per family: region starts and the rule set of each region. */
  readonly families: readonly { readonly starts: bigint[]; readonly sets: number[] }[];
  /** The rule set of an address that is not an IP address: the rules without sources. */
  readonly anySet: number;
  /** Per source rule set: the unit policy of each unit id (−1: none), or null for no rules. */
  readonly unitSets: readonly (Int32Array | null)[];
  /** Per unit policy (a distinct unit rule set): the number of each of its parts (−1: none). */
  readonly unitPolicies: readonly Int32Array[];
  /** Per part: its distinct rule sets (of the rules granting anything in it). */
  readonly partSets: readonly (readonly Int32Array[])[];
  /** Grants of each live rule (null for the others). */
  readonly grants: readonly (RuleGrants | null)[];
  readonly entries: number;
}

/**
 * Counts and plans one device. Each stage is counted before it is listed, and listing a stage
 * costs about its count, so planning a device over the budget stops early and cheaply. Null when
 * over budget (`budget.used` says by how much, at least).
 */
function planDevice(device: NormalizedDevice, budget: Budget, role: string | null): DevicePlan | null {
  const before = budget.used;
  const rules = device.rules.map((r, i) => new CompiledRule(i, r.document, r.sources, role));
  if (!budget.charge(rules.reduce((n, r) => n + r.grants, 0))) return null;

  // Source regions: counted from their bounds, then listed with their rule sets.
  const always = rules.filter((r) => r.live && r.sources === null).map((r) => r.index);
  const regions = FAMILIES.map((f) => new FamilyRegions(f, rules));
  let count = 1 + always.length; // the non-IP "region"
  for (const g of regions) {
    const c = countRuns(g.starts.length, g.ranges, always.length);
    count += c.runs + c.members;
  }
  if (!budget.charge(count)) return null;
  const sourceSets = new RuleSets();
  const slot = new Int32Array(rules.length).fill(-1);
  const families = regions.map((g) => {
    const starts: bigint[] = [];
    const sets: number[] = [];
    sweep(g.starts.length, g.ranges, always, slot, (from, _to, set) => {
      starts.push(g.starts[from]!);
      sets.push(sourceSets.of(set));
    });
    return { starts, sets };
  });
  const anySet = sourceSets.of(Int32Array.from(always));

  // Units of each source rule set: its unit table and its rules' unit ranges, then the runs.
  const sets = sourceSets.sets;
  const nonEmpty = sets.filter((s) => s.length > 0);
  if (!budget.charge(nonEmpty.reduce((n, s) => n + UNIT_COUNT + s.reduce((m, r) => m + rules[r]!.units.length, 0), 0))) return null;
  const unitRanges = sets.map((s) => {
    const ranges = new Ranges();
    for (const r of s) for (const [lo, hi] of rules[r]!.units) ranges.add(r, lo, hi + 1);
    return ranges;
  });
  if (!budget.charge(unitRanges.reduce((n, r) => n + countRuns(UNIT_COUNT, r, 0).members, 0))) return null;
  const unitRuleSets = new RuleSets();
  const unitSets = sets.map((s, i) => {
    if (s.length === 0) return null;
    const units = new Int32Array(UNIT_COUNT);
    sweep(UNIT_COUNT, unitRanges[i]!, [], slot, (from, to, set) => units.fill(set.length === 0 ? -1 : unitRuleSets.of(set), from, to));
    return units;
  });

  // Unit policies: one entry each, and each part built for the first time: its rules' grants (a
  // function table, too). Then the address segments write grants span beyond their first.
  const partSets = Array.from({ length: PART_COUNT }, () => new RuleSets());
  count = 0;
  const unitPolicies = unitRuleSets.sets.map((s) => {
    count++;
    const parts = new Int32Array(PART_COUNT).fill(-1);
    for (let p = 0; p < PART_COUNT; p++) {
      const granting = s.filter((r) => rules[r]!.parts[p]! > 0);
      if (granting.length === 0) continue;
      const known = partSets[p]!.sets.length;
      parts[p] = partSets[p]!.of(granting);
      if (parts[p] === known) count += (p === FUNCTIONS_PART ? FUNCTION_SLOTS : 0) + granting.reduce((n, r) => n + rules[r]!.parts[p]!, 0);
    }
    return parts;
  });
  if (!budget.charge(count)) return null;
  const grants = rules.map((r) => (r.live ? new RuleGrants(r) : null));
  count = 0;
  for (const t of WRITE_TABLES) {
    for (const s of partSets[WRITE_PART + tableIndex(t)]!.sets) {
      const w = [...s].flatMap((r) => grants[r]!.write[tableIndex(t)]!);
      count += writeSetSize(w) - w.length;
    }
  }
  if (!budget.charge(count)) return null;
  return { rules, families, anySet, unitSets, unitPolicies, partSets: partSets.map((p) => p.sets), grants, entries: budget.used - before };
}

// ---------------------------------------------------------------------------------------------
// Building
// ---------------------------------------------------------------------------------------------

/** Shared by every unit policy that grants no function. */
const NO_FUNCTIONS: readonly (FunctionGrant | null)[] = Object.freeze(new Array<FunctionGrant | null>(FUNCTION_SLOTS).fill(null));

/** Every part of every unit policy of a device, each built once. */
class Parts {
  readonly read: IntervalSet[][] = [];
  readonly write: WriteSet[][] = [];
  readonly functions: (readonly (FunctionGrant | null)[])[];

  constructor(plan: DevicePlan, names: readonly string[]) {
    const grantsOf = (set: Int32Array): RuleGrants[] => [...set].map((r) => plan.grants[r]!);
    for (let t = 0; t < TABLE_COUNT; t++) {
      this.read.push(plan.partSets[READ_PART + t]!.map((s) => new IntervalSet(grantsOf(s).flatMap((g) => g.read[t]!), names)));
      this.write.push(plan.partSets[WRITE_PART + t]!.map((s) => new WriteSet(grantsOf(s).flatMap((g) => g.write[t]!), names)));
    }
    this.functions = plan.partSets[FUNCTIONS_PART]!.map((s) => functionTable([...s].map((r) => plan.rules[r]!), names));
  }

  unitPolicy(parts: Int32Array): UnitPolicy {
    const part = <T>(built: readonly T[], p: number): T | null => (parts[p]! < 0 ? null : built[parts[p]!]!);
    return new UnitPolicy(
      this.read.map((built, t) => part(built, READ_PART + t)),
      this.write.map((built, t) => part(built, WRITE_PART + t)),
      part(this.functions, FUNCTIONS_PART) ?? NO_FUNCTIONS,
    );
  }
}

/** Who may call each function code, for rules that grant functions. */
function functionTable(rules: readonly CompiledRule[], names: readonly string[]): (FunctionGrant | null)[] {
  const byCode = new Map<number, { rule: number; narrow: FunctionRuleGrant['narrow'] }[]>();
  for (const rule of rules) {
    for (const f of rule.functions) {
      if (f.narrow !== null && f.narrow.length === 0) continue;
      const list = byCode.get(f.code) ?? [];
      list.push({ rule: rule.index, narrow: f.narrow });
      byCode.set(f.code, list);
    }
  }
  const functions: (FunctionGrant | null)[] = new Array<FunctionGrant | null>(FUNCTION_SLOTS).fill(null);
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
  return functions;
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

/** The views of one client role: per family (4, 6) the view of every source region. */
interface RoleLookup {
  readonly regions: readonly RegionTable[];
  readonly anyView: SourceView;
}

/**
 * The roles a device's views are planned for: null (a client with no role or a role no rule
 * names; every client of a device without tls) and each role some rule names. Roles are few (a
 * site names a handful), so a view per role costs little and the role is resolved with the
 * source, once per connection.
 */
function rolesOf(device: NormalizedDevice): (string | null)[] {
  const roles = new Set<string | null>([null]);
  for (const r of device.rules) for (const role of r.document.roles ?? []) roles.add(role);
  return [...roles];
}

/** A route of a device: where some of its units are, and how that upstream is shared. */
function route(upstream: Endpoint, keys: { upstream_connections?: number; upstream_max_in_flight?: number }): Route {
  const n = keys.upstream_connections;
  return Object.freeze({
    key: formatEndpoint(upstream.host, upstream.port),
    upstream: Object.freeze(upstream),
    sharing: n === undefined ? null : Object.freeze({ connections: n, maxInFlight: keys.upstream_max_in_flight! }),
  });
}

const NO_UNITS: readonly (UnitPolicy | null)[] = Object.freeze(new Array<UnitPolicy | null>(UNIT_COUNT).fill(null));

class CompiledDeviceImpl implements CompiledDevice {
  readonly name: string;
  readonly listen: Endpoint;
  readonly upstream: Endpoint;
  readonly sharing: Readonly<Sharing> | null;
  readonly routes: readonly Route[];
  readonly routeOfUnit: Uint16Array;
  readonly mode: Mode;
  readonly onDeny: OnDeny;
  readonly logWrites: boolean;
  readonly limits: Readonly<Limits>;
  readonly rateLimit: Readonly<RateLimit> | null;
  readonly ruleCount: number;
  readonly compileEntries: number;
  readonly document: DeviceDocument;
  /** Per client role a rule names, and null for every other client: what forSource searches. */
  private readonly byRole: ReadonlyMap<string | null, RoleLookup>;

  constructor(device: NormalizedDevice, plans: ReadonlyMap<string | null, DevicePlan>) {
    const document = device.document;
    this.document = document;
    this.name = document.name;
    this.listen = Object.freeze(device.listen);
    this.upstream = Object.freeze(device.upstream);
    const own = route(device.upstream, document);
    this.sharing = own.sharing;
    const routes = [own];
    this.routeOfUnit = new Uint16Array(UNIT_COUNT);
    (document.routes ?? []).forEach((r, i) => {
      routes.push(route(device.routes[i]!, r));
      // Validation keeps routes' units apart: each unit is written once.
      for (const [lo, hi] of r.units.map(span)) this.routeOfUnit.fill(i + 1, lo, hi + 1);
    });
    this.routes = Object.freeze(routes);
    this.mode = document.mode;
    this.onDeny = document.on_deny;
    this.logWrites = document.log_writes;
    this.limits = Object.freeze(limitsOf(document));
    const rate = rateLimitOf(document);
    this.rateLimit = rate === null ? null : Object.freeze(rate);
    this.ruleCount = device.rules.length;
    let entries = 0;
    const byRole = new Map<string | null, RoleLookup>();
    for (const [role, plan] of plans) {
      entries += plan.entries;
      byRole.set(role, this.lookup(plan));
    }
    this.compileEntries = entries;
    this.byRole = byRole;
    Object.freeze(this);
  }

  private lookup(plan: DevicePlan): RoleLookup {
    const parts = new Parts(plan, this.document.rules.map((r) => r.name));
    const policies = plan.unitPolicies.map((p) => parts.unitPolicy(p));
    const views = plan.unitSets.map((units) =>
      units === null ? new CompiledSourceView(this, false, NO_UNITS) : new CompiledSourceView(this, true, Object.freeze(Array.from(units, (p) => (p < 0 ? null : policies[p]!)))),
    );
    return {
      regions: plan.families.map(
        (f) =>
          new RegionTable(
            f.starts,
            f.sets.map((s) => views[s]!),
          ),
      ),
      anyView: views[plan.anySet]!,
    };
  }

  forSource(address: string, role: string | null = null): SourceView {
    const lookup = this.byRole.get(role) ?? this.byRole.get(null)!;
    const ip = parseClientAddress(address);
    if (ip === null) return lookup.anyView;
    return lookup.regions[ip.family === 4 ? 0 : 1]!.find(ip);
  }

  decide(view: SourceView, req: ModbusRequest, out: Decision): Decision {
    return this.mode === 'learn' ? decideLearning(req, out) : decide(this, view, req, out);
  }
}

export interface CompileMeta {
  /** sha256 of the source text, hex. */
  readonly sha256: string;
  /** Store version; 0 for a file. */
  readonly version: number;
}

/**
 * The device of `previous` that `device` compiles to unchanged: same name, and a normalized
 * document equal to its own. Compile reads nothing else of a device (not the other devices, not
 * the policy's version or digest), so its compiled form is what compiling again would build.
 * Documents are compared as JSON: normalize writes keys in a fixed order, except inside what it
 * copies as written (rules' tables, tls), where a reordered key only costs a recompile.
 */
function unchanged(previous: CompiledPolicy | null, device: DeviceDocument): CompiledDevice | null {
  const prev = previous?.devices.get(device.name);
  return prev !== undefined && JSON.stringify(prev.document) === JSON.stringify(device) ? prev : null;
}

/**
 * Compiles a normalized policy into the frozen policy the proxy swaps in whole; returns, instead,
 * the refusal when that would take more than MAX_COMPILE_ENTRIES (found before building anything).
 *
 * With `previous` (the policy compiled last), a device whose document is unchanged keeps its
 * compiled object: a reload compiles only the devices that changed (a reload runs on the event
 * loop: compiling a plant's 1,000 devices again held every device's traffic for 0.1–0.3 s), and the
 * unchanged devices' sessions, comparing devices by identity, keep their views. A kept device
 * still counts its entries against the budget, which is on the whole policy; one that would go
 * over it is planned again instead, so the refusal reads exactly as without `previous`.
 */
export function compileWithinBudget(normalized: NormalizedPolicy, meta: CompileMeta, previous: CompiledPolicy | null = null): CompiledPolicy | PolicyTooComplexError {
  const budget = new Budget();
  // Per device: its compiled form kept from `previous`, or its plans per role.
  const built: (CompiledDevice | Map<string | null, DevicePlan>)[] = [];
  for (const [i, d] of normalized.devices.entries()) {
    const kept = unchanged(previous, d.document);
    if (kept !== null && budget.fits(kept.compileEntries)) {
      budget.charge(kept.compileEntries);
      built.push(kept);
      continue;
    }
    const before = budget.used;
    const byRole = new Map<string | null, DevicePlan>();
    for (const role of rolesOf(d)) {
      const plan = planDevice(d, budget, role);
      if (plan === null) return new PolicyTooComplexError(i, d.document.name, budget.used - before, before, MAX_COMPILE_ENTRIES);
      byRole.set(role, plan);
    }
    built.push(byRole);
  }
  const devices = new Map<string, CompiledDevice>();
  normalized.devices.forEach((d, i) => {
    const b = built[i]!;
    devices.set(d.document.name, b instanceof Map ? new CompiledDeviceImpl(d, b) : b);
  });
  // Freezes every device's and rule's document too: they are the same objects (a kept device's
  // document is the one it was compiled from).
  const doc = deepFreeze({ ...normalized.document, devices: [...devices.values()].map((d) => d.document) });
  return Object.freeze({ sha256: meta.sha256, version: meta.version, devices, document: doc });
}

/** Like compileWithinBudget, throwing the PolicyTooComplexError (ERR_POLICY_TOO_COMPLEX). */
export function compilePolicy(normalized: NormalizedPolicy, meta: CompileMeta, previous: CompiledPolicy | null = null): CompiledPolicy {
  const r = compileWithinBudget(normalized, meta, previous);
  if (r instanceof PolicyTooComplexError) throw r;
  return r;
}

function deepFreeze<T>(x: T): T {
  if (typeof x === 'object' && x !== null && !Object.isFrozen(x)) {
    Object.freeze(x);
    for (const v of Object.values(x)) deepFreeze(v);
  }
  return x;
}
