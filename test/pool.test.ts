// The shared PLC links of one device (proxy/pool.ts) in memory: real sessions on fake client
// sockets, fake PLC connections, a clock that moves only when told. Turn order, queue time, idle
// close, backoff and failures, exactly and without waiting for real time.
import t from 'tap';
import type { CompiledDevice } from '../policy/index.js';
import { Session, type SessionContext } from '../proxy/session.js';
import { DeviceStats, UPSTREAM_ERRORS } from '../proxy/stats.js';
import { SourceRate } from '../proxy/ratelimit.js';
import { AuditGate } from '../proxy/audit.js';
import { SharedLinks } from '../proxy/pool.js';
import { FakeClock, FakeSocket, nextTurn } from './fixtures/fake-io.js';
import { recordLogs } from './fixtures/logs.js';
import { hexOf, req } from './fixtures/raw-client.js';
import { adu } from './fixtures/raw-plc.js';
import { memoryDevice } from './fixtures/memory-device.js';

/** The memory device sharing `connections` PLC connections, `inFlight` requests on each. */
function sharingDevice(limits: Record<string, number>, connections: number, inFlight: number): CompiledDevice {
  return memoryDevice(limits, { upstream_connections: connections, upstream_max_in_flight: inFlight });
}

interface Device {
  clock: FakeClock;
  stats: DeviceStats;
  pool: SharedLinks;
  /** PLC connections opened, in order. */
  plcs: FakeSocket[];
  /** Client connections made so far (their ids). */
  clients: number;
  ctx: SessionContext;
  /** Swaps the device a reload would (sessions see it from their next frame). */
  reload(limits: Record<string, number>): void;
}

function device(limits: Record<string, number> = {}, connections = 1, inFlight = 1): Device {
  const { logger } = recordLogs();
  const clock = new FakeClock();
  const stats = new DeviceStats();
  const plcs: FakeSocket[] = [];
  const audit = new AuditGate();
  const rate = new SourceRate();
  const base = { idle_timeout_ms: 600_000, ...limits };
  let compiled = sharingDevice(base, connections, inFlight);
  const d = { clock, stats, plcs, clients: 0 } as Device;
  d.reload = (l) => {
    compiled = sharingDevice({ ...base, ...l }, connections, inFlight);
  };
  d.ctx = {
    deviceName: 'plc',
    current: () => compiled,
    stats,
    logger,
    audit,
    rateFor: () => rate,
    logUpstream: (event, fields) => logger.log(event, { device: 'plc', ...fields }),
    clock,
    connect: () => {
      const s = new FakeSocket();
      plcs.push(s);
      return s;
    },
    sessionClosed: () => {},
    upstreamFor: (owner) => d.pool.port(owner),
    learner: null,
    learnCeilingReached: () => {},
  };
  d.pool = new SharedLinks(compiled.upstream, compiled.sharing!, compiled.limits, d.ctx);
  return d;
}

/** A client connection of the device: the test is the client end of `socket`. */
function client(d: Device): FakeSocket {
  const socket = new FakeSocket();
  new Session(socket, d.ctx, '127.0.0.1', 50_000, `c${++d.clients}`);
  return socket;
}

// Read Holding Registers (FC3) of unit 1, `qty` registers from `start` (both below 256):
// tid(2) | protocol 0(2) | length 6(2) | unit 1 | FC 3 | start(2) | quantity(2)
const read = (tid: number, start: number, qty = 1): Buffer => req(tid, 1, [3, 0, start, 0, qty]);
// Its answer: tid | 0 | length | unit 1 | FC 3 | byte count 2·qty | register start + i holds start + i
const answer = (tid: number, start: number, qty = 1): Buffer =>
  adu(tid, 1, [3, 2 * qty, ...Array.from({ length: qty }, (_, i) => [0, start + i]).flat()]);
