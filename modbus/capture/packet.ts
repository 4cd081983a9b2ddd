// A captured frame → the TCP segment inside it, through the link layers capture tools write and
// IPv4/IPv6. Pure; never throws; fills one reused TcpSegment (nothing allocated per packet).
//
// Link layers (LINKTYPE_* numbers from tcpdump.org's link-layer header types):
// | link type            | number | header                                                       |
// | NULL (BSD loopback)  |      0 | family(4) in the capturing host's byte order: 2 IPv4; 24, 28, 30 IPv6 (BSDs, macOS) |
// | ETHERNET             |      1 | dst(6) src(6) type(2); 802.1Q 8100 / 802.1ad 88A8 / 9100 tags: TCI(2) type(2) each |
// | RAW                  |    101 | none: the IP header first (version nibble says which)         |
// | LOOP (OpenBSD)       |    108 | family(4), network byte order                                 |
// | LINUX_SLL (cooked)   |    113 | packet type(2) ARPHRD(2) addr len(2) addr(8) protocol(2)      |
// | IPV4, IPV6           | 228, 229 | none                                                        |
// | LINUX_SLL2           |    276 | protocol(2) reserved(2) ifindex(4) ARPHRD(2) packet type(1) addr len(1) addr(8) |
//
// IPv4 (RFC 791): version/IHL(1) ... total length at 2, flags/fragment offset at 6, protocol at 9,
// source at 12, destination at 16; options to IHL·4. A total length of 0 (segmentation offload on
// the capturing host) means "to the end of the frame". Fragments are not reassembled: a fragment
// (MF set or offset ≠ 0) is skipped and counted, and the TCP stream it belonged to sees a gap,
// which reassembly reports and resynchronises after. Modbus/TCP segments are far below any MTU, so
// a fragmented one is a sign of something odd rather than a case to support.
// IPv6 (RFC 8200): next header at 6, payload length at 4, source at 8, destination at 24; extension
// headers Hop-by-Hop (0), Routing (43), Destination Options (60), Mobility (135), HIP (139) and
// Shim6 (140) are ((length + 1)·8 bytes), AH (51) is ((length + 2)·4 bytes); a Fragment header (44)
// of an atomic fragment (offset 0, M clear) is passed over, a real fragment is skipped as above;
// ESP (50) and No Next Header (59) end the packet (not TCP as far as anyone can see).
// TCP (RFC 9293): ports, sequence at 4, acknowledgment at 8, data offset (high nibble of 12),
// flags at 13. Checksums are not verified: captured on the sending host they are often not filled
// in yet (checksum offload), and reassembly is what catches damaged data.

export const LINKTYPE_NULL = 0;
export const LINKTYPE_ETHERNET = 1;
export const LINKTYPE_RAW = 101;
export const LINKTYPE_LOOP = 108;
export const LINKTYPE_LINUX_SLL = 113;
export const LINKTYPE_IPV4 = 228;
export const LINKTYPE_IPV6 = 229;
export const LINKTYPE_LINUX_SLL2 = 276;

const ETHERTYPE_IPV4 = 0x0800;
const ETHERTYPE_IPV6 = 0x86dd;
/** 802.1Q customer tag, 802.1ad service tag (QinQ), and the pre-standard QinQ type. */
const VLAN_TYPES: ReadonlySet<number> = new Set([0x8100, 0x88a8, 0x9100]);
const ETHERNET_HEADER = 14;
const VLAN_TAG = 4;
const SLL_HEADER = 16;
const SLL_PROTOCOL_OFFSET = 14;
const SLL2_HEADER = 20;
const NULL_HEADER = 4;
const AF_INET = 2;
/** AF_INET6 as NetBSD/OpenBSD, FreeBSD/DragonFly and macOS number it. */
const AF_INET6_VALUES: ReadonlySet<number> = new Set([24, 28, 30]);

const IPV4_MIN_HEADER = 20;
const IPV4_MORE_FRAGMENTS = 0x2000;
const IPV4_FRAGMENT_OFFSET = 0x1fff;
const IPV6_HEADER = 40;
const IP_PROTOCOL_TCP = 6;
const IPV6_HOP_BY_HOP = 0;
const IPV6_ROUTING = 43;
const IPV6_FRAGMENT = 44;
const IPV6_AH = 51;
const IPV6_DESTINATION_OPTIONS = 60;
const IPV6_MOBILITY = 135;
const IPV6_HIP = 139;
const IPV6_SHIM6 = 140;
/** Extension headers whose length byte counts 8-byte units after the first 8. */
const IPV6_EIGHT_OCTET_EXTENSIONS: ReadonlySet<number> = new Set([
  IPV6_HOP_BY_HOP,
  IPV6_ROUTING,
  IPV6_DESTINATION_OPTIONS,
  IPV6_MOBILITY,
  IPV6_HIP,
  IPV6_SHIM6,
]);
const IPV6_FRAGMENT_HEADER = 8;
const IPV6_FRAGMENT_OFFSET_MASK = 0xfff8;
const IPV6_MORE_FRAGMENTS = 0x0001;
const TCP_MIN_HEADER = 20;

