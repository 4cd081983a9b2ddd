// End-to-end check of the observability deployment (`npm run test:e2e`; .ci/run runs it too): a
// real Prometheus (Debian's `prometheus` package) scrapes a real plcguard under simulated HMI
// traffic, all on 127.0.0.1:
//
//   redis-server ← `plcguard policy push` (deploy/compose-policy.yaml, rewritten for loopback)
//   plcguard hmi → plcguard run --redis … --admin … → plcguard plc
//   prometheus (deploy/prometheus.yml: target, intervals and rule file path rewritten)
//
// the deployment's own path (Redis mode, a pushed policy), the built CLI (dist/: run
// `npm run build` first; the npm script does), then:
//   1. promtool checks the generated config and deploy/alerts.yml, and runs deploy/alerts.test.yml;
//   2. the dashboard (deploy/grafana/dashboards/plcguard.json) is importable into any Grafana: its
//      datasource is the input DS_PROMETHEUS everywhere (and a datasource variable of that name,
//      for file provisioning); every query of every panel and variable, with $instance, $device,
//      $__rate_interval and $__range filled in, is evaluated through Prometheus' HTTP API and must
//      return finite values, and the main panels the values the traffic implies;
//   3. every alert rule evaluates without error; under this traffic only PlcguardWriteDenied holds
//      (the HMI's denied writes are the point of the demo) and nothing else fires;
//   4. faults, one after another, make their alert's expression hold: a burst of denied writes
//      (PlcguardDenialSpike), an invalid policy version in Redis (PlcguardPolicyReloadFailed), the
//      policy in monitor mode (PlcguardMonitorWouldDeny), the PLC killed (PlcguardPlcUnreachable),
//      a policy with no devices (PlcguardNotReady), Redis killed (PlcguardRedisDown), plcguard
//      stopped (PlcguardDown). The `for:` durations and the other alerts (PlcguardNoPolicy,
//      PlcguardAddedLatencyHigh, PlcguardPolicyMismatch, which needs instances on different
//      policies) are covered by the promtool unit tests.
// Every wait is a bounded poll of a condition or an event; every process is killed at the end, and
// at exit if the run dies first.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import YAML from 'yaml';
import { PolicyStore, RedisConnection } from '../../policy/store.js';

import { RawClient, req } from '../fixtures/raw-client.js';
import { startRedis } from '../fixtures/redis.js';
import { freePort } from '../../bench/lib/net.js';
import { PLCGUARD_MAIN as MAIN, Proc, ROOT, startPlcguard } from '../../bench/lib/process.js';
import { until, within } from '../../bench/lib/wait.js';
import { httpGet } from '../../bench/lib/http.js';
const DEPLOY = path.join(ROOT, 'deploy');
const DASHBOARD = path.join(DEPLOY, 'grafana/dashboards/plcguard.json');
const DATASOURCES = path.join(DEPLOY, 'grafana/provisioning/datasources/prometheus.yml');
const VERSION = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

/** The compose policy's device. */
const DEVICE = 'boiler';
/** Scrape and rule evaluation interval here (the deployment says 5 s). */
const SCRAPE_INTERVAL = '1s';
/** Grafana's $__rate_interval for a 1 s scrape interval is 4 s; a little more is steadier. */
const RATE_INTERVAL = '5s';
/** The dashboard's time range ($__range). */
const RANGE = '1m';
/** Scrapes Prometheus must have of plcguard before the panels are queried. */
const SCRAPES_BEFORE_QUERIES = 6;
/** HMI: a request every 25 ms, a denied write every 20th: 40 requests/s, 2 denials/s. */
const HMI_INTERVAL_MS = 25;
const HMI_DENY_EVERY = 20;
/** Denied writes in the burst: over PlcguardDenialSpike's 5/s for its 2 minute window. */
const DENIAL_BURST = 3000;
/**
 * PlcguardPlcUnreachable looks back a minute for an answered request; here the PLC dies seconds
 * before the check, so that one rule is evaluated with this window instead.
 */
