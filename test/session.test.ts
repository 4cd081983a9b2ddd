// Session and upstream link in memory: fake client and PLC sockets, a clock that moves only when
// told. Timeouts, pauses and the end of a session, exactly and without waiting for real time.
import t from 'tap';
import { LINGER_MS, Session, type SessionContext } from '../proxy/session.js';
import { DeviceStats, UPSTREAM_ERRORS } from '../proxy/stats.js';
import { SourceRate } from '../proxy/ratelimit.js';
import { InvariantError } from '../modbus/errors.js';
import { AUDIT_BURST, AUDIT_RATE_PER_SECOND, AUDIT_TOTAL_BURST, AuditGate, type Logger } from '../proxy/audit.js';
import { MAX_REFUSED, Transaction, Upstream, type UpstreamOwner } from '../proxy/upstream.js';
import { FakeClock, FakeSocket, nextTurn } from './fixtures/fake-io.js';
import { recordLogs, type LogLine } from './fixtures/logs.js';
import { hexOf, req } from './fixtures/raw-client.js';
import { adu } from './fixtures/raw-plc.js';
import { memoryDevice } from './fixtures/memory-device.js';

/** What the sessions of one device share: time, stats, the log, and the process's audit budget. */
interface Device {
  clock: FakeClock;
  stats: DeviceStats;
  logger: Logger;
  logs: LogLine[];
  audit: AuditGate;
}

function device(): Device {
  const { logger, logs } = recordLogs();
  return { clock: new FakeClock(), stats: new DeviceStats(), logger, logs, audit: new AuditGate() };
}

interface Harness extends Device {
  session: Session;
  client: FakeSocket;
  /** PLC connections opened, in order. */
  plcs: FakeSocket[];
  /** The newest PLC connection. */
  plc(): FakeSocket;
  /** Times sessionClosed was called. */
  closedCalls: number;
  /** Swaps the device a reload would. */
  reload(limits: Record<string, number>): void;
}

/** A session of a client at `address` (127.0.0.1 unless given), alone on its device unless `on` is given. */
function start(limits: Record<string, number> = {}, on: Device = device(), address = '127.0.0.1'): Harness {
  const { logger } = on;
  const rate = new SourceRate();
  const plcs: FakeSocket[] = [];
  let compiled = memoryDevice({ idle_timeout_ms: 600_000, ...limits });
  const h = {
    ...on,
    plcs,
    closedCalls: 0,
    plc: () => plcs.at(-1)!,
    reload: (l: Record<string, number>) => {
      compiled = memoryDevice(l);
    },
  } as Omit<Harness, 'session' | 'client'> as Harness;
  const ctx: SessionContext = {
    deviceName: 'plc',
    current: () => compiled,
    stats: on.stats,
    logger,
    audit: on.audit,
    rateFor: () => rate,
    learner: null,
    learnCeilingReached: () => {},
    logUpstream: (event, fields) => logger.log(event, { device: 'plc', ...fields }),
    clock: on.clock,
    connect: () => {
      const s = new FakeSocket();
      plcs.push(s);
      return s;
    },
    sessionClosed: () => {
      h.closedCalls++;
    },
    upstreamFor: (_owner, d) => new Upstream(d.upstream, d.limits, ctx),
  };
  h.client = new FakeSocket();
  h.session = new Session(h.client, ctx, address, 50_000, 'c1');
  return h;
}

// Read Holding Registers (FC3) of unit 1 from `start`, `qty` registers:
// tid(2) | protocol 0(2) | length 6(2) | unit 1 | FC 3 | start(2) | quantity(2)
const read = (tid: number, start = 0, qty = 1): Buffer => req(tid, 1, [3, start >> 8, start & 0xff, qty >> 8, qty & 0xff]);
// Its answer: tid | 0 | length | unit 1 | FC 3 | byte count 2·qty | register i holds start + i
const answer = (tid: number, start = 0, qty = 1): Buffer =>
  adu(tid, 1, [3, 2 * qty, ...Array.from({ length: qty }, (_, i) => [(start + i) >> 8, (start + i) & 0xff]).flat()]);
// Write Single Register (FC6) of unit 1: no rule allows it, so it is denied with 01.
const write = (tid: number): Buffer => req(tid, 1, [6, 0, 10, 0, 1]);

const timeoutErrors = (h: Harness): number => h.stats.upstreamErrors[UPSTREAM_ERRORS.indexOf('timeout')]!;

void t.test('an allowed read goes to the PLC and its answer back, byte for byte', (t) => {
  const h = start();
  h.client.receive(read(0x1234, 5, 3));
  const plc = h.plc();
  plc.accept();
  t.equal(hexOf(plc.read()), hexOf(read(0x1234, 5, 3)));
  plc.receive(answer(0x1234, 5, 3));
  t.equal(hexOf(h.client.read()), '123400000009010306000500060007');
  t.end();
});

