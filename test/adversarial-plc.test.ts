// A faulty or hostile PLC behind plcguard: it refuses, hangs (before or in the middle of a
// response), resets mid-response, answers byte by byte, sends garbage, sends unsolicited and
// mismatched responses, or accepts only one connection. Whatever it does, each client request gets
// exactly one well-formed reply (the PLC's, 0A or 0B) or, when part of a response already reached
// the client, a closed connection; never bytes meant for another request. Invariants after each.
import { spawn } from 'node:child_process';
import net from 'node:net';
import t, { type Test } from 'tap';
import { RawClient, hexOf, req } from './fixtures/raw-client.js';
import { adu, normalReply, startRawPlc, type RawPlc, type RawRequest } from './fixtures/raw-plc.js';
import { PLC_LOG_BURST, PLC_LOG_RATE_PER_SECOND } from '../proxy/audit.js';
import { devicePolicy, startProxy, type TestProxy } from './fixtures/proxy.js';
import { Random } from './fixtures/random.js';
import { UPSTREAM_ERRORS, type UpstreamErrorKind } from '../proxy/stats.js';
import { DEVICE, HMI_RULES as RULES, Ledger, checkInvariants, exceptionFor, plcReply, policyOf, startCase, withLimits } from './fixtures/invariants.js';
// elapse: a waiting period that is itself the behaviour under test (a backoff or a timeout in plcguard).
import { delay as elapse, until, within } from '../bench/lib/wait.js';
import { freePort as closedPort } from '../bench/lib/net.js';

const PATH_UNAVAILABLE = 0x0a;
const TARGET_FAILED = 0x0b;

const setup = (t: Test, limits: string, plcOpts: { maxConnections?: number } = {}): Promise<{ plc: RawPlc; proxy: TestProxy }> =>
  startCase(t, RULES, withLimits(limits), plcOpts);

const read = (tid: number, start = 0, qty = 1): Buffer => req(tid, 1, [3, 0, start, 0, qty]);
const errors = (proxy: TestProxy, kind: UpstreamErrorKind): number =>
  proxy.rt.server.stats.get(DEVICE).upstreamErrors[UPSTREAM_ERRORS.indexOf(kind)]!;

/** Reads until `n` replies or the close; fails the test (not the run) on a stall. */
async function replies(c: RawClient, n: number, what: string): Promise<Buffer[]> {
  return within(c.read(n), what);
}

void t.test('a PLC that refuses: 0A for everything asked, one attempt per backoff, service once it is back', async (t) => {
  const port = await closedPort();
  const text = devicePolicy(port, RULES, 'defaults:\n  limits: { reconnect_backoff_min_ms: 200, reconnect_backoff_max_ms: 200 }\n');
  const proxy = await startProxy(text);
  const refusing = policyOf(proxy);
  const plc = await startRawPlc();
  t.teardown(async () => {
    await proxy.stop();
    await plc.close();
  });
  const c = await RawClient.connect(proxy.port);
  const first = Array.from({ length: 50 }, (_, i) => read(i + 1, i));
  c.send(Buffer.concat(first));
  t.same((await replies(c, 50, 'fifty 0A')).map(hexOf), first.map((f) => hexOf(exceptionFor(f, PATH_UNAVAILABLE))), 'every pipelined request: 0A');
  const second = Array.from({ length: 50 }, (_, i) => read(100 + i, i));
  c.send(Buffer.concat(second));
  t.same((await replies(c, 50, 'fifty more 0A')).map(hexOf), second.map((f) => hexOf(exceptionFor(f, PATH_UNAVAILABLE))), 'within the backoff: 0A at once');
  t.equal(errors(proxy, 'refused'), 1, 'one connection attempt for all of it');

  // The PLC comes back on the same address; after the backoff the same connection is served.
  const revived = net.createServer((s) => {
    s.on('data', (chunk: Buffer) => {
      for (let i = 0; i + 6 <= chunk.length; i += 6 + chunk.readUInt16BE(i + 4)) s.write(plcReply(chunk.subarray(i, i + 6 + chunk.readUInt16BE(i + 4))));
    });
    s.on('error', () => {});
  });
  revived.listen(port, '127.0.0.1');
  t.teardown(() => new Promise<void>((resolve) => revived.close(() => resolve())));
  await elapse(250);
  c.send(read(200, 7));
  t.equal(hexOf((await replies(c, 1, 'the answer'))[0]!), hexOf(plcReply(read(200, 7))), 'served again');
  c.close();
  await c.closed;
  // The invariants' PLC is the recording one: point the device at it (open sessions are closed).
  await proxy.rewrite(devicePolicy(plc.port, RULES));
  await checkInvariants(t, { proxy, plc, policies: [refusing, policyOf(proxy)] });
});

