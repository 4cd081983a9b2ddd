// A simulated PLC for `plcguard demo` and for tests: a small gas boiler controller speaking
// Modbus/TCP, with live values. Its data tables are served by jsmodbus's TCP server; a gate in
// front of jsmodbus (built on modbus/) frames, checks and answers what jsmodbus gets wrong.
//
// Register map (0-based addresses; temperatures are int16 in 0.1 °C, so 0xFFF6 is -1.0 °C).
// "model" = the simulation writes it every tick; "rw" = clients write it and the model reads it.
//
// | table             | addr | meaning                                   | unit      | initial | who   |
// |-------------------|------|-------------------------------------------|-----------|---------|-------|
// | input_registers   |    0 | supply (flow) temperature                 | 0.1 °C    |     612 | model |
// |                   |    1 | return temperature                        | 0.1 °C    |     468 | model |
// |                   |    2 | outdoor temperature (int16)               | 0.1 °C    |     -10 | model |
// |                   |    3 | flue gas temperature                      | 0.1 °C    |    1480 | model |
// |                   |    4 | hot water tank temperature                | 0.1 °C    |     520 | model |
// |                   |    5 | system water pressure                     | 0.01 bar  |     161 | model |
// |                   |    6 | burner modulation                         | %         |      83 | model |
// |                   |    7 | circulation pump speed                    | %         |      60 | model |
// |                   |    8 | flame ionisation signal                   | 0.1 µA    |      48 | model |
// |                   |    9 | room temperature                          | 0.1 °C    |     204 | model |
// | holding_registers |    0 | operating mode: 0 off, 1 heating, 2 hot water only, 3 both | | 3 | rw |
// |                   |    1 | state: 0 off, 1 standby, 2 burner on, 8 emergency stop, 9 lockout | | 2 | model |
// |                   |    2 | burner starts                             | count     |    1287 | model |
// |                   |    3 | burner run hours                          | h         |    4211 | model |
// |                   |    4 | pump run hours                            | h         |    9630 | model |
// |                   |    5 | fault code: 0 none, 1 high-limit trip     |           |       0 | model |
// |                   |    6 | uptime                                    | min       |       0 | model |
// |                   |    7 | firmware version (0x0102 = 1.2)           |           |     258 | fixed |
// |                   |    8 | heartbeat: +1 per tick, wraps at 65536    |           |       0 | model |
// |                   |    9 | reserved                                  |           |       0 |       |
// |                   |   10 | supply setpoint                           | 0.1 °C    |     650 | rw    |
// |                   |   11 | max supply temperature (burner cut-off)   | 0.1 °C    |     850 | rw    |
// |                   |   12 | hot water setpoint                        | 0.1 °C    |     550 | rw    |
// |                   |   13 | pump speed setpoint                       | %         |      60 | rw    |
// |                   |   14 | min burner modulation                     | %         |      20 | rw    |
// |                   |   15 | max burner modulation                     | %         |     100 | rw    |
// |                   |   16 | switching hysteresis                      | 0.1 K     |      50 | rw    |
// |                   |   17 | heating curve slope (140 = 1.40)          | 0.01      |     140 | rw (not modelled) |
// |                   |   18 | night setback                             | 0.1 K     |     100 | rw (not modelled) |
// |                   |   19 | anti-legionella temperature               | 0.1 °C    |     650 | rw (not modelled) |
// | coils             |    0 | circulation pump enable                   |           |       1 | rw    |
// |                   |    1 | burner enable                             |           |       1 | rw    |
// |                   |    2 | 3-way valve to hot water tank             |           |       0 | rw    |
// |                   |    3 | hot water circulation pump                |           |       0 | rw (not modelled) |
// |                   |    4 | lockout reset: write 1, the model clears lockout and the coil |  |  0 | rw |
// |                   |    5 | summer mode (no space heating)            |           |       0 | rw    |
// |                   |    6 | frost protection enable                   |           |       1 | rw (not modelled) |
// |                   |    7 | alarm horn: set by the model on lockout   |           |       0 | rw    |
// | discrete_inputs   |    0 | flame detected                            |           |       1 | model |
// |                   |    1 | safety high-limit thermostat tripped (supply ≥ 95.0 °C) | |   0 | model |
// |                   |    2 | low water pressure (< 0.80 bar)           |           |       0 | model |
// |                   |    3 | flue gas over-temperature (≥ 250.0 °C)    |           |       0 | model |
// |                   |    4 | gas pressure switch OK                    |           |       1 | fixed |
// |                   |    5 | combustion air pressure switch (fan proven) |         |       1 | model |
// |                   |    6 | circulation pump running (feedback)       |           |       1 | model |
// |                   |    7 | burner lockout                            |           |       0 | model |
// |                   | 8-11 | sensor faults: supply, return, outdoor, tank |        |       0 |       |
// |                   |   12 | boiler room door open                     |           |       0 |       |
// |                   |   13 | emergency stop pressed                    |           |       0 |       |
// |                   |   14 | condensate trap full                      |           |       0 |       |
// |                   |   15 | building management link fault            |           |       0 |       |
//
// Every table is larger than the map: registers 0..999 and bits 0..1999 exist (unmapped ones read
// 0 and can be written); a request reaching past them gets exception 02, as a real PLC's would.
// One tick is one simulated second; by default a tick runs every second.
//
// What jsmodbus 5.0.0's server does on its own (each row tried against this version over a socket):
// | request                             | jsmodbus's answer                                          |
// |-------------------------------------|------------------------------------------------------------|
// | FC1, 2, 3, 4 within the buffer      | correct                                                    |
// | FC1–4 reaching past the buffer      | a normal reply with fewer values (byte count 0 if none): no exception 02 |
// | FC1–4 quantity 0                    | a normal reply with byte count 0: no exception 03          |
// | FC3/4 quantity 126..2000            | served (126 registers: byte count 252, MBAP length 255): no exception 03 |
// | FC1–4 quantity over 2000            | no reply, and the connection stalls (below)                |
// | FC5 value other than 0x0000/0xFF00  | written as OFF, echoed as 0x0000: no exception 03          |
// | FC5 address ≥ 8 × coil buffer bytes | RangeError thrown in the socket's 'data' handler: the process crashes |
// | FC6 address = holding bytes / 2     | RangeError (its bound check is off by one): the process crashes |
// | FC6 address past that               | exception 02                                               |
// | FC15 reaching past the buffer       | writes the coils that exist, echoes the request: no exception 02 |
// | FC15 byte count ≠ ceil(quantity/8)  | accepted                                                   |
// | FC16 reaching past the buffer       | exception 02                                               |
// | FC16 byte count ≠ 2 × quantity      | writes byte count / 2 registers and echoes that as the quantity |
// | FC43/14 device identification       | exception 01 in a 3-byte PDU (FC|0x80, MEI type, code): not the spec's 2-byte form |
// | FC0, 7, 8, 11, 12, 17, 20–24, 65,   | no reply. Its parser returns "incomplete" for them, so the frame stays at the head |
// |   90, ≥ 128: anything not above     |   of its buffer and every later request on that connection goes unanswered: |
// |                                     |   the connection stalls until the client gives up (its exception-01 path throws) |
// | MBAP length < the PDU's size        | no reply; stalls the same way                              |
// | MBAP length > the bytes sent        | answered from what arrived; the rest of the segment is discarded, and |
// |                                     |   later bytes are parsed as new frames: desynchronised       |
// | protocol id ≠ 0                     | answered, the protocol id echoed                           |
// | several requests in one segment     | answered last-first (its request queue is a LIFO)          |
// | unit id                             | ignored: every unit id is answered                         |
//
// So jsmodbus never sees raw client bytes. The gate frames the stream by MBAP (FrameSplitter:
// framing error → close), then answers itself, in the spec's order: unit id not served (0B, only
// when `unitId` is set) → function not supported (01) → malformed (decoder's 01/03/02) → address
// range outside the tables (02). FC22 (mask write), FC23 (read/write) and FC43/14 (basic device
// identification) are implemented here; every other code gets 01. Only well-formed, in-range
// FC1–6/15/16 requests reach jsmodbus, one frame at a time, through an in-memory port whose reply
// is captured synchronously: requests are answered in order, and nothing can stall or crash.

