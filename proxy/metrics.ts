import client from 'prom-client';
import { DECISION_REASONS } from '../policy/types.js';
import type { StatsRegistry } from './server.js';
import { DECISIONS, FUNCTION_LABELS, REFUSALS, UPSTREAM_ERRORS, type DeviceStats, type Histogram } from './stats.js';

// Every metric plcguard exports, in one place. The hot path only bumps numbers in DeviceStats;
// they are turned into Prometheus series here, at scrape time.

/** Policy state that isn't per device. */
export class PolicyStats {
  version = 0;
  loaded = false;
  reloadsOk = 0;
  reloadsFailed = 0;
  lastReloadSeconds = 0;
  /** Whether Redis is reachable; null when Redis isn't used. */
  redisUp: (() => boolean) | null = null;
}

type Labels = Record<string, string>;

/** A histogram whose buckets are filled elsewhere (DeviceStats), exposed in Prometheus' shape. */
class CollectedHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  constructor(
    readonly name: string,
    readonly help: string,
    private readonly series: () => Iterable<[Labels, Histogram]>,
  ) {}

  get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: { labels: Labels; value: number; metricName: string }[] }> {
    const values: { labels: Labels; value: number; metricName: string }[] = [];
    for (const [labels, h] of this.series()) {
      let acc = 0;
      for (let i = 0; i < h.bounds.length; i++) {
        acc += h.counts[i]!;
        values.push({ labels: { ...labels, le: String(h.bounds[i]) }, value: acc, metricName: `${this.name}_bucket` });
      }
      values.push({ labels: { ...labels, le: '+Inf' }, value: h.count, metricName: `${this.name}_bucket` });
      values.push({ labels, value: h.sum, metricName: `${this.name}_sum` });
      values.push({ labels, value: h.count, metricName: `${this.name}_count` });
    }
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values });
  }

  reset(): void {}
}

/** Builds the registry: one per process, passed to the admin server. */
export function createRegistry(stats: StatsRegistry, policy: PolicyStats, version: string): client.Registry {
  const register = new client.Registry();
  client.collectDefaultMetrics({ register, prefix: 'plcguard_' });
  const devices = (): Iterable<[string, DeviceStats]> => stats.devices.entries();

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
  const nonZero = (c: client.Counter, labels: Labels, v: number): void => {
    if (v > 0) c.inc(labels, v);
  };

  counter('plcguard_requests_total', 'Requests by device, function and decision.', ['device', 'function', 'decision'], (c) => {
    for (const [device, s] of devices()) {
      FUNCTION_LABELS.forEach((fn, f) =>
        DECISIONS.forEach((decision, d) => nonZero(c, { device, function: fn, decision }, s.requests[f * DECISIONS.length + d]!)),
      );
    }
  });
  counter('plcguard_denials_total', 'Denied (or, in monitor mode, would-be denied) requests and connections by reason.', ['device', 'reason'], (c) => {
    for (const [device, s] of devices()) DECISION_REASONS.forEach((reason, i) => nonZero(c, { device, reason }, s.denials[i]!));
  });
  counter('plcguard_refused_connections_total', 'Client connections refused at accept, by reason.', ['device', 'reason'], (c) => {
    for (const [device, s] of devices()) REFUSALS.forEach((reason, i) => nonZero(c, { device, reason }, s.refused[i]!));
  });
  counter('plcguard_upstream_errors_total', 'PLC connection failures by kind.', ['device', 'kind'], (c) => {
    for (const [device, s] of devices()) UPSTREAM_ERRORS.forEach((kind, i) => nonZero(c, { device, kind }, s.upstreamErrors[i]!));
  });
  const simple = (name: string, help: string, pick: (s: DeviceStats) => number): void =>
    counter(name, help, ['device'], (c) => {
      for (const [device, s] of devices()) c.inc({ device }, pick(s));
    });
  simple('plcguard_framing_errors_total', 'Client streams closed for a framing error.', (s) => s.framingErrors);
  simple('plcguard_unsolicited_responses_total', 'PLC responses that matched no outstanding request (dropped).', (s) => s.unsolicitedResponses);
  simple('plcguard_inconsistent_responses_total', 'PLC responses whose body did not fit the request (delivered).', (s) => s.inconsistentResponses);
  simple('plcguard_frame_timeouts_total', 'Client connections closed for not completing a frame in time.', (s) => s.frameTimeouts);

  gauge('plcguard_client_connections', 'Open client connections.', ['device'], (g) => {
    for (const [device, s] of devices()) g.set({ device }, s.clientConnections);
  });
  gauge('plcguard_upstream_connections', 'Open PLC connections.', ['device'], (g) => {
    for (const [device, s] of devices()) g.set({ device }, s.upstreamConnections);
  });

  const histogram = (name: string, help: string, pick: (s: DeviceStats) => Histogram): void => {
    register.registerMetric(
      new CollectedHistogram(name, help, function* () {
        for (const [device, s] of devices()) yield [{ device }, pick(s)];
      }) as unknown as client.Metric,
    );
  };
  histogram('plcguard_round_trip_seconds', 'Client-visible round trip through plcguard, request arrival to response sent.', (s) => s.roundTrip);
  histogram('plcguard_upstream_response_seconds', "The PLC's own response time.", (s) => s.upstreamTime);
  histogram('plcguard_added_latency_seconds', 'Time plcguard itself adds per request (request and response paths).', (s) => s.added);

  gauge('plcguard_policy_version', 'Version of the policy in force (0 for a file).', [], (g) => g.set(policy.version));
  gauge('plcguard_policy_loaded', '1 when a valid policy is in force.', [], (g) => g.set(policy.loaded ? 1 : 0));
  counter('plcguard_policy_reloads_total', 'Policy reloads by result.', ['result'], (c) => {
    c.inc({ result: 'ok' }, policy.reloadsOk);
    c.inc({ result: 'failed' }, policy.reloadsFailed);
  });
  gauge('plcguard_policy_last_reload_timestamp_seconds', 'When the policy in force was loaded.', [], (g) => g.set(policy.lastReloadSeconds));
  gauge('plcguard_redis_up', '1 when Redis is reachable (absent without Redis).', [], (g) => {
    if (policy.redisUp !== null) g.set(policy.redisUp() ? 1 : 0);
  });
  const info = new client.Gauge({ name: 'plcguard_build_info', help: 'Build information.', labelNames: ['version', 'node'], registers: [register] });
  info.set({ version, node: process.version }, 1);
  return register;
}
