// A simulated HMI for the docker-compose demo and the end-to-end check: it polls the simulated
// boiler (demo/plc.ts has the register map) through plcguard on a fixed cycle, writes the
// supply setpoint back now and then, and every Nth request tries a write the demo policy denies,
// so that every panel of the Grafana dashboard has data. One connection, one request at a time,
// as most HMIs poll; it reconnects (with backoff) when the connection is lost.
//
// A poll cycle, one request per interval:
//   FC3 holding_registers 0-9    mode, state, counters, heartbeat
//   FC4 input_registers 0-9      temperatures, pressure, modulation
//   FC1 coils 0-7                pump, burner, valve, ...
//   FC2 discrete_inputs 0-15     flame, safety switches, faults
//   FC3 holding_registers 10-19  setpoints; every 10th cycle the supply setpoint read is
//                                written back (FC6 holding_registers 10), as an operator
//                                confirming it would
// Every --deny-every'th request is instead, alternately:
//   FC6 holding_registers 50 = 1     an address the demo policy doesn't allow (exception 02)
//   FC6 holding_registers 10 = 5000  a value outside the allowed 0..1000 (exception 03)

import net from 'node:net';
import { parseArgs } from 'node:util';
import { FrameSplitter, FunctionCode, MBAP_HEADER_LENGTH, UsageError, encodeAdu, type FrameHandler } from '../modbus/index.js';
import { Logger } from '../proxy/audit.js';
import { endpointOption, formatEndpoint } from '../policy/net.js';
import type { Endpoint } from '../policy/types.js';
import { HR, IR } from './plc.js';
import { untilSignal } from './signals.js';

export const DEFAULT_HMI_INTERVAL_MS = 500;
export const DEFAULT_DENY_EVERY = 20;
export const DEFAULT_HMI_UNIT = 1;
export const DEFAULT_HMI_TIMEOUT_MS = 3000;
export const DEFAULT_HMI_SUMMARY_MS = 60_000;
/** Reconnect backoff: doubles from the first to the last after each failed attempt. */
const RECONNECT_MIN_MS = 250;
const RECONNECT_MAX_MS = 5000;
/** The supply setpoint is written back once per this many poll cycles. */
const WRITE_BACK_EVERY_CYCLES = 10;
/** A holding register the demo policy doesn't list. */
const DENIED_ADDRESS = 50;
/** A supply setpoint outside the demo policy's 0..1000 (0.1 °C). */
const DENIED_VALUE = 5000;
const MAX_UNIT_ID = 255;
/** Offsets in a response ADU: function code, then (reads) byte count, then data. */
const FC_OFFSET = MBAP_HEADER_LENGTH;
const EXCEPTION_CODE_OFFSET = MBAP_HEADER_LENGTH + 1;
const READ_DATA_OFFSET = MBAP_HEADER_LENGTH + 2;
const EXCEPTION_BIT = 0x80;

interface Read {
  fc: number;
  start: number;
  quantity: number;
}

const SETPOINTS: Read = { fc: FunctionCode.READ_HOLDING_REGISTERS, start: HR.SUPPLY_SETPOINT, quantity: 10 };
const POLL_CYCLE: readonly Read[] = [
  { fc: FunctionCode.READ_HOLDING_REGISTERS, start: HR.MODE, quantity: 10 },
  { fc: FunctionCode.READ_INPUT_REGISTERS, start: IR.SUPPLY_TEMP, quantity: 10 },
  { fc: FunctionCode.READ_COILS, start: 0, quantity: 8 },
  { fc: FunctionCode.READ_DISCRETE_INPUTS, start: 0, quantity: 16 },
  SETPOINTS,
];

export interface HmiOptions {
  /** plcguard (or a PLC) to poll. */
  target: Endpoint;
  /** Milliseconds between requests. Default 500. */
  intervalMs?: number;
  /** Every Nth request is a write the demo policy denies; 0: never. Default 20. */
  denyEvery?: number;
  /** Unit id of every request. Default 1. */
  unitId?: number;
  /** A request unanswered this long counts as a timeout, and the connection is reopened. Default 3000. */
  timeoutMs?: number;
  /** Milliseconds between hmi_summary log lines; 0: none. Default 60000. */
  summaryMs?: number;
  /** Where the hmi_* lines go. */
  logger: Logger;
}

