// A reload asked for (SIGHUP) with the policy in Redis: the version in force is read again and
// applied again, even though it was seen before; once stopping, a reload does nothing.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { parsePolicy } from '../policy/index.js';
import { storeCommand } from '../cli/store.js';
import { RedisPolicySource } from '../policy/source/redis.js';
import { ProxyRuntime } from '../proxy/runtime.js';
import { recordLogs } from './fixtures/logs.js';
import { within } from '../bench/lib/wait.js';
import { freePort } from '../bench/lib/net.js';
import { startRedis } from './fixtures/redis.js';

void t.test('Redis: a reload applies the version in force again; after stop it does nothing', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.kill());
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'plcguard-reload-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'p.yaml');
  fs.writeFileSync(
    file,
    `version: 1\ndevices:\n  - name: plc\n    listen: 127.0.0.1:${await freePort()}\n    upstream: 127.0.0.1:1502\n    rules:\n      - read: { coils: [0] }\n`,
  );
  t.equal(await storeCommand('push', [file, '--redis', redis.url], { stdout: () => {}, stderr: () => {} }, parsePolicy), 0);
  const { logger, logs, logged } = recordLogs();
  const source = new RedisPolicySource({ url: redis.url }, parsePolicy, logger);
  const rt = await ProxyRuntime.start({ source, logger, admin: null, graceMs: 100 });
  await within(logged((l) => l.event === 'policy_loaded'), 'version 1 applied');
  const mark = logs.length;
  rt.reload();
  await within(logged((l) => l.event === 'policy_loaded', mark), 'version 1 applied again');
  t.same(
    logs.slice(mark).map((l) => [l.event, l.version ?? l.source]),
    [
      ['reload_requested', source.name],
      ['policy_loaded', 1],
    ],
  );
  t.equal(rt.policyStats.reloadsOk, 2);
  await rt.stop();
  const stopped = logs.length;
  rt.reload();
  t.same(logs.slice(stopped), [], 'nothing once stopped');
});
