import net from 'node:net';
import {
  ExceptionCode,
  Expectation,
  FrameSplitter,
  checkResponse,
  responseMatches,
  type FrameHandler,
  type ResponseCheck,
} from '../modbus/index.js';
import type { Endpoint, Limits } from '../policy/types.js';
import type { DeviceStats, UpstreamErrorKind } from './stats.js';
import { BatchWriter } from './writer.js';

/** A request forwarded to the PLC and not yet answered. Pooled by its owner. */
export class Transaction {
  readonly exp = new Expectation();
  owner: UpstreamOwner | null = null;
  // Times in performance.now() milliseconds, read once per chunk, never per request.
  /** The chunk carrying the request arrived from the client. */
  receivedAt = 0;
  /** plcguard took the request up (later than receivedAt when it was held at max_outstanding). */
  takenAt = 0;
  /** It was handed to the PLC socket (-1 until the client's chunk is flushed). */
  sentAt = 0;
  /** The chunk completing its response arrived from the PLC. */
  answeredAt = 0;
}

/**
 * What an upstream connection calls back into. The session implements it; routing goes through
 * each transaction's owner, so one PLC connection can later serve several clients.
 */
export interface UpstreamOwner {
  /** Response bytes for `tx` (a whole frame, or a piece of one that spans chunks). */
  forward(buf: Buffer, start: number, end: number, copy: boolean): void;
  /** The response to `tx` is complete. */
  complete(tx: Transaction, check: ResponseCheck, now: number): void;
  /** `tx` will get no response: answer the client with this exception. */
  fail(tx: Transaction, exception: number, now: number): void;
  /** A response to this owner was cut off mid-frame: its byte stream is corrupt. */
  corrupt(): void;
  /**
   * Everything the link had for this owner from one PLC chunk (or one timeout, or one loss) has
   * been handed over: write it out.
   */
  delivered(): void;
  /** The PLC socket can take more again. */
  upstreamDrained(): void;
}

/** disconnected: none opened yet, or the last one was lost (the next request reconnects after retryAt). */
type State = 'disconnected' | 'connecting' | 'open';

/**
 * One TCP connection to a PLC, opened on demand, reopened on the next request after a failure
 * (with backoff after consecutive failures). Matches responses to outstanding transactions by
 * transaction id, unit and function code; drops and counts anything else.
 */
export class Upstream implements FrameHandler {
  private socket: net.Socket | null = null;
  /** Batches the requests to `socket`; one per connection. */
  private out: BatchWriter | null = null;
  private state: State = 'disconnected';
  private readonly outstanding: Transaction[] = [];
  private splitter = new FrameSplitter(this);
  /** The transaction whose response is being streamed through (it spans chunks). */
  private streaming: Transaction | null = null;
  private streamingDropped = false;
  /** Why the connection is being dropped, when plcguard drops it (else read from the error). */
  private lostKind: UpstreamErrorKind | null = null;
  private failures = 0;
  private retryAt = 0;
  private answeredOnThisConnection = false;
  private connectTimer: NodeJS.Timeout | null = null;
  private responseTimer: NodeJS.Timeout | null = null;
  /** When the PLC chunk being processed arrived. */
  private chunkAt = 0;
  /** Owners that stopped reading because the PLC socket was full. */
  private readonly blocked = new Set<UpstreamOwner>();
  private readonly touched: UpstreamOwner[] = [];
  private closed = false;
  private readonly bound = (): number => this.limits.maxBufferedBytes;
  private readonly drained = (): void => this.releaseBlocked();
  limits: Readonly<Limits>;

  constructor(
    private readonly endpoint: Endpoint,
    limits: Readonly<Limits>,
    private readonly stats: DeviceStats,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.limits = limits;
  }

  /**
   * Queues the request bytes buf[start, end) for `tx` (call `flush` after the client's chunk).
   * Returns false when the PLC can't be tried now (backing off after failures): answer 0A.
   */
  send(tx: Transaction, buf: Buffer, start: number, end: number, copy: boolean): boolean {
    /* c8 ignore next -- defensive: a closed link's owner is gone and sends nothing more */
    if (this.closed) return false;
    if (this.state === 'disconnected') {
      if (this.now() < this.retryAt) return false;
      this.connect();
    }
    tx.sentAt = UNSTAMPED;
    this.outstanding.push(tx);
    if (this.responseTimer === null) this.armResponseTimer(this.limits.responseTimeoutMs);
    this.out!.queue(buf, start, end, copy);
    return true;
  }

