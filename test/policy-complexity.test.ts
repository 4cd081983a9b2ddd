// The compile budget. Policies shaped to make compiling explode (YAML aliases
// repeating nested write ranges; many overlapping sources; many sources × units × ranges) either
// compile within MAX_COMPILE_ENTRIES at load, every connection then finding a view built there,
// or are refused at the device with the exact count, before anything big is built. The counts are
// checked against formulas worked out by hand per shape, stage by stage in compile's order:
//   grants (per rule) → source regions → unit tables and ranges → unit runs → unit policies → the
//   extra address segments write grants span.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { policyCommand } from '../cli/policy.js';
import { decodeRequest, encodeAdu, ModbusRequest } from '../modbus/index.js';
import { compilePolicy, Decision, MAX_COMPILE_ENTRIES, normalizePolicy, parsePolicy, PolicyTooComplexError, validatePolicyText } from '../policy/index.js';
import type { CompiledDevice, CompiledPolicy } from '../policy/index.js';
import { cidrContains, formatIp, parseCidr, parseClientAddress } from '../policy/net.js';
import type { Cidr } from '../policy/net.js';
import { aliasedNestedWrites, nestedWriteAnchors, nestedWriteRules, overlappingSources, sourcesUnitsRanges } from './fixtures/policy-shapes.js';
import { Random } from './fixtures/random.js';

const UNIT_IDS = 256;
const SUMMARY =
  '(each source range and unit range × its matching rules, each distinct rule set × its grants, each write range × the address segments it spans); ' +
  'expected fewer overlapping sources, units, ranges or value bounds';

/** Compile's stages, in its order. */
const STAGES = ['grants', 'regions', 'tables', 'unitRuns', 'policies', 'spans'] as const;
/** Entries per stage. */
type Stages = Record<(typeof STAGES)[number], number>;

/** No sources, no units: one rule set everywhere, one unit run, one unit policy. */
function nestedWritesStages(K: number, R: number): Stages {
  return {
    grants: R * (K * K + K), // per rule K address ranges × K values, and K coil ranges
    regions: 3 * (1 + R), // non-IP, IPv4, IPv6: one region each with all R rules
    tables: UNIT_IDS + R, // one rule set: its unit table, one unit range per rule
    unitRuns: R,
    policies: 1 + R * (K * K + K),
    // Address range i is [i, 2K − i]: it spans 2K − 2i − 1 segments, K² over all i, once per value.
    spans: R * (K * K * K + K * K) - R * (K * K + K),
  };
}

/** Rule i matches offsets [i, R − 1] and units [i, 255] (R ≤ 256): rule sets {0..j} everywhere. */
function overlappingStages(R: number, K: number): Stages {
  const tri = (R * (R + 1)) / 2;
  return {
    grants: R * 2 * K,
    // IPv4: a run before, one per offset i (rules 0..i), one after; IPv6 and non-IP: one, empty.
    regions: R + 2 + tri + 2,
    tables: UNIT_IDS * R + tri, // sets {0..j}: a unit table each, j + 1 unit ranges
    unitRuns: (R * (R + 1) * (R + 2)) / 6, // set {0..j}: runs at units 0..j of 1..j + 1 rules
    policies: R + 2 * K * tri, // unit sets {0..m}: 2K grants per rule
    spans: 0, // single-address writes: one segment each
  };
}

/** `everyone` (rule 0, G ranges per table) plus N one-address rules of U even units and G writes. */
function sourcesUnitsStages(N: number, U: number, G: number): Stages {
  return {
    grants: 6 * G + N * G, // everyone: 4 read tables, holding and coil writes
    // IPv4: 2N + 1 runs, everyone in each, s_i in its own; IPv6 and non-IP: one run of everyone.
    regions: 2 * N + 1 + (2 * N + 1 + N) + 2 + 2,
    tables: (UNIT_IDS + 1) * (N + 1) + N * U,
    unitRuns: 1 + 3 * U * N, // {0, s_i}: 2U runs, everyone in all, s_i in the even ones
    // {0}: all its tables. {0, s_i}: its holding writes; the other tables are {0}'s, shared.
    policies: 1 + 6 * G + N * (1 + 2 * G),
    spans: 0, // the same ranges in both rules: one segment each
  };
}

