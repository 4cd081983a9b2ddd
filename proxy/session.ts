import {
  ExceptionCode,
  FrameSplitter,
  FunctionCode,
  MAX_ADU_LENGTH,
  ModbusRequest,
  buildException,
  decodeRequest,
  functionLabel,
  type FrameHandler,
  type FramingError,
  type ResponseCheck,
} from '../modbus/index.js';
import { Decision, type CompiledDevice, type DecisionReason, type SourceView } from '../policy/types.js';
import type { LiveLearner } from '../policy/learn/live.js';
import type { SourceObservation } from '../policy/learn/observe.js';
import { MAX_LOGGED_VALUES, connectionFields, type AuditGate, type Logger } from './audit.js';
import type { Clock, Timer } from './clock.js';
import { invariant } from '../modbus/errors.js';
import type { SourceRate } from './ratelimit.js';
import { DECISION_ALLOWED, DECISION_DENIED, DECISION_WOULD_DENY } from './stats.js';
import { KEEPALIVE_MS, Transaction, type LinkContext, type UpstreamOwner, type UpstreamPort } from './upstream.js';
import { BatchWriter, type WritableSocket } from './writer.js';
import { identityFields, type ClientIdentity } from './tls.js';

/**
 * What a session needs from the listener that accepted it: the device's, and for its upstream
 * link the device's LinkContext (whose clock also times the session's frame, idle and linger).
 */
export interface SessionContext extends LinkContext {
  readonly deviceName: string;
  /** The device's current compiled policy: a reload swaps it; sessions pick it up per frame. */
  current(): CompiledDevice;
  readonly logger: Logger;
  /** The audit line budget of every source (one per process). */
  readonly audit: AuditGate;
  /** The rate state of a source address on this device (shared by its connections). */
  rateFor(address: string): SourceRate;
  /** Called once, when the session has ended (it no longer counts against the limits), and why. */
  sessionClosed(session: Session, reason: CloseReason): void;
  /** The way to the PLC for `owner`'s requests: a link of its own, or a port on the device's shared links. */
  upstreamFor(owner: UpstreamOwner, device: CompiledDevice): UpstreamPort;
  /** The device's learner while it is in learn mode, else null. */
  readonly learner: LiveLearner | null;
  /** The learner's cell budget was just used up (warn once). */
  learnCeilingReached(): void;
}

