// The CLI's wiring, run in this process (so that it is covered): argv in, exit code and output out.
// test/cli.test.ts runs the same through the built binary, as a user would.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { DEMO_LISTEN, DEMO_PLC, DEMO_POLICY, demoParser, main } from '../cli/main.js';
import { probeCommand } from '../cli/probe.js';
import { parsePolicy } from '../policy/parse.js';
import { RawClient, req } from './fixtures/raw-client.js';
import { startRawPlc } from './fixtures/raw-plc.js';
import { freePort } from '../bench/lib/net.js';
import { until } from '../bench/lib/wait.js';

type Write = typeof process.stdout.write;

/**
 * Runs main(args) capturing what it writes. plcguard's JSON log lines are captured; anything else
 * (tap's own output) passes through. `during` runs once main is serving (for run/demo), and is
 * expected to end it with a signal.
 */
async function plcguard(args: string[], during?: (lines: string[]) => Promise<void>): Promise<{ code: number; out: string; err: string; lines: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const lines: string[] = [];
  const origOut: Write = process.stdout.write.bind(process.stdout);
  const origErr: Write = process.stderr.write.bind(process.stderr);
  process.stdout.write = ((chunk: string | Uint8Array, ...rest: unknown[]): boolean => {
    const s = String(chunk);
    if (s.startsWith('{"time"')) lines.push(s.trimEnd());
    else if (during === undefined) out.push(s);
    else return (origOut as (c: string | Uint8Array, ...r: unknown[]) => boolean)(chunk, ...rest);
    return true;
  });
  process.stderr.write = ((chunk: string | Uint8Array): boolean => {
    err.push(String(chunk));
    return true;
  });
  try {
    const running = main(args);
    if (during) {
      while (!lines.some((l) => l.includes('"event":"started"')) && err.length === 0) await new Promise((r) => setImmediate(r));
      if (lines.some((l) => l.includes('"event":"started"'))) await during(lines);
    }
    const code = await running;
    return { code, out: out.join(''), err: err.join(''), lines };
  } finally {
    process.stdout.write = origOut;
    process.stderr.write = origErr;
  }
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'plcguard-main-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

void t.test('help, version, unknown commands, usage errors', async (t) => {
  t.match(await plcguard(['--help']), { code: 0, out: /^plcguard \S+: an inline Modbus\/TCP allow-list proxy/ });
  t.match(await plcguard(['help']), { code: 0, out: /^plcguard \S+: an inline Modbus\/TCP allow-list proxy/ });
  t.match(await plcguard(['-h']), { code: 0, out: /\nplcguard COMMAND --help \(and plcguard policy SUBCOMMAND --help\) describes each one\.\n/ });
  t.same(await plcguard([]), { code: 2, out: '', err: "plcguard: a command is required\ntry 'plcguard --help'\n", lines: [] });
  t.match(await plcguard(['version']), { code: 0, out: /^\d+\.\d+\.\d+\n$/ });
  t.match(await plcguard(['--version']), { code: 0, out: /^\d+\.\d+\.\d+\n$/ });
  t.match(await plcguard(['policy']), { code: 2 });
  t.match(await plcguard(['nope']), { code: 2, err: "plcguard: unknown command \"nope\"\ntry 'plcguard --help'\n" });
  const hint = (command: string): string => `\ntry 'plcguard ${command} --help'\n`;
  t.same(await plcguard(['run']), { code: 2, out: '', err: `plcguard run: give either --policy FILE or --redis URL${hint('run')}`, lines: [] });
  t.match(await plcguard(['run', '--policy', 'x', '--grace-ms=-1']), { code: 2, err: `plcguard run: --grace-ms must be a whole number of milliseconds ≥ 0, got "-1"${hint('run')}` });
  t.match(await plcguard(['run', '--policy', 'x', '--admin', 'bad']), { code: 2, err: /^plcguard run: --admin: "bad" has no port; expected HOST:PORT.*\ntry 'plcguard run --help'\n$/ });
  t.match(await plcguard(['run', '--redis', 'http://x']), { code: 2, err: /^plcguard run: --redis: "http:\/\/x" must start with redis:\/\/ or rediss:\/\/\ntry 'plcguard run --help'\n$/ });
  t.match(await plcguard(['run', '--frob']), { code: 2, err: /^plcguard run: Unknown option '--frob'.*\ntry 'plcguard run --help'\n$/ });
  t.match(await plcguard(['demo', '--plc', 'nowhere']), { code: 2, err: /^plcguard demo: --plc: "nowhere" has no port.*\ntry 'plcguard demo --help'\n$/ });
  t.match(await plcguard(['policy', 'validate', 'examples/demo-policy.yaml']), { code: 0, out: 'examples/demo-policy.yaml: ok — 1 device, 2 rules\n' });
  t.match(await plcguard(['policy', 'history', '--redis', 'redis://127.0.0.1:1']), { code: 1 });
  t.match(await plcguard(['policy', 'learn']), { code: 2, err: /^plcguard policy learn: give at least one CAPTURE file/ });
  t.match(await plcguard(['policy', 'check', '--pcap', 'x']), { code: 2, err: /^plcguard policy check: give the policy with --policy FILE/ });
  t.match(await plcguard(['policy', 'learn', '--help']), { code: 0, out: /^usage:\n {2}plcguard policy learn CAPTURE/ });
  t.match(await plcguard(['policy', 'check', '--pcap', 'x', '--help']), { code: 0, out: /^usage:\n {2}plcguard policy check --policy FILE --pcap/ });
  for (const command of ['probe', 'plc', 'hmi']) {
    t.match(await plcguard([command, '--bogus']), { code: 2, err: new RegExp(`^plcguard ${command}: Unknown option '--bogus'.*\\ntry 'plcguard ${command} --help'\\n$`) }, command);
  }
  t.match(await plcguard(['hmi', 'a:1', 'b:2']), { code: 2, err: `plcguard hmi: expected one HOST:PORT, got 2${hint('hmi')}` });
  t.match(await plcguard(['plc', '--unit', '300']), { code: 2, err: `plcguard plc: --unit: expected a whole number 0..255, got "300"${hint('plc')}` });
});

void t.test('--help on every command and subcommand: that usage on stdout, exit 0, whatever else was typed', async (t) => {
  const commands: [string[], RegExp][] = [
    [['run'], /^usage: plcguard run --policy FILE .*\n {7}plcguard run --redis URL .*\nRedis options: --redis-prefix P/s],
    [['demo'], /^usage: plcguard demo \[--listen HOST:PORT\] \[--plc HOST:PORT\] \[--admin HOST:PORT\|off\] \[--tls\]\n.*default 127\.0\.0\.1:5020.*default 127\.0\.0\.1:5021.*default 127\.0\.0\.1:9502/s],
    [['policy'], /^usage: plcguard policy SUBCOMMAND/],
    [['probe'], /^usage:\n {2}plcguard probe HOST:PORT read TABLE RANGE/],
    [['plc'], /^usage: plcguard plc \[--listen HOST:PORT\] \[--unit N\]\n.*\nexit status: 0 stopped by a signal, 1 cannot listen, 2 usage error\n$/s],
    [['hmi'], /^usage: plcguard hmi HOST:PORT .*\nexit status: 0 stopped by a signal, 2 usage error\n$/s],
    [['policy', 'validate'], /^usage: plcguard policy validate \[--json\] FILE\.\.\./],
    [['policy', 'check'], /^usage: plcguard policy check \[--json\] FILE/],
    [['policy', 'test'], /^usage: plcguard policy test FILE\.\.\./],
    [['policy', 'push'], /^usage: plcguard policy push FILE --redis URL .*\[--force\]/],
    [['policy', 'pull'], /^usage: plcguard policy pull --redis URL/],
    [['policy', 'history'], /^usage: plcguard policy history --redis URL .*\[--json\]/],
    [['policy', 'diff'], /^usage: plcguard policy diff FILE --redis URL \[--json\].*\nexit status \(as diff\(1\)\): 0 .*, 1 .*, 2 trouble/s],
    [['policy', 'rollback'], /^usage: plcguard policy rollback VERSION --redis URL/],
  ];
  for (const [command, usage] of commands) {
    for (const flag of ['--help', '-h']) {
      const r = await plcguard([...command, '--bogus', flag, 'extra']);
      t.match(r, { code: 0, out: usage, err: '' }, `${command.join(' ')} ${flag}`);
    }
  }
  t.match(await plcguard(['probe', '--', '--help']), { code: 2 }, 'after --, --help is an operand');
});

void t.test('run: invalid policy, taken port, and a clean SIGTERM and SIGINT', async (t) => {
  const bad = path.join(dir, 'bad.yaml');
  fs.writeFileSync(bad, 'version: 1\ndevices:\n  - name: X\n');
  const invalid = await plcguard(['run', '--policy', bad, '--admin', 'off']);
  t.equal(invalid.code, 1);
  t.match(invalid.err, new RegExp(`^plcguard: ${bad} is not a valid policy; nothing started:\\n${bad}:3:`));

  const plc = await startRawPlc();
  t.teardown(() => plc.close());
  const port = await freePort();
  const file = path.join(dir, 'ok.yaml');
  fs.writeFileSync(file, `version: 1\ndevices:\n  - name: plc\n    listen: 127.0.0.1:${port}\n    upstream: 127.0.0.1:${plc.port}\n    rules:\n      - read: { holding_registers: [0-9] }\n`);
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    const r = await plcguard(['run', '--policy', file, '--admin', 'off', '--devices', 'plc'], async () => {
      const c = await RawClient.connect(port);
      c.send(req(1, 1, [3, 0, 0, 0, 1]));
      await c.read();
      c.close();
      process.emit(signal);
    });
    t.equal(r.code, 0, `${signal} → exit 0`);
    // The connection is closed by the client or, if its FIN isn't read yet, by the stop: before "stopping" either way.
    t.match(r.lines.map((l) => (JSON.parse(l) as { event: string }).event), ['listening', 'policy_loaded', 'started', 'connection_opened', 'connection_closed', 'stopping', 'stopped']);
  }
  const taken = await plcguard(['run', '--policy', file, '--admin', `127.0.0.1:${plc.port}`]);
  t.equal(taken.code, 1);
  t.match(taken.err, /^plcguard: cannot start: listen EADDRINUSE/);
  const busy = path.join(dir, 'busy.yaml');
  fs.writeFileSync(busy, fs.readFileSync(file, 'utf8').replace(`listen: 127.0.0.1:${port}`, `listen: 127.0.0.1:${plc.port}`));
  const listenTaken = await plcguard(['run', '--policy', busy, '--admin', 'off']);
  t.match(listenTaken, { code: 1, err: new RegExp(`^plcguard: cannot start: listen EADDRINUSE: address already in use 127\\.0\\.0\\.1:${plc.port}`) });
  const missing = await plcguard(['run', '--policy', path.join(dir, 'missing.yaml'), '--admin', 'off']);
  t.match(missing, { code: 1, err: /missing\.yaml: cannot read: ENOENT/ });
});

