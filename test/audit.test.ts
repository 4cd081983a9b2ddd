// The audit log's line budgets: per source address and for the whole process, with what they
// refuse counted and reported; the per-source state bounded. What every line carries: identity,
// policy, connection.
import os from 'node:os';
import t from 'tap';
import { parsePolicy } from '../policy/index.js';
import {
  AUDIT_BURST,
  AUDIT_RATE_PER_SECOND,
  AUDIT_TOTAL_BURST,
  AUDIT_TOTAL_RATE_PER_SECOND,
  AuditGate,
  AuditLimiter,
  ConnectionIds,
  Logger,
  connectionFields,
  logIdentity,
} from '../proxy/audit.js';

const T0 = 1_000_000;
/** How many of `n` lines about `source` the gate allows at `now`. */
const allowed = (g: AuditGate, source: string, n: number, now = T0): number =>
  Array.from({ length: n }, () => g.allow(source, now)).filter(Boolean).length;

void t.test('per source: a burst, then the rate; what is refused is reported once', (t) => {
  const g = new AuditGate();
  t.equal(allowed(g, 'a', AUDIT_BURST + 7), AUDIT_BURST, 'the burst');
  t.equal(g.takeSuppressed('a'), 7, 'the rest counted');
  t.equal(g.takeSuppressed('a'), 0, 'and reported once');
  t.equal(allowed(g, 'b', 3), 3, 'another source has a budget of its own');
  const later = T0 + 1000 / AUDIT_RATE_PER_SECOND;
  t.equal(allowed(g, 'a', 2, later), 1, 'one line earned back per 1/rate s');
  t.equal(allowed(g, 'a', 1, T0), 0, 'a time older than the last one seen earns nothing');
  t.equal(g.takeSuppressed('nobody'), 0);
  t.end();
});

void t.test('in total: many sources within their own budgets are still bounded', (t) => {
  const g = new AuditGate();
  let written = 0;
  for (let i = 0; i < 30; i++) written += allowed(g, `10.0.0.${i}`, 10);
  t.equal(written, AUDIT_TOTAL_BURST, 'the total burst');
  t.equal(g.takeSuppressed('10.0.0.29'), 10, 'the lines the total refused count for their source');
  const later = T0 + 1000;
  t.equal(allowed(g, 'fresh', AUDIT_BURST, later), AUDIT_TOTAL_RATE_PER_SECOND, 'then the total rate');
  t.end();
});

void t.test('flush: the count on a line of its own when one is allowed, and nothing counted when not', (t) => {
  const g = new AuditGate();
  t.equal(g.flush('a', T0), 0, 'an unknown source has nothing to report');
  allowed(g, 'a', AUDIT_BURST);
  t.equal(g.flush('a', T0), 0, 'nothing suppressed: nothing to report');
  allowed(g, 'a', 4);
  t.equal(g.flush('a', T0), 0, 'no line allowed now');
  t.equal(g.takeSuppressed('a'), 4, 'the refused summary line counted nothing more');
  allowed(g, 'a', 4);
  t.equal(g.flush('a', T0 + 1000 / AUDIT_RATE_PER_SECOND), 4, 'once a line is allowed');
  t.equal(g.takeSuppressed('a'), 0, 'reported');
  t.end();
});

void t.test('the sources remembered are bounded: refilled ones are forgotten first, then the oldest', (t) => {
  const g = new AuditGate(4);
  allowed(g, 'quiet', 1);
  allowed(g, 'owing', AUDIT_BURST + 1); // one suppressed, not reported yet
  allowed(g, 'busy1', AUDIT_BURST);
  allowed(g, 'busy2', AUDIT_BURST);
  t.equal(g.size, 4);
  // Long enough for 'quiet' (one line used) to refill, not the sources that spent their burst.
  const soon = T0 + 1000 / AUDIT_RATE_PER_SECOND;
  allowed(g, 'new1', 1, soon);
  t.equal(g.size, 4, 'bounded');
  t.equal(g.takeSuppressed('owing'), 1, 'a source with something to report is kept');
  t.equal(allowed(g, 'busy1', 1, soon), 1, 'busy1 is still known: one line earned back');
  allowed(g, 'new2', 1, soon);
  t.equal(g.size, 4, 'still bounded: the oldest known ("owing") goes');
  t.equal(g.takeSuppressed('owing'), 0);
  t.end();
});

