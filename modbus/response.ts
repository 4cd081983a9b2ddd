import {
  EXCEPTION_ADU_LENGTH,
  EXCEPTION_FLAG,
  EXCEPTION_PDU_LENGTH,
  FunctionCode,
  MAX_FIFO_COUNT,
  MBAP_HEADER_LENGTH,
  MODBUS_PROTOCOL_ID,
} from './constants.js';
import type { ModbusRequest } from './request.js';

/** How the body of a normal response to a request must look. */
export type ResponseShape =
  | 'byte_count' // FC1–4, 23: | FC | byte count(1) = expected | data |
  | 'echo4' // FC5, 6, 15, 16: | FC | 4 bytes echoed from the request |
  | 'echo6' // FC22: | FC | 6 bytes echoed from the request |
  | 'fifo' // FC24: | FC | byte count(2) | FIFO count(2) ≤ 31 | values |, byte count = 2 + 2·count
  | 'fixed' // FC7 (PDU 2), FC11 (PDU 5)
  | 'counted' // FC12, 17, 20: | FC | byte count(1) | data(byte count) |
  | 'any'; // FC8, 21, 43 and unknown codes: function code only

/**
 * What a response must be to answer a request: enough of the request to check the reply without
 * keeping its bytes. Reusable (sessions pool them).
 */
export class Expectation {
  transactionId = 0;
  unitId = 0;
  functionCode = 0;
  shape: ResponseShape = 'any';
  /** byte_count: expected byte count; fixed: expected PDU length; echo: first echoed word. */
  a = 0;
  /** echo: second echoed word. */
  b = 0;
  /** echo6: third echoed word. */
  c = 0;

  /** Fills this from a well-formed decoded request. */
  setFrom(req: ModbusRequest): this {
    this.transactionId = req.transactionId;
    this.unitId = req.unitId;
    const fc = req.functionCode;
    this.functionCode = fc;
    const b = req.buf;
    const p = req.start + MBAP_HEADER_LENGTH;
    switch (fc) {
      case FunctionCode.READ_COILS:
      case FunctionCode.READ_DISCRETE_INPUTS:
        this.shape = 'byte_count';
        this.a = (req.readQuantity + 7) >> 3;
        break;
      case FunctionCode.READ_HOLDING_REGISTERS:
      case FunctionCode.READ_INPUT_REGISTERS:
      case FunctionCode.READ_WRITE_MULTIPLE_REGISTERS:
        this.shape = 'byte_count';
        this.a = 2 * req.readQuantity;
        break;
      case FunctionCode.WRITE_SINGLE_COIL:
      case FunctionCode.WRITE_SINGLE_REGISTER:
      case FunctionCode.WRITE_MULTIPLE_COILS:
      case FunctionCode.WRITE_MULTIPLE_REGISTERS:
        this.shape = 'echo4';
        this.a = (b[p + 1]! << 8) | b[p + 2]!;
        this.b = (b[p + 3]! << 8) | b[p + 4]!;
        break;
      case FunctionCode.MASK_WRITE_REGISTER:
        this.shape = 'echo6';
        this.a = req.writeStart;
        this.b = req.andMask;
        this.c = req.orMask;
        break;
      case FunctionCode.READ_FIFO_QUEUE:
        this.shape = 'fifo';
        break;
      case FunctionCode.READ_EXCEPTION_STATUS:
        this.shape = 'fixed';
        this.a = 2;
        break;
      case FunctionCode.GET_COMM_EVENT_COUNTER:
        this.shape = 'fixed';
        this.a = 5;
        break;
      case FunctionCode.GET_COMM_EVENT_LOG:
      case FunctionCode.REPORT_SERVER_ID:
      case FunctionCode.READ_FILE_RECORD:
        this.shape = 'counted';
        break;
      default:
        this.shape = 'any';
    }
    return this;
  }
}

/**
 * Does the response whose header is at buf[off, off+8) answer `exp`? Checks transaction id,
 * protocol id, unit id, and FC or FC|0x80. Needs only the MBAP header and function code.
 */
export function responseMatches(exp: Expectation, buf: Uint8Array, off: number): boolean {
  return (
    ((buf[off]! << 8) | buf[off + 1]!) === exp.transactionId &&
    ((buf[off + 2]! << 8) | buf[off + 3]!) === MODBUS_PROTOCOL_ID &&
    buf[off + 6] === exp.unitId &&
    (buf[off + 7] === exp.functionCode || buf[off + 7] === (exp.functionCode | EXCEPTION_FLAG))
  );
}

export type ResponseCheck = 'ok' | 'exception' | 'inconsistent';

/**
 * Checks the body of a whole response ADU buf[start, end) that `responseMatches` accepted.
 * 'exception' for a well-formed exception reply; 'inconsistent' when the body doesn't fit the
 * request (wrong byte count, wrong echo, wrong length).
 */
export function checkResponse(exp: Expectation, buf: Uint8Array, start: number, end: number): ResponseCheck {
  const p = start + MBAP_HEADER_LENGTH;
  const pduLen = end - p;
  const fc = buf[p]!;
  if (fc & EXCEPTION_FLAG) return pduLen === EXCEPTION_PDU_LENGTH ? 'exception' : 'inconsistent';
  switch (exp.shape) {
    case 'byte_count':
      return pduLen === 2 + exp.a && buf[p + 1] === exp.a ? 'ok' : 'inconsistent';
    case 'echo4':
      return pduLen === 5 && u16(buf, p + 1) === exp.a && u16(buf, p + 3) === exp.b ? 'ok' : 'inconsistent';
    case 'echo6':
      return pduLen === 7 && u16(buf, p + 1) === exp.a && u16(buf, p + 3) === exp.b && u16(buf, p + 5) === exp.c ? 'ok' : 'inconsistent';
    case 'fifo': {
      if (pduLen < 5) return 'inconsistent';
      const count = u16(buf, p + 3);
      const bc = u16(buf, p + 1);
      return count <= MAX_FIFO_COUNT && bc === 2 + 2 * count && pduLen === 3 + bc ? 'ok' : 'inconsistent';
    }
    case 'fixed':
      return pduLen === exp.a ? 'ok' : 'inconsistent';
    case 'counted':
      return pduLen >= 2 && pduLen === 2 + buf[p + 1]! ? 'ok' : 'inconsistent';
    case 'any':
      return 'ok';
  }
}

function u16(b: Uint8Array, o: number): number {
  return (b[o]! << 8) | b[o + 1]!;
}

// Exception response (MB-AP §7):
// | tid(2) | pid(2)=0 | length(2)=3 | unit(1) | FC|0x80 (1) | exception code(1) |

/** Writes an exception reply to the request (tid, unit, fc) into target at off. */
export function writeException(
  target: Uint8Array,
  off: number,
  transactionId: number,
  unitId: number,
  functionCode: number,
  code: number,
): void {
  target[off] = (transactionId >> 8) & 0xff;
  target[off + 1] = transactionId & 0xff;
  target[off + 2] = 0;
  target[off + 3] = 0;
  target[off + 4] = 0;
  target[off + 5] = EXCEPTION_PDU_LENGTH + 1;
  target[off + 6] = unitId;
  target[off + 7] = (functionCode | EXCEPTION_FLAG) & 0xff;
  target[off + 8] = code;
}

/** A new exception reply ADU (9 bytes). */
export function buildException(transactionId: number, unitId: number, functionCode: number, code: number): Buffer {
  const b = Buffer.allocUnsafe(EXCEPTION_ADU_LENGTH);
  writeException(b, 0, transactionId, unitId, functionCode, code);
  return b;
}
