// TCP streams out of captured segments, and the Modbus frames in them: each direction of each
// connection is put back in sequence order and fed to a FrameSplitter, as the proxy's sessions feed
// theirs from a socket.
//
// Contract (as FrameSplitter's): pure, no I/O, no timers; never throws on any input. Frames are
// handed to the sink as views valid only during the call. Memory is bounded (StreamLimits):
// out-of-order data is held per direction up to MAX_PENDING_BYTES / MAX_PENDING_SEGMENTS and in all
// up to MAX_PENDING_TOTAL_BYTES, at most MAX_OPEN_STREAMS connections are open at once (past it the
// oldest is finished), and resynchronisation looks at most a frame and a header ahead.
//
// What a capture does to a stream, and what happens here (RFC 9293 §3.4 sequence numbers, mod 2^32):
// | in the capture                          | here                                                 |
// |-----------------------------------------|------------------------------------------------------|
// | segments out of order                   | held until the hole is filled, then delivered in order |
// | a retransmission or overlap             | bytes already delivered are dropped; the first copy wins |
// | a frame spanning segments, one byte per segment | the splitter assembles it                    |
// | the SYN not seen (capture started mid-stream) | the direction is resynchronised (below)        |
// | a hole that never fills (capture loss, IP fragment skipped) | when the held data passes its bound or the stream ends, the hole is skipped, counted, and the direction resynchronised |
// | a framing error (protocol id ≠ 0, length outside 2..254) | counted; the rest of that segment is dropped and the direction resynchronised |
// | FIN from both sides, or RST             | the stream is finished (held data delivered, holes skipped) |
// | a SYN with a new initial sequence number on an open 4-tuple | the old stream is finished, a new one begins |
//
// Resynchronising: the direction's bytes are scanned for an offset where MBAP headers chain: each
// with protocol id 0, length 2..254 and a plausible function code (requests 1..127 with the length
// their function needs; responses anything but 0 and 0x80), checked through the data at hand. An
// offset is taken when at least one whole frame and the next header check out, or when it is where
// a segment began and whole frames end exactly at the end of the data (clients send a request per
// segment). Bytes before it are skipped and counted. Data that never synchronises is counted as
// skipped when the stream ends.

import { MBAP_AND_FC_LENGTH, MBAP_HEADER_LENGTH } from '../constants.js';
import { aduLength, checkMbapPrefix } from '../mbap.js';
import { decodeRequest, ModbusRequest } from '../request.js';
import { FrameSplitter } from '../splitter.js';
import { TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN } from './packet.js';
import type { TcpSegment } from './packet.js';

/** Out-of-order bytes held per direction before the hole in front of them is given up on. */
export const MAX_PENDING_BYTES = 64 * 1024;
export const MAX_PENDING_SEGMENTS = 256;
/** Out-of-order bytes held over all streams. */
export const MAX_PENDING_TOTAL_BYTES = 64 * 1024 * 1024;
/** Connections followed at once. */
export const MAX_OPEN_STREAMS = 16_384;
/** The well-known Modbus/TCP port (MB-TCP §4.4). */
export const MODBUS_TCP_PORT = 502;
const EXCEPTION_BIT = 0x80;
const MAX_REQUEST_FUNCTION_CODE = 0x7f;

/** An address as four big-endian words; IPv4 in w3 (policy/net.ts's IpAddress layout). */
export interface StreamAddress {
  readonly family: 4 | 6;
  readonly w0: number;
  readonly w1: number;
  readonly w2: number;
  readonly w3: number;
}

/** Receives the Modbus frames of every stream, and when each stream ends. */
export interface ModbusStreamSink {
  /** A whole request ADU, client → server: buf[start, end), valid only during the call. */
  request(stream: TcpStream, buf: Buffer, start: number, end: number, timeMs: number): void;
  /** A whole response ADU, server → client. */
  response(stream: TcpStream, buf: Buffer, start: number, end: number, timeMs: number): void;
  /** The stream is over (FIN, RST, replaced, evicted or the end of the capture): nothing more comes. */
  closed(stream: TcpStream): void;
}

/** What the table counted; for the summary of a run. */
export class StreamCounts {
  /** Segments with payload, SYN, FIN or RST between a client and a Modbus server port. */
  segments = 0;
  /** TCP segments with neither port a Modbus server port. */
  otherPorts = 0;
  streams = 0;
  /** Streams whose start (SYN) was not in the capture in at least one direction. */
  midStream = 0;
  /** Times a direction was (re)synchronised at a frame boundary after a start, hole or framing error. */
  resyncs = 0;
  /** Bytes passed over while looking for a frame boundary, and never synchronised at the end. */
  skippedBytes = 0;
  /** Holes: bytes the capture never had (loss, skipped IP fragments). */
  holes = 0;
  holeBytes = 0;
  retransmittedBytes = 0;
  outOfOrderSegments = 0;
  framingErrors = 0;
  /** Streams finished early because MAX_OPEN_STREAMS were open. */
  evicted = 0;
  requests = 0;
  responses = 0;
}

