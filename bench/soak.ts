// `npm run soak [-- --minutes N]`: hours of mixed load through the built plcguard binary with
// faults injected on a schedule, printing memory, latency and counts every few seconds. Not in CI.
//
// Pieces, all on 127.0.0.1: plcguard (dist/cli/main.js run, a watched policy file, an admin
// port for /metrics) as a child process, so its memory is its own; the benchmark's simulated PLC
// (bench/plc.ts, with its faults) and the clients in this process. Every reply is checked byte for
// byte against what the request must get: the PLC's answer (bench/model.ts), the policy's
// exception, or 0A/0B while the PLC is faulty. A request that gets a wrong reply, or none within
// LOST_AFTER_MS, is an error; so is plcguard dying or exiting non-zero.
//
// The fault schedule repeats every CYCLE_MS (offsets below): slow PLC, PLC down and back on the same
// port, PLC resetting connections mid-response, PLC garbage, valid and invalid policy edits, a
// connection flood from one source, slowloris. Ctrl-C (SIGINT) or the end of --minutes stops the
// load, sends plcguard SIGTERM, waits for its exit and prints the summary.
//
// First, a plant-rate phase (bench/plant.ts): --plant-devices devices (100) × --plant-clients
// clients (10) polling at 2 req/s for --plant-seconds (10; 0 skips it), a live policy change on
// every device in the middle; anything dropped or wrong makes the soak unclean. `npm run bench`
// runs the same at 1,000 devices.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { httpGet } from './lib/http.js';
import { freePort } from './lib/net.js';
import { rssBytes } from './lib/procfs.js';
import { PLCGUARD_MAIN, parseEvent, startPlcguard, type Exit } from './lib/process.js';
import { EXCEPTION, FC, MBAP_LENGTH, adu, exceptionAdu, pdu, referenceResponse } from './model.js';
import { BenchPlc } from './plc.js';
import { runPlant } from './plant.js';
import { plantLines } from './report.js';
import { LogHistogram, summarizeLatencies } from './stats.js';
import type { LatencySummary } from './ipc.js';

const REPORT_EVERY_MS = 5000;
const CYCLE_MS = 60_000;
/** Steady clients, each from its own loopback address, each with requests in flight. */
const CLIENTS = 8;
const DEPTH = 2;
/** Pause between a reply and the next request of a client slot: ≈ CLIENTS·DEPTH/PACE_MS req/s. */
const PACE_MS = 4;
/** A burst client pipelines this many requests once a second (max_outstanding pressure). */
const BURST = 200;
const FLOOD_CONNECTIONS = 300;
const SLOWLORIS_CONNECTIONS = 20;
/** plcguard answers 0B after its 2 s response timeout: nothing may take longer than this. */
const LOST_AFTER_MS = 10_000;
/** Latency samples kept per report interval (reservoir): bounded memory whatever the rate. */
const SAMPLES = 20_000;
/** plcguard's start (listening) and its stop after SIGTERM (grace period 3 s, plus slack). */
const START_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 10_000;
/** The unit every request goes to (the policy's rules name it). */
const UNIT = 1;

// ---- the policy ----

function policyText(listen: number, upstream: number, writable: string): string {
  return `version: 1
defaults:
  limits:
    response_timeout_ms: 2000
    frame_timeout_ms: 3000
    idle_timeout_ms: 60000
    max_connections: 64
    max_connections_per_source: 8
    reconnect_backoff_min_ms: 50
    reconnect_backoff_max_ms: 500
  rate_limit: { requests_per_second: 5000, burst: ${2 * BURST} }
devices:
  - name: soak
    listen: 127.0.0.1:${listen}
    upstream: 127.0.0.1:${upstream}
    rules:
      - name: hmi-read
        units: [1]
        read: { holding_registers: [0-199], input_registers: [0-99] }
      - name: setpoints
        units: [1]
        write: { holding_registers: [${writable}] }
`;
}
const WRITABLE_A = '10-19';
const WRITABLE_B = '20-29';

// ---- requests and what each must get back ----

