import { ExceptionCode } from '../modbus/index.js';
import type { Endpoint, Limits, Sharing } from '../policy/types.js';
import type { Timer } from './clock.js';
import { Transaction, Upstream, type LinkContext, type UpstreamOwner, type UpstreamPort } from './upstream.js';

/**
 * The PLC connections all the clients of one device share (`upstream_connections: N`): legacy
 * PLCs and serial gateways accept a few connections and answer one request at a time.
 *
 * Each client's session has a port here. An allowed request waits in its port's queue (in the
 * client's order) until a link has a free slot (`upstream_max_in_flight`); the ports with waiting
 * requests take turns, one request each, so a chatty client can't starve the others. The link
 * gives the request a transaction id of its own toward the PLC and gives the answer the client's
 * back (proxy/upstream.ts): requests of several clients all using tid 1 never clash, and an
 * answer goes only to the client that asked.
 *
 * Per-connection limits still hold: a session counts what waits here against its max_outstanding.
 * The response timeout counts from when plcguard took the request up, so time in the queue counts;
 * a request that runs out of time waiting gets 0B and never reaches the PLC.
 *
 * Links open on demand (the first request opens one), reconnect after a loss with the link's
 * backoff, and close once the device has had nothing to do for its idle timeout. While no link is
 * connected and one is backing off, the PLC is down: every waiting request is answered 0A, once,
 * and new ones get 0A at once.
 */
export class SharedLinks {
  private readonly links: Upstream[] = [];
  /** Ports with waiting requests, in turn order; `turn` is the next to be served. */
  private readonly ring: Port[] = [];
  private turn = 0;
  private readonly queueTimer: Timer;
  private readonly idleTimer: Timer;
  /** Since when nothing has waited or been in flight (-1: busy). */
  private idleSince = -1;
  private readonly settled = (): void => this.dispatch();
  private readonly sent = new Map<Upstream, UpstreamOwner>();

  constructor(
    private readonly endpoint: Endpoint,
    public sharing: Readonly<Sharing>,
    private limitsNow: Readonly<Limits>,
    private readonly ctx: LinkContext,
  ) {
    this.queueTimer = ctx.clock.timer(() => this.onQueueTimer());
    this.idleTimer = ctx.clock.timer(() => this.onIdleTimer());
    ctx.stats.sharedLinks = true;
  }

  /** The device's limits, for every link (a reload sets them). */
  set limits(l: Readonly<Limits>) {
    this.limitsNow = l;
    for (const link of this.links) link.limits = l;
  }

  /** A session's way in. */
  port(owner: UpstreamOwner): UpstreamPort {
    return new Port(this, owner);
  }

  /** Closes every link (the device is gone, or plcguard stops). Ports are closed by their sessions. */
  close(): void {
    for (const link of this.links.splice(0)) link.close();
    this.queueTimer.cancel();
    this.idleTimer.cancel();
  }

  /** True while the PLC can't be tried: no link connected, and one backing off after failures. */
  private get down(): boolean {
    // Asked per request: a loop, no closures.
    let backingOff = false;
    for (const l of this.links) {
      if (l.connected) return false;
      if (l.backingOff) backingOff = true;
    }
    return backingOff;
  }

  /** Queues a request (call dispatch after the client's chunk); false when the PLC is down: answer 0A. */
  enqueue(port: Port, tx: Transaction, frame: Buffer): boolean {
    if (this.down) return false;
    if (port.txs.length === 0) this.ring.push(port);
    port.txs.push(tx);
    port.frames.push(frame);
    this.ctx.stats.upstreamQueued++;
    this.idleSince = -1;
    if (!this.queueTimer.armed) this.queueTimer.arm(Math.max(1, tx.takenAt + this.limitsNow.responseTimeoutMs - this.ctx.clock.now()));
    return true;
  }

  /** Hands waiting requests to links with free slots, the ports taking turns. */
  dispatch(): void {
    const ring = this.ring;
    const now = this.ctx.clock.now();
    const limit = this.limitsNow.responseTimeoutMs;
    // One write per link for everything sent now (the owner is told if the socket is full).
    const sent = this.sent;
    while (ring.length > 0) {
      const link = this.freeLink();
      if (link === null) break;
      if (this.turn >= ring.length) this.turn = 0;
      const port = ring[this.turn]!;
      const tx = port.txs.shift()!;
      const frame = port.frames.shift()!;
      this.ctx.stats.upstreamQueued--;
      if (port.txs.length === 0) ring.splice(this.turn, 1);
      else this.turn++;
      // Out of time already (the queue timer runs next): it never reaches the PLC.
      if (now - tx.takenAt >= limit) {
        this.timeOut(tx, now);
        continue;
      }
      this.ctx.stats.queueWait.observe((now - tx.takenAt) / 1000);
      // freeLink gives no link that is backing off: the send is taken.
      link.send(tx, frame, 0, frame.length, false);
      sent.set(link, tx.owner);
    }
    for (const [link, owner] of sent) link.flush(owner);
    sent.clear();
    this.afterChange(now);
  }

  /**
   * A link that can take a request now: a connected one with a free slot, else an idle one that
   * may (re)connect, else a new one while there are fewer than N and none is backing off. A link
   * whose slots are all held by requests answered 0B, while others wait, is reset: the PLC
   * had a whole response timeout for them (as a session does at max_outstanding).
   */
  private freeLink(): Upstream | null {
    const max = this.sharing.maxInFlight;
    let idle: Upstream | null = null;
    let backingOff = false;
    for (const l of this.links) {
      if (l.connected) {
        if (l.inFlight < max) return l;
        if (l.awaiting === 0) l.resetExpired();
      } else if (l.backingOff) backingOff = true;
      else idle ??= l;
    }
    if (idle !== null) return idle;
    if (this.links.length >= this.sharing.connections || backingOff) return null;
    const link = new Upstream(this.endpoint, this.limitsNow, this.ctx, this.settled);
    this.links.push(link);
    return link;
  }