import { EventEmitter } from 'node:events';
import net from 'node:net';
import Modbus from 'jsmodbus';
import {
  ExceptionCode,
  FrameSplitter,
  type FramingError,
  FunctionCode,
  MBAP_HEADER_LENGTH,
  MEI_READ_DEVICE_IDENTIFICATION,
  ModbusRequest,
  buildException,
  decodeRequest,
  encodeAdu,
  exceptionName,
  functionLabel,
  type Table,
} from '../modbus/index.js';
import { formatEndpoint } from '../policy/net.js';

/** Registers per register table: addresses 0..999. */
export const REGISTER_COUNT = 1000;
/** Bits per bit table: addresses 0..1999 (a maximal FC1/FC2 read of 2000 fits). */
export const BIT_COUNT = 2000;

/** Input register addresses. */
export const IR = {
  SUPPLY_TEMP: 0,
  RETURN_TEMP: 1,
  OUTDOOR_TEMP: 2,
  FLUE_TEMP: 3,
  TANK_TEMP: 4,
  PRESSURE: 5,
  MODULATION: 6,
  PUMP_SPEED: 7,
  FLAME_SIGNAL: 8,
  ROOM_TEMP: 9,
} as const;

/** Holding register addresses. */
export const HR = {
  MODE: 0,
  STATE: 1,
  BURNER_STARTS: 2,
  BURNER_HOURS: 3,
  PUMP_HOURS: 4,
  FAULT: 5,
  UPTIME_MIN: 6,
  FIRMWARE: 7,
  HEARTBEAT: 8,
  SUPPLY_SETPOINT: 10,
  MAX_SUPPLY_TEMP: 11,
  TANK_SETPOINT: 12,
  PUMP_SPEED_SETPOINT: 13,
  MIN_MODULATION: 14,
  MAX_MODULATION: 15,
  HYSTERESIS: 16,
  CURVE_SLOPE: 17,
  NIGHT_SETBACK: 18,
  LEGIONELLA_TEMP: 19,
} as const;

