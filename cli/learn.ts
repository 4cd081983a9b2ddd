// `plcguard policy learn CAPTURE...`: a proposed policy from captures an engineer already has.
// Reads the captures (cli/capture.ts), observes every request and its answer (policy/learn/
// observe.ts), writes the proposal (policy/learn/propose.ts) and checks it as `policy validate`
// would before writing it. Returns exit codes and writes through `io`, like cli/policy.ts.

import fs from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { UsageError } from '../modbus/errors.js';
import { MAX_ADDRESS } from '../modbus/index.js';
import { ceilingWarnings, Learner, Observations, type DeviceObservation } from '../policy/learn/observe.js';
import { addSnapshot } from '../policy/learn/snapshot.js';
import { LearnStore } from '../policy/learn/store.js';
import { RedisConnection } from '../policy/store.js';
import { PlcguardError } from '../modbus/errors.js';
import { REDIS_OPTIONS, REDIS_OPTIONS_USAGE, storeOptions, type RedisValues } from './store.js';
import { PROPOSAL_MODES, proposePolicy, type ProposeOptions, type Widen } from '../policy/learn/propose.js';
import { endpointOption, formatEndpoint } from '../policy/net.js';
import { parsePolicy } from '../policy/parse.js';
import type { Mode } from '../policy/format.js';
import { CaptureFileError, captureSummary, readCaptures, serverPorts, terminalProgress, type CaptureIO } from './capture.js';
import { ExitCode, type CommandIo } from './command.js';

const IPV4_BITS = 32;
const IPV6_BITS = 128;
/** --group-sources with only an IPv4 prefix groups IPv6 sources by their /64 (one LAN). */
const DEFAULT_IPV6_GROUP = 64;
const MAX_WIDEN_PERCENT = 1000;
const MAX_REGISTER = 0xffff;

export const LEARN_USAGE = `usage:
  plcguard policy learn CAPTURE... [--port N[,N...]] [--listen HOST:PORT] [--mode enforce|monitor]
                        [-o FILE] [--merge-gap N] [--widen-values PCT%|N] [--group-sources V4[,V6]]
      Proposes the tightest policy that allows the Modbus/TCP traffic in pcap or pcapng captures
      (tcpdump, dumpcap, tshark, Wireshark): one device per server (the endpoints on port 502 and
      --port), one rule per client address and set of units, reads as the ranges seen, writes per
      address with the values seen, other functions by name; each with a comment saying how many
      requests and when. Several files are read as one capture, in the order given.
  plcguard policy learn --admin HOST:PORT [--mode M] [-o FILE] [loosening options]
      The same from what the devices in \`mode: learn\` of a running plcguard have seen (its admin
      endpoint); each keeps its name, listen and upstream.
  plcguard policy learn --redis URL [--device NAME[,NAME...]] [Redis options] [--mode M] [-o FILE] [...]
      The same from what every plcguard run with --redis has learned (all instances, all restarts).
  --listen HOST:PORT       the device's listen address (one server only; default 0.0.0.0:ITS-PORT)
  --mode M                 every device's mode (default enforce)
  -o FILE                  write the policy there (default: standard output)
  --merge-gap N            join read ranges at most N unread addresses apart
  --widen-values PCT%|N    widen register value bounds by PCT % of each bound, or by N
  --group-sources V4[,V6]  one rule per IPv4 /V4 (IPv6 /V6, default /${DEFAULT_IPV6_GROUP}) network instead of per address
  ${REDIS_OPTIONS_USAGE.replaceAll('\n', '\n  ')}
  Exits 0 with a proposal, 1 when a capture can't be read or holds no Modbus request (an instance
  or Redis that can't be reached or has learned nothing), 2 on usage.

example:
  plcguard policy learn plant-monday.pcapng --port 5020 -o proposed.yaml`;