// plcguard's exception to a read: tid | 0 | length 3 | unit 1 | FC 3|0x80 | code
const exception = (tid: number, code: number): Buffer => adu(tid, 1, [0x83, code]);
const PATH_UNAVAILABLE = 0x0a;
const TARGET_FAILED = 0x0b;
/** Writes of register 10 (FC6): no rule allows them, so they are denied with 01 and never go upstream. */
const write = (tid: number): Buffer => req(tid, 1, [6, 0, 10, 0, 1]);
const cat = (...b: Buffer[]): string => hexOf(Buffer.concat(b));

/** Answers the request the PLC reads now (one read), as a PLC would; returns it. */
function serveOne(plc: FakeSocket): Buffer {
  const r = plc.read();
  plc.receive(answer(r.readUInt16BE(0), r.readUInt16BE(8), r.readUInt16BE(10)));
  return r;
}

const errors = (d: Device, kind: (typeof UPSTREAM_ERRORS)[number]): number => d.stats.upstreamErrors[UPSTREAM_ERRORS.indexOf(kind)]!;

function refuse(plc: FakeSocket): void {
  plc.destroy(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }));
}

void t.test('round robin: the clients with waiting requests take turns, one request each, each in its own order', (t) => {
  const d = device();
  const a = client(d);
  const b = client(d);
  const c = client(d);
  a.receive(Buffer.concat([read(1, 0), read(2, 1), read(3, 2)]));
  b.receive(Buffer.concat([read(1, 10), read(2, 11)]));
  c.receive(read(1, 20));
  t.equal(d.plcs.length, 1, 'one PLC connection');
  const plc = d.plcs[0]!;
  plc.accept();
  t.equal(d.stats.upstreamQueued, 5, 'five wait while the first is in flight');
  const order: string[] = [];
  for (let i = 0; i < 6; i++) order.push(hexOf(serveOne(plc)));
  t.same(order, [read(1, 0), read(1, 10), read(1, 20), read(2, 1), read(2, 11), read(3, 2)].map(hexOf), 'a, b, c, a, b, a: one at a time');
  t.equal(hexOf(plc.read()), '', 'nothing more reached the PLC');
  t.equal(hexOf(a.read()), cat(answer(1, 0), answer(2, 1), answer(3, 2)));
  t.equal(hexOf(b.read()), cat(answer(1, 10), answer(2, 11)));
  t.equal(hexOf(c.read()), cat(answer(1, 20)));
  t.equal(d.stats.queueWait.count, 6, 'each request timed in the queue');
  t.equal(d.stats.upstreamQueued, 0);
  t.equal(d.stats.upstreamRemapped, 0);
  d.pool.close();
  t.ok(plc.destroyed, 'closing the device closes its PLC connection');
  t.end();
});

void t.test('tid clash: two clients on tid 1 in flight together get distinct ids toward the PLC and their own answers back', (t) => {
  const d = device({}, 1, 2);
  const a = client(d);
  const b = client(d);
  a.receive(read(1, 5));
  b.receive(read(1, 6));
  const plc = d.plcs[0]!;
  plc.accept();
  t.equal(hexOf(plc.read()), cat(read(1, 5), read(2, 6)), "a's keeps its id, b's gets the next free one");
  t.equal(d.stats.upstreamRemapped, 2, 'two ids taken');
  // The PLC answers out of order.
  plc.receive(answer(2, 6));
  t.equal(hexOf(b.read()), cat(answer(1, 6)), 'b: its own tid back, the rest unchanged');
  t.equal(hexOf(a.read()), '', 'a: nothing yet');
  plc.receive(answer(1, 5));
  t.equal(hexOf(a.read()), cat(answer(1, 5)));
  t.equal(d.stats.upstreamRemapped, 0);
  t.end();
});

