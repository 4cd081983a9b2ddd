// The request language of `plcguard policy check` and `plcguard probe`: words → the request PDU a
// client would send. check frames, decodes and decides those bytes exactly as the proxy would;
// probe sends them.

import {
  COIL_ON,
  decodeRequest,
  DIAG_RETURN_QUERY_DATA,
  encodeAdu,
  FILE_REFERENCE_TYPE,
  FUNCTION_NAMES,
  FunctionCode,
  MAX_ADDRESS,
  MAX_PDU_LENGTH,
  MAX_RW_READ_REGISTERS,
  MAX_RW_WRITE_REGISTERS,
  MAX_WRITE_COILS,
  MAX_WRITE_REGISTERS,
  MEI_READ_DEVICE_IDENTIFICATION,
  MIN_READ_DEVICE_ID_CODE,
  ModbusRequest,
  UsageError,
} from '../modbus/index.js';
import { ADDRESS_MODEL_FUNCTIONS, FUNCTION_CODE_BY_NAME, READ_DEVICE_IDENTIFICATION, READ_TABLES, WRITE_TABLES } from '../policy/format.js';
import type { ReadTable } from '../policy/format.js';

export const REQUEST_USAGE = `REQUEST is one of:
  read TABLE A[-B]                    FC1-4; TABLE: ${READ_TABLES.join(', ')}
  write coils A=0|1[,A=0|1...]        FC5 (one coil) or FC15 (consecutive coils)
  write holding_registers A=V[,A=V...]
                                      FC6 (one register) or FC16 (consecutive registers);
                                      A-B=V writes V to A..B
  mask_write A AND OR                 FC22
  read_write A-B A=V[,A=V...]         FC23: read holding A..B, write the assignments
  read_fifo_queue A                   FC24
  function CODE[/SUB]                 CODE: a number or name (e.g. report_server_id, 90);
                                      SUB: diagnostics sub-function (default 0) or
                                      MEI type (default 14 = read device identification)
  raw HEX                             any PDU, function code first (e.g. 5a0001)
Assignments may come in any order; together they cover consecutive addresses.
Numbers are decimal or 0x-hex; addresses are 0-based.`;

/** Unit id of a request when none is given: the usual id of a single PLC behind a gateway. */
export const DEFAULT_UNIT = 1;

/** Request words that describe no request. */
export class RequestSpecError extends UsageError {
  override readonly name = 'RequestSpecError';
  constructor(message: string) {
    super('ERR_POLICY_CHECK_REQUEST', message);
  }
}

/** The PDU to send and how to describe it. */
export interface RequestSpec {
  readonly pdu: Buffer;
  readonly description: string;
}

/** The request as a whole ADU for `unit`, decoded as the proxy decodes it (the ADU is `buf`). */
export function frameRequest(spec: RequestSpec, transactionId: number, unit: number): ModbusRequest {
  const adu = encodeAdu(transactionId, unit, spec.pdu);
  return decodeRequest(adu, 0, adu.length, new ModbusRequest());
}

const READ_FC: Record<ReadTable, number> = {
  coils: FunctionCode.READ_COILS,
  discrete_inputs: FunctionCode.READ_DISCRETE_INPUTS,
  holding_registers: FunctionCode.READ_HOLDING_REGISTERS,
  input_registers: FunctionCode.READ_INPUT_REGISTERS,
};
const MAX_U16 = 0xffff;
const MAX_FC = 0xff;

function num(s: string, what: string, max: number): number {
  if (!/^(0x[0-9a-f]+|\d+)$/i.test(s)) throw new RequestSpecError(`${what} ${JSON.stringify(s)} is not a number`);
  const n = Number(s);
  if (n > max) throw new RequestSpecError(`${what} ${s} is out of range 0..${max}`);
  return n;
}

function addressRange(s: string): [number, number] {
  const dash = s.indexOf('-');
  const lo = num(dash < 0 ? s : s.slice(0, dash), 'address', MAX_ADDRESS);
  const hi = dash < 0 ? lo : num(s.slice(dash + 1), 'address', MAX_ADDRESS);
  if (lo > hi) throw new RequestSpecError(`address range ${s} is reversed`);
  return [lo, hi];
}

function u16(n: number): number[] {
  return [n >> 8, n & 0xff];
}

/**
 * `10=500,11=600` or `10-12=7` (several words are joined), in any order: the values of consecutive
 * addresses, from the lowest.
 */
function assignments(words: readonly string[], maxValue: number): { start: number; values: number[] } {
  const items = words.join(',').split(',').map((w) => w.trim()).filter((w) => w !== '');
  if (items.length === 0) throw new RequestSpecError('expected ADDR=VALUE assignments');
  const runs = items.map((item) => {
    const eq = item.indexOf('=');
    if (eq < 0) throw new RequestSpecError(`${JSON.stringify(item)} is not ADDR=VALUE`);
    const [lo, hi] = addressRange(item.slice(0, eq));
    return { lo, hi, value: num(item.slice(eq + 1), 'value', maxValue) };
  });
  runs.sort((a, b) => a.lo - b.lo);
  const start = runs[0]!.lo;
  const values: number[] = [];
  for (const { lo, hi, value } of runs) {
    const next = start + values.length;
    if (lo < next) throw new RequestSpecError(`address ${lo} is written twice`);
    if (lo > next) throw new RequestSpecError(`address ${lo} does not follow ${next - 1}: one request writes consecutive addresses`);
    for (let a = lo; a <= hi; a++) values.push(value);
  }
  return { start, values };
}

