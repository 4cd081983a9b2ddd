import { readdir } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import client from 'prom-client';
import { DECISION_REASONS } from '../policy/types.js';
import type { StatsRegistry } from './server.js';
import {
  DECISION_DENIED,
  DECISIONS,
  FUNCTION_LABELS,
  REFUSALS,
  UPSTREAM_ERRORS,
  WRITE_FUNCTION_CODES,
  functionIndex,
  LATENCY_BUCKETS_SECONDS,
  type DeviceStats,
  type Histogram,
} from './stats.js';

// Every metric plcguard exports, in one place. The hot path only bumps numbers in DeviceStats
// (proxy/stats.ts); they become Prometheus series here, at scrape time, so counting costs no label
// hashing and no allocation per request.
//
// Labels take values from fixed sets only: device (from the policy), function (the public
// function names, then `other`), decision, reason, kind, result. Never addresses, ports or
// transaction ids: the number of series stays bounded whatever a client sends.
//
// Series of small fixed sets (denials by decision and reason, refusals, upstream errors, reloads)
// exist from the start with 0: rate() and increase() only see an increase between two samples of a
// series, so a series born at its first event would hide that event from alerts. Requests by
// function appear on first use instead, which keeps 20 functions × 3 decisions per device off the
// wire until a client needs them; but denied writes are there from the start, since a single one
// is an alert.
//
// Node's and the process's own metrics (prom-client's defaults) keep their standard names,
// without plcguard_: the stock Node.js dashboards and alerts find them.

/** Policy state that isn't per device. */
export class PolicyStats {
  version = 0;
  loaded = false;
  reloadsOk = 0;
  reloadsFailed = 0;
  /** sha256 of the policy in force ('' before the first load). */
  sha256 = '';
  /** Unix time (s) the policy in force was loaded; 0 before the first load. */
  lastReloadSeconds = 0;
  /**
   * Whether Redis is reachable; null when Redis isn't used. Set it before createRegistry: the
   * plcguard_redis_up series exists only when it was set then.
   */
  redisUp: (() => boolean) | null = null;
}

/** The checks /readyz makes, by name: true when passing. */
export type ReadinessChecks = () => Record<string, boolean>;

/** Denied write requests' series, there from the start: [function index, decision index]. */
const DENIED_WRITES = new Set(WRITE_FUNCTION_CODES.map((fc) => functionIndex(fc) * DECISIONS.length + DECISION_DENIED));

/** prom-client defaults that list every socket of the process on each scrape (see createRegistry). */
const SOCKET_ENUMERATING_DEFAULTS = ['process_open_fds', 'nodejs_active_handles', 'nodejs_active_handles_total', 'nodejs_active_resources', 'nodejs_active_resources_total'];

/**
 * How often the event-loop delay behind nodejs_eventloop_lag_* is sampled. prom-client's default,
 * 10 ms, is a timer that wakes the process 100 times a second whatever the traffic: an HMI
 * polling at 50 req/s then costs 3 wake-ups per request instead of the relay's 1.5 (bench,
 * "proxy wake-ups/req"), each one a CPU and, on a VM, a vCPU to wake. At 100 ms a stall of
 * 100 ms or more is always seen and a 15 s scrape still rests on 150 samples.
 */
const EVENT_LOOP_SAMPLE_MS = 100;

/** What the admin server serves at /metrics. */
export interface Exposition {
  readonly contentType: string;
  /**
   * Hands the text to `out` in pieces, in order, letting the event loop run between them. Rejects
   * before the first piece when a collector fails.
   */
  write(out: (piece: string) => void): Promise<void>;
}

/**
 * /metrics: prom-client's registry (Node's and the process's own metrics, and plcguard's
 * process-wide series), then the per-device families, written here from DeviceStats.
 *
 * Why not prom-client for those too: at plant scale they are most of the text (1,000 devices:
 * 119,000 series, 8.8 MB), and prom-client builds a labels object, a hash and a string array per
 * series, in one synchronous run: 0.4–0.5 s of blocked event loop per scrape, every Modbus
 * connection of the process waiting meanwhile, and ~100 MB of garbage each time. Written here
 * they are plain string concatenation over the counted arrays, and the writer gives the event
 * loop back every SLICE_MS, so a scrape never holds traffic for longer than that.
 */
export class Metrics implements Exposition {
  readonly contentType: string;

  constructor(
    /** prom-client's part. */
    readonly register: client.Registry,
    private readonly stats: StatsRegistry,
  ) {
    this.contentType = register.contentType;
  }

  async write(out: (piece: string) => void): Promise<void> {
    out(await this.register.metrics());
    await writeDeviceFamilies([...this.stats.devices], SLICE_MS, out);
  }

