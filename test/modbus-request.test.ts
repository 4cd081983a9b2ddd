import t from 'tap';
import {
  FUNCTION_NAMES,
  FunctionCode,
  ModbusRequest,
  decodeRequest,
  encodeAdu,
  functionLabel,
  isReserved,
  isUserDefined,
} from '../modbus/index.js';
import { REQUESTS, SMUGGLER, request, snapshot } from './fixtures/frames.js';

function decode(bytes: Buffer): ModbusRequest {
  return decodeRequest(bytes, 0, bytes.length, new ModbusRequest());
}

void t.test('the fixtures cover every public function code, user-defined, unknown and exception-flagged ones, and every violation', (t) => {
  const fcs = new Set(REQUESTS.map((f) => f.decoded.functionCode));
  for (const fc of [1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 15, 16, 17, 20, 21, 22, 23, 24, 43, 65, 90, 0, 128, 255]) {
    t.ok(fcs.has(fc), `FC${fc}`);
  }
  const violations = new Set(REQUESTS.map((f) => f.decoded.violation));
  for (const v of [
    'none', 'exception_function_code', 'pdu_length', 'quantity', 'byte_count', 'coil_value',
    'address_overflow', 'sub_request', 'mei_data',
  ] as const) {
    t.ok(violations.has(v), v);
  }
  t.end();
});

void t.test('every request fixture decodes to exactly its fields', (t) => {
  for (const f of REQUESTS) {
    const r = decode(f.bytes);
    t.strictSame(snapshot(r), f.decoded, f.name);
    t.equal(r.buf, f.bytes, `${f.name}: buf is the frame, not a copy`);
    t.equal(r.start, 0);
    t.equal(r.end, f.bytes.length);
  }
  t.end();
});

void t.test('decoding at an offset inside a larger buffer', (t) => {
  // Frames assembled by the splitter or coalesced in one chunk sit at any offset.
  for (const f of REQUESTS) {
    const junk = Buffer.from([0xff, 0x00, 0xaa, 0x55, 0x03]);
    const big = Buffer.concat([junk, f.bytes, junk]);
    const r = decodeRequest(big, junk.length, junk.length + f.bytes.length, new ModbusRequest());
    t.strictSame(snapshot(r), f.decoded, f.name);
  }
  t.end();
});

void t.test('a reused ModbusRequest keeps nothing from the previous frame', (t) => {
  const r = new ModbusRequest();
  const orders = [REQUESTS, [...REQUESTS].reverse()];
  for (const order of orders) {
    for (const f of order) {
      decodeRequest(f.bytes, 0, f.bytes.length, r);
      t.strictSame(snapshot(r), f.decoded, f.name);
    }
  }
  t.end();
});

void t.test('a fresh ModbusRequest', (t) => {
  const r = new ModbusRequest();
  t.equal(r.buf.length, 0);
  t.equal(r.kind, 'unknown');
  t.equal(r.violation, 'none');
  t.equal(r.exception, 0);
  t.strictSame(r.writtenValues(), []);
  t.end();
});

void t.test('valueAt reads written values in place', (t) => {
  const coils = decode(request('FC15 write 10 coils at 19 (spec)').bytes);
  // 0xCD = 1100 1101, 0x01 = 0000 0001: LSB first.
  t.strictSame(
    Array.from({ length: 10 }, (_, i) => coils.valueAt(i)),
    [1, 0, 1, 1, 0, 0, 1, 1, 1, 0],
  );
  t.equal(coils.valueOffset, 13, 'first coil byte after MBAP(7) + FC, start, quantity, byte count');
  const regs = decode(request('FC16 write 2 registers at 1 (spec)').bytes);
  t.equal(regs.valueOffset, 13);
  t.equal(regs.valueAt(0), 10);
  t.equal(regs.valueAt(1), 258);
  const one = decode(request('FC6 register 1 = 3 (spec)').bytes);
  t.equal(one.valueOffset, 10);
  t.equal(one.valueAt(0), 3);
  const coil = decode(request('FC5 coil 172 on (spec)').bytes);
  t.equal(coil.valueOffset, -1, 'FC5 has no value bytes to point at');
  t.equal(coil.valueAt(0), 1);
  const rw = decode(request('FC23 read 6 at 3, write 3 at 14 (spec)').bytes);
  t.equal(rw.valueOffset, 17);
  t.equal(rw.valueAt(2), 255);
  t.end();
});

