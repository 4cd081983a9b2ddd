// TCP reassembly and Modbus resynchronisation (modbus/capture/tcp.ts): segments built by hand, so
// sequence numbers, holes and overlaps are exact; a seeded random property (any segmentation, local
// reordering, duplicates and overlaps give the same frames); and the real captures whose streams were
// edited with editcap/mergecap (test/fixtures/captures/README.md).
import t from 'tap';
import { encodeAdu } from '../modbus/index.js';
import { endpointsKey, StreamTable, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, TcpSegment, type StreamLimits } from '../modbus/capture/index.js';
import { captureBytes, chunks, framesOf } from './fixtures/capture.js';
import { Random } from './fixtures/random.js';

const CLIENT = 0x0a000001; // 10.0.0.1
const SERVER = 0x0a000002; // 10.0.0.2
const CLIENT_PORT = 40000;
const MODBUS = 502;

interface Seg {
  /** Which side sends it. */
  from: 'client' | 'server';
  seq: number;
  flags?: number;
  data?: Buffer;
  clientPort?: number;
  serverPort?: number;
  timeMs?: number;
}

function segment(s: Seg): TcpSegment {
  const out = new TcpSegment();
  const client = s.from === 'client';
  out.family = 4;
  out.src3 = client ? CLIENT : SERVER;
  out.dst3 = client ? SERVER : CLIENT;
  const cp = s.clientPort ?? CLIENT_PORT;
  const sp = s.serverPort ?? MODBUS;
  out.srcPort = client ? cp : sp;
  out.dstPort = client ? sp : cp;
  out.seq = s.seq >>> 0;
  out.flags = s.flags ?? TCP_ACK;
  // Inside a larger buffer: the table must respect start and end.
  const data = s.data ?? Buffer.alloc(0);
  out.buf = Buffer.concat([Buffer.from([0xaa]), data, Buffer.from([0xbb])]);
  out.start = 1;
  out.end = 1 + data.length;
  out.timeMs = s.timeMs ?? 0;
  return out;
}

/** A table and what came out of it, as lines: `req 1 <hex>`, `resp 1 <hex>`, `closed 1`. */
function harness(ports: number[] = [MODBUS], limits?: Partial<StreamLimits>): { table: StreamTable; events: string[] } {
  const events: string[] = [];
  const table = new StreamTable(
    { serverPorts: new Set(ports), ...(limits ? { limits } : {}) },
    {
      request: (s, b, start, end, timeMs) => events.push(`req ${s.id} ${b.toString('hex', start, end)}${timeMs ? ` @${timeMs}` : ''}`),
      response: (s, b, start, end) => events.push(`resp ${s.id} ${b.toString('hex', start, end)}`),
      closed: (s) => events.push(`closed ${s.id}`),
    },
  );
  return { table, events };
}

const feed = (table: StreamTable, segs: Seg[]): void => segs.forEach((s) => table.segment(segment(s)));

/** FC3 read holding registers `start`, quantity 10, transaction `tid`. */
const read = (tid: number, start = 0): Buffer => encodeAdu(tid, 1, Buffer.from([3, start >> 8, start & 0xff, 0, 10]));
/** FC16 write of `n` registers: a longer frame. */
const write = (tid: number, n: number): Buffer =>
  encodeAdu(tid, 1, Buffer.from([16, 0, 10, 0, n, 2 * n, ...Array.from({ length: 2 * n }, (_, i) => i & 0xff)]));
const reply = (tid: number): Buffer => encodeAdu(tid, 1, Buffer.from([3, 20, ...Buffer.alloc(20)]));
const hex = (b: Buffer): string => b.toString('hex');
const ISN = 1000;
const SYN: Seg = { from: 'client', seq: ISN - 1, flags: TCP_SYN };