void t.test('a PLC that hangs: 0B after the response timeout, late answers dropped', async (t) => {
  const { plc, proxy } = await setup(t, 'response_timeout_ms: 100, max_outstanding: 64');
  const late: Buffer[] = [];
  plc.respond = (r) => {
    late.push(normalReply(r));
    return { hang: true };
  };
  const c = await RawClient.connect(proxy.port);
  const asked = Array.from({ length: 50 }, (_, i) => read(i + 1, i));
  c.send(Buffer.concat(asked));
  t.same((await replies(c, 50, 'fifty 0B')).map(hexOf), asked.map((f) => hexOf(exceptionFor(f, TARGET_FAILED))), 'each: 0B, in order');
  t.equal(errors(proxy, 'timeout'), 50);
  // The answers come now, on the same PLC connection, ahead of the next request's.
  plc.respond = (r) => ({ send: Buffer.concat([...late.splice(0), normalReply(r)]) });
  const next = read(99, 3);
  c.send(next);
  t.same((await replies(c, 1, 'the next answer')).map(hexOf), [hexOf(plcReply(next))], 'the next request gets its own answer, no late one');
  t.equal(proxy.rt.server.stats.get(DEVICE).lateResponses, 50, 'the late answers were dropped and counted');
  t.equal(proxy.rt.server.stats.get(DEVICE).unsolicitedResponses, 0);
  c.close();
  await c.closed;
  // A client that half-closes while its request hangs: 0B, then the close.
  plc.respond = () => ({ hang: true });
  const h = await RawClient.connect(proxy.port);
  h.send(read(77));
  h.socket.end();
  await within(h.closed, 'the close after the 0B');
  t.equal(hexOf(h.received), hexOf(exceptionFor(read(77), TARGET_FAILED)), 'half-closed: the 0B, then closed');
  await checkInvariants(t, { proxy, plc });
});

void t.test('a late answer is never handed to the next request with the same tid, unit and FC', async (t) => {
  const { plc, proxy } = await setup(t, 'response_timeout_ms: 100');
  let slow: RawRequest | null = null;
  plc.respond = (r) => {
    if (slow === null) {
      slow = r;
      return { hang: true };
    }
    // The slow answer comes now, just ahead of the answer to the request after it.
    return { send: Buffer.concat([normalReply(slow), normalReply(r)]) };
  };
  const c = await RawClient.connect(proxy.port);
  const first = read(5, 10);
  c.send(first);
  t.equal(hexOf((await replies(c, 1, 'the 0B'))[0]!), hexOf(exceptionFor(first, TARGET_FAILED)), 'HR10: 0B at the timeout');
  const second = read(5, 11); // the same tid, unit and FC, as a synchronous client sends
  c.send(second);
  t.equal(hexOf((await replies(c, 1, 'the answer'))[0]!), hexOf(plcReply(second)), "HR11 gets HR11's value, not HR10's");
  t.not(plc.requests[1]!.tid, plc.requests[0]!.tid, 'toward the PLC, the second had a tid of its own');
  t.equal(hexOf(plc.requests[1]!.bytes.subarray(2)), hexOf(second.subarray(2)), 'and the rest of its bytes as sent');
  await until(() => proxy.rt.server.stats.get(DEVICE).lateResponses === 1, 'the late answer was counted');
  c.send(read(6, 12));
  t.equal(hexOf((await replies(c, 1, 'one more'))[0]!), hexOf(plcReply(read(6, 12))), 'nothing else was queued for the client');
  c.close();
  await c.closed;
  await checkInvariants(t, { proxy, plc });
});

