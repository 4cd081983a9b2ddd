// Micro-benchmark of learning from a capture: how many MB of pcap per second `plcguard policy
// learn` reads, reassembles, decodes and observes (issue 11 asks ≥ 50 MB/s on this machine for
// 1 GB). A synthetic capture is written to a temporary file first (not timed), then read exactly
// as the command reads it (cli/capture.ts → policy/learn/observe.ts), then the proposal is made.
//
//   npm run bench:learn                  # 1 GiB, about a minute with the generation
//   node dist/bench/learn.js --mb 64     # a smaller file
//
// The traffic: 32 HMIs (10.0.1.1-32) polling one PLC (10.0.0.2:502) over one connection each, a
// request and its answer per exchange, each followed by a bare ACK, as a capture of a busy HMI
// network shows: 70 % FC3 reads of 1-125 registers at a few fixed places, 10 % FC4, 10 % FC1,
// 6 % FC6 and 4 % FC16 setpoint writes. Ethernet, IPv4, TCP with timestamps (32-byte headers),
// little-endian pcap, µs.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { readCaptures, terminalProgress } from '../cli/capture.js';
import { Learner } from '../policy/learn/observe.js';
import { proposePolicy } from '../policy/learn/propose.js';

const { values } = parseArgs({ options: { mb: { type: 'string' }, keep: { type: 'boolean' } } });
const TARGET_BYTES = Number(values.mb ?? 1024) * 1024 * 1024;
const CLIENTS = 32;
const CHUNK = 4 * 1024 * 1024;
const ETH = 14;
const IP = 20;
/** TCP header with the timestamp option, as Linux sends it. */
const TCP = 32;
const HEADERS = ETH + IP + TCP;
const RECORD = 16;

/** xorshift32: the same capture on every run. */
let seed = 0x1234567;
function rnd(n: number): number {
  seed ^= seed << 13;
  seed >>>= 0;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  seed >>>= 0;
  return seed % n;
}

interface Conn {
  client: number;
  port: number;
  cseq: number;
  sseq: number;
  tid: number;
}

const conns: Conn[] = Array.from({ length: CLIENTS }, (_, i) => ({ client: 0x0a000101 + i, port: 40000 + i, cseq: 1000, sseq: 9000, tid: 0 }));
const SERVER = 0x0a000002;
let timeUs = Date.UTC(2024, 0, 1) * 1000;

/** Writes one packet record at `o` of `b`; returns the next offset. */
function packet(b: Buffer, o: number, fromClient: boolean, c: Conn, payload: number[]): number {
  const len = HEADERS + payload.length;
  timeUs += 50;
  b.writeUInt32LE(Math.floor(timeUs / 1e6), o);
  b.writeUInt32LE(timeUs % 1e6, o + 4);
  b.writeUInt32LE(len, o + 8);
  b.writeUInt32LE(len, o + 12);
  const f = o + RECORD;
  b.fill(0, f, f + 12); // MAC addresses
  b.writeUInt16BE(0x0800, f + 12);
  const ip = f + ETH;
  b[ip] = 0x45;
  b[ip + 1] = 0;
  b.writeUInt16BE(IP + TCP + payload.length, ip + 2);
  b.writeUInt16BE(0, ip + 4); // id
  b.writeUInt16BE(0x4000, ip + 6); // DF
  b[ip + 8] = 64;
  b[ip + 9] = 6;
  b.writeUInt16BE(0, ip + 10);
  b.writeUInt32BE(fromClient ? c.client : SERVER, ip + 12);
  b.writeUInt32BE(fromClient ? SERVER : c.client, ip + 16);
  const t = ip + IP;
  b.writeUInt16BE(fromClient ? c.port : 502, t);
  b.writeUInt16BE(fromClient ? 502 : c.port, t + 2);
  b.writeUInt32BE(fromClient ? c.cseq : c.sseq, t + 4);
  b.writeUInt32BE(fromClient ? c.sseq : c.cseq, t + 8);
  b[t + 12] = (TCP / 4) << 4;
  b[t + 13] = payload.length > 0 ? 0x18 : 0x10;
  b.writeUInt16BE(512, t + 14);
  b.fill(0, t + 16, t + TCP);
  for (let i = 0; i < payload.length; i++) b[t + TCP + i] = payload[i]!;
  if (fromClient) c.cseq = (c.cseq + payload.length) >>> 0;
  else c.sseq = (c.sseq + payload.length) >>> 0;
  return o + RECORD + len;
}