interface Held {
  seq: number;
  data: Buffer;
  timeMs: number;
}

/** Signed distance a − b in sequence space (RFC 9293 §3.4: modulo 2^32). */
function seqDiff(a: number, b: number): number {
  return (a - b) | 0;
}

/** One direction of a stream. */
class Direction {
  /** Sequence number of the next byte to deliver; meaningful once `known`. */
  next = 0;
  known = false;
  finSeq = 0;
  hasFin = false;
  done = false;
  held: Held[] = [];
  heldBytes = 0;
  /** Looking for a frame boundary: the bytes so far in sync[0, syncLength), segment starts in syncStarts. */
  syncing = false;
  sync: Buffer | null = null;
  syncLength = 0;
  syncStarts: number[] = [];
  splitter: FrameSplitter;
  /** Capture time of the segment being delivered: the time of the frames it completes. */
  timeMs = 0;

  constructor(
    readonly stream: TcpStream,
    readonly toServer: boolean,
    private readonly table: StreamTable,
  ) {
    this.splitter = this.newSplitter();
  }

  newSplitter(): FrameSplitter {
    return new FrameSplitter({
      frame: (buf, start, end) => {
        this.table.frame(this, buf, start, end);
        return true;
      },
    });
  }
}

/** One TCP connection between a client and a Modbus server. */
export class TcpStream {
  /** For the sink: whatever it keeps per stream (set it on the first frame). */
  context: unknown = undefined;
  readonly toServer: Direction;
  readonly toClient: Direction;
  /** The client's SYN, when seen: a SYN with another sequence number starts a new stream. */
  clientIsn = -1;
  /** Some start of this stream was not in the capture. */
  midStream = false;
  closed = false;
  /** Bucket key in the table. */
  readonly key: number;

  constructor(
    /** 1-based, in the order streams were first seen. */
    readonly id: number,
    readonly client: StreamAddress,
    readonly clientPort: number,
    readonly server: StreamAddress,
    readonly serverPort: number,
    table: StreamTable,
  ) {
    this.key = endpointsKey(client, clientPort, server, serverPort);
    this.toServer = new Direction(this, true, table);
    this.toClient = new Direction(this, false, table);
  }
}

function mix(h: number, v: number): number {
  return Math.imul(h ^ v, 0x9e3779b1) ^ (h >>> 15);
}

function endpointHash(family: number, w0: number, w1: number, w2: number, w3: number, port: number): number {
  return mix(mix(mix(mix(mix(port, w0), w1), w2), w3), family);
}

/**
 * A stream's bucket in the table: the same for both directions, so one lookup finds a stream
 * whichever way the segment goes. Exported for tests that need two streams in one bucket.
 */
export function endpointsKey(a: StreamAddress, ap: number, b: StreamAddress, bp: number): number {
  return (endpointHash(a.family, a.w0, a.w1, a.w2, a.w3, ap) ^ endpointHash(b.family, b.w0, b.w1, b.w2, b.w3, bp)) | 0;
}

function sameAddress(a: StreamAddress, w0: number, w1: number, w2: number, w3: number, family: number): boolean {
  return a.w3 === w3 && a.w2 === w2 && a.w1 === w1 && a.w0 === w0 && a.family === family;
}

/** How much the table may hold; the defaults are the exported MAX_* constants. */
export interface StreamLimits {
  /** Out-of-order bytes held per direction before the hole in front of them is skipped. */
  readonly pendingBytes: number;
  /** Out-of-order segments held per direction, likewise. */
  readonly pendingSegments: number;
  /** Out-of-order bytes held over all streams. */
  readonly pendingTotalBytes: number;
  /** Connections followed at once; past it the oldest is finished. */
  readonly openStreams: number;
}

export const DEFAULT_STREAM_LIMITS: StreamLimits = Object.freeze({
  pendingBytes: MAX_PENDING_BYTES,
  pendingSegments: MAX_PENDING_SEGMENTS,
  pendingTotalBytes: MAX_PENDING_TOTAL_BYTES,
  openStreams: MAX_OPEN_STREAMS,
});

