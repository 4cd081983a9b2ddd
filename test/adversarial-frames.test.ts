// Hostile and broken request bytes at a real session, over real sockets, with a recording PLC
// behind: each malformed request (quantities past the spec's limits, byte counts and PDU lengths
// that disagree, ranges past the address space, frames hidden inside a declared length, unknown
// and exception-flagged function codes, units the policy doesn't name), each framing error (a
// protocol id other than 0, a length outside 2..254) and truncated or half-closed streams, each
// with its exact outcome, then ≥ 100,000 seeded random and mutated frames checked against an
// independent model of the wire (test/fixtures/invariants.ts).
// ADVERSARIAL_SEED=<n> ADVERSARIAL_FRAMES=<n> replays the random part.
import t, { type Test } from 'tap';
import { RawClient, hexOf, req } from './fixtures/raw-client.js';
import { normalReply, type RawPlc } from './fixtures/raw-plc.js';
import type { TestProxy } from './fixtures/proxy.js';
import { Random } from './fixtures/random.js';
import {
  DEVICE,
  Ledger,
  PROBE_RULE,
  PolicyOracle,
  StreamModel,
  checkInvariants,
  exceptionFor,
  malformation,
  plcReply,
  policyOf,
  startCase,
  upstreamFrames,
} from './fixtures/invariants.js';
import { until, within } from '../bench/lib/wait.js';

const SEED = Number(process.env.ADVERSARIAL_SEED ?? 0xad5e_0008);
const FRAMES = Number(process.env.ADVERSARIAL_FRAMES ?? 100_000);

/** Every table and function allowed on unit 1: what is left to deny is structure alone. */
const OPEN_RULES = `    rules:
      - name: everything
        units: [1]
        read: { coils: [0-65535], discrete_inputs: [0-65535], holding_registers: [0-65535], input_registers: [0-65535] }
        write: { coils: [0-65535], holding_registers: [0-65535] }
        functions: [read_exception_status, diagnostics, get_comm_event_counter, get_comm_event_log, report_server_id,
                    read_file_record, write_file_record, encapsulated_interface_transport]
`;
/** A frame timeout far beyond the test: a close can only come from the framing check. */
const NO_FRAME_TIMEOUT = 'defaults:\n  limits: { frame_timeout_ms: 600000 }\n';

const setup = (t: Test, rules: string, extra = NO_FRAME_TIMEOUT): Promise<{ plc: RawPlc; proxy: TestProxy }> => startCase(t, rules, extra);

const w16 = (n: number): number[] => [(n >> 8) & 0xff, n & 0xff];
const bytes = (n: number, b = 0): number[] => Array.from({ length: n }, () => b);
/** An ADU with every header field as given (req() always writes protocol 0 and the true length). */
const rawAdu = (tid: number, pid: number, length: number, unit: number, pdu: number[]): Buffer =>
  Buffer.from([...w16(tid), ...w16(pid), ...w16(length), unit, ...pdu]);

// ---- the malformed cases: exact outcomes ----

interface Case {
  name: string;
  frame: Buffer;
  /** Exception code expected, or 'forward' (the PLC's answer, and the frame reaches the PLC). */
  outcome: number | 'forward';
}

let tid = 0x100;
const c = (name: string, pdu: number[], outcome: number | 'forward', unit = 1): Case => ({ name, frame: req(tid++, unit, pdu), outcome });
const ILLEGAL_FUNCTION = 0x01;
const ILLEGAL_ADDRESS = 0x02;
const ILLEGAL_VALUE = 0x03;
const PATH_UNAVAILABLE = 0x0a;

