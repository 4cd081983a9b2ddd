// diffPolicies and formatDiff: what a push would change, on normalized documents, field by field.
import t from 'tap';
import { parsePolicy } from '../policy/index.js';
import { diffPolicies, formatDiff } from '../policy/diff.js';
import type { PolicyDocument } from '../policy/document.js';

function doc(yaml: string): PolicyDocument {
  const r = parsePolicy(yaml, 'x.yaml');
  if (!r.policy) throw new Error(r.errors.map((e) => e.format()).join('\n'));
  return r.policy.document;
}

const base = `version: 1
defaults:
  limits: { response_timeout_ms: 2000 }
devices:
  - name: boiler
    listen: 127.0.0.1:5020
    upstream: 10.0.0.1:502
    rules:
      - name: read
        read: { holding_registers: [0-9] }
      - write: { holding_registers: [10] }
  - name: chiller
    listen: 127.0.0.1:5021
    upstream: 10.0.0.2:502
    rules:
      - read: { coils: [0-7] }
`;

void t.test('nothing changed → no changes; against an empty store every device is new, with every field', (t) => {
  t.same(diffPolicies(doc(base), doc(base)), []);
  const added = diffPolicies(null, doc(base));
  t.same(formatDiff(added), ['+ device boiler (2 rules)', '+ device chiller (1 rule)']);
  t.same(added.map((d) => [d.device, d.change]), [['boiler', 'added'], ['chiller', 'added']]);
  t.same(added[0]!.rules, [
    { rule: 'read', change: 'added', fields: [{ field: 'read.holding_registers', before: null, after: ['0-9'] }] },
    { rule: 'rule-1', change: 'added', fields: [{ field: 'write.holding_registers', before: null, after: [10] }] },
  ]);
  t.match(added[0]!.fields, [
    { field: 'listen', before: null, after: '127.0.0.1:5020' },
    { field: 'upstream', before: null, after: '10.0.0.1:502' },
  ]);
  t.ok(added[0]!.fields.some((f) => f.field === 'limits.response_timeout_ms' && f.after === 2000), 'nested settings one by one');
  t.notOk(added[0]!.fields.some((f) => f.field === 'name' || f.field === 'rules'), 'name and rules are not fields');
  t.end();
});

void t.test('device settings, defaults folded in, rules added, changed and removed, devices gone', (t) => {
  const after = `version: 1
defaults:
  limits: { response_timeout_ms: 2500 }
devices:
  - name: boiler
    listen: 127.0.0.1:5020
    upstream: 10.0.0.9:502
    rules:
      - name: read
        sources: [10.0.0.0/8]
        read: { holding_registers: [0-19], coils: [0] }
      - name: engineering
        functions: [report_server_id]
  - name: packer
    listen: 127.0.0.1:5022
    upstream: 10.0.0.3:502
    rules: []
`;
  const changes = diffPolicies(doc(base), doc(after));
  t.same(formatDiff(changes), [
    '~ device boiler',
    '    upstream: "10.0.0.1:502" → "10.0.0.9:502"',
    '    limits.response_timeout_ms: 2000 → 2500',
    '    ~ rule read',
    '        sources: (not set) → ["10.0.0.0/8"]',
    '        read.holding_registers: ["0-9"] → ["0-19"]',
    '        read.coils: (not set) → [0]',
    '    + rule engineering',
    '        functions: ["report_server_id"]',
    '    - rule rule-1',
    '+ device packer (0 rules)',
    '- device chiller',
  ]);
  const removed = changes.find((d) => d.device === 'chiller')!;
  t.same(removed.rules, [{ rule: 'rule-0', change: 'removed', fields: [{ field: 'read.coils', before: ['0-7'], after: null }] }], 'a removed device: what it had');
  t.same(
    changes[0]!.rules.find((r) => r.rule === 'rule-1'),
    { rule: 'rule-1', change: 'removed', fields: [{ field: 'write.holding_registers', before: [10], after: null }] },
  );
  t.end();
});

void t.test('a value that changes kind is shown whole; rule order is no change', (t) => {
  const limited = base.replace('    upstream: 10.0.0.2:502\n', '    upstream: 10.0.0.2:502\n    rate_limit: { requests_per_second: 10 }\n');
  const unlimited = base.replace('    upstream: 10.0.0.2:502\n', '    upstream: 10.0.0.2:502\n    rate_limit: none\n');
  const shown = formatDiff(diffPolicies(doc(limited), doc(unlimited)));
  t.equal(shown.length, 2);
  t.equal(shown[0], '~ device chiller');
  t.match(shown[1], /^ {4}rate_limit: \{"requests_per_second":10,.*\} → "none"$/, 'a mapping that became a word: whole');
  const reordered = base.replace(
    '      - name: read\n        read: { holding_registers: [0-9] }\n      - write: { holding_registers: [10] }\n',
    '      - name: rule-1\n        write: { holding_registers: [10] }\n      - name: read\n        read: { holding_registers: [0-9] }\n',
  );
  t.not(reordered, base);
  t.same(diffPolicies(doc(base), doc(reordered)), [], 'the same rules by name, in another order');
  t.end();
});