const total = (s: Stages): number => STAGES.reduce((n, k) => n + s[k], 0);
/** What compile counts before it stops: through the first stage that goes over the budget. */
function countedUntilOver(s: Stages, before = 0): number {
  let n = 0;
  for (const k of STAGES) {
    n += s[k];
    if (before + n > MAX_COMPILE_ENTRIES) break;
  }
  return n;
}

function device(text: string, name = 'plc'): CompiledDevice {
  const r = parsePolicy(text, 'p.yaml');
  if (r.policy === undefined) throw new Error(r.errors.map((e) => e.format()).join('\n'));
  return r.policy.devices.get(name)!;
}

function refusal(text: string, previous: CompiledPolicy | null = null): string[] {
  const r = parsePolicy(text, 'p.yaml', { previous });
  return r.policy === undefined ? r.errors.map((e) => e.format()) : ['compiled'];
}

const out = new Decision();
const reqBuf = new ModbusRequest();
const u16 = (n: number): number[] => [(n >> 8) & 0xff, n & 0xff];
function decide(d: CompiledDevice, source: string, unit: number, pdu: number[]): string {
  const adu = encodeAdu(1, unit, Buffer.from(pdu));
  const r = d.decide(d.forSource(source), decodeRequest(adu, 0, adu.length, reqBuf), out);
  return r.allow ? `allow ${r.rule}` : `deny ${r.reason} ${r.rule ?? '-'}`;
}
const readHolding = (a: number): number[] => [3, ...u16(a), 0, 1];
const writeHolding = (a: number, v: number): number[] => [6, ...u16(a), ...u16(v)];
const writeCoil = (a: number, on: boolean): number[] => [5, ...u16(a), on ? 0xff : 0, 0];

void t.test('aliases repeating nested write ranges, within the budget: compiled at load', (t) => {
  const K = 20;
  const d = device(aliasedNestedWrites(K, 10));
  t.equal(d.compileEntries, total(nestedWritesStages(K, 10)));
  t.equal(d.compileEntries, 88_510);
  // Addresses [0, 2K], even values 0..2K − 2 (holding); coils [0, 2K], on only.
  t.equal(decide(d, '10.0.0.1', 7, writeHolding(2 * K, 2 * K - 2)), 'allow r0');
  t.equal(decide(d, '10.0.0.1', 7, writeHolding(0, 3)), 'deny value_not_allowed r0');
  t.equal(decide(d, '10.0.0.1', 7, writeHolding(2 * K, 2 * K)), 'deny value_not_allowed r0');
  t.equal(decide(d, 'fd00::1', 7, writeHolding(2 * K + 1, 0)), 'deny address_not_allowed r0');
  t.equal(decide(d, 'fd00::1', 7, writeCoil(K, true)), 'allow r0');
  t.equal(decide(d, 'fd00::1', 7, writeCoil(K, false)), 'deny value_not_allowed r0');
  // One rule set for every address: one view, built at load, whatever connects.
  const view = d.forSource('10.0.0.1');
  for (const a of ['192.168.1.1', '::1', '::ffff:1.2.3.4', 'fe80::1%eth0', 'not an address']) t.equal(d.forSource(a), view, a);
  t.ok(Object.isFrozen(view));
  t.end();
});

