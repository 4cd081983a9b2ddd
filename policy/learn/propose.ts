// Observations → a proposed policy in plcguard's own YAML (format.ts), tight and explained: per
// device, one rule per source address (or per group of sources, when asked) and per set of units
// it used the same way; reads as the observed ranges, writes per address with the observed value
// range as their bound, other functions by name with their sub-functions or MEI types. Every rule
// and entry carries a comment with how many requests it stands for, when they were first and last
// seen, and how many the PLC answered with an exception (those are included: the proxy is not the
// place to second-guess the PLC). The same observations and options always give the same text:
// every list is sorted and nothing depends on the clock.
//
// Loosening, for a reviewer who asks for it:
// | option        | effect                                                                        |
// |---------------|-------------------------------------------------------------------------------|
// | mergeGap N    | read ranges with at most N unread addresses between them become one            |
// | widen         | register value bounds widened by a share of each bound (10 %: 650 → 585) or by a number; clamped to the register's range; coils keep their exact states |
// | groupSources  | sources in the same IPv4 /N (IPv6 /M) share one rule for that network          |

import { exceptionName, FUNCTION_NAMES, FunctionCode, isReserved, isUserDefined, MEI_READ_DEVICE_IDENTIFICATION } from '../../modbus/index.js';
import type { StreamAddress } from '../../modbus/capture/index.js';
import { READ_DEVICE_IDENTIFICATION, READ_TABLES, WRITE_TABLES } from '../format.js';
import type { ReadTable, WriteTable } from '../format.js';
import { formatEndpoint, formatIp } from '../net.js';
import type { Mode } from '../format.js';
import { AddressWrites, Seen, UnitObservation } from './observe.js';
import type { DeviceObservation, ObservedRanges, ObservedWrites, Observations, SourceObservation } from './observe.js';

/** The well-known Modbus/TCP port: devices on it get no port in their name. */
const MODBUS_TCP_PORT = 502;
/** Where listen ports are taken from when a device's own port is already used by another. */
const FIRST_SPARE_LISTEN_PORT = 5020;
const MAX_REGISTER = 0xffff;
const INT16_MIN = -0x8000;
const INT16_MAX = 0x7fff;
const UINT16_RANGE = 0x10000;
/** A grouped rule's comment names at most this many of the sources it stands for. */
const MEMBERS_SHOWN = 8;
/** Seen.exceptionCodes() uses 31 for "a code past 30". */
const OTHER_EXCEPTION = 31;

/** What a proposal may set a device to: a proposal to learn more would decide nothing. */
export const PROPOSAL_MODES: readonly Mode[] = ['enforce', 'monitor'];

export type Widen = { readonly percent: number } | { readonly amount: number };

export interface ProposeOptions {
  /** Every device's mode (default enforce). */
  readonly mode?: Mode;
  /** The listen address, when the observations hold one device. */
  readonly listen?: string;
  /** Join read ranges at most this many addresses apart (default 0: only touching ones). */
  readonly mergeGap?: number;
  readonly widen?: Widen | null;
  /** Group IPv4 sources by this prefix length and IPv6 ones by the second. */
  readonly groupSources?: { readonly v4: number; readonly v6: number } | null;
  /** The capture files, for the header. */
  readonly captures?: readonly string[];
  /** What the observations come from, when not a capture (the header's first line says so). */
  readonly learnedFrom?: string;
  /** The command that made it, for the header (so a reviewer can make it again). */
  readonly command?: string;
}

export interface Proposal {
  readonly text: string;
  readonly devices: number;
  readonly rules: number;
}

/** One entry of a list in the YAML: its text, what it stands for, and a remark. */
interface Item {
  readonly value: string;
  readonly seen: Seen;
  readonly note: string | null;
  /** What `seen` counts: requests, or (write entries) writes. */
  readonly unit?: 'write';
}

