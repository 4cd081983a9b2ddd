// Frames built by other Modbus implementations must decode to what those libraries meant, and the
// exception replies plcguard builds must be understood by them. Real TCP on 127.0.0.1, port 0;
// every wait is on an event (connect, a frame arriving, a promise settling), never on a timer.

import { once } from 'node:events';
import { type AddressInfo, type Server, Socket, createServer } from 'node:net';
import t from 'tap';
import jsmodbus from 'jsmodbus';
import modbusSerial from 'modbus-serial';
import {
  ExceptionCode,
  Expectation,
  FrameSplitter,
  type FramingError,
  ModbusRequest,
  buildException,
  checkResponse,
  decodeRequest,
  responseMatches,
} from '../modbus/index.js';
import { type Decoded, fill, request, snapshot, unpackCoils } from './fixtures/frames.js';

// modbus-serial is CommonJS with `module.exports.default = module.exports`: its typings only
// describe the class as the `default` member.
const ModbusRTU = modbusSerial.default;

type Fields = Partial<Decoded>;

function decodedOf(frame: Buffer): Decoded {
  return snapshot(decodeRequest(frame, 0, frame.length, new ModbusRequest()));
}

/** The fields a test states, taken from what the decoder produced. */
function pick(d: Decoded, want: Fields): Fields {
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(want)) out[k] = d[k as keyof Decoded];
  return out;
}

/** Defaults for what a well-formed request of each shape leaves untouched. */
const read = (fc: number, table: Decoded['readTable'], start: number, quantity: number): Fields => ({
  functionCode: fc, kind: 'read', readTable: table, readStart: start, readQuantity: quantity,
  writeTable: null, values: [], exception: 0, violation: 'none',
});
const write = (fc: number, table: Decoded['writeTable'], start: number, values: number[]): Fields => ({
  functionCode: fc, kind: 'write', readTable: null, writeTable: table, writeStart: start,
  writeQuantity: values.length, values, exception: 0, violation: 'none',
});

/**
 * A TCP server on 127.0.0.1:0 that frames what it receives with FrameSplitter and answers every
 * request with exception 04 (so the client's promise settles), recording each frame.
 */
class CaptureServer {
  readonly frames: Buffer[] = [];
  /** Resolves with the first framing error; the connection that sent it is closed. */
  readonly framingError: Promise<FramingError>;
  private onFramingError: (err: FramingError) => void = () => undefined;
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private readonly waiters: { n: number; wake: () => void }[] = [];

  constructor() {
    this.framingError = new Promise((resolve) => (this.onFramingError = resolve));
    this.server = createServer((socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
      const splitter = new FrameSplitter({
        frame: (buf, start, end) => {
          const frame = Buffer.from(buf.subarray(start, end));
          this.frames.push(frame);
          const [tid, unit, fc] = [(frame[0]! << 8) | frame[1]!, frame[6]!, frame[7]!];
          socket.write(buildException(tid, unit, fc, ExceptionCode.SERVER_DEVICE_FAILURE));
          for (const w of this.waiters.filter((w) => this.frames.length >= w.n)) w.wake();
          return true;
        },
      });
      socket.on('data', (chunk: Buffer) => {
        const err = splitter.push(chunk);
        if (err) {
          socket.destroy();
          this.onFramingError(err);
        }
      });
    });
  }

  async listen(): Promise<number> {
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    return (this.server.address() as AddressInfo).port;
  }

  /** Resolves once n frames have arrived in total. */
  frameCount(n: number): Promise<void> {
    if (this.frames.length >= n) return Promise.resolve();
    return new Promise((wake) => this.waiters.push({ n, wake }));
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    this.server.close();
    await once(this.server, 'close');
  }
}

/** Settles a request promise; returns the rejection (or null). */
async function settle(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
    return null;
  } catch (err) {
    return err;
  }
}

