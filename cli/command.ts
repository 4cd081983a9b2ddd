// What every command shares: where it writes, the exit codes, the one mapping from an error to an
// exit code, and the one way a command answers --help and reports a usage error (runCommand).
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

/** node:util parseArgs' complaints about what was typed (unknown option, missing value...). */
function isParseArgsError(err: unknown): err is Error {
  return err instanceof Error && ((err as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS_') ?? false);
}

/**
 * The exit code of an error a command ends on: 2 for a usage error (parseArgs' complaints too, for
 * the demo commands, which parse their own arguments), 1 for any other error plcguard throws on
 * purpose. Anything else is a bug: it is rethrown, to end the process with its stack.
 */
export function exitCodeFor(err: unknown): ExitCode {
  if (err instanceof UsageError || isParseArgsError(err)) return ExitCode.USAGE;
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
    if (isParseArgsError(err)) throw new UsageError((err as NodeJS.ErrnoException).code!, err.message, { cause: err });
    throw err;
  }
}

/** A command as --help shows it and usage errors name it. */
export interface Command {
  /** The words after `plcguard`: `run`, `policy check`; '' for plcguard itself. */
  readonly name: string;
  /** What --help prints: the command line, the options and the exit status. */
  readonly usage: string;
}

/** Whether ARGS ask for help: --help or -h before any `--` (after it every word is an operand). */
export function asksForHelp(args: readonly string[]): boolean {
  for (const arg of args) {
    if (arg === '--') return false;
    if (arg === '--help' || arg === '-h') return true;
  }
  return false;
}

/**
 * A usage error as every command reports it: the problem in one line, then where the usage is
 * (`plcguard run: --grace-ms must be ...` then `try 'plcguard run --help'`).
 */
export function usageMessage(name: string, message: string): string {
  const command = name === '' ? 'plcguard' : `plcguard ${name}`;
  return `${command}: ${message}\ntry '${command} --help'`;
}

/** How a command reports a failure that is not a usage error. */
export interface FailureReport {
  /** Its message (default: `plcguard NAME: message`). */
  message?: (err: Error) => string;
  /** Its exit code (default 1). */
  code?: number;
}

/**
 * Runs a command the way every command runs: --help among ARGS prints its usage on stdout (exit 0)
 * whatever else was typed; a usage error becomes usageMessage on stderr (exit 2); another plcguard
 * error is reported as `failure` says (exit 1 by default). A bug is rethrown.
 */
export async function runCommand(
  command: Command,
  args: readonly string[],
  io: CommandIo,
  body: () => Promise<number>,
  failure: FailureReport = {},
): Promise<number> {
  if (asksForHelp(args)) {
    io.stdout(command.usage);
    return ExitCode.OK;
  }
  try {
    return await body();
  } catch (err) {
    const { message } = err as Error;
    if (exitCodeFor(err) === ExitCode.USAGE) {
      io.stderr(usageMessage(command.name, message));
      return ExitCode.USAGE;
    }
    io.stderr(failure.message?.(err as Error) ?? `plcguard ${command.name}: ${message}`);
    return failure.code ?? ExitCode.FAILURE;
  }
}

/** `--json`: what a command prints on stdout becomes one JSON document, on one line. */
export const JSON_OPTION = { json: { type: 'boolean', default: false } } as const;

export function writeJson(io: CommandIo, doc: object): void {
  io.stdout(JSON.stringify(doc));
}
