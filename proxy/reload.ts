import fs from 'node:fs';
import path from 'node:path';
import type { CompiledPolicy } from '../policy/types.js';

/** What a policy source hands out: a compiled policy, or every error found. */
export interface LoadResult {
  policy?: CompiledPolicy;
  errors: readonly { format(): string }[];
  warnings: readonly { format(): string }[];
}

export type PolicyParser = (text: string, fileName: string) => LoadResult;

/** Quiet time after the last change event before the file is read (editors write in steps). */
export const WATCH_DEBOUNCE_MS = 100;

/**
 * Watches a policy file and calls `onChange` with each new parse of it. Watches the directory,
 * not the file: editors and `mv` replace the file, which ends a watch on the file itself.
 * A change that leaves the bytes as they were is not reported.
 */
export class PolicyFileWatcher {
  private watcher: fs.FSWatcher | null = null;
  private timer: NodeJS.Timeout | undefined;
  private lastText: string | null = null;

  constructor(
    private readonly file: string,
    private readonly parse: PolicyParser,
    private readonly onChange: (result: LoadResult) => void,
  ) {}

  /** Reads and parses the file now. */
  load(): LoadResult {
    let text: string;
    try {
      text = fs.readFileSync(this.file, 'utf8');
    } catch (err) {
      const message = `${this.file}: cannot read policy: ${(err as Error).message}`;
      return { errors: [{ format: () => message }], warnings: [] };
    }
    this.lastText = text;
    return this.parse(text, this.file);
  }

  start(): void {
    const dir = path.dirname(path.resolve(this.file));
    const base = path.basename(this.file);
    this.watcher = fs.watch(dir, (_event, name) => {
      if (name !== null && name !== base) return;
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.check(), WATCH_DEBOUNCE_MS);
    });
    /* c8 ignore next 3 -- fs.watch errors are platform failures (inotify limits, the directory
       unmounted): not reproducible in a test; the last good policy stays either way */
    this.watcher.on('error', () => {});
  }

  private check(): void {
    this.timer = undefined;
    let text: string;
    try {
      text = fs.readFileSync(this.file, 'utf8');
    } catch (err) {
      const message = `${this.file}: cannot read policy: ${(err as Error).message}`;
      this.onChange({ errors: [{ format: () => message }], warnings: [] });
      return;
    }
    if (text === this.lastText) return;
    this.lastText = text;
    this.onChange(this.parse(text, this.file));
  }

  stop(): void {
    this.watcher?.close();
    this.watcher = null;
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}
