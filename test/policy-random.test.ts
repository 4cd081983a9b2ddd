// decide() against a naive reference evaluator, over random policies and random requests. The
// reference reads the generated policy object directly, expands every range into sets, matches
// sources with node:net's BlockList, and checks address by address: slow and plain, sharing
// nothing with the compiled matcher but the request decoder.
import { BlockList, isIPv4 } from 'node:net';
import t from 'tap';
import { decodeRequest, encodeAdu, ModbusRequest } from '../modbus/index.js';
import { Decision, parsePolicy } from '../policy/index.js';

/** mulberry32: a small seeded generator, so a failure reproduces from its seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

const POLICIES = 250;
const REQUESTS_PER_POLICY = 60; // 15,000 cases
// Small spaces so ranges, rules and requests collide often.
const ADDRESS_SPACE = 40;
const VALUE_SPACE = 24;
const UNIT_SPACE = 6;

type Item = number | string;
interface WriteEntry {
  addresses: Item | Item[];
  values?: Item | Item[];
}
interface FunctionObject {
  code: number | string;
  subfunctions?: Item[];
  mei_types?: Item[];
}
type FunctionItem = number | string | FunctionObject;
interface Rule {
  name?: string;
  sources?: string[];
  units?: Item[];
  read?: Partial<Record<'coils' | 'discrete_inputs' | 'holding_registers' | 'input_registers', Item[]>>;
  write?: Partial<Record<'coils' | 'holding_registers', (Item | WriteEntry)[]>>;
  functions?: FunctionItem[];
}

const SOURCE_POOL = ['10.0.0.0/24', '10.0.0.5', '10.0.1.0/24', '10.0.0.0/8', '0.0.0.0/0', 'fd00::/64', 'fd00::5', '::ffff:10.0.0.0/120', '::/0'];
const CLIENTS = ['10.0.0.5', '10.0.0.9', '10.0.1.3', '10.9.9.9', '192.168.1.1', 'fd00::5', 'fd00::9', 'fd01::1', '::ffff:10.0.0.5', '::ffff:10.0.1.3'];

function generate(rand: () => number): Rule[] {
  const int = (n: number) => Math.floor(rand() * n);
  const chance = (p: number) => rand() < p;
  const item = (space: number): Item => {
    const lo = int(space);
    return chance(0.5) ? lo : `${lo}-${Math.min(space - 1, lo + int(8))}`;
  };
  const items = (space: number, max: number): Item[] => Array.from({ length: 1 + int(max) }, () => item(space));
  const rules: Rule[] = [];
  const count = 1 + int(7);
  for (let i = 0; i < count; i++) {
    const r: Rule = {};
    if (chance(0.5)) r.name = `r${i}`;
    if (chance(0.7)) r.sources = chance(0.03) ? [] : Array.from({ length: 1 + int(2) }, () => SOURCE_POOL[int(SOURCE_POOL.length)]!);
    if (chance(0.6)) r.units = chance(0.03) ? [] : items(UNIT_SPACE, 3);
    if (chance(0.6)) {
      r.read = {};
      for (const tb of ['coils', 'discrete_inputs', 'holding_registers', 'input_registers'] as const) {
        if (chance(0.5)) r.read[tb] = chance(0.05) ? [] : items(ADDRESS_SPACE, 3);
      }
    }
    if (chance(0.6)) {
      r.write = {};
      for (const tb of ['coils', 'holding_registers'] as const) {
        if (!chance(0.6)) continue;
        const maxValue = tb === 'coils' ? 2 : VALUE_SPACE;
        r.write[tb] = Array.from({ length: 1 + int(3) }, (): Item | WriteEntry => {
          if (chance(0.4)) return item(ADDRESS_SPACE);
          const e: WriteEntry = { addresses: chance(0.7) ? item(ADDRESS_SPACE) : items(ADDRESS_SPACE, 2) };
          if (chance(0.8)) e.values = chance(0.6) ? item(maxValue) : items(maxValue, 2);
          return e;
        });
      }
    }
    if (chance(0.4)) {
      const pool: FunctionItem[] = [
        7,
        17,
        90,
        65,
        'report_server_id',
        'get_comm_event_counter',
        'read_device_identification',
        'diagnostics',
        'encapsulated_interface_transport',
        { code: 'diagnostics', subfunctions: chance(0.1) ? [] : items(7, 2) },
        { code: 8, subfunctions: items(7, 2) },
        { code: 43, mei_types: items(16, 2) },
        { code: 'read_device_identification' },
        { code: 20 },
      ];
      r.functions = Array.from({ length: 1 + int(3) }, () => pool[int(pool.length)]!);
    }
    rules.push(r);
  }
  return rules;
}

// ---- the reference ----

function expand(x: Item | Item[]): Set<number> {
  const out = new Set<number>();
  for (const it of Array.isArray(x) ? x : [x]) {
    if (typeof it === 'number') out.add(it);
    else {
      const [lo, hi] = it.split('-').map(Number) as [number, number];
      for (let v = lo; v <= hi; v++) out.add(v);
    }
  }
  return out;
}

const FUNCTION_CODES: Record<string, number> = {
  report_server_id: 17,
  get_comm_event_counter: 11,
  read_device_identification: 43,
  diagnostics: 8,
  encapsulated_interface_transport: 43,
};

interface RefGrant {
  code: number;
  narrow: Set<number> | null;
}
interface RefRule {
  name: string;
  /** One list per family: IPv6 entries (even ::/0) never match IPv4 clients, by design. */
  sources: { v4: BlockList; v6: BlockList } | null;
  units: Set<number>;
  read: Map<string, Set<number>>;
  write: Map<string, { addrs: Set<number>; values: Set<number> | null }[]>;
  functions: RefGrant[];
  live: boolean;
}

