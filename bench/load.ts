// The load generator: N connections × K pipelined requests, every response verified byte for
// byte. It shares two cores with the PLC and the proxy, so it does as little as it can: requests
// are precomputed (one buffer per mix, slot = transaction id, never written to again), the
// requests of one chunk's worth of answers go out in one write(), expected responses are
// precomputed, and latencies go into a preallocated Float32Array.
//
// Forked by bench/run.ts; driven over IPC (bench/ipc.ts). Standalone it does nothing.
import net from 'node:net';
import { buildMix, SLOT_COUNT, type MixName } from './scenarios.js';
import { MBAP_LENGTH, adu, exceptionAdu, referenceResponse } from './model.js';
import {
  emptyErrorCounts,
  hasType,
  sendToParent,
  type ErrorCounts,
  type ErrorKind,
  type IdleConfig,
  type LoadCommand,
  type LoadResult,
  type LoadRunConfig,
} from './ipc.js';
import { summarizeLatencies } from './stats.js';
import { connectLocal } from './lib/net.js';
import { delay } from './lib/wait.js';

/** Bounds on every wait, so a broken path fails the run instead of hanging it. */
const CONNECT_TIMEOUT_MS = 5000;
const DRAIN_TIMEOUT_MS = 5000;
/** More responses per second than any path here reaches on this hardware, with headroom. */
const MAX_RECORDED_RATE_PER_SECOND = 1_500_000;
/** Failures described in full in the result (the rest are counted). */
const MAX_ERROR_SAMPLES = 5;
/** Idle connections are opened this many at a time (the accept backlog is finite). */
const IDLE_OPEN_BATCH = 100;
/**
 * Paced connections are split into groups that send in turn, one group per tick, at least this
 * far apart: ten HMIs polling every 20 ms send 2 ms apart (as unsynchronised HMIs would, rather
 * than all at once), and 10,000 plant clients need 250 timer wake-ups a second, not 20,000.
 */
const MIN_TICK_MS = 2;
const MIN_LENGTH_FIELD = 2;
const MAX_LENGTH_FIELD = 254;
/** FC1..4 are the reads: their response's byte after the FC is a byte count. */
const LAST_READ_FC = 4;

/** A mix's requests and expected answers, laid out for zero-copy sends and byte compares. */
interface MixTables {
  requests: Buffer;
  /** Slot i's request is requests[reqOff[i], reqOff[i + 1]). */
  reqOff: Uint32Array;
  expected: Buffer;
  expOff: Uint32Array;
  /** 1 where the expected answer is plcguard's denial. */
  denied: Uint8Array;
}

const tableCache = new Map<string, MixTables>();

function mixTables(mix: MixName, enforced: boolean): MixTables {
  const key = `${mix}/${enforced}`;
  const cached = tableCache.get(key);
  if (cached) return cached;
  const specs = buildMix(mix);
  const reqs: Buffer[] = [];
  const exps: Buffer[] = [];
  const denied = new Uint8Array(SLOT_COUNT);
  specs.forEach((spec, slot) => {
    const request = adu(slot, spec.unit, spec.pdu);
    reqs.push(request);
    if (enforced && spec.deniedWith !== undefined) {
      denied[slot] = 1;
      exps.push(exceptionAdu(slot, spec.unit, spec.pdu[0]!, spec.deniedWith));
    } else {
      exps.push(referenceResponse(request));
    }
  });
  const offsets = (list: Buffer[]): Uint32Array => {
    const off = new Uint32Array(list.length + 1);
    list.forEach((b, i) => (off[i + 1] = off[i]! + b.length));
    return off;
  };
  const t: MixTables = { requests: Buffer.concat(reqs), reqOff: offsets(reqs), expected: Buffer.concat(exps), expOff: offsets(exps), denied };
  tableCache.set(key, t);
  return t;
}

let samples = new Float32Array(0);

/** One run (or one set of idle connections): shared counters and the measuring window. */
class LoadRun {
  readonly tables: MixTables;
  readonly conns: LoadConnection[] = [];
  sending = true;
  recording = false;
  sampleCount = 0;
  samplesDropped = 0;
  windowRequests = 0;
  sent = 0;
  verified = 0;
  deniedVerified = 0;
  errors = 0;
  readonly errorKinds: ErrorCounts = emptyErrorCounts();
  readonly errorSamples: string[] = [];
  private onSettled: (() => void) | null = null;

  constructor(
    mix: MixName,
    enforced: boolean,
    /** Kept in flight per connection by answering each response with a request (0: paced). */
    public outstanding: number,
    /** Requests each connection sends in all (Infinity: until told to stop). */
    readonly budget: number,
  ) {
    this.tables = mixTables(mix, enforced);
  }

