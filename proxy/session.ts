import type net from 'node:net';
import {
  ExceptionCode,
  FrameSplitter,
  FunctionCode,
  ModbusRequest,
  buildException,
  decodeRequest,
  functionLabel,
  type FrameHandler,
  type FramingError,
  type ResponseCheck,
} from '../modbus/index.js';
import { Decision, type CompiledDevice, type DecisionReason, type SourceView } from '../policy/types.js';
import { AuditLimiter, type Logger } from './audit.js';
import { DECISION_ALLOWED, DECISION_DENIED, DECISION_WOULD_DENY, type DeviceStats } from './stats.js';
import { Transaction, Upstream, type UpstreamOwner } from './upstream.js';
import type { SourceRate } from './ratelimit.js';
import { BatchWriter } from './writer.js';

/** What a session needs from the listener that accepted it. */
export interface SessionContext {
  readonly deviceName: string;
  /** The device's current compiled policy: a reload swaps it; sessions pick it up per frame. */
  current(): CompiledDevice;
  readonly stats: DeviceStats;
  readonly logger: Logger;
  /** The rate state of a source address on this device (shared by its connections). */
  rateFor(address: string): SourceRate;
  /** Called once, when the session has ended (it no longer counts against the limits). */
  sessionClosed(session: Session): void;
}

// Why the client socket isn't being read; it is read only when no bit is set.
const PAUSE_OUTSTANDING = 1; // max outstanding requests reached (the splitter holds the rest)
const PAUSE_UPSTREAM_FULL = 2; // the PLC socket can't take more
const PAUSE_CLIENT_FULL = 4; // the client isn't reading its responses
const PAUSE_STOPPED = 8; // no new requests: shutting down, or the client's stream is broken
const PAUSE_MID_RESPONSE = 16; // our own replies wait behind a response still streaming through

/**
 * After plcguard's FIN, how long a client gets to close its side before the socket is destroyed.
 * What it still sends meanwhile is read and dropped (closing with unread data would be a reset).
 * The bound matters: the session is no longer counted against the connection limits, and a
 * client ignoring the FIN must not hold a socket, or a shutdown, for ever.
 */
const LINGER_MS = 1000;

/** TCP keepalive probes find clients that vanished without a FIN (a powered-off HMI). */
const KEEPALIVE_MS = 30_000;

/** Why a session ended (a log field). */
export type CloseReason =
  | 'client_closed'
  | 'framing_error'
  | 'frame_timeout'
  | 'idle_timeout'
  | 'deny_close'
  | 'response_cut'
  | 'policy_removed'
  | 'shutdown';

/**
 * One client connection: splitter → decode → decide → forward or deny, and the way back.
 * Owns its transactions; talks to the PLC through an Upstream that routes responses by owner.
 */
export class Session implements FrameHandler, UpstreamOwner {
  private readonly splitter = new FrameSplitter(this);
  private readonly req = new ModbusRequest();
  private readonly decision = new Decision();
  private readonly audit: AuditLimiter;
  private readonly source: string;
  private readonly rate: SourceRate;
  /** Responses and plcguard's own replies to the client. */
  private readonly out: BatchWriter;
  private device: CompiledDevice;
  private view: SourceView;
  private upstream: Upstream | null = null;
  private readonly pool: Transaction[] = [];
  private outstanding = 0;
  private pauseMask = 0;
  /** performance.now() when the chunk being processed arrived. */
  private chunkAt = 0;
  /** When plcguard took up the frames being processed (after chunkAt for frames it held). */
  private takenAt = 0;
  /** Answered in the PLC chunk being processed: timed and pooled at delivered(). */
  private readonly answered: Transaction[] = [];
  /** When the partial frame now held started arriving (0: none). */
  private partialSince = 0;
  private framesSeen = 0;
  private frameTimer: NodeJS.Timeout | null = null;
  private clientEnded = false;
  private isClosed = false;
  /** Set once no more requests are taken; the session ends when what is outstanding is answered. */
  private stopReason: CloseReason | null = null;
  /**
   * Response bytes have gone to the client and the rest of that response is still to come: any
   * reply of plcguard's own (a denial, 0A, 0B) written now would land inside it. Such replies
   * wait in `deferred` until the response is complete.
   */
  private midResponse = false;
  private readonly deferred: Buffer[] = [];
  private closeWaiters: (() => void)[] = [];

