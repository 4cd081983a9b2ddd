// The proxy over real sockets: a byte-level client → plcguard → a recording PLC.
import t, { type Test } from 'tap';
import { RawClient, hexOf, req } from './fixtures/raw-client.js';
import { adu, normalReply, startRawPlc, type RawPlc, type RawRequest } from './fixtures/raw-plc.js';
import { devicePolicy, startProxy, type TestProxy } from './fixtures/proxy.js';
import type { Session } from '../proxy/session.js';
import { reasonIndex } from '../proxy/stats.js';
import { AUDIT_TOTAL_BURST, AUDIT_TOTAL_RATE_PER_SECOND } from '../proxy/audit.js';

const READ_RULE = `    rules:
      - name: hmi-read
        units: [1]
        read:
          holding_registers: [0-99]
          coils: [0-15]
          discrete_inputs: [0-15]
          input_registers: [0-99]
      - name: setpoints
        units: [1]
        write:
          holding_registers:
            - 30
            - { addresses: 10-19, values: 0-1000 }
          coils: [0-7]
      - name: engineering
        units: [1]
        functions: [report_server_id, read_device_identification, { code: diagnostics, subfunctions: [0] }, 90]
`;

async function setup(t: Test, body = READ_RULE, extra = '', plcOpts: { maxConnections?: number } = {}): Promise<{ plc: RawPlc; proxy: TestProxy }> {
  const plc = await startRawPlc(plcOpts);
  const proxy = await startProxy(devicePolicy(plc.port, body, extra));
  t.teardown(async () => {
    await proxy.stop();
    await plc.close();
  });
  return { plc, proxy };
}

// Exception reply: tid, pid 0, length 3, unit, FC|0x80, code.
const exc = (tid: number, unit: number, fc: number, code: number): string => hexOf(adu(tid, unit, [fc | 0x80, code]));

void t.test('an allowed read passes byte for byte both ways', async (t) => {
  const { plc, proxy } = await setup(t);
  const c = await RawClient.connect(proxy.port);
  const request = req(0x1234, 1, [3, 0x00, 0x05, 0x00, 0x03]);
  c.send(request);
  const [resp] = await c.read();
  t.equal(hexOf(plc.requests[0]!.bytes), hexOf(request), 'PLC got the exact request bytes');
  t.equal(hexOf(resp!), hexOf(adu(0x1234, 1, [3, 6, 0, 5, 0, 6, 0, 7])), 'client got the exact response bytes');
  c.close();
});

void t.test('denials: exact exception bytes and nothing upstream', async (t) => {
  const { plc, proxy } = await setup(t);
  const c = await RawClient.connect(proxy.port);
  const cases: [string, Buffer, string][] = [
    ['write outside allowed addresses → 02', req(1, 1, [6, 0, 50, 0, 1]), exc(1, 1, 6, 2)],
    ['write value over bound → 03', req(2, 1, [6, 0, 10, 0x13, 0x88]), exc(2, 1, 6, 3)],
    ['read beyond range → 02', req(3, 1, [3, 0, 95, 0, 10]), exc(3, 1, 3, 2)],
    ['unit not allowed → 0A', req(4, 2, [3, 0, 0, 0, 1]), exc(4, 2, 3, 0x0a)],
    ['function not allowed → 01', req(5, 1, [8, 0, 4, 0, 0]), exc(5, 1, 8, 1)],
    ['quantity 0 → 03', req(6, 1, [3, 0, 0, 0, 0]), exc(6, 1, 3, 3)],
    ['FC ≥ 128 → 01', req(7, 1, [0x83, 0, 0, 0, 1]), exc(7, 1, 0x83, 1)],
    ['bad coil value → 03', req(8, 1, [5, 0, 1, 0x12, 0x34]), exc(8, 1, 5, 3)],
    ['unlisted vendor FC → 01', req(9, 1, [65, 1, 2]), exc(9, 1, 65, 1)],
  ];
  for (const [name, bytes, expected] of cases) {
    c.send(bytes);
    const [resp] = await c.read();
    t.equal(hexOf(resp!), expected, name);
  }
  t.equal(plc.connections, 0, 'the PLC was never even connected to');
  t.equal(plc.requests.length, 0);
  const denies = proxy.logs.filter((l) => l.event === 'deny');
  t.equal(denies.length, cases.length, 'one audit line per denial');
  t.match(denies[0], {
    device: 'plc',
    unit: 1,
    fc: 6,
    function: 'write_single_register',
    write: 'holding_registers 50',
    reason: 'address_not_allowed',
    exception: '0x02',
    action: 'exception',
  });
  t.match(denies[1], { reason: 'value_not_allowed', rule: 'setpoints' });
  c.close();
});