export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_ACK = 0x10;

/** Why a packet carries no TCP segment this reader can use; each is counted. */
export type PacketSkip =
  | 'link_type' // a link layer this reader doesn't know
  | 'not_ip' // ARP, LLDP, STP, 802.3 frames: no IP inside
  | 'not_tcp' // UDP, ICMP, ESP: IP without TCP
  | 'ip_fragment' // part of a fragmented IP packet (not reassembled)
  | 'truncated' // the capture cut the packet (snaplen) before the end of its TCP payload
  | 'bad_header'; // a length or version that can't be (IHL < 5, data offset past the packet)

export const PACKET_SKIPS: readonly PacketSkip[] = ['link_type', 'not_ip', 'not_tcp', 'ip_fragment', 'truncated', 'bad_header'];

/**
 * One TCP segment, refilled per packet. Addresses are four big-endian 32-bit words; IPv4 keeps its
 * value in the last word (the layout policy/net.ts's IpAddress uses, so it formats them).
 */
export class TcpSegment {
  family: 4 | 6 = 4;
  src0 = 0;
  src1 = 0;
  src2 = 0;
  src3 = 0;
  dst0 = 0;
  dst1 = 0;
  dst2 = 0;
  dst3 = 0;
  srcPort = 0;
  dstPort = 0;
  seq = 0;
  ack = 0;
  flags = 0;
  /** The payload: buf[start, end). */
  buf: Buffer = Buffer.alloc(0);
  start = 0;
  end = 0;
  timeMs = 0;
}

function u16(b: Buffer, o: number): number {
  return (b[o]! << 8) | b[o + 1]!;
}

function u32(b: Buffer, o: number): number {
  return ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
}

/**
 * Decodes the link-layer frame buf[start, end) (captured from `wireLength` bytes) into `out`.
 * Returns null when `out` holds a TCP segment, else why not.
 */
export function decodePacket(
  buf: Buffer,
  start: number,
  end: number,
  wireLength: number,
  linkType: number,
  timeMs: number,
  out: TcpSegment,
): PacketSkip | null {
  // Bytes the capture cut off the end of the frame: an IP packet reaching into them is truncated.
  const cut = Math.max(0, wireLength - (end - start));
  let o = start;
  let type: number;
  switch (linkType) {
    case LINKTYPE_ETHERNET:
      if (end - o < ETHERNET_HEADER) return 'truncated';
      type = u16(buf, o + 12);
      o += ETHERNET_HEADER;
      break;
    case LINKTYPE_LINUX_SLL:
      if (end - o < SLL_HEADER) return 'truncated';
      type = u16(buf, o + SLL_PROTOCOL_OFFSET);
      o += SLL_HEADER;
      break;
    case LINKTYPE_LINUX_SLL2:
      if (end - o < SLL2_HEADER) return 'truncated';
      type = u16(buf, o);
      o += SLL2_HEADER;
      break;
    case LINKTYPE_NULL:
    case LINKTYPE_LOOP: {
      if (end - o < NULL_HEADER) return 'truncated';
      // NULL is in the capturing host's byte order, which need not be the file's: a family is
      // small, so the order that gives a small number is the right one.
      const be = u32(buf, o);
      const family = linkType === LINKTYPE_LOOP || be <= 0xffff ? be : buf.readUInt32LE(o);
      o += NULL_HEADER;
      if (family === AF_INET) type = ETHERTYPE_IPV4;
      else if (AF_INET6_VALUES.has(family)) type = ETHERTYPE_IPV6;
      else return 'not_ip';
      break;
    }
    case LINKTYPE_RAW:
      if (end - o < 1) return 'truncated';
      type = buf[o]! >> 4 === 6 ? ETHERTYPE_IPV6 : ETHERTYPE_IPV4;
      break;
    case LINKTYPE_IPV4:
      type = ETHERTYPE_IPV4;
      break;
    case LINKTYPE_IPV6:
      type = ETHERTYPE_IPV6;
      break;
    default:
      return 'link_type';
  }
  // VLAN tags (also inside cooked captures, where the kernel left them in the payload).
  while (VLAN_TYPES.has(type)) {
    if (end - o < VLAN_TAG) return 'truncated';
    type = u16(buf, o + 2);
    o += VLAN_TAG;
  }
  out.timeMs = timeMs;
  if (type === ETHERTYPE_IPV4) return ipv4(buf, o, end, cut, out);
  if (type === ETHERTYPE_IPV6) return ipv6(buf, o, end, cut, out);
  return 'not_ip';
}

