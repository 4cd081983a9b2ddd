import {
  ADDRESS_SPACE,
  COIL_OFF,
  COIL_ON,
  DIAG_DATA_LENGTH,
  DIAG_RETURN_QUERY_DATA,
  EXCEPTION_FLAG,
  ExceptionCode,
  FILE_MAX_RECORD_NUMBER,
  FILE_READ_MAX_BYTE_COUNT,
  FILE_READ_MIN_BYTE_COUNT,
  FILE_WRITE_MAX_BYTE_COUNT,
  FILE_WRITE_MIN_BYTE_COUNT,
  FILE_MIN_FILE_NUMBER,
  FILE_REFERENCE_TYPE,
  FILE_SUB_REQUEST_LENGTH,
  FunctionCode,
  MAX_READ_BITS,
  MAX_READ_DEVICE_ID_CODE,
  MAX_READ_REGISTERS,
  MAX_RW_READ_REGISTERS,
  MAX_RW_WRITE_REGISTERS,
  MAX_WRITE_COILS,
  MAX_WRITE_REGISTERS,
  MBAP_HEADER_LENGTH,
  MEI_READ_DEVICE_IDENTIFICATION,
  MIN_READ_DEVICE_ID_CODE,
} from './constants.js';

/** The four data tables of the Modbus data model (MB-AP §4.3). */
export type Table = 'coils' | 'discrete_inputs' | 'holding_registers' | 'input_registers';

/**
 * How a request is shaped, which decides what the policy checks:
 * - read: FC1–4, FC24 (read part only)
 * - write: FC5, 6, 15, 16 (write part, values checked)
 * - mask_write: FC22 (write of one address whose result can't be known)
 * - read_write: FC23 (both parts)
 * - function: everything without an address model (FC7, 8, 11, 12, 17, 20, 21, 43): only
 *   allowed when a rule lists the function
 * - unknown: user-defined, reserved, vendor (e.g. 90) and undefined codes; no structural check
 */
export type RequestKind = 'read' | 'write' | 'mask_write' | 'read_write' | 'function' | 'unknown';

/** Why the decoder rejects a request; also a log field. */
export type Violation =
  | 'none'
  | 'exception_function_code' // FC ≥ 128 (exception bit set) or 0: never a valid request
  | 'pdu_length' // the PDU is not exactly as long as the function code requires
  | 'quantity' // quantity 0 or over the spec's limit
  | 'byte_count' // byte count doesn't match quantity or PDU length
  | 'coil_value' // FC5 value other than 0x0000 / 0xFF00
  | 'address_overflow' // start + quantity runs past 65535
  | 'sub_request' // FC20/21 sub-request malformed
  | 'mei_data'; // FC43/14 read device id code out of range

/**
 * One decoded request. Reused: a session owns one and the decoder refills it for every frame, so
 * nothing is allocated per frame. Written values stay in the frame's bytes (see `valueAt`).
 *
 * | field         | meaning                                                              |
 * |---------------|----------------------------------------------------------------------|
 * | transactionId | MBAP transaction id                                                   |
 * | unitId        | MBAP unit id                                                          |
 * | functionCode  | raw FC byte as received                                               |
 * | kind          | see RequestKind                                                       |
 * | readTable     | table of the read part, or null                                       |
 * | readStart/Quantity | the read part's range [start, start+quantity−1]                  |
 * | writeTable    | table of the write part, or null                                      |
 * | writeStart/Quantity | the write part's range                                          |
 * | valueOffset   | FC6/16/23: offset in `buf` of the first written register (u16 BE)     |
 * |               | FC15: offset of the first coil byte (LSB first); FC5: -1 (`coilValue`)|
 * | subFunction   | FC8 sub-function, else -1                                             |
 * | meiType       | FC43 MEI type, else -1                                                |
 * | exception     | 0 when well-formed, else the exception code the violation earns       |
 * | violation     | why                                                                   |
 */
export class ModbusRequest {
  buf: Buffer = EMPTY;
  start = 0;
  end = 0;
  transactionId = 0;
  unitId = 0;
  functionCode = 0;
  kind: RequestKind = 'unknown';
  readTable: Table | null = null;
  readStart = 0;
  readQuantity = 0;
  writeTable: Table | null = null;
  writeStart = 0;
  writeQuantity = 0;
  valueOffset = -1;
  /** FC5: the written coil state (0 or 1). */
  coilValue = 0;
  /** FC22 masks. */
  andMask = 0;
  orMask = 0;
  subFunction = -1;
  meiType = -1;
  exception = 0;
  violation: Violation = 'none';