void t.test('allowed requests of every kind reach the PLC unchanged', async (t) => {
  const { plc, proxy } = await setup(t);
  const c = await RawClient.connect(proxy.port);
  const allowed: Buffer[] = [
    req(1, 1, [1, 0, 0, 0, 16]),
    req(2, 1, [2, 0, 0, 0, 16]),
    req(3, 1, [3, 0, 0, 0, 100]),
    req(4, 1, [4, 0, 99, 0, 1]),
    req(5, 1, [5, 0, 7, 0xff, 0]),
    req(6, 1, [6, 0, 30, 0xff, 0xff]),
    req(7, 1, [15, 0, 0, 0, 8, 1, 0xff]),
    req(8, 1, [16, 0, 10, 0, 2, 4, 0x03, 0xe8, 0, 0]),
    req(9, 1, [22, 0, 30, 0xff, 0, 0, 1]),
    req(10, 1, [17]),
    req(11, 1, [43, 14, 1, 0]),
    req(12, 1, [8, 0, 0, 0xab, 0xcd]),
    req(13, 1, [90, 0, 1, 2, 3]),
  ];
  for (const a of allowed) c.send(a);
  const responses = await c.read(allowed.length);
  t.equal(responses.length, allowed.length, 'one response per request');
  t.same(
    plc.requests.map((r) => hexOf(r.bytes)),
    allowed.map(hexOf),
    'PLC got each request byte for byte, in order',
  );
  t.same(responses.map(hexOf), plc.requests.map((r) => hexOf(normalReply(r))), 'client got each response unchanged');
  c.close();
});

void t.test('frames split into single bytes and coalesced pass the same', async (t) => {
  const { plc, proxy } = await setup(t);
  const c = await RawClient.connect(proxy.port);
  const a = req(1, 1, [3, 0, 1, 0, 2]);
  const b = req(2, 1, [6, 0, 11, 0, 5]);
  const denied = req(3, 1, [6, 0, 40, 0, 5]);
  await c.sendBytewise(Buffer.concat([a, denied, b]));
  const r1 = await c.read(3);
  t.same(r1.map(hexOf).sort(), [hexOf(normalReply({ bytes: a, tid: 1, unit: 1, fc: 3, connection: 0 })), hexOf(b), exc(3, 1, 6, 2)].sort());
  t.same(plc.requests.map((r) => hexOf(r.bytes)), [hexOf(a), hexOf(b)], 'only the allowed frames went upstream');
  c.send(Buffer.concat([a, b, a, b]));
  const r2 = await c.read(4);
  t.equal(r2.length, 4);
  // The second a and b reuse tids 1 and 2 while the first are awaited: toward the PLC they get the
  // next free ids (3, 4), so that no answer can be taken for another's; the rest is byte for byte.
  const retid = (f: Buffer, tid: number): Buffer => Buffer.concat([Buffer.from([0, tid]), f.subarray(2)]);
  t.equal(hexOf(plc.received[0]!), hexOf(Buffer.concat([a, b, a, b, retid(a, 3), retid(b, 4)])), 'the PLC byte stream is exactly the allowed frames');
  t.same(r2.map(hexOf), [a, b, a, b].map((f) => hexOf(normalReply({ bytes: f, tid: f.readUInt16BE(0), unit: 1, fc: f[7]!, connection: 0 }))), 'each answer under its client tid');
  c.close();
});

void t.test('a smuggled trailing frame inside a declared length is judged as one malformed frame', async (t) => {
  const { plc, proxy } = await setup(t);
  const c = await RawClient.connect(proxy.port);
  const fc16 = [16, 0, 50, 0, 1, 2, 0xde, 0xad];
  // FC3 whose MBAP length also covers an FC16: one frame of 6 + 14 bytes, PDU too long for FC3.
  const smuggled = req(7, 1, [3, 0, 0, 0, 1, ...fc16]);
  c.send(smuggled);
  const [resp] = await c.read();
  t.equal(hexOf(resp!), exc(7, 1, 3, 3), 'malformed FC3 → 03');
  t.equal(plc.connections, 0, 'nothing reached the PLC');
  t.match(proxy.logs.find((l) => l.event === 'deny'), { reason: 'malformed', violation: 'pdu_length' });
  c.close();
});

