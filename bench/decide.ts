// ns per decide() call for a 10-rule and a 1,000-rule policy: allow, deny-address, deny-function
// (and a value-checked write). The request is decoded once; the loop measures the decision alone,
// as the proxy calls it per frame with the connection's resolved view.
//
//   npm run build && node dist/bench/decide.js           # full run, ~10 s
//   node dist/bench/decide.js --quick                     # CI smoke, ~0.5 s
//
// The 1,000-rule policy is the hard case: every rule matches the source and unit, so the unit's
// tables hold 1,000 disjoint intervals each and every lookup is a full binary search.

import { decodeRequest, encodeAdu, ModbusRequest } from '../modbus/index.js';
import { compilePolicy, Decision, normalizePolicy, validatePolicyText } from '../policy/index.js';
import type { CompiledDevice, SourceView } from '../policy/index.js';

const TARGET_NS = 150;
const SOURCE = '10.1.2.3';
const UNIT = 1;

interface Settings {
  readonly warmup: number;
  readonly iterations: number;
  readonly runs: number;
}
const FULL: Settings = { warmup: 500_000, iterations: 1_000_000, runs: 7 };
const QUICK: Settings = { warmup: 20_000, iterations: 40_000, runs: 3 };

const u16 = (n: number): number[] => [(n >> 8) & 0xff, n & 0xff];

/** Rule i owns holding registers [i·STRIDE, i·STRIDE + 49]: reads the first 20, writes the next 10. */
const STRIDE = 50;

function policyText(rules: number): string {
  const list = Array.from({ length: rules }, (_, i) => {
    const base = i * STRIDE;
    return {
      name: `rule-${i}`,
      sources: i % 2 === 0 ? ['10.0.0.0/8'] : ['10.1.0.0/16', 'fd00::/64'],
      units: [UNIT, '10-20'],
      read: { holding_registers: [`${base}-${base + 19}`], coils: [`${i * 16}-${i * 16 + 7}`] },
      write: { holding_registers: [{ addresses: `${base + 20}-${base + 29}`, values: '0-1000' }] },
      functions: i % 10 === 0 ? ['report_server_id', { code: 'diagnostics', subfunctions: [0] }] : [],
    };
  });
  return JSON.stringify({ version: 1, devices: [{ name: 'plc', listen: '127.0.0.1:5020', upstream: '127.0.0.1:502', rules: list }] });
}

function request(pdu: number[]): ModbusRequest {
  const adu = encodeAdu(1, UNIT, Buffer.from(pdu));
  return decodeRequest(adu, 0, adu.length, new ModbusRequest());
}

interface Scenario {
  readonly name: string;
  readonly req: ModbusRequest;
  /** What the decision must be, so the loop measures the intended path. */
  readonly expect: string;
}

function scenarios(rules: number): Scenario[] {
  const mid = Math.floor(rules / 2) * STRIDE;
  return [
    { name: 'allow', req: request([3, ...u16(mid), ...u16(10)]), expect: 'allowed' },
    { name: 'deny-address', req: request([3, ...u16(mid + 40), ...u16(5)]), expect: 'address_not_allowed' },
    { name: 'deny-function', req: request([43, 14, 1, 0]), expect: 'function_not_allowed' },
    {
      name: 'allow-write-10',
      req: request([16, ...u16(mid + 20), ...u16(10), 20, ...Array.from({ length: 10 }, (_, i) => u16(i * 100)).flat()]),
      expect: 'allowed',
    },
  ];
}

let sink = 0;

function loop(device: CompiledDevice, view: SourceView, req: ModbusRequest, out: Decision, n: number): void {
  for (let i = 0; i < n; i++) sink += device.decide(view, req, out).exception;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1]!;
}

function measure(device: CompiledDevice, s: Scenario, settings: Settings): number {
  const view = device.forSource(SOURCE);
  const out = new Decision();
  device.decide(view, s.req, out);
  if (out.reason !== s.expect) throw new Error(`${s.name}: decided ${out.reason}, expected ${s.expect}`);
  loop(device, view, s.req, out, settings.warmup);
  const samples: number[] = [];
  for (let r = 0; r < settings.runs; r++) {
    const t0 = process.hrtime.bigint();
    loop(device, view, s.req, out, settings.iterations);
    samples.push(Number(process.hrtime.bigint() - t0) / settings.iterations);
  }
  return median(samples);
}

/** µs to resolve a connection's view: a search over the views compile built, never a build. */
function measureForSource(device: CompiledDevice): number {
  const n = 10_000;
  for (let i = 0; i < n; i++) device.forSource(SOURCE);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) device.forSource(SOURCE);
  return Number(process.hrtime.bigint() - t0) / 1000 / n;
}

function pad(s: string, n: number, right = false): string {
  return right ? s.padEnd(n) : s.padStart(n);
}

function main(argv: readonly string[]): number {
  const quick = argv.includes('--quick');
  const settings = quick ? QUICK : FULL;
  const sizes = [10, 1000];
  const names = scenarios(10).map((s) => s.name);
  const rows: string[][] = [];
  const views: string[] = [];
  let worst = 0;
  for (const size of sizes) {
    const text = policyText(size);
    const t0 = process.hrtime.bigint();
    const v = validatePolicyText(text, `bench-${size}.json`);
    if (v.input === undefined) throw new Error(v.errors.map((e) => e.format()).join('\n'));
    const t1 = process.hrtime.bigint();
    const device = compilePolicy(normalizePolicy(v.input), { sha256: '', version: 0 }).devices.get('plc')!;
    const ms = (from: bigint, to: bigint): string => (Number(to - from) / 1e6).toFixed(1);
    views.push(
      `${size} rules: validate ${ms(t0, t1)} ms, compile ${ms(t1, process.hrtime.bigint())} ms (${device.compileEntries.toLocaleString('en')} entries), forSource ${measureForSource(device).toFixed(2)} µs`,
    );
    const ns = scenarios(size).map((s) => measure(device, s, settings));
    worst = Math.max(worst, ...ns.slice(0, 3));
    rows.push([`${size} rules`, ...ns.map((x) => x.toFixed(1))]);
  }
  const widths = [12, ...names.map((n) => Math.max(n.length, 8))];
  const line = (cells: string[]) => cells.map((c, i) => pad(c, widths[i]!, i === 0)).join('  ');
  const out = [
    `decide(): ns per decision, median of ${settings.runs} runs × ${settings.iterations.toLocaleString('en')} decisions (Node ${process.version}${quick ? ', --quick' : ''})`,
    '',
    line(['policy', ...names]),
    ...rows.map(line),
    '',
    ...views,
    '',
    `target ≤ ${TARGET_NS} ns for allow, deny-address, deny-function: ${worst <= TARGET_NS ? 'met' : 'NOT met'} (worst ${worst.toFixed(1)} ns)`,
  ];
  console.log(out.join('\n'));
  // Keeps the loop's result alive so the decisions can't be optimized away.
  if (sink === -1) console.log(sink);
  return 0;
}

process.exitCode = main(process.argv.slice(2));
