// Unit routing for gateways (issue 12, item 5) over real sockets: one device, units behind two PLC
// stand-ins, each route with its own link (or shared links) and its own failures.
import t from 'tap';
import type { Test } from 'tap';
import { RawClient, hexOf, req } from './fixtures/raw-client.js';
import { startRawPlc, type RawPlc } from './fixtures/raw-plc.js';
import { exceptionFor, plcReply } from './fixtures/invariants.js';
import { ANY_PORT, startProxy, type TestProxy } from './fixtures/proxy.js';
import { freePort } from '../bench/lib/net.js';
import { until, within } from '../bench/lib/wait.js';
import { parsePolicy } from '../policy/index.js';
import { Session, type SessionContext } from '../proxy/session.js';
import { DeviceStats } from '../proxy/stats.js';
import { SourceRate } from '../proxy/ratelimit.js';
import { AuditGate } from '../proxy/audit.js';
import { Upstream } from '../proxy/upstream.js';
import { RoutedPort } from '../proxy/routes.js';
import { FakeClock, FakeSocket } from './fixtures/fake-io.js';
import { recordLogs } from './fixtures/logs.js';

/** FC3 of holding register `start` on `unit`. */
const read = (tid: number, unit: number, start = 0): Buffer => req(tid, unit, [3, 0, start, 0, 1]);
const RULES = `    rules:
      - units: [1-3]
        read: { holding_registers: [0-99] }
`;
/** Unit 1 (and any unit no route names) to `main`; units 2-3 to `line`, with `keys` added to the route. */
function routed(main: number, line: number, keys = '', extra = ''): string {
  return `version: 1
${extra}devices:
  - name: gw
    listen: ${ANY_PORT}
    upstream: 127.0.0.1:${main}
    routes:
      - units: [2-3]
        upstream: 127.0.0.1:${line}
${keys}${RULES}`;
}

async function setUp(t: Test, keys = '', lineDown = false): Promise<{ main: RawPlc; line: RawPlc | null; linePort: number; proxy: TestProxy }> {
  const main = await startRawPlc();
  const line = lineDown ? null : await startRawPlc();
  const linePort = line?.port ?? (await freePort());
  const proxy = await startProxy(routed(main.port, linePort, keys));
  t.teardown(async () => {
    await proxy.stop();
    await main.close();
    await line?.close();
  });
  return { main, line, linePort, proxy };
}

void t.test('the policy: routes compile to a unit table; overlaps, duplicate upstreams and a lone in-flight bound are errors at their place', (t) => {
  const good = parsePolicy(routed(502, 503, '        upstream_connections: 1\n').replace(ANY_PORT, '127.0.0.1:5020'), 'p.yaml');
  t.same(good.errors, []);
  const d = good.policy!.devices.get('gw')!;
  t.same(d.routes.map((r) => [r.key, r.sharing]), [['127.0.0.1:502', null], ['127.0.0.1:503', { connections: 1, maxInFlight: 1 }]]);
  t.same([0, 1, 2, 3, 4, 255].map((u) => d.routeOfUnit[u]), [0, 0, 1, 1, 0, 0], 'units 2-3 take route 1, every other unit the device upstream');
  t.same(good.policy!.document.devices[0]!.routes, [{ units: ['2-3'], upstream: '127.0.0.1:503', upstream_connections: 1, upstream_max_in_flight: 1 }], 'the normalized document keeps the route, defaults filled');
  const bad = parsePolicy(
    `version: 1
devices:
  - name: gw
    listen: 127.0.0.1:502
    upstream: 127.0.0.1:600
    routes:
      - units: [1-10]
        upstream: 127.0.0.1:601
      - units: [20, 5-6]
        upstream: 127.0.0.1:601
        upstream_max_in_flight: 2
      - units: []
        upstream: 127.0.0.1:600
      - units: [300]
        upstream: 10.0.0.1
      - 5
      - upstream: 127.0.0.1:602
${RULES}`,
    'r.yaml',
  );
  t.same([...bad.errors, ...bad.warnings].map((e) => e.format()), [
    'r.yaml:9:21: devices[0].routes[1].units[1]: unit 5 is already routed by devices[0].routes[0] (line 7); expected each unit in one route',
    'r.yaml:10:19: devices[0].routes[1].upstream: "127.0.0.1:601" is already the upstream of devices[0].routes[0] (line 8); expected one route per upstream (list all its units in that one)',
    'r.yaml:11:33: devices[0].routes[1].upstream_max_in_flight: set without upstream_connections; expected upstream_connections beside it (it bounds requests on a shared PLC connection)',
    'r.yaml:13:19: devices[0].routes[2].upstream: "127.0.0.1:600" is already the upstream of the device (line 5); expected one route per upstream (list all its units in that one)',
    'r.yaml:14:17: devices[0].routes[3].units[0]: 300 is out of range; expected a unit id 0..255',
    'r.yaml:15:19: devices[0].routes[3].upstream: "10.0.0.1" has no port; expected host:port, [IPv6]:port or hostname:port with port 1..65535',
    'r.yaml:16:9: devices[0].routes[4]: got the number 5; expected a route (a mapping with units, upstream, upstream_connections and upstream_max_in_flight)',
    'r.yaml:17:9: devices[0].routes[5].units: missing; expected a list of unit ids and ranges',
    'r.yaml:12:16: warning: devices[0].routes[2].units: empty; this route takes no unit',
  ]);
  t.end();
});

