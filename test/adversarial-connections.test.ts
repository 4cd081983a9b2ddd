// Hostile connection behaviour against plcguard over real sockets: slowloris, a thousand idle
// connections, connection floods from one source, 10,000 pipelined requests, a client that never
// reads, clients that ignore plcguard's FIN. Each case is bounded in count and time and ends with
// the shared invariants (test/fixtures/invariants.ts).
import net from 'node:net';
import t, { type Test } from 'tap';
import { RawClient, hexOf, req } from './fixtures/raw-client.js';
import type { RawPlc } from './fixtures/raw-plc.js';
import type { TestProxy } from './fixtures/proxy.js';
import { AUDIT_BURST, AUDIT_RATE_PER_SECOND } from '../proxy/audit.js';
import { REFUSALS } from '../proxy/stats.js';
import { DEVICE, HMI_RULES, Ledger, checkInvariants, collect, exceptionFor, plcReply, startCase, upstreamFrames, withLimits } from './fixtures/invariants.js';
import { until, within } from '../bench/lib/wait.js';


const setup = (t: Test, limits: string): Promise<{ plc: RawPlc; proxy: TestProxy }> => startCase(t, HMI_RULES, withLimits(limits));

const read = (tid: number, start = 0, qty = 1): Buffer => req(tid, 1, [3, 0, start, 0, qty]);
/** Denied: register 200 is outside every rule (02). */
const denied = (tid: number): Buffer => req(tid, 1, [6, 0, 200, 0, 1]);
const refusals = (proxy: TestProxy, reason: (typeof REFUSALS)[number]): number =>
  proxy.rt.server.stats.get(DEVICE).refused[REFUSALS.indexOf(reason)]!;

/** A client that sends one byte per `gapMs` (the pacing is the attack, not a synchronisation). */
function dribble(c: RawClient, bytes: Buffer, gapMs: number): { stop(): void } {
  let i = 0;
  const timer = setInterval(() => {
    if (i >= bytes.length || c.isClosed) return clearInterval(timer);
    c.send(bytes.subarray(i, ++i));
  }, gapMs);
  return { stop: () => clearInterval(timer) };
}

void t.test('slowloris at 1 byte per second: closed at the frame deadline while others are served', async (t) => {
  const { plc, proxy } = await setup(t, 'frame_timeout_ms: 2500');
  const attackers = await Promise.all(Array.from({ length: 20 }, (_, i) => RawClient.connect(proxy.port, `127.0.1.${i + 1}`)));
  const started = performance.now();
  const drips = attackers.map((c, i) => dribble(c, read(i + 1), 1000));
  t.teardown(() => drips.forEach((d) => d.stop()));
  // Meanwhile a slow but honest client: each frame byte by byte, well within the deadline.
  const honest = await RawClient.connect(proxy.port, '127.0.2.1');
  for (let i = 0; i < 3; i++) {
    const d = dribble(honest, read(100 + i, i), 50);
    const [reply] = await within(honest.read(), `honest frame ${i}`);
    d.stop();
    t.equal(hexOf(reply!), hexOf(plcReply(read(100 + i, i))), `the slow honest client's frame ${i} is answered`);
  }
  await within(Promise.all(attackers.map((c) => c.closed)), 'every slowloris connection closed', 10_000);
  const took = performance.now() - started;
  t.ok(took >= 2400 && took < 5000, `closed at the 2.5 s deadline (${Math.round(took)} ms), not at 12 s when the frame would be whole`);
  t.same(attackers.map((c) => c.received.length), attackers.map(() => 0), 'no reply to any of them');
  t.equal(proxy.rt.server.stats.get(DEVICE).frameTimeouts, 20, 'each counted');
  t.equal(upstreamFrames(plc).flatMap((c) => c.frames).length, 3, 'only the honest frames reached the PLC');
  honest.close();
  await honest.closed;
  await checkInvariants(t, { proxy, plc, sources: ['127.0.2.1'] });
});

