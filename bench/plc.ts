// A fast simulated PLC for the benchmark: a raw TCP server that frames by the MBAP length and
// answers from precomputed memory images. It must never be the bottleneck, so per chunk it does
// one pass over the bytes, builds every response into one reused buffer and makes one write().
// Its answers follow bench/model.ts (the load generator checks them byte for byte).
//
// Run as its own process (forked by bench/run.ts) so its CPU time is measured apart:
//   node dist/bench/plc.js [--port N] [--max-connections N]   → IPC/stdout: {"type":"listening","port":N}
// With --max-connections, connections past N are accepted and dropped at once, as a legacy PLC
// with few connection slots does.
//   node dist/bench/plc.js --listeners N  → {"type":"listening-many","ports":[...]}: a plant's
//     N PLCs in one process (bench/plant.ts), each endpoint a listener on a port of its own, all
//     answering from the same memory images: cheap enough that 1,000 of them don't need 1,000
//     processes.
// The soak (bench/soak.ts) runs it in its own process instead and switches on faults (`fault`):
// late answers in pieces, resets mid-response, garbage. Without a fault the path is the fast one.
import net from 'node:net';
import { parseArgs } from 'node:util';
import { isEntryPoint } from './lib/process.js';
import {
  ADDRESS_SPACE,
  EXCEPTION,
  FC,
  MAX_READ_BITS,
  MAX_READ_REGISTERS,
  MAX_WRITE_COILS,
  MAX_WRITE_REGISTERS,
  MBAP_LENGTH,
  COIL_ON,
  coilValue,
  discreteValue,
  holdingValue,
  inputValue,
} from './model.js';
import { sendToParent, type PlcMessage } from './ipc.js';

/** Largest ADU (spec: 7 + 253); room for one more response is checked against it. */
const MAX_ADU = 260;
/** Responses of one chunk are batched into this; a fuller batch is written and a new one begun. */
const OUT_BUFFER_BYTES = 64 * 1024;
/**
 * A connection starts with room for a few answers and takes OUT_BUFFER_BYTES once a chunk fills
 * that: a plant's 10,000 polling clients would otherwise hold 640 MiB the PLC never needs.
 */
const FIRST_OUT_BUFFER_BYTES = 4 * MAX_ADU;
const MIN_PDU_LENGTH_FIELD = 2;
const MAX_PDU_LENGTH_FIELD = 254;

// Memory images: registers big-endian as on the wire (a read is a byte copy), bits one per byte.
const HOLDING = Buffer.alloc(ADDRESS_SPACE * 2);
const INPUT = Buffer.alloc(ADDRESS_SPACE * 2);
const COILS = new Uint8Array(ADDRESS_SPACE);
const DISCRETE = new Uint8Array(ADDRESS_SPACE);
for (let a = 0; a < ADDRESS_SPACE; a++) {
  HOLDING.writeUInt16BE(holdingValue(a), a * 2);
  INPUT.writeUInt16BE(inputValue(a), a * 2);
  COILS[a] = coilValue(a) ? 1 : 0;
  DISCRETE[a] = discreteValue(a) ? 1 : 0;
}

/**
 * How the PLC misbehaves, chosen per answer when it is made:
 * - slow: each answer up to SLOW_MAX_MS late, then in pieces of 1–3 bytes, 1 ms apart;
 * - reset: RESET_SHARE of the answers are cut in half and the connection reset;
 * - garbage: GARBAGE_SHARE of the answers are replaced by bytes that aren't Modbus/TCP.
 */
export type PlcFault = 'none' | 'slow' | 'reset' | 'garbage';
const SLOW_MAX_MS = 300;
const RESET_SHARE = 0.02;
const GARBAGE_SHARE = 0.05;
/** Protocol id 0xBEEF: no Modbus/TCP peer can take it for a frame. */
const GARBAGE = Buffer.from([0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0]);

/** Writes an exception response for the request at inb[s..] into out at o; returns the new end. */
function exception(inb: Buffer, s: number, out: Buffer, o: number, code: number): number {
  out[o + 4] = 0;
  out[o + 5] = 3;
  out[o + 7] = inb[s + 7]! | 0x80;
  out[o + 8] = code;
  return o + 9;
}

