// `plcguard policy push|pull|history|diff|rollback`: policies kept in Redis (policy/store.ts).
import fs from 'node:fs';
import os from 'node:os';
import { UsageError } from '../modbus/errors.js';
import { diffPolicies } from '../policy/diff.js';
import { endpointOption } from '../policy/net.js';
import type { CompiledPolicy } from '../policy/types.js';
import { DEFAULT_REDIS_TIMEOUT_MS, PolicyStore, RedisConnection, StoreOptionError, parseRedisUrl, type StoreOptions } from '../policy/store.js';
import type { PolicyParser } from '../policy/source/source.js';
import { ExitCode, exitCodeFor, parseCommandLine, type CommandIo } from './command.js';

export const STORE_COMMANDS = ['push', 'pull', 'history', 'diff', 'rollback'] as const;

/** Where the Redis password comes from when not from --redis-password-file: never the URL, ideally. */
export const PASSWORD_ENV = 'PLCGUARD_REDIS_PASSWORD';

const USAGE = `usage:
  plcguard policy push FILE --redis URL [--author NAME] [--message TEXT]
  plcguard policy pull --redis URL [--version N]
  plcguard policy history --redis URL [--limit N]
  plcguard policy diff FILE --redis URL
  plcguard policy rollback VERSION --redis URL [--author NAME] [--message TEXT]
options for every command: --redis-prefix P (default plcguard:), --redis-ca FILE (rediss://),
  --redis-sentinels HOST:PORT,... --redis-master NAME (Sentinel), --redis-password-file FILE
  (or ${PASSWORD_ENV}), --redis-timeout MS (default ${DEFAULT_REDIS_TIMEOUT_MS})`;

/** Redis connection options shared by `run` and the store commands. */
export const REDIS_OPTIONS = {
  redis: { type: 'string' },
  'redis-prefix': { type: 'string' },
  'redis-ca': { type: 'string' },
  'redis-sentinels': { type: 'string' },
  'redis-master': { type: 'string' },
  'redis-password-file': { type: 'string' },
  'redis-timeout': { type: 'string', default: String(DEFAULT_REDIS_TIMEOUT_MS) },
} as const;

/**
 * The Redis options as typed. The password: --redis-password-file, else $PLCGUARD_REDIS_PASSWORD,
 * else the URL's, which works but draws a warning on `stderr` (after `who: `): a command line is
 * readable by every user of the machine (`ps`).
 */
export function storeOptions(
  values: {
    redis?: string;
    'redis-prefix'?: string;
    'redis-ca'?: string;
    'redis-sentinels'?: string;
    'redis-master'?: string;
    'redis-password-file'?: string;
    'redis-timeout': string;
  },
  env: NodeJS.ProcessEnv,
  stderr: (line: string) => void,
  who: string,
): StoreOptions {
  if (!values.redis) throw new StoreOptionError('--redis URL is required (e.g. redis://127.0.0.1:6379)');
  const url = parseRedisUrl(values.redis);
  const sentinels = values['redis-sentinels']
    ?.split(',')
    .filter(Boolean)
    .map((hp) => endpointOption(hp.trim(), '--redis-sentinels'));
  const timeoutMs = Number(values['redis-timeout']);
  if (!Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > MAX_TIMER_MS) {
    throw new StoreOptionError(`--redis-timeout must be a whole number of milliseconds 1..${MAX_TIMER_MS}, got "${values['redis-timeout']}"`);
  }
  const file = values['redis-password-file'];
  const password = file !== undefined ? readPasswordFile(file) : env[PASSWORD_ENV] || undefined;
  if (url.password) {
    const used = file !== undefined ? ' (ignored: --redis-password-file wins)' : password !== undefined ? ` (ignored: ${PASSWORD_ENV} wins)` : '';
    stderr(`${who}: warning: the --redis URL carries a password, which any user of this machine can read in the process list${used}; give it with ${PASSWORD_ENV} or --redis-password-file FILE`);
  }
  return {
    url: values.redis,
    timeoutMs,
    ...(password !== undefined ? { password } : {}),
    ...(values['redis-prefix'] !== undefined ? { prefix: values['redis-prefix'] } : {}),
    ...(values['redis-ca'] !== undefined ? { caFile: values['redis-ca'] } : {}),
    ...(sentinels ? { sentinels } : {}),
    ...(values['redis-master'] !== undefined ? { masterName: values['redis-master'] } : {}),
  };
}

/** Node's timers hold at most 2^31 - 1 ms (about 24.8 days); a longer one fires at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** The file's text without the one line end `echo secret > file` leaves. */
function readPasswordFile(file: string): string {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new StoreOptionError(`--redis-password-file: cannot read "${file}": ${(err as Error).message}`, { cause: err });
  }
  const password = text.replace(/\r?\n$/, '');
  if (password === '') throw new StoreOptionError(`--redis-password-file: "${file}" is empty`);
  return password;
}

/** The per-device documents kept under {prefix}device:{name}: normalized, so each stands alone. */
function deviceDocuments(policy: CompiledPolicy): Map<string, string> {
  return new Map([...policy.devices].map(([name, d]) => [name, JSON.stringify(d.document)]));
}

/** undefined when not given, null when not a whole number ≥ 1. */
function wholeNumber(v: string | undefined): number | null | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  return Number.isInteger(n) && n >= 1 ? n : null;
}

