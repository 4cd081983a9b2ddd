// `plcguard probe`: one Modbus request from the command line, through plcguard or straight to a
// PLC, with the answer printed as `table address: value` lines or as the exception it earned.
// The request is written in the words `policy check` reads (cli/request.ts), reads and writes only;
// it goes out as one ADU on a plain TCP connection (or over TLS, Modbus/TCP Security, with --tls-*),
// and modbus/ frames and checks the answer.
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import {
  checkResponse,
  exceptionName,
  Expectation,
  FrameSplitter,
  FUNCTION_NAMES,
  MAX_READ_BITS,
  MAX_READ_REGISTERS,
  MBAP_HEADER_LENGTH,
  PlcguardError,
  responseMatches,
  UsageError,
  type ModbusRequest,
} from '../modbus/index.js';
import { MAX_UNIT_ID, READ_TABLES, WRITE_TABLES } from '../policy/format.js';
import { endpointOption, formatEndpoint } from '../policy/net.js';
import { ExitCode, JSON_OPTION, parseCommandLine, runCommand, writeJson, type Command, type CommandIo } from './command.js';
import { DEFAULT_UNIT, frameRequest, parseRequestSpec } from './request.js';

export const DEFAULT_PROBE_TIMEOUT_MS = 3000;
const MAX_PROBE_TIMEOUT_MS = 600_000;
/** The request grammar's verbs probe sends: their answers are values it can print. */
const OPERATIONS: readonly string[] = ['read', 'write'];
/** Transaction id of the one request (any value works: nothing else travels on the connection). */
const PROBE_TRANSACTION_ID = 1;

export const PROBE_USAGE = `usage:
  plcguard probe HOST:PORT read TABLE RANGE [--unit N] [--timeout MS] [--json] [TLS options]
  plcguard probe HOST:PORT write TABLE ADDR=VALUE[,ADDR=VALUE...] [--unit N] [--timeout MS] [--json] [TLS options]

  HOST:PORT   the PLC or plcguard; IPv6 as [ADDRESS]:PORT
  TABLE       ${READ_TABLES.join(', ')} (write: ${WRITE_TABLES.join(', ')})
  RANGE       A or A-B: 0-based addresses, inclusive (read at most ${MAX_READ_REGISTERS} registers or ${MAX_READ_BITS} bits)
  ADDR=VALUE  registers 0..65535, coils 0 or 1; A-B=VALUE writes VALUE to A..B; in any order, over
              consecutive addresses; one address: FC6/FC5, several: FC16/FC15
              (addresses and values: decimal or 0x-hex)
  --unit N    unit id 0..${MAX_UNIT_ID} (default ${DEFAULT_UNIT})
  --timeout MS  for the connection and for the response, each (default ${DEFAULT_PROBE_TIMEOUT_MS})
  --tls-ca FILE    speak Modbus/TCP Security (mbaps, TLS): trust the server certificate's CA (PEM)
  --tls-cert FILE  this client's certificate (PEM; its role extension decides what plcguard allows)
  --tls-key FILE   its private key (PEM); --tls-cert and --tls-key go together
  --json      one JSON document instead of the lines: {"target", "unit", "request", "function_code",
              "operation", "table", "start", "values", "exception"}; values: those read or
              written (null after an exception), exception: its code (null when none)

exit status: ${ExitCode.OK} done, ${ExitCode.DENIED} Modbus exception, ${ExitCode.FAILURE} connection error, timeout or bad reply, ${ExitCode.USAGE} usage error`;

/** A command line that can't be run; the message names the argument and what was expected. */
export class ProbeUsageError extends UsageError {
  override readonly name = 'ProbeUsageError';
  constructor(message: string) {
    super('ERR_PROBE_USAGE', message);
  }
}

/** The request got no usable answer: no connection, no response, or one that doesn't answer it. */
export class ProbeFailure extends PlcguardError {
  override readonly name = 'ProbeFailure';
  constructor(message: string) {
    super('ERR_PROBE_FAILED', message);
  }
}

export interface ProbePlan {
  host: string;
  port: number;
  unit: number;
  timeoutMs: number;
  /** The request as framed and decoded (its ADU is request.buf). */
  request: ModbusRequest;
  /** How cli/request.ts describes it: `FC3 read_holding_registers holding_registers 0-9`. */
  description: string;
  /** Print one JSON document instead of lines. */
  json: boolean;
  /** Modbus/TCP Security: the PEM files given (read when connecting); null: plain Modbus/TCP. */
  tls: { ca?: string; cert?: string; key?: string } | null;
}

