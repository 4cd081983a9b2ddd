// invariant(): silent when the condition holds; a coded PlcguardError when it does not.
import t from 'tap';
import { invariant, InvariantError, PlcguardError } from '../modbus/errors.js';

void t.test('invariant throws InvariantError (ERR_INVARIANT) only when the condition fails', (t) => {
  t.doesNotThrow(() => invariant(true, 'holds'));
  let caught: unknown;
  try {
    invariant(false, 'a view belongs to its device');
  } catch (err) {
    caught = err;
  }
  t.ok(caught instanceof InvariantError, 'an InvariantError');
  t.ok(caught instanceof PlcguardError, 'on the common base');
  const e = caught as InvariantError;
  t.equal(e.code, 'ERR_INVARIANT');
  t.equal(e.name, 'InvariantError');
  t.equal(e.message, 'invariant failed: a view belongs to its device');
  t.end();
});