void t.test('batching: one chunk of frames leaves in one write each way, denials among them too', (t) => {
  const h = start();
  h.client.receive(Buffer.concat([read(1), write(2), read(3)]));
  const plc = h.plc();
  plc.accept();
  plc.read();
  t.same(plc.writes.map(hexOf), [hexOf(Buffer.concat([read(1), read(3)]))], 'both allowed frames in one write to the PLC');
  // The denial: tid 2 | 0 | length 3 | unit 1 | FC 6|0x80 | 01 (illegal function)
  t.same(h.client.read().toString('hex'), '000200000003018601', 'the denial written to the client');
  plc.receive(Buffer.concat([answer(1), answer(3)]));
  h.client.read();
  t.same(h.client.writes.slice(1).map(hexOf), [hexOf(Buffer.concat([answer(1), answer(3)]))], 'both answers in one write');
  t.end();
});

void t.test('frame timeout: from the first byte of the frame, exactly; then FIN and the linger bound', async (t) => {
  const h = start({ frame_timeout_ms: 100 });
  const frame = read(1);
  h.client.receive(frame.subarray(0, 4));
  h.clock.advance(60);
  h.client.receive(frame.subarray(4, 8)); // more of the same frame: its deadline stays
  h.clock.advance(39);
  t.equal(h.stats.frameTimeouts, 0, 'not at 99 ms');
  h.clock.advance(1);
  t.equal(h.stats.frameTimeouts, 1, 'at 100 ms from its first byte');
  t.match(h.logs.at(-1), { event: 'frame_timeout', partial_bytes: 8, action: 'close' });
  t.ok(h.client.finSent, 'nothing outstanding: FIN at once');
  t.equal(h.closedCalls, 1, 'no longer counted');
  t.equal(h.plcs.length, 0, 'nothing went to the PLC');
  h.client.receive(frame); // lingering: read and dropped
  t.equal(h.plcs.length, 0, 'what comes after the FIN is dropped');
  h.clock.advance(LINGER_MS - 1);
  t.notOk(h.client.destroyed, 'the client has the linger time to close');
  h.clock.advance(1);
  t.ok(h.client.destroyed, 'a client ignoring the FIN is cut off at the linger bound');
  await nextTurn();
  t.equal(h.closedCalls, 1, 'the close after lingering is not counted again');
  t.equal(h.clock.pending, 0, 'no timer left');
});

void t.test('frame timeout: each frame gets its own deadline', (t) => {
  const h = start({ frame_timeout_ms: 100 });
  const a = read(1);
  const b = read(2);
  h.client.receive(a.subarray(0, 11));
  h.clock.advance(90);
  h.client.receive(Buffer.concat([a.subarray(11), b.subarray(0, 5)])); // a completes, b begins
  h.clock.advance(99);
  t.equal(h.stats.frameTimeouts, 0, "b is not held to a's deadline");
  h.clock.advance(1);
  t.equal(h.stats.frameTimeouts, 1, "b times out 100 ms after its own first byte");
  t.end();
});

void t.test('frame timeout: a frame completed in time leaves its timer nothing to do', (t) => {
  const h = start({ frame_timeout_ms: 100 });
  h.client.receive(read(1).subarray(0, 3));
  h.client.receive(read(1).subarray(3));
  h.clock.advance(100);
  t.equal(h.stats.frameTimeouts, 0);
  t.notOk(h.client.finSent, 'the session goes on');
  t.end();
});

void t.test('idle timeout: counted from the last request or answer, not while one is outstanding', (t) => {
  const h = start({ idle_timeout_ms: 1000, response_timeout_ms: 5000 });
  h.clock.advance(999);
  t.notOk(h.client.destroyed, 'not idle at 999 ms');
  h.client.receive(read(1)); // activity at 999
  const plc = h.plc();
  plc.accept();
  h.clock.advance(1500); // waiting on the PLC is not idle
  t.notOk(h.client.destroyed, 'not idle while the PLC is working on a request');
  plc.receive(answer(1)); // answered at 2499
  h.clock.advance(999);
  t.notOk(h.client.destroyed, 'not idle 999 ms after the answer');
  h.clock.advance(1);
  t.ok(h.client.destroyed, 'closed 1000 ms after the answer');
  t.notOk(h.client.finSent, 'closed at once, no FIN first');
  t.match(h.logs.at(-1), { event: 'idle_timeout', action: 'close' });
  t.equal(h.closedCalls, 1);
  t.ok(plc.destroyed, 'its PLC connection closed with it');
  t.end();
});

void t.test('idle timeout: a reload applies the new value from the next frame', (t) => {
  const h = start({ idle_timeout_ms: 10_000 });
  h.reload({ idle_timeout_ms: 100 });
  h.client.receive(write(1)); // denied, but a frame: the reload shows
  h.clock.advance(99);
  t.notOk(h.client.destroyed);
  h.clock.advance(1);
  t.ok(h.client.destroyed, 'closed after the new, shorter idle timeout');
  t.end();
});