/**
 * Answers the request ADU inb[s, end) into out at o (MBAP tid/protocol/unit already copied by the
 * caller); returns the end of the response in out.
 */
function respond(inb: Buffer, s: number, end: number, out: Buffer, o: number): number {
  const fc = inb[s + 7]!;
  const pduData = end - s - MBAP_LENGTH - 1; // bytes after the function code
  const start = (inb[s + 8]! << 8) | inb[s + 9]!;
  const qty = (inb[s + 10]! << 8) | inb[s + 11]!;
  switch (fc) {
    case FC.READ_HOLDING_REGISTERS:
    case FC.READ_INPUT_REGISTERS: {
      if (pduData !== 4 || qty < 1 || qty > MAX_READ_REGISTERS) return exception(inb, s, out, o, EXCEPTION.ILLEGAL_DATA_VALUE);
      if (start + qty > ADDRESS_SPACE) return exception(inb, s, out, o, EXCEPTION.ILLEGAL_DATA_ADDRESS);
      const n = qty * 2;
      out[o + 4] = 0;
      out[o + 5] = n + 3;
      out[o + 7] = fc;
      out[o + 8] = n;
      const image = fc === FC.READ_HOLDING_REGISTERS ? HOLDING : INPUT;
      // A byte loop beats Buffer#copy's native call for the few registers an HMI reads.
      const from = start * 2;
      const d = o + 9;
      for (let i = 0; i < n; i++) out[d + i] = image[from + i]!;
      return d + n;
    }
    case FC.READ_COILS:
    case FC.READ_DISCRETE_INPUTS: {
      if (pduData !== 4 || qty < 1 || qty > MAX_READ_BITS) return exception(inb, s, out, o, EXCEPTION.ILLEGAL_DATA_VALUE);
      if (start + qty > ADDRESS_SPACE) return exception(inb, s, out, o, EXCEPTION.ILLEGAL_DATA_ADDRESS);
      const n = (qty + 7) >> 3;
      out[o + 4] = 0;
      out[o + 5] = n + 3;
      out[o + 7] = fc;
      out[o + 8] = n;
      const image = fc === FC.READ_COILS ? COILS : DISCRETE;
      const d = o + 9;
      for (let i = 0; i < n; i++) out[d + i] = 0;
      for (let i = 0; i < qty; i++) if (image[start + i] === 1) out[d + (i >> 3)]! |= 1 << (i & 7);
      return d + n;
    }
    case FC.WRITE_SINGLE_COIL:
    case FC.WRITE_SINGLE_REGISTER: {
      if (pduData !== 4) return exception(inb, s, out, o, EXCEPTION.ILLEGAL_DATA_VALUE);
      if (fc === FC.WRITE_SINGLE_COIL && qty !== 0 && qty !== COIL_ON) return exception(inb, s, out, o, EXCEPTION.ILLEGAL_DATA_VALUE);
      return echoHead(inb, s, out, o, fc);
    }
    case FC.WRITE_MULTIPLE_COILS:
    case FC.WRITE_MULTIPLE_REGISTERS: {
      const coils = fc === FC.WRITE_MULTIPLE_COILS;
      const byteCount = coils ? (qty + 7) >> 3 : qty * 2;
      if (pduData < 5 || qty < 1 || qty > (coils ? MAX_WRITE_COILS : MAX_WRITE_REGISTERS) || inb[s + 12] !== byteCount || pduData !== 5 + byteCount) {
        return exception(inb, s, out, o, EXCEPTION.ILLEGAL_DATA_VALUE);
      }
      if (start + qty > ADDRESS_SPACE) return exception(inb, s, out, o, EXCEPTION.ILLEGAL_DATA_ADDRESS);
      return echoHead(inb, s, out, o, fc);
    }
    default:
      return exception(inb, s, out, o, EXCEPTION.ILLEGAL_FUNCTION);
  }
}