void t.test('many overlapping sources, within the budget: every rule set built at load', (t) => {
  const R = 64;
  const K = 3;
  const d = device(overlappingSources(R, K));
  t.equal(d.compileEntries, total(overlappingStages(R, K)));
  t.equal(d.compileEntries, 79_300);
  // Offset j (10.0.0.j) matches rules 0..j; unit u is covered by rules 0..u; rule i reads
  // holding registers 2K·i + 2k and writes them with values 0..k.
  const views = new Set(Array.from({ length: R }, (_, j) => d.forSource(`10.0.0.${j}`)));
  t.equal(views.size, R, 'a view per rule set');
  t.equal(d.forSource('10.0.0.42'), d.forSource('::ffff:10.0.0.42'));
  const none = d.forSource(`10.0.0.${R}`);
  t.equal(none.matches, false);
  for (const a of ['9.255.255.255', '10.0.1.0', '::', 'fd00::1', 'nope']) t.equal(d.forSource(a), none, a);
  const random = new Random(0x15_02);
  let allowed = 0;
  for (let n = 0; n < 2000; n++) {
    const [i, j, u] = [random.int(R), random.int(R), random.int(R)];
    const expect = i <= Math.min(j, u) ? `allow r${i}` : 'deny address_not_allowed r0';
    if (expect.startsWith('allow')) allowed++;
    const got = decide(d, `10.0.0.${j}`, u, readHolding(2 * K * i + 2 * random.int(K)));
    if (got !== expect) t.fail(`rule ${i}, source offset ${j}, unit ${u}: ${got}, expected ${expect}`);
  }
  t.ok(allowed > 300 && allowed < 1000, `${allowed} of 2000 allowed`);
  t.equal(decide(d, '10.0.0.9', 9, writeHolding(2 * K * 9 + 4, 2)), 'allow r9');
  t.equal(decide(d, '10.0.0.9', 9, writeHolding(2 * K * 9 + 4, 3)), 'deny value_not_allowed r9');
  t.end();
});

void t.test('many sources × units × ranges through aliases, within the budget', (t) => {
  const [N, U, G] = [100, 8, 5];
  const d = device(sourcesUnitsRanges(N, U, G));
  t.equal(d.compileEntries, total(sourcesUnitsStages(N, U, G)));
  t.equal(d.compileEntries, 31_325);
  // Everyone may read and write [3k, 3k + 1] (values 0..100); s_i writes values 200..300 there too,
  // on even units below 2U.
  t.equal(decide(d, '10.0.5.1', 2, readHolding(3)), 'allow everyone');
  t.equal(decide(d, '10.0.5.1', 2, readHolding(5)), 'deny address_not_allowed everyone');
  t.equal(decide(d, '10.0.5.1', 2, writeHolding(4, 250)), 'allow s5');
  t.equal(decide(d, '10.0.5.1', 3, writeHolding(4, 250)), 'deny value_not_allowed everyone');
  t.equal(decide(d, '10.0.200.1', 2, writeHolding(4, 250)), 'deny value_not_allowed everyone');
  t.not(d.forSource('10.0.5.1'), d.forSource('10.0.6.1'), 'their own rule sets');
  t.equal(d.forSource('10.0.5.2'), d.forSource('192.168.0.1'), 'everyone alone');
  t.end();
});

void t.test('over the budget: refused at the device with the count, before anything is built', (t) => {
  const stages = nestedWritesStages(60, 20);
  t.equal(countedUntilOver(stages), 4_465_560);
  t.strictSame(refusal(aliasedNestedWrites(60, 20)), [
    `p.yaml:6:5: devices[0]: compiling device "plc" needs at least 4,465,560 entries, 4.47× the budget of 1,000,000 per policy ${SUMMARY}`,
  ]);
  // Stopped at the unit runs: the unit policies after them were never counted, let alone built.
  const overlapping = overlappingStages(180, 4);
  t.equal(countedUntilOver(overlapping), overlapping.grants + overlapping.regions + overlapping.tables + overlapping.unitRuns);
  t.strictSame(refusal(overlappingSources(180, 4)), [
    `p.yaml:3:5: devices[0]: compiling device "plc" needs at least 1,068,544 entries, 1.07× the budget of 1,000,000 per policy ${SUMMARY}`,
  ]);
  t.equal(countedUntilOver(sourcesUnitsStages(500, 64, 500)), 1_015_765);
  t.strictSame(refusal(sourcesUnitsRanges(500, 64, 500)), [
    `p.yaml:5:5: devices[0]: compiling device "plc" needs at least 1,015,765 entries, 1.02× the budget of 1,000,000 per policy ${SUMMARY}`,
  ]);
  t.end();
});

