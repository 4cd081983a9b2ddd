// `plcguard policy check --policy FILE --pcap CAPTURE...`: every request in the captures judged as
// the running proxy would judge it: the same decoder (modbus/ decodeRequest) and the same matcher
// (the compiled device's forSource, resolved once per connection as a session does, then decide).
// Counts by decision and reason, the first denied requests, exit 3 when anything would be denied.
// What it can't replay: rate limits and connection limits (they depend on timing and load).

import { parseArgs } from 'node:util';
import { UsageError } from '../modbus/errors.js';
import { decodeRequest, FUNCTION_NAMES, ModbusRequest } from '../modbus/index.js';
import type { ModbusStreamSink, TcpStream } from '../modbus/capture/index.js';
import { endpoint } from '../policy/learn/observe.js';
import { formatIp, parseClientAddress } from '../policy/net.js';
import { loadPolicyFile } from '../policy/parse.js';
import { Decision, DECISION_REASONS } from '../policy/types.js';
import type { CompiledDevice, CompiledPolicy, DecisionReason, SourceView } from '../policy/types.js';
import { CaptureFileError, captureSummary, readCaptures, serverPorts, terminalProgress, type CaptureIO } from './capture.js';
import { exceptionText } from './decision.js';
import { ExitCode, type CommandIo } from './command.js';

/** Denied requests listed by default. */
const DEFAULT_SHOW = 10;
const MAX_SHOW = 10_000;
/** Written values shown per denied write. */
const VALUES_SHOWN = 4;
/** The reasons a replay counts, in the order they are printed. */
type ReplayReason = DecisionReason | 'no_device';

export const REPLAY_USAGE = `usage:
  plcguard policy check --policy FILE --pcap CAPTURE... [--port N[,N...]] [--device NAME] [--show N]
      Replays captures against a policy: every Modbus request in them decided as the proxy would
      (same decoder, same rules), counted by decision and reason, the first N denied requests
      listed (default ${DEFAULT_SHOW}). A request goes to the device whose upstream (or listen
      address) is the server it was sent to, or to --device NAME for all of them. Servers are the
      endpoints on port 502, --port, and the policy's own ports. Rate and connection limits are not
      replayed. Exits 0 when nothing would be denied, 3 when something would, 1 when the policy or
      a capture can't be used, 2 on usage.

example:
  plcguard policy check --policy proposed.yaml --pcap plant-tuesday.pcapng`;