const CASES: Case[] = [
  // Quantity 0 and spec limit + 1 for each FC with a quantity (MB-AP §6.1–6.17) → 03; the limit
  // itself passes.
  c('FC1 quantity 0', [1, 0, 0, ...w16(0)], ILLEGAL_VALUE),
  c('FC1 quantity 2001', [1, 0, 0, ...w16(2001)], ILLEGAL_VALUE),
  c('FC1 quantity 2000', [1, 0, 0, ...w16(2000)], 'forward'),
  c('FC2 quantity 0', [2, 0, 0, ...w16(0)], ILLEGAL_VALUE),
  c('FC2 quantity 2001', [2, 0, 0, ...w16(2001)], ILLEGAL_VALUE),
  c('FC2 quantity 2000', [2, 0, 0, ...w16(2000)], 'forward'),
  c('FC3 quantity 0', [3, 0, 0, ...w16(0)], ILLEGAL_VALUE),
  c('FC3 quantity 126', [3, 0, 0, ...w16(126)], ILLEGAL_VALUE),
  c('FC3 quantity 125', [3, 0, 0, ...w16(125)], 'forward'),
  c('FC4 quantity 0', [4, 0, 0, ...w16(0)], ILLEGAL_VALUE),
  c('FC4 quantity 126', [4, 0, 0, ...w16(126)], ILLEGAL_VALUE),
  c('FC4 quantity 125', [4, 0, 0, ...w16(125)], 'forward'),
  c('FC15 quantity 0', [15, 0, 0, ...w16(0), 0], ILLEGAL_VALUE),
  c('FC15 quantity 1969 (byte count 247)', [15, 0, 0, ...w16(1969), 247, ...bytes(247, 0xff)], ILLEGAL_VALUE),
  c('FC15 quantity 1968', [15, 0, 0, ...w16(1968), 246, ...bytes(246, 0x55)], 'forward'),
  c('FC16 quantity 0', [16, 0, 0, ...w16(0), 0], ILLEGAL_VALUE),
  // 124 registers don't fit a PDU: the quantity is judged before the data that can't be there.
  c('FC16 quantity 124 (PDU 253)', [16, 0, 0, ...w16(124), 248, ...bytes(247, 1)], ILLEGAL_VALUE),
  c('FC16 quantity 123', [16, 0, 0, ...w16(123), 246, ...bytes(246, 1)], 'forward'),
  c('FC23 read quantity 0', [23, 0, 0, ...w16(0), 0, 0, ...w16(1), 2, 0, 1], ILLEGAL_VALUE),
  c('FC23 read quantity 126', [23, 0, 0, ...w16(126), 0, 0, ...w16(1), 2, 0, 1], ILLEGAL_VALUE),
  c('FC23 write quantity 0', [23, 0, 0, ...w16(1), 0, 0, ...w16(0), 0], ILLEGAL_VALUE),
  c('FC23 write quantity 122', [23, 0, 0, ...w16(1), 0, 0, ...w16(122), 244, ...bytes(243, 1)], ILLEGAL_VALUE),
  c('FC23 read 125, write 121', [23, 0, 0, ...w16(125), 0, 0, ...w16(121), 242, ...bytes(242, 2)], 'forward'),
  // Byte count inconsistent with the quantity → 03.
  c('FC15 quantity 8, byte count 2', [15, 0, 0, ...w16(8), 2, 0xff, 0], ILLEGAL_VALUE),
  c('FC16 quantity 2, byte count 3', [16, 0, 0, ...w16(2), 3, 0, 1, 2], ILLEGAL_VALUE),
  c('FC23 write quantity 1, byte count 4', [23, 0, 0, ...w16(1), 0, 0, ...w16(1), 4, 0, 1, 0, 2], ILLEGAL_VALUE),
  c('FC20 byte count 6 (below one sub-request)', [20, 6, 6, 0, 1, 0, 0, 0], ILLEGAL_VALUE),
  c('FC21 byte count 8 (below one register)', [21, 8, 6, 0, 1, 0, 0, 0, 1, 0], ILLEGAL_VALUE),
  // PDU length differs from what the function code requires (the MBAP length is consistent) → 03.
  c('FC3 PDU 7 (2 extra bytes)', [3, 0, 0, 0, 1, 0xde, 0xad], ILLEGAL_VALUE),
  c('FC3 PDU 4', [3, 0, 0, 0], ILLEGAL_VALUE),
  c('FC6 PDU 4', [6, 0, 1, 0], ILLEGAL_VALUE),
  c('FC16 data one byte short', [16, 0, 0, ...w16(2), 4, 0, 1, 0], ILLEGAL_VALUE),
  c('FC16 PDU 253 (one byte past 123 registers)', [16, 0, 0, ...w16(123), 246, ...bytes(247, 1)], ILLEGAL_VALUE),
  c('FC22 PDU 6', [22, 0, 1, 0xff, 0, 0], ILLEGAL_VALUE),
  c('FC24 PDU 4', [24, 0, 1, 0], ILLEGAL_VALUE),
  c('FC7 with a data byte', [7, 0], ILLEGAL_VALUE),
  c('FC11 with data', [11, 0, 0], ILLEGAL_VALUE),
  c('FC12 with data', [12, 1], ILLEGAL_VALUE),
  c('FC17 with data', [17, 0, 0, 0], ILLEGAL_VALUE),
  c('FC8 sub 1 with 3 data bytes', [8, 0, 1, 0, 0, 0], ILLEGAL_VALUE),
  c('FC8 sub 0 with an odd data length', [8, 0, 0, 1, 2, 3], ILLEGAL_VALUE),
  c('FC43/14 read device id code 5', [43, 14, 5, 0], ILLEGAL_VALUE),
  c('FC43/14 PDU 3', [43, 14, 1], ILLEGAL_VALUE),
  c('FC5 coil value 0x1234', [5, 0, 1, 0x12, 0x34], ILLEGAL_VALUE),
  // Ranges past the address space, and file references the spec rules out → 02.
  c('FC3 start 65535 quantity 2', [3, 0xff, 0xff, 0, 2], ILLEGAL_ADDRESS),
  c('FC16 start 65535 quantity 2', [16, 0xff, 0xff, 0, 2, 4, 0, 1, 0, 2], ILLEGAL_ADDRESS),
  c('FC20 reference type 5', [20, 7, 5, 0, 1, 0, 0, 0, 1], ILLEGAL_ADDRESS),
  // A trailing frame hidden inside a declared length is part of one malformed frame → 03, and
  // the hidden frame never reaches the PLC on its own.
  c('FC3 hiding an FC16', [3, 0, 0, 0, 1, ...req(0x999, 1, [16, 0, 50, 0, 1, 2, 0xde, 0xad])], ILLEGAL_VALUE),
  c('FC6 hiding an FC5', [6, 0, 1, 0, 7, ...req(0x998, 1, [5, 0, 3, 0xff, 0])], ILLEGAL_VALUE),
  c('FC16 hiding an FC6 after its values', [16, 0, 0, 0, 1, 2, 0, 9, ...req(0x997, 1, [6, 0, 1, 0, 1])], ILLEGAL_VALUE),
  // The largest PDU there is (253 bytes) on a function no rule names → 01.
  c('user-defined FC65, PDU 253', [65, ...bytes(252, 0xa5)], ILLEGAL_FUNCTION),
  // Unknown, user-defined, reserved and vendor function codes: not in the policy → 01.
  ...[0, 40, 65, 72, 100, 110, 9, 10, 13, 14, 41, 42, 90, 91, 125, 126, 127].map((fc) =>
    c(`unknown or reserved FC${fc}`, [fc, 0, 1, 0, 1], ILLEGAL_FUNCTION),
  ),
  // Exception-flagged function codes are never requests → 01.
  ...[0x80, 0x81, 0x83, 0x90, 0xab, 0xff].map((fc) => c(`exception-flagged FC 0x${fc.toString(16)}`, [fc, 0, 0, 0, 1], ILLEGAL_FUNCTION)),
  // Units the policy doesn't name, broadcast included → 0A.
  c('unit 2', [3, 0, 0, 0, 1], PATH_UNAVAILABLE, 2),
  c('unit 0 (broadcast)', [6, 0, 1, 0, 1], PATH_UNAVAILABLE, 0),
  c('unit 255', [3, 0, 0, 0, 1], PATH_UNAVAILABLE, 255),
];