void t.test('a PLC that stopped answering never holds more than max_outstanding requests', async (t) => {
  const { plc, proxy } = await setup(t, 'response_timeout_ms: 100, max_outstanding: 4, reconnect_backoff_min_ms: 60000, reconnect_backoff_max_ms: 60000');
  plc.respond = () => ({ hang: true });
  const c = await RawClient.connect(proxy.port);
  const asked = Array.from({ length: 16 }, (_, i) => read(i + 1, i));
  c.send(Buffer.concat(asked));
  const got = await replies(c, 16, 'a reply to each');
  t.same(
    got.map(hexOf),
    asked.map((f, i) => hexOf(exceptionFor(f, i < 4 ? TARGET_FAILED : PATH_UNAVAILABLE))),
    'four sent and answered 0B at the timeout; the twelve held behind them 0A once the connection was reset',
  );
  t.same(plc.requests.map((r) => r.tid), [1, 2, 3, 4], 'the PLC got four requests, all on one connection');
  t.match(proxy.logs.find((l) => l.event === 'upstream_reset'), { device: DEVICE, plc_host: '127.0.0.1', plc_port: plc.port, unanswered: 4 });
  await until(() => plc.open.size === 0, 'the PLC connection was closed by plcguard');
  t.equal(errors(proxy, 'timeout'), 4);
  c.close();
  await c.closed;
  await checkInvariants(t, { proxy, plc });
});

void t.test('a PLC refusing connections is logged with its address and the error, rate limited', async (t) => {
  const port = await closedPort();
  const proxy = await startProxy(devicePolicy(port, RULES));
  const refusing = policyOf(proxy);
  const plc = await startRawPlc();
  t.teardown(async () => {
    await proxy.stop();
    await plc.close();
  });
  const started = performance.now();
  // Twenty clients, each with its own PLC connection attempt: twenty refusals.
  const clients = await Promise.all(Array.from({ length: 20 }, (_, i) => RawClient.connect(proxy.port, `127.0.7.${i + 1}`)));
  for (const [i, c] of clients.entries()) c.send(read(i + 1));
  const got = await Promise.all(clients.map((c) => replies(c, 1, 'the 0A')));
  const seconds = (performance.now() - started) / 1000;
  t.same(got.map((r) => hexOf(r[0]!)), clients.map((_, i) => hexOf(exceptionFor(read(i + 1), PATH_UNAVAILABLE))), 'each: 0A');
  t.equal(errors(proxy, 'refused'), 20, 'each refusal counted');
  const lines = proxy.logs.filter((l) => l.event === 'upstream_connect_failed');
  t.match(lines[0], { device: DEVICE, plc_host: '127.0.0.1', plc_port: port, kind: 'refused', error: 'ECONNREFUSED' }, 'the PLC address and the error');
  t.ok(lines.length >= PLC_LOG_BURST && lines.length <= PLC_LOG_BURST + Math.ceil(PLC_LOG_RATE_PER_SECOND * seconds), `rate limited (${lines.length} lines in ${seconds.toFixed(1)} s)`);
  for (const c of clients) c.close();
  await Promise.all(clients.map((c) => c.closed));
  await proxy.rewrite(devicePolicy(plc.port, RULES));
  await checkInvariants(t, { proxy, plc, policies: [refusing, policyOf(proxy)] });
});

void t.test('a PLC that stalls mid-response: that client is cut off after the timeout, nothing is appended', async (t) => {
  const { plc, proxy } = await setup(t, 'response_timeout_ms: 150');
  const head = (r: Buffer): Buffer => r.subarray(0, 10);
  plc.respond = (r, socket) => {
    if (r.tid === 1) socket.write(head(normalReply(r)));
    return { hang: true };
  };
  const c = await RawClient.connect(proxy.port);
  const other = await RawClient.connect(proxy.port);
  // A second request waits behind the stalled one: its 0B must not land inside the response.
  c.send(Buffer.concat([read(1, 0, 4), read(2, 0, 4)]));
  await within(c.closed, 'the cut');
  t.equal(hexOf(c.received), hexOf(head(plcReply(read(1, 0, 4)))), 'exactly the head that came, then the close');
  t.equal(errors(proxy, 'timeout'), 1, 'counted as a timeout');
  plc.respond = (r) => ({ send: normalReply(r) });
  other.send(read(3));
  t.equal(hexOf((await replies(other, 1, 'the other client'))[0]!), hexOf(plcReply(read(3))), 'another client is unaffected');
  other.close();
  await other.closed;
  await checkInvariants(t, { proxy, plc });
});

