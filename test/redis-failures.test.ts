// Redis failing in each way a plant meets it, against real redis-server processes and real
// sockets: every store command gives up within --redis-timeout with exit 1 and one line that names
// the server (never its password) and the cause; a running proxy logs redis_down with the same
// words at start and at every outage, once per cause, and redis_up when Redis is back. The
// password comes from a file or the environment; one in the URL works, with a warning.
import { once } from 'node:events';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import t, { type Test } from 'tap';
import { PASSWORD_ENV, storeCommand } from '../cli/store.js';
import { parsePolicy } from '../policy/index.js';
import { RedisPolicySource } from '../policy/source/redis.js';
import type { StoreOptions } from '../policy/store.js';
import { ProxyRuntime } from '../proxy/runtime.js';
import { freePort } from '../bench/lib/net.js';
import { runBinary, startBinary } from './fixtures/binary.js';
import { recordLogs, type LogLine } from './fixtures/logs.js';
import { makeCerts, startRedis, startSentinel, startTlsRedis, startUnreachableRedis, type TestRedis } from './fixtures/redis.js';

/** Short, so that each case that waits ends quickly; the messages show it as given. */
const TIMEOUT_MS = 300;
const TIMEOUT = ['--redis-timeout', String(TIMEOUT_MS)];

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'plcguard-redis-failures-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
const certs = makeCerts(dir);

interface Result {
  code: number;
  out: string;
  err: string;
}

/** `plcguard policy COMMAND ARGS` in this process, with PLCGUARD_REDIS_PASSWORD set to `envPassword`. */
async function cli(args: string[], envPassword?: string): Promise<Result> {
  let out = '';
  let err = '';
  const saved = process.env[PASSWORD_ENV];
  if (envPassword === undefined) delete process.env[PASSWORD_ENV];
  else process.env[PASSWORD_ENV] = envPassword;
  try {
    const code = await storeCommand(args[0]!, args.slice(1), { stdout: (s) => (out += s + '\n'), stderr: (s) => (err += s + '\n') }, parsePolicy);
    return { code, out, err };
  } finally {
    if (saved === undefined) delete process.env[PASSWORD_ENV];
    else process.env[PASSWORD_ENV] = saved;
  }
}

/** `pull` failing on Redis: exit 1, nothing on stdout, one line on stderr. */
function pullFails(message: string): Result {
  return { code: 1, out: '', err: `plcguard policy pull: ${message}\n` };
}

async function withRedis(t: Test, start: Promise<TestRedis>): Promise<TestRedis> {
  const r = await start;
  t.teardown(() => r.kill());
  return r;
}

/** A TCP server on 127.0.0.1 that hands each connection to `serve`; closed with the test. */
async function tcpServer(t: Test, serve: (s: net.Socket) => void): Promise<number> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
    serve(s);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return (server.address() as net.AddressInfo).port;
}

/** A valid policy listening on `listen`; no PLC is needed, nothing connects to it. */
const POLICY = (listen: number): string =>
  `version: 1\ndevices:\n  - name: plc\n    listen: 127.0.0.1:${listen}\n    upstream: 127.0.0.1:5021\n    rules:\n      - read: { holding_registers: [0-9] }\n`;

/** The warning a password in the URL draws, from `who`. */
function urlPasswordWarning(who: string, used = ''): string {
  return `${who}: warning: the --redis URL carries a password, which any user of this machine can read in the process list${used}; give it with PLCGUARD_REDIS_PASSWORD or --redis-password-file FILE\n`;
}

function writeFile(name: string, text: string): string {
  const f = path.join(dir, name);
  fs.writeFileSync(f, text);
  return f;
}

