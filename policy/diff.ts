import { isDeepStrictEqual } from 'node:util';
import YAML from 'yaml';

// What a push would change, device by device and rule by rule, from the documents as written.

interface DeviceDoc {
  name?: unknown;
  rules?: unknown;
  [k: string]: unknown;
}

function devicesOf(text: string): Map<string, DeviceDoc> {
  const doc = YAML.parse(text) as { devices?: unknown } | null;
  const out = new Map<string, DeviceDoc>();
  const list = Array.isArray(doc?.devices) ? (doc.devices as DeviceDoc[]) : [];
  for (const d of list) out.set(String(d.name), d);
  return out;
}

function defaultsOf(text: string): unknown {
  return (YAML.parse(text) as { defaults?: unknown } | null)?.defaults ?? null;
}

function rulesOf(d: DeviceDoc): Map<string, unknown> {
  const out = new Map<string, unknown>();
  const rules = Array.isArray(d.rules) ? (d.rules as { name?: unknown }[]) : [];
  // Unnamed rules are known by their default name, rule-<index> (0-based, as the compiler names them).
  rules.forEach((r, i) => out.set(typeof r.name === 'string' ? r.name : `rule-${i}`, r));
  return out;
}

const show = (v: unknown): string => JSON.stringify(v);

/** The per-device documents of a policy (name → JSON), as kept under {prefix}device:{name}. */
export function deviceDocuments(text: string): Map<string, string> {
  return new Map([...devicesOf(text)].map(([name, d]) => [name, JSON.stringify(d)]));
}

/** Lines describing the change from `before` to `after` (both valid policies); empty when none. */
export function diffPolicies(before: string | null, after: string): string[] {
  const lines: string[] = [];
  const a = before === null ? new Map<string, DeviceDoc>() : devicesOf(before);
  const b = devicesOf(after);
  const da = before === null ? null : defaultsOf(before);
  const db = defaultsOf(after);
  if (!isDeepStrictEqual(da, db)) lines.push(`~ defaults: ${show(da)} → ${show(db)}`);
  for (const [name, d] of b) {
    const old = a.get(name);
    if (!old) {
      lines.push(`+ device ${name} (${rulesOf(d).size} rules)`);
      continue;
    }
    if (isDeepStrictEqual(old, d)) continue;
    lines.push(`~ device ${name}`);
    for (const key of new Set([...Object.keys(old), ...Object.keys(d)])) {
      if (key === 'rules' || key === 'name' || isDeepStrictEqual(old[key], d[key])) continue;
      lines.push(`    ~ ${key}: ${show(old[key])} → ${show(d[key])}`);
    }
    const ra = rulesOf(old);
    const rb = rulesOf(d);
    for (const [rn, r] of rb) {
      const or = ra.get(rn);
      if (or === undefined) lines.push(`    + rule ${rn}: ${show(r)}`);
      else if (!isDeepStrictEqual(or, r)) lines.push(`    ~ rule ${rn}: ${show(or)} → ${show(r)}`);
    }
    for (const rn of ra.keys()) if (!rb.has(rn)) lines.push(`    - rule ${rn}`);
  }
  for (const name of a.keys()) if (!b.has(name)) lines.push(`- device ${name}`);
  return lines;
}
