import fs from 'node:fs';
import os from 'node:os';
import { parseArgs } from 'node:util';
import { diffPolicies } from '../policy/diff.js';
import { endpointOption } from '../policy/net.js';
import type { CompiledPolicy } from '../policy/types.js';
import { PolicyStore, StoreOptionError, connectRedis, parseRedisUrl, type StoreOptions } from '../policy/store.js';
import type { PolicyParser } from '../policy/source/source.js';

export interface Io {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
}


export const STORE_COMMANDS = ['push', 'pull', 'history', 'diff', 'rollback'] as const;

const USAGE = `usage:
  plcguard policy push FILE --redis URL [--author NAME] [--message TEXT]
  plcguard policy pull --redis URL [--version N]
  plcguard policy history --redis URL [--limit N]
  plcguard policy diff FILE --redis URL
  plcguard policy rollback VERSION --redis URL [--author NAME] [--message TEXT]
options for every command: --redis-prefix P (default plcguard:), --redis-ca FILE (rediss://),
  --redis-sentinels HOST:PORT,... --redis-master NAME (Sentinel)`;

/** Redis connection options shared by `run` and the store commands. */
export const REDIS_OPTIONS = {
  redis: { type: 'string' },
  'redis-prefix': { type: 'string' },
  'redis-ca': { type: 'string' },
  'redis-sentinels': { type: 'string' },
  'redis-master': { type: 'string' },
} as const;

export function storeOptions(values: {
  redis?: string;
  'redis-prefix'?: string;
  'redis-ca'?: string;
  'redis-sentinels'?: string;
  'redis-master'?: string;
}): StoreOptions {
  if (!values.redis) throw new StoreOptionError('--redis URL is required (e.g. redis://127.0.0.1:6379)');
  parseRedisUrl(values.redis);
  const sentinels = values['redis-sentinels']
    ?.split(',')
    .filter(Boolean)
    .map((hp) => endpointOption(hp.trim(), '--redis-sentinels'));
  return {
    url: values.redis,
    ...(values['redis-prefix'] !== undefined ? { prefix: values['redis-prefix'] } : {}),
    ...(values['redis-ca'] !== undefined ? { caFile: values['redis-ca'] } : {}),
    ...(sentinels ? { sentinels } : {}),
    ...(values['redis-master'] !== undefined ? { masterName: values['redis-master'] } : {}),
  };
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
export async function storeCommand(command: string, args: string[], io: Io, parse: PolicyParser): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
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
  } catch (err) {
    io.stderr(`plcguard policy ${command}: ${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  const wantsFile = command === 'push' || command === 'diff';
  const wantsVersion = command === 'rollback';
  if ((wantsFile || wantsVersion) !== (positionals.length === 1) || positionals.length > 1) {
    io.stderr(`plcguard policy ${command}: ${wantsFile ? 'one FILE' : wantsVersion ? 'one VERSION' : 'no positional argument'} expected\n${USAGE}`);
    return 2;
  }
  let opts: StoreOptions;
  try {
    opts = storeOptions(values);
  } catch (err) {
    io.stderr(`plcguard policy ${command}: ${(err as Error).message}\n${USAGE}`);
    return 2;
  }

  const versionText = wantsVersion ? positionals[0] : values.version;
  const version = wholeNumber(versionText);
  const limit = wholeNumber(values.limit);
  const bad = version === null ? [wantsVersion ? 'VERSION' : '--version', versionText] : limit === null ? ['--limit', values.limit] : null;
  if (bad !== null || version === null || limit === null) {
    io.stderr(`plcguard policy ${command}: ${bad![0]} must be a whole number ≥ 1, got "${bad![1]}"`);
    return 2;
  }

  // push and diff: the file must be a valid policy before Redis is touched.
  let text = '';
  let policy: CompiledPolicy | null = null;
  if (wantsFile) {
    const file = positionals[0]!;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (err) {
      io.stderr(`${file}: cannot read: ${(err as Error).message}`);
      return 1;
    }
    const r = parse(text, file);
    for (const w of r.warnings) io.stderr(w.format());
    if (!r.policy) {
      for (const e of r.errors) io.stderr(e.format());
      io.stderr(`plcguard policy ${command}: ${file} is not valid; nothing written`);
      return 1;
    }
    policy = r.policy;
  }

  let redis;
  try {
    redis = connectRedis(opts);
  } catch (err) {
    io.stderr(`plcguard policy ${command}: ${(err as Error).message}`);
    return 2;
  }
  redis.on('error', () => {
    /* reported by the failing command */
  });
  const store = new PolicyStore(redis, opts.prefix);
  const run = async (): Promise<number> => {
    switch (command) {
      case 'push': {
        const v = await store.push(text, policy!.sha256, deviceDocuments(policy!), {
          author: values.author ?? defaultAuthor(),
          message: values.message ?? '',
        });
        io.stdout(`pushed ${positionals[0]} as version ${v} (sha256 ${policy!.sha256.slice(0, 12)})`);
        return 0;
      }
      case 'pull': {
        const rec = version !== undefined ? await store.get(version) : await store.current();
        if (rec === null) {
          io.stderr('plcguard policy pull: no policy has been pushed yet');
          return 1;
        }
        io.stdout(rec.yaml.replace(/\n$/, ''));
        return 0;
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
        return 0;
      }
      case 'diff': {
        const rec = await store.current();
        // What is in force may no longer validate (written by an older plcguard): diff it as empty.
        const before = rec === null ? null : (parse(rec.yaml, `redis:version:${rec.version}`).policy?.document ?? null);
        const lines = diffPolicies(before, policy!.document);
        io.stdout(`diff against ${rec ? `version ${rec.version}` : 'an empty store'}:`);
        io.stdout(lines.length === 0 ? '  no change' : lines.join('\n'));
        return 0;
      }
      default: {
        // rollback: re-push an old version as a new one, with its own history entry.
        const target = version!;
        const rec = await store.get(target);
        const r = parse(rec.yaml, `redis:version:${target}`);
        if (!r.policy) {
          for (const e of r.errors) io.stderr(e.format());
          io.stderr(`plcguard policy rollback: version ${target} no longer validates; nothing written`);
          return 1;
        }
        const v = await store.push(rec.yaml, r.policy.sha256, deviceDocuments(r.policy), {
          author: values.author ?? defaultAuthor(),
          message: values.message ?? `rollback to version ${target}`,
          rollbackOf: target,
        });
        io.stdout(`rolled back to version ${target} as version ${v}`);
        return 0;
      }
    }
  };
  const code = await run().catch((err: Error) => {
    io.stderr(`plcguard policy ${command}: ${err.message}`);
    return 1;
  });
  redis.disconnect();
  return code;
}
