// `npm run bench`: plcguard side by side with a blind pipe() relay and a direct connection, in one
// run, on loopback. Machines are noisy and only ratios hold, so the paths run interleaved (direct,
// relay, plcguard, direct, relay, plcguard, ...) and every number is the median of its rounds.
//
// Every party is its own process, forked from the compiled JS next to this file, so CPU time read
// from /proc is attributable: the simulated PLC, the relay, plcguard (dist/cli/main.js) and the
// load generator. All bind 127.0.0.1, every wait is bounded, and all are stopped at the end, on
// error and on SIGINT/SIGTERM.
//
//   node dist/bench/run.js [--quick] [--duration S] [--rounds N] [--only ID,ID] [--out FILE] [--cpu-prof]
//     [--plant-upstream-connections N]   (the plant with its devices sharing N PLC connections each)
import { fork, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { httpGet } from './lib/http.js';
import { cpuSeconds, foreignCpuSeconds, rssBytes, syscalls, wakeups } from './lib/procfs.js';
import { connectLocal, freePort } from './lib/net.js';
import { startScraper, type Scraper } from './lib/scrape.js';
import { PLCGUARD_MAIN, ROOT, startPlcguard as startPlcguardProcess, stopChild } from './lib/process.js';
import { delay, until } from './lib/wait.js';
import { hasType, nextMessage, type IdleConfig, type LoadMessage, type LoadResult, type LoadRunConfig } from './ipc.js';
import { LARGE_RULE_COUNT, largePolicy, learnPolicy, realisticPolicy } from './policies.js';
import {
  DISTURBED_OTHER_CORES,
  NOTES_MARKER,
  RESULTS_SCHEMA,
  evaluateTargets,
  renderMarkdown,
  renderText,
  resultsJson,
  summarizeScenario,
  type BenchResults,
  type IdleMemory,
  type Machine,
  type RunRecord,
} from './report.js';
import { SCENARIOS, PATH_LABELS, type PathName, type Scenario } from './scenarios.js';
import { FULL_PLANT, QUICK_PLANT, runPlant, type PlantResult } from './plant.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const RESULTS_DIR = path.join(ROOT, 'bench/results');
const RESULTS_MD = path.join(ROOT, 'bench/RESULTS.md');

interface Settings {
  durationSeconds: number;
  warmupSeconds: number;
  rounds: number;
  idleConnections: number;
  /** Time for RSS to settle after idle connections open or close (sockets freed, allocator quiet). */
  idleSettleMs: number;
}
/** Full run: 7 scenarios × 3-4 paths × 5 rounds of ~2 s, plus the idle test: ≈ 6 minutes on 2 cores. */
const FULL: Settings = { durationSeconds: 1.5, warmupSeconds: 0.3, rounds: 5, idleConnections: 1000, idleSettleMs: 1000 };
/** CI smoke: every scenario and path once, briefly (≈ 10 s); numbers are not meaningful. */
const QUICK: Settings = { durationSeconds: 0.15, warmupSeconds: 0.05, rounds: 1, idleConnections: 100, idleSettleMs: 100 };

/** Bounds on waits for the processes we start. */
const START_TIMEOUT_MS = 10_000;
/** Beyond warm-up + window: connect and drain bounds of the load generator, plus slack. */
const RUN_SLACK_MS = 15_000;
const RSS_SAMPLE_MS = 100;
const SCRAPE_INTERVAL_MS = 1000;
const SCRAPE_TIMEOUT_MS = 2000;
const READY_POLL_MS = 50;
/** Connections that make one request each before the idle baseline, so code paths are compiled. */
const IDLE_WARMUP_CONNECTIONS = 20;
const MAX_REPEATS_PER_ROUND = 2;
/** HMI-rate scenarios: rounds per `rounds`; their polls are pooled, so shorter rounds cost nothing. */
const PACED_ROUNDS_FACTOR = 2;
/**
 * Before an HMI-rate scenario's rounds, every path carries this much closed-loop traffic, verified
 * and not recorded: the rounds then measure processes as a plant runs them, long since warmed up.
 * A fresh Node process spends its first ~30 s at 50 req/s compiling its request path (bench/RESULTS.md
 * notes, "HMI rate"), which a measurement of its first two minutes would report as the tail.
 */
const PACED_WARMUP_MS = 3000;
/** The plant: startup, two phases of connecting 10,000 clients and polling, probes, with slack. */
const PLANT_BUDGET_S = 600;
/** At most this share of the planned runs is repeated, which bounds the run time. */
const REPEAT_BUDGET_FRACTION = 0.25;
/** Before a round, wait (bounded) until other processes leave the machine to us. */
const QUIET_SAMPLE_MS = 300;
const QUIET_WAIT_PER_ROUND_MS = 15_000;
const QUIET_WAIT_TOTAL_MS = 60_000;

// ---------------------------------------------------------------------------------------------
// /proc readers
// ---------------------------------------------------------------------------------------------

function machine(): Machine {
  let cpuModel = 'unknown';
  try {
    cpuModel = /^model name\s*:\s*(.+)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? cpuModel;
  } catch {
    /* not Linux: keep 'unknown' */
  }
  const nproc = Number(spawnSync('nproc', { encoding: 'utf8' }).stdout?.trim()) || os.availableParallelism();
  return { nproc, cpuModel, node: process.version, platform: os.platform(), release: os.release(), totalMemoryBytes: os.totalmem() };
}

// ---------------------------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------------------------

const children = new Set<ChildProcess>();

/** This process and every child it started: what foreignCpuSeconds leaves out. */
function ourPids(): number[] {
  return [process.pid, ...[...children].flatMap((c) => (c.pid === undefined ? [] : [c.pid]))];
}

function track(child: ChildProcess, name: string): ChildProcess {
  children.add(child);
  child.on('exit', () => children.delete(child));
  child.on('error', (err) => progress(`${name}: ${err.message}`));
  return child;
}

/** Forks one of the bench's own processes (no inherited flags: no loaders, no profilers). */
function forkBench(script: string, args: string[]): ChildProcess {
  const child = fork(path.join(HERE, script), args, { execArgv: [], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  return track(child, script);
}

async function stopAll(): Promise<void> {
  await Promise.all([...children].map((c) => stopChild(c)));
}

interface Bench {
  name: string;
  child: ChildProcess;
  pid: number;
  port: number;
}

async function startForked(script: string, args: string[], name: string): Promise<Bench> {
  const child = forkBench(script, args);
  const msg = await nextMessage<{ type: 'listening'; port: number }>(child, 'listening', `${name} start`, START_TIMEOUT_MS);
  return { name, child, pid: child.pid!, port: msg.port };
}

interface Plcguard extends Bench {
  adminPort: number;
}

/** Lines of plcguard's output kept for an error report. */
const LOG_LINES_KEPT = 20;

async function startPlcguard(name: string, policyFile: string, listenPort: number, adminPort: number, cpuProfDir: string | null): Promise<Plcguard> {
  const proc = startPlcguardProcess(name, ['run', '--policy', policyFile, '--admin', `127.0.0.1:${adminPort}`], {
    nodeArgs: cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${cpuProfDir}`] : [],
    keepLines: LOG_LINES_KEPT,
  });
  const child = track(proc.child, name);
  await proc.waitForEvent('policy_loaded', START_TIMEOUT_MS);
  // The admin endpoint comes up after the listeners: ready when /readyz says so.
  await until(
    async () => (await httpGet(adminPort, '/readyz', SCRAPE_TIMEOUT_MS).catch(() => null))?.status === 200,
    `${name} /readyz`,
    START_TIMEOUT_MS,
    READY_POLL_MS,
  );
  return { name, child, pid: child.pid!, port: listenPort, adminPort };
}

/**
 * haproxy as a C relay for scale (mode tcp, one thread, as the issue's measurements): started
 * only when `haproxy` is on PATH; null otherwise (the haproxy path is then left out).
 */
async function startHaproxy(dir: string, upstreamPort: number): Promise<Bench | null> {
  if (spawnSync('haproxy', ['-v'], { stdio: 'ignore' }).status !== 0) return null;
  const port = await freePort();
  const cfg = path.join(dir, 'haproxy.cfg');
  fs.writeFileSync(
    cfg,
    [
      'global',
      '  nbthread 1',
      '  maxconn 4096',
      'defaults',
      '  mode tcp',
      '  timeout connect 5s',
      '  timeout client 1h',
      '  timeout server 1h',
      'listen bench',
      `  bind 127.0.0.1:${port}`,
      `  server plc 127.0.0.1:${upstreamPort}`,
      '',
    ].join('\n'),
  );
  // -db: in the foreground, one process, so its pid is the one /proc measures.
  const child = track(spawn('haproxy', ['-db', '-f', cfg], { stdio: ['ignore', 'ignore', 'inherit'] }), 'haproxy');
  await until(
    async () => {
      const socket = await connectLocal(port, {}, SCRAPE_TIMEOUT_MS).catch(() => null);
      socket?.destroy();
      return socket !== null;
    },
    'haproxy listening',
    START_TIMEOUT_MS,
    READY_POLL_MS,
  );
  return { name: 'haproxy', child, pid: child.pid!, port };
}

// ---------------------------------------------------------------------------------------------
// One run: a scenario through one path for one round
// ---------------------------------------------------------------------------------------------

interface World {
  plc: Bench;
  relay: Bench;
  load: ChildProcess;
  plcguard: Plcguard | null;
  plcguard1000: Plcguard | null;
  /** The PLC that accepts one connection, and plcguard sharing it (the plcguard-shared path). */
  plcOne: Bench | null;
  plcguardShared: Plcguard | null;
  plcguardLearn: Plcguard | null;
  haproxy: Bench | null;
  settings: Settings;
}

function target(w: World, p: PathName): { port: number; proxy: Bench | null; plc: Bench } {
  switch (p) {
    case 'direct':
      return { port: w.plc.port, proxy: null, plc: w.plc };
    case 'relay':
      return { port: w.relay.port, proxy: w.relay, plc: w.plc };
    case 'plcguard':
      return { port: w.plcguard!.port, proxy: w.plcguard, plc: w.plc };
    case 'plcguard-1000':
      return { port: w.plcguard1000!.port, proxy: w.plcguard1000, plc: w.plc };
    case 'plcguard-shared':
      return { port: w.plcguardShared!.port, proxy: w.plcguardShared, plc: w.plcOne! };
    case 'plcguard-learn':
      return { port: w.plcguardLearn!.port, proxy: w.plcguardLearn, plc: w.plc };
    case 'haproxy':
      return { port: w.haproxy!.port, proxy: w.haproxy, plc: w.plc };
  }
}

/** CPU seconds of each process at one moment. */
interface Snap {
  t: number;
  foreign: number;
  proxy: number | null;
  proxyIo: { reads: number; writes: number } | null;
  proxyWakeups: number | null;
  plc: number;
  load: number;
}

/** Rounds and seconds per round for a scenario (see Scenario.roundsFactor and .paced; quick mode: as given). */
function roundsOf(s: Scenario, settings: Settings, quick: boolean): { rounds: number; durationSeconds: number } {
  if (s.paced && !quick) {
    // Enough time per path for samplesPerPath polls, spread over twice the usual rounds.
    const rounds = settings.rounds * PACED_ROUNDS_FACTOR;
    const seconds = (s.paced.samplesPerPath * s.paced.intervalMs) / 1000 / s.connections;
    return { rounds, durationSeconds: seconds / rounds };
  }
  const f = quick ? 1 : (s.roundsFactor ?? 1);
  return { rounds: settings.rounds * f, durationSeconds: settings.durationSeconds / f };
}

/** True when plcguard on path `p` enforces its policy (denied requests get its exception reply). */
function enforces(p: PathName): boolean {
  return p === 'plcguard' || p === 'plcguard-1000' || p === 'plcguard-shared';
}

/** PACED_WARMUP_MS of closed-loop traffic on path `p` with the scenario's connections; throws on a wrong answer. */
async function warmUp(w: World, s: Scenario, p: PathName): Promise<void> {
  const config: LoadRunConfig = {
    port: target(w, p).port,
    connections: s.connections,
    outstanding: 1,
    warmupMs: 0,
    durationMs: PACED_WARMUP_MS,
    mix: s.mix,
    enforced: enforces(p),
    // The connections the rounds will poll on: those are the ones to warm.
    keepOpen: true,
  };
  const done = nextMessage<Extract<LoadMessage, { type: 'result' }>>(w.load, 'result', `warm-up ${s.id}/${p}`, PACED_WARMUP_MS + RUN_SLACK_MS);
  w.load.send({ type: 'run', config });
  const r = (await done).result;
  if (r.errors > 0) throw new Error(`warm-up ${s.id}/${p}: ${r.errors} errors: ${r.errorSamples[0] ?? ''}`);
}

async function runOnce(w: World, s: Scenario, p: PathName, round: number, durationSeconds: number): Promise<RunRecord> {
  const { port, proxy, plc } = target(w, p);
  const config: LoadRunConfig = {
    port,
    connections: s.connections,
    outstanding: s.outstanding,
    warmupMs: w.settings.warmupSeconds * 1000,
    durationMs: durationSeconds * 1000,
    mix: s.mix,
    enforced: enforces(p),
    ...(s.paced ? { intervalMs: s.paced.intervalMs, keepSamples: true, keepOpen: true } : {}),
  };
  const proxyIdle = proxy ? rssBytes(proxy.pid) : null;
  let proxyPeak = proxyIdle;
  const pids = { proxy: proxy?.pid ?? null, plc: plc.pid, load: w.load.pid! };
  const snap = (): Snap => ({
    t: performance.now(),
    foreign: foreignCpuSeconds(ourPids()),
    proxy: pids.proxy === null ? null : cpuSeconds(pids.proxy),
    proxyIo: pids.proxy === null ? null : syscalls(pids.proxy),
    proxyWakeups: pids.proxy === null ? null : wakeups(pids.proxy),
    plc: cpuSeconds(pids.plc),
    load: cpuSeconds(pids.load),
  });
  // Filled in by the load generator's window messages (closures: hence an object, not lets).
  const win: { start: Snap | null; end: Snap | null; sampler: NodeJS.Timeout | null; scraper: Scraper | null } = {
    start: null,
    end: null,
    sampler: null,
    scraper: null,
  };
  const sampleRss = (): void => {
    if (proxy) proxyPeak = Math.max(proxyPeak ?? 0, rssBytes(proxy.pid));
  };
  const onMessage = (m: unknown): void => {
    if (!hasType(m)) return;
    if (m.type === 'window-start') {
      win.start = snap();
      win.sampler = setInterval(sampleRss, RSS_SAMPLE_MS);
      if (s.scrapeMetrics && p === 'plcguard') win.scraper = startScraper(w.plcguard!.adminPort, SCRAPE_INTERVAL_MS, SCRAPE_TIMEOUT_MS);
    } else if (m.type === 'window-end') {
      win.end = snap();
      sampleRss();
      if (win.sampler) clearInterval(win.sampler);
    }
  };
  w.load.on('message', onMessage);
  let result: LoadResult;
  try {
    const done = nextMessage<Extract<LoadMessage, { type: 'result' }>>(
      w.load,
      'result',
      `load ${s.id}/${p}`,
      config.warmupMs + config.durationMs + RUN_SLACK_MS,
    );
    w.load.send({ type: 'run', config });
    result = (await done).result;
  } finally {
    w.load.off('message', onMessage);
    if (win.sampler) clearInterval(win.sampler);
  }
  const scrapes = win.scraper ? await win.scraper.stop() : null;
  const a = win.start;
  const b = win.end;
  if (a === null || b === null) throw new Error(`load ${s.id}/${p}: no measuring window reported`);
  const wall = (b.t - a.t) / 1000;
  const n = Math.max(1, result.requests);
  const proxyCpu = a.proxy === null || b.proxy === null ? null : b.proxy - a.proxy;
  const plcCpu = b.plc - a.plc;
  const loadCpu = b.load - a.load;
  return {
    scenario: s.id,
    path: p,
    round,
    requests: result.requests,
    windowSeconds: result.windowSeconds,
    requestsPerSecond: result.requestsPerSecond,
    latency: result.latency,
    sent: result.sent,
    verified: result.verified,
    deniedVerified: result.deniedVerified,
    errors: result.errors,
    errorKinds: result.errorKinds,
    errorSamples: result.errorSamples,
    samplesDropped: result.samplesDropped,
    ...(result.samplesUs ? { samplesUs: result.samplesUs } : {}),
    cpu: {
      proxyUsPerRequest: proxyCpu === null ? null : (proxyCpu * 1e6) / n,
      proxyCores: proxyCpu === null ? null : proxyCpu / wall,
      plcUsPerRequest: (plcCpu * 1e6) / n,
      plcCores: plcCpu / wall,
      loadCores: loadCpu / wall,
      totalCores: ((proxyCpu ?? 0) + plcCpu + loadCpu) / wall,
      proxyReadsPerRequest: a.proxyIo === null || b.proxyIo === null ? null : (b.proxyIo.reads - a.proxyIo.reads) / n,
      proxyWritesPerRequest: a.proxyIo === null || b.proxyIo === null ? null : (b.proxyIo.writes - a.proxyIo.writes) / n,
      proxyWakeupsPerRequest: a.proxyWakeups === null || b.proxyWakeups === null ? null : (b.proxyWakeups - a.proxyWakeups) / n,
      otherCores: Math.max(0, (b.foreign - a.foreign) / wall),
    },
    rss: { proxyIdleBytes: proxyIdle, proxyPeakBytes: proxyPeak },
    scrapes,
  };
}

function describe(r: RunRecord): string {
  const cpu = r.cpu.proxyUsPerRequest === null ? '' : `, ${PATH_LABELS[r.path]} ${r.cpu.proxyUsPerRequest.toFixed(2)} µs/req`;
  const errs = r.errors > 0 ? `, ${r.errors} ERRORS: ${r.errorSamples[0] ?? ''}` : '';
  return `${Math.round(r.requestsPerSecond).toLocaleString('en-US')} req/s, p50 ${r.latency.p50Us.toFixed(1)} µs, p99 ${r.latency.p99Us.toFixed(1)} µs${cpu}, PLC ${r.cpu.plcCores.toFixed(2)} cores, all ${r.cpu.totalCores.toFixed(2)} cores (others ${r.cpu.otherCores.toFixed(2)})${errs}`;
}

/** Waits until other processes use at most DISTURBED_OTHER_CORES, for at most maxMs; resolves the time waited. */
async function waitForQuiet(maxMs: number): Promise<number> {
  const t0 = performance.now();
  let reported = false;
  for (;;) {
    const a = foreignCpuSeconds(ourPids());
    await delay(QUIET_SAMPLE_MS);
    const busy = (foreignCpuSeconds(ourPids()) - a) / (QUIET_SAMPLE_MS / 1000);
    const waited = performance.now() - t0;
    if (busy <= DISTURBED_OTHER_CORES || waited >= maxMs) {
      if (reported) progress(`  ...${busy <= DISTURBED_OTHER_CORES ? 'quiet' : 'still busy'} after ${(waited / 1000).toFixed(1)} s`);
      return waited;
    }
    if (!reported) progress(`  other processes keep ${busy.toFixed(2)} cores busy: waiting up to ${(maxMs / 1000).toFixed(0)} s for the machine to quieten`);
    reported = true;
  }
}

// ---------------------------------------------------------------------------------------------
// Idle connections: memory per connection held open
// ---------------------------------------------------------------------------------------------

async function idleMemory(w: World, which: 'relay' | 'plcguard', proxy: Bench): Promise<IdleMemory> {
  const enforced = which === 'plcguard';
  const open = async (connections: number): Promise<Extract<LoadMessage, { type: 'idle-opened' }>> => {
    const config: IdleConfig = { ports: [proxy.port], connections, mix: 'read', enforced };
    const opened = nextMessage<Extract<LoadMessage, { type: 'idle-opened' }>>(w.load, 'idle-opened', `idle connections to ${which}`, RUN_SLACK_MS * 2);
    w.load.send({ type: 'idle-open', config });
    return opened;
  };
  const close = async (): Promise<void> => {
    const closed = nextMessage(w.load, 'idle-closed', 'closing idle connections', START_TIMEOUT_MS);
    w.load.send({ type: 'idle-close' });
    await closed;
  };
  await open(IDLE_WARMUP_CONNECTIONS);
  await close();
  await delay(w.settings.idleSettleMs);
  const before = rssBytes(proxy.pid);
  const opened = await open(w.settings.idleConnections);
  await delay(w.settings.idleSettleMs);
  const during = rssBytes(proxy.pid);
  await close();
  await delay(w.settings.idleSettleMs);
  const after = rssBytes(proxy.pid);
  return {
    path: which,
    connections: opened.opened,
    rssBeforeBytes: before,
    rssOpenBytes: during,
    rssAfterCloseBytes: after,
    bytesPerConnection: Math.max(0, during - before) / Math.max(1, opened.opened),
    verified: opened.verified,
    errors: opened.errors + (opened.opened === w.settings.idleConnections ? 0 : 1),
  };
}

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

function progress(line: string): void {
  process.stderr.write(line + '\n');
}

interface Options {
  quick: boolean;
  settings: Settings;
  only: string[] | null;
  out: string | null;
  cpuProf: boolean;
  /** The plant's devices share this many PLC connections each (`upstream_connections`); null: one per client. */
  plantUpstreamConnections: number | null;
}

function options(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      duration: { type: 'string' },
      rounds: { type: 'string' },
      only: { type: 'string' },
      out: { type: 'string' },
      'cpu-prof': { type: 'boolean', default: false },
      'plant-upstream-connections': { type: 'string' },
    },
  });
  const settings = { ...(values.quick ? QUICK : FULL) };
  if (values.duration !== undefined) {
    const d = Number(values.duration);
    if (!(d > 0 && d <= 600)) throw new Error(`--duration must be seconds in (0, 600], got "${values.duration}"`);
    settings.durationSeconds = d;
  }
  if (values.rounds !== undefined) {
    const r = Number(values.rounds);
    if (!Number.isInteger(r) || r < 1 || r > 100) throw new Error(`--rounds must be a whole number 1..100, got "${values.rounds}"`);
    settings.rounds = r;
  }
  const only = values.only === undefined ? null : values.only.split(',').map((s) => s.trim());
  for (const id of only ?? []) {
    if (!SCENARIOS.some((s) => s.id === id) && id !== 'idle' && id !== 'plant') {
      throw new Error(`--only: unknown scenario "${id}"; known: ${[...SCENARIOS.map((s) => s.id), 'idle', 'plant'].join(', ')}`);
    }
  }
  const shared = values['plant-upstream-connections'];
  const plantUpstreamConnections = shared === undefined ? null : Number(shared);
  if (plantUpstreamConnections !== null && !(Number.isInteger(plantUpstreamConnections) && plantUpstreamConnections >= 1)) {
    throw new Error(`--plant-upstream-connections must be a whole number ≥ 1, got "${shared}"`);
  }
  return { quick: values.quick, settings, only, out: values.out ?? null, cpuProf: values['cpu-prof'], plantUpstreamConnections };
}

function writeAtomic(file: string, text: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp`;
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, file);
}

async function bench(opts: Options, command: string): Promise<BenchResults> {
  const startedAt = new Date().toISOString();
  const settings = opts.settings;
  const scenarios = SCENARIOS.filter((s) => opts.only === null || opts.only.includes(s.id));
  const wantIdle = opts.only === null || opts.only.includes('idle');
  const wantPlant = opts.only === null || opts.only.includes('plant');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'plcguard-bench-'));
  const cpuProfDir = opts.cpuProf ? path.join(RESULTS_DIR, 'profiles') : null;
  try {
    const plc = await startForked('plc.js', [], 'PLC');
    const relay = await startForked('relay.js', ['--upstream', String(plc.port)], 'relay');
    const load = forkBench('load.js', []);
    await nextMessage(load, 'ready', 'load generator start', START_TIMEOUT_MS);
    progress(`PLC pid ${plc.pid} on 127.0.0.1:${plc.port}; relay pid ${relay.pid} on :${relay.port}; load generator pid ${load.pid}`);

    const included = fs.existsSync(PLCGUARD_MAIN);
    const note = included ? `plcguard: ${path.relative(ROOT, PLCGUARD_MAIN)}` : `plcguard not measured: ${path.relative(ROOT, PLCGUARD_MAIN)} is missing (npm run build)`;
    const maxConnections = settings.idleConnections + IDLE_WARMUP_CONNECTIONS + 64;
    const startGuard = async (name: string, rules: 'realistic' | 'large' | 'learn', upstream = plc, sharedConnections?: number): Promise<Plcguard> => {
      const listenPort = await freePort();
      const adminPort = await freePort();
      const file = path.join(tmp, `${name}.yaml`);
      const o = { listenPort, upstreamPort: upstream.port, maxConnections, sharedConnections };
      fs.writeFileSync(file, rules === 'realistic' ? realisticPolicy(o) : rules === 'learn' ? learnPolicy(o) : largePolicy(o));
      const g = await startPlcguard(name, file, listenPort, adminPort, cpuProfDir);
      progress(`${name} pid ${g.pid} on 127.0.0.1:${listenPort} (admin :${adminPort}), ${rules === 'learn' ? 'learn mode' : `${rules === 'realistic' ? 10 : LARGE_RULE_COUNT}-rule policy`}`);
      return g;
    };
    const needs = (p: PathName): boolean => scenarios.some((s) => s.paths.includes(p));
    const plcOne = included && needs('plcguard-shared') ? await startForked('plc.js', ['--max-connections', '1'], 'PLC (one connection)') : null;
    const world: World = {
      plcOne,
      plcguardShared: plcOne ? await startGuard('plcguard-shared', 'realistic', plcOne, 1) : null,
      plc,
      relay,
      load,
      settings,
      plcguard: included && needs('plcguard') ? await startGuard('plcguard', 'realistic') : null,
      plcguard1000: included && needs('plcguard-1000') ? await startGuard('plcguard-1000', 'large') : null,
      plcguardLearn: included && needs('plcguard-learn') ? await startGuard('plcguard-learn', 'learn') : null,
      haproxy: needs('haproxy') ? await startHaproxy(tmp, plc.port) : null,
    };
    if (!included) progress(`NOTE: ${note}`);
    if (needs('haproxy')) progress(world.haproxy ? `haproxy pid ${world.haproxy.pid} on :${world.haproxy.port} (1 thread)` : 'haproxy not on PATH: its path is left out');

    const runs: RunRecord[] = [];
    const discarded: RunRecord[] = [];
    const started: Record<PathName, boolean> = {
      direct: true,
      relay: true,
      plcguard: world.plcguard !== null,
      'plcguard-1000': world.plcguard1000 !== null,
      'plcguard-shared': world.plcguardShared !== null,
      'plcguard-learn': world.plcguardLearn !== null,
      haproxy: world.haproxy !== null,
    };
    const available = (p: PathName): boolean => started[p];
    const planned = scenarios.reduce((n, s) => n + s.paths.filter(available).length * roundsOf(s, settings, opts.quick).rounds, 0);
    let repeatsLeft = opts.quick ? 0 : Math.floor(planned * REPEAT_BUDGET_FRACTION);
    let quietWaitLeftMs = QUIET_WAIT_TOTAL_MS;
    let done = 0;
    for (const s of scenarios) {
      const paths = s.paths.filter(available);
      const { rounds, durationSeconds } = roundsOf(s, settings, opts.quick);
      if (s.paced && !opts.quick) {
        progress(`${s.id}: warming every path up first (${PACED_WARMUP_MS / 1000} s of closed-loop traffic each, not recorded)`);
        for (const p of paths) await warmUp(world, s, p);
      }
      for (let round = 1; round <= rounds; round++) {
        for (let attempt = 1; ; attempt++) {
          if (!opts.quick) quietWaitLeftMs -= await waitForQuiet(Math.min(QUIET_WAIT_PER_ROUND_MS, quietWaitLeftMs));
          const these: RunRecord[] = [];
          for (const p of paths) {
            const r = await runOnce(world, s, p, round, durationSeconds);
            these.push(r);
            progress(`[${++done}/${planned}] ${s.id} round ${round}/${rounds} ${PATH_LABELS[p]}: ${describe(r)}`);
          }
          const foreign = Math.max(...these.map((r) => r.cpu.otherCores));
          // A round is compared path against path: if anything else took the CPU during part of
          // it, the comparison is skewed, so the whole round is run again (within a budget).
          if (foreign <= DISTURBED_OTHER_CORES || attempt > MAX_REPEATS_PER_ROUND || repeatsLeft < these.length) {
            runs.push(...these);
            break;
          }
          discarded.push(...these);
          repeatsLeft -= these.length;
          done -= these.length;
          progress(`  other processes used up to ${foreign.toFixed(2)} cores during this round: repeating it`);
        }
      }
    }

    const idle: IdleMemory[] = [];
    if (wantIdle) {
      // Fresh processes: a heap already grown by the load above would hide what connections cost.
      progress(`idle connections: ${settings.idleConnections} to a fresh relay${included ? ' and a fresh plcguard' : ''}`);
      const freshRelay = await startForked('relay.js', ['--upstream', String(plc.port)], 'relay (idle)');
      idle.push(await idleMemory(world, 'relay', freshRelay));
      await stopChild(freshRelay.child);
      if (included) {
        const freshGuard = await startGuard('plcguard-idle', 'realistic');
        idle.push(await idleMemory(world, 'plcguard', freshGuard));
        await stopChild(freshGuard.child);
      }
      for (const i of idle) progress(`  ${PATH_LABELS[i.path]}: ${(i.bytesPerConnection / 1024).toFixed(1)} KiB per idle connection`);
    }

    let plant: PlantResult | null = null;
    if (wantPlant && included) {
      // Its own processes: the plant's PLCs, a fresh plcguard and load generator (bench/plant.ts).
      plant = await runPlant({ ...(opts.quick ? QUICK_PLANT : FULL_PLANT), progress, cpuProfDir, upstreamConnections: opts.plantUpstreamConnections });
    }

    plc.child.send({ type: 'stats' });
    const plcStats = await nextMessage<{ type: 'stats'; requests: number; connections: number }>(plc.child, 'stats', 'PLC stats', START_TIMEOUT_MS);

    const summaries = scenarios.map((s) => summarizeScenario(s, runs));
    // Repeated runs were verified too: a wrong byte there is as wrong as anywhere.
    const all = [...runs, ...discarded];
    const sent = all.reduce((n, r) => n + r.sent, 0);
    const verified = all.reduce((n, r) => n + r.verified, 0);
    const errors = all.reduce((n, r) => n + r.errors, 0) + idle.reduce((n, i) => n + i.errors, 0);
    return {
      schema: RESULTS_SCHEMA,
      startedAt,
      finishedAt: new Date().toISOString(),
      command,
      quick: opts.quick,
      options: {
        durationSeconds: settings.durationSeconds,
        warmupSeconds: settings.warmupSeconds,
        rounds: settings.rounds,
        idleConnections: settings.idleConnections,
        scenarios: scenarios.map((s) => s.id),
      },
      machine: machine(),
      plcguard: { included, note },
      scenarios: summaries,
      idle,
      targets: evaluateTargets(summaries, idle, runs, plant),
      verification: {
        sent,
        verified,
        deniedVerified: all.reduce((n, r) => n + r.deniedVerified, 0),
        errors,
        allVerified: errors === 0 && verified === sent,
      },
      plc: { requestsServed: plcStats.requests },
      plant,
      runs,
      discarded,
    };
  } finally {
    await stopAll();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

async function main(): Promise<number> {
  let opts: Options;
  try {
    opts = options(process.argv.slice(2));
  } catch (err) {
    progress(`bench: ${(err as Error).message}`);
    return 2;
  }
  const command = `node ${path.relative(ROOT, fileURLToPath(import.meta.url))} ${process.argv.slice(2).join(' ')}`.trim();
  const canonical = !opts.quick && opts.only === null;
  const out = opts.out ?? (canonical ? path.join(RESULTS_DIR, 'latest.json') : path.join(os.tmpdir(), 'plcguard-bench-latest.json'));
  const s = opts.settings;
  // 24 runs per round at most (the split latency rounds add their own warm-ups: count 40), each
  // with its warm-up and ~1 s of connecting and draining; repeats
  // of disturbed rounds add up to REPEAT_BUDGET_FRACTION; then the idle measurement.
  // HMI-rate scenarios take their polls' time (4 paths) and a warm-up per run; the plant at most
  // PLANT_BUDGET_S.
  const pacedSeconds = SCENARIOS.reduce(
    (n, x) => n + (x.paced ? 4 * ((x.paced.samplesPerPath * x.paced.intervalMs) / 1000 / x.connections + PACED_WARMUP_MS / 1000 + s.rounds * PACED_ROUNDS_FACTOR * (s.warmupSeconds + 1)) : 0),
    0,
  );
  const budgetMs = (s.rounds * 40 * (s.durationSeconds + s.warmupSeconds + 1) * (1 + REPEAT_BUDGET_FRACTION) * 2 + 120 + pacedSeconds * 2 + PLANT_BUDGET_S) * 1000 + QUIET_WAIT_TOTAL_MS;
  // Bounded in time whatever happens: a hung child must not hang CI.
  const deadline = setTimeout(() => {
    progress(`bench: still running after ${Math.round(budgetMs / 1000)} s; stopping everything`);
    void stopAll().finally(() => process.exit(1));
  }, budgetMs);
  deadline.unref();
  const results = await bench(opts, canonical ? 'npm run bench' : command);
  process.stdout.write(renderText(results) + '\n');
  writeAtomic(out, resultsJson(results));
  progress(`results: ${path.relative(process.cwd(), out) || out}`);
  if (canonical) {
    const existing = fs.existsSync(RESULTS_MD) ? fs.readFileSync(RESULTS_MD, 'utf8') : '';
    const at = existing.indexOf(NOTES_MARKER);
    const notes = at < 0 ? '' : existing.slice(at + NOTES_MARKER.length).trimStart();
    writeAtomic(RESULTS_MD, renderMarkdown(results, notes));
    progress(`report: ${path.relative(process.cwd(), RESULTS_MD)}`);
  }
  return results.verification.allVerified ? 0 : 1;
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    progress(`bench: ${signal}; stopping all processes`);
    void stopAll().finally(() => process.exit(130));
  });
}

main().then(
  (code) => process.exit(code),
  (err: Error) => {
    progress(`bench: ${err.stack ?? err.message}`);
    void stopAll().finally(() => process.exit(1));
  },
);
