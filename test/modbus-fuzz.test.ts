// Seeded random and mutation testing of the splitter and decoders: ≥ 100,000 byte streams per
// run. Every input is replayable: a failure reports its seed and input number, and
// FUZZ_SEED=<n> FUZZ_INPUTS=<n> reruns it.
//
// Per input, whatever the bytes and however they are chunked or paused:
// - nothing throws;
// - partialBytes stays ≤ 260 after every push and resume;
// - the emitted frames, concatenated, are exactly the consumed prefix of the input, and the rest is
//   either the partial tail or starts with the MBAP prefix the framing error names;
// - each frame re-encodes (encodeAdu of its tid, unit and PDU) to exactly its bytes;
// - decodeRequest leaves exception ∈ {0, 1, 2, 3}, agrees with a fresh decode (no stale state),
//   and a well-formed decode satisfies the spec's limits;
// - responseMatches/checkResponse/Expectation.setFrom never throw and answer in their ranges.

import t from 'tap';
import {
  ADDRESS_SPACE,
  Expectation,
  FrameSplitter,
  type FramingError,
  MAX_ADU_LENGTH,
  ModbusRequest,
  checkMbapPrefix,
  checkResponse,
  decodeRequest,
  encodeAdu,
  responseMatches,
} from '../modbus/index.js';
import { REQUESTS, RESPONSES, VALID_REQUESTS } from './fixtures/frames.js';
import { Random } from './fixtures/random.js';

const SEED = Number(process.env.FUZZ_SEED ?? 0x5eed_2024);
const INPUTS = Number(process.env.FUZZ_INPUTS ?? 100_000);

const FIXTURES = [...REQUESTS.map((f) => f.bytes), ...RESPONSES.map((f) => f.bytes)];
const INTERESTING_FC = [0, 1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 15, 16, 17, 20, 21, 22, 23, 24, 43, 65, 90, 127, 128, 131, 144, 255];
const INTERESTING_U16 = [0, 1, 2, 0x7d, 0x7e, 0x7b, 0x7c, 0x79, 0x7a, 0x7d0, 0x7d1, 0x7b0, 0x7b1, 0x270f, 0x2710, 0xff00, 0xfffe, 0xffff];
const INTERESTING_LEN = [0, 1, 2, 3, 6, 7, 253, 254, 255, 256, 0x7fff, 0xffff];

// --- input generators -------------------------------------------------------------------------

function mutate(rnd: Random, src: Buffer): Buffer {
  let b = Buffer.from(src);
  const n = rnd.range(1, 3);
  for (let k = 0; k < n; k++) {
    switch (rnd.int(9)) {
      case 0: // bit flip
        if (b.length) b[rnd.int(b.length)]! ^= 1 << rnd.int(8);
        break;
      case 1: // random byte
        if (b.length) b[rnd.int(b.length)] = rnd.int(256);
        break;
      case 2: // truncate
        b = b.subarray(0, rnd.int(b.length + 1));
        break;
      case 3: // extend
        b = Buffer.concat([b, rnd.bytes(rnd.range(1, 20))]);
        break;
      case 4: { // MBAP length field: an interesting value or off by a little
        if (b.length < 6) break;
        const len = rnd.chance(0.5) ? rnd.pick(INTERESTING_LEN) : Math.max(0, ((b[4]! << 8) | b[5]!) + rnd.range(-3, 3));
        b[4] = (len >> 8) & 0xff;
        b[5] = len & 0xff;
        break;
      }
      case 5: // protocol id
        if (b.length >= 4) b[rnd.range(2, 3)] = rnd.chance(0.5) ? 1 : rnd.int(256);
        break;
      case 6: // function code
        if (b.length >= 8) b[7] = rnd.chance(0.7) ? rnd.pick(INTERESTING_FC) : rnd.int(256);
        break;
      case 7: { // a 16-bit field in the PDU: quantities, addresses, sub-functions
        if (b.length < 10) break;
        const o = rnd.range(8, b.length - 2);
        const v = rnd.pick(INTERESTING_U16);
        b[o] = v >> 8;
        b[o + 1] = v & 0xff;
        break;
      }
      default: // byte count field (FC15/16 at 12, FC23 at 16, FC20/21 at 8)
        for (const o of [8, 12, 16]) if (o < b.length && rnd.chance(0.4)) b[o] = rnd.chance(0.5) ? rnd.int(256) : b[o]! + rnd.range(-2, 2);
    }
  }
  return b;
}

