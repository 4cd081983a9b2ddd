import t from 'tap';
import {
  EXCEPTION_ADU_LENGTH,
  ExceptionCode,
  Expectation,
  ModbusRequest,
  buildException,
  checkResponse,
  decodeRequest,
  responseMatches,
  writeException,
} from '../modbus/index.js';
import { EXPECTATIONS, RESPONSES, VALID_REQUESTS, request } from './fixtures/frames.js';

function expect(name: string): Expectation {
  const f = request(name);
  const r = decodeRequest(f.bytes, 0, f.bytes.length, new ModbusRequest());
  return new Expectation().setFrom(r);
}

const FC3 = 'FC3 read 3 registers at 107 (spec)';

void t.test('Expectation.setFrom for each function code', (t) => {
  for (const e of EXPECTATIONS) {
    const f = request(e.request);
    const x = expect(e.request);
    t.equal(x.transactionId, f.decoded.transactionId, e.request);
    t.equal(x.unitId, f.decoded.unitId, e.request);
    t.equal(x.functionCode, f.decoded.functionCode, e.request);
    t.equal(x.shape, e.shape, e.request);
    if (e.a !== undefined) t.equal(x.a, e.a, `${e.request}: a`);
    if (e.b !== undefined) t.equal(x.b, e.b, `${e.request}: b`);
    if (e.c !== undefined) t.equal(x.c, e.c, `${e.request}: c`);
  }
  // Every valid fixture has an expectation whose shape the table above pins for its FC.
  const shapeByFc = new Map(EXPECTATIONS.map((e) => [request(e.request).decoded.functionCode, e.shape]));
  for (const f of VALID_REQUESTS) {
    const x = new Expectation().setFrom(decodeRequest(f.bytes, 0, f.bytes.length, new ModbusRequest()));
    const want = shapeByFc.get(f.decoded.functionCode) ?? 'any';
    if (x.shape !== want) t.fail(`${f.name}: ${x.shape}, expected ${want}`);
  }
  t.end();
});

void t.test('a reused Expectation takes the new request whole', (t) => {
  const x = new Expectation();
  const r = new ModbusRequest();
  for (const name of ['FC22 mask write register 4 (spec)', FC3, 'FC24 read FIFO at 1246 (spec)', 'FC6 register 1 = 3 (spec)']) {
    const f = request(name);
    x.setFrom(decodeRequest(f.bytes, 0, f.bytes.length, r));
  }
  t.equal(x.transactionId, 80);
  t.equal(x.shape, 'echo4');
  t.equal(x.a, 1);
  t.equal(x.b, 3);
  // A request that sits at an offset in a larger buffer.
  const f = request('FC16 write 2 registers at 1 (spec)');
  const big = Buffer.concat([Buffer.from([0xaa, 0xbb]), f.bytes]);
  x.setFrom(decodeRequest(big, 2, big.length, r));
  t.equal(x.shape, 'echo4');
  t.equal(x.a, 1);
  t.equal(x.b, 2);
  t.end();
});

void t.test('checkResponse for each shape', (t) => {
  for (const f of RESPONSES) {
    const x = expect(f.request);
    t.ok(responseMatches(x, f.bytes, 0), `${f.name}: matches its request`);
    t.equal(checkResponse(x, f.bytes, 0, f.bytes.length), f.check, f.name);
    // The same bytes at an offset.
    const big = Buffer.concat([Buffer.from([0x01, 0x02, 0x03]), f.bytes, Buffer.from([0x04])]);
    t.equal(checkResponse(x, big, 3, 3 + f.bytes.length), f.check, `${f.name} at offset 3`);
  }
  const checks = new Set(RESPONSES.map((f) => f.check));
  t.strictSame([...checks].sort(), ['exception', 'inconsistent', 'ok']);
  t.end();
});

void t.test('byte_count responses for the limits', (t) => {
  // FC1 2000 coils: 250 bytes; FC3 125 registers: 250 bytes. Both fill a PDU of 252.
  for (const name of ['FC1 quantity 2000 (limit)', 'FC3 quantity 125 (limit)']) {
    const x = expect(name);
    const f = request(name);
    const pdu = Buffer.concat([Buffer.from([f.decoded.functionCode, 250]), Buffer.alloc(250)]);
    const adu = Buffer.concat([Buffer.from([f.bytes[0]!, f.bytes[1]!, 0, 0, 0, 253, f.bytes[6]!]), pdu]);
    t.equal(checkResponse(x, adu, 0, adu.length), 'ok', name);
    t.equal(checkResponse(x, adu, 0, adu.length - 1), 'inconsistent', `${name} one byte short`);
  }
  t.end();
});