  error(kind: ErrorKind, detail: string): void {
    this.errors++;
    this.errorKinds[kind]++;
    if (this.errorSamples.length < MAX_ERROR_SAMPLES) this.errorSamples.push(`${kind}: ${detail}`);
  }

  /** Verifies the response b[s, end) that arrived at `now` (ms). */
  check(conn: LoadConnection, b: Buffer, s: number, end: number, now: number): void {
    const tid = (b[s]! << 8) | b[s + 1]!;
    if (tid >= SLOT_COUNT || conn.pending[tid] === 0) {
      this.error('unknown_tid', `tid ${tid} is not outstanding: ${hex(b, s, end)}`);
      return;
    }
    conn.pending[tid] = 0;
    conn.inFlight--;
    const t = this.tables;
    const exp = t.expected;
    const es = t.expOff[tid]!;
    const elen = t.expOff[tid + 1]! - es;
    const len = end - s;
    const n = len < elen ? len : elen;
    let i = 0;
    while (i < n && b[s + i] === exp[es + i]) i++;
    if (i === n && len === elen) {
      this.verified++;
      if (t.denied[tid] === 1) this.deniedVerified++;
      if (this.recording) {
        this.windowRequests++;
        if (this.sampleCount < samples.length) samples[this.sampleCount++] = (now - conn.sendAt[tid]!) * 1000;
        else this.samplesDropped++;
      }
      return;
    }
    this.error(mismatchKind(b, s, len, exp, es, elen), `slot ${tid}: expected ${hex(exp, es, es + elen)}, got ${hex(b, s, end)}`);
  }

  /** Resolves when no connection has a request in flight (or the bound passes). */
  async settled(timeoutMs: number): Promise<void> {
    if (this.inFlight() === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      new Promise<void>((resolve) => (this.onSettled = resolve)),
      new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs))),
    ]);
    clearTimeout(timer);
    this.onSettled = null;
    for (const c of this.conns) {
      if (c.inFlight > 0) this.error('lost', `${c.inFlight} request(s) unanswered ${timeoutMs} ms after the load stopped`);
      c.inFlight = 0;
    }
  }

  connectionIdle(): void {
    if (this.onSettled !== null && this.inFlight() === 0) this.onSettled();
  }

  private inFlight(): number {
    let n = 0;
    for (const c of this.conns) n += c.inFlight;
    return n;
  }
}

/** Names the first field in which a response differs from the one expected. */
function mismatchKind(b: Buffer, s: number, len: number, exp: Buffer, es: number, elen: number): ErrorKind {
  if (len <= MBAP_LENGTH || b[s + MBAP_LENGTH] !== exp[es + MBAP_LENGTH]) return 'function_code';
  if (b[s + 2] !== exp[es + 2] || b[s + 3] !== exp[es + 3] || b[s + 6] !== exp[es + 6]) return 'header';
  const fc = exp[es + MBAP_LENGTH]!;
  if (fc <= LAST_READ_FC && b[s + MBAP_LENGTH + 1] !== exp[es + MBAP_LENGTH + 1]) return 'byte_count';
  if (len !== elen || b[s + 4] !== exp[es + 4] || b[s + 5] !== exp[es + 5]) return 'length';
  return 'data';
}

function hex(b: Buffer, start: number, end: number): string {
  return b.subarray(start, end).toString('hex');
}

class LoadConnection {
  /** performance.now() when each slot's request was written. */
  readonly sendAt = new Float64Array(SLOT_COUNT);
  /** 1 while the slot's request awaits its response. */
  readonly pending = new Uint8Array(SLOT_COUNT);
  inFlight = 0;
  private sentHere = 0;
  private next: number;
  private tail: Buffer | null = null;
  private dead = false;

