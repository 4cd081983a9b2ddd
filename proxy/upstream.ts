import net from 'node:net';
import {
  ExceptionCode,
  Expectation,
  FrameSplitter,
  MBAP_HEADER_LENGTH,
  checkResponse,
  responseMatches,
  type FrameHandler,
  type ResponseCheck,
} from '../modbus/index.js';
import type { Endpoint, Limits } from '../policy/types.js';
import type { LiveLearner } from '../policy/learn/live.js';
import type { Clock, Timer } from './clock.js';
import { invariant } from '../modbus/errors.js';
import type { DeviceStats, UpstreamErrorKind } from './stats.js';
import { BatchWriter, type WritableSocket } from './writer.js';

/** A request forwarded to the PLC and not yet answered. Pooled by its owner. */
export class Transaction {
  /**
   * What the PLC's answer must be. The owner fills it from the client's request; `send` then puts
   * the link's own transaction id toward the PLC in it and keeps the client's in `clientTid`.
   */
  readonly exp = new Expectation();
  /** The client's transaction id: the answer carries it back, and so does an exception of plcguard's. */
  clientTid = 0;
  // Times in clock milliseconds, read once per chunk, never per request.
  /** The chunk carrying the request arrived from the client. */
  receivedAt = 0;
  /**
   * plcguard took the request up (later than receivedAt when it was held at max_outstanding). The
   * response timeout counts from here: time waiting for a shared connection counts toward it.
   */
  takenAt = 0;
  /** It was handed to the PLC socket (-1 until the client's chunk is flushed). */
  sentAt = 0;
  /** The chunk completing its response arrived from the PLC. */
  answeredAt = 0;
  /** The PLC's exception code when its answer was an exception reply, else 0. */
  exception = 0;
  /**
   * Learn mode: the learner to record the request into with its answer (null: not learned, or
   * recorded already), and a copy of the request (the buffer made once per pooled transaction).
   */
  learner: LiveLearner | null = null;
  learnBytes: Buffer | null = null;
  learnLength = 0;

  constructor(readonly owner: UpstreamOwner) {}
}

/**
 * What an upstream link calls back into. The session implements it; every call goes to the owner
 * of the transaction concerned, and the link's own methods that act for an owner take it, so that
 * one PLC connection can later serve several clients.
 */
export interface UpstreamOwner {
  /** Response bytes for `tx` (a whole frame, or a piece of one that spans chunks). */
  forward(tx: Transaction, buf: Buffer, start: number, end: number, copy: boolean): void;
  /** The response to `tx` is complete. */
  complete(tx: Transaction, check: ResponseCheck, answeredAt: number): void;
  /** `tx` will get no response (or none in time): answer the client with this exception. */
  fail(tx: Transaction, exception: number, now: number): void;
  /** A response to this owner was cut off mid-frame: its byte stream is corrupt. */
  corrupt(): void;
  /**
   * Everything the link had for this owner from one PLC chunk (or one timeout, or one loss) has
   * been handed over, at `now`: write it out.
   */
  delivered(now: number): void;
  /** The PLC socket, full when this owner last flushed, can take more again. */
  upstreamDrained(): void;
}

/**
 * What a session forwards through: a link of its own (Upstream), or its port on the device's
 * shared links (proxy/pool.ts). `owner` is the session in both.
 */
export interface UpstreamPort {
  /** The device's limits; a reload sets them. */
  limits: Readonly<Limits>;
  /** The owner's requests answered 0B whose answers may still come: they count against max_outstanding. */
  readonly expiredCount: number;
  send(tx: Transaction, buf: Buffer, start: number, end: number, copy: boolean): boolean;
  flush(owner: UpstreamOwner): boolean;
  /** Resets the connections holding the owner's expired requests (see Upstream.resetExpired). */
  resetExpired(): void;
  /** The owner is gone: nothing more is delivered to it. */
  close(): void;
  pause(owner: UpstreamOwner): void;
  resume(owner: UpstreamOwner): void;
}

