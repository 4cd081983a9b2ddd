// `plcguard policy validate|check`, called as cli/main.ts calls it, with captured output
// (`policy test`: test/policy-test.test.ts).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { policyCommand } from '../cli/policy.js';
import { POLICY_USAGE } from '../cli/policy.js';
import { exceptionText } from '../cli/decision.js';
import { parseRequestSpec, RequestSpecError } from '../cli/request.js';
import { UsageError } from '../modbus/errors.js';
import { policySha256 } from '../policy/parse.js';

interface Run {
  code: number;
  stdout: string[];
  stderr: string[];
}

async function run(...args: string[]): Promise<Run> {
  const stdout: string[] = [];
  const stderr: string[] = [];
  const code = await policyCommand(args, { stdout: (s) => stdout.push(s), stderr: (s) => stderr.push(s) });
  return { code, stdout, stderr };
}

const DEMO = 'examples/demo-policy.yaml';
const PLANT = 'examples/plant-policy.yaml';
const CORPUS = 'test/fixtures/policies';

const dir = mkdtempSync(join(tmpdir(), 'plcguard-cli-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
function policyFile(name: string, yaml: string): string {
  const f = join(dir, name);
  writeFileSync(f, yaml);
  return f;
}

void t.test('validate: valid files', async (t) => {
  t.strictSame(await run('validate', DEMO, PLANT), {
    code: 0,
    stdout: [`${DEMO}: ok — 1 device, 2 rules`, `${PLANT}: ok — 3 devices, 9 rules`],
    stderr: [],
  });
});

void t.test('validate: warnings are printed, and the exit code stays 0', async (t) => {
  const f = `${CORPUS}/valid/warnings.yaml`;
  const r = await run('validate', f);
  t.equal(r.code, 0);
  t.strictSame(r.stdout, [`${f}: ok — 3 devices, 4 rules, 7 warnings`]);
  t.equal(r.stderr.length, 7);
  t.equal(r.stderr[0], `${f}:8:18: warning: devices[0].rules[0].sources: empty; this rule can never match (omit sources to match any source)`);
  t.equal(r.stderr[6], `${f}:23:5: warning: devices[2]: no rules; this device denies everything`);
});

void t.test('validate: every error of every file, exit 1', async (t) => {
  const bad = `${CORPUS}/invalid/duplicates.yaml`;
  const r = await run('validate', bad, DEMO, `${CORPUS}/invalid/wrong-version.yaml`);
  t.equal(r.code, 1);
  t.strictSame(r.stdout, [`${DEMO}: ok — 1 device, 2 rules`]);
  t.equal(r.stderr.filter((l) => /^[^:]+:\d+:\d+: (?!warning)/.test(l) && l.startsWith(bad)).length, 9);
  t.ok(r.stderr.includes(`${bad}:17:11: devices[1].name: "a" is already the name of devices[0] (line 3); expected a unique device name`));
  t.ok(r.stderr.includes(`${bad}: invalid — 9 errors`));
  t.ok(r.stderr.includes(`${CORPUS}/invalid/wrong-version.yaml:1:10: version: 2 is out of range; expected the integer 1`));
  t.ok(r.stderr.includes(`${CORPUS}/invalid/wrong-version.yaml: invalid — 1 error`));
});

void t.test('validate: a file that cannot be read', async (t) => {
  const r = await run('validate', 'no/such.yaml', DEMO);
  t.equal(r.code, 1);
  t.match(r.stderr, [/^no\/such\.yaml: cannot read: ENOENT/]);
  t.strictSame(r.stdout, [`${DEMO}: ok — 1 device, 2 rules`], 'the other files are still checked');
});

void t.test('usage errors exit 2: the problem in one line, then where the usage is', async (t) => {
  const SUBS = 'expected validate, check, test, learn, push, pull, history, diff, rollback';
  for (const [args, command, message] of [
    [[], 'policy', `a subcommand is required (${SUBS})`],
    [['lint'], 'policy', `unknown subcommand "lint" (${SUBS})`],
    [['validate'], 'policy validate', 'at least one FILE is required'],
    [['validate', '--strict', DEMO], 'policy validate', /^Unknown option '--strict'/],
    [['check'], 'policy check', 'a policy FILE is required'],
    [['check', DEMO, 'read', 'coils', '0'], 'policy check', '--source IP (the client address) is required'],
    [['check', DEMO, '--source', 'localhost', 'read', 'coils', '0'], 'policy check', '--source "localhost" is not an IPv4 or IPv6 address'],
    [['check', DEMO, '--source', '127.0.0.1', '--unit', '256', 'read', 'coils', '0'], 'policy check', '--unit "256" is not a unit id 0..255'],
    [['check', DEMO, '--source', '127.0.0.1', '--unit', 'x', 'read', 'coils', '0'], 'policy check', '--unit "x" is not a unit id 0..255'],
    [['check', DEMO, '--source', '127.0.0.1', '--verbose', 'read', 'coils', '0'], 'policy check', /^Unknown option '--verbose'/],
    [['check', DEMO, '--source', '127.0.0.1'], 'policy check', 'a REQUEST is required'],
    [['check', DEMO, '--source', '127.0.0.1', '--device', 'nope', 'read', 'coils', '0'], 'policy check', `${DEMO} has no device "nope" (devices: demo-plc)`],
    [['check', PLANT, '--source', '127.0.0.1', 'read', 'coils', '0'], 'policy check', `${PLANT} has 3 devices; pick one with --device (boiler-plc, chiller-plc, packaging-line)`],
  ] as const) {
    const r = await run(...args);
    t.equal(r.code, 2, args.join(' '));
    t.strictSame(r.stdout, []);
    t.equal(r.stderr.length, 1);
    const [first = '', hint, ...more] = r.stderr[0]!.split('\n');
    const prefix = `plcguard ${command}: `;
    t.ok(first.startsWith(prefix), first);
    if (typeof message === 'string') t.equal(first.slice(prefix.length), message);
    else t.match(first.slice(prefix.length), message);
    t.equal(hint, `try 'plcguard ${command} --help'`);
    t.strictSame(more, [], 'and nothing else');
  }
});

void t.test('help: the overview, and each subcommand its own', async (t) => {
  for (const h of ['help', '--help', '-h']) t.strictSame(await run(h), { code: 0, stdout: [POLICY_USAGE], stderr: [] });
  for (const sub of ['validate', 'check', 'push', 'pull', 'history', 'diff', 'rollback', 'test']) {
    t.match(POLICY_USAGE, new RegExp(`\\n  ${sub} `), `the overview names ${sub}`);
  }
  const check = await run('check', DEMO, '--source', 'not an address', '--help');
  t.equal(check.code, 0, '--help wins over anything else typed');
  t.match(check.stdout[0], /^usage: plcguard policy check \[--json\] FILE \[--device NAME\] --source IP/);
  t.match(check.stdout[0], /read TABLE A\[-B\]/, 'with the request words');
  t.match(check.stdout[0], /\nexit status: 0 allow, 3 deny, 1 the policy is invalid or unreadable, 2 usage error$/);
  const validate = await run('validate', '-h');
  t.match(validate, { code: 0, stdout: [/^usage: plcguard policy validate \[--json\] FILE\.\.\.\n/], stderr: [] });
  t.match((await run('test', '--help')).stdout[0], /^usage: plcguard policy test FILE\.\.\.\n/);
});

void t.test('validate --json: one document with every file, stderr as without it', async (t) => {
  const warned = `${CORPUS}/valid/warnings.yaml`;
  const bad = `${CORPUS}/invalid/wrong-version.yaml`;
  const plain = await run('validate', DEMO, warned, bad, 'no/such.yaml');
  const json = await run('validate', '--json', DEMO, warned, bad, 'no/such.yaml');
  t.equal(json.code, 1);
  t.strictSame(json.stderr, plain.stderr, 'the same problems on stderr');
  t.equal(json.stdout.length, 1, 'one document');
  const doc = JSON.parse(json.stdout[0]!) as { files: Record<string, unknown>[] };
  t.strictSame(Object.keys(doc), ['files']);
  t.strictSame(doc.files[0], {
    file: DEMO,
    valid: true,
    sha256: policySha256(readFileSync(DEMO, 'utf8')),
    devices: 1,
    rules: 2,
    errors: [],
    warnings: [],
  });
  t.match(doc.files[1], { file: warned, valid: true, devices: 3, rules: 4, errors: [] });
  t.strictSame((doc.files[1]!.warnings as unknown[])[0], {
    line: 8,
    col: 18,
    message: 'devices[0].rules[0].sources: empty; this rule can never match (omit sources to match any source)',
  });
  t.equal((doc.files[1]!.warnings as unknown[]).length, 7);
  t.strictSame(doc.files[2], {
    file: bad,
    valid: false,
    sha256: null,
    devices: null,
    rules: null,
    errors: [{ line: 1, col: 10, message: 'version: 2 is out of range; expected the integer 1' }],
    warnings: [],
  });
  t.match(doc.files[3], { file: 'no/such.yaml', valid: false, sha256: null, devices: null, rules: null, errors: [{ line: null, col: null, message: /^cannot read: ENOENT/ }], warnings: [] });
  const ok = await run('validate', DEMO, '--json');
  t.equal(ok.code, 0);
  t.equal(ok.stderr.length, 0);
});

async function check(file: string, ...args: string[]): Promise<Run> {
  return run('check', file, ...args);
}

void t.test('check: allow exits 0 and says which rule', async (t) => {
  const r = await check(DEMO, '--source', '127.0.0.1', 'read', 'holding_registers', '0-9');
  t.strictSame(r, {
    code: 0,
    stdout: [
      [
        'device: demo-plc (mode enforce, on_deny exception)',
        'source: 127.0.0.1, unit 1',
        'request: FC3 read_holding_registers holding_registers 0-9',
        'decision: allow',
        'reason: allowed',
        'exception: none',
        'rule: monitoring',
        'action: forward to the PLC',
      ].join('\n'),
    ],
    stderr: [],
  });
});

void t.test('check: deny exits 3 with reason, exception and rule', async (t) => {
  const lines = async (...args: string[]) => {
    const r = await check(DEMO, '--device', 'demo-plc', '--source', '127.0.0.1', ...args);
    return { code: r.code, lines: r.stdout.join('\n').split('\n').slice(2) };
  };
  t.strictSame(await lines('write', 'holding_registers', '50=1'), {
    code: 3,
    lines: [
      'request: FC6 write_single_register holding_registers 50 = 1',
      'decision: deny',
      'reason: address_not_allowed',
      'exception: 0x02 (illegal data address)',
      'rule: setpoints',
      'action: reply with exception 0x02 (illegal data address)',
    ],
  });
  t.strictSame((await lines('write', 'holding_registers', '10=5000')).lines.slice(1, 5), [
    'decision: deny',
    'reason: value_not_allowed',
    'exception: 0x03 (illegal data value)',
    'rule: setpoints',
  ]);
  t.strictSame((await lines('function', '43/14')).lines.slice(0, 5), [
    'request: FC43 encapsulated_interface_transport MEI type 14',
    'decision: deny',
    'reason: function_not_allowed',
    'exception: 0x01 (illegal function)',
    'rule: none',
  ]);
  t.strictSame((await lines('read', 'holding_registers', '0-125')).lines.slice(0, 5), [
    'request: FC3 read_holding_registers holding_registers 0-125',
    'decision: deny',
    'reason: malformed',
    'violation: quantity',
    'exception: 0x03 (illegal data value)',
  ]);
  const other = await check(DEMO, '--source', '10.1.2.3', 'read', 'coils', '0');
  t.equal(other.code, 3);
  t.strictSame(other.stdout.join('\n').split('\n').slice(3), [
    'decision: deny',
    'reason: source_not_allowed',
    'exception: none',
    'rule: none',
    'action: refuse the connection (no rule matches this source)',
  ]);
  const unit = await check(DEMO, '--source', '::1', '--unit', '2', 'read', 'coils', '0');
  t.equal(unit.code, 3);
  t.match(unit.stdout[0], /source: ::1, unit 2\n.*\ndecision: deny\nreason: unit_not_allowed\nexception: 0x0A \(gateway path unavailable\)/);
});

void t.test('check: every request form against the plant policy', async (t) => {
  const cases: [string, string[], number, string][] = [
    ['boiler-plc', ['--source', '10.20.0.10', 'write', 'coils', '0=1,1=0,2=1'], 0, 'FC15 write_multiple_coils coils 0-2 = 1, 0, 1'],
    ['boiler-plc', ['--source', '10.20.0.10', 'write', 'coils', '3=1'], 0, 'FC5 write_single_coil coils 3 = 1'],
    ['boiler-plc', ['--source', '10.20.0.10', 'write', 'coils', '4=0'], 3, 'FC5 write_single_coil coils 4 = 0'],
    ['boiler-plc', ['--source', '10.20.0.10', 'write', 'holding_registers', '10=500,', '11=50,12=3'], 0, 'FC16 write_multiple_registers holding_registers 10-12 = 500, 50, 3'],
    ['boiler-plc', ['--source', '10.20.0.10', 'write', 'holding_registers', '12=2'], 3, 'FC6 write_single_register holding_registers 12 = 2'],
    ['boiler-plc', ['--source', '10.20.0.10', 'write', 'holding_registers', '30-31=0x10'], 3, 'FC16 write_multiple_registers holding_registers 30-31 = 16, 16'],
    ['boiler-plc', ['--source', '10.20.0.10', 'mask_write', '30', '0xff00', '0x0012'], 0, 'FC22 mask_write_register holding_registers 30'],
    ['boiler-plc', ['--source', '10.20.0.10', 'mask_write', '10', '0', '1'], 3, 'FC22 mask_write_register holding_registers 10'],
    ['boiler-plc', ['--source', '10.20.0.10', 'read_write', '0-9', '10=300'], 0, 'FC23 read_write_multiple_registers read 0-9, write 10 = 300'],
    ['boiler-plc', ['--source', '10.20.0.10', 'read_fifo_queue', '200'], 0, 'FC24 read_fifo_queue holding_registers 200'],
    ['boiler-plc', ['--source', '10.20.0.50', 'function', 'diagnostics/11'], 0, 'FC8 diagnostics sub-function 11'],
    ['boiler-plc', ['--source', '10.20.0.50', 'function', '8'], 0, 'FC8 diagnostics sub-function 0'],
    ['boiler-plc', ['--source', '10.20.0.50', 'function', 'diagnostics/4'], 3, 'FC8 diagnostics sub-function 4'],
    ['boiler-plc', ['--source', '10.20.0.50', 'function', 'read_device_identification'], 0, 'FC43 encapsulated_interface_transport MEI type 14'],
    ['boiler-plc', ['--source', '10.20.0.50', 'function', '43'], 0, 'FC43 encapsulated_interface_transport MEI type 14'],
    ['boiler-plc', ['--source', '10.20.0.50', 'function', 'encapsulated_interface_transport/13'], 3, 'FC43 encapsulated_interface_transport MEI type 13'],
    ['boiler-plc', ['--source', '10.20.0.50', 'function', 'report_server_id'], 0, 'FC17 report_server_id'],
    ['boiler-plc', ['--source', '10.20.0.50', 'function', 'read_file_record'], 3, 'FC20 read_file_record file 1 record 0'],
    ['boiler-plc', ['--source', '10.20.0.50', 'function', '21'], 3, 'FC21 write_file_record file 1 record 0'],
    ['boiler-plc', ['--source', '10.20.0.50', 'function', '90'], 3, 'FC90 function'],
    ['boiler-plc', ['--source', '10.20.0.50', 'raw', '11'], 0, 'raw PDU 11 (FC17)'],
    ['boiler-plc', ['--source', '10.20.0.50', 'raw', '5a:00', '01'], 3, 'raw PDU 5a0001 (FC90)'],
    ['chiller-plc', ['--source', 'fd20::7', 'read', 'input_registers', '31'], 0, 'FC4 read_input_registers input_registers 31-31'],
    ['chiller-plc', ['--source', '::ffff:10.20.0.9', 'write', 'holding_registers', '20=121'], 3, 'FC6 write_single_register holding_registers 20 = 121'],
    ['packaging-line', ['--source', '10.20.0.9', 'read', 'discrete_inputs', '0-63'], 0, 'FC2 read_discrete_inputs discrete_inputs 0-63'],
  ];
  for (const [device, args, code, request] of cases) {
    const r = await check(PLANT, '--device', device, ...args);
    t.equal(r.code, code, args.join(' '));
    t.equal(r.stdout.join('\n').split('\n')[2], `request: ${request}`);
  }
  const monitor = await check(PLANT, '--device', 'packaging-line', '--source', '10.20.0.9', 'write', 'coils', '32=0');
  t.equal(monitor.code, 3, 'a would-deny is still a deny');
  t.match(monitor.stdout[0], /reason: value_not_allowed\n.*\nrule: hmi\naction: forward to the PLC \(monitor mode: logged and counted as would-deny\)$/);
});

void t.test('check: the action follows on_deny', async (t) => {
  const base = (onDeny: string) => `version: 1\ndevices:\n  - name: d\n    listen: 127.0.0.1:1\n    upstream: 127.0.0.1:2\n    on_deny: ${onDeny}\n    rules:\n      - read: { coils: [0] }\n`;
  const drop = await check(policyFile('drop.yaml', base('drop')), '--source', '1.2.3.4', 'read', 'coils', '1');
  t.match(drop.stdout[0], /action: drop the request \(no reply\)$/);
  const close = await check(policyFile('close.yaml', base('close')), '--source', '1.2.3.4', 'read', 'coils', '1');
  t.match(close.stdout[0], /action: close the client connection$/);
  const none = await check(policyFile('none.yaml', 'version: 1\ndevices: []\n'), '--source', '1.2.3.4', 'read', 'coils', '1');
  t.equal(none.code, 2);
  t.match(none.stderr[0], /has 0 devices; pick one with --device \(none\)/);
  const none2 = await check(policyFile('none.yaml', 'version: 1\ndevices: []\n'), '--device', 'x', '--source', '1.2.3.4', 'read', 'coils', '1');
  t.match(none2.stderr[0], /has no device "x" \(devices: none\)/);
});

void t.test('check --json: the decision as one document, the same exit codes', async (t) => {
  const json = async (file: string, ...args: string[]) => {
    const r = await check(file, '--json', ...args);
    t.equal(r.stdout.length, 1, 'one document');
    return { code: r.code, doc: JSON.parse(r.stdout[0]!) as Record<string, unknown>, stderr: r.stderr };
  };
  t.strictSame(await json(DEMO, '--source', '127.0.0.1', 'read', 'holding_registers', '0-9'), {
    code: 0,
    doc: {
      device: 'demo-plc',
      mode: 'enforce',
      on_deny: 'exception',
      source: '127.0.0.1',
      role: null,
      unit: 1,
      request: 'FC3 read_holding_registers holding_registers 0-9',
      decision: 'allow',
      reason: 'allowed',
      violation: null,
      exception: null,
      rule: 'monitoring',
      action: 'forward',
    },
    stderr: [],
  });
  const denied = await json(DEMO, '--source', '127.0.0.1', '--unit', '1', 'write', 'holding_registers', '10=5000');
  t.equal(denied.code, 3);
  t.match(denied.doc, { decision: 'deny', reason: 'value_not_allowed', violation: null, exception: 3, rule: 'setpoints', action: 'exception' });
  t.match((await json(DEMO, '--source', '127.0.0.1', 'read', 'holding_registers', '0-125')).doc, { reason: 'malformed', violation: 'quantity', exception: 3 });
  t.match((await json(DEMO, '--source', '10.1.2.3', 'read', 'coils', '0')).doc, { reason: 'source_not_allowed', exception: null, rule: null, action: 'refuse' });
  const monitor = await json(PLANT, '--device', 'packaging-line', '--source', '10.20.0.9', 'write', 'coils', '32=0');
  t.match(monitor, { code: 3, doc: { mode: 'monitor', decision: 'deny', action: 'forward' } });
  const base = (onDeny: string) => `version: 1\ndevices:\n  - name: d\n    listen: 127.0.0.1:1\n    upstream: 127.0.0.1:2\n    on_deny: ${onDeny}\n    rules:\n      - read: { coils: [0] }\n`;
  t.match((await json(policyFile('drop-json.yaml', base('drop')), '--source', '1.2.3.4', 'read', 'coils', '1')).doc, { action: 'drop', exception: 2 });
  t.match((await json(policyFile('close-json.yaml', base('close')), '--source', '1.2.3.4', 'read', 'coils', '1')).doc, { action: 'close' });
  const invalid = await check(`${CORPUS}/invalid/wrong-version.yaml`, '--json', '--source', '1.2.3.4', 'read', 'coils', '1');
  t.match(invalid, { code: 1, stdout: [], stderr: [/version: 2 is out of range/, /invalid — 1 error/] }, 'errors still on stderr, nothing on stdout');
});

void t.test('check: an unreadable or invalid policy exits 1', async (t) => {
  const missing = await check('no/such.yaml', '--source', '1.2.3.4', 'read', 'coils', '1');
  t.equal(missing.code, 1);
  t.match(missing.stderr, [/^no\/such\.yaml: cannot read: ENOENT/]);
  const bad = `${CORPUS}/invalid/wrong-version.yaml`;
  const invalid = await check(bad, '--source', '1.2.3.4', 'read', 'coils', '1');
  t.strictSame(invalid, {
    code: 1,
    stdout: [],
    stderr: [`${bad}:1:10: version: 2 is out of range; expected the integer 1`, `${bad}: invalid — 1 error`],
  });
});

void t.test('request words that describe no request', (t) => {
  for (const [words, message] of [
    [['read'], 'read needs a table: coils, discrete_inputs, holding_registers, input_registers'],
    [['read', 'holding'], 'read needs a table: coils, discrete_inputs, holding_registers, input_registers (got "holding")'],
    [['read', 'coils'], 'expected read TABLE A[-B]'],
    [['read', 'coils', '1', '2'], 'expected read TABLE A[-B]'],
    [['read', 'coils', 'x'], 'address "x" is not a number'],
    [['read', 'coils', '65536'], 'address 65536 is out of range 0..65535'],
    [['read', 'coils', '9-3'], 'address range 9-3 is reversed'],
    [['read', 'coils', '0-65535'], "read of 65536 addresses doesn't fit a request (at most 65535)"],
    [['write', 'input_registers', '1=1'], 'write needs a table: coils, holding_registers (got "input_registers")'],
    [['write', 'coils'], 'expected ADDR=VALUE assignments'],
    [['write', 'coils', '1'], '"1" is not ADDR=VALUE'],
    [['write', 'coils', '1=2'], 'value 2 is out of range 0..1'],
    [['write', 'coils', '1=1,3=1'], 'address 3 does not follow 1: one request writes consecutive addresses'],
    [['write', 'coils', '3=1,1=1'], 'address 3 does not follow 1: one request writes consecutive addresses'],
    [['write', 'coils', '1=1,1=0'], 'address 1 is written twice'],
    [['write', 'holding_registers', '3=2,0-5=1'], 'address 3 is written twice'],
    [['write', 'coils', '0-1968=0'], 'FC15 writes at most 1968 coils'],
    [['write', 'holding_registers', '1=65536'], 'value 65536 is out of range 0..65535'],
    [['write', 'holding_registers', '0-123=1'], 'FC16 writes at most 123 registers'],
    [['mask_write', '1', '2'], 'expected mask_write ADDR AND OR'],
    [['read_write', '0-9'], 'expected read_write A-B A=V[,A=V...]'],
    [['read_write', '0-125', '1=1'], 'FC23 reads at most 125 registers'],
    [['read_write', '0-1', '0-121=1'], 'FC23 writes at most 121 registers'],
    [['read_fifo_queue'], 'expected read_fifo_queue ADDR'],
    [['function'], 'expected function CODE[/SUB]'],
    [['function', 'read_coils'], 'FC1 (read_coils) has an address model: use read, write, mask_write, read_write or read_fifo_queue'],
    [['function', '16'], 'FC16 (write_multiple_registers) has an address model: use read, write, mask_write, read_write or read_fifo_queue'],
    [['function', '17/1'], '17 takes no /SUB (only diagnostics and encapsulated_interface_transport do)'],
    [['function', 'read_device_identification/13'], 'read_device_identification takes no /SUB (only diagnostics and encapsulated_interface_transport do)'],
    [['function', '256'], 'function code 256 is out of range 0..255'],
    [['function', 'umas'], 'function code "umas" is not a number'],
    [['function', '8/65536'], 'sub-function 65536 is out of range 0..65535'],
    [['raw', 'xyz'], 'raw needs 1..253 bytes of hex, function code first'],
    [['raw', '0'.repeat(508)], 'raw needs 1..253 bytes of hex, function code first'],
    [['send'], 'unknown request "send"'],
  ] as const) {
    t.throws(() => parseRequestSpec(words), new RequestSpecError(message), words.join(' '));
  }
  t.equal(new RequestSpecError('x').code, 'ERR_POLICY_CHECK_REQUEST');
  t.ok(new RequestSpecError('x') instanceof UsageError, 'request words are something a person typed');
  t.end();
});

void t.test('request words → exact PDU bytes', (t) => {
  const hex = (...w: string[]) => parseRequestSpec(w).pdu.toString('hex');
  t.equal(hex('read', 'coils', '0x10-0x11'), '0100100002');
  t.equal(hex('read', 'discrete_inputs', '0'), '0200000001');
  t.equal(hex('read', 'input_registers', '65535'), '04ffff0001');
  t.equal(hex('write', 'coils', '7=1'), '050007ff00');
  t.equal(hex('write', 'coils', '7=0'), '0500070000');
  t.equal(hex('write', 'coils', '0=1,1=0,2=1,3=1,4=0,5=0,6=0,7=1,8=1'), '0f00000009028d' + '01', 'LSB first: 0b10001101, then 1');
  t.equal(hex('write', 'holding_registers', '1=258'), '0600010102');
  t.equal(hex('write', 'holding_registers', '1-2=258'), '1000010002040102' + '0102');
  t.equal(hex('write', 'holding_registers', '3=7', '1-2=258'), '1000010003060102' + '0102' + '0007', 'in any order, sent from the lowest address');
  t.equal(hex('write', 'coils', '9=1,8=0'), '0f000800020102', 'coils too: 8 is bit 0, 9 bit 1');
  t.equal(hex('mask_write', '4', '0xf2', '0x25'), '16000400f20025', 'MB-AP §6.16 example');
  t.equal(hex('read_write', '3-8', '14=255,15=255,16=255'), '1700030006000e000306' + '00ff00ff00ff', 'MB-AP §6.17 example');
  t.equal(hex('read_fifo_queue', '1246'), '1804de', 'MB-AP §6.18 example');
  t.equal(hex('function', 'diagnostics/4'), '0800040000');
  t.equal(hex('function', '43/13'), '2b0d');
  t.equal(hex('function', '7'), '07');
  t.equal(hex('function', 'read_file_record'), '140706000100000001');
  t.equal(hex('function', 'write_file_record'), '15090600010000000100' + '00');
  t.equal(hex('raw', '5A', '00 01'), '5a0001');
  t.end();
});

void t.test('exception codes print in hex with their names', (t) => {
  t.equal(exceptionText(2), '0x02 (illegal data address)');
  t.equal(exceptionText(0x0b), '0x0B (gateway target device failed to respond)');
  t.equal(exceptionText(0x42), '0x42 (unknown exception code)');
  t.end();
});

void t.test('check --role: what a client certificate role may do on a device with tls', async (t) => {
  const file = policyFile('roles.yaml', `version: 1
devices:
  - name: d
    listen: 127.0.0.1:802
    upstream: 127.0.0.1:502
    tls: { cert: s.crt, key: s.key, ca: ca.crt }
    rules:
      - { name: operators, roles: [Operator], read: { holding_registers: [0-9] }, write: { holding_registers: [0-9] } }
      - { name: viewers, roles: [Viewer], read: { holding_registers: [0-9] } }
`);
  const op = await check(file, '--source', '10.0.0.1', '--role', 'Operator', 'write', 'holding_registers', '1=5');
  t.equal(op.code, 0);
  t.match(op.stdout[0], 'source: 10.0.0.1, role Operator, unit 1\n');
  t.match(op.stdout[0], 'rule: operators');
  const viewer = await check(file, '--json', '--source', '10.0.0.1', '--role', 'Viewer', 'write', 'holding_registers', '1=5');
  t.equal(viewer.code, 3);
  t.match(JSON.parse(viewer.stdout[0]!), { role: 'Viewer', decision: 'deny', reason: 'function_not_allowed', exception: 1, action: 'exception' });
  const none = await check(file, '--source', '10.0.0.1', 'read', 'holding_registers', '0');
  t.equal(none.code, 3);
  t.match(none.stdout[0], 'action: refuse the connection after the handshake (no rule matches this source and role)');
  const plain = await check(DEMO, '--source', '127.0.0.1', '--role', 'Operator', 'read', 'holding_registers', '0');
  t.equal(plain.code, 2);
  t.match(plain.stderr.join('\n'), '--role: device demo-plc has no tls, so its clients have no role');
  t.end();
});