  constructor(
    private run: LoadRun,
    readonly socket: net.Socket,
    firstSlot: number,
  ) {
    this.next = firstSlot % SLOT_COUNT;
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => {
      /* reported on close */
    });
    socket.on('close', () => this.onClose());
  }

  sendMore(): void {
    const run = this.run;
    const want = Math.min(run.outstanding - this.inFlight, run.budget - this.sentHere);
    if (want > 0) this.send(want, performance.now());
  }

  /** Sends the next `want` slots now, whatever is in flight (open loop: an HMI's poll). */
  send(want: number, now: number): void {
    if (this.dead) return;
    const run = this.run;
    const t = run.tables;
    while (want > 0) {
      // Slots are consecutive in the request buffer: one write per run of them (two at the wrap).
      const first = this.next;
      const count = Math.min(want, SLOT_COUNT - first);
      for (let i = first; i < first + count; i++) {
        if (this.pending[i] === 1) {
          // Its answer is SLOT_COUNT requests overdue; the slot is needed again.
          run.error('lost', `slot ${i} reused while still unanswered`);
          this.inFlight--;
        }
        this.pending[i] = 1;
        this.sendAt[i] = now;
      }
      this.socket.write(t.requests.subarray(t.reqOff[first], t.reqOff[first + count]));
      this.next = (first + count) % SLOT_COUNT;
      this.inFlight += count;
      this.sentHere += count;
      run.sent += count;
      want -= count;
    }
  }

  private onData(chunk: Buffer): void {
    const now = performance.now();
    let b = chunk;
    if (this.tail !== null) {
      b = Buffer.concat([this.tail, chunk]);
      this.tail = null;
    }
    const run = this.run;
    let s = 0;
    const len = b.length;
    while (len - s >= MBAP_LENGTH) {
      const lengthField = (b[s + 4]! << 8) | b[s + 5]!;
      if (b[s + 2] !== 0 || b[s + 3] !== 0 || lengthField < MIN_LENGTH_FIELD || lengthField > MAX_LENGTH_FIELD) {
        run.error('framing', `not Modbus/TCP: ${hex(b, s, Math.min(len, s + 16))}`);
        this.socket.destroy();
        return;
      }
      const end = s + 6 + lengthField;
      if (end > len) break;
      run.check(this, b, s, end, now);
      s = end;
    }
    if (s < len) this.tail = b.subarray(s);
    if (run.sending) this.sendMore();
    if (this.inFlight === 0) run.connectionIdle();
  }

  private onClose(): void {
    if (this.dead) return;
    this.dead = true;
    // Only we close connections: a close from the other side (with or without requests in flight)
    // means the path dropped a client, and the load it carried would silently go missing.
    this.run.error('connection', `connection closed by the other side with ${this.inFlight} request(s) unanswered`);
    this.inFlight = 0;
    this.run.connectionIdle();
  }

  /** False once either side closed it. */
  get open(): boolean {
    return !this.dead;
  }

  /** From now on counted in `run` (a kept connection carrying the next run; nothing is in flight). */
  moveTo(run: LoadRun): void {
    this.run = run;
  }

  /** Closes without reporting (the run is over). */
  close(): void {
    this.dead = true;
    this.socket.destroy();
  }
}

function connect(port: number): Promise<net.Socket> {
  return connectLocal(port, { noDelay: true }, CONNECT_TIMEOUT_MS);
}

/** Connections kept open between runs (LoadRunConfig.keepOpen), by port; all of one count. */
const kept = new Map<number, LoadConnection[]>();

/** The run's connections: kept ones carried over, or new ones (kept when asked). */
async function connectionsFor(run: LoadRun, config: LoadRunConfig): Promise<void> {
  const keep = config.keepOpen === true;
  if (keep) {
    for (const [port, cs] of kept) {
      if (port === config.port && cs.length === config.connections && cs.every((c) => c.open)) continue;
      for (const c of cs) c.close();
      kept.delete(port);
    }
  }
  const reuse = keep ? kept.get(config.port) : undefined;
  if (reuse !== undefined) {
    for (const c of reuse) c.moveTo(run);
    run.conns.push(...reuse);
    return;
  }
  const sockets = await Promise.all(Array.from({ length: config.connections }, () => connect(config.port)));
  // Each connection starts elsewhere in the mix, so they don't send the same request in lockstep.
  sockets.forEach((socket, i) => run.conns.push(new LoadConnection(run, socket, i * 37)));
  if (keep) kept.set(config.port, [...run.conns]);
}

async function runLoad(config: LoadRunConfig): Promise<LoadResult> {
  const paced = config.intervalMs !== undefined;
  // Paced: nothing is sent in answer to a response (outstanding 0); the pacer sends.
  const run = new LoadRun(config.mix, config.enforced, paced ? 0 : config.outstanding, Infinity);
  await connectionsFor(run, config);
  const stopPacer = paced ? pace(run, config.intervalMs!) : null;
  if (!paced) for (const c of run.conns) c.sendMore();
  const rate = paced ? pacedRate(config.connections, config.intervalMs!) : MAX_RECORDED_RATE_PER_SECOND;
  const result = await measure(run, rate, config.warmupMs, config.durationMs, stopPacer, config.keepSamples === true);
  if (config.keepOpen !== true) for (const c of run.conns) c.close();
  return result;
}

/**
 * Sends one request on every connection each intervalMs, open loop, the connections in groups
 * MIN_TICK_MS or more apart, on a fixed schedule (a late tick doesn't move the next); returns
 * the function that stops it.
 */
