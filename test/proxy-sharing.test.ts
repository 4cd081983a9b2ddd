// Connection sharing over real sockets (issue 12): many clients, one PLC connection, a PLC that
// takes one connection and answers one request at a time.
import net from 'node:net';
import t from 'tap';
import { RawClient, hexOf, req } from './fixtures/raw-client.js';
import { normalReply, type RawRequest } from './fixtures/raw-plc.js';
import { parsePolicy } from '../policy/index.js';
import { DEVICE, HMI_RULES as RULES, checkInvariants, plcReply, startCase } from './fixtures/invariants.js';
import { until, within } from '../bench/lib/wait.js';

const read = (tid: number, start = 0, qty = 1): Buffer => req(tid, 1, [3, 0, start, 0, qty]);
/** Twenty clients from one address; the shared PLC connection closes soon after the last answer (checkInvariants waits for it). */
const MANY = 'defaults:\n  limits: { max_connections_per_source: 32, idle_timeout_ms: 200 }\n';
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
