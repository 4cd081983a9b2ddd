// Policy in Redis against a real redis-server: push/pull/history/diff/rollback, live reload
// across several proxies, and Redis failing under traffic.
import fs from 'node:fs';
import { recordLogs } from './fixtures/logs.js';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { Redis } from 'ioredis';
import { parsePolicy } from '../policy/index.js';
import { storeCommand } from '../cli/store.js';
import { RedisPolicySource } from '../policy/source/redis.js';
import { ProxyRuntime } from '../proxy/runtime.js';
import { RawClient, hexOf, req } from './fixtures/raw-client.js';
import { adu, startRawPlc } from './fixtures/raw-plc.js';
import { startRedis, type TestRedis } from './fixtures/redis.js';
import { freePort } from '../bench/lib/net.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'plcguard-redis-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

/**
 * Listen ports of the devices boiler-0.. (one instance each: they split the plant). Each test that
 * runs plcguard takes them afresh (freshListenPorts): chosen once for the whole file, they were
 * free minutes before they were bound, and a test file running alongside could be handed one.
 */
let LISTEN_PORTS = await freshListenPorts();

function freshListenPorts(): Promise<number[]> {
  return Promise.all([0, 1, 2].map(() => freePort()));
}

function policyText(upstreamPort: number, writable: number, devices = 1): string {
  const device = (i: number): string => `  - name: boiler-${i}
    listen: 127.0.0.1:${LISTEN_PORTS[i]}
    upstream: 127.0.0.1:${upstreamPort}
    rules:
      - name: hmi
        units: [1]
        read: { holding_registers: [0-99] }
      - name: setpoint
        units: [1]
        write: { holding_registers: [${writable}] }
`;
  return `version: 1\ndevices:\n${Array.from({ length: devices }, (_, i) => device(i)).join('')}`;
}

function writeFile(name: string, text: string): string {
  const f = path.join(dir, name);
  fs.writeFileSync(f, text);
  return f;
}

async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await storeCommand(args[0]!, args.slice(1), { stdout: (s) => (out += s + '\n'), stderr: (s) => (err += s + '\n') }, parsePolicy);
  return { code, out, err };
}

async function withRedis(t: Test): Promise<TestRedis> {
  const r = await startRedis();
  t.teardown(() => r.kill());
  return r;
}

void t.test('push, pull, history, diff, rollback', async (t) => {
  const redis = await withRedis(t);
  const f1 = writeFile('v1.yaml', policyText(5021, 10));
  const f2 = writeFile('v2.yaml', policyText(5021, 11));
  const r1 = await cli(['push', f1, '--redis', redis.url, '--author', 'alice', '--message', 'first']);
  t.equal(r1.code, 0, r1.err);
  t.match(r1.out, /^pushed .*v1\.yaml as version 1 \(sha256 [0-9a-f]{12}\)\n$/);
  const d = await cli(['diff', f2, '--redis', redis.url]);
  t.same(d, { code: 1, out: 'diff against version 1:\n~ device boiler-0\n    ~ rule setpoint\n        write.holding_registers: [10] → [11]\n', err: '' }, 'field by field; exit 1: it differs');
  t.equal((await cli(['push', f2, '--redis', redis.url, '--author', 'bob'])).code, 0);
  t.equal((await cli(['pull', '--redis', redis.url])).out, fs.readFileSync(f2, 'utf8'), 'pull prints the YAML as pushed');
  const rb = await cli(['rollback', '1', '--redis', redis.url, '--author', 'carol']);
  t.equal(rb.out, 'rolled back to version 1 as version 3\n');
  t.equal((await cli(['pull', '--redis', redis.url])).out, fs.readFileSync(f1, 'utf8'));
  const h = await cli(['history', '--redis', redis.url]);
  const lines = h.out.trimEnd().split('\n');
  t.equal(lines.length, 3);
  t.match(lines[0], /^ {2}1 {2}\S+ {2}alice {2}[0-9a-f]{12} {2}first$/);
  t.match(lines[2], /^\* 3 {2}\S+ {2}carol {2}[0-9a-f]{12} {2}rollback to version 1 \(rollback to 1\)$/);
  const client = new Redis(redis.url);
  t.teardown(() => client.disconnect());
  t.same(await client.smembers('plcguard:devices'), ['boiler-0'], 'per-device keys');
  t.match(JSON.parse((await client.get('plcguard:device:boiler-0'))!), { name: 'boiler-0', rules: [{ name: 'hmi' }, { name: 'setpoint' }] });
});

