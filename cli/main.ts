#!/usr/bin/env node
// The plcguard command: the only place that reads argv and the environment and wires things up.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ExitCode, parseCommandLine, runCommand, usageMessage, type Command, type CommandIo } from './command.js';
import { policyCommand } from './policy.js';
import { parsePolicy } from '../policy/index.js';
import { startSimulatedPlc } from '../demo/plc.js';
import { makeTlsDemo, type TlsDemo } from '../demo/tls-demo.js';
import type { CertFiles } from '../demo/pki.js';
import { parseDocument } from 'yaml';
import { UsageError } from '../modbus/errors.js';
import { endpointOption, formatEndpoint } from '../policy/net.js';
import { probeCommand } from './probe.js';
import { HMI_USAGE, hmiCommand } from '../demo/hmi.js';
import { PLC_USAGE, plcCommand } from '../demo/plc-command.js';
import { DEFAULT_ADMIN, DEFAULT_GRACE_MS, ProxyRuntime, type ProxyOptions } from '../proxy/runtime.js';
import { PolicyInvalidError } from '../policy/errors.js';
import { FilePolicySource } from '../policy/source/file.js';
import type { PolicyParser, PolicySource } from '../policy/source/source.js';
import { RedisPolicySource } from '../policy/source/redis.js';
import { LearnStore } from '../policy/learn/store.js';
import { RedisConnection } from '../policy/store.js';
import { Logger, logIdentity, stdoutSink } from '../proxy/audit.js';
import { tuneTiering } from './tiering.js';
import { REDIS_OPTIONS, REDIS_OPTIONS_USAGE, STORE_COMMANDS, storeCommand, storeOptions } from './store.js';
import type { Endpoint } from '../policy/types.js';

/** The package's root: the nearest folder up with a package.json (from dist/cli or cli/). */
function packageRoot(from: string): string {
  let dir = from;
  while (!fs.existsSync(path.join(dir, 'package.json'))) dir = path.dirname(dir);
  return dir;
}
const ROOT = packageRoot(path.dirname(fileURLToPath(import.meta.url)));
const VERSION = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
export const DEMO_POLICY = path.join(ROOT, 'examples/demo-policy.yaml');
/** Where the demo listens unless told otherwise: the demo policy's own listen and upstream. */
export const DEMO_LISTEN: Endpoint = { host: '127.0.0.1', port: 5020 };
export const DEMO_PLC: Endpoint = { host: '127.0.0.1', port: 5021 };

const DEFAULT_ADMIN_TEXT = formatEndpoint(DEFAULT_ADMIN.host, DEFAULT_ADMIN.port);

