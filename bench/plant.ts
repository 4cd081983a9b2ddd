// A plant on one plcguard: N devices (listeners), each with C clients polling at R req/s, against
// one simulated-PLC process serving all N endpoints (bench/plc.ts --listeners N), every answer
// verified byte for byte. Measures what an engineer sizing a box needs: plcguard's CPU and RSS
// under that load, the latency it adds (the same load straight to the PLCs, run just before, is
// the baseline), startup time to every device listening, memory per listener and per idle
// client, and the time to apply, live and under the load, a policy change that touches every
// device, with no connection and no request dropped.
//
// Used by bench/run.ts (`npm run bench`: 1,000 devices × 10 clients × 2 req/s) and by the soak's
// plant-rate phase (bench/soak.ts). Every child is forked from dist/ and stopped at the end.
import { fork, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { nextMessage, type LoadMessage, type LoadResult, type PacedConfig, type PlcMessage, type RelayMessage } from './ipc.js';
import { httpGet } from './lib/http.js';
import { freePort, connectLocal, portsBelowEphemeral } from './lib/net.js';
import { cpuSeconds, fileLimits, foreignCpuSeconds, rssBytes } from './lib/procfs.js';
import { startPlcguard, stopChild, type Proc } from './lib/process.js';
import { loopStallOf, startScraper, type ScrapeFigures, type Scraper } from './lib/scrape.js';
import { delay } from './lib/wait.js';
import { EXCEPTION, FC, adu, exceptionAdu, pdu, referenceResponse } from './model.js';
import { BENCH_UNIT } from './scenarios.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));

export interface PlantOptions {
  devices: number;
  clientsPerDevice: number;
  /** Each client polls once per intervalMs (open loop). */
  intervalMs: number;
  warmupSeconds: number;
  /** Measured seconds per phase (direct, then through plcguard); the reload is in the middle of the latter. */
  durationSeconds: number;
  progress: (line: string) => void;
  /** Where the plant's plcguard writes a V8 CPU profile (run.ts --cpu-prof); none when null. */
  cpuProfDir?: string | null;
  /**
   * `upstream_connections` of every device: its clients share that many PLC connections
   * (proxy/pool.ts); absent or null, each client has its own.
   */
  upstreamConnections?: number | null;
}

/** `npm run bench`: the plant of the issue. */
export const FULL_PLANT = { devices: 1000, clientsPerDevice: 10, intervalMs: 500, warmupSeconds: 2, durationSeconds: 10 } as const;
/** The smoke test's: the same steps, small. */
export const QUICK_PLANT = { devices: 20, clientsPerDevice: 3, intervalMs: 500, warmupSeconds: 0.3, durationSeconds: 1.5 } as const;

/** One pass of the load: straight to the PLCs or through plcguard. */
export interface PlantPhase {
  requests: number;
  requestsPerSecond: number;
  p50Us: number;
  p99Us: number;
  p999Us: number;
  /** CPU seconds per wall second in the window. */
  proxyCores: number | null;
  plcCores: number;
  loadCores: number;
  otherCores: number;
  /** plcguard's longest event-loop stall in the phase (null for the direct path). */
  loopStallMs: number | null;
  /** /metrics scraped every PLANT_SCRAPE_MS through the window, as Prometheus would (null: direct, and the reload's window). */
  scrapes: ScrapeFigures | null;
  sent: number;
  verified: number;
  errors: number;
  errorSamples: string[];
}

export interface PlantResult {
  devices: number;
  clients: number;
  /** Each client's poll interval (shorter than asked when fewer clients fit: see fileDescriptors). */
  intervalMs: number;
  requestsPerSecondOffered: number;
  /** Raised for plcguard, the PLC and the load generator (prlimit), or why not. */
  fileDescriptors: string;
  /** Spawn → every device listening (plcguard's policy_loaded, which follows its last listener). */
  startupSeconds: number;
  /** RSS right after start: 1 device, N devices. */
  rssOneDeviceBytes: number;
  rssListeningBytes: number;
  bytesPerListener: number;
  /** RSS once every client has connected and made one request (each holds its PLC connection), before polling. */
  rssConnectedBytes: number;
  bytesPerIdleClient: number;
  connectSeconds: number;
  rssPeakBytes: number;
  direct: PlantPhase;
  /** Through the blind pipe relay (bench/relay.ts --map) on the same ports, and its peak RSS; null with shared links. */
  relay: PlantPhase | null;
  relayRssPeakBytes: number | null;
  /** Through plcguard, steady (no reload). */
  plcguard: PlantPhase;
  /** Through plcguard again, the live policy change in the middle of the window. */
  reloadPhase: PlantPhase;
  /** pXX through plcguard − pXX direct. */
  addedP50Us: number;
  addedP99Us: number;
  /** `upstream_connections` of every device; null: a PLC connection per client. */
  upstreamConnections: number | null;
  /**
   * The most connections one PLC endpoint had open at once while plcguard served the plant (both
   * of its phases): the clients per device without sharing, at most `upstreamConnections` with it.
   */
  plcConnectionsPerEndpoint: number;
  /** PLC connections open in all, every client connected through plcguard. */
  plcConnections: number;
  /** Policy file replaced + SIGHUP → the new policy's policy_loaded line. */
  reloadSeconds: number;
  /** plcguard's longest event-loop stall around that change (from just before it to just after; NaN: not reported). */
  reloadStallMs: number;
  /** The same for a change to one device only, later in the window: only it compiles again. */
  oneDeviceReloadSeconds: number;
  oneDeviceReloadStallMs: number;
  /** Every device answered a probe per the new policy afterwards (denied before). */
  reloadVerifiedDevices: number;
  /** Nothing dropped across the reload: no connection closed, no request lost, all verified. */
  clean: boolean;
}

/** FC3 at this address is outside the first policy's reads and inside the second's: the probe. */
const PROBE_ADDRESS = 150;
const PROBE_QUANTITY = 10;
const START_TIMEOUT_MS = 30_000;
const RELOAD_TIMEOUT_MS = 30_000;
/** Connecting 10,000 clients (each with a request and, through plcguard, a PLC connection). */
const OPEN_TIMEOUT_MS = 120_000;
const DRAIN_SLACK_MS = 15_000;
/** For RSS to settle after a step (sockets freed, allocator quiet). */
const SETTLE_MS = 1000;
const RSS_SAMPLE_MS = 200;
/**
 * plcguard's /metrics is scraped this often in its windows: a plant's Prometheus scrapes every
 * 15–60 s, but a window is 10 s, and what a scrape of 1,000 devices costs the traffic belongs in
 * the figures (it was a 0.4–0.5 s stall before the per-device families were written by hand).
 */
const PLANT_SCRAPE_MS = 5000;
const PLANT_SCRAPE_TIMEOUT_MS = 10_000;
/** Descriptors a process needs beyond its sockets: node's own, stdio, the policy watcher, admin. */
const FD_SLACK = 100;

/**
 * The plant's policy: one device per PLC. Version 2 widens every device's reads (the live change
 * the issue asks for), version 3 then widens the first device's again (a change to one device).
 */
function plantPolicy(listenPorts: readonly number[], plcPorts: readonly number[], clientsPerDevice: number, version: 1 | 2 | 3, upstreamConnections: number | null): string {
  const reads = (i: number): string => (version === 1 ? '0-99' : version === 3 && i === 0 ? '0-299' : '0-199');
  const lines = ['version: 1', 'defaults:', '  mode: enforce', '  on_deny: exception', 'devices:'];
  for (let i = 0; i < listenPorts.length; i++) {
    lines.push(
      `  - name: plc-${String(i + 1).padStart(4, '0')}`,
      `    listen: 127.0.0.1:${listenPorts[i]}`,
      `    upstream: 127.0.0.1:${plcPorts[i]}`,
      ...(upstreamConnections === null ? [] : [`    upstream_connections: ${upstreamConnections}`]),
      '    limits:',
      `      max_connections: ${clientsPerDevice + 2}`,
      `      max_connections_per_source: ${clientsPerDevice + 2}`,
      '    rules:',
      '      - name: hmi-read',
      '        sources: [127.0.0.1]',
      `        units: [${BENCH_UNIT}]`,
      '        read:',
      `          holding_registers: [${reads(i)}]`,
    );
  }
  return lines.join('\n') + '\n';
}

/** Whether this process may raise a descriptor hard limit to `n` (tried on itself, then set back). */
function canRaiseHardLimit(n: number): boolean {
  const { soft, hard } = fileLimits();
  if (n <= hard) return true;
  if (raiseFdLimit(process.pid, n) !== null) return false;
  spawnSync('prlimit', ['--pid', String(process.pid), `--nofile=${soft}:${hard}`]);
  return true;
}

/** Sets a process's descriptor limit (soft and hard) with prlimit: root may raise the hard one. */
function raiseFdLimit(pid: number, n: number): string | null {
  const r = spawnSync('prlimit', ['--pid', String(pid), `--nofile=${n}:${n}`], { encoding: 'utf8' });
  return r.status === 0 ? null : (r.stderr || r.error?.message || `exit ${r.status}`).trim();
}

/** Sends FC3 at PROBE_ADDRESS to every port, a connection each; resolves how many got `expect`. */
async function probeAll(ports: readonly number[], allowed: boolean): Promise<number> {
  const request = adu(1, BENCH_UNIT, pdu.read(FC.READ_HOLDING_REGISTERS, PROBE_ADDRESS, PROBE_QUANTITY));
  const expected = allowed ? referenceResponse(request) : exceptionAdu(1, BENCH_UNIT, FC.READ_HOLDING_REGISTERS, EXCEPTION.ILLEGAL_DATA_ADDRESS);
  let ok = 0;
  const BATCH = 100;
  for (let i = 0; i < ports.length; i += BATCH) {
    const results = await Promise.all(
      ports.slice(i, i + BATCH).map(async (port) => {
        const socket = await connectLocal(port, { noDelay: true });
        try {
          const reply = await new Promise<Buffer>((resolve, reject) => {
            let got = Buffer.alloc(0);
            const timer = setTimeout(() => reject(new Error(`probe on :${port}: no reply`)), START_TIMEOUT_MS);
            socket.on('data', (c: Buffer) => {
              got = Buffer.concat([got, c]);
              if (got.length >= expected.length) {
                clearTimeout(timer);
                resolve(got);
              }
            });
            socket.on('error', reject);
            socket.write(request);
          });
          return reply.equals(expected);
        } finally {
          socket.destroy();
        }
      }),
    );
    ok += results.filter(Boolean).length;
  }
  return ok;
}

class Children {
  private readonly all = new Set<ChildProcess>();
  /** Forks one of the bench's own processes (no inherited flags: no loaders, no profilers). */
  fork(script: string, args: string[]): ChildProcess {
    const child = fork(path.join(HERE, script), args, { execArgv: [], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.add(child);
    return child;
  }
  add(child: ChildProcess): void {
    this.all.add(child);
    child.on('exit', () => this.all.delete(child));
  }
  pids(): number[] {
    return [...this.all].flatMap((c) => (c.pid === undefined ? [] : [c.pid]));
  }
  async stop(): Promise<void> {
    await Promise.all([...this.all].map((c) => stopChild(c)));
  }
}

type Opened = Extract<LoadMessage, { type: 'idle-opened' }>;
type Result = Extract<LoadMessage, { type: 'result' }>;

/** Runs the plant: the baseline straight to the PLCs, then through plcguard with the live policy change half-way. */
export async function runPlant(opts: PlantOptions): Promise<PlantResult> {
  const { devices, progress } = opts;
  const shared = opts.upstreamConnections ?? null;
  let { clientsPerDevice, intervalMs } = opts;
  // plcguard holds a listener per device and two sockets per client (its own PLC connection
  // each), or with sharing one per client and `shared` per device. Where the hard limit is below
  // that and can't be raised (no CAP_SYS_RESOURCE: a container), fewer clients per device poll
  // faster: the same requests per second.
  const hard = fileLimits().hard;
  const socketsPerClient = shared === null ? 2 : 1;
  const perDevice = (clients: number): number => 1 + (shared ?? 0) + socketsPerClient * clients;
  const fit = Math.floor((hard - FD_SLACK - devices * perDevice(0)) / (devices * socketsPerClient));
  const fdNotes: string[] = [];
  if (fit < clientsPerDevice && !canRaiseHardLimit(devices * perDevice(clientsPerDevice) + FD_SLACK)) {
    if (fit < 1) throw new Error(`plant: ${devices} devices need more descriptors than the hard limit ${hard}`);
    fdNotes.push(`hard limit ${hard} (can't be raised here): ${fit} clients per device every ${Math.round((intervalMs * fit) / clientsPerDevice)} ms instead of ${clientsPerDevice} every ${intervalMs} ms`);
    intervalMs = (intervalMs * fit) / clientsPerDevice;
    clientsPerDevice = fit;
  }
  const clients = devices * clientsPerDevice;
  const kids = new Children();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'plcguard-plant-'));
  const ours = (): number[] => [process.pid, ...kids.pids()];
  const raise = (what: string, pid: number, n: number): void => {
    const err = raiseFdLimit(pid, n);
    fdNotes.push(err === null ? `${what} ${n}` : `${what}: not raised (${err})`);
  };
  try {
    const plc = kids.fork('plc.js', ['--listeners', String(devices)]);
    const plcPorts = (await nextMessage<Extract<PlcMessage, { type: 'listening-many' }>>(plc, 'listening-many', 'plant PLCs start', START_TIMEOUT_MS)).ports;
    if (devices + clients + FD_SLACK > fileLimits(plc.pid).soft) raise('PLC', plc.pid!, devices + clients + FD_SLACK);
    const load = kids.fork('load.js', []);
    await nextMessage(load, 'ready', 'load generator start', START_TIMEOUT_MS);
    if (clients + FD_SLACK > fileLimits(load.pid).soft) raise('load generator', load.pid!, clients + FD_SLACK);
    progress(`plant: ${devices} PLCs (pid ${plc.pid}), load generator pid ${load.pid}`);

    // Memory per listener: RSS at start with one device and with all of them.
    const ports = await portsBelowEphemeral(devices);
    const startGuard = async (name: string, n: number): Promise<{ g: Proc; file: string; seconds: number; adminPort: number }> => {
      const file = path.join(tmp, `${name}.yaml`);
      fs.writeFileSync(file, plantPolicy(ports.slice(0, n), plcPorts, clientsPerDevice, 1, shared));
      const adminPort = await freePort();
      const t0 = performance.now();
      // Every line kept: the reload is found as the second policy_loaded line (a few MB at most).
      const g = startPlcguard(name, ['run', '--policy', file, '--admin', `127.0.0.1:${adminPort}`], {
        nodeArgs: opts.cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${opts.cpuProfDir}`] : [],
      });
      kids.add(g.child);
      await g.waitForEvent('policy_loaded', START_TIMEOUT_MS);
      return { g, file, seconds: (performance.now() - t0) / 1000, adminPort };
    };
    const one = await startGuard('plcguard-1-device', 1);
    await delay(SETTLE_MS);
    const rssOne = rssBytes(one.g.child.pid!);
    await one.g.stop();

    // Direct: the same clients and polls straight to the PLCs, as the baseline.
    let guardLog: Proc | null = null;
    /** What plcguard logged about its PLC connections: why requests got 0A/0B. */
    const upstreamTrouble = (): string => {
      const bad = guardLog?.events().filter((e) => String(e.event).startsWith('upstream_')) ?? [];
      return bad.length === 0 ? '' : `; plcguard logged ${bad.length} upstream events, first: ${JSON.stringify(bad[0])}`;
    };
    /**
     * plcguard's longest event-loop stall since the last call, ms (prom-client's loop-delay
     * histogram, which each scrape resets): what a reload's compile blocks everything for.
     */
    const stallMs = async (adminPort: number | null): Promise<number | null> => {
      if (adminPort === null) return null;
      // Scraped under load too (around each change), where a plcguard behind on its work answers late.
      return loopStallOf((await httpGet(adminPort, '/metrics', RELOAD_TIMEOUT_MS)).body);
    };
    const phase = async (
      ports: number[],
      proxy: { pid: number; adminPort: number | null } | null,
      enforced: boolean,
      /** Runs a third into the window; resolves the longest event-loop stall it read (its scrapes reset the gauge). */
      midWindow: (() => Promise<number>) | null,
    ): Promise<{ opened: Opened; result: LoadResult; phase: PlantPhase; peak: number; connectSeconds: number; rssConnected: number }> => {
      const proxyPid = proxy?.pid ?? null;
      const t0 = performance.now();
      const opened = nextMessage<Opened>(load, 'idle-opened', `${clients} plant clients`, OPEN_TIMEOUT_MS);
      load.send({ type: 'idle-open', config: { ports, connections: clients, mix: 'read', enforced } });
      const o = await opened;
      const connectSeconds = (performance.now() - t0) / 1000;
      if (o.opened !== clients || o.errors > 0) throw new Error(`plant: ${o.opened} of ${clients} clients connected, ${o.errors} errors: ${o.errorSamples.join('; ')}${upstreamTrouble()}`);
      await delay(SETTLE_MS);
      const rssConnected = proxyPid === null ? 0 : rssBytes(proxyPid);
      await stallMs(proxy?.adminPort ?? null);
      let peak = rssConnected;
      const config: PacedConfig = { intervalMs, warmupMs: opts.warmupSeconds * 1000, durationMs: opts.durationSeconds * 1000 };
      const snap = (): { t: number; proxy: number | null; plc: number; load: number; foreign: number } => ({
        t: performance.now(),
        proxy: proxyPid === null ? null : cpuSeconds(proxyPid),
        plc: cpuSeconds(plc.pid!),
        load: cpuSeconds(load.pid!),
        foreign: foreignCpuSeconds(ours()),
      });
      const win: { a: ReturnType<typeof snap> | null; b: ReturnType<typeof snap> | null; sampler: NodeJS.Timeout | null; scraper: Scraper | null; mid: Promise<number> | null } = {
        a: null,
        b: null,
        sampler: null,
        scraper: null,
        mid: null,
      };
      const onMessage = (m: unknown): void => {
        const type = (m as { type?: string }).type;
        if (type === 'window-start') {
          win.a = snap();
          if (proxy !== null) {
            win.sampler = setInterval(() => (peak = Math.max(peak, rssBytes(proxy.pid))), RSS_SAMPLE_MS);
            // Not in the reload's window: each scrape resets the stall that window reports around the change.
            if (midWindow === null && proxy.adminPort !== null) win.scraper = startScraper(proxy.adminPort, PLANT_SCRAPE_MS, PLANT_SCRAPE_TIMEOUT_MS);
          }
          if (midWindow) win.mid = delay((opts.durationSeconds * 1000) / 3).then(midWindow);
        } else if (type === 'window-end') {
          win.b = snap();
          if (win.sampler) clearInterval(win.sampler);
        }
      };
      load.on('message', onMessage);
      let result: LoadResult;
      try {
        const done = nextMessage<Result>(load, 'result', 'plant load', config.warmupMs + config.durationMs + DRAIN_SLACK_MS);
        load.send({ type: 'paced', config });
        result = (await done).result;
        await win.mid;
      } finally {
        load.off('message', onMessage);
        if (win.sampler) clearInterval(win.sampler);
      }
      // Stopped after the window: a scrape is never cut short, and the next phase starts without one.
      const scrapes = win.scraper === null ? null : await win.scraper.stop();
      // The scrapes in the window each reset the stall they reported: the longest is the max of all.
      const lastStall = await stallMs(proxy?.adminPort ?? null);
      const loopStallMs = lastStall === null ? null : Math.max(lastStall, scrapes?.loopStallMs ?? 0, (await win.mid) ?? 0);
      const closed = nextMessage(load, 'idle-closed', 'closing plant clients', START_TIMEOUT_MS);
      load.send({ type: 'idle-close' });
      await closed;
      const { a, b } = win;
      if (a === null || b === null) throw new Error('plant: no measuring window reported');
      const wall = (b.t - a.t) / 1000;
      return {
        opened: o,
        result,
        peak,
        connectSeconds,
        rssConnected,
        phase: {
          requests: result.requests,
          requestsPerSecond: result.requestsPerSecond,
          p50Us: result.latency.p50Us,
          p99Us: result.latency.p99Us,
          p999Us: result.latency.p999Us,
          proxyCores: a.proxy === null || b.proxy === null ? null : (b.proxy - a.proxy) / wall,
          plcCores: (b.plc - a.plc) / wall,
          loadCores: (b.load - a.load) / wall,
          otherCores: Math.max(0, (b.foreign - a.foreign) / wall),
          loopStallMs,
          scrapes,
          sent: result.sent,
          verified: result.verified,
          errors: result.errors,
          errorSamples: result.errorSamples,
        },
      };
    };
    progress(`plant: direct, ${clients} clients × ${1000 / intervalMs} req/s`);
    const direct = await phase(plcPorts, null, false, null);
    progress(`plant: direct ${Math.round(direct.phase.requestsPerSecond)} req/s, p50 ${direct.phase.p50Us.toFixed(0)} µs, p99 ${direct.phase.p99Us.toFixed(0)} µs, ${direct.phase.errors} errors (others ${direct.phase.otherCores.toFixed(2)} cores)`);

    const describe = (what: string, x: { phase: PlantPhase; peak: number }): void =>
      progress(
        `plant: ${what} ${Math.round(x.phase.requestsPerSecond)} req/s, p50 ${x.phase.p50Us.toFixed(0)} µs, p99 ${x.phase.p99Us.toFixed(0)} µs, ` +
          `${(x.phase.proxyCores ?? 0).toFixed(2)} cores, peak RSS ${(x.peak / 1048576).toFixed(1)} MiB, ${x.phase.errors} errors (others ${x.phase.otherCores.toFixed(2)} cores)`,
      );
    // The same clients through a blind pipe relay on plcguard's ports: what any Node.js hop costs
    // at this scale (on loopback, each write() also carries the receiver's TCP work). Not with
    // sharing: a relay has a PLC connection per client, which the descriptors may not allow.
    const relayPhase = async (): Promise<Awaited<ReturnType<typeof phase>>> => {
      progress(`plant: through the pipe relay, ${clients} clients`);
      const relay = kids.fork('relay.js', ['--map', ports.map((p, i) => `${p}=${plcPorts[i]}`).join(',')]);
      await nextMessage<Extract<RelayMessage, { type: 'listening-many' }>>(relay, 'listening-many', 'plant relay start', START_TIMEOUT_MS);
      const fds = devices + 2 * clients + FD_SLACK;
      if (fds > fileLimits(relay.pid).soft) raise('relay', relay.pid!, fds);
      const relayed = await phase(ports, { pid: relay.pid!, adminPort: null }, false, null);
      await stopChild(relay);
      describe('pipe relay', relayed);
      return relayed;
    };
    const relayed = shared === null ? await relayPhase() : null;

    const all = await startGuard('plcguard-plant', devices);
    const guardPid = all.g.child.pid!;
    guardLog = all.g;
    // Its own descriptors (N listeners) are under any limit; its clients' (2 per client) may not be.
    if (devices * perDevice(clientsPerDevice) + FD_SLACK > fileLimits(guardPid).soft) raise('plcguard', guardPid, devices * perDevice(clientsPerDevice) + FD_SLACK);
    await delay(SETTLE_MS);
    const rssListening = rssBytes(guardPid);
    progress(`plant: plcguard pid ${guardPid}, ${devices} devices listening after ${all.seconds.toFixed(2)} s, RSS ${(rssListening / 1048576).toFixed(1)} MiB (1 device: ${(rssOne / 1048576).toFixed(1)} MiB)`);
    const deniedBefore = await probeAll(ports, false);

    // The PLC's per-endpoint peak counts from here: the direct phase had a connection per client.
    const plcStats = async (): Promise<Extract<PlcMessage, { type: 'stats' }>> => {
      const stats = nextMessage<Extract<PlcMessage, { type: 'stats' }>>(plc, 'stats', 'PLC stats', START_TIMEOUT_MS);
      plc.send({ type: 'stats' });
      return stats;
    };
    await plcStats();
    let plcConnections = 0;

    /** Replaces the policy file with `version` and sends SIGHUP: seconds to its policy_loaded line, and the stall around it. */
    /** `before`: the stall reported just before the change, since the previous scrape. */
    const change = async (version: 2 | 3, nth: number): Promise<{ seconds: number; stallMs: number; before: number }> => {
      const tmpFile = `${all.file}.tmp`;
      fs.writeFileSync(tmpFile, plantPolicy(ports, plcPorts, clientsPerDevice, version, shared));
      const loaded = all.g.waitForEvent('policy_loaded', RELOAD_TIMEOUT_MS, nth);
      const before = (await stallMs(all.adminPort)) ?? NaN;
      const t0 = performance.now();
      fs.renameSync(tmpFile, all.file);
      all.g.child.kill('SIGHUP');
      await loaded;
      const seconds = (performance.now() - t0) / 1000;
      return { seconds, stallMs: (await stallMs(all.adminPort)) ?? NaN, before };
    };
    let everyDevice = { seconds: NaN, stallMs: NaN, before: NaN };
    let oneDevice = { seconds: NaN, stallMs: NaN, before: NaN };
    const reload = async (): Promise<number> => {
      plcConnections = (await plcStats()).connections;
      everyDevice = await change(2, 2);
      progress(`plant: policy change on all ${devices} devices applied in ${(everyDevice.seconds * 1000).toFixed(0)} ms under load, event loop stalled ${everyDevice.stallMs.toFixed(0)} ms`);
      await delay((opts.durationSeconds * 1000) / 4);
      oneDevice = await change(3, 3);
      progress(`plant: policy change on 1 device applied in ${(oneDevice.seconds * 1000).toFixed(0)} ms under load, event loop stalled ${oneDevice.stallMs.toFixed(0)} ms`);
      return Math.max(...[everyDevice, oneDevice].flatMap((c) => [c.before, c.stallMs]).filter(Number.isFinite));
    };
    // Steady state first, then the same load again with the live change in the middle: a reload
    // stalls the event loop while it compiles, and its backlog must not be read as steady latency.
    progress(`plant: through plcguard, ${clients} clients × ${(1000 / intervalMs).toFixed(2)} req/s`);
    const guarded = await phase(ports, { pid: guardPid, adminPort: all.adminPort }, true, null);
    describe('plcguard', guarded);
    progress('plant: again, with a policy change on every device mid-window');
    const reloaded = await phase(ports, { pid: guardPid, adminPort: all.adminPort }, true, reload);
    describe('plcguard with the reload', reloaded);
    const allowedAfter = await probeAll(ports, true);
    const plcConnectionsPerEndpoint = (await plcStats()).peakPerEndpoint;
    const g = guarded.phase;
    await all.g.stop();
    const clean =
      direct.phase.errors === 0 &&
      (relayed === null || (relayed.phase.errors === 0 && relayed.phase.verified === relayed.phase.sent)) &&
      g.errors === 0 &&
      g.verified === g.sent &&
      reloaded.phase.errors === 0 &&
      reloaded.phase.verified === reloaded.phase.sent &&
      direct.phase.verified === direct.phase.sent &&
      deniedBefore === devices &&
      allowedAfter === devices &&
      Number.isFinite(everyDevice.seconds) &&
      Number.isFinite(oneDevice.seconds);
    return {
      devices,
      clients,
      requestsPerSecondOffered: (clients * 1000) / intervalMs,
      fileDescriptors: fdNotes.length > 0 ? fdNotes.join('; ') : `all within the limit (${fileLimits().soft})`,
      intervalMs,
      startupSeconds: all.seconds,
      rssOneDeviceBytes: rssOne,
      rssListeningBytes: rssListening,
      bytesPerListener: devices > 1 ? Math.max(0, rssListening - rssOne) / (devices - 1) : 0,
      rssConnectedBytes: guarded.rssConnected,
      bytesPerIdleClient: Math.max(0, guarded.rssConnected - rssListening) / clients,
      connectSeconds: guarded.connectSeconds,
      rssPeakBytes: Math.max(guarded.peak, reloaded.peak),
      direct: direct.phase,
      relay: relayed?.phase ?? null,
      relayRssPeakBytes: relayed?.peak ?? null,
      plcguard: g,
      reloadPhase: reloaded.phase,
      addedP50Us: g.p50Us - direct.phase.p50Us,
      addedP99Us: g.p99Us - direct.phase.p99Us,
      upstreamConnections: shared,
      plcConnectionsPerEndpoint,
      plcConnections,
      reloadSeconds: everyDevice.seconds,
      reloadStallMs: everyDevice.stallMs,
      oneDeviceReloadSeconds: oneDevice.seconds,
      oneDeviceReloadStallMs: oneDevice.stallMs,
      reloadVerifiedDevices: allowedAfter,
      clean,
    };
  } finally {
    await kids.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
