// Addresses, networks and endpoints as policy files write them.
import t from 'tap';
import { cidrContains, formatIp, listenConflict, parseCidr, parseClientAddress, parseEndpoint, parseIpv4, parseIpv6 } from '../policy/net.js';
import type { Cidr, IpAddress } from '../policy/net.js';

function cidr(s: string): Cidr {
  const r = parseCidr(s);
  if (!r.ok) throw new Error(`${s}: ${r.problem}`);
  return r.value;
}
function client(s: string): IpAddress {
  const a = parseClientAddress(s);
  if (a === null) throw new Error(s);
  return a;
}
const words = (a: IpAddress | null) => (a === null ? null : [a.family, a.w0, a.w1, a.w2, a.w3]);

void t.test('IPv4: strict dotted quads', (t) => {
  t.equal(parseIpv4('0.0.0.0'), 0);
  t.equal(parseIpv4('255.255.255.255'), 0xffffffff);
  t.equal(parseIpv4('10.1.2.3'), 0x0a010203);
  for (const bad of ['256.0.0.1', '1.2.3', '1.2.3.4.5', '01.2.3.4', '1.2.3.4 ', '1..2.3', '', 'a.b.c.d', '1.2.3.1000']) {
    t.equal(parseIpv4(bad), null, bad);
  }
  t.end();
});

void t.test('IPv6: RFC 4291 text forms', (t) => {
  t.strictSame(words(parseIpv6('::')), [6, 0, 0, 0, 0]);
  t.strictSame(words(parseIpv6('::1')), [6, 0, 0, 0, 1]);
  t.strictSame(words(parseIpv6('1::')), [6, 0x10000, 0, 0, 0]);
  t.strictSame(words(parseIpv6('fd00::a:b')), [6, 0xfd000000, 0, 0, 0x000a000b]);
  t.strictSame(words(parseIpv6('1:2:3:4:5:6:7:8')), [6, 0x00010002, 0x00030004, 0x00050006, 0x00070008]);
  t.strictSame(words(parseIpv6('FFFF:ffff::')), [6, 0xffffffff, 0, 0, 0]);
  t.strictSame(words(parseIpv6('::ffff:10.0.0.1')), [6, 0, 0, 0xffff, 0x0a000001]);
  t.strictSame(words(parseIpv6('64:ff9b::192.0.2.33')), [6, 0x0064ff9b, 0, 0, 0xc0000221]);
  for (const bad of ['1:2:3:4:5:6:7', '1:2:3:4:5:6:7:8:9', '1::2::3', '1:2:3:4:5:6:7::8', ':1::', '12345::', 'g::', '::1.2.3', '::1.2.3.4:5', '1.2.3.4::', 'fe80::1%eth0']) {
    t.equal(parseIpv6(bad), null, bad);
  }
  t.end();
});

void t.test('client addresses: IPv4, IPv6, IPv4-mapped folded onto IPv4, zones ignored', (t) => {
  t.strictSame(words(parseClientAddress('10.0.0.1')), [4, 0, 0, 0, 0x0a000001]);
  t.strictSame(words(parseClientAddress('::ffff:10.0.0.1')), [4, 0, 0, 0, 0x0a000001]);
  t.strictSame(words(parseClientAddress('::ffff:a00:1')), [4, 0, 0, 0, 0x0a000001]);
  t.strictSame(words(parseClientAddress('fe80::1%eth0')), [6, 0xfe800000, 0, 0, 1]);
  t.strictSame(words(parseClientAddress('::10.0.0.1')), [6, 0, 0, 0, 0x0a000001], 'IPv4-compatible (deprecated) stays IPv6');
  t.equal(parseClientAddress('localhost'), null);
  t.equal(parseClientAddress(''), null);
  t.end();
});