void t.test('a framing error closes the client connection', async (t) => {
  const { plc, proxy } = await setup(t);
  for (const bad of [
    [0, 1, 0, 1, 0, 6, 1, 3, 0, 0, 0, 1], // protocol id 1
    [0, 1, 0, 0, 0, 1, 1], // length 1
    [0, 1, 0, 0, 0xff, 0xff, 1], // length 65535
  ]) {
    const c = await RawClient.connect(proxy.port);
    c.send(bad);
    await c.closed;
    t.equal(c.received.length, 0, `no reply to ${Buffer.from(bad).toString('hex')}`);
  }
  t.equal(plc.connections, 0);
  t.equal(proxy.rt.server.stats.get('plc').framingErrors, 3);
});

void t.test('pipelined requests: in order, one PLC connection per client, never more', async (t) => {
  const { plc, proxy } = await setup(t);
  const clients = await Promise.all([1, 2, 3].map(() => RawClient.connect(proxy.port)));
  const n = 50;
  for (const [ci, c] of clients.entries()) {
    const batch: Buffer[] = [];
    for (let i = 0; i < n; i++) batch.push(req(ci * 1000 + i, 1, [3, 0, i, 0, 1]));
    c.send(Buffer.concat(batch));
  }
  const all = await Promise.all(clients.map((c) => c.read(n)));
  for (const [ci, rs] of all.entries()) {
    t.same(
      rs.map((r) => r.readUInt16BE(0)),
      Array.from({ length: n }, (_, i) => ci * 1000 + i),
      `client ${ci}: every response, in order`,
    );
    t.same(rs.map((r) => r.readUInt16BE(9)), Array.from({ length: n }, (_, i) => i), `client ${ci}: each its own data`);
  }
  t.equal(plc.connections, 3, 'exactly one PLC connection per client');
  t.equal(plc.maxConcurrent, 3);
  for (const c of clients) c.close();
  await Promise.all(clients.map((c) => c.closed));
});

void t.test('the PLC connection opens on the first allowed request and closes with the client', async (t) => {
  const { plc, proxy } = await setup(t);
  const c = await RawClient.connect(proxy.port);
  c.send(req(1, 1, [6, 0, 99, 0, 1])); // denied
  await c.read();
  t.equal(plc.connections, 0, 'a denied request opens nothing');
  c.send(req(2, 1, [3, 0, 0, 0, 1]));
  await c.read();
  t.equal(plc.connections, 1);
  const gone = new Promise<void>((resolve) => [...plc.open][0]!.on('close', () => resolve()));
  c.close();
  await gone;
  t.equal(plc.open.size, 0, 'PLC connection closed when the client left');
});