function refRules(rules: Rule[]): RefRule[] {
  return rules.map((r, i) => {
    let sources: RefRule['sources'] = null;
    if (r.sources !== undefined) {
      sources = { v4: new BlockList(), v6: new BlockList() };
      for (const s of r.sources) {
        const [addr, len] = s.split('/') as [string, string | undefined];
        const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(addr);
        if (mapped !== null) sources.v4.addSubnet(mapped[1]!, Number(len ?? 128) - 96, 'ipv4');
        else if (isIPv4(addr)) sources.v4.addSubnet(addr, Number(len ?? 32), 'ipv4');
        else sources.v6.addSubnet(addr, Number(len ?? 128), 'ipv6');
      }
    }
    const units = r.units === undefined ? expand(`0-255`) : expand(r.units);
    const read = new Map(Object.entries(r.read ?? {}).map(([tb, xs]) => [tb, expand(xs)]));
    const write = new Map(
      Object.entries(r.write ?? {}).map(([tb, entries]) => [
        tb,
        entries.map((e) =>
          typeof e === 'object' ? { addrs: expand(e.addresses), values: e.values === undefined ? null : expand(e.values) } : { addrs: expand(e), values: null },
        ),
      ]),
    );
    const functions = (r.functions ?? []).map((f): RefGrant => {
      if (typeof f === 'number') return { code: f, narrow: null };
      const name = typeof f === 'string' ? f : f.code;
      const code = typeof name === 'number' ? name : FUNCTION_CODES[name]!;
      if (name === 'read_device_identification') return { code, narrow: new Set([14]) };
      if (typeof f === 'string') return { code, narrow: null };
      const narrow = f.subfunctions ?? f.mei_types;
      return { code, narrow: narrow === undefined ? null : expand(narrow) };
    });
    const grants =
      [...read.values()].some((s) => s.size > 0) ||
      [...write.values()].some((e) => e.length > 0) ||
      functions.some((f) => f.narrow === null || f.narrow.size > 0);
    const live = grants && units.size > 0 && (r.sources === undefined || r.sources.length > 0);
    return { name: r.name ?? `rule-${i}`, sources, units, read, write, functions, live };
  });
}

function clientMatches(rule: RefRule, client: string): boolean {
  if (rule.sources === null) return true;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(client);
  const v4 = mapped !== null ? mapped[1]! : isIPv4(client) ? client : null;
  return v4 !== null ? rule.sources.v4.check(v4, 'ipv4') : rule.sources.v6.check(client, 'ipv6');
}

const TABLE_OF: Record<number, string> = { 1: 'coils', 2: 'discrete_inputs', 3: 'holding_registers', 4: 'input_registers', 24: 'holding_registers' };

function fmt(allow: boolean, reason: string, exception: number, rule: string | null, violation = 'none'): string {
  if (allow) return `allow ${rule}`;
  return `deny ${reason} 0x${exception.toString(16)} ${rule ?? '-'}${violation === 'none' ? '' : ` ${violation}`}`;
}

