// `plcguard policy validate|check|test` and the policy subcommands' overview (the store commands
// are cli/store.ts's). Returns exit codes instead of exiting and writes through `io`, so cli/main.ts
// wires it and tests call it directly.

import { UsageError } from '../modbus/index.js';
import { PolicyReadError } from '../policy/errors.js';
import type { PolicyProblem } from '../policy/errors.js';
import { MAX_UNIT_ID } from '../policy/format.js';
import { parseClientAddress } from '../policy/net.js';
import { loadPolicyFile } from '../policy/parse.js';
import type { ParseResult } from '../policy/parse.js';
import { asksForHelp, ExitCode, JSON_OPTION, parseCommandLine, runCommand, usageMessage, writeJson, type Command, type CommandIo } from './command.js';
import { actionOf, actionText, decideRequest, exceptionOf, exceptionText } from './decision.js';
import { TEST, testCommand } from './policy-test.js';
import { DEFAULT_UNIT, parseRequestSpec, REQUEST_USAGE } from './request.js';
import { STORE_COMMANDS } from './store.js';
import { LEARN_USAGE, learnCommand } from './learn.js';
import { REPLAY_USAGE, replayCommand } from './replay.js';
import type { CompiledDevice } from '../policy/types.js';

const SUBCOMMANDS = ['validate', 'check', 'test', 'learn', ...STORE_COMMANDS];

export const POLICY_USAGE = `usage: plcguard policy SUBCOMMAND ...
  validate [--json] FILE...           check policy files; every problem as FILE:LINE:COL
  check [--json] FILE --source IP [--role R] [--device NAME] [--unit N] REQUEST...
                                      would the proxy allow this request? exit 0 allow, 3 deny
  test FILE...                        run policy unit tests: requests and the decisions expected
  push FILE --redis URL ...           write a policy to Redis as the next version
  pull --redis URL ...                print the version in force
  history --redis URL [--json] ...    list the versions
  diff FILE --redis URL [--json]      what a push would change; exit 0 same, 1 differs, 2 trouble
  rollback VERSION --redis URL ...    write an old version again as the next version
plcguard policy SUBCOMMAND --help describes each one.`;

const VALIDATE: Command = {
  name: 'policy validate',
  usage: `usage: plcguard policy validate [--json] FILE...
Checks policy files. Prints "FILE: ok — N devices, M rules" for each valid one, and every problem
on stderr as FILE:LINE:COL: message.
  --json  one JSON document on stdout instead of the ok lines: {"files": [{"file", "valid",
          "sha256", "devices", "rules", "errors", "warnings"}, ...]}, each error and warning
          {"line", "col", "message"}; stderr as without --json
exit status: ${ExitCode.OK} every file valid, ${ExitCode.FAILURE} a file invalid or unreadable, ${ExitCode.USAGE} usage error`,
};

const CHECK: Command = {
  name: 'policy check',
  usage: `usage: plcguard policy check [--json] FILE [--device NAME] --source IP [--role R] [--unit N] REQUEST...
Dry run: would the proxy allow this request from this source? Prints the decision, its reason, the
exception a denial earns, the rule that decided, and what the proxy would do.
  --device NAME  the device; may be left out when the policy has one device
  --source IP    the client's address
  --role R       on a device with tls: the role in the client's certificate (default: none)
  --unit N       the unit id 0..${MAX_UNIT_ID} (default ${DEFAULT_UNIT})
  --json         one JSON document instead: {"device", "mode", "on_deny", "source", "role", "unit", "request",
                 "decision", "reason", "violation", "exception", "rule", "action"}

${REQUEST_USAGE}

examples:
  plcguard policy check examples/demo-policy.yaml --source 127.0.0.1 read holding_registers 0-9
  plcguard policy check examples/demo-policy.yaml --device demo-plc --source 127.0.0.1 write holding_registers 10=500,11=600
  plcguard policy check examples/plant-policy.yaml --device boiler-plc --source 10.20.0.50 function 43/14
exit status: ${ExitCode.OK} allow, ${ExitCode.DENIED} deny, ${ExitCode.FAILURE} the policy is invalid or unreadable, ${ExitCode.USAGE} usage error`,
};