interface Pending {
  frame: Buffer;
  sentAt: number;
  /** Exact replies acceptable besides 0A/0B (which are always acceptable: faults are scheduled). */
  ok: Buffer[];
  kind: 'answer' | 'denied' | 'either';
}

const exception = (f: Buffer, code: number): Buffer => exceptionAdu(f.readUInt16BE(0), f[6]!, f[7]!, code);
/** 0A or 0B: plcguard's answer while the PLC is down, slow or broken. */
const isGatewayError = (p: Pending, r: Buffer): boolean =>
  r.equals(exception(p.frame, EXCEPTION.GATEWAY_PATH_UNAVAILABLE)) || r.equals(exception(p.frame, EXCEPTION.GATEWAY_TARGET_FAILED));

function makeRequest(tid: number): Pending {
  const r = Math.random();
  const now = performance.now();
  let f: Buffer;
  if (r < 0.7) {
    const start = Math.floor(Math.random() * 190);
    f = adu(tid, UNIT, pdu.read(FC.READ_HOLDING_REGISTERS, start, 1 + Math.floor(Math.random() * Math.min(10, 200 - start))));
    return { frame: f, sentAt: now, ok: [referenceResponse(f)], kind: 'answer' };
  }
  if (r < 0.8) {
    f = adu(tid, UNIT, pdu.writeRegister(200 + Math.floor(Math.random() * 50), 1));
    return { frame: f, sentAt: now, ok: [exception(f, EXCEPTION.ILLEGAL_DATA_ADDRESS)], kind: 'denied' };
  }
  if (r < 0.85) {
    f = adu(tid, UNIT, pdu.diagnostics(4, 0)); // Force Listen Only
    return { frame: f, sentAt: now, ok: [exception(f, EXCEPTION.ILLEGAL_FUNCTION)], kind: 'denied' };
  }
  // A write the two policy versions disagree about: either outcome is right.
  f = adu(tid, UNIT, pdu.writeRegister(Math.random() < 0.5 ? 15 : 25, 7));
  return { frame: f, sentAt: now, ok: [referenceResponse(f), exception(f, EXCEPTION.ILLEGAL_DATA_ADDRESS)], kind: 'either' };
}

/** Hands each whole ADU at the start of `buf` to `each`; returns the incomplete rest. */
function takeFrames(buf: Buffer, each: (frame: Buffer) => void): Buffer {
  let i = 0;
  while (buf.length - i >= MBAP_LENGTH - 1) {
    const len = MBAP_LENGTH - 1 + buf.readUInt16BE(i + 4);
    if (buf.length - i < len) break;
    each(buf.subarray(i, i + len));
    i += len;
  }
  return buf.subarray(i);
}

// ---- counting ----

class Counts {
  sent = 0;
  answered = 0;
  denied = 0;
  gateway = 0;
  /** Requests outstanding on a connection plcguard closed (a PLC response cut mid-way). */
  cut = 0;
  wrong = 0;
  lost = 0;
  /** 06 to the burst client: its requests held behind a stalled PLC are decided in a clump. */
  busy = 0;
  reconnects = 0;
  floodRefused = 0;
  slowlorisClosed = 0;
  policyEdits = 0;
  invalidEdits = 0;
}

/** A uniform sample (reservoir sampling) of one interval's latencies in µs: bounded whatever the rate. */
class Reservoir {
  private readonly values = new Float32Array(SAMPLES);
  private seen = 0;
  add(us: number): void {
    this.seen++;
    if (this.seen <= SAMPLES) this.values[this.seen - 1] = us;
    else {
      const j = Math.floor(Math.random() * this.seen);
      if (j < SAMPLES) this.values[j] = us;
    }
  }
  /** The interval's summary and its request count; starts the next interval. */
  take(): LatencySummary & { n: number } {
    const n = this.seen;
    this.seen = 0;
    return { ...summarizeLatencies(this.values.subarray(0, Math.min(n, SAMPLES))), n };
  }
}

// ---- clients ----

