import fs from 'node:fs';
import path from 'node:path';
import { PolicyReadError } from '../errors.js';
import type { ParseResult } from '../parse.js';
import type { CompiledPolicy } from '../types.js';
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
/** Symlinks followed at most on the way to the file, as Linux does (MAXSYMLINKS); more is a loop. */
const MAX_SYMLINK_HOPS = 40;

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

function realOr(p: string): string {
  try {
    return fs.realpathSync(p);
  } catch {
    return p;
  }
}

/**
 * Where `file` leads: its final target (itself while it doesn't resolve) and, per folder (real path),
 * the names in it that matter: the file's own name, the name of each symlink on the way, the
 * target's name. A Kubernetes ConfigMap volume is policy.yaml → ..data/policy.yaml with ..data →
 * ..2026_05_01_…, updated by renaming a new ..data over the old one: the only event is for
 * `..data`, in the link's folder, and the file's content changes in a folder nobody named.
 */
function resolveLinks(file: string): { target: string; names: Map<string, Set<string>> } {
  const names = new Map<string, Set<string>>();
  const note = (p: string): void => {
    const dir = realOr(path.dirname(p));
    names.set(dir, (names.get(dir) ?? new Set()).add(path.basename(p)));
  };
  let p = path.resolve(file);
  note(p);
  for (let hops = 0; hops < MAX_SYMLINK_HOPS; hops++) {
    let link: string;
    try {
      link = fs.readlinkSync(p);
    } catch {
      break; // not a link (EINVAL), or not there: the end of the chain
    }
    p = path.resolve(path.dirname(p), link);
    note(p);
  }
  return { target: realOr(file), names };
}

interface Watched {
  watcher: fs.FSWatcher;
  names: Set<string>;
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
 * settled (see SETTLE_MS); `reload()` reads it now. Watches folders, not the file: editors and
 * `mv` replace the file, which ends a watch on the file itself. Follows symlinks (see
 * resolveLinks), re-resolving at every event in a watched folder, so a link re-pointed or a
 * folder swapped under it is seen and the watches move with it. A change that leaves the bytes
 * as they were is logged (`policy_unchanged`) and not reported.
 */
export class PolicyFileWatcher {
  /** Per watched folder (real path). */
  private readonly watched = new Map<string, Watched>();
  private target = '';
  private lastText: string | null = null;
  /** The last policy that parsed: what the next parse compiles only the changed devices against. */
  private lastPolicy: CompiledPolicy | null = null;
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
    this.follow();
  }

  /** Reads the file now and reports it, changed or not, without waiting for it to settle. */
  reload(): void {
    this.follow();
    this.cancel();
    this.onChange(this.result(readSnapshot(this.file), true));
  }

  /**
   * Re-resolves the path and moves the watches to the folders it now goes through. Returns
   * whether the final target changed.
   */
  private follow(): boolean {
    const { target, names } = resolveLinks(this.file);
    for (const [dir, w] of this.watched) {
      if (names.has(dir)) continue;
      w.watcher.close();
      this.watched.delete(dir);
    }
    for (const [dir, set] of names) {
      const w = this.watched.get(dir);
      if (w) w.names = set;
      else this.watch(dir, set);
    }
    const moved = target !== this.target;
    this.target = target;
    return moved;
  }

  private watch(dir: string, names: Set<string>): void {
    let watcher: fs.FSWatcher;
    try {
      watcher = fs.watch(dir, (_event, name) => {
        // The names as they were when the event happened, before follow() updates them.
        const named = name === null || this.watched.get(dir)?.names.has(name) === true;
        if (this.follow() || named) this.changed();
      });
    } catch {
      // The folder isn't there (yet): the file can't be read either, which is reported; the
      // next event in a folder that is watched resolves the path again.
      return;
    }
    /* c8 ignore next 3 -- fs.watch errors are platform failures (inotify limits, the directory
       unmounted): not reproducible in a test; the last good policy stays either way */
    watcher.on('error', () => {});
    this.watched.set(dir, { watcher, names });
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
    const r = this.parse(s.text, this.file, { previous: this.lastPolicy });
    this.lastPolicy = r.policy ?? this.lastPolicy;
    return r;
  }

  private cancel(): void {
    if (!this.pending) return;
    clearTimeout(this.pending.timer);
    clearInterval(this.pending.bound);
    this.pending = null;
  }

  stop(): void {
    for (const w of this.watched.values()) w.watcher.close();
    this.watched.clear();
    this.cancel();
  }
}

/** A policy file, watched: valid edits apply live once settled, invalid ones are reported and skipped. */
export class FilePolicySource implements PolicySource {
  private watcher: PolicyFileWatcher | null = null;
  get baseDir(): string {
    return path.dirname(path.resolve(this.name));
  }
  constructor(
    readonly name: string,
    private readonly parse: PolicyParser,
    private readonly logger: EventLog,
    private readonly options: FileSourceOptions = {},
  ) {}
  start(onChange: (r: ParseResult) => void): ParseResult {
    this.watcher = new PolicyFileWatcher(this.name, this.parse, onChange, this.logger, this.options);
    // Watch first, then read: a change between the two is seen, not lost.
    this.watcher.start();
    return this.watcher.load();
  }
  reload(): void {
    this.watcher?.reload();
  }
  stop(): Promise<void> {
    this.watcher?.stop();
    return Promise.resolve();
  }
  checks(): Record<string, boolean> {
    return {};
  }
}