void t.test('a PLC that resets mid-response, or before answering', async (t) => {
  const { plc, proxy } = await setup(t, 'reconnect_backoff_min_ms: 1, reconnect_backoff_max_ms: 1');
  plc.respond = (r, socket) => {
    if (r.tid === 1) {
      socket.write(normalReply(r).subarray(0, 12));
      setImmediate(() => socket.resetAndDestroy());
      return { hang: true };
    }
    if (r.tid === 2) return { hang: true };
    if (r.tid === 10) return { reset: true };
    return { send: normalReply(r) };
  };
  const cut = await RawClient.connect(proxy.port);
  cut.send(Buffer.concat([read(1, 0, 8), read(2)]));
  await within(cut.closed, 'the cut');
  t.equal(hexOf(cut.received), hexOf(plcReply(read(1, 0, 8)).subarray(0, 12)), 'reset mid-response: the bytes that came, then the close');
  const c = await RawClient.connect(proxy.port);
  c.send(Buffer.concat([read(10), read(11), read(12)]));
  t.same((await replies(c, 3, 'three 0B')).map(hexOf), [10, 11, 12].map((i) => hexOf(exceptionFor(read(i), TARGET_FAILED))), 'reset before answering: 0B for each');
  // A reset seen with nothing left to read may surface as a plain close: either way, one loss each.
  t.equal(errors(proxy, 'reset') + errors(proxy, 'closed'), 2, 'two PLC connections lost, each counted');
  await elapse(5); // the 1 ms backoff after a connection that answered nothing
  c.send(read(13));
  t.equal(hexOf((await replies(c, 1, 'the answer after reconnecting'))[0]!), hexOf(plcReply(read(13))), 'reconnected for the next request');
  c.close();
  await c.closed;
  await checkInvariants(t, { proxy, plc });
});

void t.test('a PLC that answers byte by byte while denials and new requests keep coming', async (t) => {
  const { plc, proxy } = await setup(t, 'max_outstanding: 8');
  // One response at a time (a PLC never interleaves), each byte its own write.
  let line = Promise.resolve();
  plc.respond = (r, socket) => {
    const bytes = normalReply(r);
    line = line.then(async () => {
      for (const b of bytes) {
        if (socket.destroyed) return;
        await new Promise<void>((resolve) => socket.write(Buffer.from([b]), () => setImmediate(resolve)));
      }
    });
    return { hang: true };
  };
  const c = await RawClient.connect(proxy.port);
  const ledger = new Ledger();
  for (let i = 0; i < 40; i++) {
    const allowed = read(2 * i + 1, i % 90, 1 + (i % 10));
    const denied = req(2 * i + 2, 1, [6, 0, 200, 0, 1]); // address 200 is not writable
    ledger.expect(plcReply(allowed));
    ledger.expect(exceptionFor(denied, 0x02));
    c.send(i % 3 === 0 ? Buffer.concat([allowed, denied]) : Buffer.concat([denied, allowed]));
    // The next pair goes out while a response is trickling in: its denial meets a half-sent answer.
    if (i > 0) await within(new Promise((resolve) => c.socket.once('data', resolve)), 'the next byte of a response');
  }
  while (ledger.awaiting > 0 && !c.isClosed) ledger.take(await replies(c, ledger.awaiting, 'the replies'));
  t.ok(ledger.ok, `the client's stream cuts into exactly the expected replies (${ledger.describe()})`);
  c.close();
  await c.closed;
  await checkInvariants(t, { proxy, plc });
});

