// Learn mode with Redis (issue 11, item 2): two instances in front of one PLC, each seeing other
// traffic, merge what they learn into Redis; `policy learn --redis` makes one proposal of both,
// and an instance's restart loses nothing. Also the merge itself, alone.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { learn } from './fixtures/learning.js';
import { storeCommand } from '../cli/store.js';
import { decodeRequest, ModbusRequest } from '../modbus/index.js';
import { LiveLearner } from '../policy/learn/live.js';
import { addSnapshot, mergeSnapshots, SnapshotError, toSnapshot } from '../policy/learn/snapshot.js';
import { LearnStore, MERGE_ATTEMPTS } from '../policy/learn/store.js';
import { Cells, ceilingWarnings, Observations } from '../policy/learn/observe.js';
import { parsePolicy } from '../policy/index.js';
import { FilePolicySource } from '../policy/source/file.js';
import { RedisPolicySource } from '../policy/source/redis.js';
import { RedisConnection, StoreError } from '../policy/store.js';
import { ProxyRuntime } from '../proxy/runtime.js';
import { startSimulatedPlc } from '../demo/plc.js';
import { freePort } from '../bench/lib/net.js';
import { recordLogs } from './fixtures/logs.js';
import { RawClient, hexOf, req } from './fixtures/raw-client.js';
import { startRedis } from './fixtures/redis.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'plcguard-learn-redis-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));


/** A learner fed by hand: one request at `t`, answered with `exception`. */
function feed(l: LiveLearner, source: string, frame: Buffer, t: number, exception = 0): void {
  l.record(l.source(source), frame, frame.length, exception, false, t);
}

const UPSTREAM = { host: '10.0.0.2', port: 502 };
const DEVICE = { name: 'boiler', listen: '0.0.0.0:502', upstream: '10.0.0.2:502' };

void t.test('mergeSnapshots: union of ranges, sums of counts, earliest first and latest last seen', (t) => {
  const a = new LiveLearner(DEVICE, UPSTREAM);
  feed(a, '10.0.0.1', req(1, 1, [3, 0, 0, 0, 10]), 2000);
  feed(a, '10.0.0.1', req(2, 1, [6, 0, 10, 2, 188]), 2500); // 700
  feed(a, '10.0.0.1', req(3, 1, [8, 0, 0, 0x12, 0x34]), 2600); // FC8 sub 0
  feed(a, '10.0.0.1', req(4, 1, [17]), 2700); // Report Server ID
  const b = new LiveLearner(DEVICE, UPSTREAM);
  feed(b, '10.0.0.1', req(1, 1, [3, 0, 10, 0, 10]), 1000, 2);
  feed(b, '10.0.0.1', req(2, 1, [6, 0, 10, 1, 244]), 3000); // 500
  feed(b, '10.0.0.9', req(3, 7, [4, 0, 0, 0, 1]), 1500);
  const sa = toSnapshot(a.learned());
  const sb = toSnapshot(b.learned());
  const m = mergeSnapshots(sa, sb);
  t.strictSame(m.seen, [7, 1000, 3000, 1, 4], 'device: 7 requests, first 1000, last 3000, one exception 02');
  t.strictSame(
    m.sources.map((s) => s.address),
    ['10.0.0.1', '10.0.0.9'],
  );
  const unit1 = m.sources[0]!.units[0]!;
  t.strictSame(unit1.reads, { holding_registers: [[0, 19, [2, 1000, 2000, 1, 4]]] }, 'touching ranges joined, counts summed');
  t.strictSame(unit1.writes, { holding_registers: { addresses: [[10, [2, 2500, 3000, 0, 0], 500, 700, 500, 700, false]], overflow: [] } }, 'value bounds cover both');
  t.strictSame(m.sources[1]!.units.map((u) => [u.id, u.reads]), [[7, { input_registers: [[0, 0, [1, 1500, 1500, 0, 0]]] }]]);
  t.strictSame(unit1.functions, [
    [8, [1, 2600, 2600, 0, 0], [[0, 0, [1, 2600, 2600, 0, 0]]]],
    [17, [1, 2700, 2700, 0, 0], null],
  ]);
  t.strictSame(mergeSnapshots(sb, sa), m, 'the order does not matter');
  t.strictSame(mergeSnapshots(m, toSnapshot(new LiveLearner(DEVICE, UPSTREAM).learned())), m, 'nothing merged in: the same');
  // JSON round trip: what Redis stores is what was merged.
  t.strictSame(JSON.parse(JSON.stringify(m)), m);
  // The cell budget bounds a merge too: 3 cells hold the source and unit of a, then one range.
  const small = mergeSnapshots(sa, sb, 3);
  t.equal(small.sources.length, 1, 'the second source is past the budget');
  t.equal(small.skipped, 1, 'and its request counted as skipped');
  const c = new LiveLearner(DEVICE, UPSTREAM);
  feed(c, '10.0.0.1', req(1, 9, [3, 0, 0, 0, 1]), 4000);
  t.equal(mergeSnapshots(sa, toSnapshot(c.learned()), 2).skipped, 1, 'a unit past the budget: skipped');
  const bounded = new Observations(new Cells(3));
  addSnapshot(bounded, sa);
  addSnapshot(bounded, sb);
  ceilingWarnings(bounded);
  t.match([...bounded.warnings].at(-1), 'the observations reached their ceiling of 3 entries');
  t.throws(() => mergeSnapshots({ v: 99 }, sb), SnapshotError);
  t.throws(() => addSnapshot(new Observations(), null), { code: 'ERR_LEARN_SNAPSHOT' });
  t.end();
});

