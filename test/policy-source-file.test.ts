// The policy file source on its own: a change applies only once the file has settled (never half
// written), symlinks are followed wherever they lead and however they are swapped, and reload()
// reads the file now. Every text is a valid policy (what differs is a comment), and the parser
// records what it was given, so each test sees exactly which bytes would have been applied.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { FilePolicySource, type FileSourceOptions } from '../policy/source/file.js';
import { parsePolicy, type ParseResult } from '../policy/parse.js';
import { recordLogs, type LogRecorder } from './fixtures/logs.js';
import { until, within } from '../bench/lib/wait.js';

interface Followed extends LogRecorder {
  source: FilePolicySource;
  /** What start() read: the text, or the read error. */
  first: string;
  /** What was handed on since, in order: the texts, or the read errors. */
  delivered: string[];
  /** Waits until `n` things have been handed on in all. */
  deliveries(n: number, what: string): Promise<void>;
  /** The `reason` of every policy_change_held line, in order. */
  held(): unknown[];
}

function follow(t: Test, file: string, options?: FileSourceOptions): Followed {
  const texts = new Map<ParseResult, string>();
  const parse = (text: string, name: string): ParseResult => {
    const r = parsePolicy(text, name);
    texts.set(r, text);
    return r;
  };
  const describe = (r: ParseResult): string => texts.get(r) ?? r.errors.map((e) => e.format()).join('; ');
  const rec = recordLogs();
  const source = new FilePolicySource(file, parse, rec.logger, options);
  const delivered: string[] = [];
  const first = describe(source.start((r) => delivered.push(describe(r))));
  t.teardown(() => source.stop());
  return {
    ...rec,
    source,
    first,
    delivered,
    deliveries: (n, what) => until(() => delivered.length >= n, what),
    held: () => rec.logs.filter((l) => l.event === 'policy_change_held').map((l) => l.reason),
  };
}

function tempDir(t: Test): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'plcguard-src-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Replaces a file or a link whole: the new one under a temporary name, renamed over the old. */
function replace(file: string, make: (tmp: string) => void): void {
  const tmp = `${file}.tmp`;
  make(tmp);
  fs.renameSync(tmp, file);
}

/** A valid policy, told apart by its first line. */
const policy = (tag: string): string =>
  `# ${tag}\nversion: 1\ndevices:\n  - name: plc\n    listen: 127.0.0.1:1502\n    upstream: 127.0.0.1:502\n    rules: []\n`;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

void t.test('a file rewritten in place in two steps 0.5 s apart: only the whole of it is handed on', async (t) => {
  const file = path.join(tempDir(t), 'p.yaml');
  fs.writeFileSync(file, policy('old'));
  const f = follow(t, file);
  t.equal(f.first, policy('old'));
  // The writer: truncate and write the first half (a valid policy), the rest 0.5 s later. It runs
  // in this process, so its 0.5 s timer fires before the watcher's settle timer, due later.
  fs.writeFileSync(file, policy('new'));
  await sleep(500);
  fs.appendFileSync(file, '# the second half\n');
  await f.deliveries(1, 'the change');
  t.same(f.delivered, [`${policy('new')}# the second half\n`], 'never the first half alone');
  t.equal(f.held()[0], 'settling', 'the change was held until the file settled');
});

void t.test('a file that keeps changing is held and reported; it applies once it settles', async (t) => {
  const file = path.join(tempDir(t), 'p.yaml');
  fs.writeFileSync(file, policy('v0'));
  const f = follow(t, file, { settleBoundMs: 1000 });
  // A slow writer: a step every 300 ms, never still for the 1 s the file needs to settle.
  let n = 0;
  const seen = (reason: string): boolean => f.held().includes(reason);
  while (!(seen('changing') && seen('not_settled'))) {
    fs.appendFileSync(file, `# step ${++n}\n`);
    await sleep(300);
    if (n > 100) throw new Error(`held: ${JSON.stringify(f.held())}`);
  }
  t.same(f.delivered, [], 'nothing handed on while it changes');
  await f.deliveries(1, 'the settled file');
  t.same(f.delivered, [fs.readFileSync(file, 'utf8')], 'then the file as it ended');
  const held = f.held();
  t.equal(held[0], 'settling');
  t.equal(held.filter((r) => r === 'settling' || r === 'changing').length, 2, 'settling and changing once each per change');
  t.match(
    f.logs.find((l) => l.reason === 'not_settled'),
    { event: 'policy_change_held', source: file, reason: 'not_settled', settle_ms: 1000, waited_ms: Number },
  );
});

