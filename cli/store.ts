// `plcguard policy push|pull|history|diff|rollback`: policies kept in Redis (policy/store.ts).
import fs from 'node:fs';
import os from 'node:os';
import { UsageError } from '../modbus/errors.js';
import { diffPolicies, formatDiff } from '../policy/diff.js';
import { endpointOption } from '../policy/net.js';
import { policySha256 } from '../policy/parse.js';
import type { CompiledPolicy } from '../policy/types.js';
import { DEFAULT_REDIS_TIMEOUT_MS, PolicyStore, RedisConnection, StoreOptionError, parseRedisUrl, type StoreOptions } from '../policy/store.js';
import type { PolicyParser } from '../policy/source/source.js';
import { ExitCode, JSON_OPTION, parseCommandLine, runCommand, writeJson, type CommandIo } from './command.js';

export const STORE_COMMANDS = ['push', 'pull', 'history', 'diff', 'rollback'] as const;
type StoreCommand = (typeof STORE_COMMANDS)[number];

/** Where the Redis password comes from when not from --redis-password-file: never the URL, ideally. */
export const PASSWORD_ENV = 'PLCGUARD_REDIS_PASSWORD';

/** The Redis options of every store command and of `run --redis`. */
export const REDIS_OPTIONS_USAGE = `Redis options: --redis-prefix P (default plcguard:), --redis-ca FILE (rediss://),
  --redis-sentinels HOST:PORT,... --redis-master NAME (Sentinel), --redis-password-file FILE
  (or ${PASSWORD_ENV}), --redis-timeout MS (default ${DEFAULT_REDIS_TIMEOUT_MS})`;

/**
 * diff(1)'s exit status, which scripts know: 0 the same, 1 different, 2 trouble (a usage error,
 * an invalid FILE, the store failing), so that "different" is never mistaken for "Redis is down".
 */
const DIFF_EXIT = { SAME: 0, DIFFERENT: 1, TROUBLE: 2 } as const;

const USAGE: Record<StoreCommand, string> = {
  push: `usage: plcguard policy push FILE --redis URL [--author NAME] [--message TEXT] [--force]
Validates FILE and writes it as the next version, which every plcguard following the store
applies. Nothing is written when FILE is invalid, nor when it is the version in force (the same
sha256) unless --force.
  --author NAME   recorded with the version (default USER@HOST)
  --message TEXT  recorded with the version
  --force         write a new version even when FILE is the version in force
${REDIS_OPTIONS_USAGE}
exit status: ${ExitCode.OK} written or unchanged, ${ExitCode.FAILURE} invalid FILE or store failure, ${ExitCode.USAGE} usage error`,
  pull: `usage: plcguard policy pull --redis URL [--version N]
Prints the YAML of the version in force, or of version N, as it was pushed.
${REDIS_OPTIONS_USAGE}
exit status: ${ExitCode.OK} printed, ${ExitCode.FAILURE} nothing pushed yet, no such version or store failure, ${ExitCode.USAGE} usage error`,
  history: `usage: plcguard policy history --redis URL [--limit N] [--json]
Lists the versions, oldest first, the one in force marked *: version, time, author, sha256, message.
  --limit N  only the last N versions
  --json     one JSON document instead: {"current": N or null, "versions": [{"version", "time",
             "author", "message", "sha256", "rollback_of"}, ...]}
${REDIS_OPTIONS_USAGE}
exit status: ${ExitCode.OK} listed, ${ExitCode.FAILURE} store failure, ${ExitCode.USAGE} usage error`,
  diff: `usage: plcguard policy diff FILE --redis URL [--json]
What pushing FILE would change: device by device, rule by rule, field by field (before → after),
compared as each device enforces them (defaults folded in, rules matched by name).
  --json  one JSON document instead: {"file", "sha256", "against": {"version", "sha256"} or null,
          "changed", "devices": [{"device", "change", "fields", "rules"}, ...]} (README: --json)
${REDIS_OPTIONS_USAGE}
exit status (as diff(1)): ${DIFF_EXIT.SAME} FILE is the version in force (same sha256), ${DIFF_EXIT.DIFFERENT} a push would write a new
version, ${DIFF_EXIT.TROUBLE} trouble: usage error, invalid FILE or store failure`,
  rollback: `usage: plcguard policy rollback VERSION --redis URL [--author NAME] [--message TEXT]
Writes version VERSION again as a new version; its history entry says which version it rolls back to.
  --author NAME   recorded with the version (default USER@HOST)
  --message TEXT  recorded with the version (default "rollback to version VERSION")
${REDIS_OPTIONS_USAGE}
exit status: ${ExitCode.OK} done, ${ExitCode.FAILURE} no such version, it no longer validates, or store failure, ${ExitCode.USAGE} usage error`,
};

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

/** REDIS_OPTIONS as parseArgs gives them. */
export interface RedisValues {
  redis?: string;
  'redis-prefix'?: string;
  'redis-ca'?: string;
  'redis-sentinels'?: string;
  'redis-master'?: string;
  'redis-password-file'?: string;
  'redis-timeout': string;
}