function oneWord(words: readonly string[], what: string): string {
  if (words.length !== 1) throw new RequestSpecError(`expected ${what}`);
  return words[0]!;
}

function tableOf<T extends string>(word: string | undefined, tables: readonly T[], verb: string): T {
  if (word === undefined || !(tables as readonly string[]).includes(word)) {
    throw new RequestSpecError(`${verb} needs a table: ${tables.join(', ')}${word === undefined ? '' : ` (got ${JSON.stringify(word)})`}`);
  }
  return word as T;
}

/** Parses request words (`read coils 0-7`, see REQUEST_USAGE); throws RequestSpecError. */
export function parseRequestSpec(words: readonly string[]): RequestSpec {
  const [verb, ...rest] = words;
  switch (verb) {
    case 'read': {
      const table = tableOf(rest[0], READ_TABLES, 'read');
      const [lo, hi] = addressRange(oneWord(rest.slice(1), 'read TABLE A[-B]'));
      const qty = hi - lo + 1;
      if (qty > MAX_U16) throw new RequestSpecError(`read of ${qty} addresses doesn't fit a request (at most ${MAX_U16})`);
      const fc = READ_FC[table];
      return { pdu: Buffer.from([fc, ...u16(lo), ...u16(qty)]), description: `FC${fc} ${FUNCTION_NAMES.get(fc)!} ${table} ${lo}-${hi}` };
    }
    case 'write': {
      const table = tableOf(rest[0], WRITE_TABLES, 'write');
      return table === 'coils' ? writeCoils(rest.slice(1)) : writeRegisters(rest.slice(1));
    }
    case 'mask_write': {
      if (rest.length !== 3) throw new RequestSpecError('expected mask_write ADDR AND OR');
      const a = num(rest[0]!, 'address', MAX_ADDRESS);
      const and = num(rest[1]!, 'AND mask', MAX_U16);
      const or = num(rest[2]!, 'OR mask', MAX_U16);
      const fc = FunctionCode.MASK_WRITE_REGISTER;
      return { pdu: Buffer.from([fc, ...u16(a), ...u16(and), ...u16(or)]), description: `FC${fc} mask_write_register holding_registers ${a}` };
    }
    case 'read_write': {
      if (rest.length < 2) throw new RequestSpecError('expected read_write A-B A=V[,A=V...]');
      const [lo, hi] = addressRange(rest[0]!);
      const qty = hi - lo + 1;
      if (qty > MAX_RW_READ_REGISTERS) throw new RequestSpecError(`FC23 reads at most ${MAX_RW_READ_REGISTERS} registers`);
      const w = assignments(rest.slice(1), MAX_U16);
      if (w.values.length > MAX_RW_WRITE_REGISTERS) throw new RequestSpecError(`FC23 writes at most ${MAX_RW_WRITE_REGISTERS} registers`);
      const fc = FunctionCode.READ_WRITE_MULTIPLE_REGISTERS;
      const pdu = [fc, ...u16(lo), ...u16(qty), ...u16(w.start), ...u16(w.values.length), 2 * w.values.length, ...w.values.flatMap(u16)];
      return { pdu: Buffer.from(pdu), description: `FC${fc} read_write_multiple_registers read ${lo}-${hi}, write ${describeWrite(w)}` };
    }
    case 'read_fifo_queue': {
      const a = num(oneWord(rest, 'read_fifo_queue ADDR'), 'address', MAX_ADDRESS);
      const fc = FunctionCode.READ_FIFO_QUEUE;
      return { pdu: Buffer.from([fc, ...u16(a)]), description: `FC${fc} read_fifo_queue holding_registers ${a}` };
    }
    case 'function':
      return functionRequest(oneWord(rest, 'function CODE[/SUB]'));
    case 'raw': {
      const hex = rest.join('').replace(/[\s:]/g, '');
      if (!/^([0-9a-f]{2})+$/i.test(hex) || hex.length / 2 > MAX_PDU_LENGTH) {
        throw new RequestSpecError(`raw needs 1..${MAX_PDU_LENGTH} bytes of hex, function code first`);
      }
      const pdu = Buffer.from(hex, 'hex');
      return { pdu, description: `raw PDU ${pdu.toString('hex')} (FC${pdu[0]!})` };
    }
    default:
      throw new RequestSpecError(verb === undefined ? 'a REQUEST is required' : `unknown request ${JSON.stringify(verb)}`);
  }
}

