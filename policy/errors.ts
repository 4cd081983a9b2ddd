// What the policy layer reports: positioned issues in a policy file, and the few errors it throws.

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

export type PolicyErrorCode = 'ERR_POLICY_READ' | 'ERR_POLICY_INVALID' | 'ERR_POLICY_CHECK_REQUEST';

/** Base of everything the policy layer throws; callers switch on `code`. */
export class PolicyError extends Error {
  override readonly name: string = 'PolicyError';
  constructor(
    readonly code: PolicyErrorCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
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

/** `policy check` request words that describe no request (a usage error). */
export class RequestSpecError extends PolicyError {
  override readonly name = 'RequestSpecError';
  constructor(message: string) {
    super('ERR_POLICY_CHECK_REQUEST', message);
  }
}

function describeCause(cause: unknown): string {
  if (cause instanceof Error) {
    const code = (cause as NodeJS.ErrnoException).code;
    return code === undefined ? cause.message : `${code} (${cause.message})`;
  }
  return String(cause);
}
