// Policies from Redis: the version in force (policy/store.ts), followed through pub/sub, every
// (re)connect and a periodic resync.
import type { Redis } from 'ioredis';
import type { ParseResult } from '../parse.js';
import { PolicyStore, connectRedis, type StoreOptions } from '../store.js';
import type { EventLog, PolicyParser, PolicySource } from './source.js';

/** Re-reads the version this often even without a message (pub/sub is best effort). */
export const RESYNC_INTERVAL_MS = 5000;

/**
 * Follows the version in force in Redis: on every announcement, on every (re)connect (pub/sub
 * loses messages while disconnected) and every few seconds, reads the current version and, when
 * it is new, parses it and hands it on. A version that doesn't parse is reported once and
 * skipped; the caller keeps its last good policy.
 */
export class RedisPolicyWatcher {
  /** `version:sha256` of the version applied, and of the last one refused. */
  private applied = '';
  private rejected = '';
  private running: Promise<void> | null = null;
  private again = false;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private up = false;

  constructor(
    private readonly store: PolicyStore,
    private readonly subscriber: Redis,
    private readonly parse: PolicyParser,
    private readonly onChange: (result: ParseResult, version: number) => void,
    private readonly onStatus: (up: boolean, error: string) => void,
  ) {}

  start(): void {
    const redis = this.store.redis;
    redis.on('ready', () => {
      this.status(true, '');
      this.sync();
    });
    for (const ev of ['close', 'end'] as const) redis.on(ev, () => this.status(false, ''));
    redis.on('error', (err: Error) => this.status(false, err.message));
    this.subscriber.on('ready', () => {
      this.subscriber.subscribe(this.store.channel).then(
        () => this.sync(),
        /* c8 ignore next 3 -- only when Redis dies between 'ready' and SUBSCRIBE's reply: not
           reproducible on demand; the next 'ready' subscribes again */
        () => {},
      );
    });
    this.subscriber.on('error', () => {
      /* reported through the command connection's status */
    });
    this.subscriber.on('message', () => this.sync());
    this.timer = setInterval(() => this.sync(), RESYNC_INTERVAL_MS);
    this.timer.unref();
  }

  /** `error`: what Redis said, '' when it just closed. */
  private status(up: boolean, error: string): void {
    if (up === this.up || this.stopped) return;
    this.up = up;
    this.onStatus(up, error);
  }

  /** Checks for a new version now; concurrent calls coalesce into one more run. */
  sync(): void {
    /* c8 ignore next -- a message or timer racing stop(): nothing to do */
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.check()
      /* c8 ignore next -- Redis going away between 'ready' and a read: the reconnect resyncs */
      .catch(() => {})
      .finally(() => {
        this.running = null;
        if (this.again) {
          this.again = false;
          this.sync();
        }
      });
  }

  /** Reads the version in force again and hands it on, even if it was seen before. */
  reload(): void {
    this.applied = '';
    this.rejected = '';
    this.sync();
  }

  /** Resolves when no check is running (tests, shutdown). */
  async idle(): Promise<void> {
    await this.running;
  }

  // A version is known by its number and its sha256: a Redis that restarted empty hands out
  // version 1 again, for what may be a different policy.
  private async check(): Promise<void> {
    const v = await this.store.currentVersion();
    if (v === 0) return;
    const sha = await this.store.sha256Of(v);
    const id = `${v}:${sha}`;
    if (id === this.applied || id === this.rejected) return;
    const rec = await this.store.get(v);
    const r = this.parse(rec.yaml, `redis:${this.store.prefix}version:${v}`, { version: v });
    /* c8 ignore next -- stop() during the reads above: the runtime is gone, apply nothing */
    if (this.stopped) return;
    if (r.policy) {
      this.applied = id;
      this.onChange(r, v);
    } else {
      this.rejected = id;
      this.onChange(r, v);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.idle();
    this.subscriber.disconnect();
    this.store.redis.disconnect();
  }
}

/** Policies from Redis: the version in force, followed live. */
export class RedisPolicySource implements PolicySource {
  readonly name: string;
  private watcher: RedisPolicyWatcher | null = null;
  private up = false;

  constructor(
    private readonly opts: StoreOptions,
    private readonly parse: PolicyParser,
    private readonly logger: EventLog,
  ) {
    const u = new URL(opts.url);
    u.password = '';
    u.username = '';
    this.name = `${u.toString()} ${opts.prefix ?? ''}`.trim();
  }

  start(onChange: (r: ParseResult) => void): null {
    const redis = connectRedis({ ...this.opts, failFast: true });
    const subscriber = redis.duplicate();
    const store = new PolicyStore(redis, this.opts.prefix);
    this.watcher = new RedisPolicyWatcher(
      store,
      subscriber,
      this.parse,
      (r) => onChange(r),
      (up, error) => {
        this.up = up;
        this.logger.log(up ? 'redis_up' : 'redis_down', { redis: this.name, error });
      },
    );
    this.watcher.start();
    return null;
  }

  reload(): void {
    this.watcher?.reload();
  }

  async stop(): Promise<void> {
    await this.watcher?.stop();
  }

  checks(): Record<string, boolean> {
    return { redis_up: this.up };
  }

  redisUp(): boolean {
    return this.up;
  }
}