class SteadyClient {
  private socket: net.Socket | null = null;
  private readonly pending = new Map<number, Pending>();
  private buf: Buffer = Buffer.alloc(0);
  private nextTid = 1;
  private stopped = false;
  private readonly timers = new Set<NodeJS.Timeout>();

  constructor(
    private readonly port: number,
    private readonly source: string,
    private readonly depth: number,
    private readonly pace: number,
    private readonly counts: Counts,
    private readonly latency: { all: LogHistogram; interval: Reservoir },
    private readonly onWrong: (what: string) => void,
  ) {}

  start(): void {
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    this.socket?.destroy();
  }

  /** Requests older than LOST_AFTER_MS: counted once as lost and forgotten. */
  sweep(now: number): void {
    for (const [tid, p] of this.pending) {
      if (now - p.sentAt > LOST_AFTER_MS) {
        this.pending.delete(tid);
        this.counts.lost++;
        this.onWrong(`lost: ${p.frame.toString('hex')} from ${this.source}, no reply after ${LOST_AFTER_MS} ms`);
      }
    }
  }

  private later(ms: number, fn: () => void): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
  }

  private connect(): void {
    if (this.stopped) return;
    const s = net.connect({ host: '127.0.0.1', port: this.port, localAddress: this.source, noDelay: true });
    this.socket = s;
    this.buf = Buffer.alloc(0);
    s.on('error', () => {});
    s.on('connect', () => {
      for (let i = 0; i < this.depth; i++) this.send();
    });
    s.on('data', (chunk: Buffer) => this.onData(chunk));
    s.on('close', () => {
      if (this.socket !== s) return;
      this.socket = null;
      // What was outstanding when plcguard closed the connection (a response cut mid-way by a
      // resetting PLC) gets no reply: that is the documented outcome, counted apart.
      this.counts.cut += this.pending.size;
      this.pending.clear();
      if (!this.stopped) {
        this.counts.reconnects++;
        this.later(100, () => this.connect());
      }
    });
  }

  private send(): void {
    const s = this.socket;
    if (s === null || this.stopped || s.destroyed) return;
    const tid = this.nextTid;
    this.nextTid = (this.nextTid % 0xffff) + 1;
    const p = makeRequest(tid);
    this.pending.set(tid, p);
    this.counts.sent++;
    s.write(p.frame);
  }

  private onData(chunk: Buffer): void {
    this.buf = takeFrames(this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]), (r) => this.onReply(r));
  }

  private onReply(r: Buffer): void {
    const tid = r.readUInt16BE(0);
    const p = this.pending.get(tid);
    if (p === undefined) {
      this.counts.wrong++;
      this.onWrong(`a reply to nothing outstanding: ${r.toString('hex')} at ${this.source}`);
      return;
    }
    this.pending.delete(tid);
    const us = (performance.now() - p.sentAt) * 1000;
    this.latency.all.add(us);
    this.latency.interval.add(us);
    if (p.ok.some((o) => o.equals(r))) {
      if (p.kind === 'denied' || (p.kind === 'either' && r[7]! & 0x80)) this.counts.denied++;
      else this.counts.answered++;
    } else if (isGatewayError(p, r)) {
      this.counts.gateway++;
    } else {
      this.counts.wrong++;
      this.onWrong(`wrong reply to ${p.frame.toString('hex')}: ${r.toString('hex')}`);
    }
    this.later(this.pace, () => this.send());
  }
}

