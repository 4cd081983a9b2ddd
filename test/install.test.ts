// The README's "Install as a service", minus systemctl: the release tarball from `npm pack`,
// installed with `npm install -g` into a prefix of its own (no clone, no npx), then the installed
// binary: --version, policy validate, a Modbus round trip through it in front of its own
// simulated PLC, and deploy/plcguard.service as installed through `systemd-analyze verify`.
// One pack and one install for the whole file: the install is the slow part (a few seconds from
// npm's cache, more from the registry).
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { ROOT, binaryEnv } from './fixtures/binary.js';
import { freePort as closedPort } from '../bench/lib/net.js';
import { within } from '../bench/lib/wait.js';
import { RawClient, hexOf, req } from './fixtures/raw-client.js';

interface PackageJson {
  version: string;
  files: string[];
  devDependencies: Record<string, string>;
}
const PKG = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as PackageJson;
/** The folders tsconfig.build.json compiles into dist/ that the package ships (not bench/). */
const SHIPPED_SOURCES = ['modbus', 'policy', 'proxy', 'cli', 'demo'];
/** Where the README installs to, and so the path deploy/plcguard.service starts. */
const README_BIN = '/usr/local/bin/plcguard';
/** Bounds of the two npm steps: packing reads the tree; installing may fetch from the registry. */
const PACK_MS = 30_000;
const INSTALL_MS = 90_000;

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'plcguard-install-'));
t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));
const PREFIX = path.join(tmp, 'prefix');
const BIN = path.join(PREFIX, 'bin/plcguard');
const INSTALLED = path.join(PREFIX, 'lib/node_modules/plcguard');

/**
 * As in a user's shell: without tap's coverage (binaryEnv) and without the npm_* variables of the
 * `npm test` this may run under (npm_config_prefix among them).
 */
function shellEnv(): NodeJS.ProcessEnv {
  const env = binaryEnv();
  for (const key of Object.keys(env)) if (key.startsWith('npm_')) delete env[key];
  return env;
}

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to its end within `ms` (killed past it); resolves its exit code and output. */
async function runToEnd(command: string, args: string[], cwd: string, ms = 10_000): Promise<Result> {
  const child = spawn(command, args, { cwd, env: shellEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const closed = new Promise<Result>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
  try {
    return await within(closed, `${command} ${args.join(' ')}`, ms);
  } finally {
    child.kill('SIGKILL');
  }
}

interface Running {
  child: ChildProcess;
  stdout: () => string;
  /** Resolves with the exit code and signal. */
  exited: Promise<[number | null, NodeJS.Signals | null]>;
}

/** Starts the installed plcguard with `args`; resolves once a stdout line matches `ready`. */
async function startInstalled(t: Test, args: string[], ready: RegExp): Promise<Running> {
  const child = spawn(BIN, args, { cwd: tmp, env: shellEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => void child.kill('SIGKILL'));
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  let out = '';
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  await within(
    new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (ready.test(out)) resolve();
      });
      void exited.then(([code]) => reject(new Error(`plcguard ${args.join(' ')} exited with ${code}: ${out}${err}`)));
    }),
    `plcguard ${args[0]}: ${ready}`,
  );
  return { child, stdout: () => out, exited };
}

/** Every file under `dir` (relative to ROOT), sorted. */
function filesUnder(dir: string): string[] {
  return fs
    .readdirSync(path.join(ROOT, dir), { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.relative(ROOT, path.join(e.parentPath, e.name)))
    .sort();
}

/** The directory on PATH holding `name`, or null. */
function onPath(name: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir && fs.existsSync(path.join(dir, name))) return path.join(dir, name);
  }
  return null;
}

let tarball = '';

void t.test('npm pack: the built code, the examples, the unit, the schema; no sources, tests or bench', async (t) => {
  // --ignore-scripts: `prepare` would rebuild dist/ while the other test files run from it;
  // `npm test` built it already (pretest), as `npm pack` alone does through `prepare`.
  const r = await runToEnd('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', tmp], ROOT, PACK_MS);
  t.equal(r.code, 0, 'npm pack exits 0', { stderr: r.stderr });
  const [packed] = JSON.parse(r.stdout) as { filename: string; files: { path: string }[] }[];
  t.equal(packed!.filename, `plcguard-${PKG.version}.tgz`);
  tarball = path.join(tmp, packed!.filename);
  const paths = packed!.files.map((f) => f.path).sort();
  const built = SHIPPED_SOURCES.flatMap(filesUnder)
    .filter((f) => f.endsWith('.ts'))
    .map((f) => path.join('dist', f.replace(/\.ts$/, '.js')));
  const expected = [
    ...built,
    ...filesUnder('examples'),
    'README.md',
    'deploy/plcguard.service',
    'package.json',
    'policy/plcguard-policy.schema.json',
  ].sort();
  t.same(paths, expected, 'exactly the files of package.json "files" (a stale dist/ file fails this too: rm -rf dist)');
});