void t.test('nothing there, nothing answering, not Redis: each says so and exits 1', async (t) => {
  const refused = await freePort();
  t.same(await cli(['pull', '--redis', `redis://127.0.0.1:${refused}`, ...TIMEOUT]), pullFails(`cannot reach redis://127.0.0.1:${refused}: connection refused`));

  // A host that drops the SYN (a firewall): the connect never completes.
  const dropped = await withRedis(t, startUnreachableRedis());
  t.same(await cli(['pull', '--redis', dropped.url, ...TIMEOUT]), pullFails(`cannot reach ${dropped.url}: timed out after 300 ms`));

  // A Redis that hangs (stopped): the kernel accepts, nothing answers.
  const hung = await withRedis(t, startRedis());
  hung.pause();
  t.same(await cli(['pull', '--redis', hung.url, ...TIMEOUT]), pullFails(`cannot reach ${hung.url}: connected, but no reply within 300 ms (a hung Redis, or not a Redis port?)`));
  hung.resume();

  const silent = await tcpServer(t, () => {});
  t.same(
    await cli(['pull', '--redis', `redis://127.0.0.1:${silent}`, ...TIMEOUT]),
    pullFails(`cannot reach redis://127.0.0.1:${silent}: connected, but no reply within 300 ms (a hung Redis, or not a Redis port?)`),
  );
  const garbage = await tcpServer(t, (s) => s.write('hello\r\n'));
  t.same(await cli(['pull', '--redis', `redis://127.0.0.1:${garbage}`, ...TIMEOUT]), pullFails(`cannot reach redis://127.0.0.1:${garbage}: not a Redis server: its reply starts with "h"`));
  const closing = await tcpServer(t, (s) => s.once('data', () => s.end()));
  t.same(
    await cli(['pull', '--redis', `redis://127.0.0.1:${closing}`, ...TIMEOUT]),
    pullFails(`cannot reach redis://127.0.0.1:${closing}: the server closed the connection before answering (a TLS port? then use rediss://)`),
  );

  const web = http.createServer((_req, res) => res.end());
  web.listen(0, '127.0.0.1');
  await once(web, 'listening');
  t.teardown(() => web.close());
  const webPort = (web.address() as net.AddressInfo).port;
  t.same(await cli(['pull', '--redis', `redis://127.0.0.1:${webPort}`, ...TIMEOUT]), pullFails(`cannot reach redis://127.0.0.1:${webPort}: not a Redis server: its reply starts with "H"`));
});

void t.test('TLS and plain mixed up, and certificates not trusted', async (t) => {
  const plain = await withRedis(t, startRedis());
  const secure = await withRedis(t, startTlsRedis(certs));
  const ca = ['--redis-ca', certs.ca];
  t.same(
    await cli(['pull', '--redis', `rediss://127.0.0.1:${plain.port}`, ...ca, ...TIMEOUT]),
    pullFails(`cannot reach rediss://127.0.0.1:${plain.port}: connected, but no TLS handshake within 300 ms (a plain Redis port? then use redis://)`),
  );
  t.same(
    await cli(['pull', '--redis', `redis://127.0.0.1:${secure.port}`, ...TIMEOUT]),
    pullFails(`cannot reach redis://127.0.0.1:${secure.port}: connection reset (a TLS port? then use rediss://)`),
  );
  t.same(
    await cli(['pull', '--redis', secure.url, ...TIMEOUT]),
    pullFails(`cannot reach ${secure.url}: TLS certificate rejected: self-signed certificate in certificate chain (the CA to trust: --redis-ca FILE)`),
  );
  t.same(
    await cli(['pull', '--redis', `rediss://localhost:${secure.port}`, ...ca, ...TIMEOUT]),
    pullFails(`cannot reach rediss://localhost:${secure.port}: TLS certificate rejected: Hostname/IP does not match certificate's altnames: Host: localhost. is not cert's CN: 127.0.0.1`),
  );
  const garbage = await tcpServer(t, (s) => s.once('data', () => s.end('hello\r\n')));
  t.same(
    await cli(['pull', '--redis', `rediss://127.0.0.1:${garbage}`, ...TIMEOUT]),
    pullFails(`cannot reach rediss://127.0.0.1:${garbage}: TLS handshake failed: the server does not speak TLS (use redis:// for a plain port)`),
  );
  // A TLS server that refuses the handshake: a fatal alert (level 2, handshake_failure 40; RFC 8446
  // §6). OpenSSL's words for it differ between versions (Node 20's 3.0 says "sslv3 alert …", 3.5
  // "ssl/tls alert …"): Node's own TLS client, connecting to the same server, says which.
  const refusing = await tcpServer(t, (s) => s.once('data', () => s.end(Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28]))));
  const [alert] = (await once(tls.connect({ host: '127.0.0.1', port: refusing }), 'error')) as [Error & { reason: string }];
  t.same(
    await cli(['pull', '--redis', `rediss://127.0.0.1:${refusing}`, ...TIMEOUT]),
    pullFails(`cannot reach rediss://127.0.0.1:${refusing}: TLS handshake failed: ${alert.reason}`),
  );
});