const USAGE = `plcguard ${VERSION}: an inline Modbus/TCP allow-list proxy

usage:
  plcguard run --policy FILE [--admin HOST:PORT|off] [--grace-ms N] [--instance NAME]
                                  serve every device of the policy; the file is watched and
                                  valid edits apply live; every log line names the instance
                                  (default HOSTNAME:ADMIN-PORT)
  plcguard run --redis URL [--devices a,b] [--redis-prefix P] [--redis-ca FILE]
               [--redis-sentinels HOST:PORT,... --redis-master NAME] [--admin ...]
               [--redis-password-file FILE] [--redis-timeout MS]
                                  serve the policy in force in Redis, following every push
  plcguard demo [--listen HOST:PORT] [--plc HOST:PORT] [--admin HOST:PORT|off]
                                  a simulated PLC on ${formatEndpoint(DEMO_PLC.host, DEMO_PLC.port)} behind plcguard on
                                  ${formatEndpoint(DEMO_LISTEN.host, DEMO_LISTEN.port)} with examples/demo-policy.yaml
  plcguard policy validate [--json] FILE...
  plcguard policy check [--json] FILE --device NAME --source IP [--unit N] REQUEST...
  plcguard policy test FILE...
  plcguard policy learn CAPTURE... [--port N[,N...]] [--listen HOST:PORT] [-o FILE] [...]
                                  propose a policy from pcap/pcapng captures
  plcguard policy check --policy FILE --pcap CAPTURE... [--port N] [--device NAME]
                                  replay captures against a policy
  plcguard policy push FILE --redis URL [--author NAME] [--message TEXT] [--force]
  plcguard policy pull --redis URL [--version N]
  plcguard policy history --redis URL [--limit N] [--json]
  plcguard policy diff FILE --redis URL [--json]
  plcguard policy rollback VERSION --redis URL
  plcguard probe HOST:PORT read TABLE RANGE [--unit N] [--timeout MS] [--json]
  plcguard probe HOST:PORT write TABLE ADDR=VALUE[,ADDR=VALUE...] [--unit N] [--timeout MS] [--json]
  plcguard plc [--listen HOST:PORT] [--unit N]
                                  the demo's simulated PLC alone (default 127.0.0.1:5021)
  plcguard hmi HOST:PORT [--interval MS] [--deny-every N] [--unit N]
                                  a simulated HMI polling the demo PLC through plcguard, now and
                                  then trying a write the demo policy denies

plcguard COMMAND --help (and plcguard policy SUBCOMMAND --help) describes each one.
admin endpoints (default ${DEFAULT_ADMIN_TEXT}): /metrics /healthz /readyz
`;

const RUN: Command = {
  name: 'run',
  usage: `usage: plcguard run --policy FILE [--devices a,b] [--admin HOST:PORT|off] [--grace-ms N]
       plcguard run --redis URL [redis options] [--tls-dir DIR] [--devices a,b] [--admin HOST:PORT|off] [--grace-ms N]
Serves the devices of a policy until SIGTERM or SIGINT; SIGHUP reloads the policy.
  --policy FILE      a policy file; it is watched and valid edits apply live
  --redis URL        the version in force in Redis (redis:// or rediss://), following every push;
                     nothing listens until a valid version is loaded
  --devices a,b      serve only these devices of the policy
  --tls-dir DIR      relative certificate paths (tls, upstream_tls) resolve against DIR (default:
                     the policy file's folder; with --redis, the working directory): certificates
                     and keys stay on each host, the policy in Redis only names them
  --admin HOST:PORT  where /metrics /healthz /readyz answer (default ${DEFAULT_ADMIN_TEXT}); off: nowhere
  --grace-ms N       after SIGTERM, how long requests in flight get to finish (default ${DEFAULT_GRACE_MS})
${REDIS_OPTIONS_USAGE}
exit status: ${ExitCode.OK} stopped by a signal, ${ExitCode.FAILURE} could not start (no valid policy, an address in use), ${ExitCode.USAGE} usage error`,
};

const DEMO: Command = {
  name: 'demo',
  usage: `usage: plcguard demo [--listen HOST:PORT] [--plc HOST:PORT] [--admin HOST:PORT|off] [--tls]
A simulated PLC (unit 1) behind plcguard with examples/demo-policy.yaml, until SIGTERM or SIGINT;
it prints requests to try with plcguard probe.
  --tls               Modbus/TCP Security instead: a throwaway CA, an Operator and a Viewer
                      certificate and a policy with roles, in a temp folder removed at exit
  --listen HOST:PORT  where plcguard listens (default ${formatEndpoint(DEMO_LISTEN.host, DEMO_LISTEN.port)})
  --plc HOST:PORT     where the simulated PLC listens (default ${formatEndpoint(DEMO_PLC.host, DEMO_PLC.port)})
  --admin HOST:PORT   where /metrics /healthz /readyz answer (default ${DEFAULT_ADMIN_TEXT}); off: nowhere
exit status: ${ExitCode.OK} stopped by a signal, ${ExitCode.FAILURE} could not start, ${ExitCode.USAGE} usage error`,
};

const PLC: Command = { name: 'plc', usage: PLC_USAGE };
const HMI: Command = { name: 'hmi', usage: HMI_USAGE };

