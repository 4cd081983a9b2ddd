// What the simulated PLC holds and answers, written plainly. The PLC (bench/plc.ts) answers from
// precomputed images for speed; the load generator precomputes every expected response from this
// reference. Two implementations of the same contract, so verification also checks the PLC.
// No I/O here.

/** Modbus/TCP spec limits (Application Protocol v1.1b3, §6). */
export const MAX_READ_BITS = 2000;
export const MAX_READ_REGISTERS = 125;
export const MAX_WRITE_COILS = 1968;
export const MAX_WRITE_REGISTERS = 123;
/** Addresses are 16-bit: a request may touch 0..65535. */
export const ADDRESS_SPACE = 0x10000;
export const MBAP_LENGTH = 7;
export const COIL_ON = 0xff00;

export const FC = {
  READ_COILS: 1,
  READ_DISCRETE_INPUTS: 2,
  READ_HOLDING_REGISTERS: 3,
  READ_INPUT_REGISTERS: 4,
  WRITE_SINGLE_COIL: 5,
  WRITE_SINGLE_REGISTER: 6,
  DIAGNOSTICS: 8,
  WRITE_MULTIPLE_COILS: 15,
  WRITE_MULTIPLE_REGISTERS: 16,
  ENCAPSULATED_INTERFACE_TRANSPORT: 43,
} as const;

export const EXCEPTION = {
  ILLEGAL_FUNCTION: 0x01,
  ILLEGAL_DATA_ADDRESS: 0x02,
  ILLEGAL_DATA_VALUE: 0x03,
  SERVER_DEVICE_BUSY: 0x06,
  GATEWAY_PATH_UNAVAILABLE: 0x0a,
  GATEWAY_TARGET_FAILED: 0x0b,
} as const;

// The PLC's memory is a pure function of the address, so any response can be predicted without
// tracking state, and writes (echoed, not stored) never change what a later read returns.
export function holdingValue(address: number): number {
  return (address * 31 + 7) & 0xffff;
}
export function inputValue(address: number): number {
  return (address * 17 + 0x1234) & 0xffff;
}
export function coilValue(address: number): boolean {
  return address % 3 === 0;
}
export function discreteValue(address: number): boolean {
  return address % 5 === 1;
}

/** A whole ADU: MBAP (tid, protocol 0, length) + unit + PDU. */
export function adu(tid: number, unit: number, pdu: readonly number[]): Buffer {
  const b = Buffer.alloc(MBAP_LENGTH + pdu.length);
  b.writeUInt16BE(tid, 0);
  b.writeUInt16BE(0, 2);
  b.writeUInt16BE(pdu.length + 1, 4);
  b[6] = unit;
  for (let i = 0; i < pdu.length; i++) b[MBAP_LENGTH + i] = pdu[i]! & 0xff;
  return b;
}

export function exceptionAdu(tid: number, unit: number, fc: number, code: number): Buffer {
  return adu(tid, unit, [fc | 0x80, code]);
}

const hi = (v: number): number => (v >> 8) & 0xff;
const lo = (v: number): number => v & 0xff;

/** Request PDU builders (bytes after the unit id). */
export const pdu = {
  read(fc: number, start: number, quantity: number): number[] {
    return [fc, hi(start), lo(start), hi(quantity), lo(quantity)];
  },
  writeCoil(address: number, on: boolean): number[] {
    const v = on ? COIL_ON : 0;
    return [FC.WRITE_SINGLE_COIL, hi(address), lo(address), hi(v), lo(v)];
  },
  writeRegister(address: number, value: number): number[] {
    return [FC.WRITE_SINGLE_REGISTER, hi(address), lo(address), hi(value), lo(value)];
  },
  writeRegisters(start: number, values: readonly number[]): number[] {
    const out = [FC.WRITE_MULTIPLE_REGISTERS, hi(start), lo(start), hi(values.length), lo(values.length), values.length * 2];
    for (const v of values) out.push(hi(v), lo(v));
    return out;
  },
  writeCoils(start: number, bits: readonly boolean[]): number[] {
    const bytes = new Array<number>(Math.ceil(bits.length / 8)).fill(0);
    bits.forEach((on, i) => {
      if (on) bytes[i >> 3]! |= 1 << (i & 7);
    });
    return [FC.WRITE_MULTIPLE_COILS, hi(start), lo(start), hi(bits.length), lo(bits.length), bytes.length, ...bytes];
  },
  diagnostics(subFunction: number, data: number): number[] {
    return [FC.DIAGNOSTICS, hi(subFunction), lo(subFunction), hi(data), lo(data)];
  },
  readDeviceIdentification(): number[] {
    // MEI type 14, read device id code 1 (basic), object id 0.
    return [FC.ENCAPSULATED_INTERFACE_TRANSPORT, 0x0e, 0x01, 0x00];
  },
};

