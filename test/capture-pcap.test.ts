// Capture files → packets → TCP segments (modbus/capture/pcap.ts, packet.ts): the real captures in
// test/fixtures/captures (README.md there says how each was made, and tshark's counts for them),
// read whole and in chunks of every awkward size, and hand-annotated bytes for what no tool wrote.
import t from 'tap';
import {
  CaptureReader,
  decodePacket,
  LINKTYPE_ETHERNET,
  LINKTYPE_IPV4,
  LINKTYPE_IPV6,
  LINKTYPE_LINUX_SLL,
  LINKTYPE_LINUX_SLL2,
  LINKTYPE_LOOP,
  LINKTYPE_NULL,
  LINKTYPE_RAW,
  MAX_CAPTURED_LENGTH,
  TcpSegment,
} from '../modbus/capture/index.js';
import { captureBytes, chunks, framesOf, readPackets } from './fixtures/capture.js';
import { Random } from './fixtures/random.js';

/** basic.pcapng's five requests and five responses (modbus-serial's transactions 1-5), as tshark decodes them. */
const BASIC_REQUESTS = [
  '00010000000601030000000a', // FC3 read holding 0, quantity 10
  '00020000000601040000000a', // FC4 read input 0, quantity 10
  '0003000000060106000a028a', // FC6 write holding 10 = 650
  '00040000000d0110000d000306003c00140064', // FC16 write holding 13-15 = 60, 20, 100
  '000500000006010100000008', // FC1 read coils 0, quantity 8
];
const BASIC_RESPONSES = [
  '0001000000170103140003000205071073259e00000000010200000000',
  '000200000017010414026401d4fff605c8020800a10053003c003000cc',
  '0003000000060106000a028a',
  '0004000000060110000d0003',
  '00050000000401010153', // coils 0, 1, 4, 6 on
];
/** The IPv6 session ran against a fresh PLC, whose coil 4 nobody had switched on. */
const IPV6_RESPONSES = [...BASIC_RESPONSES.slice(0, 4), '00050000000401010143'];

// Per file: format, packets and link type (capinfos), first and last timestamps in µs
// (tshark -T fields -e frame.time_epoch), TCP packets (tshark -Y tcp), and what is not TCP.
const FILES: { file: string; format: string; packets: number; linkType: number; firstUs: number; lastUs: number; notTcp: number; v6?: true }[] = [
  { file: 'basic.pcapng', format: 'pcapng', packets: 20, linkType: LINKTYPE_ETHERNET, firstUs: 1796065836774481, lastUs: 1796065837156419, notTcp: 2 },
  { file: 'basic-us.pcapng', format: 'pcapng', packets: 20, linkType: LINKTYPE_ETHERNET, firstUs: 1796065836774480, lastUs: 1796065837156418, notTcp: 2 },
  { file: 'basic-be.pcapng', format: 'pcapng', packets: 20, linkType: LINKTYPE_ETHERNET, firstUs: 1796065836774481, lastUs: 1796065837156419, notTcp: 2 },
  { file: 'basic.pcap', format: 'pcap', packets: 20, linkType: LINKTYPE_ETHERNET, firstUs: 1796065836774480, lastUs: 1796065837156418, notTcp: 2 },
  { file: 'basic-ns.pcap', format: 'pcap', packets: 20, linkType: LINKTYPE_ETHERNET, firstUs: 1796065836774481, lastUs: 1796065837156419, notTcp: 2 },
  { file: 'basic-be.pcap', format: 'pcap', packets: 20, linkType: LINKTYPE_ETHERNET, firstUs: 1796065836774480, lastUs: 1796065837156418, notTcp: 2 },
  { file: 'vlan.pcap', format: 'pcap', packets: 20, linkType: LINKTYPE_ETHERNET, firstUs: 1796065836774480, lastUs: 1796065837156418, notTcp: 2 },
  { file: 'qinq.pcap', format: 'pcap', packets: 20, linkType: LINKTYPE_ETHERNET, firstUs: 1796065836774480, lastUs: 1796065837156418, notTcp: 2 },
  { file: 'rawip.pcap', format: 'pcap', packets: 20, linkType: LINKTYPE_RAW, firstUs: 1796065836774480, lastUs: 1796065837156418, notTcp: 2 },
  { file: 'rawip4.pcap', format: 'pcap', packets: 20, linkType: LINKTYPE_IPV4, firstUs: 1796065836774480, lastUs: 1796065837156418, notTcp: 2 },
  { file: 'null.pcap', format: 'pcap', packets: 20, linkType: LINKTYPE_NULL, firstUs: 1796065836774480, lastUs: 1796065837156418, notTcp: 2 },
  { file: 'loop.pcap', format: 'pcap', packets: 20, linkType: LINKTYPE_LOOP, firstUs: 1796065836774480, lastUs: 1796065837156418, notTcp: 2 },
  { file: 'cooked.pcap', format: 'pcap', packets: 25, linkType: LINKTYPE_LINUX_SLL, firstUs: 1796065842984624, lastUs: 1796065845359613, notTcp: 7 },
  { file: 'cooked2.pcapng', format: 'pcapng', packets: 22, linkType: LINKTYPE_LINUX_SLL2, firstUs: 1796065844836127, lastUs: 1796065845658929, notTcp: 4 },
  { file: 'ipv6.pcapng', format: 'pcapng', packets: 21, linkType: LINKTYPE_ETHERNET, firstUs: 1796065847752428, lastUs: 1796065848355484, notTcp: 3, v6: true },
  { file: 'rawip6.pcap', format: 'pcap', packets: 18, linkType: LINKTYPE_IPV6, firstUs: 1796065848331364, lastUs: 1796065848355116, notTcp: 0, v6: true },
  { file: 'null6.pcap', format: 'pcap', packets: 18, linkType: LINKTYPE_NULL, firstUs: 1796065848331364, lastUs: 1796065848355116, notTcp: 0, v6: true },
];