void t.test('1,000 idle connections: held without a PLC connection, then closed by the idle timeout', async (t) => {
  const { plc, proxy } = await setup(t, 'max_connections: 1001, max_connections_per_source: 100, idle_timeout_ms: 2000');
  const idle: RawClient[] = [];
  // Ten sources of a hundred each, connected a hundred at a time (the listen backlog is finite).
  for (let wave = 0; wave < 10; wave++) {
    idle.push(...(await Promise.all(Array.from({ length: 100 }, () => RawClient.connect(proxy.port, `127.0.3.${wave + 1}`)))));
  }
  await until(() => proxy.rt.server.sessions().length === 1000, 'all 1,000 sessions are up');
  t.equal(plc.connections, 0, 'no PLC connection for clients that asked nothing');
  // One more slot: a working client is served while the thousand sit there.
  const worker = await RawClient.connect(proxy.port, '127.0.4.1');
  const started = performance.now();
  worker.send(read(1, 9));
  t.equal(hexOf((await within(worker.read(), 'the worker reply'))[0]!), hexOf(plcReply(read(1, 9))), 'served alongside 1,000 idle connections');
  t.ok(performance.now() - started < 1000, 'promptly');
  const over = await RawClient.connect(proxy.port, '127.0.4.2');
  await within(over.closed, 'the refusal');
  t.equal(over.received.length, 0, 'the connection past max_connections is refused');
  t.equal(refusals(proxy, 'max_connections'), 1);
  worker.close();
  await within(Promise.all(idle.map((c) => c.closed)), 'the idle timeout closing all 1,000', 15_000);
  t.equal(proxy.logs.filter((l) => l.event === 'idle_timeout').length, 1000, 'each closed for being idle');
  await checkInvariants(t, { proxy, plc, sources: ['127.0.4.1'] });
});

void t.test('a connection flood from one source: the per-source limit holds and others are served', async (t) => {
  const { plc, proxy } = await setup(t, 'max_connections: 64, max_connections_per_source: 8');
  const kept = await Promise.all(Array.from({ length: 8 }, () => RawClient.connect(proxy.port, '127.0.5.1')));
  await until(() => proxy.rt.server.sessions().length === 8, 'the first eight are sessions');
  const started = performance.now();
  const ATTEMPTS = 2000;
  let refusedWithoutReply = 0;
  for (let wave = 0; wave < ATTEMPTS / 200; wave++) {
    const flood = await Promise.all(
      Array.from({ length: 200 }, async () => {
        const s = net.connect({ host: '127.0.0.1', port: proxy.port, localAddress: '127.0.5.1' });
        let got = 0;
        s.on('data', (b: Buffer) => (got += b.length));
        s.on('error', () => {});
        s.on('connect', () => s.write(read(999)));
        await new Promise((resolve) => s.on('close', resolve));
        return got;
      }),
    );
    refusedWithoutReply += flood.filter((n) => n === 0).length;
  }
  const seconds = (performance.now() - started) / 1000;
  t.equal(refusedWithoutReply, ATTEMPTS, 'every flood connection closed without a byte');
  t.equal(refusals(proxy, 'max_connections_per_source'), ATTEMPTS, 'each refusal counted');
  const lines = proxy.logs.filter((l) => l.event === 'refused').length;
  t.ok(lines <= AUDIT_BURST + Math.ceil(AUDIT_RATE_PER_SECOND * seconds) + 1, `refusal log lines rate-limited (${lines} lines in ${seconds.toFixed(1)} s)`);
  const other = await RawClient.connect(proxy.port, '127.0.5.2');
  other.send(read(7));
  t.equal(hexOf((await within(other.read(), 'the other source'))[0]!), hexOf(plcReply(read(7))), 'another source is served');
  // The kept eight still work; once they leave, the source has its eight slots back.
  kept[0]!.send(read(8));
  t.equal(hexOf((await within(kept[0]!.read(), 'a kept connection'))[0]!), hexOf(plcReply(read(8))));
  for (const c of [...kept, other]) c.close();
  await until(() => proxy.rt.server.sessions().length === 0, 'all closed');
  const again = await Promise.all(Array.from({ length: 8 }, () => RawClient.connect(proxy.port, '127.0.5.1')));
  for (const [i, c] of again.entries()) c.send(read(20 + i));
  const rs = await Promise.all(again.map((c) => within(c.read(), 'the returning source')));
  t.same(rs.map((r) => hexOf(r[0]!)), again.map((_, i) => hexOf(plcReply(read(20 + i)))), 'the flooding source gets its eight slots back');
  for (const c of again) c.close();
  await Promise.all(again.map((c) => c.closed));
  t.equal(plc.requests.filter((r) => r.tid === 999).length, 0, 'nothing a refused connection sent reached the PLC');
  await checkInvariants(t, { proxy, plc, sources: ['127.0.5.1', '127.0.5.2'] });
});