void t.test('the password: from a file or the environment; in the URL it works, with a warning', async (t) => {
  const redis = await withRedis(t, startRedis({ args: (port) => ['--port', String(port), '--requirepass', 's3cret'] }));
  const url = redis.url;
  const withPassword = (password: string): string => `redis://:${password}@127.0.0.1:${redis.port}`;
  const empty: Result = { code: 0, out: 'no policy has been pushed yet\n', err: '' };
  const good = writeFile('good-password', 's3cret\n');
  const bad = writeFile('bad-password', 'wrong');
  const warning = (used: string): string => urlPasswordWarning('plcguard policy history', used);

  t.same(await cli(['history', '--redis', url, '--redis-password-file', good]), empty, 'from a file (its line end is not part of it)');
  t.same(await cli(['history', '--redis', url], 's3cret'), empty, `from ${PASSWORD_ENV}`);
  t.same(await cli(['history', '--redis', withPassword('s3cret')]), { ...empty, err: warning('') }, 'in the URL');
  t.same(await cli(['history', '--redis', withPassword('wrong')], 's3cret'), { ...empty, err: warning(` (ignored: ${PASSWORD_ENV} wins)`) });
  t.same(await cli(['history', '--redis', withPassword('wrong'), '--redis-password-file', good], 'wrong'), { ...empty, err: warning(' (ignored: --redis-password-file wins)') });

  const failing = (message: string): Result => ({ code: 1, out: '', err: `plcguard policy history: cannot reach ${url}: ${message}\n` });
  t.same(
    await cli(['history', '--redis', url]),
    failing('the server wants a password (NOAUTH): give it with PLCGUARD_REDIS_PASSWORD or --redis-password-file'),
  );
  t.same(await cli(['history', '--redis', url, '--redis-password-file', bad]), failing('wrong password or user name (WRONGPASS)'));
  t.same(await cli(['history', '--redis', url], 'wrong'), failing('wrong password or user name (WRONGPASS)'));
  // Every message names the server without its credentials.
  t.same(await cli(['history', '--redis', `redis://plcguard:wrong@127.0.0.1:${redis.port}/0`]), {
    code: 1,
    out: '',
    err: warning('') + `plcguard policy history: cannot reach ${url}/0: wrong password or user name (WRONGPASS)\n`,
  });

  const usage = async (args: string[], message: string): Promise<void> => {
    const r = await cli(['history', '--redis', url, ...args]);
    t.equal(r.code, 2, args.join(' '));
    t.equal(r.err.split('\n')[0], `plcguard policy history: ${message}`);
  };
  await usage(['--redis-password-file', path.join(dir, 'nope')], `--redis-password-file: cannot read "${path.join(dir, 'nope')}": ENOENT: no such file or directory, open '${path.join(dir, 'nope')}'`);
  await usage(['--redis-password-file', writeFile('empty-password', '\n')], `--redis-password-file: "${path.join(dir, 'empty-password')}" is empty`);
  t.match(await cli(['history', '--redis', 'http://plcguard:s3cret@127.0.0.1']), { code: 2, err: /^plcguard policy history: --redis: "http:\/\/127\.0\.0\.1" must start with redis:\/\/ or rediss:\/\/\n/ });
  t.match(await cli(['history', '--redis', 'redis://plcguard:s3cret@[::1']), { code: 2, err: /^plcguard policy history: --redis: "redis:\/\/\[::1" is not a URL like redis:\/\/host:6379\n/ });
  for (const bad of ['0', '1.5', 'soon', String(2 ** 31)]) {
    await usage(['--redis-timeout', bad], `--redis-timeout must be a whole number of milliseconds 1..2147483647, got "${bad}"`);
  }
});

void t.test('what Redis refuses: a database that is not there, a command the user may not run', async (t) => {
  const redis = await withRedis(t, startRedis({ args: (port) => ['--port', String(port), '--user', 'reader', 'on', '>r3ad', '~*', '&*', '+@read', '+@connection', '+info'] }));
  t.same(await cli(['pull', '--redis', `${redis.url}/99`]), pullFails(`cannot reach ${redis.url}/99: the server answered: ERR DB index is out of range`));
  const file = writeFile('p.yaml', POLICY(5020));
  const password = writeFile('reader-password', 'r3ad');
  t.same(await cli(['push', file, '--redis', `redis://reader@127.0.0.1:${redis.port}`, '--redis-password-file', password]), {
    code: 1,
    out: '',
    err: `plcguard policy push: ${redis.url}: NOPERM this user has no permissions to run the 'eval' command\n`,
  });
});

