// Policy faults under load: the policy file replaced by invalid ones (and deleted) while clients
// pipeline requests, and Redis killed and restarted under load. Policies A and B disagree about
// some requests: each reply must be what A or B gives, never anything else; the PLC gets only what
// A or B allows; no client connection is dropped; the last good policy stays in force. Then the
// ways a change was applied wrongly or not at all: a file rewritten in place in two steps (its
// first half was applied) and a Kubernetes ConfigMap's symlink swap (never applied). And a valid
// policy too complex to compile, refused by push and by every reload.
import fs from 'node:fs';
import { recordLogs } from './fixtures/logs.js';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { parsePolicy } from '../policy/index.js';
import { PolicyStore, RedisConnection } from '../policy/store.js';
import { storeCommand } from '../cli/store.js';
import { Logger } from '../proxy/audit.js';
import { RedisPolicySource } from '../policy/source/redis.js';
import { FilePolicySource } from '../policy/source/file.js';
import { ProxyRuntime } from '../proxy/runtime.js';
import { RawClient, hexOf, req } from './fixtures/raw-client.js';
import { startRawPlc } from './fixtures/raw-plc.js';
import { ANY_PORT, devicePolicy, startProxy } from './fixtures/proxy.js';
import { startRedis } from './fixtures/redis.js';
import { DEVICE, PROBE_RULE, PolicyOracle, checkInvariants, compile, exceptionFor, plcReply } from './fixtures/invariants.js';
import { until, within } from '../bench/lib/wait.js';
import { freePort } from '../bench/lib/net.js';
import { nestedWriteAnchors, nestedWriteRules } from './fixtures/policy-shapes.js';

/** A: reads 0-99, writes 10-19. B: reads 0-49, writes 20-29. */
const RULES_A = `    rules:
${PROBE_RULE}      - name: hmi
        units: [1]
        read: { holding_registers: [0-99] }
        write: { holding_registers: [10-19] }
`;
const RULES_B = RULES_A.replace('[0-99]', '[0-49]').replace('[10-19]', '[20-29]');

const ADDRESS = 0x02;
/** One round of requests, each with every reply A or B may give it. */
function round(base: number): { frame: Buffer; replies: string[] }[] {
  const either = (f: Buffer, a: Buffer, b: Buffer): { frame: Buffer; replies: string[] } => ({ frame: f, replies: [hexOf(a), hexOf(b)] });
  const out: { frame: Buffer; replies: string[] }[] = [];
  const tid = (k: number): number => (base + k) & 0xffff;
  let f = req(tid(0), 1, [3, 0, 0, 0, 10]);
  out.push(either(f, plcReply(f), plcReply(f))); // both allow
  f = req(tid(1), 1, [3, 0, 60, 0, 1]);
  out.push(either(f, plcReply(f), exceptionFor(f, ADDRESS))); // A only
  f = req(tid(2), 1, [6, 0, 15, 0, 1]);
  out.push(either(f, plcReply(f), exceptionFor(f, ADDRESS))); // A only
  f = req(tid(3), 1, [6, 0, 25, 0, 1]);
  out.push(either(f, exceptionFor(f, ADDRESS), plcReply(f))); // B only
  f = req(tid(4), 1, [6, 0, 50, 0, 1]);
  out.push(either(f, exceptionFor(f, ADDRESS), exceptionFor(f, ADDRESS))); // neither
  f = req(tid(5), 3, [3, 0, 0, 0, 1]);
  out.push(either(f, exceptionFor(f, 0x0a), exceptionFor(f, 0x0a))); // unit neither names
  f = req(tid(6), 1, [3, 0, 0, 0, 0]);
  out.push(either(f, exceptionFor(f, 0x03), exceptionFor(f, 0x03))); // malformed
  return out;
}

interface Load {
  rounds: number;
  failures: string[];
  clients: RawClient[];
  stop(): Promise<void>;
}