export interface StreamTableOptions {
  /** Ports Modbus servers listen on; the endpoint on one of them is the server. */
  readonly serverPorts: ReadonlySet<number>;
  readonly limits?: Partial<StreamLimits>;
}

/** Every stream of a capture (or of several files of one capture, fed in order). */
export class StreamTable {
  readonly counts = new StreamCounts();
  private readonly buckets = new Map<number, TcpStream[]>();
  /** Open streams in the order they began (the eviction order). */
  private readonly open = new Set<TcpStream>();
  private last: TcpStream | null = null;
  private heldTotal = 0;
  private readonly scratchRequest = new ModbusRequest();
  private readonly limits: StreamLimits;

  constructor(
    private readonly options: StreamTableOptions,
    private readonly sink: ModbusStreamSink,
  ) {
    this.limits = { ...DEFAULT_STREAM_LIMITS, ...options.limits };
  }

  /** Takes one decoded TCP segment. */
  segment(s: TcpSegment): void {
    const flags = s.flags;
    const length = s.end - s.start;
    const ports = this.options.serverPorts;
    const toServerPort = ports.has(s.dstPort);
    if (!toServerPort && !ports.has(s.srcPort)) {
      this.counts.otherPorts++;
      return;
    }
    // A bare ACK moves nothing this reader follows.
    if (length === 0 && (flags & (TCP_SYN | TCP_FIN | TCP_RST)) === 0) return;
    this.counts.segments++;
    let stream = this.find(s);
    let toServer: boolean;
    if (stream !== null) {
      toServer = stream.clientPort === s.srcPort && sameAddress(stream.client, s.src0, s.src1, s.src2, s.src3, s.family);
      // A new connection on the same 4-tuple: the old one ended unseen.
      const syn = (flags & (TCP_SYN | TCP_ACK)) === TCP_SYN;
      if (syn && toServer && stream.clientIsn !== s.seq) {
        this.finish(stream);
        stream = null;
      }
    } else toServer = false;
    if (stream === null) {
      // Only a SYN, or data, starts a stream; a stray FIN or RST of a stream never seen is nothing.
      if (length === 0 && (flags & TCP_SYN) === 0) return;
      // The server is the endpoint on a server port; when both are, the one the SYN (or, without
      // one, the first segment seen) goes to.
      const synAck = (flags & (TCP_SYN | TCP_ACK)) === (TCP_SYN | TCP_ACK);
      toServer = ports.has(s.srcPort) && ports.has(s.dstPort) ? !synAck : toServerPort;
      stream = this.create(s, toServer);
    }
    this.last = stream;
    const d = toServer ? stream.toServer : stream.toClient;
    if ((flags & TCP_SYN) !== 0) {
      if (toServer) stream.clientIsn = s.seq;
      if (!d.known) {
        d.known = true;
        d.next = (s.seq + 1) >>> 0;
      }
    } else if (!d.known && (length > 0 || (flags & TCP_FIN) !== 0)) {
      // The first this direction shows is data (or its FIN): what came before it was not captured.
      d.known = true;
      d.next = s.seq;
      if (length > 0) {
        this.startSync(d);
        if (!stream.midStream) {
          stream.midStream = true;
          this.counts.midStream++;
        }
      }
    }
    if (length > 0) this.data(d, s.seq, s.buf, s.start, s.end, s.timeMs);
    if ((flags & TCP_FIN) !== 0 && !d.hasFin) {
      d.hasFin = true;
      d.finSeq = (s.seq + length) >>> 0;
    }
    this.checkFin(d);
    if ((flags & TCP_RST) !== 0 || (stream.toServer.done && stream.toClient.done)) this.finish(stream);
  }

  /** The capture is over: finishes every open stream. */
  end(): void {
    for (const s of [...this.open]) this.finish(s);
  }

  /** Open streams right now. */
  get openStreams(): number {
    return this.open.size;
  }

  private find(s: TcpSegment): TcpStream | null {
    const last = this.last;
    if (last !== null && !last.closed && this.matches(last, s)) return last;
    const list = this.buckets.get(this.keyOf(s));
    if (list === undefined) return null;
    for (const c of list) if (this.matches(c, s)) return c;
    return null;
  }

  private keyOf(s: TcpSegment): number {
    return (endpointHash(s.family, s.src0, s.src1, s.src2, s.src3, s.srcPort) ^ endpointHash(s.family, s.dst0, s.dst1, s.dst2, s.dst3, s.dstPort)) | 0;
  }