/** The part of a net.Socket a session uses toward its client (tests pass a fake). */
export interface ClientSocket extends WritableSocket {
  /** The client's FIN has been read. */
  readonly readableEnded: boolean;
  on(event: 'data', listener: (chunk: Buffer) => void): unknown;
  on(event: 'end' | 'drain' | 'close' | 'error', listener: () => void): unknown;
  setNoDelay(noDelay: boolean): unknown;
  setKeepAlive(enable: boolean, initialDelay: number): unknown;
  pause(): unknown;
  resume(): unknown;
  end(): unknown;
  destroy(): unknown;
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
export const LINGER_MS = 1000;

/** partialSince when no partial frame is held. */
const NO_PARTIAL = -1;

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

/** Bytes for the client waiting behind an answer that streams through: tx set while its own answer is incomplete. */
interface Deferred {
  tx: Transaction | null;
  readonly chunks: Buffer[];
}

/**
 * A session's life. Requests are taken while it is open or ended; it counts against the
 * connection limits until it is lingering or closed, and whenClosed() resolves then.
 *
 *   open ──client's FIN──▶ ended ──────────────────┐
 *    │                       │                     ├─ nothing outstanding: FIN ─▶ lingering ─▶ closed
 *    └──stopGracefully──▶ stopping ◀─stopGracefully┘      (the client's FIN already in: closed)
 *   open, ended, stopping ──close(), or the client's socket closed──▶ closed
 *
 * Every change of state is in the "lifecycle" section of Session.
 */
type SessionState =
  | { readonly kind: 'open' }
  /** The client half-closed: what it sent is still taken and answered, then plcguard closes too. */
  | { readonly kind: 'ended' }
  /** No more requests are taken (none read, none held taken up); what was accepted is answered. */
  | { readonly kind: 'stopping'; readonly reason: CloseReason }
  /** plcguard's FIN is out; what the client still sends is dropped, for at most LINGER_MS. */
  | { readonly kind: 'lingering'; readonly timer: Timer }
  | { readonly kind: 'closed' };

const OPEN: SessionState = { kind: 'open' };
const ENDED: SessionState = { kind: 'ended' };
const CLOSED: SessionState = { kind: 'closed' };

/**
 * One client connection: splitter → decode → decide → forward or deny, and the way back.
 * Owns its transactions; talks to the PLC through an Upstream that routes responses by owner.
 */
export class Session implements FrameHandler, UpstreamOwner {
  private readonly splitter = new FrameSplitter(this);
  private readonly req = new ModbusRequest();
  private readonly decision = new Decision();
  private readonly clock: Clock;
  private readonly audit: AuditGate;
  /** What places each of its log lines: device, connection id, client, PLC (audit.ts). */
  readonly logFields: Readonly<Record<string, unknown>>;
  /** Clock time it started: its connection_closed line gives the duration. */
  readonly openedAt: number;
  private readonly rate: SourceRate;
  /** Responses and plcguard's own replies to the client. */
  private readonly out: BatchWriter;
  private readonly frameTimer: Timer;
  private readonly idleTimer: Timer;
  private state: SessionState = OPEN;
  private device: CompiledDevice;
  private view: SourceView;
  /** The client certificate's role (null: none, or plain Modbus/TCP). */
  private readonly role: string | null;
  private upstream: UpstreamPort | null = null;
  private readonly pool: Transaction[] = [];
  private outstanding = 0;
  private pauseMask = 0;
  /** Clock time when the chunk being processed arrived. */
  private chunkAt = 0;
  /** When plcguard took up the frames being processed (after chunkAt for frames it held). */
  private takenAt = 0;
  /** When the client last sent something or was last answered: idleness counts from here. */
  private activeAt: number;
  /** Answered in the PLC chunk being processed: timed and pooled at delivered(). */
  private readonly answered: Transaction[] = [];
  /** When the partial frame now held started arriving. */
  private partialSince = NO_PARTIAL;
  private framesSeen = 0;
  /** Requests denied (would-deny in monitor mode), bytes read from the client and handed to it. */
  private denied = 0;
  private bytesFromClient = 0;
  private bytesToClient = 0;
  /**
   * The answer whose bytes have started going to the client, the rest still to come (null: none).
   * Anything else written now would land inside it: a reply of plcguard's own (a denial, 0A, 0B),
   * or the answer of another upstream (unit routing, several shared links). Those wait in
   * `deferred`, in order, until it is complete.
   */
  private streaming: Transaction | null = null;
  private readonly deferred: Deferred[] = [];
  private readonly closeWaiters: (() => void)[] = [];
  /** Learn mode: this client's entry in the learner (and which learner, and which of its sets). */
  private learnSource: SourceObservation | null = null;
  private learnOf: LiveLearner | null = null;
  private learnGeneration = 0;

  constructor(
    private readonly socket: ClientSocket,
    private readonly ctx: SessionContext,
    readonly remoteAddress: string,
    readonly remotePort: number,
    /** Unique per connection (audit.ts ConnectionIds): joins its lines in a SIEM. */
    readonly id: string,
    /** The verified client certificate's, on a device with tls; null: plain Modbus/TCP. */
    readonly identity: ClientIdentity | null = null,
  ) {
    this.clock = ctx.clock;
    this.openedAt = this.activeAt = this.clock.now();
    this.audit = ctx.audit;
    this.rate = ctx.rateFor(remoteAddress);
    this.device = ctx.current();
    // Fixed for the connection, like the address: the view is resolved from both at connect.
    this.role = identity === null ? null : identity.role;
    this.view = this.device.forSource(remoteAddress, this.role);
    // The device's name and PLC stay for the session's life: a reload that changes the PLC
    // closes it (server.ts), a rename makes another device. So does the client's identity.
    this.logFields = { ...connectionFields(this.device, id, remoteAddress, remotePort), ...(identity === null ? {} : identityFields(identity)) };
    this.out = new BatchWriter(
      socket,
      () => this.device.limits.maxBufferedBytes,
      () => this.onClientDrained(),
    );
    this.frameTimer = this.clock.timer(() => this.onFrameTimer());
    this.idleTimer = this.clock.timer(() => this.onIdleTimer());
    this.idleTimer.arm(this.device.limits.idleTimeoutMs);
    socket.setNoDelay(true);
    socket.setKeepAlive(true, KEEPALIVE_MS);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('end', () => this.onEnd());
    socket.on('error', () => {
      /* 'close' follows; a client reset is not ours to report */
    });
    socket.on('close', () => this.onSocketClose());
  }

