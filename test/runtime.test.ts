// Policy reloads as the listeners see them: devices added, removed, moved; bad files; filters.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { RawClient, hexOf, req } from './fixtures/raw-client.js';
import { adu, startRawPlc } from './fixtures/raw-plc.js';
import { ANY_PORT, startProxy } from './fixtures/proxy.js';
import { parsePolicy } from '../policy/index.js';
import type { CompiledPolicy } from '../policy/index.js';
import type { PolicyParser } from '../policy/source/source.js';
import { Logger } from '../proxy/audit.js';
import { PolicyInvalidError } from '../policy/errors.js';
import { FilePolicySource } from '../policy/source/file.js';
import { NoDeviceSelectedError, ProxyRuntime } from '../proxy/runtime.js';
import { freePort } from '../bench/lib/net.js';
import { recordLogs } from './fixtures/logs.js';

const device = (name: string, listen: string, upstream: number, writable = 10): string => `  - name: ${name}
    listen: ${listen}
    upstream: 127.0.0.1:${upstream}
    rules:
      - read: { holding_registers: [0-9] }
        write: { holding_registers: [${writable}] }
`;

void t.test('devices added, moved, re-pointed and removed by reloads', async (t) => {
  const plc = await startRawPlc();
  const plc2 = await startRawPlc();
  t.teardown(async () => {
    await plc.close();
    await plc2.close();
  });
  const proxy = await startProxy(`version: 1\ndevices:\n${device('a', ANY_PORT, plc.port)}`);
  t.teardown(() => proxy.stop());
  const portB = await freePort();
  const portB2 = await freePort();
  const c = await RawClient.connect(proxy.port);
  c.send(req(1, 1, [3, 0, 0, 0, 1]));
  t.equal(hexOf((await c.read())[0]!), hexOf(adu(1, 1, [3, 2, 0, 0])));

  // A second device appears; the first is unchanged and its connection stays.
  await proxy.rewrite(`version: 1\ndevices:\n${device('a', ANY_PORT, plc.port)}${device('b', `127.0.0.1:${portB}`, plc.port)}`);
  t.same([...proxy.rt.ports().keys()], ['a', 'b']);
  const b = await RawClient.connect(portB);
  b.send(req(2, 1, [3, 0, 1, 0, 1]));
  t.equal(hexOf((await b.read())[0]!), hexOf(adu(2, 1, [3, 2, 0, 1])));

  // b moves to another port: its open connection stays, new ones go to the new port.
  await proxy.rewrite(`version: 1\ndevices:\n${device('a', ANY_PORT, plc.port)}${device('b', `127.0.0.1:${portB2}`, plc.port)}`);
  t.equal(proxy.rt.ports().get('b'), portB2);
  b.send(req(3, 1, [3, 0, 2, 0, 1]));
  t.equal((await b.read())[0]!.readUInt16BE(0), 3, 'the open connection to b kept working');
  const refused = await RawClient.connect(portB).then(
    () => 'connected',
    (e: NodeJS.ErrnoException) => e.code,
  );
  t.equal(refused, 'ECONNREFUSED', 'the old port is closed');

  // a is re-pointed to another PLC: its clients are closed so they reconnect to the new one.
  await proxy.rewrite(`version: 1\ndevices:\n${device('a', ANY_PORT, plc2.port)}${device('b', `127.0.0.1:${portB2}`, plc.port)}`);
  await c.closed;
  const c2 = await RawClient.connect(proxy.port);
  c2.send(req(4, 1, [3, 0, 0, 0, 1]));
  await c2.read();
  t.equal(plc2.requests.length, 1, 'new connections reach the new PLC');

  // b is removed: its listener and connections go.
  await proxy.rewrite(`version: 1\ndevices:\n${device('a', ANY_PORT, plc2.port)}`);
  await b.closed;
  t.same([...proxy.rt.ports().keys()], ['a']);
  t.match(
    proxy.logs.filter((l) => l.event === 'policy_loaded').map((l) => (l.devices as { name: string }[]).map((d) => d.name).join(',')),
    ['a', 'a,b', 'a,b', 'a,b', 'a'],
  );
  c2.close();
});

