// Connection sharing over real sockets (issue 12): many clients, one PLC connection, a PLC that
// takes one connection and answers one request at a time.
import net from 'node:net';
import { once } from 'node:events';
import t from 'tap';
import Modbus from 'jsmodbus';
import ModbusSerial from 'modbus-serial';
import { RawClient, hexOf, req } from './fixtures/raw-client.js';
import { normalReply, startRawPlc, type RawPlc, type RawRequest } from './fixtures/raw-plc.js';
import { parsePolicy } from '../policy/index.js';
import { DEVICE, HMI_RULES as RULES, checkInvariants, exceptionFor, plcReply, startCase } from './fixtures/invariants.js';
import { devicePolicy, startProxy } from './fixtures/proxy.js';
import { until, within } from '../bench/lib/wait.js';

// modbus-serial is CommonJS; its constructor is on `.default`.
const ModbusRTU = ModbusSerial.default;

const read = (tid: number, start = 0, qty = 1): Buffer => req(tid, 1, [3, 0, start, 0, qty]);
/** Twenty clients from one address; the shared PLC connection closes 1 s after the last answer (checkInvariants waits for it): long enough that a client idling between steps on a busy machine is not closed. */
const MANY = 'defaults:\n  limits: { max_connections_per_source: 32, idle_timeout_ms: 1000 }\n';
const shared = (n: number, extra = ''): string => `    upstream_connections: ${n}\n${extra}${RULES}`;

/** Answers each request once the previous answer is out, asynchronously, and records how many it ever held. */
function oneAtATime(): { respond: (r: RawRequest, s: net.Socket) => { hang: true }; held: () => number } {
  let open = 0;
  let max = 0;
  return {
    respond: (r, s) => {
      open++;
      max = Math.max(max, open);
      setImmediate(() => {
        open--;
        s.write(normalReply(r));
      });
      return { hang: true };
    },
    held: () => max,
  };
}

void t.test('twenty clients all using tid 1, pipelining, through one PLC connection: every answer its own', async (t) => {
  const { plc, proxy } = await startCase(t, shared(1), MANY, { maxConnections: 1 });
  const pace = oneAtATime();
  plc.respond = pace.respond;
  const clients = await Promise.all(Array.from({ length: 20 }, () => RawClient.connect(proxy.port)));
  // Client i asks registers 4i..4i+3, all with tid 1, in one write.
  const asked = clients.map((_, i) => Array.from({ length: 4 }, (_, k) => read(1, 4 * i + k)));
  clients.forEach((c, i) => c.send(Buffer.concat(asked[i]!)));
  const got = await Promise.all(clients.map((c, i) => within(c.read(4), `client ${i}`)));
  got.forEach((answers, i) =>
    t.same(answers.map(hexOf), asked[i]!.map((f) => hexOf(plcReply(f))), `client ${i}: its own answers, in its order, byte for byte`),
  );
  t.equal(plc.connections, 1, 'one PLC connection for all of them');
  t.equal(pace.held(), 1, 'the PLC never had more than one request at a time');
  t.equal(plc.requests.length, 80, 'every request reached the PLC once');
  const stats = proxy.rt.server.stats.get(DEVICE);
  t.equal(stats.queueWait.count, 80, 'each request timed in the queue');
  t.equal(stats.upstreamQueued, 0, 'nothing waits any more');
  for (const c of clients) c.close();
  await Promise.all(clients.map((c) => c.closed));
  await checkInvariants(t, { proxy, plc });
});

void t.test('round robin: a chatty client does not starve a quiet one', async (t) => {
  const { plc, proxy } = await startCase(t, shared(1), MANY, { maxConnections: 1 });
  const pace = oneAtATime();
  plc.respond = pace.respond;
  const chatty = await RawClient.connect(proxy.port);
  const quiet = await RawClient.connect(proxy.port);
  chatty.send(Buffer.concat(Array.from({ length: 20 }, (_, k) => read(100 + k, k))));
  await plc.waitForRequests(1);
  quiet.send(read(7, 50));
  t.same((await within(quiet.read(1), 'quiet')).map(hexOf), [hexOf(plcReply(read(7, 50)))]);
  await within(chatty.read(20), 'chatty');
  // The quiet client's request went out right after the one chatty had in flight (or the next).
  const at = plc.requests.findIndex((r) => r.bytes.readUInt16BE(8) === 50);
  t.ok(at >= 1 && at <= 2, `the quiet request was the PLC's request ${at + 1} of 21`);
  for (const c of [chatty, quiet]) c.close();
  await Promise.all([chatty.closed, quiet.closed]);
  await checkInvariants(t, { proxy, plc });
});