function usage(io: CommandIo, message: string): number {
  io.stderr(`plcguard policy learn: ${message}\n\n${LEARN_USAGE}`);
  return ExitCode.USAGE;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function integerOption(value: string, what: string, max: number): number {
  const n = /^\d{1,6}$/.test(value) ? Number(value) : -1;
  if (n < 0 || n > max) throw new UsageError('ERR_USAGE', `${what}: ${JSON.stringify(value)} is not a whole number 0..${max}`);
  return n;
}

function widenOption(value: string): Widen {
  if (value.endsWith('%')) {
    const p = /^\d{1,4}(\.\d{1,3})?%$/.test(value) ? Number(value.slice(0, -1)) : -1;
    if (p < 0 || p > MAX_WIDEN_PERCENT) throw new UsageError('ERR_USAGE', `--widen-values: ${JSON.stringify(value)} is not a percentage 0%..${MAX_WIDEN_PERCENT}%`);
    return { percent: p };
  }
  return { amount: integerOption(value, '--widen-values', MAX_REGISTER) };
}

function groupOption(value: string): { v4: number; v6: number } {
  const [v4, v6, more] = value.split(',');
  if (more !== undefined) throw new UsageError('ERR_USAGE', `--group-sources: ${JSON.stringify(value)}: expected V4 or V4,V6 prefix lengths`);
  return { v4: integerOption(v4!, '--group-sources', IPV4_BITS), v6: v6 === undefined ? DEFAULT_IPV6_GROUP : integerOption(v6, '--group-sources', IPV6_BITS) };
}

/** Runs `plcguard policy learn ARGS…`; resolves to the exit code. */
export async function learnCommand(args: readonly string[], io: CaptureIO): Promise<number> {
  let values: LearnValues;
  let files: string[];
  try {
    ({ values, positionals: files } = parseArgs({
      args: [...args],
      options: {
        admin: { type: 'string' },
        device: { type: 'string' },
        ...REDIS_OPTIONS,
        port: { type: 'string' },
        listen: { type: 'string' },
        mode: { type: 'string' },
        o: { type: 'string', short: 'o' },
        'merge-gap': { type: 'string' },
        'widen-values': { type: 'string' },
        'group-sources': { type: 'string' },
      },
      allowPositionals: true,
      strict: true,
    }));
  } catch (err) {
    return usage(io, (err as Error).message);
  }
  const live = values.admin !== undefined ? '--admin' : values.redis !== undefined ? '--redis' : null;
  if (values.admin !== undefined && values.redis !== undefined) return usage(io, 'give --admin or --redis, not both');
  if (live !== null && files.length > 0) return usage(io, `${live} learns from a running plcguard: give no CAPTURE file with it`);
  if (live !== null && (values.port !== undefined || values.listen !== undefined)) return usage(io, `--port and --listen are for captures: with ${live} each device keeps its own listen address`);
  if (values.device !== undefined && values.redis === undefined) return usage(io, '--device goes with --redis');
  if (live === null && files.length === 0) return usage(io, 'give at least one CAPTURE file (pcap or pcapng), --admin HOST:PORT or --redis URL');
  if (values.mode !== undefined && !PROPOSAL_MODES.includes(values.mode as Mode)) {
    return usage(io, `--mode: ${JSON.stringify(values.mode)} is not one of ${PROPOSAL_MODES.join(', ')}`);
  }
  let options: ProposeOptions;
  let ports: Set<number>;
  try {
    const listen = values.listen === undefined ? undefined : endpointOption(values.listen, '--listen');
    ports = serverPorts(values.port);
    options = {
      mode: (values.mode ?? 'enforce') as Mode,
      ...(listen === undefined ? {} : { listen: formatEndpoint(listen.host, listen.port) }),
      mergeGap: values['merge-gap'] === undefined ? 0 : integerOption(values['merge-gap'], '--merge-gap', MAX_ADDRESS),
      widen: values['widen-values'] === undefined ? null : widenOption(values['widen-values']),
      groupSources: values['group-sources'] === undefined ? null : groupOption(values['group-sources']),
      ...(live === null ? { captures: files } : { learnedFrom: "plcguard's learn mode" }),
      command: ['plcguard policy learn', ...args].join(' '),
    };
  } catch (err) {
    /* c8 ignore next -- the options above throw only UsageErrors */
    if (!(err instanceof UsageError)) throw err;
    return usage(io, err.message);
  }

  if (live !== null) {
    let obs: Observations;
    try {
      obs = values.admin !== undefined ? await fromAdmin(values.admin) : await fromRedis(values, io);
    } catch (err) {
      if (err instanceof UsageError) return usage(io, err.message);
      /* c8 ignore next -- fromAdmin and fromRedis throw only plcguard's errors; anything else is a bug */
      if (!(err instanceof PlcguardError)) throw err;
      io.stderr(`plcguard policy learn: ${err.message}`);
      return ExitCode.FAILURE;
    }
    ceilingWarnings(obs);
    const c = obs.counts;
    const lines = [`learned: ${plural(c.requests, 'request')} (${c.exceptions} answered with an exception)${c.malformed > 0 ? `; ${plural(c.malformed, 'malformed request')} denied and not learned` : ''}${c.skipped > 0 ? `; ${plural(c.skipped, 'request')} past the ceilings not learned` : ''}`];
    for (const w of obs.warnings) lines.push(`warning: ${w}`);
    if (![...obs.devices.values()].some((d) => d.seen.count > 0)) {
      io.stderr(`plcguard policy learn: nothing learned yet from ${live === '--admin' ? `http://${values.admin}` : 'Redis'}: no device in learn mode has seen a well-formed request`);
      return ExitCode.FAILURE;
    }
    return propose(obs, options, values.o, lines, io);
  }

  const learner = new Learner();
  let run;
  try {
    run = await readCaptures(files, { serverPorts: ports, sink: learner, progress: io.progress ?? terminalProgress(), progressMinBytes: io.progressMinBytes, now: io.now });
  } catch (err) {
    /* c8 ignore next -- readCaptures throws only CaptureFileErrors */
    if (!(err instanceof CaptureFileError)) throw err;
    io.stderr(`plcguard policy learn: ${err.message}`);
    return ExitCode.FAILURE;
  }
  learner.finish();
  const obs = learner.observations;
  const c = obs.counts;
  const lines = captureSummary(run);
  lines.push(
    `learned: ${plural(c.requests, 'request')} (${c.exceptions} answered with an exception, ${c.unanswered} never answered)` +
      `${c.malformed > 0 ? `; ${plural(c.malformed, 'malformed request')} not learned (the proxy denies those anyway)` : ''}` +
      `${c.unmatchedResponses > 0 ? `; ${plural(c.unmatchedResponses, 'response')} to requests not in the capture` : ''}` +
      `${c.skipped > 0 ? `; ${plural(c.skipped, 'request')} past the ceilings not learned` : ''}`,
  );
  for (const w of obs.warnings) lines.push(`warning: ${w}`);
  const learned = [...obs.devices.values()].filter((d) => d.seen.count > 0);
  if (learned.length === 0) {
    io.stderr(lines.map((l) => `plcguard policy learn: ${l}`).join('\n'));
    io.stderr(`plcguard policy learn: no Modbus request to learn from (servers looked for on ${plural(ports.size, 'port')}: ${[...ports].join(', ')}; another one? --port)`);
    return ExitCode.FAILURE;
  }
  if (options.listen !== undefined && learned.length > 1) {
    return usage(io, `--listen gives one listen address, but the captures show ${learned.length} servers (${learned.map((d) => d.text).join(', ')})`);
  }

  return propose(obs, options, values.o, lines, io);
}

/** Writes the proposal (checked as `policy validate` would) to `out` or standard output, and the summary. */
async function propose(obs: Observations, options: ProposeOptions, out: string | undefined, lines: string[], io: CommandIo): Promise<number> {
  const proposal = proposePolicy(obs, options);
  const check = parsePolicy(proposal.text, out ?? 'proposal');
  /* c8 ignore start -- a proposal the validator refuses is a bug in propose.ts; say so, write nothing */
  if (check.policy === undefined || check.warnings.length > 0) {
    for (const e of [...check.errors, ...check.warnings]) io.stderr(e.format());
    io.stderr('plcguard policy learn: the proposal does not validate (a bug: please report it with the capture)');
    return ExitCode.FAILURE;
  }
  /* c8 ignore stop */
  if (out === undefined) io.stdout(proposal.text);
  else {
    try {
      await fs.writeFile(out, proposal.text);
    } catch (err) {
      io.stderr(`plcguard policy learn: cannot write ${out}: ${(err as NodeJS.ErrnoException).code}`);
      return ExitCode.FAILURE;
    }
  }
  lines.push(`proposed: ${plural(proposal.devices, 'device')}, ${plural(proposal.rules, 'rule')} → ${out ?? 'standard output'}`);
  io.stderr(lines.map((l) => `plcguard policy learn: ${l}`).join('\n'));
  return ExitCode.OK;
}

interface LearnValues extends RedisValues {
  admin?: string;
  device?: string;
  port?: string;
  listen?: string;
  mode?: string;
  o?: string;
  'merge-gap'?: string;
  'widen-values'?: string;
  'group-sources'?: string;
}

/** A running plcguard can't be asked (not reachable, not plcguard, an error). */
export class AdminFetchError extends PlcguardError {
  override readonly name = 'AdminFetchError';
  constructor(message: string, options?: ErrorOptions) {
    super('ERR_LEARN_ADMIN', message, options);
  }
}

/** How long the admin endpoint gets to answer. */
const ADMIN_TIMEOUT_MS = 10_000;

/** The observations of a running plcguard's learn-mode devices, from its admin endpoint. */
async function fromAdmin(admin: string): Promise<Observations> {
  const at = endpointOption(admin, '--admin');
  const url = `http://${formatEndpoint(at.host, at.port)}/learn/observations`;
  let body: unknown;
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(ADMIN_TIMEOUT_MS) });
    if (!res.ok) throw new AdminFetchError(`${url}: HTTP ${res.status} (not a plcguard with learn mode?)`);
    body = await res.json();
  } catch (err) {
    if (err instanceof AdminFetchError) throw err;
    const cause = (err as Error & { cause?: NodeJS.ErrnoException }).cause;
    throw new AdminFetchError(`cannot fetch ${url}: ${cause?.code ?? (err as Error).message}`, { cause: err });
  }
  const obs = new Observations();
  const devices = (body as { devices?: unknown }).devices;
  if (!Array.isArray(devices)) throw new AdminFetchError(`${url}: not the observations of a plcguard`);
  for (const d of devices) countSnapshot(obs, addSnapshot(obs, d));
  return obs;
}

/** The observations every instance merged into Redis (of --device NAME,... only, when given). */
async function fromRedis(values: LearnValues, io: CommandIo): Promise<Observations> {
  const opts = storeOptions(values, process.env, io.stderr, 'plcguard policy learn');
  const connection = new RedisConnection(opts);
  await connection.open();
  try {
    const names = values.device?.split(',').map((n) => n.trim()).filter(Boolean);
    const snaps = await new LearnStore(connection, opts.prefix).read(names);
    const obs = new Observations();
    for (const snap of snaps.values()) countSnapshot(obs, addSnapshot(obs, snap));
    return obs;
  } finally {
    connection.client.disconnect();
  }
}

/** Snapshots carry their device's totals; the summary's come from them. */
function countSnapshot(obs: Observations, d: DeviceObservation): void {
  const c = obs.counts;
  c.requests += d.seen.count;
  c.exceptions += d.seen.exceptions;
  c.malformed += d.malformed;
  c.skipped += d.skipped;
}