  /** The whole text at once. */
  async metrics(): Promise<string> {
    const pieces: string[] = [];
    await this.write((p) => pieces.push(p));
    return pieces.join('');
  }

  /** prom-client's resetMetrics(): the per-device counts belong to DeviceStats, and stay. */
  resetMetrics(): void {
    this.register.resetMetrics();
  }
}

/**
 * How long the per-device writer runs before it lets the event loop serve traffic again, and for
 * how many times that it then rests. 1,000 devices (8.8 MB) take ~30–100 ms of CPU to write:
 * without a rest a 0.8-core plant fell ~130 ms behind during each scrape (bench/RESULTS.md).
 */
const SLICE_MS = 2;
const REST_FACTOR = 4;

/** Builds the registry and the per-device families: one per process, passed to the admin server. */
export function createRegistry(stats: StatsRegistry, policy: PolicyStats, version: string, checks: ReadinessChecks = () => ({})): Metrics {
  const register = new client.Registry();
  client.collectDefaultMetrics({ register, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
  // These enumerate every socket on the event loop, synchronously, on every scrape: with a plant's
  // 20,000 sockets 15–30 ms for the descriptors (readdirSync of /proc/self/fd) and 25–30 ms for the
  // four handle and resource gauges, all of it traffic held up. The descriptors are counted again
  // below without blocking; the sockets that matter are plcguard_client_connections and
  // plcguard_upstream_connections, by device.
  for (const name of SOCKET_ENUMERATING_DEFAULTS) register.removeSingleMetric(name);
  new client.Gauge({
    name: 'process_open_fds',
    help: 'Number of open file descriptors.',
    registers: [register],
    async collect() {
      /* c8 ignore start -- no /proc/self/fd but on Linux, where alone prom-client had the series */
      const fds = await readdir('/proc/self/fd').catch(() => null);
      if (fds === null) return;
      /* c8 ignore stop */
      // Less the listing's own descriptor, closed again by now.
      this.set(fds.length - 1);
    },
  });

  // prom-client's gauges and counters, refilled from the plain numbers on every scrape.
  const counter = (name: string, help: string, labelNames: string[], fill: (c: client.Counter) => void): void => {
    new client.Counter({
      name,
      help,
      labelNames,
      registers: [register],
      collect() {
        this.reset();
        fill(this);
      },
    });
  };
  const gauge = (name: string, help: string, labelNames: string[], fill: (g: client.Gauge) => void): void => {
    new client.Gauge({
      name,
      help,
      labelNames,
      registers: [register],
      collect() {
        this.reset();
        fill(this);
      },
    });
  };

  gauge('plcguard_policy_version', 'Version of the policy in force (Redis version; 0 for a file).', [], (g) => g.set(policy.version));
  gauge('plcguard_policy_loaded', '1 when a valid policy is in force.', [], (g) => g.set(policy.loaded ? 1 : 0));
  // What tells instances' policies apart (a file's version is always 0); none before the first.
  gauge('plcguard_policy_info', 'The policy in force, by the sha256 of its text (always 1).', ['sha256'], (g) => {
    if (policy.sha256 !== '') g.set({ sha256: policy.sha256 }, 1);
  });
  gauge('plcguard_ready', "1 when this /readyz check passes; /readyz is 200 when all do.", ['check'], (g) => {
    for (const [check, ok] of Object.entries(checks())) g.set({ check }, ok ? 1 : 0);
  });
  counter('plcguard_policy_reloads_total', 'Policy loads (the first one included) by result.', ['result'], (c) => {
    c.inc({ result: 'ok' }, policy.reloadsOk);
    c.inc({ result: 'failed' }, policy.reloadsFailed);
  });
  gauge('plcguard_policy_last_reload_timestamp_seconds', 'Unix time the policy in force was loaded (0 before the first load).', [], (g) =>
    g.set(policy.lastReloadSeconds),
  );
  // Only with Redis: a label-less gauge always has a sample, and a 0 here would read as "Redis
  // down" for a file-based plcguard.
  const redisUp = policy.redisUp;
  if (redisUp !== null) gauge('plcguard_redis_up', '1 when Redis is reachable.', [], (g) => g.set(redisUp() ? 1 : 0));
  gauge('plcguard_build_info', 'Build information (always 1).', ['version', 'node'], (g) => g.set({ version, node: process.version }, 1));
  return new Metrics(register, stats);
}

// ---- the per-device families, written by hand (see Metrics) ----

/** One family: its lines for one device, `d` being that device's `device="<name>"` label. */
interface DeviceFamily {
  readonly name: string;
  readonly help: string;
  readonly type: 'counter' | 'gauge' | 'histogram';
  lines(d: string, s: DeviceStats): string;
}

/** A family with one series per device: `name{device="…"} value`. */
function single(name: string, help: string, type: 'counter' | 'gauge', pick: (s: DeviceStats) => number): DeviceFamily {
  return { name, help, type, lines: (d, s) => `${name}{${d}} ${pick(s)}\n` };
}

/** A family with a series per value of one more label, all there from the start: `name{device="…",label="…"} value`. */
function labelled(name: string, help: string, label: string, values: readonly string[], pick: (s: DeviceStats) => ArrayLike<number>): DeviceFamily {
  const heads = values.map((v) => `,${label}="${v}"} `);
  return {
    name,
    help,
    type: 'counter',
    lines(d, s) {
      const counts = pick(s);
      let out = '';
      for (let i = 0; i < heads.length; i++) out += `${name}{${d}${heads[i]}${counts[i]!}\n`;
      return out;
    },
  };
}

/** Prometheus' histogram shape: cumulative `_bucket{le}` series, `_sum`, `_count`. */
function histogram(name: string, help: string, pick: (s: DeviceStats) => Histogram): DeviceFamily {
  const les = [...LATENCY_BUCKETS_SECONDS.map(String), '+Inf'].map((le) => `,le="${le}"} `);
  return {
    name,
    help,
    type: 'histogram',
    lines(d, s) {
      const h = pick(s);
      let out = '';
      let acc = 0;
      for (let i = 0; i < h.counts.length; i++) {
        acc += h.counts[i]!;
        out += `${name}_bucket{${d}${les[i]}${acc}\n`;
      }
      return out + `${name}_bucket{${d}${les[h.counts.length]}${h.count}\n${name}_sum{${d}} ${h.sum}\n${name}_count{${d}} ${h.count}\n`;
    },
  };
}

/** `f` for the devices that have had shared PLC links only. */
function sharedOnly(f: DeviceFamily): DeviceFamily {
  return { ...f, lines: (d, s) => (s.sharedLinks ? f.lines(d, s) : '') };
}

const REASONS = DECISION_REASONS.filter((r) => r !== 'allowed');
const REASON_INDICES = REASONS.map((r) => DECISION_REASONS.indexOf(r));
/** Requests by function and decision: `{function="…",decision="…"}` for each index of DeviceStats.requests. */
const REQUEST_HEADS = FUNCTION_LABELS.flatMap((fn) => DECISIONS.map((decision) => `,function="${fn}",decision="${decision}"} `));

/** In the order prom-client's registry had them, names, help and labels unchanged. */
const DEVICE_FAMILIES: readonly DeviceFamily[] = [
  {
    name: 'plcguard_requests_total',
    help: 'Requests by device, function and decision (allowed, denied, would_deny in monitor mode).',
    type: 'counter',
    lines(d, s) {
      let out = '';
      for (let i = 0; i < REQUEST_HEADS.length; i++) {
        const v = s.requests[i]!;
        if (v > 0 || DENIED_WRITES.has(i)) out += `plcguard_requests_total{${d}${REQUEST_HEADS[i]}${v}\n`;
      }
      return out;
    },
  },
  {
    name: 'plcguard_denials_total',
    help: 'Requests denied, or in monitor mode that would have been, by reason (refused connections: plcguard_refused_connections_total).',
    type: 'counter',
    lines(d, s) {
      let out = '';
      for (const [decision, counts] of [['denied', s.denials], ['would_deny', s.wouldDenials]] as const) {
        for (let r = 0; r < REASONS.length; r++) out += `plcguard_denials_total{${d},decision="${decision}",reason="${REASONS[r]}"} ${counts[REASON_INDICES[r]!]!}\n`;
      }
      return out;
    },
  },
  labelled('plcguard_refused_connections_total', 'Client connections refused at accept, by reason.', 'reason', REFUSALS, (s) => s.refused),
  single('plcguard_client_connections_total', 'Client connections accepted (refused ones: plcguard_refused_connections_total).', 'counter', (s) => s.clientConnectionsTotal),
  {
    name: 'plcguard_bytes_total',
    help: "Bytes read from clients (from_client) and handed to them (to_client: PLC responses and plcguard's own replies).",
    type: 'counter',
    lines: (d, s) => `plcguard_bytes_total{${d},direction="from_client"} ${s.bytesFromClient}\nplcguard_bytes_total{${d},direction="to_client"} ${s.bytesToClient}\n`,
  },
  labelled('plcguard_upstream_errors_total', 'PLC connection failures by kind.', 'kind', UPSTREAM_ERRORS, (s) => s.upstreamErrors),
  single('plcguard_framing_errors_total', 'Client streams closed for a framing error.', 'counter', (s) => s.framingErrors),
  single('plcguard_unsolicited_responses_total', 'PLC responses that matched no outstanding request (dropped).', 'counter', (s) => s.unsolicitedResponses),
  single('plcguard_late_responses_total', 'PLC answers that came after plcguard had answered the request 0B at the response timeout (dropped).', 'counter', (s) => s.lateResponses),
  single('plcguard_inconsistent_responses_total', 'PLC responses whose body did not fit the request (delivered).', 'counter', (s) => s.inconsistentResponses),
  single('plcguard_frame_timeouts_total', 'Client connections closed for not completing a frame in time.', 'counter', (s) => s.frameTimeouts),
  {
    name: 'plcguard_audit_suppressed_total',
    help: 'Audit lines not written because their source or the whole process was over its budget, by budget (events: denials, refusals, framing errors; connections: connection_opened lines).',
    type: 'counter',
    lines: (d, s) =>
      `plcguard_audit_suppressed_total{${d},budget="events"} ${s.auditSuppressed}\nplcguard_audit_suppressed_total{${d},budget="connections"} ${s.connectionLinesSuppressed}\n`,
  },
  single('plcguard_client_connections', 'Open client connections.', 'gauge', (s) => s.clientConnections),
  single('plcguard_upstream_connections', 'Open PLC connections.', 'gauge', (s) => s.upstreamConnections),
  // Only devices that have been in learn mode have these series.
  {
    name: 'plcguard_learned_requests_total',
    help: 'Requests learn mode recorded (well-formed, forwarded, with their answers).',
    type: 'counter',
    lines: (d, s) => (s.learner === null ? '' : `plcguard_learned_requests_total{${d}} ${s.learner.requests}\n`),
  },
  {
    name: 'plcguard_learn_ceiling_reached',
    help: "1 once learn mode's observations are at their ceiling (further detail is merged, new sources and units are not learned).",
    type: 'gauge',
    lines: (d, s) => (s.learner === null ? '' : `plcguard_learn_ceiling_reached{${d}} ${s.learner.ceilingReached ? 1 : 0}\n`),
  },
  histogram('plcguard_round_trip_seconds', 'Client-visible round trip through plcguard, request arrival to response sent.', (s) => s.roundTrip),
  histogram('plcguard_upstream_response_seconds', "The PLC's own response time.", (s) => s.upstreamTime),
  histogram('plcguard_added_latency_seconds', 'Time plcguard itself adds per request (request and response paths).', (s) => s.added),
  // Connection sharing (proxy/pool.ts): only devices that have had shared links have these series
  // (24 a device: at plant scale, most devices would send zeros that nothing could ever change).
  sharedOnly(single('plcguard_upstream_queue_depth', 'Requests waiting for a shared PLC connection.', 'gauge', (s) => s.upstreamQueued)),
  sharedOnly(single('plcguard_upstream_remapped_transactions', 'Transaction ids taken on the shared PLC connections (requests the PLC may still answer).', 'gauge', (s) => s.upstreamRemapped)),
  sharedOnly(histogram('plcguard_upstream_queue_wait_seconds', 'Time a request waited for a shared PLC connection (it counts toward the response timeout).', (s) => s.queueWait)),
  single('plcguard_abandoned_responses_total', 'PLC answers to requests whose client had closed its connection before they came (dropped).', 'counter', (s) => s.abandonedResponses),
];

/**
 * Hands `out` the text of every per-device family for `devices`, in pieces: one each time it has
 * run `sliceMs`, after which it rests REST_FACTOR times as long, so that a scrape takes at most
 * 1 / (1 + REST_FACTOR) of the event loop from the traffic. Device names need no escaping in a
 * label value: the policy's NAME_PATTERN allows only [a-z0-9_-].
 */
export async function writeDeviceFamilies(devices: readonly [string, DeviceStats][], sliceMs: number, out: (piece: string) => void): Promise<void> {
  const labels = devices.map(([name]) => `device="${name}"`);
  let text = '';
  let since = performance.now();
  for (const f of DEVICE_FAMILIES) {
    text += `\n# HELP ${f.name} ${f.help}\n# TYPE ${f.name} ${f.type}\n`;
    for (let i = 0; i < devices.length; i++) {
      text += f.lines(labels[i]!, devices[i]![1]);
      const ran = performance.now() - since;
      if (ran >= sliceMs) {
        out(text);
        text = '';
        await sleep(REST_FACTOR * ran);
        since = performance.now();
      }
    }
  }
  out(text);
}
