// The admin endpoints of a real plcguard: real traffic through it (allowed, denied, malformed,
// refused, timed out, late, unsolicited, cut short), then /metrics over HTTP with every plcguard_ sample
// checked for its exact value; /healthz, /readyz (file and Redis mode), 404, 405.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { recordLogs } from './fixtures/logs.js';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import client from 'prom-client';
import { parsePolicy } from '../policy/index.js';
import { storeCommand } from '../cli/store.js';
import { startAdminServer } from '../proxy/http.js';
import { Metrics, createRegistry, writeDeviceFamilies } from '../proxy/metrics.js';
import { StatsRegistry } from '../proxy/server.js';
import { RedisPolicySource } from '../policy/source/redis.js';
import { ProxyRuntime } from '../proxy/runtime.js';
import { DECISION_ALLOWED, LATENCY_BUCKETS_SECONDS, WRITE_FUNCTION_CODES } from '../proxy/stats.js';
import { functionLabel } from '../modbus/index.js';
import YAML from 'yaml';
import { ANY_PORT, startProxy } from './fixtures/proxy.js';
import { RawClient, hexOf, req } from './fixtures/raw-client.js';
import { adu, normalReply, startRawPlc } from './fixtures/raw-plc.js';
import { startRedis } from './fixtures/redis.js';
import { freePort } from '../bench/lib/net.js';
import { until, within } from '../bench/lib/wait.js';

// ---- reading the exposition format ----

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

interface Scrape {
  status: number;
  contentType: string | null;
  samples: Sample[];
  /** # TYPE per metric family. */
  types: Map<string, string>;
  /** The value of the one sample of `name` with exactly `labels`; undefined when there is none. */
  get(name: string, labels?: Record<string, string>): number | undefined;
}

const key = (labels: Record<string, string>): string =>
  Object.keys(labels)
    .sort()
    .map((k) => `${k}=${labels[k]}`)
    .join(',');

/** Prometheus text format 0.0.4, the part prom-client writes: HELP, TYPE, `name{labels} value`. */
function parseExposition(text: string): Pick<Scrape, 'samples' | 'types'> {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('# HELP ')) continue;
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) {
      types.set(type[1]!, type[2]!);
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not an exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return { samples, types };
}

async function scrape(port: number, url = '/metrics'): Promise<Scrape> {
  const res = await within(fetch(`http://127.0.0.1:${port}${url}`), `GET ${url}`);
  const parsed = parseExposition(await res.text());
  return {
    status: res.status,
    contentType: res.headers.get('content-type'),
    ...parsed,
    get(name, labels = {}) {
      const k = key(labels);
      const found = parsed.samples.filter((s) => s.name === name && key(s.labels) === k);
      if (found.length > 1) throw new Error(`${name}{${k}} appears ${found.length} times`);
      return found[0]?.value;
    },
  };
}

async function get(port: number, url: string, method = 'GET'): Promise<{ status: number; body: string; headers: Headers }> {
  const res = await within(fetch(`http://127.0.0.1:${port}${url}`, { method }), `${method} ${url}`);
  return { status: res.status, body: await res.text(), headers: res.headers };
}

/** Series plcguard writes itself (not the default process/nodejs ones), by name and labels. */
function ownSeries(s: Scrape, exclude: (name: string) => boolean): Map<string, number> {
  const own = s.samples.filter((x) => x.name.startsWith('plcguard_') && !exclude(x.name));
  return new Map(own.map((x) => [`${x.name}{${key(x.labels)}}`, x.value]));
}

const HISTOGRAMS = ['plcguard_round_trip_seconds', 'plcguard_upstream_response_seconds', 'plcguard_added_latency_seconds'];
/** Neither device shares PLC connections: this histogram has no series for them. */
const QUEUE_WAIT = 'plcguard_upstream_queue_wait_seconds';
const isHistogramSample = (name: string): boolean => HISTOGRAMS.some((h) => name.startsWith(h));

// ---- traffic ----