  private matches(c: TcpStream, s: TcpSegment): boolean {
    if (c.clientPort === s.srcPort && c.serverPort === s.dstPort) {
      if (sameAddress(c.client, s.src0, s.src1, s.src2, s.src3, s.family) && sameAddress(c.server, s.dst0, s.dst1, s.dst2, s.dst3, s.family)) return true;
    }
    if (c.clientPort === s.dstPort && c.serverPort === s.srcPort) {
      return sameAddress(c.client, s.dst0, s.dst1, s.dst2, s.dst3, s.family) && sameAddress(c.server, s.src0, s.src1, s.src2, s.src3, s.family);
    }
    return false;
  }

  private create(s: TcpSegment, toServer: boolean): TcpStream {
    if (this.open.size >= this.limits.openStreams) {
      this.counts.evicted++;
      this.finish(this.open.values().next().value!);
    }
    const src: StreamAddress = { family: s.family, w0: s.src0, w1: s.src1, w2: s.src2, w3: s.src3 };
    const dst: StreamAddress = { family: s.family, w0: s.dst0, w1: s.dst1, w2: s.dst2, w3: s.dst3 };
    const stream = toServer
      ? new TcpStream(++this.counts.streams, src, s.srcPort, dst, s.dstPort, this)
      : new TcpStream(++this.counts.streams, dst, s.dstPort, src, s.srcPort, this);
    const list = this.buckets.get(stream.key);
    if (list === undefined) this.buckets.set(stream.key, [stream]);
    else list.push(stream);
    this.open.add(stream);
    return stream;
  }

  /** Delivers what is held, skipping holes, then tells the sink the stream is over. */
  private finish(stream: TcpStream): void {
    for (const d of [stream.toServer, stream.toClient]) {
      while (d.held.length > 0) this.skipHole(d);
      if (d.syncing) {
        this.counts.skippedBytes += d.syncLength;
        d.syncLength = 0;
        d.syncing = false;
      }
    }
    stream.closed = true;
    this.open.delete(stream);
    const list = this.buckets.get(stream.key)!;
    list.splice(list.indexOf(stream), 1);
    if (list.length === 0) this.buckets.delete(stream.key);
    if (this.last === stream) this.last = null;
    this.sink.closed(stream);
  }

  private checkFin(d: Direction): void {
    if (d.hasFin && !d.done && d.next === d.finSeq && d.held.length === 0) {
      d.done = true;
      d.next = (d.next + 1) >>> 0;
    }
  }

  /** A segment's payload buf[start, end) starting at sequence number seq. */
  private data(d: Direction, seq: number, buf: Buffer, start: number, end: number, timeMs: number): void {
    const rel = seqDiff(seq, d.next);
    const length = end - start;
    if (rel > 0) {
      this.hold(d, seq, buf.subarray(start, end), timeMs);
      return;
    }
    if (rel + length <= 0) {
      this.counts.retransmittedBytes += length;
      return;
    }
    if (rel < 0) this.counts.retransmittedBytes -= rel;
    this.deliver(d, buf, start - rel, end, timeMs);
    this.drain(d);
  }

  private hold(d: Direction, seq: number, bytes: Buffer, timeMs: number): void {
    this.counts.outOfOrderSegments++;
    const held: Held = { seq, data: Buffer.from(bytes), timeMs };
    // Sorted by distance from `next`; equal starts keep the first copy in front.
    const at = seqDiff(seq, d.next);
    let i = d.held.length;
    while (i > 0 && seqDiff(d.held[i - 1]!.seq, d.next) > at) i--;
    d.held.splice(i, 0, held);
    d.heldBytes += bytes.length;
    this.heldTotal += bytes.length;
    const l = this.limits;
    while (d.held.length > 0 && (d.heldBytes > l.pendingBytes || d.held.length > l.pendingSegments || this.heldTotal > l.pendingTotalBytes)) {
      this.skipHole(d);
    }
  }

  /** Gives up on the hole in front of the first held segment and delivers from there. */
  private skipHole(d: Direction): void {
    const first = d.held[0]!;
    const gap = seqDiff(first.seq, d.next);
    if (gap > 0) {
      this.counts.holes++;
      this.counts.holeBytes += gap;
      d.next = first.seq;
      this.lostSync(d);
    }
    this.drain(d);
  }

  /** Delivers held segments that are now in order (or old). */
  private drain(d: Direction): void {
    while (d.held.length > 0) {
      const h = d.held[0]!;
      const rel = seqDiff(h.seq, d.next);
      if (rel > 0) break;
      d.held.shift();
      d.heldBytes -= h.data.length;
      this.heldTotal -= h.data.length;
      if (rel + h.data.length <= 0) {
        this.counts.retransmittedBytes += h.data.length;
        continue;
      }
      this.counts.retransmittedBytes -= rel;
      this.deliver(d, h.data, -rel, h.data.length, h.timeMs);
    }
    this.checkFin(d);
  }

