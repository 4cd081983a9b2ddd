// `npm run soak [-- --minutes N]`: hours of mixed load through the built plcguard binary with
// faults injected on a schedule, printing memory, latency and counts every few seconds. Not in CI.
//
// Pieces, all on 127.0.0.1: plcguard (dist/cli/main.js run, a watched policy file, an admin
// port for /metrics) as a child process, so its memory is its own; a simulated PLC and the clients
// in this process. Every reply is checked byte for byte against what the request must get: the
// PLC's answer, the policy's exception, or 0A/0B while the PLC is faulty. A request that gets a
// wrong reply, or none within LOST_AFTER_MS, is an error; so is plcguard dying or exiting non-zero.
//
// The fault schedule repeats every CYCLE_MS (offsets below): slow PLC, PLC down and back on the same
// port, PLC resetting connections mid-response, PLC garbage, valid and invalid policy edits, a
// connection flood from one source, slowloris. Ctrl-C (SIGINT) or the end of --minutes stops the
// load, sends plcguard SIGTERM, waits for its exit and prints the summary.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const MAIN = path.join(ROOT, 'dist/cli/main.js');

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

// ---- the simulated PLC ----

type PlcMode = 'normal' | 'slow' | 'reset' | 'garbage';

/** FC3/4: register i holds (start + i); FC1/2: zero bits; writes echo like FC6/FC16 do. */
function plcAnswer(frame: Buffer): Buffer {
  const fc = frame[7]!;
  let pdu: Buffer;
  if (fc === 3 || fc === 4) {
    const start = frame.readUInt16BE(8);
    const qty = frame.readUInt16BE(10);
    pdu = Buffer.alloc(2 + 2 * qty);
    pdu[0] = fc;
    pdu[1] = 2 * qty;
    for (let i = 0; i < qty; i++) pdu.writeUInt16BE((start + i) & 0xffff, 2 + 2 * i);
  } else if (fc === 16) {
    pdu = Buffer.from(frame.subarray(7, 12));
  } else {
    pdu = Buffer.from(frame.subarray(7));
  }
  return adu(frame.readUInt16BE(0), frame[6]!, pdu);
}

function adu(tid: number, unit: number, pdu: Buffer | number[]): Buffer {
  const p = Buffer.from(pdu);
  const out = Buffer.alloc(7 + p.length);
  out.writeUInt16BE(tid, 0);
  out.writeUInt16BE(p.length + 1, 4);
  out[6] = unit;
  p.copy(out, 7);
  return out;
}

class SimPlc {
  mode: PlcMode = 'normal';
  private server: net.Server | null = null;
  private readonly sockets = new Set<net.Socket>();
  private readonly timers = new Set<NodeJS.Timeout>();
  connections = 0;
  restarts = 0;

  constructor(public port: number) {}

  async start(): Promise<void> {
    const server = net.createServer((s) => this.serve(s));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as net.AddressInfo).port;
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const s of this.sockets) s.destroy();
    const server = this.server;
    this.server = null;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private later(ms: number, fn: () => void): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
  }

  private serve(s: net.Socket): void {
    this.connections++;
    this.sockets.add(s);
    s.setNoDelay(true);
    s.on('error', () => {});
    s.on('close', () => this.sockets.delete(s));
    let pending: Buffer = Buffer.alloc(0);
    // One response at a time per connection, as a PLC does: slow answers queue behind each other.
    let line = Promise.resolve();
    s.on('data', (chunk: Buffer) => {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      let i = 0;
      while (pending.length - i >= 6) {
        const len = 6 + pending.readUInt16BE(i + 4);
        if (pending.length - i < len) break;
        this.answer(s, Buffer.from(pending.subarray(i, i + len)), (next) => {
          line = line.then(next);
        });
        i += len;
      }
      pending = pending.subarray(i);
    });
  }

  private answer(s: net.Socket, frame: Buffer, queue: (step: () => Promise<void>) => void): void {
    const reply = plcAnswer(frame);
    // Every answer goes through the connection's queue, whatever the mode: when the mode changes
    // while slow answers are still trickling out, a PLC doesn't interleave the next one into them.
    const mode = this.mode;
    queue(async () => {
      if (s.destroyed) return;
      switch (mode) {
        case 'normal':
          s.write(reply);
          return;
        case 'reset':
          // One request in fifty: half a response, then a reset.
          if (Math.random() < 0.02) {
            s.write(reply.subarray(0, Math.max(8, reply.length >> 1)));
            s.resetAndDestroy();
          } else s.write(reply);
          return;
        case 'garbage':
          if (Math.random() < 0.05) s.write(Buffer.from([0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0]));
          else s.write(reply);
          return;
        case 'slow':
          // Up to 300 ms late, in pieces of 1–3 bytes.
          await new Promise<void>((resolve) => this.later(Math.floor(Math.random() * 300), resolve));
          for (let at = 0; at < reply.length && !s.destroyed; ) {
            const n = 1 + Math.floor(Math.random() * 3);
            s.write(reply.subarray(at, at + n));
            at += n;
            await new Promise<void>((resolve) => this.later(1, resolve));
          }
      }
    });
  }
}

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