void t.test('a PLC sending garbage and mismatched frames: seeded rounds, each with its exact outcome', async (t) => {
  const { plc, proxy } = await setup(t, 'reconnect_backoff_min_ms: 1, reconnect_backoff_max_ms: 1');
  const rnd = new Random(0x61a_8bad);
  const stats = proxy.rt.server.stats.get(DEVICE);
  const c = await RawClient.connect(proxy.port);
  let unsolicited = 0;
  let framing = 0;
  for (let round = 1; round <= 300; round++) {
    const asked = read(round, rnd.int(90), 1 + rnd.int(10));
    const right = plcReply(asked);
    const kind = rnd.pick(['noise', 'tid', 'split-tid', 'unit', 'fc', 'exception-tid', 'reply-then-noise', 'head-then-noise'] as const);
    // A protocol id that can't be 0: the stream breaks there.
    const noise = (): Buffer => Buffer.concat([rnd.bytes(2), Buffer.from([0x80 | rnd.int(128)]), rnd.bytes(rnd.range(3, 40))]);
    let send: Buffer;
    let want: Buffer;
    let pieces: Buffer[] | null = null;
    switch (kind) {
      case 'noise':
        send = noise();
        want = exceptionFor(asked, TARGET_FAILED);
        framing++;
        break;
      case 'tid':
        send = Buffer.concat([adu((round + 1 + rnd.int(1000)) & 0xffff, 1, right.subarray(7)), right]);
        want = right;
        unsolicited++;
        break;
      case 'split-tid': {
        // An unsolicited frame arriving in two pieces: its head is judged before its body.
        const stray = adu((round + 1 + rnd.int(1000)) & 0xffff, 1, right.subarray(7));
        send = Buffer.concat([stray, right]);
        pieces = [stray.subarray(0, 9), send.subarray(9)];
        want = right;
        unsolicited++;
        break;
      }
      case 'unit':
        send = Buffer.concat([adu(round, 2 + rnd.int(250), right.subarray(7)), right]);
        want = right;
        unsolicited++;
        break;
      case 'fc':
        send = Buffer.concat([adu(round, 1, [4, ...right.subarray(8)]), right]);
        want = right;
        unsolicited++;
        break;
      case 'exception-tid':
        send = Buffer.concat([adu((round + 7) & 0xffff, 1, [0x83, 4]), right]);
        want = right;
        unsolicited++;
        break;
      case 'reply-then-noise':
        send = Buffer.concat([right, noise()]);
        want = right;
        framing++;
        break;
      default: {
        // The head matches, the rest is noise: the frame is taken by its declared length and
        // delivered as is (the client's library judges the body), the noise after it breaks the
        // stream.
        const body = rnd.bytes(right.length - 8);
        send = Buffer.concat([right.subarray(0, 8), body, noise()]);
        want = Buffer.concat([right.subarray(0, 8), body]);
        framing++;
      }
    }
    const split = pieces;
    plc.respond = () => (split === null ? { send } : { pieces: split, gapMs: 2 });
    c.send(asked);
    const [got] = await replies(c, 1, `round ${round} (${kind})`);
    if (got === undefined || hexOf(got) !== hexOf(want)) {
      t.fail(`round ${round} (${kind}): got ${got === undefined ? 'nothing' : hexOf(got)}, want ${hexOf(want)}`);
      break;
    }
    if (kind === 'noise' || kind === 'reply-then-noise' || kind === 'head-then-noise') {
      // The broken PLC connection is dropped; the next request opens a new one after the 1 ms
      // backoff (a connection that answered nothing counts as a failure).
      await until(() => stats.upstreamConnections === 0, 'the broken PLC connection is gone');
      await elapse(5);
    }
  }
  t.equal(stats.unsolicitedResponses, unsolicited, 'every unsolicited or mismatched frame dropped and counted');
  t.equal(errors(proxy, 'framing'), framing, 'every broken PLC stream counted');
  t.equal(c.isClosed, false, 'the client connection survived all of it');
  c.close();
  await c.closed;
  await checkInvariants(t, { proxy, plc });
});

