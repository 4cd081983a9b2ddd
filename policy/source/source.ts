// Where a running plcguard gets its policy: a watched file or the version in force in Redis, behind
// one interface that hands out one result type (the same ParseResult `policy validate` prints).

import type { ParseOptions, ParseResult } from '../parse.js';

/** Turns policy text into a result; `parsePolicy` in production, anything with its shape in tests. */
export type PolicyParser = (text: string, fileName: string, options?: ParseOptions) => ParseResult;

/** The one thing a source writes to: the proxy's JSON logger fits. */
export interface EventLog {
  log(event: string, fields?: Record<string, unknown>): void;
}

/** Where policies come from: a watched file, or Redis. */
export interface PolicySource {
  /** For logs: the file, or the Redis URL (without credentials) and key prefix. */
  readonly name: string;
  /** A file's folder: what relative paths in the policy (certificates) resolve against. */
  readonly baseDir?: string;
  /**
   * Starts following the source. A file returns its first parse at once; Redis returns null and
   * delivers through `onChange` when it can.
   */
  start(onChange: (r: ParseResult) => void): ParseResult | null;
  /**
   * Reads the policy again now (SIGHUP) and delivers it through `onChange` even when it is what
   * is in force: a file as it is on disk, without waiting for it to settle; Redis, the version in
   * force.
   */
  reload(): void;
  stop(): Promise<void>;
  /** Readiness checks of the source itself (e.g. redis_up). */
  checks(): Record<string, boolean>;
  /** Whether Redis is reachable, for sources that use it. */
  redisUp?(): boolean;
}