void t.test('jsmodbus TCP client frames', async (t) => {
  const server = new CaptureServer();
  const port = await server.listen();
  t.teardown(() => server.close());

  const socket = new Socket();
  const client = new jsmodbus.client.TCP(socket, 7);
  socket.connect({ host: '127.0.0.1', port });
  await once(socket, 'connect');
  t.teardown(() => socket.destroy());

  const coils10 = [true, false, true, true, false, false, true, true, true, false];
  const coilBytes = Buffer.from(fill(246, 0xa5));
  const regs120 = Array.from({ length: 120 }, (_, i) => (i * 515) & 0xffff);
  const regs123 = Array.from({ length: 123 }, (_, i) => (i * 515) & 0xffff);
  const ops: [string, () => Promise<unknown>, Fields][] = [
    ['readCoils(19, 19)', () => client.readCoils(19, 19), read(1, 'coils', 19, 19)],
    ['readDiscreteInputs(196, 22)', () => client.readDiscreteInputs(196, 22), read(2, 'discrete_inputs', 196, 22)],
    ['readHoldingRegisters(107, 3)', () => client.readHoldingRegisters(107, 3), read(3, 'holding_registers', 107, 3)],
    ['readHoldingRegisters(0, 125)', () => client.readHoldingRegisters(0, 125), read(3, 'holding_registers', 0, 125)],
    // jsmodbus does not check the FC3 limit; plcguard does.
    ['readHoldingRegisters(0, 126)', () => client.readHoldingRegisters(0, 126), {
      ...read(3, 'holding_registers', 0, 126), exception: 3, violation: 'quantity',
    }],
    ['readInputRegisters(8, 1)', () => client.readInputRegisters(8, 1), read(4, 'input_registers', 8, 1)],
    ['writeSingleCoil(172, true)', () => client.writeSingleCoil(172, true), { ...write(5, 'coils', 172, [1]), coilValue: 1 }],
    ['writeSingleCoil(173, false)', () => client.writeSingleCoil(173, false), { ...write(5, 'coils', 173, [0]), coilValue: 0 }],
    ['writeSingleRegister(1, 3)', () => client.writeSingleRegister(1, 3), write(6, 'holding_registers', 1, [3])],
    ['writeSingleRegister(65535, 65535)', () => client.writeSingleRegister(65535, 65535), write(6, 'holding_registers', 65535, [65535])],
    ['writeMultipleCoils(19, 10 coils)', () => client.writeMultipleCoils(19, coils10), write(15, 'coils', 19, coils10.map(Number))],
    ['writeMultipleCoils(0, buffer, 1968)', () => client.writeMultipleCoils(0, coilBytes, 1968), write(15, 'coils', 0, unpackCoils([...coilBytes], 1968))],
    ['writeMultipleRegisters(1, [10, 258])', () => client.writeMultipleRegisters(1, [10, 258]), write(16, 'holding_registers', 1, [10, 258])],
    ['writeMultipleRegisters(100, 120 values)', () => client.writeMultipleRegisters(100, regs120), write(16, 'holding_registers', 100, regs120)],
    // jsmodbus 5.0.0 caps its FC16 body at 0xF6 bytes, so from 121 registers on it sends the
    // declared byte count with the data cut short: a malformed frame, flagged, never forwarded.
    ['writeMultipleRegisters(100, 123 values)', () => client.writeMultipleRegisters(100, regs123), {
      functionCode: 16, kind: 'write', writeTable: 'holding_registers', writeStart: 100, writeQuantity: 123,
      pduLength: 246, values: [], exception: 3, violation: 'pdu_length',
    }],
    ['readDeviceIdentification(1, 0)', () => client.readDeviceIdentification(1, 0), {
      functionCode: 43, kind: 'function', meiType: 14, exception: 0, violation: 'none',
    }],
    ['readDeviceIdentification(4, 0x80)', () => client.readDeviceIdentification(4, 0x80), {
      functionCode: 43, kind: 'function', meiType: 14, exception: 0, violation: 'none',
    }],
  ];

  for (const [i, [name, op, want]] of ops.entries()) {
    const err = await settle(op());
    // jsmodbus parsed plcguard's exception reply: a ModbusException with code 4.
    t.ok(typeof err === 'object' && err !== null && 'err' in err && err.err === 'ModbusException', `${name}: rejected as a Modbus exception`);
    t.match(err, { message: /\(Code 4\)/ }, `${name}: exception code 4`);
    await server.frameCount(i + 1);
    const d = decodedOf(server.frames[i]!);
    t.equal(d.transactionId, i + 1, `${name}: tid`);
    t.equal(d.unitId, 7, `${name}: unit`);
    t.strictSame(pick(d, want), want, name);
  }
  t.equal(server.frames.length, ops.length);
});

