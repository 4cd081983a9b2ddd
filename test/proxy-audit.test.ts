// The audit trail as a SIEM receives it, over real sockets: every field of a
// deny line, a connection's opened and closed lines, the written values (bounded), the allowed
// writes of a device that asks for them, refused connections and PLC failures; and the budgets.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import t, { type Test } from 'tap';
import { AUDIT_BURST, AUDIT_RATE_PER_SECOND, MAX_LOGGED_VALUES } from '../proxy/audit.js';
import { freePort } from '../bench/lib/net.js';
import { within } from '../bench/lib/wait.js';
import { devicePolicy, startProxy, type TestProxy } from './fixtures/proxy.js';
import { RawClient, hexOf, req } from './fixtures/raw-client.js';
import { adu, normalReply, startRawPlc, type RawPlc } from './fixtures/raw-plc.js';

const RULES = `    rules:
      - name: hmi
        units: [1]
        read: { holding_registers: [0-99] }
        write:
          holding_registers:
            - { addresses: 10-19, values: 0-1000 }
            - 30
          coils: [0-7]
`;

async function setup(t: Test, extra = '', rules = RULES): Promise<{ plc: RawPlc; proxy: TestProxy; policySha: string }> {
  const plc = await startRawPlc();
  const proxy = await startProxy(devicePolicy(plc.port, rules, extra));
  t.teardown(async () => {
    await proxy.stop();
    await plc.close();
  });
  return { plc, proxy, policySha: createHash('sha256').update(fs.readFileSync(proxy.file)).digest('hex') };
}

type Line = Record<string, unknown>;
const events = (proxy: TestProxy, event: string): Line[] => proxy.logs.filter((l) => l.event === event);
/** The line without its time (and duration): what a test can know exactly. */
const exact = (l: Line | undefined): Line => {
  const { time: _time, duration_ms: _duration, ...rest } = l ?? {};
  return rest;
};
const exc = (tid: number, fc: number, code: number): Buffer => adu(tid, 1, [fc | 0x80, code]);