void t.test('time in the queue counts toward the response timeout: a request out of time never reaches the PLC', (t) => {
  const d = device({ response_timeout_ms: 1000 });
  const a = client(d);
  const b = client(d);
  a.receive(Buffer.concat([read(1, 0), read(2, 1)])); // t = 0
  d.clock.advance(10);
  b.receive(read(1, 10)); // t = 10
  const plc = d.plcs[0]!;
  plc.accept();
  d.clock.advance(490); // t = 500
  t.equal(hexOf(serveOne(plc)), hexOf(read(1, 0)));
  t.equal(hexOf(plc.read()), hexOf(read(1, 10)), "b's turn: it waited 490 ms");
  t.equal(d.stats.queueWait.sum, 0.49, 'waits observed: 0 and 0.49 s');
  d.clock.advance(499); // t = 999
  t.equal(hexOf(a.read()), cat(answer(1, 0)), "a's second request is still waiting");
  d.clock.advance(1); // t = 1000: its 1000 ms are up
  t.equal(hexOf(a.read()), cat(exception(2, TARGET_FAILED)), '0B after 1000 ms, all of them in the queue');
  t.equal(errors(d, 'timeout'), 1);
  t.equal(d.stats.upstreamQueued, 0);
  d.clock.advance(9); // t = 1009
  t.equal(hexOf(b.read()), '');
  d.clock.advance(1); // t = 1010: b's 1000 ms, 490 of them waiting
  t.equal(hexOf(b.read()), cat(exception(1, TARGET_FAILED)));
  t.equal(hexOf(plc.read()), '', "a's second request never reached the PLC");
  t.end();
});

void t.test('a connection whose slots only hold requests answered 0B is reset when others wait; they go on the next one', async (t) => {
  const d = device({ response_timeout_ms: 1000 });
  const a = client(d);
  const b = client(d);
  a.receive(read(1, 0));
  const plc = d.plcs[0]!;
  plc.accept();
  serveOne(plc); // the PLC answered on this connection: no backoff after it
  a.receive(read(2, 1));
  plc.read();
  d.clock.advance(1000);
  t.equal(hexOf(a.read()), cat(answer(1, 0), exception(2, TARGET_FAILED)));
  t.equal(d.stats.upstreamRemapped, 1, 'its id stays taken: the PLC may still answer');
  b.receive(read(7, 10));
  t.ok(plc.destroyed, 'reset: the PLC had a whole response timeout');
  const c = client(d);
  c.receive(read(8, 20)); // before the reset's 'close': the link is being dropped already, once
  await nextTurn();
  t.equal(d.plcs.length, 2, 'reconnected at once');
  t.equal(d.stats.upstreamErrors.reduce((n, x) => n + x, 0), 1, 'one error: the timeout (the reset is not counted again)');
  d.plcs[1]!.accept();
  t.equal(hexOf(serveOne(d.plcs[1]!)), hexOf(read(7, 10)));
  t.equal(hexOf(serveOne(d.plcs[1]!)), hexOf(read(8, 20)));
  t.equal(hexOf(b.read()), cat(answer(7, 10)));
  t.equal(hexOf(c.read()), cat(answer(8, 20)));
  t.end();
});

void t.test("a session at max_outstanding with only 0B'd requests resets the shared connection holding them", async (t) => {
  const d = device({ response_timeout_ms: 1000, max_outstanding: 1 });
  const a = client(d);
  a.receive(read(1, 0));
  const plc = d.plcs[0]!;
  plc.accept();
  serveOne(plc);
  a.receive(Buffer.concat([read(2, 1), read(3, 2)])); // the second is held at the limit
  t.equal(hexOf(plc.read()), hexOf(read(2, 1)));
  d.clock.advance(1000);
  t.equal(hexOf(a.read()), cat(answer(1, 0), exception(2, TARGET_FAILED)));
  // The 0B'd request still takes a's one slot, and no answer is awaited that could free it.
  t.ok(plc.destroyed, 'reset to free the slot');
  await nextTurn();
  t.equal(d.plcs.length, 2);
  d.plcs[1]!.accept();
  t.equal(hexOf(serveOne(d.plcs[1]!)), hexOf(read(3, 2)), 'the held request goes on the new connection');
  t.equal(hexOf(a.read()), cat(answer(3, 2)));
  t.end();
});

