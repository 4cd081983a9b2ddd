// Policy unit tests: the file format (policy/test-spec.ts) and `plcguard policy test`
// (cli/policy-test.ts), called as cli/main.ts calls it, with captured output.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import t from 'tap';
import { policyCommand } from '../cli/policy.js';
import { parseTestFile } from '../policy/test-spec.js';

interface Run {
  code: number;
  stdout: string[];
  stderr: string[];
}

async function policyTest(...args: string[]): Promise<Run> {
  const stdout: string[] = [];
  const stderr: string[] = [];
  const code = await policyCommand(['test', ...args], { stdout: (s) => stdout.push(s), stderr: (s) => stderr.push(s) });
  return { code, stdout, stderr };
}

const EXAMPLE = 'examples/demo-policy.test.yaml';
const DEMO = resolve('examples/demo-policy.yaml');

const dir = mkdtempSync(join(tmpdir(), 'plcguard-policy-test-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
function file(name: string, text: string): string {
  const f = join(dir, name);
  writeFileSync(f, text);
  return f;
}

/** A test file of the demo policy (by its absolute path) with these cases. */
function demoTests(name: string, cases: string): string {
  return file(name, `policy: ${DEMO}\ncases:\n${cases}`);
}

void t.test('the example passes: one PASS line per case, at its position, and the count', async (t) => {
  const r = await policyTest(EXAMPLE);
  t.strictSame(r, {
    code: 0,
    stdout: [
      `PASS  ${EXAMPLE}:8:5  the HMI reads the status and counters`,
      `PASS  ${EXAMPLE}:15:5  the HMI reads the temperatures over IPv6`,
      `PASS  ${EXAMPLE}:21:5  a supply setpoint of 70.0 °C is written`,
      `PASS  ${EXAMPLE}:28:5  a supply setpoint of 500.0 °C is refused`,
      `PASS  ${EXAMPLE}:37:5  the trip temperature can't be raised to 95.0 °C`,
      `PASS  ${EXAMPLE}:44:5  registers outside the setpoints are read-only`,
      `PASS  ${EXAMPLE}:52:5  the pump, burner and valve coils are switched together`,
      `PASS  ${EXAMPLE}:58:5  only unit 1 is behind this plcguard`,
      `PASS  ${EXAMPLE}:67:5  no diagnostics, which could force the PLC into listen-only mode`,
      `PASS  ${EXAMPLE}:74:5  a client from elsewhere is refused at connect`,
      `${EXAMPLE}: 10 passed, 0 failed`,
    ],
    stderr: [],
  });
});

void t.test('a failing case: FAIL, what was expected and what was decided; exit 1', async (t) => {
  const f = demoTests(
    'fail.yaml',
    `  - device: demo-plc
    source: 127.0.0.1
    request: write holding_registers 10=5000
    expect: allow
  - name: wrong reason
    device: demo-plc
    source: 127.0.0.1
    request: write  holding_registers   50=1
    expect: deny
    reason: value_not_allowed
  - name: wrong exception
    device: demo-plc
    source: 127.0.0.1
    unit: 1
    request: write holding_registers 50=1
    expect: deny
    exception: 3
  - name: an exception where there is none
    device: demo-plc
    source: 10.0.0.1
    request: read coils 0
    expect: deny
    exception: 1
  - name: wrong rule
    device: demo-plc
    source: 127.0.0.1
    unit: 1
    request: read coils 0
    expect: allow
    rule: setpoints
  - name: right on every count
    device: demo-plc
    source: 127.0.0.1
    unit: 1
    request: write holding_registers 12=700
    expect: deny
    reason: value_not_allowed
    exception: 3
    rule: setpoints
`,
  );
  const r = await policyTest(f);
  t.equal(r.code, 1);
  t.strictSame(r.stderr, []);
  t.strictSame(r.stdout, [
    [
      `FAIL  ${f}:3:5  demo-plc from 127.0.0.1: write holding_registers 10=5000`,
      '        expected: allow',
      '        got:      deny, reason value_not_allowed, exception 0x03 (illegal data value), rule setpoints',
    ].join('\n'),
    [
      `FAIL  ${f}:7:5  wrong reason`,
      '        expected: deny, reason value_not_allowed',
      '        got:      deny, reason address_not_allowed, exception 0x02 (illegal data address), rule setpoints',
    ].join('\n'),
    [
      `FAIL  ${f}:13:5  wrong exception`,
      '        expected: deny, exception 0x03 (illegal data value)',
      '        got:      deny, reason address_not_allowed, exception 0x02 (illegal data address), rule setpoints',
    ].join('\n'),
    [
      `FAIL  ${f}:20:5  an exception where there is none`,
      '        expected: deny, exception 0x01 (illegal function)',
      '        got:      deny, reason source_not_allowed, rule none',
    ].join('\n'),
    [`FAIL  ${f}:26:5  wrong rule`, '        expected: allow, rule setpoints', '        got:      allow, reason allowed, rule monitoring'].join('\n'),
    `PASS  ${f}:33:5  right on every count`,
    `${f}: 1 passed, 5 failed`,
  ]);
});

void t.test('several files: each runs and reports; one failure fails the run', async (t) => {
  const failing = demoTests('one-fail.yaml', '  - device: demo-plc\n    source: 127.0.0.1\n    request: read coils 99\n    expect: allow\n');
  const r = await policyTest(EXAMPLE, failing);
  t.equal(r.code, 1);
  t.equal(r.stdout[10], `${EXAMPLE}: 10 passed, 0 failed`);
  t.match(r.stdout[11], new RegExp(`^FAIL  ${failing}:3:5  demo-plc from 127\\.0\\.0\\.1: read coils 99\\n`));
  t.equal(r.stdout[12], `${failing}: 0 passed, 1 failed`);
});

void t.test('the policy is found relative to the test file; its warnings are shown', async (t) => {
  mkdirSync(join(dir, 'plant/tests'), { recursive: true });
  writeFileSync(join(dir, 'plant/policy.yaml'), 'version: 1\ndevices:\n  - name: a\n    listen: 127.0.0.1:1\n    upstream: 127.0.0.1:2\n    rules:\n      - name: r\n        sources: []\n        read: { coils: [0] }\n      - read: { coils: [1] }\n');
  const f = file('plant/tests/a.test.yaml', 'policy: ../policy.yaml\ncases:\n  - device: a\n    source: 10.0.0.1\n    request: read coils 1\n    expect: allow\n    rule: rule-1\n');
  const r = await policyTest(f);
  t.equal(r.code, 0);
  t.strictSame(r.stderr, [
    `${join(dir, 'plant/policy.yaml')}:8:18: warning: devices[0].rules[0].sources: empty; this rule can never match (omit sources to match any source)`,
  ]);
  t.strictSame(r.stdout, [`PASS  ${f}:3:5  a from 10.0.0.1: read coils 1`, `${f}: 1 passed, 0 failed`]);
});

void t.test('errors in a test file: every one at FILE:LINE:COL, and no case runs', async (t) => {
  const f = file(
    'bad.yaml',
    `policy: ${DEMO}
poliyc: x
cases:
  - device: demo-plc
    source: localhost
    unit: 256
    request: read coils 0
    expcet: allow
  - device: Demo
    source: 127.0.0.1
    request: read coils 0
    expect: maybe
  - device: demo-plc
    source: 127.0.0.1
    request: read coils 0
    expect: allow
    reason: value_not_allowed
    exception: 2
  - device: demo-plc
    source: 127.0.0.1
    request: read coils 0
    expect: deny
    reason: allowed
    rule: No Such Rule
  - just a string
`,
  );
  const r = await policyTest(f);
  t.equal(r.code, 1);
  t.strictSame(r.stdout, [], 'nothing ran');
  t.strictSame(r.stderr, [
    `${f}:2:1: poliyc: unknown key (did you mean "policy"?); expected one of policy, cases`,
    `${f}:4:5: cases[0].expect: missing; expected allow or deny`,
    `${f}:5:13: cases[0].source: "localhost" is not an IP address; expected an IPv4 or IPv6 address`,
    `${f}:6:11: cases[0].unit: 256 is out of range; expected a unit id 0..255`,
    `${f}:8:5: cases[0].expcet: unknown key (did you mean "expect"?); expected one of name, device, source, unit, request, expect, reason, exception, rule`,
    `${f}:9:13: cases[1].device: "Demo" is invalid; expected a device name of the policy`,
    `${f}:12:13: cases[1].expect: "maybe" is unknown; expected allow or deny`,
    `${f}:17:13: cases[2].reason: value_not_allowed is never the reason of allow; expected allowed`,
    `${f}:18:16: cases[2].exception: an allowed request earns no exception; expected no exception with expect: allow`,
    `${f}:23:13: cases[3].reason: allowed is never the reason of deny; expected a reason other than allowed`,
    `${f}:24:11: cases[3].rule: "No Such Rule" is invalid; expected a rule name`,
    `${f}:25:5: cases[4]: got the string "just a string"; expected a test case: a mapping with device, source, request and expect`,
    `${f}: invalid — 12 errors`,
  ]);
});

void t.test('what needs the policy or the request words: checked before any case runs', async (t) => {
  const f = demoTests(
    'unknown.yaml',
    `  - device: demo-plc
    source: 127.0.0.1
    request: read coils 0
    expect: allow
  - device: boiler
    source: 127.0.0.1
    request: raed coils 0
    expect: deny
  - device: demo-plc
    source: 127.0.0.1
    request: "  "
    expect: deny
`,
  );
  const r = await policyTest(f);
  t.equal(r.code, 1);
  t.strictSame(r.stdout, [], 'not even the valid case ran');
  t.strictSame(r.stderr, [
    `${f}:7:13: cases[1].device: "boiler" is not a device of ${DEMO}; expected one of demo-plc`,
    `${f}:9:14: cases[1].request: unknown request "raed"`,
    `${f}:13:14: cases[2].request: a REQUEST is required`,
    `${f}: invalid — 3 errors`,
  ]);
});

void t.test('a test file or its policy that cannot be read or is invalid', async (t) => {
  const missing = await policyTest(join(dir, 'nope.yaml'));
  t.equal(missing.code, 1);
  t.match(missing.stderr, [new RegExp(`^${join(dir, 'nope.yaml')}: cannot read: ENOENT`)]);
  t.strictSame(missing.stdout, []);

  const noPolicy = file('no-policy.yaml', 'cases:\n  - device: a\n    source: 1.2.3.4\n    request: read coils 0\n    expect: allow\n# where is it?\npolicy: gone.yaml\n');
  const r = await policyTest(noPolicy);
  t.equal(r.code, 1);
  t.match(r.stderr, [new RegExp(`^${noPolicy}:7:9: policy: ${join(dir, 'gone.yaml')}: cannot read: ENOENT`)]);

  const badPolicy = file('bad-policy.yaml', 'version: 2\n');
  const invalid = await policyTest(file('of-bad.yaml', 'policy: bad-policy.yaml\ncases:\n  - device: a\n    source: 1.2.3.4\n    request: read coils 0\n    expect: allow\n'));
  t.equal(invalid.code, 1);
  t.strictSame(invalid.stderr, [
    `${badPolicy}:1:1: devices: missing; expected a list of devices`,
    `${badPolicy}:1:10: version: 2 is out of range; expected the integer 1`,
    `${badPolicy}: invalid — 2 errors`,
  ]);

  const syntax = file('syntax.yaml', 'policy: [\n');
  const broken = await policyTest(syntax);
  t.equal(broken.code, 1);
  t.match(broken.stderr, [new RegExp(`^${syntax}:\\d+:\\d+: YAML: `), new RegExp(`^${syntax}: invalid — \\d+ errors?$`)]);
  const empty = await policyTest(file('empty.yaml', ''));
  t.match(empty.stderr, [/empty\.yaml:1:1: the file is empty; expected a policy test file: a mapping with policy and cases$/, /: invalid — 1 error$/]);
  const noCases = file('no-cases.yaml', `policy: ${DEMO}\n`);
  t.strictSame((await policyTest(noCases)).stderr, [`${noCases}:1:1: cases: missing; expected a list of test cases`, `${noCases}: invalid — 1 error`]);
  const none = await policyTest(file('none.yaml', `policy: ${DEMO}\ncases: []\n`));
  t.match(none, { code: 1, stdout: [], stderr: [/none\.yaml:2:8: cases: empty; expected at least one case$/, /: invalid — 1 error$/] }, 'a file that tests nothing fails');
});

void t.test('YAML warnings in the test file are shown, and the cases still run', async (t) => {
  const f = demoTests('tagged.yaml', '  - device: demo-plc\n    source: 127.0.0.1\n    request: !words read coils 0\n    expect: allow\n');
  const r = await policyTest(f);
  t.equal(r.code, 0);
  t.strictSame(r.stderr, [`${f}:5:14: warning: YAML: Unresolved tag: !words`]);
});

void t.test('usage errors exit 2 with the hint', async (t) => {
  t.strictSame(await policyTest(), { code: 2, stdout: [], stderr: ["plcguard policy test: at least one FILE is required\ntry 'plcguard policy test --help'"] });
  const opt = await policyTest('--verbose', EXAMPLE);
  t.equal(opt.code, 2);
  t.match(opt.stderr, [/^plcguard policy test: Unknown option '--verbose'.*\ntry 'plcguard policy test --help'$/s]);
});

void t.test('parseTestFile: a valid file, and the position of every part', (t) => {
  const r = parseTestFile('policy: p.yaml\ncases:\n  - device: d\n    source: "::1"\n    request: read coils 0\n    expect: deny\n    exception: 0x0B\n', 't.yaml');
  t.strictSame(r.errors, []);
  t.strictSame(r.value, { policy: 'p.yaml', cases: [{ device: 'd', source: '::1', request: 'read coils 0', expect: 'deny', exception: 11 }] });
  t.strictSame(r.at(r.value!.cases[0]!, 'exception'), { line: 7, col: 16 });
  t.strictSame(r.at(r.value!.cases[0]!), { line: 3, col: 5 });
  t.end();
});