function packBits(start: number, quantity: number, value: (a: number) => boolean): number[] {
  const bytes = new Array<number>(Math.ceil(quantity / 8)).fill(0);
  for (let i = 0; i < quantity; i++) if (value(start + i)) bytes[i >> 3]! |= 1 << (i & 7);
  return bytes;
}

function registers(start: number, quantity: number, value: (a: number) => number): number[] {
  const out: number[] = [];
  for (let i = 0; i < quantity; i++) {
    const v = value(start + i);
    out.push(hi(v), lo(v));
  }
  return out;
}

/**
 * What the simulated PLC answers to one request ADU: the reference the load generator checks
 * against. Serves every unit id. Unsupported functions get 01; the spec's order of checks
 * (function → quantity/byte count 03 → address 02) is followed.
 */
export function referenceResponse(request: Buffer): Buffer {
  const tid = request.readUInt16BE(0);
  const unit = request[6]!;
  const fc = request[7]!;
  const p = request.subarray(8);
  const u16 = (i: number): number => p.readUInt16BE(i);
  const exc = (code: number): Buffer => exceptionAdu(tid, unit, fc, code);
  switch (fc) {
    case FC.READ_COILS:
    case FC.READ_DISCRETE_INPUTS:
    case FC.READ_HOLDING_REGISTERS:
    case FC.READ_INPUT_REGISTERS: {
      if (p.length !== 4) return exc(EXCEPTION.ILLEGAL_DATA_VALUE);
      const start = u16(0);
      const qty = u16(2);
      const bits = fc === FC.READ_COILS || fc === FC.READ_DISCRETE_INPUTS;
      if (qty < 1 || qty > (bits ? MAX_READ_BITS : MAX_READ_REGISTERS)) return exc(EXCEPTION.ILLEGAL_DATA_VALUE);
      if (start + qty > ADDRESS_SPACE) return exc(EXCEPTION.ILLEGAL_DATA_ADDRESS);
      const data =
        fc === FC.READ_COILS
          ? packBits(start, qty, coilValue)
          : fc === FC.READ_DISCRETE_INPUTS
            ? packBits(start, qty, discreteValue)
            : registers(start, qty, fc === FC.READ_HOLDING_REGISTERS ? holdingValue : inputValue);
      return adu(tid, unit, [fc, data.length, ...data]);
    }
    case FC.WRITE_SINGLE_COIL:
    case FC.WRITE_SINGLE_REGISTER: {
      if (p.length !== 4) return exc(EXCEPTION.ILLEGAL_DATA_VALUE);
      if (fc === FC.WRITE_SINGLE_COIL && u16(2) !== 0 && u16(2) !== COIL_ON) return exc(EXCEPTION.ILLEGAL_DATA_VALUE);
      return adu(tid, unit, [fc, ...p]);
    }
    case FC.WRITE_MULTIPLE_COILS:
    case FC.WRITE_MULTIPLE_REGISTERS: {
      if (p.length < 5) return exc(EXCEPTION.ILLEGAL_DATA_VALUE);
      const start = u16(0);
      const qty = u16(2);
      const coils = fc === FC.WRITE_MULTIPLE_COILS;
      const byteCount = coils ? Math.ceil(qty / 8) : qty * 2;
      if (qty < 1 || qty > (coils ? MAX_WRITE_COILS : MAX_WRITE_REGISTERS) || p[4] !== byteCount || p.length !== 5 + byteCount) {
        return exc(EXCEPTION.ILLEGAL_DATA_VALUE);
      }
      if (start + qty > ADDRESS_SPACE) return exc(EXCEPTION.ILLEGAL_DATA_ADDRESS);
      return adu(tid, unit, [fc, ...p.subarray(0, 4)]);
    }
    default:
      return exc(EXCEPTION.ILLEGAL_FUNCTION);
  }
}