void t.test('PLC down → 0A; PLC slow → 0B; PLC reset → 0B and reconnect', async (t) => {
  const plc = await startRawPlc();
  const deadPort = plc.port;
  await plc.close();
  const down = await startProxy(devicePolicy(deadPort, READ_RULE, 'defaults:\n  limits: { reconnect_backoff_min_ms: 1, reconnect_backoff_max_ms: 1 }\n'));
  t.teardown(() => down.stop());
  const c = await RawClient.connect(down.port);
  c.send(req(1, 1, [3, 0, 0, 0, 1]));
  t.equal(hexOf((await c.read())[0]!), exc(1, 1, 3, 0x0a), 'refused → gateway path unavailable');
  c.close();

  const slow = await setup(t, READ_RULE, 'defaults:\n  limits: { response_timeout_ms: 50 }\n');
  slow.plc.respond = () => ({ hang: true });
  const s = await RawClient.connect(slow.proxy.port);
  s.send(req(2, 1, [3, 0, 0, 0, 1]));
  t.equal(hexOf((await s.read())[0]!), exc(2, 1, 3, 0x0b), 'no answer in time → gateway target failed');
  // The late answer is unsolicited now: dropped, never delivered.
  slow.plc.inject(normalReply(slow.plc.requests[0]!));
  slow.plc.respond = (r) => ({ send: normalReply(r) });
  s.send(req(3, 1, [3, 0, 7, 0, 1]));
  const [next] = await s.read();
  t.equal(next!.readUInt16BE(0), 3, 'the next response is the next request’s, not the late one');
  s.close();

  const reset = await setup(t, READ_RULE, 'defaults:\n  limits: { reconnect_backoff_min_ms: 1, reconnect_backoff_max_ms: 1 }\n');
  reset.plc.respond = () => ({ reset: true });
  const r = await RawClient.connect(reset.proxy.port);
  r.send(req(4, 1, [3, 0, 0, 0, 1]));
  t.equal(hexOf((await r.read())[0]!), exc(4, 1, 3, 0x0b), 'reset → 0B for what was outstanding');
  reset.plc.respond = (x) => ({ send: normalReply(x) });
  // After the 1 ms backoff (a connection that answered nothing counts as a failure).
  await new Promise((resolve) => setTimeout(resolve, 5));
  r.send(req(5, 1, [3, 0, 0, 0, 1]));
  t.equal(hexOf((await r.read())[0]!), hexOf(adu(5, 1, [3, 2, 0, 0])), 'reconnected on the next request');
  t.equal(reset.plc.connections, 2);
  t.same(reset.proxy.rt.server.stats.get('plc').upstreamErrors[3], 1, 'one reset counted');
  r.close();
});

void t.test('responses: unsolicited, mismatched and inconsistent', async (t) => {
  const { plc, proxy } = await setup(t);
  const c = await RawClient.connect(proxy.port);
  const stats = proxy.rt.server.stats.get('plc');
  plc.respond = (r) => {
    if (r.tid === 1) return { send: Buffer.concat([adu(999, 1, [3, 2, 0, 0]), normalReply(r)]) }; // unsolicited tid first
    if (r.tid === 2) return { send: Buffer.concat([adu(2, 9, [3, 2, 0, 0]), adu(2, 1, [4, 2, 0, 0]), normalReply(r)]) }; // wrong unit, wrong FC
    return { send: adu(r.tid, 1, [3, 4, 0, 0]) }; // byte count 4 for 1 register
  };
  c.send(req(1, 1, [3, 0, 0, 0, 1]));
  t.equal((await c.read())[0]!.readUInt16BE(0), 1);
  c.send(req(2, 1, [3, 0, 0, 0, 1]));
  const [r2] = await c.read();
  t.equal(hexOf(r2!), hexOf(adu(2, 1, [3, 2, 0, 0])), 'only the matching response delivered');
  c.send(req(3, 1, [3, 0, 0, 0, 1]));
  t.equal(hexOf((await c.read())[0]!), hexOf(adu(3, 1, [3, 4, 0, 0])), 'an inconsistent body is delivered as is');
  t.equal(stats.unsolicitedResponses, 3, 'unsolicited and mismatched responses dropped and counted');
  t.equal(stats.inconsistentResponses, 1);
  c.close();
});

void t.test('a slow PLC response split in pieces is forwarded as it arrives', async (t) => {
  const { plc, proxy } = await setup(t);
  const c = await RawClient.connect(proxy.port);
  plc.respond = (r) => {
    const full = normalReply(r);
    return { pieces: [full.subarray(0, 3), full.subarray(3, 9), full.subarray(9, 12), full.subarray(12)], gapMs: 20 };
  };
  c.send(req(1, 1, [3, 0, 0, 0, 4]));
  // Wait for the bytes that only a forwarded partial response can deliver before the last piece.
  while (c.received.length < 9) await new Promise<void>((resolve) => c.socket.once('data', () => resolve()));
  t.ok(c.received.length < 15, 'the head was delivered before the whole response had arrived');
  const [resp] = await c.read();
  t.equal(hexOf(resp!), hexOf(adu(1, 1, [3, 8, 0, 0, 0, 1, 0, 2, 0, 3])));
  c.close();
});

void t.test('a PLC closing mid-response closes the client (its stream would be corrupt)', async (t) => {
  const { plc, proxy } = await setup(t);
  const c = await RawClient.connect(proxy.port);
  plc.respond = (r, socket) => {
    socket.write(normalReply(r).subarray(0, 10));
    return { close: true };
  };
  c.send(req(1, 1, [3, 0, 0, 0, 4]));
  await c.closed;
  t.equal(hexOf(c.received), hexOf(adu(1, 1, [3, 8, 0, 0, 0, 1, 0, 2, 0, 3]).subarray(0, 10)));
});

