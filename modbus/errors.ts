// The one base of every error plcguard throws on purpose. It lives in the bottom layer so every
// folder can extend it; callers switch on the class or on `code`, a stable string (as undici's
// errors do), never on the message.

export class PlcguardError extends Error {
  override readonly name: string = 'PlcguardError';
  constructor(
    readonly code: string,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** Something a person typed (an option, an argument, a request description) can't be used: exit 2. */
export class UsageError extends PlcguardError {
  override readonly name: string = 'UsageError';
}

/**
 * A state plcguard's own code rules out was reached: a bug in plcguard, never a peer's doing. It
 * throws at the spot instead of carrying on with a guess or a silent return, and the unreachable
 * branch stays visible rather than hidden behind a coverage exclusion.
 */
export class InvariantError extends PlcguardError {
  override readonly name: string = 'InvariantError';
  constructor(what: string) {
    super('ERR_INVARIANT', `invariant failed: ${what}`);
  }
}

/** Throws InvariantError unless `ok`. `what` is a constant string: nothing is built per call. */
export function invariant(ok: boolean, what: string): asserts ok {
  if (!ok) throw new InvariantError(what);
}