void t.test('an invalid push writes nothing; bad usage says how', async (t) => {
  const redis = await withRedis(t);
  const bad = writeFile('bad.yaml', 'version: 1\ndevices:\n  - name: Boiler\n');
  const r = await cli(['push', bad, '--redis', redis.url]);
  t.equal(r.code, 1);
  t.match(r.err, /bad\.yaml:3:\d+: .*\n.*nothing written/);
  const client = new Redis(redis.url);
  t.teardown(() => client.disconnect());
  t.same(await client.keys('*'), [], 'Redis is untouched');
  t.equal((await cli(['push', bad])).code, 2, 'no --redis → usage');
  t.equal((await cli(['push', '--redis', redis.url])).code, 2, 'no FILE → usage');
  t.equal((await cli(['pull', '--redis', 'http://x'])).code, 2, 'not a redis URL → usage');
  t.equal((await cli(['pull', '--redis', redis.url])).code, 1, 'nothing pushed yet');
});

void t.test('concurrent pushes never interleave: each gets its own version', async (t) => {
  const redis = await withRedis(t);
  const files = Array.from({ length: 8 }, (_, i) => writeFile(`c${i}.yaml`, policyText(5021, 20 + i)));
  const results = await Promise.all(files.map((f) => cli(['push', f, '--redis', redis.url])));
  const versions = results.map((r) => Number(/version (\d+)/.exec(r.out)![1])).sort((a, b) => a - b);
  t.same(versions, [1, 2, 3, 4, 5, 6, 7, 8]);
  const client = new Redis(redis.url);
  t.teardown(() => client.disconnect());
  const current = Number(await client.get('plcguard:current'));
  const rec = await client.hgetall(`plcguard:version:${current}`);
  const device = JSON.parse((await client.get('plcguard:device:boiler-0'))!) as { rules: { write?: { holding_registers: number[] } }[] };
  const inForce = Number(/\[(\d+)\] \}\n$/.exec(rec.yaml!)![1]);
  t.equal(device.rules[1]!.write!.holding_registers[0], inForce, 'device keys belong to the version in force');
  t.equal(await client.llen('plcguard:history'), 8);
});

interface Instance {
  rt: ProxyRuntime;
  logs: Record<string, unknown>[];
  /** Resolves at the first log line (already written or to come) that `pred` accepts. */
  logged: (pred: (l: Record<string, unknown>) => boolean) => Promise<void>;
}

async function startInstance(redis: TestRedis, t: Test, devices?: string[]): Promise<Instance> {
  const { logger, logs, logged } = recordLogs();
  const rt = await ProxyRuntime.start({
    source: new RedisPolicySource({ url: redis.url }, parsePolicy, logger),
    logger,
    admin: null,
    graceMs: 500,
    ...(devices ? { devices } : {}),
  });
  t.teardown(() => rt.stop());
  return { rt, logs, logged };
}

const loadedVersion =
  (v: number) =>
  (l: Record<string, unknown>): boolean =>
    l.event === 'policy_loaded' && l.version === v;

void t.test('a Redis on IPv6 (redis://[::1]:port): push, pull, and a plcguard that loads from it', async (t) => {
  LISTEN_PORTS = await freshListenPorts();
  const redis = await startRedis({ bind: '::1' });
  t.teardown(() => redis.kill());
  t.match(redis.url, /^redis:\/\/\[::1\]:\d+$/);
  const f = writeFile('v6.yaml', policyText(5021, 10));
  const pushed = await cli(['push', f, '--redis', redis.url]);
  t.equal(pushed.code, 0, pushed.err);
  t.equal((await cli(['pull', '--redis', redis.url])).out, fs.readFileSync(f, 'utf8'), 'pulled as pushed');
  const i = await startInstance(redis, t);
  await i.logged(loadedVersion(1));
  t.match(i.logs.find((l) => l.event === 'redis_up'), { redis: `redis://[::1]:${redis.port}` }, 'named with its brackets');
  t.same([...i.rt.ports().keys()], ['boiler-0'], 'serving the version in Redis');
});