/** Parses the arguments after `probe`. Throws UsageErrors. */
export function parseProbeArgs(args: string[]): ProbePlan {
  const { values, positionals } = parseCommandLine({
    args,
    allowPositionals: true,
    strict: true,
    options: {
      unit: { type: 'string' },
      timeout: { type: 'string' },
      'tls-ca': { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      ...JSON_OPTION,
    },
  });
  const [target, operation, ...words] = positionals;
  if (target === undefined || operation === undefined) {
    throw new ProbeUsageError(
      `expected HOST:PORT, read or write, TABLE and a RANGE or ADDR=VALUE list; got ${positionals.length} argument(s)`,
    );
  }
  const endpoint = endpointOption(target, 'HOST:PORT');
  const unit = values.unit === undefined ? DEFAULT_UNIT : whole(values.unit, '--unit', 0, MAX_UNIT_ID);
  const timeoutMs =
    values.timeout === undefined ? DEFAULT_PROBE_TIMEOUT_MS : whole(values.timeout, '--timeout', 1, MAX_PROBE_TIMEOUT_MS);
  if (!OPERATIONS.includes(operation)) throw new ProbeUsageError(`operation "${operation}" is not read or write`);
  const spec = parseRequestSpec([operation, ...words]);
  const request = frameRequest(spec, PROBE_TRANSACTION_ID, unit);
  // `policy check` describes malformed requests (to show what plcguard does with them); probe sends
  // only what a conforming client would. The grammar bounds writes; this catches over-long reads.
  if (request.violation !== 'none') {
    throw new ProbeUsageError(`${spec.description} is malformed (${request.violation}); probe sends only well-formed requests`);
  }
  const { 'tls-ca': ca, 'tls-cert': cert, 'tls-key': key } = values;
  if ((cert === undefined) !== (key === undefined)) throw new ProbeUsageError('--tls-cert and --tls-key go together; got one of them');
  const tls = ca === undefined && cert === undefined ? null : { ca, cert, key };
  return { host: endpoint.host, port: endpoint.port, unit, timeoutMs, request, description: spec.description, json: values.json, tls };
}

function whole(text: string, what: string, min: number, max: number): number {
  const n = /^\d{1,7}$/.test(text) ? Number(text) : NaN;
  if (!(n >= min && n <= max)) throw new ProbeUsageError(`${what} must be a whole number ${min}..${max}, got "${text}"`);
  return n;
}

const PROBE: Command = { name: 'probe', usage: PROBE_USAGE };

/** `plcguard probe ...`: resolves the exit code. Never throws for bad input or network trouble. */
export async function probeCommand(args: string[], io: CommandIo): Promise<number> {
  return runCommand(PROBE, args, io, () => talk(parseProbeArgs(args), io), { message: (err) => `error: ${err.message}` });
}

/** Sends the plan's request and prints its answer; resolves the exit code. */
async function talk(plan: ProbePlan, io: CommandIo): Promise<number> {
  const { request: req, unit } = plan;
  const where = formatEndpoint(plan.host, plan.port);
  // Probe sends reads and writes only (OPERATIONS).
  const [table, start] = req.kind === 'read' ? [req.readTable!, req.readStart] : [req.writeTable!, req.writeStart];
  const json = (values: number[] | null, exception: number | null): void =>
    writeJson(io, { target: where, unit, request: plan.description, function_code: req.functionCode, operation: req.kind, table, start, values, exception });
  const exp = new Expectation().setFrom(req);
  const reply = await firstFrame(plan, where);
  const check = responseMatches(exp, reply, 0) ? checkResponse(exp, reply, 0, reply.length) : 'inconsistent';
  if (check === 'inconsistent') {
    const pdu = reply.subarray(MBAP_HEADER_LENGTH).toString('hex');
    throw new ProbeFailure(
      `bad response from ${where} unit ${unit}: transaction ${reply.readUInt16BE(0)}, unit ${reply[6]!}, PDU ${pdu} does not answer ${plan.description}`,
    );
  }
  if (check === 'exception') {
    // MB-AP §7: | FC|0x80 | exception code |
    const code = reply[MBAP_HEADER_LENGTH + 1]!;
    if (plan.json) json(null, code);
    else io.stdout(`exception 0x${code.toString(16).padStart(2, '0')} (${exceptionName(code)}) from ${where} unit ${unit}`);
    return ExitCode.DENIED;
  }
  const values = req.kind === 'read' ? readValues(req, reply) : req.writtenValues();
  if (plan.json) {
    json(values, null);
    return ExitCode.OK;
  }
  for (let i = 0; i < values.length; i++) io.stdout(`${table} ${start + i}: ${values[i]!}`);
  if (req.kind === 'write') {
    const fc = req.functionCode;
    io.stdout(`written with ${FUNCTION_NAMES.get(fc)!} (FC${fc}), acknowledged by ${where} unit ${unit}`);
  }
  return ExitCode.OK;
}

// A read's response (MB-AP §6.1–6.4), its byte count already checked against the request:
// | FC | byte count(1) | data |
// FC1/2: bit i of the read is bit i mod 8 of data byte i div 8 (LSB first);
// FC3/4: register i is the big-endian word at data offset 2i.
function readValues(req: ModbusRequest, reply: Buffer): number[] {
  const data = MBAP_HEADER_LENGTH + 2;
  const bits = req.readTable === 'coils' || req.readTable === 'discrete_inputs';
  return Array.from({ length: req.readQuantity }, (_, i) =>
    bits ? (reply[data + (i >> 3)]! >> (i & 7)) & 1 : reply.readUInt16BE(data + 2 * i),
  );
}

/** The PEM files of --tls-*, read; a file that can't be read is a ProbeFailure naming it. */
function readTlsFiles(files: NonNullable<ProbePlan['tls']>): tls.ConnectionOptions {
  const out: Record<string, Buffer> = {};
  for (const [k, file] of Object.entries(files)) {
    if (file === undefined) continue;
    try {
      out[k] = fs.readFileSync(file);
    } catch (err) {
      throw new ProbeFailure(`--tls-${k} ${file}: ${(err as Error).message}`);
    }
  }
  return out;
}

/**
 * Connects, sends the request and resolves the first whole frame that comes back (a copy). The
 * connection and the response each get timeoutMs. Rejects with ProbeFailure.
 */
function firstFrame(plan: ProbePlan, where: string): Promise<Buffer> {
  const { host, port, unit, timeoutMs, request } = plan;
  return new Promise<Buffer>((resolve, reject) => {
    const socket = plan.tls === null ? net.connect({ host, port }) : tls.connect({ host, port, ...readTlsFiles(plan.tls) });
    let connected = false;
    let done = false;
    let timer: NodeJS.Timeout | undefined;
    /** Ends the exchange; false when it had already ended (the close that follows our destroy). */
    const finish = (): boolean => {
      if (done) return false;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      return true;
    };
    const fail = (message: string): void => {
      if (finish()) reject(new ProbeFailure(message));
    };
    const deadline = (message: string): void => {
      clearTimeout(timer);
      timer = setTimeout(() => fail(message), timeoutMs);
    };
    // The first frame ends the exchange: the splitter pauses after it and the socket is destroyed.
    const splitter = new FrameSplitter({
      frame: (buf, start, end) => {
        finish();
        resolve(Buffer.from(buf.subarray(start, end)));
        return false;
      },
    });
    deadline(`no connection to ${where} within ${timeoutMs} ms`);
    // With TLS the request waits for the handshake: a refused certificate gets no byte of it.
    socket.on(plan.tls === null ? 'connect' : 'secureConnect', () => {
      connected = true;
      deadline(`no response from ${where} unit ${unit} within ${timeoutMs} ms`);
      socket.write(request.buf);
    });
    socket.on('data', (chunk: Buffer) => {
      const err = splitter.push(chunk);
      if (err) fail(`bad response from ${where} unit ${unit}: ${err.message}`);
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (connected) fail(`connection to ${where} lost before a response: ${err.message}`);
      else fail(err.code === 'ECONNREFUSED' ? `connection refused by ${where}` : `cannot connect to ${where}: ${err.message}`);
    });
    socket.on('close', () => fail(`connection closed by ${where} before a response`));
  });
}