void t.test("a response carrying another client's transaction is never delivered to it", async (t) => {
  const { plc, proxy } = await setup(t, 'response_timeout_ms: 300');
  const a = await RawClient.connect(proxy.port, '127.0.0.1');
  const b = await RawClient.connect(proxy.port, '127.0.0.2');
  // Each client's PLC connection answers with the other's transaction ids first.
  plc.respond = (r) => {
    const other = r.tid === 1 ? read(2, 5) : read(1, 5);
    return { send: Buffer.concat([plcReply(other), normalReply(r)]) };
  };
  a.send(read(1, 5));
  t.equal(hexOf((await replies(a, 1, 'a'))[0]!), hexOf(plcReply(read(1, 5))), 'a: only its own answer');
  b.send(read(2, 5));
  t.equal(hexOf((await replies(b, 1, 'b'))[0]!), hexOf(plcReply(read(2, 5))), 'b: only its own answer');
  // Unsolicited frames with nothing outstanding, on both connections.
  for (const s of plc.open) s.write(Buffer.concat([plcReply(read(1, 5)), plcReply(read(2, 5))]));
  await until(() => proxy.rt.server.stats.get(DEVICE).unsolicitedResponses === 6, 'the injected frames were dropped');
  a.send(read(3));
  b.send(read(4));
  t.equal(hexOf((await replies(a, 1, 'a again'))[0]!), hexOf(plcReply(read(3))));
  t.equal(hexOf((await replies(b, 1, 'b again'))[0]!), hexOf(plcReply(read(4))));
  plc.respond = (r) => ({ send: normalReply(r) });
  t.same([a.received.length, b.received.length], [2 * plcReply(read(1)).length, 2 * plcReply(read(1)).length], 'nothing else reached either client');
  for (const x of [a, b]) x.close();
  await Promise.all([a.closed, b.closed]);
  await checkInvariants(t, { proxy, plc, sources: ['127.0.0.1', '127.0.0.2'] });
});

void t.test('a PLC that accepts only one connection', async (t) => {
  const { plc, proxy } = await setup(t, 'reconnect_backoff_min_ms: 100, reconnect_backoff_max_ms: 100', { maxConnections: 1 });
  const a = await RawClient.connect(proxy.port, '127.0.0.1');
  const b = await RawClient.connect(proxy.port, '127.0.0.2');
  a.send(read(1));
  t.equal(hexOf((await replies(a, 1, 'a'))[0]!), hexOf(plcReply(read(1))), 'the first client is served');
  // b's PLC connection is accepted and dropped at once: what b asked fails, then it backs off.
  b.send(read(2));
  t.equal(hexOf((await replies(b, 1, 'b'))[0]!), hexOf(exceptionFor(read(2), TARGET_FAILED)), 'the second client: 0B');
  b.send(read(3));
  t.equal(hexOf((await replies(b, 1, 'b in backoff'))[0]!), hexOf(exceptionFor(read(3), PATH_UNAVAILABLE)), 'within the backoff: 0A at once');
  a.send(read(4));
  t.equal(hexOf((await replies(a, 1, 'a again'))[0]!), hexOf(plcReply(read(4))), 'the first client is still served');
  a.close();
  await until(() => plc.open.size === 0, 'the PLC slot is free');
  await elapse(120);
  b.send(read(5));
  t.equal(hexOf((await replies(b, 1, 'b served'))[0]!), hexOf(plcReply(read(5))), 'once the slot is free, the second client is served');
  t.equal(plc.maxConcurrent, 1, 'the PLC never had more than its one connection');
  b.close();
  await b.closed;
  await checkInvariants(t, { proxy, plc, sources: ['127.0.0.1', '127.0.0.2'] });
});

void t.test('a PLC that closes idle connections: the next request reconnects without an error', async (t) => {
  const { plc, proxy } = await setup(t, '');
  const c = await RawClient.connect(proxy.port);
  for (let i = 1; i <= 5; i++) {
    c.send(read(i));
    t.equal(hexOf((await replies(c, 1, `answer ${i}`))[0]!), hexOf(plcReply(read(i))), `request ${i} answered`);
    // The PLC drops the connection between requests, as many do after an idle time.
    const [s] = [...plc.open];
    s!.end();
    await until(() => proxy.rt.server.stats.get(DEVICE).upstreamConnections === 0, 'plcguard saw the close');
  }
  t.equal(plc.connections, 5, 'one new connection per request, no error to the client');
  c.close();
  await c.closed;
  await checkInvariants(t, { proxy, plc });
});