function ipv4(b: Buffer, o: number, end: number, cut: number, out: TcpSegment): PacketSkip | null {
  if (end - o < IPV4_MIN_HEADER) return 'truncated';
  const vihl = b[o]!;
  const ihl = (vihl & 0x0f) * 4;
  if (vihl >> 4 !== 4 || ihl < IPV4_MIN_HEADER) return 'bad_header';
  const total = u16(b, o + 2);
  let ipEnd: number;
  if (total === 0) ipEnd = end;
  else {
    if (total < ihl) return 'bad_header';
    ipEnd = o + total;
    // Ethernet pads short frames: trailing bytes past the IP packet are not payload.
    if (ipEnd > end) return cut > 0 ? 'truncated' : 'bad_header';
  }
  const frag = u16(b, o + 6);
  if ((frag & (IPV4_MORE_FRAGMENTS | IPV4_FRAGMENT_OFFSET)) !== 0) return 'ip_fragment';
  if (b[o + 9] !== IP_PROTOCOL_TCP) return 'not_tcp';
  if (ipEnd - o < ihl) return 'truncated';
  out.family = 4;
  out.src0 = out.src1 = out.src2 = 0;
  out.dst0 = out.dst1 = out.dst2 = 0;
  out.src3 = u32(b, o + 12);
  out.dst3 = u32(b, o + 16);
  return tcp(b, o + ihl, ipEnd, cut, total === 0, out);
}

function ipv6(b: Buffer, o: number, end: number, cut: number, out: TcpSegment): PacketSkip | null {
  if (end - o < IPV6_HEADER) return 'truncated';
  if (b[o]! >> 4 !== 6) return 'bad_header';
  const payload = u16(b, o + 4);
  // Payload length 0: a jumbogram or segmentation offload; the frame's end is the packet's end.
  let ipEnd: number;
  if (payload === 0) ipEnd = end;
  else {
    ipEnd = o + IPV6_HEADER + payload;
    if (ipEnd > end) return cut > 0 ? 'truncated' : 'bad_header';
  }
  out.family = 6;
  out.src0 = u32(b, o + 8);
  out.src1 = u32(b, o + 12);
  out.src2 = u32(b, o + 16);
  out.src3 = u32(b, o + 20);
  out.dst0 = u32(b, o + 24);
  out.dst1 = u32(b, o + 28);
  out.dst2 = u32(b, o + 32);
  out.dst3 = u32(b, o + 36);
  let next = b[o + 6]!;
  let p = o + IPV6_HEADER;
  // Every extension header is at least 8 bytes, so this ends within the packet.
  for (;;) {
    if (next === IP_PROTOCOL_TCP) return tcp(b, p, ipEnd, cut, payload === 0, out);
    let len: number;
    if (IPV6_EIGHT_OCTET_EXTENSIONS.has(next)) {
      if (ipEnd - p < 2) return 'truncated';
      len = (b[p + 1]! + 1) * 8;
    } else if (next === IPV6_AH) {
      if (ipEnd - p < 2) return 'truncated';
      len = (b[p + 1]! + 2) * 4;
    } else if (next === IPV6_FRAGMENT) {
      if (ipEnd - p < IPV6_FRAGMENT_HEADER) return 'truncated';
      const f = u16(b, p + 2);
      // An atomic fragment (RFC 6946) is a whole packet with a fragment header: read on.
      if ((f & (IPV6_FRAGMENT_OFFSET_MASK | IPV6_MORE_FRAGMENTS)) !== 0) return 'ip_fragment';
      len = IPV6_FRAGMENT_HEADER;
    } else {
      return 'not_tcp';
    }
    if (ipEnd - p < len) return 'truncated';
    next = b[p]!;
    p += len;
  }
}

function tcp(b: Buffer, o: number, ipEnd: number, cut: number, openEnded: boolean, out: TcpSegment): PacketSkip | null {
  if (ipEnd - o < TCP_MIN_HEADER) return 'truncated';
  const offset = (b[o + 12]! >> 4) * 4;
  if (offset < TCP_MIN_HEADER) return 'bad_header';
  if (ipEnd - o < offset) return 'truncated';
  // When the IP length says nothing (0), a cut frame means the payload's end is unknown.
  if (openEnded && cut > 0) return 'truncated';
  out.srcPort = u16(b, o);
  out.dstPort = u16(b, o + 2);
  out.seq = u32(b, o + 4);
  out.ack = u32(b, o + 8);
  out.flags = b[o + 13]!;
  out.buf = b;
  out.start = o + offset;
  out.end = ipEnd;
  return null;
}