const POLICY = (plcPort: number, deadListen: number, deadUpstream: number): string => `version: 1
devices:
  - name: plc
    listen: ${ANY_PORT}
    upstream: 127.0.0.1:${plcPort}
    limits:
      response_timeout_ms: 200
      frame_timeout_ms: 100
    rules:
      - name: hmi
        sources: [127.0.0.1]
        units: [1]
        read: { holding_registers: [0-99] }
        write:
          holding_registers:
            - { addresses: 10-19, values: 0-1000 }
  - name: dead
    listen: 127.0.0.1:${deadListen}
    upstream: 127.0.0.1:${deadUpstream}
    limits:
      max_connections: 1
    rules:
      - units: [1]
        read: { holding_registers: [0-99] }
`;

/** Exception reply ADU. */
const exc = (tid: number, unit: number, fc: number, code: number): string => hexOf(adu(tid, unit, [fc | 0x80, code]));

void t.test('every plcguard_ sample has its exact value after real traffic', async (t) => {
  const startedAt = Date.now() / 1000;
  const plc = await startRawPlc();
  t.teardown(() => plc.close());
  const deadListen = await freePort();
  const deadUpstream = await freePort(); // nothing listens there: connections are refused
  const proxy = await startProxy(POLICY(plc.port, deadListen, deadUpstream), { admin: true });
  t.teardown(() => proxy.stop());
  const admin = proxy.rt.adminPort;
  t.ok(admin > 0, 'the admin server listens');

  const before = await scrape(admin);
  t.equal(before.get('plcguard_requests_total', { device: 'plc', function: 'read_holding_registers', decision: 'allowed' }), undefined, 'requests by function appear on first use');
  t.equal(before.get('plcguard_denials_total', { device: 'plc', decision: 'denied', reason: 'address_not_allowed' }), 0, 'denials by reason exist from the start, at 0');
  t.equal(before.get('plcguard_denials_total', { device: 'plc', decision: 'would_deny', reason: 'address_not_allowed' }), 0, 'would-denials too');
  t.equal(before.get('plcguard_requests_total', { device: 'plc', function: 'write_single_register', decision: 'denied' }), 0, 'denied writes too: one is an alert');
  t.equal(before.get('plcguard_upstream_errors_total', { device: 'dead', kind: 'refused' }), 0);
  t.equal(before.get('plcguard_round_trip_seconds_count', { device: 'plc' }), 0);

  // Client A, allowed to talk: one request at a time, each answer awaited. What it sends and
  // receives is what plcguard_bytes_total must count.
  const a = await RawClient.connect(proxy.port);
  let aSent = 0;
  let aReceived = 0;
  const ask = async (request: Buffer): Promise<string> => {
    a.send(request);
    aSent += request.length;
    const [answer] = await a.read();
    aReceived += answer!.length;
    return hexOf(answer!);
  };
  t.equal(await ask(req(1, 1, [3, 0, 0, 0, 1])), hexOf(adu(1, 1, [3, 2, 0, 0])), 'allowed read');
  t.equal(await ask(req(2, 1, [3, 0, 5, 0, 1])), hexOf(adu(2, 1, [3, 2, 0, 5])), 'allowed read');
  t.equal(await ask(req(3, 1, [6, 0, 10, 1, 0xf4])), hexOf(adu(3, 1, [6, 0, 10, 1, 0xf4])), 'allowed write 10=500');
  t.equal(await ask(req(4, 1, [6, 0, 50, 0, 1])), exc(4, 1, 6, 2), 'address_not_allowed');
  t.equal(await ask(req(5, 1, [6, 0, 10, 0x13, 0x88])), exc(5, 1, 6, 3), 'value_not_allowed');
  t.equal(await ask(req(6, 2, [3, 0, 0, 0, 1])), exc(6, 2, 3, 0x0a), 'unit_not_allowed');
  t.equal(await ask(req(7, 1, [8, 0, 0, 0x12, 0x34])), exc(7, 1, 8, 1), 'function_not_allowed: diagnostics');
  t.equal(await ask(req(8, 1, [65, 1, 2])), exc(8, 1, 65, 1), 'function_not_allowed: a user-defined code counts as other');
  t.equal(await ask(req(9, 1, [3, 0, 0, 0, 0])), exc(9, 1, 3, 3), 'malformed: quantity 0');
  // A response to nothing, then a real one on the same PLC connection: the proxy has handled the
  // first by the time the second reaches the client (one TCP stream, in order).
  plc.inject(adu(0x7777, 1, [3, 2, 0, 0]));
  // Handled before the next request goes out: arriving alone while that request awaits its
  // answer, it would be taken as the PLC's wrong answer to it (0B at once, issue 12).
  await until(() => proxy.rt.server.stats.get('plc').unsolicitedResponses === 1, 'the unsolicited response was dropped');
  t.equal(await ask(req(10, 1, [3, 0, 1, 0, 1])), hexOf(adu(10, 1, [3, 2, 0, 1])), 'allowed read after an unsolicited response');
  plc.respond = (r) => (r.tid === 11 ? { hang: true } : r.tid === 12 ? { send: adu(12, 1, [3, 4, 0, 0, 0, 0]) } : { send: normalReply(r) });
  t.equal(await ask(req(11, 1, [3, 0, 0, 0, 1])), exc(11, 1, 3, 0x0b), 'the PLC never answers: 0B after the response timeout');
  plc.inject(adu(11, 1, [3, 2, 0, 0])); // ... until now: a late answer, handled before the next answer arrives
  t.equal(await ask(req(12, 1, [3, 0, 0, 0, 1])), hexOf(adu(12, 1, [3, 4, 0, 0, 0, 0])), 'an inconsistent answer is delivered');

  // A source no rule allows: refused at accept.
  const b = await RawClient.connect(proxy.port, '127.0.0.2');
  await within(b.closed, 'refused connection closed');
  // A framing error (protocol id 1) and a frame never completed.
  const c = await RawClient.connect(proxy.port);
  const cBytes = [0, 1, 0, 1, 0, 6, 1, 3, 0, 0, 0, 1];
  c.send(cBytes);
  await within(c.closed, 'close after a framing error');
  const d = await RawClient.connect(proxy.port);
  const dBytes = [0, 1, 0, 0, 0, 6];
  d.send(dBytes);
  await within(d.closed, 'close after the frame timeout');
  // The dead device: its PLC refuses connections; its second client is over max_connections.
  const e = await RawClient.connect(deadListen);
  const eRequest = req(1, 1, [3, 0, 0, 0, 1]);
  e.send(eRequest);
  const [eAnswer] = await e.read();
  t.equal(hexOf(eAnswer!), exc(1, 1, 3, 0x0a), 'PLC refused: 0A');
  const f = await RawClient.connect(deadListen);
  await within(f.closed, 'over max_connections: closed');

  const s = await scrape(admin);
  t.equal(s.status, 200);
  t.equal(s.contentType, 'text/plain; version=0.0.4; charset=utf-8');
  const expected = new Map<string, number>();
  const put = (name: string, labels: Record<string, string>, v: number): void => void expected.set(`${name}{${key(labels)}}`, v);
  const requests: [string, string, string, number][] = [
    ['plc', 'read_holding_registers', 'allowed', 5],
    ['plc', 'read_holding_registers', 'denied', 2],
    ['plc', 'write_single_register', 'allowed', 1],
    ['plc', 'write_single_register', 'denied', 2],
    ['plc', 'diagnostics', 'denied', 1],
    ['plc', 'other', 'denied', 1],
    ['dead', 'read_holding_registers', 'allowed', 1],
  ];
  const writes = ['write_single_coil', 'write_single_register', 'write_multiple_coils', 'write_multiple_registers', 'write_file_record', 'mask_write_register', 'read_write_multiple_registers'];
  for (const device of ['plc', 'dead']) for (const fn of writes) put('plcguard_requests_total', { device, function: fn, decision: 'denied' }, 0);
  for (const [device, fn, decision, v] of requests) put('plcguard_requests_total', { device, function: fn, decision }, v);
  // The refused source is in plcguard_refused_connections_total only: counted once.
  const denials: Record<string, number> = { source_not_allowed: 0, unit_not_allowed: 1, function_not_allowed: 2, malformed: 1, address_not_allowed: 1, value_not_allowed: 1, rate_limited: 0, no_policy: 0 };
  for (const device of ['plc', 'dead']) {
    for (const [reason, v] of Object.entries(denials)) {
      put('plcguard_denials_total', { device, decision: 'denied', reason }, device === 'plc' ? v : 0);
      put('plcguard_denials_total', { device, decision: 'would_deny', reason }, 0);
    }
    for (const reason of ['source_not_allowed', 'max_connections', 'max_connections_per_source', 'no_policy', 'shutting_down', 'tls_no_certificate', 'tls_unknown_ca', 'tls_expired', 'tls_revoked', 'tls_handshake_failed', 'identity_not_allowed']) {
      const v = (device === 'plc' && reason === 'source_not_allowed') || (device === 'dead' && reason === 'max_connections') ? 1 : 0;
      put('plcguard_refused_connections_total', { device, reason }, v);
    }
    for (const kind of ['refused', 'unreachable', 'timeout', 'reset', 'closed', 'framing']) {
      const v = (device === 'plc' && kind === 'timeout') || (device === 'dead' && kind === 'refused') ? 1 : 0;
      put('plcguard_upstream_errors_total', { device, kind }, v);
    }
    const mine = device === 'plc' ? 1 : 0;
    put('plcguard_framing_errors_total', { device }, mine);
    put('plcguard_unsolicited_responses_total', { device }, mine);
    put('plcguard_late_responses_total', { device }, mine);
    put('plcguard_audit_suppressed_total', { device, budget: 'events' }, 0);
    put('plcguard_audit_suppressed_total', { device, budget: 'connections' }, 0);
    put('plcguard_inconsistent_responses_total', { device }, mine);
    put('plcguard_frame_timeouts_total', { device }, mine);
    // Connection sharing: neither device shares, so neither has its queue and remap series.
    put('plcguard_abandoned_responses_total', { device }, 0);
    // Open now: a on plc (and its PLC connection); e on dead (its PLC refused).
    put('plcguard_client_connections', { device }, 1);
    put('plcguard_upstream_connections', { device }, mine);
  }
  // Accepted: a, c and d on plc, e on dead (b and f were refused).
  put('plcguard_client_connections_total', { device: 'plc' }, 3);
  put('plcguard_client_connections_total', { device: 'dead' }, 1);
  put('plcguard_bytes_total', { device: 'plc', direction: 'from_client' }, aSent + cBytes.length + dBytes.length);
  put('plcguard_bytes_total', { device: 'plc', direction: 'to_client' }, aReceived);
  put('plcguard_bytes_total', { device: 'dead', direction: 'from_client' }, eRequest.length);
  put('plcguard_bytes_total', { device: 'dead', direction: 'to_client' }, eAnswer!.length);
  put('plcguard_policy_info', { sha256: createHash('sha256').update(fs.readFileSync(proxy.file)).digest('hex') }, 1);
  put('plcguard_ready', { check: 'policy_loaded' }, 1);
  put('plcguard_ready', { check: 'listeners_up' }, 1);
  put('plcguard_policy_version', {}, 0);
  put('plcguard_policy_loaded', {}, 1);
  put('plcguard_policy_reloads_total', { result: 'ok' }, 1);
  put('plcguard_policy_reloads_total', { result: 'failed' }, 0);
  put('plcguard_build_info', { version: '0.0.0', node: process.version }, 1);
  const actual = ownSeries(s, (name) => isHistogramSample(name) || name === 'plcguard_policy_last_reload_timestamp_seconds');
  t.same(
    s.samples.filter((x) => x.name.startsWith(QUEUE_WAIT)),
    [],
    `${QUEUE_WAIT}: no series for devices without shared links`,
  );
  t.equal(s.types.get(QUEUE_WAIT), 'histogram', `${QUEUE_WAIT}: the family is declared all the same`);
  t.same(Object.fromEntries([...actual].sort()), Object.fromEntries([...expected].sort()), 'every counter and gauge, exactly');
  const reloadedAt = s.get('plcguard_policy_last_reload_timestamp_seconds')!;
  t.ok(reloadedAt >= startedAt && reloadedAt <= Date.now() / 1000, 'last reload time: when the proxy started');
  t.equal(s.get('plcguard_redis_up'), undefined, 'no plcguard_redis_up without Redis');

  // Histograms: the answered requests (1, 2, 3, 10, 12; 11 timed out), in the 1 µs … 1 s buckets.
  const les = [...LATENCY_BUCKETS_SECONDS.map(String), '+Inf'];
  for (const h of HISTOGRAMS) {
    t.equal(s.types.get(h), 'histogram', `${h} is a histogram`);
    for (const device of ['plc', 'dead']) {
      const count = s.get(`${h}_count`, { device });
      t.equal(count, device === 'plc' ? 5 : 0, `${h}{device=${device}} counts the answered requests`);
      const buckets = les.map((le) => s.get(`${h}_bucket`, { device, le }));
      t.ok(buckets.every((v) => v !== undefined), `${h}: every bucket 1e-6 … 1, +Inf`);
      t.ok(buckets.every((v, i) => i === 0 || v! >= buckets[i - 1]!), `${h}: cumulative`);
      t.equal(buckets.at(-1), count, `${h}: +Inf = count`);
    }
  }
  const sum = (h: string): number => s.get(`${h}_sum`, { device: 'plc' })!;
  t.ok(sum('plcguard_round_trip_seconds') > 0, 'round trip sum > 0');
  t.ok(sum('plcguard_added_latency_seconds') > 0 && sum('plcguard_added_latency_seconds') < sum('plcguard_round_trip_seconds'), 'added time is part of the round trip');
  t.ok(sum('plcguard_upstream_response_seconds') < sum('plcguard_round_trip_seconds'), "the PLC's time is part of the round trip");

  // Naming: counters end in _total; plcguard's own families are plcguard_-prefixed, prom-client's
  // defaults keep their standard names (stock Node.js dashboards use them); no label is an address.
  const standard = (name: string): boolean => /^(process|nodejs)_/.test(name);
  for (const [name, type] of s.types) {
    t.ok(name.startsWith('plcguard_') || standard(name), `${name}: plcguard_, or a standard process/Node.js name`);
    if (type === 'counter') t.match(name, /_total$/, `${name}: a counter ends in _total`);
  }
  for (const name of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'nodejs_eventloop_lag_p99_seconds', 'nodejs_heap_size_used_bytes']) {
    t.equal(s.types.has(name), true, `${name}: the standard name, unprefixed`);
  }
  t.notOk([...s.types.keys()].some((name) => /^plcguard_(process|nodejs)_/.test(name)), 'no prefixed copies');
  // The defaults that list every socket synchronously are gone; the descriptors are counted without blocking.
  t.same(
    ['nodejs_active_handles', 'nodejs_active_handles_total', 'nodejs_active_resources', 'nodejs_active_resources_total'].filter((n) => s.types.has(n)),
    [],
    'no socket-enumerating gauges',
  );
  const fds = s.get('process_open_fds')!;
  const now = fs.readdirSync('/proc/self/fd').length - 1;
  t.ok(s.types.get('process_open_fds') === 'gauge' && Math.abs(fds - now) <= 4, `process_open_fds ${fds}, ${now} listed here (the scrape's own sockets differ)`);
  const ownLabels = new Set(['device', 'function', 'decision', 'reason', 'kind', 'result', 'le', 'version', 'node', 'direction', 'check', 'sha256', 'budget']);
  for (const x of s.samples.filter((x) => x.name.startsWith('plcguard_'))) {
    for (const [k, v] of Object.entries(x.labels)) {
      if (!ownLabels.has(k)) t.fail(`${x.name}: unexpected label ${k}`);
      if (/\d+\.\d+\.\d+\.\d+|:\d{2,5}$/.test(v)) t.fail(`${x.name}: label ${k}="${v}" looks like an address`);
    }
  }

  // A rejected reload is counted; the policy in force and its load time stay.
  await proxy.rewrite('version: 1\ndevices: [');
  const r = await scrape(admin);
  t.equal(r.get('plcguard_policy_reloads_total', { result: 'failed' }), 1);
  t.equal(r.get('plcguard_policy_reloads_total', { result: 'ok' }), 1);
  t.equal(r.get('plcguard_policy_last_reload_timestamp_seconds'), reloadedAt);
  t.equal(r.get('plcguard_policy_loaded'), 1, 'the last good policy is still in force');

  // The registry's resetMetrics() must not lose what the hot path counted.
  const register = createRegistry(proxy.rt.server.stats, proxy.rt.policyStats, '9.9.9');
  register.resetMetrics();
  const text = await register.metrics();
  t.match(text, /plcguard_round_trip_seconds_count\{device="plc"\} 5\n/);
  t.match(text, /plcguard_build_info\{version="9\.9\.9",node="v[\d.]+"\} 1\n/);
  a.close();
  e.close();
});