const FAULT_WINDOWS: Record<string, [string, string]> = { PlcguardPlcUnreachable: ['[1m]', '[5s]'] };
/** plcguard retries a dead PLC at least this often here (policy limit), so errors keep coming. */
const RECONNECT_BACKOFF_MAX_MS = 500;
/**
 * Rules whose condition a busy machine alone can make hold for a few seconds: a p99 over a few
 * hundred samples takes in every scheduling hiccup of a shared CI machine, which is why such a rule
 * waits 5 minutes before it fires. Here they must evaluate and not fire, but may be pending.
 */
const LOAD_DEPENDENT = new Set(['PlcguardAddedLatencyHigh']);
/** Rules the HMI's traffic makes hold: its denied writes (a denied write every HMI_DENY_EVERY requests). */
const UNDER_TRAFFIC = new Set(['PlcguardWriteDenied']);
/** Prometheus is polled no more often than this: each poll is a query or a scrape. */
const POLL_MS = 250;
const START_TIMEOUT_MS = 20_000;
const SCRAPES_TIMEOUT_MS = 30_000;
const FAULT_TIMEOUT_MS = 20_000;

/** Below the runner's --timeout (package.json), so the teardowns run before it kills this process. */
t.setTimeout(100_000);

if (!fs.existsSync(MAIN)) throw new Error(`${MAIN} is missing: run \`npm run build\` first (npm run test:e2e does)`);
for (const tool of ['prometheus', 'promtool', 'redis-server']) {
  if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) throw new Error(`${tool} is not installed (Debian: apt-get install prometheus redis-server)`);
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'plcguard-e2e-'));

// ---- processes ----

/** A child process that is killed at the end of the run, after a failure or timeout too. */
function started(p: Proc): Proc {
  // At once, before tap's runner gives up on us.
  t.teardown(() => p.stop('SIGKILL'));
  return p;
}

function plcguard(name: string, ...args: string[]): Proc {
  return started(startPlcguard(name, args));
}