void t.test('every malformed case: its exact exception, and nothing upstream', async (t) => {
  const { plc, proxy } = await setup(t, OPEN_RULES);
  const client = await RawClient.connect(proxy.port);
  const forwarded: Buffer[] = [];
  for (const k of CASES) {
    // The independent model agrees: the boundary frames are well-formed, the 02/03 ones are not.
    if (k.outcome === 'forward') t.equal(malformation(k.frame), null, `model: ${k.name} is well-formed`);
    if (k.outcome === ILLEGAL_VALUE || k.outcome === ILLEGAL_ADDRESS) t.not(malformation(k.frame), null, `model: ${k.name} is malformed`);
    client.send(k.frame);
    const [reply] = await within(client.read(), k.name);
    const want = k.outcome === 'forward' ? plcReply(k.frame) : exceptionFor(k.frame, k.outcome);
    t.equal(reply === undefined ? 'closed' : hexOf(reply), hexOf(want), k.name);
    if (k.outcome === 'forward') forwarded.push(k.frame);
  }
  client.close();
  await client.closed;
  t.same(
    upstreamFrames(plc).flatMap((c) => c.frames).map(hexOf),
    forwarded.map(hexOf),
    'the PLC got exactly the well-formed boundary frames, in order, and nothing else',
  );
  await checkInvariants(t, { proxy, plc });
});

