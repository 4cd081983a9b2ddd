// The benchmark harness, briefly, so it never rots: `bench/run.js --quick` runs every scenario
// through every path once, and every response must verify. No performance thresholds here: timing
// on a CI machine says nothing; the numbers come from `npm run bench` (bench/RESULTS.md).
// Runs the compiled harness (dist/, built by `npm ci`'s prepare step), as `npm run bench` does.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import type { BenchResults } from '../bench/report.js';
import { runToEnd, type Finished } from '../bench/lib/process.js';
import { ROOT, binaryEnv } from './fixtures/binary.js';

const RUN = path.join(ROOT, 'dist/bench/run.js');
/** The quick run takes ~10 s on 2 cores; a slow shared CI machine gets plenty more. */
const SMOKE_TIMEOUT_MS = 90_000;
const QUICK_IDLE_CONNECTIONS = 100;

const SCENARIO_IDS = ['latency-1x1', 'conns-4x1', 'throughput-16x8', 'rules-1000-16x8', 'deny-10pct-16x8', 'learn-16x8', 'metrics-16x8', 'sharing-16x8', 'hmi-1x50hz', 'hmi-10x50hz'];
/** haproxy joins the HMI-rate scenarios where it is installed (not in CI). */
const HAPROXY = spawnSync('haproxy', ['-v'], { stdio: 'ignore' }).status === 0;
/** Paths of the scenarios that don't run direct, relay and plcguard. */
const PATHS: Record<string, string[]> = {
  'rules-1000-16x8': ['direct', 'relay', 'plcguard', 'plcguard-1000'],
  'learn-16x8': ['direct', 'relay', 'plcguard-learn'],
  'sharing-16x8': ['direct', 'relay', 'plcguard', 'plcguard-shared'],
  ...(HAPROXY ? { 'hmi-1x50hz': ['direct', 'relay', 'plcguard', 'haproxy'], 'hmi-10x50hz': ['direct', 'relay', 'plcguard', 'haproxy'] } : {}),
};
const TARGET_IDS = [
  'throughput',
  'latency',
  'cpu',
  'large-policy',
  'learn',
  'idle-memory',
  'rss-bounded',
  'hmi-vs-relay',
  'hmi-p99',
  'plant-cpu',
  'plant-rss',
  'plant-p99',
  'plant-startup',
  'plant-reload',
];
/** The quick plant (bench/plant.ts QUICK_PLANT): 20 devices × 3 clients. */
const QUICK_PLANT_DEVICES = 20;
const QUICK_PLANT_CLIENTS = 60;

function runQuick(out: string): Promise<Finished> {
  // The bench's processes are measured, not covered: tap would otherwise collect coverage in every
  // process they start and hold bench/ (which this smoke can't cover) to the 100% check. SIGINT at
  // the timeout lets the harness stop its own children before it exits.
  return runToEnd(process.execPath, [RUN, '--quick', '--out', out], { cwd: ROOT, env: binaryEnv(), stopAfter: { ms: SMOKE_TIMEOUT_MS, signal: 'SIGINT' } });
}