void t.test('LiveLearner: a batch taken for Redis and not stored is kept for the next', (t) => {
  const l = new LiveLearner(DEVICE, UPSTREAM);
  t.equal(l.take(), null, 'nothing learned: nothing to write');
  feed(l, '10.0.0.1', req(1, 1, [3, 0, 0, 0, 10]), 1000);
  const gen = l.generation;
  const batch = l.take()!;
  t.equal(l.generation, gen + 1, 'sessions look their source up again');
  feed(l, '10.0.0.1', req(2, 1, [3, 0, 0, 0, 10]), 2000);
  t.equal(toSnapshot(batch).seen[0], 1);
  t.equal(l.requests, 2, 'a batch on its way counts locally');
  l.restore();
  const next = l.take()!;
  t.equal(toSnapshot(next).seen[0], 2, 'the restored batch goes with the next one');
  l.done();
  feed(l, '10.0.0.1', req(3, 1, [3, 0, 0, 0, 10]), 3000);
  t.equal(l.requests, 3, 'stored batches still count locally');
  t.equal(toSnapshot(l.learned()).seen[0], 3, 'and are in the local proposal');
  t.equal(l.entries, 6, 'entries: source, unit and range, now and stored');
  t.equal(l.ceilingReached, false);
  l.rename({ ...DEVICE, name: 'boiler-2' });
  t.equal(l.name, 'boiler-2');
  // A PLC named by host name, a client address that isn't an IP (a Unix socket's): still learned.
  const named = new LiveLearner(DEVICE, { host: 'plc.local', port: 502 });
  feed(named, 'local', req(1, 1, [3, 0, 0, 0, 1]), 1000);
  const namedSnap = toSnapshot(named.learned());
  t.equal(namedSnap.sources[0]!.address, 'local');
  t.strictSame(mergeSnapshots(namedSnap, namedSnap).seen.slice(0, 3), [2, 1000, 1000], 'merged with itself: twice the counts');
  // A capture's device has no policy name: keyed by its address.
  const captured = new Observations().device({ family: 4, w0: 0, w1: 0, w2: 0, w3: 0x0a000002 }, 502)!;
  const into = new Observations();
  t.equal(addSnapshot(into, toSnapshot(captured)).policy, null);
  t.strictSame([...into.devices.keys()], ['10.0.0.2:502']);
  // A stored upstream that is a host name (written by hand, or by another version) still reads.
  t.strictSame(addSnapshot(new Observations(), { ...namedSnap, upstream: 'plc.local:502' }).address, { family: 4, w0: 0, w1: 0, w2: 0, w3: 0 });
  const r = decodeRequest(req(1, 1, [3, 0, 0, 0, 1]), 0, 12, new ModbusRequest());
  t.equal(r.violation, 'none');
  t.end();
});

