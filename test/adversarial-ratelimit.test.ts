// Per-source rate limits under attack: a flood split over many connections of one source,
// reconnecting for a fresh burst, writes hidden among reads, requests decided late (held at
// max_outstanding while another connection of the same source goes on), dropped denials. Every
// request gets exactly one reply (the PLC's answer or exception 06) and the PLC never sees more
// than the bucket allows.
import t, { type Test } from 'tap';
import { RawClient, hexOf, req } from './fixtures/raw-client.js';
import { normalReply, type RawPlc } from './fixtures/raw-plc.js';
import type { TestProxy } from './fixtures/proxy.js';
import { HMI_RULES, Ledger, checkInvariants, exceptionFor, plcReply, startCase } from './fixtures/invariants.js';
// elapse: a waiting period that is itself the behaviour under test (the buckets refilling).
import { delay as elapse, within } from '../bench/lib/wait.js';

const BUSY = 0x06;

const setup = (t: Test, extra: string): Promise<{ plc: RawPlc; proxy: TestProxy }> => startCase(t, HMI_RULES, extra);

const read = (tid: number, start = 0): Buffer => req(tid, 1, [3, 0, start, 0, 1]);
const write = (tid: number, value: number): Buffer => req(tid, 1, [6, 0, 10, value >> 8, value & 0xff]);

void t.test('a flood split over eight connections of one source is one bucket', async (t) => {
  const RATE = 50;
  const BURST = 20;
  const { plc, proxy } = await setup(t, `defaults:\n  rate_limit: { requests_per_second: ${RATE}, burst: ${BURST} }\n`);
  const clients = await Promise.all(Array.from({ length: 8 }, () => RawClient.connect(proxy.port, '127.0.6.1')));
  const started = performance.now();
  const ledgers = clients.map((c, ci) => {
    const ledger = new Ledger();
    const frames = Array.from({ length: 500 }, (_, i) => read(ci * 1000 + i + 1, i % 100));
    c.send(Buffer.concat(frames));
    return { c, ledger, frames };
  });
  const answers = await Promise.all(
    ledgers.map(async ({ c, frames }) => within(c.read(frames.length), 'five hundred replies', 10_000)),
  );
  const seconds = (performance.now() - started) / 1000;
  let allowed = 0;
  for (const [ci, { frames, ledger }] of ledgers.entries()) {
    // Each request: either the PLC's answer or 06, exactly once (06 comes at once, answers
    // later: matched by transaction id, which is unique per connection here).
    const byTid = new Map<number, Buffer[]>();
    for (const r of answers[ci]!) byTid.set(r.readUInt16BE(0), [...(byTid.get(r.readUInt16BE(0)) ?? []), r]);
    for (const f of frames) {
      const got = byTid.get(f.readUInt16BE(0)) ?? [];
      const ok = got.length === 1 && (got[0]!.equals(plcReply(f)) || got[0]!.equals(exceptionFor(f, BUSY)));
      if (!ok) ledger.unexpected.push(...got);
      if (ok && got[0]!.equals(plcReply(f))) allowed++;
    }
    t.same(ledger.unexpected.map(hexOf), [], `connection ${ci}: each request got exactly one reply, its answer or 06`);
  }
  const cap = BURST + Math.ceil(RATE * seconds) + 1;
  t.ok(allowed >= BURST && allowed <= cap, `${allowed} of 4,000 allowed in ${seconds.toFixed(2)} s (burst ${BURST}, bound ${cap})`);
  t.equal(plc.requests.length, allowed, 'the PLC saw exactly the allowed ones');
  for (const c of clients) c.close();
  await Promise.all(clients.map((c) => c.closed));
  await checkInvariants(t, { proxy, plc, sources: ['127.0.6.1'] });
});

