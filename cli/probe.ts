// `plcguard probe`: one Modbus request from the command line, through plcguard or straight to a
// PLC, with the answer printed as `table address: value` lines or as the exception it earned.
// Built on modbus-serial's TCP client; every call into it goes through the typed helpers below.
import type { EventEmitter } from 'node:events';
import { parseArgs } from 'node:util';
// eslint-disable-next-line no-restricted-imports -- until probe speaks through modbus/ itself (next step)
import ModbusSerial from 'modbus-serial';
import {
  exceptionName,
  PlcguardError,
  UsageError,
  FunctionCode,
  FUNCTION_NAMES,
  MAX_ADDRESS,
  MAX_READ_BITS,
  MAX_READ_REGISTERS,
  MAX_WRITE_COILS,
  MAX_WRITE_REGISTERS,
  type Table,
} from '../modbus/index.js';
import { endpointOption, formatEndpoint } from '../policy/net.js';

// modbus-serial is CommonJS (`module.exports = ModbusRTU`, with `.default` pointing back at it);
// under NodeNext the default import is module.exports, typed as the module, so the class is .default.
const ModbusRTU = ModbusSerial.default;
type Client = InstanceType<typeof ModbusRTU>;

export interface ProbeIo {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
}

/** Exit codes of `plcguard probe`. */
export const ProbeExit = { OK: 0, ERROR: 1, USAGE: 2, EXCEPTION: 3 } as const;

export const DEFAULT_PROBE_TIMEOUT_MS = 3000;
const MAX_PROBE_TIMEOUT_MS = 600_000;
const MAX_UNIT_ID = 255;
const MAX_REGISTER_VALUE = 0xffff;

const TABLES: readonly Table[] = ['holding_registers', 'input_registers', 'coils', 'discrete_inputs'];
const WRITABLE: readonly Table[] = ['holding_registers', 'coils'];

export const PROBE_USAGE = `usage:
  plcguard probe HOST:PORT read TABLE RANGE [--unit N] [--timeout MS]
  plcguard probe HOST:PORT write TABLE ADDR=VALUE[,ADDR=VALUE...] [--unit N] [--timeout MS]

  HOST:PORT   the PLC or plcguard; IPv6 as [ADDRESS]:PORT
  TABLE       holding_registers, input_registers, coils, discrete_inputs (write: holding_registers, coils)
  RANGE       A or A-B: 0-based addresses, inclusive (read at most ${MAX_READ_REGISTERS} registers or ${MAX_READ_BITS} bits)
  ADDR=VALUE  registers 0..${MAX_REGISTER_VALUE}, coils 0 or 1; one address: FC6/FC5, several contiguous: FC16/FC15
  --unit N    unit id 0..${MAX_UNIT_ID} (default 1)
  --timeout MS  for the connection and for the response, each (default ${DEFAULT_PROBE_TIMEOUT_MS})

exit status: 0 done, 3 Modbus exception, 1 connection error, timeout or bad reply, 2 usage error`;

/** A command line that can't be run; the message names the argument and what was expected. */
export class ProbeUsageError extends UsageError {
  override readonly name = 'ProbeUsageError';
  constructor(message: string) {
    super('ERR_PROBE_USAGE', message);
  }
}

export interface ProbeRead {
  op: 'read';
  table: Table;
  start: number;
  quantity: number;
}

export interface ProbeWrite {
  op: 'write';
  table: 'holding_registers' | 'coils';
  start: number;
  /** Registers 0..65535 or coils 0/1, for start, start+1, ... */
  values: number[];
}

export interface ProbePlan {
  host: string;
  port: number;
  unit: number;
  timeoutMs: number;
  action: ProbeRead | ProbeWrite;
}

/** Parses the arguments after `probe`. Throws ProbeUsageError. */
export function parseProbeArgs(args: string[]): ProbePlan {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      strict: true,
      options: { unit: { type: 'string' }, timeout: { type: 'string' } },
    });
  } catch (err) {
    throw new ProbeUsageError((err as Error).message);
  }
  const { values, positionals } = parsed;
  const [target, op, table, spec, ...extra] = positionals;
  if (target === undefined || op === undefined || table === undefined || spec === undefined) {
    throw new ProbeUsageError(
      `expected HOST:PORT, read or write, TABLE and a RANGE or ADDR=VALUE list; got ${positionals.length} argument(s)`,
    );
  }
  if (extra.length > 0) throw new ProbeUsageError(`unexpected argument "${extra[0]}"`);
  let endpoint;
  try {
    endpoint = endpointOption(target, 'HOST:PORT');
  } catch (err) {
    throw new ProbeUsageError((err as Error).message);
  }
  const unit = values.unit === undefined ? 1 : whole(values.unit, '--unit', 0, MAX_UNIT_ID);
  const timeoutMs =
    values.timeout === undefined ? DEFAULT_PROBE_TIMEOUT_MS : whole(values.timeout, '--timeout', 1, MAX_PROBE_TIMEOUT_MS);
  if (!(TABLES as readonly string[]).includes(table)) {
    throw new ProbeUsageError(`TABLE "${table}" is not one of ${TABLES.join(', ')}`);
  }
  const t = table as Table;
  let action: ProbeRead | ProbeWrite;
  if (op === 'read') action = parseRead(t, spec);
  else if (op === 'write') action = parseWrite(t, spec);
  else throw new ProbeUsageError(`operation "${op}" is not read or write`);
  return { host: endpoint.host, port: endpoint.port, unit, timeoutMs, action };
}

