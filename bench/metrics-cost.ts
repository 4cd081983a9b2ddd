// Micro-benchmark of what counting costs per request: the work a session does for metrics on
// every answered request, against plcguard's whole CPU budget per request.
//
//   npm run bench:metrics                      # about 3 s
//   node dist/bench/metrics-cost.js --quick    # about 0.5 s, a smoke run
//   node dist/bench/metrics-cost.js --budget-ns 2400
//
// Per request, on the hot path (proxy/session.ts, Session.frame and Session.complete):
//   DeviceStats.countRequest(fc, decision)   one typed-array increment
//   performance.now()                        the one clock read that exists only for the
//                                            added-latency histogram (the others also serve
//                                            timeouts and rate limits)
//   3 × Histogram.observe(seconds)           round trip, PLC response time, added time
// Denials also count a reason (one more increment); they are a small share and skip the
// histograms, so an answered request is the dearer case and the one measured.
//
// The budget: plcguard's CPU per request at 16 connections × 8 outstanding, 2.4 µs in
// bench/RESULTS.md (`npm run bench`). Observability may cost at most 5 % of hot-path throughput,
// i.e. counting may take at most 5 % of that CPU time per request.
//
// Also printed, for scale: one /metrics scrape (createRegistry + registry.metrics()) with 1, 10
// and 50 devices that have seen traffic. Scrapes run on the same event loop but once per scrape
// interval, not per request.

import { createRegistry, PolicyStats } from '../proxy/metrics.js';
import { StatsRegistry } from '../proxy/server.js';
import { DECISION_ALLOWED, type DeviceStats } from '../proxy/stats.js';

const QUICK = process.argv.includes('--quick');
const WARMUP_MS = QUICK ? 50 : 300;
const MEASURE_MS = QUICK ? 150 : 1000;
/** Rounds of baseline/measured, interleaved; the median is reported. */
const ROUNDS = QUICK ? 3 : 5;
/** plcguard CPU per request at 16×8 (bench/RESULTS.md, "plcguard CPU per request at 16×8"). */
const DEFAULT_BUDGET_NS = 2400;
/** Counting may take at most this share of hot-path throughput. */
const MAX_SHARE = 0.05;
/** Distinct synthetic requests cycled through (a power of two: the index is a mask). */
const SAMPLES = 4096;
const SCRAPE_DEVICE_COUNTS = [1, 10, 50];
const SCRAPES_PER_MEASURE = QUICK ? 5 : 20;