void t.test('a connection as the log tells it: opened, a denial with its values, closed with its traffic', async (t) => {
  const { plc, proxy, policySha } = await setup(t);
  const c = await RawClient.connect(proxy.port);
  const port = c.socket.localPort!;
  const read = req(1, 1, [3, 0, 0, 0, 2]);
  c.send(read);
  const [answer] = await c.read();
  t.equal(hexOf(answer!), hexOf(normalReply(plc.requests[0]!)));
  // FC16: registers 10-11 := 700, 5000: the second is over the bound.
  const write = req(2, 1, [16, 0, 10, 0, 2, 4, 0x02, 0xbc, 0x13, 0x88]);
  c.send(write);
  const [denial] = await c.read();
  t.equal(hexOf(denial!), hexOf(exc(2, 16, 3)));
  c.close();
  await within(proxy.logged((l) => l.event === 'connection_closed'), 'the closed line');

  const place = {
    policy_version: 0,
    policy_sha256: policySha,
    device: 'plc',
    conn_id: events(proxy, 'connection_opened')[0]!.conn_id,
    src_ip: '127.0.0.1',
    src_port: port,
    plc_host: '127.0.0.1',
    plc_port: plc.port,
  };
  t.match(place.conn_id, /^[0-9a-z]+-[0-9a-z]+$/, 'a connection id');
  const mine = proxy.logs.filter((l) => l.conn_id === place.conn_id);
  t.strictSame(
    mine.map(exact),
    [
      { event: 'connection_opened', ...place },
      {
        event: 'deny',
        ...place,
        unit: 1,
        fc: 16,
        function: 'write_multiple_registers',
        write: 'holding_registers 10-11',
        values: [700, 5000],
        value_count: 2,
        reason: 'value_not_allowed',
        rule: 'hmi',
        exception: '0x03',
        action: 'exception',
      },
      {
        event: 'connection_closed',
        ...place,
        reason: 'client_closed',
        requests: 2,
        denied: 1,
        bytes_from_client: read.length + write.length,
        bytes_to_client: answer!.length + denial!.length,
      },
    ],
    'every field of every line of the connection',
  );
  const closed = mine.at(-1)!;
  t.ok(Number.isInteger(closed.duration_ms) && (closed.duration_ms as number) >= 0, 'a duration in whole ms');
  t.match(closed.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  const order = Object.keys(mine[1]!);
  t.strictSame(order.slice(0, 12), ['time', 'event', 'policy_version', 'policy_sha256', 'device', 'conn_id', 'src_ip', 'src_port', 'plc_host', 'plc_port', 'unit', 'fc'], 'what places a line comes first');
});

void t.test('written values on deny lines: at most MAX_LOGGED_VALUES and the count; coils; FC22 masks; none when malformed', async (t) => {
  const { proxy } = await setup(t);
  const c = await RawClient.connect(proxy.port);
  const n = MAX_LOGGED_VALUES + 4;
  const registers = Array.from({ length: n }, (_, i) => [0, i + 1]).flat();
  const cases: [Buffer, Line][] = [
    // FC16 at 40: no rule allows the address; registers i hold i + 1.
    [req(1, 1, [16, 0, 40, 0, n, 2 * n, ...registers]), { write: `holding_registers 40-${39 + n}`, values: Array.from({ length: MAX_LOGGED_VALUES }, (_, i) => i + 1), value_count: n }],
    // FC15: coils 8-17 := 1,0,1,0,... (0x55 0x01): coil 8 is outside 0-7.
    [req(2, 1, [15, 0, 8, 0, 10, 2, 0x55, 0x01]), { write: 'coils 8-17', values: [1, 0, 1, 0, 1, 0, 1, 0, 1, 0], value_count: 10 }],
    // FC5: coil 9 on.
    [req(3, 1, [5, 0, 9, 0xff, 0]), { write: 'coils 9', values: [1], value_count: 1 }],
    // FC22 on register 31: AND 0x00f0, OR 0x0005.
    [req(4, 1, [22, 0, 31, 0, 0xf0, 0, 5]), { write: 'holding_registers 31', and_mask: 0xf0, or_mask: 5 }],
    // FC16 whose byte count says 4 for 1 register: malformed, nothing decoded to show.
    [req(5, 1, [16, 0, 10, 0, 1, 4, 0, 1, 0, 2]), { write: 'holding_registers 10', violation: 'byte_count' }],
  ];
  for (const [bytes] of cases) c.send(bytes);
  await c.read(cases.length);
  const denies = events(proxy, 'deny');
  t.equal(denies.length, cases.length);
  cases.forEach(([, expected], i) => {
    const { values, value_count, and_mask, or_mask, violation, write } = denies[i]!;
    const shown = Object.fromEntries(Object.entries({ write, values, value_count, and_mask, or_mask, violation }).filter(([, v]) => v !== undefined));
    t.strictSame(shown, expected, `case ${i + 1}`);
  });
  c.close();
});

void t.test('log_writes: a write line for every allowed write, none for reads or denials; off by default', async (t) => {
  const on = await setup(t, 'defaults:\n  log_writes: true\n');
  const c = await RawClient.connect(on.proxy.port);
  const allowed = [req(1, 1, [6, 0, 10, 0x02, 0xbc]), req(2, 1, [15, 0, 0, 0, 3, 1, 0x05]), req(3, 1, [22, 0, 30, 0xff, 0, 0, 1])];
  c.send(Buffer.concat([...allowed, req(4, 1, [3, 0, 0, 0, 1]), req(5, 1, [6, 0, 50, 0, 1])]));
  await c.read(5);
  const writes = events(on.proxy, 'write');
  t.strictSame(
    writes.map(({ fc, write, values, value_count, and_mask, or_mask, rule }) =>
      Object.fromEntries(Object.entries({ fc, write, values, value_count, and_mask, or_mask, rule }).filter(([, v]) => v !== undefined)),
    ),
    [
      { fc: 6, write: 'holding_registers 10', values: [700], value_count: 1, rule: 'hmi' },
      { fc: 15, write: 'coils 0-2', values: [1, 0, 1], value_count: 3, rule: 'hmi' },
      { fc: 22, write: 'holding_registers 30', and_mask: 0xff00, or_mask: 1, rule: 'hmi' },
    ],
    'who wrote what, allowed by which rule',
  );
  t.match(writes[0], { device: 'plc', src_ip: '127.0.0.1', src_port: c.socket.localPort, conn_id: String });
  t.equal(events(on.proxy, 'deny').length, 1, 'the denied write is a deny line, not a write line');
  c.close();

  const off = await setup(t);
  const d = await RawClient.connect(off.proxy.port);
  d.send(allowed[0]!);
  await d.read();
  t.equal(events(off.proxy, 'write').length, 0, 'not logged unless asked');
  d.close();
});

void t.test('close reasons: deny_close, idle_timeout, framing_error; conn ids differ', async (t) => {
  const { proxy } = await setup(t, 'defaults:\n  on_deny: close\n  limits: { idle_timeout_ms: 100 }\n');
  const ports: number[] = [];
  const connect = async (): Promise<RawClient> => {
    const c = await RawClient.connect(proxy.port);
    ports.push(c.socket.localPort!);
    return c;
  };
  const a = await connect();
  a.send(req(1, 1, [6, 0, 50, 0, 1]));
  await a.closed;
  const b = await connect();
  await b.closed;
  const c = await connect();
  c.send([0, 1, 0, 1, 0, 6, 1, 3, 0, 0, 0, 1]);
  await c.closed;
  await within(proxy.logged((l) => l.event === 'connection_closed' && l.reason === 'framing_error'), 'the third close');
  const closed = events(proxy, 'connection_closed');
  t.strictSame(
    closed.map((l) => [l.src_port, l.reason, l.requests, l.denied]),
    [
      [ports[0], 'deny_close', 1, 1],
      [ports[1], 'idle_timeout', 0, 0],
      [ports[2], 'framing_error', 0, 0],
    ],
  );
  const ids = closed.map((l) => l.conn_id);
  t.equal(new Set(ids).size, 3, 'one id per connection');
  t.strictSame(events(proxy, 'connection_opened').map((l) => l.conn_id), ids, 'opened and closed lines pair up by id');
});

void t.test('refused connections and PLC failures: the same fields', async (t) => {
  const deadPlc = await freePort(); // nothing listens: connections are refused
  const proxy = await startProxy(
    devicePolicy(
      deadPlc,
      `    rules:
      - { name: hmi, sources: [127.0.0.1], units: [1], read: { holding_registers: [0-9] } }
`,
    ),
  );
  t.teardown(() => proxy.stop());
  const stranger = await RawClient.connect(proxy.port, '127.0.0.2');
  const strangerPort = stranger.socket.localPort;
  await stranger.closed;
  t.match(events(proxy, 'refused'), [
    { device: 'plc', conn_id: /^[0-9a-z]+-[0-9a-z]+$/, src_ip: '127.0.0.2', src_port: strangerPort, plc_host: '127.0.0.1', plc_port: deadPlc, reason: 'source_not_allowed', action: 'close' },
  ]);
  t.equal(events(proxy, 'connection_opened').length, 0, 'a refused connection is not opened');
  const stats = proxy.rt.server.stats.get('plc');
  t.same([stats.refused[0], stats.clientConnectionsTotal, stats.denials.reduce((a, b) => a + b, 0)], [1, 0, 0], 'counted once: a refusal, not a denial');

  const c = await RawClient.connect(proxy.port);
  c.send(req(1, 1, [3, 0, 0, 0, 1]));
  t.equal(hexOf((await c.read())[0]!), hexOf(exc(1, 3, 0x0a)));
  t.match(events(proxy, 'upstream_connect_failed'), [{ device: 'plc', plc_host: '127.0.0.1', plc_port: deadPlc, kind: 'refused', error: 'ECONNREFUSED' }]);
  t.notOk('upstream' in events(proxy, 'upstream_connect_failed')[0]!, 'host and port apart, as on client lines');
  c.close();
});

void t.test('connection lines have a budget of their own: a source reconnecting is bounded and its denials still logged', async (t) => {
  const { proxy } = await setup(t);
  const started = performance.now();
  const cycles = AUDIT_BURST + 5;
  for (let i = 0; i < cycles; i++) {
    const c = await RawClient.connect(proxy.port);
    c.close();
    await c.closed;
  }
  const last = await RawClient.connect(proxy.port);
  last.send(req(1, 1, [6, 0, 50, 0, 1]));
  // Answered: every earlier connection was accepted before it (one accept queue, in order).
  await last.read();
  last.close();
  const seconds = (performance.now() - started) / 1000;
  const opened = (): number => events(proxy, 'connection_opened').length;
  await within(proxy.logged(() => events(proxy, 'connection_closed').length === opened()), 'a closed line for each opened one');
  const stats = proxy.rt.server.stats.get('plc');
  t.equal(stats.clientConnectionsTotal, cycles + 1, 'each connection counted');
  t.equal(opened() + stats.connectionLinesSuppressed, cycles + 1, 'each one an opened line, or counted as suppressed');
  const budget = AUDIT_BURST + Math.ceil(AUDIT_RATE_PER_SECOND * seconds);
  t.ok(opened() >= AUDIT_BURST && opened() <= budget, `${opened()} opened lines for ${cycles + 1} connections in ${seconds.toFixed(2)} s (budget ${budget})`);
  t.equal(events(proxy, 'deny').length, 1, "the source's denial is logged: its connections spent none of the denials' budget");
});