  /** After anything changed: a PLC that is down answers what waits; an idle device starts its idle clock. */
  private afterChange(now: number): void {
    if (this.ring.length > 0 && this.down) this.failWaiting(ExceptionCode.GATEWAY_PATH_UNAVAILABLE, now);
    let remapped = 0;
    for (const l of this.links) remapped += l.inFlight;
    this.ctx.stats.upstreamRemapped = remapped;
    if (remapped > 0 || this.ring.length > 0) {
      this.idleSince = -1;
      return;
    }
    if (this.idleSince < 0) this.idleSince = now;
    if (!this.idleTimer.armed && this.links.length > 0) this.idleTimer.arm(this.limitsNow.idleTimeoutMs);
  }

  private onIdleTimer(): void {
    if (this.idleSince < 0) return;
    const left = this.idleSince + this.limitsNow.idleTimeoutMs - this.ctx.clock.now();
    if (left > 0) {
      this.idleTimer.arm(left);
      return;
    }
    // Keeping one that backs off keeps its backoff: an idle period must not end one.
    for (let i = this.links.length - 1; i >= 0; i--) {
      const l = this.links[i]!;
      if (l.backingOff) continue;
      l.close();
      this.links.splice(i, 1);
    }
  }

  /** Answers every waiting request with `code`, once: each leaves its queue as it is answered. */
  private failWaiting(code: number, now: number): void {
    const ports = this.ring.splice(0);
    for (const p of ports) {
      this.ctx.stats.upstreamQueued -= p.txs.length;
      for (const tx of p.txs.splice(0)) tx.owner.fail(tx, code, now);
      p.frames.length = 0;
    }
    for (const p of ports) p.owner.delivered(now);
  }

  private timeOut(tx: Transaction, now: number): void {
    this.ctx.stats.countUpstreamError('timeout');
    tx.owner.fail(tx, ExceptionCode.GATEWAY_TARGET_FAILED, now);
    tx.owner.delivered(now);
  }

  /** Requests that ran out of time waiting get 0B; each queue is in order of takenAt. */
  private onQueueTimer(): void {
    const now = this.ctx.clock.now();
    const limit = this.limitsNow.responseTimeoutMs;
    let next = Infinity;
    for (let i = 0; i < this.ring.length; ) {
      const p = this.ring[i]!;
      let n = 0;
      while (n < p.txs.length && now - p.txs[n]!.takenAt >= limit) n++;
      if (n > 0) {
        this.ctx.stats.upstreamQueued -= n;
        p.frames.splice(0, n);
        for (const tx of p.txs.splice(0, n)) {
          this.ctx.stats.countUpstreamError('timeout');
          tx.owner.fail(tx, ExceptionCode.GATEWAY_TARGET_FAILED, now);
        }
      }
      if (p.txs.length === 0) {
        this.ring.splice(i, 1);
        if (this.turn > i) this.turn--;
      } else {
        next = Math.min(next, p.txs[0]!.takenAt);
        i++;
      }
      if (n > 0) p.owner.delivered(now);
    }
    if (next !== Infinity) this.queueTimer.arm(Math.max(1, next + limit - now));
    this.afterChange(now);
  }

  expiredOf(owner: UpstreamOwner): number {
    let n = 0;
    for (const l of this.links) n += l.expiredOf(owner);
    return n;
  }

  resetExpiredOf(owner: UpstreamOwner): void {
    for (const l of this.links) if (l.connected && l.expiredOf(owner) > 0) l.resetExpired();
  }

  /** The port's session is gone: what it queued is forgotten, what it has in flight is abandoned. */
  detach(port: Port): void {
    const i = this.ring.indexOf(port);
    if (i >= 0) {
      this.ring.splice(i, 1);
      if (this.turn > i) this.turn--;
      this.ctx.stats.upstreamQueued -= port.txs.length;
      port.txs.length = 0;
      port.frames.length = 0;
    }
    for (const l of this.links) l.detach(port.owner);
  }
}

/** One session's way to the shared links. */
class Port implements UpstreamPort {
  /** Waiting requests, oldest first, and their bytes. */
  readonly txs: Transaction[] = [];
  readonly frames: Buffer[] = [];

  constructor(
    private readonly pool: SharedLinks,
    readonly owner: UpstreamOwner,
  ) {}

  set limits(l: Readonly<Limits>) {
    this.pool.limits = l;
  }

  get expiredCount(): number {
    return this.pool.expiredOf(this.owner);
  }

  send(tx: Transaction, buf: Buffer, start: number, end: number, copy: boolean): boolean {
    // It waits beyond this chunk: bytes the client's splitter owns are reused, so they are copied.
    const frame = copy ? Buffer.from(buf.subarray(start, end)) : buf.subarray(start, end);
    tx.clientTid = tx.exp.transactionId;
    return this.pool.enqueue(this, tx, frame);
  }

  /** Never full: a link holds at most upstream_max_in_flight requests, and max_outstanding bounds what waits. */
  flush(): boolean {
    this.pool.dispatch();
    return true;
  }

  resetExpired(): void {
    this.pool.resetExpiredOf(this.owner);
  }

  close(): void {
    this.pool.detach(this);
  }

  // A client that isn't reading doesn't stall the PLC connection others share: its session stops
  // reading its requests, so max_outstanding bounds the responses that queue up for it.
  pause(): void {}
  resume(): void {}
}