/** Clients that pipeline rounds back to back until stopped, checking every reply. */
async function startLoad(port: number, sources: string[]): Promise<Load> {
  const clients = await Promise.all(sources.map((s) => RawClient.connect(port, s)));
  let stopping = false;
  const load: Load = { rounds: 0, failures: [], clients, stop: async () => {} };
  const loops = clients.map(async (c, ci) => {
    for (let n = 0; !stopping && load.failures.length === 0; n++) {
      const batch = [...round(n * 8), ...round(n * 8 + 0x8000)];
      c.send(Buffer.concat(batch.map((b) => b.frame)));
      const got = await within(c.read(batch.length), `client ${ci} round ${n}`, 10_000).catch((err: Error) => {
        load.failures.push(err.message);
        return [];
      });
      const byTid = new Map(got.map((g) => [g.readUInt16BE(0), hexOf(g)]));
      for (const b of batch) {
        const r = byTid.get(b.frame.readUInt16BE(0));
        if (r === undefined || !b.replies.includes(r)) load.failures.push(`client ${ci} round ${n}: ${hexOf(b.frame)} → ${r ?? 'nothing'}`);
      }
      if (got.length !== batch.length || c.isClosed) load.failures.push(`client ${ci} round ${n}: ${got.length} replies${c.isClosed ? ', closed' : ''}`);
      load.rounds++;
    }
  });
  load.stop = async () => {
    stopping = true;
    await Promise.all(loops);
  };
  return load;
}

void t.test('the policy file replaced by invalid ones (and deleted) under load', async (t) => {
  const plc = await startRawPlc();
  // Every edit here is a rename, complete when it lands: a short settle keeps the load short.
  const proxy = await startProxy(devicePolicy(plc.port, RULES_A), { settleMs: 50 });
  t.teardown(async () => {
    await proxy.stop();
    await plc.close();
  });
  const textA = fs.readFileSync(proxy.file, 'utf8');
  const textB = textA.replace(RULES_A, RULES_B);
  const load = await startLoad(proxy.port, ['127.0.7.1', '127.0.7.2', '127.0.7.3', '127.0.7.4']);
  const invalid = [
    'version: 1\ndevices: [ { name: plc, listen: nope } ]\n', // a valid YAML, an invalid policy
    'version: 1\ndevices:\n  - name: plc\n    listen: "127.0.0.1:1\n', // YAML syntax
    '', // empty
    Buffer.from(Array.from({ length: 300 }, (_, i) => (i * 37) & 0xff)).toString('latin1'), // binary noise
    textA.replace('version: 1', 'version: 2'), // a version this code doesn't read
    textA.replace('units: [1]', 'units: [1]\n        colour: red'), // unknown key
  ];
  let valid = 0;
  let rejected = 0;
  let last = textA;
  for (const [i, bad] of invalid.entries()) {
    const before = load.rounds;
    await proxy.rewrite(bad);
    rejected++;
    t.match(proxy.logs.at(-1), { event: 'policy_rejected', kept: 'last good policy' }, `invalid edit ${i} rejected`);
    last = last === textA ? textB : textA;
    await proxy.rewrite(last);
    valid++;
    // Traffic keeps flowing between edits (at least one more round per client).
    await until(() => load.rounds >= before + 4 || load.failures.length > 0, 'traffic between edits');
  }
  // The file deleted outright: rejected ("cannot read"), the last good policy stays.
  const seen = proxy.logs.length;
  fs.unlinkSync(proxy.file);
  await proxy.logged((l) => l.event === 'policy_rejected' && proxy.logs.indexOf(l) >= seen);
  rejected++;
  const before = load.rounds;
  await until(() => load.rounds >= before + 4 || load.failures.length > 0, 'traffic with no file at all');
  await proxy.rewrite(last === textA ? textB : textA);
  valid++;
  await load.stop();
  t.same(load.failures.slice(0, 5), [], `${load.rounds} rounds of ${2 * round(0).length} requests: every reply is what A or B gives`);
  t.equal(proxy.logs.filter((l) => l.event === 'policy_rejected').length, rejected, 'every invalid edit rejected');
  t.equal(proxy.logs.filter((l) => l.event === 'policy_loaded').length, valid + 1, 'every valid edit applied');
  t.ok(load.clients.every((c) => !c.isClosed), 'no client connection was dropped by any edit');
  t.equal(proxy.rt.server.sessions().length, load.clients.length);
  for (const c of load.clients) c.close();
  await Promise.all(load.clients.map((c) => c.closed));
  await checkInvariants(t, {
    proxy,
    plc,
    policies: [compile(textA), compile(textB)],
    sources: load.clients.map((_, i) => `127.0.7.${i + 1}`),
  });
  t.equal(proxy.rt.policyStats.reloadsFailed, rejected, 'counted as failed reloads');
});