void t.test('three proxies switch within 1 s of a push while clients keep polling', async (t) => {
  LISTEN_PORTS = await freshListenPorts();
  const redis = await withRedis(t);
  const plc = await startRawPlc();
  t.teardown(() => plc.close());
  const instances = await Promise.all([0, 1, 2].map((i) => startInstance(redis, t, [`boiler-${i}`])));
  t.same(instances.map((i) => i.rt.ports().size), [0, 0, 0], 'fail closed: nothing listens before a policy exists');
  t.equal((await cli(['push', writeFile('p1.yaml', policyText(plc.port, 10, 3)), '--redis', redis.url])).code, 0);
  await Promise.all(instances.map((i) => i.logged(loadedVersion(1))));
  const clients = await Promise.all(instances.map((i) => RawClient.connect([...i.rt.ports().values()][0]!)));
  let tid = 0;
  const poll = async (c: RawClient): Promise<number> => {
    c.send(req(++tid, 1, [6, 0, 11, 0, 7]));
    return (await c.read())[0]![7]!;
  };
  for (const c of clients) t.equal(await poll(c), 0x86, 'write to 11 denied under version 1');
  const pushedAt = performance.now();
  t.equal((await cli(['push', writeFile('p2.yaml', policyText(plc.port, 11, 3)), '--redis', redis.url])).code, 0);
  const delays = await Promise.all(
    clients.map(async (c) => {
      while ((await poll(c)) !== 6) {
        /* keep polling: each poll is one round trip */
      }
      return performance.now() - pushedAt;
    }),
  );
  // A fleet must enforce a pushed version within a second; and a functional bound: the periodic
  // resync is every 5 s, so under 1 s means the announcement (pub/sub) delivered the new version.
  t.ok(delays.every((d) => d < 1000), `every instance enforced version 2 within 1 s (ms: ${delays.map((d) => d.toFixed(1)).join(', ')})`);
  t.same(instances.map((i) => i.rt.policyStats.version), [2, 2, 2]);
  t.same(instances.map((i) => i.rt.server.sessions().length), [1, 1, 1], 'no connection dropped');
  for (const c of clients) c.close();
});

void t.test('Redis killed and restarted mid-traffic: nothing allowed lost, nothing denied let through', async (t) => {
  LISTEN_PORTS = await freshListenPorts();
  const redis = await withRedis(t);
  const plc = await startRawPlc();
  t.teardown(() => plc.close());
  const { rt, logs, logged } = await startInstance(redis, t);
  await cli(['push', writeFile('k.yaml', policyText(plc.port, 10)), '--redis', redis.url]);
  await logged(loadedVersion(1));
  const c = await RawClient.connect([...rt.ports().values()][0]!);
  let allowed = 0;
  let denied = 0;
  let tid = 0;
  const round = async (): Promise<void> => {
    c.send(req(++tid, 1, [3, 0, 0, 0, 1]));
    const [a] = await c.read();
    t.equal(hexOf(a!), hexOf(adu(tid, 1, [3, 2, 0, 0])));
    allowed++;
    c.send(req(++tid, 1, [6, 0, 50, 0, 1]));
    const [d] = await c.read();
    t.equal(hexOf(d!), hexOf(adu(tid, 1, [0x86, 2])));
    denied++;
  };
  for (let i = 0; i < 20; i++) await round();
  await redis.kill();
  await logged((l) => l.event === 'redis_down');
  for (let i = 0; i < 20; i++) await round();
  await redis.restart();
  await logged((l) => l.event === 'redis_up' && logs.indexOf(l) > logs.findIndex((x) => x.event === 'redis_down'));
  for (let i = 0; i < 20; i++) await round();
  t.equal(allowed, 60);
  t.equal(denied, 60);
  t.equal(plc.requests.length, 60, 'the PLC saw exactly the allowed requests');
  t.ok(plc.requests.every((r) => r.fc === 3));
  t.ok(logs.some((l) => l.event === 'redis_down') && logs.some((l) => l.event === 'redis_up'));
  t.equal(rt.policyStats.version, 1, 'the last good policy stayed (the restarted Redis is empty)');
  c.close();
});

void t.test('an invalid version in Redis is refused and the last good policy stays', async (t) => {
  LISTEN_PORTS = await freshListenPorts();
  const redis = await withRedis(t);
  const plc = await startRawPlc();
  t.teardown(() => plc.close());
  const { rt, logged } = await startInstance(redis, t);
  await cli(['push', writeFile('g.yaml', policyText(plc.port, 10)), '--redis', redis.url]);
  await logged(loadedVersion(1));
  const client = new Redis(redis.url);
  t.teardown(() => client.disconnect());
  // Written behind plcguard's back (the CLI would refuse it).
  await client.hset('plcguard:version:2', 'yaml', 'version: 2\n', 'sha256', 'x');
  await client.set('plcguard:current', 2);
  await client.publish('plcguard:changes', '2');
  let rejected: Record<string, unknown> = {};
  await logged((l) => l.event === 'policy_rejected' && (rejected = l) !== null);
  t.match(rejected, { errors: [/^redis:plcguard:version:2:1:\d+: /] });
  t.equal(rt.policyStats.version, 1);
});