  constructor(
    private readonly socket: net.Socket,
    private readonly ctx: SessionContext,
    readonly remoteAddress: string,
    readonly remotePort: number,
  ) {
    this.source = remoteAddress.includes(':') ? `[${remoteAddress}]:${remotePort}` : `${remoteAddress}:${remotePort}`;
    this.audit = new AuditLimiter(Date.now());
    this.rate = ctx.rateFor(remoteAddress);
    this.device = ctx.current();
    this.view = this.device.forSource(remoteAddress);
    this.out = new BatchWriter(
      socket,
      () => this.device.limits.maxBufferedBytes,
      () => this.onClientDrain(),
    );
    socket.setTimeout(this.device.limits.idleTimeoutMs);
    socket.setNoDelay(true);
    socket.setKeepAlive(true, KEEPALIVE_MS);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('end', () => this.onEnd());
    socket.on('timeout', () => this.onIdle());
    socket.on('error', () => {
      /* 'close' follows; a client reset is not ours to report */
    });
    socket.on('close', () => this.teardown('client_closed'));
  }

  /** True while the client isn't reading its responses (so it isn't read either). */
  get waitingForClient(): boolean {
    return (this.pauseMask & PAUSE_CLIENT_FULL) !== 0;
  }


  /** Resolves once the session has ended. */
  whenClosed(): Promise<void> {
    if (this.isClosed) return Promise.resolve();
    return new Promise((resolve) => this.closeWaiters.push(resolve));
  }

  /**
   * Takes no more requests (and reads no more), answers what was already accepted, then closes:
   * a request the PLC has executed always gets its answer, however the connection ends. A
   * shutdown, a framing error and a frame timeout end a session this way.
   */
  stopGracefully(reason: CloseReason = 'shutdown'): void {
    /* c8 ignore next -- a second reason to stop (a shutdown after an error): the first stands */
    if (this.stopReason !== null) return;
    this.stopReason = reason;
    this.setPause(PAUSE_STOPPED, true);
    this.endIfDone();
  }

  /** Closes at once: what is queued is written, the socket destroyed. */
  close(reason: CloseReason): void {
    if (this.isClosed) return;
    this.out.flush();
    this.teardown(reason);
    this.socket.destroy();
  }

  /** The device as the policy in force has it; a reload shows here from the next frame on. */
  private refreshDevice(): CompiledDevice {
    const d = this.ctx.current();
    if (d !== this.device) {
      this.device = d;
      this.view = d.forSource(this.remoteAddress);
      if (this.upstream) this.upstream.limits = d.limits;
      this.socket.setTimeout(d.limits.idleTimeoutMs);
    }
    return d;
  }

  // ---- client → PLC ----

  private onData(chunk: Buffer): void {
    if (this.isClosed || this.stopReason !== null) return;
    this.chunkAt = performance.now();
    this.takenAt = this.chunkAt;
    const seen = this.framesSeen;
    const err = this.splitter.push(chunk);
    // Frames before a framing error were decided: send them on before anything else.
    this.afterInput(seen);
    if (err) this.onFramingError(err);
  }

  /** The stream can't be resynchronised: nothing more is read; what was accepted is answered. */
  private onFramingError(err: FramingError): void {
    this.ctx.stats.framingErrors++;
    this.log('framing_error', { code: err.code, value: err.value, message: err.message, action: 'close' });
    this.stopGracefully('framing_error');
  }

  private afterInput(framesSeenBefore: number): void {
    if (this.isClosed) return;
    if (this.upstream && !this.upstream.flush(this)) this.setPause(PAUSE_UPSTREAM_FULL, true);
    if (!this.out.flush()) this.clientFull();
    this.watchPartialFrame(framesSeenBefore);
  }

  /** A partly received frame must be completed within the frame timeout (slowloris). */
  private watchPartialFrame(framesSeenBefore: number): void {
    if (this.splitter.partialBytes === 0) {
      this.partialSince = 0;
      return;
    }
    if (this.partialSince === 0 || this.framesSeen !== framesSeenBefore) this.partialSince = this.chunkAt;
    this.frameTimer ??= setTimeout(() => this.onFrameTimer(), this.device.limits.frameTimeoutMs);
  }

  private onFrameTimer(): void {
    this.frameTimer = null;
    if (this.isClosed || this.splitter.partialBytes === 0 || this.partialSince === 0) return;
    const left = this.partialSince + this.device.limits.frameTimeoutMs - performance.now();
    if (left > 0) {
      this.frameTimer = setTimeout(() => this.onFrameTimer(), left);
      return;
    }
    this.ctx.stats.frameTimeouts++;
    this.log('frame_timeout', { partial_bytes: this.splitter.partialBytes, action: 'close' });
    this.stopGracefully('frame_timeout');
  }