/**
 * The Redis options as typed. The password: --redis-password-file, else $PLCGUARD_REDIS_PASSWORD,
 * else the URL's, which works but draws a warning on `stderr` (after `who: `): a command line is
 * readable by every user of the machine (`ps`).
 */
export function storeOptions(
  values: RedisValues,
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
 * or store failure, 2 usage; diff as diff(1): DIFF_EXIT).
 */
export async function storeCommand(command: string, args: string[], io: CommandIo, parse: PolicyParser): Promise<number> {
  const name = command as StoreCommand;
  return runCommand({ name: `policy ${name}`, usage: USAGE[name] }, args, io, () => runStore(name, args, io, parse), {
    code: name === 'diff' ? DIFF_EXIT.TROUBLE : ExitCode.FAILURE,
  });
}

function usage(message: string): UsageError {
  return new UsageError('ERR_STORE_USAGE', message);
}

async function runStore(command: StoreCommand, args: string[], io: CommandIo, parse: PolicyParser): Promise<number> {
  const { values, positionals } = parseCommandLine({
    args,
    allowPositionals: true,
    options: {
      ...REDIS_OPTIONS,
      ...JSON_OPTION,
      author: { type: 'string' },
      message: { type: 'string' },
      version: { type: 'string' },
      limit: { type: 'string' },
      force: { type: 'boolean', default: false },
    },
  });
  if (values.json && command !== 'history' && command !== 'diff') throw usage('--json is an option of history and diff');
  if (values.force && command !== 'push') throw usage('--force is an option of push');
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
  const failed = command === 'diff' ? DIFF_EXIT.TROUBLE : ExitCode.FAILURE;

  // push and diff: the file must be a valid policy before Redis is touched.
  let text = '';
  let policy: CompiledPolicy | null = null;
  if (wantsFile) {
    const file = positionals[0]!;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (err) {
      io.stderr(`${file}: cannot read: ${(err as Error).message}`);
      return failed;
    }
    const r = parse(text, file);
    for (const w of r.warnings) io.stderr(w.format());
    if (!r.policy) {
      for (const e of r.errors) io.stderr(e.format());
      io.stderr(`plcguard policy ${command}: ${file} is not valid; nothing written`);
      return failed;
    }
    policy = r.policy;
  }

  const connection = new RedisConnection(opts);
  await connection.open();
  const store = new PolicyStore(connection, opts.prefix);
  try {
    switch (command) {
      case 'push': {
        const file = positionals[0]!;
        const sha256 = policy!.sha256;
        if (!values.force) {
          // Checked before the push, not inside its script: two pushes of the same new file at once
          // may both write, which costs a redundant version, never a lost one.
          const rec = await store.current();
          if (rec !== null && policySha256(rec.yaml) === sha256) {
            io.stdout(`${file} is version ${rec.version}, the version in force (sha256 ${sha256.slice(0, 12)}); nothing written (--force writes it again)`);
            return ExitCode.OK;
          }
        }
        const v = await store.push(text, sha256, deviceDocuments(policy!), {
          author: values.author ?? defaultAuthor(),
          message: values.message ?? '',
        });
        io.stdout(`pushed ${file} as version ${v} (sha256 ${sha256.slice(0, 12)})`);
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
        if (values.json) {
          writeJson(io, {
            current: current === 0 ? null : current,
            versions: entries.map((e) => ({ version: e.version, time: e.time, author: e.author, message: e.message, sha256: e.sha256, rollback_of: e.rollbackOf })),
          });
          return ExitCode.OK;
        }
        if (entries.length === 0) io.stdout('no policy has been pushed yet');
        for (const e of entries) {
          const mark = e.version === current ? '*' : ' ';
          const rb = e.rollbackOf !== null ? ` (rollback to ${e.rollbackOf})` : '';
          io.stdout(`${mark} ${e.version}  ${e.time}  ${e.author}  ${e.sha256.slice(0, 12)}  ${e.message}${rb}`);
        }
        return ExitCode.OK;
      }
      case 'diff': {
        const file = positionals[0]!;
        const rec = await store.current();
        // What is in force may no longer validate (written by an older plcguard): diff it as empty.
        const before = rec === null ? null : (parse(rec.yaml, `redis:version:${rec.version}`).policy?.document ?? null);
        const changes = diffPolicies(before, policy!.document);
        // Whether a push would write a new version: the test push makes, on the text in the store
        // (its recorded sha256 is only as good as whoever wrote it).
        const inForce = rec === null ? null : policySha256(rec.yaml);
        const changed = inForce !== policy!.sha256;
        if (values.json) {
          writeJson(io, {
            file,
            sha256: policy!.sha256,
            against: rec === null ? null : { version: rec.version, sha256: inForce },
            changed,
            devices: changes,
          });
        } else {
          io.stdout(`diff against ${rec ? `version ${rec.version}` : 'an empty store'}:`);
          if (changes.length > 0) io.stdout(formatDiff(changes).join('\n'));
          else io.stdout(changed ? '  no change in what the devices enforce; the text differs (comments, layout)' : '  no change');
        }
        return changed ? DIFF_EXIT.DIFFERENT : DIFF_EXIT.SAME;
      }
      case 'rollback': {
        // Re-push an old version as a new one, with its own history entry.
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