void t.test('store commands: every error is clear and writes nothing', async (t) => {
  const redis = await withRedis(t);
  const r = redis.url;
  t.same(await cli(['history', '--redis', r]), { code: 0, out: 'no policy has been pushed yet\n', err: '' });
  const f1 = writeFile('e1.yaml', policyText(5021, 10));
  t.same(await cli(['diff', f1, '--redis', r]), { code: 1, out: 'diff against an empty store:\n+ device boiler-0 (2 rules)\n', err: '' });
  await cli(['push', f1, '--redis', r]);
  t.same(await cli(['diff', f1, '--redis', r]), { code: 0, out: 'diff against version 1:\n  no change\n', err: '' });
  const rb = await cli(['rollback', '1', '--redis', r]);
  t.equal(rb.out, 'rolled back to version 1 as version 2\n');
  t.match((await cli(['history', '--redis', r])).out, new RegExp(`\\* 2 {2}\\S+ {2}${os.userInfo().username}@${os.hostname()} `), 'the author defaults to user@host');
  t.equal((await cli(['pull', '--redis', r, '--version', '1'])).out, fs.readFileSync(f1, 'utf8'));
  t.match(await cli(['pull', '--redis', r, '--version', '9']), { code: 1, err: 'plcguard policy pull: version 9 is not in the store\n' });
  t.match(await cli(['pull', '--redis', 'not a url']), { code: 2, err: /^plcguard policy pull: --redis: "not a url" is not a URL like redis:\/\/host:6379/ });
  t.match(await cli(['rollback', '9', '--redis', r]), { code: 1, err: 'plcguard policy rollback: version 9 is not in the store\n' });
  const usage: [string[], string][] = [
    [['rollback', 'latest', '--redis', r], 'plcguard policy rollback: VERSION must be a whole number ≥ 1, got "latest"'],
    [['pull', '--redis', r, '--version', '0'], 'plcguard policy pull: --version must be a whole number ≥ 1, got "0"'],
    [['history', '--redis', r, '--limit', 'all'], 'plcguard policy history: --limit must be a whole number ≥ 1, got "all"'],
    [['pull', 'extra.yaml', '--redis', r], 'plcguard policy pull: no positional argument expected'],
    [['diff', '--redis', r], 'plcguard policy diff: one FILE expected'],
    [['rollback', '--redis', r], 'plcguard policy rollback: one VERSION expected'],
    [['pull', '--redis', r, '--verbose'], "plcguard policy pull: Unknown option '--verbose'"],
    [['pull', '--redis', 'rediss://127.0.0.1:1', '--redis-ca', '/no/such/ca.pem'], 'plcguard policy pull: --redis-ca: cannot read "/no/such/ca.pem"'],
    [['pull', '--redis', r, '--redis-sentinels', 'nohost'], 'plcguard policy pull: --redis-sentinels: "nohost" has no port; expected HOST:PORT or [IPv6]:PORT with a port 1..65535'],
  ];
  for (const [args, message] of usage) {
    const res = await cli(args);
    t.equal(res.code, 2, args.join(' '));
    t.ok(res.err.startsWith(message), `${args.join(' ')}: ${res.err.split('\n')[0]}`);
  }
  t.match(await cli(['push', writeFile('empty.yaml', ''), '--redis', r]), { code: 1, err: /empty\.yaml is not valid; nothing written/ });
  t.match(await cli(['push', path.join(dir, 'nope.yaml'), '--redis', r]), { code: 1, err: /nope\.yaml: cannot read: ENOENT/ });
  t.equal((await cli(['history', '--redis', r, '--limit', '1'])).out.trimEnd().split('\n').length, 1);

  // A version that no longer validates (written by hand, or by an older plcguard).
  const client = new Redis(r);
  t.teardown(() => client.disconnect());
  await client.hset('plcguard:version:1', 'yaml', 'version: 1\ndevices: nope\n');
  t.match(await cli(['rollback', '1', '--redis', r]), { code: 1, err: /version 1 no longer validates; nothing written/ });
  await client.hset('plcguard:version:2', 'yaml', 'version: 1\ndevices: nope\n');
  t.equal(await client.get('plcguard:current'), '2', 'nothing written');
  const d = await cli(['diff', f1, '--redis', r]);
  t.same(d, { code: 1, out: 'diff against version 2:\n+ device boiler-0 (2 rules)\n', err: '' }, 'an invalid version in force diffs as empty');
  t.match(await cli(['pull', '--redis', 'redis://127.0.0.1:1']), { code: 1, err: /^plcguard policy pull: / }, 'Redis unreachable → exit 1');
  // A version hash written by hand with nothing but its YAML still pulls.
  await client.hset('plcguard:version:7', 'yaml', 'by hand\n');
  t.equal((await cli(['pull', '--redis', r, '--version', '7'])).out, 'by hand\n');
  // A history entry written by hand that isn't JSON: the store says so, exit 1.
  await client.rpush('plcguard:history', 'not json');
  t.same(await cli(['history', '--redis', r]), { code: 1, out: '', err: 'plcguard policy history: history entry "not json" is not JSON\n' });
});