const LEARN: Command = { name: 'policy learn', usage: LEARN_USAGE };
const REPLAY: Command = { name: 'policy check', usage: REPLAY_USAGE };

/** A policy that can't be read says so itself (`FILE: cannot read: ...`). */
const AS_IS = { message: (err: Error): string => err.message };

/** Runs `plcguard policy ARGS…`; resolves to the exit code. */
export async function policyCommand(args: readonly string[], io: CommandIo): Promise<number> {
  const [sub, ...rest] = args;
  switch (sub) {
    case 'validate':
      return runCommand(VALIDATE, rest, io, () => validateCommand(rest, io), AS_IS);
    case 'check':
      if (rest.some((a) => a === '--pcap' || a.startsWith('--pcap='))) return runCommand(REPLAY, rest, io, () => replayCommand(rest, io), AS_IS);
      return runCommand(CHECK, rest, io, () => checkCommand(rest, io), AS_IS);
    case 'learn':
      return runCommand(LEARN, rest, io, () => learnCommand(rest, io), AS_IS);
    case 'test':
      return runCommand(TEST, rest, io, () => testCommand(rest, io), AS_IS);
    default: {
      if (sub === 'help' || asksForHelp(args)) {
        io.stdout(POLICY_USAGE);
        return ExitCode.OK;
      }
      const expected = `expected ${SUBCOMMANDS.join(', ')}`;
      io.stderr(usageMessage('policy', sub === undefined ? `a subcommand is required (${expected})` : `unknown subcommand ${JSON.stringify(sub)} (${expected})`));
      return ExitCode.USAGE;
    }
  }
}