  /** PDU bytes (function code included). */
  get pduLength(): number {
    return this.end - this.start - MBAP_HEADER_LENGTH;
  }

  /** The i-th written value: a register (0..65535) or a coil (0/1). */
  valueAt(i: number): number {
    const b = this.buf;
    if (this.writeTable === 'coils') {
      if (this.valueOffset < 0) return this.coilValue;
      return (b[this.valueOffset + (i >> 3)]! >> (i & 7)) & 1;
    }
    const o = this.valueOffset + 2 * i;
    return (b[o]! << 8) | b[o + 1]!;
  }

  /** All written values, as numbers (for logs and tests; allocates). */
  writtenValues(): number[] {
    const out: number[] = [];
    if (this.writeTable === null || this.violation !== 'none') return out;
    // FC22's masks are not values written to the table as such.
    if (this.kind === 'mask_write') return out;
    for (let i = 0; i < this.writeQuantity; i++) out.push(this.valueAt(i));
    return out;
  }
}

const EMPTY = Buffer.alloc(0);

function u16(b: Buffer, o: number): number {
  return (b[o]! << 8) | b[o + 1]!;
}

/**
 * Decodes the request ADU buf[start, end) into `out`. The ADU must be framed (MBAP checked, length
 * consistent). Structural violations are reported in `out.exception`/`out.violation` in the spec's
 * order: function (01) → quantity, byte count, value (03) → address (02). Never throws.
 */