  /**
   * Writes the requests queued by `owner`'s chunk. False when the PLC socket is full: `owner` then
   * stops reading its client and is told by `upstreamDrained`.
   */
  flush(owner: UpstreamOwner): boolean {
    const ok = this.out === null ? true : this.out.flush();
    if (!ok) this.blocked.add(owner);
    // One clock reading for everything this chunk sent (they are the newest outstanding).
    const o = this.outstanding;
    if (o.length > 0 && o[o.length - 1]!.sentAt === UNSTAMPED) {
      const t = this.now();
      for (let i = o.length - 1; i >= 0 && o[i]!.sentAt === UNSTAMPED; i--) o[i]!.sentAt = t;
    }
    return ok;
  }

  /** Closes the connection; outstanding transactions are forgotten (their owner is gone). */
  close(): void {
    this.closed = true;
    this.outstanding.length = 0;
    this.teardown();
  }

  /** Stops reading the PLC (its client can't take more). */
  pause(): void {
    this.socket?.pause();
  }

  resume(): void {
    this.socket?.resume();
  }

  private connect(): void {
    this.state = 'connecting';
    this.answeredOnThisConnection = false;
    this.splitter = new FrameSplitter(this);
    this.streaming = null;
    this.streamingDropped = false;
    this.lostKind = null;
    const socket = net.connect({ host: this.endpoint.host, port: this.endpoint.port, noDelay: true });
    this.socket = socket;
    this.out = new BatchWriter(socket, this.bound, this.drained);
    /* c8 ignore next 3 -- needs a peer that swallows SYNs: loopback always answers at once, and
       tests may not touch the firewall; an unreachable PLC is covered by the refused path */
    this.connectTimer = setTimeout(() => {
      socket.destroy(Object.assign(new Error('connect timeout'), { code: 'ETIMEDOUT' }));
    }, this.limits.connectTimeoutMs);
    let error: (Error & { code?: string }) | null = null;
    socket.on('connect', () => {
      this.clearConnectTimer();
      this.state = 'open';
      this.stats.upstreamConnections++;
      socket.setKeepAlive(true, KEEPALIVE_MS);
    });
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err: Error & { code?: string }) => {
      error = err;
    });
    socket.on('close', () => {
      if (this.socket !== socket) return;
      const wasOpen = this.state === 'open';
      if (wasOpen) this.stats.upstreamConnections--;
      this.socket = null;
      this.out = null;
      this.state = 'disconnected';
      this.clearConnectTimer();
      // (close() has already let go of the socket: its own close never gets here.)
      this.onLost(wasOpen, error);
    });
  }

  private onLost(wasOpen: boolean, error: (Error & { code?: string }) | null): void {
    let kind: UpstreamErrorKind;
    if (this.lostKind !== null) kind = this.lostKind;
    else if (!wasOpen) kind = error?.code === 'ECONNREFUSED' ? 'refused' : 'unreachable';
    else if (error !== null && RESET_CODES.has(error.code as string)) kind = 'reset';
    else kind = 'closed';
    this.stats.countUpstreamError(kind);
    // A PLC that accepts and drops at once (no free slot) fails just like one that refuses.
    if (!wasOpen || !this.answeredOnThisConnection) {
      this.failures++;
      const backoff = Math.min(
        this.limits.reconnectBackoffMaxMs,
        this.limits.reconnectBackoffMinMs * 2 ** Math.min(this.failures - 1, 30),
      );
      this.retryAt = this.now() + backoff;
    } else {
      this.failures = 0;
      this.retryAt = 0;
    }
    if (this.streaming !== null && !this.streamingDropped) this.streaming.owner?.corrupt();
    this.streaming = null;
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
    const now = this.now();
    for (const tx of txs) {
      // Touch first: fail() releases the transaction, which clears its owner.
      this.touch(tx.owner);
      tx.owner?.fail(tx, code, now);
    }
    this.flushOwners();
  }

  private teardown(): void {
    this.clearConnectTimer();
    if (this.responseTimer !== null) {
      clearTimeout(this.responseTimer);
      this.responseTimer = null;
    }
    const s = this.socket;
    this.socket = null;
    this.out = null;
    if (s !== null) {
      if (this.state === 'open') this.stats.upstreamConnections--;
      s.destroy();
    }
    this.state = 'disconnected';
  }

  private clearConnectTimer(): void {
    if (this.connectTimer !== null) {
      clearTimeout(this.connectTimer);
      this.connectTimer = null;
    }
  }

  // One timer for all outstanding requests: they were sent in order with the same timeout, so
  // the oldest expires first.
  private armResponseTimer(ms: number): void {
    this.responseTimer = setTimeout(() => this.onResponseTimer(), Math.max(1, ms));
  }

  private onResponseTimer(): void {
    this.responseTimer = null;
    const now = this.now();
    const limit = this.limits.responseTimeoutMs;
    const streamed = this.streaming;
    if (streamed !== null && now - streamed.sentAt >= limit) {
      // Its head already went to the client, so no exception can replace it, and the rest may
      // never come: the PLC stalled mid-response. Drop the connection ('close' does the rest: the
      // owner's stream is cut, the other outstanding requests get 0B).
      this.lostKind = 'timeout';
      this.socket?.destroy();
      return;
    }
    let expired = 0;
    while (expired < this.outstanding.length && now - this.outstanding[expired]!.sentAt >= limit) expired++;
    for (const tx of this.outstanding.splice(0, expired)) {
      this.stats.countUpstreamError('timeout');
      this.touch(tx.owner);
      tx.owner?.fail(tx, ExceptionCode.GATEWAY_TARGET_FAILED, now);
    }
    this.flushOwners();
    let next = this.outstanding[0]?.sentAt;
    /* c8 ignore next -- which is older, a response still streaming or the next request, is timing */
    if (streamed !== null && (next === undefined || streamed.sentAt < next)) next = streamed.sentAt;
    if (next !== undefined) this.armResponseTimer(next + limit - now);
  }

  private onData(chunk: Buffer): void {
    this.chunkAt = this.now();
    const err = this.splitter.push(chunk);
    if (err) {
      // The PLC's stream can't be resynchronised: drop the connection ('close' does the rest:
      // 0B for what was asked).
      this.lostKind = 'framing';
      this.socket?.destroy();
      return;
    }
    this.flushOwners();
  }

  /** Removes outstanding[i]: almost always the oldest, which shift() takes without allocating. */
  private dequeue(i: number): Transaction {
    return (i === 0 ? this.outstanding.shift() : this.outstanding.splice(i, 1)[0])!;
  }

  private find(buf: Buffer, off: number): number {
    const o = this.outstanding;
    for (let i = 0; i < o.length; i++) if (responseMatches(o[i]!.exp, buf, off)) return i;
    return -1;
  }

  // FrameHandler: a whole response frame.
  frame(buf: Buffer, start: number, end: number): boolean {
    const streamed = this.streaming;
    if (streamed !== null || this.streamingDropped) {
      this.streaming = null;
      const dropped = this.streamingDropped;
      this.streamingDropped = false;
      if (!dropped && streamed !== null) this.complete(streamed, checkResponse(streamed.exp, buf, start, end));
      return true;
    }
    const i = this.find(buf, start);
    if (i < 0) {
      this.stats.unsolicitedResponses++;
      return true;
    }
    const tx = this.dequeue(i);
    const owner = tx.owner!;
    owner.forward(buf, start, end, this.splitter.owns(buf));
    this.complete(tx, checkResponse(tx.exp, buf, start, end));
    return true;
  }

  // FrameHandler: the header of a response that spans chunks; forward it as it arrives.
  head(buf: Buffer, have: number): void {
    const i = this.find(buf, 0);
    if (i < 0) {
      this.stats.unsolicitedResponses++;
      this.streamingDropped = true;
      return;
    }
    const tx = this.dequeue(i);
    this.streaming = tx;
    tx.owner!.forward(buf, 0, have, true);
    this.touch(tx.owner);
  }

  part(buf: Buffer, start: number, end: number): void {
    if (this.streaming !== null) this.streaming.owner!.forward(buf, start, end, false);
  }

  private complete(tx: Transaction, check: ResponseCheck): void {
    this.answeredOnThisConnection = true;
    this.failures = 0;
    if (check === 'inconsistent') this.stats.inconsistentResponses++;
    const owner = tx.owner!;
    this.touch(owner);
    owner.complete(tx, check, this.chunkAt);
  }

  private touch(owner: UpstreamOwner | null): void {
    if (owner !== null && !this.touched.includes(owner)) this.touched.push(owner);
  }

  private flushOwners(): void {
    const t = this.touched;
    while (t.length > 0) t.pop()!.delivered();
  }
}

const KEEPALIVE_MS = 30_000;
/** Errors that mean the PLC reset the connection (rather than closing it). */
const RESET_CODES = new Set(['ECONNRESET', 'EPIPE']);
/** sentAt of a request still in the batch of the client chunk being processed. */
const UNSTAMPED = -1;