void t.test('run: SIGHUP reloads the policy', async (t) => {
  const plc = await startRawPlc();
  t.teardown(() => plc.close());
  const file = path.join(dir, 'hup.yaml');
  fs.writeFileSync(file, `version: 1\ndevices:\n  - name: plc\n    listen: 127.0.0.1:${await freePort()}\n    upstream: 127.0.0.1:${plc.port}\n    rules:\n      - read: { coils: [0] }\n`);
  const events = (lines: string[]): string[] => lines.map((l) => (JSON.parse(l) as { event: string }).event);
  const hupsBefore = process.listenerCount('SIGHUP');
  const r = await plcguard(['run', '--policy', file, '--admin', 'off'], async (lines) => {
    t.equal(process.listenerCount('SIGHUP'), hupsBefore + 1, 'SIGHUP handled while running');
    process.emit('SIGHUP');
    await until(() => events(lines).filter((e) => e === 'policy_loaded').length === 2, 'the reload');
    process.emit('SIGTERM');
  });
  t.equal(r.code, 0);
  t.same(events(r.lines), ['listening', 'policy_loaded', 'started', 'reload_requested', 'policy_loaded', 'stopping', 'stopped']);
  t.equal(process.listenerCount('SIGHUP'), hupsBefore, 'and no longer once stopped');
});