void t.test('a stream split at every position, and one byte per segment, gives the same frames', (t) => {
  const frames = [read(1), write(2, 3), read(3, 100)];
  const bytes = Buffer.concat(frames);
  const want = frames.map((f) => `req 1 ${hex(f)}`);
  for (let k = 0; k <= bytes.length; k++) {
    const { table, events } = harness();
    feed(table, [SYN, { from: 'client', seq: ISN, data: bytes.subarray(0, k) }, { from: 'client', seq: ISN + k, data: bytes.subarray(k) }]);
    t.strictSame(events, want, `split at ${k}`);
  }
  const { table, events } = harness();
  feed(table, [SYN, ...[...bytes].map((b, i): Seg => ({ from: 'client', seq: ISN + i, data: Buffer.from([b]) }))]);
  t.strictSame(events, want, 'one byte per segment');
  t.equal(table.counts.segments, 1 + bytes.length);
  t.end();
});

void t.test('sequence numbers wrap around 2^32', (t) => {
  const { table, events } = harness();
  const frames = Buffer.concat([read(1), read(2)]);
  const isn = 0xfffffff0;
  // The second segment starts past the wrap; it arrives first.
  feed(table, [
    { from: 'client', seq: isn, flags: TCP_SYN },
    { from: 'client', seq: isn + 1 + 12, data: frames.subarray(12) },
    { from: 'client', seq: isn + 1, data: frames.subarray(0, 12) },
  ]);
  t.strictSame(events, [`req 1 ${hex(read(1))}`, `req 1 ${hex(read(2))}`]);
  t.equal(table.counts.outOfOrderSegments, 1);
  t.end();
});

void t.test('out of order, retransmitted and overlapping segments: delivered once, in order; the first copy wins', (t) => {
  const a = read(1);
  const b = read(2);
  const c = read(3);
  const { table, events } = harness();
  feed(table, [
    SYN,
    { from: 'client', seq: ISN + 24, data: c }, // held
    { from: 'client', seq: ISN + 12, data: b }, // held, in front of c
    { from: 'client', seq: ISN + 12, data: read(9) }, // the same range again, other bytes: the first copy stays
    { from: 'client', seq: ISN, data: a }, // fills the hole: a, b, c
    { from: 'client', seq: ISN, data: a }, // an old retransmission
    { from: 'client', seq: ISN + 30, data: Buffer.concat([c.subarray(6), read(4)]) }, // overlaps c's tail
  ]);
  t.strictSame(events, [a, b, c, read(4)].map((f) => `req 1 ${hex(f)}`));
  t.equal(table.counts.outOfOrderSegments, 3);
  t.equal(table.counts.retransmittedBytes, 12 + 12 + 6, 'the duplicate of b, the old a, and c\'s tail again');
  t.end();
});

void t.test('seeded random: any segmentation, local reordering, duplicates and overlaps give the same frames', (t) => {
  const rnd = new Random(0x5eed);
  for (let round = 0; round < 200; round++) {
    const frames: Buffer[] = [];
    for (let i = 0; i < 1 + rnd.int(12); i++) frames.push(rnd.int(2) ? read(i) : write(i, 1 + rnd.int(60)));
    const bytes = Buffer.concat(frames);
    const segs: Seg[] = [];
    for (let i = 0; i < bytes.length; ) {
      const n = 1 + rnd.int(40);
      segs.push({ from: 'client', seq: ISN + i, data: bytes.subarray(i, i + n) });
      // Now and then an overlapping copy of a nearby range.
      if (rnd.int(5) === 0) {
        const lo = Math.max(0, i - rnd.int(20));
        segs.push({ from: 'client', seq: ISN + lo, data: bytes.subarray(lo, Math.min(bytes.length, i + n + rnd.int(20))) });
      }
      i += n;
    }
    // Swap neighbours: reordering within a small window, as a capture of a busy link shows.
    for (let i = 0; i + 1 < segs.length; i++) if (rnd.int(3) === 0) [segs[i], segs[i + 1]] = [segs[i + 1]!, segs[i]!];
    const { table, events } = harness();
    feed(table, [SYN, ...segs]);
    table.end();
    t.strictSame(events, [...frames.map((f) => `req 1 ${hex(f)}`), 'closed 1'], `round ${round} (seed 0x5eed)`);
    t.equal(table.counts.holes + table.counts.skippedBytes + table.counts.framingErrors, 0);
  }
  t.end();
});