type SocketError = Error & { code?: string };

/** The part of a net.Socket an upstream link uses (tests pass a fake). */
export interface PlcSocket extends WritableSocket {
  on(event: 'connect' | 'drain' | 'close', listener: () => void): unknown;
  on(event: 'data', listener: (chunk: Buffer) => void): unknown;
  on(event: 'error', listener: (err: SocketError) => void): unknown;
  setKeepAlive(enable: boolean, initialDelay: number): unknown;
  pause(): unknown;
  resume(): unknown;
  destroy(err?: Error): unknown;
}

/** Opens a connection to a PLC. */
export type ConnectPlc = (endpoint: Endpoint) => PlcSocket;

/** Log events of a link: a connection attempt failed; plcguard reset a connection whose PLC stopped answering. */
export type UpstreamEvent = 'upstream_connect_failed' | 'upstream_reset';

/** What a link needs from the device it serves (the same for all the device's links). */
export interface LinkContext {
  readonly stats: DeviceStats;
  /** Times the connect and response timeouts and the backoff. */
  readonly clock: Clock;
  /** Opens the connection to the PLC. */
  readonly connect: ConnectPlc;
  /** Logs what happened to a PLC connection; the device rate-limits (a PLC down for hours must not flood the log). */
  logUpstream(event: UpstreamEvent, fields: Record<string, unknown>): void;
}

export const connectTcp: ConnectPlc = (e) => net.connect({ host: e.host, port: e.port, noDelay: true });

/** The link's connection, while it has one: the socket and the writer batching requests to it. */
interface Connection {
  readonly socket: PlcSocket;
  readonly out: BatchWriter;
}

type Connecting = { readonly kind: 'connecting' } & Connection;

type LinkState =
  /** No connection: none opened yet, or the last one was lost (the next request reconnects after retryAt). */
  | { readonly kind: 'disconnected' }
  | Connecting
  | ({ readonly kind: 'open' } & Connection)
  /** Closed by its owner: it sends and delivers nothing more. */
  | { readonly kind: 'closed' };

/** The connection of a state that has one. */
function connectionOf(s: LinkState): Connection | null {
  return s.kind === 'connecting' || s.kind === 'open' ? s : null;
}

const DISCONNECTED: LinkState = { kind: 'disconnected' };
const CLOSED: LinkState = { kind: 'closed' };

/** `stream` while the rest of a response spanning chunks is dropped (late or unsolicited). */
const DROPPED = 'dropped';

/** Transaction ids are 16 bits (MBAP). */
const TID_SPACE = 0x10000;

/**
 * Transaction ids of requests whose answer the PLC gave with the wrong id (answered 0B at once),
 * kept reserved until the connection ends. Past this many the PLC's stream is not trusted: reset.
 */
export const MAX_REFUSED = 256;

/**
 * A request plcguard answered 0B at the response timeout, whose answer may still come on this
 * connection. Until it does (dropped, counted late) or the connection ends, its transaction id
 * stays reserved and it still counts against max_outstanding: the PLC may still be working on it.
 * Pooled by the link.
 */
class Expired {
  /** Transaction id toward the PLC, unit and function code: what its late answer looks like. */
  readonly exp = new Expectation();
  owner: UpstreamOwner | null = null;
}

/** How plcguard let go of a connection itself, when it did. */
type LostKind = UpstreamErrorKind | 'unanswered';

/**
 * One TCP connection to a PLC, opened on demand, reopened on the next request after a failure
 * (with backoff after consecutive failures).
 *
 * Transaction ids toward the PLC are the link's: each request gets one that no answer can still
 * arrive for on this connection (the client's own when it is free, so that the PLC usually sees
 * the client's bytes unchanged), and its answer gets the client's id back. An id stays taken until
 * its answer comes or the connection ends, also after plcguard answered the request 0B: so a late
 * answer can never be taken for the answer to a later request, of this client or (once links are
 * shared) of another. Responses are matched by that id, unit and function code; late answers and
 * anything else are dropped and counted.
 */
