import type { LoadResult, PolicyParser } from './reload.js';
import type { PolicySource } from './runtime.js';
import type { Logger } from './audit.js';
import { PolicyStore, connectRedis, type StoreOptions } from '../policy/store.js';
import { RedisPolicyWatcher } from '../policy/watch-redis.js';

/** Policies from Redis: the version in force, followed live. */
export class RedisPolicySource implements PolicySource {
  readonly name: string;
  private watcher: RedisPolicyWatcher | null = null;
  private up = false;

  constructor(
    private readonly opts: StoreOptions,
    private readonly parse: PolicyParser,
    private readonly logger: Logger,
  ) {
    const u = new URL(opts.url);
    u.password = '';
    u.username = '';
    this.name = `${u.toString()} ${opts.prefix ?? ''}`.trim();
  }

  start(onChange: (r: LoadResult) => void): null {
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