void t.test('every format and link type: the packets tshark sees, and the same five requests in each', (t) => {
  for (const f of FILES) {
    const bytes = captureBytes(f.file);
    const r = readPackets([bytes]);
    t.equal(r.error, null, `${f.file}: no error`);
    t.equal(r.leftover, 0, `${f.file}: ends cleanly`);
    t.equal(r.format, f.format, `${f.file}: ${f.format}`);
    t.equal(r.packets.length, f.packets, `${f.file}: ${f.packets} packets`);
    t.ok(r.packets.every((p) => p.linkType === f.linkType), `${f.file}: link type ${f.linkType}`);
    t.ok(r.packets.every((p, i) => p.index === i && p.wireLength === p.hex.length / 2), `${f.file}: indexes, nothing cut`);
    t.equal(r.packets[0]!.us, f.firstUs, `${f.file}: first timestamp`);
    t.equal(r.packets.at(-1)!.us, f.lastUs, `${f.file}: last timestamp`);
    const fr = framesOf([bytes]);
    t.strictSame(fr.skips, f.notTcp > 0 ? { not_tcp: f.notTcp } : {}, `${f.file}: only the probes are not TCP`);
    t.strictSame(fr.requests, BASIC_REQUESTS, `${f.file}: requests`);
    t.strictSame(fr.responses, f.v6 === true ? IPV6_RESPONSES : BASIC_RESPONSES, `${f.file}: responses`);
    t.equal(fr.table.counts.streams, 1);
    t.equal(fr.table.counts.segments, 14, `${f.file}: 14 segments with data, SYN or FIN (4 are bare ACKs)`);
  }
  t.end();
});

/** An IPv4 packet (hex, IHL 5) with its TCP or UDP checksum zeroed. */
function withoutChecksum(h: string): string {
  const at = h.slice(18, 20) === '06' ? 20 + 16 : 20 + 6; // bytes: IP header, then TCP's or UDP's checksum field
  return h.slice(0, 2 * at) + '0000' + h.slice(2 * at + 4);
}

void t.test('the same frames, byte for byte, whatever the container, byte order or resolution', (t) => {
  const frames = (file: string): string[] => readPackets([captureBytes(file)]).packets.map((p) => p.hex);
  const ethernet = frames('basic.pcapng');
  for (const f of ['basic.pcap', 'basic-ns.pcap', 'basic-us.pcapng', 'basic-be.pcap', 'basic-be.pcapng']) t.strictSame(frames(f), ethernet, f);
  // Raw IP is the Ethernet frame without its 14-byte header.
  t.strictSame(frames('rawip.pcap'), ethernet.map((h) => h.slice(28)));
  // tcprewrite also recomputed the TCP and UDP checksums: compare without them.
  const ip = ethernet.map((h) => withoutChecksum(h.slice(28)));
  t.strictSame(frames('null.pcap').map((h) => h.slice(0, 8) + withoutChecksum(h.slice(8))), ip.map((h) => '02000000' + h));
  t.strictSame(frames('loop.pcap').map((h) => h.slice(0, 8) + withoutChecksum(h.slice(8))), ip.map((h) => '00000002' + h));
  // VLAN tags sit after the MAC addresses.
  const macs = ethernet.map((h) => h.slice(0, 24));
  t.strictSame(frames('vlan.pcap').map((h) => h.slice(0, 36) + withoutChecksum(h.slice(36))), ip.map((h, i) => macs[i] + '8100000a0800' + h));
  t.strictSame(frames('qinq.pcap').map((h) => h.slice(0, 44) + withoutChecksum(h.slice(44))), ip.map((h, i) => macs[i] + '88a800648100000a0800' + h));
  t.end();
});