function run(command: string, args: string[]): { code: number | null; output: string } {
  const r = spawnSync(command, args, { cwd: ROOT, encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, output: `${r.stdout}${r.stderr}` };
}

// ---- Prometheus' HTTP API ----

interface Series {
  metric: Record<string, string>;
  value: number;
}

let promPort = 0;

/** Evaluates `expr` now; the result as series (a scalar is one series without labels). */
async function query(expr: string): Promise<Series[]> {
  const res = await within(fetch(`http://127.0.0.1:${promPort}/api/v1/query?query=${encodeURIComponent(expr)}`), `query ${expr}`);
  const body = (await res.json()) as {
    status: string;
    error?: string;
    data?: { resultType: string; result: { metric: Record<string, string>; value: [number, string] }[] | [number, string] };
  };
  if (body.status !== 'success' || !body.data) throw new Error(`${expr}: ${body.error ?? res.status}`);
  const r = body.data.result;
  if (body.data.resultType === 'scalar') return [{ metric: {}, value: Number((r as [number, string])[1]) }];
  return (r as { metric: Record<string, string>; value: [number, string] }[]).map((s) => ({ metric: s.metric, value: Number(s.value[1]) }));
}

async function promGet<T>(url: string): Promise<T> {
  const res = await within(fetch(`http://127.0.0.1:${promPort}${url}`), url);
  return (await res.json()) as T;
}

// ---- the plant ----

const redis = await startRedis();
t.teardown(() => redis.kill());
const [plcPort, listenPort, adminPort] = await Promise.all([freePort(), freePort(), freePort()]);
promPort = await freePort();

const plc = plcguard('plc', 'plc', '--listen', `127.0.0.1:${plcPort}`, '--unit', '1');
await plc.waitForLine(/simulated PLC listening on/, START_TIMEOUT_MS);

// The compose policy on loopback: the HMI (127.0.0.1) may read and write setpoints; any other
// source is refused.
const policy = YAML.parseDocument(fs.readFileSync(path.join(DEPLOY, 'compose-policy.yaml'), 'utf8'));
const device = policy.getIn(['devices', 0]) as YAML.YAMLMap;
if (device.get('name') !== DEVICE) throw new Error(`deploy/compose-policy.yaml: expected device ${DEVICE} first`);
device.set('listen', `127.0.0.1:${listenPort}`);
device.set('upstream', `127.0.0.1:${plcPort}`);
device.set('limits', { reconnect_backoff_max_ms: RECONNECT_BACKOFF_MAX_MS });
for (const rule of (device.get('rules') as YAML.YAMLSeq<YAML.YAMLMap>).items) rule.set('sources', ['127.0.0.1']);
const policyFile = path.join(dir, 'policy.yaml');
fs.writeFileSync(policyFile, policy.toString());
const push = run(process.execPath, [MAIN, 'policy', 'push', policyFile, '--redis', redis.url, '--author', 'e2e', '--message', 'e2e']);
if (push.code !== 0) throw new Error(`policy push failed:\n${push.output}`);
const POLICY_SHA256 = createHash('sha256').update(fs.readFileSync(policyFile)).digest('hex');

const proxy = plcguard('plcguard', 'run', '--redis', redis.url, '--admin', `127.0.0.1:${adminPort}`);
await proxy.waitForEvent('policy_loaded', START_TIMEOUT_MS);
const hmi = plcguard('hmi', 'hmi', `127.0.0.1:${listenPort}`, '--interval', String(HMI_INTERVAL_MS), '--deny-every', String(HMI_DENY_EVERY));
await hmi.waitForEvent('hmi_connected', START_TIMEOUT_MS);

const promConfig = YAML.parse(fs.readFileSync(path.join(DEPLOY, 'prometheus.yml'), 'utf8')) as {
  global: Record<string, string>;
  rule_files: string[];
  scrape_configs: { job_name: string; static_configs: { targets: string[] }[] }[];
};
const job = promConfig.scrape_configs.find((c) => c.job_name === 'plcguard');
if (!job) throw new Error('deploy/prometheus.yml: no job "plcguard"');
job.static_configs = [{ targets: [`127.0.0.1:${adminPort}`] }];
promConfig.global.scrape_interval = SCRAPE_INTERVAL;
promConfig.global.evaluation_interval = SCRAPE_INTERVAL;
promConfig.rule_files = promConfig.rule_files.map((f) => path.resolve(DEPLOY, f));
const promConfigFile = path.join(dir, 'prometheus.yml');
fs.writeFileSync(promConfigFile, YAML.stringify(promConfig));
const prometheus = started(
  new Proc('prometheus', 'prometheus', [`--config.file=${promConfigFile}`, `--storage.tsdb.path=${path.join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${promPort}`], {
    cwd: ROOT,
  }),
);
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

await until(
  async () => {
    if (prometheus.child.exitCode !== null) throw new Error(`prometheus exited:\n${prometheus.tail()}`);
    return (await httpGet(promPort, '/-/ready').catch(() => null))?.status === 200;
  },
  'Prometheus to be ready',
  START_TIMEOUT_MS,
  POLL_MS,
);
await until(async () => (await query(`up{job="plcguard"} == 1`)).length > 0, 'a first scrape of plcguard', SCRAPES_TIMEOUT_MS, POLL_MS);
// One refused connection (a source the policy doesn't list) once Prometheus has seen the counter
// at 0: an increase before the first scrape is invisible to increase() and rate().
const stranger = await RawClient.connect(listenPort, '127.0.0.2');
await within(stranger.closed, 'the stranger to be refused', START_TIMEOUT_MS);
await until(
  async () => {
    const [n] = await query(`count_over_time(up{job="plcguard"}[1m])`);
    const refused = await query(`plcguard_refused_connections_total{reason="source_not_allowed"} > 0`);
    return n !== undefined && n.value >= SCRAPES_BEFORE_QUERIES && refused.length > 0;
  },
  `${SCRAPES_BEFORE_QUERIES} scrapes of plcguard, the last after the refusal`,
  SCRAPES_TIMEOUT_MS,
  POLL_MS,
);

// ---- checks ----

void t.test('promtool: the generated config, the rules and their unit tests', (t) => {
  for (const [args, what] of [
    [['check', 'config', promConfigFile], 'check config (and the rule file it names)'],
    [['check', 'rules', path.join(DEPLOY, 'alerts.yml')], 'check rules deploy/alerts.yml'],
    [['test', 'rules', path.join(DEPLOY, 'alerts.test.yml')], 'test rules deploy/alerts.test.yml'],
  ] as [string[], string][]) {
    const r = run('promtool', args);
    t.equal(r.code, 0, `promtool ${what}`, { output: r.output });
  }
  t.end();
});

interface Target {
  panel: string;
  expr: string;
  datasource: string | undefined;
}

interface DataSourceRef {
  type?: string;
  uid?: string;
}

interface Panel {
  title: string;
  datasource?: DataSourceRef;
  targets?: { expr: string; datasource?: DataSourceRef }[];
  panels?: Panel[];
}

interface Variable {
  name: string;
  type: string;
  query: string;
  definition?: string;
  datasource?: DataSourceRef;
  allValue?: string;
}

const dashboard = JSON.parse(fs.readFileSync(DASHBOARD, 'utf8')) as {
  __inputs: { name: string; type: string; pluginId: string }[];
  panels: Panel[];
  templating: { list: Variable[] };
};

/** Every panel's and every query's datasource: the import input, whatever the Grafana calls its Prometheus. */
const INPUT_DATASOURCE = { type: 'prometheus', uid: '${DS_PROMETHEUS}' };

function targets(panels: Panel[]): Target[] {
  return panels.flatMap((p) => [
    ...(p.targets ?? []).map((x) => ({ panel: p.title, expr: x.expr, datasource: JSON.stringify([x.datasource, p.datasource]) })),
    ...targets(p.panels ?? []),
  ]);
}

/** The instance as Prometheus labels plcguard's target. */
const INSTANCE = `127.0.0.1:${adminPort}`;
const fill = (expr: string): string =>
  expr
    .replaceAll('$instance', INSTANCE)
    .replaceAll('$device', DEVICE)
    .replaceAll('$__rate_interval', RATE_INTERVAL)
    .replaceAll('$__range', RANGE);

void t.test('the dashboard imports into any Grafana: its datasource is an input', (t) => {
  t.same(
    dashboard.__inputs.map(({ name, type, pluginId }) => ({ name, type, pluginId })),
    [{ name: 'DS_PROMETHEUS', type: 'datasource', pluginId: 'prometheus' }],
  );
  // File provisioning doesn't fill __inputs in: a datasource variable of the same name makes
  // ${DS_PROMETHEUS} resolve there too (to the default Prometheus).
  t.match(dashboard.templating.list[0], { name: 'DS_PROMETHEUS', type: 'datasource', query: 'prometheus' });
  const provisioned = (YAML.parse(fs.readFileSync(DATASOURCES, 'utf8')) as { datasources: { uid: string; isDefault: boolean }[] }).datasources;
  t.equal(provisioned.filter((d) => d.isDefault).length, 1, "the demo's Prometheus is the default datasource");
  t.notOk(fs.readFileSync(DASHBOARD, 'utf8').includes(provisioned[0]!.uid), "no reference to the demo's own datasource");
  for (const v of dashboard.templating.list.filter((v) => v.type === 'query')) t.same(v.datasource, INPUT_DATASOURCE, `variable ${v.name}`);
  t.same(
    dashboard.templating.list.map((v) => v.name),
    ['DS_PROMETHEUS', 'instance', 'device'],
    'an instance variable beside device',
  );
  t.equal(dashboard.templating.list[1]!.allValue, undefined, "instance's All is the list of plcguard instances: the process metrics' names are every job's");
  t.end();
});

void t.test('every dashboard panel query returns data', async (t) => {
  const all = targets(dashboard.panels);
  t.ok(all.length >= 28, `${all.length} queries`);
  for (const v of dashboard.templating.list.filter((v) => v.type === 'query')) {
    const m = /^label_values\((\w+(?:\{[^}]*\})?), (\w+)\)$/.exec(v.definition ?? '');
    t.ok(m, `variable ${v.name}: label_values(selector, label)`);
    const values = await promGet<{ data: string[] }>(`/api/v1/label/${m![2]}/values?match[]=${encodeURIComponent(fill(m![1]!))}`);
    t.ok(values.data.includes(v.name === 'instance' ? INSTANCE : DEVICE), `variable ${v.name} offers this ${v.name}`, { values: values.data });
  }
  const results = new Map<string, Series[]>();
  for (const x of all) {
    t.equal(x.datasource, JSON.stringify([INPUT_DATASOURCE, INPUT_DATASOURCE]), `${x.panel}: the input datasource`);
    const series = await query(fill(x.expr));
    results.set(x.expr, series);
    t.ok(series.length > 0, `${x.panel}: ${x.expr} returns data`);
    t.ok(series.every((s) => Number.isFinite(s.value)), `${x.panel}: finite values`, { series });
  }

  // What the traffic implies, panel by panel.
  const of = (title: string, i = 0): Series[] => results.get(all.filter((x) => x.panel === title)[i]!.expr)!;
  const value = (series: Series[], label: string, v: string): number | undefined => series.find((s) => s.metric[label] === v)?.value;
  t.equal(value(of('plcguard up'), 'job', 'plcguard'), 1);
  t.equal(of('Redis up')[0]?.value, 1);
  t.equal(of('Policy in force')[0]?.value, 1);
  t.equal(of('Policy version')[0]?.value, 1, 'version 1: the one pushed');
  t.ok(of('Last policy reload')[0]!.value > 0);
  const decisions = of('Request rate by decision');
  t.ok(value(decisions, 'decision', 'allowed')! > 0 && value(decisions, 'decision', 'denied')! > 0, 'allowed and denied requests flow', { decisions });
  const fns = of('Requests by function');
  for (const fn of ['read_holding_registers', 'read_input_registers', 'read_coils', 'read_discrete_inputs', 'write_single_register']) {
    t.ok(value(fns, 'function', fn)! > 0, `the HMI uses ${fn}`);
  }
  t.equal(value(of('Connections', 0), 'device', DEVICE), 1, 'one client: the HMI');
  t.equal(value(of('Connections', 1), 'device', DEVICE), 1, 'one PLC connection');
  const reasons = of('Denials by reason');
  t.ok(value(reasons, 'reason', 'address_not_allowed')! > 0 && value(reasons, 'reason', 'value_not_allowed')! > 0, "the HMI's denied writes, by reason");
  const top = of('Top denial reasons').map((s) => `${s.metric.decision} ${s.metric.reason}`);
  t.same(top.sort(), ['denied address_not_allowed', 'denied value_not_allowed'], 'top reasons: the denied requests', { top });
  // The refused stranger counted once: as a refusal, not as a denial too.
  t.ok((await query(`increase(plcguard_refused_connections_total{reason="source_not_allowed"}[${RANGE}])`))[0]!.value > 0, 'the stranger: a refusal');
  t.equal((await query(`plcguard_denials_total{reason="source_not_allowed", decision="denied"}`))[0]!.value, 0, 'and no denial');
  t.ok(of('Denied writes')[0]!.value > 0, "the HMI's denied writes");
  t.equal(of('Would-deny (monitor mode)')[0]!.value, 0, 'enforce mode: nothing would-deny');
  t.equal(value(of('Ready'), 'instance', INSTANCE), 1);
  t.same(
    of('Policy by instance').map((s) => [s.metric.instance, s.metric.sha256, s.value]),
    [[INSTANCE, POLICY_SHA256, 1]],
    'the pushed text, version 1',
  );
  const bytes = of('Bytes');
  t.ok(value(bytes, 'direction', 'from_client')! > 0 && value(bytes, 'direction', 'to_client')! > 0, 'bytes both ways');
  t.equal(value(of('Client connections opened'), 'device', DEVICE), 0, 'the HMI stays connected');
  t.ok(of('CPU')[0]!.value > 0 && of('Memory')[0]!.value > 0, 'the standard process metrics');
  for (const title of ['Added by plcguard (p50, p99)', 'Client round trip (p50, p99)', 'PLC response time (p50, p99)']) {
    for (const i of [0, 1]) {
      const q = of(title, i)[0]!.value;
      t.ok(q > 0 && q < 1, `${title} ${i === 0 ? 'p50' : 'p99'}: ${(q * 1e6).toFixed(0)} µs`);
    }
  }
  t.ok(of('Added by plcguard (p50, p99)', 0)[0]!.value < of('Client round trip (p50, p99)', 0)[0]!.value, 'plcguard adds less than the whole round trip');
  // The compose device shares one PLC connection: one HMI, one request at a time, so nothing
  // waits for long and at most that one request holds an id.
  t.ok(value(of('Queue depth and transaction ids taken', 0), 'device', DEVICE)! <= 1, 'queue depth: at most the HMI\'s one request');
  t.ok(value(of('Queue depth and transaction ids taken', 1), 'device', DEVICE)! <= 1, 'ids taken: at most the one in flight');
  for (const i of [0, 1]) {
    const q = of('Queue wait (p50, p99)', i)[0]!.value;
    t.ok(q > 0 && q < 1, `Queue wait ${i === 0 ? 'p50' : 'p99'}: ${(q * 1e6).toFixed(0)} µs`);
  }
  t.equal(value(of('Abandoned answers'), 'device', DEVICE), 0, 'no client left with an answer outstanding');
  t.equal(of('Build')[0]?.metric.version, VERSION);
});