void t.test('Redis killed and restarted under load: nothing lost, the new policy applied after', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.kill());
  const plc = await startRawPlc();
  t.teardown(() => plc.close());
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'plcguard-adv-redis-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const listen = await freePort();
  const textA = devicePolicy(plc.port, RULES_A).replace('listen: 127.0.0.1:0', `listen: 127.0.0.1:${listen}`);
  const textB = textA.replace(RULES_A, RULES_B);
  const push = async (text: string, ...options: string[]): Promise<void> => {
    const file = path.join(dir, `p${Math.random().toString(36).slice(2)}.yaml`);
    fs.writeFileSync(file, text);
    let err = '';
    const code = await storeCommand('push', [file, '--redis', redis.url, ...options], { stdout: () => {}, stderr: (s) => (err += s) }, parsePolicy);
    t.equal(code, 0, `pushed ${err}`);
  };
  const recorder = recordLogs();
  const { logger, logs } = recorder;
  // Here a wait without a mark means "from now on".
  const logged = (pred: (l: Record<string, unknown>) => boolean, from = logs.length): Promise<void> => recorder.logged(pred, from);
  await push(textA);
  const rt = await ProxyRuntime.start({ source: new RedisPolicySource({ url: redis.url }, parsePolicy, logger), logger, admin: null, graceMs: 500 });
  t.teardown(() => rt.stop());
  await within(logged((l) => l.event === 'policy_loaded'), 'version 1 applied');
  const port = [...rt.ports().values()][0]!;
  const load = await startLoad(port, ['127.0.8.1', '127.0.8.2', '127.0.8.3']);
  const traffic = async (what: string): Promise<void> => {
    const before = load.rounds;
    await until(() => load.rounds >= before + 6 || load.failures.length > 0, what);
  };
  await traffic('traffic before');
  for (let cycle = 0; cycle < 2; cycle++) {
    const mark = logs.length;
    await redis.kill();
    await within(logged((l) => l.event === 'redis_down', mark), 'redis_down');
    await traffic('traffic while Redis is down');
    await redis.restart();
    await within(logged((l) => l.event === 'redis_up', mark), 'redis_up', 10_000);
    await traffic('traffic after the restart');
  }
  // The restarted Redis is empty: the first push there is version 1 again. Push twice so that
  // the version in force (2) is one this instance has never seen (see the next test); the same
  // text again is written only with --force.
  const mark = logs.length;
  await push(textB);
  await push(textB, '--force');
  await within(logged((l) => l.event === 'policy_loaded' && l.version === 2, mark), 'version 2 applied', 10_000);
  await traffic('traffic under B');
  await load.stop();
  t.same(load.failures.slice(0, 5), [], `${load.rounds} rounds: every reply is what A or B gives, none lost`);
  t.ok(load.clients.every((c) => !c.isClosed), 'no client connection dropped');
  for (const c of load.clients) c.close();
  await Promise.all(load.clients.map((c) => c.closed));
  await checkInvariants(t, {
    proxy: { rt, port },
    plc,
    policies: [compile(textA), compile(textB)],
    sources: load.clients.map((_, i) => `127.0.8.${i + 1}`),
  });
  t.equal(rt.server.stats.get(DEVICE).clientConnections, 0);
});

