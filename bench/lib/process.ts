// Child processes for the benchmark, the soak and the tests: start one (plcguard's built binary,
// redis-server, prometheus …), wait for a line or a log event it prints, stop it and wait for its
// exit. Every wait is bounded; every child is killed when this process exits, whatever happens.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { WAIT_MS, within } from './wait.js';

/**
 * The repository root: the nearest folder above this file with a package.json. This file runs
 * from bench/lib/ (tests, through tap's loader) and from dist/bench/lib/ (npm run bench), so a
 * fixed number of `..` would be right for only one of them.
 */
export const ROOT = findRoot(import.meta.dirname);
/** The built CLI (npm run build). */
export const PLCGUARD_MAIN = path.join(ROOT, 'dist/cli/main.js');
/** How long a child gets to exit after a signal before it is killed. */
export const STOP_MS = 5000;

/** The nearest folder at or above `from` that holds a package.json. */
export function findRoot(from: string): string {
  let dir = from;
  while (!fs.existsSync(path.join(dir, 'package.json'))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`no package.json in ${from} or above`);
    dir = up;
  }
  return dir;
}

/** True when the module at `moduleUrl` (its import.meta.url) is the script node was started with. */
export function isEntryPoint(moduleUrl: string): boolean {
  return process.argv[1] !== undefined && fs.realpathSync(process.argv[1]) === fs.realpathSync(fileURLToPath(moduleUrl));
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** Resolves when `child` has exited (at once if it has already). */
export function exitOf(child: ChildProcess): Promise<Exit> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}

/** Sends `signal`, and SIGKILL if the child hasn't exited `ms` later; resolves its exit. */
export async function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM', ms = STOP_MS): Promise<Exit> {
  const exited = exitOf(child);
  if (child.exitCode !== null || child.signalCode !== null) return exited;
  child.kill(signal);
  const killer = setTimeout(() => child.kill('SIGKILL'), ms);
  try {
    return await exited;
  } finally {
    clearTimeout(killer);
  }
}

export interface ProcOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** 'pipe' (the default): kept and searchable like stdout. */
  stderr?: 'pipe' | 'inherit' | 'ignore';
  /** Lines kept per stream, oldest dropped first (a soak runs for hours); all by default. */
  keepLines?: number;
  /** Called with every line of either stream as it arrives. */
  onLine?: (line: string, stream: 'stdout' | 'stderr') => void;
}

/** One stream's kept lines and the unterminated rest. */
class Lines {
  readonly lines: string[] = [];
  rest = '';
  constructor(private readonly keep: number) {}

  /** Appends a chunk; returns the lines it completed. */
  push(chunk: string): string[] {
    const parts = (this.rest + chunk).split('\n');
    this.rest = parts.pop()!;
    for (const line of parts) this.lines.push(line);
    if (this.lines.length > this.keep) this.lines.splice(0, this.lines.length - this.keep);
    return parts;
  }

  /** The text as received (exact while nothing was dropped). */
  text(): string {
    return this.lines.map((l) => `${l}\n`).join('') + this.rest;
  }
}

/** A running child whose output is kept, split in lines, and can be waited on. */
export class Proc {
  readonly child: ChildProcess;
  /** Resolves when it has exited and its output is all read. */
  readonly exited: Promise<Exit>;
  private readonly out: Lines;
  private readonly err: Lines;
  private readonly waiters = new Set<(line: string) => void>();