void t.test('reconnecting does not buy a fresh burst; another source has its own bucket', async (t) => {
  const { plc, proxy } = await setup(t, 'defaults:\n  rate_limit: { requests_per_second: 1, burst: 3 }\n');
  const a = await RawClient.connect(proxy.port, '127.0.6.2');
  a.send(Buffer.concat([1, 2, 3].map((i) => read(i))));
  t.same((await within(a.read(3), 'the burst')).map(hexOf), [1, 2, 3].map((i) => hexOf(plcReply(read(i)))), 'the burst passes');
  a.close();
  await a.closed;
  const again = await RawClient.connect(proxy.port, '127.0.6.2');
  again.send(read(4));
  t.equal(hexOf((await within(again.read(), 'after reconnecting'))[0]!), hexOf(exceptionFor(read(4), BUSY)), 'reconnected at once: still 06');
  const other = await RawClient.connect(proxy.port, '127.0.6.3');
  other.send(read(5));
  t.equal(hexOf((await within(other.read(), 'another source'))[0]!), hexOf(plcReply(read(5))), 'another source: served');
  for (const c of [again, other]) c.close();
  await Promise.all([again.closed, other.closed]);
  await checkInvariants(t, { proxy, plc, sources: ['127.0.6.2', '127.0.6.3'] });
});

void t.test('writes have their own, smaller budget; reads go on', async (t) => {
  const { plc, proxy } = await setup(t, 'defaults:\n  rate_limit: { requests_per_second: 1000, writes_per_second: 1, burst: 3 }\n');
  const c = await RawClient.connect(proxy.port, '127.0.6.4');
  const first = [write(1, 1), write(2, 2), write(3, 3), write(4, 4)];
  c.send(Buffer.concat(first));
  const one = new Ledger();
  for (const [i, f] of first.entries()) one.expect(i === 3 ? exceptionFor(f, BUSY) : plcReply(f));
  one.take(await within(c.read(first.length), 'the first replies'));
  t.ok(one.ok, `three writes (the burst), the fourth: 06 (${one.describe()})`);
  await elapse(20); // the request bucket is full again, the write bucket has earned 0.02
  const second = [read(5), write(6, 6), read(7), read(8)];
  c.send(Buffer.concat(second));
  const two = new Ledger();
  for (const [i, f] of second.entries()) two.expect(i === 1 ? exceptionFor(f, BUSY) : plcReply(f));
  two.take(await within(c.read(second.length), 'the second replies'));
  t.ok(two.ok, `reads served, the write still 06 (${two.describe()})`);
  c.close();
  await c.closed;
  await checkInvariants(t, { proxy, plc, sources: ['127.0.6.4'] });
});

void t.test('a request refused by one bucket takes nothing from the other', async (t) => {
  const { plc, proxy } = await setup(t, 'defaults:\n  rate_limit: { requests_per_second: 2, writes_per_second: 1, burst: 2 }\n');
  const c = await RawClient.connect(proxy.port, '127.0.6.7');
  // Two reads empty the request bucket; the two writes after them are refused by it, and must
  // not spend the write bucket on the way.
  const first = [read(1), read(2), write(3, 3), write(4, 4)];
  c.send(Buffer.concat(first));
  const one = new Ledger();
  for (const [i, f] of first.entries()) one.expect(i >= 2 ? exceptionFor(f, BUSY) : plcReply(f));
  one.take(await within(c.read(first.length), 'the first replies'));
  t.ok(one.ok, one.describe());
  await elapse(600); // requests: +1.2 tokens; writes: still full (2), had nothing been spent
  c.send(write(5, 5));
  t.equal(hexOf((await within(c.read(), 'the write'))[0]!), hexOf(plcReply(write(5, 5))), 'the write goes on');
  c.close();
  await c.closed;
  await checkInvariants(t, { proxy, plc, sources: ['127.0.6.7'] });
});

