// Capture files as tcpdump, dumpcap, tshark and Wireshark write them, read incrementally from
// chunks of any size: the classic pcap format and pcapng.
//
// Contract (as FrameSplitter's): pure, no I/O, never throws on any input. Whole records inside a
// chunk are handed out as views of it (no copy); a record that spans chunks is assembled in the
// reader's own buffer, which is reused: a packet is valid only during the `packet` call. A format
// error (not a capture file, an impossible length) is final and kept in `error`; everything after
// it is ignored. A file that ends inside a record (cut short while being written, a common state
// for a capture copied off a running sensor) is not an error: `end()` says how many bytes were left.
//
// Sources: pcap (draft-ietf-opsawg-pcap-04, the tcpdump.org file format); pcapng
// (draft-ietf-opsawg-pcapng-01 §4: blocks; §4.2 IDB options if_tsresol and if_tsoffset).
//
// pcap file header (24 bytes, in the writer's byte order, which the magic tells):
// | off | bytes | field         | rule                                                        |
// |   0 |     4 | magic         | A1B2C3D4 µs timestamps, A1B23C4D ns; swapped: other order   |
// |   4 |     2 | major version | 2                                                           |
// |   6 |     2 | minor version | 4 (older files say 2 or 3; the layout is the same)          |
// |   8 |     4 | thiszone      | 0 in practice; ignored                                      |
// |  12 |     4 | sigfigs       | ignored                                                     |
// |  16 |     4 | snaplen       | ignored (each record says its own length)                   |
// |  20 |     4 | link type     | low 16 bits (the rest carry FCS information)                |
// pcap record header (16 bytes), then `captured length` bytes of packet:
// | off | bytes | field           | rule                                                      |
// |   0 |     4 | seconds         | unsigned, since 1970                                      |
// |   4 |     4 | µs or ns        | per the magic                                             |
// |   8 |     4 | captured length | ≤ MAX_CAPTURED_LENGTH, else the file is corrupt           |
// |  12 |     4 | original length | the length on the wire                                    |
//
// pcapng block: type(4) total length(4) body total length(4); the length counts all of it and is a
// multiple of 4. A file is one or more sections, each starting with a Section Header Block whose
// byte-order magic sets the byte order of the section and resets its interfaces.
// | block                      | type | body read here                                           |
// | Section Header             | 0A0D0D0A | byte-order magic 1A2B3C4D (4), version 1.x (2+2), ... |
// | Interface Description      | 1    | link type(2) reserved(2) snaplen(4) options: if_tsresol (9), if_tsoffset (14) |
// | Enhanced Packet            | 6    | interface(4) ts high(4) ts low(4) captured(4) original(4) data |
// | Simple Packet              | 3    | original(4) data (interface 0, no timestamp)              |
// | Packet (obsolete)          | 2    | interface(2) drops(2) ts high(4) ts low(4) captured(4) original(4) data |
// | anything else              |      | skipped                                                   |

import { PlcguardError } from '../errors.js';

export const PCAP_MAGIC_MICROSECONDS = 0xa1b2c3d4;
export const PCAP_MAGIC_NANOSECONDS = 0xa1b23c4d;
/** Alexey Kuznetzov's "modified" pcap: 24-byte record headers; editcap converts it. */
const PCAP_MAGIC_MODIFIED = 0xa1b2cd34;
const PCAP_HEADER_LENGTH = 24;
const PCAP_RECORD_HEADER_LENGTH = 16;
const PCAP_MAJOR_VERSION = 2;
/** The link type lives in the low 16 bits of the header's field. */
const LINK_TYPE_MASK = 0xffff;