void t.test(
  'a policy pushed to a restarted, empty Redis is applied even though its version number repeats',
  async (t) => {
    const redis = await startRedis();
    t.teardown(() => redis.kill());
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'plcguard-adv-redis-'));
    t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
    const listen = await freePort();
    const textA = devicePolicy(1502, RULES_A).replace('listen: 127.0.0.1:0', `listen: 127.0.0.1:${listen}`);
    const push = async (text: string, name: string): Promise<void> => {
      const file = path.join(dir, name);
      fs.writeFileSync(file, text);
      await storeCommand('push', [file, '--redis', redis.url], { stdout: () => {}, stderr: () => {} }, parsePolicy);
    };
    let applied = '';
    const logger = new Logger((line) => {
      const l = JSON.parse(line) as Record<string, unknown>;
      if (l.event === 'policy_loaded') applied = String(l.sha256);
    });
    await push(textA, 'a.yaml');
    const rt = await ProxyRuntime.start({ source: new RedisPolicySource({ url: redis.url }, parsePolicy, logger), logger, admin: null, graceMs: 100 });
    t.teardown(() => rt.stop());
    await until(() => applied === compile(textA).sha256, 'A applied');
    await redis.kill();
    await redis.restart();
    const textB = textA.replace(RULES_A, RULES_B);
    await push(textB, 'b.yaml');
    // The watcher resyncs on reconnect and every 5 s: B (version 1 again) is due within that.
    await until(() => applied === compile(textB).sha256, 'B applied', 7000).catch((err: Error) => t.fail(err.message));
  },
);

void t.test('a policy file rewritten in place in two steps 0.5 s apart: its first half is never applied', async (t) => {
  const plc = await startRawPlc();
  const proxy = await startProxy(devicePolicy(plc.port, '    rules:\n      - read: { holding_registers: [0-9] }\n'));
  t.teardown(async () => {
    await proxy.stop();
    await plc.close();
  });
  // In force: no writes. Meant: HR10 writable within 200..850. Cut before its `values:` line, the
  // new file is a valid policy that lets any value through.
  const before = fs.readFileSync(proxy.file, 'utf8');
  const half = `${before}        write:\n          holding_registers:\n            - addresses: 10\n`;
  const rest = '              values: 200-850\n';
  const attack = req(0, 1, [6, 0, 10, 0x13, 0x88]); // HR10 = 5000
  t.ok(new PolicyOracle([compile(half)]).allows(attack, ['127.0.0.1']), 'premise: the first half alone allows HR10=5000');
  t.notOk(new PolicyOracle([compile(half + rest)]).allows(attack, ['127.0.0.1']), 'premise: the whole file does not');
  const whole = compile(half + rest).sha256;
  const applied = within(
    proxy.logged((l) => l.event === 'policy_loaded' && l.sha256 === whole),
    'the whole file applied',
    10_000,
  );
  // An attacker writing HR10=5000 back to back for as long as the change takes.
  const c = await RawClient.connect(proxy.port);
  let done = false;
  const replies: string[] = [];
  const expected = new Set([hexOf(exceptionFor(attack, 0x01)), hexOf(exceptionFor(attack, 0x03))]);
  const writes = (async () => {
    while (!done) {
      c.send(attack);
      for (const r of await within(c.read(), 'a reply')) if (!expected.has(hexOf(r))) replies.push(hexOf(r));
    }
  })();
  fs.writeFileSync(proxy.file, half);
  await new Promise((resolve) => setTimeout(resolve, 500)); // the writer's pause, part of the scenario
  fs.appendFileSync(proxy.file, rest);
  await applied;
  done = true;
  await writes;
  t.same(replies, [], 'every write denied: 01 (no writes) before the change, 03 (value) after');
  t.same(plc.requests.filter((r) => r.fc === 6).length, 0, 'no write reached the PLC');
  t.notOk(
    proxy.logs.some((l) => l.event === 'policy_loaded' && l.sha256 === compile(half).sha256),
    'the first half was never loaded',
  );
  t.match(
    proxy.logs.filter((l) => l.event === 'policy_change_held')[0],
    { source: proxy.file, reason: 'settling' },
    'the change was held, and said so',
  );
  // The whole file is in force: an in-bounds write passes.
  const ok = req(1, 1, [6, 0, 10, 0x02, 0xbc]); // HR10 = 700
  c.send(ok);
  t.equal(hexOf((await within(c.read(), 'the allowed write'))[0]!), hexOf(plcReply(ok)));
  c.close();
});

