import fs from 'node:fs';
import { Redis, type RedisOptions } from 'ioredis';
import { PlcguardError, UsageError } from '../modbus/errors.js';

// Redis layout (every key under a prefix, default "plcguard:", so plants can share one Redis):
// | key                      | type   | holds                                                       |
// |--------------------------|--------|-------------------------------------------------------------|
// | {p}seq                   | string | last version number handed out (INCR)                       |
// | {p}current               | string | version in force                                            |
// | {p}version:{N}           | hash   | yaml, sha256, time (ISO), author, message, rollback_of      |
// | {p}history               | list   | one JSON entry per version: version, time, author, message, |
// |                          |        | sha256, rollback_of                                         |
// | {p}devices               | set    | device names of the current version                         |
// | {p}device:{name}         | string | that device's allow-list (JSON, as written in the YAML)     |
// | {p}changes               | pubsub | the new version number, published on every push             |
// A push is one Lua script: versions are handed out and written atomically, so concurrent pushes
// never interleave and each gets its own version.

export const DEFAULT_PREFIX = 'plcguard:';
const DEFAULT_REDIS_PORT = 6379;

export interface StoreOptions {
  /** redis://[user:password@]host:port[/db] or rediss:// for TLS. */
  url: string;
  prefix?: string;
  /** CA bundle for rediss:// (PEM). */
  caFile?: string;
  /** Redis Sentinel: the sentinels' host:port and the master's name (url then gives auth/db/TLS only). */
  sentinels?: { host: string; port: number }[];
  masterName?: string;
  /** Fail commands at once while disconnected instead of queueing them (live proxies want this). */
  failFast?: boolean;
}

export interface VersionRecord {
  version: number;
  yaml: string;
  sha256: string;
  time: string;
  author: string;
  message: string;
  /** The version this one re-pushed, when it is a rollback. */
  rollbackOf: number | null;
}

export type HistoryEntry = Omit<VersionRecord, 'yaml'>;

export type StoreErrorCode = 'ERR_STORE_NO_VERSION' | 'ERR_STORE_REDIS' | 'ERR_STORE_CORRUPT';

/** The store can't do what was asked: no such version, Redis unreachable or refusing, bad data. */
export class StoreError extends PlcguardError {
  override readonly name = 'StoreError';
  declare readonly code: StoreErrorCode;
  constructor(code: StoreErrorCode, message: string, options?: ErrorOptions) {
    super(code, message, options);
  }
}

/** A Redis option as typed (--redis URL, --redis-ca file) that can't be used. */
export class StoreOptionError extends UsageError {
  override readonly name = 'StoreOptionError';
  constructor(message: string, options?: ErrorOptions) {
    super('ERR_STORE_URL', message, options);
  }
}

/**
 * ioredis rejects with several classes (ReplyError, MaxRetriesPerRequestError, a plain Error
 * "Connection is closed."): every rejection of a Redis command is a StoreError here.
 */
function redisFailed(err: unknown): never {
  throw new StoreError('ERR_STORE_REDIS', (err as Error).message, { cause: err });
}

/** Backoff for reconnects: 50 ms doubling to 2 s; ioredis owns the reconnect loop. */
const RETRY_MIN_MS = 50;
const RETRY_MAX_MS = 2000;

/** Parses a redis:// or rediss:// URL; throws StoreOptionError naming the value. */
export function parseRedisUrl(text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new StoreOptionError(`--redis: "${text}" is not a URL like redis://host:6379`);
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
    throw new StoreOptionError(`--redis: "${text}" must start with redis:// or rediss://`);
  }
  return url;
}

/** Builds an ioredis client from our options: one place for URL, TLS, Sentinel and backoff. */
export function connectRedis(opts: StoreOptions): Redis {
  const url = parseRedisUrl(opts.url);
  let ca: Buffer | undefined;
  if (opts.caFile !== undefined) {
    try {
      ca = fs.readFileSync(opts.caFile);
    } catch (err) {
      throw new StoreOptionError(`--redis-ca: cannot read "${opts.caFile}": ${(err as Error).message}`, { cause: err });
    }
  }
  const tls = url.protocol === 'rediss:' ? { ca } : undefined;
  const base: RedisOptions = {
    username: url.username ? decodeURIComponent(url.username) : undefined,
    password: url.password ? decodeURIComponent(url.password) : undefined,
    db: url.pathname.length > 1 ? Number(url.pathname.slice(1)) : 0,
    retryStrategy: (times) => Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** Math.min(times, 10)),
    maxRetriesPerRequest: opts.failFast ? 0 : 3,
    enableOfflineQueue: !opts.failFast,
    lazyConnect: false,
  };
  if (opts.sentinels && opts.sentinels.length > 0) {
    return new Redis({
      ...base,
      sentinels: opts.sentinels,
      name: opts.masterName ?? 'mymaster',
      /* c8 ignore start -- TLS through Sentinel needs TLS on sentinels and master alike: ioredis'
         own option, not set up in tests */
      ...(tls ? { tls, enableTLSForSentinelMode: true } : {}),
      /* c8 ignore stop */
    });
  }
  return new Redis({ ...base, host: url.hostname, port: Number(url.port || DEFAULT_REDIS_PORT), ...(tls ? { tls } : {}) });
}