function whole(text: string, what: string, min: number, max: number): number {
  const n = /^\d{1,7}$/.test(text) ? Number(text) : NaN;
  if (!(n >= min && n <= max)) throw new ProbeUsageError(`${what} must be a whole number ${min}..${max}, got "${text}"`);
  return n;
}

function parseRead(table: Table, spec: string): ProbeRead {
  const m = /^([^-]+)(?:-(.*))?$/.exec(spec);
  if (!m) throw new ProbeUsageError(`RANGE "${spec}" is not A or A-B`);
  const start = whole(m[1]!, 'start address', 0, MAX_ADDRESS);
  const end = m[2] === undefined ? start : whole(m[2], 'end address', 0, MAX_ADDRESS);
  if (end < start) throw new ProbeUsageError(`RANGE "${spec}" is reversed: ${start} > ${end}`);
  const quantity = end - start + 1;
  const bits = table === 'coils' || table === 'discrete_inputs';
  const max = bits ? MAX_READ_BITS : MAX_READ_REGISTERS;
  if (quantity > max) {
    throw new ProbeUsageError(`RANGE "${spec}" is ${quantity} ${table}; one read takes at most ${max}`);
  }
  return { op: 'read', table, start, quantity };
}

function parseWrite(table: Table, spec: string): ProbeWrite {
  if (!(WRITABLE as readonly string[]).includes(table)) {
    throw new ProbeUsageError(`${table} are read-only; write holding_registers or coils`);
  }
  const coils = table === 'coils';
  const pairs = spec.split(',').map((item) => {
    const eq = item.indexOf('=');
    if (eq < 0) throw new ProbeUsageError(`"${item}" is not ADDR=VALUE`);
    const addr = whole(item.slice(0, eq), 'address', 0, MAX_ADDRESS);
    const text = item.slice(eq + 1);
    const value = whole(text, `value for ${table} ${addr}`, 0, coils ? 1 : MAX_REGISTER_VALUE);
    return [addr, value] as const;
  });
  pairs.sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < pairs.length; i++) {
    const prev = pairs[i - 1]![0];
    const addr = pairs[i]![0];
    if (addr === prev) throw new ProbeUsageError(`address ${addr} is written twice`);
    if (addr !== prev + 1) {
      throw new ProbeUsageError(`addresses ${prev} and ${addr} are not contiguous; one request writes one contiguous range`);
    }
  }
  const max = coils ? MAX_WRITE_COILS : MAX_WRITE_REGISTERS;
  if (pairs.length > max) throw new ProbeUsageError(`${pairs.length} ${table} in one write; at most ${max}`);
  return { op: 'write', table: coils ? 'coils' : 'holding_registers', start: pairs[0]![0], values: pairs.map((p) => p[1]) };
}

/** The function code a write sends: FC5/FC6 for one address, FC15/FC16 for several. */
function writeFunctionCode(action: ProbeWrite): number {
  const single = action.values.length === 1;
  if (action.table === 'coils') return single ? FunctionCode.WRITE_SINGLE_COIL : FunctionCode.WRITE_MULTIPLE_COILS;
  return single ? FunctionCode.WRITE_SINGLE_REGISTER : FunctionCode.WRITE_MULTIPLE_REGISTERS;
}

/** The request got no usable answer: no connection, no response, or one that doesn't answer it. */
export class ProbeFailure extends PlcguardError {
  override readonly name = 'ProbeFailure';
  constructor(message: string) {
    super('ERR_PROBE_FAILED', message);
  }
}

interface ErrorFields {
  message: string;
  /** Node's socket error code, e.g. ECONNREFUSED. */
  code?: unknown;
  /** The exception code of a Modbus exception reply. */
  modbusCode?: unknown;
}

/** modbus-serial rejects with Errors and with Error-like objects (its timeout and port errors). */
function fields(err: unknown): ErrorFields {
  return Object(err) as ErrorFields;
}

/**
 * Waits for `work`, but at most `ms`, and not past the connection closing. Our own deadline, not
 * modbus-serial's: it keeps a request pending when the peer closes (a proxy that denies by closing),
 * and its connect "timeout" is a socket idle timer that leaves the socket connecting.
 * (Its client is an EventEmitter; the typings declare only on(), hence the cast for off().)
 */