void t.test('a client whose queue runs out of time is taken out of the turn order; the next client keeps its turn', async (t) => {
  const d = device({ response_timeout_ms: 1000 });
  const a = client(d);
  const b = client(d);
  const c = client(d);
  b.receive(read(1, 10)); // t = 0, in flight until 100
  const plc = d.plcs[0]!;
  plc.accept();
  d.clock.advance(10);
  a.receive(Buffer.concat([read(1, 0), read(2, 1)])); // t = 10
  d.clock.advance(10);
  c.receive(read(1, 20)); // t = 20
  d.clock.advance(80);
  serveOne(plc); // t = 100: a's first goes; c is next
  t.equal(hexOf(plc.read()), hexOf(read(1, 0)));
  d.clock.advance(910); // t = 1010: a's second runs out of time waiting, and so does its first at the PLC
  t.equal(hexOf(a.read()), cat(exception(2, TARGET_FAILED), exception(1, TARGET_FAILED)), 'each 0B once, the waiting one first');
  t.equal(d.stats.upstreamQueued, 1, "c's request still waits, with 10 ms left");
  t.ok(plc.destroyed, 'the connection holding only a 0B request is reset for it');
  await nextTurn();
  d.plcs[1]!.accept();
  t.equal(hexOf(serveOne(d.plcs[1]!)), hexOf(read(1, 20)), "c's turn came");
  t.equal(hexOf(c.read()), cat(answer(1, 20)));
  t.equal(hexOf(b.read()), cat(answer(1, 10)));
  t.end();
});

void t.test("a client that doesn't read its answers doesn't stall the shared connection for the others", (t) => {
  const d = device({ max_buffered_bytes: 300 });
  const a = client(d);
  const b = client(d);
  a.receive(Buffer.concat([read(1, 0, 100), read(2, 0, 100)]));
  const plc = d.plcs[0]!;
  plc.accept();
  serveOne(plc);
  serveOne(plc); // 418 bytes queued to a, which reads none: over 300
  t.ok(a.isPaused, "a's requests are no longer read");
  b.receive(read(1, 10));
  t.notOk(plc.isPaused, 'the PLC still is');
  serveOne(plc);
  t.equal(hexOf(b.read()), cat(answer(1, 10)));
  t.equal(hexOf(a.read()), cat(answer(1, 0, 100), answer(2, 0, 100)));
  t.notOk(a.isPaused);
  t.end();
});

void t.test('a reload shortening the response timeout: a waiting request already past it gets 0B at its turn', (t) => {
  const d = device({ response_timeout_ms: 1000 });
  const a = client(d);
  a.receive(Buffer.concat([read(1, 0), read(2, 1)]));
  const plc = d.plcs[0]!;
  plc.accept();
  t.equal(hexOf(plc.read()), hexOf(read(1, 0)));
  d.clock.advance(300);
  d.reload({ response_timeout_ms: 200 });
  a.receive(read(3, 2)); // the session sees the reload with this frame
  plc.receive(answer(1, 0));
  t.equal(hexOf(a.read()), cat(answer(1, 0), exception(2, TARGET_FAILED)), 'waited 300 ms of 200');
  t.equal(hexOf(plc.read()), hexOf(read(3, 2)), 'the next one, in time, goes');
  t.end();
});

void t.test('a request split over client chunks waits intact while the client sends more', (t) => {
  const d = device();
  const a = client(d);
  const b = client(d);
  a.receive(read(1, 0));
  const plc = d.plcs[0]!;
  plc.accept();
  plc.read();
  const first = read(5, 10);
  const second = read(6, 11);
  b.receive(first.subarray(0, 5));
  b.receive(Buffer.concat([first.subarray(5), second.subarray(0, 7)]));
  b.receive(second.subarray(7));
  plc.receive(answer(1, 0));
  t.equal(hexOf(plc.read()), hexOf(first));
  plc.receive(answer(5, 10));
  t.equal(hexOf(plc.read()), hexOf(second));
  plc.receive(answer(6, 11));
  t.equal(hexOf(b.read()), cat(answer(5, 10), answer(6, 11)));
  t.end();
});

