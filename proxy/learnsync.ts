// With Redis: learn mode's observations go to Redis every LEARN_SYNC_INTERVAL_MS and at shutdown,
// as what each device learned since the last write (policy/learn/store.ts merges it in). Never a
// Redis round trip per request: the hot path records into memory only. A write that fails keeps its
// batch for the next one; a crash loses at most one interval.

import type { LiveLearner } from '../policy/learn/live.js';
import { toSnapshot } from '../policy/learn/snapshot.js';
import type { LearnStore } from '../policy/learn/store.js';
import type { Logger } from './audit.js';

export const LEARN_SYNC_INTERVAL_MS = 5000;

export class LearnSync {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> = Promise.resolve();
  /** The last write failed (its line was written; the next success says so). */
  private failing = false;

  constructor(
    private readonly store: LearnStore,
    private readonly learners: ReadonlyMap<string, LiveLearner>,
    private readonly logger: Logger,
    private readonly intervalMs = LEARN_SYNC_INTERVAL_MS,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.flush(), this.intervalMs);
    this.timer.unref();
  }

  /** Writes what every learner learned since the last write; one write at a time. */
  flush(): Promise<void> {
    this.running = this.running.then(() => this.write());
    return this.running;
  }

  private async write(): Promise<void> {
    for (const l of this.learners.values()) {
      const d = l.take();
      if (d === null) continue;
      try {
        await this.store.merge(l.name, toSnapshot(d));
        l.done();
        if (this.failing) this.logger.log('learn_sync_ok', { device: l.name });
        this.failing = false;
      } catch (err) {
        l.restore();
        if (!this.failing) this.logger.log('learn_sync_failed', { device: l.name, error: (err as Error).message, kept: 'in memory, for the next write' });
        this.failing = true;
      }
    }
  }

  /** Stops the timer and writes what is left. */
  async stop(): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    await this.flush();
  }
}
