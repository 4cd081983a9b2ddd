// The normalized policy: what was written, with `defaults` folded into each device, every limit
// spelled out and every rule named. Plain JSON, and itself a valid policy file (JSON is YAML), so a
// store can keep one document per device, diff them rule by rule, and re-validate what it reads.

import { DEFAULT_MODE, DEFAULT_ON_DENY, LIMIT_FIELDS, POLICY_VERSION, RATE_LIMIT_NONE } from './format.js';
import type { DeviceInput, FunctionInput, LimitKey, Mode, OnDeny, PolicyInput, ReadTable, RuleInput, WriteEntryInput, WriteTable } from './format.js';

export interface RuleDocument {
  /** Explicit, or rule-<index> (0-based). */
  name: string;
  description?: string;
  /** Omitted: any source. */
  sources?: string[];
  /** Omitted: any unit. */
  units?: (number | string)[];
  read?: { [T in ReadTable]?: (number | string)[] };
  write?: { [T in WriteTable]?: WriteEntryInput[] };
  functions?: FunctionInput[];
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
  mode: Mode;
  on_deny: OnDeny;
  limits: Record<LimitKey, number>;
  /** `none`: no rate limit. */
  rate_limit: RateLimitDocument | typeof RATE_LIMIT_NONE;
  rules: RuleDocument[];
}

export interface PolicyDocument {
  version: typeof POLICY_VERSION;
  devices: DeviceDocument[];
}

// The normalized form must stay a valid input: a compile-time check that it fits the schema's type.
type Assert<T extends true> = T;
export type _NormalizedIsInput = Assert<PolicyDocument extends PolicyInput ? true : false>;

/** Built-in limits, keyed as in YAML. */
export const BUILTIN_LIMITS_YAML: Readonly<Record<LimitKey, number>> = Object.freeze(
  Object.fromEntries(Object.entries(LIMIT_FIELDS).map(([k, f]) => [k, f.default])) as Record<LimitKey, number>,
);

/** Folds defaults into devices and names every rule. The input must be valid. */
export function normalizePolicy(input: PolicyInput): PolicyDocument {
  return { version: POLICY_VERSION, devices: input.devices.map((d) => normalizeDevice(d, input.defaults)) };
}

function normalizeDevice(d: DeviceInput, defaults: PolicyInput['defaults']): DeviceDocument {
  const out: DeviceDocument = {
    name: d.name,
    listen: d.listen,
    upstream: d.upstream,
    mode: d.mode ?? defaults?.mode ?? DEFAULT_MODE,
    on_deny: d.on_deny ?? defaults?.on_deny ?? DEFAULT_ON_DENY,
    limits: { ...BUILTIN_LIMITS_YAML, ...defaults?.limits, ...d.limits },
    rate_limit: normalizeRateLimit(d.rate_limit ?? defaults?.rate_limit),
    rules: (d.rules ?? []).map(normalizeRule),
  };
  if (d.description !== undefined) out.description = d.description;
  return out;
}

function normalizeRateLimit(r: DeviceInput['rate_limit']): DeviceDocument['rate_limit'] {
  if (r === undefined || r === RATE_LIMIT_NONE) return RATE_LIMIT_NONE;
  return {
    requests_per_second: r.requests_per_second,
    writes_per_second: r.writes_per_second ?? r.requests_per_second,
    burst: r.burst ?? r.requests_per_second,
  };
}

function normalizeRule(r: RuleInput, index: number): RuleDocument {
  // Key order is fixed so documents diff and hash stably.
  const out: RuleDocument = { name: r.name ?? `rule-${index}` };
  if (r.description !== undefined) out.description = r.description;
  if (r.sources !== undefined) out.sources = r.sources;
  if (r.units !== undefined) out.units = r.units;
  if (r.read !== undefined) out.read = r.read;
  if (r.write !== undefined) out.write = r.write;
  if (r.functions !== undefined) out.functions = r.functions;
  return out;
}