void t.test('a capture that starts inside a frame: the rest of it is skipped, and the next frames are found', (t) => {
  // The client's stream: the last 7 bytes of a frame, then three whole ones in one segment.
  const tail = write(1, 4).subarray(-7);
  const { table, events } = harness();
  feed(table, [{ from: 'client', seq: 5000, data: Buffer.concat([tail, read(2), read(3), read(4)]) }]);
  t.strictSame(events, [2, 3, 4].map((n) => `req 1 ${hex(read(n))}`));
  t.equal(table.counts.midStream, 1);
  t.equal(table.counts.skippedBytes, 7);
  t.equal(table.counts.resyncs, 1);

  // A segment that begins with a whole frame and ends with it: taken as it is.
  const one = harness();
  feed(one.table, [{ from: 'server', seq: 7, data: reply(1) }]);
  t.strictSame(one.events, [`resp 1 ${hex(reply(1))}`]);
  t.equal(one.table.counts.skippedBytes, 0);

  // A tail and exactly one frame after it (not at a segment start): wait for the next frame.
  const wait = harness();
  feed(wait.table, [{ from: 'client', seq: 0, data: Buffer.concat([tail, read(2)]) }]);
  t.strictSame(wait.events, [], 'one frame at an offset inside a segment is not enough');
  feed(wait.table, [{ from: 'client', seq: 7 + 12, data: read(3) }]);
  t.strictSame(wait.events, [`req 1 ${hex(read(2))}`, `req 1 ${hex(read(3))}`]);
  t.equal(wait.table.counts.skippedBytes, 7);
  t.end();
});

void t.test('resynchronisation rejects what cannot be Modbus', (t) => {
  // Garbage: nothing is found, everything is skipped and counted.
  const garbage = harness();
  const http = Buffer.from('GET / HTTP/1.1\r\nHost: plc\r\n\r\n');
  feed(garbage.table, [{ from: 'client', seq: 0, data: http }]);
  garbage.table.end();
  t.strictSame(garbage.events, ['closed 1']);
  t.equal(garbage.table.counts.skippedBytes, 29);

  // A header whose function code can't be a request (0, ≥ 128), or whose PDU doesn't fit its
  // function (FC3 with a 7-byte PDU), is no boundary; the real frames after it are.
  for (const bad of [encodeAdu(1, 1, Buffer.from([0, 0, 0])), encodeAdu(1, 1, Buffer.from([0x83, 2])), encodeAdu(1, 1, Buffer.from([3, 0, 0, 0, 10, 0, 0]))]) {
    const h = harness();
    feed(h.table, [{ from: 'client', seq: 0, data: Buffer.concat([bad, read(2), read(3)]) }]);
    t.strictSame(h.events, [`req 1 ${hex(read(2))}`, `req 1 ${hex(read(3))}`], `skips ${hex(bad)}`);
    t.equal(h.table.counts.skippedBytes, bad.length);
  }
  // Responses: an exception response is a response; function code 0x80 alone is not.
  const exception = encodeAdu(1, 1, Buffer.from([0x83, 2]));
  const r = harness();
  feed(r.table, [{ from: 'server', seq: 0, data: Buffer.concat([encodeAdu(9, 1, Buffer.from([0x80, 1])), exception, reply(2)]) }]);
  t.strictSame(r.events, [`resp 1 ${hex(exception)}`, `resp 1 ${hex(reply(2))}`]);
  // A protocol id other than 0 is no boundary either.
  const pid = Buffer.from(read(1));
  pid[3] = 1;
  const p = harness();
  feed(p.table, [{ from: 'client', seq: 0, data: Buffer.concat([pid, read(2), read(3)]) }]);
  t.strictSame(p.events, [`req 1 ${hex(read(2))}`, `req 1 ${hex(read(3))}`]);
  t.end();
});

