// `plcguard policy test FILE...`: policy unit tests, as `promtool test rules` runs alert tests. The
// file format is policy/test-spec.ts's; each case's request is decided as `policy check` decides
// it, and the report gives PASS or FAIL per case, with what was expected and what was decided.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { UsageError } from '../modbus/errors.js';
import { PolicyIssue, PolicyReadError } from '../policy/errors.js';
import { loadPolicyFile, type ParseResult } from '../policy/parse.js';
import { parseTestFile, type TestCase } from '../policy/test-spec.js';
import type { CompiledDevice, Decision } from '../policy/types.js';
import { quote } from '../policy/validate.js';
import { ExitCode, parseCommandLine, type Command, type CommandIo } from './command.js';
import { decideRequest, exceptionOf, exceptionText } from './decision.js';
import { DEFAULT_UNIT, parseRequestSpec, RequestSpecError, type RequestSpec } from './request.js';

export const TEST: Command = {
  name: 'policy test',
  usage: `usage: plcguard policy test FILE...
Runs policy unit tests. Each FILE names a policy (relative to FILE) and cases: requests, each
with the decision the policy must make.

  policy: plant-policy.yaml
  cases:
    - name: the HMI reads the boiler status       # optional: shown in the report
      device: boiler-plc
      source: 192.168.10.5
      unit: 1                                     # optional (default ${DEFAULT_UNIT})
      request: read holding_registers 0-9         # as plcguard policy check reads it
      expect: allow                               # allow or deny
    - device: boiler-plc
      source: 192.168.10.5
      request: write holding_registers 10=5000
      expect: deny
      reason: value_not_allowed                   # optional, and so are the exception
      exception: 0x03                             # code and the rule that decided
      rule: operator-setpoints

Prints PASS or FAIL and FILE:LINE:COL per case, for a failure what was expected and what was
decided (reason, exception, rule). A FILE with errors (FILE:LINE:COL: message) runs no case.
exit status: ${ExitCode.OK} every case passed, ${ExitCode.FAILURE} a case failed or a FILE has errors, ${ExitCode.USAGE} usage error`,
};

/** A case ready to run: its device and request resolved, where it is in the file. */
interface Run {
  readonly c: TestCase;
  readonly device: CompiledDevice;
  readonly request: RequestSpec;
  readonly where: string;
}

export async function testCommand(args: readonly string[], io: CommandIo): Promise<number> {
  const { positionals: files } = parseCommandLine({ args: [...args], options: {}, allowPositionals: true });
  if (files.length === 0) throw new UsageError('ERR_POLICY_USAGE', 'at least one FILE is required');
  let passed = true;
  for (const file of files) if (!(await testFile(file, io))) passed = false;
  return passed ? ExitCode.OK : ExitCode.FAILURE;
}

function errorCount(file: string, n: number): string {
  return `${file}: invalid — ${n} error${n === 1 ? '' : 's'}`;
}

/** Runs one test file; true when every case passed. */
async function testFile(file: string, io: CommandIo): Promise<boolean> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    io.stderr(new PolicyReadError(file, err).message);
    return false;
  }
  const t = parseTestFile(text, file);
  for (const w of t.warnings) io.stderr(w.format());
  if (t.value === undefined) {
    for (const e of t.errors) io.stderr(e.format());
    io.stderr(errorCount(file, t.errors.length));
    return false;
  }
  const spec = t.value;
  const errorAt = (obj: object, key: string, message: string): PolicyIssue => {
    const { line, col } = t.at(obj, key);
    return new PolicyIssue('error', file, line, col, message);
  };

  const policyFile = path.isAbsolute(spec.policy) ? spec.policy : path.join(path.dirname(file), spec.policy);
  let r: ParseResult;
  try {
    r = await loadPolicyFile(policyFile);
  } catch (err) {
    /* c8 ignore start: loadPolicyFile throws nothing else */
    if (!(err instanceof PolicyReadError)) throw err;
    /* c8 ignore stop */
    io.stderr(errorAt(spec, 'policy', `policy: ${err.message}`).format());
    return false;
  }
  for (const w of r.warnings) io.stderr(w.format());
  if (r.policy === undefined) {
    for (const e of r.errors) io.stderr(e.format());
    io.stderr(errorCount(policyFile, r.errors.length));
    return false;
  }
  const policy = r.policy;

  // Every case is resolved before any runs: a test file with errors runs nothing, as a policy with
  // errors serves nothing, so that a typo can't pass for a test.
  const runs: Run[] = [];
  const errors: PolicyIssue[] = [];
  spec.cases.forEach((c, i) => {
    const device = policy.devices.get(c.device);
    if (device === undefined) {
      const names = [...policy.devices.keys()].join(', ') || 'none';
      errors.push(errorAt(c, 'device', `cases[${i}].device: ${quote(c.device)} is not a device of ${policyFile}; expected one of ${names}`));
    }
    let request: RequestSpec | undefined;
    try {
      request = parseRequestSpec(c.request.split(/\s+/).filter((w) => w !== ''));
    } catch (err) {
      /* c8 ignore start: parseRequestSpec throws nothing else */
      if (!(err instanceof RequestSpecError)) throw err;
      /* c8 ignore stop */
      errors.push(errorAt(c, 'request', `cases[${i}].request: ${err.message}`));
    }
    if (device !== undefined && request !== undefined) {
      const { line, col } = t.at(c);
      runs.push({ c, device, request, where: `${file}:${line}:${col}` });
    }
  });
  if (errors.length > 0) {
    for (const e of errors) io.stderr(e.format());
    io.stderr(errorCount(file, errors.length));
    return false;
  }

  let failed = 0;
  for (const { c, device, request, where } of runs) {
    const d = decideRequest(device, c.source, c.unit ?? DEFAULT_UNIT, request);
    const label = c.name ?? `${c.device} from ${c.source}${c.unit === undefined ? '' : ` unit ${c.unit}`}: ${c.request}`;
    if (passes(c, d)) {
      io.stdout(`PASS  ${where}  ${label}`);
      continue;
    }
    failed++;
    io.stdout([`FAIL  ${where}  ${label}`, `        expected: ${expected(c)}`, `        got:      ${decided(d)}`].join('\n'));
  }
  io.stdout(`${file}: ${runs.length - failed} passed, ${failed} failed`);
  return failed === 0;
}

/** Whether the decision is the one expected, in everything the case names. */
function passes(c: TestCase, d: Decision): boolean {
  return (
    (c.expect === 'allow') === d.allow &&
    (c.reason === undefined || c.reason === d.reason) &&
    (c.exception === undefined || c.exception === exceptionOf(d)) &&
    (c.rule === undefined || c.rule === d.rule)
  );
}

function expected(c: TestCase): string {
  const parts: string[] = [c.expect];
  if (c.reason !== undefined) parts.push(`reason ${c.reason}`);
  if (c.exception !== undefined) parts.push(`exception ${exceptionText(c.exception)}`);
  if (c.rule !== undefined) parts.push(`rule ${c.rule}`);
  return parts.join(', ');
}

function decided(d: Decision): string {
  const exception = exceptionOf(d);
  const parts = [d.allow ? 'allow' : 'deny', `reason ${d.reason}`];
  if (exception !== null) parts.push(`exception ${exceptionText(exception)}`);
  parts.push(`rule ${d.rule ?? 'none'}`);
  return parts.join(', ');
}