void t.test('a file saved unchanged is logged, not handed on; a deleted file is, once', async (t) => {
  const file = path.join(tempDir(t), 'p.yaml');
  fs.writeFileSync(file, policy('same'));
  const f = follow(t, file, { settleMs: 50 });
  fs.writeFileSync(file, policy('same'));
  await within(f.logged((l) => l.event === 'policy_unchanged'), 'policy_unchanged');
  t.match(f.logs.at(-1), { event: 'policy_unchanged', source: file });
  fs.rmSync(file);
  await f.deliveries(1, 'the deletion');
  t.match(f.delivered, [new RegExp(`^${file}: cannot read: ENOENT`)]);
});

void t.test('reload(): the file now, without waiting for it to settle, and even if unchanged', async (t) => {
  const file = path.join(tempDir(t), 'p.yaml');
  fs.writeFileSync(file, policy('a'));
  // A settle time no test waits for: only reload() can hand anything on.
  const f = follow(t, file, { settleMs: 600_000 });
  fs.writeFileSync(file, policy('b'));
  await within(f.logged((l) => l.event === 'policy_change_held'), 'the change seen');
  f.source.reload();
  t.same(f.delivered, [policy('b')], 'at once');
  f.source.reload();
  t.same(f.delivered, [policy('b'), policy('b')], 'unchanged, handed on again (a reload retries what failed outside the file)');
  fs.rmSync(file);
  f.source.reload();
  t.match(f.delivered[2], /cannot read: ENOENT/);
});

void t.test('a path that is a folder, or in a folder that does not exist: a read error', (t) => {
  const dir = tempDir(t);
  const folder = path.join(dir, 'folder');
  fs.mkdirSync(folder);
  t.match(follow(t, folder).first, new RegExp(`^${folder}: cannot read: EISDIR`));
  const missing = path.join(dir, 'nope', 'p.yaml');
  t.match(follow(t, missing).first, /cannot read: ENOENT/);
  t.end();
});

void t.test('a Kubernetes ConfigMap volume: each ..data swap is seen', async (t) => {
  const dir = tempDir(t);
  // The kubelet's layout: the files in a timestamped folder, ..data a link to it, the file a link
  // through ..data. An update writes a new folder and renames a new ..data link over the old.
  const publish = (stamp: string, text: string): void => {
    fs.mkdirSync(path.join(dir, stamp));
    fs.writeFileSync(path.join(dir, stamp, 'policy.yaml'), text);
    replace(path.join(dir, '..data'), (tmp) => fs.symlinkSync(stamp, tmp));
  };
  publish('..2026_05_01_10_00_00.1', policy('A'));
  fs.symlinkSync('..data/policy.yaml', path.join(dir, 'policy.yaml'));
  const f = follow(t, path.join(dir, 'policy.yaml'), { settleMs: 50 });
  t.equal(f.first, policy('A'));
  publish('..2026_05_01_10_05_00.2', policy('B'));
  fs.rmSync(path.join(dir, '..2026_05_01_10_00_00.1'), { recursive: true });
  await f.deliveries(1, 'the first swap');
  publish('..2026_05_01_10_10_00.3', policy('C'));
  fs.rmSync(path.join(dir, '..2026_05_01_10_05_00.2'), { recursive: true });
  await f.deliveries(2, 'the second swap');
  t.same(f.delivered, [policy('B'), policy('C')]);
});

void t.test('a link to a file in another folder: edits there are seen, and the link re-pointed', async (t) => {
  const dir = tempDir(t);
  for (const d of ['etc', 'srv', 'other']) fs.mkdirSync(path.join(dir, d));
  const link = path.join(dir, 'etc', 'policy.yaml');
  const target = path.join(dir, 'srv', 'plant.yaml');
  fs.writeFileSync(target, policy('A'));
  // Two hops: etc/policy.yaml → etc/current.yaml → ../srv/plant.yaml.
  fs.symlinkSync('current.yaml', link);
  fs.symlinkSync('../srv/plant.yaml', path.join(dir, 'etc', 'current.yaml'));
  const f = follow(t, link, { settleMs: 50 });
  t.equal(f.first, policy('A'));
  replace(target, (tmp) => fs.writeFileSync(tmp, policy('B')));
  await f.deliveries(1, 'the edit in the target folder');
  // The middle link re-pointed to a file in a third folder, then that file edited in place.
  const other = path.join(dir, 'other', 'plant.yaml');
  fs.writeFileSync(other, policy('C'));
  replace(path.join(dir, 'etc', 'current.yaml'), (tmp) => fs.symlinkSync(other, tmp));
  await f.deliveries(2, 'the re-pointed link');
  fs.writeFileSync(other, policy('D'));
  await f.deliveries(3, 'an edit in the new target folder');
  t.same(f.delivered, [policy('B'), policy('C'), policy('D')]);
});