interface CloseCase {
  name: string;
  bytes: Buffer;
}

const FRAMING: CloseCase[] = [
  { name: 'protocol id 1', bytes: rawAdu(1, 1, 6, 1, [3, 0, 0, 0, 1]) },
  { name: 'protocol id 0xFFFF', bytes: rawAdu(1, 0xffff, 6, 1, [3, 0, 0, 0, 1]) },
  { name: 'length 0', bytes: Buffer.from([0, 1, 0, 0, 0, 0]) },
  { name: 'length 1', bytes: Buffer.from([0, 1, 0, 0, 0, 1, 1]) },
  { name: 'length 255 with all its bytes (PDU 254 > 253)', bytes: rawAdu(1, 0, 255, 1, [16, ...bytes(253, 0)]) },
  // A naive parser would wait for 65535 (or 255) bytes that never come: the close must come from
  // the header alone, long before any timeout (the frame timeout here is 10 minutes).
  { name: 'length 65535, header only', bytes: Buffer.from([0, 1, 0, 0, 0xff, 0xff]) },
  { name: 'length 255, header only', bytes: Buffer.from([0, 1, 0, 0, 0, 0xff]) },
  { name: 'length 65535 with 100 bytes', bytes: rawAdu(1, 0, 0xffff, 1, bytes(100, 3)) },
];

void t.test('framing errors: the connection closes, no reply, nothing upstream', async (t) => {
  const { plc, proxy } = await setup(t, OPEN_RULES);
  const stats = proxy.rt.server.stats.get(DEVICE);
  for (const k of FRAMING) {
    for (const bytewise of [false, true]) {
      const client = await RawClient.connect(proxy.port);
      if (bytewise) await client.sendBytewise(k.bytes).catch(() => undefined);
      else client.send(k.bytes);
      await within(client.closed, `close after ${k.name}`);
      t.equal(client.received.length, 0, `${k.name}${bytewise ? ', byte by byte' : ''}: closed with no reply`);
    }
  }
  t.equal(stats.framingErrors, 2 * FRAMING.length, 'each counted once as a framing error');
  t.equal(plc.connections, 0, 'the PLC was never connected to');
  t.equal(proxy.logs.filter((l) => l.event === 'framing_error').length, 2 * FRAMING.length, 'each logged');
  await checkInvariants(t, { proxy, plc });
});

void t.test('a framing error after pipelined requests: those are answered first, then the close', async (t) => {
  const { plc, proxy } = await setup(t, OPEN_RULES);
  const allowed = req(1, 1, [3, 0, 5, 0, 2]);
  const denied = req(2, 2, [3, 0, 0, 0, 1]);
  const client = await RawClient.connect(proxy.port);
  client.send(Buffer.concat([allowed, denied, rawAdu(3, 7, 6, 1, [3, 0, 0, 0, 1]), allowed]));
  await within(client.closed, 'the close');
  const ledger = new Ledger();
  ledger.expect(plcReply(allowed));
  ledger.expect(exceptionFor(denied, PATH_UNAVAILABLE));
  ledger.take(await client.read(10));
  t.ok(ledger.ok, `the allowed request got the PLC's answer and the denied one its 0A (${ledger.describe()})`);
  t.same(upstreamFrames(plc).flatMap((c) => c.frames).map(hexOf), [hexOf(allowed)], 'nothing after the error went upstream');
  await checkInvariants(t, { proxy, plc });
});