void t.test('idle close: after idle_timeout_ms with nothing waiting or in flight, counted from the last answer', (t) => {
  const d = device({ idle_timeout_ms: 1000 });
  const a = client(d);
  a.receive(read(1, 0)); // t = 0
  const plc = d.plcs[0]!;
  plc.accept();
  serveOne(plc); // idle from t = 0: the timer runs to 1000
  d.clock.advance(500);
  const b = client(d);
  b.receive(read(1, 10)); // t = 500, in flight until 1200
  t.equal(hexOf(plc.read()), hexOf(read(1, 10)));
  d.clock.advance(700); // t = 1200: the timer found the device busy at 1000
  t.notOk(plc.destroyed, 'not closed while busy');
  plc.receive(answer(1, 10)); // idle from 1200
  d.clock.advance(500); // t = 1700
  const c = client(d);
  c.receive(read(1, 20));
  serveOne(plc); // idle from 1700; the timer set at 1200 runs to 2200, then to 2700
  d.clock.advance(900); // t = 2600: c's denied write is no PLC work
  c.receive(write(2));
  d.clock.advance(99);
  t.notOk(plc.destroyed, 'open at 999 ms idle');
  t.equal(d.stats.upstreamConnections, 1);
  d.clock.advance(1); // t = 2700
  t.ok(plc.destroyed, 'closed at 1000 ms idle');
  t.equal(d.stats.upstreamConnections, 0);
  d.clock.advance(100);
  c.receive(write(3)); // still no PLC work: nothing reopens
  t.equal(d.plcs.length, 1);
  t.equal(hexOf(c.read()), cat(answer(1, 20), adu(2, 1, [0x86, 1]), adu(3, 1, [0x86, 1])));
  c.receive(read(4, 21));
  t.equal(d.plcs.length, 2, 'the next allowed request opens a new one');
  t.end();
});

void t.test('the PLC refusing: every waiting request of every client answered 0A once; backoff; then service resumes', async (t) => {
  const d = device({ reconnect_backoff_min_ms: 100, reconnect_backoff_max_ms: 1000 });
  const a = client(d);
  const b = client(d);
  const c = client(d);
  a.receive(Buffer.concat([read(1, 0), read(2, 1)]));
  b.receive(read(1, 10));
  c.receive(read(9, 20));
  t.equal(d.stats.upstreamQueued, 3);
  refuse(d.plcs[0]!);
  await nextTurn();
  t.equal(hexOf(a.read()), cat(exception(1, PATH_UNAVAILABLE), exception(2, PATH_UNAVAILABLE)));
  t.equal(hexOf(b.read()), cat(exception(1, PATH_UNAVAILABLE)));
  t.equal(hexOf(c.read()), cat(exception(9, PATH_UNAVAILABLE)));
  t.equal(d.stats.upstreamQueued, 0);
  t.equal(errors(d, 'refused'), 1);
  d.clock.advance(99);
  b.receive(read(2, 11));
  t.equal(hexOf(b.read()), cat(exception(2, PATH_UNAVAILABLE)), 'within the backoff: 0A at once');
  t.equal(d.plcs.length, 1, 'no connection attempt within the backoff');
  d.clock.advance(1);
  b.receive(read(3, 12));
  t.equal(d.plcs.length, 2, 'tried again after it');
  d.plcs[1]!.accept();
  t.equal(hexOf(serveOne(d.plcs[1]!)), hexOf(read(3, 12)));
  t.equal(hexOf(b.read()), cat(answer(3, 12)));
  t.equal(hexOf(Buffer.concat([a.read(), c.read()])), '', 'nobody answered twice');
  t.end();
});