void t.test('units reach their own upstream: one client, one write, three units, exact bytes both ways', async (t) => {
  const { main, line, proxy } = await setUp(t);
  const c = await RawClient.connect(proxy.port);
  const asked = [read(1, 1, 10), read(2, 2, 20), read(3, 3, 30), read(4, 1, 11)];
  c.send(Buffer.concat(asked));
  const got = await within(c.read(4), 'four answers');
  // Two upstreams answer independently: compare as sets of frames, each its own request's answer.
  t.same(got.map(hexOf).sort(), asked.map((f) => hexOf(plcReply(f))).sort(), 'each answer byte for byte');
  t.same(main.requests.map((r) => hexOf(r.bytes)), [hexOf(asked[0]!), hexOf(asked[3]!)], 'unit 1 to the device upstream, in order, unchanged');
  t.same(line!.requests.map((r) => hexOf(r.bytes)), [hexOf(asked[1]!), hexOf(asked[2]!)], 'units 2-3 to the route, in order, unchanged');
  t.equal(main.connections, 1);
  t.equal(line!.connections, 1);
  c.close();
  await c.closed;
});

void t.test('an answer streaming in from one route is never cut by another route\'s answer or a denial', async (t) => {
  const { main, line, proxy } = await setUp(t);
  line!.respond = () => ({ hang: true });
  const c = await RawClient.connect(proxy.port);
  const slow = read(1, 2, 40);
  c.send(slow);
  await line!.waitForRequests(1);
  const slowAnswer = plcReply(slow);
  // The gateway sends its answer in two pieces; the first reaches the client before the rest.
  const [lineSocket] = [...line!.open];
  lineSocket!.write(slowAnswer.subarray(0, 9));
  await until(() => c.received.length === 9, 'the first piece forwarded');
  const fast = read(2, 1, 41);
  const denied = read(3, 9, 0);
  c.send(Buffer.concat([fast, denied]));
  await main.waitForRequests(1);
  const stats = proxy.rt.server.stats.get('gw');
  await until(() => stats.upstreamTime.count === 1, 'the other route answered meanwhile');
  lineSocket!.write(slowAnswer.subarray(9));
  const got = await within(c.read(3), 'three answers');
  // The denial (unit 9: no rule) was made when the request came, before the other route answered.
  t.same(got.map(hexOf), [hexOf(slowAnswer), hexOf(exceptionFor(denied, 0x0a)), hexOf(plcReply(fast))], 'the streamed answer whole, then what waited behind it, in the order it came');
  t.equal(c.received.length, slowAnswer.length + plcReply(fast).length + 9, 'nothing else on the wire');
  c.close();
  await c.closed;
});

void t.test("a route's PLC down: 0A for its units only, the other units answered", async (t) => {
  const { main, proxy } = await setUp(t, '', true);
  const c = await RawClient.connect(proxy.port);
  const up = read(1, 1, 5);
  const down = read(2, 2, 5);
  c.send(Buffer.concat([down, up]));
  const got = await within(c.read(2), 'two answers');
  t.same(got.map(hexOf).sort(), [hexOf(exceptionFor(down, 0x0a)), hexOf(plcReply(up))].sort(), 'unit 2 gets 0A, unit 1 its answer');
  // Backing off now: unit 3 (same route) gets 0A at once, unit 1 still goes through.
  const down3 = read(3, 3, 5);
  const up2 = read(4, 1, 6);
  c.send(Buffer.concat([down3, up2]));
  const more = await within(c.read(2), 'two more');
  t.same(more.map(hexOf).sort(), [hexOf(exceptionFor(down3, 0x0a)), hexOf(plcReply(up2))].sort());
  t.equal(main.requests.length, 2, 'the device upstream saw only unit 1');
  c.close();
  await c.closed;
});

