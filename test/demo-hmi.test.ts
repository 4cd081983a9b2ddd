// The simulated HMI (demo/hmi.ts) and the `plcguard plc` / `plcguard hmi` commands: polling
// through a real plcguard in front of the simulated PLC, the denied writes it tries, reconnects,
// timeouts, and the commands' usage errors and signal handling.
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { startBinary } from './fixtures/binary.js';
import t from 'tap';
import { Logger } from '../proxy/audit.js';
import { hmiCommand, startHmi, type HmiStats } from '../demo/hmi.js';
import { HR, startSimulatedPlc } from '../demo/plc.js';
import { plcCommand } from '../demo/plc-command.js';
import { untilSignal } from '../demo/signals.js';
import { reasonIndex } from '../proxy/stats.js';
import { DEMO_RULES, devicePolicy, startProxy } from './fixtures/proxy.js';
import { adu, normalReply, startRawPlc } from './fixtures/raw-plc.js';
import { freePort, freePort as closedPort } from '../bench/lib/net.js';
import { within } from '../bench/lib/wait.js';

/** The demo's rules in front of `plcPort`, for a device named as the demo's. */
const demoPolicy = (plcPort: number): string => devicePolicy(plcPort, DEMO_RULES, '', 'boiler');

function capture(): { logger: Logger; events: Record<string, unknown>[] } {
  const events: Record<string, unknown>[] = [];
  return { logger: new Logger((line) => events.push(JSON.parse(line) as Record<string, unknown>)), events };
}

const answered = (s: HmiStats): number => s.responses + [...s.exceptions.values()].reduce((a, b) => a + b, 0);

void t.test('polls the simulated PLC through plcguard; denied writes get 02 and 03; the setpoint is written back', async (t) => {
  const plc = await startSimulatedPlc({ tickMs: 0 });
  t.teardown(() => plc.close());
  const proxy = await startProxy(demoPolicy(plc.port), { admin: true });
  t.teardown(() => proxy.stop());
  const { logger, events } = capture();
  const hmi = startHmi({ target: { host: '127.0.0.1', port: proxy.port }, intervalMs: 1, denyEvery: 4, summaryMs: 20, logger });
  t.teardown(() => hmi.stop());
  // Ten poll cycles (five reads each) make one write-back; a summary line comes every 20 ms.
  await within(
    hmi.waitFor((s) => s.writeBacks >= 1 && s.exceptionCount(2) >= 2 && s.exceptionCount(3) >= 2),
    'a write-back and denied writes',
  );
  await within(hmi.waitFor(() => events.some((e) => e.event === 'hmi_summary')), 'a summary line');
  await hmi.stop();
  await hmi.stop(); // idempotent
  const s = hmi.stats;
  t.ok(s.requests - answered(s) <= 1, 'every request answered (but perhaps the one in flight at stop)');
  t.equal(s.exceptionCount(2) + s.exceptionCount(3), s.deniedWritesTried - (s.requests - answered(s)), 'only the denied writes got exceptions');
  t.ok(Math.abs(s.exceptionCount(2) - s.exceptionCount(3)) <= 1, 'they alternate: address, value');
  t.same([s.connects, s.disconnects, s.timeouts, s.connectFailures], [1, 0, 0, 0]);
  t.equal(plc.holding.readUInt16BE(2 * HR.SUPPLY_SETPOINT), 650, 'the written-back setpoint is the one read; 5000 never arrived');
  const ev = events.map((e) => e.event);
  // Summary lines come on their own timer, so one may come before the connection on a busy machine.
  const lifecycle = ev.filter((e) => e !== 'hmi_summary');
  t.same([lifecycle[0], lifecycle[1], lifecycle.at(-1)], ['hmi_started', 'hmi_connected', 'hmi_stopped']);
  t.match(events.at(-1), { target: `127.0.0.1:${proxy.port}`, requests: s.requests, exceptions: { '0x02': s.exceptionCount(2), '0x03': s.exceptionCount(3) } });
  await within(Promise.all(proxy.rt.server.sessions().map((x) => x.whenClosed())), 'the session to end');
  const stats = proxy.rt.server.stats.get('boiler');
  t.equal(stats.denials[reasonIndex('address_not_allowed')], s.exceptionCount(2), "plcguard's address_not_allowed count is the HMI's 02s");
  t.equal(stats.clientConnections, 0, 'the HMI closed its connection');
});