/** Response = the function code and the 4 bytes after it, echoed (FC5/6: the request; FC15/16: start, qty). */
function echoHead(inb: Buffer, s: number, out: Buffer, o: number, fc: number): number {
  out[o + 4] = 0;
  out[o + 5] = 6;
  out[o + 7] = fc;
  out[o + 8] = inb[s + 8]!;
  out[o + 9] = inb[s + 9]!;
  out[o + 10] = inb[s + 10]!;
  out[o + 11] = inb[s + 11]!;
  return o + 12;
}

class PlcConnection {
  private out = Buffer.allocUnsafe(FIRST_OUT_BUFFER_BYTES);
  /** Bytes of a request cut off at the end of the last chunk. */
  private tail: Buffer | null = null;
  /** Answers held by a fault, in order: later ones queue behind them, as on a real PLC's line. */
  private queue: Promise<void> = Promise.resolve();
  private queued = 0;

  constructor(
    private readonly plc: BenchPlc,
    private readonly socket: net.Socket,
  ) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => {
      /* the client went away; 'close' follows */
    });
    const endpoint = socket.localPort!;
    socket.on('close', () => {
      plc.openConnections--;
      plc.sockets.delete(socket);
      plc.endpointClosed(endpoint);
    });
    plc.openConnections++;
    plc.sockets.add(socket);
    plc.endpointOpened(endpoint);
  }

  private onData(chunk: Buffer): void {
    let inb = chunk;
    if (this.tail !== null) {
      // Rare: a request split across segments. Copying here keeps the common path copy-free.
      inb = Buffer.concat([this.tail, chunk]);
      this.tail = null;
    }
    let s = 0;
    let o = 0;
    const len = inb.length;
    while (len - s >= MBAP_LENGTH) {
      const lengthField = (inb[s + 4]! << 8) | inb[s + 5]!;
      if (inb[s + 2] !== 0 || inb[s + 3] !== 0 || lengthField < MIN_PDU_LENGTH_FIELD || lengthField > MAX_PDU_LENGTH_FIELD) {
        // Not Modbus: the stream can't be resynchronised.
        this.socket.destroy();
        return;
      }
      const end = s + 6 + lengthField;
      if (end > len) break;
      if (o + MAX_ADU > this.out.length) {
        this.write(o);
        o = 0;
        if (this.out.length < OUT_BUFFER_BYTES) this.out = Buffer.allocUnsafe(OUT_BUFFER_BYTES);
      }
      const out = this.out;
      out[o] = inb[s]!;
      out[o + 1] = inb[s + 1]!;
      out[o + 2] = 0;
      out[o + 3] = 0;
      out[o + 6] = inb[s + 6]!;
      o = respond(inb, s, end, out, o);
      this.plc.requestsServed++;
      s = end;
    }
    if (s < len) this.tail = inb.subarray(s);
    if (o > 0) this.write(o);
  }

  private write(n: number): void {
    if (this.plc.fault !== 'none' || this.queued > 0) {
      this.misbehave(n);
      return;
    }
    const ok = this.socket.write(this.out.subarray(0, n));
    // A write that didn't go to the kernel at once still references the buffer: take a new one.
    if (this.socket.writableLength > 0) this.out = Buffer.allocUnsafe(this.out.length);
    if (!ok) {
      this.socket.pause();
      this.socket.once('drain', () => this.socket.resume());
    }
  }

  /** Queues each answer in out[0, n) one by one, through the fault in force now. */
  private misbehave(n: number): void {
    const fault = this.plc.fault;
    for (let i = 0; i < n; ) {
      const end = i + 6 + this.out.readUInt16BE(i + 4);
      const answer = Buffer.from(this.out.subarray(i, end));
      i = end;
      this.queued++;
      this.queue = this.queue.then(async () => {
        if (!this.socket.destroyed) await this.plc.answerWith(fault, this.socket, answer);
        this.queued--;
      });
    }
  }
}

/** The simulated PLC: servers on 127.0.0.1 that can be stopped and started again on their ports. */
export class BenchPlc {
  fault: PlcFault = 'none';
  /** Open connections it serves at most; more are dropped at once. */
  maxConnections = Infinity;
  requestsServed = 0;
  openConnections = 0;
  readonly sockets = new Set<net.Socket>();
  /** Open connections per listening port, and the most any port has had since `takePeak`. */
  private readonly perEndpoint = new Map<number, number>();
  private peak = 0;
  private readonly servers: net.Server[] = [];
  private readonly timers = new Set<NodeJS.Timeout>();

