// SIGHUP, then SIGTERM, under load on the built binary (dist/cli/main.js; `npm test` builds it
// first): clients keep pipelining allowed and denied requests to a PLC that answers after a random
// delay, and one client ignores plcguard's FIN. The reloads must drop nothing; no request the PLC
// received may go unanswered, no reply may be wrong or doubled, and the process must exit 0 within
// the grace period. The same for the in-process runtime.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { startBinary } from './fixtures/binary.js';
import t from 'tap';
import { RawClient, hexOf, req } from './fixtures/raw-client.js';
import { normalReply, startRawPlc } from './fixtures/raw-plc.js';
import { ANY_PORT, devicePolicy, startProxy } from './fixtures/proxy.js';
import { freePort } from '../bench/lib/net.js';
import { until, within } from '../bench/lib/wait.js';
import { Random } from './fixtures/random.js';
import { PROBE_RULE, exceptionFor, plcReply } from './fixtures/invariants.js';

const RULES = `    rules:
${PROBE_RULE}      - name: hmi
        units: [1]
        read: { holding_registers: [0-99] }
`;
const GRACE_MS = 3000;

/** A client that keeps `depth` requests in flight until its connection closes. */
class Pipeliner {
  readonly sent = new Map<number, Buffer>();
  readonly replies: Buffer[] = [];
  private next = 0;

  constructor(
    readonly c: RawClient,
    private readonly index: number,
    private readonly rnd: Random,
  ) {}

  /** Runs until the connection closes; resolves then. */
  async run(depth: number): Promise<void> {
    for (let i = 0; i < depth; i++) this.sendOne();
    while (!this.c.isClosed) {
      const got = await this.c.read(1);
      this.replies.push(...got);
      if (!this.c.isClosed) for (let i = 0; i < got.length; i++) this.sendOne();
    }
    this.replies.push(...(await this.c.read(Number.MAX_SAFE_INTEGER)));
  }

  private sendOne(): void {
    // Transaction ids unique across all clients: the PLC's record tells whose request it was.
    const tid = (this.index << 12) | (this.next++ & 0xfff);
    const f = this.rnd.chance(0.8) ? req(tid, 1, [3, 0, this.rnd.int(90), 0, 1 + this.rnd.int(10)]) : req(tid, 1, [6, 0, this.rnd.int(100), 0, 1]);
    this.sent.set(tid, f);
    this.c.send(f);
  }
}