void t.test('a reload whose new listen address is taken is rejected; the rest keeps working', async (t) => {
  const plc = await startRawPlc();
  t.teardown(() => plc.close());
  const proxy = await startProxy(`version: 1\ndevices:\n${device('a', ANY_PORT, plc.port)}`);
  t.teardown(() => proxy.stop());
  const blocker = (await import('node:net')).createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  t.teardown(() => blocker.close());
  const taken = (blocker.address() as { port: number }).port;
  await proxy.rewrite(`version: 1\ndevices:\n${device('a', ANY_PORT, plc.port)}${device('b', `127.0.0.1:${taken}`, plc.port)}`);
  t.match(proxy.logs.at(-1), { event: 'policy_rejected', errors: [/EADDRINUSE/], kept: 'last good policy' });
  t.equal(proxy.rt.policyStats.reloadsFailed, 1);
  // A move to a free port together with a device on the taken one: neither happens.
  const free = await freePort();
  await proxy.rewrite(`version: 1\ndevices:\n${device('a', `127.0.0.1:${free}`, plc.port)}${device('b', `127.0.0.1:${taken}`, plc.port)}`);
  t.match(proxy.logs.at(-1), { event: 'policy_rejected', errors: [/EADDRINUSE/] });
  const notMoved = await RawClient.connect(free).then(
    () => 'connected',
    (e: NodeJS.ErrnoException) => e.code,
  );
  t.equal(notMoved, 'ECONNREFUSED', 'the listener opened for the move was closed again');
  // Moving the running device onto the taken port fails the same way, and changes nothing.
  await proxy.rewrite(`version: 1\ndevices:\n${device('a', `127.0.0.1:${taken}`, plc.port, 11)}`);
  t.match(proxy.logs.at(-1), { event: 'policy_rejected', errors: [/EADDRINUSE/] });
  t.equal(proxy.rt.ports().get('a'), proxy.port, 'still on its old port');
  const c = await RawClient.connect(proxy.port);
  c.send(req(1, 1, [3, 0, 0, 0, 1]));
  t.equal((await c.read())[0]!.readUInt16BE(0), 1);
  c.send(req(2, 1, [6, 0, 11, 0, 1]));
  t.equal((await c.read())[0]![7], 0x86, 'and still under the old policy (11 not writable)');
  c.close();
});

void t.test('the policy file deleted, then restored', async (t) => {
  const plc = await startRawPlc();
  t.teardown(() => plc.close());
  const text = `version: 1\ndevices:\n${device('a', ANY_PORT, plc.port)}`;
  const proxy = await startProxy(text);
  t.teardown(() => proxy.stop());
  fs.rmSync(proxy.file);
  await proxy.logged((l) => l.event === 'policy_rejected');
  t.match(proxy.logs.at(-1), { event: 'policy_rejected', errors: [/cannot read: ENOENT/] });
  await proxy.rewrite(text.replace('[10]', '[11]'));
  t.match(proxy.logs.at(-1), { event: 'policy_loaded' });
});

void t.test('start: every error of an invalid file; a device filter names what is missing', async (t) => {
  const dir = fs.mkdtempSync('/tmp/plcguard-rt-');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const bad = `${dir}/bad.yaml`;
  fs.writeFileSync(bad, 'version: 1\ndevices:\n  - name: A\n');
  const err = await ProxyRuntime.start({ source: new FilePolicySource(bad, parsePolicy, new Logger(() => {})), admin: null, logger: new Logger(() => {}) }).catch((e: unknown) => e);
  t.ok(err instanceof PolicyInvalidError);
  t.equal((err as PolicyInvalidError).code, 'ERR_POLICY_INVALID');
  t.ok((err as PolicyInvalidError).issues.length >= 2, 'all errors, not just the first');
  t.match((err as PolicyInvalidError).issues[0]!.format(), new RegExp(`^${bad}:3:\\d+: `));

  const plc = await startRawPlc();
  t.teardown(() => plc.close());
  const good = `${dir}/good.yaml`;
  const port = await freePort();
  fs.writeFileSync(good, `version: 1\ndevices:\n${device('a', `127.0.0.1:${port}`, plc.port)}`);
  const logs: Record<string, unknown>[] = [];
  const logger = new Logger((l) => logs.push(JSON.parse(l) as Record<string, unknown>));
  const rt = await ProxyRuntime.start({ source: new FilePolicySource(good, parsePolicy, logger), admin: null, devices: ['a', 'zz'], logger });
  t.teardown(() => rt.stop());
  t.same([...rt.ports().keys()], ['a']);
  t.match(logs.find((l) => l.event === 'policy_warning'), { message: 'devices not in this policy: zz' });
});

