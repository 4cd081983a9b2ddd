// `plcguard policy validate|check`: the policy's command line. Returns exit codes instead of
// exiting and writes through `io`, so cli/main.ts wires it and tests call it directly.

import { ExceptionCode, UsageError } from '../modbus/index.js';
import { PolicyReadError } from '../policy/errors.js';
import { MAX_UNIT_ID } from '../policy/format.js';
import { parseClientAddress } from '../policy/net.js';
import { loadPolicyFile } from '../policy/parse.js';
import type { ParseResult } from '../policy/parse.js';
import { ExitCode, exitCodeFor, inContext, parseCommandLine, type CommandIo } from './command.js';
import { frameRequest, parseRequestSpec, REQUEST_USAGE } from './request.js';
import { replayCommand } from './replay.js';
import { Decision } from '../policy/types.js';
import type { CompiledDevice } from '../policy/types.js';

/** Unit id used by `check` when --unit is not given: the usual id of a single PLC behind a gateway. */
const DEFAULT_UNIT = 1;
/** Transaction id of the dry-run frame (any value works; the proxy never looks at it). */
const CHECK_TRANSACTION_ID = 1;

export const POLICY_USAGE = `usage:
  plcguard policy validate FILE...
      Checks policy files. Prints "FILE: ok — N devices, M rules" for each valid one, every
      problem as FILE:LINE:COL: message, and exits 1 if any file has errors.
  plcguard policy check FILE [--device NAME] --source IP [--unit N] REQUEST...
      Dry run: would the proxy allow this request from this source? Exits 0 for allow, 3 for
      deny. --device may be left out when the policy has one device; --unit defaults to ${DEFAULT_UNIT}.

${REQUEST_USAGE}

examples:
  plcguard policy validate examples/plant-policy.yaml
  plcguard policy check examples/demo-policy.yaml --source 127.0.0.1 read holding_registers 0-9
  plcguard policy check examples/demo-policy.yaml --device demo-plc --source 127.0.0.1 write holding_registers 10=500,11=600
  plcguard policy check examples/plant-policy.yaml --device boiler-plc --source 10.20.0.50 function 43/14`;

/** Runs `plcguard policy ARGS…`; resolves to the exit code. */
export async function policyCommand(args: readonly string[], io: CommandIo): Promise<number> {
  const [sub, ...rest] = args;
  try {
    switch (sub) {
      case 'validate':
        return await validateCommand(rest, io);
      case 'check':
        return await (rest.some((a) => a === '--pcap' || a.startsWith('--pcap=')) ? replayCommand(rest, io) : checkCommand(rest, io));
      case 'help':
      case '--help':
      case '-h':
        io.stdout(POLICY_USAGE);
        return ExitCode.OK;
      default:
        throw usage(sub === undefined ? 'a subcommand is required (validate or check)' : `unknown subcommand ${JSON.stringify(sub)} (expected validate or check)`);
    }
  } catch (err) {
    const code = exitCodeFor(err);
    const { message } = err as Error;
    // A policy that can't be read says so itself (`FILE: cannot read: ...`).
    io.stderr(code === ExitCode.USAGE ? `plcguard policy: ${message}\n\n${POLICY_USAGE}` : message);
    return code;
  }
}

