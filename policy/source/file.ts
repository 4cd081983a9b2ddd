import fs from 'node:fs';
import path from 'node:path';
import { PolicyReadError } from '../errors.js';
import type { ParseResult } from '../parse.js';
import type { EventLog, PolicyParser, PolicySource } from './source.js';

/** Quiet time after the last change event before the file is first read (editors write in steps). */
export const WATCH_DEBOUNCE_MS = 100;
/**
 * A change applies only once two reads this far apart found the same bytes from the same file
 * (inode, size, mtime): a file rewritten in place in steps less than this apart is never applied
 * half-written. Writing a new file and renaming it over the old one needs no wait at all; this
 * is for the writers that don't.
 */
export const SETTLE_MS = 1000;
/** A change still not settled this long after it was first seen is reported, and still held. */
export const SETTLE_BOUND_MS = 10_000;
export interface FileSourceOptions {
  /** Default SETTLE_MS. */
  settleMs?: number;
  /** Default SETTLE_BOUND_MS. */
  settleBoundMs?: number;
}

/**
 * Why a change is not applied yet, the `reason` of a `policy_change_held` line: it was just seen
 * (`settling`); the file changed again while it was being waited on, i.e. it is still being
 * written (`changing`); it has not settled within the bound (`not_settled`, repeated every bound).
 */
export type HeldReason = 'settling' | 'changing' | 'not_settled';

/** One read of the file: the bytes and what they were read from, or why they couldn't be read. */
type Snapshot = { stamp: string } & ({ text: string } | { error: PolicyReadError });

function readSnapshot(file: string): Snapshot {
  let fd: number | undefined;
  try {
    fd = fs.openSync(file, 'r');
    // The stat of the open file, not of the path: a rename between the two can't mix them up.
    const st = fs.fstatSync(fd);
    const text = fs.readFileSync(fd, 'utf8');
    fs.closeSync(fd);
    return { stamp: `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}`, text };
  } catch (err) {
    if (fd !== undefined) fs.closeSync(fd); // opened, then unreadable: a folder (EISDIR)
    const error = new PolicyReadError(file, err);
    return { stamp: error.message, error };
  }
}

function sameSnapshot(a: Snapshot, b: Snapshot): boolean {
  return a.stamp === b.stamp && ('text' in a ? 'text' in b && a.text === b.text : !('text' in b));
}

/** A change seen and not applied yet. */
interface Pending {
  /** The last read, to compare with the next; null before the first. */
  snapshot: Snapshot | null;
  timer: NodeJS.Timeout | undefined;
  /** Reports the change as not settled, every bound, until it is. */
  bound: NodeJS.Timeout;
  toldChanging: boolean;
}

/**
 * Watches a policy file and calls `onChange` with each new parse of it, once the file has
 * settled (see SETTLE_MS). Watches the directory, not the file: editors and `mv` replace the
 * file, which ends a watch on the file itself. A change that leaves the bytes as they were is
 * logged (`policy_unchanged`) and not reported.
 */
export class PolicyFileWatcher {
  private watcher: fs.FSWatcher | null = null;
  private lastText: string | null = null;
  private pending: Pending | null = null;
  private readonly settleMs: number;
  private readonly settleBoundMs: number;

  constructor(
    private readonly file: string,
    private readonly parse: PolicyParser,
    private readonly onChange: (result: ParseResult) => void,
    private readonly logger: EventLog,
    options: FileSourceOptions = {},
  ) {
    this.settleMs = options.settleMs ?? SETTLE_MS;
    this.settleBoundMs = options.settleBoundMs ?? SETTLE_BOUND_MS;
  }

  /** Reads and parses the file now. */
  load(): ParseResult {
    return this.result(readSnapshot(this.file), true);
  }

  start(): void {
    const dir = path.dirname(path.resolve(this.file));
    const base = path.basename(this.file);
    this.watcher = fs.watch(dir, (_event, name) => {
      if (name === null || name === base) this.changed();
    });
    /* c8 ignore next 3 -- fs.watch errors are platform failures (inotify limits, the directory
       unmounted): not reproducible in a test; the last good policy stays either way */
    this.watcher.on('error', () => {});
  }

  /**
   * The file changed: read it once events have been quiet for a moment, then again SETTLE_MS
   * later, until two reads in a row agree. A write between two reads shows as a difference
   * (bytes, size or mtime), whether its event was seen or not.
   */
  private changed(): void {
    let p = this.pending;
    if (!p) {
      const since = Date.now();
      p = this.pending = {
        snapshot: null,
        timer: undefined,
        bound: setInterval(() => this.held('not_settled', { waited_ms: Date.now() - since }), this.settleBoundMs),
        toldChanging: false,
      };
      this.held('settling');
    }
    clearTimeout(p.timer);
    p.timer = setTimeout(() => this.check(p), WATCH_DEBOUNCE_MS);
  }

  private check(p: Pending): void {
    const s = readSnapshot(this.file);
    if (p.snapshot && sameSnapshot(p.snapshot, s)) {
      this.cancel();
      const r = this.result(s, false);
      if (r) this.onChange(r);
      else this.logger.log('policy_unchanged', { source: this.file });
      return;
    }
    // Once per change: a file being written would say so at every step.
    if (p.snapshot && !p.toldChanging) {
      p.toldChanging = true;
      this.held('changing');
    }
    p.snapshot = s;
    p.timer = setTimeout(() => this.check(p), this.settleMs);
  }

  private held(reason: HeldReason, fields: Record<string, unknown> = {}): void {
    this.logger.log('policy_change_held', { source: this.file, reason, settle_ms: this.settleMs, ...fields });
  }

  /** The parse of a read; null when the bytes are those read last and `force` is false. */
  private result(s: Snapshot, force: true): ParseResult;
  private result(s: Snapshot, force: boolean): ParseResult | null;
  private result(s: Snapshot, force: boolean): ParseResult | null {
    if ('error' in s) return { errors: [s.error], warnings: [] };
    if (!force && s.text === this.lastText) return null;
    this.lastText = s.text;
    return this.parse(s.text, this.file);
  }

  private cancel(): void {
    if (!this.pending) return;
    clearTimeout(this.pending.timer);
    clearInterval(this.pending.bound);
    this.pending = null;
  }

  stop(): void {
    this.watcher?.close();
    this.watcher = null;
    this.cancel();
  }
}

/** A policy file, watched: valid edits apply live once settled, invalid ones are reported and skipped. */
export class FilePolicySource implements PolicySource {
  private watcher: PolicyFileWatcher | null = null;
  constructor(
    readonly name: string,
    private readonly parse: PolicyParser,
    private readonly logger: EventLog,
    private readonly options: FileSourceOptions = {},
  ) {}
  start(onChange: (r: ParseResult) => void): ParseResult {
    this.watcher = new PolicyFileWatcher(this.name, this.parse, onChange, this.logger, this.options);
    const first = this.watcher.load();
    if (first.policy) this.watcher.start();
    return first;
  }
  stop(): Promise<void> {
    this.watcher?.stop();
    return Promise.resolve();
  }
  checks(): Record<string, boolean> {
    return {};
  }
}