function describeWrite(w: { start: number; values: number[] }): string {
  return `${w.start}${w.values.length > 1 ? `-${w.start + w.values.length - 1}` : ''} = ${w.values.join(', ')}`;
}

function writeCoils(words: readonly string[]): RequestSpec {
  const w = assignments(words, 1);
  if (w.values.length === 1) {
    const fc = FunctionCode.WRITE_SINGLE_COIL;
    return { pdu: Buffer.from([fc, ...u16(w.start), ...u16(w.values[0] === 1 ? COIL_ON : 0)]), description: `FC${fc} write_single_coil coils ${describeWrite(w)}` };
  }
  if (w.values.length > MAX_WRITE_COILS) throw new RequestSpecError(`FC15 writes at most ${MAX_WRITE_COILS} coils`);
  const bytes = new Array<number>((w.values.length + 7) >> 3).fill(0);
  w.values.forEach((v, i) => {
    bytes[i >> 3]! |= v << (i & 7);
  });
  const fc = FunctionCode.WRITE_MULTIPLE_COILS;
  return {
    pdu: Buffer.from([fc, ...u16(w.start), ...u16(w.values.length), bytes.length, ...bytes]),
    description: `FC${fc} write_multiple_coils coils ${describeWrite(w)}`,
  };
}

function writeRegisters(words: readonly string[]): RequestSpec {
  const w = assignments(words, MAX_U16);
  if (w.values.length === 1) {
    const fc = FunctionCode.WRITE_SINGLE_REGISTER;
    return { pdu: Buffer.from([fc, ...u16(w.start), ...u16(w.values[0]!)]), description: `FC${fc} write_single_register holding_registers ${describeWrite(w)}` };
  }
  if (w.values.length > MAX_WRITE_REGISTERS) throw new RequestSpecError(`FC16 writes at most ${MAX_WRITE_REGISTERS} registers`);
  const fc = FunctionCode.WRITE_MULTIPLE_REGISTERS;
  return {
    pdu: Buffer.from([fc, ...u16(w.start), ...u16(w.values.length), 2 * w.values.length, ...w.values.flatMap(u16)]),
    description: `FC${fc} write_multiple_registers holding_registers ${describeWrite(w)}`,
  };
}

/** `function CODE[/SUB]`: a well-formed request of that function (or just the code byte). */
function functionRequest(word: string): RequestSpec {
  const slash = word.indexOf('/');
  const codeText = slash < 0 ? word : word.slice(0, slash);
  const byName = FUNCTION_CODE_BY_NAME.get(codeText);
  const fc = byName ?? num(codeText, 'function code', MAX_FC);
  if (ADDRESS_MODEL_FUNCTIONS.has(fc)) {
    throw new RequestSpecError(`FC${fc} (${FUNCTION_NAMES.get(fc)!}) has an address model: use read, write, mask_write, read_write or read_fifo_queue`);
  }
  const name = FUNCTION_NAMES.get(fc) ?? 'function';
  const narrowable = fc === FunctionCode.DIAGNOSTICS || fc === FunctionCode.ENCAPSULATED_INTERFACE_TRANSPORT;
  if (slash >= 0 && (!narrowable || codeText === READ_DEVICE_IDENTIFICATION)) {
    throw new RequestSpecError(`${codeText} takes no /SUB (only diagnostics and encapsulated_interface_transport do)`);
  }
  const subText = slash < 0 ? undefined : word.slice(slash + 1);
  switch (fc) {
    case FunctionCode.DIAGNOSTICS: {
      const sub = subText === undefined ? DIAG_RETURN_QUERY_DATA : num(subText, 'sub-function', MAX_U16);
      return { pdu: Buffer.from([fc, ...u16(sub), 0, 0]), description: `FC${fc} ${name} sub-function ${sub}` };
    }
    case FunctionCode.ENCAPSULATED_INTERFACE_TRANSPORT: {
      const mei = subText === undefined ? MEI_READ_DEVICE_IDENTIFICATION : num(subText, 'MEI type', MAX_FC);
      // MEI 14 with a valid read device id code (basic) and object 0, so the decoder finds it well-formed.
      const pdu = mei === MEI_READ_DEVICE_IDENTIFICATION ? [fc, mei, MIN_READ_DEVICE_ID_CODE, 0] : [fc, mei];
      return { pdu: Buffer.from(pdu), description: `FC${fc} ${name} MEI type ${mei}` };
    }
    case FunctionCode.READ_FILE_RECORD:
      // One sub-request: reference type 6, file 1, record 0, one register.
      return { pdu: Buffer.from([fc, 7, FILE_REFERENCE_TYPE, 0, 1, 0, 0, 0, 1]), description: `FC${fc} ${name} file 1 record 0` };
    case FunctionCode.WRITE_FILE_RECORD:
      return { pdu: Buffer.from([fc, 9, FILE_REFERENCE_TYPE, 0, 1, 0, 0, 0, 1, 0, 0]), description: `FC${fc} ${name} file 1 record 0` };
    default:
      return { pdu: Buffer.from([fc]), description: `FC${fc} ${name}` };
  }
}
