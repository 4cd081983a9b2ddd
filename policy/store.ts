import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { AbstractConnector, Redis, type RedisOptions } from 'ioredis';
import { PlcguardError, UsageError } from '../modbus/errors.js';
import { formatEndpoint, type Endpoint } from './net.js';

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
/** The master's name when Sentinel is used without --redis-master (Sentinel's own example's). */
const DEFAULT_MASTER = 'mymaster';
/** How long a connection (TCP, then TLS) may take, and then each reply, unless told otherwise. */
export const DEFAULT_REDIS_TIMEOUT_MS = 5000;

export interface StoreOptions {
  /** redis://[user[:password]@]host:port[/db] or rediss:// for TLS. */
  url: string;
  /** The password, from a file or the environment: it wins over the URL's (which `ps` shows). */
  password?: string;
  prefix?: string;
  /** CA bundle for rediss:// (PEM). */
  caFile?: string;
  /** Redis Sentinel: the sentinels' host:port and the master's name (url then gives auth/db/TLS only). */
  sentinels?: Endpoint[];
  masterName?: string;
  /** The longest wait for a connection, then for each reply (default DEFAULT_REDIS_TIMEOUT_MS). */
  timeoutMs?: number;
  /**
   * A running proxy's connection: reconnects with backoff for ever, and fails commands at once
   * while disconnected. Without it (the CLI) one attempt, whose failure says why.
   */
  reconnect?: boolean;
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

export type StoreErrorCode = 'ERR_STORE_NO_VERSION' | 'ERR_STORE_UNREACHABLE' | 'ERR_STORE_REDIS' | 'ERR_STORE_CORRUPT';

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

/** Backoff for reconnects: 50 ms doubling to 2 s; ioredis owns the reconnect loop. */
const RETRY_MIN_MS = 50;
const RETRY_MAX_MS = 2000;
const backoff = (times: number): number => Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** Math.min(times, 10));

/** Parses a redis:// or rediss:// URL; throws StoreOptionError naming the value (without credentials). */
export function parseRedisUrl(text: string): URL {
  // Text, not a URL object: it has to work on what doesn't parse as well.
  const shown = text.replace(/\/\/[^/@]*@/, '//');
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new StoreOptionError(`--redis: "${shown}" is not a URL like redis://host:6379`);
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
    throw new StoreOptionError(`--redis: "${shown}" must start with redis:// or rediss://`);
  }
  return url;
}

/**
 * The server as messages and logs name it: the URL without user or password (and with the port
 * even when defaulted), or in Sentinel mode the master and its sentinels.
 */
export function redisServerName(opts: StoreOptions): string {
  if (opts.sentinels && opts.sentinels.length > 0) {
    return `master "${opts.masterName ?? DEFAULT_MASTER}" via sentinels ${opts.sentinels.map((s) => formatEndpoint(s.host, s.port)).join(',')}`;
  }
  const u = parseRedisUrl(opts.url);
  u.username = '';
  u.password = '';
  u.port ||= String(DEFAULT_REDIS_PORT);
  return u.href;
}

