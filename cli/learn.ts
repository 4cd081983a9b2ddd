// `plcguard policy learn CAPTURE...`: a proposed policy from captures an engineer already has.
// Reads the captures (cli/capture.ts), observes every request and its answer (policy/learn/
// observe.ts), writes the proposal (policy/learn/propose.ts) and checks it as `policy validate`
// would before writing it. Returns exit codes and writes through `io`, like cli/policy.ts.

import fs from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { UsageError } from '../modbus/errors.js';
import { MAX_ADDRESS } from '../modbus/index.js';
import { Learner } from '../policy/learn/observe.js';
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
  --listen HOST:PORT       the device's listen address (one server only; default 0.0.0.0:ITS-PORT)
  --mode M                 every device's mode (default enforce)
  -o FILE                  write the policy there (default: standard output)
  --merge-gap N            join read ranges at most N unread addresses apart
  --widen-values PCT%|N    widen register value bounds by PCT % of each bound, or by N
  --group-sources V4[,V6]  one rule per IPv4 /V4 (IPv6 /V6, default /${DEFAULT_IPV6_GROUP}) network instead of per address
  Exits 0 with a proposal, 1 when a capture can't be read or holds no Modbus request, 2 on usage.

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
  let values: { port?: string; listen?: string; mode?: string; o?: string; 'merge-gap'?: string; 'widen-values'?: string; 'group-sources'?: string };
  let files: string[];
  try {
    ({ values, positionals: files } = parseArgs({
      args: [...args],
      options: {
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
  if (files.length === 0) return usage(io, 'give at least one CAPTURE file (pcap or pcapng)');
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
      captures: files,
      command: ['plcguard policy learn', ...args].join(' '),
    };
  } catch (err) {
    /* c8 ignore next -- the options above throw only UsageErrors */
    if (!(err instanceof UsageError)) throw err;
    return usage(io, err.message);
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

  const proposal = proposePolicy(obs, options);
  const check = parsePolicy(proposal.text, values.o ?? 'proposal');
  /* c8 ignore start -- a proposal the validator refuses is a bug in propose.ts; say so, write nothing */
  if (check.policy === undefined || check.warnings.length > 0) {
    for (const e of [...check.errors, ...check.warnings]) io.stderr(e.format());
    io.stderr('plcguard policy learn: the proposal does not validate (a bug: please report it with the capture)');
    return ExitCode.FAILURE;
  }
  /* c8 ignore stop */
  if (values.o === undefined) io.stdout(proposal.text);
  else {
    try {
      await fs.writeFile(values.o, proposal.text);
    } catch (err) {
      io.stderr(`plcguard policy learn: cannot write ${values.o}: ${(err as NodeJS.ErrnoException).code}`);
      return ExitCode.FAILURE;
    }
  }
  lines.push(`proposed: ${plural(proposal.devices, 'device')}, ${plural(proposal.rules, 'rule')} → ${values.o ?? 'standard output'}`);
  io.stderr(lines.map((l) => `plcguard policy learn: ${l}`).join('\n'));
  return ExitCode.OK;
}