export class Upstream implements FrameHandler, UpstreamPort {
  private state: LinkState = DISCONNECTED;
  private readonly outstanding: Transaction[] = [];
  /** Requests answered 0B whose answers may still come, oldest first. */
  private readonly expired: Expired[] = [];
  private readonly expiredPool: Expired[] = [];
  /** One bit per transaction id: set while an answer carrying it may still come on this connection. */
  private readonly reserved = new Uint8Array(TID_SPACE / 8);
  /** Ids of requests answered at once after a refused answer (see `refuse`); reserved until the connection ends. */
  private readonly refused: number[] = [];
  /** The one request awaiting an answer when the PLC sent a frame that answers nothing (see `refuse`). */
  private suspect: Transaction | null = null;
  /** Outstanding requests that timed out in one run of the response timer. */
  private readonly timedOut: Transaction[] = [];
  /** Where the search for a free transaction id goes on from. */
  private lastTid = 0;
  private splitter = new FrameSplitter(this);
  /** The response that spans chunks, being streamed through (or dropped) as it arrives. */
  private stream: Transaction | typeof DROPPED | null = null;
  /** Why the connection is being dropped, when plcguard drops it (else read from the error). */
  private lostKind: LostKind | null = null;
  private failures = 0;
  private retryAt = 0;
  private answeredOnThisConnection = false;
  private readonly connectTimer: Timer;
  private readonly responseTimer: Timer;
  /** When the PLC chunk being processed arrived. */
  private chunkAt = 0;
  /** Owners that stopped reading because the PLC socket was full. */
  private readonly blocked = new Set<UpstreamOwner>();
  /** Owners whose clients can't take more: the PLC isn't read while there is one. */
  private readonly pausedBy = new Set<UpstreamOwner>();
  private readonly touched: UpstreamOwner[] = [];
  private readonly bound = (): number => this.limits.maxBufferedBytes;
  private readonly drained = (): void => this.releaseBlocked();
  private readonly stats: DeviceStats;
  private readonly clock: Clock;
  limits: Readonly<Limits>;

  /**
   * @param settled called once everything from a PLC chunk, a timeout or a loss has been handed
   *   to the owners: a shared link's pool sends what waits then.
   */
  constructor(
    private readonly endpoint: Endpoint,
    limits: Readonly<Limits>,
    private readonly ctx: LinkContext,
    private readonly settled: (() => void) | null = null,
  ) {
    this.limits = limits;
    this.stats = ctx.stats;
    this.clock = ctx.clock;
    this.connectTimer = this.clock.timer(() => this.onConnectTimeout());
    this.responseTimer = this.clock.timer(() => this.onResponseTimer());
  }

  /**
   * Requests on this connection plcguard answered 0B whose answers may still come: the PLC may
   * still hold them, so they count against max_outstanding.
   */
  get expiredCount(): number {
    return this.expired.length;
  }

  /** `owner`'s share of expiredCount (a shared link serves several). */
  expiredOf(owner: UpstreamOwner): number {
    let n = 0;
    for (const x of this.expired) if (x.owner === owner) n++;
    return n;
  }

  /** Requests awaiting the PLC's answer here. */
  get awaiting(): number {
    return this.outstanding.length;
  }

  /** Requests the PLC may be working on here: awaiting an answer, or answered 0B with the answer still possible. */
  get inFlight(): number {
    return this.outstanding.length + this.expired.length;
  }

  /** Connected or connecting. */
  get connected(): boolean {
    return connectionOf(this.state) !== null;
  }

  /** Disconnected and waiting out its backoff: a send now would be refused. */
  get backingOff(): boolean {
    return this.state.kind === 'disconnected' && this.clock.now() < this.retryAt;
  }