/** What one rule grants, as YAML entries. */
interface Grant {
  readonly read: ReadonlyMap<ReadTable, Item[]>;
  readonly write: ReadonlyMap<WriteTable, Item[]>;
  readonly functions: Item[];
}

interface Rule {
  name: string;
  sources: string[];
  /** The observed addresses a network rule stands for. */
  members: string[] | null;
  units: number[];
  seen: Seen;
  connections: number;
  grant: Grant;
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/**
 * `12 requests, 3 answered with exception 0x02 (illegal data address), FIRST .. LAST`. Write entries
 * count `writes`: one per address a request wrote, so an entry of several addresses says how many
 * register or coil writes it stands for, not how many requests.
 */
function describe(s: Seen, what = 'request'): string {
  const parts = [plural(s.count, what)];
  if (s.exceptions > 0) {
    const codes = s.exceptionCodes().map((c) => (c === OTHER_EXCEPTION ? 'other codes' : `0x${c.toString(16).padStart(2, '0')} (${exceptionName(c)})`));
    parts.push(`${s.exceptions} answered with exception${codes.length > 1 ? 's' : ''} ${codes.join(', ')}`);
  }
  parts.push(s.first === s.last ? `at ${iso(s.first)}` : `${iso(s.first)} .. ${iso(s.last)}`);
  return parts.join(', ');
}

function span(lo: number, hi: number): string {
  return lo === hi ? `${lo}` : `${lo}-${hi}`;
}

/** `[1, 10-11]`: sorted numbers as ranges. */
function compact(ns: readonly number[]): string {
  const out: string[] = [];
  for (let i = 0; i < ns.length; ) {
    let j = i;
    while (j + 1 < ns.length && ns[j + 1] === ns[j]! + 1) j++;
    out.push(span(ns[i]!, ns[j]!));
    i = j + 1;
  }
  return `[${out.join(', ')}]`;
}

/** An IP as a YAML scalar: IPv6 quoted (a leading `:` or `::` is not plain YAML everywhere). */
function yamlIp(text: string): string {
  return text.includes(':') ? JSON.stringify(text) : text;
}

/** Lowercase letters, digits and `-`: a name fragment from an address. */
function dashed(text: string): string {
  return text.toLowerCase().replace(/[^a-z0-9]/g, '-');
}

function compareAddress(a: StreamAddress, b: StreamAddress): number {
  return a.family - b.family || a.w0 - b.w0 || a.w1 - b.w1 || a.w2 - b.w2 || a.w3 - b.w3;
}

/** The network of `prefix` bits around an address. */
function network(a: StreamAddress, prefix: number): StreamAddress {
  const bits = a.family === 4 ? prefix + 96 : prefix;
  const mask = (word: number): number => {
    const n = Math.max(0, Math.min(32, bits - 32 * word));
    return n === 0 ? 0 : (0xffffffff << (32 - n)) >>> 0;
  };
  return { family: a.family, w0: (a.w0 & mask(0)) >>> 0, w1: (a.w1 & mask(1)) >>> 0, w2: (a.w2 & mask(2)) >>> 0, w3: (a.w3 & mask(3)) >>> 0 };
}

// --- grants ----------------------------------------------------------------------------------

function readItems(r: ObservedRanges, mergeGap: number): Item[] {
  const items: Item[] = [];
  for (let i = 0; i < r.size; ) {
    const seen = new Seen();
    let j = i;
    seen.merge(r.seen[i]!);
    let gaps = 0;
    while (j + 1 < r.size && r.los[j + 1]! - r.his[j]! - 1 <= mergeGap) {
      gaps += r.los[j + 1]! - r.his[j]! - 1;
      j++;
      seen.merge(r.seen[j]!);
    }
    const note = j > i ? `${plural(j - i + 1, 'range')} joined over ${gaps} unread address${gaps === 1 ? '' : 'es'}` : null;
    items.push({ value: span(r.los[i]!, r.his[j]!), seen, note });
    i = j + 1;
  }
  return items;
}

function margin(v: number, widen: Widen): number {
  return 'percent' in widen ? Math.ceil((Math.abs(v) * widen.percent) / 100) : widen.amount;
}

/** The `values` bound of a register (null: any value) and a remark. */
function registerBound(w: AddressWrites, widen: Widen | null): { values: string | null; note: string | null } {
  if (w.any) return { values: null, note: 'any value: a mask write, FC22, was seen, whose result depends on the PLC' };
  // Signed registers (temperatures below zero) written on both sides of 0 are one tight range as int16.
  const signed = w.smax - w.smin < w.umax - w.umin;
  let lo = signed ? w.smin : w.umin;
  let hi = signed ? w.smax : w.umax;
  if (widen !== null) {
    lo = Math.max(signed ? INT16_MIN : 0, lo - margin(lo, widen));
    hi = Math.min(signed ? INT16_MAX : MAX_REGISTER, hi + margin(hi, widen));
  }
  if (!signed) return { values: span(lo, hi), note: null };
  // int16 is tighter only when the values lie on both sides of 0, so lo < 0 <= hi: two unsigned ranges.
  return { values: `[${span(0, hi)}, ${span(lo + UINT16_RANGE, MAX_REGISTER)}]`, note: `as int16: ${lo}..${hi}` };
}

function coilBound(w: AddressWrites): { values: string | null; note: string | null } {
  if (w.any || w.umin !== w.umax) return { values: null, note: null };
  return { values: `${w.umin}`, note: w.umin === 1 ? 'only ever switched on' : 'only ever switched off' };
}

function writeItems(table: WriteTable, w: ObservedWrites, widen: Widen | null): Item[] {
  const rows = [...w.byAddress.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([address, aw]) => ({ address, aw, bound: table === 'coils' ? coilBound(aw) : registerBound(aw, widen) }));
  const items: { first: number; item: Item }[] = [];
  for (let i = 0; i < rows.length; ) {
    const r = rows[i]!;
    let j = i;
    const seen = new Seen();
    seen.merge(r.aw.seen);
    // Consecutive addresses with the same bound share an entry.
    while (j + 1 < rows.length && rows[j + 1]!.address === rows[j]!.address + 1 && rows[j + 1]!.bound.values === r.bound.values && rows[j + 1]!.bound.note === r.bound.note) {
      j++;
      seen.merge(rows[j]!.aw.seen);
    }
    const addresses = span(r.address, rows[j]!.address);
    const value = r.bound.values === null ? addresses : `{ addresses: ${addresses}, values: ${r.bound.values} }`;
    items.push({ first: r.address, item: { value, seen, note: r.bound.note, unit: 'write' } });
    i = j + 1;
  }
  const o = w.overflow;
  for (let i = 0; i < o.size; i++) {
    items.push({ first: o.los[i]!, item: { value: span(o.los[i]!, o.his[i]!), seen: o.seen[i]!, note: 'any value: past the written-address ceiling', unit: 'write' } });
  }
  return items.sort((a, b) => a.first - b.first).map((x) => x.item);
}

function subList(r: ObservedRanges): string {
  const out: string[] = [];
  for (let i = 0; i < r.size; i++) out.push(span(r.los[i]!, r.his[i]!));
  return `[${out.join(', ')}]`;
}

function functionNote(code: number): string | null {
  if (FUNCTION_NAMES.has(code)) return null;
  if (isUserDefined(code)) return `function code ${code}: user-defined`;
  if (code === 90) return 'function code 90: reserved, used by Schneider\'s UMAS programming protocol';
  if (isReserved(code)) return `function code ${code}: reserved`;
  return `function code ${code}: not defined by the Modbus specification`;
}

function functionItem(code: number, seen: Seen, subs: ObservedRanges | null): Item {
  const name = FUNCTION_NAMES.get(code);
  let value: string;
  if (code === FunctionCode.DIAGNOSTICS) value = `{ code: ${name}, subfunctions: ${subList(subs!)} }`;
  else if (code === FunctionCode.ENCAPSULATED_INTERFACE_TRANSPORT) {
    const only14 = subs!.size === 1 && subs!.los[0] === MEI_READ_DEVICE_IDENTIFICATION && subs!.his[0] === MEI_READ_DEVICE_IDENTIFICATION;
    value = only14 ? READ_DEVICE_IDENTIFICATION : `{ code: ${name}, mei_types: ${subList(subs!)} }`;
  } else value = name ?? `${code}`;
  return { value, seen, note: functionNote(code) };
}

function grantOf(u: UnitObservation, options: ProposeOptions): Grant {
  const read = new Map<ReadTable, Item[]>();
  for (const t of READ_TABLES) {
    const r = u.readsOf(t);
    if (r !== null) read.set(t, readItems(r, options.mergeGap ?? 0));
  }
  const write = new Map<WriteTable, Item[]>();
  for (const t of WRITE_TABLES) {
    const w = u.writesOf(t);
    if (w !== null) write.set(t, writeItems(t, w, options.widen ?? null));
  }
  const functions = [...u.functions.values()].sort((a, b) => a.code - b.code).map((f) => functionItem(f.code, f.seen, f.subs));
  return { read, write, functions };
}

/** What decides whether two units can share a rule: the grant without counts and times. */
function grantKey(g: Grant): string {
  const v = (items: Item[]): string[] => items.map((i) => `${i.value}#${i.note ?? ''}`);
  return JSON.stringify([[...g.read].map(([t, i]) => [t, v(i)]), [...g.write].map(([t, i]) => [t, v(i)]), v(g.functions)]);
}

/** The grants of several units with the same key: entries zipped, their counts and times merged. */
function mergeGrants(gs: readonly Grant[]): Grant {
  const zip = (lists: Item[][]): Item[] =>
    lists[0]!.map((item, k) => {
      const seen = new Seen();
      for (const l of lists) seen.merge(l[k]!.seen);
      return { ...item, seen };
    });
  const first = gs[0]!;
  return {
    read: new Map([...first.read.keys()].map((t) => [t, zip(gs.map((g) => g.read.get(t)!))])),
    write: new Map([...first.write.keys()].map((t) => [t, zip(gs.map((g) => g.write.get(t)!))])),
    functions: zip(gs.map((g) => g.functions)),
  };
}

// --- sources and rules -----------------------------------------------------------------------

interface SourceGroup {
  address: StreamAddress;
  text: string;
  network: string | null;
  members: SourceObservation[];
}

function sourceGroups(d: DeviceObservation, options: ProposeOptions): SourceGroup[] {
  const groups = new Map<string, SourceGroup>();
  const sources = [...d.sources.values()].filter((s) => s.units.size > 0).sort((a, b) => compareAddress(a.address, b.address));
  for (const s of sources) {
    const g = options.groupSources;
    if (g === null || g === undefined) {
      groups.set(s.text, { address: s.address, text: s.text, network: null, members: [s] });
      continue;
    }
    const prefix = s.address.family === 4 ? g.v4 : g.v6;
    const net = network(s.address, prefix);
    const text = `${formatIp(net)}/${prefix}`;
    const group = groups.get(text);
    if (group === undefined) groups.set(text, { address: net, text, network: text, members: [s] });
    else group.members.push(s);
  }
  return [...groups.values()];
}

function rulesOf(d: DeviceObservation, options: ProposeOptions): Rule[] {
  const rules: Rule[] = [];
  for (const g of sourceGroups(d, options)) {
    // The group's units, merged over its members.
    const units = new Map<number, UnitObservation>();
    for (const m of g.members) {
      for (const [id, u] of m.units) {
        let mine = units.get(id);
        if (mine === undefined) units.set(id, (mine = new UnitObservation()));
        mine.mergeFrom(u);
      }
    }
    const byKey = new Map<string, { units: number[]; grants: Grant[]; seen: Seen }>();
    for (const id of [...units.keys()].sort((a, b) => a - b)) {
      const u = units.get(id)!;
      const grant = grantOf(u, options);
      const key = grantKey(grant);
      let entry = byKey.get(key);
      if (entry === undefined) byKey.set(key, (entry = { units: [], grants: [], seen: new Seen() }));
      entry.units.push(id);
      entry.grants.push(grant);
      entry.seen.merge(u.seen);
    }
    const base = g.network === null ? `from-${dashed(g.text)}` : `net-${dashed(g.text)}`;
    const connections = g.members.reduce((n, m) => n + m.connections, 0);
    for (const e of byKey.values()) {
      rules.push({
        name: byKey.size === 1 ? base : `${base}-unit-${e.units[0]}`,
        sources: [g.text],
        members: g.network === null ? null : g.members.map((m) => m.text),
        units: e.units,
        seen: e.seen,
        connections,
        grant: mergeGrants(e.grants),
      });
    }
  }
  return rules;
}

// --- YAML ------------------------------------------------------------------------------------

/** A rule's lines: `[text, comment]`, the comments aligned when written. */
type Lines = [string, string | null][];

/** A block list of items, each with its comment. */
function list(out: Lines, indent: string, items: readonly Item[]): void {
  for (const i of items) out.push([`${indent}- ${i.value}`, `${describe(i.seen, i.unit)}${i.note === null ? '' : ` (${i.note})`}`]);
}

function renderRule(out: string[], r: Rule): void {
  const who = r.members === null ? '' : ` (seen: ${r.members.slice(0, MEMBERS_SHOWN).join(', ')}${r.members.length > MEMBERS_SHOWN ? `, and ${r.members.length - MEMBERS_SHOWN} more` : ''})`;
  out.push(`      # ${describe(r.seen)}, over ${plural(r.connections, 'connection')}${who}`);
  const lines: Lines = [
    [`      - name: ${r.name}`, null],
    [`        sources: [${r.sources.map(yamlIp).join(', ')}]`, null],
    [`        units: ${compact(r.units)}`, null],
  ];
  if (r.grant.read.size > 0) {
    lines.push(['        read:', null]);
    for (const [t, items] of r.grant.read) {
      lines.push([`          ${t}:`, null]);
      list(lines, '            ', items);
    }
  }
  if (r.grant.write.size > 0) {
    lines.push(['        write:', null]);
    for (const [t, items] of r.grant.write) {
      lines.push([`          ${t}:`, null]);
      list(lines, '            ', items);
    }
  }
  if (r.grant.functions.length > 0) {
    lines.push(['        functions:', null]);
    list(lines, '          ', r.grant.functions);
  }
  // One comment column per rule, after its longest entry.
  const width = Math.max(...lines.filter(([, c]) => c !== null).map(([text]) => text.length));
  for (const [text, comment] of lines) out.push(comment === null ? text : `${text.padEnd(width)}  # ${comment}`);
}

function deviceName(d: DeviceObservation, taken: Set<string>): string {
  if (d.policy !== null) {
    taken.add(d.policy.name);
    return d.policy.name;
  }
  const base = `plc-${dashed(formatIp(d.address))}${d.port === MODBUS_TCP_PORT ? '' : `-${d.port}`}`;
  let name = base;
  for (let n = 2; taken.has(name); n++) name = `${base}-${n}`;
  taken.add(name);
  return name;
}

/**
 * The device's listen address: its own port on every interface, or the next port no other device
 * listens on. Every address given here is a wildcard, so ports alone decide what clashes.
 */
function listenOf(d: DeviceObservation, taken: Set<number>, options: ProposeOptions): { text: string; note: string | null } {
  if (options.listen !== undefined) return { text: options.listen, note: null };
  if (d.policy !== null) return { text: d.policy.listen, note: null };
  let port = d.port;
  let note: string | null = null;
  if (taken.has(port)) {
    port = FIRST_SPARE_LISTEN_PORT;
    while (taken.has(port)) port++;
    note = `port ${d.port} is taken by another device here: clients of this one connect to ${port}`;
  }
  taken.add(port);
  return { text: formatEndpoint(d.address.family === 6 ? '::' : '0.0.0.0', port), note };
}

function yamlEndpoint(text: string): string {
  return text.startsWith('[') ? JSON.stringify(text) : text;
}

/** Writes the proposal. Devices without a single learned request are left out. */
export function proposePolicy(obs: Observations, options: ProposeOptions = {}): Proposal {
  const devices = [...obs.devices.values()].filter((d) => d.seen.count > 0).sort((a, b) => compareAddress(a.address, b.address) || a.port - b.port);
  const all = new Seen();
  const sources = new Set<string>();
  for (const d of devices) {
    all.merge(d.seen);
    for (const s of d.sources.values()) if (s.units.size > 0) sources.add(s.text);
  }
  const out: string[] = [
    `# A plcguard policy proposed from what ${options.learnedFrom ?? 'a capture'} shows. Review every rule before enforcing it:`,
    '# each allows exactly what was seen, and the comments say how often and when.',
  ];
  if (options.captures !== undefined) out.push(`#   captures: ${options.captures.join(' ')}`);
  if (all.count > 0) out.push(`#   traffic: ${describe(all)}; ${plural(sources.size, 'source')}, ${plural(devices.length, 'server')}`);
  if (options.command !== undefined) out.push(`#   made by: ${options.command}`);
  const empty = [...obs.devices.values()].filter((d) => d.seen.count === 0);
  for (const d of empty) out.push(`#   ${d.text}: no well-formed request learned (${plural(d.malformed, 'malformed request')}, ${plural(d.skipped, 'skipped request')}): no device`);
  out.push('# Replay a capture against this file before enforcing it:', '#   plcguard policy check --policy FILE --pcap CAPTURE...', 'version: 1', '', 'devices:');
  const names = new Set<string>();
  const listens = new Set<number>();
  let ruleCount = 0;
  for (const d of devices) {
    const listen = listenOf(d, listens, options);
    out.push(`  # ${d.text}: ${describe(d.seen)}, over ${plural(d.connections, 'connection')}`);
    if (d.malformed > 0) out.push(`  # ${plural(d.malformed, 'malformed request')} not learned: the proxy denies those whatever the policy says`);
    if (listen.note !== null) out.push(`  # listen: ${listen.note}`);
    out.push(`  - name: ${deviceName(d, names)}`, `    listen: ${yamlEndpoint(listen.text)}`, `    upstream: ${yamlEndpoint(d.policy?.upstream ?? d.text)}`, );
    const sharing = d.policy?.sharing;
    if (sharing !== undefined) out.push(`    upstream_connections: ${sharing.connections}`, `    upstream_max_in_flight: ${sharing.maxInFlight}`);
    if (d.policy?.routes !== undefined) out.push(`    routes: ${JSON.stringify(d.policy.routes)}`);
    // Certificate paths as the policy wrote them (JSON is a YAML flow mapping).
    if (d.policy?.tls !== undefined) out.push(`    tls: ${JSON.stringify(d.policy.tls)}`);
    if (d.policy?.upstreamTls !== undefined) out.push(`    upstream_tls: ${JSON.stringify(d.policy.upstreamTls)}`);
    out.push(`    mode: ${options.mode ?? 'enforce'}`, '    rules:');
    for (const r of rulesOf(d, options)) {
      renderRule(out, r);
      ruleCount++;
    }
  }
  if (devices.length === 0) out[out.length - 1] = 'devices: []';
  return { text: out.join('\n') + '\n', devices: devices.length, rules: ruleCount };
}