void t.test('response timeout: exactly then, exception 0B with the exact bytes; the late answer is dropped', (t) => {
  const h = start({ response_timeout_ms: 500 });
  h.client.receive(read(0x1234));
  const plc = h.plc();
  plc.accept();
  plc.read();
  h.clock.advance(499);
  t.equal(h.client.read().length, 0, 'nothing at 499 ms');
  h.clock.advance(1);
  // tid 0x1234 | protocol 0 | length 3 | unit 1 | FC 3|0x80 | 0B gateway target failed to respond
  t.equal(hexOf(h.client.read()), '12340000000301830b');
  t.equal(timeoutErrors(h), 1, 'counted as a PLC timeout');
  plc.receive(answer(0x1234));
  t.equal(h.client.read().length, 0, 'the late answer is not delivered');
  t.equal(h.stats.lateResponses, 1, 'it is counted as late');
  t.equal(h.stats.unsolicitedResponses, 0, 'not as unsolicited');
  t.end();
});

void t.test('response timeout: one timer for all outstanding, each request its own deadline', (t) => {
  const h = start({ response_timeout_ms: 500 });
  h.client.receive(read(1));
  const plc = h.plc();
  plc.accept();
  h.clock.advance(200);
  h.client.receive(read(2));
  h.clock.advance(300);
  t.equal(hexOf(h.client.read()), hexOf(adu(1, 1, [0x83, 0x0b])), 'the first at 500 ms');
  h.clock.advance(199);
  t.equal(h.client.read().length, 0);
  h.clock.advance(1);
  t.equal(hexOf(h.client.read()), hexOf(adu(2, 1, [0x83, 0x0b])), 'the second 500 ms after it was sent');
  t.end();
});

void t.test('max_outstanding: reading stops at the limit, the rest is held, an answer lets one more go', (t) => {
  const h = start({ max_outstanding: 2 });
  h.client.receive(Buffer.concat([read(1), read(2), read(3)]));
  const plc = h.plc();
  plc.accept();
  t.equal(hexOf(plc.read()), hexOf(Buffer.concat([read(1), read(2)])), 'two at the PLC');
  t.ok(h.client.isPaused, 'the client is not read at the limit');
  plc.receive(answer(1));
  t.equal(hexOf(plc.read()), hexOf(read(3)), 'one answer: the held one goes');
  t.ok(h.client.isPaused, 'at the limit again');
  plc.receive(Buffer.concat([answer(2), answer(3)]));
  t.notOk(h.client.isPaused, 'below it: read again');
  t.equal(hexOf(h.client.read()), hexOf(Buffer.concat([answer(1), answer(2), answer(3)])), 'every answer, in order');
  t.end();
});

void t.test("write() false toward the client: both sides stop being read until the client's 'drain'", (t) => {
  const h = start({ max_outstanding: 4096, max_buffered_bytes: 1024 * 1024 });
  const n = 80; // 80 answers of 209 bytes (100 registers): past the socket's 16 KiB high-water mark
  h.client.receive(Buffer.concat(Array.from({ length: n }, (_, i) => read(i, 0, 100))));
  const plc = h.plc();
  plc.accept();
  plc.read();
  plc.receive(Buffer.concat(Array.from({ length: n }, (_, i) => answer(i, 0, 100))));
  t.ok(h.session.waitingForClient, 'waiting for the client');
  t.ok(h.client.isPaused, 'the client is not read');
  t.ok(plc.isPaused, 'nor the PLC');
  t.equal(h.client.read().length, n * 209, 'every answer was written');
  t.notOk(h.session.waitingForClient, "after 'drain'");
  t.notOk(h.client.isPaused, 'the client is read again');
  t.notOk(plc.isPaused, 'and the PLC');
  t.end();
});

void t.test('max_buffered_bytes below the high-water mark: the write callback ends the wait', (t) => {
  const h = start({ max_buffered_bytes: 300 });
  h.client.receive(Buffer.concat([read(1, 0, 100), read(2, 0, 100)]));
  const plc = h.plc();
  plc.accept();
  plc.receive(answer(1, 0, 100));
  t.notOk(h.session.waitingForClient, '209 bytes queued: within 300');
  plc.receive(answer(2, 0, 100));
  t.ok(h.session.waitingForClient, '418 bytes queued: over 300');
  t.ok(plc.isPaused);
  h.client.read();
  t.notOk(h.session.waitingForClient, 'taken: no wait, though no drain is owed');
  t.notOk(plc.isPaused);
  t.end();
});

void t.test("write() false toward the PLC: the client stops being read until the PLC's 'drain'", (t) => {
  const h = start({ max_outstanding: 4096, max_buffered_bytes: 1024 * 1024 });
  const chunk = Buffer.concat(Array.from({ length: 1400 }, (_, i) => read(i))); // 16.8 KB
  h.client.receive(chunk);
  const plc = h.plc();
  t.ok(h.client.isPaused, 'the PLC socket is full: the client is not read');
  t.equal(plc.read().length, chunk.length);
  t.notOk(h.client.isPaused, "read again after the PLC socket's 'drain'");
  t.end();
});

void t.test('the PLC lost while its socket was full: the client is read again and gets 0B', async (t) => {
  const h = start({ max_outstanding: 4096, max_buffered_bytes: 1024 * 1024, reconnect_backoff_min_ms: 1, reconnect_backoff_max_ms: 1 });
  h.client.receive(Buffer.concat(Array.from({ length: 1400 }, (_, i) => read(i))));
  const plc = h.plc();
  plc.accept();
  t.ok(h.client.isPaused);
  plc.hangUp();
  await nextTurn();
  t.notOk(h.client.isPaused, 'nothing is queued to the PLC any more');
  const replies = h.client.read();
  t.equal(replies.length, 1400 * 9, 'a 0B for each outstanding request');
  t.equal(hexOf(replies.subarray(0, 9)), hexOf(adu(0, 1, [0x83, 0x0b])));
  t.end();
});