void t.test('a framing error inside requests held at max_outstanding is counted, logged, and closes after the answers', async (t) => {
  const { plc, proxy } = await setup(t, OPEN_RULES, 'defaults:\n  limits: { max_outstanding: 1, frame_timeout_ms: 600000 }\n');
  const held: (() => void)[] = [];
  plc.respond = (r, socket) => {
    held.push(() => socket.write(normalReply(r)));
    return { hang: true };
  };
  const a = req(1, 1, [3, 0, 0, 0, 1]);
  const b = req(2, 1, [3, 0, 1, 0, 1]);
  const client = await RawClient.connect(proxy.port);
  // b and the bad header wait in the splitter behind a's outstanding request, unframed.
  client.send(Buffer.concat([a, b, Buffer.from([0, 3, 0, 0, 0, 0])]));
  await plc.waitForRequests(1);
  held.shift()!();
  await plc.waitForRequests(2);
  held.shift()!();
  await within(client.closed, 'the close');
  t.same((await client.read(3)).map(hexOf), [a, b].map((f) => hexOf(plcReply(f))), 'both answered, in order');
  t.equal(proxy.rt.server.stats.get(DEVICE).framingErrors, 1, 'counted');
  t.match(proxy.logs.find((l) => l.event === 'framing_error'), { code: 'ERR_MODBUS_LENGTH', value: 0 });
  await checkInvariants(t, { proxy, plc });
});

void t.test('length mismatch: a declared length shorter than the frame leaves its tail as the next frame', async (t) => {
  const { plc, proxy } = await setup(t, OPEN_RULES);
  const client = await RawClient.connect(proxy.port);
  // FC3 start 0 quantity 1, declared length 5: the frame is cut after 0x00 0x00 0x00 (PDU 4 → 03)
  // and its last byte (0x01) starts a frame that never completes.
  const cut = rawAdu(0x42, 0, 5, 1, [3, 0, 0, 0, 1]);
  client.send(cut);
  const [reply] = await within(client.read(), 'the reply to the cut frame');
  t.equal(hexOf(reply!), hexOf(exceptionFor(cut, ILLEGAL_VALUE)), 'the short frame is malformed → 03');
  client.socket.end();
  await within(client.closed, 'the close after FIN');
  t.equal(client.received.length, 9, 'nothing else');
  t.equal(plc.connections, 0);
  await checkInvariants(t, { proxy, plc });
});

void t.test('truncated frames, then close or half-close: nothing upstream, nothing left behind', async (t) => {
  const { plc, proxy } = await setup(t, OPEN_RULES);
  const whole = req(7, 1, [16, 0, 10, 0, 2, 4, 0, 1, 0, 2]);
  for (const keep of [1, 5, 6, 7, 8, whole.length - 1]) {
    for (const how of ['reset', 'fin'] as const) {
      const client = await RawClient.connect(proxy.port);
      await client.sendBytewise(whole.subarray(0, keep));
      if (how === 'reset') client.socket.resetAndDestroy();
      else client.socket.end();
      await within(client.closed, `close after ${keep} bytes (${how})`);
      t.equal(client.received.length, 0, `${keep} of ${whole.length} bytes then ${how}: no reply`);
    }
  }
  // A whole allowed frame, then the start of another, then FIN: the first is answered.
  const client = await RawClient.connect(proxy.port);
  client.send(Buffer.concat([whole, whole.subarray(0, 9)]));
  client.socket.end();
  await within(client.closed, 'close after the answer');
  t.same((await client.read(2)).map(hexOf), [hexOf(plcReply(whole))], 'the whole frame answered, the partial one dropped');
  t.same(upstreamFrames(plc).flatMap((c) => c.frames).map(hexOf), [hexOf(whole)], 'only the whole frame reached the PLC');
  await checkInvariants(t, { proxy, plc });
});

void t.test('half-closed sockets: outstanding and denied requests answered, then closed', async (t) => {
  const { plc, proxy } = await setup(t, OPEN_RULES);
  // The PLC answers in two pieces: the FIN arrives while the answer is on its way.
  plc.respond = (r) => {
    const full = normalReply(r);
    return { pieces: [full.subarray(0, 5), full.subarray(5)], gapMs: 20 };
  };
  const allowed = req(1, 1, [3, 0, 0, 0, 3]);
  const denied = req(2, 9, [3, 0, 0, 0, 1]);
  const client = await RawClient.connect(proxy.port);
  client.send(Buffer.concat([allowed, denied]));
  client.socket.end();
  await within(client.closed, 'close after the answers');
  const ledger = new Ledger();
  ledger.expect(plcReply(allowed));
  ledger.expect(exceptionFor(denied, PATH_UNAVAILABLE));
  ledger.take(await client.read(3));
  t.ok(ledger.ok, ledger.describe());
  // Half-closed with nothing sent: closed at once, nothing written.
  const idle = await RawClient.connect(proxy.port);
  idle.socket.end();
  await within(idle.closed, 'close of an empty half-closed connection');
  t.equal(idle.received.length, 0);
  await checkInvariants(t, { proxy, plc });
});