/** Coil addresses. */
export const COIL = {
  PUMP_ENABLE: 0,
  BURNER_ENABLE: 1,
  TANK_VALVE: 2,
  TANK_CIRCULATION: 3,
  LOCKOUT_RESET: 4,
  SUMMER_MODE: 5,
  FROST_PROTECTION: 6,
  ALARM_HORN: 7,
} as const;

/** Discrete input addresses. */
export const DI = {
  FLAME: 0,
  HIGH_LIMIT: 1,
  LOW_PRESSURE: 2,
  FLUE_OVER_TEMP: 3,
  GAS_PRESSURE_OK: 4,
  AIR_PRESSURE: 5,
  PUMP_RUNNING: 6,
  LOCKOUT: 7,
  EMERGENCY_STOP: 13,
} as const;

/** HR.MODE values. */
export const Mode = { OFF: 0, HEATING: 1, TANK_ONLY: 2, HEATING_AND_TANK: 3 } as const;
/** HR.STATE values. */
export const State = { OFF: 0, STANDBY: 1, BURNER_ON: 2, EMERGENCY_STOP: 8, LOCKOUT: 9 } as const;

/** Supply temperature at which the safety thermostat trips (0.1 °C). */
export const HIGH_LIMIT_TEMP = 950;

/** FC43/14 basic device identification objects (id → ASCII value). */
export const DEVICE_ID_OBJECTS: readonly string[] = ['plcguard', 'SIM-BOILER-1', '1.2'];
/** FC43/14 conformity level: basic identification, stream and individual access. */
const CONFORMITY_BASIC_INDIVIDUAL = 0x81;
/** FC43/14 read device id code for individual access to one object. */
const READ_DEVICE_ID_INDIVIDUAL = 4;

export interface SimulatedPlcOptions {
  /** Address to listen on. Default '127.0.0.1'. */
  host?: string;
  /** Port; 0 (default) lets the kernel pick a free one. */
  port?: number;
  /**
   * When set, only this unit id is served; every other one (0 and 255 too) gets exception 0B, as
   * from a gateway whose target doesn't answer. Default: every unit id is served.
   */
  unitId?: number;
  /** Milliseconds between simulation ticks; 0 stops the clock (tests call tick()). Default 1000. */
  tickMs?: number;
  /** Receives one line per event: connections, writes, exceptions, framing errors. */
  log?: (line: string) => void;
  /** Called after every tick (live displays). */
  onTick?: (tick: number) => void;
}

export interface SimulatedPlc {
  readonly host: string;
  readonly port: number;
  readonly unitId: number | undefined;
  /** Client connections open now. */
  readonly connections: number;
  /** Most client connections that were open at once. */
  readonly maxConcurrentConnections: number;
  /** Client connections accepted since start. */
  readonly totalConnections: number;
  /** Ticks simulated so far. */
  readonly ticks: number;
  /** The data tables, live: 2 bytes per register (big-endian), 1 bit per coil/input (LSB first). */
  readonly holding: Buffer;
  readonly input: Buffer;
  readonly coils: Buffer;
  readonly discrete: Buffer;
  /** Advances the simulation by one tick (one simulated second). */
  tick(): void;
  /** Resolves once exactly `n` client connections are open. */
  waitForConnections(n: number): Promise<void>;
  /** Stops the clock, destroys every client connection and closes the listener. Idempotent. */
  close(): Promise<void>;
}