export const PCAPNG_SECTION_HEADER = 0x0a0d0d0a;
const PCAPNG_BYTE_ORDER_MAGIC = 0x1a2b3c4d;
const PCAPNG_MAJOR_VERSION = 1;
const PCAPNG_INTERFACE_DESCRIPTION = 1;
const PCAPNG_PACKET = 2;
const PCAPNG_SIMPLE_PACKET = 3;
const PCAPNG_ENHANCED_PACKET = 6;
/** Block type and total length. */
const BLOCK_HEADER_LENGTH = 8;
/** Type, length, byte-order magic: enough of a Section Header Block to know its byte order. */
const SECTION_HEADER_PREFIX = 12;
/** The smallest block: type, length, trailing length. */
const MIN_BLOCK_LENGTH = 12;
/** Enhanced and obsolete Packet Blocks: header and the five fixed fields before the data. */
const PACKET_BLOCK_PREFIX = 28;
/** Simple Packet Block: header and the original length. */
const SIMPLE_PACKET_PREFIX = 12;
/** Interface Description Block: header, link type, reserved, snaplen. */
const INTERFACE_PREFIX = 16;
/** Options are (code, length) pairs of 16 bits, values padded to 32 bits. */
const OPTION_HEADER_LENGTH = 4;
const OPT_END_OF_OPT = 0;
const IF_TSRESOL = 9;
const IF_TSOFFSET = 14;
/** if_tsresol: the high bit picks a power of 2 instead of 10. */
const TSRESOL_POWER_OF_TWO = 0x80;
/** Without if_tsresol, timestamps count microseconds. */
const DEFAULT_UNITS_PER_SECOND = 1e6;

/** libpcap's MAXIMUM_SNAPLEN: no capture tool writes a longer packet; a longer record is corruption. */
export const MAX_CAPTURED_LENGTH = 262_144;
/** Interface Description Blocks are read whole; their options (names, descriptions) are short. */
const MAX_INTERFACE_BLOCK_LENGTH = 1 << 20;
const TWO_POW_32 = 0x1_0000_0000;
const MS_PER_SECOND = 1000;

export type CaptureFormat = 'pcap' | 'pcapng';

export type CaptureErrorCode =
  | 'ERR_CAPTURE_FORMAT' // not a pcap or pcapng file, or a version this reader doesn't know
  | 'ERR_CAPTURE_CORRUPT'; // a length or reference no writer produces

/** Why the rest of a capture can't be read. Returned, never thrown. */
export class CaptureError extends PlcguardError {
  override readonly name = 'CaptureError';
  constructor(
    override readonly code: CaptureErrorCode,
    /** Byte offset in the file where the problem is. */
    readonly offset: number,
    message: string,
  ) {
    super(code, message);
  }
}

/**
 * One captured packet, refilled for every packet (nothing is allocated per packet): the link-layer
 * frame is buf[start, end).
 */
export class CapturedPacket {
  buf: Buffer = Buffer.alloc(0);
  start = 0;
  end = 0;
  /** The packet's length on the wire; more than end − start when the capture cut it (snaplen). */
  wireLength = 0;
  /** LINKTYPE_* number (tcpdump.org link-layer header types). */
  linkType = 0;
  /** When it was captured: milliseconds since 1970-01-01T00:00:00Z, with a fraction. */
  timeMs = 0;
  /** 0-based index in the file. */
  index = 0;
}

export interface PacketSink {
  packet(p: CapturedPacket): void;
}

interface Interface {
  linkType: number;
  snaplen: number;
  /** Milliseconds per timestamp unit, and per 2^32 units (the high word). */
  msPerUnit: number;
  msPerHighUnit: number;
  offsetMs: number;
}

type State = 'magic' | 'pcap-header' | 'pcap-record' | 'block';

/**
 * Reads one capture file from chunks: `push` each chunk in order, then `end()`. Packets go to the
 * sink as they complete.
 */
export class CaptureReader {
  private state: State = 'magic';
  private fileFormat: CaptureFormat | null = null;
  private littleEndian = true;
  /** pcap: timestamp fraction → ms. */
  private fractionMs = 0;
  private pcapLinkType = 0;
  private interfaces: Interface[] = [];
  /** Bytes still to pass over (the unread rest of a block). */
  private skip = 0;
  /** A unit (header, record, block) being assembled across chunks: scratch[0, have). */
  private scratch = Buffer.allocUnsafe(PACKET_BLOCK_PREFIX);
  private have = 0;
  /** Bytes the current unit needs before it can be read. */
  private need = 4;
  /** Bytes consumed from the file so far. */
  private offset = 0;
  private failure: CaptureError | null = null;
  private readonly out = new CapturedPacket();
  private count = 0;
  private lastTimeMs = 0;