void t.test('any chunking gives the same packets: 1, 3, 7, 64 bytes, and seeded random cuts', (t) => {
  const rnd = new Random(0x9cab);
  for (const file of ['basic.pcapng', 'basic-be.pcapng', 'basic.pcap', 'basic-be.pcap', 'cooked2.pcapng', 'demo.pcapng']) {
    const bytes = captureBytes(file);
    const whole = readPackets([bytes]).packets;
    for (const size of [1, 3, 7, 64]) t.strictSame(readPackets(chunks(bytes, size)).packets, whole, `${file} in ${size}-byte chunks`);
    for (let round = 0; round < 10; round++) {
      const parts: Buffer[] = [];
      for (let i = 0; i < bytes.length; ) {
        const n = 1 + rnd.int(300);
        parts.push(bytes.subarray(i, i + n));
        i += n;
      }
      t.strictSame(readPackets(parts).packets, whole, `${file}, random cuts (seed 0x9cab, round ${round})`);
    }
  }
  t.end();
});

void t.test('a file cut short is read up to the last whole packet, and says how much was left', (t) => {
  const bytes = captureBytes('basic.pcap');
  // The last record is 16 + 47 bytes: cut 10 bytes into it.
  const cut = bytes.subarray(0, bytes.length - 63 + 10);
  const r = readPackets(chunks(cut, 5));
  t.equal(r.error, null);
  t.equal(r.packets.length, 19);
  t.equal(r.leftover, 10);
  // pcapng: cut inside the last Enhanced Packet Block's data, and just after its data.
  const ng = captureBytes('basic.pcapng');
  const all = readPackets([ng]).packets;
  let lastEpb = -1;
  for (let o = 0; o < ng.length; o += ng.readUInt32LE(o + 4)) if (ng.readUInt32LE(o) === 6) lastEpb = o;
  const epbLength = ng.readUInt32LE(lastEpb + 4);
  const captured = ng.readUInt32LE(lastEpb + 20);
  const inData = readPackets(chunks(ng.subarray(0, lastEpb + 30), 7));
  t.equal(inData.packets.length, all.length - 1);
  t.equal(inData.leftover, 30, 'the 30 bytes of the block that arrived');
  const afterData = readPackets(chunks(ng.subarray(0, lastEpb + 28 + captured + 1), 7));
  t.equal(afterData.packets.length, all.length, 'the packet was read; the rest of its block is missing');
  t.equal(afterData.leftover, epbLength - 28 - captured - 1, 'the bytes of the block still to come');
  t.end();
});

// --- hand-built files: what capture tools write rarely or never ---------------------------------

/** pcap global header: magic, 2.4, zone 0, sigfigs 0, snaplen 65535, link type. */
function pcapHeader(magic: number, linkType: number, be = false): Buffer {
  const b = Buffer.alloc(24);
  const w32 = (v: number, o: number): number => (be ? b.writeUInt32BE(v, o) : b.writeUInt32LE(v, o));
  const w16 = (v: number, o: number): number => (be ? b.writeUInt16BE(v, o) : b.writeUInt16LE(v, o));
  w32(magic, 0);
  w16(2, 4);
  w16(4, 6);
  w32(65535, 16);
  w32(linkType, 20);
  return b;
}

/** pcap record: seconds, fraction, captured length, original length, data. */
function pcapRecord(sec: number, frac: number, data: Buffer, wire = data.length): Buffer {
  const h = Buffer.alloc(16);
  h.writeUInt32LE(sec, 0);
  h.writeUInt32LE(frac, 4);
  h.writeUInt32LE(data.length, 8);
  h.writeUInt32LE(wire, 12);
  return Buffer.concat([h, data]);
}

/** A pcapng block: type, total length, body padded to 4, total length. */
function block(type: number, body: Buffer, be = false): Buffer {
  const padded = Buffer.concat([body, Buffer.alloc((4 - (body.length % 4)) % 4)]);
  const len = 12 + padded.length;
  const h = Buffer.alloc(8);
  const tail = Buffer.alloc(4);
  if (be) {
    h.writeUInt32BE(type, 0);
    h.writeUInt32BE(len, 4);
    tail.writeUInt32BE(len, 0);
  } else {
    h.writeUInt32LE(type, 0);
    h.writeUInt32LE(len, 4);
    tail.writeUInt32LE(len, 0);
  }
  return Buffer.concat([h, padded, tail]);
}

const u16 = (v: number, be = false): Buffer => {
  const b = Buffer.alloc(2);
  if (be) b.writeUInt16BE(v);
  else b.writeUInt16LE(v);
  return b;
};
const u32 = (v: number, be = false): Buffer => {
  const b = Buffer.alloc(4);
  if (be) b.writeUInt32BE(v);
  else b.writeUInt32LE(v);
  return b;
};

/** Section Header Block body: byte-order magic, version 1.0, section length -1 (unknown). */
const shb = (be = false, major = 1): Buffer =>
  block(0x0a0d0d0a, Buffer.concat([u32(0x1a2b3c4d, be), u16(major, be), u16(0, be), Buffer.alloc(8, 0xff)]), be);

/** An option: code, length, value padded to 4. */
function option(code: number, value: Buffer, be = false): Buffer {
  return Buffer.concat([u16(code, be), u16(value.length, be), value, Buffer.alloc((4 - (value.length % 4)) % 4)]);
}

/** Interface Description Block: link type, reserved, snaplen, options. */
const idb = (linkType: number, snaplen: number, options: Buffer[] = [], be = false): Buffer =>
  block(1, Buffer.concat([u16(linkType, be), u16(0, be), u32(snaplen, be), ...options]), be);