void t.test('writtenValues is empty for reads, mask writes and violations', (t) => {
  t.strictSame(decode(request('FC3 read 3 registers at 107 (spec)').bytes).writtenValues(), []);
  t.strictSame(decode(request('FC22 mask write register 4 (spec)').bytes).writtenValues(), []);
  t.strictSame(decode(request('FC16 byte count 3 for 2 registers').bytes).writtenValues(), []);
  t.strictSame(decode(request('FC5 value 0x0001').bytes).writtenValues(), []);
  t.strictSame(decode(request('FC16 65535 + 2 runs past 65535').bytes).writtenValues(), []);
  t.end();
});

void t.test('spec check order: 01 before 03 before 02', (t) => {
  const cases: [string, number, string][] = [
    ['FC1 quantity 2001 at 65535: 03 before 02', 3, 'quantity'],
    ['FC3 quantity 126 at 65535: 03 before 02', 3, 'quantity'],
    ['FC15 bad byte count at 65535: 03 before 02', 3, 'byte_count'],
    ['FC16 quantity 0 at 65535: 03 before 02', 3, 'quantity'],
    ['FC23 write quantity 0 at 65535: 03 before 02', 3, 'quantity'],
    ['FC20 bad sub 1, torn sub 2: 03 before 02', 3, 'sub_request'],
    ['FC255', 1, 'exception_function_code'],
  ];
  for (const [name, exception, violation] of cases) {
    const r = decode(request(name).bytes);
    t.equal(r.exception, exception, name);
    t.equal(r.violation, violation, name);
  }
  t.end();
});

void t.test('the smuggled FC16 is part of the FC3, not a request', (t) => {
  const r = decode(request(SMUGGLER).bytes);
  t.equal(r.functionCode, FunctionCode.READ_HOLDING_REGISTERS);
  t.equal(r.exception, 3);
  t.equal(r.violation, 'pdu_length');
  t.equal(r.writeTable, null);
  t.equal(r.pduLength, 20);
  t.end();
});

// Generated, beyond the fixtures: quantity 0, 1, limit, limit + 1 and 0xFFFF for every FC with a
// quantity, and address overflow on both sides of 65536.

const adu = (pdu: number[]): Buffer => encodeAdu(0x0102, 1, Buffer.from(pdu));
const hi = (v: number): number => (v >> 8) & 0xff;
const lo = (v: number): number => v & 0xff;

void t.test('quantity limits of every FC', (t) => {
  const reads: [number, number][] = [
    [FunctionCode.READ_COILS, 2000],
    [FunctionCode.READ_DISCRETE_INPUTS, 2000],
    [FunctionCode.READ_HOLDING_REGISTERS, 125],
    [FunctionCode.READ_INPUT_REGISTERS, 125],
  ];
  for (const [fc, limit] of reads) {
    for (const q of [0, 1, limit, limit + 1, 0xffff]) {
      const r = decode(adu([fc, 0x00, 0x00, hi(q), lo(q)]));
      const ok = q >= 1 && q <= limit;
      t.equal(r.exception, ok ? 0 : 3, `FC${fc} quantity ${q}`);
      t.equal(r.violation, ok ? 'none' : 'quantity', `FC${fc} quantity ${q}`);
      t.equal(r.readQuantity, q);
    }
  }
  const limitWrite = (fc: number, limit: number, bytes: (q: number) => number): void => {
    for (const q of [0, 1, limit, limit + 1, 0xffff]) {
      const bc = Math.min(bytes(q), 255);
      const data = q <= limit ? Array.from({ length: bc }, () => 0) : [];
      const r = decode(adu([fc, 0x00, 0x00, hi(q), lo(q), bc, ...data]));
      const ok = q >= 1 && q <= limit;
      t.equal(r.exception, ok ? 0 : 3, `FC${fc} quantity ${q}`);
      t.equal(r.violation, ok ? 'none' : 'quantity', `FC${fc} quantity ${q}`);
    }
  };
  limitWrite(FunctionCode.WRITE_MULTIPLE_COILS, 1968, (q) => (q + 7) >> 3);
  limitWrite(FunctionCode.WRITE_MULTIPLE_REGISTERS, 123, (q) => 2 * q);

  for (const [rq, wq] of [[0, 1], [1, 0], [125, 1], [126, 1], [1, 121], [1, 122], [0xffff, 1], [1, 0xffff]] as const) {
    const bc = Math.min(2 * wq, 255);
    const fits = 2 * wq <= 242;
    const data = fits ? Array.from({ length: bc }, () => 0) : [];
    const r = decode(adu([FunctionCode.READ_WRITE_MULTIPLE_REGISTERS, 0, 0, hi(rq), lo(rq), 0, 0, hi(wq), lo(wq), bc, ...data]));
    const ok = rq >= 1 && rq <= 125 && wq >= 1 && wq <= 121;
    t.equal(r.exception, ok ? 0 : 3, `FC23 read ${rq} write ${wq}`);
    t.equal(r.violation, ok ? 'none' : 'quantity', `FC23 read ${rq} write ${wq}`);
  }
  t.end();
});