  constructor(private readonly sink: PacketSink) {}

  get format(): CaptureFormat | null {
    return this.fileFormat;
  }

  get error(): CaptureError | null {
    return this.failure;
  }

  /** Packets handed out so far. */
  get packets(): number {
    return this.count;
  }

  /** Feeds the next chunk of the file. Returns the error that ended the file, if any. */
  push(chunk: Buffer): CaptureError | null {
    let i = 0;
    const n = chunk.length;
    while (i < n && this.failure === null) {
      if (this.skip > 0) {
        const k = Math.min(this.skip, n - i);
        this.skip -= k;
        this.offset += k;
        i += k;
        continue;
      }
      if (this.have > 0) {
        const k = Math.min(this.need - this.have, n - i);
        this.reserve(this.need);
        chunk.copy(this.scratch, this.have, i, i + k);
        this.have += k;
        i += k;
        if (this.have < this.need) break;
        // A unit may need more once its header is read (a record's body): keep assembling.
        const used = this.step(this.scratch, 0, this.have);
        if (used > 0) {
          this.offset += used;
          this.have = 0;
        }
        continue;
      }
      const used = this.step(chunk, i, n - i);
      if (used === 0) {
        // Not enough here: start assembling the unit in scratch.
        const k = n - i;
        this.reserve(this.need);
        chunk.copy(this.scratch, 0, i, n);
        this.have = k;
        i = n;
      } else {
        this.offset += used;
        i += used;
      }
    }
    return this.failure;
  }

  /**
   * The file is over. Returns how many bytes of an unfinished record or block were left (0 when the
   * file ended cleanly); a file with no header at all is a format error.
   */
  end(): number {
    if (this.failure !== null) return 0;
    if (this.state === 'magic' || this.state === 'pcap-header') {
      this.fail('ERR_CAPTURE_FORMAT', `the file ends after ${this.offset + this.have} bytes, before its header is complete: not a pcap or pcapng file`);
      return 0;
    }
    return this.have + this.skip;
  }

  private reserve(size: number): void {
    if (this.scratch.length < size) {
      const bigger = Buffer.allocUnsafe(Math.max(size, 2 * this.scratch.length));
      this.scratch.copy(bigger, 0, 0, this.have);
      this.scratch = bigger;
    }
  }

  private fail(code: CaptureErrorCode, message: string): void {
    this.failure = new CaptureError(code, this.offset, message);
  }

  private u16(b: Buffer, o: number): number {
    return this.littleEndian ? b.readUInt16LE(o) : b.readUInt16BE(o);
  }

  private u32(b: Buffer, o: number): number {
    return this.littleEndian ? b.readUInt32LE(o) : b.readUInt32BE(o);
  }

  /**
   * Reads one unit at buf[o, o + avail): returns the bytes it used, or 0 when it needs `this.need`
   * bytes (more than avail). Sets `failure` on a format error (and returns 0).
   */
  private step(b: Buffer, o: number, avail: number): number {
    switch (this.state) {
      case 'magic':
        return this.magic(b, o, avail);
      case 'pcap-header':
        return this.pcapHeader(b, o, avail);
      case 'pcap-record':
        return this.pcapRecord(b, o, avail);
      case 'block':
        return this.block(b, o, avail);
    }
  }

  private wait(need: number): number {
    this.need = need;
    return 0;
  }