  /**
   * The owner (a session that closed) is gone. Its requests in flight stay, each under a stand-in
   * owner, so their ids and slots stay taken until the PLC answers them (the answer dropped and
   * counted) or the connection ends: the PLC may be executing them.
   */
  detach(owner: UpstreamOwner): void {
    const o = this.outstanding;
    for (let i = 0; i < o.length; i++) if (o[i]!.owner === owner) o[i] = this.abandon(o[i]!);
    // A response streaming in was claimed from `outstanding` at its head: its rest is dropped.
    const s = this.stream;
    if (s instanceof Transaction && s.owner === owner) this.stream = this.abandon(s);
    for (const x of this.expired) if (x.owner === owner) x.owner = this.nobody;
    this.blocked.delete(owner);
    this.resume(owner);
    const t = this.touched.indexOf(owner);
    if (t >= 0) this.touched.splice(t, 1);
  }

  /** A copy of `tx` owned by no one: what the PLC answers to it is dropped and counted. */
  private abandon(tx: Transaction): Transaction {
    const stand = new Transaction(this.nobody);
    stand.exp.transactionId = tx.exp.transactionId;
    stand.exp.unitId = tx.exp.unitId;
    stand.exp.functionCode = tx.exp.functionCode;
    stand.clientTid = tx.clientTid;
    stand.takenAt = tx.takenAt;
    stand.sentAt = tx.sentAt;
    return stand;
  }

  /** The owner of requests whose client has gone. */
  private readonly nobody: UpstreamOwner = {
    forward: () => {},
    complete: () => {
      this.stats.abandonedResponses++;
    },
    fail: () => {},
    corrupt: () => {},
    delivered: () => {},
    /* c8 ignore next -- never in `blocked`: it flushes nothing */
    upstreamDrained: () => {},
  };

  /**
   * Queues the request bytes buf[start, end) for `tx` (call `flush` after the client's chunk).
   * Returns false when the PLC can't be tried now (backing off after failures): answer 0A.
   */
  send(tx: Transaction, buf: Buffer, start: number, end: number, copy: boolean): boolean {
    let s = this.state;
    invariant(s.kind !== 'closed', 'upstream: send on a closed link');
    if (s.kind === 'disconnected') {
      if (this.clock.now() < this.retryAt) return false;
      s = this.connect();
    }
    const clientTid = tx.exp.transactionId;
    const tid = this.reserve(clientTid);
    tx.clientTid = clientTid;
    tx.exp.transactionId = tid;
    if (tid !== clientTid) writeTid(buf, start, tid);
    tx.sentAt = UNSTAMPED;
    this.outstanding.push(tx);
    if (!this.responseTimer.armed) this.armResponseTimer(this.limits.responseTimeoutMs);
    s.out.queue(buf, start, end, copy);
    return true;
  }

  /**
   * Writes the requests queued by `owner`'s chunk. False when the PLC socket is full: `owner` then
   * stops reading its client and is told by `upstreamDrained`.
   */
  flush(owner: UpstreamOwner): boolean {
    const c = connectionOf(this.state);
    const ok = c === null || c.out.flush();
    if (!ok) this.blocked.add(owner);
    // One clock reading for everything this chunk sent (they are the newest outstanding).
    const o = this.outstanding;
    if (o.length > 0 && o[o.length - 1]!.sentAt === UNSTAMPED) {
      const t = this.clock.now();
      for (let i = o.length - 1; i >= 0 && o[i]!.sentAt === UNSTAMPED; i--) o[i]!.sentAt = t;
    }
    return ok;
  }