const io: CommandIo = {
  stdout: (s) => process.stdout.write(s.endsWith('\n') ? s : s + '\n'),
  stderr: (s) => process.stderr.write(s.endsWith('\n') ? s : s + '\n'),
};

/** Options' defaults as parseArgs takes them, so "not given" is one path with "given". */
const ADMIN_OPTION = { type: 'string', default: DEFAULT_ADMIN_TEXT } as const;

function adminOption(value: string): Endpoint | null {
  return value === 'off' ? null : endpointOption(value, '--admin');
}

/** Runs until SIGTERM/SIGINT, reloading the policy at SIGHUP; resolves with the exit code. */
async function serve(
  source: PolicySource,
  logger: Logger,
  admin: Endpoint | null,
  graceMs: number,
  devices?: string[],
  before?: () => Promise<() => Promise<void>>,
  more: Pick<ProxyOptions, 'learnStore' | 'tlsDir'> = {},
): Promise<number> {
  tuneTiering();
  const cleanup = before ? await before() : async () => {};
  let rt: ProxyRuntime;
  try {
    rt = await ProxyRuntime.start({ source, logger, admin, graceMs, version: VERSION, ...(devices ? { devices } : {}), ...more });
  } catch (err) {
    await cleanup();
    if (err instanceof PolicyInvalidError) {
      io.stderr(`plcguard: ${source.name} is not a valid policy; nothing started:`);
      for (const e of err.issues) io.stderr(e.format());
    } else {
      io.stderr(`plcguard: cannot start: ${(err as Error).message}`);
    }
    return ExitCode.FAILURE;
  }
  logger.log('started', { version: VERSION, source: source.name, admin: admin ? `${admin.host}:${admin.port}` : null });
  return new Promise<number>((resolve) => {
    const stop = (signal: string): void => {
      process.off('SIGTERM', onTerm);
      process.off('SIGINT', onInt);
      // rt.stop() closes the listeners before it returns: log after, so "stopping" means it.
      const stopped = rt.stop();
      logger.log('stopping', { signal });
      stopped
        .then(cleanup)
        .then(() => {
          // Only now: without a handler SIGHUP ends the process, which would cut the drain short.
          process.off('SIGHUP', onHup);
          logger.log('stopped');
          resolve(ExitCode.OK);
        })
        /* c8 ignore next 4 -- stopping closes sockets and timers; nothing in it is expected to throw */
        .catch((err: Error) => {
          io.stderr(`plcguard: error while stopping: ${err.message}`);
          resolve(ExitCode.FAILURE);
        });
    };
    const onTerm = (): void => stop('SIGTERM');
    const onInt = (): void => stop('SIGINT');
    const onHup = (): void => rt.reload();
    process.on('SIGTERM', onTerm);
    process.on('SIGINT', onInt);
    process.on('SIGHUP', onHup);
  });
}

async function run(args: string[]): Promise<number> {
  const { values } = parseCommandLine({
    args,
    options: {
      policy: { type: 'string' },
      admin: ADMIN_OPTION,
      'grace-ms': { type: 'string' },
      devices: { type: 'string' },
      instance: { type: 'string' },
      'tls-dir': { type: 'string' },
      ...REDIS_OPTIONS,
    },
  });
  if (!values.policy === !values.redis) throw new UsageError('ERR_RUN_USAGE', 'give either --policy FILE or --redis URL');
  const grace = values['grace-ms'] === undefined ? DEFAULT_GRACE_MS : Number(values['grace-ms']);
  if (!Number.isInteger(grace) || grace < 0) {
    throw new UsageError('ERR_RUN_USAGE', `--grace-ms must be a whole number of milliseconds ≥ 0, got "${values['grace-ms']}"`);
  }
  const admin = adminOption(values.admin);
  const logger = new Logger(stdoutSink, logIdentity(values.instance, admin));
  const devices = values.devices?.split(',').map((d) => d.trim()).filter(Boolean);
  const tlsDir = values['tls-dir'];
  if (values.policy) return serve(new FilePolicySource(values.policy, parsePolicy, logger), logger, admin, grace, devices, undefined, { tlsDir });
  const redis = storeOptions(values, process.env, io.stderr, 'plcguard');
  // Learn mode's observations go to the same Redis, on a connection of their own (WATCH is per connection).
  const learnStore = new LearnStore(new RedisConnection({ ...redis, reconnect: true }), redis.prefix);
  return serve(new RedisPolicySource(redis, parsePolicy, logger), logger, admin, grace, devices, undefined, { tlsDir, learnStore });
}