void t.test('timeouts, stray answers, framing errors and a lost connection: it reconnects and goes on', async (t) => {
  const plc = await startRawPlc();
  t.teardown(() => plc.close());
  let answeredOnSecond = 0;
  plc.respond = (r) => {
    if (r.connection === 0) return { hang: true };
    if (r.connection === 1) {
      // First a stray answer (wrong transaction id) then the real one; then bytes that aren't Modbus.
      if (answeredOnSecond++ === 0) return { send: Buffer.concat([adu(r.tid ^ 0x8000, r.unit, [3, 0]), normalReply(r)]) };
      return { send: Buffer.from([0, 1, 0, 1, 0, 3, 1, 3, 0]) };
    }
    // The setpoints read answered with no data: nothing to write back.
    const pdu = r.bytes.subarray(7);
    if (r.fc === 3 && pdu.readUInt16BE(1) === HR.SUPPLY_SETPOINT) return { send: adu(r.tid, r.unit, [3, 0]) };
    return { send: normalReply(r) };
  };
  const { logger, events } = capture();
  const hmi = startHmi({ target: { host: '127.0.0.1', port: plc.port }, intervalMs: 1, denyEvery: 0, timeoutMs: 50, summaryMs: 0, logger });
  t.teardown(() => hmi.stop());
  await within(hmi.waitFor((s) => s.connects >= 3 && s.responses >= 4), 'three connections and answers on the third');
  await hmi.stop();
  const s = hmi.stats;
  t.same([s.timeouts, s.disconnects, s.connectFailures, s.writeBacks], [1, 2, 0, 0]);
  const disconnects = events.filter((e) => e.event === 'hmi_disconnected');
  t.match(disconnects, [{ error: null }, { error: /^framing error: / }], 'the timeout closes without an error; the framing error says so');
  t.ok(events.some((e) => e.event === 'hmi_timeout' && e.timeout_ms === 50));
});

void t.test('a target that refuses: retries with backoff, one log line per outage', async (t) => {
  const { logger, events } = capture();
  // Default interval, deny rate, timeout and summary period: it never gets to use them.
  const hmi = startHmi({ target: { host: '127.0.0.1', port: await closedPort() }, logger });
  t.teardown(() => hmi.stop());
  // Stopped while waiting to retry (the waiter resolves right after the retry is scheduled).
  await within(hmi.waitFor((s) => s.connectFailures >= 2), 'two failed attempts');
  await hmi.stop();
  const failed = events.filter((e) => e.event === 'hmi_connect_failed');
  t.equal(failed.length, 1, 'one line for the outage, not one per attempt');
  t.match(failed[0], { error: /ECONNREFUSED/, retrying: true });
});

function io(): { io: { stdout: (s: string) => void; stderr: (s: string) => void }; out: string[]; err: string[]; line: (re: RegExp) => Promise<string> } {
  const out: string[] = [];
  const err: string[] = [];
  const waiters: { re: RegExp; resolve: (s: string) => void }[] = [];
  return {
    out,
    err,
    io: {
      stdout: (s) => {
        out.push(s);
        for (const w of waiters.filter((w) => w.re.test(s))) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(s);
        }
      },
      stderr: (s) => void err.push(s),
    },
    line: (re) => within(new Promise<string>((resolve) => waiters.push({ re, resolve })), `a line like ${re}`),
  };
}