void t.test('connection limits per device and per source', async (t) => {
  const { proxy } = await setup(t, READ_RULE, 'defaults:\n  limits: { max_connections: 3, max_connections_per_source: 2 }\n');
  const a = await RawClient.connect(proxy.port, '127.0.0.1');
  const b = await RawClient.connect(proxy.port, '127.0.0.1');
  const refused = await RawClient.connect(proxy.port, '127.0.0.1');
  await refused.closed;
  t.equal(refused.received.length, 0, 'third connection from one source refused');
  const other = await RawClient.connect(proxy.port, '127.0.0.2');
  const tooMany = await RawClient.connect(proxy.port, '127.0.0.3');
  await tooMany.closed;
  const stats = proxy.rt.server.stats.get('plc');
  t.same([...stats.refused.slice(1, 3)], [1, 1], 'one refusal per limit');
  t.same(
    proxy.logs.filter((l) => l.event === 'refused').map((l) => l.reason),
    ['max_connections_per_source', 'max_connections'],
  );
  other.send(req(1, 1, [3, 0, 0, 0, 1]));
  t.equal((await other.read())[0]!.readUInt16BE(0), 1, 'admitted connections work');
  for (const c of [a, b, other]) c.close();
});

void t.test('a source no rule matches is refused at connect', async (t) => {
  const { plc, proxy } = await setup(
    t,
    `    rules:
      - name: hmi
        sources: [10.9.9.9]
        read: { holding_registers: [0-9] }
`,
  );
  const c = await RawClient.connect(proxy.port);
  await c.closed;
  t.equal(plc.connections, 0);
  t.match(proxy.logs.find((l) => l.event === 'refused'), { reason: 'source_not_allowed', device: 'plc' });
});

void t.test('max outstanding: the rest is held, not dropped, and goes on as answers come', async (t) => {
  const { plc, proxy } = await setup(t, READ_RULE, 'defaults:\n  limits: { max_outstanding: 2 }\n');
  const held: (() => void)[] = [];
  plc.respond = (r, socket) => {
    held.push(() => socket.write(normalReply(r)));
    return { hang: true };
  };
  const c = await RawClient.connect(proxy.port);
  c.send(Buffer.concat([1, 2, 3, 4, 5].map((i) => req(i, 1, [3, 0, i, 0, 1]))));
  await plc.waitForRequests(2);
  t.equal(plc.requests.length, 2, 'only max_outstanding requests are at the PLC');
  held.shift()!();
  await plc.waitForRequests(3);
  t.equal(plc.requests.length, 3, 'one answer lets one more through');
  plc.respond = (r) => ({ send: normalReply(r) });
  while (held.length) held.shift()!();
  const rs = await c.read(5);
  t.same(rs.map((r) => r.readUInt16BE(0)), [1, 2, 3, 4, 5]);
  c.close();
});

void t.test('slowloris: a frame not completed in time closes the connection', async (t) => {
  const { plc, proxy } = await setup(t, READ_RULE, 'defaults:\n  limits: { frame_timeout_ms: 100 }\n');
  const c = await RawClient.connect(proxy.port);
  c.send([0, 1, 0, 0, 0, 6, 1, 3]);
  await c.closed;
  t.equal(c.received.length, 0);
  t.equal(plc.connections, 0);
  t.equal(proxy.rt.server.stats.get('plc').frameTimeouts, 1);
  t.match(proxy.logs.find((l) => l.event === 'frame_timeout'), { partial_bytes: 8 });
});

void t.test('idle clients are closed after the idle timeout', async (t) => {
  const { proxy } = await setup(t, READ_RULE, 'defaults:\n  limits: { idle_timeout_ms: 100 }\n');
  const c = await RawClient.connect(proxy.port);
  c.send(req(1, 1, [3, 0, 0, 0, 1]));
  await c.read();
  await c.closed;
  t.ok(proxy.logs.some((l) => l.event === 'idle_timeout'));
});