void t.test('the budget is per policy: the device where the count goes over is named, with the others', (t) => {
  const one = nestedWritesStages(30, 20);
  t.ok(total(one) <= MAX_COMPILE_ENTRIES && 2 * total(one) > MAX_COMPILE_ENTRIES);
  const text = `${aliasedNestedWrites(30, 20)}  - name: plc-b\n    listen: 127.0.0.1:3\n    upstream: 127.0.0.1:2\n    rules:\n${nestedWriteRules(20)}`;
  t.strictSame(refusal(text), [
    `p.yaml:30:5: devices[1]: compiling device "plc-b" needs at least 576,960 entries, which with the 576,960 of the devices before it makes 1,153,920, 1.16× the budget of 1,000,000 per policy ${SUMMARY}`,
  ]);
  t.equal(countedUntilOver(one, total(one)), 576_960);
  // Alone, each of them is fine.
  t.equal(device(aliasedNestedWrites(30, 20)).compileEntries, 576_960);
  t.end();
});

void t.test('a reload keeps unchanged devices compiled, and their entries still count against the budget', (t) => {
  const plcB = `  - name: plc-b\n    listen: 127.0.0.1:3\n    upstream: 127.0.0.1:2\n    rules:\n${nestedWriteRules(20)}`;
  const both = `${aliasedNestedWrites(30, 20)}${plcB}`;
  const alone = (text: string): CompiledPolicy => parsePolicy(text, 'p.yaml').policy!;
  const refused = refusal(both);
  t.match(refused, [/^p\.yaml:30:5: devices\[1\]: compiling device "plc-b" needs at least 576,960 entries, which with the 576,960 of the devices before it makes 1,153,920/]);
  // plc kept from the policy before: its 576,960 entries are counted as if compiled, so plc-b is refused alike.
  const plcOnly = alone(aliasedNestedWrites(30, 20));
  t.strictSame(refusal(both, plcOnly), refused);
  // plc-b kept, but it is what goes over: planned again, so the refusal reads the same.
  t.strictSame(refusal(both, alone(`${nestedWriteAnchors(30)}version: 1\ndevices:\n${plcB}`)), refused);
  // Within the budget: the unchanged device is the same object, the new one compiled.
  const small = `  - name: plc-c\n    listen: 127.0.0.1:4\n    upstream: 127.0.0.1:2\n    rules:\n      - read: { coils: [0] }\n`;
  const next = parsePolicy(`${aliasedNestedWrites(30, 20)}${small}`, 'p.yaml', { previous: plcOnly }).policy!;
  t.equal(next.devices.get('plc'), plcOnly.devices.get('plc'));
  t.equal(next.devices.get('plc')!.compileEntries, 576_960);
  t.equal(next.devices.get('plc-c')!.compileEntries, device(`${aliasedNestedWrites(30, 20)}${small}`, 'plc-c').compileEntries);
  // A changed document (one rule more) is compiled again, never taken from the policy before.
  const changed = parsePolicy(`${aliasedNestedWrites(30, 20)}      - { name: extra, read: { coils: [0] } }\n`, 'p.yaml', { previous: plcOnly }).policy!;
  t.not(changed.devices.get('plc'), plcOnly.devices.get('plc'));
  t.equal(decide(changed.devices.get('plc')!, '10.0.0.1', 1, [1, 0, 0, 0, 1]), 'allow extra');
  t.end();
});

