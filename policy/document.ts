// The normalized policy: what was written, with `defaults` folded into each device, every limit
// spelled out and every rule named. Plain JSON, and itself a valid policy file (JSON is YAML), so a
// store can keep one document per device, diff them rule by rule, and re-validate what it reads.
// Beside it travel the values validation parsed out of its text (endpoints, networks), so compile
// never parses a string again.

import { DEFAULT_LOG_WRITES, DEFAULT_MODE, DEFAULT_ON_DENY, LIMIT_FIELDS, POLICY_VERSION, RATE_LIMIT_NONE, SHARING_FIELDS } from './format.js';
import type { AsWritten, DeviceInput, FunctionInput, LimitKey, Mode, OnDeny, PolicyInput, ReadTable, RuleInput, TlsInput, UpstreamTlsInput, WriteEntryInput, WriteTable } from './format.js';
import type { Cidr, Endpoint } from './net.js';

export interface RuleDocument {
  /** Explicit, or rule-<index> (0-based). */
  name: string;
  description?: string;
  /** Omitted: any source. */
  sources?: string[];
  /** Omitted: any authenticated client (and any client of a device without tls). */
  roles?: string[];
  /** Omitted: any unit. */
  units?: (number | string)[];
  read?: { [T in ReadTable]?: (number | string)[] };
  write?: { [T in WriteTable]?: WriteEntryInput[] };
  functions?: FunctionInput[];
}

export interface RouteDocument {
  units: (number | string)[];
  upstream: string;
  /** Present only when the route shares its upstream's connections (upstream_max_in_flight then too). */
  upstream_connections?: number;
  upstream_max_in_flight?: number;
}

export interface RateLimitDocument {
  requests_per_second: number;
  writes_per_second: number;
  burst: number;
}

export interface DeviceDocument {
  name: string;
  description?: string;
  listen: string;
  upstream: string;
  /** Present only when the device shares PLC connections (upstream_max_in_flight then too). */
  upstream_connections?: number;
  upstream_max_in_flight?: number;
  /** Present only when the policy has routes. */
  routes?: RouteDocument[];
  /** Paths as written: each instance resolves them (docs/tls.md). */
  tls?: TlsInput;
  upstream_tls?: UpstreamTlsInput;
  mode: Mode;
  on_deny: OnDeny;
  limits: Record<LimitKey, number>;
  /** `none`: no rate limit. */
  rate_limit: RateLimitDocument | typeof RATE_LIMIT_NONE;
  log_writes: boolean;
  rules: RuleDocument[];
}

export interface PolicyDocument {
  version: typeof POLICY_VERSION;
  devices: DeviceDocument[];
}

// The normalized form must stay a valid input: a compile-time check that it fits the schema's type.
type Assert<T extends true> = T;
export type _NormalizedIsInput = Assert<PolicyDocument extends AsWritten<PolicyInput> ? true : false>;

/** A normalized policy for compile: the document, and per device what validation parsed. */
export interface NormalizedPolicy {
  readonly document: PolicyDocument;
  /** `document.devices`, in order, each with its parsed values. */
  readonly devices: readonly NormalizedDevice[];
}

export interface NormalizedDevice {
  readonly document: DeviceDocument;
  readonly listen: Endpoint;
  readonly upstream: Endpoint;
  /** The upstream of each of `document.routes`, in order. */
  readonly routes: readonly Endpoint[];
  /** `document.rules`, in order, each with its parsed values. */
  readonly rules: readonly NormalizedRule[];
}

export interface NormalizedRule {
  readonly document: RuleDocument;
  /** Null: any source. */
  readonly sources: readonly Cidr[] | null;
}

/** Built-in limits, keyed as in YAML. */
export const BUILTIN_LIMITS_YAML: Readonly<Record<LimitKey, number>> = Object.freeze(
  Object.fromEntries(Object.entries(LIMIT_FIELDS).map(([k, f]) => [k, f.default])) as Record<LimitKey, number>,
);

/** Folds defaults into devices and names every rule. The input is what validation returned. */
export function normalizePolicy(input: PolicyInput): NormalizedPolicy {
  const devices = input.devices.map((d) => normalizeDevice(d, input.defaults));
  return { document: { version: POLICY_VERSION, devices: devices.map((d) => d.document) }, devices };
}

function normalizeDevice(d: DeviceInput, defaults: PolicyInput['defaults']): NormalizedDevice {
  const rules = (d.rules ?? []).map(normalizeRule);
  const out: DeviceDocument = {
    name: d.name,
    listen: d.listen.text,
    upstream: d.upstream.text,
    ...sharingOf(d),
    ...(d.routes === undefined ? {} : { routes: d.routes.map((r) => ({ units: r.units, upstream: r.upstream.text, ...sharingOf(r) })) }),
    mode: d.mode ?? defaults?.mode ?? DEFAULT_MODE,
    on_deny: d.on_deny ?? defaults?.on_deny ?? DEFAULT_ON_DENY,
    limits: { ...BUILTIN_LIMITS_YAML, ...defaults?.limits, ...d.limits },
    rate_limit: normalizeRateLimit(d.rate_limit ?? defaults?.rate_limit),
    log_writes: d.log_writes ?? defaults?.log_writes ?? DEFAULT_LOG_WRITES,
    rules: rules.map((r) => r.document),
  };
  if (d.description !== undefined) out.description = d.description;
  if (d.tls !== undefined) out.tls = d.tls;
  if (d.upstream_tls !== undefined) out.upstream_tls = d.upstream_tls;
  return { document: out, listen: d.listen.value, upstream: d.upstream.value, routes: (d.routes ?? []).map((r) => r.upstream.value), rules };
}

/** The sharing keys of a device or route: both when shared, none when not. */
function sharingOf(d: { upstream_connections?: number; upstream_max_in_flight?: number }): { upstream_connections?: number; upstream_max_in_flight?: number } {
  return d.upstream_connections === undefined
    ? {}
    : { upstream_connections: d.upstream_connections, upstream_max_in_flight: d.upstream_max_in_flight ?? SHARING_FIELDS.upstream_max_in_flight.default };
}

function normalizeRateLimit(r: DeviceInput['rate_limit']): DeviceDocument['rate_limit'] {
  if (r === undefined || r === RATE_LIMIT_NONE) return RATE_LIMIT_NONE;
  return {
    requests_per_second: r.requests_per_second,
    writes_per_second: r.writes_per_second ?? r.requests_per_second,
    burst: r.burst ?? r.requests_per_second,
  };
}

function normalizeRule(r: RuleInput, index: number): NormalizedRule {
  // Key order is fixed so documents diff and hash stably.
  const out: RuleDocument = { name: r.name ?? `rule-${index}` };
  if (r.description !== undefined) out.description = r.description;
  if (r.sources !== undefined) out.sources = r.sources.map((s) => s.text);
  if (r.roles !== undefined) out.roles = r.roles;
  if (r.units !== undefined) out.units = r.units;
  if (r.read !== undefined) out.read = r.read;
  if (r.write !== undefined) out.write = r.write;
  if (r.functions !== undefined) out.functions = r.functions;
  return { document: out, sources: r.sources === undefined ? null : r.sources.map((s) => s.value) };
}