void t.test('bench --quick: every scenario and path runs and every response verifies', async (t) => {
  t.ok(fs.existsSync(RUN), `${path.relative(ROOT, RUN)} exists (npm run build)`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'plcguard-bench-smoke-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const out = path.join(dir, 'results.json');

  const run = await runQuick(out);
  t.equal(run.code, 0, 'exits 0', { stderr: run.stderr.slice(-4000) });
  t.match(run.stdout, /^targets:$/m, 'prints the targets');
  t.match(run.stdout, /^verification: .* 0 errors — OK$/m, 'prints the verification line');

  const r = JSON.parse(fs.readFileSync(out, 'utf8')) as BenchResults;
  t.equal(r.schema, 1, 'results schema 1');
  t.equal(r.quick, true);
  t.equal(r.plcguard.included, true, 'plcguard was measured', { note: r.plcguard.note });
  t.ok(r.machine.nproc >= 1 && r.machine.node.startsWith('v'), 'machine described');
  t.same(
    r.scenarios.map((s) => s.id),
    SCENARIO_IDS,
    'every scenario ran',
  );

  for (const s of r.scenarios) {
    const paced = s.id.startsWith('hmi-');
    const expected = PATHS[s.id] ?? ['direct', 'relay', 'plcguard'];
    t.same(
      s.paths.map((p) => p.path),
      expected,
      `${s.id}: every path ran`,
    );
    for (const p of s.paths) {
      const what = `${s.id}/${p.path}`;
      t.ok(p.rounds >= 1, `${what}: ${p.rounds} rounds measured`);
      t.ok(p.requestsPerSecond > 0, `${what}: throughput measured (${p.requestsPerSecond} req/s)`);
      t.ok(p.p50Us > 0 && p.p999Us >= p.p50Us, `${what}: latency measured (p50 ${p.p50Us} µs, p99.9 ${p.p999Us} µs)`);
      t.equal(p.errors, 0, `${what}: no errors`);
      t.ok(p.sent > 0 && p.verified === p.sent, `${what}: every response verified (${p.verified}/${p.sent})`);
      t.equal(typeof p.plcCores, 'number', `${what}: PLC CPU measured`);
      if (p.path !== 'direct') t.ok(p.proxyUsPerRequest !== null && p.proxyPeakRssBytes !== null, `${what}: proxy CPU and RSS measured`);
      // Paced: every round's polls pooled (the window's verified responses, each one sample).
      if (paced) t.ok(p.pooled !== null && p.pooled.samples > 0 && p.pooled.p999Us >= p.pooled.p50Us, `${what}: polls pooled`);
      else t.equal(p.pooled, null, `${what}: closed loop, nothing pooled`);
    }
    t.same(
      s.added.map((a) => a.path),
      paced ? expected.slice(1) : [],
      `${s.id}: added latency over direct for every proxy when paced`,
    );
  }
  const deny = r.scenarios.find((s) => s.id === 'deny-10pct-16x8')!;
  t.ok(deny.paths.find((p) => p.path === 'plcguard')!.deniedVerified > 0, 'denied requests got plcguard\u2019s exact exception reply');
  t.equal(deny.paths.find((p) => p.path === 'relay')!.deniedVerified, 0, 'the relay denies nothing');
  const scrapes = r.scenarios.find((s) => s.id === 'metrics-16x8')!.paths.find((p) => p.path === 'plcguard')!.scrapes;
  t.ok(scrapes !== null && scrapes.count >= 1 && scrapes.failures === 0, '/metrics scraped while loaded');
  t.ok(
    r.scenarios.every((s) => s.comparisons.some((c) => c.path === (s.id === 'learn-16x8' ? 'plcguard-learn' : 'plcguard') && c.against === 'relay')),
    'plcguard compared with the relay in every scenario',
  );

  t.same(
    r.idle.map((i) => [i.path, i.connections, i.errors]),
    [
      ['relay', QUICK_IDLE_CONNECTIONS, 0],
      ['plcguard', QUICK_IDLE_CONNECTIONS, 0],
    ],
    'idle connections opened to both proxies',
  );
  t.same(
    r.targets.map((x) => x.id),
    TARGET_IDS,
    'every target evaluated',
  );
  t.ok(
    r.targets.every((x) => x.pass === null || typeof x.pass === 'boolean'),
    'targets are PASS, FAIL or n/a (no thresholds asserted here)',
  );
  const plant = r.plant;
  t.ok(plant !== null, 'the plant ran');
  if (plant !== null) {
    t.same([plant.devices, plant.clients], [QUICK_PLANT_DEVICES, QUICK_PLANT_CLIENTS], 'plant: 20 devices, 60 clients');
    for (const [name, x] of [
      ['direct', plant.direct],
      ['pipe relay', plant.relay!],
      ['plcguard', plant.plcguard],
      ['plcguard with the reload', plant.reloadPhase],
    ] as const) {
      t.equal(x.errors, 0, `plant ${name}: no errors`, { samples: x.errorSamples });
      t.ok(x.sent > 0 && x.verified === x.sent, `plant ${name}: every answer verified (${x.verified}/${x.sent})`);
    }
    t.equal(plant.reloadVerifiedDevices, QUICK_PLANT_DEVICES, 'plant: every device answered per the new policy after the live change');
    t.ok(plant.clean, 'plant: nothing dropped across the reload');
    t.ok(plant.startupSeconds > 0 && plant.reloadSeconds > 0 && plant.rssPeakBytes > 0 && plant.plcguard.proxyCores !== null, 'plant: startup, reload, RSS and CPU measured');
    t.ok(plant.oneDeviceReloadSeconds > 0, 'plant: the change to one device measured too');
    t.same(
      [plant.direct.scrapes, plant.plcguard.scrapes?.failures, plant.reloadPhase.scrapes],
      [null, 0, null],
      "plant: /metrics scraped in plcguard's steady window (not direct, not around the reload), no scrape failed",
    );
    t.ok(plant.plcguard.scrapes!.count >= 1, 'plant: a scrape in the steady window at least');
    t.same(
      [plant.upstreamConnections, plant.plcConnections, plant.plcConnectionsPerEndpoint],
      [null, QUICK_PLANT_CLIENTS, QUICK_PLANT_CLIENTS / QUICK_PLANT_DEVICES],
      'plant: without sharing, a PLC connection per client',
    );
  }
  t.ok(r.verification.allVerified && r.verification.errors === 0, 'all responses verified, no errors');
  t.equal(r.verification.sent, r.verification.verified);
  t.ok(r.plc.requestsServed > 0, 'the PLC counted what it served');
  t.same(r.discarded, [], 'quick mode repeats nothing');
  t.equal(
    r.runs.length,
    r.scenarios.reduce((n, s) => n + s.paths.length, 0),
    'one run record per scenario and path',
  );
});