void t.test('per-device families: written in slices with the event loop free between them, the same text whatever the slice', async (t) => {
  const stats = new StatsRegistry();
  for (const name of ['a', 'b', 'c']) stats.get(name).countRequest(3, DECISION_ALLOWED);
  const devices = [...stats.devices];
  const whole: string[] = [];
  await writeDeviceFamilies(devices, Infinity, (p) => whole.push(p));
  t.equal(whole.length, 1, 'one piece when the slice is never used up');
  const families = whole[0]!.match(/^# TYPE /gm)!.length;
  t.equal(families, 23, 'every per-device family');
  const sliced: string[] = [];
  let turns = 0;
  const tick = setInterval(() => turns++, 0);
  await writeDeviceFamilies(devices, 0, (p) => sliced.push(p));
  clearInterval(tick);
  t.equal(sliced.length, devices.length * families + 1, 'with no slice at all: a piece after every device of every family, then the rest');
  t.equal(sliced.join(''), whole[0], 'the same text');
  t.ok(turns > 0, `timers ran while it wrote (${turns})`);
  t.match(whole[0], /\nplcguard_requests_total\{device="b",function="read_holding_registers",decision="allowed"\} 1\n/);
});

void t.test('connection sharing: queue depth, ids taken, queue wait and abandoned answers, exactly', async (t) => {
  const plc = await startRawPlc({ maxConnections: 1 });
  t.teardown(() => plc.close());
  const proxy = await startProxy(
    `version: 1
devices:
  - name: shared
    listen: ${ANY_PORT}
    upstream: 127.0.0.1:${plc.port}
    upstream_connections: 1
    rules:
      - units: [1]
        read: { holding_registers: [0-99] }
`,
    { admin: true },
  );
  t.teardown(() => proxy.stop());
  const admin = proxy.rt.adminPort;
  const device = { device: 'shared' };
  // The PLC holds every request until the test lets it answer.
  const held: (() => void)[] = [];
  plc.respond = (r, s) => {
    held.push(() => s.write(normalReply(r)));
    return { hang: true };
  };
  const a = await RawClient.connect(proxy.port);
  const b = await RawClient.connect(proxy.port);
  a.send(Buffer.concat([req(1, 1, [3, 0, 0, 0, 1]), req(2, 1, [3, 0, 1, 0, 1])]));
  b.send(req(1, 1, [3, 0, 2, 0, 1]));
  await within(plc.waitForRequests(1), 'the first request at the PLC');
  const stats = proxy.rt.server.stats.get('shared');
  await until(() => stats.upstreamQueued === 2, 'two requests waiting');
  let s = await scrape(admin);
  t.equal(s.get('plcguard_upstream_queue_depth', device), 2, 'queue depth: two waiting');
  t.equal(s.get('plcguard_upstream_remapped_transactions', device), 1, 'ids taken: the one in flight');
  t.equal(s.get('plcguard_upstream_queue_wait_seconds_count', device), 1, 'one request left the queue');
  // a resets with its answer outstanding (after a FIN it would still be answered): the PLC's
  // answer to it is dropped and counted.
  a.socket.resetAndDestroy();
  await within(a.closed, 'a closed');
  await until(() => stats.upstreamQueued === 1, "a's waiting request forgotten");
  held.shift()!();
  await within(plc.waitForRequests(2), "b's request at the PLC");
  held.shift()!();
  t.same((await within(b.read(), 'b')).map(hexOf), [hexOf(adu(1, 1, [3, 2, 0, 2]))], 'b answered');
  s = await scrape(admin);
  t.equal(s.get('plcguard_abandoned_responses_total', device), 1, "a's answer abandoned");
  t.equal(s.get('plcguard_upstream_queue_depth', device), 0);
  t.equal(s.get('plcguard_upstream_remapped_transactions', device), 0);
  t.equal(s.get('plcguard_upstream_queue_wait_seconds_count', device), 2, "a's and b's first requests waited; a's second never left the queue");
  t.equal(s.types.get('plcguard_upstream_queue_wait_seconds'), 'histogram');
  t.equal(s.types.get('plcguard_upstream_queue_depth'), 'gauge');
  t.equal(s.types.get('plcguard_upstream_remapped_transactions'), 'gauge');
  t.equal(s.types.get('plcguard_abandoned_responses_total'), 'counter');
  b.close();
  await b.closed;
});

void t.test('/healthz, /readyz, 404, 405, HEAD and query strings', async (t) => {
  const plc = await startRawPlc();
  t.teardown(() => plc.close());
  const proxy = await startProxy(POLICY(plc.port, await freePort(), await freePort()), { admin: true });
  t.teardown(() => proxy.stop());
  const port = proxy.rt.adminPort;

  const health = await get(port, '/healthz');
  t.same([health.status, health.body, health.headers.get('content-type')], [200, 'ok\n', 'text/plain']);
  const ready = await get(port, '/readyz');
  t.equal(ready.status, 200);
  t.equal(ready.headers.get('content-type'), 'application/json');
  t.same(JSON.parse(ready.body), { ready: true, checks: { policy_loaded: true, listeners_up: true } });

  const missing = await get(port, '/nope');
  t.same([missing.status, missing.body], [404, 'not found: try /metrics, /healthz, /readyz, /learn/proposal, /learn/stats, /learn/observations\n']);
  const post = await get(port, '/metrics', 'POST');
  t.same([post.status, post.headers.get('allow'), post.body], [405, 'GET, HEAD', '']);
  const head = await get(port, '/metrics', 'HEAD');
  t.same([head.status, head.body], [200, ''], 'HEAD: the headers, no body');
  const query = await scrape(port, '/metrics?debug=1');
  t.equal(query.status, 200, 'a query string is ignored');
  t.equal(query.get('plcguard_policy_loaded'), 1);
});

void t.test('Redis mode: /readyz is 503 until a policy arrives and while Redis is down; plcguard_redis_up follows', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.kill());
  const plc = await startRawPlc();
  t.teardown(() => plc.close());
  const listen = await freePort();
  const recorder = recordLogs();
  const { logger } = recorder;
  const logged = (event: string): Promise<void> => within(recorder.logged((l) => l.event === event), `log event ${event}`);
  const rt = await ProxyRuntime.start({
    source: new RedisPolicySource({ url: redis.url }, parsePolicy, logger),
    logger,
    admin: { host: '127.0.0.1', port: 0 },
    graceMs: 200,
  });
  t.teardown(() => rt.stop());
  const port = rt.adminPort;
  await logged('redis_up');

  const empty = await get(port, '/readyz');
  t.equal(empty.status, 503, 'no policy yet: not ready');
  t.same(JSON.parse(empty.body), { ready: false, checks: { policy_loaded: false, listeners_up: false, redis_up: true } });
  const m0 = await scrape(port);
  t.same(
    [m0.get('plcguard_redis_up'), m0.get('plcguard_policy_loaded'), m0.get('plcguard_policy_version'), m0.get('plcguard_policy_last_reload_timestamp_seconds')],
    [1, 0, 0, 0],
  );
  t.equal(m0.get('plcguard_policy_reloads_total', { result: 'ok' }), 0);
  t.equal(m0.samples.filter((x) => x.name === 'plcguard_policy_info').length, 0, 'no policy: no policy_info');
  t.same(
    ['policy_loaded', 'listeners_up', 'redis_up'].map((check) => m0.get('plcguard_ready', { check })),
    [0, 0, 1],
    'plcguard_ready: the /readyz checks, one series each',
  );
  t.equal((await get(port, '/healthz')).status, 200, 'alive all the same');

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'plcguard-metrics-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'p.yaml');
  fs.writeFileSync(file, POLICY(plc.port, await freePort(), await freePort()).replace(`listen: ${ANY_PORT}`, `listen: 127.0.0.1:${listen}`));
  const quiet = { stdout: () => {}, stderr: () => {} };
  t.equal(await storeCommand('push', [file, '--redis', redis.url], quiet, parsePolicy), 0);
  await logged('policy_loaded');
  const loaded = await get(port, '/readyz');
  t.same([loaded.status, JSON.parse(loaded.body)], [200, { ready: true, checks: { policy_loaded: true, listeners_up: true, redis_up: true } }]);
  const m1 = await scrape(port);
  t.same([m1.get('plcguard_policy_version'), m1.get('plcguard_policy_loaded'), m1.get('plcguard_policy_reloads_total', { result: 'ok' })], [1, 1, 1]);
  t.equal(m1.get('plcguard_policy_info', { sha256: createHash('sha256').update(fs.readFileSync(file)).digest('hex') }), 1, 'the pushed text, by its sha256');

  await redis.kill();
  await logged('redis_down');
  const down = await get(port, '/readyz');
  t.same([down.status, JSON.parse(down.body)], [503, { ready: false, checks: { policy_loaded: true, listeners_up: true, redis_up: false } }]);
  const m2 = await scrape(port);
  t.equal(m2.get('plcguard_redis_up'), 0, 'plcguard_redis_up 0 while Redis is down');
  t.same([m2.get('plcguard_ready', { check: 'redis_up' }), m2.get('plcguard_ready', { check: 'policy_loaded' })], [0, 1], 'not ready: which check fails');
});