void t.test('the PLC closing after it answered: the request in flight gets 0B, the waiting ones go on a new connection', async (t) => {
  const d = device();
  const a = client(d);
  const b = client(d);
  a.receive(read(1, 0));
  const plc = d.plcs[0]!;
  plc.accept();
  serveOne(plc);
  a.receive(read(2, 1));
  b.receive(read(1, 10));
  plc.hangUp();
  await nextTurn();
  t.equal(hexOf(a.read()), cat(answer(1, 0), exception(2, TARGET_FAILED)));
  t.equal(errors(d, 'closed'), 1);
  t.equal(d.plcs.length, 2, 'reconnected at once: the PLC had answered');
  d.plcs[1]!.accept();
  t.equal(hexOf(serveOne(d.plcs[1]!)), hexOf(read(1, 10)));
  t.equal(hexOf(b.read()), cat(answer(1, 10)));
  t.end();
});

void t.test('several connections: none is opened while one backs off, the open one serves what waits', async (t) => {
  const d = device({ reconnect_backoff_min_ms: 100 }, 3, 1);
  const a = client(d);
  a.receive(Buffer.concat([read(1, 0), read(2, 1)]));
  t.equal(d.plcs.length, 2, 'one request on each of two connections');
  const [p1, p2] = d.plcs as [FakeSocket, FakeSocket];
  t.equal(hexOf(p1.read()), hexOf(read(1, 0)));
  t.equal(hexOf(p2.read()), hexOf(read(2, 1)));
  p1.accept();
  refuse(p2);
  await nextTurn();
  t.equal(hexOf(a.read()), cat(exception(2, PATH_UNAVAILABLE)));
  a.receive(read(3, 2));
  t.equal(d.plcs.length, 2, 'no third connection while the second backs off');
  t.equal(d.stats.upstreamQueued, 1, 'it waits for the open one');
  p1.receive(answer(1, 0));
  t.equal(hexOf(serveOne(p1)), hexOf(read(3, 2)));
  t.equal(hexOf(a.read()), cat(answer(1, 0), answer(3, 2)));
  t.end();
});

void t.test('an idle period keeps a connection that backs off, and its backoff', async (t) => {
  const d = device({ idle_timeout_ms: 1000, reconnect_backoff_min_ms: 5000, reconnect_backoff_max_ms: 5000 });
  const a = client(d);
  a.receive(read(1, 0));
  refuse(d.plcs[0]!);
  await nextTurn();
  t.equal(hexOf(a.read()), cat(exception(1, PATH_UNAVAILABLE)));
  d.clock.advance(2000); // the idle timer ran at 1000
  const b = client(d);
  b.receive(read(1, 10));
  t.equal(hexOf(b.read()), cat(exception(1, PATH_UNAVAILABLE)), 'still backing off: 0A at once');
  t.equal(d.plcs.length, 1);
  d.clock.advance(3000);
  const c = client(d);
  c.receive(read(1, 20));
  t.equal(d.plcs.length, 2, 'tried again once the backoff is over');
  t.end();
});

void t.test('a client closing mid-flight: what it queued is forgotten, its late answer dropped and counted', async (t) => {
  const d = device();
  const a = client(d);
  const b = client(d);
  a.receive(Buffer.concat([read(1, 0), read(2, 1)]));
  b.receive(read(1, 10));
  const plc = d.plcs[0]!;
  plc.accept();
  t.equal(hexOf(plc.read()), hexOf(read(1, 0)));
  a.hangUp();
  await nextTurn();
  t.equal(d.stats.upstreamQueued, 1, "a's waiting request is gone, b's is not");
  plc.receive(answer(1, 0));
  t.equal(d.stats.abandonedResponses, 1, "a's answer dropped and counted");
  t.equal(hexOf(plc.read()), hexOf(read(1, 10)), "b's turn; a's second request never went");
  plc.receive(answer(1, 10));
  t.equal(hexOf(b.read()), cat(answer(1, 10)));
  b.hangUp();
  await nextTurn();
  t.equal(hexOf(plc.read()), '');
  t.equal(d.stats.upstreamQueued, 0);
  t.end();
});