void t.test('connect timeout: the request gets 0A', async (t) => {
  const h = start({ connect_timeout_ms: 100 });
  h.client.receive(read(7));
  const plc = h.plc();
  h.clock.advance(99);
  t.notOk(plc.destroyed);
  h.clock.advance(1);
  t.ok(plc.destroyed, 'the attempt is given up at 100 ms');
  await nextTurn();
  // tid 7 | 0 | length 3 | unit 1 | FC 3|0x80 | 0A gateway path unavailable
  t.equal(hexOf(h.client.read()), '00070000000301830a');
  t.equal(h.stats.upstreamErrors[UPSTREAM_ERRORS.indexOf('unreachable')], 1);
});

void t.test('a response in pieces: each piece reaches the client with the chunk that brought it', (t) => {
  const h = start();
  h.client.receive(read(1, 0, 10));
  const plc = h.plc();
  plc.accept();
  const full = answer(1, 0, 10); // 29 bytes
  plc.receive(full.subarray(0, 10));
  t.equal(hexOf(h.client.read()), hexOf(full.subarray(0, 10)), 'the head');
  plc.receive(full.subarray(10, 20));
  t.equal(hexOf(h.client.read()), hexOf(full.subarray(10, 20)), 'a middle piece, not held for the next');
  h.client.receive(write(2)); // a denial while the response is open waits behind it
  t.equal(h.client.read().length, 0, 'no reply inside the response');
  t.ok(h.client.isPaused, 'and no more reading meanwhile');
  plc.receive(full.subarray(20));
  t.equal(hexOf(h.client.read()), hexOf(Buffer.concat([full.subarray(20), adu(2, 1, [0x86, 0x01])])), 'the rest, then the denial');
  t.notOk(h.client.isPaused);
  t.end();
});

void t.test('an unsolicited response in pieces is dropped whole and counted once', (t) => {
  const h = start();
  h.client.receive(read(1));
  const plc = h.plc();
  plc.accept();
  const stray = answer(99, 0, 10); // tid 99: nothing asked for it
  plc.receive(stray.subarray(0, 10));
  plc.receive(stray.subarray(10, 20));
  plc.receive(Buffer.concat([stray.subarray(20), answer(1)]));
  t.equal(hexOf(h.client.read()), hexOf(answer(1)), 'only the answer asked for');
  t.equal(h.stats.unsolicitedResponses, 1);
  t.end();
});

void t.test('a response stalling mid-way: the client is closed at the response timeout', async (t) => {
  const h = start({ response_timeout_ms: 500 });
  h.client.receive(read(1));
  const plc = h.plc();
  plc.accept();
  h.clock.advance(100);
  h.client.receive(read(2, 0, 10));
  plc.receive(answer(1));
  plc.receive(answer(2, 0, 10).subarray(0, 12)); // the head of the second, sent at 100
  h.clock.advance(400); // the timer set for the first: the second still has 100 ms
  t.notOk(plc.destroyed, 'not before its own deadline');
  h.clock.advance(100);
  t.ok(plc.destroyed, 'the PLC connection is dropped');
  await nextTurn();
  t.ok(h.client.destroyed, 'the client, whose response was cut, is closed');
  t.equal(hexOf(h.client.read()), hexOf(Buffer.concat([answer(1), answer(2, 0, 10).subarray(0, 12)])), 'what it got: the first answer and the head of the second');
  t.equal(timeoutErrors(h), 1);
});

void t.test('response timer: a streamed response and the requests after it keep their own deadlines', (t) => {
  const h = start({ response_timeout_ms: 500 });
  h.client.receive(read(1));
  const plc = h.plc();
  plc.accept();
  h.clock.advance(100);
  h.client.receive(read(2, 0, 10));
  h.clock.advance(100);
  h.client.receive(read(3));
  h.clock.advance(100);
  h.client.receive(read(4));
  // The PLC answers 1, then streams the head of 3 (out of order), leaving 2 and 4 waiting.
  plc.receive(Buffer.concat([answer(1), answer(3, 0, 1).subarray(0, 9)]));
  h.clock.advance(200); // t = 500: the timer for 1 finds nothing expired; 2 (sent at 100) is next
  t.equal(h.client.read().length, answer(1).length + 9);
  h.clock.advance(100); // t = 600: 2 expires; its 0B waits behind the open response
  t.equal(h.client.read().length, 0, '0B for 2 deferred behind the response streaming');
  h.clock.advance(100); // t = 700: 3, streaming since it was sent at 200, stalls
  t.ok(plc.destroyed, 'the stalled response drops the connection at its own deadline');
  t.equal(timeoutErrors(h), 1, '2 timed out; 3 is counted when the connection goes');
  t.end();
});

