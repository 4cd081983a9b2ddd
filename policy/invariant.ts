// Assertions for states the code's own structure rules out. A failed one is a bug in plcguard, not
// bad input: it throws at the spot instead of carrying on with a guess or a silent return, and an
// unreachable branch stays visible rather than hidden behind a coverage exclusion.

import { PlcguardError } from '../modbus/errors.js';

/** A state the code rules out was reached: a bug, reported with what was assumed. */
export class InvariantError extends PlcguardError {
  override readonly name = 'InvariantError';
  constructor(message: string) {
    super('ERR_INVARIANT', `invariant failed: ${message}`);
  }
}

/** Throws InvariantError unless `condition` holds; `message` says what should have held. */
export function invariant(condition: boolean, message: string): asserts condition {
  if (!condition) throw new InvariantError(message);
}