  endpointOpened(port: number): void {
    const n = (this.perEndpoint.get(port) ?? 0) + 1;
    this.perEndpoint.set(port, n);
    this.peak = Math.max(this.peak, n);
  }

  endpointClosed(port: number): void {
    this.perEndpoint.set(port, this.perEndpoint.get(port)! - 1);
  }

  /**
   * The most connections one endpoint had open at once since the last call (what a plant with
   * shared PLC links must keep at `upstream_connections`); starts again from what is open now.
   */
  takePeak(): number {
    const peak = this.peak;
    this.peak = Math.max(0, ...this.perEndpoint.values());
    return peak;
  }

  /** Listens on 127.0.0.1:port (0: any free port), in addition to any port it has; resolves the port. */
  async listen(port = 0): Promise<number> {
    const server = net.createServer({ noDelay: true }, (socket) => {
      if (this.openConnections >= this.maxConnections) socket.destroy();
      else new PlcConnection(this, socket);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: '127.0.0.1', port, backlog: 4096 }, () => {
        // Errors after this (accept failing: out of descriptors) are not ours to hide.
        server.off('error', reject);
        resolve();
      });
    });
    this.servers.push(server);
    return (server.address() as net.AddressInfo).port;
  }

  /** Stops listening and drops every connection, as a PLC that goes down does. */
  async close(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const s of this.sockets) s.destroy();
    const servers = this.servers.splice(0);
    await Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
  }

  /** Sends one answer as `fault` has it. */
  async answerWith(fault: PlcFault, socket: net.Socket, answer: Buffer): Promise<void> {
    switch (fault) {
      case 'none':
        socket.write(answer);
        return;
      case 'reset':
        if (Math.random() < RESET_SHARE) {
          socket.write(answer.subarray(0, Math.max(MBAP_LENGTH + 1, answer.length >> 1)));
          socket.resetAndDestroy();
        } else socket.write(answer);
        return;
      case 'garbage':
        socket.write(Math.random() < GARBAGE_SHARE ? GARBAGE : answer);
        return;
      case 'slow':
        await this.later(Math.floor(Math.random() * SLOW_MAX_MS));
        for (let at = 0; at < answer.length && !socket.destroyed; ) {
          const n = 1 + Math.floor(Math.random() * 3);
          socket.write(answer.subarray(at, at + n));
          at += n;
          await this.later(1);
        }
    }
  }

  /** Resolves after `ms`, unless the PLC is closed first (then never: its connections are gone). */
  private later(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.timers.delete(t);
        resolve();
      }, ms);
      this.timers.add(t);
    });
  }
}

function report(msg: PlcMessage): void {
  if (!sendToParent(msg)) process.stdout.write(JSON.stringify(msg) + '\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { port: { type: 'string', default: '0' }, 'max-connections': { type: 'string' }, listeners: { type: 'string' } } });
  const plc = new BenchPlc();
  if (values['max-connections'] !== undefined) plc.maxConnections = Number(values['max-connections']);
  try {
    if (values.listeners === undefined) report({ type: 'listening', port: await plc.listen(Number(values.port)) });
    else {
      const ports: number[] = [];
      for (let i = 0; i < Number(values.listeners); i++) ports.push(await plc.listen());
      report({ type: 'listening-many', ports });
    }
  } catch (err) {
    process.stderr.write(`bench plc: ${(err as Error).message}\n`);
    process.exit(1);
  }
  process.on('message', (m: unknown) => {
    if (typeof m === 'object' && m !== null && (m as { type?: unknown }).type === 'stats') {
      report({ type: 'stats', requests: plc.requestsServed, connections: plc.openConnections, peakPerEndpoint: plc.takePeak() });
    }
  });
  // The orchestrator owns this process: when it goes, so do we.
  process.on('disconnect', () => process.exit(0));
  process.on('SIGTERM', () => process.exit(0));
}

if (isEntryPoint(import.meta.url)) await main();
