// Signals to the real binary: SIGTERM stops accepting, finishes what is in flight and exits 0;
// SIGHUP reloads the policy.
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { binaryEnv } from './fixtures/binary.js';
import t, { type Test } from 'tap';
import { RawClient, req } from './fixtures/raw-client.js';
import { normalReply, startRawPlc } from './fixtures/raw-plc.js';
import { ANY_PORT, devicePolicy } from './fixtures/proxy.js';
import { freePort } from '../bench/lib/net.js';
import { within } from '../bench/lib/wait.js';

const MAIN = path.resolve(import.meta.dirname, '../dist/cli/main.js');

/** The built binary, running `run --policy FILE --admin off`, its JSON log lines collected. */
function spawnRun(t: Test, file: string): { events: Record<string, unknown>[]; event: (name: string, from?: number) => Promise<void>; exited: Promise<number | null>; child: ChildProcess } {
  const child = spawn(process.execPath, [MAIN, 'run', '--policy', file, '--admin', 'off', '--grace-ms', '5000'], { env: binaryEnv(),
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.teardown(() => child.kill('SIGKILL'));
  const events: Record<string, unknown>[] = [];
  const waiters: [string, number, () => void][] = [];
  readline.createInterface({ input: child.stdout }).on('line', (line) => {
    const e = JSON.parse(line) as Record<string, unknown>;
    events.push(e);
    for (let i = waiters.length - 1; i >= 0; i--) {
      if (waiters[i]![0] === e.event && events.length > waiters[i]![1]) waiters.splice(i, 1)[0]![2]();
    }
  });
  // The first `name` line at index `from` or later.
  const event = (name: string, from = 0): Promise<void> =>
    within(
      events.slice(from).some((e) => e.event === name) ? Promise.resolve() : new Promise((resolve) => waiters.push([name, from, resolve])),
      `"${name}" from the binary`,
    );
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { events, event, exited, child };
}

async function policyFile(t: Test, plcPort: number, rules: string): Promise<string> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'plcguard-sig-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'p.yaml');
  fs.writeFileSync(file, devicePolicy(plcPort, rules).replace(ANY_PORT, `127.0.0.1:${await freePort()}`));
  return file;
}

void t.test('SIGTERM with requests in flight: all answered, then exit 0', async (t) => {
  const plc = await startRawPlc();
  t.teardown(() => plc.close());
  const held: (() => void)[] = [];
  plc.respond = (r, socket) => {
    held.push(() => socket.write(normalReply(r)));
    return { hang: true };
  };
  const file = await policyFile(t, plc.port, '    rules:\n      - read: { holding_registers: [0-9] }\n');
  const { events, event, exited, child } = spawnRun(t, file);

  await event('listening');
  const port = events.find((e) => e.event === 'listening')!.port as number;
  const c = await RawClient.connect(port);
  c.send(Buffer.concat([1, 2, 3].map((i) => req(i, 1, [3, 0, i, 0, 1]))));
  await plc.waitForRequests(3);
  child.kill('SIGTERM');
  await event('stopping');
  const late = await RawClient.connect(port).then(
    () => 'connected',
    (e: NodeJS.ErrnoException) => e.code,
  );
  t.equal(late, 'ECONNREFUSED', 'no new connections once stopping');
  while (held.length) held.shift()!();
  const rs = await c.read(3);
  t.same(rs.map((r) => r.readUInt16BE(0)), [1, 2, 3], 'every in-flight request answered');
  await c.closed;
  t.equal(await exited, 0, 'exit 0');
  t.equal(events.at(-1)!.event, 'stopped');
});

void t.test('SIGHUP reloads the policy and keeps serving (it used to end the process, exit 129)', async (t) => {
  const plc = await startRawPlc();
  t.teardown(() => plc.close());
  const file = await policyFile(t, plc.port, '    rules:\n      - read: { holding_registers: [0-9] }\n');
  const { events, event, exited, child } = spawnRun(t, file);
  await event('started');
  const port = events.find((e) => e.event === 'listening')!.port as number;
  const c = await RawClient.connect(port);
  await event('connection_opened');
  // The file unchanged, so the watcher has nothing to do: what follows is the signal's doing.
  const mark = events.length;
  child.kill('SIGHUP');
  await event('policy_loaded', mark);
  t.same(
    events.slice(mark).map((e) => e.event),
    ['reload_requested', 'policy_loaded'],
  );
  t.match(events[mark], { event: 'reload_requested', source: file });
  t.equal(events.at(-1)!.sha256, events.find((e) => e.event === 'policy_loaded')!.sha256, 'the same policy, applied again');
  c.send(req(1, 1, [3, 0, 0, 0, 1]));
  t.equal((await within(c.read(), 'a reply after the reload'))[0]!.readUInt16BE(0), 1, 'the open connection kept working');
  c.close();
  child.kill('SIGTERM');
  t.equal(await within(exited, 'the exit'), 0, 'SIGTERM still stops it cleanly: exit 0');
  t.equal(events.at(-1)!.event, 'stopped');
});