void t.test('a live policy change applies to an open connection from its next request', async (t) => {
  const { plc, proxy } = await setup(t);
  const c = await RawClient.connect(proxy.port);
  c.send(req(1, 1, [6, 0, 50, 0, 1]));
  t.equal(hexOf((await c.read())[0]!), exc(1, 1, 6, 2), 'denied before');
  await proxy.rewrite(
    devicePolicy(
      plc.port,
      `    rules:
      - name: widened
        units: [1]
        write: { holding_registers: [50] }
`,
    ),
  );
  c.send(req(2, 1, [6, 0, 50, 0, 1]));
  t.equal(hexOf((await c.read())[0]!), hexOf(req(2, 1, [6, 0, 50, 0, 1])), 'allowed after, on the same connection');
  c.send(req(3, 1, [3, 0, 0, 0, 1]));
  t.equal(hexOf((await c.read())[0]!), exc(3, 1, 3, 1), 'what the new policy drops is denied');
  await proxy.rewrite('version: 1\ndevices: [ { name: plc, listen: nope } ]\n');
  t.match(proxy.logs.at(-1), { event: 'policy_rejected', kept: 'last good policy' });
  t.match(String((proxy.logs.at(-1)!.errors as string[])[0]), /policy-\d+\.yaml:2:\d+: /);
  c.send(req(4, 1, [6, 0, 50, 0, 1]));
  t.equal(hexOf((await c.read())[0]!), hexOf(req(4, 1, [6, 0, 50, 0, 1])), 'an invalid edit keeps the last good policy');
  c.close();
});

void t.test('monitor mode forwards everything and reports would-denials', async (t) => {
  const { plc, proxy } = await setup(t, READ_RULE, 'defaults:\n  mode: monitor\n');
  const c = await RawClient.connect(proxy.port);
  const w = req(1, 1, [6, 0, 50, 0, 1]);
  c.send(w);
  t.equal(hexOf((await c.read())[0]!), hexOf(w));
  t.equal(hexOf(plc.requests[0]!.bytes), hexOf(w));
  t.match(proxy.logs.find((l) => l.event === 'would_deny'), { reason: 'address_not_allowed', action: 'forward' });
  const stats = proxy.rt.server.stats.get('plc');
  t.same([stats.wouldDenials[reasonIndex('address_not_allowed')], stats.denials[reasonIndex('address_not_allowed')]], [1, 0], 'counted as a would-deny, not a denial');
  c.close();
});

void t.test('monitor mode: would-deny lines from any number of sources stay within the process budget', async (t) => {
  const { plc, proxy } = await setup(t, READ_RULE, 'defaults:\n  mode: monitor\n');
  const SOURCES = 20;
  const PER_SOURCE = 30;
  const started = performance.now();
  const clients = await Promise.all(Array.from({ length: SOURCES }, (_, i) => RawClient.connect(proxy.port, `127.0.10.${i + 1}`)));
  const w = (tid: number): Buffer => req(tid, 1, [6, 0, 50, 0, 1]);
  for (const c of clients) c.send(Buffer.concat(Array.from({ length: PER_SOURCE }, (_, i) => w(i + 1))));
  const got = await Promise.all(clients.map((c) => c.read(PER_SOURCE)));
  const seconds = (performance.now() - started) / 1000;
  t.ok(got.every((r) => r.length === PER_SOURCE), 'everything forwarded and answered');
  t.equal(plc.requests.length, SOURCES * PER_SOURCE);
  const lines = proxy.logs.filter((l) => l.event === 'would_deny').length;
  const budget = AUDIT_TOTAL_BURST + Math.ceil(AUDIT_TOTAL_RATE_PER_SECOND * seconds);
  t.ok(lines <= budget, `${lines} would-deny lines for ${SOURCES * PER_SOURCE} in ${seconds.toFixed(1)} s (budget ${budget})`);
  t.equal(lines + proxy.rt.server.stats.get('plc').auditSuppressed, SOURCES * PER_SOURCE, 'the rest counted');
  for (const c of clients) c.close();
});