void t.test('a client closing mid-flight: its answer is dropped and counted, the others go on', async (t) => {
  const { plc, proxy } = await startCase(t, shared(1), MANY, { maxConnections: 1 });
  let first: { r: RawRequest; s: net.Socket } | null = null;
  plc.respond = (r, s) => {
    if (first === null) {
      first = { r, s };
      return { hang: true };
    }
    return { send: normalReply(r) };
  };
  const gone = await RawClient.connect(proxy.port);
  const stays = await RawClient.connect(proxy.port);
  gone.send(read(1, 1));
  await plc.waitForRequests(1);
  stays.send(read(1, 2));
  // A reset, not a FIN: after a FIN plcguard would still answer what the client asked.
  gone.socket.resetAndDestroy();
  await gone.closed;
  const stats = proxy.rt.server.stats.get(DEVICE);
  await until(() => stats.clientConnections === 1, 'the closed client left');
  const held = first as { r: RawRequest; s: net.Socket } | null;
  held!.s.write(normalReply(held!.r));
  t.same((await within(stays.read(1), 'stays')).map(hexOf), [hexOf(plcReply(read(1, 2)))], 'its own answer only');
  t.equal(stats.abandonedResponses, 1, "the gone client's answer dropped and counted");
  stays.close();
  await stays.closed;
  await checkInvariants(t, { proxy, plc });
});

void t.test('upstream_max_in_flight needs upstream_connections; both reach the compiled device', (t) => {
  const base = `version: 1
devices:
  - name: plc
    listen: 127.0.0.1:1502
    upstream: 127.0.0.1:502
`;
  const bad = parsePolicy(base + '    upstream_max_in_flight: 2\n', 'bad.yaml');
  t.same(
    bad.errors.map((e) => e.format()),
    ['bad.yaml:6:29: devices[0].upstream_max_in_flight: set without upstream_connections; expected upstream_connections beside it (it bounds requests on a shared PLC connection)'],
  );
  t.same(parsePolicy(base + '    upstream_connections: 2\n', 'a.yaml').policy!.devices.get('plc')!.sharing, { connections: 2, maxInFlight: 1 });
  t.equal(parsePolicy(base, 'b.yaml').policy!.devices.get('plc')!.sharing, null);
  t.end();
});

// Write Single Register (FC6) of unit 1: register `addr` := `value`; the PLC echoes it.
const writeReg = (tid: number, addr: number, value: number): Buffer => req(tid, 1, [6, 0, addr, value >> 8, value & 0xff]);

void t.test('jsmodbus, modbus-serial (pipelining) and raw clients together through one PLC connection: every answer its request', async (t) => {
  const { plc, proxy } = await startCase(t, shared(1), MANY, { maxConnections: 1 });
  const pace = oneAtATime();
  plc.respond = pace.respond;
  // Raw clients: tids 1..6 each (all clashing), reads and writes mixed, all in one write.
  const raws = await Promise.all(Array.from({ length: 3 }, () => RawClient.connect(proxy.port)));
  const asked = raws.map((_, i) => Array.from({ length: 6 }, (_, k) => (k % 2 === 0 ? read(k + 1, 10 * i + k, 2) : writeReg(k + 1, 40 + 10 * i + k, 1000 * i + k))));
  // jsmodbus: its own tids from 1, its requests one after another.
  const socket = new net.Socket();
  t.teardown(() => socket.destroy());
  const jsm = new Modbus.client.TCP(socket, 1, 5000);
  socket.connect({ host: '127.0.0.1', port: proxy.port });
  await once(socket, 'connect');
  // modbus-serial: sends them all without waiting for the answers in between.
  const ms = new ModbusRTU();
  await ms.connectTCP('127.0.0.1', { port: proxy.port });
  ms.setID(1);
  ms.setTimeout(5000);
  raws.forEach((c, i) => c.send(Buffer.concat(asked[i]!)));
  const [rawGot, jsmGot, msGot] = await within(
    Promise.all([
      Promise.all(raws.map((c) => c.read(6))),
      Promise.all([70, 73, 76].map((a) => jsm.readHoldingRegisters(a, 3).then((r) => r.response.body.valuesAsArray))),
      Promise.all([80, 82, 84, 86, 88].map((a) => ms.readHoldingRegisters(a, 2).then((r) => r.data))),
    ]),
    'every client answered',
  );
  rawGot.forEach((got, i) => t.same(got.map(hexOf), asked[i]!.map((f) => hexOf(plcReply(f))), `raw client ${i}: its own answers, in its order, byte for byte`));
  t.same(jsmGot, [[70, 71, 72], [73, 74, 75], [76, 77, 78]], 'jsmodbus: each read its registers');
  t.same(msGot, [[80, 81], [82, 83], [84, 85], [86, 87], [88, 89]], 'modbus-serial, pipelined: each read its registers');
  t.equal(plc.connections, 1, 'one PLC connection for the five clients');
  t.equal(pace.held(), 1, 'the PLC never had more than one request at a time');
  t.equal(plc.requests.length, 18 + 3 + 5, 'every request reached the PLC once');
  for (const c of raws) c.close();
  socket.destroy();
  await new Promise<void>((resolve) => ms.close(() => resolve()));
  await Promise.all(raws.map((c) => c.closed));
  await checkInvariants(t, { proxy, plc });
});