  constructor(
    readonly name: string,
    command: string,
    args: readonly string[],
    opts: ProcOptions = {},
  ) {
    this.child = spawn(command, args, { env: opts.env, cwd: opts.cwd, stdio: ['ignore', 'pipe', opts.stderr ?? 'pipe'] });
    // Never outlive this process, even when it dies before its cleanup.
    const kill = (): void => void this.child.kill('SIGKILL');
    process.once('exit', kill);
    this.exited = new Promise((resolve, reject) => {
      this.child.once('error', (err) => {
        process.off('exit', kill);
        reject(err);
      });
      this.child.once('close', (code, signal) => {
        process.off('exit', kill);
        resolve({ code, signal });
      });
    });
    // A failed spawn also fails every wait on it; a caller that only stops it needn't care.
    this.exited.catch(() => {});
    const keep = opts.keepLines ?? Infinity;
    this.out = new Lines(keep);
    this.err = new Lines(keep);
    this.child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      for (const line of this.out.push(chunk)) {
        opts.onLine?.(line, 'stdout');
        for (const w of [...this.waiters]) w(line);
      }
    });
    this.child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      for (const line of this.err.push(chunk)) opts.onLine?.(line, 'stderr');
    });
  }

  /** Everything printed on stdout so far. */
  stdout(): string {
    return this.out.text();
  }

  /** Everything printed on stderr so far (when piped). */
  stderr(): string {
    return this.err.text();
  }

  /** The last `n` lines of each stream: for error messages. */
  tail(n = 20): string {
    return [...this.out.lines.slice(-n), ...this.err.lines.slice(-n)].join('\n');
  }

  /**
   * Resolves the first stdout line (already printed and kept, or to come) that `match` accepts;
   * rejects if the process exits first, or after `ms`. `line` says what is awaited, for errors.
   */
  waitForLine(match: RegExp | ((line: string) => boolean), ms = WAIT_MS, line = `a line like ${String(match)}`): Promise<string> {
    const accepts = typeof match === 'function' ? match : (l: string): boolean => match.test(l);
    const what = `${this.name} to print ${line}`;
    const seen = this.out.lines.find(accepts);
    if (seen !== undefined) return Promise.resolve(seen);
    let waiter!: (l: string) => void;
    const found = new Promise<string>((resolve) => {
      waiter = (l) => {
        if (accepts(l)) resolve(l);
      };
      this.waiters.add(waiter);
    });
    const exited = this.exited.then((exit) => {
      throw new Error(`${this.name} exited (${exit.signal ?? exit.code}) before printing ${line}:\n${this.tail()}`);
    });
    return within(Promise.race([found, exited]), what, ms).finally(() => this.waiters.delete(waiter));
  }

  /** The JSON log lines (plcguard's format) among the kept stdout lines, parsed, in order. */
  events(): Record<string, unknown>[] {
    return this.out.lines.map(parseEvent).filter((e) => e !== null);
  }

  /**
   * Resolves the `nth` JSON log line (plcguard's format; 1: the first) whose `event` is `event`,
   * parsed. Counting lets a caller wait for the next one of an event it has already seen (the
   * `policy_loaded` of a reload after the one at start): `nth` is then one more than it has seen.
   */
  async waitForEvent(event: string, ms = WAIT_MS, nth = 1): Promise<Record<string, unknown>> {
    // waitForLine offers each line to the predicate once, in order (the kept ones, then new ones).
    let seen = 0;
    const what = nth === 1 ? `its "${event}" event` : `"${event}" event number ${nth}`;
    const line = await this.waitForLine((l) => parseEvent(l)?.event === event && ++seen === nth, ms, what);
    return parseEvent(line)!;
  }

  /** Sends `signal` (SIGKILL after `ms`) and resolves its exit, once the output is all read. */
  async stop(signal: NodeJS.Signals = 'SIGTERM', ms = STOP_MS): Promise<Exit> {
    await stopChild(this.child, signal, ms);
    return this.exited;
  }
}

/** A log line of plcguard's (one JSON object a line) parsed; null for any other line. */
export function parseEvent(line: string): Record<string, unknown> | null {
  try {
    const v: unknown = JSON.parse(line);
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/** Starts the built plcguard CLI (`node [nodeArgs] dist/cli/main.js ARGS`) in the repository root. */
export function startPlcguard(name: string, args: readonly string[], opts: ProcOptions & { nodeArgs?: readonly string[] } = {}): Proc {
  return new Proc(name, process.execPath, [...(opts.nodeArgs ?? []), PLCGUARD_MAIN, ...args], { cwd: ROOT, ...opts });
}

export interface Finished extends Exit {
  stdout: string;
  stderr: string;
}

/**
 * Runs a command to its end. With `stopAfter`, a run still going after `ms` is sent `signal` (SIGINT
 * lets a harness stop its own children first).
 */
export async function runToEnd(
  command: string,
  args: readonly string[],
  opts: ProcOptions & { stopAfter?: { ms: number; signal: NodeJS.Signals } } = {},
): Promise<Finished> {
  const p = new Proc(command, command, args, opts);
  const stop = opts.stopAfter;
  const timer = stop === undefined ? undefined : setTimeout(() => p.child.kill(stop.signal), stop.ms);
  try {
    const exit = await p.exited;
    return { ...exit, stdout: p.stdout(), stderr: p.stderr() };
  } finally {
    clearTimeout(timer);
  }
}