void t.test('CIDRs: host bits, prefix lengths, mapped networks', (t) => {
  t.match(cidr('10.0.0.0/8'), { family: 4, w3: 0x0a000000, prefix: 8 });
  t.match(cidr('10.0.0.7'), { family: 4, prefix: 32 });
  t.match(cidr('0.0.0.0/0'), { family: 4, prefix: 0 });
  t.match(cidr('fd00::/64'), { family: 6, w0: 0xfd000000, prefix: 64 });
  t.match(cidr('::/0'), { family: 6, prefix: 0 });
  t.match(cidr('::ffff:10.0.0.0/104'), { family: 4, w3: 0x0a000000, prefix: 8 }, 'a mapped network is the IPv4 network');
  t.match(cidr('::ffff:10.0.0.1'), { family: 4, w3: 0x0a000001, prefix: 32 });
  t.match(cidr('::fffe:0:0/95'), { family: 6, prefix: 95 }, 'a network only partly IPv4-mapped stays IPv6');
  t.strictSame(parseCidr('::ffff:0:0/95'), { ok: false, problem: 'has host bits set (the network is ::fffe:0:0/95)' });
  const problems: [string, string][] = [
    ['10.0.0.1/24', 'has host bits set (the network is 10.0.0.0/24)'],
    ['fd00::1/64', 'has host bits set (the network is fd00::/64)'],
    ['::ffff:10.0.0.1/104', 'has host bits set (the network is ::ffff:10.0.0.0/104)'],
    ['10.0.0.0/33', 'has prefix length "33" (IPv4 allows 0..32)'],
    ['fd00::/129', 'has prefix length "129" (IPv6 allows 0..128)'],
    ['10.0.0.0/08x', 'has prefix length "08x" (IPv4 allows 0..32)'],
    ['10.0.0.0/1000', 'has prefix length "1000" (IPv4 allows 0..32)'],
    ['10.0.0/8', 'is not an IPv4 or IPv6 address'],
  ];
  for (const [s, problem] of problems) t.strictSame(parseCidr(s), { ok: false, problem }, s);
  t.strictSame(parseCidr('1:2:3:4:5:6:7:9/127'), { ok: false, problem: 'has host bits set (the network is 1:2:3:4:5:6:7:8/127)' });
  t.end();
});

void t.test('CIDR containment never mixes families', (t) => {
  t.ok(cidrContains(cidr('10.0.0.0/8'), client('10.255.255.255')));
  t.notOk(cidrContains(cidr('10.0.0.0/8'), client('11.0.0.0')));
  t.ok(cidrContains(cidr('10.0.0.0/8'), client('::ffff:10.1.2.3')));
  t.ok(cidrContains(cidr('0.0.0.0/0'), client('1.2.3.4')));
  t.notOk(cidrContains(cidr('0.0.0.0/0'), client('::1')));
  t.notOk(cidrContains(cidr('::/0'), client('1.2.3.4')), '::/0 is every IPv6 address, not every address');
  t.ok(cidrContains(cidr('::/0'), client('fd00::1')));
  t.ok(cidrContains(cidr('fd00::/64'), client('fd00::ffff:ffff:ffff:ffff')));
  t.notOk(cidrContains(cidr('fd00::/64'), client('fd00:0:0:1::')));
  t.ok(cidrContains(cidr('fd00::/63'), client('fd00:0:0:1::')));
  t.ok(cidrContains(cidr('fd00::1:0:0:0/80'), client('fd00::1:0:ffff:ffff')));
  t.notOk(cidrContains(cidr('fd00::1:0:0:0/80'), client('fd00::2:0:0:0')));
  t.ok(cidrContains(cidr('::1'), client('::1')));
  t.notOk(cidrContains(cidr('::1'), client('::2')));
  t.ok(cidrContains(cidr('::ffff:10.0.0.0/120'), client('10.0.0.200')));
  t.end();
});

void t.test('formatting: dotted quads and RFC 5952', (t) => {
  const f = (s: string) => formatIp(parseIpv6(s)!);
  t.equal(formatIp({ family: 4, w0: 0, w1: 0, w2: 0, w3: 0xc0a80a05 }), '192.168.10.5');
  t.equal(f('0:0:0:0:0:0:0:0'), '::');
  t.equal(f('0:0:0:0:0:0:0:1'), '::1');
  t.equal(f('FD00:0:0:0:0:0:0:0'), 'fd00::');
  t.equal(f('1:0:0:2:0:0:0:3'), '1:0:0:2::3', 'the longest zero run');
  t.equal(f('1:0:0:2:0:0:3:4'), '1::2:0:0:3:4', 'the first of equal runs');
  t.equal(f('1:0:2:3:4:5:6:7'), '1:0:2:3:4:5:6:7', 'one zero group is not compressed');
  t.equal(f('1:2:3:4:5:6:7:8'), '1:2:3:4:5:6:7:8');
  t.equal(f('::ffff:10.0.0.1'), '::ffff:10.0.0.1');
  t.end();
});