const PUSH_SCRIPT = `
local p = ARGV[1]
local v = redis.call('INCR', p .. 'seq')
redis.call('HSET', p .. 'version:' .. v, 'yaml', ARGV[2], 'sha256', ARGV[3], 'time', ARGV[4],
  'author', ARGV[5], 'message', ARGV[6], 'rollback_of', ARGV[7])
redis.call('RPUSH', p .. 'history', cjson.encode({version = v, time = ARGV[4], author = ARGV[5],
  message = ARGV[6], sha256 = ARGV[3], rollback_of = tonumber(ARGV[7])}))
for _, name in ipairs(redis.call('SMEMBERS', p .. 'devices')) do
  redis.call('DEL', p .. 'device:' .. name)
end
redis.call('DEL', p .. 'devices')
local n = tonumber(ARGV[8])
for i = 1, n do
  redis.call('SET', p .. 'device:' .. ARGV[7 + 2 * i], ARGV[8 + 2 * i])
  redis.call('SADD', p .. 'devices', ARGV[7 + 2 * i])
end
redis.call('SET', p .. 'current', v)
redis.call('PUBLISH', p .. 'changes', v)
return v
`;

/**
 * Versioned policy storage in Redis. Validation is the caller's: the store keeps what it is given.
 * Every method rejects with a StoreError.
 */
export class PolicyStore {
  constructor(
    readonly redis: Redis,
    readonly prefix = DEFAULT_PREFIX,
  ) {}

  get channel(): string {
    return `${this.prefix}changes`;
  }

  /**
   * Writes a new version atomically and announces it. `devices` are the per-device documents
   * (name → JSON) of this YAML.
   */
  async push(
    yaml: string,
    sha256: string,
    devices: ReadonlyMap<string, string>,
    meta: { author: string; message: string; rollbackOf?: number },
  ): Promise<number> {
    const args: string[] = [
      this.prefix,
      yaml,
      sha256,
      new Date().toISOString(),
      meta.author,
      meta.message,
      String(meta.rollbackOf ?? ''),
      String(devices.size),
    ];
    for (const [name, doc] of devices) args.push(name, doc);
    const v = await this.redis.eval(PUSH_SCRIPT, 0, ...args).catch(redisFailed);
    return Number(v);
  }

  /** The version in force, or 0 when nothing was ever pushed. */
  async currentVersion(): Promise<number> {
    const v = await this.redis.get(`${this.prefix}current`).catch(redisFailed);
    return v === null ? 0 : Number(v);
  }

  async get(version: number): Promise<VersionRecord> {
    const h = await this.redis.hgetall(`${this.prefix}version:${version}`).catch(redisFailed);
    if (h.yaml === undefined) throw new StoreError('ERR_STORE_NO_VERSION', `version ${version} is not in the store`);
    return {
      version,
      yaml: h.yaml,
      sha256: h.sha256 ?? '',
      time: h.time ?? '',
      author: h.author ?? '',
      message: h.message ?? '',
      rollbackOf: h.rollback_of ? Number(h.rollback_of) : null,
    };
  }

  /** The sha256 recorded with a version (null when there is no such version). */
  sha256Of(version: number): Promise<string | null> {
    return this.redis.hget(`${this.prefix}version:${version}`, 'sha256').catch(redisFailed);
  }

  /** The version in force, or null when nothing was ever pushed. */
  async current(): Promise<VersionRecord | null> {
    const v = await this.currentVersion();
    return v === 0 ? null : this.get(v);
  }

  /** History, oldest first (the last `limit` entries when given). */
  async history(limit?: number): Promise<HistoryEntry[]> {
    const raw = await this.redis.lrange(`${this.prefix}history`, limit ? -limit : 0, -1).catch(redisFailed);
    return raw.map((line) => {
      const e = parseHistoryEntry(line) as { version: number; time: string; author: string; message: string; sha256: string; rollback_of?: number };
      return { version: e.version, time: e.time, author: e.author, message: e.message, sha256: e.sha256, rollbackOf: e.rollback_of ?? null };
    });
  }
}

/** One {p}history entry; written by PUSH_SCRIPT, so anything else was written by hand. */
function parseHistoryEntry(line: string): unknown {
  try {
    return JSON.parse(line);
  } catch (err) {
    throw new StoreError('ERR_STORE_CORRUPT', `history entry ${JSON.stringify(line)} is not JSON`, { cause: err });
  }
}