function usage(io: CommandIo, message: string): number {
  io.stderr(`plcguard policy check: ${message}\n\n${REPLAY_USAGE}`);
  return ExitCode.USAGE;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** What a stream is judged against: found on its first request. */
interface Judged {
  device: CompiledDevice | null;
  view: SourceView | null;
  client: string;
  server: string;
}

/** One line about a request: its function, unit and what it touches. */
export function describeRequest(r: ModbusRequest): string {
  const name = FUNCTION_NAMES.get(r.functionCode) ?? `function ${r.functionCode}`;
  const parts = [`unit ${r.unitId}`, name];
  const range = (start: number, quantity: number): string => (quantity <= 1 ? `${start}` : `${start}-${start + quantity - 1}`);
  if (r.violation !== 'none') parts.push(`(malformed: ${r.violation})`);
  else if (r.kind === 'read' || r.kind === 'read_write') parts.push(`${r.readTable} ${range(r.readStart, r.readQuantity)}`);
  if (r.violation === 'none' && (r.kind === 'write' || r.kind === 'read_write')) {
    const values = r.writtenValues();
    const shown = values.slice(0, VALUES_SHOWN).join(', ') + (values.length > VALUES_SHOWN ? ', ...' : '');
    parts.push(`${r.kind === 'read_write' ? 'write ' : ''}${r.writeTable} ${range(r.writeStart, r.writeQuantity)} = ${shown}`);
  }
  if (r.violation === 'none' && r.kind === 'mask_write') parts.push(`${r.writeTable} ${r.writeStart} and 0x${r.andMask.toString(16)} or 0x${r.orMask.toString(16)}`);
  if (r.subFunction >= 0) parts.push(`sub-function ${r.subFunction}`);
  if (r.meiType >= 0) parts.push(`MEI type ${r.meiType}`);
  return parts.join(' ');
}

/** Judges every request of every stream against a compiled policy. */
class Replay implements ModbusStreamSink {
  readonly counts = new Map<ReplayReason, number>();
  readonly denied: string[] = [];
  /** Denials per device in monitor mode (forwarded there, not enforced). */
  readonly monitored = new Map<string, number>();
  readonly noDevice = new Map<string, number>();
  total = 0;
  private readonly req = new ModbusRequest();
  private readonly decision = new Decision();

  constructor(
    private readonly policy: CompiledPolicy,
    private readonly forced: CompiledDevice | null,
    private readonly show: number,
  ) {}

  private judged(stream: TcpStream): Judged {
    let j = stream.context as Judged | undefined;
    if (j !== undefined) return j;
    const client = formatIp(stream.client);
    const server = endpoint(stream.server, stream.serverPort);
    const device = this.forced ?? this.deviceFor(stream);
    j = { device, view: device === null ? null : device.forSource(client), client, server };
    stream.context = j;
    return j;
  }

  /** The device in front of this server: by upstream, else by listen address. */
  private deviceFor(stream: TcpStream): CompiledDevice | null {
    const same = (host: string, wildcard: boolean): boolean => {
      const ip = parseClientAddress(host);
      if (ip === null) return false;
      if (wildcard && ip.w0 === 0 && ip.w1 === 0 && ip.w2 === 0 && ip.w3 === 0) return true;
      const s = stream.server;
      return ip.family === s.family && ip.w0 === s.w0 && ip.w1 === s.w1 && ip.w2 === s.w2 && ip.w3 === s.w3;
    };
    const devices = [...this.policy.devices.values()];
    return (
      devices.find((d) => d.upstream.port === stream.serverPort && same(d.upstream.host, false)) ??
      devices.find((d) => d.listen.port === stream.serverPort && same(d.listen.host, true)) ??
      null
    );
  }

  request(stream: TcpStream, buf: Buffer, start: number, end: number, timeMs: number): void {
    const j = this.judged(stream);
    const r = decodeRequest(buf, start, end, this.req);
    this.total++;
    let reason: ReplayReason;
    let detail: string;
    if (j.device === null) {
      reason = 'no_device';
      detail = `no device in the policy for ${j.server}`;
      this.noDevice.set(j.server, (this.noDevice.get(j.server) ?? 0) + 1);
    } else {
      const d = j.device.decide(j.view!, r, this.decision);
      reason = d.reason;
      if (d.allow) {
        this.counts.set(reason, (this.counts.get(reason) ?? 0) + 1);
        return;
      }
      if (j.device.mode === 'monitor') this.monitored.set(j.device.name, (this.monitored.get(j.device.name) ?? 0) + 1);
      const exception = reason === 'source_not_allowed' ? 'connection refused' : `exception ${exceptionText(d.exception)}`;
      detail = `${reason}; ${exception}; rule ${d.rule ?? 'none'}`;
    }
    this.counts.set(reason, (this.counts.get(reason) ?? 0) + 1);
    if (this.denied.length < this.show) {
      const where = j.device === null ? j.server : j.device.name;
      this.denied.push(`${new Date(timeMs).toISOString()}  ${j.client} → ${where}  ${describeRequest(r)}: ${detail}`);
    }
  }

  response(): void {}

  closed(): void {}
}

/** Runs `plcguard policy check --policy FILE --pcap CAPTURE…`; resolves to the exit code. */
export async function replayCommand(args: readonly string[], io: CaptureIO): Promise<number> {
  let values: { policy?: string; pcap?: string[]; port?: string; device?: string; show?: string };
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: [...args],
      options: {
        policy: { type: 'string' },
        pcap: { type: 'string', multiple: true },
        port: { type: 'string' },
        device: { type: 'string' },
        show: { type: 'string' },
      },
      allowPositionals: true,
      strict: true,
    }));
  } catch (err) {
    return usage(io, (err as Error).message);
  }
  // `--pcap a b c`: the files after the first come as positionals.
  const files = [...(values.pcap ?? []), ...positionals];
  if (values.policy === undefined) return usage(io, 'give the policy with --policy FILE');
  if (files.length === 0) return usage(io, 'give at least one capture with --pcap CAPTURE');
  const show = values.show === undefined ? DEFAULT_SHOW : /^\d{1,5}$/.test(values.show) ? Number(values.show) : -1;
  if (show < 0 || show > MAX_SHOW) return usage(io, `--show: ${JSON.stringify(values.show)} is not a number 0..${MAX_SHOW}`);

  const loaded = await loadPolicyFile(values.policy).catch((err: Error) => err);
  if (loaded instanceof Error) {
    io.stderr(loaded.message);
    return ExitCode.FAILURE;
  }
  if (loaded.policy === undefined) {
    for (const e of loaded.errors) io.stderr(e.format());
    io.stderr(`${values.policy}: invalid — ${plural(loaded.errors.length, 'error')}`);
    return ExitCode.FAILURE;
  }
  const policy = loaded.policy;
  let forced: CompiledDevice | null = null;
  if (values.device !== undefined) {
    forced = policy.devices.get(values.device) ?? null;
    if (forced === null) return usage(io, `${values.policy} has no device ${JSON.stringify(values.device)} (devices: ${[...policy.devices.keys()].join(', ') || 'none'})`);
  }
  let ports: Set<number>;
  try {
    const own = [...policy.devices.values()].flatMap((d) => [d.upstream.port, d.listen.port]);
    ports = serverPorts(values.port, own);
  } catch (err) {
    /* c8 ignore next -- serverPorts throws only UsageErrors */
    if (!(err instanceof UsageError)) throw err;
    return usage(io, err.message);
  }

  const replay = new Replay(policy, forced, show);
  let run;
  try {
    run = await readCaptures(files, { serverPorts: ports, sink: replay, progress: io.progress ?? terminalProgress(), progressMinBytes: io.progressMinBytes, now: io.now });
  } catch (err) {
    /* c8 ignore next -- readCaptures throws only CaptureFileErrors */
    if (!(err instanceof CaptureFileError)) throw err;
    io.stderr(`plcguard policy check: ${err.message}`);
    return ExitCode.FAILURE;
  }

  const lines = [`policy: ${values.policy} (${plural(policy.devices.size, 'device')})`, ...captureSummary(run)];
  const allowed = replay.counts.get('allowed') ?? 0;
  const deniedTotal = replay.total - allowed;
  lines.push(`judged: ${plural(replay.total, 'request')}`, `  allowed ${String(allowed).padStart(24 - 'allowed'.length)}`, `  denied ${String(deniedTotal).padStart(24 - 'denied'.length)}`);
  for (const reason of [...DECISION_REASONS, 'no_device' as const]) {
    const n = replay.counts.get(reason) ?? 0;
    if (reason !== 'allowed' && n > 0) lines.push(`    ${reason} ${String(n).padStart(22 - reason.length)}`);
  }
  for (const [server, n] of replay.noDevice) lines.push(`no device in the policy for ${server}: ${plural(n, 'request')} (give --device NAME to judge them against one)`);
  for (const [name, n] of replay.monitored) lines.push(`${name} is in monitor mode: its ${plural(n, 'denial')} would be forwarded and counted, not enforced`);
  if (run.streams.framingErrors > 0) lines.push(`${plural(run.streams.framingErrors, 'framing error')}: the proxy would close those connections`);
  if (replay.denied.length > 0) lines.push(`first denied requests:`, ...replay.denied.map((d) => `  ${d}`));
  const wouldDeny = deniedTotal + run.streams.framingErrors;
  lines.push(wouldDeny === 0 ? `result: all ${plural(replay.total, 'request')} would be allowed` : `result: ${deniedTotal} of ${plural(replay.total, 'request')} would be denied${run.streams.framingErrors > 0 ? `, ${plural(run.streams.framingErrors, 'connection')} closed` : ''}`);
  io.stdout(lines.join('\n'));
  return wouldDeny === 0 ? ExitCode.OK : ExitCode.DENIED;
}