/**
 * The demo policy's parser, its one device moved to `listen` and `plc` when they aren't the file's
 * own (so that a second demo, or a test, can run beside the first). yaml's Document API changes
 * the two values and keeps the rest as written; the file stays watched as usual.
 */
export function demoParser(listen: Endpoint, plc: Endpoint): PolicyParser {
  const moved = !sameEndpoint(listen, DEMO_LISTEN) || !sameEndpoint(plc, DEMO_PLC);
  if (!moved) return parsePolicy;
  return (text, file, options) => {
    const doc = parseDocument(text);
    if (doc.errors.length === 0 && doc.hasIn(['devices', 0])) {
      doc.setIn(['devices', 0, 'listen'], formatEndpoint(listen.host, listen.port));
      doc.setIn(['devices', 0, 'upstream'], formatEndpoint(plc.host, plc.port));
      text = doc.toString();
    }
    return parsePolicy(text, file, options);
  };
}

function sameEndpoint(a: Endpoint, b: Endpoint): boolean {
  return a.host === b.host && a.port === b.port;
}

async function demo(args: string[]): Promise<number> {
  const { values } = parseCommandLine({
    args,
    options: {
      admin: ADMIN_OPTION,
      listen: { type: 'string', default: formatEndpoint(DEMO_LISTEN.host, DEMO_LISTEN.port) },
      plc: { type: 'string', default: formatEndpoint(DEMO_PLC.host, DEMO_PLC.port) },
      tls: { type: 'boolean', default: false },
    },
  });
  const admin = adminOption(values.admin);
  const listen = endpointOption(values.listen, '--listen');
  const plcAt = endpointOption(values.plc, '--plc');
  const logger = new Logger(stdoutSink, logIdentity(undefined, admin));
  if (values.tls) return tlsDemo(listen, plcAt, admin, logger);
  return serve(new FilePolicySource(DEMO_POLICY, demoParser(listen, plcAt), logger), logger, admin, DEFAULT_GRACE_MS, undefined, async () => {
    const plc = await startSimulatedPlc({ host: plcAt.host, port: plcAt.port, unitId: 1 });
    const proxyAt = formatEndpoint(listen.host, listen.port);
    const probe = `npx plcguard probe ${proxyAt}`;
    io.stderr(
      [
        '',
        `plcguard demo: simulated PLC on ${formatEndpoint(plcAt.host, plc.port)} (unit 1), plcguard in front of it on ${proxyAt}`,
        `policy: ${path.relative(process.cwd(), DEMO_POLICY)}${admin ? `; metrics: http://${formatEndpoint(admin.host, admin.port)}/metrics` : ''}`,
        '',
        'try, in another terminal:',
        `  ${probe} read holding_registers 0-9           # allowed: status and counters`,
        `  ${probe} read input_registers 0-3             # allowed: temperatures (0.1 °C)`,
        `  ${probe} write holding_registers 10=700       # allowed: supply setpoint 70.0 °C (bound 200..850)`,
        `  ${probe} write holding_registers 10=5000      # denied: value outside 200..850 (exception 0x03)`,
        `  ${probe} write holding_registers 50=1         # denied: address not allowed (exception 0x02)`,
        '',
        'audit lines (JSON) appear below; Ctrl-C stops.',
        '',
      ].join('\n'),
    );
    return () => plc.close();
  });
}

