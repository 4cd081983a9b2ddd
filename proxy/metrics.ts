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

type Labels = Record<string, string>;
type HistogramValue = { labels: Labels; value: number; metricName: string };

/**
 * A histogram whose buckets are filled elsewhere (DeviceStats), exposed in Prometheus' shape:
 * cumulative `_bucket{le}` series, `_sum`, `_count`.
 */
class CollectedHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  constructor(
    readonly name: string,
    readonly help: string,
    private readonly series: () => Iterable<[Labels, Histogram]>,
  ) {}

  get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: HistogramValue[] }> {
    const values: HistogramValue[] = [];
    const bucket = `${this.name}_bucket`;
    for (const [labels, h] of this.series()) {
      let acc = 0;
      for (let i = 0; i < h.bounds.length; i++) {
        acc += h.counts[i]!;
        values.push({ labels: { ...labels, le: String(h.bounds[i]) }, value: acc, metricName: bucket });
      }
      values.push({ labels: { ...labels, le: '+Inf' }, value: h.count, metricName: bucket });
      values.push({ labels, value: h.sum, metricName: `${this.name}_sum` });
      values.push({ labels, value: h.count, metricName: `${this.name}_count` });
    }
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values });
  }

  /** The registry's resetMetrics(): nothing to reset, the counts belong to DeviceStats. */
  reset(): void {}
}

/** The checks /readyz makes, by name: true when passing. */
export type ReadinessChecks = () => Record<string, boolean>;

/** Denied write requests' series, there from the start: [function index, decision index]. */
const DENIED_WRITES = new Set(WRITE_FUNCTION_CODES.map((fc) => functionIndex(fc) * DECISIONS.length + DECISION_DENIED));

/**
 * How often the event-loop delay behind nodejs_eventloop_lag_* is sampled. prom-client's default,
 * 10 ms, is a timer that wakes the process 100 times a second whatever the traffic: an HMI
 * polling at 50 req/s then costs 3 wake-ups per request instead of the relay's 1.5 (bench,
 * "proxy wake-ups/req"), each one a CPU and, on a VM, a vCPU to wake. At 100 ms a stall of
 * 100 ms or more is always seen and a 15 s scrape still rests on 150 samples.
 */
const EVENT_LOOP_SAMPLE_MS = 100;