void t.test('a denial while a PLC response streams through waits for it (no interleaving)', async (t) => {
  const { plc, proxy } = await setup(t, OPEN_RULES);
  const released: (() => void)[] = [];
  plc.respond = (r, socket) => {
    const full = normalReply(r);
    socket.write(full.subarray(0, 9));
    released.push(() => socket.write(full.subarray(9)));
    return { hang: true };
  };
  const slow = req(1, 1, [3, 0, 0, 0, 4]);
  const denied = req(2, 7, [3, 0, 0, 0, 1]);
  const client = await RawClient.connect(proxy.port);
  client.send(slow);
  // The head of the response is with the client; the rest is still at the PLC.
  while (client.received.length < 9) await within(new Promise((resolve) => client.socket.once('data', resolve)), 'the head');
  client.send(denied);
  await until(() => proxy.logs.some((l) => l.event === 'deny'), 'the denial was decided');
  released.shift()!();
  const rs = await within(client.read(2), 'both replies');
  t.same(rs.map(hexOf), [hexOf(plcReply(slow)), hexOf(exceptionFor(denied, PATH_UNAVAILABLE))], 'the response whole, then the exception');
  client.close();
  await client.closed;
  await checkInvariants(t, { proxy, plc });
});

// ---- seeded random and mutated frames at the session ----

const RANDOM_RULES = `    rules:
${PROBE_RULE}      - name: read
        units: [1]
        read: { holding_registers: [0-199], input_registers: [0-99], coils: [0-255], discrete_inputs: [0-255] }
      - name: write
        units: [1]
        write:
          holding_registers: [ { addresses: 10-19, values: 0-1000 }, 100-149 ]
          coils: [0-31]
      - name: engineering
        units: [1]
        functions: [report_server_id, read_exception_status, { code: diagnostics, subfunctions: [0] }, read_device_identification, 90]
      - name: gateway
        units: [2]
        read: { holding_registers: [0-9] }
`;

const QUANTITY_LIMIT: Record<number, number> = { 1: 2000, 2: 2000, 3: 125, 4: 125, 15: 1968, 16: 123 };

/** A request PDU: mostly plausible, biased to the spec's and the policy's edges. */
function randomPdu(r: Random): number[] {
  const address = (): number => r.pick([0, r.int(20), r.int(260), 10 + r.int(10), 100 + r.int(50), r.int(65536), 65535]);
  const quantity = (max: number): number => r.pick([0, 1, 1 + r.int(8), 1 + r.int(max), max, max + 1, r.int(65536)]);
  const value = (): number => r.pick([0, r.int(1001), 1000, 1001, r.int(65536), 0xff00]);
  const fc = r.pick([1, 2, 3, 3, 3, 4, 5, 6, 6, 15, 16, 16, 22, 23, 24, 7, 8, 11, 12, 17, 20, 21, 43, 90, r.int(256)]);
  switch (fc) {
    case 1:
    case 2:
    case 3:
    case 4:
      return [fc, ...w16(address()), ...w16(quantity(QUANTITY_LIMIT[fc]!))];
    case 5:
      return [5, ...w16(address()), ...w16(r.pick([0, 0xff00, r.int(65536)]))];
    case 6:
      return [6, ...w16(address()), ...w16(value())];
    case 15: {
      const q = quantity(1968);
      const bc = r.chance(0.9) ? (q + 7) >> 3 : r.int(256);
      return [15, ...w16(address()), ...w16(q), bc & 0xff, ...r.bytes(Math.min(bc, 247))];
    }
    case 16: {
      const q = quantity(123);
      const bc = r.chance(0.9) ? 2 * q : r.int(256);
      const data: number[] = [];
      while (data.length < Math.min(bc, 247)) data.push(...w16(value()));
      return [16, ...w16(address()), ...w16(q), bc & 0xff, ...data.slice(0, Math.min(bc, 247))];
    }
    case 22:
      return [22, ...w16(address()), ...w16(r.int(65536)), ...w16(r.int(65536))];
    case 23: {
      const wq = quantity(121);
      const bc = r.chance(0.9) ? 2 * wq : r.int(256);
      const data: number[] = [];
      while (data.length < Math.min(bc, 243)) data.push(...w16(value()));
      return [23, ...w16(address()), ...w16(quantity(125)), ...w16(address()), ...w16(wq), bc & 0xff, ...data.slice(0, Math.min(bc, 243))];
    }
    case 24:
      return [24, ...w16(address())];
    case 8:
      return [8, ...w16(r.pick([0, 0, 1, 4, 10, r.int(65536)])), ...r.bytes(r.pick([2, 2, 0, 1, 4, r.int(20)]))];
    case 20:
    case 21: {
      const subs: number[] = [];
      for (let i = r.range(1, 3); i > 0; i--) {
        const len = r.range(0, 4);
        subs.push(r.chance(0.9) ? 6 : r.int(256), ...w16(r.int(3)), ...w16(r.pick([0, 9999, 10000, r.int(65536)])), ...w16(len));
        if (fc === 21) subs.push(...r.bytes(2 * len));
      }
      return [fc, r.chance(0.9) ? subs.length : r.int(256), ...subs];
    }
    case 43:
      return [43, r.pick([14, 14, 13, r.int(256)]), r.range(0, 5), r.int(256)];
    case 90:
      return [90, ...r.bytes(r.int(20))];
    default:
      return [fc, ...r.bytes(r.pick([0, 1, 4, r.int(30)]))];
  }
}