/** Reads bit `addr` of a coil or discrete input table. */
export function readBit(table: Buffer, addr: number): 0 | 1 {
  return ((table[addr >> 3]! >> (addr & 7)) & 1) as 0 | 1;
}

/** Sets bit `addr` of a coil or discrete input table. */
export function writeBit(table: Buffer, addr: number, on: boolean | 0 | 1): void {
  const i = addr >> 3;
  const mask = 1 << (addr & 7);
  table[i] = on ? table[i]! | mask : table[i]! & ~mask;
}

export async function startSimulatedPlc(opts: SimulatedPlcOptions = {}): Promise<SimulatedPlc> {
  const plc = new Plc(opts);
  await plc.listen(opts.host ?? '127.0.0.1', opts.port ?? 0);
  return plc;
}

/**
 * The bit of a socket jsmodbus's server-side client uses: 'data' events in, write() out. A reply
 * is captured instead of sent, so the gate can check that there was exactly one.
 */
class CapturePort extends EventEmitter {
  reply: Buffer | null = null;
  write(data: Buffer, cb?: () => void): boolean {
    this.reply = data;
    cb?.();
    return true;
  }
}

/** jsmodbus's TCP server as a function: one well-formed request ADU in, its reply ADU out. */
class JsmodbusTables {
  /** jsmodbus listens for 'connection' here; it never listens on the network. */
  private readonly hub = new net.Server();
  private port = new CapturePort();

  constructor(tables: { holding: Buffer; input: Buffer; coils: Buffer; discrete: Buffer }) {
    new Modbus.server.TCP(this.hub, tables);
    this.hub.emit('connection', this.port);
  }

  answer(frame: Buffer): Buffer | null {
    this.port.reply = null;
    this.port.emit('data', frame);
    const reply = this.port.reply;
    /* c8 ignore start -- defensive: the gate only passes frames jsmodbus answers synchronously;
       if one ever isn't, a fresh port keeps the leftover bytes from stalling later requests */
    if (!reply) {
      this.port = new CapturePort();
      this.hub.emit('connection', this.port);
    }
    /* c8 ignore stop */
    return reply;
  }
}

/** Function codes the simulated PLC implements (MB-AP §6); everything else gets 01. */
const SUPPORTED = new Set<number>([
  FunctionCode.READ_COILS,
  FunctionCode.READ_DISCRETE_INPUTS,
  FunctionCode.READ_HOLDING_REGISTERS,
  FunctionCode.READ_INPUT_REGISTERS,
  FunctionCode.WRITE_SINGLE_COIL,
  FunctionCode.WRITE_SINGLE_REGISTER,
  FunctionCode.WRITE_MULTIPLE_COILS,
  FunctionCode.WRITE_MULTIPLE_REGISTERS,
  FunctionCode.MASK_WRITE_REGISTER,
  FunctionCode.READ_WRITE_MULTIPLE_REGISTERS,
  FunctionCode.ENCAPSULATED_INTERFACE_TRANSPORT,
]);

const TABLE_SIZE: Record<Table, number> = {
  coils: BIT_COUNT,
  discrete_inputs: BIT_COUNT,
  holding_registers: REGISTER_COUNT,
  input_registers: REGISTER_COUNT,
};

function hex2(n: number): string {
  return n.toString(16).padStart(2, '0');
}

class Plc implements SimulatedPlc {
  readonly holding = Buffer.alloc(REGISTER_COUNT * 2);
  readonly input = Buffer.alloc(REGISTER_COUNT * 2);
  readonly coils = Buffer.alloc(BIT_COUNT / 8);
  readonly discrete = Buffer.alloc(BIT_COUNT / 8);
  readonly unitId: number | undefined;
  host = '';
  port = 0;
  maxConcurrentConnections = 0;
  totalConnections = 0;

  private readonly server = net.createServer();
  private readonly sockets = new Set<net.Socket>();
  private readonly events = new EventEmitter();
  private readonly tables: JsmodbusTables;
  private readonly model: BoilerModel;
  private readonly req = new ModbusRequest();
  private readonly log: (line: string) => void;
  private readonly onTick: ((tick: number) => void) | undefined;
  private readonly tickMs: number;
  private timer: NodeJS.Timeout | undefined;
  private closing: Promise<void> | undefined;

  constructor(opts: SimulatedPlcOptions) {
    this.unitId = opts.unitId;
    this.log = opts.log ?? (() => {});
    this.onTick = opts.onTick;
    this.tickMs = opts.tickMs ?? 1000;
    this.model = new BoilerModel(this.holding, this.input, this.coils, this.discrete);
    this.tables = new JsmodbusTables(this);
    this.server.on('connection', (socket) => this.accept(socket));
  }

