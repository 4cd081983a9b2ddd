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