void t.test('a device filter that selects nothing: an error at start, not ready after a reload', async (t) => {
  const plc = await startRawPlc();
  t.teardown(() => plc.close());
  const text = `version: 1\ndevices:\n${device('a', ANY_PORT, plc.port)}${device('b', `127.0.0.1:${await freePort()}`, plc.port)}`;
  const dir = fs.mkdtempSync('/tmp/plcguard-rt-');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = `${dir}/p.yaml`;
  fs.writeFileSync(file, text.replace(`listen: ${ANY_PORT}`, `listen: 127.0.0.1:${await freePort()}`));
  const { logger, logs, logged } = recordLogs();
  const err = await ProxyRuntime.start({ source: new FilePolicySource(file, parsePolicy, logger), admin: null, devices: ['A', 'bb'], logger }).catch(
    (e: unknown) => e,
  );
  t.ok(err instanceof NoDeviceSelectedError);
  t.match(err, { code: 'ERR_NO_DEVICE_SELECTED', message: 'none of the devices to serve (A, bb) is in the policy; it has: a, b' });
  t.equal(logs.length, 0, 'nothing listened, nothing was logged');

  // Serving a; a later version renames it: applied (its old rules must not stay), and not ready.
  const rt = await ProxyRuntime.start({
    source: new FilePolicySource(file, parsePolicy, logger),
    admin: { host: '127.0.0.1', port: 0 },
    devices: ['a'],
    logger,
  });
  t.teardown(() => rt.stop());
  const readyz = async (): Promise<{ status: number; body: unknown }> => {
    const res = await fetch(`http://127.0.0.1:${rt.adminPort}/readyz`);
    return { status: res.status, body: await res.json() };
  };
  t.same(await readyz(), { status: 200, body: { ready: true, checks: { policy_loaded: true, listeners_up: true, devices_served: true } } });
  const mark = logs.length;
  const port = rt.ports().get('a')!;
  fs.writeFileSync(`${file}.tmp`, fs.readFileSync(file, 'utf8').replace('name: a', 'name: a2'));
  fs.renameSync(`${file}.tmp`, file);
  await logged((l) => l.event === 'policy_loaded', mark);
  await rt.settled();
  t.same(
    logs.slice(mark).filter((l) => l.event === 'policy_warning').map((l) => l.message),
    ['none of the devices to serve (a) is in the policy; it has: a2, b; this instance serves nothing'],
  );
  t.same([...rt.ports().keys()], []);
  const refused = await RawClient.connect(port).then(
    (c) => {
      c.close(); // a failure, not a hang: the assertion below reports it
      return 'connected';
    },
    (e: NodeJS.ErrnoException) => e.code,
  );
  t.equal(refused, 'ECONNREFUSED', 'a is not served under its old rules');
  t.same(await readyz(), { status: 503, body: { ready: false, checks: { policy_loaded: true, listeners_up: false, devices_served: false } } });
});

void t.test('the admin address taken: start fails and leaves nothing listening', async (t) => {
  const plc = await startRawPlc();
  t.teardown(() => plc.close());
  const blocker = (await import('node:net')).createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  t.teardown(() => blocker.close());
  const adminPort = (blocker.address() as { port: number }).port;
  const dir = fs.mkdtempSync('/tmp/plcguard-rt-');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = `${dir}/p.yaml`;
  const port = await freePort();
  fs.writeFileSync(file, `version: 1\ndevices:\n${device('a', `127.0.0.1:${port}`, plc.port)}`);
  const err = await ProxyRuntime.start({
    source: new FilePolicySource(file, parsePolicy, new Logger(() => {})),
    admin: { host: '127.0.0.1', port: adminPort },
    logger: new Logger(() => {}),
    graceMs: 0,
  }).catch((e: unknown) => e as NodeJS.ErrnoException);
  t.equal((err as NodeJS.ErrnoException).code, 'EADDRINUSE');
  const refused = await RawClient.connect(port).then(
    (c) => {
      c.close(); // a failure, not a hang: the assertion below reports it
      return 'connected';
    },
    (e: NodeJS.ErrnoException) => e.code,
  );
  t.equal(refused, 'ECONNREFUSED', 'the Modbus listener was closed again');
});