const ILLEGAL_FUNCTION = 1;
const ILLEGAL_ADDRESS = 2;
const SERVER_BUSY = 0x06;
const PATH_UNAVAILABLE = 0x0a;
const TARGET_FAILED = 0x0b;

interface Pending {
  frame: Buffer;
  sentAt: number;
  /** Exact replies acceptable besides 0A/0B (which are always acceptable: faults are scheduled). */
  ok: Buffer[];
  kind: 'answer' | 'denied' | 'either';
}

const exception = (f: Buffer, code: number): Buffer => adu(f.readUInt16BE(0), f[6]!, [(f[7]! | 0x80) & 0xff, code]);

function makeRequest(tid: number): Pending {
  const r = Math.random();
  const now = performance.now();
  let f: Buffer;
  if (r < 0.7) {
    const start = Math.floor(Math.random() * 190);
    f = frame(tid, [3, 0, start, 0, 1 + Math.floor(Math.random() * Math.min(10, 200 - start))]);
    return { frame: f, sentAt: now, ok: [plcAnswer(f)], kind: 'answer' };
  }
  if (r < 0.8) {
    f = frame(tid, [6, 0, 200 + Math.floor(Math.random() * 50), 0, 1]);
    return { frame: f, sentAt: now, ok: [exception(f, ILLEGAL_ADDRESS)], kind: 'denied' };
  }
  if (r < 0.85) {
    f = frame(tid, [8, 0, 4, 0, 0]); // Force Listen Only
    return { frame: f, sentAt: now, ok: [exception(f, ILLEGAL_FUNCTION)], kind: 'denied' };
  }
  // A write the two policy versions disagree about: either outcome is right.
  f = frame(tid, [6, 0, Math.random() < 0.5 ? 15 : 25, 0, 7]);
  return { frame: f, sentAt: now, ok: [plcAnswer(f), exception(f, ILLEGAL_ADDRESS)], kind: 'either' };
}

