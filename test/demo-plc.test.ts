// The simulated PLC over real sockets on 127.0.0.1: modbus-serial as the HMI for the normal
// function codes, raw frames for everything jsmodbus alone would answer wrongly (or not at all).
import { once } from 'node:events';
import t from 'tap';
import ModbusSerial from 'modbus-serial';
import {
  BIT_COUNT,
  COIL,
  DEVICE_ID_OBJECTS,
  DI,
  HIGH_LIMIT_TEMP,
  HR,
  IR,
  Mode,
  REGISTER_COUNT,
  State,
  readBit,
  startSimulatedPlc,
  writeBit,
  type SimulatedPlc,
  type SimulatedPlcOptions,
} from '../demo/plc.js';
import { buildException, encodeAdu } from '../modbus/index.js';
import { closed, readBytes } from './fixtures/net.js';
import { WAIT_MS, within } from '../bench/lib/wait.js';
import { connectLocal } from '../bench/lib/net.js';

const ModbusRTU = ModbusSerial.default;
type Client = InstanceType<typeof ModbusRTU>;
/** tap's test object (the parameter of a t.test callback). */
type TapTest = Parameters<Parameters<typeof t.test>[0]>[0];

async function plcFor(t: TapTest, opts: SimulatedPlcOptions = {}): Promise<SimulatedPlc> {
  const plc = await startSimulatedPlc({ tickMs: 0, ...opts });
  t.teardown(() => plc.close());
  return plc;
}

async function clientFor(t: TapTest, port: number, unit = 1): Promise<Client> {
  const client = new ModbusRTU();
  await within(client.connectTCP('127.0.0.1', { port }), 'modbus-serial connect');
  client.setID(unit);
  client.setTimeout(WAIT_MS);
  t.teardown(() => client.destroy(() => {}));
  return client;
}

/** Big-endian 16-bit word as two bytes. */
const w = (n: number): number[] => [(n >> 8) & 0xff, n & 0xff];
const req = (tid: number, ...pdu: number[]): Buffer => encodeAdu(tid, 1, Buffer.from(pdu));
const hex = (b: Buffer): string => b.toString('hex');

const hr = (plc: SimulatedPlc, addr: number): number => plc.holding.readUInt16BE(addr * 2);
const ir = (plc: SimulatedPlc, addr: number): number => plc.input.readInt16BE(addr * 2);
const setHr = (plc: SimulatedPlc, addr: number, v: number): void => void plc.holding.writeUInt16BE(v, addr * 2);

/** Ticks until `done` holds; fails the test instead of looping forever. */
function tickUntil(t: TapTest, plc: SimulatedPlc, done: () => boolean, max = 10_000): number {
  for (let i = 1; i <= max; i++) {
    plc.tick();
    if (done()) return i;
  }
  t.fail(`condition not reached in ${max} ticks`);
  return max;
}

