import { FUNCTION_NAMES, FunctionCode } from '../modbus/index.js';
import { DECISION_REASONS, type DecisionReason } from '../policy/types.js';
import { HANDSHAKE_REFUSALS } from './tls.js';

// Hot-path counting: plain numbers in typed arrays, indexed by small integers, read at scrape time
// (proxy/metrics.ts). No label hashing, no allocation per request.

/** Function label values: the public function names, then `other`. */
export const FUNCTION_LABELS: readonly string[] = [...FUNCTION_NAMES.values(), 'other'];
const OTHER_INDEX = FUNCTION_LABELS.length - 1;
const FC_INDEX = new Uint8Array(256).fill(OTHER_INDEX);
for (const [i, fc] of [...FUNCTION_NAMES.keys()].entries()) FC_INDEX[fc] = i;

export function functionIndex(fc: number): number {
  return FC_INDEX[fc & 0xff]!;
}

/**
 * The functions that change a PLC's data (the writes `rate_limit.writes_per_second` counts). Their
 * denied requests are series from the start: one denied write is an alert (deploy/alerts.yml), and
 * increase() can't see the first event of a series born with it.
 */
export const WRITE_FUNCTION_CODES: readonly number[] = [
  FunctionCode.WRITE_SINGLE_COIL,
  FunctionCode.WRITE_SINGLE_REGISTER,
  FunctionCode.WRITE_MULTIPLE_COILS,
  FunctionCode.WRITE_MULTIPLE_REGISTERS,
  FunctionCode.WRITE_FILE_RECORD,
  FunctionCode.MASK_WRITE_REGISTER,
  FunctionCode.READ_WRITE_MULTIPLE_REGISTERS,
];

export const DECISIONS = ['allowed', 'denied', 'would_deny'] as const;
export type DecisionLabel = (typeof DECISIONS)[number];
export const DECISION_ALLOWED = 0;
export const DECISION_DENIED = 1;
export const DECISION_WOULD_DENY = 2;

const REASON_INDEX = new Map<DecisionReason, number>(DECISION_REASONS.map((r, i) => [r, i]));
export function reasonIndex(r: DecisionReason): number {
  return REASON_INDEX.get(r)!;
}

export const UPSTREAM_ERRORS = ['refused', 'unreachable', 'timeout', 'reset', 'closed', 'framing'] as const;
export type UpstreamErrorKind = (typeof UPSTREAM_ERRORS)[number];

/**
 * Why a connection was refused: at accept, or for a device with tls once its handshake is over
 * (the certificate didn't verify, or no rule matches the client's address and role).
 */
export const REFUSALS = ['source_not_allowed', 'max_connections', 'max_connections_per_source', 'no_policy', 'shutting_down', ...HANDSHAKE_REFUSALS, 'identity_not_allowed'] as const;
export type RefusalReason = (typeof REFUSALS)[number];

/** Fixed-bucket histogram (seconds), cheap to observe. */
export class Histogram {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length);
  }
  observe(v: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && v > b[i]!) i++;
    if (i < b.length) this.counts[i]!++;
    this.sum += v;
    this.count++;
  }
}

/** 1 µs … 1 s: plcguard's own time is microseconds; a PLC's is milliseconds. */
export const LATENCY_BUCKETS_SECONDS = [
  1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25,
  0.5, 1,
];

/** Everything counted about one device. */
export class DeviceStats {
  /** [function index × DECISIONS.length + decision]. */
  readonly requests = new Float64Array(FUNCTION_LABELS.length * DECISIONS.length);
  /** [reason index]: denied requests by reason (refused connections are counted in `refused` only). */
  readonly denials = new Float64Array(DECISION_REASONS.length);
  /** [reason index]: requests monitor mode would have denied, by reason. */
  readonly wouldDenials = new Float64Array(DECISION_REASONS.length);
  readonly refused = new Float64Array(REFUSALS.length);
  /** What the device learned in learn mode (read at scrape time); null until it was in learn mode. */
  learner: { readonly requests: number; readonly ceilingReached: boolean } | null = null;
  /** Client connections accepted (not refused). */
  clientConnectionsTotal = 0;
  /** Bytes read from client sockets (whole or not, allowed or not). */
  bytesFromClient = 0;
  /** Bytes handed to client sockets: the PLC's responses and plcguard's own exception replies. */
  bytesToClient = 0;
  readonly upstreamErrors = new Float64Array(UPSTREAM_ERRORS.length);
  framingErrors = 0;
  unsolicitedResponses = 0;
  /** Answers to requests plcguard had already answered 0B at the response timeout (dropped). */
  lateResponses = 0;
  /** Audit lines not written, over a source's or the process's budget (proxy/audit.ts). */
  auditSuppressed = 0;
  /** connection_opened lines not written, over their own budget (and so their closed lines). */
  connectionLinesSuppressed = 0;
  inconsistentResponses = 0;
  frameTimeouts = 0;
  clientConnections = 0;
  upstreamConnections = 0;
  /** Client-visible round trip through plcguard. */
  readonly roundTrip = new Histogram(LATENCY_BUCKETS_SECONDS);
  /** The PLC's own response time (request written → response received). */
  readonly upstreamTime = new Histogram(LATENCY_BUCKETS_SECONDS);
  /** Time plcguard itself adds per request (request path + response path). */
  readonly added = new Histogram(LATENCY_BUCKETS_SECONDS);

  // ---- connection sharing (proxy/pool.ts) ----
  /** The device has had shared PLC links (upstream_connections): only then does it have their series. */
  sharedLinks = false;
  /** Requests waiting for a shared PLC connection now. */
  upstreamQueued = 0;
  /** Transaction ids taken on the shared PLC connections now (the remap table's size). */
  upstreamRemapped = 0;
  /** Time requests waited for a shared PLC connection. */
  readonly queueWait = new Histogram(LATENCY_BUCKETS_SECONDS);
  /** Answers to requests whose client had gone before they came (dropped). */
  abandonedResponses = 0;

  countRequest(fc: number, decision: number): void {
    this.requests[functionIndex(fc) * DECISIONS.length + decision]!++;
  }
  countDenial(reason: DecisionReason): void {
    this.denials[reasonIndex(reason)]!++;
  }
  countWouldDeny(reason: DecisionReason): void {
    this.wouldDenials[reasonIndex(reason)]!++;
  }
  countRefusal(reason: RefusalReason): void {
    this.refused[REFUSALS.indexOf(reason)]!++;
  }
  countUpstreamError(kind: UpstreamErrorKind): void {
    this.upstreamErrors[UPSTREAM_ERRORS.indexOf(kind)]!++;
  }
}