/** Enhanced Packet Block: interface, timestamp high and low, captured and original length, data. */
const epb = (iface: number, hi: number, lo: number, data: Buffer, be = false, wire = data.length): Buffer =>
  block(6, Buffer.concat([u32(iface, be), u32(hi, be), u32(lo, be), u32(data.length, be), u32(wire, be), data]), be);

const DATA = Buffer.from('00112233445566778899aabbccddeeff', 'hex');

void t.test('pcapng: timestamp resolutions and offsets, several sections in both byte orders', (t) => {
  const file = Buffer.concat([
    shb(),
    idb(LINKTYPE_ETHERNET, 0), // no if_tsresol: µs
    idb(LINKTYPE_RAW, 0, [option(9, Buffer.from([3])), option(0, Buffer.alloc(0))]), // ms (10^-3), then opt_endofopt
    idb(LINKTYPE_NULL, 0, [option(2, Buffer.from('eth0')), option(9, Buffer.from([0x80 | 10]))]), // if_name, then 2^-10 s
    // if_tsoffset: +100 s, signed 64-bit little-endian.
    idb(LINKTYPE_LOOP, 0, [option(14, Buffer.from([100, 0, 0, 0, 0, 0, 0, 0]))]),
    block(4, Buffer.from('00000000', 'hex')), // a Name Resolution Block: skipped
    epb(0, 0, 1_500_000, DATA), // 1.5 s
    epb(1, 0, 2500, DATA), // 2.5 s
    epb(2, 0, 3 * 1024 + 512, DATA), // 3.5 s
    epb(3, 0, 0, DATA), // 0 + 100 s
    // A second section, big-endian, with one interface: the first section's are gone.
    shb(true),
    idb(LINKTYPE_IPV6, 0, [option(14, Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]), true)], true), // -2 s
    epb(0, 1, 0, DATA, true), // 2^32 µs - 2 s
  ]);
  const r = readPackets(chunks(file, 5));
  t.equal(r.error, null);
  t.strictSame(
    r.packets.map((p) => [p.linkType, p.us]),
    [
      [LINKTYPE_ETHERNET, 1_500_000],
      [LINKTYPE_RAW, 2_500_000],
      [LINKTYPE_NULL, 3_500_000],
      [LINKTYPE_LOOP, 100_000_000],
      [LINKTYPE_IPV6, 4_294_967_296 - 2_000_000],
    ],
  );
  t.end();
});

void t.test('pcapng: simple and obsolete packet blocks, snaplen, and a malformed option', (t) => {
  const file = Buffer.concat([
    shb(),
    // An option running past the block ends the options (the interface is still read).
    idb(LINKTYPE_ETHERNET, 8, [Buffer.from([9, 0, 200, 0])]),
    epb(0, 0, 7_000_000, DATA),
    // Simple Packet Block: original length 16, data cut to the interface's snaplen (8); no
    // timestamp, so the previous packet's.
    block(3, Buffer.concat([u32(16), DATA.subarray(0, 8)])),
    // Obsolete Packet Block: interface(2) drops(2) ts high ts low captured original data.
    block(2, Buffer.concat([u16(0), u16(0), u32(0), u32(9_000_000), u32(16), u32(20), DATA])),
  ]);
  const r = readPackets(chunks(file, 3));
  t.equal(r.error, null);
  t.strictSame(
    r.packets.map((p) => [p.us, p.wireLength, p.hex]),
    [
      [7_000_000, 16, DATA.toString('hex')],
      [7_000_000, 16, DATA.toString('hex', 0, 8)],
      [9_000_000, 20, DATA.toString('hex')],
    ],
  );
  // Snaplen 0 means none: the data is what the block holds.
  const unlimited = Buffer.concat([shb(), idb(LINKTYPE_ETHERNET, 0), block(3, Buffer.concat([u32(16), DATA]))]);
  t.strictSame(readPackets([unlimited]).packets.map((p) => p.hex), [DATA.toString('hex')]);
  t.end();
});

void t.test('pcap: big-endian ns, and a record longer than any snaplen is corruption', (t) => {
  const be = Buffer.concat([pcapHeader(0xa1b23c4d, LINKTYPE_RAW, true)]);
  const rec = Buffer.alloc(16);
  rec.writeUInt32BE(10, 0);
  rec.writeUInt32BE(500_000_000, 4); // ns
  rec.writeUInt32BE(DATA.length, 8);
  rec.writeUInt32BE(DATA.length, 12);
  const r = readPackets([Buffer.concat([be, rec, DATA])]);
  t.strictSame(r.packets.map((p) => [p.linkType, p.us]), [[LINKTYPE_RAW, 10_500_000]]);

  const big = readPackets([Buffer.concat([pcapHeader(0xa1b2c3d4, 1), pcapRecord(1, 0, DATA), pcapRecord(2, 0, DATA).fill(0xff, 8, 12)])]);
  t.equal(big.packets.length, 1);
  t.equal(big.error?.code, 'ERR_CAPTURE_CORRUPT');
  t.equal(big.error?.offset, 24 + 16 + 16);
  t.equal(big.error?.message, `packet record 1 says it holds ${0xffffffff} bytes (at most ${MAX_CAPTURED_LENGTH}): the file is corrupt`);
  t.equal(big.leftover, 0, 'nothing more is read after an error');
  t.end();
});