void t.test('push of the version in force writes nothing unless --force', async (t) => {
  const redis = await withRedis(t);
  const r = redis.url;
  const f1 = writeFile('same.yaml', policyText(5021, 10));
  t.match(await cli(['push', f1, '--redis', r]), { code: 0, out: /as version 1 / });
  const sha = (await cli(['history', '--redis', r, '--json'])).out;
  const sha256 = (JSON.parse(sha) as { versions: { sha256: string }[] }).versions[0]!.sha256;
  t.same(await cli(['push', f1, '--redis', r, '--author', 'bob']), {
    code: 0,
    out: `${f1} is version 1, the version in force (sha256 ${sha256.slice(0, 12)}); nothing written (--force writes it again)\n`,
    err: '',
  });
  const client = new Redis(r);
  t.teardown(() => client.disconnect());
  t.equal(await client.llen('plcguard:history'), 1, 'no version written');
  t.match(await cli(['push', f1, '--redis', r, '--force', '--message', 'again']), { code: 0, out: /^pushed .* as version 2 / });
  t.equal(await client.llen('plcguard:history'), 2, '--force wrote one');
  // Only the sha256 counts: the same policy with a comment is a new version.
  t.match(await cli(['push', writeFile('commented.yaml', `# reviewed\n${policyText(5021, 10)}`), '--redis', r]), { code: 0, out: /as version 3 / });
  // After a rollback, the version in force is the rolled-back text.
  t.match(await cli(['rollback', '1', '--redis', r]), { code: 0, out: 'rolled back to version 1 as version 4\n' });
  t.match(await cli(['push', f1, '--redis', r]), { code: 0, out: /is version 4, the version in force/ });
});

