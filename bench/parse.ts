// Micro-benchmark of the hot path's protocol half: FrameSplitter + decodeRequest, fed one large
// buffer in 64 KiB chunks the way a socket hands them over (frames straddle chunk boundaries).
//
//   npm run bench:parse                # about 5 s
//   node dist/bench/parse.js --quick   # about 0.5 s, a CI smoke run
//
// Corpora (deterministic, from a fixed seed):
//   mixed   80% FC3 reads, 6% FC4, 4% FC1, 4% FC16 (1–20 registers), 3% FC6, 2% FC5, 1% FC23
//   fc3     FC3 reads only (the common polling load; target ≤ 200 ns per request)
//   fc3/5B  the same stream in 5-byte chunks: every frame is assembled in the splitter's buffer
//           (a fragmenting path or a slow client; the worst case per byte)
// Modes:
//   split+decode   what a session does per frame before the policy check
//   split only     the splitter with a handler that only counts
//   decode only    decodeRequest over pre-split frames (no splitter)

import { FrameSplitter, ModbusRequest, decodeRequest, encodeAdu } from '../modbus/index.js';

const QUICK = process.argv.includes('--quick');
const WARMUP_MS = QUICK ? 15 : 200;
const MEASURE_MS = QUICK ? 35 : 400;
const CHUNK_BYTES = 64 * 1024;
const FRAMES_PER_CORPUS = QUICK ? 20_000 : 200_000;

/** xorshift32: the corpus is the same on every run. */
function rng(seed: number): (n: number) => number {
  let x = seed >>> 0 || 1;
  return (n: number): number => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x % n;
  };
}

function u16(v: number): number[] {
  return [(v >> 8) & 0xff, v & 0xff];
}

function fc3(r: (n: number) => number, tid: number): Buffer {
  const qty = 1 + r(125);
  return encodeAdu(tid, 1, Buffer.from([3, ...u16(r(65536 - qty)), ...u16(qty)]));
}

function mixedFrame(r: (n: number) => number, tid: number): Buffer {
  const p = r(100);
  if (p < 80) return fc3(r, tid);
  if (p < 86) return encodeAdu(tid, 1, Buffer.from([4, ...u16(r(1000)), ...u16(1 + r(125))]));
  if (p < 90) return encodeAdu(tid, 1, Buffer.from([1, ...u16(r(1000)), ...u16(1 + r(2000))]));
  if (p < 94) {
    const qty = 1 + r(20);
    const values = Array.from({ length: qty }, () => u16(r(65536))).flat();
    return encodeAdu(tid, 1, Buffer.from([16, ...u16(r(1000)), ...u16(qty), 2 * qty, ...values]));
  }
  if (p < 97) return encodeAdu(tid, 1, Buffer.from([6, ...u16(r(1000)), ...u16(r(65536))]));
  if (p < 99) return encodeAdu(tid, 1, Buffer.from([5, ...u16(r(1000)), r(2) ? 0xff : 0x00, 0x00]));
  return encodeAdu(tid, 1, Buffer.from([23, ...u16(0), ...u16(10), ...u16(100), ...u16(2), 4, 0, 1, 0, 2]));
}

interface Corpus {
  name: string;
  /** The whole stream, cut into socket-sized chunks (views, no copies). */
  chunks: Buffer[];
  /** Offsets of each frame in the stream, for decode-only. */
  stream: Buffer;
  starts: Uint32Array;
  frames: number;
}

function corpus(name: string, make: (r: (n: number) => number, tid: number) => Buffer, chunkBytes = CHUNK_BYTES): Corpus {
  const r = rng(0x9e3779b9);
  const frames: Buffer[] = [];
  for (let i = 0; i < FRAMES_PER_CORPUS; i++) frames.push(make(r, i & 0xffff));
  const stream = Buffer.concat(frames);
  const starts = new Uint32Array(frames.length + 1);
  for (let i = 0, o = 0; i < frames.length; i++) {
    starts[i] = o;
    o += frames[i]!.length;
    starts[i + 1] = o;
  }
  const chunks: Buffer[] = [];
  for (let o = 0; o < stream.length; o += chunkBytes) chunks.push(stream.subarray(o, o + chunkBytes));
  return { name, chunks, stream, starts, frames: frames.length };
}

/** Keeps the optimiser from discarding the decoder's work. */
let sink = 0;

type Pass = (c: Corpus) => number;

function splitAndDecode(): Pass {
  const req = new ModbusRequest();
  let count = 0;
  const splitter = new FrameSplitter({
    frame(buf, start, end) {
      decodeRequest(buf, start, end, req);
      sink += req.readQuantity + req.exception;
      count++;
      return true;
    },
  });
  return (c) => {
    count = 0;
    for (const chunk of c.chunks) splitter.push(chunk);
    return count;
  };
}

function splitOnly(): Pass {
  let count = 0;
  const splitter = new FrameSplitter({
    frame(_buf, start, end) {
      sink += end - start;
      count++;
      return true;
    },
  });
  return (c) => {
    count = 0;
    for (const chunk of c.chunks) splitter.push(chunk);
    return count;
  };
}

function decodeOnly(): Pass {
  const req = new ModbusRequest();
  return (c) => {
    const s = c.stream;
    const starts = c.starts;
    for (let i = 0; i < c.frames; i++) {
      decodeRequest(s, starts[i]!, starts[i + 1]!, req);
      sink += req.readQuantity + req.exception;
    }
    return c.frames;
  };
}

function runFor(ms: number, pass: Pass, c: Corpus): { frames: number; ns: number } {
  const deadline = process.hrtime.bigint() + BigInt(ms) * 1_000_000n;
  const t0 = process.hrtime.bigint();
  let frames = 0;
  let now = t0;
  do {
    frames += pass(c);
    now = process.hrtime.bigint();
  } while (now < deadline);
  return { frames, ns: Number(now - t0) };
}

function main(): void {
  const corpora = [corpus('mixed', mixedFrame), corpus('fc3', fc3), corpus('fc3/5B', fc3, 5)];
  const modes: [string, () => Pass][] = [
    ['split+decode', splitAndDecode],
    ['split only', splitOnly],
    ['decode only', decodeOnly],
  ];
  console.log(`plcguard bench:parse — node ${process.version}, ${QUICK ? 'quick' : 'full'} run, ${CHUNK_BYTES / 1024} KiB chunks unless noted`);
  for (const c of corpora) {
    console.log(`corpus ${c.name}: ${c.frames} frames, ${c.stream.length} bytes (${(c.stream.length / c.frames).toFixed(1)} B/frame)`);
  }
  console.log('');
  console.log(`${'corpus'.padEnd(8)} ${'mode'.padEnd(14)} ${'ns/frame'.padStart(10)} ${'frames/s'.padStart(14)} ${'MB/s'.padStart(8)}`);
  for (const c of corpora) {
    for (const [name, make] of c.name === 'fc3/5B' ? modes.slice(0, 2) : modes) {
      const pass = make();
      runFor(WARMUP_MS, pass, c);
      const { frames, ns } = runFor(MEASURE_MS, pass, c);
      const perFrame = ns / frames;
      const bytes = (c.stream.length * frames) / c.frames;
      console.log(
        `${c.name.padEnd(8)} ${name.padEnd(14)} ${perFrame.toFixed(1).padStart(10)} ${Math.round(1e9 / perFrame).toLocaleString('en-US').padStart(14)} ${(bytes / ns * 1e3).toFixed(0).padStart(8)}`,
      );
    }
  }
  // Printed so the work can't be optimised away; meaningless otherwise.
  console.log(`\n(checksum ${sink % 1000})`);
}

main();