function frame(tid: number, pdu: number[]): Buffer {
  return adu(tid, 1, pdu);
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

/** Log-spaced latency histogram (1 µs … 100 s, 5 % steps): percentiles for the whole run. */
class LatencyHistogram {
  private readonly counts = new Float64Array(400);
  count = 0;
  max = 0;
  add(ms: number): void {
    const i = Math.min(399, Math.max(0, Math.ceil(Math.log(Math.max(ms, 0.001) / 0.001) / Math.log(1.05))));
    this.counts[i]!++;
    this.count++;
    if (ms > this.max) this.max = ms;
  }
  quantile(q: number): number {
    let seen = 0;
    for (let i = 0; i < this.counts.length; i++) {
      seen += this.counts[i]!;
      if (seen >= q * this.count) return 0.001 * 1.05 ** i;
    }
    return this.max;
  }
}

/** Bounded sample of one interval's latencies. */
class Reservoir {
  private readonly values: number[] = [];
  private seen = 0;
  add(v: number): void {
    this.seen++;
    if (this.values.length < SAMPLES) this.values.push(v);
    else {
      const j = Math.floor(Math.random() * this.seen);
      if (j < SAMPLES) this.values[j] = v;
    }
  }
  take(): { p50: number; p99: number; max: number; n: number } {
    const v = this.values.splice(0).sort((a, b) => a - b);
    const n = this.seen;
    this.seen = 0;
    const at = (q: number): number => v[Math.min(v.length - 1, Math.floor(q * v.length))] ?? 0;
    return { p50: at(0.5), p99: at(0.99), max: v.at(-1) ?? 0, n };
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
    private readonly latency: { all: LatencyHistogram; interval: Reservoir },
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
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    let i = 0;
    while (this.buf.length - i >= 6) {
      const len = 6 + this.buf.readUInt16BE(i + 4);
      if (this.buf.length - i < len) break;
      this.onReply(this.buf.subarray(i, i + len));
      i += len;
    }
    this.buf = this.buf.subarray(i);
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
    const ms = performance.now() - p.sentAt;
    this.latency.all.add(ms);
    this.latency.interval.add(ms);
    if (p.ok.some((o) => o.equals(r))) {
      if (p.kind === 'denied' || (p.kind === 'either' && r[7]! & 0x80)) this.counts.denied++;
      else this.counts.answered++;
    } else if (r.equals(exception(p.frame, PATH_UNAVAILABLE)) || r.equals(exception(p.frame, TARGET_FAILED))) {
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
  let buf = Buffer.alloc(0);
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => s.destroy(), LOST_AFTER_MS);
    s.on('connect', () => s.write(Buffer.concat(reqs.map((r) => r.frame))));
    s.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 6 && buf.length >= 6 + buf.readUInt16BE(4)) {
        const r = buf.subarray(0, 6 + buf.readUInt16BE(4));
        buf = buf.subarray(r.length);
        const p = reqs[r.readUInt16BE(0) - 1];
        // Behind a stalled PLC its requests wait at max_outstanding and are then decided in a
        // clump, past the rate limit's burst: 06 (server busy) is a right answer here.
        const busy = p !== undefined && r.equals(exception(p.frame, SERVER_BUSY));
        if (busy) counts.busy++;
        const fine = p !== undefined && (busy || p.ok.some((o) => o.equals(r)) || r.equals(exception(p.frame, PATH_UNAVAILABLE)) || r.equals(exception(p.frame, TARGET_FAILED)));
        if (!fine) {
          counts.wrong++;
          onWrong(`burst: wrong reply ${r.toString('hex')}`);
        }
        if (++got === BURST) s.end();
      }
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
  const bytes = frame(1, [3, 0, 0, 0, 1]);
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

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', () => resolve()));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

function rssOf(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

function scrape(adminPort: number): Promise<string> {
  return new Promise((resolve) => {
    const r = http.get({ host: '127.0.0.1', port: adminPort, path: '/metrics', timeout: 2000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve(body));
    });
    r.on('error', () => resolve(''));
    r.on('timeout', () => r.destroy());
  });
}

function metric(text: string, name: string): number | null {
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+-]+)$`, 'm').exec(text);
  return m ? Number(m[1]) : null;
}

// ---- main ----

const mib = (n: number): string => `${(n / 1048576).toFixed(1)}MiB`;
const ms = (n: number): string => `${n.toFixed(n < 10 ? 2 : 0)}ms`;

async function main(): Promise<number> {
  const { values } = parseArgs({ options: { minutes: { type: 'string', default: '60' } } });
  const minutes = Number(values.minutes);
  if (!(minutes > 0)) {
    process.stderr.write(`soak: --minutes must be a positive number, got "${values.minutes}"\n`);
    return 2;
  }
  if (!fs.existsSync(MAIN)) {
    process.stderr.write(`soak: ${MAIN} not found: run "npm run soak" (it builds first)\n`);
    return 2;
  }
  const plc = new SimPlc(0);
  await plc.start();
  const listen = await freePort();
  const adminPort = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'plcguard-soak-'));
  const file = path.join(dir, 'soak-policy.yaml');
  const writePolicy = (text: string): void => {
    fs.writeFileSync(`${file}.tmp`, text);
    fs.renameSync(`${file}.tmp`, file);
  };
  let writable = WRITABLE_A;
  writePolicy(policyText(listen, plc.port, writable));

  const child: ChildProcess = spawn(process.execPath, [MAIN, 'run', '--policy', file, '--admin', `127.0.0.1:${adminPort}`, '--grace-ms', '3000'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const proxyEvents = new Map<string, number>();
  let exitCode: number | null | undefined;
  const exited = new Promise<void>((resolve) =>
    child.on('exit', (code) => {
      exitCode = code;
      resolve();
    }),
  );
  let listening!: () => void;
  const ready = new Promise<void>((resolve) => (listening = resolve));
  readline.createInterface({ input: child.stdout! }).on('line', (line) => {
    let e: { event?: string };
    try {
      e = JSON.parse(line) as { event?: string };
    } catch {
      return;
    }
    const ev = e.event ?? 'unknown';
    proxyEvents.set(ev, (proxyEvents.get(ev) ?? 0) + 1);
    if (ev === 'listening') listening();
  });
  await Promise.race([ready, exited]);
  if (exitCode !== undefined) {
    process.stderr.write(`soak: plcguard exited at start with ${exitCode}\n`);
    return 1;
  }

  const counts = new Counts();
  const latency = { all: new LatencyHistogram(), interval: new Reservoir() };
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
  const memStart = rssOf(child.pid!);
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
    [8_000, 'PLC slow (≤ 300 ms, 1–3 byte pieces) for 8 s', () => (plc.mode = 'slow')],
    [16_000, 'PLC normal', () => (plc.mode = 'normal')],
    [18_000, 'PLC down (restart on the same port in 3 s)', () => run(plcRestart())],
    [24_000, 'PLC resets 2 % of connections mid-response for 5 s', () => (plc.mode = 'reset')],
    [29_000, 'PLC normal', () => (plc.mode = 'normal')],
    [30_000, 'policy edit (valid: the writable setpoints move)', () => editPolicy()],
    [34_000, 'policy edit (invalid), restored after 3 s', () => invalidPolicy()],
    [40_000, `connection flood: ${FLOOD_CONNECTIONS} at once from one source`, () => run(flood(listen, counts))],
    [44_000, `slowloris: ${SLOWLORIS_CONNECTIONS} connections at 1 byte/s`, () => run(slowloris(listen, counts))],
    [50_000, 'PLC garbage (5 % of answers) for 3 s', () => (plc.mode = 'garbage')],
    [53_000, 'PLC normal', () => (plc.mode = 'normal')],
  ];
  async function plcRestart(): Promise<void> {
    await plc.stop();
    await new Promise<void>((resolve) => timers.push(setTimeout(resolve, 3000)));
    if (stopping) return;
    await plc.start();
    plc.restarts++;
  }
  function editPolicy(): void {
    writable = writable === WRITABLE_A ? WRITABLE_B : WRITABLE_A;
    writePolicy(policyText(listen, plc.port, writable));
    counts.policyEdits++;
  }
  function invalidPolicy(): void {
    writePolicy(policyText(listen, plc.port, writable).replace('units: [1]', 'units: [1]\n        colour: red'));
    counts.invalidEdits++;
    timers.push(setTimeout(() => writePolicy(policyText(listen, plc.port, writable)), 3000));
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
    const rss = rssOf(child.pid!);
    if (rss > 0) memLast = rss;
    memPeak = Math.max(memPeak, rss);
    const heap = metric(await scrape(adminPort), 'plcguard_nodejs_heap_size_used_bytes');
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
        `${rate.toFixed(0)} req/s, latency p50 ${ms(l.p50)} p99 ${ms(l.p99)} max ${ms(l.max)} | sent ${c.sent} answered ${c.answered} denied ${c.denied} ` +
        `gateway ${c.gateway} busy ${c.busy} cut ${c.cut} wrong ${c.wrong} lost ${c.lost} | reconnects ${c.reconnects} flood-refused ${c.floodRefused} ` +
        `slowloris-closed ${c.slowlorisClosed} plc-restarts ${plc.restarts}`,
    );
  };
  const reporter = setInterval(() => run(report()), REPORT_EVERY_MS);

  log(`soak: ${minutes} min through plcguard on 127.0.0.1:${listen} (PLC 127.0.0.1:${plc.port}, admin :${adminPort}); Ctrl-C stops`);
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
  const exitedEarly = exitCode !== undefined;
  const crashed = exitedEarly && !signalled;
  if (!exitedEarly) child.kill('SIGTERM');
  const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(killer);
  await plc.stop();
  fs.rmSync(dir, { recursive: true, force: true });

  const all = latency.all;
  const c = counts;
  log('---- soak summary ----');
  log(`duration ${((performance.now() - started) / 60_000).toFixed(1)} min, ${cycle} fault cycles`);
  log(
    `plcguard rss start ${mib(memStart)} end ${mib(memLast)} peak ${mib(memPeak)}; heap start ${heapStart === null ? 'n/a' : mib(heapStart)} ` +
      `end ${heapEnd === null ? 'n/a' : mib(heapEnd)} peak ${mib(heapPeak)}`,
  );
  log(`latency (client round trip, all replies) p50 ${ms(all.quantile(0.5))} p99 ${ms(all.quantile(0.99))} p99.9 ${ms(all.quantile(0.999))} max ${ms(all.max)} over ${all.count} replies`);
  log(
    `requests sent ${c.sent}: answered ${c.answered}, denied ${c.denied}, gateway 0A/0B ${c.gateway}, busy 06 ${c.busy}, cut with their connection ${c.cut}; ` +
      `wrong ${c.wrong}, lost ${c.lost}; reconnects ${c.reconnects}`,
  );
  log(`faults: PLC restarts ${plc.restarts}, policy edits ${c.policyEdits} valid / ${c.invalidEdits} invalid, flood refused ${c.floodRefused}, slowloris closed ${c.slowlorisClosed}`);
  log(`plcguard log events: ${[...proxyEvents].map(([k, v]) => `${k} ${v}`).join(', ')}`);
  log(`plcguard exit: ${crashed ? `crashed (${exitCode})` : `code ${exitCode}`}`);
  for (const p of problems) log(`problem: ${p}`);
  const clean = !crashed && exitCode === 0 && c.wrong === 0 && c.lost === 0;
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
