// IP addresses, CIDRs and host:port endpoints as policy files write them. Written out rather than
// taken from node:net because the policy needs the bits (CIDR containment, host-bit checks,
// IPv4-mapped IPv6 folded onto IPv4), not just a yes/no.

import net from 'node:net';
import { UsageError } from '../modbus/errors.js';

/** Where to listen or connect: a host (IP address or hostname, IPv6 without brackets) and a port. */
export interface Endpoint {
  readonly host: string;
  readonly port: number;
}

/**
 * An IP address as four big-endian 32-bit words. IPv4 keeps its value in w3 (w0..w2 = 0), so both
 * families compare word by word; `family` keeps them apart.
 */
export interface IpAddress {
  readonly family: 4 | 6;
  readonly w0: number;
  readonly w1: number;
  readonly w2: number;
  readonly w3: number;
}

/**
 * A network: address with host bits clear, its prefix length within its own family, and the
 * prefix as four word masks (so matching a client is four ANDs).
 */
export interface Cidr extends IpAddress {
  readonly prefix: number;
  readonly m0: number;
  readonly m1: number;
  readonly m2: number;
  readonly m3: number;
}

function cidr(family: 4 | 6, a: IpAddress, prefix: number): Cidr {
  const p = family === 4 ? prefix + MAPPED_PREFIX_BITS : prefix;
  return {
    family,
    w0: a.w0,
    w1: a.w1,
    w2: a.w2,
    w3: a.w3,
    prefix,
    m0: wordMask(p),
    m1: wordMask(p - 32),
    m2: wordMask(p - 64),
    m3: wordMask(p - 96),
  };
}

const IPV4_BITS = 32;
const IPV6_BITS = 128;
const IPV6_GROUPS = 8;
const MAX_OCTET = 255;
const MAPPED_MARKER = 0xffff; // ::ffff:a.b.c.d (RFC 4291 §2.5.5.2)
/** Bits in front of the IPv4 part of an IPv4-mapped IPv6 address. */
const MAPPED_PREFIX_BITS = 96;
const MIN_PORT = 1;
const MAX_PORT = 65535;
const MAX_HOSTNAME_LENGTH = 253; // RFC 1035 §2.3.4
const HOSTNAME_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i; // RFC 1123 §2.1

const IPV4_RE = /^(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})$/;
const HEX_GROUP = /^[0-9a-f]{1,4}$/i;

/** Strict dotted quad: four decimal octets, no leading zeros (which some parsers read as octal). */
export function parseIpv4(s: string): number | null {
  const m = IPV4_RE.exec(s);
  if (m === null) return null;
  let v = 0;
  for (let i = 1; i <= 4; i++) {
    const octet = Number(m[i]);
    if (octet > MAX_OCTET) return null;
    v = v * 256 + octet;
  }
  return v;
}

/** RFC 4291 §2.2 text forms, including `::` and a trailing dotted quad. No zone index. */
export function parseIpv6(s: string): IpAddress | null {
  const halves = s.split('::');
  if (halves.length > 2) return null;
  // A dotted quad may only end the address: in the tail, or in the head when there is no `::`.
  const head = parseGroups(halves[0]!, halves.length === 1);
  const tail = halves.length === 2 ? parseGroups(halves[1]!, true) : [];
  if (head === null || tail === null) return null;
  const groups: number[] = [];
  if (halves.length === 2) {
    // `::` stands for at least one zero group.
    const missing = IPV6_GROUPS - head.length - tail.length;
    if (missing < 1) return null;
    groups.push(...head, ...new Array<number>(missing).fill(0), ...tail);
  } else {
    if (head.length !== IPV6_GROUPS) return null;
    groups.push(...head);
  }
  const word = (i: number): number => (groups[2 * i]! * 0x10000 + groups[2 * i + 1]!) >>> 0;
  return { family: 6, w0: word(0), w1: word(1), w2: word(2), w3: word(3) };
}

/** Colon-separated hex groups; the last may be a dotted quad (two groups) when `last` says it ends the address. */
function parseGroups(s: string, last: boolean): number[] | null {
  if (s === '') return [];
  const parts = s.split(':');
  const out: number[] = [];
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i]!;
    if (last && i === parts.length - 1 && p.includes('.')) {
      const v4 = parseIpv4(p);
      if (v4 === null) return null;
      out.push(v4 >>> 16, v4 & 0xffff);
    } else {
      if (!HEX_GROUP.test(p)) return null;
      out.push(parseInt(p, 16));
    }
  }
  return out;
}

function ipv4(v: number): IpAddress {
  return { family: 4, w0: 0, w1: 0, w2: 0, w3: v };
}

function isMapped(a: IpAddress): boolean {
  return a.family === 6 && a.w0 === 0 && a.w1 === 0 && a.w2 === MAPPED_MARKER;
}