export function decodeRequest(buf: Buffer, start: number, end: number, out: ModbusRequest): ModbusRequest {
  out.buf = buf;
  out.start = start;
  out.end = end;
  out.transactionId = u16(buf, start);
  out.unitId = buf[start + 6]!;
  const fc = buf[start + MBAP_HEADER_LENGTH]!;
  out.functionCode = fc;
  out.readTable = null;
  out.readStart = 0;
  out.readQuantity = 0;
  out.writeTable = null;
  out.writeStart = 0;
  out.writeQuantity = 0;
  out.valueOffset = -1;
  out.coilValue = 0;
  out.andMask = 0;
  out.orMask = 0;
  out.subFunction = -1;
  out.meiType = -1;
  out.exception = 0;
  out.violation = 'none';
  const p = start + MBAP_HEADER_LENGTH; // PDU start: function code
  const pduLen = end - p;

  switch (fc) {
    // | FC | start(2) | quantity(2) |   PDU = 5
    case FunctionCode.READ_COILS:
    case FunctionCode.READ_DISCRETE_INPUTS:
    case FunctionCode.READ_HOLDING_REGISTERS:
    case FunctionCode.READ_INPUT_REGISTERS: {
      out.kind = 'read';
      out.readTable = READ_TABLE[fc]!;
      if (pduLen !== 5) return malformed(out, 'pdu_length');
      out.readStart = u16(buf, p + 1);
      out.readQuantity = u16(buf, p + 3);
      const max = fc <= FunctionCode.READ_DISCRETE_INPUTS ? MAX_READ_BITS : MAX_READ_REGISTERS;
      if (out.readQuantity < 1 || out.readQuantity > max) return malformed(out, 'quantity');
      if (out.readStart + out.readQuantity > ADDRESS_SPACE) return badAddress(out);
      return out;
    }
    // | FC | address(2) | value(2): 0x0000 or 0xFF00 |   PDU = 5
    case FunctionCode.WRITE_SINGLE_COIL: {
      out.kind = 'write';
      out.writeTable = 'coils';
      out.writeQuantity = 1;
      if (pduLen !== 5) return malformed(out, 'pdu_length');
      out.writeStart = u16(buf, p + 1);
      const v = u16(buf, p + 3);
      if (v !== COIL_ON && v !== COIL_OFF) return malformed(out, 'coil_value');
      out.coilValue = v === COIL_ON ? 1 : 0;
      return out;
    }
    // | FC | address(2) | value(2) |   PDU = 5
    case FunctionCode.WRITE_SINGLE_REGISTER: {
      out.kind = 'write';
      out.writeTable = 'holding_registers';
      out.writeQuantity = 1;
      if (pduLen !== 5) return malformed(out, 'pdu_length');
      out.writeStart = u16(buf, p + 1);
      out.valueOffset = p + 3;
      return out;
    }
    // | FC | start(2) | quantity(2) | byte count(1) | values, coils LSB first |
    // quantity 1..1968, byte count = ceil(quantity/8), PDU = 6 + byte count
    case FunctionCode.WRITE_MULTIPLE_COILS: {
      out.kind = 'write';
      out.writeTable = 'coils';
      if (pduLen < 6) return malformed(out, 'pdu_length');
      out.writeStart = u16(buf, p + 1);
      out.writeQuantity = u16(buf, p + 3);
      if (out.writeQuantity < 1 || out.writeQuantity > MAX_WRITE_COILS) return malformed(out, 'quantity');
      const bc = buf[p + 5]!;
      if (bc !== (out.writeQuantity + 7) >> 3) return malformed(out, 'byte_count');
      if (pduLen !== 6 + bc) return malformed(out, 'pdu_length');
      if (out.writeStart + out.writeQuantity > ADDRESS_SPACE) return badAddress(out);
      out.valueOffset = p + 6;
      return out;
    }
    // | FC | start(2) | quantity(2) | byte count(1) | values(2·quantity) |
    // quantity 1..123, byte count = 2·quantity, PDU = 6 + byte count
    case FunctionCode.WRITE_MULTIPLE_REGISTERS: {
      out.kind = 'write';
      out.writeTable = 'holding_registers';
      if (pduLen < 6) return malformed(out, 'pdu_length');
      out.writeStart = u16(buf, p + 1);
      out.writeQuantity = u16(buf, p + 3);
      if (out.writeQuantity < 1 || out.writeQuantity > MAX_WRITE_REGISTERS) return malformed(out, 'quantity');
      const bc = buf[p + 5]!;
      if (bc !== 2 * out.writeQuantity) return malformed(out, 'byte_count');
      if (pduLen !== 6 + bc) return malformed(out, 'pdu_length');
      if (out.writeStart + out.writeQuantity > ADDRESS_SPACE) return badAddress(out);
      out.valueOffset = p + 6;
      return out;
    }
    // | FC | address(2) | and mask(2) | or mask(2) |   PDU = 7
    case FunctionCode.MASK_WRITE_REGISTER: {
      out.kind = 'mask_write';
      out.writeTable = 'holding_registers';
      out.writeQuantity = 1;
      if (pduLen !== 7) return malformed(out, 'pdu_length');
      out.writeStart = u16(buf, p + 1);
      out.andMask = u16(buf, p + 3);
      out.orMask = u16(buf, p + 5);
      return out;
    }
    // | FC | read start(2) | read qty(2) | write start(2) | write qty(2) | byte count(1) | values |
    // read qty 1..125, write qty 1..121, byte count = 2·write qty, PDU = 10 + byte count
    case FunctionCode.READ_WRITE_MULTIPLE_REGISTERS: {
      out.kind = 'read_write';
      out.readTable = 'holding_registers';
      out.writeTable = 'holding_registers';
      if (pduLen < 10) return malformed(out, 'pdu_length');
      out.readStart = u16(buf, p + 1);
      out.readQuantity = u16(buf, p + 3);
      out.writeStart = u16(buf, p + 5);
      out.writeQuantity = u16(buf, p + 7);
      if (out.readQuantity < 1 || out.readQuantity > MAX_RW_READ_REGISTERS) return malformed(out, 'quantity');
      if (out.writeQuantity < 1 || out.writeQuantity > MAX_RW_WRITE_REGISTERS) return malformed(out, 'quantity');
      const bc = buf[p + 9]!;
      if (bc !== 2 * out.writeQuantity) return malformed(out, 'byte_count');
      if (pduLen !== 10 + bc) return malformed(out, 'pdu_length');
      if (out.readStart + out.readQuantity > ADDRESS_SPACE) return badAddress(out);
      if (out.writeStart + out.writeQuantity > ADDRESS_SPACE) return badAddress(out);
      out.valueOffset = p + 10;
      return out;
    }
    // | FC | FIFO pointer address(2) |   PDU = 3
    case FunctionCode.READ_FIFO_QUEUE: {
      out.kind = 'read';
      out.readTable = 'holding_registers';
      out.readQuantity = 1;
      if (pduLen !== 3) return malformed(out, 'pdu_length');
      out.readStart = u16(buf, p + 1);
      return out;
    }
    // | FC |   PDU = 1 (serial-line functions without data)
    case FunctionCode.READ_EXCEPTION_STATUS:
    case FunctionCode.GET_COMM_EVENT_COUNTER:
    case FunctionCode.GET_COMM_EVENT_LOG:
    case FunctionCode.REPORT_SERVER_ID:
      out.kind = 'function';
      if (pduLen !== 1) return malformed(out, 'pdu_length');
      return out;
    // | FC | sub-function(2) | data: 2 bytes, any even length for sub-function 0 |
    case FunctionCode.DIAGNOSTICS: {
      out.kind = 'function';
      if (pduLen < 3) return malformed(out, 'pdu_length');
      out.subFunction = u16(buf, p + 1);
      const dataLen = pduLen - 3;
      if (out.subFunction === DIAG_RETURN_QUERY_DATA ? dataLen % 2 !== 0 : dataLen !== DIAG_DATA_LENGTH) {
        return malformed(out, 'pdu_length');
      }
      return out;
    }
    // FC20: | FC | byte count(1) | sub-requests: ref type(1)=6 file(2) record(2) length(2) |...
    // FC21: | FC | byte count(1) | sub-requests: ref type(1)=6 file(2) record(2) length(2) data(2·length) |...
    // byte count 0x07..0xF5 (FC20) or 0x09..0xFB (FC21), PDU = 2 + byte count;
    // file ≥ 1, record number ≤ 0x270F and record + length ≤ 10000 (else 02)
    case FunctionCode.READ_FILE_RECORD:
    case FunctionCode.WRITE_FILE_RECORD:
      out.kind = 'function';
      return decodeFileRecord(buf, p, pduLen, fc === FunctionCode.WRITE_FILE_RECORD, out);
    // | FC | MEI type(1) | MEI data |; MEI 14: | read device id code(1): 1..4 | object id(1) |
    case FunctionCode.ENCAPSULATED_INTERFACE_TRANSPORT:
      out.kind = 'function';
      if (pduLen < 2) return malformed(out, 'pdu_length');
      out.meiType = buf[p + 1]!;
      if (out.meiType === MEI_READ_DEVICE_IDENTIFICATION) {
        if (pduLen !== 4) return malformed(out, 'pdu_length');
        const code = buf[p + 2]!;
        if (code < MIN_READ_DEVICE_ID_CODE || code > MAX_READ_DEVICE_ID_CODE) return malformed(out, 'mei_data');
      }
      return out;
    default:
      out.kind = 'unknown';
      if (fc === 0 || fc >= EXCEPTION_FLAG) {
        out.exception = ExceptionCode.ILLEGAL_FUNCTION;
        out.violation = 'exception_function_code';
      }
      return out;
  }
}