/** One request frame, maybe mutated, its PDU kept ≤ 253 bytes (so its framing stays valid). */
function randomFrame(r: Random, tid: number): Buffer {
  let pdu = randomPdu(r);
  if (r.chance(0.35)) {
    switch (r.int(5)) {
      case 0:
        for (let k = r.range(1, 3); k > 0; k--) pdu[r.int(pdu.length)] = r.int(256);
        break;
      case 1:
        pdu = pdu.slice(0, Math.max(1, pdu.length - r.range(1, 3)));
        break;
      case 2:
        pdu = [...pdu, ...r.bytes(r.range(1, 8))];
        break;
      case 3: // a smuggled frame inside the declared length
        pdu = [...pdu, ...req(tid ^ 0x8000, 1, randomPdu(r))];
        break;
      default:
        pdu[0] = r.int(256);
    }
  }
  const unit = r.chance(0.9) ? 1 : r.chance(0.5) ? 2 : r.int(256);
  return req(tid, unit, pdu.slice(0, 253));
}

/** Bytes that break framing: a bad protocol id or length, or a length that shifts the framing. */
function framingBreaker(r: Random, tid: number): Buffer {
  const f = randomFrame(r, tid);
  switch (r.int(3)) {
    case 0:
      f.writeUInt16BE(1 + r.int(0xffff), 2);
      break;
    case 1:
      f.writeUInt16BE(r.pick([0, 1, 255, 256, 0xffff, 255 + r.int(0xff00)]), 4);
      break;
    default: // within 2..254 but wrong: what follows is cut where the model says
      f.writeUInt16BE(r.range(2, 254), 4);
  }
  return f;
}

interface WorkerResult {
  frames: number;
  allowed: number;
  framingErrors: number;
  /** Per client connection that sent anything allowed: the exact bytes the PLC must get. */
  upstream: string[];
  failure: string | null;
}

