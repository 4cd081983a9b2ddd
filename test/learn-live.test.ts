// Learn mode live (issue 11, item 2): real clients (jsmodbus, modbus-serial, raw bytes) → plcguard
// in `mode: learn` → the simulated PLC; the proposal fetched over the admin endpoint validates,
// and once enforced passes the same traffic and denies anything new with the exact exception.
import http from 'node:http';
import net from 'node:net';
import { once } from 'node:events';
import t from 'tap';
import Modbus from 'jsmodbus';
import ModbusSerial from 'modbus-serial';
import { startSimulatedPlc } from '../demo/plc.js';
import { learn } from './fixtures/learning.js';
import { parsePolicy } from '../policy/index.js';
import { startAdminServer } from '../proxy/http.js';
import { createRegistry, PolicyStats } from '../proxy/metrics.js';
import { StatsRegistry } from '../proxy/server.js';
import { devicePolicy, startProxy } from './fixtures/proxy.js';
import { RawClient, hexOf, req } from './fixtures/raw-client.js';
import { freePort } from '../bench/lib/net.js';

const ModbusRTU = ModbusSerial.default;


interface ExceptionLike {
  response?: { body?: { code?: number } };
}

/** An HMI with jsmodbus: reads, setpoint writes, and a read the PLC itself refuses (02). */
async function jsmodbusTraffic(port: number): Promise<number | undefined> {
  const socket = new net.Socket();
  const client = new Modbus.client.TCP(socket, 1, 2000);
  socket.connect({ host: '127.0.0.1', port });
  await once(socket, 'connect');
  try {
    await client.readHoldingRegisters(0, 10);
    await client.writeSingleRegister(10, 700);
    await client.writeMultipleRegisters(12, [500, 60]);
    await client.readCoils(0, 8);
    // Past the PLC's 1000 registers: the PLC answers 02, and the proposal says so.
    const refused = (await client.readHoldingRegisters(995, 10).catch((e: unknown) => e)) as ExceptionLike;
    return refused.response?.body?.code;
  } finally {
    socket.destroy();
  }
}

/** Another with modbus-serial, pipelined: input registers and a coil switched on. */
async function modbusSerialTraffic(port: number): Promise<void> {
  const client = new ModbusRTU();
  await client.connectTCP('127.0.0.1', { port });
  client.setID(1);
  client.setTimeout(2000);
  try {
    await Promise.all([0, 1, 2, 3, 4].map((i) => client.readInputRegisters(i, 1)));
    await client.writeCoil(5, true);
  } finally {
    await new Promise<void>((resolve) => client.close(() => resolve()));
  }
}

/** One request, its one answer, as hex. */
async function exchange(port: number, frame: Buffer): Promise<string> {
  const c = await RawClient.connect(port);
  try {
    c.send(frame);
    const [answer] = await c.read(1);
    return answer === undefined ? 'closed' : hexOf(answer);
  } finally {
    c.close();
  }
}