interface Rule {
  alert: string;
  expr: string;
}

const rules = (YAML.parse(fs.readFileSync(path.join(DEPLOY, 'alerts.yml'), 'utf8')) as { groups: { rules: Rule[] }[] }).groups.flatMap((g) => g.rules);
const faultExpr = (rule: Rule): string => {
  const w = FAULT_WINDOWS[rule.alert];
  return w ? rule.expr.replaceAll(w[0], w[1]) : rule.expr;
};
const holds = async (name: string): Promise<boolean> => (await query(faultExpr(rules.find((r) => r.alert === name)!))).length > 0;

void t.test("alert rules: loaded and healthy; under the HMI's traffic only its denied writes alert", async (t) => {
  t.ok(rules.length >= 11, `${rules.length} alert rules`);
  const loaded = await promGet<{ data: { groups: { rules: { name: string; health: string; lastError?: string }[] }[] } }>('/api/v1/rules?type=alert');
  const byName = new Map(loaded.data.groups.flatMap((g) => g.rules).map((r) => [r.name, r]));
  for (const rule of rules) {
    t.match(byName.get(rule.alert), { health: 'ok' }, `${rule.alert}: loaded, evaluates without error`);
    const now = await query(rule.expr);
    if (LOAD_DEPENDENT.has(rule.alert)) {
      t.pass(`${rule.alert}: evaluates (${now.length === 0 ? 'quiet' : `holds now: ${JSON.stringify(now)}`})`);
      continue;
    }
    if (UNDER_TRAFFIC.has(rule.alert)) {
      t.same(now.map((s) => s.metric.device), [DEVICE], `${rule.alert}: holds for ${DEVICE}`);
      continue;
    }
    t.same(now, [], `${rule.alert}: quiet`);
    if (FAULT_WINDOWS[rule.alert]) t.same(await query(faultExpr(rule)), [], `${rule.alert}: quiet with the window the fault check uses`);
  }
  const alerts = await promGet<{ data: { alerts: { labels: { alertname: string; device?: string }; state: string }[] } }>('/api/v1/alerts');
  const expected = (a: { labels: { alertname: string } }): boolean => UNDER_TRAFFIC.has(a.labels.alertname);
  t.same(alerts.data.alerts.filter((a) => a.state === 'firing' && !expected(a)), [], 'nothing else firing');
  t.same(alerts.data.alerts.filter((a) => !LOAD_DEPENDENT.has(a.labels.alertname) && !expected(a)), [], 'nothing else pending but what load can cause');
  await until(
    async () => (await promGet<typeof alerts>('/api/v1/alerts')).data.alerts.some((a) => a.labels.alertname === 'PlcguardWriteDenied' && a.state === 'firing'),
    'PlcguardWriteDenied firing (no `for`: at its first evaluation)',
    FAULT_TIMEOUT_MS,
    POLL_MS,
  );
  t.pass('PlcguardWriteDenied fires on the first denied write');
});