  /**
   * Resets the connection so that the PLC forgets the requests plcguard answered 0B and it never
   * answered. The owner's call, once those hold every slot of max_outstanding: nothing else could
   * be sent until the PLC answered them, and a PLC that stopped answering never will. ('close'
   * does the rest: the slots are free, and the next request reconnects, after a backoff when
   * nothing was answered on this connection.)
   */
  resetExpired(): void {
    const c = connectionOf(this.state);
    invariant(c !== null && this.expired.length > 0, 'upstream: a reset with no expired request');
    // Being dropped already: its 'close' is on the way.
    if (this.lostKind !== null) return;
    this.lostKind = 'unanswered';
    this.ctx.logUpstream('upstream_reset', { plc_host: this.endpoint.host, plc_port: this.endpoint.port, unanswered: this.expired.length, action: 'reconnect' });
    c.socket.destroy();
  }

  /** Closes the link at once (its creator's call): outstanding requests are forgotten. */
  close(): void {
    this.outstanding.length = 0;
    this.expired.length = 0;
    this.refused.length = 0;
    this.suspect = null;
    this.touched.length = 0;
    this.blocked.clear();
    this.pausedBy.clear();
    this.connectTimer.cancel();
    this.responseTimer.cancel();
    const s = this.state;
    this.state = CLOSED;
    if (s.kind === 'open') this.stats.upstreamConnections--;
    connectionOf(s)?.socket.destroy();
  }

  /** Stops reading the PLC while `owner` can't take more (its client isn't reading). */
  pause(owner: UpstreamOwner): void {
    this.pausedBy.add(owner);
    connectionOf(this.state)?.socket.pause();
  }

  /** `owner` can take more again: the PLC is read once no owner holds the link paused. */
  resume(owner: UpstreamOwner): void {
    this.pausedBy.delete(owner);
    if (this.pausedBy.size === 0) connectionOf(this.state)?.socket.resume();
  }

  /**
   * A transaction id toward the PLC that no answer can still arrive for: the client's own when it
   * is free, else the next free one. Taken until `release` or the end of the connection.
   */
  private reserve(tid: number): number {
    // The owners' max_outstanding bounds what is taken far below the 65,536 ids.
    invariant(this.outstanding.length + this.expired.length < TID_SPACE, 'upstream: every transaction id taken');
    if (this.isReserved(tid)) {
      tid = this.lastTid;
      do tid = (tid + 1) & 0xffff;
      while (this.isReserved(tid));
      this.lastTid = tid;
    }
    this.reserved[tid >> 3]! |= 1 << (tid & 7);
    return tid;
  }

  private isReserved(tid: number): boolean {
    return (this.reserved[tid >> 3]! & (1 << (tid & 7))) !== 0;
  }

  private release(tid: number): void {
    this.reserved[tid >> 3]! &= ~(1 << (tid & 7));
  }

  private connect(): Connecting {
    this.answeredOnThisConnection = false;
    this.splitter = new FrameSplitter(this);
    this.stream = null;
    this.lostKind = null;
    const socket = this.ctx.connect(this.endpoint);
    const out = new BatchWriter(socket, this.bound, this.drained);
    const connecting: Connecting = { kind: 'connecting', socket, out };
    this.state = connecting;
    if (this.pausedBy.size > 0) socket.pause();
    this.connectTimer.arm(this.limits.connectTimeoutMs);
    let error: SocketError | null = null;
    socket.on('connect', () => {
      this.connectTimer.cancel();
      this.state = { kind: 'open', socket, out };
      this.stats.upstreamConnections++;
      socket.setKeepAlive(true, KEEPALIVE_MS);
    });
    socket.on('data', (chunk: Buffer) => this.onData(chunk, socket));
    socket.on('error', (err: SocketError) => {
      error = err;
    });
    socket.on('close', () => {
      const s = this.state;
      // close() let go of the socket: its owner is gone, there is no one to tell.
      if (s.kind === 'closed') return;
      invariant(s.kind !== 'disconnected' && s.socket === socket, 'upstream: close of a socket the link no longer holds');
      const wasOpen = s.kind === 'open';
      if (wasOpen) this.stats.upstreamConnections--;
      this.state = DISCONNECTED;
      this.connectTimer.cancel();
      this.onLost(wasOpen, error);
    });
    return connecting;
  }