void t.test('the PLC answering out of order (upstream_max_in_flight: 4): each client still gets its own answer', async (t) => {
  const { plc, proxy } = await startCase(t, shared(1, '    upstream_max_in_flight: 4\n'), MANY, { maxConnections: 1 });
  const held: { r: RawRequest; s: net.Socket }[] = [];
  plc.respond = (r, s) => {
    held.push({ r, s });
    // All four in: answered last first, one write each.
    if (held.length === 4) for (const h of held.reverse()) h.s.write(normalReply(h.r));
    return { hang: true };
  };
  const clients = await Promise.all(Array.from({ length: 4 }, () => RawClient.connect(proxy.port)));
  const asked = clients.map((_, i) => read(1, 10 + i));
  clients.forEach((c, i) => c.send(asked[i]!));
  const got = await Promise.all(clients.map((c, i) => within(c.read(1), `client ${i}`)));
  got.forEach((g, i) => t.same(g.map(hexOf), [hexOf(plcReply(asked[i]!))], `client ${i}: its own answer with its tid 1`));
  t.same(plc.requests.map((r) => r.tid).sort(), [1, 2, 3, 4], 'four distinct transaction ids toward the PLC');
  for (const c of clients) c.close();
  await Promise.all(clients.map((c) => c.closed));
  await checkInvariants(t, { proxy, plc });
});

void t.test('the PLC answering every request twice: each client gets each answer once, the copies dropped and counted', async (t) => {
  const { plc, proxy } = await startCase(t, shared(1), MANY, { maxConnections: 1 });
  // One write of both copies: they come in one chunk, so the copy can't be taken for a wrong answer to the next request.
  plc.respond = (r) => ({ send: Buffer.concat([normalReply(r), normalReply(r)]) });
  const clients = await Promise.all(Array.from({ length: 3 }, () => RawClient.connect(proxy.port)));
  const asked = clients.map((_, i) => Array.from({ length: 3 }, (_, k) => read(k + 1, 10 * i + k)));
  clients.forEach((c, i) => c.send(Buffer.concat(asked[i]!)));
  const got = await Promise.all(clients.map((c, i) => within(c.read(3), `client ${i}`)));
  got.forEach((g, i) => t.same(g.map(hexOf), asked[i]!.map((f) => hexOf(plcReply(f))), `client ${i}: each answer once`));
  // One more request each: the next frame a client gets is its answer, no stray copy before it.
  clients.forEach((c, i) => c.send(read(9, 50 + i)));
  const next = await Promise.all(clients.map((c, i) => within(c.read(1), `client ${i}, again`)));
  next.forEach((g, i) => t.same(g.map(hexOf), [hexOf(plcReply(read(9, 50 + i)))], `client ${i}: no copy delivered`));
  t.equal(proxy.rt.server.stats.get(DEVICE).unsolicitedResponses, 12, 'every copy dropped and counted');
  for (const c of clients) c.close();
  await Promise.all(clients.map((c) => c.closed));
  await checkInvariants(t, { proxy, plc });
});