/** A frame with a valid MBAP prefix and a PDU shaped for an interesting FC (mostly). */
function structured(rnd: Random): Buffer {
  const fc = rnd.chance(0.8) ? rnd.pick(INTERESTING_FC) : rnd.int(256);
  const pdu: number[] = [fc];
  const u16 = (): void => {
    const v = rnd.chance(0.5) ? rnd.pick(INTERESTING_U16) : rnd.int(0x10000);
    pdu.push(v >> 8, v & 0xff);
  };
  switch (rnd.int(4)) {
    case 0: // read-shaped
      u16();
      u16();
      break;
    case 1: { // write-multiple-shaped, byte count mostly consistent
      u16();
      const q = rnd.chance(0.5) ? rnd.range(1, 130) : rnd.pick(INTERESTING_U16);
      pdu.push(q >> 8, q & 0xff);
      const bc = rnd.chance(0.7) ? Math.min(255, fc === 15 ? (q + 7) >> 3 : 2 * q) : rnd.int(256);
      pdu.push(bc);
      const room = 253 - pdu.length;
      for (let i = 0; i < Math.min(room, rnd.chance(0.8) ? bc : rnd.int(room + 1)); i++) pdu.push(rnd.int(256));
      break;
    }
    case 2: // file-record-shaped sub-requests
      pdu.push(rnd.range(0, 40));
      for (let i = rnd.range(0, 5); i > 0; i--) {
        pdu.push(rnd.chance(0.8) ? 6 : rnd.int(256));
        u16();
        u16();
        const len = rnd.range(0, 6);
        pdu.push(0, len);
        if (fc === 21) for (let j = 0; j < 2 * len - rnd.int(2); j++) pdu.push(rnd.int(256));
      }
      break;
    default: // anything
      for (let i = rnd.int(rnd.chance(0.9) ? 12 : 253); i > 0; i--) pdu.push(rnd.int(256));
  }
  pdu.length = Math.min(pdu.length, 253);
  return encodeAdu(rnd.int(0x10000), rnd.pick([0, 1, 17, 247, 255, rnd.int(256)]), Buffer.from(pdu));
}

function generate(rnd: Random): Buffer {
  const r = rnd.int(100);
  if (r < 30) return mutate(rnd, rnd.pick(FIXTURES));
  if (r < 60) {
    // Several frames back to back, some mutated: pipelining and smuggling.
    const parts: Buffer[] = [];
    for (let i = rnd.range(2, 6); i > 0; i--) {
      const f = rnd.chance(0.5) ? rnd.pick(FIXTURES) : structured(rnd);
      parts.push(rnd.chance(0.25) ? mutate(rnd, f) : f);
    }
    return Buffer.concat(parts);
  }
  if (r < 90) {
    const parts: Buffer[] = [];
    for (let i = rnd.range(1, 4); i > 0; i--) parts.push(structured(rnd));
    return Buffer.concat(parts);
  }
  return rnd.bytes(rnd.int(rnd.chance(0.5) ? 16 : 600));
}

function chunk(rnd: Random, input: Buffer): Buffer[] {
  const mode = rnd.int(10);
  if (mode === 0) return [input];
  const max = mode === 1 ? 1 : mode < 5 ? 8 : mode < 8 ? 64 : 300;
  const chunks: Buffer[] = [];
  for (let i = 0; i < input.length; ) {
    const n = rnd.range(mode === 1 ? 1 : 0, max);
    chunks.push(input.subarray(i, i + n));
    i += n;
  }
  return chunks;
}

// --- the oracle -------------------------------------------------------------------------------

const FIELDS = [
  'transactionId', 'unitId', 'functionCode', 'kind', 'readTable', 'readStart', 'readQuantity', 'writeTable',
  'writeStart', 'writeQuantity', 'valueOffset', 'coilValue', 'andMask', 'orMask', 'subFunction', 'meiType',
  'exception', 'violation',
] as const;