function usage(message: string): UsageError {
  return new UsageError('ERR_POLICY_USAGE', message);
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** An error or warning in validate's JSON: a file that can't be read has no position. */
interface IssueJson {
  line: number | null;
  col: number | null;
  message: string;
}

function issueJson(p: PolicyProblem): IssueJson {
  if (p instanceof PolicyReadError) return { line: null, col: null, message: p.message.slice(`${p.file}: `.length) };
  return { line: p.line, col: p.col, message: p.message };
}

/** One file as validate --json reports it. */
interface FileReport {
  file: string;
  valid: boolean;
  sha256: string | null;
  devices: number | null;
  rules: number | null;
  errors: IssueJson[];
  warnings: IssueJson[];
}

async function validateCommand(args: readonly string[], io: CommandIo): Promise<number> {
  const { values, positionals: files } = parseCommandLine({ args: [...args], options: JSON_OPTION, allowPositionals: true });
  if (files.length === 0) throw usage('at least one FILE is required');
  const reports: FileReport[] = [];
  for (const file of files) reports.push(await validateFile(file, io, !values.json));
  if (values.json) writeJson(io, { files: reports });
  return reports.every((r) => r.valid) ? ExitCode.OK : ExitCode.FAILURE;
}

/** Checks one file: its problems on stderr, and with `okLine` "FILE: ok — ..." on stdout when valid. */
async function validateFile(file: string, io: CommandIo, okLine: boolean): Promise<FileReport> {
  let r: ParseResult;
  try {
    r = await loadPolicyFile(file);
  } catch (err) {
    /* c8 ignore start: loadPolicyFile throws nothing else */
    if (!(err instanceof PolicyReadError)) throw err;
    /* c8 ignore stop */
    io.stderr(err.message);
    return { file, valid: false, sha256: null, devices: null, rules: null, errors: [issueJson(err)], warnings: [] };
  }
  for (const e of r.errors) io.stderr(e.format());
  for (const w of r.warnings) io.stderr(w.format());
  const errors = r.errors.map(issueJson);
  const warnings = r.warnings.map(issueJson);
  if (r.policy === undefined) {
    io.stderr(`${file}: invalid — ${plural(r.errors.length, 'error')}`);
    return { file, valid: false, sha256: null, devices: null, rules: null, errors, warnings };
  }
  const devices = [...r.policy.devices.values()];
  const rules = devices.reduce((n, d) => n + d.ruleCount, 0);
  if (okLine) {
    const warned = warnings.length > 0 ? `, ${plural(warnings.length, 'warning')}` : '';
    io.stdout(`${file}: ok — ${plural(devices.length, 'device')}, ${plural(rules, 'rule')}${warned}`);
  }
  return { file, valid: true, sha256: r.policy.sha256, devices: devices.length, rules, errors, warnings };
}

async function checkCommand(args: readonly string[], io: CommandIo): Promise<number> {
  const { values, positionals } = parseCommandLine({
    args: [...args],
    options: { device: { type: 'string' }, source: { type: 'string' }, role: { type: 'string' }, unit: { type: 'string' }, ...JSON_OPTION },
    allowPositionals: true,
    strict: true,
  });
  const [file, ...words] = positionals;
  if (file === undefined) throw usage('a policy FILE is required');
  if (values.source === undefined) throw usage('--source IP (the client address) is required');
  if (parseClientAddress(values.source) === null) throw usage(`--source ${JSON.stringify(values.source)} is not an IPv4 or IPv6 address`);
  let unit = DEFAULT_UNIT;
  if (values.unit !== undefined) {
    unit = /^\d{1,3}$/.test(values.unit) ? Number(values.unit) : -1;
    if (unit < 0 || unit > MAX_UNIT_ID) throw usage(`--unit ${JSON.stringify(values.unit)} is not a unit id 0..${MAX_UNIT_ID}`);
  }
  const spec = parseRequestSpec(words);

  const r = await loadPolicyFile(file);
  if (r.policy === undefined) {
    for (const e of r.errors) io.stderr(e.format());
    io.stderr(`${file}: invalid — ${plural(r.errors.length, 'error')}`);
    return ExitCode.FAILURE;
  }
  const names = [...r.policy.devices.keys()];
  let device: CompiledDevice | undefined;
  if (values.device === undefined) {
    if (names.length !== 1) throw usage(`${file} has ${plural(names.length, 'device')}; pick one with --device (${names.join(', ') || 'none'})`);
    device = r.policy.devices.get(names[0]!)!;
  } else {
    device = r.policy.devices.get(values.device);
    if (device === undefined) throw usage(`${file} has no device ${JSON.stringify(values.device)} (devices: ${names.join(', ') || 'none'})`);
  }

  const role = values.role ?? null;
  if (role !== null && device.document.tls === undefined) throw usage(`--role: device ${device.name} has no tls, so its clients have no role`);
  const d = decideRequest(device, values.source, unit, spec, role);
  const exception = exceptionOf(d);
  if (values.json) {
    writeJson(io, {
      device: device.name,
      mode: device.mode,
      on_deny: device.onDeny,
      source: values.source,
      role,
      unit,
      request: spec.description,
      decision: d.allow ? 'allow' : 'deny',
      reason: d.reason,
      violation: d.reason === 'malformed' ? d.violation : null,
      exception,
      rule: d.rule,
      action: actionOf(device, d),
    });
  } else {
    const lines = [
      `device: ${device.name} (mode ${device.mode}, on_deny ${device.onDeny})`,
      `source: ${values.source}${role === null ? '' : `, role ${role}`}, unit ${unit}`,
      `request: ${spec.description}`,
      `decision: ${d.allow ? 'allow' : 'deny'}`,
      `reason: ${d.reason}`,
    ];
    if (d.reason === 'malformed') lines.push(`violation: ${d.violation}`);
    lines.push(`exception: ${exception === null ? 'none' : exceptionText(exception)}`);
    lines.push(`rule: ${d.rule ?? 'none'}`);
    lines.push(`action: ${actionText(device, d)}`);
    io.stdout(lines.join('\n'));
  }
  return d.allow ? ExitCode.OK : ExitCode.DENIED;
}