void t.test("the PLC answering with a wrong tid: 0B at once to the request it meant, the others served", async (t) => {
  const { plc, proxy } = await startCase(t, shared(1), MANY, { maxConnections: 1 });
  plc.respond = (r) => {
    const reply = normalReply(r);
    // Register 13 is answered with the wrong transaction id.
    if (r.bytes.readUInt16BE(8) === 13) reply.writeUInt16BE(r.tid ^ 0x8000, 0);
    return { send: reply };
  };
  const a = await RawClient.connect(proxy.port);
  const b = await RawClient.connect(proxy.port);
  a.send(Buffer.concat([read(1, 12), read(2, 13), read(3, 14)]));
  b.send(Buffer.concat([read(1, 20), read(2, 21)]));
  const [ga, gb] = await Promise.all([within(a.read(3), 'a'), within(b.read(2), 'b')]);
  t.same(ga.map(hexOf), [plcReply(read(1, 12)), exceptionFor(read(2, 13), 0x0b), plcReply(read(3, 14))].map(hexOf), 'a: the refused one gets 0B, its others their answers');
  t.same(gb.map(hexOf), [read(1, 20), read(2, 21)].map((f) => hexOf(plcReply(f))), 'b: untouched');
  const stats = proxy.rt.server.stats.get(DEVICE);
  t.equal(stats.unsolicitedResponses, 1, 'the wrong answer dropped and counted');
  t.equal(plc.connections, 1, 'the connection stays');
  for (const c of [a, b]) c.close();
  await Promise.all([a.closed, b.closed]);
  await checkInvariants(t, { proxy, plc });
});

void t.test('the PLC restarting under load: every waiting request answered once, then service resumes', async (t) => {
  let plc: RawPlc = await startRawPlc({ maxConnections: 1 });
  const port = plc.port;
  const proxy = await startProxy(devicePolicy(port, shared(1), 'defaults:\n  limits: { max_connections_per_source: 32, idle_timeout_ms: 1000, reconnect_backoff_min_ms: 1, reconnect_backoff_max_ms: 20 }\n'));
  t.teardown(async () => {
    await proxy.stop();
    await plc.close();
  });
  // Hangs the sixth request it gets: it is in flight when the PLC goes.
  const pace = oneAtATime();
  plc.respond = (r, s) => (plc.requests.length === 6 ? { hang: true } : pace.respond(r, s));
  const clients = await Promise.all(Array.from({ length: 4 }, () => RawClient.connect(proxy.port)));
  const asked = clients.map((_, i) => Array.from({ length: 10 }, (_, k) => read(k + 1, 10 * i + k)));
  clients.forEach((c, i) => c.send(Buffer.concat(asked[i]!)));
  await within(plc.waitForRequests(6), 'six requests at the PLC');
  await plc.close();
  const got = await Promise.all(clients.map((c, i) => within(c.read(10), `client ${i}`)));
  const kinds = { answered: 0, '0B': 0, '0A': 0 };
  got.forEach((g, i) => {
    const bad: string[] = [];
    g.forEach((f, k) => {
      const q = asked[i]![k]!;
      if (hexOf(f) === hexOf(plcReply(q))) kinds.answered++;
      else if (hexOf(f) === hexOf(exceptionFor(q, 0x0b))) kinds['0B']++;
      else if (hexOf(f) === hexOf(exceptionFor(q, 0x0a))) kinds['0A']++;
      else bad.push(`request ${k}: ${hexOf(f)}`);
    });
    t.same(bad, [], `client ${i}: each request answered once, in order, by the PLC or with 0A/0B`);
  });
  t.equal(kinds.answered, 5, 'the five the PLC answered');
  t.equal(kinds['0B'], 1, 'the one in flight when it went');
  t.equal(kinds['0A'], 34, 'the rest, waiting while it was down');
  // The PLC is back on its address: service resumes (asked until plcguard's backoff lets it try).
  plc = await startRawPlc({ maxConnections: 1, port });
  plc.respond = oneAtATime().respond;
  await until(async () => {
    clients[0]!.send(read(99, 1));
    const [f] = await within(clients[0]!.read(1), 'an answer');
    return hexOf(f!) === hexOf(plcReply(read(99, 1)));
  }, 'service resumed', 10_000, 20);
  const again = clients.map((_, i) => Array.from({ length: 5 }, (_, k) => read(k + 20, 10 * i + k + 1)));
  clients.forEach((c, i) => c.send(Buffer.concat(again[i]!)));
  const after = await Promise.all(clients.map((c, i) => within(c.read(5), `client ${i}, after`)));
  after.forEach((g, i) => t.same(g.map(hexOf), again[i]!.map((f) => hexOf(plcReply(f))), `client ${i}: answered by the restarted PLC`));
  for (const c of clients) c.close();
  await Promise.all(clients.map((c) => c.closed));
  await checkInvariants(t, { proxy, plc });
});