void t.test('SIGHUP and SIGTERM under load on the built binary: nothing the PLC received goes unanswered, exit 0', async (t) => {
  const plc = await startRawPlc();
  t.teardown(() => plc.close());
  const rnd = new Random(0x516_7e);
  const timers = new Set<NodeJS.Timeout>();
  plc.respond = (r, socket) => {
    // A PLC answering each request after 0–30 ms, out of order (matched by transaction id).
    const timer = setTimeout(() => {
      timers.delete(timer);
      if (!socket.destroyed) socket.write(normalReply(r));
    }, rnd.int(30));
    timers.add(timer);
    return { hang: true };
  };
  t.teardown(() => timers.forEach((x) => clearTimeout(x)));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'plcguard-adv-sig-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'p.yaml');
  fs.writeFileSync(file, devicePolicy(plc.port, RULES).replace(ANY_PORT, `127.0.0.1:${await freePort()}`));
  const guard = startBinary(['run', '--policy', file, '--admin', 'off', '--grace-ms', String(GRACE_MS)]);
  t.teardown(() => guard.stop('SIGKILL'));
  const port = (await guard.waitForEvent('listening')).port as number;

  const pipeliners = await Promise.all(
    Array.from({ length: 6 }, async (_, i) => new Pipeliner(await RawClient.connect(port, `127.0.9.${i + 1}`), i + 1, new Random(i + 1))),
  );
  const runs = pipeliners.map((p) => p.run(16));
  // One client that ignores the FIN and keeps its side open.
  const stubborn = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
  stubborn.on('error', () => {});
  await within(new Promise((resolve) => stubborn.once('connect', resolve)), 'the stubborn connection');

  await plc.waitForRequests(1000);
  // Reloads in the middle of it (SIGHUP used to end the process here, exit 129).
  for (let i = 0; i < 3; i++) {
    guard.child.kill('SIGHUP');
    // The one at start, then one per reload.
    await guard.waitForEvent('policy_loaded', undefined, i + 2);
  }
  t.equal(guard.events().filter((e) => e.event === 'reload_requested').length, 3);
  t.ok(pipeliners.every((p) => !p.c.isClosed), 'no connection dropped by the reloads');
  await plc.waitForRequests(2000);
  const termAt = performance.now();
  // Killed only if still running well after the grace period: the exit code then says it failed.
  const exited = guard.stop('SIGTERM', GRACE_MS + 5000);
  await guard.waitForEvent('stopping');
  const late = await RawClient.connect(port).then(
    (c) => (c.close(), 'connected'),
    (e: NodeJS.ErrnoException) => e.code,
  );
  t.equal(late, 'ECONNREFUSED', 'no new connections once stopping');
  const exit = await exited;
  const took = performance.now() - termAt;
  t.same(exit, { code: 0, signal: null }, 'exit 0');
  t.ok(took < GRACE_MS + 1500, `exited ${Math.round(took)} ms after SIGTERM, within the grace period and the close linger`);
  t.equal(guard.events().at(-1)!.event, 'stopped');
  await within(Promise.all(runs), 'every client saw its connection end');
  stubborn.destroy();

  // Every request the PLC received: exactly its answer at the client that sent it.
  const atPlc = new Set(plc.requests.map((r) => r.tid));
  const problems: string[] = [];
  let answered = 0;
  let denied = 0;
  for (const p of pipeliners) {
    const got = new Map<number, Buffer[]>();
    for (const r of p.replies) got.set(r.readUInt16BE(0), [...(got.get(r.readUInt16BE(0)) ?? []), r]);
    for (const [tid, f] of p.sent) {
      const rs = got.get(tid) ?? [];
      got.delete(tid);
      if (atPlc.has(tid)) {
        if (rs.length !== 1 || !rs[0]!.equals(plcReply(f))) problems.push(`tid ${tid} reached the PLC, reply ${rs.map(hexOf).join(',') || 'none'}`);
        else answered++;
      } else if (rs.length > 1 || (rs.length === 1 && !rs[0]!.equals(exceptionFor(f, 0x01)))) {
        problems.push(`tid ${tid} never reached the PLC, reply ${rs.map(hexOf).join(',')}`);
      } else if (rs.length === 1) denied++;
    }
    for (const [tid] of got) problems.push(`a reply to tid ${tid}, never sent`);
  }
  t.same(problems.slice(0, 10), [], `${answered} answered, ${denied} denied, nothing the PLC received lost or doubled`);
  t.ok(answered >= 2000, 'under load when the signal came');
});

void t.test('the in-process runtime stops within its grace period despite a client ignoring the FIN', async (t) => {
  const plc = await startRawPlc();
  const proxy = await startProxy(devicePolicy(plc.port, RULES), { graceMs: GRACE_MS });
  t.teardown(() => plc.close());
  const c = await RawClient.connect(proxy.port);
  c.send(req(1, 1, [3, 0, 0, 0, 1]));
  t.equal(hexOf((await within(c.read(), 'the answer'))[0]!), hexOf(plcReply(req(1, 1, [3, 0, 0, 0, 1]))));
  const stubborn = net.connect({ host: '127.0.0.1', port: proxy.port, allowHalfOpen: true });
  stubborn.on('error', () => {});
  await within(new Promise((resolve) => stubborn.once('connect', resolve)), 'the stubborn connection');
  await until(() => proxy.rt.server.sessions().length === 2, 'both sessions up');
  const started = performance.now();
  await within(proxy.stop(), 'the stop', GRACE_MS + 2000);
  t.ok(performance.now() - started < 2000, `stopped in ${Math.round(performance.now() - started)} ms: nothing outstanding, so no waiting for the grace period beyond the close linger`);
  await within(c.closed, 'the polite client closed');
  stubborn.destroy();
});
