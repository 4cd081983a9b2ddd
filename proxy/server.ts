import net from 'node:net';
import { once } from 'node:events';
import type { CompiledDevice, CompiledPolicy, Endpoint, Limits, Route } from '../policy/types.js';
import { AuditGate, AuditLimiter, ConnectionIds, PLC_LOG_BURST, PLC_LOG_RATE_PER_SECOND, connectionFields, type Logger } from './audit.js';
import { systemClock, type Clock } from './clock.js';
import { SourceRate } from './ratelimit.js';
import { Session, type CloseReason, type SessionContext } from './session.js';
import { DeviceStats, type RefusalReason } from './stats.js';
import { SharedLinks } from './pool.js';
import { RoutedPort, type RouteContext } from './routes.js';
import { connectTcp, Upstream, type ConnectPlc, type UpstreamEvent, type UpstreamOwner, type UpstreamPort } from './upstream.js';
import { LiveLearner } from '../policy/learn/live.js';
import { LIVE_MAX_CELLS } from '../policy/learn/observe.js';
import { formatEndpoint } from '../policy/net.js';
import { TlsTerminator, identityFields, tcpOf, upstreamTlsOptions, type ClientIdentity, type HandshakeRefusal, type TlsEvents } from './tls.js';
import tls from 'node:tls';

/** Sources remembered for rate limiting before disconnected, refilled ones are forgotten. */
const RATE_PRUNE_AT = 1024;

/** Per-device stats kept across policy reloads (metrics read them at scrape time). */
export class StatsRegistry {
  readonly devices = new Map<string, DeviceStats>();
  get(name: string): DeviceStats {
    let s = this.devices.get(name);
    if (!s) {
      s = new DeviceStats();
      this.devices.set(name, s);
    }
    return s;
  }
}

/**
 * A listening socket. Its connections go to `owner`: the device whose address it is in the policy
 * in force. When a reload gives the address to another device (a device renamed, two devices
 * swapping addresses), the socket is handed over: never closed and reopened, so the new device
 * needn't bind an address still in use, and no connection attempt is refused meanwhile.
 */
class ListenSocket {
  private constructor(
    private readonly server: net.Server,
    public owner: DeviceListener,
  ) {}

  /** Listens on `at` for `owner`; rejects with the listen error (address in use). */
  static async open(at: Endpoint, owner: DeviceListener): Promise<ListenSocket> {
    const server = net.createServer({ allowHalfOpen: true, noDelay: true });
    const s = new ListenSocket(server, owner);
    server.on('connection', (socket: net.Socket) => s.owner.accept(socket));
    server.listen({ host: at.host, port: at.port });
    await Promise.race([
      once(server, 'listening'),
      once(server, 'error').then(([err]) => {
        throw err as Error;
      }),
    ]);
    return s;
  }