async function worker(port: number, seed: number, quota: number, oracle: PolicyOracle): Promise<WorkerResult> {
  const r = new Random(seed);
  const res: WorkerResult = { frames: 0, allowed: 0, framingErrors: 0, upstream: [], failure: null };
  for (let conn = 0; res.frames < quota; conn++) {
    const client = await within(RawClient.connect(port), 'connect');
    const model = new StreamModel();
    const ledger = new Ledger();
    const toPlc: Buffer[] = [];
    let tid = 0;
    let broke: string | null = null;
    for (let batch = 0, batches = r.range(2, 25); batch < batches && broke === null; batch++) {
      const frames: Buffer[] = [];
      for (let i = r.range(1, 400); i > 0; i--) frames.push(randomFrame(r, ++tid & 0xffff));
      if (r.chance(0.06)) frames.splice(r.int(frames.length + 1), 0, framingBreaker(r, ++tid & 0xffff));
      const input = Buffer.concat(frames);
      for (const f of model.push(input)) {
        res.frames++;
        const d = oracle.decide(f, '127.0.0.1');
        if (d.allow) {
          // The policy can only allow what the independent model calls well-formed.
          const why = malformation(f);
          if (why !== null) res.failure ??= `the policy allows a malformed frame (${why}): ${hexOf(f)}`;
          res.allowed++;
          toPlc.push(f);
          ledger.expect(plcReply(f));
        } else {
          ledger.expect(exceptionFor(f, d.exception));
        }
      }
      broke = model.error;
      if (broke !== null) res.framingErrors++;
      // The same bytes in 1..4 writes cut anywhere: the session must not care.
      const cuts = Array.from({ length: r.int(4) }, () => r.int(input.length)).sort((a, b) => a - b);
      let at = 0;
      for (const cut of [...cuts, input.length]) {
        if (cut > at) client.send(input.subarray(at, cut));
        at = Math.max(at, cut);
      }
      try {
        while (ledger.awaiting > 0 && !client.isClosed) ledger.take(await within(client.read(ledger.awaiting), `${ledger.awaiting} replies`));
        if (broke !== null) {
          await within(client.closed, `the close after a framing error (${broke})`);
          ledger.take(await client.read(Number.MAX_SAFE_INTEGER));
        }
      } catch (err) {
        res.failure ??= (err as Error).message;
      }
      if (!ledger.ok || (broke === null && client.isClosed)) {
        res.failure ??= `${ledger.describe()}${client.isClosed ? '; closed' : ''}`;
      }
      if (res.failure !== null) {
        res.failure = `seed ${seed} connection ${conn} batch ${batch}: ${res.failure}; input ${hexOf(input).slice(0, 4000)}`;
        client.close();
        return res;
      }
    }
    if (broke === null) {
      // Leave with a reset or a FIN; a frame begun and not finished is dropped either way.
      if (r.chance(0.3)) client.socket.resetAndDestroy();
      else client.socket.end();
      await within(client.closed, 'the close');
      // Nothing may arrive after what was expected (a second reply, a late one).
      ledger.take(await client.read(Number.MAX_SAFE_INTEGER));
      if (!ledger.ok) {
        res.failure = `seed ${seed} connection ${conn}, at its close: ${ledger.describe()}`;
        return res;
      }
    }
    if (toPlc.length > 0) res.upstream.push(hexOf(Buffer.concat(toPlc)));
  }
  return res;
}

void t.test(`seeded random and mutated frames at the session: ${FRAMES} frames from seed ${SEED}`, async (t) => {
  const { plc, proxy } = await setup(t, RANDOM_RULES, '');
  const oracle = new PolicyOracle([policyOf(proxy)]);
  const WORKERS = 4;
  const started = performance.now();
  const results = await Promise.all(
    Array.from({ length: WORKERS }, (_, w) => worker(proxy.port, SEED + w, Math.ceil(FRAMES / WORKERS), oracle)),
  );
  const failures = results.map((x) => x.failure).filter((f) => f !== null);
  t.same(failures, [], 'every frame got exactly its expected reply (a failure names its seed, connection, batch and input)');
  const total = results.reduce((n, x) => n + x.frames, 0);
  const allowed = results.reduce((n, x) => n + x.allowed, 0);
  const framingErrors = results.reduce((n, x) => n + x.framingErrors, 0);
  t.ok(total >= FRAMES, `${total} frames through the session in ${((performance.now() - started) / 1000).toFixed(1)} s (${allowed} allowed, ${framingErrors} framing errors)`);
  const stats = proxy.rt.server.stats.get(DEVICE);
  t.equal(stats.framingErrors, framingErrors, 'framing errors: exactly as many as the model found');
  if (failures.length === 0) {
    const got = upstreamFrames(plc).map((c) => hexOf(Buffer.concat(c.frames))).sort();
    const want = results.flatMap((x) => x.upstream).sort();
    const same = got.length === want.length && got.every((g, i) => g === want[i]);
    t.ok(same, `the PLC received exactly the allowed frames, in order, one connection per client connection (${got.length} connections)`, same ? {} : { got: got.length, want: want.length });
  }
  await checkInvariants(t, { proxy, plc });
});
