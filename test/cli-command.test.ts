// cli/command.ts: the one mapping from errors to exit codes, and the parseArgs wrapper.
import t from 'tap';
import { ExitCode, exitCodeFor, inContext, parseCommandLine } from '../cli/command.js';
import { FramingError } from '../modbus/mbap.js';
import { PlcguardError, UsageError } from '../modbus/errors.js';
import { PolicyInvalidError, PolicyReadError } from '../policy/errors.js';
import { EndpointError } from '../policy/net.js';
import { StoreError, StoreOptionError } from '../policy/store.js';
import { ProbeFailure, ProbeUsageError } from '../cli/probe.js';
import { RequestSpecError } from '../cli/request.js';

void t.test('exit codes by class: usage 2, any other plcguard error 1, a bug rethrown', (t) => {
  const usage = [
    new UsageError('ERR_X', 'x'),
    new EndpointError('x'),
    new StoreOptionError('x'),
    new ProbeUsageError('x'),
    new RequestSpecError('x'),
  ];
  for (const err of usage) t.equal(exitCodeFor(err), ExitCode.USAGE, err.name);
  const failures = [
    new PolicyReadError('f.yaml', new Error('gone')),
    new PolicyInvalidError([]),
    new StoreError('ERR_STORE_NO_VERSION', 'x'),
    new ProbeFailure('x'),
    new FramingError('ERR_MODBUS_LENGTH', 300, 'x'),
  ];
  for (const err of failures) {
    t.ok(err instanceof PlcguardError && !(err instanceof UsageError), err.name);
    t.equal(exitCodeFor(err), ExitCode.FAILURE, err.name);
  }
  const bug = new TypeError('undefined is not a function');
  t.throws(() => exitCodeFor(bug), bug);
  t.end();
});

void t.test('parseCommandLine: node parseArgs complaints are usage errors with node code', (t) => {
  const err = t.throws(() => parseCommandLine({ args: ['--nope'], options: {} }));
  t.ok(err instanceof UsageError);
  t.match(err, { code: 'ERR_PARSE_ARGS_UNKNOWN_OPTION', message: /^Unknown option '--nope'/ });
  t.match(t.throws(() => parseCommandLine({ args: ['extra'], options: {} })), { code: 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL' });
  t.same(parseCommandLine({ args: ['--a', '1'], options: { a: { type: 'string' } } }).values, { a: '1' });
  // A config that parseArgs refuses is our bug, not the user's.
  const bug = t.throws(() => parseCommandLine({ args: [], options: { a: { type: 'number' as 'string' } } }));
  t.notOk(bug instanceof UsageError);
  t.match(bug, { code: 'ERR_INVALID_ARG_TYPE' });
  t.end();
});

void t.test('inContext: a usage error gets the context, anything else passes unchanged', (t) => {
  t.equal(inContext('check: ', () => 7), 7);
  const err = t.throws(() =>
    inContext('check: ', () => {
      throw new RequestSpecError('a REQUEST is required');
    }),
  );
  t.ok(err instanceof UsageError);
  t.match(err, { code: 'ERR_POLICY_CHECK_REQUEST', message: 'check: a REQUEST is required' });
  const bug = new RangeError('boom');
  t.throws(() =>
    inContext('check: ', () => {
      throw bug;
    }),
    bug,
  );
  t.end();
});
