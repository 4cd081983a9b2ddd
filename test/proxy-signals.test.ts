// SIGTERM on the real binary: stop accepting, finish what is in flight, exit 0.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { binaryEnv } from './fixtures/binary.js';
import t from 'tap';
import { RawClient, req } from './fixtures/raw-client.js';
import { normalReply, startRawPlc } from './fixtures/raw-plc.js';
import { ANY_PORT, devicePolicy, freePort } from './fixtures/proxy.js';

const MAIN = path.resolve(import.meta.dirname, '../dist/cli/main.js');

void t.test('SIGTERM with requests in flight: all answered, then exit 0', async (t) => {
  const plc = await startRawPlc();
  t.teardown(() => plc.close());
  const held: (() => void)[] = [];
  plc.respond = (r, socket) => {
    held.push(() => socket.write(normalReply(r)));
    return { hang: true };
  };
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'plcguard-sig-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'p.yaml');
  const policy = devicePolicy(plc.port, '    rules:\n      - read: { holding_registers: [0-9] }\n');
  fs.writeFileSync(file, policy.replace(ANY_PORT, `127.0.0.1:${await freePort()}`));
  const child = spawn(process.execPath, [MAIN, 'run', '--policy', file, '--admin', 'off', '--grace-ms', '5000'], { env: binaryEnv(),
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.teardown(() => child.kill('SIGKILL'));
  const events: Record<string, unknown>[] = [];
  const waiters: [string, () => void][] = [];
  readline.createInterface({ input: child.stdout }).on('line', (line) => {
    const e = JSON.parse(line) as Record<string, unknown>;
    events.push(e);
    for (let i = waiters.length - 1; i >= 0; i--) {
      if (waiters[i]![0] === e.event) waiters.splice(i, 1)[0]![1]();
    }
  });
  const event = (name: string): Promise<void> =>
    events.some((e) => e.event === name) ? Promise.resolve() : new Promise((resolve) => waiters.push([name, resolve]));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));

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
