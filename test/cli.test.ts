// The plcguard binary as a user runs it: exit codes and messages of the built CLI.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';

const ROOT = path.resolve(import.meta.dirname, '..');
const MAIN = path.join(ROOT, 'dist/proxy/main.js');

function plcguard(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [MAIN, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'plcguard-cli-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

void t.test('help, version and usage errors', async (t) => {
  const help = await plcguard('--help');
  t.equal(help.code, 0);
  t.match(help.stdout, /^plcguard \d+\.\d+\.\d+: an inline Modbus\/TCP allow-list proxy\n\nusage:\n {2}plcguard run --policy FILE/);
  t.equal((await plcguard()).code, 2, 'no command → usage, exit 2');
  t.equal((await plcguard('--version')).stdout, `${(JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version}\n`);
  const cases: [string[], RegExp][] = [
    [['frobnicate'], /^plcguard: unknown command "frobnicate"/],
    [['run'], /^plcguard run: give either --policy FILE or --redis URL/],
    [['run', '--policy', 'a.yaml', '--redis', 'redis://x'], /^plcguard run: give either --policy FILE or --redis URL/],
    [['run', '--policy', 'a.yaml', '--grace-ms', 'soon'], /^plcguard run: --grace-ms must be a whole number of milliseconds ≥ 0, got "soon"/],
    [['run', '--policy', 'a.yaml', '--admin', 'nowhere'], /^plcguard: --admin: "nowhere" is not HOST:PORT or \[IPv6\]:PORT with a port 1\.\.65535/],
    [['run', '--redis', 'http://localhost'], /^plcguard: --redis: "http:\/\/localhost" must start with redis:\/\/ or rediss:\/\//],
    [['run', '--bogus'], /^plcguard: Unknown option '--bogus'/],
  ];
  for (const [args, message] of cases) {
    const r = await plcguard(...args);
    t.equal(r.code, 2, `${args.join(' ')} → exit 2`);
    t.match(r.stderr, message);
  }
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
  const missing = await plcguard('run', '--policy', path.join(dir, 'missing.yaml'), '--admin', 'off');
  t.equal(missing.code, 1);
  t.match(missing.stderr, /missing\.yaml: cannot read policy: ENOENT/);
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