void t.test('a PLC that stops reading: every request still gets exactly one reply, then service resumes', async (t) => {
  const { plc, proxy } = await setup(t, 'response_timeout_ms: 200, max_outstanding: 4096');
  const c = await RawClient.connect(proxy.port);
  c.send(read(1));
  await replies(c, 1, 'the first answer');
  // From now on the PLC reads nothing: what plcguard forwards waits in its receive window.
  const [plcSide] = [...plc.open];
  plcSide!.pause();
  const big = (tid: number): Buffer => req(tid, 1, [16, 0, 0, 0, 99, 198, ...new Array<number>(198).fill(7)]);
  const asked = Array.from({ length: 3000 }, (_, i) => big(2 + i));
  c.send(Buffer.concat(asked));
  const timedOut = await replies(c, asked.length, 'a reply to each');
  t.same(timedOut.map(hexOf), asked.map((f) => hexOf(exceptionFor(f, TARGET_FAILED))), 'each: 0B, in order');
  // The PLC reads again and answers all of it, late: nothing of that reaches the client.
  plcSide!.resume();
  await until(() => proxy.rt.server.stats.get(DEVICE).lateResponses === asked.length, 'the late answers were dropped');
  c.send(read(9000));
  t.equal(hexOf((await replies(c, 1, 'the next answer'))[0]!), hexOf(plcReply(read(9000))), 'service resumes on the same connection');
  c.close();
  await c.closed;
  await checkInvariants(t, { proxy, plc });
});

void t.test('a PLC that never completes the handshake: 0A after the connect timeout', async (t) => {
  // A listener whose process is stopped: the kernel queues one or two connections, then drops
  // every further SYN, so a connect neither succeeds nor fails (a PLC that froze, or a firewall
  // that drops). Our own child, stopped and killed by this test.
  const child = spawn(process.execPath, ['-e', "require('net').createServer(() => {}).listen({ port: 0, host: '127.0.0.1', backlog: 1 }, function () { console.log(this.address().port); })"], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  t.teardown(() => void child.kill('SIGKILL'));
  const port = Number(await within(new Promise<string>((resolve) => child.stdout.once('data', (d: Buffer) => resolve(d.toString()))), 'the frozen PLC port'));
  child.kill('SIGSTOP');
  // Fill its accept queue until a connect hangs.
  const fillers: net.Socket[] = [];
  t.teardown(() => fillers.forEach((s) => s.destroy()));
  for (let hung = false; !hung && fillers.length < 16; ) {
    const s = net.connect({ host: '127.0.0.1', port });
    s.on('error', () => {});
    fillers.push(s);
    hung = await new Promise<boolean>((resolve) => {
      s.once('connect', () => resolve(false));
      // The behaviour under test is the absence of an answer: 200 ms of silence says the queue is full.
      setTimeout(() => resolve(true), 200);
    });
  }
  const proxy = await startProxy(devicePolicy(port, RULES, 'defaults:\n  limits: { connect_timeout_ms: 300, reconnect_backoff_min_ms: 1, reconnect_backoff_max_ms: 1 }\n'));
  const frozen = policyOf(proxy);
  const plc = await startRawPlc();
  t.teardown(async () => {
    await proxy.stop();
    await plc.close();
  });
  const c = await RawClient.connect(proxy.port);
  const asked = [read(1), read(2, 5)];
  const started = performance.now();
  c.send(Buffer.concat(asked));
  t.same((await replies(c, 2, 'two 0A')).map(hexOf), asked.map((f) => hexOf(exceptionFor(f, PATH_UNAVAILABLE))), 'each: 0A');
  t.ok(performance.now() - started >= 290, 'after the connect timeout, not before');
  t.equal(errors(proxy, 'unreachable'), 1, 'counted as unreachable');
  c.close();
  await c.closed;
  await proxy.rewrite(devicePolicy(plc.port, RULES));
  await checkInvariants(t, { proxy, plc, policies: [frozen, policyOf(proxy)] });
});

void t.test('requests queued while the PLC connection is still opening: bounded by max_buffered_bytes, none lost', async (t) => {
  // 2,000 requests in one write, all allowed and within max_outstanding: they reach plcguard
  // before its PLC connection is up, so its queue towards the PLC is what max_buffered_bytes bounds.
  const { plc, proxy } = await setup(t, 'max_buffered_bytes: 260, max_outstanding: 4096');
  const asked = Array.from({ length: 2000 }, (_, i) => read(i + 1, i % 90, 1 + (i % 10)));
  const c = await RawClient.connect(proxy.port);
  c.send(Buffer.concat(asked));
  t.same((await replies(c, asked.length, 'every answer')).map(hexOf), asked.map((f) => hexOf(plcReply(f))), 'every request answered, in order');
  t.ok(plc.received[0]?.equals(Buffer.concat(asked)), 'the PLC got exactly the requests, in order');
  c.close();
  await c.closed;
  await checkInvariants(t, { proxy, plc });
});