void t.test('a source reconnecting to send denied requests: one audit budget for all its connections', async (t) => {
  const { plc, proxy } = await setup(t, '');
  const CONNECTIONS = 100;
  const PER_CONNECTION = 10; // within what one connection alone was allowed: the reconnecting is the attack
  const started = performance.now();
  for (let i = 0; i < CONNECTIONS; i++) {
    const c = await RawClient.connect(proxy.port, '127.0.9.1');
    c.send(Buffer.concat(Array.from({ length: PER_CONNECTION }, (_, j) => denied(i * PER_CONNECTION + j + 1))));
    await within(c.read(PER_CONNECTION), 'the denials');
    c.close();
    await c.closed;
  }
  const seconds = (performance.now() - started) / 1000;
  const lines = proxy.logs.filter((l) => l.event === 'deny' || l.event === 'audit_suppressed');
  const budget = AUDIT_BURST + Math.ceil(AUDIT_RATE_PER_SECOND * seconds);
  t.ok(lines.length <= budget, `${lines.length} audit lines for ${CONNECTIONS * PER_CONNECTION} denials in ${seconds.toFixed(1)} s (budget ${budget})`);
  const stats = proxy.rt.server.stats.get(DEVICE);
  const written = lines.filter((l) => l.event === 'deny').length;
  t.equal(written + stats.auditSuppressed, CONNECTIONS * PER_CONNECTION, 'every denial written or counted as suppressed');
  // Once the source has earned a line back (the wait is the behaviour under test), its next line
  // reports all that was suppressed and not reported yet.
  await new Promise((resolve) => setTimeout(resolve, 1000 / AUDIT_RATE_PER_SECOND));
  const last = await RawClient.connect(proxy.port, '127.0.9.1');
  last.send(denied(9999));
  await within(last.read(), 'the last denial');
  const all = proxy.logs.filter((l) => l.event === 'deny' || l.event === 'audit_suppressed');
  t.match(all.at(-1), { event: 'deny', src_ip: '127.0.9.1' });
  const reported = all.reduce((n, l) => n + Number(l.suppressed ?? 0), 0);
  t.equal(reported, stats.auditSuppressed, `every suppressed line is reported on a line written (${reported})`);
  last.close();
  await last.closed;
  await checkInvariants(t, { proxy, plc, sources: ['127.0.9.1'] });
});

void t.test('10,000 pipelined requests in one write: each answered once, the PLC gets exactly the allowed ones', async (t) => {
  const { plc, proxy } = await setup(t, '');
  const frames: Buffer[] = [];
  const allowed: Buffer[] = [];
  const ledger = new Ledger();
  for (let i = 0; i < 10_000; i++) {
    const tid = i + 1;
    if (i % 7 === 3) {
      frames.push(denied(tid));
      ledger.expect(exceptionFor(denied(tid), 0x02));
    } else {
      const f = read(tid, i % 90, 1 + (i % 10));
      frames.push(f);
      allowed.push(f);
      ledger.expect(plcReply(f));
    }
  }
  const c = await RawClient.connect(proxy.port);
  const started = performance.now();
  c.send(Buffer.concat(frames));
  while (ledger.awaiting > 0 && !c.isClosed) ledger.take(await within(c.read(ledger.awaiting), `${ledger.awaiting} replies`, 20_000));
  t.ok(ledger.ok, `every request answered exactly once (${ledger.describe()}) in ${Math.round(performance.now() - started)} ms`);
  const up = upstreamFrames(plc);
  t.equal(up.length, 1, 'one PLC connection');
  t.ok(up[0] !== undefined && Buffer.concat(up[0].frames).equals(Buffer.concat(allowed)), 'the PLC stream is exactly the allowed frames, in order');
  c.close();
  await c.closed;
  await checkInvariants(t, { proxy, plc });
});