void t.test('what is not a capture file, or not one this reader knows', (t) => {
  const cases: [string, Buffer, string, string][] = [
    ['empty', Buffer.alloc(0), 'ERR_CAPTURE_FORMAT', 'the file ends after 0 bytes, before its header is complete: not a pcap or pcapng file'],
    ['a pcap header cut short', pcapHeader(0xa1b2c3d4, 1).subarray(0, 20), 'ERR_CAPTURE_FORMAT', 'the file ends after 20 bytes, before its header is complete: not a pcap or pcapng file'],
    ['text', Buffer.from('version: 1\n'), 'ERR_CAPTURE_FORMAT', 'not a pcap or pcapng file: it starts with 0x76657273 (pcap starts with a1b2c3d4 or a1b23c4d in either byte order, pcapng with 0a0d0d0a)'],
    ['modified pcap', pcapHeader(0xa1b2cd34, 1), 'ERR_CAPTURE_FORMAT', 'a "modified" (Kuznetzov) pcap file, which this reader does not take: convert it with `editcap -F pcap IN OUT`'],
    ['pcap 3.0', Buffer.concat([pcapHeader(0xa1b2c3d4, 1)]).fill(3, 4, 5), 'ERR_CAPTURE_FORMAT', 'pcap version 3.4; this reader knows version 2.x'],
    ['pcapng without its magic', Buffer.concat([u32(0x0a0d0d0a), u32(28), u32(0x12345678), Buffer.alloc(16)]), 'ERR_CAPTURE_FORMAT', 'pcapng section header without its byte-order magic 1a2b3c4d (found 0x78563412): not a pcapng file'],
    ['pcapng 2.0', shb(false, 2), 'ERR_CAPTURE_FORMAT', 'pcapng version 2; this reader knows version 1.x'],
    ['pcapng section header too short', Buffer.concat([u32(0x0a0d0d0a), u32(24), u32(0x1a2b3c4d), Buffer.alloc(12)]), 'ERR_CAPTURE_CORRUPT', 'pcapng section header has length 24 (a multiple of 4, at least 28): the file is corrupt'],
    ['a block length not a multiple of 4', Buffer.concat([shb(), u32(6), u32(13), Buffer.alloc(5)]), 'ERR_CAPTURE_CORRUPT', 'pcapng block of type 6 has length 13 (a multiple of 4, at least 12): the file is corrupt'],
    ['a block shorter than 12', Buffer.concat([shb(), u32(6), u32(8)]), 'ERR_CAPTURE_CORRUPT', 'pcapng block of type 6 has length 8 (a multiple of 4, at least 12): the file is corrupt'],
    ['an interface block too short', Buffer.concat([shb(), block(1, Buffer.alloc(4))]), 'ERR_CAPTURE_CORRUPT', `pcapng interface description has length 16 (20..${1 << 20}): the file is corrupt`],
    ['a packet for an interface never described', Buffer.concat([shb(), epb(0, 0, 0, DATA)]), 'ERR_CAPTURE_CORRUPT', 'pcapng enhanced packet block 0 refers to interface 0, but the section describes 0: the file is corrupt'],
    ['a simple packet without an interface', Buffer.concat([shb(), block(3, Buffer.concat([u32(16), DATA]))]), 'ERR_CAPTURE_CORRUPT', 'pcapng simple packet block 0 refers to interface 0, but the section describes 0: the file is corrupt'],
    ['an obsolete packet block for interface 3', Buffer.concat([shb(), idb(1, 0), block(2, Buffer.concat([u16(3), u16(0), u32(0), u32(0), u32(16), u32(16), DATA]))]), 'ERR_CAPTURE_CORRUPT', 'pcapng packet block 0 refers to interface 3, but the section describes 1: the file is corrupt'],
    ['a simple packet block too short for its length field', Buffer.concat([shb(), idb(1, 0), block(3, Buffer.alloc(0))]), 'ERR_CAPTURE_CORRUPT', 'pcapng simple packet block has length 12 (at least 16): the file is corrupt'],
    ['a packet block too short for its fields', Buffer.concat([shb(), idb(1, 0), block(6, Buffer.alloc(16))]), 'ERR_CAPTURE_CORRUPT', 'pcapng packet block has length 28 (at least 32): the file is corrupt'],
    ['a packet longer than its block', Buffer.concat([shb(), idb(1, 0), block(6, Buffer.concat([u32(0), u32(0), u32(0), u32(100), u32(100), DATA]))]), 'ERR_CAPTURE_CORRUPT', 'pcapng packet block 0 says it holds 100 bytes in a block of 48: the file is corrupt'],
  ];
  for (const [what, bytes, code, message] of cases) {
    for (const size of [0, 1]) {
      const r = readPackets(chunks(bytes, size));
      t.equal(r.error?.code, code, `${what} (chunks of ${size || 'all'}): ${code}`);
      t.equal(r.error?.message, message, what);
      t.equal(r.packets.length, 0);
    }
  }
  // Once failed, a reader takes nothing more.
  const reader = new CaptureReader({ packet: () => t.fail('no packet') });
  t.equal(reader.push(Buffer.from('nonsense'))?.code, 'ERR_CAPTURE_FORMAT');
  t.equal(reader.push(pcapHeader(0xa1b2c3d4, 1))?.code, 'ERR_CAPTURE_FORMAT');
  t.equal(reader.packets, 0);
  t.end();
});