  /** True while the client isn't reading its responses (so it isn't read either). */
  get waitingForClient(): boolean {
    return (this.pauseMask & PAUSE_CLIENT_FULL) !== 0;
  }

  /** Resolves once the session has ended. */
  whenClosed(): Promise<void> {
    if (this.over) return Promise.resolve();
    return new Promise((resolve) => this.closeWaiters.push(resolve));
  }

  /** The device as the policy in force has it; a reload shows here from the next frame on. */
  private refreshDevice(): CompiledDevice {
    const d = this.ctx.current();
    if (d !== this.device) {
      this.device = d;
      this.view = d.forSource(this.remoteAddress, this.role);
      if (this.upstream) this.upstream.limits = d.limits;
      // As setTimeout on a socket would: the new idle timeout counts from now (a frame is activity).
      this.idleTimer.arm(d.limits.idleTimeoutMs);
    }
    return d;
  }

  // ---- client → PLC ----

  private onData(chunk: Buffer): void {
    this.bytesFromClient += chunk.length;
    this.ctx.stats.bytesFromClient += chunk.length;
    // Lingering: what the client still sends is dropped. (Ended or stopping, nothing is read.)
    if (this.state.kind !== 'open') return;
    const now = this.clock.now();
    this.chunkAt = now;
    this.takenAt = now;
    this.activeAt = now;
    const seen = this.framesSeen;
    const err = this.splitter.push(chunk);
    // Frames before a framing error were decided: send them on before anything else.
    this.afterInput(seen);
    if (err) this.onFramingError(err);
  }

  /** The stream can't be resynchronised: nothing more is read; what was accepted is answered. */
  private onFramingError(err: FramingError): void {
    this.ctx.stats.framingErrors++;
    // A client can cause one each time it connects: within the audit budget.
    if (this.auditAllows()) this.log('framing_error', { code: err.code, value: err.value, message: err.message, action: 'close' });
    this.stopGracefully('framing_error');
  }

  private afterInput(framesSeenBefore: number): void {
    // A denial closed the session (on_deny: close).
    if (this.over) return;
    if (this.upstream && !this.upstream.flush(this)) this.setPause(PAUSE_UPSTREAM_FULL, true);
    if (!this.out.flush()) this.clientFull();
    this.watchPartialFrame(framesSeenBefore);
  }

  /** A partly received frame must be completed within the frame timeout (slowloris). */
  private watchPartialFrame(framesSeenBefore: number): void {
    if (this.splitter.partialBytes === 0) {
      this.partialSince = NO_PARTIAL;
      return;
    }
    if (this.partialSince === NO_PARTIAL || this.framesSeen !== framesSeenBefore) this.partialSince = this.chunkAt;
    if (!this.frameTimer.armed) this.frameTimer.arm(this.device.limits.frameTimeoutMs);
  }

  private onFrameTimer(): void {
    // The frame it was armed for has completed since; a later one re-arms it.
    if (this.splitter.partialBytes === 0) return;
    const left = this.partialSince + this.device.limits.frameTimeoutMs - this.clock.now();
    if (left > 0) {
      this.frameTimer.arm(left);
      return;
    }
    this.ctx.stats.frameTimeouts++;
    this.log('frame_timeout', { partial_bytes: this.splitter.partialBytes, action: 'close' });
    this.stopGracefully('frame_timeout');
  }