  private onConnectTimeout(): void {
    const s = this.state;
    invariant(s.kind === 'connecting', 'upstream: connect timer outlived the attempt');
    s.socket.destroy(Object.assign(new Error('connect timeout'), { code: 'ETIMEDOUT' }));
  }

  private onLost(wasOpen: boolean, error: SocketError | null): void {
    let kind: LostKind;
    if (this.lostKind !== null) kind = this.lostKind;
    else if (!wasOpen) kind = error?.code === 'ECONNREFUSED' ? 'refused' : 'unreachable';
    else if (error !== null && RESET_CODES.has(error.code as string)) kind = 'reset';
    else kind = 'closed';
    // A reset for unanswered requests counted each of them as a timeout already.
    if (kind !== 'unanswered') this.stats.countUpstreamError(kind);
    if (kind === 'refused' || kind === 'unreachable') {
      this.ctx.logUpstream('upstream_connect_failed', { plc_host: this.endpoint.host, plc_port: this.endpoint.port, kind, error: error?.code, message: error?.message });
    }
    // A PLC that accepts and drops at once (no free slot) fails just like one that refuses.
    if (!wasOpen || !this.answeredOnThisConnection) {
      this.failures++;
      const backoff = Math.min(
        this.limits.reconnectBackoffMaxMs,
        this.limits.reconnectBackoffMinMs * 2 ** Math.min(this.failures - 1, 30),
      );
      this.retryAt = this.clock.now() + backoff;
    } else {
      this.failures = 0;
      this.retryAt = 0;
    }
    const streamed = this.stream;
    this.stream = null;
    if (streamed instanceof Transaction) streamed.owner.corrupt();
    // No answer can come any more: every transaction id is free, and so is every slot that
    // requests answered 0B held.
    for (const x of this.expired.splice(0)) this.forget(x);
    this.refused.length = 0;
    this.suspect = null;
    this.reserved.fill(0);
    // Nothing is queued towards the PLC any more: its owners may read again.
    this.releaseBlocked();
    const code = wasOpen ? ExceptionCode.GATEWAY_TARGET_FAILED : ExceptionCode.GATEWAY_PATH_UNAVAILABLE;
    this.failAll(code);
  }

  /** The PLC socket can take more (or is gone): owners it held back may read their clients again. */
  private releaseBlocked(): void {
    for (const o of this.blocked) o.upstreamDrained();
    this.blocked.clear();
  }

  private failAll(code: number): void {
    const txs = this.outstanding.splice(0);
    const now = this.clock.now();
    for (const tx of txs) {
      this.touch(tx.owner);
      tx.owner.fail(tx, code, now);
    }
    this.flushOwners(now);
  }

  // One timer for all outstanding requests: they were sent in order with the same timeout, so
  // the oldest expires first.
  private armResponseTimer(ms: number): void {
    this.responseTimer.arm(Math.max(1, ms));
  }

  private onResponseTimer(): void {
    const now = this.clock.now();
    const limit = this.limits.responseTimeoutMs;
    const streamed = this.stream instanceof Transaction ? this.stream : null;
    if (streamed !== null && now - streamed.takenAt >= limit) {
      // Its head already went to the client, so no exception can replace it, and the rest may
      // never come: the PLC stalled mid-response. Drop the connection ('close' does the rest: the
      // owner's stream is cut, the other outstanding requests get 0B).
      const s = this.state;
      invariant(s.kind === 'open', 'upstream: a response streams in without a connection');
      this.lostKind = 'timeout';
      s.socket.destroy();
      return;
    }
    // Not in order of takenAt on a shared link: requests waited in its queue for different times.
    const o = this.outstanding;
    const out = this.timedOut;
    let next = streamed === null ? Infinity : streamed.takenAt;
    let kept = 0;
    for (const tx of o) {
      if (now - tx.takenAt >= limit) out.push(tx);
      else {
        o[kept++] = tx;
        next = Math.min(next, tx.takenAt);
      }
    }
    o.length = kept;
    for (const tx of out) {
      this.stats.countUpstreamError('timeout');
      this.expire(tx);
      this.touch(tx.owner);
      tx.owner.fail(tx, ExceptionCode.GATEWAY_TARGET_FAILED, now);
    }
    out.length = 0;
    if (next !== Infinity) this.armResponseTimer(next + limit - now);
    this.flushOwners(now);
  }