  /** The port bound (the policy's, or the kernel's pick for port 0). */
  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  /** Stops accepting at once; resolves when closed (after its connections end). */
  close(): Promise<void> {
    return new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** A connection of a device with tls whose handshake is under way. */
interface Handshake {
  readonly socket: net.Socket;
  readonly id: string;
  readonly address: string;
  readonly port: number;
  /** Why it failed and what the TLS stack said, once it has. */
  refusal: HandshakeRefusal;
  detail: string;
}

/** One device's listener, its connection limits and its sessions. */
class DeviceListener implements SessionContext, TlsEvents, RouteContext {
  readonly sessions = new Set<Session>();
  /** Handshakes under way (devices with tls), by accepted socket: they count against the connection limits. */
  private readonly handshakes = new Map<net.Socket, Handshake>();
  /** The device's TLS; null: plain Modbus/TCP. */
  tls: TlsTerminator | null = null;
  /** Sessions whose connection_opened line was written: their connection_closed line will be. */
  private readonly announced = new Set<Session>();
  private readonly perSource = new Map<string, number>();
  private readonly rates = new Map<string, SourceRate>();
  /** The socket it listens on; null until `adopt`. */
  socket: ListenSocket | null = null;
  private readonly plcLog = new AuditLimiter(PLC_LOG_BURST, PLC_LOG_RATE_PER_SECOND);
  readonly clock: Clock = systemClock;
  /** The device's client side toward a PLC speaking mbaps (`upstream_tls`); null: plain TCP. */
  upstreamTls: tls.ConnectionOptions | null = null;
  readonly connect: ConnectPlc = (e) => {
    if (this.upstreamTls === null) return connectTcp(e);
    // Requests written before the handshake is done wait in the TLS socket.
    return tls.connect({ host: e.host, port: e.port, ...this.upstreamTls }).setNoDelay(true);
  };
  listening = false;
  /** The PLC connections the device's clients share, per route key (`upstream_connections`); made on first use. */
  private readonly shared = new Map<string, SharedLinks>();
  /** The ports of sessions on a device with routes: which routes each has reached. */
  private readonly routed = new Map<UpstreamOwner, RoutedPort>();
  /** Set while the device is in learn mode (the learner itself outlives that: ProxyServer keeps it). */
  learner: LiveLearner | null = null;

  constructor(
    public device: CompiledDevice,
    readonly stats: DeviceStats,
    readonly logger: Logger,
    readonly audit: AuditGate,
    /** The budget of connection_opened lines, apart from `audit` (ProxyServer says why). */
    private readonly connectionAudit: AuditGate,
    private readonly ids: ConnectionIds,
  ) {}

  get deviceName(): string {
    return this.device.name;
  }

  current(): CompiledDevice {
    return this.device;
  }

  /**
   * Serves new connections from `socket`: one opened for it, or one handed over by the device
   * that had this address. The socket it had before is the caller's to close (open connections
   * stay).
   */
  adopt(socket: ListenSocket): void {
    const from = socket.owner === this ? undefined : socket.owner.deviceName;
    socket.owner = this;
    this.socket = socket;
    this.port = socket.port;
    this.listening = true;
    this.logger.log('listening', { device: this.device.name, address: this.device.listen.host, port: this.port, handed_over_from: from });
  }

  /** The port bound (the policy's, or the kernel's pick for port 0). */
  port = 0;

  /** Stops accepting at once; resolves when the listener is closed (after its connections end). */
  stopListening(): Promise<void> {
    this.listening = false;
    // Every listener in the server's books adopted a socket when its policy was committed.
    return this.socket!.close();
  }

  accept(socket: net.Socket): void {
    const address = socket.remoteAddress;
    /* c8 ignore next 4 -- a socket reset before accept has no address; nothing to serve */
    if (address === undefined) {
      socket.destroy();
      return;
    }
    const port = socket.remotePort!;
    const id = this.ids.next();
    const limits = this.device.limits;
    let refusal: RefusalReason | null = null;
    if (this.sessions.size + this.handshakes.size >= limits.maxConnections) refusal = 'max_connections';
    else if ((this.perSource.get(address) ?? 0) >= limits.maxConnectionsPerSource) refusal = 'max_connections_per_source';
    // With tls the identity is known after the handshake: checked then, with the role.
    else if (this.tls === null && this.device.mode === 'enforce' && !this.device.forSource(address).matches) refusal = 'source_not_allowed';
    if (refusal !== null) {
      this.refuse(socket, refusal, id, address, port, {});
      return;
    }
    this.perSource.set(address, (this.perSource.get(address) ?? 0) + 1);
    if (this.tls === null) this.startSession(socket, id, address, port, null);
    else this.startHandshake(this.tls, socket, id, address, port);
  }

  /** Refuses a connection: counted once, here (plcguard_denials_total counts requests only). */
  private refuse(socket: net.Socket, reason: RefusalReason, id: string, address: string, port: number, extra: Record<string, unknown>): void {
    this.stats.countRefusal(reason);
    // A source reconnecting makes one line per attempt: within its audit budget.
    if (this.audit.allow(address, this.clock.now())) {
      const suppressed = this.audit.takeSuppressed(address);
      this.logger.log('refused', {
        ...connectionFields(this.device, id, address, port),
        ...extra,
        reason,
        action: 'close',
        ...(suppressed > 0 ? { suppressed } : {}),
      });
    } else {
      this.stats.auditSuppressed++;
    }
    socket.on('error', () => {});
    socket.destroy();
  }

  private startHandshake(tls: TlsTerminator, socket: net.Socket, id: string, address: string, port: number): void {
    const h: Handshake = { socket, id, address, port, refusal: 'tls_handshake_failed', detail: 'closed during the handshake' };
    this.handshakes.set(socket, h);
    socket.on('error', () => {});
    // Every way a handshake can fail (an alert, a certificate refused, a timeout, the client
    // leaving) ends here; a turn of the loop later, as Node reports a refused certificate
    // ('tlsClientError') after this 'close'.
    socket.once('close', () =>
      setImmediate(() => {
        if (!this.handshakes.delete(socket)) return;
        this.releaseSource(address);
        this.refuse(socket, h.refusal, id, address, port, { detail: h.detail });
      }),
    );
    tls.handle(socket);
  }

  failed(tcp: net.Socket, refusal: HandshakeRefusal, detail: string): void {
    const h = this.handshakes.get(tcp);
    /* c8 ignore next -- a TLS error after its TCP close was reported: not seen in Node 20 or 24 (tlsClientError is emitted within that 'close') */
    if (h === undefined) return;
    h.refusal = refusal;
    h.detail = detail;
  }

  handshake(socket: tls.TLSSocket, identity: ClientIdentity): void {
    const h = this.handshakes.get(tcpOf(socket))!;
    this.handshakes.delete(h.socket);
    if (this.device.mode === 'enforce' && !this.device.forSource(h.address, identity.role).matches) {
      this.releaseSource(h.address);
      this.refuse(socket, 'identity_not_allowed', h.id, h.address, h.port, identityFields(identity));
      return;
    }
    this.startSession(socket, h.id, h.address, h.port, identity);
  }

  reloaded(error: string | null): void {
    if (error === null) this.logger.log('tls_reloaded', { device: this.device.name });
    else this.logger.log('tls_rejected', { device: this.device.name, error, kept: 'last good certificates' });
  }

  /** Uses `next` for new connections (null: plain Modbus/TCP); the one it had stops watching. */
  setTls(next: TlsTerminator | null): void {
    if (this.tls !== next) this.tls?.close();
    this.tls = next;
  }

  private startSession(socket: net.Socket, id: string, address: string, port: number, identity: ClientIdentity | null): void {
    this.stats.clientConnections++;
    this.stats.clientConnectionsTotal++;
    const session = new Session(socket, this, address, port, id, identity);
    this.sessions.add(session);
    if (this.connectionAudit.allow(address, this.clock.now())) {
      this.announced.add(session);
      this.logConnection(session, 'connection_opened', {});
    } else {
      this.stats.connectionLinesSuppressed++;
    }
  }

  /** Ends the handshakes under way (shutdown, device removed): their clients were never served. */
  abortHandshakes(): void {
    for (const h of this.handshakes.values()) h.socket.destroy();
  }

  /** A connection_opened or _closed line, with the count of such lines about its source suppressed. */
  private logConnection(session: Session, event: string, fields: Record<string, unknown>): void {
    const suppressed = this.connectionAudit.takeSuppressed(session.remoteAddress);
    this.logger.log(event, { ...session.logFields, ...fields, ...(suppressed > 0 ? { suppressed } : {}) });
  }

  /** PLC connection failures, one line per few seconds per device however many links fail. */
  logUpstream(event: UpstreamEvent, fields: Record<string, unknown>): void {
    const extra = this.plcLog.admit(this.clock.now());
    if (extra) this.logger.log(event, { device: this.device.name, ...fields, ...extra });
  }

  learnCeilingReached(): void {
    this.logger.log('learn_ceiling_reached', {
      device: this.device.name,
      max_entries: LIVE_MAX_CELLS,
      message: 'learn mode: the observations are at their ceiling; further detail is merged into what is there, and new sources or units are not learned',
    });
  }

  rateFor(address: string): SourceRate {
    let r = this.rates.get(address);
    if (!r) {
      if (this.rates.size >= RATE_PRUNE_AT) this.pruneRates();
      r = new SourceRate();
      this.rates.set(address, r);
    }
    return r;
  }

  /** Drops the rate state of sources with no connection whose bucket has refilled. */
  private pruneRates(): void {
    const now = this.clock.now();
    for (const [address, r] of this.rates) {
      if (!this.perSource.has(address) && r.refilled(now, this.device.rateLimit)) this.rates.delete(address);
    }
  }

  upstreamFor(owner: UpstreamOwner, device: CompiledDevice): UpstreamPort {
    if (device.routes.length === 1) return this.portFor(owner, device.routes[0]!, device.limits);
    const port = new RoutedPort(owner, this);
    this.routed.set(owner, port);
    return port;
  }

  portFor(owner: UpstreamOwner, route: Route, limits: Readonly<Limits>): UpstreamPort {
    if (route.sharing === null) return new Upstream(route.upstream, limits, this);
    let links = this.shared.get(route.key);
    if (links === undefined) {
      links = new SharedLinks(route.upstream, route.sharing, limits, this);
      this.shared.set(route.key, links);
    }
    links.sharing = route.sharing;
    return links.port(owner);
  }

  /** Closes the shared PLC connections (their sessions closed first). */
  closeShared(): void {
    for (const links of this.shared.values()) links.close();
    this.shared.clear();
  }

  /**
   * After a reload: clients of the device whose connections went to an upstream the device no
   * longer has, or shared as it no longer says, reconnect. A change of the device's own upstream
   * (or TLS) reaches every client, as without routes; a change of one route only the clients that
   * have sent to it, and its shared links: the other routes' connections stay.
   */
  reroute(old: CompiledDevice, device: CompiledDevice, tlsToggled: boolean): void {
    for (const r of device.routes) {
      const links = this.shared.get(r.key);
      if (links !== undefined && r.sharing !== null) links.sharing = r.sharing;
    }
    if (tlsToggled || routeChanged(old.routes[0]!, device.routes[0])) {
      for (const s of [...this.sessions]) s.close('policy_removed');
      this.closeShared();
      return;
    }
    for (const r of old.routes.slice(1)) {
      if (!routeChanged(r, device.routes.find((n) => n.key === r.key))) continue;
      for (const s of [...this.sessions]) if (this.routed.get(s)?.uses(r.key)) s.close('policy_removed');
      this.shared.get(r.key)?.close();
      this.shared.delete(r.key);
    }
  }

  sessionClosed(session: Session, reason: CloseReason): void {
    this.sessions.delete(session);
    this.routed.delete(session);
    // Only after an opened line: the pair is whole in the log, and the opened line paid for both.
    if (this.announced.delete(session)) {
      this.logConnection(session, 'connection_closed', {
        reason,
        duration_ms: Math.round(this.clock.now() - session.openedAt),
        ...session.traffic(),
      });
    }
    this.stats.clientConnections--;
    this.releaseSource(session.remoteAddress);
  }

  /** A connection of `address` has ended (or never became a session). */
  private releaseSource(address: string): void {
    const n = this.perSource.get(address)! - 1;
    if (n > 0) {
      this.perSource.set(address, n);
      return;
    }
    this.perSource.delete(address);
    // Forget a source's rate only once it has earned its whole burst back: reconnecting must not
    // buy a fresh burst. A handshake that failed made no rate state.
    const rate = this.rates.get(address);
    if (rate !== undefined && rate.refilled(this.clock.now(), this.device.rateLimit)) this.rates.delete(address);
  }
}

/** A route's connections are no longer what the policy says: its upstream is gone, or shared otherwise. */
function routeChanged(old: Route, now: Route | undefined): boolean {
  return now === undefined || !sameEndpoint(old.upstream, now.upstream) || old.sharing?.connections !== now.sharing?.connections;
}

function sameEndpoint(a: Endpoint, b: Endpoint): boolean {
  return a.host === b.host && a.port === b.port;
}

/**
 * All listeners. `apply` reconciles them with a new compiled policy: new devices start
 * listening, removed ones stop (and their connections close), changed ones swap their compiled
 * device in place so open connections judge their next request by it.
 */
export class ProxyServer {
  private readonly listeners = new Map<string, DeviceListener>();
  readonly stats = new StatsRegistry();
  /** One audit budget for the whole process: per source address across devices, and in total. */
  private readonly audit = new AuditGate();
  /**
   * The connection_opened lines' own budget (a connection_closed line follows each one written):
   * HMIs reconnecting all at once after a network outage must not use up the budget that denials
   * need, nor a flood of denials silence the record of who connected.
   */
  private readonly connectionAudit = new AuditGate();
  /** Connection ids: one sequence for the process, unique across restarts. */
  private readonly ids = new ConnectionIds();
  private stopping = false;
  /** Per device name, what it learned in learn mode: kept across reloads, and after it leaves learn mode. */
  readonly learners = new Map<string, LiveLearner>();

  constructor(
    private readonly logger: Logger,
    /**
     * What relative paths under a device's `tls` resolve against: the policy file's folder, or
     * for a policy from Redis this instance's --tls-dir (certificates are the host's, never in Redis).
     */
    private readonly tlsDir = '.',
  ) {}

  /** Listening port per device (after `apply`). */
  ports(): Map<string, number> {
    return new Map([...this.listeners].map(([name, l]) => [name, l.port]));
  }

  get ready(): boolean {
    return !this.stopping && this.listeners.size > 0 && [...this.listeners.values()].every((l) => l.listening);
  }

  /** Every open client session. */
  sessions(): Session[] {
    return [...this.listeners.values()].flatMap((l) => [...l.sessions]);
  }

  /**
   * Applies a policy, all or nothing: every listener the new policy needs is opened first, and if
   * one can't be (address in use), those opened are closed again, the error is thrown and the
   * policy in force stays exactly as it was.
   *
   * A device whose address another device listens on now (renamed, or swapping addresses with
   * it) takes that device's socket over at the commit. A device removed from the policy (a rename
   * removes the old name) has its connections closed, whoever takes its address: its rules are no
   * longer in force, and its clients reconnect to the same address, which never stopped
   * listening, under the new device's rules, limits and name.
   */
  async apply(policy: CompiledPolicy): Promise<void> {
    /* c8 ignore next -- a reload racing shutdown: the listeners are going, apply nothing */
    if (this.stopping) return;
    const added: DeviceListener[] = [];
    // The socket a device listens on from the commit, where that changes.
    const planned = new Map<DeviceListener, ListenSocket>();
    const opened: ListenSocket[] = [];
    // The TLS each device serves from the commit; certificates that can't be read fail the apply.
    const tlsPlanned = new Map<DeviceListener, TlsTerminator | null>();
    // Read at every apply (a reload, SIGHUP): new PLC connections use what is on disk then.
    const upstreamTls = new Map<DeviceListener, tls.ConnectionOptions | null>();
    const tlsOpened: TlsTerminator[] = [];
    try {
      for (const device of policy.devices.values()) {
        let l = this.listeners.get(device.name);
        if (!l) {
          l = new DeviceListener(device, this.stats.get(device.name), this.logger, this.audit, this.connectionAudit, this.ids);
          added.push(l);
        }
        const up = device.document.upstream_tls;
        upstreamTls.set(l, up === undefined ? null : upstreamTlsOptions(up, this.tlsDir));
        const config = device.document.tls;
        if (config === undefined) tlsPlanned.set(l, null);
        else if (l.tls?.serves(config, this.tlsDir)) {
          // The same files: read again (SIGHUP, a push), in case they were replaced unseen.
          l.tls.reload();
          tlsPlanned.set(l, l.tls);
        } else {
          const t = new TlsTerminator(config, this.tlsDir, l);
          tlsOpened.push(t);
          tlsPlanned.set(l, t);
        }
        if (!added.includes(l) && sameEndpoint(l.device.listen, device.listen)) continue;
        // Validation gives each address to one device, so the one holding it now gives it up.
        const held = this.listeningAt(device.listen);
        if (held) planned.set(l, held);
        else {
          const socket = await ListenSocket.open(device.listen, l);
          opened.push(socket);
          planned.set(l, socket);
        }
      }
    } catch (err) {
      for (const socket of opened) void socket.close();
      for (const t of tlsOpened) t.close();
      throw err;
    }
    // Commit: nothing below can fail.
    const before = [...this.listeners.values()].map((l) => l.socket);
    for (const [name, l] of this.listeners) {
      if (policy.devices.has(name)) continue;
      this.listeners.delete(name);
      l.listening = false;
      l.setTls(null);
      l.abortHandshakes();
      for (const s of [...l.sessions]) s.close('policy_removed');
      l.closeShared();
    }
    for (const l of added) this.listeners.set(l.deviceName, l);
    for (const device of policy.devices.values()) {
      const l = this.listeners.get(device.name)!;
      const old = l.device;
      l.device = device;
      l.setTls(tlsPlanned.get(l)!);
      l.upstreamTls = upstreamTls.get(l)!;
      const socket = planned.get(l);
      if (socket) l.adopt(socket);
      l.learner = device.mode === 'learn' ? this.learnerFor(device) : null;
      // Connections were opened to the old PLC address, shared (or not) as the device no longer
      // says, or authenticated (or not) under the other kind of listener: make their clients reconnect.
      const tlsToggled = (old.document.tls === undefined) !== (device.document.tls === undefined);
      l.reroute(old, device, tlsToggled);
    }
    // Sockets no device took close; their open connections stay (or were closed above).
    const inUse = new Set([...this.listeners.values()].map((l) => l.socket));
    for (const socket of before) if (socket && !inUse.has(socket)) void socket.close();
  }

  private learnerFor(device: CompiledDevice): LiveLearner {
    const policy = {
      name: device.name,
      listen: formatEndpoint(device.listen.host, device.listen.port),
      upstream: formatEndpoint(device.upstream.host, device.upstream.port),
      // Kept in the proposal: enforcing it must not open more PLC connections than learning did.
      ...(device.sharing === null ? {} : { sharing: { connections: device.sharing.connections, maxInFlight: device.sharing.maxInFlight } }),
      ...(device.document.routes === undefined ? {} : { routes: device.document.routes }),
      ...(device.document.tls === undefined ? {} : { tls: device.document.tls }),
      ...(device.document.upstream_tls === undefined ? {} : { upstreamTls: device.document.upstream_tls }),
    };
    let l = this.learners.get(device.name);
    if (l === undefined) {
      l = new LiveLearner(policy, device.upstream);
      this.learners.set(device.name, l);
      this.stats.get(device.name).learner = l;
    } else l.rename(policy);
    return l;
  }

  /** The socket listening on `at` now, if any. */
  private listeningAt(at: Endpoint): ListenSocket | null {
    for (const l of this.listeners.values()) if (l.socket && sameEndpoint(l.device.listen, at)) return l.socket;
    return null;
  }

  /** Stops accepting, lets outstanding requests finish within graceMs, then closes the rest. */
  async shutdown(graceMs: number): Promise<void> {
    this.stopping = true;
    const all: Session[] = [];
    const listenersClosed: Promise<void>[] = [];
    for (const l of this.listeners.values()) {
      l.setTls(null);
      l.abortHandshakes();
      listenersClosed.push(l.stopListening());
      for (const s of l.sessions) all.push(s);
    }
    for (const s of all) s.stopGracefully();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(all.map((s) => s.whenClosed())),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, graceMs);
      }),
    ]);
    clearTimeout(timer);
    for (const s of all) s.close('shutdown');
    for (const l of this.listeners.values()) l.closeShared();
    await Promise.all(listenersClosed);
    this.listeners.clear();
  }
}
