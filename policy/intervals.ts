// Interval sets the compiled policy answers from. Built once per (source, unit) rule set; queried
// per frame with binary searches over typed arrays, so a decision costs O(log intervals) and
// allocates nothing.
//
// Two views of the same grants:
// - merged: the union as sorted, disjoint, non-adjacent intervals. "Is [lo, hi] covered?" is one
//   search: the interval holding lo must reach hi.
// - pieces: the union split where the *first* granting rule (file order) changes. "Which rule
//   allowed address a?" is one search. Decisions name the first rule, in file order, that allows
//   the first thing the request touches.

/** [lo, hi] (inclusive) granted by the rule with index `rule` (file order). */
export interface Grant {
  readonly lo: number;
  readonly hi: number;
  readonly rule: number;
}

/** Index of the last element of sorted `starts[from, to)` that is ≤ x, or from − 1. */
function lastAtOrBelow(starts: Int32Array, x: number, from: number, to: number): number {
  let lo = from;
  let hi = to - 1;
  let found = from - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    if (starts[mid]! <= x) {
      found = mid;
      lo = mid + 1;
    } else {
      hi = mid - 1;
    }
  }
  return found;
}

/** Merged union of grants: sorted, disjoint, adjacent intervals joined. */
function merge(grants: readonly Grant[]): { starts: Int32Array; ends: Int32Array } {
  const sorted = [...grants].sort((a, b) => a.lo - b.lo);
  const starts: number[] = [];
  const ends: number[] = [];
  for (const g of sorted) {
    const last = ends.length - 1;
    if (last >= 0 && g.lo <= ends[last]! + 1) {
      if (g.hi > ends[last]!) ends[last] = g.hi;
    } else {
      starts.push(g.lo);
      ends.push(g.hi);
    }
  }
  return { starts: Int32Array.from(starts), ends: Int32Array.from(ends) };
}

/** Elementary segments: the union cut at every grant boundary. */
interface Segments {
  /** Sorted unique boundaries; segment k is [points[k], points[k+1] − 1]. */
  readonly points: Int32Array;
  /** Segment range [first, last) of each grant, in grant order. */
  readonly first: Int32Array;
  readonly last: Int32Array;
}

function segments(grants: readonly Grant[]): Segments {
  const all = new Int32Array(2 * grants.length);
  grants.forEach((g, i) => {
    all[2 * i] = g.lo;
    all[2 * i + 1] = g.hi + 1;
  });
  // A typed array sorts numerically, without a comparator call per step.
  all.sort();
  let unique = 0;
  for (let i = 0; i < all.length; i++) if (i === 0 || all[i] !== all[i - 1]) all[unique++] = all[i]!;
  const points = all.subarray(0, unique);
  const first = new Int32Array(grants.length);
  const last = new Int32Array(grants.length);
  grants.forEach((g, i) => {
    first[i] = lastAtOrBelow(points, g.lo, 0, points.length);
    last[i] = lastAtOrBelow(points, g.hi + 1, 0, points.length);
  });
  return { points, first, last };
}

/**
 * Labels every elementary segment with the first grant (in the given order) covering it: -1 when
 * none does. Each segment is labelled once; a skip list jumps over labelled runs, so this is near
 * linear even when a thousand rules overlap.
 */
function firstCover(seg: Segments, count: number): Int32Array {
  const n = seg.points.length - 1;
  const label = new Int32Array(Math.max(n, 0)).fill(-1);
  const next = new Int32Array(n + 1);
  for (let k = 0; k <= n; k++) next[k] = k;
  const find = (k: number): number => {
    let r = k;
    while (next[r] !== r) r = next[r]!;
    // Path compression keeps later finds short.
    let c = k;
    while (next[c] !== r) {
      const up = next[c]!;
      next[c] = r;
      c = up;
    }
    return r;
  };
  for (let i = 0; i < count; i++) {
    const end = seg.last[i]!;
    for (let k = find(seg.first[i]!); k < end; k = find(k + 1)) {
      label[k] = i;
      next[k] = k + 1;
    }
  }
  return label;
}