function guarded<T>(client: Client, work: Promise<T>, ms: number, timeoutMessage: string, closedMessage: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const stop = (): void => {
      clearTimeout(timer);
      (client as unknown as EventEmitter).off('close', onClose);
    };
    const onClose = (): void => {
      stop();
      reject(new ProbeFailure(closedMessage));
    };
    const timer = setTimeout(() => {
      stop();
      reject(new ProbeFailure(timeoutMessage));
    }, ms);
    client.on('close', onClose);
    // modbus-serial rejects with Errors or Error-like objects (see fields()).
    work.then(
      (v) => {
        stop();
        resolve(v);
      },
      (err: Error) => {
        stop();
        reject(err);
      },
    );
  });
}

/** Sends the plan's request; resolves the values read, or those written once acknowledged. */
async function exchange(client: Client, action: ProbeRead | ProbeWrite): Promise<number[]> {
  if (action.op === 'read') {
    const { start, quantity } = action;
    switch (action.table) {
      case 'coils':
        return (await client.readCoils(start, quantity)).data.slice(0, quantity).map(Number);
      case 'discrete_inputs':
        return (await client.readDiscreteInputs(start, quantity)).data.slice(0, quantity).map(Number);
      case 'holding_registers':
        return (await client.readHoldingRegisters(start, quantity)).data;
      case 'input_registers':
        return (await client.readInputRegisters(start, quantity)).data;
    }
  }
  const { start, values } = action;
  let echo: { address: number; second: number };
  let expected: number;
  if (values.length === 1) {
    expected = values[0]!;
    if (action.table === 'coils') {
      const r = await client.writeCoil(start, expected === 1);
      echo = { address: r.address, second: Number(r.state) };
    } else {
      const r = await client.writeRegister(start, expected);
      echo = { address: r.address, second: r.value };
    }
  } else {
    expected = values.length;
    const r =
      action.table === 'coils'
        ? await client.writeCoils(start, values.map((v) => v === 1))
        : await client.writeRegisters(start, values);
    echo = { address: r.address, second: r.length };
  }
  if (echo.address !== start || echo.second !== expected) {
    throw new Error(`the reply echoes address ${echo.address} and ${echo.second}, expected ${start} and ${expected}`);
  }
  return values;
}

/** `plcguard probe ...`: resolves the exit code. Never throws for bad input or network trouble. */
export async function probeCommand(args: string[], io: ProbeIo): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) {
    io.stdout(PROBE_USAGE);
    return ProbeExit.OK;
  }
  let plan: ProbePlan;
  try {
    plan = parseProbeArgs(args);
  } catch (err) {
    io.stderr(`plcguard probe: ${(err as Error).message}\n\n${PROBE_USAGE}`);
    return ProbeExit.USAGE;
  }
  const client = new ModbusRTU();
  const code = await talk(client, plan, io);
  // destroy, not close: close waits for a 'close' that never comes when the peer already left.
  client.destroy(() => {});
  return code;
}

/** Connects, sends, prints; resolves the exit code. */
async function talk(client: Client, plan: ProbePlan, io: ProbeIo): Promise<number> {
  const { host, port, unit, timeoutMs, action } = plan;
  const where = formatEndpoint(host, port);
  try {
    const connecting = client.connectTCP(host, { port }).catch((err: unknown) => {
      const f = fields(err);
      const refused = f.code === 'ECONNREFUSED';
      throw new ProbeFailure(refused ? `connection refused by ${where}` : `cannot connect to ${where}: ${f.message}`);
    });
    await guarded(
      client,
      connecting,
      timeoutMs,
      `no connection to ${where} within ${timeoutMs} ms`,
      `connection to ${where} closed while connecting`,
    );
    client.setID(unit);
    const values = await guarded(
      client,
      exchange(client, action),
      timeoutMs,
      `no response from ${where} unit ${unit} within ${timeoutMs} ms`,
      `connection closed by ${where} before a response`,
    );
    for (let i = 0; i < values.length; i++) io.stdout(`${action.table} ${action.start + i}: ${values[i]}`);
    if (action.op === 'write') {
      const fc = writeFunctionCode(action);
      io.stdout(`written with ${FUNCTION_NAMES.get(fc)} (FC${fc}), acknowledged by ${where} unit ${unit}`);
    }
    return ProbeExit.OK;
  } catch (err) {
    const f = fields(err);
    if (typeof f.modbusCode === 'number') {
      const code = f.modbusCode;
      io.stdout(`exception 0x${code.toString(16).padStart(2, '0')} (${exceptionName(code)}) from ${where} unit ${unit}`);
      return ProbeExit.EXCEPTION;
    }
    const message = err instanceof ProbeFailure ? f.message : `bad response from ${where} unit ${unit}: ${f.message}`;
    io.stderr(`error: ${message}`);
    return ProbeExit.ERROR;
  }
}
