import { PlcguardError } from '../modbus/errors.js';

/** A state plcguard's own code rules out was reached: a bug in plcguard, never a peer's doing. */
export class InvariantError extends PlcguardError {
  override readonly name: string = 'InvariantError';
  constructor(what: string) {
    super('ERR_INVARIANT', `plcguard bug: ${what}`);
  }
}

/** Throws InvariantError unless `ok`. `what` is a constant: nothing is built per call. */
export function invariant(ok: boolean, what: string): asserts ok {
  if (!ok) throw new InvariantError(what);
}