void t.test('AuditLimiter: a burst, then the rate; the refused count rides on the next line', (t) => {
  const l = new AuditLimiter(2, 0.5);
  t.same([l.admit(T0), l.admit(T0), l.admit(T0), l.admit(T0)], [{}, {}, null, null]);
  t.same(l.admit(T0 + 2000), { suppressed: 2 }, 'one line per 2 s, carrying the count');
  t.same(l.admit(T0 + 4000), {}, 'reported once');
  t.end();
});

// ---- what every line carries ----

void t.test('Logger: time and event, then identity and the policy in force, then the fields', (t) => {
  const lines: string[] = [];
  const clock = (): number => Date.UTC(2026, 10, 30, 12, 0, 0, 250);
  const logger = new Logger((l) => lines.push(l), { host: 'gw1', instance: 'gw1:9502' }, clock);
  logger.log('started', { version: '1.0.0' });
  logger.setPolicy(7, 'ab'.repeat(32));
  logger.log('deny', { device: 'boiler' });
  t.strictSame(lines, [
    '{"time":"2026-11-30T12:00:00.250Z","event":"started","host":"gw1","instance":"gw1:9502","version":"1.0.0"}',
    `{"time":"2026-11-30T12:00:00.250Z","event":"deny","host":"gw1","instance":"gw1:9502","policy_version":7,"policy_sha256":"${'ab'.repeat(32)}","device":"boiler"}`,
  ]);
  const bare = new Logger((l) => lines.push(l), null, clock);
  bare.setPolicy(0, 'cd');
  bare.log('x');
  t.equal(lines.at(-1), '{"time":"2026-11-30T12:00:00.250Z","event":"x","policy_version":0,"policy_sha256":"cd"}', 'no identity: none written');
  t.end();
});

void t.test('instance: given, or host:admin-port as Prometheus names a target, or the host alone', (t) => {
  t.strictSame(logIdentity('cell-3', { host: '0.0.0.0', port: 9502 }, 'gw1'), { host: 'gw1', instance: 'cell-3' });
  t.strictSame(logIdentity(undefined, { host: '10.0.0.20', port: 9600 }, 'gw1'), { host: 'gw1', instance: 'gw1:9600' });
  t.strictSame(logIdentity(undefined, null, 'gw1'), { host: 'gw1', instance: 'gw1' }, '--admin off');
  t.equal(logIdentity(undefined, null).host, os.hostname(), "the machine's name by default");
  t.end();
});

void t.test('connection ids: the start time and a count, base 36; unique across restarts', (t) => {
  const first = new ConnectionIds(1_700_000_000_000);
  t.strictSame([first.next(), first.next()], ['loyw3v28-1', 'loyw3v28-2']);
  for (let i = 3; i <= 36; i++) first.next();
  t.equal(first.next(), 'loyw3v28-11', 'the 37th');
  t.equal(new ConnectionIds(1_700_000_000_001).next(), 'loyw3v29-1', 'a restart a millisecond later starts a new sequence');
  t.end();
});

void t.test('connectionFields: device, connection, client address and port apart, the PLC', (t) => {
  const { policy } = parsePolicy('version: 1\ndevices:\n  - { name: boiler, listen: 127.0.0.1:5020, upstream: "[fd00::5]:502" }\n', 'p.yaml');
  const boiler = policy!.devices.get('boiler')!;
  t.strictSame(connectionFields(boiler, 'c-1', '10.0.0.7', 50_123), {
    device: 'boiler',
    conn_id: 'c-1',
    src_ip: '10.0.0.7',
    src_port: 50_123,
    plc_host: 'fd00::5',
    plc_port: 502,
  });
  t.equal(connectionFields(boiler, 'c-2', '::ffff:10.0.0.7', 1).src_ip, '10.0.0.7', 'an IPv4 client of a dual-stack listener as IPv4');
  t.equal(connectionFields(boiler, 'c-3', 'fd00::9', 1).src_ip, 'fd00::9', 'IPv6 as it is, no brackets');
  t.end();
});