void t.test('address overflow is start + quantity > 65536, for every FC with a range', (t) => {
  for (const [fc, q] of [[1, 2000], [2, 16], [3, 125], [4, 1]] as const) {
    for (const start of [0, 65536 - q - 1, 65536 - q, 65536 - q + 1, 65535].filter((s) => s <= 0xffff)) {
      const r = decode(adu([fc, hi(start), lo(start), hi(q), lo(q)]));
      const over = start + q > 65536;
      t.equal(r.exception, over ? 2 : 0, `FC${fc} ${start} + ${q}`);
      t.equal(r.violation, over ? 'address_overflow' : 'none', `FC${fc} ${start} + ${q}`);
    }
  }
  for (const start of [65534, 65535]) {
    const coils = decode(adu([15, hi(start), lo(start), 0x00, 0x02, 0x01, 0x03]));
    t.equal(coils.exception, start + 2 > 65536 ? 2 : 0, `FC15 ${start} + 2`);
    const regs = decode(adu([16, hi(start), lo(start), 0x00, 0x02, 0x04, 0, 1, 0, 2]));
    t.equal(regs.exception, start + 2 > 65536 ? 2 : 0, `FC16 ${start} + 2`);
    const rw = decode(adu([23, 0, 0, 0, 1, hi(start), lo(start), 0x00, 0x02, 0x04, 0, 1, 0, 2]));
    t.equal(rw.exception, start + 2 > 65536 ? 2 : 0, `FC23 write ${start} + 2`);
  }
  // Single-address writes can't overflow.
  t.equal(decode(adu([5, 0xff, 0xff, 0xff, 0x00])).exception, 0);
  t.equal(decode(adu([6, 0xff, 0xff, 0x12, 0x34])).exception, 0);
  t.equal(decode(adu([22, 0xff, 0xff, 0, 0, 0, 0])).exception, 0);
  t.end();
});

void t.test('FC8 data lengths', (t) => {
  for (const sub of [0, 1, 2, 3, 4, 10, 20, 0xffff]) {
    for (let data = 0; data <= 6; data++) {
      const r = decode(adu([8, hi(sub), lo(sub), ...Array.from({ length: data }, () => 0)]));
      const ok = sub === 0 ? data % 2 === 0 : data === 2;
      t.equal(r.violation, ok ? 'none' : 'pdu_length', `sub ${sub} data ${data}`);
      t.equal(r.subFunction, sub);
    }
  }
  t.end();
});

void t.test('FC43/14 read device id codes', (t) => {
  for (let code = 0; code <= 255; code++) {
    const r = decode(adu([43, 14, code, 0]));
    const ok = code >= 1 && code <= 4;
    if (r.violation !== (ok ? 'none' : 'mei_data')) t.fail(`code ${code}: ${r.violation}`);
  }
  t.pass('codes 1..4 only');
  t.end();
});