  private magic(b: Buffer, o: number, avail: number): number {
    if (avail < 4) return this.wait(4);
    const le = b.readUInt32LE(o);
    const be = b.readUInt32BE(o);
    if (le === PCAPNG_SECTION_HEADER) {
      this.fileFormat = 'pcapng';
      this.state = 'block';
      return this.block(b, o, avail);
    }
    const magic = [PCAP_MAGIC_MICROSECONDS, PCAP_MAGIC_NANOSECONDS].find((m) => m === le || m === be);
    if (magic === undefined) {
      const hex = b.toString('hex', o, o + 4);
      const modified = le === PCAP_MAGIC_MODIFIED || be === PCAP_MAGIC_MODIFIED;
      this.fail(
        'ERR_CAPTURE_FORMAT',
        modified
          ? 'a "modified" (Kuznetzov) pcap file, which this reader does not take: convert it with `editcap -F pcap IN OUT`'
          : `not a pcap or pcapng file: it starts with 0x${hex} (pcap starts with a1b2c3d4 or a1b23c4d in either byte order, pcapng with 0a0d0d0a)`,
      );
      return 0;
    }
    this.fileFormat = 'pcap';
    this.littleEndian = magic === le;
    this.fractionMs = magic === PCAP_MAGIC_MICROSECONDS ? 1e-3 : 1e-6;
    this.state = 'pcap-header';
    return this.pcapHeader(b, o, avail);
  }

  private pcapHeader(b: Buffer, o: number, avail: number): number {
    if (avail < PCAP_HEADER_LENGTH) return this.wait(PCAP_HEADER_LENGTH);
    const major = this.u16(b, o + 4);
    if (major !== PCAP_MAJOR_VERSION) {
      this.fail('ERR_CAPTURE_FORMAT', `pcap version ${major}.${this.u16(b, o + 6)}; this reader knows version ${PCAP_MAJOR_VERSION}.x`);
      return 0;
    }
    this.pcapLinkType = this.u32(b, o + 20) & LINK_TYPE_MASK;
    this.state = 'pcap-record';
    this.need = PCAP_RECORD_HEADER_LENGTH;
    return PCAP_HEADER_LENGTH;
  }

  private pcapRecord(b: Buffer, o: number, avail: number): number {
    if (avail < PCAP_RECORD_HEADER_LENGTH) return this.wait(PCAP_RECORD_HEADER_LENGTH);
    const captured = this.u32(b, o + 8);
    if (captured > MAX_CAPTURED_LENGTH) {
      this.fail('ERR_CAPTURE_CORRUPT', `packet record ${this.count} says it holds ${captured} bytes (at most ${MAX_CAPTURED_LENGTH}): the file is corrupt`);
      return 0;
    }
    const total = PCAP_RECORD_HEADER_LENGTH + captured;
    if (avail < total) return this.wait(total);
    const p = this.out;
    p.buf = b;
    p.start = o + PCAP_RECORD_HEADER_LENGTH;
    p.end = o + total;
    p.wireLength = this.u32(b, o + 12);
    p.linkType = this.pcapLinkType;
    p.timeMs = this.u32(b, o) * MS_PER_SECOND + this.u32(b, o + 4) * this.fractionMs;
    this.emit();
    this.need = PCAP_RECORD_HEADER_LENGTH;
    return total;
  }

  private emit(): void {
    this.lastTimeMs = this.out.timeMs;
    this.out.index = this.count++;
    this.sink.packet(this.out);
  }

  private block(b: Buffer, o: number, avail: number): number {
    if (avail < BLOCK_HEADER_LENGTH) return this.wait(BLOCK_HEADER_LENGTH);
    const type = this.u32(b, o);
    if (type === PCAPNG_SECTION_HEADER) return this.sectionHeader(b, o, avail);
    const length = this.u32(b, o + 4);
    if (length < MIN_BLOCK_LENGTH || length % 4 !== 0) {
      this.fail('ERR_CAPTURE_CORRUPT', `pcapng block of type ${type} has length ${length} (a multiple of 4, at least ${MIN_BLOCK_LENGTH}): the file is corrupt`);
      return 0;
    }
    switch (type) {
      case PCAPNG_INTERFACE_DESCRIPTION:
        return this.interfaceBlock(b, o, avail, length);
      case PCAPNG_ENHANCED_PACKET:
      case PCAPNG_PACKET:
        return this.packetBlock(b, o, avail, length, type === PCAPNG_ENHANCED_PACKET);
      case PCAPNG_SIMPLE_PACKET:
        return this.simplePacketBlock(b, o, avail, length);
      default:
        return this.pass(BLOCK_HEADER_LENGTH, length);
    }
  }