  // FrameHandler: one whole request ADU.
  frame(buf: Buffer, start: number, end: number): boolean {
    const k = this.state.kind;
    // Input is read only while open, and held frames are taken up only while open or ended.
    invariant(k === 'open' || k === 'ended', 'session: a frame after it stopped taking requests');
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
      // Not within the audit budget: only sources the policy lets write cause these, on devices
      // whose author asked for them, and a trail with holes would not say who changed what.
      if (device.logWrites && isWrite(req)) this.log('write', { ...requestFields(req), rule: d.rule });
      this.sendUpstream(req, buf, start, end, device, device.mode === 'learn' ? this.ctx.learner : null);
    } else if (device.mode === 'monitor') {
      stats.countRequest(req.functionCode, DECISION_WOULD_DENY);
      stats.countWouldDeny(d.reason);
      this.denied++;
      this.auditDenial('would_deny', req, d.reason, d.rule, d.exception, 'forward');
      this.sendUpstream(req, buf, start, end, device, null);
    } else {
      // Learn mode denies only malformed requests: counted where the proposal says what was not learned.
      if (device.mode === 'learn' && d.reason === 'malformed') this.ctx.learner!.malformed();
      this.deny(req, d.reason, d.exception, d.rule, device.onDeny);
      if (this.over) return false;
    }
    if (this.atPlc >= device.limits.maxOutstanding) {
      this.holdAtLimit();
      return false;
    }
    return true;
  }

  /**
   * Requests the PLC may still be working on: those awaiting its answer, and those plcguard
   * answered 0B at the response timeout whose answers may still come. max_outstanding bounds
   * both: freeing a slot at the 0B would let a PLC that stopped answering pile up a request per
   * timeout.
   */
  private get atPlc(): number {
    return this.outstanding + (this.upstream?.expiredCount ?? 0);
  }

  /**
   * At max_outstanding: requests are held (not read) until a slot is free. When none of the
   * requests holding the slots awaits an answer (all were answered 0B), only the PLC's late
   * answers could free one, and a PLC that stopped answering sends none: the connection is reset
   * instead, which frees them all. Counting and resetting rather than resetting at every timeout
   * keeps the other requests in flight when the PLC is only slow, and lets late answers free slots.
   */
  private holdAtLimit(): void {
    this.setPause(PAUSE_OUTSTANDING, true);
    if (this.outstanding === 0) this.upstream!.resetExpired();
  }

  /** `learner` (learn mode): keep a copy of the request, to record it there with its answer. */
  private sendUpstream(req: ModbusRequest, buf: Buffer, start: number, end: number, device: CompiledDevice, learner: LiveLearner | null): void {
    this.upstream ??= this.ctx.upstreamFor(this, device);
    const tx = this.pool.pop() ?? new Transaction(this);
    tx.exp.setFrom(req);
    tx.receivedAt = this.chunkAt;
    tx.takenAt = this.takenAt;
    tx.learner = learner;
    if (learner !== null) {
      // One buffer per pooled transaction: nothing allocated per request once warm.
      tx.learnBytes ??= Buffer.allocUnsafe(MAX_ADU_LENGTH);
      buf.copy(tx.learnBytes, 0, start, end);
      tx.learnLength = end - start;
    }
    if (this.upstream.send(tx, buf, start, end, this.splitter.owns(buf))) {
      this.outstanding++;
    } else {
      // Backing off after the PLC failed: answer at once rather than hold the client.
      this.learn(tx, 0, true);
      this.pool.push(tx);
      this.reply(buildException(req.transactionId, req.unitId, req.functionCode, ExceptionCode.GATEWAY_PATH_UNAVAILABLE));
    }
  }

  /**
   * Learn mode: records the request `tx` carries with the PLC's answer (its exception code, 0 for
   * a normal answer; `unanswered` when none came), into the learner it was forwarded for (a
   * request forwarded while learning is learned, even if a reload ends learn mode meanwhile).
   */
  private learn(tx: Transaction, exception: number, unanswered: boolean): void {
    const l = tx.learner;
    if (l === null) return;
    tx.learner = null;
    if (l !== this.learnOf || l.generation !== this.learnGeneration) {
      this.learnSource = l.source(this.remoteAddress);
      if (l !== this.learnOf) l.connected(this.learnSource);
      this.learnOf = l;
      this.learnGeneration = l.generation;
    }
    if (l.record(this.learnSource, tx.learnBytes!, tx.learnLength, exception, unanswered, Date.now())) this.ctx.learnCeilingReached();
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
    this.denied++;
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
    if (!this.auditAllows()) return;
    this.log(event, { ...requestFields(req), reason, rule, exception: hex(exception), action });
  }