  /** In-order bytes buf[start, end). */
  private deliver(d: Direction, buf: Buffer, start: number, end: number, timeMs: number): void {
    d.next = (d.next + (end - start)) >>> 0;
    d.timeMs = timeMs;
    if (d.syncing) {
      this.syncOn(d, buf, start, end);
      return;
    }
    if (d.splitter.push(buf.subarray(start, end)) !== null) {
      this.counts.framingErrors++;
      this.lostSync(d);
    }
  }

  private startSync(d: Direction): void {
    d.syncing = true;
    d.syncLength = 0;
    d.syncStarts.length = 0;
  }

  /** A hole or a framing error: what the splitter held is lost; look for a boundary again. */
  private lostSync(d: Direction): void {
    if (d.syncing) {
      // Bytes gathered before the hole don't continue into what follows it.
      this.counts.skippedBytes += d.syncLength;
    } else {
      d.splitter = d.newSplitter();
    }
    this.startSync(d);
  }

  private syncOn(d: Direction, buf: Buffer, start: number, end: number): void {
    const add = end - start;
    const need = d.syncLength + add;
    if (d.sync === null || d.sync.length < need) {
      const bigger = Buffer.allocUnsafe(Math.max(need, 2 * (d.sync?.length ?? 256)));
      if (d.sync !== null) d.sync.copy(bigger, 0, 0, d.syncLength);
      d.sync = bigger;
    }
    d.syncStarts.push(d.syncLength);
    buf.copy(d.sync, d.syncLength, start, end);
    d.syncLength = need;
    const sync = d.sync;
    const n = d.syncLength;
    for (let k = 0; k < n; k++) {
      let verdict = this.chainAt(sync, k, n, d.toServer);
      if (verdict === 'exact') verdict = d.syncStarts.includes(k) ? 'accept' : 'wait';
      if (verdict === 'reject') continue;
      if (verdict === 'wait') {
        // Everything before k is definitely not a boundary: drop it and wait for more bytes.
        if (k > 0) {
          this.counts.skippedBytes += k;
          sync.copy(sync, 0, k, n);
          d.syncLength = n - k;
          d.syncStarts = d.syncStarts.filter((s) => s >= k).map((s) => s - k);
        }
        return;
      }
      this.counts.skippedBytes += k;
      this.counts.resyncs++;
      d.syncing = false;
      d.syncLength = 0;
      d.syncStarts.length = 0;
      // Freed: most streams never need it again (the splitter keeps no view of it).
      d.sync = null;
      if (d.splitter.push(sync.subarray(k, n)) !== null) {
        this.counts.framingErrors++;
        this.lostSync(d);
      }
      return;
    }
    this.counts.skippedBytes += n;
    d.syncLength = 0;
    d.syncStarts.length = 0;
  }

  /**
   * Whether MBAP headers chain from offset k of b[0, n): 'accept' (a whole frame and the next
   * header), 'exact' (whole frames ending at n), 'reject' (a header or request that can't be), or
   * 'wait' (plausible so far, too little data to tell).
   */
  private chainAt(b: Buffer, k: number, n: number, toServer: boolean): 'accept' | 'exact' | 'reject' | 'wait' {
    let i = k;
    let frames = 0;
    while (n - i >= MBAP_AND_FC_LENGTH) {
      // The protocol id first: most offsets fail it, and cheaply (a FramingError is an Error).
      if (b[i + 2] !== 0 || b[i + 3] !== 0 || checkMbapPrefix(b, i) !== null) return 'reject';
      const fc = b[i + MBAP_HEADER_LENGTH]!;
      if (toServer ? fc === 0 || fc > MAX_REQUEST_FUNCTION_CODE : (fc & ~EXCEPTION_BIT) === 0) return 'reject';
      if (frames > 0) return 'accept';
      const len = aduLength(b, i);
      if (n - i < len) return 'wait';
      if (toServer) {
        const v = decodeRequest(b, i, i + len, this.scratchRequest).violation;
        if (v === 'pdu_length' || v === 'byte_count') return 'reject';
      }
      frames++;
      i += len;
    }
    return frames > 0 && i === n ? 'exact' : 'wait';
  }

  /** From a direction's splitter. */
  frame(d: Direction, buf: Buffer, start: number, end: number): void {
    if (d.toServer) {
      this.counts.requests++;
      this.sink.request(d.stream, buf, start, end, d.timeMs);
    } else {
      this.counts.responses++;
      this.sink.response(d.stream, buf, start, end, d.timeMs);
    }
  }
}
