import {
  MAX_MBAP_LENGTH,
  MBAP_HEADER_LENGTH,
  MBAP_PREFIX_LENGTH,
  MIN_MBAP_LENGTH,
  MODBUS_PROTOCOL_ID,
} from './constants.js';
import { PlcguardError } from './errors.js';

// MBAP header (MB-TCP §3.1.3), big-endian:
// | off | bytes | field          | rule                                  |
// |   0 |     2 | transaction id | any; echoed by the server              |
// |   2 |     2 | protocol id    | 0, else not Modbus: framing error      |
// |   4 |     2 | length         | unit + PDU bytes that follow, 2..254   |
// |   6 |     1 | unit id        | any                                    |

export interface MbapHeader {
  transactionId: number;
  protocolId: number;
  length: number;
  unitId: number;
}

export type FramingErrorCode = 'ERR_MODBUS_PROTOCOL_ID' | 'ERR_MODBUS_LENGTH';

/** A stream that can't be resynchronised: the connection must be closed. */
export class FramingError extends PlcguardError {
  override readonly name = 'FramingError';
  declare readonly code: FramingErrorCode;
  constructor(
    code: FramingErrorCode,
    /** The offending field's value. */
    readonly value: number,
    message: string,
  ) {
    super(code, message);
  }
}

/**
 * Checks the protocol id and length of the 6-byte MBAP prefix at `off`.
 * Returns null when they are valid. Pure; never throws.
 */
export function checkMbapPrefix(buf: Uint8Array, off: number): FramingError | null {
  const pid = (buf[off + 2]! << 8) | buf[off + 3]!;
  if (pid !== MODBUS_PROTOCOL_ID) {
    return new FramingError('ERR_MODBUS_PROTOCOL_ID', pid, `MBAP protocol id is ${pid}, expected 0`);
  }
  const len = (buf[off + 4]! << 8) | buf[off + 5]!;
  if (len < MIN_MBAP_LENGTH || len > MAX_MBAP_LENGTH) {
    return new FramingError(
      'ERR_MODBUS_LENGTH',
      len,
      `MBAP length is ${len}, expected ${MIN_MBAP_LENGTH}..${MAX_MBAP_LENGTH}`,
    );
  }
  return null;
}

/** Total ADU length announced by a (checked) MBAP prefix at `off`. */
export function aduLength(buf: Uint8Array, off: number): number {
  return MBAP_PREFIX_LENGTH + ((buf[off + 4]! << 8) | buf[off + 5]!);
}

export function decodeMbap(buf: Uint8Array, off = 0): MbapHeader {
  return {
    transactionId: (buf[off]! << 8) | buf[off + 1]!,
    protocolId: (buf[off + 2]! << 8) | buf[off + 3]!,
    length: (buf[off + 4]! << 8) | buf[off + 5]!,
    unitId: buf[off + 6]!,
  };
}

/** Builds a whole ADU around `pdu`. Not for the hot path. */
export function encodeAdu(transactionId: number, unitId: number, pdu: Uint8Array): Buffer {
  const adu = Buffer.allocUnsafe(MBAP_HEADER_LENGTH + pdu.length);
  adu.writeUInt16BE(transactionId & 0xffff, 0);
  adu.writeUInt16BE(MODBUS_PROTOCOL_ID, 2);
  adu.writeUInt16BE(pdu.length + 1, 4);
  adu[6] = unitId & 0xff;
  adu.set(pdu, MBAP_HEADER_LENGTH);
  return adu;
}