  /** May a line this client caused be written now? Counted when not (proxy/audit.ts). */
  private auditAllows(): boolean {
    if (this.audit.allow(this.remoteAddress, this.takenAt)) return true;
    this.ctx.stats.auditSuppressed++;
    return false;
  }

  /** Writes a line about this client, with the count of lines about its source suppressed since the last. */
  private log(event: string, fields: Record<string, unknown>): void {
    const suppressed = this.audit.takeSuppressed(this.remoteAddress);
    this.ctx.logger.log(event, {
      ...this.logFields,
      ...fields,
      ...(suppressed > 0 ? { suppressed } : {}),
    });
  }

  // ---- PLC → client (UpstreamOwner) ----

  forward(tx: Transaction, buf: Buffer, start: number, end: number, copy: boolean): void {
    if (this.streaming === null || this.streaming === tx) {
      // Until complete(): within one call for a whole frame, across chunks for a streamed one.
      this.streaming = tx;
      this.sent(end - start);
      this.out.queue(buf, start, end, copy);
      return;
    }
    // Another upstream's answer while one streams through: whole frames only, in arrival order.
    // Bounded: reading stops until the streaming one completes (or is cut, which closes).
    const bytes = Buffer.from(buf.subarray(start, end));
    const waiting = this.deferred.find((d) => d.tx === tx);
    if (waiting === undefined) this.deferred.push({ tx, chunks: [bytes] });
    else waiting.chunks.push(bytes);
    this.setPause(PAUSE_MID_RESPONSE, true);
  }

  complete(tx: Transaction, _check: ResponseCheck, answeredAt: number): void {
    // Timed at delivered(), once the response has been handed to the client socket.
    tx.answeredAt = answeredAt;
    this.learn(tx, tx.exception, false);
    this.answered.push(tx);
    this.outstanding--;
    if (tx !== this.streaming) {
      // Its answer waits whole behind the one streaming (and tx may be pooled: forget it).
      this.deferred.find((d) => d.tx === tx)!.tx = null;
      return;
    }
    this.streaming = null;
    // Set while something waited behind this answer (possibly already written: it streamed on from there).
    if (this.pauseMask & PAUSE_MID_RESPONSE) this.writeDeferred();
  }

  /** Writes what waited behind a completed answer, up to an answer still incomplete, which streams on. */
  private writeDeferred(): void {
    while (this.deferred.length > 0) {
      const d = this.deferred.shift()!;
      for (const b of d.chunks) {
        this.sent(b.length);
        this.out.write(b);
      }
      if (d.tx !== null) {
        this.streaming = d.tx;
        return;
      }
    }
    this.setPause(PAUSE_MID_RESPONSE, false);
  }

  fail(tx: Transaction, exception: number, _now: number): void {
    const e = tx.exp;
    this.learn(tx, 0, true);
    this.reply(buildException(tx.clientTid, e.unitId, e.functionCode, exception));
    this.release(tx);
  }

  corrupt(): void {
    this.close('response_cut');
  }

  /** The end of what one PLC chunk (or timeout, or loss) brought: write it, take up held requests. */
  delivered(now: number): void {
    this.activeAt = now;
    if (!this.out.flush()) this.clientFull();
    if (this.answered.length > 0) this.observeAnswered();
    // Requests held at the outstanding limit go on once slots are free (unless stopping).
    const k = this.state.kind;
    if (this.pauseMask & PAUSE_OUTSTANDING && (k === 'open' || k === 'ended')) {
      if (this.atPlc >= this.device.limits.maxOutstanding) this.holdAtLimit();
      else this.takeUpHeld();
    }
    this.finishIfDone();
  }

  /** Frames held at the outstanding limit are taken up again. */
  private takeUpHeld(): void {
    this.setPause(PAUSE_OUTSTANDING, false);
    this.takenAt = this.clock.now();
    const seen = this.framesSeen;
    // Held bytes were never framed: a framing error can surface here as well as in onData.
    const err = this.splitter.resume();
    this.afterInput(seen);
    if (err) this.onFramingError(err);
  }