/** What the HMI saw, since it started. */
export class HmiStats {
  /** Requests sent. */
  requests = 0;
  /** Normal (non-exception) responses. */
  responses = 0;
  /** Exception responses by exception code. */
  readonly exceptions = new Map<number, number>();
  /** Writes sent that the demo policy denies. */
  deniedWritesTried = 0;
  /** Setpoint write-backs sent. */
  writeBacks = 0;
  /** Requests that got no answer in time. */
  timeouts = 0;
  connects = 0;
  connectFailures = 0;
  disconnects = 0;

  exceptionCount(code: number): number {
    return this.exceptions.get(code) ?? 0;
  }

  /** Log fields (snake_case, like the audit log's). */
  toJSON(): Record<string, unknown> {
    const exceptions = Object.fromEntries([...this.exceptions].map(([code, n]) => [`0x${code.toString(16).padStart(2, '0')}`, n]));
    return {
      requests: this.requests,
      responses: this.responses,
      exceptions,
      denied_writes_tried: this.deniedWritesTried,
      write_backs: this.writeBacks,
      timeouts: this.timeouts,
      connects: this.connects,
      connect_failures: this.connectFailures,
      disconnects: this.disconnects,
    };
  }
}

/** A running simulated HMI. */
export class Hmi implements FrameHandler {
  readonly stats = new HmiStats();
  private readonly intervalMs: number;
  private readonly denyEvery: number;
  private readonly unitId: number;
  private readonly timeoutMs: number;
  private readonly logger: Logger;
  private readonly where: string;
  private socket: net.Socket | null = null;
  private splitter = new FrameSplitter(this);
  private connected = false;
  private stopped = false;
  private tid = 0;
  /** The request awaiting its response: its transaction id and what it read (null: a write). */
  private pending: { tid: number; read: Read | null } | null = null;
  private seq = 0;
  private pollIndex = 0;
  private setpointReads = 0;
  private writeBack: number | null = null;
  private failures = 0;
  private readonly pollTimer: NodeJS.Timeout;
  private readonly summaryTimer: NodeJS.Timeout | null = null;
  private responseTimer: NodeJS.Timeout | null = null;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private readonly waiters: { until: (s: HmiStats) => boolean; resolve: () => void }[] = [];
  private closedWaiter: (() => void) | null = null;

  constructor(private readonly opts: HmiOptions) {
    this.intervalMs = opts.intervalMs ?? DEFAULT_HMI_INTERVAL_MS;
    this.denyEvery = opts.denyEvery ?? DEFAULT_DENY_EVERY;
    this.unitId = opts.unitId ?? DEFAULT_HMI_UNIT;
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_HMI_TIMEOUT_MS;
    this.logger = opts.logger;
    this.where = formatEndpoint(opts.target.host, opts.target.port);
    this.pollTimer = setInterval(() => this.poll(), this.intervalMs);
    const summaryMs = opts.summaryMs ?? DEFAULT_HMI_SUMMARY_MS;
    if (summaryMs > 0) this.summaryTimer = setInterval(() => this.logger.log('hmi_summary', { target: this.where, ...this.stats.toJSON() }), summaryMs);
    this.logger.log('hmi_started', { target: this.where, interval_ms: this.intervalMs, deny_every: this.denyEvery, unit: this.unitId });
    this.connect();
  }