const w = (n: number): number[] => [(n >> 8) & 0xff, n & 0xff];
const adu = (tid: number, pdu: number[]): number[] => [...w(tid), 0, 0, ...w(pdu.length + 1), 1, ...pdu];

/** One exchange: request, response, ACK. Returns the next offset. */
function exchange(b: Buffer, o: number, c: Conn): number {
  c.tid = (c.tid + 1) & 0xffff;
  const p = rnd(100);
  let req: number[];
  let resp: number[];
  if (p < 90) {
    const fc = p < 70 ? 3 : p < 80 ? 4 : 1;
    const start = [0, 100, 200, 400][rnd(4)]!;
    const qty = fc === 1 ? 1 + rnd(64) : 1 + rnd(125);
    const bytes = fc === 1 ? (qty + 7) >> 3 : 2 * qty;
    req = adu(c.tid, [fc, ...w(start), ...w(qty)]);
    resp = adu(c.tid, [fc, bytes, ...new Array<number>(bytes).fill(0)]);
  } else if (p < 96) {
    const addr = 10 + rnd(10);
    req = adu(c.tid, [6, ...w(addr), ...w(500 + rnd(300))]);
    resp = req;
  } else {
    const qty = 1 + rnd(8);
    const values = Array.from({ length: qty }, () => w(rnd(1000))).flat();
    req = adu(c.tid, [16, ...w(10), ...w(qty), 2 * qty, ...values]);
    resp = adu(c.tid, [16, ...w(10), ...w(qty)]);
  }
  o = packet(b, o, true, c, req);
  o = packet(b, o, false, c, resp);
  return packet(b, o, true, c, []);
}

function generate(file: string): number {
  const fd = fs.openSync(file, 'w');
  const header = Buffer.alloc(24);
  header.writeUInt32LE(0xa1b2c3d4, 0);
  header.writeUInt16LE(2, 4);
  header.writeUInt16LE(4, 6);
  header.writeUInt32LE(262144, 16);
  header.writeUInt32LE(1, 20);
  fs.writeSync(fd, header);
  let total = header.length;
  const b = Buffer.alloc(CHUNK + 4096);
  while (total < TARGET_BYTES) {
    let o = 0;
    while (o < CHUNK) o = exchange(b, o, conns[rnd(CLIENTS)]!);
    fs.writeSync(fd, b, 0, o);
    total += o;
  }
  fs.closeSync(fd);
  return total;
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'plcguard-bench-learn-'));
  const file = path.join(dir, 'capture.pcap');
  try {
    const g0 = performance.now();
    const bytes = generate(file);
    console.log(`generated ${(bytes / 1e6).toFixed(0)} MB of pcap in ${((performance.now() - g0) / 1000).toFixed(1)} s: ${file}`);
    const learner = new Learner();
    const t0 = performance.now();
    const run = await readCaptures([file], { serverPorts: new Set([502]), sink: learner, progress: terminalProgress() });
    learner.finish();
    const read = (performance.now() - t0) / 1000;
    const p0 = performance.now();
    const proposal = proposePolicy(learner.observations, { captures: [file] });
    const propose = (performance.now() - p0) / 1000;
    const c = learner.observations.counts;
    console.log(`node ${process.version}, ${os.cpus()[0]?.model ?? 'cpu'} × ${os.cpus().length}`);
    console.log(`read + reassemble + decode + observe: ${(run.bytes / 1e6).toFixed(0)} MB, ${run.packets} packets, ${c.requests} requests in ${read.toFixed(1)} s`);
    console.log(`  ${(run.bytes / 1e6 / read).toFixed(0)} MB/s, ${(run.packets / read / 1e6).toFixed(2)} M packets/s, ${(c.requests / read / 1e6).toFixed(2)} M requests/s`);
    console.log(`propose: ${proposal.devices} device, ${proposal.rules} rules in ${(propose * 1000).toFixed(0)} ms`);
    console.log(`rss after: ${(process.memoryUsage().rss / 1e6).toFixed(0)} MB`);
  } finally {
    if (values.keep !== true) fs.rmSync(dir, { recursive: true, force: true });
  }
}

await main();
