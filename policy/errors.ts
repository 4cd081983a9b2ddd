// What the policy layer reports: positioned issues in a policy file, and the few errors it throws.
import { PlcguardError } from '../modbus/errors.js';

export type PolicyIssueSeverity = 'error' | 'warning';

/**
 * One problem in a policy file, at a 1-based line and column. `format()` gives the
 * `FILE:LINE:COL: message` form editors and CI logs link to (warnings say so after the position).
 */
export class PolicyIssue {
  constructor(
    readonly severity: PolicyIssueSeverity,
    readonly file: string,
    readonly line: number,
    readonly col: number,
    readonly message: string,
  ) {}

  format(): string {
    const tag = this.severity === 'warning' ? 'warning: ' : '';
    return `${this.file}:${this.line}:${this.col}: ${tag}${this.message}`;
  }
}

export type PolicyErrorCode = 'ERR_POLICY_READ' | 'ERR_POLICY_INVALID' | 'ERR_POLICY_TOO_COMPLEX';

/** A policy that can't be used (unreadable, invalid); callers switch on the class or on `code`. */
export class PolicyError extends PlcguardError {
  override readonly name: string = 'PolicyError';
  declare readonly code: PolicyErrorCode;
  constructor(code: PolicyErrorCode, message: string, options?: ErrorOptions) {
    super(code, message, options);
  }
}

/** The policy file could not be read (missing, unreadable, a directory). */
export class PolicyReadError extends PolicyError {
  override readonly name = 'PolicyReadError';
  constructor(
    readonly file: string,
    cause: unknown,
  ) {
    super('ERR_POLICY_READ', `${file}: cannot read: ${describeCause(cause)}`, { cause });
  }

  /** Reported like an issue: a watched file that vanished is one more reason a reload failed. */
  format(): string {
    return this.message;
  }
}

/** What a parse or load reports as an error: a positioned issue, or a file that couldn't be read. */
export type PolicyProblem = PolicyIssue | PolicyReadError;

/** A policy that failed validation, carrying every issue. */
export class PolicyInvalidError extends PolicyError {
  override readonly name = 'PolicyInvalidError';
  constructor(readonly issues: readonly PolicyProblem[]) {
    super('ERR_POLICY_INVALID', issues.map((i) => i.format()).join('\n'));
  }
}

/**
 * A valid policy whose compiled form would be bigger than the compile budget (overlapping sources,
 * units and ranges multiply). Thrown by compilePolicy before it builds anything; parsePolicy reports
 * its message as an issue at the device.
 */
export class PolicyTooComplexError extends PolicyError {
  override readonly name = 'PolicyTooComplexError';
  constructor(
    /** Index of the device at which the count went over the budget. */
    readonly device: number,
    readonly deviceName: string,
    /** Entries counted for that device when counting stopped (at least this many). */
    readonly entries: number,
    /** Entries of the devices before it. */
    readonly before: number,
    readonly budget: number,
  ) {
    const total = before + entries;
    const others = before === 0 ? '' : `, which with the ${count(before)} of the devices before it makes ${count(total)}`;
    super(
      'ERR_POLICY_TOO_COMPLEX',
      `devices[${device}]: compiling device ${JSON.stringify(deviceName)} needs at least ${count(entries)} entries${others}, ` +
        `${(Math.ceil((total / budget) * 100) / 100).toFixed(2)}× the budget of ${count(budget)} per policy ` +
        '(each source range and unit range × its matching rules, each distinct rule set × its grants, each write range × the address segments it spans); ' +
        'expected fewer overlapping sources, units, ranges or value bounds',
    );
  }
}

function count(n: number): string {
  return n.toLocaleString('en');
}

function describeCause(cause: unknown): string {
  if (cause instanceof Error) {
    const code = (cause as NodeJS.ErrnoException).code;
    return code === undefined ? cause.message : `${code} (${cause.message})`;
  }
  return String(cause);
}