void t.test('npm install -g of the tarball into a prefix: the binary, runtime dependencies only', async (t) => {
  const r = await runToEnd('npm', ['install', '-g', '--prefix', PREFIX, '--prefer-offline', '--no-audit', '--no-fund', tarball], tmp, INSTALL_MS);
  t.equal(r.code, 0, 'npm install -g exits 0', { stderr: r.stderr });
  t.equal(fs.realpathSync(BIN), path.join(INSTALLED, 'dist/cli/main.js'), 'bin/plcguard is the package\'s dist/cli/main.js');
  for (const dev of Object.keys(PKG.devDependencies)) {
    t.notOk(fs.existsSync(path.join(INSTALLED, 'node_modules', dev)), `no ${dev} (a devDependency) installed`);
  }
  t.equal(fs.readFileSync(path.join(INSTALLED, 'deploy/plcguard.service'), 'utf8'), fs.readFileSync(path.join(ROOT, 'deploy/plcguard.service'), 'utf8'));
});

void t.test('the installed plcguard: --version and policy validate', async (t) => {
  t.same(await runToEnd(BIN, ['--version'], tmp), { code: 0, stdout: `${PKG.version}\n`, stderr: '' });
  t.same(await runToEnd(BIN, ['policy', 'validate', 'examples/demo-policy.yaml'], INSTALLED), {
    code: 0,
    stdout: 'examples/demo-policy.yaml: ok — 1 device, 2 rules\n',
    stderr: '',
  });
});

void t.test('the installed plcguard in front of the installed simulated PLC: a read, a denial, a clean stop', async (t) => {
  const plcPort = await closedPort();
  const plc = await startInstalled(t, ['plc', '--listen', `127.0.0.1:${plcPort}`], /listening on/);
  // Asked for while the PLC holds its port, so the two differ.
  const listenPort = await closedPort();
  // The installed demo policy, moved to free ports.
  const demo = fs.readFileSync(path.join(INSTALLED, 'examples/demo-policy.yaml'), 'utf8');
  const policy = demo.replace('listen: 127.0.0.1:5020', `listen: 127.0.0.1:${listenPort}`).replace('upstream: 127.0.0.1:5021', `upstream: 127.0.0.1:${plcPort}`);
  t.not(policy.indexOf(`upstream: 127.0.0.1:${plcPort}`), -1, 'the demo policy points at the PLC');
  const file = path.join(tmp, 'policy.yaml');
  fs.writeFileSync(file, policy);
  const run = await startInstalled(t, ['run', '--policy', file, '--admin', 'off'], /"event":"started"/);

  const client = await within(RawClient.connect(listenPort), 'connect to plcguard');
  t.teardown(() => client.close());
  // FC3 read of holding register 7 (firmware version, 0x0102), unit 1: allowed by "monitoring".
  client.send(req(0x0001, 1, [0x03, 0x00, 0x07, 0x00, 0x01]));
  // tid 0001, proto 0000, len 0005, unit 01 | FC 03, byte count 02, value 0102
  t.equal(hexOf((await within(client.read(), 'the read reply'))[0]!), '0001000000050103020102');
  // FC6 write of holding register 50: no rule allows the address, so exception 02 from plcguard.
  client.send(req(0x0002, 1, [0x06, 0x00, 0x32, 0x00, 0x01]));
  // tid 0002, proto 0000, len 0003, unit 01 | FC 86 (06 + 0x80), exception 02
  t.equal(hexOf((await within(client.read(), 'the exception reply'))[0]!), '000200000003018602');
  client.close();

  run.child.kill('SIGTERM');
  t.same(await within(run.exited, 'plcguard run to exit after SIGTERM'), [0, null]);
  const lines = run.stdout().trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  t.match(lines.filter((l) => l.event === 'deny'), [{ device: 'demo-plc', fc: 6, reason: 'address_not_allowed', exception: '0x02' }]);
  t.equal(lines.at(-1)!.event, 'stopped');
  plc.child.kill('SIGTERM');
  t.same(await within(plc.exited, 'plcguard plc to exit after SIGTERM'), [0, null]);
  // The simulated PLC logs every connection and every write it takes.
  t.match(plc.stdout(), / connected \(1 open\)/);
  t.notMatch(plc.stdout(), /write_single_register/, 'the denied write never reached the PLC');
});

const analyze = onPath('systemd-analyze');
const noAnalyze = 'systemd-analyze is not on PATH (Debian/Ubuntu: apt-get install systemd; .ci/run installs it)';
void t.test('deploy/plcguard.service as installed: systemd-analyze verify', { skip: analyze ? false : noAnalyze }, async (t) => {
  // verify checks that ExecStart's binary exists and is executable; the unit names the README's
  // /usr/local, this install is in a temporary prefix: the same unit with that one path changed.
  const installed = fs.readFileSync(path.join(INSTALLED, 'deploy/plcguard.service'), 'utf8');
  t.equal(installed.split(README_BIN).length - 1, 1, `${README_BIN} appears once, in ExecStart`);
  const unit = installed.replace(`ExecStart=${README_BIN} `, `ExecStart=${BIN} `);
  t.not(unit, installed, 'ExecStart points at the installed binary');
  const dir = path.join(tmp, 'unit');
  fs.mkdirSync(dir);
  const file = path.join(dir, 'plcguard.service');
  fs.writeFileSync(file, unit);
  // verify exits 0 even for unknown keys and unparsable values, which it only warns about.
  t.same(await runToEnd(analyze!, ['verify', file], dir), { code: 0, stdout: '', stderr: '' });
  // The same check fails on a broken unit: it reads the file and speaks up.
  fs.writeFileSync(file, unit.replace('Restart=on-failure', 'Restart=on-failure\nNoSuchKey=yes'));
  t.match((await runToEnd(analyze!, ['verify', file], dir)).stderr, /plcguard\.service:\d+: Unknown key.*NoSuchKey/);
});
