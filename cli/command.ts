// What every command shares: where it writes, the exit codes, and the one mapping from an error to
// an exit code. A command reports an error its own way (its prefix, its usage text) but takes the
// exit code from exitCodeFor.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { PlcguardError, UsageError } from '../modbus/errors.js';

export interface CommandIo {
  /** One or more lines; a trailing newline is added by the caller's writer when missing. */
  stdout: (s: string) => void;
  stderr: (s: string) => void;
}

export const ExitCode = {
  OK: 0,
  /** Something expected went wrong: an invalid policy, a store failure, a probe that got no usable answer. */
  FAILURE: 1,
  /** What was typed can't be used (UsageError). */
  USAGE: 2,
  /** The answer is no: `policy check`'s request would be denied, `probe`'s earned a Modbus exception. */
  DENIED: 3,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/**
 * The exit code of an error a command ends on: 2 for a usage error, 1 for any other error plcguard
 * throws on purpose. Anything else is a bug: it is rethrown, to end the process with its stack.
 */
export function exitCodeFor(err: unknown): ExitCode {
  if (err instanceof UsageError) return ExitCode.USAGE;
  if (err instanceof PlcguardError) return ExitCode.FAILURE;
  throw err;
}

/**
 * node:util's parseArgs, whose complaints about the command line (unknown option, missing value,
 * ERR_PARSE_ARGS_*) become UsageErrors with node's code and message. Other errors (a bad config)
 * are bugs and pass through.
 */
export function parseCommandLine<T extends ParseArgsConfig>(config: T): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs(config);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code?.startsWith('ERR_PARSE_ARGS_')) throw new UsageError(code, (err as Error).message, { cause: err });
    throw err;
  }
}

/** Runs `step`; a usage error from it is rethrown with `context` before its message (`check: ...`). */
export function inContext<T>(context: string, step: () => T): T {
  try {
    return step();
  } catch (err) {
    if (err instanceof UsageError) throw new UsageError(err.code, `${context}${err.message}`, { cause: err });
    throw err;
  }
}