void t.test('rate state of many past sources is pruned once they have refilled', async (t) => {
  const plc = await startRawPlc();
  t.teardown(() => plc.close());
  const proxy = await startProxy(
    `version: 1\ndefaults:\n  rate_limit: { requests_per_second: 100, burst: 1 }\ndevices:\n${device('a', ANY_PORT, plc.port)}`,
  );
  t.teardown(() => proxy.stop());
  // One source stays connected and one has spent its burst and left: pruning keeps both.
  const stay = await RawClient.connect(proxy.port, '127.3.0.1');
  const spent = await RawClient.connect(proxy.port, '127.3.0.2');
  spent.send(req(9, 1, [3, 0, 0, 0, 1]));
  await spent.read();
  spent.close();
  await spent.closed;
  // More distinct sources than are remembered (1,024), one after another, each sending one
  // request (so its bucket is not full when it leaves) and gone at once: when the 1,025th comes,
  // the early ones have refilled (10 ms at 100/s) and are forgotten, the latest are kept.
  for (let i = 0; i < 1030; i++) {
    const c = await RawClient.connect(proxy.port, `127.1.${Math.floor(i / 200) + 1}.${(i % 200) + 1}`);
    c.send(req(i & 0xffff, 1, [3, 0, 0, 0, 1]));
    await c.read();
    c.close();
    await c.closed;
  }
  // A source that used its burst a moment ago is still limited: pruning only forgets refilled ones.
  const a = await RawClient.connect(proxy.port, '127.2.0.1');
  a.send(Buffer.concat([req(1, 1, [3, 0, 0, 0, 1]), req(2, 1, [3, 0, 0, 0, 1])]));
  const rs = await a.read(2);
  const byTid = new Map(rs.map((r) => [r.readUInt16BE(0), r[7]]));
  t.same([byTid.get(1), byTid.get(2)], [3, 0x83], 'burst 1: the second request in the same instant is refused');
  t.equal(proxy.rt.server.sessions().length, 2, 'the past sources are all gone');
  a.close();
  stay.close();
});

void t.test('warnings are logged at start and on reload; a save without change reloads nothing', async (t) => {
  const plc = await startRawPlc();
  t.teardown(() => plc.close());
  // A device without rules denies everything: valid, with a warning.
  const spare = await freePort();
  const proxy = await startProxy(
    `version: 1\ndevices:\n${device('a', ANY_PORT, plc.port)}  - name: spare\n    listen: 127.0.0.1:${spare}\n    upstream: 127.0.0.1:1\n    rules: []\n`,
  );
  t.teardown(() => proxy.stop());
  t.match(proxy.logs.find((l) => l.event === 'policy_warning'), { message: /devices\[1\]\.rules: no rules; this device denies everything/ });
  const loads = (): number => proxy.logs.filter((l) => l.event === 'policy_loaded').length;
  const before = loads();
  // Saved again unchanged (as editors do): the watcher reads it, sees the same text, says so.
  fs.writeFileSync(proxy.file, fs.readFileSync(proxy.file));
  await proxy.logged((l) => l.event === 'policy_unchanged');
  t.equal(loads(), before, 'no reload for an unchanged file');
  const warned = proxy.logs.filter((l) => l.event === 'policy_warning').length;
  await proxy.rewrite(fs.readFileSync(proxy.file, 'utf8').replace('[10]', '[11]'));
  t.equal(loads(), before + 1);
  t.equal(proxy.logs.filter((l) => l.event === 'policy_warning').length, warned + 1, 'the warning again, for the new version');
});