  /** Resolves once `until(stats)` holds (checked after every response, timeout and connection change). */
  waitFor(until: (s: HmiStats) => boolean): Promise<void> {
    if (until(this.stats)) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ until, resolve }));
  }

  /** Stops polling and closes the connection. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.pollTimer);
    if (this.summaryTimer !== null) clearInterval(this.summaryTimer);
    this.clearResponseTimer();
    if (this.reconnectTimer !== null) clearTimeout(this.reconnectTimer);
    const s = this.socket;
    if (s !== null) {
      const closed = new Promise<void>((resolve) => (this.closedWaiter = resolve));
      s.destroy();
      await closed;
    }
    this.logger.log('hmi_stopped', { target: this.where, ...this.stats.toJSON() });
  }

  private connect(): void {
    this.reconnectTimer = null;
    const socket = net.connect({ host: this.opts.target.host, port: this.opts.target.port, noDelay: true });
    this.socket = socket;
    this.splitter = new FrameSplitter(this);
    let error: string | null = null;
    socket.on('connect', () => {
      this.connected = true;
      this.failures = 0;
      this.stats.connects++;
      this.logger.log('hmi_connected', { target: this.where });
      this.changed();
    });
    socket.on('data', (chunk: Buffer) => {
      const err = this.splitter.push(chunk);
      if (err) {
        error = `framing error: ${err.message}`;
        socket.destroy();
      }
    });
    socket.on('error', (err: Error) => {
      error = err.message;
    });
    socket.on('close', () => this.onClose(error));
  }

  private onClose(error: string | null): void {
    const wasConnected = this.connected;
    this.socket = null;
    this.connected = false;
    this.pending = null;
    this.clearResponseTimer();
    if (this.stopped) {
      this.closedWaiter?.();
      return;
    }
    if (wasConnected) {
      this.stats.disconnects++;
      this.logger.log('hmi_disconnected', { target: this.where, error });
    } else {
      this.stats.connectFailures++;
      // One line per outage, not one per attempt.
      if (this.failures === 0) this.logger.log('hmi_connect_failed', { target: this.where, error, retrying: true });
    }
    const delay = Math.min(RECONNECT_MAX_MS, RECONNECT_MIN_MS * 2 ** Math.min(this.failures, 16));
    this.failures++;
    this.reconnectTimer = setTimeout(() => this.connect(), delay);
    this.changed();
  }

  /** One tick of the poll cycle: sends the next request unless one is still outstanding. */
  private poll(): void {
    if (!this.connected || this.pending !== null) return;
    const { pdu, read } = this.next();
    this.tid = (this.tid + 1) & 0xffff;
    this.pending = { tid: this.tid, read };
    this.stats.requests++;
    this.socket!.write(encodeAdu(this.tid, this.unitId, pdu));
    this.responseTimer = setTimeout(() => this.onTimeout(), this.timeoutMs);
  }

  private next(): { pdu: Buffer; read: Read | null } {
    this.seq++;
    if (this.denyEvery > 0 && this.seq % this.denyEvery === 0) {
      const byAddress = this.stats.deniedWritesTried++ % 2 === 0;
      return { pdu: writeRegister(byAddress ? DENIED_ADDRESS : HR.SUPPLY_SETPOINT, byAddress ? 1 : DENIED_VALUE), read: null };
    }
    if (this.writeBack !== null) {
      const value = this.writeBack;
      this.writeBack = null;
      this.stats.writeBacks++;
      return { pdu: writeRegister(HR.SUPPLY_SETPOINT, value), read: null };
    }
    const read = POLL_CYCLE[this.pollIndex]!;
    this.pollIndex = (this.pollIndex + 1) % POLL_CYCLE.length;
    const pdu = Buffer.alloc(5);
    pdu[0] = read.fc;
    pdu.writeUInt16BE(read.start, 1);
    pdu.writeUInt16BE(read.quantity, 3);
    return { pdu, read };
  }

  // FrameHandler: one whole response.
  frame(buf: Buffer, start: number, end: number): boolean {
    const p = this.pending;
    // A late answer to a request that timed out went with its connection; anything else is noise.
    if (p === null || buf.readUInt16BE(start) !== p.tid) return true;
    this.pending = null;
    this.clearResponseTimer();
    const fc = buf[start + FC_OFFSET]!;
    if (fc & EXCEPTION_BIT) {
      const code = buf[start + EXCEPTION_CODE_OFFSET]!;
      this.stats.exceptions.set(code, this.stats.exceptionCount(code) + 1);
    } else {
      this.stats.responses++;
      // The setpoints read: its first register is the supply setpoint.
      if (p.read === SETPOINTS && end - start >= READ_DATA_OFFSET + 2 && ++this.setpointReads % WRITE_BACK_EVERY_CYCLES === 0) {
        this.writeBack = buf.readUInt16BE(start + READ_DATA_OFFSET);
      }
    }
    this.changed();
    return true;
  }

  private onTimeout(): void {
    this.responseTimer = null;
    this.stats.timeouts++;
    this.logger.log('hmi_timeout', { target: this.where, timeout_ms: this.timeoutMs, action: 'reconnect' });
    // The answer may still come, or never: a fresh connection can't be confused by it.
    this.socket?.destroy();
  }

  private clearResponseTimer(): void {
    if (this.responseTimer !== null) clearTimeout(this.responseTimer);
    this.responseTimer = null;
  }

  private changed(): void {
    for (let i = this.waiters.length - 1; i >= 0; i--) {
      const w = this.waiters[i]!;
      if (w.until(this.stats)) {
        this.waiters.splice(i, 1);
        w.resolve();
      }
    }
  }
}

