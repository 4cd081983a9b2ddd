// Signals to the real binary: SIGTERM stops accepting, finishes what is in flight and exits 0;
// SIGHUP reloads the policy.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startBinary } from './fixtures/binary.js';
import t, { type Test } from 'tap';
import { RawClient, req } from './fixtures/raw-client.js';
import { normalReply, startRawPlc } from './fixtures/raw-plc.js';
import { ANY_PORT, devicePolicy } from './fixtures/proxy.js';
import { freePort } from '../bench/lib/net.js';
import type { Proc } from '../bench/lib/process.js';
import { within } from '../bench/lib/wait.js';

const GRACE_MS = 5000;
/** How long a drain may take after SIGTERM before the test kills the binary: the grace and a margin. */
const STOP_MS = GRACE_MS + 5000;

/** The built binary, running `run --policy FILE --admin off`; killed at the end of the test. */
function startRun(t: Test, file: string): Proc {
  const p = startBinary(['run', '--policy', file, '--admin', 'off', '--grace-ms', String(GRACE_MS)]);
  t.teardown(() => p.stop('SIGKILL'));
  return p;
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
  const p = startRun(t, file);

  const port = (await p.waitForEvent('listening')).port as number;
  const c = await RawClient.connect(port);
  c.send(Buffer.concat([1, 2, 3].map((i) => req(i, 1, [3, 0, i, 0, 1]))));
  await plc.waitForRequests(3);
  const exited = p.stop('SIGTERM', STOP_MS);
  await p.waitForEvent('stopping');
  const late = await RawClient.connect(port).then(
    () => 'connected',
    (e: NodeJS.ErrnoException) => e.code,
  );
  t.equal(late, 'ECONNREFUSED', 'no new connections once stopping');
  while (held.length) held.shift()!();
  const rs = await c.read(3);
  t.same(rs.map((r) => r.readUInt16BE(0)), [1, 2, 3], 'every in-flight request answered');
  await c.closed;
  t.same(await exited, { code: 0, signal: null }, 'exit 0');
  t.equal(p.events().at(-1)!.event, 'stopped');
});

void t.test('SIGHUP reloads the policy and keeps serving (it used to end the process, exit 129)', async (t) => {
  const plc = await startRawPlc();
  t.teardown(() => plc.close());
  const file = await policyFile(t, plc.port, '    rules:\n      - read: { holding_registers: [0-9] }\n');
  const p = startRun(t, file);
  await p.waitForEvent('started');
  const port = p.events().find((e) => e.event === 'listening')!.port as number;
  const c = await RawClient.connect(port);
  await p.waitForEvent('connection_opened');
  // The file unchanged, so the watcher has nothing to do: what follows is the signal's doing.
  const mark = p.events().length;
  p.child.kill('SIGHUP');
  await p.waitForEvent('policy_loaded', undefined, 2);
  const events = p.events();
  t.same(
    events.slice(mark).map((e) => e.event),
    ['reload_requested', 'policy_loaded'],
  );
  t.match(events[mark], { event: 'reload_requested', source: file });
  t.equal(events.at(-1)!.sha256, events.find((e) => e.event === 'policy_loaded')!.sha256, 'the same policy, applied again');
  c.send(req(1, 1, [3, 0, 0, 0, 1]));
  t.equal((await within(c.read(), 'a reply after the reload'))[0]!.readUInt16BE(0), 1, 'the open connection kept working');
  c.close();
  t.same(await p.stop('SIGTERM'), { code: 0, signal: null }, 'SIGTERM still stops it cleanly: exit 0');
  t.equal(p.events().at(-1)!.event, 'stopped');
});