void t.test('jsmodbus request bodies, encoded without a socket', (t) => {
  const R = jsmodbus.requests;
  const adu = (body: InstanceType<typeof R.ModbusRequestBody>): Buffer =>
    new jsmodbus.ModbusTCPRequest(0x4242, 0, body.byteCount + 1, 0xff, body).createPayload();
  const cases: [string, Buffer, Fields][] = [
    ['ReadCoils(0, 2000)', adu(new R.ReadCoilsRequestBody(0, 2000)), read(1, 'coils', 0, 2000)],
    ['ReadDiscreteInputs(65535, 1)', adu(new R.ReadDiscreteInputsRequestBody(65535, 1)), read(2, 'discrete_inputs', 65535, 1)],
    ['ReadHoldingRegisters(65535, 2)', adu(new R.ReadHoldingRegistersRequestBody(65535, 2)), {
      ...read(3, 'holding_registers', 65535, 2), exception: 2, violation: 'address_overflow',
    }],
    ['ReadInputRegisters(0, 0)', adu(new R.ReadInputRegistersRequestBody(0, 0)), {
      ...read(4, 'input_registers', 0, 0), exception: 3, violation: 'quantity',
    }],
    ['WriteSingleCoil(3, 1)', adu(new R.WriteSingleCoilRequestBody(3, 1)), { ...write(5, 'coils', 3, [1]), coilValue: 1 }],
    ['WriteSingleRegister(9, 0x8000)', adu(new R.WriteSingleRegisterRequestBody(9, 0x8000)), write(6, 'holding_registers', 9, [0x8000])],
    ['WriteMultipleCoils(19, buffer, 10)', adu(new R.WriteMultipleCoilsRequestBody(19, Buffer.from([0xcd, 0x01]), 10)), write(15, 'coils', 19, [1, 0, 1, 1, 0, 0, 1, 1, 1, 0])],
    ['WriteMultipleRegisters(65534, buffer)', adu(new R.WriteMultipleRegistersRequestBody(65534, Buffer.from([0xff, 0xff, 0x00, 0x01]))), write(16, 'holding_registers', 65534, [65535, 1])],
    // Built with jsmodbus's own validation off: code 5 does not exist.
    ['ReadDeviceIdentification(5, 0, 14, no validation)', adu(new R.ReadDeviceIdentificationRequestBody(5, 0, 14, false)), {
      functionCode: 43, kind: 'function', meiType: 14, exception: 3, violation: 'mei_data',
    }],
    ['ReadDeviceIdentification(2, 0, 13)', adu(new R.ReadDeviceIdentificationRequestBody(2, 0, 13)), {
      functionCode: 43, kind: 'function', meiType: 13, exception: 0, violation: 'none',
    }],
  ];
  for (const [name, bytes, want] of cases) {
    const d = decodedOf(bytes);
    t.equal(d.transactionId, 0x4242, name);
    t.equal(d.unitId, 0xff, name);
    t.strictSame(pick(d, want), want, name);
  }
  t.end();
});