  get connections(): number {
    return this.sockets.size;
  }

  get ticks(): number {
    return this.model.ticks;
  }

  async listen(host: string, port: number): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    const addr = this.server.address() as net.AddressInfo;
    this.host = addr.address;
    this.port = addr.port;
    if (this.tickMs > 0) {
      this.timer = setInterval(() => this.tick(), this.tickMs);
      this.timer.unref();
    }
    const units = this.unitId === undefined ? 'every unit id' : `unit ${this.unitId}`;
    this.log(`simulated PLC listening on ${formatEndpoint(this.host, this.port)}, ${units}`);
  }

  tick(): void {
    this.model.tick();
    this.onTick?.(this.model.ticks);
  }

  async waitForConnections(n: number): Promise<void> {
    while (this.sockets.size !== n) await new Promise((resolve) => this.events.once('connections', resolve));
  }

  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      clearInterval(this.timer);
      for (const s of this.sockets) s.destroy();
      // Resolves once every connection's handle is gone; the error (not listening) can't happen
      // here because listen() resolved before anyone could call close().
      this.server.close(() => resolve());
    });
    return this.closing;
  }

  private accept(socket: net.Socket): void {
    const peer = formatEndpoint(String(socket.remoteAddress), Number(socket.remotePort));
    this.sockets.add(socket);
    this.totalConnections++;
    this.maxConcurrentConnections = Math.max(this.maxConcurrentConnections, this.sockets.size);
    this.log(`${peer} connected (${this.sockets.size} open)`);
    this.events.emit('connections');
    let warned = false;
    const check = (err: FramingError | null): void => {
      if (!err) return;
      this.log(`${peer} framing error: ${err.message}; closing`);
      socket.destroy();
    };
    const splitter = new FrameSplitter({
      frame: (buf, start, end) => {
        if (socket.write(this.handle(peer, buf, start, end))) return true;
        // A client that doesn't read its replies stops being read: the rest of its input waits
        // in the splitter, unprocessed, until the replies drain.
        if (!warned) this.log(`${peer} is not reading its replies; reading paused until it does`);
        warned = true;
        socket.pause();
        socket.once('drain', () => {
          socket.resume();
          check(splitter.resume());
        });
        return false;
      },
    });
    socket.on('data', (chunk: Buffer) => check(splitter.push(chunk)));
    // A client that vanishes (ECONNRESET): 'close' follows and does the bookkeeping.
    socket.on('error', () => {});
    socket.on('close', () => {
      this.sockets.delete(socket);
      this.log(`${peer} disconnected (${this.sockets.size} open)`);
      this.events.emit('connections');
    });
  }

  /** The reply to one framed request ADU buf[start, end). */
  private handle(peer: string, buf: Buffer, start: number, end: number): Buffer {
    const req = decodeRequest(buf, start, end, this.req);
    const code = this.check(req);
    const where = `from ${peer} unit ${req.unitId}`;
    if (code !== 0) {
      const fc = req.functionCode;
      this.log(`exception 0x${hex2(code)} (${exceptionName(code)}) to ${functionLabel(fc)} (FC${fc}) ${where}`);
      return buildException(req.transactionId, req.unitId, req.functionCode, code);
    }
    if (req.writeTable) this.logWrite(req, where);
    switch (req.functionCode) {
      case FunctionCode.MASK_WRITE_REGISTER:
        return this.maskWrite(req);
      case FunctionCode.READ_WRITE_MULTIPLE_REGISTERS:
        return this.readWrite(req);
      case FunctionCode.ENCAPSULATED_INTERFACE_TRANSPORT:
        return this.deviceId(req);
      default: {
        const reply = this.tables.answer(buf.subarray(start, end));
        /* c8 ignore next -- defensive, see JsmodbusTables.answer */
        return reply ?? buildException(req.transactionId, req.unitId, req.functionCode, ExceptionCode.SERVER_DEVICE_FAILURE);
      }
    }
  }

  /** 0 when the request is served, else its exception code, in the spec's order. */
  private check(req: ModbusRequest): number {
    if (this.unitId !== undefined && req.unitId !== this.unitId) return ExceptionCode.GATEWAY_TARGET_FAILED;
    if (!SUPPORTED.has(req.functionCode)) return ExceptionCode.ILLEGAL_FUNCTION;
    if (req.exception !== 0) return req.exception;
    if (req.functionCode === FunctionCode.ENCAPSULATED_INTERFACE_TRANSPORT) {
      if (req.meiType !== MEI_READ_DEVICE_IDENTIFICATION) return ExceptionCode.ILLEGAL_FUNCTION;
      const code = req.buf[req.start + MBAP_HEADER_LENGTH + 2]!;
      const object = req.buf[req.start + MBAP_HEADER_LENGTH + 3]!;
      if (code === READ_DEVICE_ID_INDIVIDUAL && object >= DEVICE_ID_OBJECTS.length) return ExceptionCode.ILLEGAL_DATA_ADDRESS;
      return 0;
    }
    const { readTable, writeTable } = req;
    if (readTable && req.readStart + req.readQuantity > TABLE_SIZE[readTable]) return ExceptionCode.ILLEGAL_DATA_ADDRESS;
    if (writeTable && req.writeStart + req.writeQuantity > TABLE_SIZE[writeTable]) return ExceptionCode.ILLEGAL_DATA_ADDRESS;
    return 0;
  }

  private logWrite(req: ModbusRequest, where: string): void {
    const last = req.writeStart + req.writeQuantity - 1;
    const range = last === req.writeStart ? `${req.writeStart}` : `${req.writeStart}-${last}`;
    const what =
      req.functionCode === FunctionCode.MASK_WRITE_REGISTER
        ? `and 0x${req.andMask.toString(16).padStart(4, '0')} or 0x${req.orMask.toString(16).padStart(4, '0')}`
        : `= ${req.writtenValues().join(',')}`;
    this.log(`${functionLabel(req.functionCode)} ${req.writeTable} ${range} ${what} ${where}`);
  }

  // FC22 (MB-AP §6.16): result = (current AND and_mask) OR (or_mask AND NOT and_mask); the reply
  // echoes the request PDU | 22 | address(2) | and(2) | or(2) |.
  private maskWrite(req: ModbusRequest): Buffer {
    const o = req.writeStart * 2;
    const current = this.holding.readUInt16BE(o);
    this.holding.writeUInt16BE(((current & req.andMask) | (req.orMask & ~req.andMask)) & 0xffff, o);
    const p = req.start + MBAP_HEADER_LENGTH;
    return encodeAdu(req.transactionId, req.unitId, req.buf.subarray(p, p + 7));
  }

  // FC23 (MB-AP §6.17): the write happens before the read. Reply | 23 | byte count(1) | values |.
  private readWrite(req: ModbusRequest): Buffer {
    for (let i = 0; i < req.writeQuantity; i++) this.holding.writeUInt16BE(req.valueAt(i), (req.writeStart + i) * 2);
    const bytes = req.readQuantity * 2;
    const pdu = Buffer.allocUnsafe(2 + bytes);
    pdu[0] = FunctionCode.READ_WRITE_MULTIPLE_REGISTERS;
    pdu[1] = bytes;
    this.holding.copy(pdu, 2, req.readStart * 2, req.readStart * 2 + bytes);
    return encodeAdu(req.transactionId, req.unitId, pdu);
  }

  // FC43/14 (MB-AP §6.21), basic identification only. Request | 43 | 14 | code(1) | object id(1) |.
  // Reply | 43 | 14 | code | conformity | more follows | next object id | object count |
  //       then per object | id(1) | length(1) | ASCII value |.
  // Codes 1–3 (stream access) answer with the basic objects from the requested id on (an unknown
  // id restarts at 0; a code above the conformity level is answered at the device's level); code
  // 4 answers the one object.
  private deviceId(req: ModbusRequest): Buffer {
    const p = req.start + MBAP_HEADER_LENGTH;
    const code = req.buf[p + 2]!;
    const requested = req.buf[p + 3]!;
    let ids: number[];
    if (code === READ_DEVICE_ID_INDIVIDUAL) ids = [requested];
    else {
      const first = requested < DEVICE_ID_OBJECTS.length ? requested : 0;
      ids = [];
      for (let id = first; id < DEVICE_ID_OBJECTS.length; id++) ids.push(id);
    }
    const head = [FunctionCode.ENCAPSULATED_INTERFACE_TRANSPORT, MEI_READ_DEVICE_IDENTIFICATION, code];
    // conformity level, more follows = 0, next object id = 0, number of objects
    const parts = [Buffer.from([...head, CONFORMITY_BASIC_INDIVIDUAL, 0, 0, ids.length])];
    for (const id of ids) {
      const value = Buffer.from(DEVICE_ID_OBJECTS[id]!, 'ascii');
      parts.push(Buffer.from([id, value.length]), value);
    }
    return encodeAdu(req.transactionId, req.unitId, Buffer.concat(parts));
  }
}