function usage(message: string): UsageError {
  return new UsageError('ERR_POLICY_USAGE', message);
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** Loads a file, printing why when it can't be used; null then. */
async function load(file: string, io: CommandIo): Promise<ParseResult | null> {
  try {
    return await loadPolicyFile(file);
  } catch (err) {
    /* c8 ignore start: loadPolicyFile throws nothing else */
    if (!(err instanceof PolicyReadError)) throw err;
    /* c8 ignore stop */
    io.stderr(err.message);
    return null;
  }
}

async function validateCommand(files: readonly string[], io: CommandIo): Promise<number> {
  if (files.length === 0) throw usage('validate needs at least one FILE');
  const flag = files.find((f) => f.startsWith('-'));
  if (flag !== undefined) throw usage(`validate takes no options (got ${JSON.stringify(flag)})`);
  let code: ExitCode = ExitCode.OK;
  for (const file of files) {
    const r = await load(file, io);
    if (r === null) {
      code = ExitCode.FAILURE;
      continue;
    }
    for (const e of r.errors) io.stderr(e.format());
    for (const w of r.warnings) io.stderr(w.format());
    if (r.policy === undefined) {
      io.stderr(`${file}: invalid — ${plural(r.errors.length, 'error')}`);
      code = ExitCode.FAILURE;
      continue;
    }
    const devices = [...r.policy.devices.values()];
    const rules = devices.reduce((n, d) => n + d.ruleCount, 0);
    const warned = r.warnings.length > 0 ? `, ${plural(r.warnings.length, 'warning')}` : '';
    io.stdout(`${file}: ok — ${plural(devices.length, 'device')}, ${plural(rules, 'rule')}${warned}`);
  }
  return code;
}

async function checkCommand(args: readonly string[], io: CommandIo): Promise<number> {
  const { values, positionals } = inContext('check: ', () =>
    parseCommandLine({
      args: [...args],
      options: { device: { type: 'string' }, source: { type: 'string' }, unit: { type: 'string' } },
      allowPositionals: true,
      strict: true,
    }),
  );
  const [file, ...words] = positionals;
  if (file === undefined) throw usage('check needs a policy FILE');
  if (values.source === undefined) throw usage('check needs --source IP (the client address)');
  if (parseClientAddress(values.source) === null) throw usage(`check: --source ${JSON.stringify(values.source)} is not an IPv4 or IPv6 address`);
  let unit = DEFAULT_UNIT;
  if (values.unit !== undefined) {
    unit = /^\d{1,3}$/.test(values.unit) ? Number(values.unit) : -1;
    if (unit < 0 || unit > MAX_UNIT_ID) throw usage(`check: --unit ${JSON.stringify(values.unit)} is not a unit id 0..${MAX_UNIT_ID}`);
  }
  const spec = inContext('check: ', () => parseRequestSpec(words));

  const r = await loadPolicyFile(file);
  if (r.policy === undefined) {
    for (const e of r.errors) io.stderr(e.format());
    io.stderr(`${file}: invalid — ${plural(r.errors.length, 'error')}`);
    return ExitCode.FAILURE;
  }
  const names = [...r.policy.devices.keys()];
  let device: CompiledDevice | undefined;
  if (values.device === undefined) {
    if (names.length !== 1) throw usage(`check: ${file} has ${plural(names.length, 'device')}; pick one with --device (${names.join(', ') || 'none'})`);
    device = r.policy.devices.get(names[0]!)!;
  } else {
    device = r.policy.devices.get(values.device);
    if (device === undefined) throw usage(`check: ${file} has no device ${JSON.stringify(values.device)} (devices: ${names.join(', ') || 'none'})`);
  }

  const req = frameRequest(spec, CHECK_TRANSACTION_ID, unit);
  const view = device.forSource(values.source);
  const d = device.decide(view, req, new Decision());
  const lines = [
    `device: ${device.name} (mode ${device.mode}, on_deny ${device.onDeny})`,
    `source: ${values.source}, unit ${unit}`,
    `request: ${spec.description}`,
    `decision: ${d.allow ? 'allow' : 'deny'}`,
    `reason: ${d.reason}`,
  ];
  if (d.reason === 'malformed') lines.push(`violation: ${d.violation}`);
  lines.push(`exception: ${d.allow || d.reason === 'source_not_allowed' ? 'none' : exceptionText(d.exception)}`);
  lines.push(`rule: ${d.rule ?? 'none'}`);
  lines.push(`action: ${action(device, d)}`);
  io.stdout(lines.join('\n'));
  return d.allow ? ExitCode.OK : ExitCode.DENIED;
}

const EXCEPTION_NAMES: ReadonlyMap<number, string> = new Map(
  Object.entries(ExceptionCode).map(([k, v]) => [v, k.toLowerCase().replace(/_/g, ' ')]),
);

/** `0x02 (illegal data address)`. */
export function exceptionText(code: number): string {
  const hex = `0x${code.toString(16).toUpperCase().padStart(2, '0')}`;
  const name = EXCEPTION_NAMES.get(code);
  return name === undefined ? hex : `${hex} (${name})`;
}

/** What the proxy would do, given the device's mode and on_deny. */
function action(device: CompiledDevice, d: Decision): string {
  if (d.allow) return 'forward to the PLC';
  if (device.mode === 'monitor') return 'forward to the PLC (monitor mode: logged and counted as would-deny)';
  if (d.reason === 'source_not_allowed') return 'refuse the connection (no rule matches this source)';
  switch (device.onDeny) {
    case 'exception':
      return `reply with exception ${exceptionText(d.exception)}`;
    case 'drop':
      return 'drop the request (no reply)';
    case 'close':
      return 'close the client connection';
  }
}