void t.test('modbus-serial TCP client frames, pipelined', async (t) => {
  const server = new CaptureServer();
  const port = await server.listen();
  t.teardown(() => server.close());

  const client = new ModbusRTU();
  await client.connectTCP('127.0.0.1', { port });
  client.setID(9);
  t.teardown(() => new Promise<void>((done) => client.close(() => done())));

  const fc23 = (readStart: number, readQty: number, writeStart: number, values: number[]): Promise<unknown> =>
    new Promise((resolve, reject) => {
      client.writeFC23(9, readStart, readQty, writeStart, values.length, values, (err, data) => (err ? reject(err) : resolve(data)));
    });

  const coils = [true, false, true, true, false, false, true, true, true, false];
  const ops: [string, () => Promise<unknown>, Fields][] = [
    ['readCoils(19, 19)', () => client.readCoils(19, 19), read(1, 'coils', 19, 19)],
    ['readDiscreteInputs(196, 22)', () => client.readDiscreteInputs(196, 22), read(2, 'discrete_inputs', 196, 22)],
    ['readHoldingRegisters(107, 3)', () => client.readHoldingRegisters(107, 3), read(3, 'holding_registers', 107, 3)],
    ['readInputRegisters(8, 1)', () => client.readInputRegisters(8, 1), read(4, 'input_registers', 8, 1)],
    ['writeCoil(172, true)', () => client.writeCoil(172, true), { ...write(5, 'coils', 172, [1]), coilValue: 1 }],
    ['writeCoil(0, false)', () => client.writeCoil(0, false), { ...write(5, 'coils', 0, [0]), coilValue: 0 }],
    ['writeRegister(1, 3)', () => client.writeRegister(1, 3), write(6, 'holding_registers', 1, [3])],
    ['writeCoils(19, 10 coils)', () => client.writeCoils(19, coils), write(15, 'coils', 19, coils.map(Number))],
    ['writeRegisters(1, [10, 258])', () => client.writeRegisters(1, [10, 258]), write(16, 'holding_registers', 1, [10, 258])],
    ['maskWriteRegister(4, 0xF2, 0x25)', () => client.maskWriteRegister(4, 0xf2, 0x25), {
      functionCode: 22, kind: 'mask_write', writeTable: 'holding_registers', writeStart: 4, writeQuantity: 1,
      andMask: 0xf2, orMask: 0x25, values: [], exception: 0, violation: 'none',
    }],
    ['writeFC23(read 3+6, write 14+3)', () => fc23(3, 6, 14, [255, 255, 255]), {
      functionCode: 23, kind: 'read_write', readTable: 'holding_registers', readStart: 3, readQuantity: 6,
      writeTable: 'holding_registers', writeStart: 14, writeQuantity: 3, values: [255, 255, 255],
      exception: 0, violation: 'none',
    }],
    ['readDeviceIdentification(1, 0)', () => client.readDeviceIdentification(1, 0), {
      functionCode: 43, kind: 'function', meiType: 14, exception: 0, violation: 'none',
    }],
    ['customFunction(65, [1, 2, 3])', () => client.customFunction(65, [1, 2, 3]), {
      functionCode: 65, kind: 'unknown', pduLength: 4, exception: 0, violation: 'none',
    }],
    ['customFunction(90, [0, 2])', () => client.customFunction(90, [0x00, 0x02]), {
      functionCode: 90, kind: 'unknown', pduLength: 3, exception: 0, violation: 'none',
    }],
  ];

  // All requests go out at once (modbus-serial pipelines them on one connection).
  const errors = await Promise.all(ops.map(([, op]) => settle(op())));
  await server.frameCount(ops.length);
  t.equal(server.frames.length, ops.length);
  for (const [i, [name, , want]] of ops.entries()) {
    // modbus-serial parsed plcguard's exception reply.
    t.match(errors[i], { modbusCode: 4 }, `${name}: rejected with modbusCode 4`);
    const d = decodedOf(server.frames[i]!);
    t.equal(d.transactionId, i + 1, `${name}: tid`);
    t.equal(d.unitId, 9, `${name}: unit`);
    t.strictSame(pick(d, want), want, name);
  }
});

void t.test('modbus-serial FC23 with 122 registers is longer than any ADU: framing error', async (t) => {
  // modbus-serial allows 123 written registers in FC23 (the spec: 121). 122 registers make a
  // 254-byte PDU, MBAP length 255: not a frame, so the connection is closed, never resynchronised.
  const server = new CaptureServer();
  const port = await server.listen();
  t.teardown(() => server.close());
  const client = new ModbusRTU();
  await client.connectTCP('127.0.0.1', { port });
  client.setID(9);
  const closed = new Promise<void>((resolve) => client.on('close', () => resolve()));
  const values = Array.from({ length: 122 }, (_, i) => i);
  // modbus-serial leaves the request pending when the connection closes: nothing to await there.
  client.writeFC23(9, 0, 1, 0, values.length, values, () => undefined);
  const err = await server.framingError;
  t.equal(err.code, 'ERR_MODBUS_LENGTH');
  t.equal(err.value, 255);
  t.equal(server.frames.length, 0, 'nothing was taken for a frame');
  await closed;
  t.pass('the client saw its connection closed');
});