  // FrameHandler: one whole request ADU.
  frame(buf: Buffer, start: number, end: number): boolean {
    /* c8 ignore next -- defensive: a stop pauses the splitter, so no frame follows it */
    if (this.isClosed || this.stopReason !== null) return false;
    this.framesSeen++;
    const req = decodeRequest(buf, start, end, this.req);
    const device = this.refreshDevice();
    const stats = this.ctx.stats;
    const d = device.decide(this.view, req, this.decision);
    if (d.allow && device.rateLimit !== null && !this.rate.allow(this.chunkAt, device.rateLimit, isWrite(req))) {
      d.allow = false;
      d.reason = 'rate_limited';
      d.exception = ExceptionCode.SERVER_DEVICE_BUSY;
    }
    if (d.allow) {
      stats.countRequest(req.functionCode, DECISION_ALLOWED);
      this.sendUpstream(req, buf, start, end, device);
    } else if (device.mode === 'monitor') {
      stats.countRequest(req.functionCode, DECISION_WOULD_DENY);
      stats.countDenial(d.reason);
      this.auditDenial('would_deny', req, d.reason, d.rule, d.exception, 'forward');
      this.sendUpstream(req, buf, start, end, device);
    } else {
      this.deny(req, d.reason, d.exception, d.rule, device.onDeny);
    }
    if (this.isClosed) return false;
    if (this.outstanding >= device.limits.maxOutstanding) {
      this.setPause(PAUSE_OUTSTANDING, true);
      return false;
    }
    return true;
  }

  private sendUpstream(req: ModbusRequest, buf: Buffer, start: number, end: number, device: CompiledDevice): void {
    this.upstream ??= new Upstream(device.upstream, device.limits, this.ctx.stats);
    const tx = this.pool.pop() ?? new Transaction();
    tx.exp.setFrom(req);
    tx.owner = this;
    tx.receivedAt = this.chunkAt;
    tx.takenAt = this.takenAt;
    if (this.upstream.send(tx, buf, start, end, this.splitter.owns(buf))) {
      this.outstanding++;
    } else {
      // Backing off after the PLC failed: answer at once rather than hold the client.
      this.pool.push(tx);
      this.reply(buildException(req.transactionId, req.unitId, req.functionCode, ExceptionCode.GATEWAY_PATH_UNAVAILABLE));
    }
  }

  private deny(
    req: ModbusRequest,
    reason: DecisionReason,
    exception: number,
    rule: string | null,
    action: 'exception' | 'drop' | 'close',
  ): void {
    const stats = this.ctx.stats;
    stats.countRequest(req.functionCode, DECISION_DENIED);
    stats.countDenial(reason);
    this.auditDenial('deny', req, reason, rule, exception, action);
    if (action === 'exception') this.reply(buildException(req.transactionId, req.unitId, req.functionCode, exception));
    else if (action === 'close') this.close('deny_close');
  }

  private auditDenial(
    event: 'deny' | 'would_deny',
    req: ModbusRequest,
    reason: DecisionReason,
    rule: string | null,
    exception: number,
    action: string,
  ): void {
    if (!this.audit.allow(Date.now())) return;
    const fields: Record<string, unknown> = {
      unit: req.unitId,
      fc: req.functionCode,
      function: functionLabel(req.functionCode),
    };
    if (req.readTable !== null) fields.read = rangeText(req.readTable, req.readStart, req.readQuantity);
    if (req.writeTable !== null) fields.write = rangeText(req.writeTable, req.writeStart, req.writeQuantity);
    if (req.subFunction >= 0) fields.subfunction = req.subFunction;
    if (req.meiType >= 0) fields.mei_type = req.meiType;
    if (req.violation !== 'none') fields.violation = req.violation;
    Object.assign(fields, { reason, rule, exception: hex(exception), action });
    this.log(event, fields);
  }

  private log(event: string, fields: Record<string, unknown>): void {
    const suppressed = this.audit.takeSuppressed();
    this.ctx.logger.log(event, {
      device: this.ctx.deviceName,
      source: this.source,
      ...fields,
      ...(suppressed > 0 ? { suppressed } : {}),
    });
  }

  // ---- PLC → client (UpstreamOwner) ----

  forward(buf: Buffer, start: number, end: number, copy: boolean): void {
    // Until complete(): within one call for a whole frame, across chunks for a streamed one.
    this.midResponse = true;
    this.out.queue(buf, start, end, copy);
  }

  complete(tx: Transaction, _check: ResponseCheck, answeredAt: number): void {
    // Timed at delivered(), once the response has been handed to the client socket.
    tx.answeredAt = answeredAt;
    this.answered.push(tx);
    this.outstanding--;
    this.midResponse = false;
    if (this.deferred.length > 0) {
      for (const b of this.deferred.splice(0)) this.reply(b);
      this.setPause(PAUSE_MID_RESPONSE, false);
    }
  }

  fail(tx: Transaction, exception: number, _now: number): void {
    const e = tx.exp;
    this.reply(buildException(e.transactionId, e.unitId, e.functionCode, exception));
    this.release(tx);
  }

  corrupt(): void {
    this.close('response_cut');
  }