void t.test('sharing on one route: its clients share one connection, the other route keeps one per client', async (t) => {
  const { main, line, proxy } = await setUp(t, '        upstream_connections: 1\n');
  const clients = await Promise.all([0, 1, 2].map(() => RawClient.connect(proxy.port)));
  // All using tid 1 on the shared route: the route's link remaps them.
  const asked = clients.map((_, i) => [read(1, 2, i), read(2, 1, i)]);
  clients.forEach((c, i) => c.send(Buffer.concat(asked[i]!)));
  const got = await Promise.all(clients.map((c, i) => within(c.read(2), `client ${i}`)));
  got.forEach((g, i) => t.same(g.map(hexOf).sort(), asked[i]!.map((f) => hexOf(plcReply(f))).sort(), `client ${i}: its own answers`));
  t.equal(line!.connections, 1, 'one connection to the shared route for three clients');
  t.equal(main.connections, 3, 'one connection per client to the unshared upstream');
  for (const c of clients) c.close();
  await Promise.all(clients.map((c) => c.closed));
});

void t.test('a reload that changes a route closes the clients that used it, and no others', async (t) => {
  const { main, line, proxy } = await setUp(t);
  const other = await startRawPlc();
  t.teardown(() => other.close());
  const mainOnly = await RawClient.connect(proxy.port);
  const both = await RawClient.connect(proxy.port);
  const silent = await RawClient.connect(proxy.port);
  mainOnly.send(read(1, 1));
  both.send(Buffer.concat([read(1, 1), read(2, 2)]));
  await within(mainOnly.read(1), 'mainOnly');
  await within(both.read(2), 'both');
  await proxy.rewrite(routed(main.port, other.port));
  await within(both.closed, 'the client of the changed route is closed');
  t.notOk(mainOnly.isClosed, 'a client that never reached the route stays');
  t.notOk(silent.isClosed, 'and one that sent nothing yet');
  const r = read(9, 2, 7);
  mainOnly.send(r);
  t.same((await within(mainOnly.read(1), 'after the reload')).map(hexOf), [hexOf(plcReply(r))]);
  t.same(other.requests.map((q) => hexOf(q.bytes)), [hexOf(r)], 'unit 2 now goes to the new route upstream');
  t.equal(line!.requests.length, 1);
  for (const c of [mainOnly, silent]) c.close();
  await Promise.all([mainOnly.closed, silent.closed]);
});

/** A session on the routed device in memory: fake client and PLC sockets (by port), a clock moved by hand. */
function inMemory(limits = ''): { client: FakeSocket; plcs: Map<number, FakeSocket>; clock: FakeClock; session: Session } {
  const { policy } = parsePolicy(routed(15021, 15022, '', limits === '' ? '' : `defaults:\n  limits: { ${limits} }\n`).replace(ANY_PORT, '127.0.0.1:15020'), 'p.yaml');
  const device = policy!.devices.get('gw')!;
  const { logger } = recordLogs();
  const plcs = new Map<number, FakeSocket>();
  const clock = new FakeClock();
  const ctx: SessionContext = {
    deviceName: 'gw',
    current: () => device,
    stats: new DeviceStats(),
    logger,
    audit: new AuditGate(),
    rateFor: () => new SourceRate(),
    learner: null,
    learnCeilingReached: () => {},
    logUpstream: () => {},
    clock,
    connect: (e) => {
      const s = new FakeSocket();
      plcs.set(e.port, s);
      return s;
    },
    sessionClosed: () => {},
    upstreamFor: (owner) => new RoutedPort(owner, { current: () => device, portFor: (_o, route, l) => new Upstream(route.upstream, l, ctx) }),
  };
  const client = new FakeSocket();
  const session = new Session(client, ctx, '127.0.0.1', 50_000, 'c1');
  return { client, plcs, clock, session };
}

void t.test('answers of two routes both arriving in pieces: each frame whole, the second streams on once the first is done', (t) => {
  const { client, plcs } = inMemory();
  const first = read(1, 2, 0);
  const second = read(2, 1, 0);
  client.receive(Buffer.concat([first, second]));
  const [line, main] = [plcs.get(15022)!, plcs.get(15021)!];
  line.accept();
  main.accept();
  t.same([hexOf(line.read()), hexOf(main.read())], [hexOf(first), hexOf(second)], 'each unit to its own upstream');
  const a = plcReply(first);
  const b = plcReply(second);
  line.receive(a.subarray(0, 9));
  t.equal(hexOf(client.read()), hexOf(a.subarray(0, 9)), "the first route's head goes at once");
  main.receive(b.subarray(0, 9));
  main.receive(b.subarray(9, 10));
  t.equal(client.read().length, 0, "the other route's pieces wait");
  t.ok(client.isPaused, 'and the client is not read meanwhile');
  line.receive(a.subarray(9));
  t.equal(hexOf(client.read()), hexOf(Buffer.concat([a.subarray(9), b.subarray(0, 10)])), 'the first answer completes, then what waited of the second');
  t.ok(client.isPaused, 'still inside the second answer');
  main.receive(b.subarray(10));
  t.equal(hexOf(client.read()), hexOf(b.subarray(10)), 'the rest of the second answer goes straight through');
  t.notOk(client.isPaused);
  t.end();
});