void t.test('faults make their alerts hold', async (t) => {
  // A burst of denied writes from an allowed source.
  const c = await RawClient.connect(listenPort);
  c.send(Buffer.concat(Array.from({ length: DENIAL_BURST }, (_, i) => req(i & 0xffff, 1, [6, 0, 50, 0, 1]))));
  t.equal((await within(c.read(DENIAL_BURST), 'the burst to be answered', FAULT_TIMEOUT_MS)).length, DENIAL_BURST);
  c.close();
  // A version in Redis that isn't a policy (pushed past the CLI, which would refuse it).
  const r = new RedisConnection({ url: redis.url });
  await r.open();
  const pushes = new PolicyStore(r);
  await pushes.push('version: 1\ndevices: [', 'not-a-policy', new Map(), { author: 'e2e', message: 'invalid on purpose' });
  await proxy.waitForEvent('policy_rejected', START_TIMEOUT_MS);
  await until(() => holds('PlcguardDenialSpike'), 'PlcguardDenialSpike', FAULT_TIMEOUT_MS, POLL_MS);
  t.pass('PlcguardDenialSpike holds after the burst');
  await until(() => holds('PlcguardPolicyReloadFailed'), 'PlcguardPolicyReloadFailed', FAULT_TIMEOUT_MS, POLL_MS);
  t.pass('PlcguardPolicyReloadFailed holds after the invalid version');
  t.equal((await query('plcguard_policy_version'))[0]?.value, 1, 'the last good policy stays in force');
  // The same policy in monitor mode: the HMI's denied writes are forwarded, as would-denies.
  const monitor = `${fs.readFileSync(policyFile, 'utf8')}\ndefaults:\n  mode: monitor\n`;
  await pushes.push(monitor, createHash('sha256').update(monitor).digest('hex'), new Map(), { author: 'e2e', message: 'monitor mode' });
  await until(() => holds('PlcguardMonitorWouldDeny'), 'PlcguardMonitorWouldDeny', FAULT_TIMEOUT_MS, POLL_MS);
  t.pass('PlcguardMonitorWouldDeny holds with the policy in monitor mode');
  // The PLC dies.
  await plc.stop('SIGKILL');
  await until(() => holds('PlcguardPlcUnreachable'), 'PlcguardPlcUnreachable', FAULT_TIMEOUT_MS, POLL_MS);
  t.pass('PlcguardPlcUnreachable holds with the PLC dead');
  // A valid policy that serves nothing: no listener.
  const empty = 'version: 1\ndevices: []\n';
  await pushes.push(empty, createHash('sha256').update(empty).digest('hex'), new Map(), { author: 'e2e', message: 'no devices' });
  await until(() => holds('PlcguardNotReady'), 'PlcguardNotReady', FAULT_TIMEOUT_MS, POLL_MS);
  t.pass('PlcguardNotReady holds with no device listening');
  r.client.disconnect();

  await redis.kill();
  await until(() => holds('PlcguardRedisDown'), 'PlcguardRedisDown', FAULT_TIMEOUT_MS, POLL_MS);
  t.pass('PlcguardRedisDown holds with Redis dead');

  t.equal((await proxy.stop()).code, 0, 'plcguard exits 0 on SIGTERM');
  await until(() => holds('PlcguardDown'), 'PlcguardDown', FAULT_TIMEOUT_MS, POLL_MS);
  t.pass('PlcguardDown holds with plcguard stopped');
  t.equal((await hmi.stop()).code, 0, 'the HMI exits 0 on SIGTERM');
});