void t.test("a client leaving with one request answered 0B and one in flight: both ids stay taken until the PLC answers", async (t) => {
  const d = device({ response_timeout_ms: 1000 }, 1, 2);
  const a = client(d);
  a.receive(read(1, 0)); // t = 0
  const plc = d.plcs[0]!;
  plc.accept();
  d.clock.advance(500);
  a.receive(read(2, 1)); // t = 500
  t.equal(hexOf(plc.read()), cat(read(1, 0), read(2, 1)));
  d.clock.advance(500); // t = 1000: the first gets 0B
  t.equal(hexOf(a.read()), cat(exception(1, TARGET_FAILED)));
  a.hangUp();
  await nextTurn();
  d.clock.advance(500); // t = 1500: the second's time is up too, with no client to tell
  t.equal(errors(d, 'timeout'), 2);
  t.equal(d.stats.upstreamRemapped, 2, 'both ids still taken: the PLC may answer');
  plc.receive(Buffer.concat([answer(2, 1), answer(1, 0)]));
  t.equal(d.stats.lateResponses, 2, 'both answers dropped as late');
  t.equal(d.stats.upstreamRemapped, 0);
  t.equal(d.stats.abandonedResponses, 0, 'answered 0B before: late, not abandoned');
  t.end();
});

void t.test('a client resetting while its answer streams in: the rest is dropped, the loss cuts no one', async (t) => {
  const d = device();
  const a = client(d);
  const b = client(d);
  a.receive(read(1, 0, 10));
  b.receive(read(1, 10));
  const plc = d.plcs[0]!;
  plc.accept();
  plc.read();
  plc.receive(answer(1, 0, 10).subarray(0, 15)); // its head and 3 registers: forwarded as they come
  t.equal(hexOf(a.read()), hexOf(answer(1, 0, 10).subarray(0, 15)));
  t.equal(hexOf(plc.read()), hexOf(read(1, 10)), "the PLC is done with a's request: b's goes while the answer streams");
  a.hangUp();
  await nextTurn();
  plc.receive(answer(1, 0, 10).subarray(15, 21)); // more of it: no one to forward it to
  t.same(a.writes.map(hexOf), [hexOf(answer(1, 0, 10).subarray(0, 15))], 'a got only what came before it left');
  plc.hangUp(); // mid-response
  await nextTurn();
  t.equal(hexOf(b.read()), cat(exception(1, TARGET_FAILED)), "b's request, in flight: 0B");
  t.equal(d.stats.abandonedResponses, 0, 'the cut answer is not counted as delivered to no one');
  t.end();
});

void t.test('a client resetting while its answer streams in: the whole answer is dropped and counted', async (t) => {
  const d = device();
  const a = client(d);
  a.receive(read(1, 0, 10));
  const plc = d.plcs[0]!;
  plc.accept();
  plc.read();
  const whole = answer(1, 0, 10);
  plc.receive(whole.subarray(0, 15));
  t.equal(hexOf(a.read()), hexOf(whole.subarray(0, 15)));
  a.hangUp();
  await nextTurn();
  plc.receive(whole.subarray(15)); // a write to a's closed socket would throw here
  t.equal(d.stats.abandonedResponses, 1);
  t.notOk(plc.destroyed, 'the PLC connection stays for the others');
  t.end();
});

void t.test("a client resetting between a PLC chunk that answered it and the PLC's framing error: nothing is written to it", async (t) => {
  const d = device({}, 1, 2);
  const a = client(d);
  const b = client(d);
  a.receive(read(1, 0));
  b.receive(read(1, 10));
  const plc = d.plcs[0]!;
  plc.accept();
  plc.read();
  a.hangUp(); // its 'close' comes on the next tick, before the PLC's
  // a's answer, then a frame with protocol id 1: not Modbus, the PLC stream is dropped.
  plc.receive(Buffer.concat([answer(1, 0), Buffer.from([0, 9, 0, 1, 0, 6, 1, 3])]));
  await nextTurn();
  t.same(a.writes, [], 'a got nothing: it left before its answer was written');
  t.equal(errors(d, 'framing'), 1);
  t.equal(hexOf(b.read()), cat(exception(1, TARGET_FAILED)), "b's request, in flight: 0B");
  t.end();
});