// --- link layers, IP and TCP by hand ----------------------------------------------------------

const hexb = (s: string): Buffer => Buffer.from(s.replace(/[\s|]/g, ''), 'hex');

// TCP header, 20 bytes: | sport 1f40 | dport 13a5 (5029) | seq 00000064 | ack 000000c8 | off 5, flags PSH+ACK 18 | win 0100 | sum 0000 | urg 0000 |
const TCP = '1f40 13a5 00000064 000000c8 5018 0100 0000 0000';
const PAYLOAD = '0001 0000 0006 01 03 0000 000a';
/** IPv4 header: | 45 | tos 00 | total | id 0001 | flags/frag | ttl 40 | proto 06 | sum 0000 | 10.0.0.1 | 10.0.0.2 | */
const ipv4 = (total: number, frag = '0000', proto = '06', vihl = '45', options = ''): string =>
  `${vihl} 00 ${total.toString(16).padStart(4, '0')} 0001 ${frag} 40 ${proto} 0000 0a000001 0a000002 ${options}`;
/** IPv6 header: | 6 tc/flow 0000000 | payload length | next | hop limit 40 | fd00::1 | fd00::2 | */
const ipv6 = (payload: number, next: string, version = '6'): string =>
  `${version}0000000 ${payload.toString(16).padStart(4, '0')} ${next} 40 fd000000000000000000000000000001 fd000000000000000000000000000002`;
const ETH = (type: string): string => `020000000002 020000000001 ${type}`;

interface Case {
  what: string;
  linkType: number;
  frame: string;
  /** Bytes on the wire, when the capture cut the frame. */
  wire?: number;
  expect: string | { payload: string; family: 4 | 6 };
}

const TCP_IN_V4 = ipv4(20 + 20 + 12) + TCP + PAYLOAD;
const TCP_IN_V6 = ipv6(20 + 12, '06') + TCP + PAYLOAD;