/** Pieces: consecutive covered segments with the same first rule joined. */
function pieces(grants: readonly Grant[], names: readonly string[]): { starts: Int32Array; ends: Int32Array; rules: string[] } {
  const seg = segments(grants);
  const label = firstCover(seg, grants.length);
  const starts: number[] = [];
  const ends: number[] = [];
  const rules: string[] = [];
  let lastRule = -1;
  for (let k = 0; k < label.length; k++) {
    const g = label[k]!;
    if (g < 0) {
      lastRule = -1;
      continue;
    }
    const rule = grants[g]!.rule;
    const lo = seg.points[k]!;
    const hi = seg.points[k + 1]! - 1;
    if (rule === lastRule) ends[ends.length - 1] = hi;
    else {
      starts.push(lo);
      ends.push(hi);
      rules.push(names[rule]!);
    }
    lastRule = rule;
  }
  return { starts: Int32Array.from(starts), ends: Int32Array.from(ends), rules };
}

/** Grants sorted by rule (stable): the order "first rule wins" is decided in. */
function byRule(grants: readonly Grant[]): Grant[] {
  return [...grants].sort((a, b) => a.rule - b.rule);
}

/** Coverage and attribution over one space (a table's addresses, sub-functions, MEI types). */
export class IntervalSet {
  private readonly starts: Int32Array;
  private readonly ends: Int32Array;
  private readonly pieceStarts: Int32Array;
  private readonly pieceEnds: Int32Array;
  private readonly pieceRules: readonly string[];
  /** The first rule (file order) with any grant here: named on denials about this set. */
  readonly firstRule: string;

  /** `grants` must not be empty; `names[rule]` is each rule's name. */
  constructor(grants: readonly Grant[], names: readonly string[]) {
    const ordered = byRule(grants);
    const m = merge(ordered);
    const p = pieces(ordered, names);
    this.starts = m.starts;
    this.ends = m.ends;
    this.pieceStarts = p.starts;
    this.pieceEnds = p.ends;
    this.pieceRules = p.rules;
    this.firstRule = names[ordered[0]!.rule]!;
  }

  /** Whether every point of [lo, hi] is granted. */
  covers(lo: number, hi: number): boolean {
    const i = lastAtOrBelow(this.starts, lo, 0, this.starts.length);
    return i >= 0 && this.ends[i]! >= hi;
  }

  /** The first rule (file order) granting `x`, or null when none does. */
  ruleAt(x: number): string | null {
    const i = lastAtOrBelow(this.pieceStarts, x, 0, this.pieceStarts.length);
    return i >= 0 && this.pieceEnds[i]! >= x ? this.pieceRules[i]! : null;
  }
}

/** A write grant: addresses [lo, hi] with values [vlo, vhi]; `bounded` false = any value. */
export interface WriteGrant extends Grant {
  readonly vlo: number;
  readonly vhi: number;
  readonly bounded: boolean;
}

/**
 * The size of the WriteSet `grants` make: each grant is listed in every address segment it spans
 * (and its value bounds split there), so overlapping ranges cost their product. Compile counts it
 * against its budget before building one.
 */
export function writeSetSize(grants: readonly Grant[]): number {
  const seg = segments(grants);
  let n = 0;
  for (let i = 0; i < grants.length; i++) n += seg.last[i]! - seg.first[i]!;
  return n;
}

/**
 * Writable addresses of one table with their value bounds. The address space is cut into
 * segments where the set of covering grants is constant; each segment keeps its allowed values as
 * pieces labelled by first rule, so checking a written value is one search in its segment.
 */
