// The benchmark harness, briefly, so it never rots: `bench/run.js --quick` runs every scenario
// through every path once, and every response must verify. No performance thresholds here: timing
// on a CI machine says nothing; the numbers come from `npm run bench` (bench/RESULTS.md).
// Runs the compiled harness (dist/, built by `npm ci`'s prepare step), as `npm run bench` does.
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

const SCENARIO_IDS = ['latency-1x1', 'conns-4x1', 'throughput-16x8', 'rules-1000-16x8', 'deny-10pct-16x8', 'learn-16x8', 'metrics-16x8', 'sharing-16x8'];
/** Paths of the scenarios that don't run direct, relay and plcguard. */
const PATHS: Record<string, string[]> = {
  'rules-1000-16x8': ['direct', 'relay', 'plcguard', 'plcguard-1000'],
  'learn-16x8': ['direct', 'relay', 'plcguard-learn'],
  'sharing-16x8': ['direct', 'relay', 'plcguard', 'plcguard-shared'],
};
const TARGET_IDS = ['throughput', 'latency', 'cpu', 'large-policy', 'learn', 'idle-memory', 'rss-bounded'];

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
    const expected = PATHS[s.id] ?? ['direct', 'relay', 'plcguard'];
    t.same(
      s.paths.map((p) => p.path),
      expected,
      `${s.id}: every path ran`,
    );
    for (const p of s.paths) {
      const what = `${s.id}/${p.path}`;
      t.ok(p.rounds >= 1 && p.requestsPerSecond > 0 && p.p50Us > 0 && p.p999Us >= p.p50Us, `${what}: throughput and latency measured`);
      t.equal(p.errors, 0, `${what}: no errors`);
      t.ok(p.sent > 0 && p.verified === p.sent, `${what}: every response verified (${p.verified}/${p.sent})`);
      t.equal(typeof p.plcCores, 'number', `${what}: PLC CPU measured`);
      if (p.path !== 'direct') t.ok(p.proxyUsPerRequest !== null && p.proxyPeakRssBytes !== null, `${what}: proxy CPU and RSS measured`);
    }
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