void t.test('a framing error: counted, the rest of the segment dropped, the stream resynchronised', (t) => {
  const bad = Buffer.from(read(2));
  bad[3] = 7; // protocol id 7
  const { table, events } = harness();
  feed(table, [
    SYN,
    { from: 'client', seq: ISN, data: Buffer.concat([read(1), bad, read(3)]) },
    { from: 'client', seq: ISN + 36, data: read(4) },
    { from: 'client', seq: ISN + 48, data: read(5) },
  ]);
  t.strictSame(events, [1, 4, 5].map((n) => `req 1 ${hex(read(n))}`));
  t.equal(table.counts.framingErrors, 1);
  t.equal(table.counts.resyncs, 1);
  t.end();
});

void t.test('a hole that never fills: skipped when too much is held, or when the stream ends', (t) => {
  // Per-direction segment limit 4: the fifth held segment gives up on the hole (frame 2).
  const { table, events } = harness([MODBUS], { pendingSegments: 4 });
  const frames = [1, 2, 3, 4, 5, 6, 7].map((n) => read(n));
  feed(table, [SYN, { from: 'client', seq: ISN, data: frames[0] }]);
  for (let i = 2; i < 7; i++) feed(table, [{ from: 'client', seq: ISN + 12 * i, data: frames[i] }]);
  t.strictSame(events, [1, 3, 4, 5, 6, 7].map((n) => `req 1 ${hex(read(n))}`));
  t.strictSame([table.counts.holes, table.counts.holeBytes, table.counts.resyncs], [1, 12, 1]);

  // Bytes limit, and the total over all streams.
  for (const limits of [{ pendingBytes: 30 }, { pendingTotalBytes: 30 }]) {
    const h = harness([MODBUS], limits);
    feed(h.table, [SYN, { from: 'client', seq: ISN + 12, data: read(2) }, { from: 'client', seq: ISN + 24, data: read(3) }]);
    t.strictSame(h.events, [], `${JSON.stringify(limits)}: 24 bytes held`);
    feed(h.table, [{ from: 'client', seq: ISN + 36, data: read(4) }]);
    t.strictSame(h.events, [2, 3, 4].map((n) => `req 1 ${hex(read(n))}`), `${JSON.stringify(limits)}: 36 bytes: the hole is skipped`);
  }

  // At the end of the capture, held data after a hole is delivered.
  const end = harness();
  feed(end.table, [SYN, { from: 'client', seq: ISN + 12, data: read(2) }, { from: 'client', seq: ISN + 30, data: read(4).subarray(6) }]);
  end.table.end();
  t.strictSame(end.events, [`req 1 ${hex(read(2))}`, 'closed 1'], 'frame 2 found; the half frame after the second hole is skipped');
  t.strictSame([end.table.counts.holes, end.table.counts.holeBytes, end.table.counts.skippedBytes], [2, 12 + 6, 6]);
  t.end();
});

void t.test('a hole while resynchronising: what was gathered before it is dropped', (t) => {
  const { table, events } = harness();
  // Mid-stream: a partial frame (waiting for more), then a hole, then two frames.
  feed(table, [{ from: 'client', seq: 0, data: read(1).subarray(0, 9) }]);
  feed(table, [{ from: 'client', seq: 20, data: Buffer.concat([read(2), read(3)]) }]);
  table.end();
  t.strictSame(events, [`req 1 ${hex(read(2))}`, `req 1 ${hex(read(3))}`, 'closed 1']);
  t.strictSame([table.counts.holes, table.counts.holeBytes, table.counts.skippedBytes], [1, 11, 9]);
  t.end();
});