/**
 * A client address as a socket reports it: IPv4, IPv6 (a `%zone` suffix is ignored), or IPv4-mapped
 * IPv6 (a dual-stack listener's view of an IPv4 client), which becomes the IPv4 address so IPv4
 * rules match it. Null when it is not an IP address.
 */
export function parseClientAddress(address: string): IpAddress | null {
  const v4 = parseIpv4(address);
  if (v4 !== null) return ipv4(v4);
  const zone = address.indexOf('%');
  const v6 = parseIpv6(zone < 0 ? address : address.slice(0, zone));
  if (v6 === null) return null;
  return isMapped(v6) ? ipv4(v6.w3) : v6;
}

/** Result of parsing a policy value: the value, or what is wrong with the text. */
export type Parsed<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly problem: string };

function ok<T>(value: T): Parsed<T> {
  return { ok: true, value };
}
function bad<T>(problem: string): Parsed<T> {
  return { ok: false, problem };
}

/**
 * An address or network in a rule's `sources`: `10.1.1.7`, `192.168.10.0/24`, `fd00::/64`.
 * Host bits must be clear (`192.168.10.5/24` is almost always a typo that would widen the rule).
 * An IPv4-mapped network (`::ffff:10.0.0.0/104`) becomes the IPv4 network it denotes.
 */
export function parseCidr(s: string): Parsed<Cidr> {
  const slash = s.indexOf('/');
  const addrText = slash < 0 ? s : s.slice(0, slash);
  const v4 = parseIpv4(addrText);
  const addr = v4 !== null ? ipv4(v4) : parseIpv6(addrText);
  if (addr === null) return bad('is not an IPv4 or IPv6 address');
  const familyBits = addr.family === 4 ? IPV4_BITS : IPV6_BITS;
  let prefix = familyBits;
  if (slash >= 0) {
    const lenText = s.slice(slash + 1);
    if (!/^\d{1,3}$/.test(lenText) || Number(lenText) > familyBits) {
      return bad(`has prefix length ${JSON.stringify(lenText)} (IPv${addr.family} allows 0..${familyBits})`);
    }
    prefix = Number(lenText);
  }
  const net = maskAddress(addr, prefix);
  if (!sameAddress(net, addr)) {
    return bad(`has host bits set (the network is ${formatIp(net)}/${prefix})`);
  }
  if (isMapped(net) && prefix >= MAPPED_PREFIX_BITS) return ok(cidr(4, ipv4(net.w3), prefix - MAPPED_PREFIX_BITS));
  return ok(cidr(net.family, net, prefix));
}

/** Mask of the `bits` leading bits of a 32-bit word (bits clamped to 0..32). */
function wordMask(bits: number): number {
  if (bits <= 0) return 0;
  if (bits >= IPV4_BITS) return 0xffffffff;
  return (0xffffffff << (IPV4_BITS - bits)) >>> 0;
}

/** The address with everything after `prefix` bits (within its family) cleared. */
function maskAddress(a: IpAddress, prefix: number): IpAddress {
  const p = a.family === 4 ? prefix + MAPPED_PREFIX_BITS : prefix;
  return {
    family: a.family,
    w0: (a.w0 & wordMask(p)) >>> 0,
    w1: (a.w1 & wordMask(p - 32)) >>> 0,
    w2: (a.w2 & wordMask(p - 64)) >>> 0,
    w3: (a.w3 & wordMask(p - 96)) >>> 0,
  };
}

function sameAddress(a: IpAddress, b: IpAddress): boolean {
  return a.family === b.family && a.w0 === b.w0 && a.w1 === b.w1 && a.w2 === b.w2 && a.w3 === b.w3;
}

/** Whether `a` lies in network `c`. Families never mix (IPv4-mapped clients are IPv4 already). */
export function cidrContains(c: Cidr, a: IpAddress): boolean {
  return (
    a.family === c.family &&
    ((a.w0 & c.m0) >>> 0) === c.w0 &&
    ((a.w1 & c.m1) >>> 0) === c.w1 &&
    ((a.w2 & c.m2) >>> 0) === c.w2 &&
    ((a.w3 & c.m3) >>> 0) === c.w3
  );
}