  /** Times the requests answered in this PLC chunk, with one clock reading, and pools them. */
  private observeAnswered(): void {
    const stats = this.ctx.stats;
    const now = this.clock.now();
    for (const tx of this.answered) {
      stats.upstreamTime.observe((tx.answeredAt - tx.sentAt) / 1000);
      stats.roundTrip.observe((now - tx.receivedAt) / 1000);
      // What plcguard adds: the request path (taken up → handed to the PLC socket) and the
      // response path (arrived from the PLC → handed to the client socket).
      stats.added.observe((tx.sentAt - tx.takenAt + (now - tx.answeredAt)) / 1000);
      this.pool.push(tx);
    }
    this.answered.length = 0;
  }

  upstreamDrained(): void {
    this.setPause(PAUSE_UPSTREAM_FULL, false);
  }

  private reply(b: Buffer): void {
    if (this.streaming !== null) {
      // Bounded: reading stops until the response completes (or is cut, which closes).
      this.deferred.push({ tx: null, chunks: [b] });
      this.setPause(PAUSE_MID_RESPONSE, true);
      return;
    }
    this.sent(b.length);
    this.out.write(b);
  }

  private sent(bytes: number): void {
    this.bytesToClient += bytes;
    this.ctx.stats.bytesToClient += bytes;
  }

  /** What its connection_closed line says about its traffic. */
  traffic(): Record<string, number> {
    return {
      requests: this.framesSeen,
      denied: this.denied,
      bytes_from_client: this.bytesFromClient,
      bytes_to_client: this.bytesToClient,
    };
  }

  /**
   * Past max_buffered_bytes queued to the client (or once its socket says it is full), stop
   * reading both sides until the client has taken it: a client that doesn't read can't make
   * plcguard buffer without bound.
   */
  private clientFull(): void {
    this.setPause(PAUSE_CLIENT_FULL, true);
    this.upstream?.pause(this);
  }

  private onClientDrained(): void {
    this.setPause(PAUSE_CLIENT_FULL, false);
    this.upstream?.resume(this);
  }

  private release(tx: Transaction): void {
    this.pool.push(tx);
    this.outstanding--;
  }

  private setPause(bit: number, on: boolean): void {
    const before = this.pauseMask;
    this.pauseMask = on ? before | bit : before & ~bit;
    if (before === 0 && this.pauseMask !== 0) this.socket.pause();
    else if (before !== 0 && this.pauseMask === 0) this.socket.resume();
  }

  private onIdleTimer(): void {
    const idleMs = this.device.limits.idleTimeoutMs;
    const left = this.activeAt + idleMs - this.clock.now();
    if (left > 0) {
      this.idleTimer.arm(left);
      return;
    }
    // Waiting on the PLC, or on the rest of a frame (the frame timeout's business), is not idle.
    if (this.outstanding > 0 || this.splitter.partialBytes > 0) {
      this.idleTimer.arm(idleMs);
      return;
    }
    this.log('idle_timeout', { action: 'close' });
    this.close('idle_timeout');
  }

  // ---- lifecycle: every change of `state` is made in this section ----

  /** Lingering or closed: the session is over. */
  private get over(): boolean {
    const k = this.state.kind;
    return k === 'lingering' || k === 'closed';
  }

  /** open → ended: the client half-closed; what it sent is still taken and answered. */
  private onEnd(): void {
    // Lingering, the client's FIN answers ours and the socket closes by itself; stopping, the
    // socket isn't read, and if its FIN was in already, finishIfDone sees it.
    if (this.state.kind !== 'open') return;
    this.state = ENDED;
    this.finishIfDone();
  }

  /**
   * open or ended → stopping: takes no more requests (reads no more, takes up none held), answers
   * what was already accepted, then closes: a request the PLC has executed always gets its
   * answer, however the connection ends. A shutdown, a framing error and a frame timeout end a
   * session this way. When stopping already, the first reason stands (a shutdown after an error).
   */
  stopGracefully(reason: CloseReason = 'shutdown'): void {
    const k = this.state.kind;
    if (k !== 'open' && k !== 'ended') return;
    this.state = { kind: 'stopping', reason };
    this.frameTimer.cancel();
    this.setPause(PAUSE_STOPPED, true);
    this.finishIfDone();
  }