void t.test('over the budget at every stage: the count stops there, cheaply', (t) => {
  const header = 'version: 1\ndevices:\n  - name: plc\n    listen: 127.0.0.1:1\n    upstream: 127.0.0.1:2\n    rules:\n';
  // Grants alone: one write entry of 1,500 address ranges × 1,500 value ranges, never expanded.
  const many = Array.from({ length: 1500 }, (_, i) => String(2 * i)).join(', ');
  t.strictSame(refusal(`x-m: &m [${many}]\n${header}      - write: { holding_registers: [{ addresses: *m, values: *m }] }\n`), [
    `p.yaml:4:5: devices[0]: compiling device "plc" needs at least 2,250,000 entries, 2.25× the budget of 1,000,000 per policy ${SUMMARY}`,
  ]);
  // Source regions: 1,000 rules for any source, cut into 1,201 IPv4 regions by one rule's 600
  // hosts: (2·600 + 1) runs of 1,000 rules, plus each host's own rule, plus IPv6 and non-IP.
  const hosts = Array.from({ length: 600 }, (_, i) => `10.${i >> 8}.${i & 0xff}.1`).join(', ');
  const anyRules = Array.from({ length: 1000 }, (_, i) => `      - { name: a${i}, read: { coils: [0] } }\n`).join('');
  const regions = 1201 + 1201 * 1000 + 600 + 2 * (1 + 1000);
  t.equal(1001 + regions, 1_205_804);
  t.strictSame(refusal(`${header}      - { name: hosts, sources: [${hosts}], read: { coils: [0] } }\n${anyRules}`), [
    `p.yaml:3:5: devices[0]: compiling device "plc" needs at least 1,205,804 entries, 1.21× the budget of 1,000,000 per policy ${SUMMARY}`,
  ]);
  // Unit tables and ranges: 100 rules for any source on 128 separate unit ids, and 80 hosts of
  // their own: 81 rule sets, each with a unit table and the 12,800 unit ranges.
  const even = Array.from({ length: 128 }, (_, i) => String(2 * i)).join(', ');
  const unitRules = Array.from({ length: 100 }, (_, i) => `      - { name: a${i}, units: *u, read: { coils: [0] } }\n`).join('');
  const hostRules = Array.from({ length: 80 }, (_, i) => `      - { name: s${i}, sources: [10.0.${i}.1], read: { coils: [0] } }\n`).join('');
  const tables = 81 * (UNIT_IDS + 128 * 100) + 80;
  t.equal(180 + (161 + 161 * 100 + 80 + 2 * 101) + tables, 1_074_339);
  t.strictSame(refusal(`x-u: &u [${even}]\n${header}${unitRules}${hostRules}`), [
    `p.yaml:4:5: devices[0]: compiling device "plc" needs at least 1,074,339 entries, 1.08× the budget of 1,000,000 per policy ${SUMMARY}`,
  ]);
  t.end();
});