const CASES: Case[] = [
  { what: 'Ethernet, IPv4', linkType: LINKTYPE_ETHERNET, frame: ETH('0800') + TCP_IN_V4, expect: { payload: PAYLOAD, family: 4 } },
  { what: 'Ethernet padded to 60 bytes past the IP packet', linkType: LINKTYPE_ETHERNET, frame: ETH('0800') + ipv4(40) + TCP + '000000000000', expect: { payload: '', family: 4 } },
  { what: 'Ethernet with a pre-standard 9100 QinQ tag', linkType: LINKTYPE_ETHERNET, frame: ETH('9100') + '0064 0800' + TCP_IN_V4, expect: { payload: PAYLOAD, family: 4 } },
  { what: 'Ethernet too short', linkType: LINKTYPE_ETHERNET, frame: '0200000000020200', expect: 'truncated' },
  { what: 'Ethernet, a VLAN tag cut', linkType: LINKTYPE_ETHERNET, frame: ETH('8100') + '00', expect: 'truncated' },
  { what: 'Ethernet, ARP', linkType: LINKTYPE_ETHERNET, frame: ETH('0806') + '0001080006040001', expect: 'not_ip' },
  { what: 'cooked v1 too short', linkType: LINKTYPE_LINUX_SLL, frame: '0000 0304 0006', expect: 'truncated' },
  { what: 'cooked v1 with a VLAN tag left in', linkType: LINKTYPE_LINUX_SLL, frame: '0000 0001 0006 020000000001 0000 8100 000a 86dd' + TCP_IN_V6, expect: { payload: PAYLOAD, family: 6 } },
  { what: 'cooked v2 too short', linkType: LINKTYPE_LINUX_SLL2, frame: '0800 0000 00000001', expect: 'truncated' },
  { what: 'NULL too short', linkType: LINKTYPE_NULL, frame: '0200', expect: 'truncated' },
  { what: 'NULL, big-endian AF_INET from a big-endian host', linkType: LINKTYPE_NULL, frame: '00000002' + TCP_IN_V4, expect: { payload: PAYLOAD, family: 4 } },
  { what: 'NULL, AF_INET6 24 (NetBSD/OpenBSD)', linkType: LINKTYPE_NULL, frame: '18000000' + TCP_IN_V6, expect: { payload: PAYLOAD, family: 6 } },
  { what: 'NULL, AF_INET6 28 (FreeBSD)', linkType: LINKTYPE_NULL, frame: '1c000000' + TCP_IN_V6, expect: { payload: PAYLOAD, family: 6 } },
  { what: 'NULL, another family (AF_APPLETALK 16)', linkType: LINKTYPE_NULL, frame: '10000000' + TCP_IN_V4, expect: 'not_ip' },
  { what: 'LOOP is network byte order only', linkType: LINKTYPE_LOOP, frame: '02000000' + TCP_IN_V4, expect: 'not_ip' },
  { what: 'RAW, IPv6', linkType: LINKTYPE_RAW, frame: TCP_IN_V6, expect: { payload: PAYLOAD, family: 6 } },
  { what: 'RAW, empty', linkType: LINKTYPE_RAW, frame: '', expect: 'truncated' },
  { what: 'an unknown link type (802.11, 105)', linkType: 105, frame: TCP_IN_V4, expect: 'link_type' },
  // IPv4
  { what: 'IPv4 with options (IHL 6): skipped over', linkType: LINKTYPE_IPV4, frame: ipv4(24 + 20 + 12, '4000', '06', '46', '01010100') + TCP + PAYLOAD, expect: { payload: PAYLOAD, family: 4 } },
  { what: 'IPv4 total length 0 (segmentation offload): to the end of the frame', linkType: LINKTYPE_IPV4, frame: ipv4(0) + TCP + PAYLOAD, expect: { payload: PAYLOAD, family: 4 } },
  { what: 'IPv4 total length 0 and the frame cut', linkType: LINKTYPE_IPV4, frame: ipv4(0) + TCP + PAYLOAD, wire: 100, expect: 'truncated' },
  { what: 'IPv4 total length 0, not even a header after it', linkType: LINKTYPE_IPV4, frame: ipv4(0, '0000', '06', '4f'), expect: 'truncated' },
  { what: 'IPv4 header shorter than 20', linkType: LINKTYPE_IPV4, frame: '4500 0028 0001', expect: 'truncated' },
  { what: 'IPv4 IHL 4', linkType: LINKTYPE_IPV4, frame: ipv4(52, '0000', '06', '44') + TCP + PAYLOAD, expect: 'bad_header' },
  { what: 'IPv4 header saying version 6', linkType: LINKTYPE_IPV4, frame: ipv4(52, '0000', '06', '65') + TCP + PAYLOAD, expect: 'bad_header' },
  { what: 'IPv4 total length below the header', linkType: LINKTYPE_IPV4, frame: ipv4(16) + TCP, expect: 'bad_header' },
  { what: 'IPv4 total length past the frame, nothing cut', linkType: LINKTYPE_IPV4, frame: ipv4(100) + TCP + PAYLOAD, expect: 'bad_header' },
  { what: 'IPv4 total length past the frame, the capture cut it (snaplen)', linkType: LINKTYPE_IPV4, frame: ipv4(100) + TCP + PAYLOAD, wire: 100, expect: 'truncated' },
  { what: 'IPv4 first fragment (MF)', linkType: LINKTYPE_IPV4, frame: ipv4(52, '2000') + TCP + PAYLOAD, expect: 'ip_fragment' },
  { what: 'IPv4 later fragment (offset 8)', linkType: LINKTYPE_IPV4, frame: ipv4(52, '0001') + TCP + PAYLOAD, expect: 'ip_fragment' },
  { what: 'IPv4 DF only is whole', linkType: LINKTYPE_IPV4, frame: ipv4(52, '4000') + TCP + PAYLOAD, expect: { payload: PAYLOAD, family: 4 } },
  { what: 'IPv4 UDP', linkType: LINKTYPE_IPV4, frame: ipv4(28, '0000', '11') + '1f4013a500080000', expect: 'not_tcp' },
  // IPv6
  { what: 'IPv6 header shorter than 40', linkType: LINKTYPE_IPV6, frame: ipv6(0, '06').slice(0, 60), expect: 'truncated' },
  { what: 'IPv6 header saying version 4', linkType: LINKTYPE_IPV6, frame: ipv6(32, '06', '4') + TCP + PAYLOAD, expect: 'bad_header' },
  { what: 'IPv6 payload length 0: to the end of the frame', linkType: LINKTYPE_IPV6, frame: ipv6(0, '06') + TCP + PAYLOAD, expect: { payload: PAYLOAD, family: 6 } },
  { what: 'IPv6 payload past the frame, nothing cut', linkType: LINKTYPE_IPV6, frame: ipv6(100, '06') + TCP + PAYLOAD, expect: 'bad_header' },
  { what: 'IPv6 payload past the frame, cut', linkType: LINKTYPE_IPV6, frame: ipv6(100, '06') + TCP + PAYLOAD, wire: 140, expect: 'truncated' },
  {
    what: 'IPv6 hop-by-hop (8), routing (16), destination options (8), AH (16), an atomic fragment (8)',
    linkType: LINKTYPE_IPV6,
    frame:
      ipv6(8 + 16 + 8 + 16 + 8 + 32, '00') +
      '2b 00 010400000000' + // hop-by-hop: next 43 routing, length 0 (8 bytes), PadN
      '3c 01 0000 00000000 0000000000000000' + // routing: next 60, length 1 (16 bytes)
      '33 00 010400000000' + // destination options: next 51 AH, 8 bytes
      '2c 02 0000 00000001 00000001 00000000' + // AH: next 44 fragment, length 2 ((2+2)·4 = 16 bytes)
      '06 00 0000 00000001' + // fragment: next TCP, offset 0, M clear: atomic
      TCP +
      PAYLOAD,
    expect: { payload: PAYLOAD, family: 6 },
  },
  { what: 'IPv6 Mobility (135), HIP (139) and Shim6 (140) headers', linkType: LINKTYPE_IPV6, frame: ipv6(24 + 32, '87') + '8b 00 000000000000' + '8c 00 000000000000' + '06 00 000000000000' + TCP + PAYLOAD, expect: { payload: PAYLOAD, family: 6 } },
  { what: 'IPv6 a real fragment (M set)', linkType: LINKTYPE_IPV6, frame: ipv6(8 + 32, '2c') + '06 00 0001 00000001' + TCP + PAYLOAD, expect: 'ip_fragment' },
  { what: 'IPv6 a later fragment (offset 8)', linkType: LINKTYPE_IPV6, frame: ipv6(8 + 32, '2c') + '06 00 0008 00000001' + TCP + PAYLOAD, expect: 'ip_fragment' },
  { what: 'IPv6 a fragment header cut', linkType: LINKTYPE_IPV6, frame: ipv6(4, '2c') + '06000001', expect: 'truncated' },
  { what: 'IPv6 an extension header with no room for its length', linkType: LINKTYPE_IPV6, frame: ipv6(1, '00') + '06', expect: 'truncated' },
  { what: 'IPv6 an AH with no room for its length', linkType: LINKTYPE_IPV6, frame: ipv6(1, '33') + '06', expect: 'truncated' },
  { what: 'IPv6 an extension header longer than the packet', linkType: LINKTYPE_IPV6, frame: ipv6(8, '00') + '06 05 000000000000', expect: 'truncated' },
  { what: 'IPv6 ESP: encrypted', linkType: LINKTYPE_IPV6, frame: ipv6(8, '32') + '0000000100000001', expect: 'not_tcp' },
  { what: 'IPv6 no next header', linkType: LINKTYPE_IPV6, frame: ipv6(0, '3b'), expect: 'not_tcp' },
  // TCP
  { what: 'TCP header cut below 20 bytes', linkType: LINKTYPE_IPV4, frame: ipv4(30) + TCP.slice(0, 25), expect: 'truncated' },
  { what: 'TCP data offset 4', linkType: LINKTYPE_IPV4, frame: ipv4(52) + TCP.replace('5018', '4018') + PAYLOAD, expect: 'bad_header' },
  { what: 'TCP data offset past the packet', linkType: LINKTYPE_IPV4, frame: ipv4(40) + TCP.replace('5018', 'f018'), expect: 'truncated' },
  { what: 'TCP with options (data offset 6)', linkType: LINKTYPE_IPV4, frame: ipv4(56) + TCP.replace('5018', '6018') + '01010101' + PAYLOAD, expect: { payload: PAYLOAD, family: 4 } },
];