/** `demo --tls`: the demo PLC behind an mbaps listener, with throwaway certificates. */
async function tlsDemo(listen: Endpoint, plcAt: Endpoint, admin: Endpoint | null, logger: Logger): Promise<number> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'plcguard-demo-tls-'));
  const proxyAt = formatEndpoint(listen.host, listen.port);
  let files: TlsDemo;
  try {
    files = makeTlsDemo(dir, proxyAt, formatEndpoint(plcAt.host, plcAt.port));
    /* c8 ignore start -- openssl missing or broken: not so where the suite runs (.ci/run installs it) */
  } catch (err) {
    fs.rmSync(dir, { recursive: true, force: true });
    io.stderr(`plcguard demo: cannot make the demo certificates with openssl: ${(err as Error).message}`);
    return ExitCode.FAILURE;
  }
  /* c8 ignore stop */
  return serve(new FilePolicySource(files.policy, parsePolicy, logger), logger, admin, DEFAULT_GRACE_MS, undefined, async () => {
    const plc = await startSimulatedPlc({ host: plcAt.host, port: plcAt.port, unitId: 1 });
    const as = (c: CertFiles): string => `npx plcguard probe ${proxyAt} --tls-ca ${files.ca} --tls-cert ${c.cert} --tls-key ${c.key}`;
    io.stderr(
      [
        '',
        `plcguard demo --tls: simulated PLC on ${formatEndpoint(plcAt.host, plc.port)} (unit 1), plcguard in front of it on ${proxyAt} speaking Modbus/TCP Security`,
        `policy and throwaway certificates: ${dir} (removed at exit)`,
        '',
        'try, in another terminal:',
        `  ${as(files.operator)} write holding_registers 10=700   # Operator: allowed`,
        `  ${as(files.viewer)} read holding_registers 0-9   # Viewer: allowed`,
        `  ${as(files.viewer)} write holding_registers 10=700   # Viewer: denied (exception 0x01)`,
        `  npx plcguard probe ${proxyAt} read holding_registers 0-9   # plain Modbus/TCP: refused`,
        '',
        'audit lines (JSON, with role, subject_cn and cert_sha256) appear below; Ctrl-C stops.',
        '',
      ].join('\n'),
    );
    return async () => {
      await plc.close();
      fs.rmSync(dir, { recursive: true, force: true });
    };
  });
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'run':
      return await runCommand(RUN, rest, io, () => run(rest));
    case 'demo':
      return await runCommand(DEMO, rest, io, () => demo(rest));
    case 'policy':
      if ((STORE_COMMANDS as readonly string[]).includes(rest[0] ?? '')) return await storeCommand(rest[0]!, rest.slice(1), io, parsePolicy);
      return await policyCommand(rest, io);
    case 'probe':
      return await probeCommand(rest, io);
    case 'plc':
      return await runCommand(PLC, rest, io, () => plcCommand(rest, io));
    case 'hmi':
      return await runCommand(HMI, rest, io, () => hmiCommand(rest, io));
    case '--version':
    case 'version':
      io.stdout(VERSION);
      return ExitCode.OK;
    case '--help':
    case '-h':
    case 'help':
      io.stdout(USAGE);
      return ExitCode.OK;
    default:
      io.stderr(usageMessage('', command === undefined ? 'a command is required' : `unknown command ${JSON.stringify(command)}`));
      return ExitCode.USAGE;
  }
}

/* c8 ignore start -- runs only as the process's entry point (the binary): tests call main() in
   process and run the binary (test/cli.test.ts) without coverage, see test/fixtures/binary.ts.
   A rejection here is a bug: every expected failure has its exit code. */
if (process.argv[1] && fs.realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: Error) => {
      io.stderr(`plcguard: ${err.stack ?? err.message}`);
      process.exit(1);
    },
  );
}
/* c8 ignore stop */