void t.test('a Kubernetes ConfigMap update (a ..data symlink swap) revokes a write', async (t) => {
  const plc = await startRawPlc();
  t.teardown(() => plc.close());
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'plcguard-adv-cm-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const textA = devicePolicy(plc.port, RULES_A).replace(ANY_PORT, `127.0.0.1:${await freePort()}`);
  const textB = textA.replace(RULES_A, RULES_B);
  // As the kubelet does it: a new timestamped folder, a new ..data link renamed over the old.
  const publish = (stamp: string, text: string): void => {
    fs.mkdirSync(path.join(dir, stamp));
    fs.writeFileSync(path.join(dir, stamp, 'policy.yaml'), text);
    fs.symlinkSync(stamp, path.join(dir, '..data_tmp'));
    fs.renameSync(path.join(dir, '..data_tmp'), path.join(dir, '..data'));
  };
  publish('..2026_05_01_10_00_00.1', textA);
  fs.symlinkSync('..data/policy.yaml', path.join(dir, 'policy.yaml'));
  const { logger, logs, logged } = recordLogs();
  const rt = await ProxyRuntime.start({
    source: new FilePolicySource(path.join(dir, 'policy.yaml'), parsePolicy, logger),
    logger,
    admin: null,
    graceMs: 100,
  });
  t.teardown(() => rt.stop());
  const c = await RawClient.connect([...rt.ports().values()][0]!);
  const write = (tid: number): Buffer => req(tid, 1, [6, 0, 15, 0, 1]);
  c.send(write(1));
  t.equal(hexOf((await within(c.read(), 'the write under A'))[0]!), hexOf(plcReply(write(1))), 'A lets HR15 be written');
  const mark = logs.length;
  publish('..2026_05_01_10_05_00.2', textB);
  fs.rmSync(path.join(dir, '..2026_05_01_10_00_00.1'), { recursive: true });
  await within(logged((l) => l.event === 'policy_loaded' && l.sha256 === compile(textB).sha256, mark), 'B applied', 10_000);
  await rt.settled();
  c.send(write(2));
  t.equal(hexOf((await within(c.read(), 'the write under B'))[0]!), hexOf(exceptionFor(write(2), ADDRESS)), 'B revoked it');
  t.equal(plc.requests.filter((r) => r.fc === 6).length, 1, 'only the write under A reached the PLC');
  c.close();
});

// ---- a valid policy too complex to compile ----

/**
 * Policy A with the attack added: 20 rules repeating, by alias, 60 nested address ranges × 60
 * value ranges. 2 KB of YAML; compiling it lazily at the first connection used to exhaust the heap.
 */
function tooComplex(upstreamPort: number): string {
  return devicePolicy(upstreamPort, `${RULES_A}${nestedWriteRules(20, 'bulk-')}`, nestedWriteAnchors(60));
}
/** Its refusal, as `FILE:LINE:COL: message` (counted by hand as in policy-complexity.test.ts). */
const TOO_COMPLEX =
  ':6:5: devices[0]: compiling device "plc" needs at least 8,785,626 entries, 8.79× the budget of 1,000,000 per policy ' +
  '(each source range and unit range × its matching rules, each distinct rule set × its grants, each write range × the address segments it spans); ' +
  'expected fewer overlapping sources, units, ranges or value bounds';