function budgetNs(): number {
  const i = process.argv.indexOf('--budget-ns');
  if (i < 0) return DEFAULT_BUDGET_NS;
  const v = Number(process.argv[i + 1]);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--budget-ns: expected a positive number of nanoseconds, got "${process.argv[i + 1]}"`);
  return v;
}

/** xorshift32: the same samples on every run. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 0x1_0000_0000;
  };
}

/** Realistic values, in seconds: a PLC answers in 20 µs … 20 ms, plcguard adds 1 … 30 µs. */
interface Samples {
  fc: Uint8Array;
  upstream: Float64Array;
  added: Float64Array;
}

function samples(): Samples {
  const r = rng(0x9e3779b9);
  const logUniform = (lo: number, hi: number): number => lo * (hi / lo) ** r();
  const fcs = [3, 3, 3, 3, 3, 3, 4, 1, 16, 6];
  const s: Samples = { fc: new Uint8Array(SAMPLES), upstream: new Float64Array(SAMPLES), added: new Float64Array(SAMPLES) };
  for (let i = 0; i < SAMPLES; i++) {
    s.fc[i] = fcs[Math.floor(r() * fcs.length)]!;
    s.upstream[i] = logUniform(20e-6, 20e-3);
    s.added[i] = logUniform(1e-6, 30e-6);
  }
  return s;
}

/** Keeps the optimiser from discarding the baseline's work. */
let sink = 0;

type Loop = (n: number) => void;

/** The loop without counting: reads the same samples, so only the counting differs. */
function baseline(s: Samples): Loop {
  return (n) => {
    let acc = 0;
    for (let i = 0; i < n; i++) {
      const k = i & (SAMPLES - 1);
      acc += s.fc[k]! + s.upstream[k]! + s.added[k]!;
    }
    sink += acc;
  };
}

/** What Session.frame and Session.complete do for metrics per answered request. */
function counting(s: Samples, stats: DeviceStats, clock: boolean): Loop {
  return (n) => {
    let acc = 0;
    for (let i = 0; i < n; i++) {
      const k = i & (SAMPLES - 1);
      stats.countRequest(s.fc[k]!, DECISION_ALLOWED);
      const upstream = s.upstream[k]!;
      const added = s.added[k]!;
      if (clock) acc += performance.now();
      stats.upstreamTime.observe(upstream);
      stats.roundTrip.observe(upstream + added);
      stats.added.observe(added);
    }
    sink += acc;
  };
}

/** Runs `loop` in batches for `ms`; nanoseconds per iteration. */
function nsPerIteration(loop: Loop, ms: number): number {
  const batch = 100_000;
  const deadline = process.hrtime.bigint() + BigInt(ms) * 1_000_000n;
  const t0 = process.hrtime.bigint();
  let n = 0;
  let now = t0;
  do {
    loop(batch);
    n += batch;
    now = process.hrtime.bigint();
  } while (now < deadline);
  return Number(now - t0) / n;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function scrapeMs(deviceCount: number, s: Samples): Promise<{ ms: number; bytes: number }> {
  const registry = new StatsRegistry();
  for (let d = 0; d < deviceCount; d++) counting(s, registry.get(`boiler-${d}`), false)(SAMPLES);
  const policy = new PolicyStats();
  const register = createRegistry(registry, policy, '0.0.0-bench');
  let bytes = (await register.metrics()).length;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < SCRAPES_PER_MEASURE; i++) bytes = (await register.metrics()).length;
  return { ms: Number(process.hrtime.bigint() - t0) / 1e6 / SCRAPES_PER_MEASURE, bytes };
}

async function main(): Promise<void> {
  const budget = budgetNs();
  const s = samples();
  const registry = new StatsRegistry();
  const loops: [string, Loop][] = [
    ['baseline', baseline(s)],
    ['count', counting(s, registry.get('a'), false)],
    ['count+clock', counting(s, registry.get('b'), true)],
  ];
  console.log(`plcguard bench:metrics — node ${process.version}, ${QUICK ? 'quick' : 'full'} run, ${ROUNDS} rounds × ${MEASURE_MS} ms per loop`);
  for (const [, loop] of loops) nsPerIteration(loop, WARMUP_MS);
  const results = new Map<string, number[]>(loops.map(([name]) => [name, []]));
  for (let r = 0; r < ROUNDS; r++) {
    for (const [name, loop] of loops) results.get(name)!.push(nsPerIteration(loop, MEASURE_MS));
  }
  const base = median(results.get('baseline')!);
  const count = median(results.get('count')!) - base;
  const withClock = median(results.get('count+clock')!) - base;
  const share = withClock / budget;
  console.log('');
  console.log(`loop overhead (baseline)                          ${base.toFixed(1).padStart(7)} ns/request`);
  console.log(`countRequest + 3 histogram observes                ${count.toFixed(1).padStart(7)} ns/request`);
  console.log(`  + the added-latency clock read                   ${withClock.toFixed(1).padStart(7)} ns/request`);
  console.log(`CPU budget per request (16×8, bench/RESULTS.md)    ${budget.toFixed(0).padStart(7)} ns/request`);
  console.log(
    `metrics share of the budget                        ${(share * 100).toFixed(1).padStart(6)} %  (limit ${(MAX_SHARE * 100).toFixed(0)} %: ${share <= MAX_SHARE ? 'PASS' : 'FAIL'})`,
  );
  console.log('');
  for (const n of SCRAPE_DEVICE_COUNTS) {
    const { ms, bytes } = await scrapeMs(n, s);
    console.log(`/metrics scrape, ${String(n).padStart(2)} devices: ${ms.toFixed(2).padStart(6)} ms, ${bytes.toLocaleString('en-US')} bytes`);
  }
  // Printed so the work can't be optimised away; meaningless otherwise.
  console.log(`\n(checksum ${Math.round(sink) % 1000})`);
  process.exitCode = share <= MAX_SHARE ? 0 : 1;
}

await main();