void t.test('responseMatches: tid, protocol id, unit, FC or FC|0x80', (t) => {
  const x = expect(FC3); // tid 0x1234, unit 1, FC3
  const header = (tid: number, pid: number, unit: number, fc: number): Buffer =>
    Buffer.from([tid >> 8, tid & 0xff, pid >> 8, pid & 0xff, 0x00, 0x03, unit, fc]);
  t.equal(responseMatches(x, header(0x1234, 0, 1, 0x03), 0), true, 'FC3');
  t.equal(responseMatches(x, header(0x1234, 0, 1, 0x83), 0), true, 'FC3 | 0x80');
  t.equal(responseMatches(x, header(0x1235, 0, 1, 0x03), 0), false, 'tid low byte');
  t.equal(responseMatches(x, header(0x1334, 0, 1, 0x03), 0), false, 'tid high byte');
  t.equal(responseMatches(x, header(0x3412, 0, 1, 0x03), 0), false, 'tid byte-swapped');
  t.equal(responseMatches(x, header(0x1234, 1, 1, 0x03), 0), false, 'protocol id 1');
  t.equal(responseMatches(x, header(0x1234, 0x100, 1, 0x03), 0), false, 'protocol id 256');
  t.equal(responseMatches(x, header(0x1234, 0, 2, 0x03), 0), false, 'unit 2');
  t.equal(responseMatches(x, header(0x1234, 0, 0, 0x03), 0), false, 'unit 0');
  t.equal(responseMatches(x, header(0x1234, 0, 1, 0x04), 0), false, 'FC4');
  t.equal(responseMatches(x, header(0x1234, 0, 1, 0x84), 0), false, 'FC4 | 0x80');
  t.equal(responseMatches(x, header(0x1234, 0, 1, 0x10), 0), false, 'FC16');
  const at = Buffer.concat([Buffer.from([0x12, 0x34]), header(0x1234, 0, 1, 0x83)]);
  t.equal(responseMatches(x, at, 2), true, 'at an offset');
  t.equal(responseMatches(x, at, 0), false, 'misaligned');
  t.equal(responseMatches(x, header(0x1234, 0, 1, 0x03).subarray(0, 7), 0), false, 'no function code yet');
  // Length is not matched here: it is the splitter's business.
  const weird = header(0x1234, 0, 1, 0x03);
  weird[5] = 0xfe;
  t.equal(responseMatches(x, weird, 0), true);
  t.end();
});

void t.test('an exception reply matches and checks as an exception', (t) => {
  for (const f of VALID_REQUESTS) {
    const x = new Expectation().setFrom(decodeRequest(f.bytes, 0, f.bytes.length, new ModbusRequest()));
    const e = buildException(f.decoded.transactionId, f.decoded.unitId, f.decoded.functionCode, ExceptionCode.GATEWAY_TARGET_FAILED);
    if (!responseMatches(x, e, 0) || checkResponse(x, e, 0, e.length) !== 'exception') t.fail(f.name);
  }
  t.pass('all valid requests');
  t.end();
});

void t.test('buildException and writeException: exact bytes', (t) => {
  t.strictSame([...buildException(0x1234, 0x11, 0x03, ExceptionCode.ILLEGAL_DATA_ADDRESS)], [
    0x12, 0x34, 0x00, 0x00, 0x00, 0x03, 0x11, // tid 0x1234 | pid 0 | len 3 | unit 17
    0x83,       // FC3 | 0x80
    0x02,       // illegal data address
  ]);
  t.strictSame([...buildException(0, 0, 0x10, ExceptionCode.ILLEGAL_FUNCTION)], [
    0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0x00, // tid 0 | pid 0 | len 3 | unit 0
    0x90,       // FC16 | 0x80
    0x01,       // illegal function
  ]);
  t.strictSame([...buildException(0xffff, 0xff, 0x5a, ExceptionCode.GATEWAY_PATH_UNAVAILABLE)], [
    0xff, 0xff, 0x00, 0x00, 0x00, 0x03, 0xff, // tid 65535 | pid 0 | len 3 | unit 255
    0xda,       // FC90 | 0x80
    0x0a,       // gateway path unavailable
  ]);
  // An already-flagged FC stays as it is.
  t.strictSame([...buildException(1, 1, 0x83, ExceptionCode.ILLEGAL_DATA_VALUE)], [
    0x00, 0x01, 0x00, 0x00, 0x00, 0x03, 0x01, // tid 1 | pid 0 | len 3 | unit 1
    0x83,       // FC3 | 0x80
    0x03,       // illegal data value
  ]);
  t.equal(buildException(1, 1, 3, 4).length, EXCEPTION_ADU_LENGTH);

  // writeException fills exactly 9 bytes at the offset and touches nothing else.
  const target = Buffer.alloc(20, 0xee);
  writeException(target, 5, 0xabcd, 7, 0x06, ExceptionCode.SERVER_DEVICE_BUSY);
  t.strictSame([...target], [
    0xee, 0xee, 0xee, 0xee, 0xee,
    0xab, 0xcd, 0x00, 0x00, 0x00, 0x03, 0x07, // tid 0xABCD | pid 0 | len 3 | unit 7
    0x86,       // FC6 | 0x80
    0x06,       // server device busy
    0xee, 0xee, 0xee, 0xee, 0xee, 0xee,
  ]);
  // A plain Uint8Array target too.
  const u8 = new Uint8Array(9);
  writeException(u8, 0, 2, 3, 4, 0x0b);
  t.strictSame([...u8], [0x00, 0x02, 0x00, 0x00, 0x00, 0x03, 0x03, 0x84, 0x0b]);
  t.end();
});

void t.test('exception code values', (t) => {
  t.strictSame(ExceptionCode, {
    ILLEGAL_FUNCTION: 1,
    ILLEGAL_DATA_ADDRESS: 2,
    ILLEGAL_DATA_VALUE: 3,
    SERVER_DEVICE_FAILURE: 4,
    SERVER_DEVICE_BUSY: 6,
    GATEWAY_PATH_UNAVAILABLE: 10,
    GATEWAY_TARGET_FAILED: 11,
  });
  t.end();
});