function defaultAuthor(): string {
  return `${os.userInfo().username}@${os.hostname()}`;
}

/**
 * `plcguard policy push|pull|history|diff|rollback`: returns the exit code (0 ok, 1 invalid policy
 * or store failure, 2 usage).
 */
export async function storeCommand(command: string, args: string[], io: CommandIo, parse: PolicyParser): Promise<number> {
  try {
    return await runStore(command, args, io, parse);
  } catch (err) {
    const code = exitCodeFor(err);
    io.stderr(`plcguard policy ${command}: ${(err as Error).message}${code === ExitCode.USAGE ? `\n${USAGE}` : ''}`);
    return code;
  }
}

function usage(message: string): UsageError {
  return new UsageError('ERR_STORE_USAGE', message);
}

async function runStore(command: string, args: string[], io: CommandIo, parse: PolicyParser): Promise<number> {
  const { values, positionals } = parseCommandLine({
    args,
    allowPositionals: true,
    options: {
      ...REDIS_OPTIONS,
      author: { type: 'string' },
      message: { type: 'string' },
      version: { type: 'string' },
      limit: { type: 'string' },
    },
  });
  const wantsFile = command === 'push' || command === 'diff';
  const wantsVersion = command === 'rollback';
  if ((wantsFile || wantsVersion) !== (positionals.length === 1) || positionals.length > 1) {
    throw usage(`${wantsFile ? 'one FILE' : wantsVersion ? 'one VERSION' : 'no positional argument'} expected`);
  }
  const opts = storeOptions(values, process.env, io.stderr, `plcguard policy ${command}`);

  const versionText = wantsVersion ? positionals[0] : values.version;
  const version = wholeNumber(versionText);
  const limit = wholeNumber(values.limit);
  if (version === null) throw usage(`${wantsVersion ? 'VERSION' : '--version'} must be a whole number ≥ 1, got "${versionText}"`);
  if (limit === null) throw usage(`--limit must be a whole number ≥ 1, got "${values.limit}"`);

  // push and diff: the file must be a valid policy before Redis is touched.
  let text = '';
  let policy: CompiledPolicy | null = null;
  if (wantsFile) {
    const file = positionals[0]!;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (err) {
      io.stderr(`${file}: cannot read: ${(err as Error).message}`);
      return ExitCode.FAILURE;
    }
    const r = parse(text, file);
    for (const w of r.warnings) io.stderr(w.format());
    if (!r.policy) {
      for (const e of r.errors) io.stderr(e.format());
      io.stderr(`plcguard policy ${command}: ${file} is not valid; nothing written`);
      return ExitCode.FAILURE;
    }
    policy = r.policy;
  }

  const connection = new RedisConnection(opts);
  await connection.open();
  const store = new PolicyStore(connection, opts.prefix);
  try {
    switch (command) {
      case 'push': {
        const v = await store.push(text, policy!.sha256, deviceDocuments(policy!), {
          author: values.author ?? defaultAuthor(),
          message: values.message ?? '',
        });
        io.stdout(`pushed ${positionals[0]} as version ${v} (sha256 ${policy!.sha256.slice(0, 12)})`);
        return ExitCode.OK;
      }
      case 'pull': {
        const rec = version !== undefined ? await store.get(version) : await store.current();
        if (rec === null) {
          io.stderr('plcguard policy pull: no policy has been pushed yet');
          return ExitCode.FAILURE;
        }
        io.stdout(rec.yaml.replace(/\n$/, ''));
        return ExitCode.OK;
      }
      case 'history': {
        const current = await store.currentVersion();
        const entries = await store.history(limit);
        if (entries.length === 0) io.stdout('no policy has been pushed yet');
        for (const e of entries) {
          const mark = e.version === current ? '*' : ' ';
          const rb = e.rollbackOf !== null ? ` (rollback to ${e.rollbackOf})` : '';
          io.stdout(`${mark} ${e.version}  ${e.time}  ${e.author}  ${e.sha256.slice(0, 12)}  ${e.message}${rb}`);
        }
        return ExitCode.OK;
      }
      case 'diff': {
        const rec = await store.current();
        // What is in force may no longer validate (written by an older plcguard): diff it as empty.
        const before = rec === null ? null : (parse(rec.yaml, `redis:version:${rec.version}`).policy?.document ?? null);
        const lines = diffPolicies(before, policy!.document);
        io.stdout(`diff against ${rec ? `version ${rec.version}` : 'an empty store'}:`);
        io.stdout(lines.length === 0 ? '  no change' : lines.join('\n'));
        return ExitCode.OK;
      }
      default: {
        // rollback: re-push an old version as a new one, with its own history entry.
        const target = version!;
        const rec = await store.get(target);
        const r = parse(rec.yaml, `redis:version:${target}`);
        if (!r.policy) {
          for (const e of r.errors) io.stderr(e.format());
          io.stderr(`plcguard policy rollback: version ${target} no longer validates; nothing written`);
          return ExitCode.FAILURE;
        }
        const v = await store.push(rec.yaml, r.policy.sha256, deviceDocuments(r.policy), {
          author: values.author ?? defaultAuthor(),
          message: values.message ?? `rollback to version ${target}`,
          rollbackOf: target,
        });
        io.stdout(`rolled back to version ${target} as version ${v}`);
        return ExitCode.OK;
      }
    }
  } finally {
    connection.client.disconnect();
  }
}
