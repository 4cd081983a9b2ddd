import { isDeepStrictEqual } from 'node:util';
import type { DeviceDocument, PolicyDocument, RuleDocument } from './document.js';

// What a push would change: device by device, rule by rule, field by field. Compared on normalized
// documents (defaults folded into each device, every rule named), so the diff shows what each
// device will enforce, not how the YAML happens to be written. Rules are matched by name: their
// order decides nothing (a request needs the matching rules together to cover it).

export type Change = 'added' | 'removed' | 'changed';

/** One value that differs. */
export interface FieldChange {
  /** The key from the device or the rule down, dotted: `upstream`, `limits.response_timeout_ms`. */
  readonly field: string;
  /** The value on each side; null where the key is not set. */
  readonly before: unknown;
  readonly after: unknown;
}

export interface RuleChange {
  readonly rule: string;
  readonly change: Change;
  /** Every field of an added or removed rule; the ones that differ of a changed one. */
  readonly fields: readonly FieldChange[];
}

export interface DeviceChange {
  readonly device: string;
  readonly change: Change;
  /** The device's own settings (name and rules aside), as RuleChange.fields. */
  readonly fields: readonly FieldChange[];
  readonly rules: readonly RuleChange[];
}

type Fields = Readonly<Record<string, unknown>>;

function isMapping(v: unknown): v is Fields {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * The values that differ between two mappings (either may be absent), down through nested
 * mappings to the first value that is not one: a list counts as one value, shown whole.
 */
function fieldChanges(before: object | undefined, after: object | undefined, skip: readonly string[], prefix = ''): FieldChange[] {
  const changes: FieldChange[] = [];
  // In the new document's order (normalized: the format's), then what it no longer has.
  for (const key of new Set([...Object.keys(after ?? {}), ...Object.keys(before ?? {})])) {
    if (skip.includes(key)) continue;
    const b = (before as Fields | undefined)?.[key];
    const a = (after as Fields | undefined)?.[key];
    if (isDeepStrictEqual(b, a)) continue;
    const field = `${prefix}${key}`;
    if ((isMapping(b) || b === undefined) && (isMapping(a) || a === undefined)) {
      changes.push(...fieldChanges(b, a, [], `${field}.`));
    } else {
      changes.push({ field, before: b ?? null, after: a ?? null });
    }
  }
  return changes;
}

const RULE_SKIP = ['name'];
const DEVICE_SKIP = ['name', 'rules'];

function ruleChanges(old: readonly RuleDocument[], now: readonly RuleDocument[]): RuleChange[] {
  const before = new Map(old.map((r) => [r.name, r]));
  const after = new Set(now.map((r) => r.name));
  const changes: RuleChange[] = [];
  for (const r of now) {
    const was = before.get(r.name);
    if (was === undefined) changes.push({ rule: r.name, change: 'added', fields: fieldChanges(undefined, r, RULE_SKIP) });
    else if (!isDeepStrictEqual(was, r)) changes.push({ rule: r.name, change: 'changed', fields: fieldChanges(was, r, RULE_SKIP) });
  }
  for (const r of old) if (!after.has(r.name)) changes.push({ rule: r.name, change: 'removed', fields: fieldChanges(r, undefined, RULE_SKIP) });
  return changes;
}

/** The change from `before` (null: nothing yet) to `after`, in `after`'s order, removals last; empty when none. */
export function diffPolicies(before: PolicyDocument | null, after: PolicyDocument): DeviceChange[] {
  const old = new Map((before?.devices ?? []).map((d) => [d.name, d]));
  const changes: DeviceChange[] = [];
  const device = (name: string, change: Change, was: DeviceDocument | undefined, now: DeviceDocument | undefined): DeviceChange => ({
    device: name,
    change,
    fields: fieldChanges(was, now, DEVICE_SKIP),
    rules: ruleChanges(was?.rules ?? [], now?.rules ?? []),
  });
  for (const d of after.devices) {
    const was = old.get(d.name);
    if (was === undefined) {
      changes.push(device(d.name, 'added', undefined, d));
      continue;
    }
    // Not the documents compared whole: a reordered rule list is the same device.
    const change = device(d.name, 'changed', was, d);
    if (change.fields.length > 0 || change.rules.length > 0) changes.push(change);
  }
  const now = new Set(after.devices.map((d) => d.name));
  for (const [name, d] of old) if (!now.has(name)) changes.push(device(name, 'removed', d, undefined));
  return changes;
}

const MARK: Record<Change, string> = { added: '+', removed: '-', changed: '~' };

const show = (v: unknown): string => (v === null ? '(not set)' : JSON.stringify(v));

function fieldLine(indent: string, f: FieldChange, change: Change): string {
  return change === 'added' ? `${indent}${f.field}: ${show(f.after)}` : `${indent}${f.field}: ${show(f.before)} → ${show(f.after)}`;
}

/**
 * The change as lines for people: a changed device's fields and rules, each field `before →
 * after`, an added rule's fields; an added or removed device as one line (its settings are the
 * file's, or the store's).
 */
export function formatDiff(changes: readonly DeviceChange[]): string[] {
  const lines: string[] = [];
  for (const d of changes) {
    if (d.change === 'added') {
      lines.push(`+ device ${d.device} (${d.rules.length} rule${d.rules.length === 1 ? '' : 's'})`);
      continue;
    }
    lines.push(`${MARK[d.change]} device ${d.device}`);
    if (d.change === 'removed') continue;
    for (const f of d.fields) lines.push(fieldLine('    ', f, 'changed'));
    for (const r of d.rules) {
      lines.push(`    ${MARK[r.change]} rule ${r.rule}`);
      if (r.change !== 'removed') for (const f of r.fields) lines.push(fieldLine('        ', f, r.change));
    }
  }
  return lines;
}