void t.test('on_deny drop answers nothing; on_deny close closes', async (t) => {
  const drop = await setup(t, READ_RULE, 'defaults:\n  on_deny: drop\n');
  const c = await RawClient.connect(drop.proxy.port);
  c.send(Buffer.concat([req(1, 1, [6, 0, 50, 0, 1]), req(2, 1, [3, 0, 0, 0, 1])]));
  const [r] = await c.read();
  t.equal(r!.readUInt16BE(0), 2, 'the denied request got no reply; the next one its answer');
  c.close();
  const close = await setup(t, READ_RULE, 'defaults:\n  on_deny: close\n');
  const d = await RawClient.connect(close.proxy.port);
  d.send(Buffer.concat([req(1, 1, [6, 0, 50, 0, 1]), req(2, 1, [3, 0, 0, 0, 1])]));
  await d.closed;
  t.equal(d.received.length, 0);
  t.equal(close.plc.requests.length, 0, 'nothing after the denied frame went upstream either');
});

void t.test('a half-closed client still gets its outstanding answers', async (t) => {
  const { plc, proxy } = await setup(t);
  plc.respond = (r) => ({ pieces: [normalReply(r)], gapMs: 0 });
  const c = await RawClient.connect(proxy.port);
  c.send(Buffer.concat([req(1, 1, [3, 0, 0, 0, 1]), req(2, 1, [3, 0, 1, 0, 1])]));
  c.socket.end();
  const rs = await c.read(2);
  t.same(rs.map((r) => r.readUInt16BE(0)), [1, 2]);
  await c.closed;
});

void t.test('a client that never reads its responses stops being read (bounded buffering)', async (t) => {
  const { plc, proxy } = await setup(t);
  const c = await RawClient.connect(proxy.port);
  c.socket.pause();
  const one = req(1, 1, [3, 0, 0, 0, 100]);
  const n = 50_000; // ≈ 10 MB of responses: more than socket buffers hold
  let sent = 0;
  const write = (): void => {
    while (sent < n) {
      sent++;
      if (!c.socket.write(one)) {
        c.socket.once('drain', write);
        return;
      }
    }
  };
  write();
  // Wait (event-loop turns, bounded) until the proxy stops reading the client because the
  // client isn't reading: from then on no more requests can reach the PLC.
  const session = (): Session | undefined => proxy.rt.server.sessions()[0];
  for (let turns = 0; !(session()?.waitingForClient ?? false); turns++) {
    if (turns > 1e6) {
      t.fail('the proxy never applied backpressure');
      break;
    }
    await new Promise((r) => setImmediate(r));
  }
  const seen = plc.requests.length;
  t.ok(seen < n, `the PLC saw ${seen} of ${n} requests while the client read nothing`);
  c.socket.resume();
  const rs = await c.read(n);
  t.equal(rs.length, n, 'once the client reads, everything is answered');
  t.equal(plc.requests.length, n);
  c.close();
});

void t.test('rate limits per source: exception 06 past the burst, writes counted apart', async (t) => {
  const { plc, proxy } = await setup(
    t,
    READ_RULE,
    'defaults:\n  rate_limit: { requests_per_second: 1, writes_per_second: 1, burst: 3 }\n',
  );
  const a = await RawClient.connect(proxy.port);
  const b = await RawClient.connect(proxy.port);
  // Two connections, one source: one bucket. Three requests fit the burst, the fourth doesn't.
  a.send(Buffer.concat([req(1, 1, [3, 0, 0, 0, 1]), req(2, 1, [3, 0, 0, 0, 1])]));
  t.same((await a.read(2)).map((r) => r.readUInt16BE(0)), [1, 2]);
  b.send(req(3, 1, [6, 0, 10, 0, 1]));
  t.equal((await b.read())[0]!.readUInt16BE(0), 3, 'a write within the burst passes');
  b.send(req(4, 1, [3, 0, 0, 0, 1]));
  t.equal(hexOf((await b.read())[0]!), exc(4, 1, 3, 6), 'over the rate → server busy');
  t.equal(plc.requests.length, 3, 'the limited request never reached the PLC');
  t.match(proxy.logs.find((l) => l.reason === 'rate_limited'), { event: 'deny', exception: '0x06' });
  t.equal(proxy.rt.server.stats.get('plc').denials[reasonIndex('rate_limited')], 1, 'counted by reason');
  for (const c of [a, b]) c.close();
});