void t.test('a reconnect while the client is not reading: the new PLC connection is not read either', async (t) => {
  const h = start({ max_outstanding: 1, max_buffered_bytes: 300 });
  h.client.receive(Buffer.concat([read(1, 0, 100), read(2, 0, 100), read(3, 0, 100), read(4)]));
  const first = h.plc();
  first.accept();
  first.receive(answer(1, 0, 100));
  first.receive(answer(2, 0, 100)); // 418 bytes queued to the client: over 300
  t.ok(first.isPaused, 'the PLC is not read while the client is full');
  first.hangUp(); // with 3 outstanding: it gets 0B, and 4 goes on a new connection
  await nextTurn();
  t.equal(h.plcs.length, 2, 'reconnected for the held request');
  const second = h.plc();
  t.ok(second.isPaused, 'the new connection starts paused: the client is still full');
  h.client.read();
  t.notOk(second.isPaused, 'the client took it all: the PLC is read again');
  second.accept();
  t.equal(hexOf(second.read()), hexOf(read(4)));
});

void t.test('a half-closed client: held requests still go, every one is answered, then FIN without linger', async (t) => {
  const h = start({ max_outstanding: 1 });
  h.client.receive(Buffer.concat([read(1), read(2)]));
  h.client.receiveEnd();
  const plc = h.plc();
  plc.accept();
  t.equal(hexOf(plc.read()), hexOf(read(1)));
  plc.receive(answer(1));
  t.equal(hexOf(plc.read()), hexOf(read(2)), 'the held request is taken after the FIN');
  t.notOk(h.client.finSent);
  plc.receive(answer(2));
  t.equal(hexOf(h.client.read()), hexOf(Buffer.concat([answer(1), answer(2)])));
  t.ok(h.client.finSent, 'then FIN');
  t.equal(h.clock.pending, 0, 'no linger: the client closed its side first');
  await nextTurn();
  t.ok(h.client.destroyed);
  t.equal(h.closedCalls, 1);
});

void t.test('stopGracefully: held requests never go, outstanding ones are answered, then FIN', async (t) => {
  const h = start({ max_outstanding: 1 });
  h.client.receive(Buffer.concat([read(1), read(2)]));
  const plc = h.plc();
  plc.accept();
  plc.read();
  let closed = false;
  void h.session.whenClosed().then(() => (closed = true));
  h.session.stopGracefully();
  t.ok(h.client.isPaused);
  plc.receive(answer(1));
  t.equal(plc.read().length, 0, 'the held request is not taken up');
  t.equal(hexOf(h.client.read()), hexOf(answer(1)), 'the outstanding one is answered');
  t.ok(h.client.finSent);
  await nextTurn();
  t.ok(closed, 'whenClosed resolved');
  t.ok(plc.destroyed, 'the PLC connection is closed');
  h.client.receiveEnd(); // the client's FIN, while lingering
  await nextTurn();
  t.ok(h.client.destroyed);
  t.equal(h.clock.pending, 0, 'the linger timer went with the socket');
  await h.session.whenClosed();
  h.session.stopGracefully();
  h.session.close('shutdown');
  t.equal(h.closedCalls, 1, 'stopping or closing an ended session does nothing');
});

void t.test('a second reason to stop: the first stands', (t) => {
  const h = start();
  h.client.receive(read(1));
  h.plc().accept();
  h.client.receive([0, 1, 0, 9, 0, 6]); // protocol id 9: a framing error, with 1 outstanding
  t.match(h.logs.at(-1), { event: 'framing_error', action: 'close' });
  h.session.stopGracefully();
  t.notOk(h.client.finSent, 'still answering what is outstanding');
  h.plc().receive(answer(1));
  t.ok(h.client.finSent);
  t.end();
});

void t.test('the client resets: the session and its PLC connection go at once', async (t) => {
  const h = start();
  h.client.receive(read(1));
  const plc = h.plc();
  plc.accept();
  h.client.destroy(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }));
  await nextTurn();
  t.equal(h.closedCalls, 1);
  await nextTurn();
  t.ok(plc.destroyed);
  t.equal(h.stats.upstreamConnections, 0, 'no PLC connection counted');
  t.equal(h.clock.pending, 0, 'no timer left');
});

void t.test('states plcguard rules out throw instead of passing silently', (t) => {
  const h = start();
  h.session.close('shutdown');
  const f = read(1);
  t.throws(() => h.session.frame(f, 0, f.length), { name: 'InvariantError', code: 'ERR_INVARIANT' }, 'a frame for a closed session');
  const device = memoryDevice({});
  const link = new Upstream(device.upstream, device.limits, { stats: h.stats, clock: h.clock, connect: () => new FakeSocket(), logUpstream: () => {} });
  link.close();
  const owner = {} as UpstreamOwner;
  t.throws(() => link.send(new Transaction(owner), f, 0, f.length, false), InvariantError, 'a send on a closed link');
  t.end();
});

// ---- transaction ids toward the PLC ----

/** The transaction id of the frame the PLC got. */
const tidOf = (frame: Buffer): number => frame.readUInt16BE(0);