void t.test("a client that doesn't read: every route's PLC connection stops being read, and is read again after 'drain'", (t) => {
  const { client, plcs, session } = inMemory('max_outstanding: 4096, max_buffered_bytes: 1048576');
  const n = 80; // 80 answers of 209 bytes (100 registers): past the socket's 16 KiB high-water mark
  const asked = Array.from({ length: n }, (_, i) => req(i, 2, [3, 0, 0, 0, 100]));
  client.receive(Buffer.concat([read(1000, 1), ...asked]));
  const [line, main] = [plcs.get(15022)!, plcs.get(15021)!];
  line.accept();
  main.accept();
  line.read();
  line.receive(Buffer.concat(asked.map((f) => plcReply(f))));
  t.ok(session.waitingForClient, 'waiting for the client');
  t.ok(line.isPaused && main.isPaused, 'neither route is read');
  t.equal(client.read().length, n * 209, 'every answer was written');
  t.notOk(line.isPaused || main.isPaused, "both read again after 'drain'");
  t.end();
});

void t.test('max_outstanding reached by timed-out requests on two routes: both connections are reset', (t) => {
  const { client, plcs, clock } = inMemory('max_outstanding: 2, response_timeout_ms: 500');
  const asked = [read(1, 1), read(2, 2)];
  client.receive(Buffer.concat(asked));
  const [line, main] = [plcs.get(15022)!, plcs.get(15021)!];
  line.accept();
  main.accept();
  clock.advance(500);
  t.same(client.read().length, 18, 'both answered 0B at the timeout');
  t.ok(line.destroyed && main.destroyed, 'only late answers could free the slots: each route reset');
  t.end();
});

void t.test('a reload changing only the in-flight bound of a shared route closes nothing', async (t) => {
  const { main, line, proxy } = await setUp(t, '        upstream_connections: 1\n');
  const c = await RawClient.connect(proxy.port);
  c.send(read(1, 2));
  await within(c.read(1), 'first');
  await proxy.rewrite(routed(main.port, line!.port, '        upstream_connections: 1\n        upstream_max_in_flight: 2\n'));
  const r = read(2, 3, 4);
  c.send(r);
  t.same((await within(c.read(1), 'after the reload')).map(hexOf), [hexOf(plcReply(r))], 'the same connection, the same shared link');
  t.equal(line!.connections, 1);
  c.close();
  await c.closed;
});

void t.test('learn mode on a routed device: the proposal keeps the routes', async (t) => {
  const { main, line, proxy } = await setUpLearning(t);
  const c = await RawClient.connect(proxy.port);
  const asked = [read(1, 1, 3), read(2, 2, 4)];
  c.send(Buffer.concat(asked));
  t.same((await within(c.read(2), 'answers')).map(hexOf).sort(), asked.map((f) => hexOf(plcReply(f))).sort());
  c.close();
  await c.closed;
  const proposal = await (await fetch(`http://127.0.0.1:${proxy.rt.adminPort}/learn/proposal`)).text();
  t.match(proposal, `    upstream: 127.0.0.1:${main.port}\n    routes: [{"units":["2-3"],"upstream":"127.0.0.1:${line.port}"}]\n    mode: enforce\n`, 'enforcing it sends each unit where learning did');
  t.strictSame(parsePolicy(proposal, 'proposal.yaml').errors, [], 'policy validate passes');
});

async function setUpLearning(t: Test): Promise<{ main: RawPlc; line: RawPlc; proxy: TestProxy }> {
  const main = await startRawPlc();
  const line = await startRawPlc();
  const proxy = await startProxy(routed(main.port, line.port).replace(RULES, '    mode: learn\n'), { admin: true });
  t.teardown(async () => {
    await proxy.stop();
    await main.close();
    await line.close();
  });
  return { main, line, proxy };
}

void t.test("a reload changing a shared route's upstream_connections closes its shared connection and its clients", async (t) => {
  const { main, line, proxy } = await setUp(t, '        upstream_connections: 1\n');
  const c = await RawClient.connect(proxy.port);
  c.send(read(1, 2));
  await within(c.read(1), 'first');
  t.equal(line!.open.size, 1);
  await proxy.rewrite(routed(main.port, line!.port, '        upstream_connections: 2\n'));
  await within(c.closed, 'its client reconnects under the new setting');
  await until(() => line!.open.size === 0, 'the shared connection closed');
  const again = await RawClient.connect(proxy.port);
  const r = read(2, 3, 4);
  again.send(r);
  t.same((await within(again.read(1), 'after the reload')).map(hexOf), [hexOf(plcReply(r))]);
  t.equal(line!.connections, 2, 'a new shared connection');
  again.close();
  await again.closed;
});