  /** Uses `used` bytes of a block of `length` and passes over the rest. */
  private pass(used: number, length: number): number {
    this.skip = length - used;
    this.need = BLOCK_HEADER_LENGTH;
    return used;
  }

  private sectionHeader(b: Buffer, o: number, avail: number): number {
    if (avail < SECTION_HEADER_PREFIX) return this.wait(SECTION_HEADER_PREFIX);
    const bom = b.readUInt32LE(o + 8);
    if (bom !== PCAPNG_BYTE_ORDER_MAGIC && b.readUInt32BE(o + 8) !== PCAPNG_BYTE_ORDER_MAGIC) {
      this.fail('ERR_CAPTURE_FORMAT', `pcapng section header without its byte-order magic 1a2b3c4d (found 0x${b.toString('hex', o + 8, o + 12)}): not a pcapng file`);
      return 0;
    }
    this.littleEndian = bom === PCAPNG_BYTE_ORDER_MAGIC;
    const length = this.u32(b, o + 4);
    // Version and section length follow the magic; the block is at least 28 bytes.
    const minLength = SECTION_HEADER_PREFIX + 16;
    if (length < minLength || length % 4 !== 0) {
      this.fail('ERR_CAPTURE_CORRUPT', `pcapng section header has length ${length} (a multiple of 4, at least ${minLength}): the file is corrupt`);
      return 0;
    }
    if (avail < SECTION_HEADER_PREFIX + 2) return this.wait(SECTION_HEADER_PREFIX + 2);
    const major = this.u16(b, o + SECTION_HEADER_PREFIX);
    if (major !== PCAPNG_MAJOR_VERSION) {
      this.fail('ERR_CAPTURE_FORMAT', `pcapng version ${major}; this reader knows version ${PCAPNG_MAJOR_VERSION}.x`);
      return 0;
    }
    this.interfaces = [];
    return this.pass(SECTION_HEADER_PREFIX + 2, length);
  }

  private interfaceBlock(b: Buffer, o: number, avail: number, length: number): number {
    if (length < INTERFACE_PREFIX + 4 || length > MAX_INTERFACE_BLOCK_LENGTH) {
      this.fail('ERR_CAPTURE_CORRUPT', `pcapng interface description has length ${length} (${INTERFACE_PREFIX + 4}..${MAX_INTERFACE_BLOCK_LENGTH}): the file is corrupt`);
      return 0;
    }
    if (avail < length) return this.wait(length);
    let unitsPerSecond = DEFAULT_UNITS_PER_SECOND;
    let offsetSeconds = 0;
    // Options run to opt_endofopt or the trailing length; a malformed one ends them.
    const end = o + length - 4;
    for (let p = o + INTERFACE_PREFIX; p + OPTION_HEADER_LENGTH <= end; ) {
      const code = this.u16(b, p);
      const len = this.u16(b, p + 2);
      const v = p + OPTION_HEADER_LENGTH;
      if (code === OPT_END_OF_OPT || v + len > end) break;
      if (code === IF_TSRESOL && len >= 1) {
        const r = b[v]!;
        unitsPerSecond = r & TSRESOL_POWER_OF_TWO ? 2 ** (r & ~TSRESOL_POWER_OF_TWO) : 10 ** r;
      } else if (code === IF_TSOFFSET && len >= 8) {
        // A signed 64-bit count of seconds, in the section's byte order.
        const hi = this.littleEndian ? b.readInt32LE(v + 4) : b.readInt32BE(v);
        const lo = this.littleEndian ? b.readUInt32LE(v) : b.readUInt32BE(v + 4);
        offsetSeconds = hi * TWO_POW_32 + lo;
      }
      p = v + ((len + 3) & ~3);
    }
    this.interfaces.push({
      linkType: this.u16(b, o + 8),
      snaplen: this.u32(b, o + 12),
      msPerUnit: MS_PER_SECOND / unitsPerSecond,
      msPerHighUnit: (TWO_POW_32 * MS_PER_SECOND) / unitsPerSecond,
      offsetMs: offsetSeconds * MS_PER_SECOND,
    });
    this.need = BLOCK_HEADER_LENGTH;
    return length;
  }