/**
 * A gas boiler in integers, so every run is the same: tick n is a pure function of the tables'
 * contents and the burner/lockout state. The HMI side changes the "rw" registers and coils.
 */
class BoilerModel {
  ticks = 0;
  private burnerOn = true;
  private lockout = false;
  private burnerSeconds = 0;
  private pumpSeconds = 0;

  constructor(
    private readonly holding: Buffer,
    private readonly input: Buffer,
    private readonly coils: Buffer,
    private readonly discrete: Buffer,
  ) {
    this.setHr(HR.MODE, Mode.HEATING_AND_TANK);
    this.setHr(HR.BURNER_STARTS, 1287);
    this.setHr(HR.BURNER_HOURS, 4211);
    this.setHr(HR.PUMP_HOURS, 9630);
    this.setHr(HR.FIRMWARE, 0x0102);
    this.setHr(HR.SUPPLY_SETPOINT, 650);
    this.setHr(HR.MAX_SUPPLY_TEMP, 850);
    this.setHr(HR.TANK_SETPOINT, 550);
    this.setHr(HR.PUMP_SPEED_SETPOINT, 60);
    this.setHr(HR.MIN_MODULATION, 20);
    this.setHr(HR.MAX_MODULATION, 100);
    this.setHr(HR.HYSTERESIS, 50);
    this.setHr(HR.CURVE_SLOPE, 140);
    this.setHr(HR.NIGHT_SETBACK, 100);
    this.setHr(HR.LEGIONELLA_TEMP, 650);
    writeBit(coils, COIL.PUMP_ENABLE, 1);
    writeBit(coils, COIL.BURNER_ENABLE, 1);
    writeBit(coils, COIL.FROST_PROTECTION, 1);
    writeBit(discrete, DI.GAS_PRESSURE_OK, 1);
    this.setIr(IR.SUPPLY_TEMP, 612);
    this.setIr(IR.RETURN_TEMP, 468);
    this.setIr(IR.FLUE_TEMP, 1480);
    this.setIr(IR.TANK_TEMP, 520);
    this.setIr(IR.ROOM_TEMP, 204);
    this.derive();
  }