void t.test('run: a device filter that selects nothing is an error', async (t) => {
  const file = path.join(dir, 'filter.yaml');
  fs.writeFileSync(file, `version: 1\ndevices:\n  - name: plc\n    listen: 127.0.0.1:${await freePort()}\n    upstream: 127.0.0.1:1502\n    rules:\n      - read: { coils: [0] }\n`);
  const typo = await plcguard(['run', '--policy', file, '--admin', 'off', '--devices', 'plcc,pcl']);
  t.equal(typo.code, 1);
  t.match(typo.err, /: none of the devices to serve \(plcc, pcl\) is in the policy; it has: plc\n$/);
  t.same(typo.lines, [], 'nothing listened');
});

void t.test('demo: the simulated PLC behind plcguard, stopped by a signal', async (t) => {
  for (const withAdmin of [true, false]) {
    // Free ports, not the demo's own 5020/5021/9502: a demo running on this machine must not fail
    // the suite (test/cli.test.ts checks the defaults the usage names).
    const [listen, plcPort, adminPort] = [await freePort(), await freePort(), await freePort()];
    const admin = withAdmin ? ['--admin', `127.0.0.1:${adminPort}`] : ['--admin', 'off'];
    const r = await plcguard(['demo', '--listen', `127.0.0.1:${listen}`, '--plc', `127.0.0.1:${plcPort}`, ...admin], async () => {
      const c = await RawClient.connect(listen);
      c.send(req(1, 1, [6, 0, 10, 0x13, 0x88]));
      const [resp] = await c.read();
      t.equal(resp![8], 3, 'a setpoint out of bounds is denied with 03');
      c.close();
      process.emit('SIGINT');
    });
    t.equal(r.code, 0);
    t.match(r.err, `simulated PLC on 127.0.0.1:${plcPort} (unit 1), plcguard in front of it on 127.0.0.1:${listen}`);
    t.match(r.err, withAdmin ? `policy: examples/demo-policy.yaml; metrics: http://127.0.0.1:${adminPort}/metrics\n` : /\npolicy: examples\/demo-policy\.yaml\n/);
  }
});