void t.test('Sentinel: unreachable, silent, not knowing the master, the master down', async (t) => {
  const down = [await freePort(), await freePort()];
  const sentinels = (ports: number[]): string[] => ['--redis-sentinels', ports.map((p) => `127.0.0.1:${p}`).join(',')];
  t.same(
    await cli(['pull', '--redis', 'redis://ignored', ...sentinels(down), ...TIMEOUT]),
    pullFails(`cannot reach master "mymaster" via sentinels 127.0.0.1:${down[0]},127.0.0.1:${down[1]}: no sentinel answered (connection refused or closed)`),
  );
  const silent = await tcpServer(t, () => {});
  t.same(
    await cli(['pull', '--redis', 'redis://ignored', ...sentinels([silent]), ...TIMEOUT]),
    pullFails(`cannot reach master "mymaster" via sentinels 127.0.0.1:${silent}: no sentinel answered within 300 ms`),
  );
  const master = await withRedis(t, startRedis());
  const sentinel = await withRedis(t, startSentinel(master.port));
  t.same(
    await cli(['pull', '--redis', 'redis://ignored', ...sentinels([sentinel.port]), '--redis-master', 'boiler', ...TIMEOUT]),
    pullFails(`cannot reach master "boiler" via sentinels 127.0.0.1:${sentinel.port}: no sentinel knows master "boiler"`),
  );
  await master.kill();
  t.same(
    await cli(['pull', '--redis', 'redis://ignored', ...sentinels([sentinel.port]), ...TIMEOUT]),
    pullFails(`cannot reach master "mymaster" via sentinels 127.0.0.1:${sentinel.port}: connection refused`),
    'the sentinel still names the dead master (no replica to fail over to)',
  );
});

interface Instance {
  rt: ProxyRuntime;
  source: RedisPolicySource;
  logs: LogLine[];
  logged: (pred: (l: LogLine) => boolean, from?: number) => Promise<void>;
  /** The redis_up / redis_down lines so far, as [event, error]. */
  redisEvents: () => [unknown, unknown][];
}

async function instance(t: Test, opts: StoreOptions): Promise<Instance> {
  const { logger, logs, logged } = recordLogs();
  const source = new RedisPolicySource({ timeoutMs: TIMEOUT_MS, ...opts }, parsePolicy, logger);
  const rt = await ProxyRuntime.start({ source, logger, admin: null, graceMs: 200 });
  t.teardown(() => rt.stop());
  const redisEvents = (): [unknown, unknown][] => logs.filter((l) => l.event === 'redis_up' || l.event === 'redis_down').map((l) => [l.event, l.error]);
  return { rt, source, logs, logged, redisEvents };
}

const event =
  (name: string) =>
  (l: LogLine): boolean =>
    l.event === name;

async function pushPolicy(redis: TestRedis): Promise<void> {
  const file = writeFile(`live-${redis.port}.yaml`, POLICY(await freePort()));
  const r = await cli(['push', file, '--redis', redis.url]);
  if (r.code !== 0) throw new Error(r.err);
}

void t.test('run --redis: redis_down at start with its cause, once however often it retries; redis_up when it comes', async (t) => {
  const port = await freePort();
  const url = `redis://127.0.0.1:${port}`;
  const { rt, logged, redisEvents } = await instance(t, { url });
  await logged(event('redis_down'));
  t.equal(rt.ports().size, 0, 'fail closed: nothing listens');
  const redis = await withRedis(t, startRedis({ port }));
  await pushPolicy(redis);
  await logged(event('policy_loaded'));
  t.same(redisEvents(), [
    ['redis_down', `cannot reach ${url}: connection refused`],
    ['redis_up', ''],
  ]);
});