void t.test('jsmodbus TCP server responses check out', async (t) => {
  const net = createServer();
  const holding = Buffer.alloc(1024);
  for (let i = 0; i < holding.length; i++) holding[i] = i & 0xff;
  new jsmodbus.server.TCP(net, { holding, coils: Buffer.alloc(1024, 0x5a) });
  net.listen(0, '127.0.0.1');
  await once(net, 'listening');
  t.teardown(async () => {
    net.close();
    await once(net, 'close');
  });

  const socket = new Socket();
  socket.connect({ host: '127.0.0.1', port: (net.address() as AddressInfo).port });
  await once(socket, 'connect');
  t.teardown(() => socket.destroy());
  const replies: Buffer[] = [];
  let wake: (() => void) | null = null;
  const splitter = new FrameSplitter({
    frame(buf, start, end) {
      replies.push(Buffer.from(buf.subarray(start, end)));
      wake?.();
      return true;
    },
  });
  socket.on('data', (chunk: Buffer) => splitter.push(chunk));
  const ask = async (bytes: Buffer): Promise<Buffer> => {
    const n = replies.length;
    const got = new Promise<void>((w) => (wake = w));
    socket.write(bytes);
    while (replies.length === n) await got;
    return replies[n]!;
  };

  const cases: [string, 'ok' | 'exception' | 'inconsistent'][] = [
    ['FC1 read 19 coils at 19 (spec)', 'ok'],
    ['FC1 quantity 2000 (limit)', 'ok'],
    ['FC2 read 22 inputs at 196 (spec)', 'ok'],
    ['FC3 read 3 registers at 107 (spec)', 'ok'],
    ['FC3 quantity 125 (limit)', 'ok'],
    ['FC4 read 1 input register at 8 (spec)', 'ok'],
    ['FC5 coil 172 on (spec)', 'ok'],
    ['FC6 register 1 = 3 (spec)', 'ok'],
    ['FC15 write 10 coils at 19 (spec)', 'ok'],
    ['FC15 quantity 1968 (limit)', 'ok'],
    ['FC16 write 2 registers at 1 (spec)', 'ok'],
    ['FC16 quantity 123 (limit)', 'ok'],
    // jsmodbus has no device identification configured and answers exception 01 with the MEI type
    // inside (AB 0E 01): a 3-byte exception PDU where MB-AP §6.19/§6.21 define 2 (AB 01).
    ['FC43/14 basic device id (spec)', 'inconsistent'],
    // jsmodbus answers a read past its 1 KiB coil buffer with byte count 0 instead of exception
    // 02: a broken reply that plcguard must not pass off as consistent.
    ['FC1 last coil 65535', 'inconsistent'],
  ];
  for (const [name, want] of cases) {
    const f = request(name);
    const x = new Expectation().setFrom(decodeRequest(f.bytes, 0, f.bytes.length, new ModbusRequest()));
    const reply = await ask(f.bytes);
    t.ok(responseMatches(x, reply, 0), `${name}: reply matches`);
    t.equal(checkResponse(x, reply, 0, reply.length), want, name);
  }
  // The replies carry the server's memory: FC16 (limit) wrote i·0x0101 + 1 to registers 100 + i,
  // so FC3 at 107 now reads 0x0708, 0x0809, 0x090A.
  const fc3 = await ask(request('FC3 read 3 registers at 107 (spec)').bytes);
  t.strictSame([...fc3], [
    0x12, 0x34, 0x00, 0x00, 0x00, 0x09, 0x01, // tid 0x1234 | pid 0 | len 9 | unit 1
    0x03, 0x06, // FC3, byte count 6
    0x07, 0x08, 0x08, 0x09, 0x09, 0x0a, // registers 107..109
  ]);
  const fc43 = await ask(request('FC43/14 basic device id (spec)').bytes);
  t.strictSame([...fc43.subarray(7)], [0xab, 0x0e, 0x01]);
});
