// SIGTERM on the real binary: stop accepting, finish what is in flight, exit 0.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startBinary } from './fixtures/binary.js';
import t from 'tap';
import { RawClient, req } from './fixtures/raw-client.js';
import { normalReply, startRawPlc } from './fixtures/raw-plc.js';
import { ANY_PORT, devicePolicy } from './fixtures/proxy.js';
import { freePort } from '../bench/lib/net.js';

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
  const child = startBinary(['run', '--policy', file, '--admin', 'off', '--grace-ms', '5000']);
  t.teardown(() => child.stop('SIGKILL'));

  const port = (await child.waitForEvent('listening')).port as number;
  const c = await RawClient.connect(port);
  c.send(Buffer.concat([1, 2, 3].map((i) => req(i, 1, [3, 0, i, 0, 1]))));
  await plc.waitForRequests(3);
  child.child.kill('SIGTERM');
  await child.waitForEvent('stopping');
  const late = await RawClient.connect(port).then(
    () => 'connected',
    (e: NodeJS.ErrnoException) => e.code,
  );
  t.equal(late, 'ECONNREFUSED', 'no new connections once stopping');
  while (held.length) held.shift()!();
  const rs = await c.read(3);
  t.same(rs.map((r) => r.readUInt16BE(0)), [1, 2, 3], 'every in-flight request answered');
  await c.closed;
  t.equal((await child.exited).code, 0, 'exit 0');
  t.equal(child.events().at(-1)!.event, 'stopped');
});