void t.test('the register map at start, read over Modbus/TCP', async (t) => {
  const plc = await plcFor(t);
  const c = await clientFor(t, plc.port);
  t.same((await c.readInputRegisters(0, 10)).data, [612, 468, 0xfff6, 1480, 520, 161, 83, 60, 48, 204]);
  t.same(
    (await c.readHoldingRegisters(0, 20)).data,
    [3, 2, 1287, 4211, 9630, 0, 0, 0x0102, 0, 0, 650, 850, 550, 60, 20, 100, 50, 140, 100, 650],
  );
  t.same((await c.readCoils(0, 8)).data, [true, true, false, false, false, false, true, false]);
  t.same((await c.readDiscreteInputs(0, 16)).data.map(Number), [1, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  // The tables are larger than the map, and the last address of each can be read.
  t.equal(plc.holding.length, REGISTER_COUNT * 2);
  t.equal(plc.input.length, REGISTER_COUNT * 2);
  t.equal(plc.coils.length, BIT_COUNT / 8);
  t.equal(plc.discrete.length, BIT_COUNT / 8);
  t.same((await c.readHoldingRegisters(REGISTER_COUNT - 125, 125)).data, new Array(125).fill(0));
  t.same((await c.readCoils(BIT_COUNT - 1, 1)).data.slice(0, 1), [false]);
  t.equal(ir(plc, IR.OUTDOOR_TEMP), -10, 'outdoor -1.0 °C is int16 0xFFF6');
  t.equal(plc.host, '127.0.0.1');
  t.equal(plc.unitId, undefined);
  t.equal(plc.ticks, 0);
});

void t.test('writes through jsmodbus land in the tables and read back', async (t) => {
  const plc = await plcFor(t);
  const c = await clientFor(t, plc.port);
  t.same(await c.writeRegister(HR.SUPPLY_SETPOINT, 700), { address: 10, value: 700 });
  t.same((await c.readHoldingRegisters(HR.SUPPLY_SETPOINT, 1)).data, [700]);
  t.equal(hr(plc, HR.SUPPLY_SETPOINT), 700);
  t.same(await c.writeRegisters(HR.PUMP_SPEED_SETPOINT, [75, 25]), { address: 13, length: 2 });
  t.same((await c.readHoldingRegisters(HR.PUMP_SPEED_SETPOINT, 2)).data, [75, 25]);
  t.same(await c.writeCoil(COIL.TANK_VALVE, true), { address: 2, state: true });
  t.equal(readBit(plc.coils, COIL.TANK_VALVE), 1);
  t.same(await c.writeCoils(COIL.TANK_CIRCULATION, [true, false, true]), { address: 3, length: 3 });
  t.same((await c.readCoils(0, 8)).data, [true, true, true, true, false, true, true, false]);
  t.same(await c.writeCoil(COIL.PUMP_ENABLE, false), { address: 0, state: false });
  t.equal(readBit(plc.coils, COIL.PUMP_ENABLE), 0);
  // The last register and coil exist (jsmodbus's own bound checks are off by one there).
  await c.writeRegister(REGISTER_COUNT - 1, 0xbeef);
  t.equal(hr(plc, REGISTER_COUNT - 1), 0xbeef);
  await c.writeCoil(BIT_COUNT - 1, true);
  t.equal(readBit(plc.coils, BIT_COUNT - 1), 1);
});

void t.test('FC22 mask write, FC23 read/write and FC43/14 device identification', async (t) => {
  const plc = await plcFor(t);
  const c = await clientFor(t, plc.port);
  // The spec's example (MB-AP §6.16): (0x12 AND 0xF2) OR (0x25 AND NOT 0xF2) = 0x17.
  setHr(plc, 31, 0x0012);
  t.same(await c.maskWriteRegister(31, 0x00f2, 0x0025), { address: 31, andMask: 0x00f2, orMask: 0x0025 });
  t.equal(hr(plc, 31), 0x0017);
  // FC23 writes first, then reads: the read sees the written values.
  const rw = await new Promise<number[]>((resolve, reject) =>
    c.writeFC23(1, 29, 3, 30, 2, [0xaaaa, 0xbbbb], (err, res) => (err ? reject(err) : resolve(res.data))),
  );
  t.same(rw, [0, 0xaaaa, 0xbbbb]);
  t.equal(hr(plc, 30), 0xaaaa);

  const basic = await c.readDeviceIdentification(1, 0);
  t.same(basic, { data: { 0: 'plcguard', 1: 'SIM-BOILER-1', 2: '1.2' }, conformityLevel: 0x81 });
  t.same(await c.readDeviceIdentification(1, 2), { data: { 2: '1.2' }, conformityLevel: 0x81 }, 'stream from object 2');
  t.same(
    await c.readDeviceIdentification(3, 9),
    { data: { 0: 'plcguard', 1: 'SIM-BOILER-1', 2: '1.2' }, conformityLevel: 0x81 },
    'extended asked of a basic device, unknown object: restart at 0 at the basic level',
  );
  t.same(await c.readDeviceIdentification(4, 1), { data: { 1: 'SIM-BOILER-1' }, conformityLevel: 0x81 }, 'individual');
  await t.rejects(
    c.readDeviceIdentification(4, DEVICE_ID_OBJECTS.length),
    { message: 'Modbus exception 2: Illegal data address (register not supported by device)' },
    'unknown object, individual: 02',
  );
});

void t.test('answers in the spec order what jsmodbus would answer wrongly, crash on, or stall on', async (t) => {
  const plc = await plcFor(t);
  const s = await connectLocal(plc.port);
  t.teardown(() => s.destroy());
  const ex = (tid: number, fc: number, code: number): string => hex(buildException(tid, 1, fc, code));
  // [what, request PDU, expected reply PDU or exception code]
  const cases: [string, number[], number[] | number][] = [
    ['FC3 last register', [3, ...w(999), ...w(1)], [3, 2, 0, 0]],
    ['FC3 past the end (jsmodbus: short reply)', [3, ...w(999), ...w(2)], 2],
    ['FC3 quantity 0 (jsmodbus: empty reply)', [3, ...w(0), ...w(0)], 3],
    ['FC3 quantity 126', [3, ...w(0), ...w(126)], 3],
    ['FC3 quantity 2001 (jsmodbus: stall)', [3, ...w(0), ...w(2001)], 3],
    ['FC3 too long a PDU', [3, ...w(0), ...w(1), 0], 3],
    ['FC4 past the end', [4, ...w(1000), ...w(1)], 2],
    ['FC1 last coil', [1, ...w(1999), ...w(1)], [1, 1, 0]],
    ['FC1 past the end', [1, ...w(1999), ...w(2)], 2],
    ['FC2 quantity 2001', [2, ...w(0), ...w(2001)], 3],
    ['FC5 past the end (jsmodbus: RangeError, process crash)', [5, ...w(2000), 0xff, 0], 2],
    ['FC5 value 0x1234 (jsmodbus: writes OFF)', [5, ...w(1), 0x12, 0x34], 3],
    ['FC6 address 1000 (jsmodbus: off-by-one RangeError)', [6, ...w(1000), 0, 1], 2],
    ['FC15 past the end (jsmodbus: partial write)', [15, ...w(1998), ...w(3), 1, 7], 2],
    ['FC15 byte count wrong', [15, ...w(0), ...w(3), 2, 7, 0], 3],
    ['FC16 past the end', [16, ...w(999), ...w(2), 4, 0, 1, 0, 2], 2],
    ['FC22 past the end', [22, ...w(1000), ...w(0), ...w(0)], 2],
    ['FC23 read past the end', [23, ...w(999), ...w(2), ...w(0), ...w(1), 2, 0, 0], 2],
    ['FC23 write past the end', [23, ...w(0), ...w(1), ...w(1000), ...w(1), 2, 0, 0], 2],
    ['FC7 read exception status (jsmodbus: stall)', [7], 1],
    ['FC7 with a stray byte: function (01) before length (03)', [7, 0], 1],
    ['FC8 diagnostics, force listen only', [8, ...w(4), 0, 0], 1],
    ['FC17 report server id', [17], 1],
    ['FC20 read file record', [20, 7, 6, 0, 1, 0, 0, 0, 1], 1],
    ['FC24 read FIFO', [24, ...w(0)], 1],
    ['FC43 MEI 13 (CANopen)', [43, 13, 0], 1],
    ['FC43 without MEI type', [43], 3],
    ['FC43/14 read device id code 5', [43, 14, 5, 0], 3],
    ['FC65 user-defined', [65, 1, 2], 1],
    ['FC90 UMAS', [90, 0, 2], 1],
    ['FC0', [0], 1],
    ['FC131 (exception bit set)', [0x83, ...w(0), ...w(1)], 1],
    ['FC3 after all that: the connection never stalled', [3, ...w(HR.SUPPLY_SETPOINT), ...w(1)], [3, 2, ...w(650)]],
  ];
  let tid = 0x100;
  for (const [what, pdu, expected] of cases) {
    tid++;
    const want = typeof expected === 'number' ? ex(tid, pdu[0]!, expected) : hex(encodeAdu(tid, 1, Buffer.from(expected)));
    s.write(req(tid, ...pdu));
    t.equal(hex(await readBytes(s, want.length / 2)), want, what);
  }
  // FC2 of all 2000 inputs: one full-size reply (flame, gas OK, air pressure and pump bits set).
  s.write(req(1, 2, ...w(0), ...w(2000)));
  const all = await readBytes(s, 7 + 2 + 250);
  t.equal(hex(all.subarray(7, 10)), '02fa71');
  t.ok(all.subarray(10).every((b) => b === 0));
  t.equal(plc.connections, 1);
});

void t.test('several requests in one segment are answered in order; one byte at a time works', async (t) => {
  const plc = await plcFor(t);
  const s = await connectLocal(plc.port);
  t.teardown(() => s.destroy());
  // jsmodbus alone answers these last-first; an unknown code in between would stall it.
  s.write(Buffer.concat([req(1, 3, ...w(10), ...w(1)), req(2, 90, 0), req(3, 4, ...w(0), ...w(1)), req(4, 6, ...w(12), ...w(560))]));
  t.equal(hex(await readBytes(s, 11)), hex(req(1, 3, 2, ...w(650))));
  t.equal(hex(await readBytes(s, 9)), hex(buildException(2, 1, 90, 1)));
  t.equal(hex(await readBytes(s, 11)), hex(req(3, 4, 2, ...w(612))));
  t.equal(hex(await readBytes(s, 12)), hex(req(4, 6, ...w(12), ...w(560))));
  const frame = req(5, 3, ...w(12), ...w(1));
  for (const b of frame) s.write(Buffer.from([b]));
  t.equal(hex(await readBytes(s, 11)), hex(req(5, 3, 2, ...w(560))));
});

void t.test('a client that does not read its replies is not read either, until it does', async (t) => {
  let paused: () => void = () => {};
  const pausedOnce = new Promise<void>((resolve) => (paused = resolve));
  const lines: string[] = [];
  const plc = await plcFor(t, {
    log: (l) => {
      lines.push(l);
      if (l.endsWith('is not reading its replies; reading paused until it does')) paused();
    },
  });
  const s = await connectLocal(plc.port);
  t.teardown(() => s.destroy());
  s.pause();
  // Reads of 125 registers (12-byte request, 259-byte reply) until the PLC stops reading: however
  // large this machine's socket buffers are. A request batch that can't be written waits for
  // 'drain', or for the pause, whichever comes first.
  const replyLength = 7 + 2 + 250;
  let isPaused = false;
  void pausedOnce.then(() => (isPaused = true));
  let n = 0;
  while (!isPaused) {
    const batch = Buffer.concat(Array.from({ length: 1000 }, (_, i) => req((n + i) & 0xffff, 3, ...w(0), ...w(125))));
    n += 1000;
    if (s.write(batch)) await new Promise(setImmediate);
    else await within(Promise.race([pausedOnce, once(s, 'drain')]), 'the PLC to stop reading');
  }
  const replies = await readBytes(s, n * replyLength, 60_000);
  t.equal(replies.readUInt16BE((n - 1) * replyLength), (n - 1) & 0xffff, 'the last reply, in order');
  t.equal(hex(replies.subarray((n - 1) * replyLength + 7, (n - 1) * replyLength + 9)), '03fa');
  t.equal(lines.filter((l) => l.includes('is not reading')).length, 1, 'said once per connection');
});

void t.test('a framing error closes the connection', async (t) => {
  const lines: string[] = [];
  const plc = await plcFor(t, { log: (l) => lines.push(l) });
  const s = await connectLocal(plc.port);
  t.teardown(() => s.destroy());
  const peer = `127.0.0.1:${s.localPort}`;
  const bad = req(1, 3, ...w(0), ...w(1));
  bad.writeUInt16BE(5, 2); // protocol id 5: jsmodbus would answer it
  s.write(bad);
  await closed(s);
  await plc.waitForConnections(0);
  t.equal(lines.at(-2), `${peer} framing error: MBAP protocol id is 5, expected 0; closing`);
  t.equal(lines.at(-1), `${peer} disconnected (0 open)`);
});

void t.test('with unitId set, other unit ids get exception 0B', async (t) => {
  const plc = await plcFor(t, { unitId: 7 });
  t.equal(plc.unitId, 7);
  const s = await connectLocal(plc.port);
  t.teardown(() => s.destroy());
  s.write(encodeAdu(1, 1, Buffer.from([3, ...w(0), ...w(1)])));
  t.equal(hex(await readBytes(s, 9)), hex(buildException(1, 1, 3, 0x0b)));
  s.write(encodeAdu(2, 255, Buffer.from([90])));
  t.equal(hex(await readBytes(s, 9)), hex(buildException(2, 255, 90, 0x0b)), 'unit before function');
  s.write(encodeAdu(3, 7, Buffer.from([3, ...w(0), ...w(1)])));
  t.equal(hex(await readBytes(s, 11)), hex(encodeAdu(3, 7, Buffer.from([3, 2, ...w(Mode.HEATING_AND_TANK)]))));
});

void t.test('connection counting', async (t) => {
  const plc = await plcFor(t);
  t.equal(plc.connections, 0);
  const a = await clientFor(t, plc.port);
  const b = await clientFor(t, plc.port);
  await within(plc.waitForConnections(2), '2 connections');
  t.equal(plc.connections, 2);
  t.equal(plc.maxConcurrentConnections, 2);
  t.equal(plc.totalConnections, 2);
  a.destroy(() => {});
  await within(plc.waitForConnections(1), '1 connection');
  b.destroy(() => {});
  await within(plc.waitForConnections(0), '0 connections');
  const c = await clientFor(t, plc.port);
  await within(plc.waitForConnections(1), '1 connection');
  t.same((await c.readHoldingRegisters(HR.FIRMWARE, 1)).data, [0x0102]);
  c.destroy(() => {});
  await within(plc.waitForConnections(0), '0 connections');
  t.equal(plc.connections, 0);
  t.equal(plc.maxConcurrentConnections, 2);
  t.equal(plc.totalConnections, 3);
});

void t.test('close() destroys open connections, closes the listener, and is idempotent', async (t) => {
  const plc = await startSimulatedPlc({ tickMs: 0 });
  const s = await connectLocal(plc.port);
  await within(plc.waitForConnections(1), '1 connection');
  const first = plc.close();
  t.equal(plc.close(), first, 'same promise');
  await within(first, 'close');
  await closed(s);
  t.equal(plc.connections, 0);
  const again = connectLocal(plc.port);
  await t.rejects(again, { code: 'ECONNREFUSED' });
});

void t.test('a taken port fails the start', async (t) => {
  const plc = await plcFor(t);
  await t.rejects(startSimulatedPlc({ port: plc.port }), { code: 'EADDRINUSE' });
});

void t.test('the clock ticks by itself every tickMs', async (t) => {
  let resolveTick: (n: number) => void = () => {};
  const ticked = new Promise<number>((resolve) => (resolveTick = resolve));
  const plc = await plcFor(t, { tickMs: 1, onTick: (n) => resolveTick(n) });
  t.equal(await within(ticked, 'first tick'), 1);
  t.ok(plc.ticks >= 1);
  t.equal(hr(plc, HR.HEARTBEAT), plc.ticks & 0xffff);
});

void t.test('log lines', async (t) => {
  const lines: string[] = [];
  const plc = await plcFor(t, { log: (l) => lines.push(l) });
  const s = await connectLocal(plc.port);
  t.teardown(() => s.destroy());
  const peer = `127.0.0.1:${s.localPort}`;
  s.write(Buffer.concat([req(1, 6, ...w(10), ...w(700)), req(2, 16, ...w(13), ...w(2), 4, ...w(70), ...w(30))]));
  await readBytes(s, 24);
  s.write(Buffer.concat([req(3, 22, ...w(30), ...w(0xff00), ...w(0x0012)), req(4, 3, ...w(5000), ...w(1))]));
  await readBytes(s, 13 + 9);
  s.destroy();
  await within(plc.waitForConnections(0), '0 connections');
  t.same(lines, [
    `simulated PLC listening on 127.0.0.1:${plc.port}, every unit id`,
    `${peer} connected (1 open)`,
    `write_single_register holding_registers 10 = 700 from ${peer} unit 1`,
    `write_multiple_registers holding_registers 13-14 = 70,30 from ${peer} unit 1`,
    `mask_write_register holding_registers 30 and 0xff00 or 0x0012 from ${peer} unit 1`,
    `exception 0x02 (illegal data address) to read_holding_registers (FC3) from ${peer} unit 1`,
    `${peer} disconnected (0 open)`,
  ]);
});

void t.test('the boiler model', async (t) => {
  await t.test('the burner cycles around the setpoint with hysteresis', async (t) => {
    const plc = await plcFor(t);
    plc.tick();
    t.equal(plc.ticks, 1);
    t.equal(hr(plc, HR.HEARTBEAT), 1);
    // Burner on at 83 %: 2 + floor(83 / 20) = 6 tenths of a degree per tick.
    t.equal(ir(plc, IR.SUPPLY_TEMP), 618);
    t.equal(ir(plc, IR.MODULATION), 20 + 650 + 25 - 618);
    tickUntil(t, plc, () => readBit(plc.discrete, DI.FLAME) === 0);
    t.ok(ir(plc, IR.SUPPLY_TEMP) >= 675, 'off at setpoint + half the hysteresis');
    t.equal(ir(plc, IR.MODULATION), 0);
    t.equal(ir(plc, IR.FLAME_SIGNAL), 0);
    t.equal(hr(plc, HR.STATE), State.STANDBY);
    t.equal(readBit(plc.discrete, DI.AIR_PRESSURE), 0);
    const before = ir(plc, IR.SUPPLY_TEMP);
    plc.tick();
    t.equal(ir(plc, IR.SUPPLY_TEMP), before - 2, 'cools by 0.2 K per tick with the pump on');
    tickUntil(t, plc, () => readBit(plc.discrete, DI.FLAME) === 1);
    t.ok(ir(plc, IR.SUPPLY_TEMP) <= 625, 'on again at setpoint - half the hysteresis');
    t.equal(hr(plc, HR.BURNER_STARTS), 1288);
    t.equal(hr(plc, HR.STATE), State.BURNER_ON);
    t.equal(ir(plc, IR.MODULATION), 20 + 675 - ir(plc, IR.SUPPLY_TEMP), 'proportional to setpoint + half - supply');
  });

  await t.test('modulation stays within the configured limits', async (t) => {
    const plc = await plcFor(t);
    setHr(plc, HR.MIN_MODULATION, 30);
    setHr(plc, HR.MAX_MODULATION, 10); // below min: min wins
    plc.tick();
    t.equal(ir(plc, IR.MODULATION), 30);
  });

  await t.test('outdoor temperature follows a 1440-tick triangle between -1.0 and 11.0 °C', async (t) => {
    const plc = await plcFor(t);
    for (let i = 0; i < 360; i++) plc.tick();
    t.equal(ir(plc, IR.OUTDOOR_TEMP), 50);
    for (let i = 0; i < 360; i++) plc.tick();
    t.equal(ir(plc, IR.OUTDOOR_TEMP), 110);
    for (let i = 0; i < 360; i++) plc.tick();
    t.equal(ir(plc, IR.OUTDOOR_TEMP), 50);
    for (let i = 0; i < 360; i++) plc.tick();
    t.equal(ir(plc, IR.OUTDOOR_TEMP), -10);
    t.equal(hr(plc, HR.UPTIME_MIN), 24);
  });

  await t.test('over-temperature trips the high limit into lockout; the reset coil clears it', async (t) => {
    const plc = await plcFor(t);
    // A malicious or careless write: cut-off above the safety limit, setpoint near it.
    setHr(plc, HR.MAX_SUPPLY_TEMP, 1000);
    setHr(plc, HR.SUPPLY_SETPOINT, 990);
    tickUntil(t, plc, () => readBit(plc.discrete, DI.LOCKOUT) === 1);
    t.ok(ir(plc, IR.SUPPLY_TEMP) >= HIGH_LIMIT_TEMP);
    t.equal(readBit(plc.discrete, DI.HIGH_LIMIT), 1);
    t.equal(readBit(plc.discrete, DI.FLAME), 0);
    t.equal(readBit(plc.coils, COIL.ALARM_HORN), 1);
    t.equal(hr(plc, HR.STATE), State.LOCKOUT);
    t.equal(hr(plc, HR.FAULT), 1);
    tickUntil(t, plc, () => ir(plc, IR.SUPPLY_TEMP) < 700);
    t.equal(readBit(plc.discrete, DI.HIGH_LIMIT), 0, 'the thermostat resets when cool');
    t.equal(readBit(plc.discrete, DI.LOCKOUT), 1, 'the lockout latches');
    t.equal(readBit(plc.discrete, DI.FLAME), 0);
    writeBit(plc.coils, COIL.LOCKOUT_RESET, 1);
    plc.tick();
    t.equal(readBit(plc.coils, COIL.LOCKOUT_RESET), 0, 'the reset coil clears itself');
    t.equal(readBit(plc.discrete, DI.LOCKOUT), 0);
    t.equal(hr(plc, HR.FAULT), 0);
    t.equal(hr(plc, HR.STATE), State.BURNER_ON);
  });

  await t.test('emergency stop, mode off, summer mode, burner disabled', async (t) => {
    const plc = await plcFor(t);
    writeBit(plc.discrete, DI.EMERGENCY_STOP, 1);
    plc.tick();
    t.equal(hr(plc, HR.STATE), State.EMERGENCY_STOP);
    t.equal(readBit(plc.discrete, DI.FLAME), 0);
    writeBit(plc.discrete, DI.EMERGENCY_STOP, 0);
    setHr(plc, HR.MODE, Mode.OFF);
    plc.tick();
    t.equal(hr(plc, HR.STATE), State.OFF);
    setHr(plc, HR.MODE, Mode.HEATING);
    writeBit(plc.coils, COIL.SUMMER_MODE, 1);
    plc.tick();
    t.equal(hr(plc, HR.STATE), State.STANDBY, 'summer: no heating demand');
    writeBit(plc.coils, COIL.SUMMER_MODE, 0);
    writeBit(plc.coils, COIL.BURNER_ENABLE, 0);
    plc.tick();
    t.equal(hr(plc, HR.STATE), State.STANDBY);
    writeBit(plc.discrete, DI.GAS_PRESSURE_OK, 0);
    writeBit(plc.coils, COIL.BURNER_ENABLE, 1);
    plc.tick();
    t.equal(readBit(plc.discrete, DI.FLAME), 0, 'no gas pressure: no burner');
  });

  await t.test('pump off: no flow, slow cooling, the return follows the supply closely', async (t) => {
    const plc = await plcFor(t);
    setHr(plc, HR.MODE, Mode.OFF);
    writeBit(plc.coils, COIL.PUMP_ENABLE, 0);
    plc.tick();
    t.equal(ir(plc, IR.SUPPLY_TEMP), 618, 'the burner was still on during this tick');
    t.equal(ir(plc, IR.PUMP_SPEED), 0);
    t.equal(readBit(plc.discrete, DI.PUMP_RUNNING), 0);
    plc.tick();
    t.equal(ir(plc, IR.SUPPLY_TEMP), 617, 'cools by 0.1 K per tick without the pump');
    tickUntil(t, plc, () => ir(plc, IR.SUPPLY_TEMP) === 200);
    for (let i = 0; i < 200; i++) plc.tick();
    t.equal(ir(plc, IR.SUPPLY_TEMP), 200, 'never below the 20.0 °C boiler room');
    t.equal(ir(plc, IR.RETURN_TEMP), 180);
    t.equal(ir(plc, IR.FLUE_TEMP), 200);
    t.equal(ir(plc, IR.PRESSURE), 120);
  });

  await t.test('hot water: the valve to the tank heats it while the burner runs', async (t) => {
    const plc = await plcFor(t);
    setHr(plc, HR.MODE, Mode.TANK_ONLY);
    writeBit(plc.coils, COIL.TANK_VALVE, 1);
    plc.tick();
    t.equal(ir(plc, IR.TANK_TEMP), 521);
    plc.tick();
    t.equal(ir(plc, IR.TANK_TEMP), 522);
    setHr(plc, HR.TANK_SETPOINT, 500);
    plc.tick();
    t.equal(readBit(plc.discrete, DI.FLAME), 0, 'tank hot enough, no heating in this mode');
  });

  await t.test('a long run: counters, tank and room settle', async (t) => {
    const plc = await plcFor(t);
    for (let i = 0; i < 15_000; i++) plc.tick();
    t.equal(hr(plc, HR.HEARTBEAT), 15_000);
    t.equal(hr(plc, HR.UPTIME_MIN), 250);
    t.equal(hr(plc, HR.PUMP_HOURS), 9630 + 4, 'pump ran every second');
    t.equal(hr(plc, HR.BURNER_HOURS), 4212);
    t.equal(ir(plc, IR.TANK_TEMP), 300, 'unheated tank cools to 30.0 °C and stays');
    t.equal(ir(plc, IR.ROOM_TEMP), 215, 'heated room settles at 21.5 °C');
    setHr(plc, HR.MODE, Mode.OFF);
    for (let i = 0; i < 3_000; i++) plc.tick();
    t.ok(ir(plc, IR.ROOM_TEMP) < 215, 'unheated room cools towards outdoor + 5 K');
  });
});