void t.test('a late answer never reaches a later request with the same tid, unit and FC', (t) => {
  const h = start({ response_timeout_ms: 500 });
  h.client.receive(read(7, 10));
  const plc = h.plc();
  plc.accept();
  t.equal(hexOf(plc.read()), hexOf(read(7, 10)), 'a free tid goes to the PLC as the client sent it');
  h.clock.advance(500);
  t.equal(hexOf(h.client.read()), hexOf(adu(7, 1, [0x83, 0x0b])), 'no answer in time: 0B');
  h.client.receive(read(7, 11)); // the next request: the same tid, unit and FC
  const second = plc.read();
  const tid = tidOf(second);
  t.not(tid, 7, 'not the tid whose answer may still come');
  t.equal(hexOf(second.subarray(2)), hexOf(read(7, 11).subarray(2)), 'the rest of the frame byte for byte');
  plc.receive(answer(7, 10)); // HR10's answer, late
  t.equal(h.client.read().length, 0, 'the late answer is dropped');
  t.equal(h.stats.lateResponses, 1, 'and counted as late');
  plc.receive(answer(tid, 11));
  t.equal(hexOf(h.client.read()), hexOf(answer(7, 11)), "HR11's own answer, under the client's tid");
  h.client.receive(read(7, 12));
  t.equal(hexOf(plc.read()), hexOf(read(7, 12)), 'once the late answer came, tid 7 is free again');
  t.equal(h.stats.unsolicitedResponses, 0);
  t.end();
});

void t.test('a request answered 0B is never answered again, even when its answer comes after the next one', (t) => {
  const h = start({ response_timeout_ms: 500 });
  h.client.receive(read(1, 10));
  const plc = h.plc();
  plc.accept();
  plc.read();
  h.clock.advance(500);
  h.client.read(); // the 0B
  h.client.receive(read(1, 11));
  const tid = tidOf(plc.read());
  plc.receive(Buffer.concat([answer(tid, 11), answer(1, 10)])); // the second's answer, then the late one
  t.equal(hexOf(h.client.read()), hexOf(answer(1, 11)), 'one answer, the right one');
  t.equal(h.stats.lateResponses, 1);
  t.end();
});

void t.test('pipelined requests sharing one tid each get their own answer, whatever order the PLC answers in', (t) => {
  const h = start();
  // Some clients use one tid for everything: 0, three times, then 1 (which a remapped one holds).
  h.client.receive(Buffer.concat([read(0, 1), read(0, 2), read(0, 3), read(1, 4)]));
  const plc = h.plc();
  plc.accept();
  const sent = plc.read();
  const tids = [0, 1, 2, 3].map((i) => sent.readUInt16BE(i * 12));
  t.same(tids, [0, 1, 2, 3], 'the first as sent, the others on the next free ids');
  plc.receive(Buffer.concat([answer(tids[2]!, 3), answer(tids[0]!, 1), answer(tids[3]!, 4), answer(tids[1]!, 2)]));
  t.equal(hexOf(h.client.read()), hexOf(Buffer.concat([answer(0, 3), answer(0, 1), answer(1, 4), answer(0, 2)])), 'each answer with its own value, under its client tid');
  t.equal(h.stats.unsolicitedResponses + h.stats.lateResponses, 0);
  t.end();
});

void t.test('a remapped answer in pieces gets the client tid in its first piece; a late one in pieces is dropped whole', (t) => {
  const h = start({ response_timeout_ms: 500 });
  h.client.receive(read(5, 0, 10));
  const plc = h.plc();
  plc.accept();
  plc.read();
  h.clock.advance(500);
  h.client.read();
  h.client.receive(read(5, 0, 10));
  const tid = tidOf(plc.read());
  const late = answer(5, 0, 10);
  plc.receive(late.subarray(0, 9));
  plc.receive(late.subarray(9));
  t.equal(h.client.read().length, 0, 'the late answer, in two pieces: nothing of it delivered');
  t.equal(h.stats.lateResponses, 1, 'counted once');
  const own = answer(tid, 0, 10);
  plc.receive(own.subarray(0, 9));
  t.equal(hexOf(h.client.read()), hexOf(answer(5, 0, 10).subarray(0, 9)), "the head, with the client's tid");
  plc.receive(own.subarray(9));
  t.equal(hexOf(h.client.read()), hexOf(own.subarray(9)), 'the rest as it came');
  t.end();
});

void t.test('a late answer that does not fit its request is unsolicited, and the tid stays taken', (t) => {
  const h = start({ response_timeout_ms: 500 });
  h.client.receive(read(3));
  const plc = h.plc();
  plc.accept();
  plc.read();
  h.clock.advance(500);
  h.client.read();
  plc.receive(adu(3, 1, [4, 2, 0, 0])); // tid 3, but FC4
  t.equal(h.stats.unsolicitedResponses, 1);
  t.equal(h.stats.lateResponses, 0);
  h.client.receive(read(3));
  t.not(tidOf(plc.read()), 3, 'the real answer to the first may still come');
  t.end();
});

