// cli/command.ts: the one mapping from errors to exit codes, the parseArgs wrapper, and the one way
// a command answers --help and reports usage errors.
import t from 'tap';
import { parseArgs } from 'node:util';
import { asksForHelp, ExitCode, exitCodeFor, parseCommandLine, runCommand, usageMessage, writeJson } from '../cli/command.js';
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

void t.test('asksForHelp: --help or -h anywhere before --', (t) => {
  t.ok(asksForHelp(['--help']));
  t.ok(asksForHelp(['a.yaml', '--source', '1.2.3.4', '-h']));
  t.notOk(asksForHelp([]));
  t.notOk(asksForHelp(['--helpful', '-hh', 'help']));
  t.notOk(asksForHelp(['--', '--help']), 'after --, an operand');
  t.end();
});

void t.test('usageMessage: one line and the hint', (t) => {
  t.equal(usageMessage('run', '--grace-ms must be ...'), "plcguard run: --grace-ms must be ...\ntry 'plcguard run --help'");
  t.equal(usageMessage('policy check', 'x'), "plcguard policy check: x\ntry 'plcguard policy check --help'");
  t.equal(usageMessage('', 'a command is required'), "plcguard: a command is required\ntry 'plcguard --help'");
  t.end();
});

void t.test('runCommand: help, usage errors, failures and bugs', async (t) => {
  const cmd = { name: 'thing', usage: 'usage: plcguard thing' };
  const run = async (args: string[], body: () => Promise<number>, failure?: Parameters<typeof runCommand>[4]) => {
    const out: string[] = [];
    const err: string[] = [];
    const code = await runCommand(cmd, args, { stdout: (s) => out.push(s), stderr: (s) => err.push(s) }, body, failure);
    return { code, out, err };
  };
  const never = () => Promise.reject(new Error('not run'));
  t.strictSame(await run(['--bogus', '--help'], never), { code: 0, out: ['usage: plcguard thing'], err: [] }, '--help wins');
  t.strictSame(await run([], () => Promise.resolve(3)), { code: 3, out: [], err: [] });
  t.strictSame(await run([], () => Promise.reject(new UsageError('ERR_X', 'bad value'))), {
    code: 2,
    out: [],
    err: ["plcguard thing: bad value\ntry 'plcguard thing --help'"],
  });
  const parseArgsError = await run([], () => Promise.resolve(parseArgs({ args: ['--nope'], options: {} })).then(() => 0));
  t.strictSame(parseArgsError.code, 2, "parseArgs' own errors (the demo commands') are usage errors too");
  t.match(parseArgsError.err, [/^plcguard thing: Unknown option '--nope'.*\ntry 'plcguard thing --help'$/s]);
  t.strictSame(await run([], () => Promise.reject(new StoreError('ERR_STORE_REDIS', 'down'))), { code: 1, out: [], err: ['plcguard thing: down'] });
  t.strictSame(await run([], () => Promise.reject(new StoreError('ERR_STORE_REDIS', 'down')), { message: (e) => `oops: ${e.message}`, code: 2 }), {
    code: 2,
    out: [],
    err: ['oops: down'],
  });
  const bug = new TypeError('x is not a function');
  await t.rejects(run([], () => Promise.reject(bug)), bug);
});

void t.test('writeJson: one document on one line', (t) => {
  const out: string[] = [];
  writeJson({ stdout: (s) => out.push(s), stderr: () => {} }, { a: 1, b: [null, 'x'] });
  t.strictSame(out, ['{"a":1,"b":[null,"x"]}']);
  t.end();
});