void t.test('FIN from both sides or a RST ends a stream; a new SYN on the same ports starts another', (t) => {
  const { table, events } = harness();
  feed(table, [
    SYN,
    { ...SYN }, // a retransmitted SYN: the same stream
    { from: 'server', seq: 7999, flags: TCP_SYN | TCP_ACK },
    { from: 'client', seq: ISN, data: read(1) },
    { from: 'server', seq: 8000, data: reply(1) },
    { from: 'client', seq: ISN + 12, flags: TCP_FIN | TCP_ACK },
    { from: 'server', seq: 8000 + 29, flags: TCP_FIN | TCP_ACK, data: reply(2) }, // data with the FIN
    // The same 4-tuple again with another initial sequence number: stream 2, closed by a RST.
    { from: 'client', seq: 50_000, flags: TCP_SYN },
    { from: 'client', seq: 50_001, data: read(3) },
    { from: 'server', seq: 1, flags: TCP_RST },
  ]);
  t.strictSame(events, [`req 1 ${hex(read(1))}`, `resp 1 ${hex(reply(1))}`, `resp 1 ${hex(reply(2))}`, 'closed 1', `req 2 ${hex(read(3))}`, 'closed 2']);
  t.equal(table.openStreams, 0);
  // Stray FIN, RST and bare ACKs of streams never seen start nothing.
  feed(table, [
    { from: 'client', seq: 9, flags: TCP_FIN | TCP_ACK },
    { from: 'server', seq: 9, flags: TCP_RST },
    { from: 'client', seq: 9, flags: TCP_ACK },
  ]);
  t.equal(table.counts.streams, 2);
  t.equal(table.openStreams, 0);
  t.end();
});

void t.test('a side whose start was not captured but that sends only FIN or RST is not mid-stream', (t) => {
  const { table, events } = harness();
  feed(table, [
    SYN,
    { from: 'client', seq: ISN, data: read(1) },
    { from: 'client', seq: ISN + 12, flags: TCP_FIN | TCP_ACK },
    { from: 'server', seq: 5000, flags: TCP_FIN | TCP_ACK }, // the server's SYN-ACK was not captured
  ]);
  t.strictSame(events, [`req 1 ${hex(read(1))}`, 'closed 1'], 'both sides finished');
  const rst = harness();
  feed(rst.table, [SYN, { from: 'client', seq: ISN, data: read(1) }, { from: 'server', seq: 5000, flags: TCP_RST }]);
  t.strictSame(rst.events, [`req 1 ${hex(read(1))}`, 'closed 1']);
  t.strictSame([table.counts.midStream, rst.table.counts.midStream], [0, 0]);
  t.end();
});

void t.test('a SYN on an open stream that never saw one: the old stream ends, a new one starts', (t) => {
  const { table, events } = harness();
  feed(table, [{ from: 'client', seq: 77, data: read(1) }, SYN, { from: 'client', seq: ISN, data: read(2) }]);
  t.strictSame(events, [`req 1 ${hex(read(1))}`, 'closed 1', `req 2 ${hex(read(2))}`]);
  t.end();
});

void t.test('FIN before the data in front of it: the stream ends once the data is in', (t) => {
  const { table, events } = harness();
  feed(table, [
    SYN,
    { from: 'client', seq: ISN + 12, flags: TCP_FIN | TCP_ACK }, // FIN at 12, data 0..11 still missing
    { from: 'server', seq: 1, flags: TCP_FIN | TCP_ACK },
    { from: 'client', seq: ISN, data: read(1) },
  ]);
  t.strictSame(events, [`req 1 ${hex(read(1))}`, 'closed 1']);
  t.end();
});