void t.test('learn mode: forward, learn, propose over admin, enforce the proposal', async (t) => {
  const plc = await startSimulatedPlc({ tickMs: 0 });
  const proxy = await startProxy(devicePolicy(plc.port, '    mode: learn\n'), { admin: true });
  t.teardown(async () => {
    await proxy.stop();
    await plc.close();
  });
  const admin = `127.0.0.1:${proxy.rt.adminPort}`;
  t.equal(proxy.logs.filter((l) => l.event === 'policy_warning').length, 0, 'no rules in learn mode: no warning');

  t.equal((await fetch(`http://${admin}/learn/proposal`)).status, 404, 'nothing learned yet');
  t.equal((await learn(['--admin', admin])).code, 1, 'nothing to propose yet: exit 1');

  t.equal(await jsmodbusTraffic(proxy.port), 2, 'the PLC\'s own exception reaches the client');
  await modbusSerialTraffic(proxy.port);
  t.equal(plc.holding.readUInt16BE(20), 700, 'writes reached the PLC');
  // Malformed frames are still denied, with the decoder's code: FC3 of 0 registers → 03; and not learned.
  t.equal(await exchange(proxy.port, req(7, 1, [3, 0, 0, 0, 0])), '000700000003018303');
  // FC16 whose byte count doesn't fit its quantity → 03.
  t.equal(await exchange(proxy.port, req(8, 1, [16, 0, 10, 0, 2, 2, 0, 1, 0, 2])), '000800000003019003');

  const stats = (await (await fetch(`http://${admin}/learn/stats`)).json()) as { devices: { device: string; requests: number; exceptions: number; malformed: number; sources: number; ceiling_reached: boolean }[] };
  t.match(stats.devices, [{ device: 'plc', requests: 11, exceptions: 1, malformed: 2, sources: 1, ceiling_reached: false }]);

  // A reload that keeps learn mode keeps what was learned (and renames nothing here).
  await proxy.rewrite(devicePolicy(plc.port, '    mode: learn\n    description: still learning\n'));
  await proxy.rt.flushLearned();
  const res = await fetch(`http://${admin}/learn/proposal`);
  t.equal(res.status, 200);
  const proposal = await res.text();
  t.notMatch(proposal, /mode: learn/, 'never learn mode');
  t.match(proposal, `  - name: plc\n    listen: 127.0.0.1:${proxy.port}\n    upstream: 127.0.0.1:${plc.port}\n    mode: enforce\n`);
  t.match(proposal, /- 0-9 +# 1 request, at /);
  t.match(proposal, /- 995-1004 +# 1 request, 1 answered with exception 0x02 \(illegal data address\)/);
  t.match(proposal, /- \{ addresses: 10, values: 700 \}/);
  t.match(proposal, /- \{ addresses: 12, values: 500 \}/);
  t.match(proposal, /- \{ addresses: 5, values: 1 \} +# 1 write, at .*only ever switched on/);
  const checked = parsePolicy(proposal, 'proposal.yaml');
  t.strictSame([checked.errors, checked.warnings], [[], []], 'policy validate passes');
  t.match(await (await fetch(`http://${admin}/learn/proposal?mode=monitor`)).text(), /mode: monitor/);
  t.equal((await fetch(`http://${admin}/learn/proposal?mode=learn`)).status, 400);
  t.match(await (await fetch(`http://${admin}/metrics`)).text(), /plcguard_learned_requests_total\{device="plc"\} 11\n[^]*plcguard_learn_ceiling_reached\{device="plc"\} 0/);

  // The CLI makes the same proposal from the observations, with a summary.
  const cli = await learn(['--admin', admin]);
  t.equal(cli.code, 0);
  t.equal(cli.stdout.join('').split('\ndevices:\n')[1], proposal.split('\ndevices:\n')[1], 'the same devices and rules as /learn/proposal');
  t.match(cli.stderr.join('\n'), /learned: 11 requests \(1 answered with an exception\); 2 malformed requests denied and not learned/);

  // Enforced: the same traffic passes; anything new is denied.
  await proxy.rewrite(proposal);
  t.equal(proxy.rt.server.learners.get('plc')!.requests, 11, 'nothing more is learned once enforcing');
  t.equal(await jsmodbusTraffic(proxy.port), 2, 'the same requests, the same answers (the PLC\'s 02 included)');
  await modbusSerialTraffic(proxy.port);
  t.equal(await exchange(proxy.port, req(1, 1, [6, 0, 11, 0, 5])), '000100000003018602', 'a new write address → 02');
  t.equal(await exchange(proxy.port, req(2, 1, [6, 0, 10, 2, 189])), '000200000003018603', 'a new value (701) → 03');
  t.equal(await exchange(proxy.port, req(3, 2, [3, 0, 0, 0, 1])), '00030000000302830a', 'a new unit → 0A');
  t.equal(await exchange(proxy.port, req(4, 1, [8, 0, 0, 0x12, 0x34])), '000400000003018801', 'a new function (FC8) → 01');
  t.equal(await exchange(proxy.port, req(5, 1, [3, 0, 10, 0, 1])), '000500000003018302', 'a register not read before → 02');
  const denied = proxy.logs.filter((l) => l.event === 'deny').map((l) => l.reason);
  t.strictSame(denied, ['malformed', 'malformed', 'address_not_allowed', 'value_not_allowed', 'unit_not_allowed', 'function_not_allowed', 'address_not_allowed']);
});

void t.test('learn mode on a shared PLC connection: what every client asked is learned, with its answer', async (t) => {
  const plc = await startSimulatedPlc({ tickMs: 0 });
  const proxy = await startProxy(devicePolicy(plc.port, '    mode: learn\n    upstream_connections: 1\n    upstream_max_in_flight: 2\n'), { admin: true });
  t.teardown(async () => {
    await proxy.stop();
    await plc.close();
  });
  // Both clients through the one PLC connection at once.
  const [refused] = await Promise.all([jsmodbusTraffic(proxy.port), modbusSerialTraffic(proxy.port)]);
  t.equal(refused, 2, 'the PLC\'s own exception reaches its client');
  const stats = (await (await fetch(`http://127.0.0.1:${proxy.rt.adminPort}/learn/stats`)).json()) as { devices: { requests: number; exceptions: number }[] };
  t.match(stats.devices, [{ requests: 11, exceptions: 1 }]);
  const proposal = await (await fetch(`http://127.0.0.1:${proxy.rt.adminPort}/learn/proposal`)).text();
  t.match(proposal, /- 995-1004 +# 1 request, 1 answered with exception 0x02 \(illegal data address\)/);
  t.match(proposal, /- \{ addresses: 5, values: 1 \}/);
  t.match(proposal, `    upstream: 127.0.0.1:${plc.port}\n    upstream_connections: 1\n    upstream_max_in_flight: 2\n    mode: enforce\n`, 'enforcing it opens no more PLC connections than learning did');
  t.strictSame(parsePolicy(proposal, 'proposal.yaml').errors, [], 'policy validate passes');
});

void t.test('learn mode: the ceiling is said once, in the log and a metric', async (t) => {
  const plc = await startSimulatedPlc({ tickMs: 0 });
  const proxy = await startProxy(devicePolicy(plc.port, '    mode: learn\n    limits: { max_outstanding: 64 }\n'), { admin: true });
  t.teardown(async () => {
    await proxy.stop();
    await plc.close();
  });
  const c = await RawClient.connect(proxy.port);
  t.teardown(() => c.close());
  // FC16 of 123 registers at new addresses (every unit has 4096 per table): 123 entries each,
  // past the 131,072-entry ceiling after 1,066 requests.
  const frames: Buffer[] = [];
  for (let i = 0; i < 1100; i++) {
    const unit = 1 + Math.floor(i / 33);
    const start = (i % 33) * 123;
    frames.push(req(i, unit, [16, start >> 8, start & 0xff, 0, 123, 246, ...new Array<number>(246).fill(0)]));
  }
  c.send(Buffer.concat(frames));
  t.equal((await c.read(1100)).length, 1100);
  const lines = proxy.logs.filter((l) => l.event === 'learn_ceiling_reached');
  t.match(lines, [{ device: 'plc', max_entries: 131072 }]);
  t.equal(lines.length, 1, 'one line');
  const cli = await learn(['--admin', `127.0.0.1:${proxy.rt.adminPort}`]);
  t.equal(cli.code, 0);
  t.match(cli.stderr.join('\n'), /requests past the ceilings not learned\nplcguard policy learn: warning: .*more than 4096 written addresses/);
  t.match(await (await fetch(`http://127.0.0.1:${proxy.rt.adminPort}/metrics`)).text(), /plcguard_learn_ceiling_reached\{device="plc"\} 1/);
  const stats = (await (await fetch(`http://127.0.0.1:${proxy.rt.adminPort}/learn/stats`)).json()) as { devices: { ceiling_reached: boolean; entries: number; warnings: string[] }[] };
  t.equal(stats.devices[0]!.ceiling_reached, true);
  t.ok(stats.devices[0]!.entries <= 131072 + 64, 'bounded');
  t.match(stats.devices[0]!.warnings.join('\n'), /reached their ceiling of 131072 entries/);
});

void t.test('learn mode: requests the PLC never answered are learned as such', async (t) => {
  const nowhere = await freePort();
  const proxy = await startProxy(devicePolicy(nowhere, '    mode: learn\n    limits: { connect_timeout_ms: 200, reconnect_backoff_min_ms: 60000, reconnect_backoff_max_ms: 60000 }\n'), { admin: true });
  t.teardown(() => proxy.stop());
  // The PLC refuses the connection: 0B for the request that waited for it, then 0A at once while backing off.
  t.match(await exchange(proxy.port, req(1, 1, [3, 0, 0, 0, 1])), /^00010000000301830[ab]$/);
  t.equal(await exchange(proxy.port, req(2, 1, [3, 0, 5, 0, 1])), '00020000000301830a');
  const stats = (await (await fetch(`http://127.0.0.1:${proxy.rt.adminPort}/learn/stats`)).json()) as { devices: { requests: number; exceptions: number }[] };
  t.match(stats.devices, [{ requests: 2, exceptions: 0 }], 'recorded, without an exception of the PLC\'s');
});

void t.test('policy learn --admin: what is not a plcguard admin endpoint', async (t) => {
  const answers: [number, string][] = [
    [404, 'nope'],
    [200, 'not json'],
    [200, '{}'],
  ];
  const server = http.createServer((_req, res) => {
    const [status, body] = answers.shift()!;
    res.writeHead(status).end(body);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const at = `127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  const url = `http://${at}/learn/observations`;
  for (const expected of [`${url}: HTTP 404 (not a plcguard with learn mode?)`, `cannot fetch ${url}: Unexpected token`, `${url}: not the observations of a plcguard`]) {
    const r = await learn(['--admin', at]);
    t.equal(r.code, 1);
    t.match(r.stderr.join(''), expected);
  }
});

void t.test('admin server without learning: nothing to propose', async (t) => {
  const server = await startAdminServer({ host: '127.0.0.1', port: 0 }, createRegistry(new StatsRegistry(), new PolicyStats(), '0', () => ({})), { checks: () => ({}) });
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const at = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  t.equal((await fetch(`${at}/learn/proposal`)).status, 404);
  t.strictSame(await (await fetch(`${at}/learn/stats`)).json(), { devices: [] });
  t.strictSame(await (await fetch(`${at}/learn/observations`)).json(), { devices: [] });
});