void t.test('FC20/21 sub-requests', (t) => {
  const sub = (ref: number, file: number, record: number, length: number): number[] => [
    ref, hi(file), lo(file), hi(record), lo(record), hi(length), lo(length),
  ];
  const read = (...subs: number[][]): ModbusRequest => {
    const body = subs.flat();
    return decode(adu([20, body.length, ...body]));
  };
  t.equal(read(sub(6, 1, 0, 1)).violation, 'none');
  t.equal(read(sub(6, 0xffff, 9999, 1)).violation, 'none');
  t.equal(read(sub(6, 1, 9998, 2)).violation, 'none');
  t.equal(read(sub(6, 1, 9999, 0)).violation, 'none');
  // Address-like errors: 02.
  for (const bad of [sub(5, 1, 0, 1), sub(6, 0, 0, 1), sub(6, 1, 10000, 0), sub(6, 1, 9999, 2), sub(6, 1, 0, 10001)]) {
    const r = read(sub(6, 1, 0, 1), bad);
    t.equal(r.exception, 2, JSON.stringify(bad));
    t.equal(r.violation, 'sub_request');
  }
  // The largest read: 35 sub-requests, byte count 245.
  const many = Array.from({ length: 35 }, (_, i) => sub(6, i + 1, i, 1));
  t.equal(read(...many).violation, 'none');
  t.equal(decode(adu([20, 245, ...many.flat()])).pduLength, 247);

  const write = (...subs: number[][]): ModbusRequest => {
    const body = subs.flat();
    return decode(adu([21, body.length, ...body]));
  };
  t.equal(write([...sub(6, 1, 0, 2), 0, 1, 0, 2], [...sub(6, 2, 5, 1), 0xff, 0xff]).violation, 'none');
  // FC21 data length is 0x09..0xFB (MB-AP §6.15): a write of no register at all is malformed.
  const empty = write(sub(6, 1, 0, 0));
  t.equal(empty.exception, 3, 'a zero-length write is malformed');
  t.equal(empty.violation, 'byte_count');
  const over = decode(adu([21, 0xfc, ...sub(6, 1, 0, 1), 0, 0]));
  t.equal(over.violation, 'byte_count', 'FC21 byte count 0xFC is over the limit');
  const torn = write([...sub(6, 1, 0, 2), 0, 1, 0, 2], [...sub(6, 2, 5, 2), 0xff, 0xff]);
  t.equal(torn.exception, 3);
  t.equal(torn.violation, 'sub_request');
  const bad = write([...sub(6, 1, 0, 1), 0, 1], [...sub(6, 0, 5, 1), 0xff, 0xff]);
  t.equal(bad.exception, 2);
  t.equal(bad.violation, 'sub_request');
  t.end();
});

void t.test('function code table', (t) => {
  t.equal(FUNCTION_NAMES.size, 19);
  t.equal(FUNCTION_NAMES.get(3), 'read_holding_registers');
  t.equal(FUNCTION_NAMES.get(23), 'read_write_multiple_registers');
  t.equal(FUNCTION_NAMES.get(43), 'encapsulated_interface_transport');
  t.equal(FUNCTION_NAMES.get(90), undefined);

  const userDefined = Array.from({ length: 256 }, (_, fc) => fc).filter(isUserDefined);
  t.strictSame(userDefined, [65, 66, 67, 68, 69, 70, 71, 72, 100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110]);
  const reserved = Array.from({ length: 256 }, (_, fc) => fc).filter(isReserved);
  t.strictSame(reserved, [9, 10, 13, 14, 41, 42, 90, 91, 125, 126, 127]);

  t.equal(functionLabel(1), 'read_coils');
  t.equal(functionLabel(16), 'write_multiple_registers');
  t.equal(functionLabel(90), 'other');
  t.equal(functionLabel(0), 'other');
  t.equal(functionLabel(0x83), 'other', 'exception FCs are not named after their request');
  t.equal(functionLabel(0x103), 'read_holding_registers', 'masked to a byte: never an unbounded label');
  const labels = new Set(Array.from({ length: 256 }, (_, fc) => functionLabel(fc)));
  t.equal(labels.size, 20, '19 names + other');
  t.end();
});