  /** The end of what one PLC chunk (or timeout, or loss) brought: write it, take up held requests. */
  delivered(): void {
    if (!this.out.flush()) this.clientFull();
    if (this.answered.length > 0) this.observeAnswered();
    // Requests held at the outstanding limit go on once answers have come back.
    if (this.pauseMask & PAUSE_OUTSTANDING && this.outstanding < this.device.limits.maxOutstanding) {
      this.setPause(PAUSE_OUTSTANDING, false);
      this.takenAt = performance.now();
      const seen = this.framesSeen;
      // Held bytes were never framed: a framing error can surface here as well as in onData.
      const err = this.splitter.resume();
      this.afterInput(seen);
      if (err) this.onFramingError(err);
    }
    this.endIfDone();
  }

  /** Times the requests answered in this PLC chunk, with one clock reading, and pools them. */
  private observeAnswered(): void {
    const stats = this.ctx.stats;
    const now = performance.now();
    for (const tx of this.answered) {
      stats.upstreamTime.observe((tx.answeredAt - tx.sentAt) / 1000);
      stats.roundTrip.observe((now - tx.receivedAt) / 1000);
      // What plcguard adds: the request path (taken up → handed to the PLC socket) and the
      // response path (arrived from the PLC → handed to the client socket).
      stats.added.observe((tx.sentAt - tx.takenAt + (now - tx.answeredAt)) / 1000);
      tx.owner = null;
      this.pool.push(tx);
    }
    this.answered.length = 0;
  }

  upstreamDrained(): void {
    this.setPause(PAUSE_UPSTREAM_FULL, false);
  }

  private reply(b: Buffer): void {
    if (this.midResponse) {
      // Bounded: reading stops until the response completes (or is cut, which closes).
      this.deferred.push(b);
      this.setPause(PAUSE_MID_RESPONSE, true);
      return;
    }
    this.out.write(b);
  }

  /**
   * Past max_buffered_bytes queued to the client (or once its socket says it is full), stop
   * reading both sides until the client has taken it: a client that doesn't read can't make
   * plcguard buffer without bound.
   */
  private clientFull(): void {
    this.setPause(PAUSE_CLIENT_FULL, true);
    this.upstream?.pause();
  }

  private onClientDrain(): void {
    this.setPause(PAUSE_CLIENT_FULL, false);
    this.upstream?.resume();
  }

  private release(tx: Transaction): void {
    tx.owner = null;
    this.pool.push(tx);
    this.outstanding--;
  }

  private setPause(bit: number, on: boolean): void {
    const before = this.pauseMask;
    this.pauseMask = on ? before | bit : before & ~bit;
    if (before === 0 && this.pauseMask !== 0) this.socket.pause();
    else if (before !== 0 && this.pauseMask === 0 && !this.isClosed) this.socket.resume();
  }

  // ---- lifecycle ----

  /** The client half-closed: answer what is outstanding, then close. */
  private onEnd(): void {
    this.clientEnded = true;
    this.endIfDone();
  }

  private endIfDone(): void {
    if (this.isClosed || this.outstanding > 0) return;
    if (!this.clientEnded && this.stopReason === null) return;
    this.out.flush();
    this.teardown(this.stopReason ?? 'client_closed');
    this.socket.end();
    if (!this.clientEnded) {
      this.socket.resume();
      const linger = setTimeout(() => this.socket.destroy(), LINGER_MS);
      this.socket.once('close', () => clearTimeout(linger));
    }
  }

  private onIdle(): void {
    // Waiting on the PLC, or on the rest of a frame (the frame timeout's business), is not idle.
    if (this.outstanding > 0 || this.splitter.partialBytes > 0) return;
    this.log('idle_timeout', { action: 'close' });
    this.close('idle_timeout');
  }

  private teardown(reason: CloseReason): void {
    if (this.isClosed) return;
    this.isClosed = true;
    if (this.frameTimer !== null) clearTimeout(this.frameTimer);
    this.frameTimer = null;
    this.upstream?.close();
    this.upstream = null;
    this.splitter.reset();
    this.deferred.length = 0;
    this.answered.length = 0;
    const suppressed = this.audit.takeSuppressed();
    if (suppressed > 0) {
      this.ctx.logger.log('audit_suppressed', {
        device: this.ctx.deviceName,
        source: this.source,
        suppressed,
        reason,
      });
    }
    this.ctx.sessionClosed(this);
    for (const w of this.closeWaiters.splice(0)) w();
  }
}

/** Requests that change the PLC's data: what `writes_per_second` counts. */
function isWrite(req: ModbusRequest): boolean {
  return req.writeTable !== null || req.functionCode === FunctionCode.WRITE_FILE_RECORD;
}

function rangeText(table: string, start: number, quantity: number): string {
  return quantity <= 1 ? `${table} ${start}` : `${table} ${start}-${start + quantity - 1}`;
}

function hex(code: number): string {
  return '0x' + code.toString(16).padStart(2, '0');
}