/** Once a second: BURST requests in one write on a fresh connection, all of which must come back. */
async function burstOnce(port: number, counts: Counts, onWrong: (w: string) => void): Promise<void> {
  const s = net.connect({ host: '127.0.0.1', port, localAddress: '127.0.11.1' });
  s.on('error', () => {});
  const reqs = Array.from({ length: BURST }, (_, i) => makeRequest(i + 1));
  let got = 0;
  let buf: Buffer = Buffer.alloc(0);
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => s.destroy(), LOST_AFTER_MS);
    s.on('connect', () => s.write(Buffer.concat(reqs.map((r) => r.frame))));
    s.on('data', (chunk: Buffer) => {
      buf = takeFrames(Buffer.concat([buf, chunk]), (r) => {
        const p = reqs[r.readUInt16BE(0) - 1];
        // Behind a stalled PLC its requests wait at max_outstanding and are then decided in a
        // clump, past the rate limit's burst: 06 (server busy) is a right answer here.
        const busy = p !== undefined && r.equals(exception(p.frame, EXCEPTION.SERVER_DEVICE_BUSY));
        if (busy) counts.busy++;
        const fine = p !== undefined && (busy || p.ok.some((o) => o.equals(r)) || isGatewayError(p, r));
        if (!fine) {
          counts.wrong++;
          onWrong(`burst: wrong reply ${r.toString('hex')}`);
        }
        if (++got === BURST) s.end();
      });
    });
    s.on('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
  counts.sent += BURST;
  // A connection cut by a resetting PLC leaves the rest unanswered (counted like the steady ones).
  counts.cut += BURST - got;
}

/** FLOOD_CONNECTIONS connections from one address at once; all beyond the per-source limit refused. */
async function flood(port: number, counts: Counts): Promise<void> {
  await Promise.all(
    Array.from(
      { length: FLOOD_CONNECTIONS },
      () =>
        new Promise<void>((resolve) => {
          const s = net.connect({ host: '127.0.0.1', port, localAddress: '127.0.12.1' });
          s.on('error', () => {});
          let refused = true;
          s.on('data', () => (refused = false));
          s.on('connect', () => setTimeout(() => s.destroy(), 200));
          s.on('close', () => {
            if (refused) counts.floodRefused++;
            resolve();
          });
        }),
    ),
  );
}

/** Slowloris: one byte a second until plcguard's frame timeout closes each connection. */
async function slowloris(port: number, counts: Counts): Promise<void> {
  const bytes = adu(1, UNIT, pdu.read(FC.READ_HOLDING_REGISTERS, 0, 1));
  await Promise.all(
    Array.from(
      { length: SLOWLORIS_CONNECTIONS },
      (_, k) =>
        new Promise<void>((resolve) => {
          const s = net.connect({ host: '127.0.0.1', port, localAddress: `127.0.13.${k + 1}` });
          s.on('error', () => {});
          let i = 0;
          const timer = setInterval(() => {
            if (i < bytes.length) s.write(bytes.subarray(i, ++i));
            else s.destroy(); // it would finish the frame at 12 s: plcguard must close it first
          }, 1000);
          s.on('close', () => {
            clearInterval(timer);
            if (i < bytes.length) counts.slowlorisClosed++;
            resolve();
          });
        }),
    ),
  );
}

// ---- plcguard ----

/** Resident memory of plcguard; 0 once it is gone (the soak reports that, and ends). */
function rssOf(pid: number): number {
  try {
    return rssBytes(pid);
  } catch {
    return 0;
  }
}