void t.test('after the PLC connection is lost, every tid is free again on the next one', async (t) => {
  const h = start({ response_timeout_ms: 500, reconnect_backoff_min_ms: 1, reconnect_backoff_max_ms: 1 });
  h.client.receive(read(9));
  const first = h.plc();
  first.accept();
  first.read();
  h.clock.advance(500);
  h.client.read();
  first.hangUp();
  await nextTurn();
  h.clock.advance(1);
  h.client.receive(read(9));
  const second = h.plc();
  t.not(second, first, 'a new connection');
  second.accept();
  t.equal(hexOf(second.read()), hexOf(read(9)), 'tid 9 goes as sent: no answer can come for it here');
});

// ---- max_outstanding and a PLC that stopped answering ----

void t.test('max_outstanding bounds a silent PLC: timed-out requests keep their slots, then the connection is reset', async (t) => {
  const h = start({ max_outstanding: 4, response_timeout_ms: 500, reconnect_backoff_min_ms: 1000, reconnect_backoff_max_ms: 1000 });
  const asked = Array.from({ length: 16 }, (_, i) => read(i + 1, i));
  h.client.receive(Buffer.concat(asked));
  const plc = h.plc();
  plc.accept();
  t.equal(hexOf(plc.read()), hexOf(Buffer.concat(asked.slice(0, 4))), 'four at the PLC');
  h.clock.advance(500);
  t.equal(hexOf(h.client.read()), hexOf(Buffer.concat(asked.slice(0, 4).map((_, i) => adu(i + 1, 1, [0x83, 0x0b])))), 'each 0B at its timeout');
  t.equal(plc.read().length, 0, 'nothing more sent: the PLC may still be working on those four');
  t.ok(plc.destroyed, 'the connection is reset: only late answers could free a slot');
  t.match(h.logs.at(-1), { event: 'upstream_reset', device: 'plc', plc_host: '127.0.0.1', plc_port: 15021, unanswered: 4, action: 'reconnect' });
  await nextTurn();
  t.equal(h.plcs.length, 1, 'no new connection within the backoff (nothing was answered on that one)');
  t.equal(hexOf(h.client.read()), hexOf(Buffer.concat(asked.slice(4).map((_, i) => adu(i + 5, 1, [0x83, 0x0a])))), 'the held twelve: 0A at once');
  t.equal(timeoutErrors(h), 4, 'four timeouts; the reset is not counted again');
  t.equal(h.stats.upstreamConnections, 0);
  h.clock.advance(1000);
  h.client.receive(read(100));
  t.equal(h.plcs.length, 2, 'after the backoff, the next request reconnects');
  h.plc().accept();
  t.equal(hexOf(h.plc().read()), hexOf(read(100)));
});

void t.test('a late answer frees the slot its request held', (t) => {
  const h = start({ max_outstanding: 2, response_timeout_ms: 500 });
  h.client.receive(read(1));
  const plc = h.plc();
  plc.accept();
  h.clock.advance(200);
  h.client.receive(Buffer.concat([read(2), read(3)]));
  t.equal(hexOf(plc.read()), hexOf(Buffer.concat([read(1), read(2)])), 'two at the PLC, the third held');
  h.clock.advance(300); // 1 times out; 2 is still awaited
  t.equal(hexOf(h.client.read()), hexOf(adu(1, 1, [0x83, 0x0b])));
  t.equal(plc.read().length, 0, '3 still held: the PLC may still be working on 1');
  t.notOk(plc.destroyed, 'no reset while a request is awaited');
  plc.receive(answer(1)); // late
  t.equal(hexOf(plc.read()), hexOf(read(3)), 'its late answer frees the slot: 3 goes');
  plc.receive(Buffer.concat([answer(2), answer(3)]));
  t.equal(hexOf(h.client.read()), hexOf(Buffer.concat([answer(2), answer(3)])));
  t.end();
});

void t.test('an answer leaving only timed-out requests in the slots resets the connection too', async (t) => {
  const h = start({ max_outstanding: 2, response_timeout_ms: 500 });
  h.client.receive(read(1));
  const plc = h.plc();
  plc.accept();
  h.clock.advance(200);
  h.client.receive(Buffer.concat([read(2), read(3)]));
  plc.read();
  h.clock.advance(300); // 1 times out
  h.client.read();
  plc.receive(answer(2)); // 2 answered: 1 holds one slot; 3 takes the other
  t.equal(hexOf(plc.read()), hexOf(read(3)), '3 goes');
  h.clock.advance(500); // 3 times out too: both slots held by requests answered 0B
  t.ok(plc.destroyed, 'reset');
  await nextTurn();
  t.equal(h.stats.upstreamConnections, 0);
});

// ---- PLC connection failures ----

