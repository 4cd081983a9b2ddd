import type { ModbusRequest, Violation } from '../modbus/index.js';
import type { DeviceDocument, PolicyDocument } from './document.js';
import type { Mode, OnDeny } from './format.js';
import type { Endpoint } from './net.js';

// Where the proxy and the CLI have always found it; it is parsed and defined in net.ts.
export type { Endpoint };

/**
 * Why a request or connection was decided as it was. A closed set: the same strings are log
 * fields and metric label values.
 */
export type DecisionReason =
  | 'allowed'
  | 'source_not_allowed' // at connect: no rule of the device matches the client address
  | 'unit_not_allowed' // 0A
  | 'function_not_allowed' // 01
  | 'malformed' // 03 (or 01/02 as the decoder says), from the decoder
  | 'address_not_allowed' // 02
  | 'value_not_allowed' // 03
  | 'rate_limited' // 06
  | 'no_policy'; // fail closed: no valid policy loaded

export const DECISION_REASONS: readonly DecisionReason[] = [
  'allowed',
  'source_not_allowed',
  'unit_not_allowed',
  'function_not_allowed',
  'malformed',
  'address_not_allowed',
  'value_not_allowed',
  'rate_limited',
  'no_policy',
];

/** A decision, filled in place by `decide` (reused per session: no allocation per frame). */
export class Decision {
  allow = false;
  reason: DecisionReason = 'no_policy';
  /** Name of the rule that allowed it, or that came closest to allowing it; null when none. */
  rule: string | null = null;
  /** Exception code a denial earns (0 when allowed). */
  exception = 0;
  /** For `malformed`: what the decoder found wrong (the request's `violation`); else 'none'. */
  violation: Violation = 'none';
}

/** Limits of a device, all with defaults; times in milliseconds. */
export interface Limits {
  /** Time allowed to open the PLC connection. */
  connectTimeoutMs: number;
  /** Time allowed for the PLC to answer a request (then exception 0B). */
  responseTimeoutMs: number;
  /** A client connection with nothing outstanding and nothing received for this long is closed. */
  idleTimeoutMs: number;
  /** A partly received frame must be completed within this (slowloris). */
  frameTimeoutMs: number;
  /** Client connections open at once to this device. */
  maxConnections: number;
  /** Client connections open at once to this device from one source address. */
  maxConnectionsPerSource: number;
  /** Requests forwarded to the PLC and not yet answered, per client connection. */
  maxOutstanding: number;
  /** Bytes queued towards one side before the other side stops being read. */
  maxBufferedBytes: number;
  /** First and largest delay before reconnecting to a PLC that failed. */
  reconnectBackoffMinMs: number;
  reconnectBackoffMaxMs: number;
}

/** PLC connections shared by all the client connections of a device (proxy/pool.ts). */
export interface Sharing {
  /** At most this many PLC connections. */
  connections: number;
  /** Requests in flight on one of them. */
  maxInFlight: number;
}

/** Where a device's requests for some units go (unit routing for gateways; routes[0] is the device's upstream). */
export interface Route {
  /** `host:port`: what names the route in logs and metrics, and across reloads (one route per upstream). */
  readonly key: string;
  readonly upstream: Endpoint;
  /** Null: one connection per client connection; else how the device's clients share this upstream. */
  readonly sharing: Readonly<Sharing> | null;
}

/** Token buckets per source address: one for all requests, one for writes. */
export interface RateLimit {
  requestsPerSecond: number;
  writesPerSecond: number;
  /** Bucket size: requests a source may send at once above the rate. */
  burst: number;
}

/**
 * The rules of a device that match one source address: resolved once per connection. A view
 * belongs to the device object that made it: after a policy swap, resolve it again from the new
 * device (a stale view given to another device's `decide` is denied as `no_policy`).
 */
export interface SourceView {
  /** True when at least one rule matches the source (else the connection is refused). */
  readonly matches: boolean;
}

export interface CompiledDevice {
  readonly name: string;
  readonly listen: Endpoint;
  readonly upstream: Endpoint;
  /** Null: one PLC connection per client connection; else how the device's clients share them. */
  readonly sharing: Readonly<Sharing> | null;
  /** routes[0]: `upstream` and `sharing`; then the device's `routes`, in order. */
  readonly routes: readonly Route[];
  /** The index in `routes` of each unit id's route: built once, read per request. */
  readonly routeOfUnit: Uint16Array;
  readonly mode: Mode;
  readonly onDeny: OnDeny;
  /** Every allowed write gets a `write` log line (`log_writes`). */
  readonly logWrites: boolean;
  readonly limits: Readonly<Limits>;
  /** Per source address; null: no rate limit. */
  readonly rateLimit: Readonly<RateLimit> | null;
  /** The device as normalized JSON (defaults folded in, rules named): for stores and diffs. */
  readonly document: DeviceDocument;
  /** Number of rules (for logs). */
  readonly ruleCount: number;
  /** What compiling it built, in the entries MAX_COMPILE_ENTRIES counts. */
  readonly compileEntries: number;
  /**
   * The rules that apply to a client address (IPv4, IPv6 or IPv4-mapped IPv6): a prebuilt view,
   * found by a binary search over the device's source regions. Builds nothing, at any connection.
   * On a device with tls, `role` is the client certificate's (null: none): rules with `roles` apply
   * only to the roles they name.
   */
  forSource(address: string, role?: string | null): SourceView;
  /**
   * Decides a decoded request from a source. Fills and returns `out`; allocates nothing.
   * Order: source (0A, `source_not_allowed`, for monitor mode) → unit (0A) → function (01) →
   * malformed (decoder's code) → address (02) → value (03). In learn mode only the malformed
   * check is made.
   */
  decide(view: SourceView, req: ModbusRequest, out: Decision): Decision;
}

/** A whole compiled policy: frozen, swapped whole on reload. */
export interface CompiledPolicy {
  /** sha256 of the source YAML (hex). */
  readonly sha256: string;
  /** Version number when it came from Redis; 0 for a file. */
  readonly version: number;
  readonly devices: ReadonlyMap<string, CompiledDevice>;
  /** The whole policy as normalized JSON (see document.ts). */
  readonly document: PolicyDocument;
}
