// `npm run bench:mbaps`: what Modbus/TCP Security costs. One plcguard process with two devices in
// front of the same simulated PLC (bench/plc.ts, its own process): one plain Modbus/TCP, one mbaps
// (TLS 1.3, an Operator client certificate made by demo/pki.ts with the openssl CLI). This process
// is the load generator: C connections × D pipelined FC3 reads of 10 registers, each response
// checked for its length and transaction id, for a few seconds per path, the paths interleaved
// and the median of the rounds kept; plcguard's CPU time is read from /proc, so the cost is given
// per request. Then handshakes: connect, verify, close, back to back (1 and 8 at a time).
//
//   node dist/bench/mbaps.js [--seconds S] [--rounds N]
import { fork } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { once } from 'node:events';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { TestCa } from '../demo/pki.js';
import { cpuSeconds } from './lib/procfs.js';
import { freePort } from './lib/net.js';
import { startPlcguard, stopChild } from './lib/process.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REGISTERS = 10;
/** FC3 response: MBAP 7 + FC 1 + byte count 1 + 2 per register. */
const RESPONSE_LENGTH = 9 + 2 * REGISTERS;

function request(tid: number): Buffer {
  // | tid | proto 0 | length 6 | unit 1 | FC3 | start 0 | qty 10 |
  const b = Buffer.from([0, 0, 0, 0, 0, 6, 1, 3, 0, 0, 0, REGISTERS]);
  b.writeUInt16BE(tid, 0);
  return b;
}

type Connect = () => net.Socket;

/** C connections × D requests in flight for `seconds`; requests answered per second. */
async function load(connect: Connect, secure: boolean, connections: number, depth: number, seconds: number): Promise<number> {
  const sockets = await Promise.all(
    Array.from({ length: connections }, async () => {
      const s = connect();
      await once(s, secure ? 'secureConnect' : 'connect');
      return s;
    }),
  );
  let done = 0;
  let running = true;
  let failed: Error | null = null;
  for (const s of sockets) {
    let pending: Buffer = Buffer.alloc(0);
    let tid = 0;
    const send = (): boolean => s.write(request(tid++ & 0xffff));
    s.on('data', (chunk: Buffer) => {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      while (pending.length >= RESPONSE_LENGTH) {
        if (pending.readUInt16BE(4) !== RESPONSE_LENGTH - 6) failed ??= new Error(`unexpected response ${pending.subarray(0, 9).toString('hex')}`);
        pending = pending.subarray(RESPONSE_LENGTH);
        done++;
        if (running) send();
      }
    });
    s.on('error', (err) => (failed ??= err));
    for (let i = 0; i < depth; i++) send();
  }
  const start = process.hrtime.bigint();
  const from = done;
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const answered = done - from;
  const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
  running = false;
  for (const s of sockets) s.destroy();
  // Set in the callbacks above: TypeScript can't see it.
  const err = failed as Error | null;
  if (err !== null) throw err;
  return answered / elapsed;
}

/** Handshakes completed per second, `parallel` at a time, for `seconds`. */
async function handshakes(port: number, options: tls.ConnectionOptions, parallel: number, seconds: number): Promise<number> {
  let done = 0;
  const until = Date.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (Date.now() < until) {
        const s = tls.connect({ port, host: '127.0.0.1', servername: 'localhost', ...options });
        await once(s, 'secureConnect');
        done++;
        s.destroy();
      }
    }),
  );
  return done / seconds;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { seconds: { type: 'string', default: '2' }, rounds: { type: 'string', default: '3' } } });
  const seconds = Number(values.seconds);
  const rounds = Number(values.rounds);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'plcguard-bench-mbaps-'));
  const ca = TestCa.create(dir);
  ca.issue('server', { cn: 'bench', server: true });
  const op = ca.issue('operator', { cn: 'bench-hmi', role: 'Operator' });
  const client = { ca: fs.readFileSync(ca.cert), cert: fs.readFileSync(op.cert), key: fs.readFileSync(op.key) };

  const plc = fork(path.join(HERE, 'plc.js'), ['--port', '0'], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  const [msg] = (await once(plc, 'message')) as [{ port: number }];
  const [plain, secure] = [await freePort(), await freePort()];
  const rules = `    rules:
      - read: { holding_registers: [0-99] }
`;
  fs.writeFileSync(
    path.join(dir, 'policy.yaml'),
    `version: 1
defaults:
  limits: { max_connections: 1000, max_connections_per_source: 1000, max_outstanding: 64 }
devices:
  - name: plain
    listen: 127.0.0.1:${plain}
    upstream: 127.0.0.1:${msg.port}
${rules}  - name: mbaps
    listen: 127.0.0.1:${secure}
    upstream: 127.0.0.1:${msg.port}
    tls: { cert: server.crt, key: server.key, ca: ca.crt }
${rules.replace('- read', '- roles: [Operator]\n        read')}`,
  );
  const guard = startPlcguard('plcguard', ['run', '--policy', path.join(dir, 'policy.yaml'), '--admin', 'off'], { stderr: 'inherit' });
  try {
    await guard.waitForEvent('started');
    const pid = guard.child.pid!;
    const paths = {
      plain: (): net.Socket => net.connect({ port: plain, host: '127.0.0.1', noDelay: true }),
      mbaps: (): net.Socket => tls.connect({ port: secure, host: '127.0.0.1', servername: 'localhost', ...client }).setNoDelay(true),
    };
    const lines = ['| connections × depth | path | requests/s (median) | plcguard CPU µs/request |', '|---|---|---|---|'];
    for (const [c, d] of [[1, 1], [16, 8]] as const) {
      const rates: Record<string, number[]> = { plain: [], mbaps: [] };
      const cpu: Record<string, number[]> = { plain: [], mbaps: [] };
      for (let r = 0; r < rounds; r++) {
        for (const name of ['plain', 'mbaps'] as const) {
          const before = cpuSeconds(pid);
          const rate = await load(paths[name], name === 'mbaps', c, d, seconds);
          rates[name]!.push(rate);
          cpu[name]!.push(((cpuSeconds(pid) - before) * 1e6) / (rate * seconds));
        }
      }
      for (const name of ['plain', 'mbaps']) {
        lines.push(`| ${c} × ${d} | ${name} | ${Math.round(median(rates[name]!))} | ${median(cpu[name]!).toFixed(1)} |`);
      }
    }
    lines.push('', '| handshakes at once | handshakes/s | plcguard CPU ms/handshake |', '|---|---|---|');
    for (const parallel of [1, 8]) {
      const before = cpuSeconds(pid);
      const rate = await handshakes(secure, client, parallel, seconds);
      lines.push(`| ${parallel} | ${Math.round(rate)} | ${(((cpuSeconds(pid) - before) * 1e3) / (rate * seconds)).toFixed(2)} |`);
    }
    process.stdout.write(`${lines.join('\n')}\n\n${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, Node ${process.version}, ${seconds} s × ${rounds} rounds\n`);
  } catch (err) {
    // What plcguard said about the connections that failed.
    process.stderr.write(guard.stdout().split('\n').filter((l) => l.includes('"refused"')).slice(-3).join('\n') + '\n');
    throw err;
  } finally {
    await stopChild(guard.child);
    await stopChild(plc);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

await main();
