// Policies from Redis: the version in force (policy/store.ts), followed through pub/sub, every
// (re)connect and a periodic resync.
import type { Redis } from 'ioredis';
import type { ParseResult } from '../parse.js';
import type { CompiledPolicy } from '../types.js';
import { PolicyStore, RedisConnection, redisServerName, type StoreError, type StoreOptions } from '../store.js';
import type { EventLog, PolicyParser, PolicySource } from './source.js';

/** Re-reads the version this often even without a message (pub/sub is best effort). */
export const RESYNC_INTERVAL_MS = 5000;

/**
 * Follows the version in force in Redis: on every announcement, on every (re)connect (pub/sub
 * loses messages while disconnected) and every few seconds, reads the current version and, when
 * it is new, parses it and hands it on. A version that doesn't parse is reported once and
 * skipped; the caller keeps its last good policy.
 *
 * It also says whether Redis is up, and why not: from the start (the first attempt's outcome),
 * at every loss, and again whenever the cause changes while it is down (a lost connection, then
 * "connection refused" while it restarts); a read that gets no reply on a live connection (a
 * Redis that hangs) counts too, and the next good read brings it back.
 */
export class RedisPolicyWatcher {
  /** `version:sha256` of the version applied, and of the last one refused. */
  private applied = '';
  private rejected = '';
  /** The last version that parsed: what the next one compiles only the changed devices against. */
  private lastPolicy: CompiledPolicy | null = null;
  private running: Promise<void> | null = null;
  private again = false;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  /** null until the first attempt has an outcome. */
  private up: boolean | null = null;
  private reason = '';
  /** An 'error' explained the failure of the connection attempt (or connection) under way. */
  private explained = false;
  readonly store: PolicyStore;

  constructor(
    private readonly connection: RedisConnection,
    private readonly subscriber: Redis,
    prefix: string | undefined,
    private readonly parse: PolicyParser,
    private readonly onChange: (result: ParseResult, version: number) => void,
    private readonly onStatus: (up: boolean, error: string) => void,
  ) {
    this.store = new PolicyStore(connection, prefix);
  }

  start(): void {
    const redis = this.connection.client;
    redis.on('ready', () => {
      this.explained = false;
      this.status(true, '');
      this.sync();
    });
    redis.on('error', (err: Error) => {
      this.explained = true;
      this.status(false, this.connection.problem(err, redis.status !== 'ready'));
    });
    // A connection that closes without an error: the server hung up.
    redis.on('close', () => {
      if (!this.explained) this.status(false, this.connection.closed(this.up !== true));
      this.explained = false;
    });
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

  /** `error`: why Redis is down, as the CLI would say it; '' when up. Logged when either changes. */
  private status(up: boolean, error: string): void {
    if ((up === this.up && error === this.reason) || this.stopped) return;
    this.up = up;
    this.reason = error;
    this.onStatus(up, error);
  }

  /** A read failed: on a live connection (no reply, a refusal) that is an outage of its own. */
  private readFailed(err: StoreError): void {
    /* c8 ignore next -- not connected (Redis went away during the read, or the timer fired while
       it is away: the connection's own events say why), or not Redis' failure (a version in force
       that isn't there: skipped, as a version that doesn't parse) */
    if (err.code !== 'ERR_STORE_REDIS' || this.connection.client.status !== 'ready') return;
    this.status(false, err.message);
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
      .catch((err: StoreError) => this.readFailed(err))
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
    this.status(true, '');
    if (v === 0) return;
    const sha = await this.store.sha256Of(v);
    const id = `${v}:${sha}`;
    if (id === this.applied || id === this.rejected) return;
    const rec = await this.store.get(v);
    const r = this.parse(rec.yaml, `redis:${this.store.prefix}version:${v}`, { version: v, previous: this.lastPolicy });
    /* c8 ignore next -- stop() during the reads above: the runtime is gone, apply nothing */
    if (this.stopped) return;
    if (r.policy) {
      this.applied = id;
      this.lastPolicy = r.policy;
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
    this.connection.client.disconnect();
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
    this.name = `${redisServerName(opts)} ${opts.prefix ?? ''}`.trim();
  }

  start(onChange: (r: ParseResult) => void): null {
    const live = { ...this.opts, reconnect: true };
    this.watcher = new RedisPolicyWatcher(
      new RedisConnection(live),
      new RedisConnection(live).client,
      this.opts.prefix,
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
