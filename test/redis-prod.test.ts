// Production Redis set-ups against real servers: TLS with a CA file and an ACL user, a key
// prefix, Sentinel, and a Redis that is not there yet when plcguard starts.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { Redis } from 'ioredis';
import { parsePolicy } from '../policy/index.js';
import { storeCommand } from '../cli/store.js';
import type { StoreOptions } from '../policy/store.js';
import { RedisPolicySource } from '../policy/source/redis.js';
import { ProxyRuntime } from '../proxy/runtime.js';
import { RawClient, req } from './fixtures/raw-client.js';
import { startRawPlc } from './fixtures/raw-plc.js';

import { makeCerts, startRedis, startSentinel, startTlsRedis } from './fixtures/redis.js';
import { recordLogs } from './fixtures/logs.js';
import { freePort } from '../bench/lib/net.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'plcguard-redis-prod-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

async function policyFile(plcPort: number): Promise<{ file: string; listen: number }> {
  const listen = await freePort();
  const file = path.join(dir, `p-${listen}.yaml`);
  fs.writeFileSync(
    file,
    `version: 1\ndevices:\n  - name: plc\n    listen: 127.0.0.1:${listen}\n    upstream: 127.0.0.1:${plcPort}\n    rules:\n      - read: { holding_registers: [0-9] }\n`,
  );
  return { file, listen };
}

async function push(args: string[]): Promise<string> {
  let out = '';
  let err = '';
  const code = await storeCommand('push', args, { stdout: (s) => (out += s), stderr: (s) => (err += s) }, parsePolicy);
  if (code !== 0) throw new Error(`push failed (${code}): ${err}`);
  return out;
}

/** Starts a Redis-mode plcguard and resolves once it has loaded a policy. */
async function instance(t: Test, opts: StoreOptions): Promise<{ rt: ProxyRuntime; loaded: Promise<void>; logs: Record<string, unknown>[] }> {
  const { logger, logs, logged } = recordLogs();
  const loaded = logged((l) => l.event === 'policy_loaded');
  const rt = await ProxyRuntime.start({ source: new RedisPolicySource(opts, parsePolicy, logger), logger, admin: null, graceMs: 200 });
  t.teardown(() => rt.stop());
  return { rt, loaded, logs };
}

async function answers(port: number): Promise<number> {
  const c = await RawClient.connect(port);
  c.send(req(7, 1, [3, 0, 0, 0, 1]));
  const [r] = await c.read();
  c.close();
  return r!.readUInt16BE(0);
}

void t.test('TLS with a CA file, an ACL user in the URL, a key prefix', async (t) => {
  const certs = makeCerts(dir);
  const f = (name: string): string => path.join(dir, name);
  const redis = await startTlsRedis(certs, [
    // Only plcguard's keys for the plcguard user; the default user is off.
    '--user', 'default', 'off',
    '--user', 'plcguard', 'on', '>s3cret', '~plant1:*', '&plant1:*', '+@all',
  ]);
  t.teardown(() => redis.kill());
  const url = `rediss://plcguard:s3cret@127.0.0.1:${redis.port}/0`;
  const plc = await startRawPlc();
  t.teardown(() => plc.close());
  const { file, listen } = await policyFile(plc.port);
  t.match(await push([file, '--redis', url, '--redis-ca', f('ca.crt'), '--redis-prefix', 'plant1:']), /as version 1/);
  const { loaded } = await instance(t, { url, caFile: f('ca.crt'), prefix: 'plant1:' });
  await loaded;
  t.equal(await answers(listen), 7, 'the policy came over TLS and is enforced');
  const check = new Redis({ port: redis.port, host: '127.0.0.1', username: 'plcguard', password: 's3cret', tls: { ca: fs.readFileSync(f('ca.crt')) } });
  t.teardown(() => check.disconnect());
  t.same((await check.keys('plant1:*')).sort(), ['plant1:current', 'plant1:device:plc', 'plant1:devices', 'plant1:history', 'plant1:seq', 'plant1:version:1']);
  const wrong = await storeCommand('pull', ['--redis', `rediss://plcguard:wrong@127.0.0.1:${redis.port}`, '--redis-ca', f('ca.crt')], { stdout: () => {}, stderr: () => {} }, parsePolicy);
  t.equal(wrong, 1, 'a wrong password fails the command');
});

void t.test('Redis Sentinel: plcguard finds the master through the sentinel', async (t) => {
  const master = await startRedis();
  t.teardown(() => master.kill());
  const sentinel = await startSentinel(master.port);
  t.teardown(() => sentinel.kill());
  const plc = await startRawPlc();
  t.teardown(() => plc.close());
  const { file, listen } = await policyFile(plc.port);
  const sentinels = `127.0.0.1:${sentinel.port}`;
  t.match(await push([file, '--redis', 'redis://ignored', '--redis-sentinels', sentinels, '--redis-master', 'mymaster']), /as version 1/);
  // The master's name defaults to mymaster.
  const { loaded } = await instance(t, { url: 'redis://ignored', sentinels: [{ host: '127.0.0.1', port: sentinel.port }] });
  await loaded;
  t.equal(await answers(listen), 7);
});

void t.test('Redis not there at start: nothing listens until it comes and holds a policy', async (t) => {
  const port = await freePort();
  const plc = await startRawPlc();
  t.teardown(() => plc.close());
  const { file, listen } = await policyFile(plc.port);
  const { rt, loaded } = await instance(t, { url: `redis://127.0.0.1:${port}` });
  t.equal(rt.ports().size, 0, 'fail closed: not listening');
  t.equal(rt.policyStats.redisUp!(), false);
  const redis = await startRedis({ port });
  t.teardown(() => redis.kill());
  await push([file, '--redis', redis.url]);
  await loaded;
  t.equal(rt.policyStats.redisUp!(), true);
  t.equal(await answers(listen), 7);
});

void t.test('a first version that does not validate: still nothing listens, and the log says so', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.kill());
  const { rt, logs } = await instance(t, { url: redis.url });
  const client = new Redis(redis.url);
  t.teardown(() => client.disconnect());
  await client.hset('plcguard:version:1', 'yaml', 'version: 1\ndevices: none\n', 'sha256', 'x');
  await client.set('plcguard:current', 1);
  await client.publish('plcguard:changes', '1');
  for (let turns = 0; !logs.some((l) => l.event === 'policy_rejected') && turns < 1e6; turns++) await new Promise((r) => setImmediate(r));
  t.match(logs.find((l) => l.event === 'policy_rejected'), { kept: 'nothing (not listening)' });
  t.equal(rt.ports().size, 0);
  let err = '';
  const code = await storeCommand('pull', ['--redis', `redis://127.0.0.1`], { stdout: () => {}, stderr: (s) => (err += s) }, parsePolicy);
  t.equal(code, 1, `the default port 6379 (nothing there, or not this policy): ${err.split('\n')[0]}`);
});