/** Builds the registry: one per process, passed to the admin server. */
export function createRegistry(stats: StatsRegistry, policy: PolicyStats, version: string, checks: ReadinessChecks = () => ({})): client.Registry {
  const register = new client.Registry();
  client.collectDefaultMetrics({ register, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
  const devices = (): Iterable<[string, DeviceStats]> => stats.devices.entries();

  // prom-client's counters and gauges, refilled from the plain numbers on every scrape.
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

  // Loops run over the counted arrays (sized from the label lists in stats.ts), so every value
  // passed to inc() is a number: inc(labels, undefined) would count 1.
  counter('plcguard_requests_total', 'Requests by device, function and decision (allowed, denied, would_deny in monitor mode).', ['device', 'function', 'decision'], (c) => {
    for (const [device, s] of devices()) {
      FUNCTION_LABELS.forEach((fn, f) =>
        DECISIONS.forEach((decision, d) => {
          const i = f * DECISIONS.length + d;
          const v = s.requests[i]!;
          if (v > 0 || DENIED_WRITES.has(i)) c.inc({ device, function: fn, decision }, v);
        }),
      );
    }
  });
  counter('plcguard_denials_total', 'Requests denied, or in monitor mode that would have been, by reason (refused connections: plcguard_refused_connections_total).', ['device', 'decision', 'reason'], (c) => {
    for (const [device, s] of devices()) {
      for (const [decision, counts] of [['denied', s.denials], ['would_deny', s.wouldDenials]] as const) {
        counts.forEach((v, i) => {
          const reason = DECISION_REASONS[i];
          if (reason !== 'allowed') c.inc({ device, decision, reason }, v);
        });
      }
    }
  });
  counter('plcguard_refused_connections_total', 'Client connections refused at accept, by reason.', ['device', 'reason'], (c) => {
    for (const [device, s] of devices()) s.refused.forEach((v, i) => c.inc({ device, reason: REFUSALS[i] }, v));
  });
  counter('plcguard_client_connections_total', 'Client connections accepted (refused ones: plcguard_refused_connections_total).', ['device'], (c) => {
    for (const [device, s] of devices()) c.inc({ device }, s.clientConnectionsTotal);
  });
  counter('plcguard_bytes_total', 'Bytes read from clients (from_client) and handed to them (to_client: PLC responses and plcguard\'s own replies).', ['device', 'direction'], (c) => {
    for (const [device, s] of devices()) {
      c.inc({ device, direction: 'from_client' }, s.bytesFromClient);
      c.inc({ device, direction: 'to_client' }, s.bytesToClient);
    }
  });
  counter('plcguard_upstream_errors_total', 'PLC connection failures by kind.', ['device', 'kind'], (c) => {
    for (const [device, s] of devices()) s.upstreamErrors.forEach((v, i) => c.inc({ device, kind: UPSTREAM_ERRORS[i] }, v));
  });
  const perDevice = (name: string, help: string, pick: (s: DeviceStats) => number): void =>
    counter(name, help, ['device'], (c) => {
      for (const [device, s] of devices()) c.inc({ device }, pick(s));
    });
  perDevice('plcguard_framing_errors_total', 'Client streams closed for a framing error.', (s) => s.framingErrors);
  perDevice('plcguard_unsolicited_responses_total', 'PLC responses that matched no outstanding request (dropped).', (s) => s.unsolicitedResponses);
  perDevice('plcguard_late_responses_total', 'PLC answers that came after plcguard had answered the request 0B at the response timeout (dropped).', (s) => s.lateResponses);
  perDevice('plcguard_inconsistent_responses_total', 'PLC responses whose body did not fit the request (delivered).', (s) => s.inconsistentResponses);
  perDevice('plcguard_frame_timeouts_total', 'Client connections closed for not completing a frame in time.', (s) => s.frameTimeouts);
  counter('plcguard_audit_suppressed_total', 'Audit lines not written because their source or the whole process was over its budget, by budget (events: denials, refusals, framing errors; connections: connection_opened lines).', ['device', 'budget'], (c) => {
    for (const [device, s] of devices()) {
      c.inc({ device, budget: 'events' }, s.auditSuppressed);
      c.inc({ device, budget: 'connections' }, s.connectionLinesSuppressed);
    }
  });

  gauge('plcguard_client_connections', 'Open client connections.', ['device'], (g) => {
    for (const [device, s] of devices()) g.set({ device }, s.clientConnections);
  });
  gauge('plcguard_upstream_connections', 'Open PLC connections.', ['device'], (g) => {
    for (const [device, s] of devices()) g.set({ device }, s.upstreamConnections);
  });
  // Only devices that have been in learn mode have these series.
  counter('plcguard_learned_requests_total', 'Requests learn mode recorded (well-formed, forwarded, with their answers).', ['device'], (c) => {
    for (const [device, s] of devices()) if (s.learner !== null) c.inc({ device }, s.learner.requests);
  });
  gauge('plcguard_learn_ceiling_reached', '1 once learn mode\'s observations are at their ceiling (further detail is merged, new sources and units are not learned).', ['device'], (g) => {
    for (const [device, s] of devices()) if (s.learner !== null) g.set({ device }, s.learner.ceilingReached ? 1 : 0);
  });

  const histogram = (name: string, help: string, pick: (s: DeviceStats) => Histogram): void => {
    const h = new CollectedHistogram(name, help, function* () {
      for (const [device, s] of devices()) yield [{ device }, pick(s)];
    });
    // prom-client types a metric as the union of its own four classes; the registry itself only
    // calls name, get() and reset(), which CollectedHistogram has.
    register.registerMetric(h as unknown as client.Metric);
  };
  histogram('plcguard_round_trip_seconds', 'Client-visible round trip through plcguard, request arrival to response sent.', (s) => s.roundTrip);
  histogram('plcguard_upstream_response_seconds', "The PLC's own response time.", (s) => s.upstreamTime);
  histogram('plcguard_added_latency_seconds', 'Time plcguard itself adds per request (request and response paths).', (s) => s.added);

  // ---- connection sharing (proxy/pool.ts): 0 for devices without upstream_connections ----
  gauge('plcguard_upstream_queue_depth', 'Requests waiting for a shared PLC connection.', ['device'], (g) => {
    for (const [device, s] of devices()) g.set({ device }, s.upstreamQueued);
  });
  gauge('plcguard_upstream_remapped_transactions', 'Transaction ids taken on the shared PLC connections (requests the PLC may still answer).', ['device'], (g) => {
    for (const [device, s] of devices()) g.set({ device }, s.upstreamRemapped);
  });
  histogram('plcguard_upstream_queue_wait_seconds', 'Time a request waited for a shared PLC connection (it counts toward the response timeout).', (s) => s.queueWait);
  perDevice('plcguard_abandoned_responses_total', 'PLC answers to requests whose client had closed its connection before they came (dropped).', (s) => s.abandonedResponses);

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
  return register;
}