  private onData(chunk: Buffer, socket: PlcSocket): void {
    const now = this.clock.now();
    this.chunkAt = now;
    if (this.splitter.push(chunk) !== null) {
      // The PLC's stream can't be resynchronised: drop the connection ('close' does the rest:
      // 0B for what was asked).
      this.lostKind = 'framing';
      socket.destroy();
      return;
    }
    // Judged once the refused frame is whole and the chunk is over.
    const s = this.suspect;
    if (s !== null && this.stream !== DROPPED) {
      this.suspect = null;
      if (this.outstanding.length === 1 && this.outstanding[0] === s) this.refuse();
    }
    this.flushOwners(now);
  }

  /** `tx` is answered 0B now, but its answer may still come: its id and its slot stay taken. */
  private expire(tx: Transaction): void {
    const x = this.expiredPool.pop() ?? new Expired();
    const e = x.exp;
    e.transactionId = tx.exp.transactionId;
    e.unitId = tx.exp.unitId;
    e.functionCode = tx.exp.functionCode;
    x.owner = tx.owner;
    this.expired.push(x);
  }

  /** An expired request's slot is free: its owner may take up requests it held. */
  private forget(x: Expired): void {
    this.touch(x.owner!);
    x.owner = null;
    this.expiredPool.push(x);
  }

  /**
   * Takes outstanding[i], whose answer starts at buf[off]: its transaction id is free again, and
   * the answer gets the client's back (2 bytes rewritten in place; the rest goes as it came).
   */
  private claim(i: number, buf: Buffer, off: number): Transaction {
    const tx = (i === 0 ? this.outstanding.shift() : this.outstanding.splice(i, 1)[0])!;
    const tid = tx.exp.transactionId;
    this.release(tid);
    if (tid !== tx.clientTid) writeTid(buf, off, tx.clientTid);
    return tx;
  }

  /**
   * A response at buf[off] that answers nothing outstanding: the late answer to a request
   * plcguard answered 0B (which frees its id and slot), or unsolicited. Dropped either way.
   */
  private discard(buf: Buffer, off: number): void {
    const e = this.expired;
    for (let i = 0; i < e.length; i++) {
      const x = e[i]!;
      if (!responseMatches(x.exp, buf, off)) continue;
      e.splice(i, 1);
      this.release(x.exp.transactionId);
      this.forget(x);
      this.stats.lateResponses++;
      return;
    }
    const tid = buf.readUInt16BE(off);
    const r = this.refused.indexOf(tid);
    if (r >= 0) {
      // The right answer after all, to a request already answered at its refused one.
      this.refused.splice(r, 1);
      this.release(tid);
      this.stats.lateResponses++;
      return;
    }
    this.stats.unsolicitedResponses++;
    if (this.outstanding.length === 1) this.suspect = this.outstanding[0]!;
  }

