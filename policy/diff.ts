import { isDeepStrictEqual } from 'node:util';
import type { DeviceDocument, PolicyDocument } from './document.js';

// What a push would change, device by device and rule by rule. Compared on normalized documents
// (defaults folded into each device, every rule named), so the diff shows what each device will
// enforce, not how the YAML happens to be written.

const show = (v: unknown): string => JSON.stringify(v);

function deviceLines(old: DeviceDocument, now: DeviceDocument): string[] {
  const lines: string[] = [];
  for (const key of new Set([...Object.keys(old), ...Object.keys(now)]) as Set<keyof DeviceDocument>) {
    if (key === 'rules' || isDeepStrictEqual(old[key], now[key])) continue;
    lines.push(`    ~ ${key}: ${show(old[key])} → ${show(now[key])}`);
  }
  const before = new Map(old.rules.map((r) => [r.name, r]));
  const after = new Map(now.rules.map((r) => [r.name, r]));
  for (const [name, r] of after) {
    const was = before.get(name);
    if (was === undefined) lines.push(`    + rule ${name}: ${show(r)}`);
    else if (!isDeepStrictEqual(was, r)) lines.push(`    ~ rule ${name}: ${show(was)} → ${show(r)}`);
  }
  for (const name of before.keys()) if (!after.has(name)) lines.push(`    - rule ${name}`);
  return lines;
}

/** Lines describing the change from `before` (null: nothing yet) to `after`; empty when none. */
export function diffPolicies(before: PolicyDocument | null, after: PolicyDocument): string[] {
  const lines: string[] = [];
  const old = new Map((before?.devices ?? []).map((d) => [d.name, d]));
  for (const d of after.devices) {
    const was = old.get(d.name);
    if (was === undefined) lines.push(`+ device ${d.name} (${d.rules.length} rule${d.rules.length === 1 ? '' : 's'})`);
    else if (!isDeepStrictEqual(was, d)) lines.push(`~ device ${d.name}`, ...deviceLines(was, d));
  }
  const now = new Set(after.devices.map((d) => d.name));
  for (const name of old.keys()) if (!now.has(name)) lines.push(`- device ${name}`);
  return lines;
}