function metric(text: string, name: string): number | null {
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+-]+)$`, 'm').exec(text);
  return m ? Number(m[1]) : null;
}

// ---- main ----

const mib = (n: number): string => `${(n / 1048576).toFixed(1)}MiB`;
/** µs as the report prints them: ms, two decimals below 10 ms. */
const ms = (us: number): string => {
  const n = us / 1000;
  return `${n.toFixed(n < 10 ? 2 : 0)}ms`;
};

const USAGE =
  'usage: node dist/bench/soak.js [--minutes N] [--plant-devices N] [--plant-clients N] [--plant-seconds S]\n' +
  '  (npm run soak [-- ...]; minutes default 60, fractions allowed; the plant phase first: 100 devices × 10 clients for 10 s, 0 s skips it)\n';
const PLANT_DEFAULTS = { devices: '100', clients: '10', seconds: '10' };
/** Polls per client: an HMI's 2 a second, as in the bench's plant. */
const PLANT_INTERVAL_MS = 500;
const PLANT_WARMUP_SECONDS = 1;

async function main(): Promise<number> {
  let values: { minutes: string; help: boolean; 'plant-devices': string; 'plant-clients': string; 'plant-seconds': string };
  try {
    values = parseArgs({
      options: {
        minutes: { type: 'string', default: '60' },
        help: { type: 'boolean', default: false },
        'plant-devices': { type: 'string', default: PLANT_DEFAULTS.devices },
        'plant-clients': { type: 'string', default: PLANT_DEFAULTS.clients },
        'plant-seconds': { type: 'string', default: PLANT_DEFAULTS.seconds },
      },
    }).values;
  } catch (err) {
    process.stderr.write(`soak: ${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const minutes = Number(values.minutes);
  if (!(minutes > 0)) {
    process.stderr.write(`soak: --minutes must be a positive number, got "${values.minutes}"\n`);
    return 2;
  }
  if (!fs.existsSync(PLCGUARD_MAIN)) {
    process.stderr.write(`soak: ${PLCGUARD_MAIN} not found: run "npm run soak" (it builds first)\n`);
    return 2;
  }
  const plantDevices = Number(values['plant-devices']);
  const plantClients = Number(values['plant-clients']);
  const plantSeconds = Number(values['plant-seconds']);
  if (!Number.isInteger(plantDevices) || plantDevices < 1 || !Number.isInteger(plantClients) || plantClients < 1 || !(plantSeconds >= 0)) {
    process.stderr.write(`soak: --plant-devices and --plant-clients must be whole numbers ≥ 1 and --plant-seconds ≥ 0\n${USAGE}`);
    return 2;
  }
  let plantClean = true;
  if (plantSeconds > 0) {
    const say = (s: string): void => void process.stdout.write(`${new Date().toISOString()} ${s}\n`);
    const plant = await runPlant({
      devices: plantDevices,
      clientsPerDevice: plantClients,
      intervalMs: PLANT_INTERVAL_MS,
      warmupSeconds: PLANT_WARMUP_SECONDS,
      durationSeconds: plantSeconds,
      progress: say,
    });
    for (const l of plantLines(plant)) say(`plant: ${l}`);
    plantClean = plant.clean;
  }
  const plc = new BenchPlc();
  const plcPort = await plc.listen();
  let plcRestarts = 0;
  const listen = await freePort();
  const adminPort = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'plcguard-soak-'));
  const file = path.join(dir, 'soak-policy.yaml');
  const writePolicy = (text: string): void => {
    fs.writeFileSync(`${file}.tmp`, text);
    fs.renameSync(`${file}.tmp`, file);
  };
  let writable = WRITABLE_A;
  writePolicy(policyText(listen, plcPort, writable));

  const proxyEvents = new Map<string, number>();
  const guard = startPlcguard('plcguard', ['run', '--policy', file, '--admin', `127.0.0.1:${adminPort}`, '--grace-ms', '3000'], {
    stderr: 'inherit',
    // Its log is counted by event as it comes, not kept: hours of it would be gigabytes.
    keepLines: 100,
    onLine: (line) => {
      const e = parseEvent(line);
      if (e === null) return;
      const ev = typeof e.event === 'string' ? e.event : 'unknown';
      proxyEvents.set(ev, (proxyEvents.get(ev) ?? 0) + 1);
    },
  });
  let exit: Exit | null = null;
  const exited = guard.exited.then(
    (e) => void (exit = e),
    () => {},
  );
  try {
    await guard.waitForEvent('listening', START_TIMEOUT_MS);
  } catch (err) {
    process.stderr.write(`soak: plcguard did not start: ${(err as Error).message}\n`);
    await guard.stop('SIGKILL');
    await plc.close();
    return 1;
  }

  const counts = new Counts();
  const latency = { all: new LogHistogram(), interval: new Reservoir() };
  const problems: string[] = [];
  const onWrong = (what: string): void => {
    if (problems.length < 20) {
      problems.push(what);
      process.stdout.write(`${new Date().toISOString()} problem: ${what}\n`);
    }
  };
  const clients = Array.from(
    { length: CLIENTS },
    (_, i) => new SteadyClient(listen, `127.0.10.${i + 1}`, DEPTH, PACE_MS, counts, latency, onWrong),
  );
  for (const c of clients) c.start();

  const started = performance.now();
  const memStart = rssOf(guard.child.pid!);
  let memPeak = memStart;
  let memLast = memStart;
  let heapStart: number | null = null;
  let heapPeak = 0;
  let heapEnd: number | null = null;
  let lastSent = 0;
  let stopping = false;
  const timers: NodeJS.Timeout[] = [];
  const background = new Set<Promise<void>>();
  const run = (p: Promise<void>): void => {
    background.add(p);
    void p.finally(() => background.delete(p));
  };
  const log = (s: string): void => void process.stdout.write(`${new Date().toISOString()} ${s}\n`);

  // The fault schedule, one cycle a minute (offsets in ms).
  const schedule: [number, string, () => void][] = [
    [8_000, 'PLC slow (≤ 300 ms, 1–3 byte pieces) for 8 s', () => (plc.fault = 'slow')],
    [16_000, 'PLC normal', () => (plc.fault = 'none')],
    [18_000, 'PLC down (restart on the same port in 3 s)', () => run(plcRestart())],
    [24_000, 'PLC resets 2 % of connections mid-response for 5 s', () => (plc.fault = 'reset')],
    [29_000, 'PLC normal', () => (plc.fault = 'none')],
    [30_000, 'policy edit (valid: the writable setpoints move)', () => editPolicy()],
    [34_000, 'policy edit (invalid), restored after 3 s', () => invalidPolicy()],
    [40_000, `connection flood: ${FLOOD_CONNECTIONS} at once from one source`, () => run(flood(listen, counts))],
    [44_000, `slowloris: ${SLOWLORIS_CONNECTIONS} connections at 1 byte/s`, () => run(slowloris(listen, counts))],
    [50_000, 'PLC garbage (5 % of answers) for 3 s', () => (plc.fault = 'garbage')],
    [53_000, 'PLC normal', () => (plc.fault = 'none')],
  ];
  async function plcRestart(): Promise<void> {
    await plc.close();
    await new Promise<void>((resolve) => timers.push(setTimeout(resolve, 3000)));
    if (stopping) return;
    await plc.listen(plcPort);
    plcRestarts++;
  }
  function editPolicy(): void {
    writable = writable === WRITABLE_A ? WRITABLE_B : WRITABLE_A;
    writePolicy(policyText(listen, plcPort, writable));
    counts.policyEdits++;
  }
  function invalidPolicy(): void {
    writePolicy(policyText(listen, plcPort, writable).replace('units: [1]', 'units: [1]\n        colour: red'));
    counts.invalidEdits++;
    timers.push(setTimeout(() => writePolicy(policyText(listen, plcPort, writable)), 3000));
  }
  let cycle = 0;
  const scheduleCycle = (): void => {
    for (const [at, what, fn] of schedule) {
      timers.push(
        setTimeout(() => {
          if (stopping) return;
          log(`fault: ${what}`);
          fn();
        }, at),
      );
    }
    cycle++;
  };
  scheduleCycle();
  const cycler = setInterval(scheduleCycle, CYCLE_MS);
  const burster = setInterval(() => run(burstOnce(listen, counts, onWrong)), 1000);

  const report = async (): Promise<void> => {
    const now = performance.now();
    for (const c of clients) c.sweep(now);
    const rss = rssOf(guard.child.pid!);
    if (rss > 0) memLast = rss;
    memPeak = Math.max(memPeak, rss);
    const heap = metric((await httpGet(adminPort, '/metrics').catch(() => null))?.body ?? '', 'nodejs_heap_size_used_bytes');
    if (heap !== null) {
      heapStart ??= heap;
      heapPeak = Math.max(heapPeak, heap);
      heapEnd = heap;
    }
    const l = latency.interval.take();
    const rate = (counts.sent - lastSent) / (REPORT_EVERY_MS / 1000);
    lastSent = counts.sent;
    const c = counts;
    log(
      `t=${((now - started) / 1000).toFixed(0)}s plcguard rss ${mib(rss)} heap ${heap === null ? 'n/a' : mib(heap)} | soak rss ${mib(process.memoryUsage().rss)} | ` +
        `${rate.toFixed(0)} req/s, latency p50 ${ms(l.p50Us)} p99 ${ms(l.p99Us)} max ${ms(l.maxUs)} | sent ${c.sent} answered ${c.answered} denied ${c.denied} ` +
        `gateway ${c.gateway} busy ${c.busy} cut ${c.cut} wrong ${c.wrong} lost ${c.lost} | reconnects ${c.reconnects} flood-refused ${c.floodRefused} ` +
        `slowloris-closed ${c.slowlorisClosed} plc-restarts ${plcRestarts}`,
    );
  };
  const reporter = setInterval(() => run(report()), REPORT_EVERY_MS);

  log(`soak: ${minutes} min through plcguard on 127.0.0.1:${listen} (PLC 127.0.0.1:${plcPort}, admin :${adminPort}); Ctrl-C stops`);
  let signalled = false;
  await new Promise<void>((resolve) => {
    const end = setTimeout(resolve, minutes * 60_000);
    const stop = (): void => {
      clearTimeout(end);
      resolve();
    };
    const onSignal = (): void => {
      signalled = true;
      stop();
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    void exited.then(stop);
  });

  // Stop everything this process started, in order: load and faults, then plcguard, then the PLC.
  stopping = true;
  clearInterval(cycler);
  clearInterval(burster);
  clearInterval(reporter);
  for (const t of timers) clearTimeout(t);
  await report();
  for (const c of clients) c.stop();
  await Promise.all(background);
  // Ctrl-C in a terminal signals plcguard too (same process group): its own exit is then fine.
  const crashed = exit !== null && !signalled;
  const { code: exitCode } = await guard.stop('SIGTERM', STOP_TIMEOUT_MS);
  await plc.close();
  fs.rmSync(dir, { recursive: true, force: true });

  const all = latency.all;
  const c = counts;
  log('---- soak summary ----');
  log(`duration ${((performance.now() - started) / 60_000).toFixed(1)} min, ${cycle} fault cycles`);
  log(
    `plcguard rss start ${mib(memStart)} end ${mib(memLast)} peak ${mib(memPeak)}; heap start ${heapStart === null ? 'n/a' : mib(heapStart)} ` +
      `end ${heapEnd === null ? 'n/a' : mib(heapEnd)} peak ${mib(heapPeak)}`,
  );
  log(`latency (client round trip, all replies) p50 ${ms(all.percentile(0.5))} p99 ${ms(all.percentile(0.99))} p99.9 ${ms(all.percentile(0.999))} max ${ms(all.maxUs)} over ${all.count} replies`);
  log(
    `requests sent ${c.sent}: answered ${c.answered}, denied ${c.denied}, gateway 0A/0B ${c.gateway}, busy 06 ${c.busy}, cut with their connection ${c.cut}; ` +
      `wrong ${c.wrong}, lost ${c.lost}; reconnects ${c.reconnects}`,
  );
  log(`faults: PLC restarts ${plcRestarts}, policy edits ${c.policyEdits} valid / ${c.invalidEdits} invalid, flood refused ${c.floodRefused}, slowloris closed ${c.slowlorisClosed}`);
  log(`plcguard log events: ${[...proxyEvents].map(([k, v]) => `${k} ${v}`).join(', ')}`);
  log(`plcguard exit: ${crashed ? `crashed (${exitCode})` : `code ${exitCode}`}`);
  for (const p of problems) log(`problem: ${p}`);
  if (!plantClean) log('problem: the plant-rate phase dropped or got wrong answers (see its lines above)');
  const clean = plantClean && !crashed && exitCode === 0 && c.wrong === 0 && c.lost === 0;
  log(clean ? 'soak: clean' : 'soak: NOT clean');
  return clean ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: Error) => {
    process.stderr.write(`soak: ${err.stack ?? err.message}\n`);
    process.exit(1);
  },
);