  tick(): void {
    const n = ++this.ticks;
    if (readBit(this.coils, COIL.LOCKOUT_RESET)) {
      writeBit(this.coils, COIL.LOCKOUT_RESET, 0);
      this.lockout = false;
      this.setHr(HR.FAULT, 0);
    }
    const pumpOn = readBit(this.coils, COIL.PUMP_ENABLE) === 1;
    const supply = this.ir(IR.SUPPLY_TEMP);
    const modulation = this.ir(IR.MODULATION);

    // Supply: heated by the burner, cooled by the house (faster with the pump running).
    let next = this.burnerOn ? supply + 2 + Math.floor(modulation / 20) : supply - (pumpOn ? 2 : 1);
    next = Math.max(next, 200);
    this.setIr(IR.SUPPLY_TEMP, next);
    if (next >= HIGH_LIMIT_TEMP && !this.lockout) {
      this.lockout = true;
      this.setHr(HR.FAULT, 1);
      writeBit(this.coils, COIL.ALARM_HORN, 1);
    }

    const returnTarget = pumpOn ? next - 150 : next - 20;
    this.approach(IR.RETURN_TEMP, returnTarget, 3);
    this.approach(IR.FLUE_TEMP, this.burnerOn ? next + 600 + 2 * modulation : next, 20);
    const tank = this.ir(IR.TANK_TEMP);
    const valve = readBit(this.coils, COIL.TANK_VALVE) === 1;
    if (valve && this.burnerOn) this.setIr(IR.TANK_TEMP, Math.min(tank + 1, next));
    else if (n % 30 === 0 && tank > 300) this.setIr(IR.TANK_TEMP, tank - 1);
    const roomTarget = pumpOn && next > 350 ? 215 : this.ir(IR.OUTDOOR_TEMP) + 50;
    if (n % 10 === 0) this.approach(IR.ROOM_TEMP, roomTarget, 1);

    if (this.burnerOn) this.burnerSeconds++;
    if (pumpOn) this.pumpSeconds++;
    if (this.burnerSeconds === 3600) {
      this.burnerSeconds = 0;
      this.setHr(HR.BURNER_HOURS, (this.hr(HR.BURNER_HOURS) + 1) & 0xffff);
    }
    if (this.pumpSeconds === 3600) {
      this.pumpSeconds = 0;
      this.setHr(HR.PUMP_HOURS, (this.hr(HR.PUMP_HOURS) + 1) & 0xffff);
    }
    this.derive();
  }