function writeRegister(address: number, value: number): Buffer {
  const pdu = Buffer.alloc(5);
  pdu[0] = FunctionCode.WRITE_SINGLE_REGISTER;
  pdu.writeUInt16BE(address, 1);
  pdu.writeUInt16BE(value, 3);
  return pdu;
}

export function startHmi(opts: HmiOptions): Hmi {
  return new Hmi(opts);
}

export interface HmiIo {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
}

export const HMI_USAGE = `usage: plcguard hmi HOST:PORT [--interval MS] [--deny-every N] [--unit N]
  HOST:PORT       plcguard (or a PLC) to poll; IPv6 as [ADDRESS]:PORT
  --interval MS   time between requests (default ${DEFAULT_HMI_INTERVAL_MS})
  --deny-every N  every Nth request is a write the demo policy denies; 0 never (default ${DEFAULT_DENY_EVERY})
  --unit N        unit id 0..${MAX_UNIT_ID} (default ${DEFAULT_HMI_UNIT})
Polls the simulated boiler PLC's registers (demo/plc.ts) until SIGTERM or SIGINT; logs JSON lines.
exit status: 0 stopped by a signal, 2 usage error`;

function usage(message: string): UsageError {
  return new UsageError('ERR_HMI_USAGE', message);
}

function wholeNumber(value: string | undefined, fallback: number, min: number, max: number, what: string): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < min || n > max) throw usage(`${what}: expected a whole number ${min}..${max}, got "${value}"`);
  return n;
}

/**
 * `plcguard hmi`: runs the simulated HMI until `until` resolves (by default SIGTERM/SIGINT), then
 * resolves 0. A command line it can't use throws: a UsageError, or parseArgs' own error (cli/
 * reports both as usage errors, with the hint to --help).
 */
export async function hmiCommand(args: string[], io: HmiIo, until: () => Promise<unknown> = untilSignal): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { interval: { type: 'string' }, 'deny-every': { type: 'string' }, unit: { type: 'string' } },
  });
  if (positionals.length !== 1) throw usage(`expected one HOST:PORT, got ${positionals.length}`);
  const hmi = startHmi({
    target: endpointOption(positionals[0]!, 'HOST:PORT'),
    intervalMs: wholeNumber(values.interval, DEFAULT_HMI_INTERVAL_MS, 1, 3_600_000, '--interval'),
    denyEvery: wholeNumber(values['deny-every'], DEFAULT_DENY_EVERY, 0, Number.MAX_SAFE_INTEGER, '--deny-every'),
    unitId: wholeNumber(values.unit, DEFAULT_HMI_UNIT, 0, MAX_UNIT_ID, '--unit'),
    logger: new Logger((line) => io.stdout(line)),
  });
  await until();
  await hmi.stop();
  return 0;
}