void t.test('a PLC refusing the connection: 0A, and a log line with its address and the error', async (t) => {
  const h = start();
  h.client.receive(read(4));
  h.plc().destroy(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:15021'), { code: 'ECONNREFUSED' }));
  await nextTurn();
  t.equal(hexOf(h.client.read()), hexOf(adu(4, 1, [0x83, 0x0a])));
  t.match(h.logs.at(-1), {
    event: 'upstream_connect_failed',
    device: 'plc',
    plc_host: '127.0.0.1',
    plc_port: 15021,
    kind: 'refused',
    error: 'ECONNREFUSED',
    message: 'connect ECONNREFUSED 127.0.0.1:15021',
  });
});

// ---- the audit budget ----

const denials = (n: number, first = 0): Buffer => Buffer.concat(Array.from({ length: n }, (_, i) => write(first + i)));
const lines = (d: Device, event: string): LogLine[] => d.logs.filter((l) => l.event === event);

void t.test('one source reconnecting: all its connections share one audit budget', async (t) => {
  const d = device();
  for (let i = 0; i < 50; i++) {
    const h = start({}, d, '10.0.0.9');
    h.client.receive(denials(10));
    h.client.hangUp();
  }
  await nextTurn();
  t.equal(lines(d, 'deny').length, AUDIT_BURST, '500 denials, one burst of lines for the source');
  t.equal(d.stats.auditSuppressed, 500 - AUDIT_BURST, 'the rest counted');
  t.equal(lines(d, 'audit_suppressed').length, 0, 'no summary line either: the budget is spent');
  d.clock.advance(1000 / AUDIT_RATE_PER_SECOND);
  const h = start({}, d, '10.0.0.9');
  h.client.receive(denials(2));
  t.equal(lines(d, 'deny').length, AUDIT_BURST + 1, 'one line earned back');
  t.match(lines(d, 'deny').at(-1), { src_ip: '10.0.0.9', src_port: 50_000, suppressed: 500 - AUDIT_BURST }, 'it reports what was suppressed');
  t.equal(d.stats.auditSuppressed, 500 - AUDIT_BURST + 1);
  d.clock.advance(1000 / AUDIT_RATE_PER_SECOND);
  h.client.hangUp();
  await nextTurn();
  t.match(lines(d, 'audit_suppressed'), [{ src_ip: '10.0.0.9', src_port: 50_000, suppressed: 1, reason: 'client_closed' }], 'the rest on the close, once a line is allowed');
});

void t.test('many sources: the whole process has one budget too', (t) => {
  const d = device();
  for (let i = 0; i < 150; i++) start({}, d, `10.1.0.${i}`).client.receive(denials(1));
  t.equal(lines(d, 'deny').length, AUDIT_TOTAL_BURST, 'each source within its own budget, all of them over the total');
  t.equal(d.stats.auditSuppressed, 150 - AUDIT_TOTAL_BURST);
  t.end();
});

void t.test('framing errors from a reconnecting source are within its budget', (t) => {
  const d = device();
  for (let i = 0; i < 30; i++) start({}, d, '10.0.0.7').client.receive([0, 1, 0, 9, 0, 6]);
  t.equal(d.stats.framingErrors, 30, 'each counted');
  t.equal(lines(d, 'framing_error').length, AUDIT_BURST, 'a burst of lines');
  t.end();
});

// ---- a PLC answering with the wrong transaction id (issue 12, item 4) ----

// The PLC's answer to a read of register 0 with a transaction id nothing was sent with.
const wrongAnswer = (): Buffer => answer(0xffff);
const exception0B = (tid: number): string => hexOf(adu(tid, 1, [0x83, 0x0b]));

void t.test('a wrong answer to the one request awaiting: 0B at once; its right answer, if it comes after all, is dropped', (t) => {
  const h = start();
  h.client.receive(read(1));
  const plc = h.plc();
  plc.accept();
  plc.read();
  plc.receive(wrongAnswer());
  t.equal(hexOf(h.client.read()), exception0B(1), 'at once, not at the response timeout');
  t.equal(h.stats.unsolicitedResponses, 1);
  h.client.receive(read(1, 7)); // tid 1 again: still reserved toward the PLC
  t.equal(hexOf(plc.read()), hexOf(read(2, 7)), 'sent with the next free id');
  plc.receive(answer(1)); // the right answer to the refused request, late
  t.equal(hexOf(h.client.read()), '', 'not given to the request now awaiting');
  t.equal(h.stats.lateResponses, 1, 'dropped and counted late');
  plc.receive(answer(2, 7));
  t.equal(hexOf(h.client.read()), hexOf(answer(1, 7)), 'its own answer, with its own tid');
  t.end();
});

void t.test(`a PLC answering with wrong ids ${MAX_REFUSED + 1} times in a row is not trusted: the connection is dropped`, async (t) => {
  const h = start();
  const plc = (): FakeSocket => h.plc();
  for (let i = 1; i <= MAX_REFUSED; i++) {
    h.client.receive(read(i));
    if (i === 1) plc().accept();
    plc().read();
    plc().receive(wrongAnswer());
  }
  t.equal(hexOf(h.client.read()), Array.from({ length: MAX_REFUSED }, (_, i) => exception0B(i + 1)).join(''), 'each refused at once');
  h.client.receive(read(MAX_REFUSED + 1));
  plc().receive(wrongAnswer());
  t.ok(plc().destroyed, 'dropped at the next');
  await nextTurn();
  t.equal(hexOf(h.client.read()), exception0B(MAX_REFUSED + 1), 'whose request gets 0B as the connection goes');
  t.equal(h.stats.upstreamErrors[UPSTREAM_ERRORS.indexOf('framing')], 1, 'counted as a broken PLC stream');
  t.equal(h.stats.unsolicitedResponses, MAX_REFUSED + 1);
});