function reference(rules: RefRule[], client: string, req: ModbusRequest): string {
  const fromSource = rules.filter((r) => r.live && clientMatches(r, client));
  if (fromSource.length === 0) return fmt(false, 'source_not_allowed', 0x0a, null);
  const m = fromSource.filter((r) => r.units.has(req.unitId));
  if (m.length === 0) return fmt(false, 'unit_not_allowed', 0x0a, null);
  const malformed = (rule: string) => fmt(false, 'malformed', req.exception, rule, req.violation);
  const reads = (table: string) => m.filter((r) => (r.read.get(table)?.size ?? 0) > 0);
  const writes = (table: string) => m.filter((r) => (r.write.get(table)?.length ?? 0) > 0);
  const readable = (table: string, a: number) => m.find((r) => r.read.get(table)?.has(a));
  const covering = (table: string, a: number) => m.find((r) => r.write.get(table)?.some((e) => e.addrs.has(a)));
  const allowing = (table: string, a: number, v: number) =>
    m.find((r) => r.write.get(table)?.some((e) => e.addrs.has(a) && (e.values === null || e.values.has(v))));

  const checkWrite = (table: string, w: RefRule[]): string => {
    for (let i = 0; i < req.writeQuantity; i++) {
      if (covering(table, req.writeStart + i) === undefined) return fmt(false, 'address_not_allowed', 2, w[0]!.name);
    }
    for (let i = 0; i < req.writeQuantity; i++) {
      const a = req.writeStart + i;
      if (allowing(table, a, req.valueAt(i)) === undefined) return fmt(false, 'value_not_allowed', 3, covering(table, a)!.name);
    }
    return fmt(true, 'allowed', 0, allowing(table, req.writeStart, req.valueAt(0))!.name);
  };

  const fc = req.functionCode;
  if ([1, 2, 3, 4, 24].includes(fc)) {
    const table = TABLE_OF[fc]!;
    const g = reads(table);
    if (g.length === 0) return fmt(false, 'function_not_allowed', 1, null);
    if (req.exception !== 0) return malformed(g[0]!.name);
    for (let i = 0; i < req.readQuantity; i++) {
      if (readable(table, req.readStart + i) === undefined) return fmt(false, 'address_not_allowed', 2, g[0]!.name);
    }
    return fmt(true, 'allowed', 0, readable(table, req.readStart)!.name);
  }
  if ([5, 6, 15, 16].includes(fc)) {
    const table = fc === 5 || fc === 15 ? 'coils' : 'holding_registers';
    const w = writes(table);
    if (w.length === 0) return fmt(false, 'function_not_allowed', 1, null);
    if (req.exception !== 0) return malformed(w[0]!.name);
    return checkWrite(table, w);
  }
  if (fc === 22) {
    const w = writes('holding_registers');
    if (w.length === 0) return fmt(false, 'function_not_allowed', 1, null);
    if (req.exception !== 0) return malformed(w[0]!.name);
    const a = req.writeStart;
    if (covering('holding_registers', a) === undefined) return fmt(false, 'address_not_allowed', 2, w[0]!.name);
    const any = m.find((r) => r.write.get('holding_registers')?.some((e) => e.addrs.has(a) && e.values === null));
    if (any === undefined) return fmt(false, 'value_not_allowed', 3, covering('holding_registers', a)!.name);
    return fmt(true, 'allowed', 0, any.name);
  }
  if (fc === 23) {
    const r = reads('holding_registers');
    const w = writes('holding_registers');
    if (r.length === 0 || w.length === 0) return fmt(false, 'function_not_allowed', 1, null);
    if (req.exception !== 0) return malformed(w[0]!.name);
    for (let i = 0; i < req.readQuantity; i++) {
      if (readable('holding_registers', req.readStart + i) === undefined) return fmt(false, 'address_not_allowed', 2, r[0]!.name);
    }
    return checkWrite('holding_registers', w);
  }
  // Functions without an address model.
  const granted = m.filter((r) => r.functions.some((f) => f.code === fc && (f.narrow === null || f.narrow.size > 0)));
  if (granted.length === 0) return fmt(false, 'function_not_allowed', 1, null);
  let rule: RefRule | undefined;
  if (fc === 8 || fc === 43) {
    const key = fc === 8 ? req.subFunction : req.meiType;
    rule = m.find((r) => r.functions.some((f) => f.code === fc && (f.narrow === null || (key >= 0 && f.narrow.has(key)))));
    if (rule === undefined) return fmt(false, 'function_not_allowed', 1, granted[0]!.name);
  } else {
    rule = granted[0]!;
  }
  if (req.exception !== 0) return malformed(rule.name);
  return fmt(true, 'allowed', 0, rule.name);
}

// ---- random requests ----