void t.test('plcguard hmi and plcguard plc: usage errors, a run, a taken port', async (t) => {
  // A command line they can't use throws; cli/main.ts reports it (one line and the hint, exit 2:
  // test/main.test.ts).
  const never = (): Promise<void> => Promise.reject(new Error('not started'));
  const usage: [string[], { code: string; message: string | RegExp }][] = [
    [[], { code: 'ERR_HMI_USAGE', message: 'expected one HOST:PORT, got 0' }],
    [['a:1', 'b:2'], { code: 'ERR_HMI_USAGE', message: 'expected one HOST:PORT, got 2' }],
    [['nowhere'], { code: 'ERR_ENDPOINT', message: 'HOST:PORT: "nowhere" has no port; expected HOST:PORT or [IPv6]:PORT with a port 1..65535' }],
    [['127.0.0.1:5020', '--interval', '0'], { code: 'ERR_HMI_USAGE', message: '--interval: expected a whole number 1..3600000, got "0"' }],
    [['127.0.0.1:5020', '--deny-every', 'often'], { code: 'ERR_HMI_USAGE', message: /^--deny-every: expected a whole number 0\.\.\d+, got "often"$/ }],
    [['127.0.0.1:5020', '--unit', '256'], { code: 'ERR_HMI_USAGE', message: '--unit: expected a whole number 0..255, got "256"' }],
    [['127.0.0.1:5020', '--bogus'], { code: 'ERR_PARSE_ARGS_UNKNOWN_OPTION', message: /^Unknown option '--bogus'/ }],
  ];
  for (const [args, err] of usage) {
    const c = io();
    await t.rejects(hmiCommand(args, c.io, never), err, `hmi ${args.join(' ')}`);
    t.strictSame([c.out, c.err], [[], []], 'nothing printed, nothing started');
  }
  for (const [args, err] of [
    [['--unit', 'x'], { code: 'ERR_PLC_USAGE', message: '--unit: expected a whole number 0..255, got "x"' }],
    [['--unit', '300'], { code: 'ERR_PLC_USAGE', message: '--unit: expected a whole number 0..255, got "300"' }],
    [['--listen', 'here'], { code: 'ERR_ENDPOINT', message: /^--listen: "here" has no port; expected HOST:PORT/ }],
    [['--bogus'], { code: 'ERR_PARSE_ARGS_UNKNOWN_OPTION', message: /^Unknown option '--bogus'/ }],
  ] as [string[], { code: string; message: string | RegExp }][]) {
    const c = io();
    await t.rejects(plcCommand(args, c.io, never), err, `plc ${args.join(' ')}`);
    t.strictSame([c.out, c.err], [[], []], 'nothing printed, nothing started');
  }

  // A PLC and an HMI polling it directly, each until its `until` resolves.
  const port = await freePort();
  const plc = io();
  let stopPlc = (): void => {};
  const plcDone = plcCommand(['--listen', `127.0.0.1:${port}`, '--unit', '1'], plc.io, () => new Promise<void>((resolve) => (stopPlc = resolve)));
  await plc.line(/^simulated PLC listening on 127\.0\.0\.1:\d+, unit 1/);
  const hmi = io();
  const connected = hmi.line(/"event":"hmi_connected"/);
  const hmiDone = hmiCommand([`127.0.0.1:${port}`, '--interval', '1', '--deny-every', '3', '--unit', '1'], hmi.io, () => connected);
  t.equal(await hmiDone, 0, 'hmi: exit 0 once stopped');
  t.match(JSON.parse(hmi.out.at(-1)!), { event: 'hmi_stopped', connects: 1 });

  const taken = io();
  t.equal(await plcCommand(['--listen', `127.0.0.1:${port}`], taken.io, () => Promise.resolve()), 1, 'the port is taken: exit 1');
  t.match(taken.err.join('\n'), new RegExp(`^plcguard plc: cannot listen on 127\\.0\\.0\\.1:${port}: listen EADDRINUSE`));
  stopPlc();
  t.equal(await plcDone, 0, 'plc: exit 0 once stopped');
});

void t.test('untilSignal resolves on the first signal and removes its handlers', async (t) => {
  const count = (): number[] => [process.listenerCount('SIGUSR2'), process.listenerCount('SIGHUP')];
  const before = count();
  const got = untilSignal(['SIGUSR2', 'SIGHUP']);
  t.same(count(), [before[0]! + 1, before[1]! + 1]);
  process.emit('SIGUSR2', 'SIGUSR2');
  t.equal(await got, 'SIGUSR2');
  t.same(count(), before, 'both handlers removed');
});

/** Spawns the built CLI; resolves once a stdout line matches `ready`. */
async function cli(args: string[], ready: RegExp): Promise<{ child: ChildProcess; line: (re: RegExp) => Promise<string>; stdout: () => string }> {
  const p = startBinary(args);
  await p.waitForLine(ready);
  return { child: p.child, line: (re) => p.waitForLine(re), stdout: () => p.stdout() };
}

void t.test('the built CLI: `plcguard plc` and `plcguard hmi` stop cleanly on SIGTERM', async (t) => {
  const port = await freePort();
  const plc = await cli(['plc', '--listen', `127.0.0.1:${port}`], /listening on/);
  t.teardown(() => plc.child.kill('SIGKILL'));
  // Straight to the PLC, no plcguard: the writes the demo policy would deny arrive.
  const hmi = await cli(['hmi', `127.0.0.1:${port}`, '--interval', '2', '--deny-every', '2'], /"event":"hmi_connected"/);
  t.teardown(() => hmi.child.kill('SIGKILL'));
  await plc.line(/write_single_register holding_registers 10 = 5000 /);
  for (const p of [hmi, plc]) {
    const exited = once(p.child, 'exit');
    p.child.kill('SIGTERM');
    t.same(await within(exited, 'exit after SIGTERM'), [0, null], `${p === hmi ? 'hmi' : 'plc'}: exit 0 on SIGTERM`);
  }
  t.match(hmi.stdout(), /"event":"hmi_stopped"/);
});
