// The plcguard binary as a user runs it: exit codes and messages of the built CLI.
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT, runBinary, startBinary } from './fixtures/binary.js';
import { freePort } from '../bench/lib/net.js';
import t, { type Test } from 'tap';

async function plcguard(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const { code, stdout, stderr } = await runBinary(args);
  return { code, stdout, stderr };
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'plcguard-cli-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

void t.test('help, version and usage errors', async (t) => {
  const help = await plcguard('--help');
  t.equal(help.code, 0);
  t.match(help.stdout, /^plcguard \d+\.\d+\.\d+: an inline Modbus\/TCP allow-list proxy\n\nusage:\n {2}plcguard run --policy FILE/);
  t.same(await plcguard(), { code: 2, stdout: '', stderr: "plcguard: a command is required\ntry 'plcguard --help'\n" }, 'no command → usage, exit 2');
  t.equal((await plcguard('--version')).stdout, `${(JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version}\n`);
  // One line naming the problem, then the hint: not the whole usage.
  const cases: [string[], string | RegExp][] = [
    [['frobnicate'], "plcguard: unknown command \"frobnicate\"\ntry 'plcguard --help'\n"],
    [['run'], "plcguard run: give either --policy FILE or --redis URL\ntry 'plcguard run --help'\n"],
    [['run', '--policy', 'a.yaml', '--redis', 'redis://x'], "plcguard run: give either --policy FILE or --redis URL\ntry 'plcguard run --help'\n"],
    [['run', '--policy', 'a.yaml', '--grace-ms', 'soon'], 'plcguard run: --grace-ms must be a whole number of milliseconds ≥ 0, got "soon"\ntry \'plcguard run --help\'\n'],
    [
      ['run', '--policy', 'a.yaml', '--admin', 'nowhere'],
      'plcguard run: --admin: "nowhere" has no port; expected HOST:PORT or [IPv6]:PORT with a port 1..65535\ntry \'plcguard run --help\'\n',
    ],
    [['run', '--redis', 'http://localhost'], 'plcguard run: --redis: "http://localhost" must start with redis:// or rediss://\ntry \'plcguard run --help\'\n'],
    [['run', '--bogus'], /^plcguard run: Unknown option '--bogus'[^\n]*\ntry 'plcguard run --help'\n$/],
    [['demo', '--listen', 'x'], 'plcguard demo: --listen: "x" has no port; expected HOST:PORT or [IPv6]:PORT with a port 1..65535\ntry \'plcguard demo --help\'\n'],
    [['policy', 'check', 'a.yaml'], "plcguard policy check: --source IP (the client address) is required\ntry 'plcguard policy check --help'\n"],
    [['hmi'], "plcguard hmi: expected one HOST:PORT, got 0\ntry 'plcguard hmi --help'\n"],
    [['plc', '--unit', 'x'], 'plcguard plc: --unit: expected a whole number 0..255, got "x"\ntry \'plcguard plc --help\'\n'],
  ];
  for (const [args, message] of cases) {
    const r = await plcguard(...args);
    t.equal(r.code, 2, `${args.join(' ')} → exit 2`);
    t.equal(r.stdout, '');
    if (typeof message === 'string') t.equal(r.stderr, message);
    else t.match(r.stderr, message);
  }
});

void t.test('--help from the binary: the usage on stdout, exit 0 (every command: main.test.ts)', async (t) => {
  // `run --help` used to fail with node's own parser message.
  const run = await plcguard('run', '--help');
  t.match(run, { code: 0, stdout: /^usage: plcguard run --policy FILE/, stderr: '' });
  t.match(run.stdout, /\nexit status: 0 stopped by a signal, 1 could not start \(no valid policy, an address in use\), 2 usage error\n$/);
  t.match(await plcguard('policy', 'diff', '-h'), { code: 0, stdout: /^usage: plcguard policy diff FILE --redis URL/, stderr: '' });
});

void t.test('run with an invalid policy: every error with its position, exit 1, nothing started', async (t) => {
  const file = path.join(dir, 'bad.yaml');
  fs.writeFileSync(file, 'version: 1\ndevices:\n  - name: Bad Name\n    listen: 127.0.0.1:1\n    upstream: nowhere\n');
  const r = await plcguard('run', '--policy', file, '--admin', 'off');
  t.equal(r.code, 1);
  const lines = r.stderr.trim().split('\n');
  t.equal(lines[0], `plcguard: ${file} is not a valid policy; nothing started:`);
  t.match(lines[1], new RegExp(`^${file}:3:11: devices\\[0\\]\\.name: `));
  t.match(lines[2], new RegExp(`^${file}:5:15: devices\\[0\\]\\.upstream: "nowhere" has no port`));
  t.equal(r.stdout, '', 'nothing logged as started');
  const missing = await plcguard('run', '--policy', path.join(dir, 'missing.yaml'), '--admin', 'off', '--devices', 'a,b');
  t.equal(missing.code, 1);
  t.match(missing.stderr, /missing\.yaml: cannot read: ENOENT/);
});

void t.test('run when the listen address is taken: a clear error, exit 1', async (t) => {
  const blocker = (await import('node:net')).createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  t.teardown(() => blocker.close());
  const port = (blocker.address() as { port: number }).port;
  const file = path.join(dir, 'taken.yaml');
  fs.writeFileSync(file, `version: 1\ndevices:\n  - name: plc\n    listen: 127.0.0.1:${port}\n    upstream: 127.0.0.1:1\n`);
  const r = await plcguard('run', '--policy', file, '--admin', 'off');
  t.equal(r.code, 1);
  t.match(r.stderr, new RegExp(`^plcguard: cannot start: listen EADDRINUSE: address already in use 127\\.0\\.0\\.1:${port}`));
});

void t.test('every subcommand is reachable from the binary', async (t) => {
  const validate = await plcguard('policy', 'validate', 'examples/demo-policy.yaml');
  t.same(validate, { code: 0, stdout: 'examples/demo-policy.yaml: ok — 1 device, 2 rules\n', stderr: '' });
  const tests = await plcguard('policy', 'test', 'examples/demo-policy.test.yaml');
  t.match(tests, { code: 0, stdout: /\nexamples\/demo-policy\.test\.yaml: 10 passed, 0 failed\n$/, stderr: '' });
  const history = await plcguard('policy', 'history', '--redis', 'redis://127.0.0.1:1');
  t.equal(history.code, 1, 'policy store commands: Redis unreachable → exit 1');
  t.match(history.stderr, /^plcguard policy history: /);
  t.equal((await plcguard('policy')).code, 2, 'policy without a subcommand → usage');
  for (const command of ['probe', 'plc', 'hmi']) {
    const r = await plcguard(command, '--bogus');
    t.equal(r.code, 2, `${command} --bogus → usage`);
    t.match(r.stderr, new RegExp(`^plcguard ${command}: Unknown option '--bogus'[^\\n]*\\ntry 'plcguard ${command} --help'\\n$`));
  }
});

/** Starts `plcguard demo ARGS` and resolves once it serves; the output keeps accumulating. */
async function startDemo(t: Test, args: string[]): Promise<{ child: ChildProcess; out: () => string; err: () => string; exited: Promise<number | null> }> {
  const demo = startBinary(['demo', ...args]);
  t.teardown(() => demo.stop('SIGKILL'));
  await demo.waitForEvent('started');
  return { child: demo.child, out: () => demo.stdout(), err: () => demo.stderr(), exited: demo.exited.then((e) => e.code) };
}

void t.test('plcguard demo: serves the demo policy, stops on SIGINT with exit 0', async (t) => {
  // Where the README's demo listens, as the usage says; the run itself takes free ports, so that a
  // demo already running on this machine can't fail the suite.
  const help = await plcguard('--help');
  t.match(help.stdout, 'a simulated PLC on 127.0.0.1:5021 behind plcguard on\n                                  127.0.0.1:5020 with examples/demo-policy.yaml');
  t.match(help.stdout, 'admin endpoints (default 127.0.0.1:9502)');
  const [listen, plc, admin] = [await freePort(), await freePort(), await freePort()];
  const demo = await startDemo(t, ['--listen', `127.0.0.1:${listen}`, '--plc', `127.0.0.1:${plc}`, '--admin', `127.0.0.1:${admin}`]);
  t.match(demo.err(), `plcguard demo: simulated PLC on 127.0.0.1:${plc} (unit 1), plcguard in front of it on 127.0.0.1:${listen}`);
  t.match(demo.err(), `metrics: http://127.0.0.1:${admin}/metrics`);
  t.match(demo.err(), `npx plcguard probe 127.0.0.1:${listen} write holding_registers 10=5000`);
  const read = await plcguard('probe', `127.0.0.1:${listen}`, 'read', 'holding_registers', '7');
  t.same(read, { code: 0, stdout: 'holding_registers 7: 258\n', stderr: '' }, 'an allowed read through the demo');
  const denied = await plcguard('probe', `127.0.0.1:${listen}`, 'write', 'holding_registers', '10=5000');
  t.equal(denied.stdout, `exception 0x03 (illegal data value) from 127.0.0.1:${listen} unit 1\n`);
  demo.child.kill('SIGINT');
  t.equal(await demo.exited, 0);
  t.match(demo.out(), /"event":"deny".*"reason":"value_not_allowed"/);
  t.match(demo.out(), /"event":"stopping",.*"signal":"SIGINT"/);
  t.match(demo.out(), `"listen":"127.0.0.1:${listen}","upstream":"127.0.0.1:${plc}"`);
});

void t.test('plcguard demo --admin off: no admin endpoint mentioned', async (t) => {
  const demo = await startDemo(t, ['--listen', `127.0.0.1:${await freePort()}`, '--plc', `127.0.0.1:${await freePort()}`, '--admin', 'off']);
  t.match(demo.err(), /\npolicy: examples\/demo-policy\.yaml\n/);
  demo.child.kill('SIGTERM');
  t.equal(await demo.exited, 0);
});