void t.test('source regions agree with CIDR containment, IPv4 and IPv6, at every bound', (t) => {
  const random = new Random(0x15_2a);
  const word = (): number => random.u32();
  // Networks nested in a few bases, so they overlap, share bounds and differ in any word.
  const bases = [
    { family: 4, bits: 32, value: (10n << 24n) | BigInt(random.int(1 << 16)) << 8n },
    { family: 6, bits: 128, value: (0xfd00n << 112n) | (BigInt(word()) << 64n) | (BigInt(word()) << 32n) | BigInt(word()) },
    { family: 6, bits: 128, value: (0xfd00n << 112n) | (BigInt(word()) << 32n) },
  ];
  const text = (family: number, v: bigint): string =>
    formatIp({ family: family as 4 | 6, w0: Number((v >> 96n) & 0xffffffffn), w1: Number((v >> 64n) & 0xffffffffn), w2: Number((v >> 32n) & 0xffffffffn), w3: Number(v & 0xffffffffn) });
  const rules: string[][] = [];
  const probes = new Set<string>(['0.0.0.0', '255.255.255.255', '::', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff']);
  for (let i = 0; i < 40; i++) {
    const sources: string[] = [];
    for (let k = 0, n = 1 + random.int(3); k < n; k++) {
      const b = bases[random.int(bases.length)]!;
      const prefix = b.family === 4 ? 8 + random.int(25) : 16 + random.int(113);
      const size = 1n << BigInt(b.bits - prefix);
      const first = (b.value + BigInt(random.int(64)) * (size > 1n ? size / 2n : 1n)) & ~(size - 1n);
      sources.push(`${text(b.family, first)}/${prefix}`);
      for (const a of [first - 1n, first, first + size - 1n, first + size]) {
        if (a >= 0n && a < 1n << BigInt(b.bits)) probes.add(text(b.family, a));
      }
    }
    rules.push(sources);
  }
  const policy = `version: 1\ndevices:\n  - name: plc\n    listen: 127.0.0.1:1\n    upstream: 127.0.0.1:2\n    rules:\n${rules
    .map((s, i) => `      - { name: r${i}, sources: [${s.map((c) => `"${c}"`).join(', ')}], read: { coils: [${i}] } }\n`)
    .join('')}`;
  const d = device(policy);
  const cidr = (c: string): Cidr => {
    const r = parseCidr(c);
    if (!r.ok) throw new Error(`${c} ${r.problem}`);
    return r.value;
  };
  const cidrs = rules.map((s) => s.map(cidr));
  let matched = 0;
  for (const a of probes) {
    const ip = parseClientAddress(a)!;
    const expected = cidrs.map((list, i) => (list.some((c) => cidrContains(c, ip)) ? i : -1)).filter((i) => i >= 0);
    const got = cidrs.map((_, i) => i).filter((i) => decide(d, a, 1, [1, ...u16(i), 0, 1]).startsWith('allow'));
    if (JSON.stringify(got) !== JSON.stringify(expected)) t.fail(`${a}: rules ${got.join(',')}, expected ${expected.join(',')}`);
    if (d.forSource(a).matches !== expected.length > 0) t.fail(`${a}: matches`);
    if (expected.length > 0) matched++;
  }
  t.ok(matched > probes.size / 4 && matched < probes.size, `${matched} of ${probes.size} addresses matched`);
  t.end();
});

void t.test('compilePolicy on its own throws the refusal, with a stable code', (t) => {
  const v = validatePolicyText(aliasedNestedWrites(60, 20), 'p.yaml');
  const err = t.throws(() => compilePolicy(normalizePolicy(v.input!), { sha256: '', version: 0 })) as PolicyTooComplexError;
  t.ok(err instanceof PolicyTooComplexError);
  t.match(err, { code: 'ERR_POLICY_TOO_COMPLEX', device: 0, deviceName: 'plc', entries: 4_465_560, before: 0, budget: MAX_COMPILE_ENTRIES });
  t.equal(err.message, `devices[0]: compiling device "plc" needs at least 4,465,560 entries, 4.47× the budget of 1,000,000 per policy ${SUMMARY}`);
  t.end();
});

void t.test('`policy validate` refuses it (exit 1), as push and every reload do: they share parsePolicy', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'plcguard-complexity-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'bomb.yaml');
  fs.writeFileSync(file, aliasedNestedWrites(60, 20));
  const err: string[] = [];
  const code = await policyCommand(['validate', file], { stdout: () => {}, stderr: (s) => err.push(s) });
  t.equal(code, 1);
  t.strictSame(err, [
    `${file}:6:5: devices[0]: compiling device "plc" needs at least 4,465,560 entries, 4.47× the budget of 1,000,000 per policy ${SUMMARY}`,
    `${file}: invalid — 1 error`,
  ]);
});

void t.test('an alias is the latest node before it with its anchor, however many aliases there are', (t) => {
  const rules = Array.from({ length: 500 }, (_, i) => `      - { name: r${i}, read: *r }`).join('\n');
  const text = `x-a: &r { coils: [1] }\nx-b: &r { coils: [2] }\nversion: 1\ndevices:\n  - name: plc\n    listen: 127.0.0.1:1\n    upstream: 127.0.0.1:2\n    rules:\n${rules}\n      - { name: last, read: *later }\nx-c: &later { coils: [3] }\n`;
  t.strictSame(refusal(text), ['p.yaml:509:29: devices[0].rules[500].read: alias *later has no anchor; expected an anchor &later defined before it']);
  const d = device(text.replace(', read: *later', ', read: *r'));
  t.equal(decide(d, '10.0.0.1', 1, [1, 0, 2, 0, 1]), 'allow r0');
  t.equal(decide(d, '10.0.0.1', 1, [1, 0, 1, 0, 1]), 'deny address_not_allowed r0');
  t.end();
});