void t.test('an IPv6 client is logged by its address and port apart', async (t) => {
  const plc = await startRawPlc();
  t.teardown(() => plc.close());
  const port = await freePort();
  const proxy = await startProxy(`version: 1\ndevices:\n${device('a', `"[::1]:${port}"`, plc.port)}`);
  t.teardown(() => proxy.stop());
  const net = await import('node:net');
  const s = net.connect({ host: '::1', port });
  await new Promise((resolve) => s.once('connect', resolve));
  const srcPort = s.localPort;
  s.write(req(1, 1, [6, 0, 50, 0, 1]));
  await new Promise((resolve) => s.once('data', resolve));
  s.destroy();
  t.match(proxy.logs.find((l) => l.event === 'deny'), { src_ip: '::1', src_port: srcPort });
});

void t.test('a reload that changes one device compiles only it: the others keep their compiled device and sessions', async (t) => {
  const plc = await startRawPlc();
  t.teardown(() => plc.close());
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'plcguard-reuse-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const [portA, portB] = [await freePort(), await freePort()];
  const policy = (writableB: number): string =>
    `version: 1\ndevices:\n${device('a', `127.0.0.1:${portA}`, plc.port)}${device('b', `127.0.0.1:${portB}`, plc.port, writableB)}`;
  const file = path.join(dir, 'p.yaml');
  fs.writeFileSync(file, policy(10));
  // The source's parser, recorded: what each read compiled to.
  const compiled: CompiledPolicy[] = [];
  const parse: PolicyParser = (text, name, options) => {
    const r = parsePolicy(text, name, options);
    if (r.policy) compiled.push(r.policy);
    return r;
  };
  const { logger, logged, logs } = recordLogs();
  const rt = await ProxyRuntime.start({ source: new FilePolicySource(file, parse, logger), logger, admin: null, graceMs: 100 });
  t.teardown(() => rt.stop());
  const a = await RawClient.connect(portA);
  const b = await RawClient.connect(portB);
  a.send(req(1, 1, [3, 0, 0, 0, 1]));
  b.send(req(1, 1, [3, 0, 0, 0, 1]));
  t.equal(hexOf((await a.read())[0]!), hexOf(adu(1, 1, [3, 2, 0, 0])));
  t.equal(hexOf((await b.read())[0]!), hexOf(adu(1, 1, [3, 2, 0, 0])), 'each session has its PLC connection now');
  b.send(req(2, 1, [6, 0, 11, 0, 7]));
  t.equal(hexOf((await b.read())[0]!), hexOf(adu(2, 1, [0x86, 2])), 'b: register 11 is not writable yet');
  const sessions = rt.server.sessions();
  t.equal(sessions.length, 2);
  t.equal(plc.connections, 2);

  const applied = logged((l) => l.event === 'policy_loaded', logs.length);
  fs.writeFileSync(`${file}.tmp`, policy(11));
  fs.renameSync(`${file}.tmp`, file);
  rt.reload();
  await applied;
  await rt.settled();
  t.equal(compiled.length, 2);
  const [before, after] = compiled as [CompiledPolicy, CompiledPolicy];
  t.equal(after.devices.get('a'), before.devices.get('a'), 'a unchanged: the same compiled object');
  t.not(after.devices.get('b'), before.devices.get('b'), 'b changed: compiled again');
  t.equal(after.document.devices[0], before.document.devices[0], "a's document is the one it was compiled from");
  t.equal(after.devices.get('b')!.compileEntries, before.devices.get('b')!.compileEntries);

  // Both connections stay, on the same sessions and PLC connections; b's is judged by its new rules.
  a.send(req(2, 1, [3, 0, 1, 0, 1]));
  b.send(req(3, 1, [6, 0, 11, 0, 7]));
  t.equal(hexOf((await a.read())[0]!), hexOf(adu(2, 1, [3, 2, 0, 1])));
  t.equal(hexOf((await b.read())[0]!), hexOf(adu(3, 1, [6, 0, 11, 0, 7])), 'b: register 11 writable now');
  t.same(rt.server.sessions(), sessions, 'the same sessions');
  t.equal(plc.connections, 2, 'no PLC connection made again');
  a.close();
  b.close();
});
