// diffPolicies: what a push would change, on normalized documents.
import t from 'tap';
import { parsePolicy } from '../policy/index.js';
import { diffPolicies } from '../policy/diff.js';
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

void t.test('nothing changed → no lines; against an empty store every device is new', (t) => {
  t.same(diffPolicies(doc(base), doc(base)), []);
  t.same(diffPolicies(null, doc(base)), ['+ device boiler (2 rules)', '+ device chiller (1 rule)']);
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
        read: { holding_registers: [0-19] }
      - name: engineering
        functions: [report_server_id]
  - name: packer
    listen: 127.0.0.1:5022
    upstream: 10.0.0.3:502
    rules: []
`;
  const lines = diffPolicies(doc(base), doc(after));
  t.same(lines, [
    '~ device boiler',
    '    ~ upstream: "10.0.0.1:502" → "10.0.0.9:502"',
    lines[2]!, // the folded-in limits, checked below
    '    ~ rule read: {"name":"read","read":{"holding_registers":["0-9"]}} → {"name":"read","read":{"holding_registers":["0-19"]}}',
    '    + rule engineering: {"name":"engineering","functions":["report_server_id"]}',
    '    - rule rule-1',
    '+ device packer (0 rules)',
    '- device chiller',
  ]);
  t.match(lines[2], /^ {4}~ limits: \{.*"response_timeout_ms":2000.*\} → \{.*"response_timeout_ms":2500.*\}$/, 'a defaults change shows on each device it reaches');
  t.end();
});