void t.test('requests decided late (held at max_outstanding) are judged fairly against a shared bucket', async (t) => {
  // A rate no client here can reach: nothing may be refused. Requests held behind an
  // outstanding one are decided with their arrival time, which is older than what another
  // connection of the same source has shown the bucket since; that must not cost tokens (nor
  // reset the bucket to a fresh burst).
  const { plc, proxy } = await setup(t, 'defaults:\n  limits: { max_outstanding: 1 }\n  rate_limit: { requests_per_second: 1000000, burst: 3 }\n');
  const held: (() => void)[] = [];
  plc.respond = (r, socket) => {
    held.push(() => socket.write(normalReply(r)));
    return { hang: true };
  };
  const a = await RawClient.connect(proxy.port, '127.0.6.5');
  const b = await RawClient.connect(proxy.port, '127.0.6.5');
  const asked = [1, 2, 3].map((i) => read(i, i));
  a.send(Buffer.concat(asked));
  await plc.waitForRequests(1);
  b.send(read(10));
  await plc.waitForRequests(2);
  plc.respond = (r) => ({ send: normalReply(r) });
  while (held.length > 0) held.shift()!();
  t.same((await within(a.read(3), 'a')).map(hexOf), asked.map((f) => hexOf(plcReply(f))), 'every held request served, none 06');
  t.equal(hexOf((await within(b.read(), 'b'))[0]!), hexOf(plcReply(read(10))));
  for (const c of [a, b]) c.close();
  await Promise.all([a.closed, b.closed]);
  await checkInvariants(t, { proxy, plc, sources: ['127.0.6.5'] });
});

void t.test('on_deny drop: requests over the rate get no reply at all, and nothing upstream', async (t) => {
  const { plc, proxy } = await setup(t, 'defaults:\n  on_deny: drop\n  rate_limit: { requests_per_second: 1, burst: 2 }\n');
  const c = await RawClient.connect(proxy.port, '127.0.6.6');
  c.send(Buffer.concat([1, 2, 3, 4, 5].map((i) => read(i))));
  const rs = await within(c.read(2), 'the two within the burst');
  t.same(rs.map(hexOf), [1, 2].map((i) => hexOf(plcReply(read(i)))));
  c.socket.end();
  await within(c.closed, 'the close');
  t.equal(c.received.length, 2 * plcReply(read(1)).length, 'the three over the rate: nothing');
  t.equal(plc.requests.length, 2);
  t.equal(proxy.logs.filter((l) => l.reason === 'rate_limited').length, 3, 'each logged as rate_limited');
  await checkInvariants(t, { proxy, plc, sources: ['127.0.6.6'] });
});

void t.test('1,100 sources churning through a rate-limited device: each judged on its own, the rate table pruned', async (t) => {
  // Past 1,024 remembered sources the table drops those with nothing owed (a refilled bucket and
  // no connection): a stream of new addresses can't grow it without bound.
  // One request a second: a source that just left still owes its token for up to a second, so the
  // table fills past 1,024 while the oldest entries have become prunable.
  const { plc, proxy } = await setup(t, 'defaults:\n  rate_limit: { requests_per_second: 1, burst: 1 }\n');
  const sources = Array.from({ length: 1100 }, (_, i) => `127.0.${30 + Math.floor(i / 250)}.${(i % 250) + 1}`);
  const problems: string[] = [];
  for (let at = 0; at < sources.length; at += 50) {
    await Promise.all(
      sources.slice(at, at + 50).map(async (source, k) => {
        const c = await RawClient.connect(proxy.port, source);
        // Two at once: the burst of one lets the first through and refuses the second.
        const pair = [read(2 * (at + k) + 1), read(2 * (at + k) + 2)];
        c.send(Buffer.concat(pair));
        const ledger = new Ledger();
        ledger.expect(plcReply(pair[0]!));
        ledger.expect(exceptionFor(pair[1]!, BUSY));
        ledger.take(await within(c.read(2), `the replies to ${source}`));
        if (!ledger.ok) problems.push(`${source}: ${ledger.describe()}`);
        c.close();
        await c.closed;
      }),
    );
  }
  t.same(problems.slice(0, 5), [], 'every source: its first request served, its second 06');
  t.equal(plc.requests.length, sources.length, 'the PLC saw one request per source');
  await checkInvariants(t, { proxy, plc, sources });
});