  /**
   * ended or stopping → lingering or closed, once nothing is outstanding: plcguard sends its FIN
   * and, unless the client's came already, reads and drops what the client still sends until it
   * closes or LINGER_MS have passed.
   */
  private finishIfDone(): void {
    const s = this.state;
    if (this.outstanding > 0 || (s.kind !== 'ended' && s.kind !== 'stopping')) return;
    this.out.flush();
    this.teardown(s.kind === 'stopping' ? s.reason : 'client_closed');
    this.socket.end();
    if (this.socket.readableEnded) {
      this.state = CLOSED;
      return;
    }
    this.socket.resume();
    const timer = this.clock.timer(() => this.socket.destroy());
    timer.arm(LINGER_MS);
    this.state = { kind: 'lingering', timer };
  }

  /** open, ended or stopping → closed, at once: what is queued is written, the socket destroyed. */
  close(reason: CloseReason): void {
    // Over already: a lingering socket ends with the client's FIN or the linger bound.
    if (this.over) return;
    this.out.flush();
    this.teardown(reason);
    this.state = CLOSED;
    this.socket.destroy();
  }

  /** The client's socket closed: the client reset or closed it, or the linger ran out. */
  private onSocketClose(): void {
    const s = this.state;
    // After plcguard's own destroy(), or its FIN after the client's.
    if (s.kind === 'closed') return;
    if (s.kind === 'lingering') s.timer.cancel();
    else this.teardown('client_closed');
    this.state = CLOSED;
  }

  /** Leaves the listener's books: once, on the way from open, ended or stopping to lingering or closed. */
  private teardown(reason: CloseReason): void {
    this.frameTimer.cancel();
    this.idleTimer.cancel();
    this.upstream?.close();
    this.upstream = null;
    this.splitter.reset();
    this.deferred.length = 0;
    this.streaming = null;
    this.answered.length = 0;
    // What its source had suppressed is reported now if the budget allows, else on its next line.
    const suppressed = this.audit.flush(this.remoteAddress, this.clock.now());
    if (suppressed > 0) {
      this.ctx.logger.log('audit_suppressed', {
        ...this.logFields,
        suppressed,
        reason,
      });
    }
    this.ctx.sessionClosed(this, reason);
    for (const w of this.closeWaiters.splice(0)) w();
  }
}

/** Requests that change the PLC's data: what `writes_per_second` counts. */
function isWrite(req: ModbusRequest): boolean {
  return req.writeTable !== null || req.functionCode === FunctionCode.WRITE_FILE_RECORD;
}

/**
 * What a line says about a request: unit, function, what it reads and writes and, for a write, the
 * values (the first MAX_LOGGED_VALUES, and how many there were) or FC22's masks.
 */
function requestFields(req: ModbusRequest): Record<string, unknown> {
  const fields: Record<string, unknown> = {
    unit: req.unitId,
    fc: req.functionCode,
    function: functionLabel(req.functionCode),
  };
  if (req.readTable !== null) fields.read = rangeText(req.readTable, req.readStart, req.readQuantity);
  if (req.writeTable !== null) {
    fields.write = rangeText(req.writeTable, req.writeStart, req.writeQuantity);
    // A malformed request's values can't be trusted to be where the layout says.
    if (req.violation === 'none') Object.assign(fields, writtenFields(req));
  }
  if (req.subFunction >= 0) fields.subfunction = req.subFunction;
  if (req.meiType >= 0) fields.mei_type = req.meiType;
  if (req.violation !== 'none') fields.violation = req.violation;
  return fields;
}

/** FC22's masks, or the values written: the first MAX_LOGGED_VALUES and how many there were. */
function writtenFields(req: ModbusRequest): Record<string, unknown> {
  if (req.kind === 'mask_write') return { and_mask: req.andMask, or_mask: req.orMask };
  const values = new Array<number>(Math.min(req.writeQuantity, MAX_LOGGED_VALUES));
  for (let i = 0; i < values.length; i++) values[i] = req.valueAt(i);
  return { values, value_count: req.writeQuantity };
}

function rangeText(table: string, start: number, quantity: number): string {
  return quantity <= 1 ? `${table} ${start}` : `${table} ${start}-${start + quantity - 1}`;
}

function hex(code: number): string {
  return '0x' + code.toString(16).padStart(2, '0');
}