void t.test('endpoints', (t) => {
  t.strictSame(parseEndpoint('0.0.0.0:502'), { ok: true, value: { host: '0.0.0.0', port: 502 } });
  t.strictSame(parseEndpoint('[::1]:5020'), { ok: true, value: { host: '::1', port: 5020 } });
  t.strictSame(parseEndpoint('plc-1.example.com:65535'), { ok: true, value: { host: 'plc-1.example.com', port: 65535 } });
  t.strictSame(parseEndpoint('plc:1'), { ok: true, value: { host: 'plc', port: 1 } });
  t.strictSame(parseEndpoint('PLC.:1'), { ok: true, value: { host: 'PLC.', port: 1 } });
  const problems: [string, string][] = [
    ['plc', 'has no port'],
    [':502', 'has no host (0.0.0.0 means every IPv4 interface)'],
    ['::1:502', 'has an IPv6 address without brackets'],
    ['[::1]', 'has no port after the bracketed IPv6 address'],
    ['[::1', 'has no port after the bracketed IPv6 address'],
    ['[1.2.3.4]:5', 'has "1.2.3.4" in brackets, which is not an IPv6 address'],
    ['1.2.3:5', 'has host "1.2.3", which is not an IPv4 address'],
    ['plc_1:5', 'has host "plc_1", which is not a hostname'],
    ['a..b:5', 'has host "a..b", which is not a hostname'],
    [`${'a'.repeat(64)}:5`, `has host "${'a'.repeat(64)}", which is not a hostname`],
    [`${'a.'.repeat(126)}ab:5`, `has host "${'a.'.repeat(126)}ab", which is not a hostname`],
    ['plc:0', 'has port "0"'],
    ['plc:65536', 'has port "65536"'],
    ['plc:123456', 'has port "123456"'],
    ['plc:', 'has port ""'],
    ['plc:80a', 'has port "80a"'],
  ];
  for (const [s, problem] of problems) t.strictSame(parseEndpoint(s), { ok: false, problem }, s);
  t.ok(parseEndpoint(`${'a.'.repeat(125)}abc:5`).ok, 'a 254-character name is too long, 253 is fine');
  t.end();
});

void t.test('listen conflicts', (t) => {
  const ep = (s: string) => {
    const r = parseEndpoint(s);
    if (!r.ok) throw new Error(s);
    return r.value;
  };
  const c = (a: string, b: string) => listenConflict(ep(a), ep(b)) && listenConflict(ep(b), ep(a));
  const none = (a: string, b: string) => !listenConflict(ep(a), ep(b)) && !listenConflict(ep(b), ep(a));
  t.ok(c('127.0.0.1:1', '127.0.0.1:1'));
  t.ok(none('127.0.0.1:1', '127.0.0.1:2'), 'different ports');
  t.ok(none('127.0.0.1:1', '127.0.0.2:1'));
  t.ok(c('0.0.0.0:1', '127.0.0.1:1'), '0.0.0.0 takes every IPv4 address');
  t.ok(c('0.0.0.0:1', 'plc.local:1'), 'and may take a hostname');
  t.ok(none('0.0.0.0:1', '[::1]:1'), 'but not IPv6');
  t.ok(c('[::]:1', '[::1]:1'), ':: takes everything');
  t.ok(c('[::]:1', '10.0.0.1:1'));
  t.ok(c('[::]:1', 'plc:1'));
  t.ok(c('[::1]:1', '[0:0::1]:1'), 'the same address written two ways');
  t.ok(c('[::ffff:127.0.0.1]:1', '127.0.0.1:1'));
  t.ok(c('plc.local:1', 'PLC.local.:1'), 'hostnames compare case-insensitively, trailing dot ignored');
  t.ok(none('plc.local:1', 'plc2.local:1'));
  t.ok(none('plc.local:1', '127.0.0.1:1'), 'a hostname is not resolved');
  t.end();
});
