// Listening sockets across policy reloads: a device renamed in place, and
// devices swapping addresses, take over the socket already listening there instead of binding an
// address still in use; a failed reload hands nothing over.
import net from 'node:net';
import t from 'tap';
import { RawClient, hexOf, req } from './fixtures/raw-client.js';
import { adu, startRawPlc } from './fixtures/raw-plc.js';
import { ANY_PORT, startProxy } from './fixtures/proxy.js';
import { freePort } from '../bench/lib/net.js';
import { within } from '../bench/lib/wait.js';
import { DECISIONS, functionIndex } from '../proxy/stats.js';

/** A device reading HR0-9 and writing only register `writable`: which device serves shows in what it lets through. */
const device = (name: string, listen: string, upstream: number, writable: number): string => `  - name: ${name}
    listen: ${listen}
    upstream: 127.0.0.1:${upstream}
    rules:
      - read: { holding_registers: [0-9] }
        write: { holding_registers: [${writable}] }
`;
const policy = (...devices: string[]): string => `version: 1\ndevices:\n${devices.join('')}`;

/** Write Single Register `addr` = 1, tid `tid`; its echo when allowed, exception 02 when denied. */
const write = (tid: number, addr: number): Buffer => req(tid, 1, [6, 0, addr, 0, 1]);
const allowed = (tid: number, addr: number): string => hexOf(adu(tid, 1, [6, 0, addr, 0, 1]));
const denied = (tid: number): string => hexOf(adu(tid, 1, [0x86, 0x02]));

async function ask(port: number, frame: Buffer): Promise<string> {
  const c = await RawClient.connect(port);
  c.send(frame);
  const [reply] = await c.read();
  c.close();
  await c.closed;
  return hexOf(reply!);
}

void t.test('a device renamed on the same address takes its socket over', async (t) => {
  const plc = await startRawPlc();
  t.teardown(() => plc.close());
  const proxy = await startProxy(policy(device('boiler', ANY_PORT, plc.port, 10)));
  t.teardown(() => proxy.stop());
  const port = proxy.port;
  const open = await RawClient.connect(port);
  open.send(write(1, 10));
  t.equal(hexOf((await open.read())[0]!), allowed(1, 10), 'served by boiler');

  await proxy.rewrite(policy(device('boiler-1', ANY_PORT, plc.port, 11)));
  t.match(proxy.logs.at(-1), { event: 'policy_loaded', devices: [{ name: 'boiler-1', listen: `127.0.0.1:${port}` }] }, 'applied, not refused');
  t.match(proxy.logs.find((l) => l.event === 'listening' && l.device === 'boiler-1'), { port, handed_over_from: 'boiler' });
  t.same([...proxy.rt.ports()], [['boiler-1', port]]);
  await within(open.closed, "boiler's open connection closed: its rules are no longer in force");

  t.equal(await ask(port, write(2, 11)), allowed(2, 11), "a new connection is served under boiler-1's rules");
  t.equal(await ask(port, write(3, 10)), denied(3), "boiler's rules are gone");
  const stats = (name: string, decision: (typeof DECISIONS)[number]): number =>
    proxy.rt.server.stats.get(name).requests[functionIndex(6) * DECISIONS.length + DECISIONS.indexOf(decision)]!;
  t.same([stats('boiler-1', 'allowed'), stats('boiler-1', 'denied')], [1, 1], 'counted under the new name');
  t.same([stats('boiler', 'allowed'), stats('boiler', 'denied')], [1, 0], 'the old name keeps what it counted');
});

void t.test('two devices swapping addresses hand their sockets to each other; open connections stay', async (t) => {
  const plc = await startRawPlc();
  t.teardown(() => plc.close());
  const p2 = await freePort();
  const proxy = await startProxy(policy(device('a', ANY_PORT, plc.port, 10), device('b', `127.0.0.1:${p2}`, plc.port, 11)));
  t.teardown(() => proxy.stop());
  const p1 = proxy.port;
  const onA = await RawClient.connect(p1);
  onA.send(write(1, 10));
  t.equal(hexOf((await onA.read())[0]!), allowed(1, 10));

  await proxy.rewrite(policy(device('a', `127.0.0.1:${p2}`, plc.port, 10), device('b', `127.0.0.1:${p1}`, plc.port, 11)));
  t.match(proxy.logs.at(-1), { event: 'policy_loaded' });
  t.same(Object.fromEntries(proxy.rt.ports()), { a: p2, b: p1 });
  t.equal(await ask(p1, write(2, 11)), allowed(2, 11), 'the first address now serves b');
  t.equal(await ask(p2, write(3, 10)), allowed(3, 10), 'the second serves a');
  onA.send(write(4, 10));
  t.equal(hexOf((await onA.read())[0]!), allowed(4, 10), "a's open connection stays with a");
  onA.close();
  await onA.closed;
});

void t.test('a rename in a reload that fails hands nothing over', async (t) => {
  const plc = await startRawPlc();
  t.teardown(() => plc.close());
  const blocker = net.createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  t.teardown(() => blocker.close());
  const taken = (blocker.address() as net.AddressInfo).port;
  const proxy = await startProxy(policy(device('a', ANY_PORT, plc.port, 10)));
  t.teardown(() => proxy.stop());
  const open = await RawClient.connect(proxy.port);

  await proxy.rewrite(policy(device('renamed', ANY_PORT, plc.port, 11), device('c', `127.0.0.1:${taken}`, plc.port, 11)));
  t.match(proxy.logs.at(-1), { event: 'policy_rejected', errors: [/EADDRINUSE/], kept: 'last good policy' });
  t.same([...proxy.rt.ports()], [['a', proxy.port]]);
  open.send(write(1, 10));
  t.equal(hexOf((await open.read())[0]!), allowed(1, 10), 'the open connection still works, under a');
  t.equal(await ask(proxy.port, write(2, 11)), denied(2), 'new connections too: a still owns the socket');
  open.close();
  await open.closed;
});