function randomPdu(rand: () => number): number[] {
  const int = (n: number) => Math.floor(rand() * n);
  const chance = (p: number) => rand() < p;
  const u16 = (n: number) => [(n >> 8) & 0xff, n & 0xff];
  const addr = () => (chance(0.03) ? 65535 - int(3) : int(ADDRESS_SPACE + 4));
  const qty = (max: number) => (chance(0.03) ? (chance(0.5) ? 0 : max + 1) : 1 + int(8));
  const value = () => int(VALUE_SPACE + 3);
  let p: number[];
  switch (int(14)) {
    case 0:
    case 1: {
      const fc = 1 + int(4);
      p = [fc, ...u16(addr()), ...u16(qty(fc <= 2 ? 2000 : 125))];
      break;
    }
    case 2:
      p = [5, ...u16(addr()), ...(chance(0.05) ? [0x12, 0x34] : chance(0.5) ? [0xff, 0] : [0, 0])];
      break;
    case 3:
      p = [6, ...u16(addr()), ...u16(value())];
      break;
    case 4: {
      const n = qty(1968);
      const bits = Array.from({ length: Math.min(n, 40) }, () => int(2));
      const bytes = new Array<number>((n + 7) >> 3).fill(0);
      bits.forEach((b, i) => (bytes[i >> 3]! |= b << (i & 7)));
      p = [15, ...u16(addr()), ...u16(n), bytes.length & 0xff, ...bytes.slice(0, 240)];
      break;
    }
    case 5: {
      const n = Math.min(qty(123), 124);
      p = [16, ...u16(addr()), ...u16(n), (2 * n) & 0xff, ...Array.from({ length: n }, () => u16(value())).flat()];
      break;
    }
    case 6:
      p = [22, ...u16(addr()), ...u16(int(65536)), ...u16(int(65536))];
      break;
    case 7: {
      const n = Math.min(qty(121), 122);
      p = [23, ...u16(addr()), ...u16(qty(125)), ...u16(addr()), ...u16(n), (2 * n) & 0xff, ...Array.from({ length: n }, () => u16(value())).flat()];
      break;
    }
    case 8:
      p = [24, ...u16(addr())];
      break;
    case 9:
      p = chance(0.1) ? [8, 0] : [8, ...u16(int(8)), 0, 0];
      break;
    case 10:
      p = chance(0.1) ? [43] : int(3) === 0 ? [43, 14, chance(0.1) ? 9 : 1, 0] : [43, 12 + int(5)];
      break;
    case 11:
      p = [[7, 11, 12, 17, 65, 66, 90][int(7)]!];
      break;
    case 12:
      p = [20, 7, 6, 0, 1, 0, 0, 0, 1];
      break;
    default:
      p = [chance(0.5) ? 0 : 128 + int(128)];
  }
  // Now and then a byte too many or too few: the decoder's malformed paths.
  if (chance(0.04)) p.push(0);
  if (chance(0.04) && p.length > 1) p.pop();
  return p;
}

void t.test('decide() agrees with the reference evaluator', (t) => {
  const rand = prng(0x5eed_2024);
  const req = new ModbusRequest();
  const out = new Decision();
  let cases = 0;
  let allowed = 0;
  const reasons = new Map<string, number>();
  for (let p = 0; p < POLICIES; p++) {
    const rules = generate(rand);
    const doc = { version: 1, devices: [{ name: 'd', listen: '127.0.0.1:1', upstream: '127.0.0.1:2', rules }] };
    const r = parsePolicy(JSON.stringify(doc), `random-${p}.json`);
    if (r.policy === undefined) {
      t.fail(`policy ${p} did not compile`, { errors: r.errors.map((e) => e.format()) });
      continue;
    }
    const device = r.policy.devices.get('d')!;
    const ref = refRules(rules);
    for (let q = 0; q < REQUESTS_PER_POLICY; q++) {
      const client = CLIENTS[Math.floor(rand() * CLIENTS.length)]!;
      const unit = Math.floor(rand() * (UNIT_SPACE + 1));
      const bytes = randomPdu(rand);
      const adu = encodeAdu(q, unit, Buffer.from(bytes.slice(0, 253)));
      decodeRequest(adu, 0, adu.length, req);
      const want = reference(ref, client, req);
      const d = device.decide(device.forSource(client), req, out);
      const got = fmt(d.allow, d.reason, d.exception, d.rule, d.violation);
      cases++;
      if (d.allow) allowed++;
      reasons.set(d.reason, (reasons.get(d.reason) ?? 0) + 1);
      if (got !== want) {
        t.fail(`policy ${p} request ${q}`, { client, unit, pdu: Buffer.from(bytes).toString('hex'), got, want, rules: JSON.stringify(rules) });
        return;
      }
    }
  }
  t.equal(cases, POLICIES * REQUESTS_PER_POLICY);
  t.ok(cases >= 10_000, `${cases} cases`);
  // The generator must reach every outcome, or agreement proves little.
  for (const reason of ['allowed', 'source_not_allowed', 'unit_not_allowed', 'function_not_allowed', 'malformed', 'address_not_allowed', 'value_not_allowed']) {
    t.ok((reasons.get(reason) ?? 0) >= 50, `${reason}: ${reasons.get(reason) ?? 0}`);
  }
  t.ok(allowed >= 500, `${allowed} allowed`);
  t.end();
});