void t.test('run --redis: an outage logs the loss, then why it cannot reconnect, then redis_up', async (t) => {
  const redis = await withRedis(t, startRedis());
  await pushPolicy(redis);
  const { logs, logged, redisEvents } = await instance(t, { url: redis.url });
  await logged(event('policy_loaded'));
  await redis.kill();
  await logged((l) => l.event === 'redis_down' && l.error === `cannot reach ${redis.url}: connection refused`);
  await redis.restart();
  await logged((l) => l.event === 'redis_up', logs.length);
  t.same(redisEvents(), [
    ['redis_up', ''],
    ['redis_down', `${redis.url}: connection lost`],
    ['redis_down', `cannot reach ${redis.url}: connection refused`],
    ['redis_up', ''],
  ]);
});

void t.test('run --redis: a Redis that hangs is down until it answers again', async (t) => {
  const redis = await withRedis(t, startRedis());
  await pushPolicy(redis);
  const { source, logs, logged, redisEvents } = await instance(t, { url: redis.url });
  await logged(event('policy_loaded'));
  redis.pause();
  source.reload();
  await logged(event('redis_down'));
  redis.resume();
  const from = logs.length;
  source.reload();
  await logged((l) => l.event === 'redis_up', from);
  t.same(redisEvents(), [
    ['redis_up', ''],
    ['redis_down', `${redis.url}: no reply within 300 ms`],
    ['redis_up', ''],
  ]);
  t.equal(source.redisUp(), true);
});

void t.test('run --redis: the same causes as the CLI, in redis_down', async (t) => {
  const plain = await withRedis(t, startRedis({ args: (port) => ['--port', String(port), '--requirepass', 's3cret'] }));
  const closing = await tcpServer(t, (s) => s.once('data', () => s.end()));
  const down = await freePort();
  const cases: [StoreOptions, string, string][] = [
    [{ url: plain.url, password: 'wrong' }, plain.url, `cannot reach ${plain.url}: wrong password or user name (WRONGPASS)`],
    [
      { url: `rediss://127.0.0.1:${plain.port}`, caFile: certs.ca, prefix: 'plant1:' },
      `rediss://127.0.0.1:${plain.port} plant1:`,
      `cannot reach rediss://127.0.0.1:${plain.port}: connected, but no TLS handshake within 300 ms (a plain Redis port? then use redis://)`,
    ],
    [
      { url: `redis://127.0.0.1:${closing}` },
      `redis://127.0.0.1:${closing}`,
      `cannot reach redis://127.0.0.1:${closing}: the server closed the connection before answering (a TLS port? then use rediss://)`,
    ],
    [
      { url: 'redis://ignored', sentinels: [{ host: '127.0.0.1', port: down }] },
      `master "mymaster" via sentinels 127.0.0.1:${down}`,
      `cannot reach master "mymaster" via sentinels 127.0.0.1:${down}: no sentinel answered (connection refused or closed)`,
    ],
  ];
  for (const [opts, name, error] of cases) {
    const { logs, logged } = await instance(t, opts);
    await logged(event('redis_down'));
    const down = logs.find(event('redis_down'))!;
    t.same({ redis: down.redis, error: down.error }, { redis: name, error }, error);
  }
});

void t.test('the built binary: a store command exits within its timeout; run logs why it waits', async (t) => {
  const silent = await tcpServer(t, () => {});
  const pull = await runBinary(['policy', 'pull', '--redis', `redis://:s3cret@127.0.0.1:${silent}`, ...TIMEOUT]);
  t.same(pull, {
    code: 1,
    signal: null,
    stdout: '',
    stderr:
      urlPasswordWarning('plcguard policy pull') +
      `plcguard policy pull: cannot reach redis://127.0.0.1:${silent}: connected, but no reply within 300 ms (a hung Redis, or not a Redis port?)\n`,
  });
  const down = await freePort();
  const run = startBinary(['run', '--redis', `redis://:s3cret@127.0.0.1:${down}`, '--admin', 'off', ...TIMEOUT]);
  t.teardown(() => run.stop('SIGKILL'));
  t.match(await run.waitForEvent('redis_down'), { redis: `redis://127.0.0.1:${down}`, error: `cannot reach redis://127.0.0.1:${down}: connection refused` });
  t.same(await run.stop(), { code: 0, signal: null });
  t.equal(run.stderr(), urlPasswordWarning('plcguard'));
  t.notMatch(run.stdout(), 's3cret', 'the password is in no log line');
});