void t.test('diff: exit 0 only when a push would write nothing; --json; trouble is 2, as in diff(1)', async (t) => {
  const redis = await withRedis(t);
  const r = redis.url;
  const f1 = writeFile('d1.yaml', policyText(5021, 10));
  const json = async (args: string[]) => {
    const res = await cli(['diff', '--json', ...args, '--redis', r]);
    return { code: res.code, doc: JSON.parse(res.out) as Record<string, unknown>, err: res.err };
  };
  const sha1 = parsePolicy(fs.readFileSync(f1, 'utf8'), 'x').policy!.sha256;
  const empty = await json([f1]);
  t.equal(empty.code, 1);
  t.strictSame(Object.keys(empty.doc), ['file', 'sha256', 'against', 'changed', 'devices'], 'stable keys');
  t.match(empty.doc, { file: f1, sha256: sha1, against: null, changed: true, devices: [{ device: 'boiler-0', change: 'added' }] });
  await cli(['push', f1, '--redis', r]);
  t.strictSame(await json([f1]), { code: 0, doc: { file: f1, sha256: sha1, against: { version: 1, sha256: sha1 }, changed: false, devices: [] }, err: '' });

  const f2 = writeFile('d2.yaml', policyText(5021, 11).replace('127.0.0.1:5021', '127.0.0.1:5022'));
  const changed = await json([f2]);
  t.equal(changed.code, 1);
  t.strictSame(changed.doc.devices, [
    {
      device: 'boiler-0',
      change: 'changed',
      fields: [{ field: 'upstream', before: '127.0.0.1:5021', after: '127.0.0.1:5022' }],
      rules: [{ rule: 'setpoint', change: 'changed', fields: [{ field: 'write.holding_registers', before: [10], after: [11] }] }],
    },
  ]);
  const text = await cli(['diff', f2, '--redis', r]);
  t.equal(text.out, 'diff against version 1:\n~ device boiler-0\n    upstream: "127.0.0.1:5021" → "127.0.0.1:5022"\n    ~ rule setpoint\n        write.holding_registers: [10] → [11]\n');

  // The text differs, what the devices enforce does not: a push would write a version.
  const comment = writeFile('d3.yaml', `# a comment\n${policyText(5021, 10)}`);
  t.same(await cli(['diff', comment, '--redis', r]), {
    code: 1,
    out: 'diff against version 1:\n  no change in what the devices enforce; the text differs (comments, layout)\n',
    err: '',
  });
  t.match(await json([comment]), { code: 1, doc: { changed: true, devices: [] } });

  // Trouble: 2, never 1, which would read as "it differs".
  t.match(await cli(['diff', f1, '--redis', 'redis://127.0.0.1:1']), { code: 2, out: '', err: /^plcguard policy diff: / }, 'Redis unreachable');
  t.match(await cli(['diff', writeFile('bad-diff.yaml', 'version: 1\ndevices: nope\n'), '--redis', r]), { code: 2, err: /is not valid; nothing written/ }, 'an invalid FILE');
  t.match(await cli(['diff', path.join(dir, 'missing.yaml'), '--redis', r]), { code: 2, err: /missing\.yaml: cannot read/ }, 'no FILE');
  t.match(await cli(['diff', '--redis', r]), { code: 2, err: /^plcguard policy diff: one FILE expected\ntry 'plcguard policy diff --help'\n$/ }, 'a usage error');
});

void t.test('history --json: the versions and the one in force', async (t) => {
  const redis = await withRedis(t);
  const r = redis.url;
  t.same(await cli(['history', '--json', '--redis', r]), { code: 0, out: '{"current":null,"versions":[]}\n', err: '' });
  const f1 = writeFile('h1.yaml', policyText(5021, 10));
  await cli(['push', f1, '--redis', r, '--author', 'alice', '--message', 'first']);
  await cli(['push', writeFile('h2.yaml', policyText(5021, 12)), '--redis', r, '--author', 'bob']);
  await cli(['rollback', '1', '--redis', r, '--author', 'carol']);
  const res = await cli(['history', '--redis', r, '--json', '--limit', '2']);
  t.equal(res.code, 0);
  t.equal(res.out.split('\n').length, 2, 'one line');
  const doc = JSON.parse(res.out) as { current: number; versions: Record<string, unknown>[] };
  t.equal(doc.current, 3);
  t.strictSame(doc.versions.map((v) => Object.keys(v)), [0, 1].map(() => ['version', 'time', 'author', 'message', 'sha256', 'rollback_of']));
  t.match(doc.versions, [
    { version: 2, author: 'bob', message: '', rollback_of: null, sha256: /^[0-9a-f]{64}$/ },
    { version: 3, author: 'carol', message: 'rollback to version 1', rollback_of: 1, sha256: parsePolicy(fs.readFileSync(f1, 'utf8'), 'x').policy!.sha256 },
  ]);
  t.match(doc.versions[0]!.time, /^\d{4}-\d\d-\d\dT/);
});

void t.test('store commands: --help, and options of other commands refused', async (t) => {
  for (const command of ['push', 'pull', 'history', 'diff', 'rollback']) {
    const res = await cli([command, '--help']);
    t.equal(res.code, 0, `${command} --help`);
    t.match(res.out, new RegExp(`^usage: plcguard policy ${command} `));
    t.match(res.out, /Redis options: --redis-prefix P/);
    t.match(res.out, /\nexit status/);
  }
  t.same(await cli(['push', 'x.yaml', '--redis', 'redis://127.0.0.1:1', '--json']), {
    code: 2,
    out: '',
    err: "plcguard policy push: --json is an option of history and diff\ntry 'plcguard policy push --help'\n",
  });
  t.same(await cli(['pull', '--redis', 'redis://127.0.0.1:1', '--force']), {
    code: 2,
    out: '',
    err: "plcguard policy pull: --force is an option of push\ntry 'plcguard policy pull --help'\n",
  });
});