  private iface(id: number, type: string): Interface | null {
    const f = this.interfaces[id];
    if (f === undefined) {
      this.fail('ERR_CAPTURE_CORRUPT', `pcapng ${type} block ${this.count} refers to interface ${id}, but the section describes ${this.interfaces.length}: the file is corrupt`);
      return null;
    }
    return f;
  }

  private packetBlock(b: Buffer, o: number, avail: number, length: number, enhanced: boolean): number {
    if (length < PACKET_BLOCK_PREFIX + 4) {
      this.fail('ERR_CAPTURE_CORRUPT', `pcapng packet block has length ${length} (at least ${PACKET_BLOCK_PREFIX + 4}): the file is corrupt`);
      return 0;
    }
    if (avail < PACKET_BLOCK_PREFIX) return this.wait(PACKET_BLOCK_PREFIX);
    const captured = this.u32(b, o + 20);
    if (captured > MAX_CAPTURED_LENGTH || PACKET_BLOCK_PREFIX + captured + 4 > length) {
      this.fail('ERR_CAPTURE_CORRUPT', `pcapng packet block ${this.count} says it holds ${captured} bytes in a block of ${length}: the file is corrupt`);
      return 0;
    }
    const used = PACKET_BLOCK_PREFIX + captured;
    if (avail < used) return this.wait(used);
    // The obsolete Packet Block has a 16-bit interface id and a drops count where EPB has 32 bits.
    const f = this.iface(enhanced ? this.u32(b, o + 8) : this.u16(b, o + 8), enhanced ? 'enhanced packet' : 'packet');
    if (f === null) return 0;
    const p = this.out;
    p.buf = b;
    p.start = o + PACKET_BLOCK_PREFIX;
    p.end = o + used;
    p.wireLength = this.u32(b, o + 24);
    p.linkType = f.linkType;
    p.timeMs = this.u32(b, o + 12) * f.msPerHighUnit + this.u32(b, o + 16) * f.msPerUnit + f.offsetMs;
    this.emit();
    return this.pass(used, length);
  }

  private simplePacketBlock(b: Buffer, o: number, avail: number, length: number): number {
    if (length < SIMPLE_PACKET_PREFIX + 4) {
      this.fail('ERR_CAPTURE_CORRUPT', `pcapng simple packet block has length ${length} (at least ${SIMPLE_PACKET_PREFIX + 4}): the file is corrupt`);
      return 0;
    }
    if (avail < SIMPLE_PACKET_PREFIX) return this.wait(SIMPLE_PACKET_PREFIX);
    const f = this.iface(0, 'simple packet');
    if (f === null) return 0;
    const wire = this.u32(b, o + 8);
    // No captured length: the data is the original length cut to the snaplen (0: no limit) and
    // to what the block holds.
    const room = length - SIMPLE_PACKET_PREFIX - 4;
    const captured = Math.min(wire, f.snaplen === 0 ? wire : f.snaplen, room);
    const used = SIMPLE_PACKET_PREFIX + captured;
    if (avail < used) return this.wait(used);
    const p = this.out;
    p.buf = b;
    p.start = o + SIMPLE_PACKET_PREFIX;
    p.end = o + used;
    p.wireLength = wire;
    p.linkType = f.linkType;
    // No timestamp in this block: the previous packet's time is the best there is.
    p.timeMs = this.lastTimeMs;
    this.emit();
    return this.pass(used, length);
  }
}