/** Canonical text: dotted quad, or RFC 5952 IPv6 (lowercase, longest zero run as `::`). */
export function formatIp(a: IpAddress): string {
  if (a.family === 4) {
    return [a.w3 >>> 24, (a.w3 >>> 16) & 0xff, (a.w3 >>> 8) & 0xff, a.w3 & 0xff].join('.');
  }
  if (isMapped(a)) return `::ffff:${formatIp(ipv4(a.w3))}`; // RFC 5952 §5
  const groups = [a.w0, a.w1, a.w2, a.w3].flatMap((w) => [w >>> 16, w & 0xffff]);
  let bestStart = -1;
  let bestLen = 1; // a single zero group is not compressed (RFC 5952 §4.2.2)
  for (let i = 0; i < IPV6_GROUPS; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < IPV6_GROUPS && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (g: number[]): string => g.map((x) => x.toString(16)).join(':');
  if (bestStart < 0) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLen))}`;
}

/**
 * `host:port`, `[IPv6]:port` or `hostname:port`, port 1..65535. A dotted-digits host must be a
 * valid IPv4 address (`999.1.1.1` is a typo, not a hostname); an IPv6 host needs brackets because
 * `::1:502` is ambiguous.
 */
export function parseEndpoint(s: string): Parsed<Endpoint> {
  let host: string;
  let portText: string;
  if (s.startsWith('[')) {
    const close = s.indexOf(']');
    if (close < 0 || s[close + 1] !== ':') return bad('has no port after the bracketed IPv6 address');
    host = s.slice(1, close);
    portText = s.slice(close + 2);
    if (parseIpv6(host) === null) return bad(`has ${JSON.stringify(host)} in brackets, which is not an IPv6 address`);
  } else {
    const colon = s.lastIndexOf(':');
    if (colon < 0) return bad('has no port');
    host = s.slice(0, colon);
    portText = s.slice(colon + 1);
    if (host.includes(':')) return bad('has an IPv6 address without brackets');
    if (host === '') return bad('has no host (0.0.0.0 means every IPv4 interface)');
    if (/^[0-9.]+$/.test(host)) {
      if (parseIpv4(host) === null) return bad(`has host ${JSON.stringify(host)}, which is not an IPv4 address`);
    } else if (!isHostname(host)) {
      return bad(`has host ${JSON.stringify(host)}, which is not a hostname`);
    }
  }
  if (!/^\d{1,5}$/.test(portText) || Number(portText) < MIN_PORT || Number(portText) > MAX_PORT) {
    return bad(`has port ${JSON.stringify(portText)}`);
  }
  return ok({ host, port: Number(portText) });
}

function isHostname(s: string): boolean {
  if (s.length > MAX_HOSTNAME_LENGTH) return false;
  const labels = s.endsWith('.') ? s.slice(0, -1).split('.') : s.split('.');
  return labels.every((l) => HOSTNAME_LABEL.test(l));
}

/** An endpoint given on the command line that `parseEndpoint` refuses. */
export class EndpointError extends UsageError {
  override readonly name = 'EndpointError';
  constructor(message: string) {
    super('ERR_ENDPOINT', message);
  }
}

/**
 * The same grammar as in a policy file, for a command-line option: throws EndpointError naming the
 * option (`what`), the value and what is wrong with it.
 */
export function endpointOption(value: string, what: string): Endpoint {
  const r = parseEndpoint(value);
  if (!r.ok) throw new EndpointError(`${what}: "${value}" ${r.problem}; expected HOST:PORT or [IPv6]:PORT with a port 1..65535`);
  return r.value;
}

/** `host:port`, with IPv6 addresses in brackets. */
export function formatEndpoint(host: string, port: number): string {
  return `${net.isIPv6(host) ? `[${host}]` : host}:${port}`;
}

/**
 * Whether two listen endpoints would fight over a port: same port and the same host, or one of
 * them the wildcard `::` (dual-stack: every address), or `0.0.0.0` against an IPv4 address or a
 * hostname (which may resolve to IPv4). Hostnames are compared as text; they are not resolved.
 */
export function listenConflict(a: Endpoint, b: Endpoint): boolean {
  if (a.port !== b.port) return false;
  const ha = hostAddress(a.host);
  const hb = hostAddress(b.host);
  if (ha === null && hb === null) return a.host.toLowerCase().replace(/\.$/, '') === b.host.toLowerCase().replace(/\.$/, '');
  if (isWildcard(ha, 6) || isWildcard(hb, 6)) return true;
  if (isWildcard(ha, 4)) return hb === null || hb.family === 4;
  if (isWildcard(hb, 4)) return ha === null || ha.family === 4;
  return ha !== null && hb !== null && sameAddress(ha, hb);
}

function hostAddress(host: string): IpAddress | null {
  const v4 = parseIpv4(host);
  if (v4 !== null) return ipv4(v4);
  const v6 = parseIpv6(host);
  return v6 === null ? null : isMapped(v6) ? ipv4(v6.w3) : v6;
}

function isWildcard(a: IpAddress | null, family: 4 | 6): boolean {
  return a !== null && a.family === family && a.w0 === 0 && a.w1 === 0 && a.w2 === 0 && a.w3 === 0;
}
