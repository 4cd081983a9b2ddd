// A device in learn mode: what its sessions see, recorded into the observation model captures use
// (observe.ts), one request at a time as its answer arrives. Pure: the proxy hands in request bytes
// and the PLC's exception code; the admin endpoint and Redis read what was learned from here.
//
// Memory: one Observations per device with a cell budget of LIVE_MAX_CELLS (observe.ts), and,
// with Redis, the part already merged into Redis beside it (as many again at most).

import { decodeRequest, ModbusRequest } from '../../modbus/index.js';
import { parseClientAddress, type IpAddress } from '../net.js';
import type { Endpoint } from '../types.js';
import { formatEndpoint } from '../net.js';
import { Cells, ceilingWarnings, cellsWarning, LIVE_MAX_CELLS, observeRequest, Observations, type DeviceObservation, type PolicyDevice, type SourceObservation } from './observe.js';
import { proposePolicy, type Proposal, type ProposeOptions } from './propose.js';

const UNKNOWN_ADDRESS: IpAddress = { family: 4, w0: 0, w1: 0, w2: 0, w3: 0 };

export class LiveLearner {
  private current!: Observations;
  private device!: DeviceObservation;
  /** A batch `take` handed out and not yet stored or restored. */
  private pending: DeviceObservation | null = null;
  /** What was stored in Redis so far (null without Redis): the local proposal includes it. */
  private stored: Observations | null = null;
  /** Bumped whenever `current` is replaced: sessions look their source up again. */
  generation = 0;
  private readonly req = new ModbusRequest();
  private readonly address: IpAddress;

  constructor(
    private policy: PolicyDevice,
    private readonly upstream: Endpoint,
    private readonly maxCells = LIVE_MAX_CELLS,
  ) {
    this.address = parseClientAddress(upstream.host) ?? UNKNOWN_ADDRESS;
    this.fresh();
  }

  private fresh(): void {
    this.current = new Observations(new Cells(this.maxCells));
    this.device = this.current.device(this.address, this.upstream.port)!;
    this.device.policy = this.policy;
    this.generation++;
  }

  /** A reload renamed the device or moved its listener: the proposal follows. */
  rename(policy: PolicyDevice): void {
    this.policy = policy;
    this.device.policy = policy;
  }

  get name(): string {
    return this.policy.name;
  }

  /** The source's entry for a new connection (or after `take`); null past the ceilings. */
  source(address: string): SourceObservation | null {
    const ip = parseClientAddress(address) ?? UNKNOWN_ADDRESS;
    return this.device.source(ip, address);
  }

  /** A connection from `source` started. */
  connected(source: SourceObservation | null): void {
    this.device.connections++;
    if (source !== null) source.connections++;
  }

  /**
   * One request, bytes[0, length), with the PLC's exception code (0: a normal answer). Returns
   * true the first time the cell budget is found used up (the caller warns once).
   */
  record(source: SourceObservation | null, bytes: Buffer, length: number, exception: number, unanswered: boolean, timeMs: number): boolean {
    const cells = this.current.cells;
    const before = cells.reached;
    observeRequest(this.current, this.device, source, decodeRequest(bytes, 0, length, this.req), timeMs, exception, unanswered);
    return !before && cells.reached;
  }

  /** A malformed request was denied: not learned, but counted. */
  malformed(): void {
    this.current.counts.malformed++;
    this.device.malformed++;
  }

  /** Requests learned so far (stored in Redis or not). */
  get requests(): number {
    return this.device.seen.count + (this.pending?.seen.count ?? 0) + (this.storedDevice()?.seen.count ?? 0);
  }

  /** Entries held now (the cell budget's count), and the most there can be. */
  get entries(): number {
    return this.current.cells.used + (this.stored?.cells.used ?? 0);
  }

  get maxEntries(): number {
    return this.maxCells;
  }

  get ceilingReached(): boolean {
    return this.current.cells.reached || (this.stored?.cells.reached ?? false);
  }

  private storedDevice(): DeviceObservation | null {
    return this.stored?.devices.values().next().value ?? null;
  }

  /**
   * What was learned since the last take, for Redis (null: nothing); new requests go to a new set
   * from now on. Then `stored` or `restore` says what became of it.
   */
  take(): DeviceObservation | null {
    const d = this.device;
    if (d.seen.count === 0 && d.malformed === 0 && d.skipped === 0 && d.connections === 0) return null;
    this.pending = d;
    this.fresh();
    return d;
  }

  /** The batch is in Redis: kept locally too, for this instance's own proposal. */
  done(): void {
    this.stored ??= new Observations(new Cells(this.maxCells));
    this.stored.device(this.address, this.upstream.port)!.mergeFrom(this.pending!);
    this.pending = null;
  }

  /** The batch was not stored: merged back, to go with the next one. */
  restore(): void {
    this.device.mergeFrom(this.pending!);
    this.pending = null;
  }

  /** Everything this instance learned, for its own proposal and stats. */
  observations(): Observations {
    // A copy made on request: each part is bounded already.
    const all = new Observations();
    const d = all.device(this.address, this.upstream.port)!;
    for (const part of [this.storedDevice(), this.pending, this.device]) if (part !== null) d.mergeFrom(part);
    d.policy = this.policy;
    const c = all.counts;
    c.requests = d.seen.count;
    c.exceptions = d.seen.exceptions;
    c.malformed = d.malformed;
    c.skipped = d.skipped;
    return all;
  }

  /** Everything this instance learned, as one device's observations. */
  learned(): DeviceObservation {
    return this.observations().devices.values().next().value!;
  }

  /** `host:port` of the PLC. */
  get upstreamText(): string {
    return formatEndpoint(this.upstream.host, this.upstream.port);
  }
}

/** What learn mode has seen on a device, for /learn/stats. */
export interface LearnStats {
  readonly device: string;
  readonly upstream: string;
  readonly requests: number;
  readonly exceptions: number;
  readonly malformed: number;
  readonly skipped: number;
  readonly sources: number;
  readonly entries: number;
  readonly max_entries: number;
  readonly ceiling_reached: boolean;
  readonly warnings: string[];
}

export function learnStats(l: LiveLearner): LearnStats {
  const o = l.observations();
  ceilingWarnings(o);
  const d = o.devices.values().next().value!;
  const c = o.counts;
  return {
    device: l.name,
    upstream: l.upstreamText,
    requests: c.requests,
    exceptions: c.exceptions,
    malformed: c.malformed,
    skipped: c.skipped,
    sources: d.sources.size,
    entries: l.entries,
    max_entries: l.maxEntries,
    ceiling_reached: l.ceilingReached,
    warnings: [...o.warnings, ...(l.ceilingReached ? [cellsWarning(l.maxEntries)] : [])],
  };
}

/**
 * The proposal for the devices learners have seen, under their names (null when none has a
 * single request yet). Never `mode: learn`: enforce, unless the options say monitor.
 */
export function liveProposal(learners: Iterable<LiveLearner>, options: ProposeOptions = {}): Proposal | null {
  const obs = new Observations();
  for (const l of learners) {
    const d = l.learned();
    if (d.seen.count > 0) obs.devices.set(l.name, d);
  }
  if (obs.devices.size === 0) return null;
  return proposePolicy(obs, { learnedFrom: "plcguard's learn mode", ...options });
}