void t.test('admin server: a failing collector is a 500; a taken address fails the start', async (t) => {
  const register = new client.Registry();
  new client.Gauge({
    name: 'broken',
    help: 'fails on every scrape',
    registers: [register],
    collect() {
      throw new Error('collector exploded');
    },
  });
  const server = await startAdminServer({ host: '127.0.0.1', port: 0 }, new Metrics(register, new StatsRegistry()), { checks: () => ({}) });
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const port = (server.address() as { port: number }).port;
  const r = await get(port, '/metrics');
  t.same([r.status, r.body], [500, 'metrics failed: collector exploded\n']);
  t.equal((await get(port, '/readyz')).status, 200, 'no checks: ready');

  const err = await startAdminServer({ host: '127.0.0.1', port }, new Metrics(register, new StatsRegistry()), { checks: () => ({}) }).catch((e: unknown) => e);
  t.match(err, { code: 'EADDRINUSE' }, 'the address is taken: the start rejects');
  server.closeAllConnections();
});

// ---- the deployment's rules and dashboard against the code ----

void t.test('deploy/: each alert has a runbook section; the write functions are the ones the code counts', (t) => {
  const root = path.join(import.meta.dirname, '..');
  const rules = (YAML.parse(fs.readFileSync(path.join(root, 'deploy/alerts.yml'), 'utf8')) as { groups: { rules: { alert: string; expr: string; annotations: Record<string, string> }[] }[] }).groups.flatMap((g) => g.rules);
  // GitHub's anchors: a heading in lower case.
  const anchors = new Set([...fs.readFileSync(path.join(root, 'docs/runbook.md'), 'utf8').matchAll(/^## (\S+)$/gm)].map((m) => m[1]!.toLowerCase()));
  t.equal(anchors.size, rules.length, 'one section per alert');
  for (const r of rules) t.equal(r.annotations.runbook_url, `docs/runbook.md#${r.alert.toLowerCase()}`, `${r.alert}: its runbook_url`);
  for (const r of rules) t.ok(anchors.has(r.alert.toLowerCase()), `${r.alert}: a section in docs/runbook.md`);

  const writes = WRITE_FUNCTION_CODES.map(functionLabel).sort();
  t.equal(writes.length, 7);
  const inAlert = /function=~"([^"]+)"/.exec(rules.find((r) => r.alert === 'PlcguardWriteDenied')!.expr)![1]!.split('|').sort();
  t.strictSame(inAlert, writes, 'PlcguardWriteDenied: the write functions of proxy/stats.ts');
  const dashboard = fs.readFileSync(path.join(root, 'deploy/grafana/dashboards/plcguard.json'), 'utf8');
  const inDashboard = /function=~\\"([^"\\]+)\\"/.exec(dashboard)![1]!.split('|').sort();
  t.strictSame(inDashboard, writes, 'the dashboard\'s denied writes: the same');
  t.end();
});