void t.test('a client that never reads: plcguard stops reading it, holds little, and loses nothing', async (t) => {
  const { plc, proxy } = await setup(t, 'max_buffered_bytes: 4096');
  const c = net.connect({ host: '127.0.0.1', port: proxy.port });
  c.on('error', () => {});
  await within(new Promise((resolve) => c.once('connect', resolve)), 'connect');
  const ledger = new Ledger();
  const replies = collect(c, ledger);
  c.pause();
  // 209-byte answers (100 registers) and 9-byte denials: ≈ 10 MB of replies, far more than the
  // socket buffers between the two hold.
  const N = 60_000;
  const frames: Buffer[] = [];
  for (let i = 0; i < N; i++) {
    const tid = (i % 65535) + 1;
    const f = i % 5 === 0 ? denied(tid) : read(tid, 0, 100);
    ledger.expect(i % 5 === 0 ? exceptionFor(f, 0x02) : plcReply(f));
    frames.push(f);
  }
  c.write(Buffer.concat(frames));
  const session = proxy.rt.server.sessions()[0]!;
  await until(() => session.waitingForClient, 'plcguard stops reading the client that reads nothing');
  const heapAtStall = process.memoryUsage().heapUsed;
  const seen = plc.requests.length;
  t.ok(seen < (N * 4) / 5, `the PLC saw ${seen} of ${(N * 4) / 5} allowed requests`);
  t.ok(process.memoryUsage().heapUsed - heapAtStall < 64 * 1024 * 1024, 'no growth while stalled');
  c.resume();
  await replies('every reply', 30_000);
  t.ok(ledger.ok, `once it reads, every request is answered exactly once (${ledger.describe()})`);
  c.destroy();
  await checkInvariants(t, { proxy, plc });
});

void t.test('a client that never reads and vanishes: nothing is left behind', async (t) => {
  const { plc, proxy } = await setup(t, 'max_buffered_bytes: 4096');
  for (let k = 0; k < 5; k++) {
    const c = net.connect({ host: '127.0.0.1', port: proxy.port });
    c.on('error', () => {});
    await within(new Promise((resolve) => c.once('connect', resolve)), 'connect');
    c.pause();
    c.write(Buffer.concat(Array.from({ length: 60_000 }, (_, i) => (i % 4 === 0 ? denied((i % 65535) + 1) : read((i % 65535) + 1, 0, 100)))));
    const session = proxy.rt.server.sessions()[0]!;
    await until(() => session.waitingForClient, `stall ${k}`);
    c.resetAndDestroy();
    await until(() => proxy.rt.server.sessions().length === 0, `the session of vanished client ${k} is gone`);
  }
  await checkInvariants(t, { proxy, plc });
});

void t.test("clients that ignore plcguard's FIN are cut off within the linger bound", async (t) => {
  const { plc, proxy } = await setup(t, 'idle_timeout_ms: 200');
  const stubborn = await Promise.all(
    Array.from({ length: 10 }, async (_, i) => {
      // allowHalfOpen: this client keeps its side open after plcguard's FIN and keeps sending; its
      // writes fail only once plcguard has destroyed the socket (a write to a closed socket is
      // answered with a reset), which is what this measures.
      const s = net.connect({ host: '127.0.0.1', port: proxy.port, allowHalfOpen: true });
      s.on('error', () => {});
      await new Promise((resolve) => s.once('connect', resolve));
      let finAt = 0;
      let timer: NodeJS.Timeout | undefined;
      s.on('end', () => {
        finAt = performance.now();
        timer = setInterval(() => s.write(read(50 + i)), 50);
      });
      const lingered = new Promise<number>((resolve) =>
        s.on('close', () => {
          clearInterval(timer);
          resolve(finAt === 0 ? -1 : performance.now() - finAt);
        }),
      );
      // Half the clients are closed for a framing error (graceful: FIN, then linger), half for
      // being idle (closed at once).
      if (i % 2 === 0) s.write(Buffer.from([0, 1, 0, 9, 0, 6]));
      return { lingered };
    }),
  );
  const after = await within(Promise.all(stubborn.map((x) => x.lingered)), 'every stubborn socket cut off');
  t.ok(after.every((ms) => ms >= 0), 'each got the FIN first');
  t.ok(Math.max(...after) < 2500, `each cut off within the 1 s linger plus slack (worst ${Math.round(Math.max(...after))} ms after the FIN)`);
  t.equal(plc.connections, 0, 'nothing sent after the FIN reached the PLC');
  await checkInvariants(t, { proxy, plc });
});