/** "5 s", "300 ms": as the timeout was most likely given. */
function duration(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`;
}

/**
 * The connect deadline ran out. `handshake`: TCP had connected and the TLS handshake got no
 * answer, which is what a plain Redis port does: it takes the ClientHello for the start of an
 * inline command and waits for its line end, which never comes.
 */
class ConnectTimeoutError extends Error {
  constructor(readonly handshake: boolean) {
    super(handshake ? 'TLS handshake timed out' : 'connect timed out');
  }
}

/** How long a closing connection may take to say goodbye before it is cut (ioredis' default). */
const DISCONNECT_MS = 2000;

/**
 * ioredis' connector for one server, with the connect deadline kept here instead of by ioredis'
 * connectTimeout: only here is it known, when the deadline runs out, whether TCP had connected.
 * (Sentinel mode keeps ioredis' connector: the master's address comes from the sentinels.)
 */
function serverConnector(target: net.TcpNetConnectOpts & tls.ConnectionOptions, secure: boolean, timeoutMs: number): RedisOptions['Connector'] {
  return class extends AbstractConnector {
    constructor() {
      super(DISCONNECT_MS);
    }

    connect(): Promise<net.Socket> {
      this.connecting = true;
      const stream = secure ? tls.connect(target) : net.connect(target);
      const deadline = setTimeout(() => stream.destroy(new ConnectTimeoutError(!stream.connecting)), timeoutMs);
      stream.once(secure ? 'secureConnect' : 'connect', () => clearTimeout(deadline));
      stream.once('close', () => clearTimeout(deadline));
      // Where ioredis looks for the cause when the stream has already failed by the time it has it.
      stream.once('error', (err: Error) => {
        this.firstError = err;
      });
      this.stream = stream;
      return Promise.resolve(stream);
    }
  };
}

/** Node's socket error codes in words. */
const SOCKET_ERRORS: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  EPIPE: 'connection reset',
  ENOTFOUND: 'unknown host',
  EAI_AGAIN: 'unknown host (DNS lookup failed)',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
};

/** What ioredis rejects with when the connection closed under a command or connect(). */
const CONNECTION_CLOSED = 'Connection is closed.';

/**
 * One ioredis client built from our options (URL, password, TLS, Sentinel, timeouts, backoff: all
 * here), and the words for whatever goes wrong with it, naming the server without credentials:
 * `cannot reach redis://10.0.0.5:6379: connection refused`.
 */
export class RedisConnection {
  readonly client: Redis;
  /** The server as messages name it: the URL without credentials, or the master and its sentinels. */
  readonly server: string;
  private readonly secure: boolean;
  private readonly timeoutMs: number;
  private readonly masterName: string | null;

  constructor(opts: StoreOptions) {
    const url = parseRedisUrl(opts.url);
    let ca: Buffer | undefined;
    if (opts.caFile !== undefined) {
      try {
        ca = fs.readFileSync(opts.caFile);
      } catch (err) {
        throw new StoreOptionError(`--redis-ca: cannot read "${opts.caFile}": ${(err as Error).message}`, { cause: err });
      }
    }
    this.server = redisServerName(opts);
    this.secure = url.protocol === 'rediss:';
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_REDIS_TIMEOUT_MS;
    const tlsOptions = this.secure ? { ca } : undefined;
    const retry = opts.reconnect ? backoff : () => null;
    const base: RedisOptions = {
      username: url.username ? decodeURIComponent(url.username) : undefined,
      password: opts.password ?? (url.password ? decodeURIComponent(url.password) : undefined),
      db: url.pathname.length > 1 ? Number(url.pathname.slice(1)) : 0,
      retryStrategy: retry,
      sentinelRetryStrategy: retry,
      maxRetriesPerRequest: 0,
      enableOfflineQueue: false,
      commandTimeout: this.timeoutMs,
      sentinelCommandTimeout: this.timeoutMs,
      // One request before the first reply (no CLIENT SETINFO): a server that isn't Redis then
      // answers it, and its answer is what gets reported, not the write that raced its close.
      disableClientInfo: true,
      // The policy watcher subscribes again itself at every 'ready', its failure handled; ioredis'
      // own resubscription leaves a rejection unhandled when the connection drops right then.
      autoResubscribe: false,
      lazyConnect: !opts.reconnect,
    };
    if (opts.sentinels && opts.sentinels.length > 0) {
      this.masterName = opts.masterName ?? DEFAULT_MASTER;
      this.client = new Redis({
        ...base,
        sentinels: opts.sentinels,
        name: this.masterName,
        connectTimeout: this.timeoutMs,
        /* c8 ignore start -- TLS through Sentinel needs TLS on sentinels and master alike: ioredis'
           own option, not set up in tests */
        ...(tlsOptions ? { tls: tlsOptions, enableTLSForSentinelMode: true } : {}),
        /* c8 ignore stop */
      });
    } else {
      this.masterName = null;
      // An IPv6 address is bracketed in a URL's hostname ("[::1]"), never in a socket's host.
      const target = { host: url.hostname.replace(/^\[(.*)\]$/, '$1'), port: Number(url.port || DEFAULT_REDIS_PORT), ...tlsOptions };
      this.client = new Redis({
        ...base,
        host: target.host,
        port: target.port,
        // ioredis waits for 'secureConnect' rather than 'connect' when `tls` is set.
        ...(tlsOptions ? { tls: tlsOptions } : {}),
        Connector: serverConnector(target, this.secure, this.timeoutMs),
        connectTimeout: 0,
      });
    }
    // Without a listener ioredis prints every error to the console; whoever cares listens too.
    this.client.on('error', () => {});
  }

  /**
   * Connects once (the CLI): resolves when Redis answers; rejects with a StoreError naming the
   * server and the cause. Any error before then fails it, even one ioredis would carry on after
   * (a SELECT of a database that isn't there would leave the commands on database 0).
   */
  async open(): Promise<void> {
    let onError!: (err: Error) => void;
    const failed = new Promise<never>((_, reject) => {
      onError = reject;
      this.client.once('error', onError);
    });
    try {
      await Promise.race([this.client.connect(), failed]);
    } catch (err) {
      this.client.disconnect();
      throw new StoreError('ERR_STORE_UNREACHABLE', this.problem(err, true), { cause: err });
    } finally {
      this.client.off('error', onError);
    }
  }

  /** The words for a connection that closed without an error. */
  closed(connecting: boolean): string {
    return this.problem(new Error(CONNECTION_CLOSED), connecting);
  }

  /**
   * What a failure means for an operator: `cannot reach SERVER: CAUSE` while `connecting` (a
   * connection attempt, up to its first answer), `SERVER: CAUSE` for a command on a live one.
   */
  problem(err: unknown, connecting: boolean): string {
    const cause = this.cause(err as Error, connecting);
    return connecting ? `cannot reach ${this.server}: ${cause}` : `${this.server}: ${cause}`;
  }

  private cause(err: Error, connecting: boolean): string {
    const t = duration(this.timeoutMs);
    const code = (err as NodeJS.ErrnoException).code ?? '';
    // Once connected, a reset and a close are the same news; which of the two a dying server
    // leaves depends on whether it had unread data.
    const hungUp = code === 'ECONNRESET' || code === 'EPIPE' || err.message === CONNECTION_CLOSED;
    if (hungUp && !connecting) return 'connection lost';
    // A TLS port resets a connection that speaks plain Redis to it. (The other way round, a plain
    // port never answers the TLS handshake: ConnectTimeoutError.)
    const hint = this.secure ? '' : ' (a TLS port? then use rediss://)';
    if (err instanceof ConnectTimeoutError) {
      return err.handshake ? `connected, but no TLS handshake within ${t} (a plain Redis port? then use redis://)` : `timed out after ${t}`;
    }
    if (err.message === 'Command timed out') return connecting ? `connected, but no reply within ${t} (a hung Redis, or not a Redis port?)` : `no reply within ${t}`;
    if (err.name === 'ReplyError') {
      if (err.message.startsWith('NOAUTH')) return 'the server wants a password (NOAUTH): give it with PLCGUARD_REDIS_PASSWORD or --redis-password-file';
      if (err.message.startsWith('WRONGPASS')) return 'wrong password or user name (WRONGPASS)';
      return connecting ? `the server answered: ${err.message}` : err.message;
    }
    if (err.message.startsWith('All sentinels are unreachable')) return this.sentinelCause(err.message, t);
    const resp = /^Unknown RESP type \d+ (".*?")/.exec(err.message);
    if (resp) return `not a Redis server: its reply starts with ${resp[1]}`;
    // What isn't a TLS record: a server that doesn't speak TLS answered.
    if (code === 'ERR_SSL_WRONG_VERSION_NUMBER') return 'TLS handshake failed: the server does not speak TLS (use redis:// for a plain port)';
    // OpenSSL's own words (err.reason), without its file and line.
    if (code.startsWith('ERR_SSL_')) return `TLS handshake failed: ${(err as Error & { reason: string }).reason}`;
    if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') return `TLS certificate rejected: ${err.message}`;
    if (/CERT|SIGNATURE/.test(code)) return `TLS certificate rejected: ${err.message} (the CA to trust: --redis-ca FILE)`;
    const words = SOCKET_ERRORS[code];
    if (words) return `${words}${hungUp ? hint : ''}`;
    if (err.message === CONNECTION_CLOSED) return `the server closed the connection before answering${hint}`;
    /* c8 ignore next 2 -- an error none of the above names (EACCES, a message of Node's or
       ioredis' not foreseen here): its own words, which tests can't call up on demand */
    return err.message;
  }

  /**
   * ioredis' "All sentinels are unreachable … Last error: …" in words. Without a last error every
   * sentinel answered, but not with the master (older sentinels answer null for a name they don't
   * know); a sentinel's own connection error is lost inside ioredis, hence "refused or closed".
   */
  private sentinelCause(message: string, t: string): string {
    if (message.includes('No such master') || !message.includes('Last error')) return `no sentinel knows master "${this.masterName}"`;
    if (message.endsWith('Command timed out')) return `no sentinel answered within ${t}`;
    return 'no sentinel answered (connection refused or closed)';
  }
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

/** What every store of ours keeps under one prefix on one Redis connection shares. */
export abstract class RedisStore {
  constructor(
    readonly connection: RedisConnection,
    readonly prefix = DEFAULT_PREFIX,
  ) {}

  protected get redis(): Redis {
    return this.connection.client;
  }

  /**
   * Every rejection of a Redis command (ioredis has several classes of them) as a StoreError
   * that names the server and says what went wrong.
   */
  protected readonly failed = (err: unknown): never => {
    throw new StoreError('ERR_STORE_REDIS', this.connection.problem(err, false), { cause: err });
  };
}

/**
 * Versioned policy storage in Redis. Validation is the caller's: the store keeps what it is given.
 * Every method rejects with a StoreError.
 */
export class PolicyStore extends RedisStore {

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
    const v = await this.redis.eval(PUSH_SCRIPT, 0, ...args).catch(this.failed);
    return Number(v);
  }

  /** The version in force, or 0 when nothing was ever pushed. */
  async currentVersion(): Promise<number> {
    const v = await this.redis.get(`${this.prefix}current`).catch(this.failed);
    return v === null ? 0 : Number(v);
  }

  async get(version: number): Promise<VersionRecord> {
    const h = await this.redis.hgetall(`${this.prefix}version:${version}`).catch(this.failed);
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
    return this.redis.hget(`${this.prefix}version:${version}`, 'sha256').catch(this.failed);
  }

  /** The version in force, or null when nothing was ever pushed. */
  async current(): Promise<VersionRecord | null> {
    const v = await this.currentVersion();
    return v === 0 ? null : this.get(v);
  }

  /** History, oldest first (the last `limit` entries when given). */
  async history(limit?: number): Promise<HistoryEntry[]> {
    const raw = await this.redis.lrange(`${this.prefix}history`, limit ? -limit : 0, -1).catch(this.failed);
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