const LIMITS: Record<number, [number, number]> = { 1: [2000, 0], 2: [2000, 0], 3: [125, 0], 4: [125, 0], 15: [0, 1968], 16: [0, 123], 23: [125, 121] };

interface Stats {
  inputs: number;
  bytes: number;
  frames: number;
  framingErrors: Record<string, number>;
  exceptions: number[];
  checks: Record<string, number>;
  pauses: number;
}

function checkFrame(frame: Buffer, reused: ModbusRequest, exp: Expectation, stats: Stats): string | null {
  const len = frame.length;
  if (len < 8 || len > MAX_ADU_LENGTH) return `frame length ${len}`;
  if (frame[2] !== 0 || frame[3] !== 0) return 'frame with protocol id ≠ 0';
  if (((frame[4]! << 8) | frame[5]!) !== len - 6) return 'frame length field disagrees';
  const tid = (frame[0]! << 8) | frame[1]!;
  if (!encodeAdu(tid, frame[6]!, frame.subarray(7)).equals(frame)) return 'frame does not re-encode to itself';

  const r = decodeRequest(frame, 0, len, reused);
  const fresh = decodeRequest(frame, 0, len, new ModbusRequest());
  for (const k of FIELDS) if (r[k] !== fresh[k]) return `reused decode differs in ${k}`;
  if (![0, 1, 2, 3].includes(r.exception)) return `exception ${r.exception}`;
  if ((r.exception === 0) !== (r.violation === 'none')) return `exception ${r.exception} with violation ${r.violation}`;
  if (r.pduLength !== len - 7) return 'pduLength';
  stats.exceptions[r.exception]!++;
  if (r.exception === 0) {
    const lim = LIMITS[r.functionCode];
    if (lim) {
      if (lim[0] && (r.readQuantity < 1 || r.readQuantity > lim[0])) return 'accepted read quantity out of range';
      if (lim[1] && (r.writeQuantity < 1 || r.writeQuantity > lim[1])) return 'accepted write quantity out of range';
    }
    if (r.readStart + r.readQuantity > ADDRESS_SPACE || r.writeStart + r.writeQuantity > ADDRESS_SPACE) return 'accepted an overflowing range';
    const values = r.writtenValues();
    if (r.kind === 'write' || r.kind === 'read_write') {
      if (values.length !== r.writeQuantity) return 'writtenValues length';
      const max = r.writeTable === 'coils' ? 1 : 0xffff;
      if (values.some((v) => !Number.isInteger(v) || v < 0 || v > max)) return 'written value out of range';
    } else if (values.length !== 0) return 'values for a non-write';
    // As a request, it sets an expectation; the frame itself then checks as a response to it.
    exp.setFrom(r);
    if (!responseMatches(exp, frame, 0)) return 'a request header does not match its own expectation';
  }
  const c = checkResponse(exp, frame, 0, len);
  if (c !== 'ok' && c !== 'exception' && c !== 'inconsistent') return `checkResponse ${String(c)}`;
  stats.checks[c] = (stats.checks[c] ?? 0) + 1;
  responseMatches(exp, frame, 0);
  return null;
}