void t.test('link layers, IPv4 and IPv6 with everything on the way to TCP', (t) => {
  const seg = new TcpSegment();
  for (const c of CASES) {
    const frame = hexb(c.frame);
    // Offset in a larger buffer: decoding must respect start and end.
    const buf = Buffer.concat([Buffer.from([0xee, 0xee]), frame, Buffer.from([0xee])]);
    const r = decodePacket(buf, 2, 2 + frame.length, c.wire ?? frame.length, c.linkType, 42.5, seg);
    if (typeof c.expect === 'string') {
      t.equal(r, c.expect, c.what);
      continue;
    }
    t.equal(r, null, c.what);
    t.equal(seg.buf.toString('hex', seg.start, seg.end), c.expect.payload.replace(/\s/g, ''), `${c.what}: payload`);
    t.equal(seg.family, c.expect.family);
    t.strictSame(
      [seg.srcPort, seg.dstPort, seg.seq, seg.ack, seg.flags, seg.timeMs],
      [0x1f40, 5029, 100, 200, 0x18, 42.5],
      `${c.what}: TCP fields`,
    );
    if (c.expect.family === 4) t.strictSame([seg.src0, seg.src1, seg.src2, seg.src3, seg.dst3], [0, 0, 0, 0x0a000001, 0x0a000002]);
    else t.strictSame([seg.src0, seg.src3, seg.dst0, seg.dst3], [0xfd000000, 1, 0xfd000000, 2]);
  }
  t.end();
});

void t.test('a capture cut by its snaplen: every TCP packet is counted as truncated, none is used', (t) => {
  const fr = framesOf([captureBytes('snaplen.pcapng')]);
  t.strictSame(fr.skips, { not_tcp: 2, truncated: 18 });
  t.equal(fr.requests.length + fr.responses.length, 0);
  t.end();
});
