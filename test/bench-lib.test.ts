// bench/lib/: the helpers the benchmark, the soak and these tests share (ports, bounded waits, a
// bounded HTTP GET, child processes). Children here are tiny `node -e` scripts, so every outcome
// (a line, an exit, a signal ignored) is the script's own doing, not the machine's timing.
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import t from 'tap';
import { httpGet } from '../bench/lib/http.js';
import { connectLocal, ephemeralLow, freePort, portsBelowEphemeral } from '../bench/lib/net.js';
import {
  PLCGUARD_MAIN,
  Proc,
  ROOT,
  exitOf,
  findRoot,
  isEntryPoint,
  parseEvent,
  runToEnd,
  startPlcguard,
  stopChild,
} from '../bench/lib/process.js';
import { delay, until, within } from '../bench/lib/wait.js';
import { binaryEnv } from './fixtures/binary.js';
import { closeServer, listenLocal } from './fixtures/net.js';

/** A node process running `script`. */
const node = (name: string, script: string, opts: ConstructorParameters<typeof Proc>[3] = {}): Proc => new Proc(name, process.execPath, ['-e', script], opts);
/** A script that prints its lines, then stays until signalled (`ignoreTerm`: SIGTERM too). */
const printsThenWaits = (lines: string[], ignoreTerm = false): string =>
  `${ignoreTerm ? "process.on('SIGTERM', () => {});" : ''} process.stdout.write(${JSON.stringify(lines.map((l) => `${l}\n`).join(''))}); setInterval(() => {}, 1000);`;

void t.test('within: the value in time, else an error naming what was awaited', async (t) => {
  t.equal(await within(Promise.resolve(7), 'seven'), 7);
  await t.rejects(within(new Promise(() => {}), 'nothing', 10), { message: 'timed out after 10 ms waiting for nothing' });
  await t.rejects(within(Promise.reject(new Error('own')), 'x'), { message: 'own' }, 'its own rejection passes through');
});

void t.test('until: holds at once, holds later, never holds, or its check throws', async (t) => {
  await until(() => true, 'at once');
  let n = 0;
  await until(() => ++n === 3, 'the third look');
  t.equal(n, 3, 'looked three times');
  await until(async () => Promise.resolve(true), 'an async check');
  await t.rejects(until(() => false, 'never', 20, 5), { message: 'timed out after 20 ms waiting for never' });
  await t.rejects(
    until(() => {
      throw new Error('broken check');
    }, 'x'),
    { message: 'broken check' },
  );
  await delay(0);
});

void t.test('freePort and connectLocal: a port nothing listens on refuses; a listening one connects', async (t) => {
  const port = await freePort();
  t.ok(port > 0 && port < 65536);
  await t.rejects(connectLocal(port), { code: 'ECONNREFUSED' });
  const server = net.createServer((s) => s.end());
  const listening = await listenLocal(server);
  t.teardown(() => closeServer(server));
  const s = await connectLocal(listening, { noDelay: true });
  t.equal(s.remotePort, listening);
  s.destroy();
});