/** Runs one input through a splitter; returns a failure description or null. */
function runInput(rnd: Random, input: Buffer, reused: ModbusRequest, exp: Expectation, stats: Stats): string | null {
  let consumed = 0;
  let failure: string | null = null;
  const pauseRate = rnd.chance(0.3) ? 0.3 : 0;
  const s = new FrameSplitter({
    frame(buf, start, end) {
      const n = end - start;
      if (failure === null) {
        if (!buf.subarray(start, end).equals(input.subarray(consumed, consumed + n))) failure = `frame at ${consumed} is not the input there`;
        else failure = checkFrame(buf.subarray(start, end), reused, exp, stats);
      }
      consumed += n;
      stats.frames++;
      return !(pauseRate && rnd.chance(pauseRate));
    },
  });
  const bounded = (): boolean => s.partialBytes >= 0 && s.partialBytes <= MAX_ADU_LENGTH;
  let err: FramingError | null = null;
  for (const c of chunk(rnd, input)) {
    err = s.push(c);
    if (!bounded()) return `partialBytes ${s.partialBytes} after push`;
    // Sometimes keep pushing while paused (the input queues), sometimes resume at once.
    if (s.paused && rnd.chance(0.6)) {
      stats.pauses++;
      while (s.paused) {
        err = s.resume();
        if (!bounded()) return `partialBytes ${s.partialBytes} after resume`;
      }
    }
  }
  while (s.paused) {
    stats.pauses++;
    err = s.resume();
    if (!bounded()) return `partialBytes ${s.partialBytes} after resume`;
  }
  if (failure) return failure;
  if (err !== s.error) return 'push/resume and error disagree';
  if (err) {
    stats.framingErrors[err.code] = (stats.framingErrors[err.code] ?? 0) + 1;
    if (input.length - consumed < 6) return `framing error with ${input.length - consumed} bytes left`;
    const again = checkMbapPrefix(input, consumed);
    if (again?.code !== err.code || again.value !== err.value) return `framing error ${err.code} ${err.value} is not at ${consumed}`;
    if (s.partialBytes !== 0 || s.heldBytes !== 0) return 'a failed splitter holds bytes';
  } else {
    if (consumed + s.partialBytes !== input.length) return `consumed ${consumed} + partial ${s.partialBytes} ≠ ${input.length}`;
    if (s.heldBytes !== 0) return 'held bytes after resuming';
    // The tail really is incomplete: with the prefix known, fewer bytes than it announces.
    if (s.partialBytes >= 6 && s.partialBytes >= 6 + ((input[consumed + 4]! << 8) | input[consumed + 5]!)) return 'a whole frame left in the partial tail';
  }
  return null;
}

void t.test(`fuzz: ${INPUTS} inputs from seed ${SEED}`, (t) => {
  const rnd = new Random(SEED);
  const reused = new ModbusRequest();
  const exp = new Expectation();
  // Start from some expectation so checkResponse sees every shape over the run.
  const valid = VALID_REQUESTS.map((f) => new Expectation().setFrom(decodeRequest(f.bytes, 0, f.bytes.length, new ModbusRequest())));
  const stats: Stats = { inputs: 0, bytes: 0, frames: 0, framingErrors: {}, exceptions: [0, 0, 0, 0], checks: {}, pauses: 0 };
  const failures: string[] = [];
  for (let i = 0; i < INPUTS; i++) {
    const input = generate(rnd);
    Object.assign(exp, rnd.pick(valid));
    let failure: string | null;
    try {
      failure = runInput(rnd, input, reused, exp, stats);
    } catch (err) {
      failure = `threw ${String(err)}`;
    }
    stats.inputs++;
    stats.bytes += input.length;
    if (failure && failures.length < 10) failures.push(`seed ${SEED} input ${i}: ${failure}; input ${input.toString('hex')}`);
  }
  t.strictSame(failures, [], 'no failures');
  t.equal(stats.inputs, INPUTS);
  // The generator must actually reach every outcome, or the run proves little.
  const min = Math.floor(INPUTS / 1000);
  t.ok(stats.frames > INPUTS, `${stats.frames} frames`);
  t.ok(stats.exceptions.every((n) => n > min), `decoded exceptions 0/1/2/3: ${stats.exceptions.join('/')}`);
  t.ok((stats.framingErrors.ERR_MODBUS_LENGTH ?? 0) > min, `length framing errors: ${stats.framingErrors.ERR_MODBUS_LENGTH}`);
  t.ok((stats.framingErrors.ERR_MODBUS_PROTOCOL_ID ?? 0) > min, `protocol id framing errors: ${stats.framingErrors.ERR_MODBUS_PROTOCOL_ID}`);
  t.ok(['ok', 'exception', 'inconsistent'].every((c) => (stats.checks[c] ?? 0) > min), `checkResponse: ${JSON.stringify(stats.checks)}`);
  t.ok(stats.pauses > min, `${stats.pauses} pauses`);
  t.comment(`${stats.inputs} inputs, ${stats.bytes} bytes, ${stats.frames} frames`);
  t.end();
});
