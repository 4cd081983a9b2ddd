import t from 'tap';
import {
  ADDRESS_SPACE,
  EXCEPTION_ADU_LENGTH,
  EXCEPTION_PDU_LENGTH,
  FramingError,
  MAX_ADDRESS,
  MAX_ADU_LENGTH,
  MAX_MBAP_LENGTH,
  MAX_PDU_LENGTH,
  MBAP_AND_FC_LENGTH,
  MBAP_HEADER_LENGTH,
  MBAP_PREFIX_LENGTH,
  MIN_MBAP_LENGTH,
  aduLength,
  checkMbapPrefix,
  decodeMbap,
  encodeAdu,
} from '../modbus/index.js';
import { FRAMING_ERRORS, REQUESTS, RESPONSES } from './fixtures/frames.js';

void t.test('the spec numbers', (t) => {
  t.equal(MBAP_HEADER_LENGTH, 7);
  t.equal(MBAP_PREFIX_LENGTH, 6);
  t.equal(MBAP_AND_FC_LENGTH, 8);
  t.equal(MIN_MBAP_LENGTH, 2);
  t.equal(MAX_MBAP_LENGTH, 254);
  t.equal(MAX_PDU_LENGTH, 253);
  t.equal(MAX_ADU_LENGTH, 260);
  t.equal(EXCEPTION_PDU_LENGTH, 2);
  t.equal(EXCEPTION_ADU_LENGTH, 9);
  t.equal(ADDRESS_SPACE, 65536);
  t.equal(MAX_ADDRESS, 65535);
  t.end();
});

void t.test('fixtures are framed consistently', (t) => {
  // A typo in a hand-written length would make every other test lie; check them all here.
  const bad: string[] = [];
  for (const f of [...REQUESTS, ...RESPONSES]) {
    const len = (f.bytes[4]! << 8) | f.bytes[5]!;
    if (len !== f.bytes.length - 6 || f.bytes[2] !== 0 || f.bytes[3] !== 0) bad.push(f.name);
    if (f.bytes.length < 8 || f.bytes.length > 260) bad.push(f.name);
  }
  t.strictSame(bad, []);
  t.equal(REQUESTS.length, new Set(REQUESTS.map((f) => f.name)).size, 'request names are unique');
  t.equal(RESPONSES.length, new Set(RESPONSES.map((f) => f.name)).size, 'response names are unique');
  t.end();
});

void t.test('decodeMbap', (t) => {
  const b = Buffer.from([
    0xab, 0xcd, 0x00, 0x00, 0x00, 0x06, 0xf7, // tid 0xABCD | pid 0 | len 6 | unit 247
    0x03, 0x00, 0x00, 0x00, 0x01, // FC3 start 0 quantity 1
  ]);
  t.strictSame(decodeMbap(b), { transactionId: 0xabcd, protocolId: 0, length: 6, unitId: 247 });
  const shifted = Buffer.concat([Buffer.from([0xee, 0xee, 0xee]), b]);
  t.strictSame(decodeMbap(shifted, 3), { transactionId: 0xabcd, protocolId: 0, length: 6, unitId: 247 });
  const odd = Buffer.from([
    0xff, 0xff, 0x12, 0x34, 0xff, 0xff, 0x00, // tid 65535 | pid 0x1234 | len 65535 | unit 0
  ]);
  t.strictSame(decodeMbap(odd), { transactionId: 0xffff, protocolId: 0x1234, length: 0xffff, unitId: 0 });
  t.end();
});

void t.test('checkMbapPrefix accepts lengths 2..254 and protocol id 0 only', (t) => {
  const prefix = (pid: number, len: number): Buffer =>
    Buffer.from([0x00, 0x01, pid >> 8, pid & 0xff, len >> 8, len & 0xff]);
  const accepted: number[] = [];
  for (let len = 0; len <= 0xffff; len++) if (checkMbapPrefix(prefix(0, len), 0) === null) accepted.push(len);
  t.equal(accepted.length, 253);
  t.equal(accepted[0], 2);
  t.equal(accepted.at(-1), 254);

  for (const f of FRAMING_ERRORS) {
    const err = checkMbapPrefix(f.bytes, 0);
    t.ok(err instanceof FramingError, f.name);
    t.ok(err instanceof Error, f.name);
    t.equal(err?.name, 'FramingError', f.name);
    t.equal(err?.code, f.code, f.name);
    t.equal(err?.value, f.value, f.name);
  }
  t.equal(checkMbapPrefix(prefix(1, 6), 0)?.message, 'MBAP protocol id is 1, expected 0');
  t.equal(checkMbapPrefix(prefix(0, 0xffff), 0)?.message, 'MBAP length is 65535, expected 2..254');
  t.equal(checkMbapPrefix(prefix(0, 1), 0)?.message, 'MBAP length is 1, expected 2..254');
  // Protocol id is checked first: a stream that is not Modbus at all says so.
  t.equal(checkMbapPrefix(prefix(7, 0), 0)?.code, 'ERR_MODBUS_PROTOCOL_ID');
  // At an offset.
  // [00 00 00 | 00 01 00 00 00 FE]: at 0 the length field is bytes 4..5 = 0x0100.
  const at = Buffer.concat([Buffer.from([0x00, 0x00, 0x00]), prefix(0, 254)]);
  t.equal(checkMbapPrefix(at, 3), null);
  t.equal(checkMbapPrefix(at, 0)?.code, 'ERR_MODBUS_LENGTH');
  t.equal(checkMbapPrefix(at, 0)?.value, 0x0100);
  t.end();
});

void t.test('aduLength', (t) => {
  for (const f of [...REQUESTS, ...RESPONSES]) {
    if (aduLength(f.bytes, 0) !== f.bytes.length) t.fail(f.name);
  }
  const two = Buffer.concat([REQUESTS[0]!.bytes, REQUESTS[1]!.bytes]);
  t.equal(aduLength(two, REQUESTS[0]!.bytes.length), REQUESTS[1]!.bytes.length);
  t.equal(aduLength(Buffer.from([0, 0, 0, 0, 0x00, 0xfe]), 0), 260);
  t.end();
});

void t.test('encodeAdu', (t) => {
  t.strictSame(
    [...encodeAdu(0x1234, 0x11, Buffer.from([0x03, 0x00, 0x6b, 0x00, 0x03]))],
    [
      0x12, 0x34, 0x00, 0x00, 0x00, 0x06, 0x11, // tid 0x1234 | pid 0 | len 6 | unit 17
      0x03, 0x00, 0x6b, 0x00, 0x03, // FC3 start 107 quantity 3
    ],
  );
  // Out-of-range ids are masked to their field width, not spilled into the next field.
  t.strictSame(
    [...encodeAdu(0x1_0001, 0x1ff, Buffer.from([0x07]))],
    [
      0x00, 0x01, 0x00, 0x00, 0x00, 0x02, 0xff, // tid 1 | pid 0 | len 2 | unit 255
      0x07, // FC7
    ],
  );
  // Every fixture re-encodes to itself.
  for (const f of [...REQUESTS, ...RESPONSES]) {
    const h = decodeMbap(f.bytes);
    if (!encodeAdu(h.transactionId, h.unitId, f.bytes.subarray(7)).equals(f.bytes)) t.fail(f.name);
  }
  t.end();
});