void t.test('freePort picks below the ephemeral range, under the plant band; portsBelowEphemeral scans down from it, skipping taken ports', async (t) => {
  const low = ephemeralLow();
  t.equal(low, Number(fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').split(/\s+/)[0]), 'the range as /proc has it');
  const picks = await Promise.all(Array.from({ length: 20 }, () => freePort()));
  t.ok(
    picks.every((p) => p >= 10_000 && p < low - 2000),
    `20 picks within 10000-${low - 2001}: ${picks.join(',')}`,
  );
  // The first port a scan meets, taken: it is skipped. In the band's lower half, which the
  // plant (bench-smoke runs one alongside) never reaches.
  const top = low - 1500;
  const taken = net.createServer();
  const ok = await new Promise<boolean>((resolve) => {
    taken.once('error', () => resolve(false));
    taken.listen(top, '127.0.0.1', () => resolve(true));
  });
  if (ok) t.teardown(() => closeServer(taken));
  const ports = await portsBelowEphemeral(2, top);
  t.equal(ports.length, 2);
  t.notOk(ports.includes(top), `${top} (taken here, or by someone else) is skipped`);
  t.ok(ports[0]! > ports[1]! && ports[1]! >= top - 100, `from the top down: ${ports.join(',')}`);
  t.ok((await portsBelowEphemeral(1)).every((p) => p < low && p >= low - 2000), 'by default from just below the range');
  await t.rejects(portsBelowEphemeral(3, top, top - 1), /only [0-2] free ports below the ephemeral range, 3 needed/, 'not enough: an error naming the shortfall');
});

void t.test('httpGet: status and body; connection errors, timeouts and a cut body reject', async (t) => {
  const server = http.createServer((req, res) => {
    if (req.url === '/ok') res.end('fine');
    else if (req.url === '/cut') {
      res.writeHead(200, { 'content-length': '100' });
      res.write('part');
      setImmediate(() => req.socket.destroy());
    }
    // '/hang': no reply at all
  });
  const port = await listenLocal(server);
  t.teardown(() => {
    server.closeAllConnections();
    return closeServer(server);
  });
  t.same(await httpGet(port, '/ok'), { status: 200, body: 'fine' });
  await t.rejects(httpGet(port, '/hang', 20), { message: `GET /hang on 127.0.0.1:${port}: no reply within 20 ms` });
  await t.rejects(httpGet(port, '/cut'), /aborted/);
  await t.rejects(httpGet(await freePort(), '/'), { code: 'ECONNREFUSED' });
});

void t.test('findRoot, ROOT and isEntryPoint', (t) => {
  t.equal(findRoot(path.join(ROOT, 'bench/lib')), ROOT);
  t.equal(PLCGUARD_MAIN, path.join(ROOT, 'dist/cli/main.js'));
  t.throws(() => findRoot(os.tmpdir()), /no package\.json in /);
  t.equal(isEntryPoint(pathToFileURL(process.argv[1]!).href), true, 'the script node was started with');
  t.equal(isEntryPoint(pathToFileURL(path.join(ROOT, 'bench/lib/process.ts')).href), false, 'a module it imported');
  t.end();
});

void t.test('parseEvent: JSON objects only', (t) => {
  t.same(parseEvent('{"event":"listening","port":1}'), { event: 'listening', port: 1 });
  t.equal(parseEvent('plain text'), null);
  t.equal(parseEvent('42'), null);
  t.equal(parseEvent('null'), null);
  t.equal(parseEvent('[1]'), null);
  t.end();
});

void t.test('Proc: lines and events already printed or to come, exact output, stop', async (t) => {
  const seen: string[] = [];
  const p = node('printer', printsThenWaits(['one', '{"event":"ready","n":1}', 'not json {', '{"event":"ready","n":2}']) + " console.error('on stderr');", {
    onLine: (line, stream) => seen.push(`${stream}:${line}`),
  });
  t.teardown(() => p.stop('SIGKILL'));
  t.same(await p.waitForEvent('ready'), { event: 'ready', n: 1 });
  t.same(await p.waitForEvent('ready', undefined, 2), { event: 'ready', n: 2 }, 'the second of an event');
  t.equal(await p.waitForLine(/^one$/), 'one', 'a line printed before the wait began');
  t.equal(await p.waitForLine((l) => l.startsWith('not')), 'not json {');
  t.same(p.events(), [{ event: 'ready', n: 1 }, { event: 'ready', n: 2 }], 'only the JSON lines');
  t.equal(p.stdout(), 'one\n{"event":"ready","n":1}\nnot json {\n{"event":"ready","n":2}\n', 'stdout exactly as printed');
  await until(() => p.stderr() === 'on stderr\n', 'the stderr line');
  // The two pipes are read in whichever order they become readable: compared apart.
  t.same(
    seen.filter((l) => l.startsWith('stdout:')),
    ['stdout:one', 'stdout:{"event":"ready","n":1}', 'stdout:not json {', 'stdout:{"event":"ready","n":2}'],
  );
  t.same(
    seen.filter((l) => l.startsWith('stderr:')),
    ['stderr:on stderr'],
  );
  t.match(p.tail(2), /^not json \{\n\{"event".*\non stderr$/, 'the last lines of both streams');
  t.same(await p.stop(), { code: null, signal: 'SIGTERM' });
  t.same(await p.stop(), { code: null, signal: 'SIGTERM' }, 'stopping again: its exit, at once');
});

void t.test('Proc: a wait rejects when the process exits first, or after its bound', async (t) => {
  const quits = node('quitter', "console.log('bye'); process.exit(3)");
  await t.rejects(quits.waitForLine(/never/), { message: /^quitter exited \(3\) before printing a line like \/never\/:\nbye$/ });
  await t.rejects(quits.waitForEvent('never'), { message: /quitter exited \(3\) before printing its "never" event/ });
  await t.rejects(quits.waitForEvent('never', undefined, 2), { message: /quitter exited \(3\) before printing "never" event number 2/ });
  const waits = node('waiter', printsThenWaits([]));
  t.teardown(() => waits.stop('SIGKILL'));
  await t.rejects(waits.waitForLine(/never/, 20), { message: 'timed out after 20 ms waiting for waiter to print a line like /never/' });
});

void t.test('Proc: a line split across writes is one line; only the last lines are kept when asked', async (t) => {
  const p = node('splitter', "process.stdout.write('a\\nb'); setTimeout(() => process.stdout.write('c\\nd\\ne\\n'), 20)", { keepLines: 2, stderr: 'ignore' });
  t.equal(await p.waitForLine(/^bc$/), 'bc');
  await p.exited;
  t.equal(p.stdout(), 'd\ne\n', 'the two newest lines');
  t.equal(p.stderr(), '', 'stderr not kept when ignored');
});

void t.test('Proc: a command that cannot start fails its waits, and stops at once', async (t) => {
  const p = new Proc('missing', path.join(os.tmpdir(), 'plcguard-no-such-command'), []);
  await t.rejects(p.exited, { code: 'ENOENT' });
  await t.rejects(p.waitForLine(/x/), { code: 'ENOENT' });
});

void t.test('stopChild: SIGKILL when the signal is ignored; an exited child at once', async (t) => {
  const stubborn = node('stubborn', printsThenWaits(['up'], true));
  await stubborn.waitForLine(/^up$/);
  t.same(await stopChild(stubborn.child, 'SIGTERM', 50), { code: null, signal: 'SIGKILL' });
  t.same(await exitOf(stubborn.child), { code: null, signal: 'SIGKILL' }, 'exitOf an exited child');
  t.same(await stubborn.stop(), { code: null, signal: 'SIGKILL' });
});

void t.test('runToEnd: exit and output; a run past its bound gets the signal', async (t) => {
  t.same(await runToEnd(process.execPath, ['-e', "process.stdout.write('out'); process.stderr.write('err'); process.exitCode = 4"]), {
    code: 4,
    signal: null,
    stdout: 'out',
    stderr: 'err',
  });
  const late = await runToEnd(process.execPath, ['-e', printsThenWaits([])], { stopAfter: { ms: 200, signal: 'SIGINT' } });
  t.same([late.code, late.signal], [null, 'SIGINT']);
});

void t.test('Proc: a child still running when this process exits is killed with it', async (t) => {
  // A process that starts a child through Proc and exits at once, leaving it running.
  const lib = pathToFileURL(path.join(ROOT, 'bench/lib/process.ts')).href;
  const script = `import { Proc } from '${lib}';
    const p = new Proc('sleeper', process.execPath, ['-e', 'setInterval(() => {}, 1000)']);
    console.log(p.child.pid);
    process.exit(0);`;
  // Our execArgv: the TypeScript loader, so the child imports the same source.
  const parent = await runToEnd(process.execPath, [...process.execArgv, '--input-type=module', '-e', script]);
  t.equal(parent.code, 0, 'the parent exits 0', { stderr: parent.stderr });
  const pid = Number(parent.stdout);
  t.ok(Number.isInteger(pid) && pid > 0, `the child's pid: ${parent.stdout.trim()}`);
  // Gone, or a zombie not yet reaped by whoever inherited it.
  const dead = (): boolean => {
    try {
      return /^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
    } catch {
      return true;
    }
  };
  await until(dead, `pid ${pid} to be gone`);
});

void t.test('startPlcguard: the built CLI, from the repository root, with node flags', async (t) => {
  const version = startPlcguard('version', ['--version'], { env: binaryEnv() });
  t.equal((await version.exited).code, 0);
  t.match(version.stdout(), /^\d+\.\d+\.\d+\n$/);
  // Node's flags go before the script: node's own --version answers instead of plcguard's.
  const flagged = startPlcguard('node --version', ['--version'], { nodeArgs: ['--version'], env: binaryEnv() });
  t.equal((await flagged.exited).code, 0);
  t.equal(flagged.stdout(), `${process.version}\n`);
});