const READ_TABLE: (Table | undefined)[] = [
  undefined,
  'coils',
  'discrete_inputs',
  'holding_registers',
  'input_registers',
];

function malformed(out: ModbusRequest, v: Violation): ModbusRequest {
  out.exception = ExceptionCode.ILLEGAL_DATA_VALUE;
  out.violation = v;
  return out;
}

function badAddress(out: ModbusRequest): ModbusRequest {
  out.exception = ExceptionCode.ILLEGAL_DATA_ADDRESS;
  out.violation = 'address_overflow';
  return out;
}

function decodeFileRecord(buf: Buffer, p: number, pduLen: number, write: boolean, out: ModbusRequest): ModbusRequest {
  if (pduLen < 2) return malformed(out, 'pdu_length');
  const bc = buf[p + 1]!;
  const min = write ? FILE_WRITE_MIN_BYTE_COUNT : FILE_READ_MIN_BYTE_COUNT;
  const max = write ? FILE_WRITE_MAX_BYTE_COUNT : FILE_READ_MAX_BYTE_COUNT;
  if (bc < min || bc > max) return malformed(out, 'byte_count');
  if (pduLen !== 2 + bc) return malformed(out, 'pdu_length');
  let o = p + 2;
  const end = p + pduLen;
  let badRef = false;
  while (o < end) {
    if (end - o < FILE_SUB_REQUEST_LENGTH) return malformed(out, 'sub_request');
    const ref = buf[o]!;
    const file = u16(buf, o + 1);
    const record = u16(buf, o + 3);
    const length = u16(buf, o + 5);
    o += FILE_SUB_REQUEST_LENGTH;
    if (write) {
      if (end - o < 2 * length) return malformed(out, 'sub_request');
      o += 2 * length;
    }
    // MB-AP Figures 24/25: reference type, file number, record number and record number + length
    // are all address checks (02).
    if (
      ref !== FILE_REFERENCE_TYPE ||
      file < FILE_MIN_FILE_NUMBER ||
      record > FILE_MAX_RECORD_NUMBER ||
      record + length > FILE_MAX_RECORD_NUMBER + 1
    ) {
      badRef = true;
    }
  }
  if (badRef) {
    out.exception = ExceptionCode.ILLEGAL_DATA_ADDRESS;
    out.violation = 'sub_request';
  }
  return out;
}