void t.test('who is the server: the port, or with two server ports the SYN, else the first segment\'s destination', (t) => {
  const both = [MODBUS, CLIENT_PORT];
  const a = harness(both);
  feed(a.table, [{ from: 'server', seq: 5, flags: TCP_SYN }, { from: 'server', seq: 6, data: read(1) }]);
  t.strictSame(a.events, [`req 1 ${hex(read(1))}`], 'the SYN goes to the server (here the side on port 40000)');
  const b = harness(both);
  feed(b.table, [{ from: 'server', seq: 5, flags: TCP_SYN | TCP_ACK }, { from: 'server', seq: 6, data: reply(1) }]);
  t.strictSame(b.events, [`resp 1 ${hex(reply(1))}`], 'the SYN-ACK comes from the server');
  const c = harness(both);
  feed(c.table, [{ from: 'client', seq: 5, data: read(1) }, { from: 'server', seq: 9, data: reply(1) }]);
  t.strictSame(c.events, [`req 1 ${hex(read(1))}`, `resp 1 ${hex(reply(1))}`]);
  // A server on a port given by the caller; segments between other ports are only counted.
  const d = harness([5021]);
  feed(d.table, [
    { from: 'client', seq: 5, data: read(1), serverPort: 5021 },
    { from: 'client', seq: 5, data: read(1) },
  ]);
  t.strictSame(d.events, [`req 1 ${hex(read(1))}`]);
  t.equal(d.table.counts.otherPorts, 1);
  t.end();
});

void t.test('at most openStreams streams at once: the oldest is finished first', (t) => {
  const { table, events } = harness([MODBUS], { openStreams: 2 });
  for (const port of [1, 2, 3]) feed(table, [{ from: 'client', seq: 0, data: read(port), clientPort: port }]);
  t.strictSame(events, [`req 1 ${hex(read(1))}`, `req 2 ${hex(read(2))}`, 'closed 1', `req 3 ${hex(read(3))}`]);
  t.equal(table.counts.evicted, 1);
  // The evicted stream's next segment starts a new stream, which resynchronises.
  feed(table, [{ from: 'client', seq: 12, data: read(4), clientPort: 1 }]);
  t.strictSame(events.slice(4), ['closed 2', `req 4 ${hex(read(4))}`]);
  table.end();
  t.equal(table.openStreams, 0);
  t.end();
});

void t.test('streams in one hash bucket and in both families are kept apart', (t) => {
  const { table, events } = harness();
  // Many client ports: some share buckets; each stream's frames stay its own.
  for (let port = 1; port <= 300; port++) feed(table, [{ from: 'client', seq: 0, data: read(port & 0xff), clientPort: port }]);
  for (let port = 300; port >= 1; port--) feed(table, [{ from: 'client', seq: 12, data: read(port & 0xff, 1), clientPort: port }]);
  const second = events.filter((e) => e.endsWith('0001000a'));
  t.equal(second.length, 300);
  t.ok(second.every((e, i) => e === `req ${300 - i} ${hex(read((300 - i) & 0xff, 1))}`), 'each second frame in its own stream');
  // Two streams whose keys collide (found by a birthday search over client addresses) share a
  // bucket, and are still told apart.
  const server = { family: 4 as const, w0: 0, w1: 0, w2: 0, w3: SERVER };
  const seen = new Map<number, number>();
  let pair: [number, number] | null = null;
  for (let a = 1; pair === null; a++) {
    const k = endpointsKey({ family: 4, w0: 0, w1: 0, w2: 0, w3: a }, CLIENT_PORT, server, MODBUS);
    const other = seen.get(k);
    if (other === undefined) seen.set(k, a);
    else pair = [other, a];
  }
  const from = (address: number, data: Buffer): TcpSegment => {
    const s = segment({ from: 'client', seq: 0, data });
    s.src3 = address;
    return s;
  };
  const shared = harness();
  shared.table.segment(from(pair[0], read(1)));
  shared.table.segment(from(pair[1], read(2)));
  shared.table.segment(from(pair[0], read(3))); // seq 0 again: a retransmission, for stream 1
  t.strictSame(shared.events, [`req 1 ${hex(read(1))}`, `req 2 ${hex(read(2))}`]);
  t.equal(shared.table.counts.retransmittedBytes, 12, 'found in the shared bucket');
  // The same numbers as IPv6 words are another stream.
  const six = segment({ from: 'client', seq: 0, data: read(7) });
  six.family = 6;
  table.segment(six);
  t.equal(table.counts.streams, 301);
  t.end();
});