/** A new client from `source`: A's answers, at once (nothing is compiled at connect). */
async function servedByA(t: Test, port: number, source: string): Promise<void> {
  const c = await RawClient.connect(port, source);
  const frames = [req(1, 1, [3, 0, 0, 0, 10]), req(2, 1, [6, 0, 15, 0, 7]), req(3, 1, [6, 0, 25, 0, 7])];
  c.send(Buffer.concat(frames));
  // The denial is answered at once, the others after the PLC: in tid order.
  const got = (await within(c.read(3), `${source}: replies`)).sort((a, b) => a.readUInt16BE(0) - b.readUInt16BE(0)).map(hexOf);
  t.strictSame(got, [hexOf(plcReply(frames[0]!)), hexOf(plcReply(frames[1]!)), hexOf(exceptionFor(frames[2]!, ADDRESS))], `${source}: served by A`);
  c.close();
  await c.closed;
}

void t.test('a policy too complex to compile, written to the file: rejected, A stays, connections served', async (t) => {
  const plc = await startRawPlc();
  const proxy = await startProxy(devicePolicy(plc.port, RULES_A));
  t.teardown(async () => {
    await proxy.stop();
    await plc.close();
  });
  await servedByA(t, proxy.port, '127.0.9.1');
  await proxy.rewrite(tooComplex(plc.port));
  t.match(proxy.logs.at(-1), { event: 'policy_rejected', errors: [`${proxy.file}${TOO_COMPLEX}`], kept: 'last good policy' });
  await servedByA(t, proxy.port, '127.0.9.2');
  t.equal(proxy.rt.policyStats.reloadsFailed, 1);
});

void t.test('a policy too complex to compile: `push` refuses it; one in Redis already is rejected by the instance', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.kill());
  const plc = await startRawPlc();
  t.teardown(() => plc.close());
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'plcguard-adv-complex-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const listen = await freePort();
  const fill = (text: string): string => text.replace('listen: 127.0.0.1:0', `listen: 127.0.0.1:${listen}`);
  const push = async (text: string, name: string): Promise<{ code: number; err: string[] }> => {
    const file = path.join(dir, name);
    fs.writeFileSync(file, text);
    const err: string[] = [];
    const code = await storeCommand('push', [file, '--redis', redis.url], { stdout: () => {}, stderr: (s) => err.push(s) }, parsePolicy);
    return { code, err };
  };
  t.strictSame(await push(fill(devicePolicy(plc.port, RULES_A)), 'a.yaml'), { code: 0, err: [] });
  const bomb = fill(tooComplex(plc.port));
  const file = path.join(dir, 'bomb.yaml');
  t.strictSame(await push(bomb, 'bomb.yaml'), { code: 1, err: [`${file}${TOO_COMPLEX}`, `plcguard policy push: ${file} is not valid; nothing written`] });

  const { logger, logs, logged } = recordLogs();
  const rt = await ProxyRuntime.start({ source: new RedisPolicySource({ url: redis.url }, parsePolicy, logger), logger, admin: null, graceMs: 100 });
  t.teardown(() => rt.stop());
  await within(logged((l) => l.event === 'policy_loaded' && l.version === 1), 'version 1 applied');
  // Pushed past the check, as a release without the budget would have: every instance refuses it.
  const mark = logs.length;
  const connection = new RedisConnection({ url: redis.url });
  await connection.open();
  t.teardown(() => connection.client.disconnect());
  t.equal(await new PolicyStore(connection).push(bomb, 'sha', new Map(), { author: 'test', message: 'too complex' }), 2);
  await within(logged((l) => l.event === 'policy_rejected', mark), 'version 2 rejected');
  t.match(logs.at(-1), { event: 'policy_rejected', errors: [`redis:plcguard:version:2${TOO_COMPLEX}`], kept: 'last good policy' });
  await servedByA(t, [...rt.ports().values()][0]!, '127.0.9.3');
});