  /**
   * The PLC answered while exactly one request awaited its answer, but not with that request's
   * transaction id, unit and function, and the PLC's chunk ended without the right answer after
   * it: a PLC that serves one request at a time answered this one, wrongly. The client gets 0B
   * now, as it would at the timeout, rather than seconds later when a synchronous client has
   * moved on and would take it for the answer to its next request. (A stray frame followed in
   * the same chunk by the right answer, such as a duplicate answer to an earlier request, refuses
   * nothing.) With several requests awaiting, nothing tells which one the PLC meant: they wait
   * for their own answers or the timeout. The id stays reserved until the connection ends, so
   * that a right answer arriving after all is dropped and never given to a later request.
   */
  private refuse(): void {
    const tx = this.outstanding.pop()!;
    const tid = tx.exp.transactionId;
    if (this.refused.push(tid) > MAX_REFUSED) {
      // A PLC that keeps answering with wrong ids: its stream can't be trusted ('close' answers 0B).
      this.outstanding.push(tx);
      this.lostKind = 'framing';
      connectionOf(this.state)!.socket.destroy();
      return;
    }
    this.touch(tx.owner);
    tx.owner.fail(tx, ExceptionCode.GATEWAY_TARGET_FAILED, this.chunkAt);
  }

  private find(buf: Buffer, off: number): number {
    const o = this.outstanding;
    for (let i = 0; i < o.length; i++) if (responseMatches(o[i]!.exp, buf, off)) return i;
    return -1;
  }

  // FrameHandler: a whole response frame.
  frame(buf: Buffer, start: number, end: number): boolean {
    const streamed = this.stream;
    if (streamed !== null) {
      this.stream = null;
      if (streamed !== DROPPED) this.complete(streamed, buf, start, end);
      return true;
    }
    const i = this.find(buf, start);
    if (i < 0) {
      this.discard(buf, start);
      return true;
    }
    const tx = this.claim(i, buf, start);
    tx.owner.forward(tx, buf, start, end, this.splitter.owns(buf));
    this.complete(tx, buf, start, end);
    return true;
  }

  // FrameHandler: the header of a response that spans chunks; forward it as it arrives.
  head(buf: Buffer, have: number): void {
    const i = this.find(buf, 0);
    if (i < 0) {
      this.discard(buf, 0);
      this.stream = DROPPED;
      return;
    }
    const tx = this.claim(i, buf, 0);
    this.stream = tx;
    tx.owner.forward(tx, buf, 0, have, true);
    this.touch(tx.owner);
  }

  // FrameHandler: a later piece of it; delivered with this chunk, not held for the next.
  part(buf: Buffer, start: number, end: number): void {
    const streamed = this.stream;
    if (streamed instanceof Transaction) {
      streamed.owner.forward(streamed, buf, start, end, false);
      this.touch(streamed.owner);
    }
  }

  /** The whole response to `tx` is buf[start, end). */
  private complete(tx: Transaction, buf: Buffer, start: number, end: number): void {
    const check = checkResponse(tx.exp, buf, start, end);
    tx.exception = check === 'exception' ? buf[start + MBAP_HEADER_LENGTH + 1]! : 0;
    this.answeredOnThisConnection = true;
    this.failures = 0;
    if (check === 'inconsistent') this.stats.inconsistentResponses++;
    this.touch(tx.owner);
    tx.owner.complete(tx, check, this.chunkAt);
  }

  private touch(owner: UpstreamOwner): void {
    if (!this.touched.includes(owner)) this.touched.push(owner);
  }

  private flushOwners(now: number): void {
    const t = this.touched;
    while (t.length > 0) t.pop()!.delivered(now);
    this.settled?.();
  }
}

/**
 * TCP keepalive on both sides of plcguard: probes find a peer that vanished without a FIN (a
 * powered-off HMI, a PLC whose cable was pulled).
 */
export const KEEPALIVE_MS = 30_000;
/** Errors that mean the PLC reset the connection (rather than closing it). */
const RESET_CODES = new Set(['ECONNRESET', 'EPIPE']);
/** sentAt of a request still in the batch of the client chunk being processed. */
const UNSTAMPED = -1;

/** Writes a transaction id into the MBAP header at buf[off] (big-endian, MB-TCP §3.1.3). */
function writeTid(buf: Buffer, off: number, tid: number): void {
  buf[off] = tid >> 8;
  buf[off + 1] = tid & 0xff;
}