void t.test('two instances learn together in Redis; a restart loses nothing', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.kill());
  const plc = await startSimulatedPlc({ tickMs: 0 });
  t.teardown(() => plc.close());
  const [portA, portB] = [await freePort(), await freePort()];
  const device = (listen: number): string => `version: 1
devices:
  - name: boiler
    listen: 127.0.0.1:${listen}
    upstream: 127.0.0.1:${plc.port}
    mode: learn
`;
  // Instance A follows the policy in Redis (plcguard run --redis); B, on another port, a file.
  const file = path.join(dir, 'a.yaml');
  fs.writeFileSync(file, device(portA));
  t.equal(await storeCommand('push', [file, '--redis', redis.url], { stdout: () => {}, stderr: () => {} }, parsePolicy), 0);
  const fileB = path.join(dir, 'b.yaml');
  fs.writeFileSync(fileB, device(portB));
  const startA = async (): Promise<{ rt: ProxyRuntime; logs: Record<string, unknown>[] }> => {
    const { logger, logs, logged } = recordLogs();
    const rt = await ProxyRuntime.start({
      source: new RedisPolicySource({ url: redis.url }, parsePolicy, logger),
      learnStore: new LearnStore(new RedisConnection({ url: redis.url, reconnect: true })),
      logger,
      admin: null,
      graceMs: 500,
    });
    await logged((l) => l.event === 'listening');
    return { rt, logs };
  };
  let a = await startA();
  const { logger } = recordLogs();
  const b = await ProxyRuntime.start({
    source: new FilePolicySource(fileB, parsePolicy, logger),
    learnStore: new LearnStore(new RedisConnection({ url: redis.url, reconnect: true })),
    logger,
    admin: null,
    graceMs: 500,
    // Its own timer writes too (a, only when asked): what it sends is the same either way.
    learnSyncMs: 20,
  });
  t.teardown(() => b.stop());

  const ask = async (port: number, frame: Buffer): Promise<string> => {
    const c = await RawClient.connect(port);
    c.send(frame);
    const [answer] = await c.read(1);
    c.close();
    return hexOf(answer!);
  };
  // A sees reads of holding 0-9; B a setpoint write.
  t.match(await ask(portA, req(1, 1, [3, 0, 0, 0, 10])), /^00010000001701031[04]/);
  t.equal(await ask(portB, req(2, 1, [6, 0, 10, 2, 188])), '000200000006010600' + '0a02bc');
  await a.rt.flushLearned();
  await b.flushLearned();
  await b.flushLearned();

  const first = await learn(['--redis', redis.url]);
  t.equal(first.code, 0, first.stderr.join('\n'));
  const proposal = first.stdout.join('');
  t.match(proposal, /  - name: boiler\n/);
  t.match(proposal, /- 0-9 +# 1 request, at /, 'A\'s read');
  t.match(proposal, /- \{ addresses: 10, values: 700 \} +# 1 write, at /, 'B\'s write');
  t.equal(proposal.match(/^  - name: /gm)!.length, 1, 'one device');

  // A restarts: stopping writes what it learned since its last write; nothing is lost. (Its
  // connection lives across a write: its source is looked up again in the new batch.)
  const held = await RawClient.connect(portA);
  held.send(req(3, 1, [3, 0, 0, 0, 10]));
  await held.read(1);
  await a.rt.flushLearned();
  held.send(req(3, 1, [3, 0, 0, 0, 10]));
  await held.read(1);
  held.close();
  await a.rt.stop();
  a = await startA();
  t.teardown(() => a.rt.stop());
  t.match(await ask(portA, req(4, 1, [4, 0, 0, 0, 4])), /^0004/);
  await a.rt.flushLearned();
  const again = await learn(['--redis', redis.url, '--device', 'boiler', '--mode', 'monitor']);
  t.equal(again.code, 0);
  const text = again.stdout.join('');
  t.match(text, /- 0-9 +# 3 requests, /, 'every read of A, before and after its restart');
  t.match(text, /input_registers:\n +- 0-3 +# 1 request/);
  t.match(text, /mode: monitor/);
  t.strictSame([parsePolicy(text, 'p.yaml').errors, parsePolicy(text, 'p.yaml').warnings], [[], []]);
  t.match(again.stderr.join('\n'), /learned: 5 requests \(0 answered with an exception\)/);

  // No such device in Redis: nothing learned.
  const none = await learn(['--redis', redis.url, '--device', 'nope']);
  t.equal(none.code, 1);
  t.match(none.stderr.join(''), /nothing learned yet from Redis/);

  // A stored value that isn't observations: the merge refuses it, the batch is kept, one line.
  const store = new LearnStore(new RedisConnection({ url: redis.url }));
  await store.connection.open();
  t.teardown(() => store.connection.client.disconnect());
  await store.connection.client.set('plcguard:learn:device:boiler', 'not json');
  await a.rt.flushLearned();
  await ask(portA, req(5, 1, [4, 0, 0, 0, 4]));
  await a.rt.flushLearned();
  t.equal(a.logs.filter((l) => l.event === 'learn_sync_failed').length, 1, 'one line while it fails');
  await t.rejects(store.read(['boiler']), StoreError);
  await store.connection.client.del('plcguard:learn:device:boiler');
  await a.rt.flushLearned();
  t.match(a.logs.filter((l) => l.event === 'learn_sync_ok'), [{ device: 'boiler' }], 'and one when it works again');
  const kept = await store.read();
  t.equal(kept.get('boiler')!.seen[0], 1, 'the batch kept while Redis refused is written');
  // Redis refusing a command: a StoreError naming the server.
  await store.connection.client.set('plcguard:learn:devices', 'a string, not a set');
  await t.rejects(store.read(), { code: 'ERR_STORE_REDIS', message: /^redis:\/\/127\.0\.0\.1:\d+: WRONGTYPE/ });
});

void t.test('LearnStore: another writer every time → gives up after MERGE_ATTEMPTS', async (t) => {
  let execs = 0;
  const client = {
    watch: () => Promise.resolve('OK'),
    get: () => Promise.resolve(null),
    multi: () => ({
      set() {
        return this;
      },
      sadd() {
        return this;
      },
      exec: () => {
        execs++;
        return Promise.resolve(null);
      },
    }),
  };
  const store = new LearnStore({ client, server: 'redis://fake:6379' } as unknown as RedisConnection);
  await t.rejects(store.merge('boiler', toSnapshot(new LiveLearner(DEVICE, UPSTREAM).learned())), { code: 'ERR_STORE_REDIS', message: 'redis://fake:6379: plcguard:learn:device:boiler changed under each of 10 attempts to merge into it' });
  t.equal(execs, MERGE_ATTEMPTS);
});

void t.test('policy learn --admin/--redis: usage errors exit 2, unreachable 1', async (t) => {
  const cases: [string[], RegExp][] = [
    [['--admin', '127.0.0.1:1', '--redis', 'redis://127.0.0.1:1'], /--admin or --redis, not both/],
    [['--admin', '127.0.0.1:1', 'x.pcap'], /give no CAPTURE file/],
    [['--admin', '127.0.0.1:1', '--port', '5020'], /--port and --listen are for captures/],
    [['x.pcap', '--device', 'a'], /--device goes with --redis/],
    [[], /--admin HOST:PORT or --redis URL/],
    [['--admin', 'nowhere'], /--admin/],
    [['--redis', 'http://x'], /redis:\/\//],
  ];
  for (const [args, message] of cases) {
    const r = await learn(args);
    t.equal(r.code, 2, args.join(' '));
    t.match(r.stderr.join('\n'), message);
  }
  const port = await freePort();
  const admin = await learn(['--admin', `127.0.0.1:${port}`]);
  t.equal(admin.code, 1);
  t.match(admin.stderr.join(''), `cannot fetch http://127.0.0.1:${port}/learn/observations: ECONNREFUSED`);
  const redis = await learn(['--redis', `redis://127.0.0.1:${port}`]);
  t.equal(redis.code, 1);
  t.match(redis.stderr.join(''), /cannot reach redis:\/\/127.0.0.1/);
});
