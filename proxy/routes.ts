import type { CompiledDevice, Limits, Route } from '../policy/types.js';
import type { Transaction, UpstreamOwner, UpstreamPort } from './upstream.js';

/** What a routed port needs from its device's listener. */
export interface RouteContext {
  /** The device's current compiled policy (its routes and unit table). */
  current(): CompiledDevice;
  /** `owner`'s way to one route's upstream: a link of its own, or a port on that route's shared links. */
  portFor(owner: UpstreamOwner, route: Route, limits: Readonly<Limits>): UpstreamPort;
}

/**
 * A session's way to a device with unit routing (`routes:`, one gateway per serial line): per
 * route it reaches, the port it would have on a device with that route alone (its own Upstream,
 * or a port on the route's SharedLinks), opened when a request first goes there.
 *
 * Answers come back as each route's upstream gives them, not in the order the client asked across
 * routes: Modbus/TCP matches an answer to its request by transaction id (MBAP), and holding a
 * fast line's answers behind a slow one's would make every unit as slow as the slowest line.
 * Within one route the order is that upstream's, as without routing.
 *
 * A route whose upstream is down answers its own requests 0A (0B at the response timeout) and
 * nothing else: each route's link, backoff and queue are its own.
 */
export class RoutedPort implements UpstreamPort {
  /** The ports opened, by route key: they outlive a reload that keeps their route. */
  private readonly byKey = new Map<string, UpstreamPort>();
  /** The same ports by index in `device.routes` (undefined: none yet): the per-request lookup. */
  private byIndex: (UpstreamPort | undefined)[] = [];
  private device: CompiledDevice | null = null;
  private limitsNow: Readonly<Limits>;

  constructor(
    private readonly owner: UpstreamOwner,
    private readonly ctx: RouteContext,
  ) {
    this.limitsNow = ctx.current().limits;
  }

  set limits(l: Readonly<Limits>) {
    this.limitsNow = l;
    for (const p of this.byKey.values()) p.limits = l;
  }

  get expiredCount(): number {
    let n = 0;
    for (const p of this.byKey.values()) n += p.expiredCount;
    return n;
  }

  send(tx: Transaction, buf: Buffer, start: number, end: number, copy: boolean): boolean {
    const d = this.ctx.current();
    if (d !== this.device) this.rebind(d);
    const i = d.routeOfUnit[tx.exp.unitId]!;
    const port = this.byIndex[i] ?? this.open(d, i);
    return port.send(tx, buf, start, end, copy);
  }

  /**
   * A reload: the same routes may sit at other indexes. (A route this port reached that changed or
   * went away is not among them: the listener closed this session then.)
   */
  private rebind(d: CompiledDevice): void {
    this.device = d;
    this.byIndex = d.routes.map((r) => this.byKey.get(r.key));
  }

  private open(d: CompiledDevice, i: number): UpstreamPort {
    const route = d.routes[i]!;
    const port = this.ctx.portFor(this.owner, route, this.limitsNow);
    this.byKey.set(route.key, port);
    this.byIndex[i] = port;
    return port;
  }

  flush(owner: UpstreamOwner): boolean {
    let ok = true;
    for (const p of this.byKey.values()) ok = p.flush(owner) && ok;
    return ok;
  }

  resetExpired(): void {
    for (const p of this.byKey.values()) if (p.expiredCount > 0) p.resetExpired();
  }

  close(): void {
    for (const p of this.byKey.values()) p.close();
    this.byKey.clear();
    this.byIndex = [];
  }

  pause(owner: UpstreamOwner): void {
    for (const p of this.byKey.values()) p.pause(owner);
  }

  resume(owner: UpstreamOwner): void {
    for (const p of this.byKey.values()) p.resume(owner);
  }

  /** The keys of the routes it has reached (a reload closes the sessions of routes it changes). */
  uses(key: string): boolean {
    return this.byKey.has(key);
  }
}