void t.test('the time of a frame is the time of the segment that completed it', (t) => {
  const { table, events } = harness();
  const f = read(1);
  feed(table, [
    { ...SYN, timeMs: 15 },
    { from: 'client', seq: ISN, data: f.subarray(0, 5), timeMs: 10 },
    { from: 'client', seq: ISN + 5, data: f.subarray(5), timeMs: 20 },
  ]);
  table.end();
  t.strictSame(events, [`req 1 ${hex(f)} @20`, 'closed 1']);
  t.end();
});

void t.test('resynchronising over a long partial frame, and a framing error right after', (t) => {
  // A 259-byte FC16 from a segment start, in two segments, the second with two more frames: the
  // gathered bytes outgrow the first buffer.
  const long = write(1, 123);
  const { table, events } = harness();
  feed(table, [
    { from: 'client', seq: 0, data: long.subarray(0, 200) },
    { from: 'client', seq: 200, data: Buffer.concat([long.subarray(200), read(2), write(3, 123)]) },
  ]);
  t.strictSame(events, [`req 1 ${hex(long)}`, `req 1 ${hex(read(2))}`, `req 1 ${hex(write(3, 123))}`]);
  t.equal(table.counts.skippedBytes, 0);
  // Two good frames, then a bad protocol id in the same segment: synchronised, then a framing error.
  const bad = Buffer.from(read(3));
  bad[2] = 1;
  const h = harness();
  feed(h.table, [{ from: 'client', seq: 0, data: Buffer.concat([read(1), read(2), bad]) }]);
  t.strictSame(h.events, [`req 1 ${hex(read(1))}`, `req 1 ${hex(read(2))}`]);
  t.strictSame([h.table.counts.resyncs, h.table.counts.framingErrors], [1, 1]);
  t.end();
});

// --- the real captures ------------------------------------------------------------------------

const BASIC = framesOf([captureBytes('basic.pcapng')]);

void t.test('captures edited with editcap/mergecap: out of order, retransmitted, started mid-stream and mid-frame', (t) => {
  const ooo = framesOf(chunks(captureBytes('outoforder.pcapng'), 100));
  t.strictSame(ooo.requests, BASIC.requests, 'out of order: every request, in order');
  t.strictSame(ooo.responses, BASIC.responses);
  t.equal(ooo.table.counts.outOfOrderSegments, 1);

  const re = framesOf([captureBytes('retransmission.pcapng')]);
  t.strictSame(re.requests, BASIC.requests, 'retransmission: request 2 once');
  t.equal(re.table.counts.retransmittedBytes, 12);

  const mid = framesOf([captureBytes('midstream.pcapng')]);
  t.strictSame(mid.requests, BASIC.requests.slice(1), 'mid-stream: request 1 was never captured');
  t.strictSame(mid.responses, BASIC.responses, 'every response');
  t.strictSame([mid.table.counts.midStream, mid.table.counts.resyncs, mid.table.counts.skippedBytes], [1, 2, 0]);

  const one = framesOf([captureBytes('onebyte.pcapng')]);
  t.strictSame(one.requests, ['00010000000601030000000a', '0002000000060106000a028a', '000200000006010100000008'.replace(/^0002/, '0003')]);
  t.equal(one.responses.length, 3);

  const frame = framesOf([captureBytes('midframe.pcapng')]);
  t.strictSame(frame.requests, one.requests.slice(1), 'mid-frame: the rest of request 1 skipped');
  t.strictSame(frame.responses, one.responses);
  t.strictSame([frame.table.counts.midStream, frame.table.counts.skippedBytes], [1, 7]);
  t.end();
});
