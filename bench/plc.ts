// A fast simulated PLC for the benchmark: a raw TCP server that frames by the MBAP length and
// answers from precomputed memory images. It must never be the bottleneck, so per chunk it does
// one pass over the bytes, builds every response into one reused buffer and makes one write().
// Its answers follow bench/model.ts (the load generator checks them byte for byte).
//
// Run as its own process (forked by bench/run.ts) so its CPU time is measured apart:
//   node dist/bench/plc.js [--port N]     → IPC/stdout: {"type":"listening","port":N}
import net from 'node:net';
import { parseArgs } from 'node:util';
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

let requestsServed = 0;
let openConnections = 0;

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
  private out = Buffer.allocUnsafe(OUT_BUFFER_BYTES);
  /** Bytes of a request cut off at the end of the last chunk. */
  private tail: Buffer | null = null;

  constructor(private readonly socket: net.Socket) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => {
      /* the client went away; 'close' follows */
    });
    socket.on('close', () => openConnections--);
    openConnections++;
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
      }
      const out = this.out;
      out[o] = inb[s]!;
      out[o + 1] = inb[s + 1]!;
      out[o + 2] = 0;
      out[o + 3] = 0;
      out[o + 6] = inb[s + 6]!;
      o = respond(inb, s, end, out, o);
      requestsServed++;
      s = end;
    }
    if (s < len) this.tail = inb.subarray(s);
    if (o > 0) this.write(o);
  }

  private write(n: number): void {
    const ok = this.socket.write(this.out.subarray(0, n));
    // A write that didn't go to the kernel at once still references the buffer: take a new one.
    if (this.socket.writableLength > 0) this.out = Buffer.allocUnsafe(OUT_BUFFER_BYTES);
    if (!ok) {
      this.socket.pause();
      this.socket.once('drain', () => this.socket.resume());
    }
  }
}

function report(msg: PlcMessage): void {
  if (!sendToParent(msg)) process.stdout.write(JSON.stringify(msg) + '\n');
}

function main(): void {
  const { values } = parseArgs({ options: { port: { type: 'string', default: '0' } } });
  const server = net.createServer({ noDelay: true }, (socket) => new PlcConnection(socket));
  server.on('error', (err) => {
    process.stderr.write(`bench plc: ${err.message}\n`);
    process.exit(1);
  });
  server.listen({ host: '127.0.0.1', port: Number(values.port), backlog: 4096 }, () => {
    const address = server.address() as net.AddressInfo;
    report({ type: 'listening', port: address.port });
  });
  process.on('message', (m: unknown) => {
    if (typeof m === 'object' && m !== null && (m as { type?: unknown }).type === 'stats') {
      report({ type: 'stats', requests: requestsServed, connections: openConnections });
    }
  });
  // The orchestrator owns this process: when it goes, so do we.
  process.on('disconnect', () => process.exit(0));
  process.on('SIGTERM', () => process.exit(0));
}

main();
