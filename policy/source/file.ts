import fs from 'node:fs';
import path from 'node:path';
import { PolicyReadError } from '../errors.js';
import type { ParseResult } from '../parse.js';
import type { PolicyParser, PolicySource } from './source.js';

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
    private readonly onChange: (result: ParseResult) => void,
  ) {}

  /** Reads and parses the file now. */
  load(): ParseResult {
    let text: string;
    try {
      text = fs.readFileSync(this.file, 'utf8');
    } catch (err) {
      return { errors: [new PolicyReadError(this.file, err)], warnings: [] };
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
      this.onChange({ errors: [new PolicyReadError(this.file, err)], warnings: [] });
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

/** A policy file, watched: valid edits apply live, invalid ones are reported and skipped. */
export class FilePolicySource implements PolicySource {
  private watcher: PolicyFileWatcher | null = null;
  constructor(
    readonly name: string,
    private readonly parse: PolicyParser,
  ) {}
  start(onChange: (r: ParseResult) => void): ParseResult {
    this.watcher = new PolicyFileWatcher(this.name, this.parse, onChange);
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