function pace(run: LoadRun, intervalMs: number): () => void {
  const conns = run.conns;
  const groups = Math.max(1, Math.min(conns.length, Math.floor(intervalMs / MIN_TICK_MS)));
  const tickMs = intervalMs / groups;
  const t0 = performance.now();
  let tick = 0;
  let timer: NodeJS.Timeout | null = null;
  const fire = (): void => {
    const now = performance.now();
    for (let i = tick % groups; i < conns.length; i += groups) conns[i]!.send(1, now);
    tick++;
    timer = setTimeout(fire, Math.max(0, t0 + tick * tickMs - performance.now()));
  };
  fire();
  return () => {
    if (timer !== null) clearTimeout(timer);
  };
}

/** Responses per second a paced run can record at most (a late tick's catch-up included). */
function pacedRate(connections: number, intervalMs: number): number {
  return (2 * connections * 1000) / intervalMs;
}

/** Warm-up, the measured window (reported to the parent as it opens and closes), then the drain. */
async function measure(
  run: LoadRun,
  maxRatePerSecond: number,
  warmupMs: number,
  durationMs: number,
  stopPacer: (() => void) | null,
  keepSamples: boolean,
): Promise<LoadResult> {
  const capacity = Math.ceil((durationMs / 1000) * maxRatePerSecond);
  if (samples.length < capacity) samples = new Float32Array(capacity);
  run.sampleCount = 0;
  run.samplesDropped = 0;
  run.windowRequests = 0;
  await delay(warmupMs);
  run.recording = true;
  const windowStart = performance.now();
  sendToParent({ type: 'window-start' });
  await delay(durationMs);
  run.recording = false;
  const windowSeconds = (performance.now() - windowStart) / 1000;
  sendToParent({ type: 'window-end' });
  run.sending = false;
  stopPacer?.();
  await run.settled(DRAIN_TIMEOUT_MS);
  const recorded = samples.subarray(0, run.sampleCount);
  const latency = summarizeLatencies(recorded);
  return {
    requests: run.windowRequests,
    windowSeconds,
    requestsPerSecond: run.windowRequests / windowSeconds,
    latency,
    sent: run.sent,
    verified: run.verified,
    deniedVerified: run.deniedVerified,
    errors: run.errors,
    errorKinds: run.errorKinds,
    errorSamples: run.errorSamples,
    samplesDropped: run.samplesDropped,
    // Sorted by summarizeLatencies: the order of arrival is not needed for percentiles.
    ...(keepSamples ? { samplesUs: Array.from(recorded) } : {}),
  };
}

let idle: LoadRun | null = null;

/** Opens connections that each make one verified request and then stay open, idle. */
async function openIdle(config: IdleConfig): Promise<{ opened: number; verified: number; errors: number; errorSamples: string[] }> {
  const run = new LoadRun(config.mix, config.enforced, 1, 1);
  idle = run;
  for (let i = 0; i < config.connections; i += IDLE_OPEN_BATCH) {
    const n = Math.min(IDLE_OPEN_BATCH, config.connections - i);
    const sockets = await Promise.all(Array.from({ length: n }, (_, j) => connect(config.ports[(i + j) % config.ports.length]!)));
    for (const [j, socket] of sockets.entries()) {
      const c = new LoadConnection(run, socket, i + j);
      run.conns.push(c);
      c.sendMore();
    }
    await run.settled(DRAIN_TIMEOUT_MS);
  }
  return { opened: run.conns.length, verified: run.verified, errors: run.errors, errorSamples: run.errorSamples };
}

function closeIdle(): void {
  for (const c of idle?.conns ?? []) c.close();
  idle = null;
}

async function handle(cmd: LoadCommand): Promise<void> {
  switch (cmd.type) {
    case 'run':
      sendToParent({ type: 'result', result: await runLoad(cmd.config) });
      return;
    case 'idle-open':
      sendToParent({ type: 'idle-opened', ...(await openIdle(cmd.config)) });
      return;
    case 'paced': {
      // On the connections 'idle-open' made: a plant's clients, connected once, then polling.
      if (idle === null) throw new Error('paced: no connections open (idle-open first)');
      const run = idle;
      run.outstanding = 0;
      run.sending = true;
      const stop = pace(run, cmd.config.intervalMs);
      sendToParent({ type: 'result', result: await measure(run, pacedRate(run.conns.length, cmd.config.intervalMs), cmd.config.warmupMs, cmd.config.durationMs, stop, false) });
      return;
    }
    case 'idle-close':
      closeIdle();
      sendToParent({ type: 'idle-closed' });
      return;
  }
}

process.on('message', (m: unknown) => {
  if (!hasType(m)) return;
  handle(m as LoadCommand).catch((err: Error) => sendToParent({ type: 'failed', message: err.message }));
});
process.on('disconnect', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
sendToParent({ type: 'ready' });