void t.test('demo --tls: throwaway certificates, an Operator allowed, a Viewer and plain Modbus/TCP not', async (t) => {
  const [listen, plcPort] = [await freePort(), await freePort()];
  const at = `127.0.0.1:${listen}`;
  let tlsDir = '';
  const r = await plcguard(['demo', '--tls', '--listen', at, '--plc', `127.0.0.1:${plcPort}`, '--admin', 'off'], async (lines) => {
    const loaded = JSON.parse(lines.find((l) => l.includes('"event":"policy_loaded"'))!) as { source: string };
    tlsDir = path.dirname(loaded.source);
    const probe = async (...args: string[]) => {
      const out: string[] = [];
      const code = await probeCommand([at, ...args], { stdout: (s) => out.push(s), stderr: (s) => out.push(s) });
      return { code, out: out.join('\n') };
    };
    const as = (who: string) => ['--tls-ca', path.join(tlsDir, 'ca.crt'), '--tls-cert', path.join(tlsDir, `${who}.crt`), '--tls-key', path.join(tlsDir, `${who}.key`)];
    t.match(await probe('write', 'holding_registers', '10=700', ...as('operator')), { code: 0, out: 'holding_registers 10: 700' });
    t.match(await probe('read', 'holding_registers', '10', ...as('viewer')), { code: 0, out: 'holding_registers 10: 700' });
    t.match(await probe('write', 'holding_registers', '10=700', ...as('viewer')), { code: 3, out: 'exception 0x01 (illegal function)' });
    t.match(await probe('read', 'holding_registers', '10'), { code: 1, out: /closed by|lost before a response/ });
    t.match(await probe('read', 'holding_registers', '10', '--tls-ca', path.join(tlsDir, 'ca.crt')), { code: 1 }, 'TLS without a certificate');
    t.match(await probe('read', 'holding_registers', '10', '--tls-ca', path.join(tlsDir, 'missing.crt')), { code: 1, out: /--tls-ca .*missing\.crt: ENOENT/ });
    t.match(await probe('read', 'holding_registers', '10', '--tls-cert', 'x.crt'), { code: 2, out: '--tls-cert and --tls-key go together' });
    process.emit('SIGINT');
  });
  t.equal(r.code, 0);
  t.match(r.err, `plcguard in front of it on ${at} speaking Modbus/TCP Security`);
  t.match(r.err, '--tls-cert');
  t.equal(fs.existsSync(tlsDir), false, 'the throwaway folder is gone');
});

void t.test('run --redis: waits for a policy, stops on a signal', async (t) => {
  const r = await plcguard(['run', '--redis', 'redis://127.0.0.1:1', '--admin', 'off'], () => {
    process.emit('SIGTERM');
    return Promise.resolve();
  });
  t.equal(r.code, 0);
});

void t.test('demo --listen/--plc: the demo policy moved, everything else as written', (t) => {
  const text = fs.readFileSync(DEMO_POLICY, 'utf8');
  t.equal(demoParser(DEMO_LISTEN, DEMO_PLC), parsePolicy, 'at its own addresses the file is parsed as it is');
  const moved = demoParser({ host: '127.0.0.1', port: 15020 }, { host: '::1', port: 15021 })(text, 'demo.yaml');
  const asWritten = parsePolicy(text, 'demo.yaml');
  const device = [...moved.policy!.devices.values()][0]!;
  const original = [...asWritten.policy!.devices.values()][0]!;
  t.strictSame([device.listen, device.upstream], [{ host: '127.0.0.1', port: 15020 }, { host: '::1', port: 15021 }]);
  t.equal(device.name, original.name);
  t.strictSame(device.document.rules, original.document.rules, 'the rules are untouched');
  // A demo policy broken by an edit is reported against the text as written.
  const broken = 'version: 1\ndevices: [\n';
  const movedErrors = demoParser({ host: '127.0.0.1', port: 1 }, DEMO_PLC)(broken, 'demo.yaml').errors.map((e) => e.format());
  t.strictSame(movedErrors, parsePolicy(broken, 'demo.yaml').errors.map((e) => e.format()));
  t.ok(movedErrors.length > 0);
  const noDevices = 'version: 1\n';
  t.strictSame(
    demoParser({ host: '127.0.0.1', port: 1 }, DEMO_PLC)(noDevices, 'demo.yaml').errors.map((e) => e.format()),
    parsePolicy(noDevices, 'demo.yaml').errors.map((e) => e.format()),
  );
  t.end();
});