void t.test('a PLC sending garbage: its connection is dropped, 0B for what was outstanding', async (t) => {
  const { plc, proxy } = await setup(t, READ_RULE, 'defaults:\n  limits: { reconnect_backoff_min_ms: 1, reconnect_backoff_max_ms: 1 }\n');
  plc.respond = () => ({ send: Buffer.from([0, 1, 0, 7, 0, 3, 1, 3, 0]) }); // protocol id 7
  const c = await RawClient.connect(proxy.port);
  c.send(Buffer.concat([req(1, 1, [3, 0, 0, 0, 1]), req(2, 1, [3, 0, 1, 0, 1])]));
  const rs = await c.read(2);
  t.same(rs.map(hexOf), [exc(1, 1, 3, 0x0b), exc(2, 1, 3, 0x0b)]);
  t.equal(proxy.rt.server.stats.get('plc').upstreamErrors[5], 1, 'counted as a framing error of the PLC');
  c.close();
});

void t.test('max_buffered_bytes below a batch: the client waits for each write to the PLC, nothing lost', async (t) => {
  const { proxy } = await setup(
    t,
    '    rules:\n      - write: { holding_registers: [0-199] }\n',
    'defaults:\n  limits: { max_buffered_bytes: 300, max_outstanding: 4096 }\n',
  );
  const c = await RawClient.connect(proxy.port);
  const write = (tid: number): Buffer => req(tid, 1, [16, 0, 0, 0, 123, 246, ...new Array<number>(246).fill(7)]);
  // 4,096 frames of 260 bytes: every batch plcguard writes to the PLC is over the limit, so it
  // stops reading its client until each one has gone out.
  const n = 4096;
  c.send(Buffer.concat(Array.from({ length: n }, (_, i) => write(i))));
  const rs = await c.read(n);
  t.equal(rs.length, n, 'every request answered');
  t.same(
    rs.map((r) => r.readUInt16BE(0)),
    Array.from({ length: n }, (_, i) => i),
    'in order',
  );
  c.close();
});

void t.test('frame timeout: each frame gets its own deadline from its first byte', async (t) => {
  const { proxy } = await setup(t, READ_RULE, 'defaults:\n  limits: { frame_timeout_ms: 300 }\n');
  const c = await RawClient.connect(proxy.port);
  const a = req(1, 1, [3, 0, 0, 0, 1]);
  const b = req(2, 1, [3, 0, 1, 0, 1]);
  c.send(a.subarray(0, 11));
  // Frame a completes late in its window and frame b starts: b's deadline runs from now.
  await new Promise((resolve) => setTimeout(resolve, 200));
  c.send(Buffer.concat([a.subarray(11), b.subarray(0, 5)]));
  t.equal((await c.read())[0]!.readUInt16BE(0), 1, 'a answered');
  await c.closed;
  t.equal(proxy.rt.server.stats.get('plc').frameTimeouts, 1, 'b timed out on its own deadline');
});

void t.test('idle timeout: not while waiting on the PLC or on the rest of a frame', async (t) => {
  const { plc, proxy } = await setup(t, READ_RULE, 'defaults:\n  limits: { idle_timeout_ms: 100, response_timeout_ms: 400, frame_timeout_ms: 400 }\n');
  plc.respond = () => ({ hang: true });
  const waiting = await RawClient.connect(proxy.port);
  waiting.send(req(1, 1, [3, 0, 0, 0, 1]));
  t.equal(hexOf((await waiting.read())[0]!), exc(1, 1, 3, 0x0b), 'the PLC timed out (0B), not the idle client');
  const partial = await RawClient.connect(proxy.port);
  partial.send(req(2, 1, [3, 0, 0, 0, 1]).subarray(0, 9));
  await partial.closed;
  t.equal(proxy.rt.server.stats.get('plc').frameTimeouts, 1, 'a half-sent frame ends by the frame timeout');
  waiting.close();
});

void t.test('responses out of order are matched by transaction id', async (t) => {
  const { plc, proxy } = await setup(t);
  let first: RawRequest | null = null;
  plc.respond = (r, socket) => {
    if (first === null) {
      first = r;
      return { hang: true };
    }
    // Answer the second request first, then the first.
    socket.write(Buffer.concat([normalReply(r), normalReply(first)]));
    return { hang: true };
  };
  const c = await RawClient.connect(proxy.port);
  c.send(Buffer.concat([req(1, 1, [3, 0, 1, 0, 1]), req(2, 1, [3, 0, 2, 0, 1])]));
  const rs = await c.read(2);
  t.same(rs.map((r) => [r.readUInt16BE(0), r.readUInt16BE(9)]), [[2, 2], [1, 1]], 'each answer to its own request');
  c.close();
});