export class WriteSet {
  private readonly coverage: IntervalSet;
  private readonly segStarts: Int32Array;
  private readonly segEnds: Int32Array;
  /** First rule allowing any value in the segment, or null when all its grants bound values. */
  private readonly segAnyRule: readonly (string | null)[];
  /** First rule with any grant in the segment: named when a value there is denied. */
  private readonly segFirstRule: readonly string[];
  private readonly segPieceFrom: Int32Array;
  private readonly segPieceTo: Int32Array;
  private readonly pieceLo: Int32Array;
  private readonly pieceHi: Int32Array;
  private readonly pieceRule: readonly string[];

  constructor(grants: readonly WriteGrant[], names: readonly string[]) {
    const ordered = byRule(grants) as WriteGrant[];
    this.coverage = new IntervalSet(ordered, names);
    const seg = segments(ordered);
    const covering: number[][] = Array.from({ length: Math.max(seg.points.length - 1, 0) }, () => []);
    ordered.forEach((_, i) => {
      for (let k = seg.first[i]!; k < seg.last[i]!; k++) covering[k]!.push(i);
    });
    const segStarts: number[] = [];
    const segEnds: number[] = [];
    const anyRule: (string | null)[] = [];
    const firstRule: string[] = [];
    const from: number[] = [];
    const to: number[] = [];
    const pLo: number[] = [];
    const pHi: number[] = [];
    const pRule: string[] = [];
    // Segments whose grants bound values alike (often all of them: one rule's bounds over many
    // ranges) share one list of value pieces, built once.
    const shared = new Map<string, [number, number]>();
    covering.forEach((list, k) => {
      if (list.length === 0) return;
      segStarts.push(seg.points[k]!);
      segEnds.push(seg.points[k + 1]! - 1);
      const any = list.find((i) => !ordered[i]!.bounded);
      anyRule.push(any === undefined ? null : names[ordered[any]!.rule]!);
      firstRule.push(names[ordered[list[0]!]!.rule]!);
      const bounds = list.map((i): Grant => ({ lo: ordered[i]!.vlo, hi: ordered[i]!.vhi, rule: ordered[i]!.rule }));
      const key = bounds.map((b) => `${b.lo}-${b.hi}:${b.rule}`).join(',');
      let range = shared.get(key);
      if (range === undefined) {
        const values = pieces(bounds, names);
        range = [pLo.length, pLo.length + values.starts.length];
        pLo.push(...values.starts);
        pHi.push(...values.ends);
        pRule.push(...values.rules);
        shared.set(key, range);
      }
      from.push(range[0]);
      to.push(range[1]);
    });
    this.segStarts = Int32Array.from(segStarts);
    this.segEnds = Int32Array.from(segEnds);
    this.segAnyRule = anyRule;
    this.segFirstRule = firstRule;
    this.segPieceFrom = Int32Array.from(from);
    this.segPieceTo = Int32Array.from(to);
    this.pieceLo = Int32Array.from(pLo);
    this.pieceHi = Int32Array.from(pHi);
    this.pieceRule = pRule;
  }

  get firstRule(): string {
    return this.coverage.firstRule;
  }

  covers(lo: number, hi: number): boolean {
    return this.coverage.covers(lo, hi);
  }

  /** The segment holding address `a` (which must be covered). */
  segmentOf(a: number): number {
    return lastAtOrBelow(this.segStarts, a, 0, this.segStarts.length);
  }

  /** The segment holding `a`, searching forward from segment `seg` (addresses only increase). */
  advance(seg: number, a: number): number {
    let s = seg;
    while (this.segEnds[s]! < a) s++;
    return s;
  }

  segmentEnd(seg: number): number {
    return this.segEnds[seg]!;
  }

  anyValueRule(seg: number): string | null {
    return this.segAnyRule[seg]!;
  }

  firstRuleOf(seg: number): string {
    return this.segFirstRule[seg]!;
  }

  /** The first rule allowing value `v` in segment `seg`, or null. */
  valueRule(seg: number, v: number): string | null {
    const from = this.segPieceFrom[seg]!;
    const i = lastAtOrBelow(this.pieceLo, v, from, this.segPieceTo[seg]!);
    return i >= from && this.pieceHi[i]! >= v ? this.pieceRule[i]! : null;
  }
}