  /** Everything that follows from the state without time passing: burner decision, outputs. */
  private derive(): void {
    const n = this.ticks;
    this.setHr(HR.HEARTBEAT, n & 0xffff);
    this.setHr(HR.UPTIME_MIN, Math.floor(n / 60) & 0xffff);
    // Outdoor: a triangle wave between -1.0 and 11.0 °C over a 1440-tick "day".
    const phase = n % 1440;
    this.setIr(IR.OUTDOOR_TEMP, -10 + Math.floor(((phase < 720 ? phase : 1440 - phase) * 120) / 720));

    const mode = this.hr(HR.MODE);
    const pumpOn = readBit(this.coils, COIL.PUMP_ENABLE) === 1;
    const estop = readBit(this.discrete, DI.EMERGENCY_STOP) === 1;
    const supply = this.ir(IR.SUPPLY_TEMP);
    const setpoint = this.hr(HR.SUPPLY_SETPOINT);
    const half = Math.floor(this.hr(HR.HYSTERESIS) / 2);
    const heating = (mode === Mode.HEATING || mode === Mode.HEATING_AND_TANK) && !readBit(this.coils, COIL.SUMMER_MODE);
    const tankDemand =
      (mode === Mode.TANK_ONLY || mode === Mode.HEATING_AND_TANK) &&
      readBit(this.coils, COIL.TANK_VALVE) === 1 &&
      this.ir(IR.TANK_TEMP) < this.hr(HR.TANK_SETPOINT);
    const allowed =
      readBit(this.coils, COIL.BURNER_ENABLE) === 1 &&
      !this.lockout &&
      !estop &&
      readBit(this.discrete, DI.GAS_PRESSURE_OK) === 1 &&
      (heating || tankDemand) &&
      supply < this.hr(HR.MAX_SUPPLY_TEMP);
    const wasOn = this.burnerOn;
    if (!allowed || supply >= setpoint + half) this.burnerOn = false;
    else if (supply <= setpoint - half || tankDemand) this.burnerOn = true;
    if (this.burnerOn && !wasOn) this.setHr(HR.BURNER_STARTS, (this.hr(HR.BURNER_STARTS) + 1) & 0xffff);

    const minMod = this.hr(HR.MIN_MODULATION);
    const maxMod = Math.max(minMod, this.hr(HR.MAX_MODULATION));
    const modulation = this.burnerOn ? Math.min(maxMod, Math.max(minMod, minMod + setpoint + half - supply)) : 0;
    this.setIr(IR.MODULATION, modulation);
    this.setIr(IR.PUMP_SPEED, pumpOn ? this.hr(HR.PUMP_SPEED_SETPOINT) : 0);
    this.setIr(IR.FLAME_SIGNAL, this.burnerOn ? 40 + Math.floor(modulation / 10) : 0);
    const pressure = 120 + Math.floor((supply - 200) / 10);
    this.setIr(IR.PRESSURE, pressure);

    writeBit(this.discrete, DI.FLAME, this.burnerOn);
    writeBit(this.discrete, DI.HIGH_LIMIT, supply >= HIGH_LIMIT_TEMP);
    writeBit(this.discrete, DI.LOW_PRESSURE, pressure < 80);
    writeBit(this.discrete, DI.FLUE_OVER_TEMP, this.ir(IR.FLUE_TEMP) >= 2500);
    writeBit(this.discrete, DI.AIR_PRESSURE, this.burnerOn);
    writeBit(this.discrete, DI.PUMP_RUNNING, pumpOn);
    writeBit(this.discrete, DI.LOCKOUT, this.lockout);
    const state = this.lockout
      ? State.LOCKOUT
      : estop
        ? State.EMERGENCY_STOP
        : this.burnerOn
          ? State.BURNER_ON
          : mode === Mode.OFF
            ? State.OFF
            : State.STANDBY;
    this.setHr(HR.STATE, state);
  }

  /** Moves input register `addr` towards `target` by at most `step`. */
  private approach(addr: number, target: number, step: number): void {
    const v = this.ir(addr);
    this.setIr(addr, v + Math.max(-step, Math.min(step, target - v)));
  }

  private hr(addr: number): number {
    return this.holding.readUInt16BE(addr * 2);
  }

  private setHr(addr: number, v: number): void {
    this.holding.writeUInt16BE(v, addr * 2);
  }

  /** Input registers hold int16 (temperatures can be negative). */
  private ir(addr: number): number {
    return this.input.readInt16BE(addr * 2);
  }

  private setIr(addr: number, v: number): void {
    this.input.writeInt16BE(v, addr * 2);
  }
}
