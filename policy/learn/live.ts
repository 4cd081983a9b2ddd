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
import { Cells, ceilingWarnings, LIVE_MAX_CELLS, observeRequest, Observations, type DeviceObservation, type PolicyDevice, type SourceObservation } from './observe.js';
import { proposePolicy, type Proposal, type ProposeOptions } from './propose.js';

const UNKNOWN_ADDRESS: IpAddress = { family: 4, w0: 0, w1: 0, w2: 0, w3: 0 };

export class LiveLearner {
  private current!: Observations;
  private device!: DeviceObservation;
  /** What was taken for Redis so far (null without Redis): the local proposal includes it. */
  private taken: Observations | null = null;
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

  /** Requests learned so far (all of them, taken or not). */
  get requests(): number {
    return this.current.counts.requests + (this.taken?.counts.requests ?? 0);
  }

  /** Entries held now (the cell budget's count), and the most there can be. */
  get entries(): number {
    return this.current.cells.used + (this.taken?.cells.used ?? 0);
  }

  get maxEntries(): number {
    return this.maxCells;
  }

  get ceilingReached(): boolean {
    return this.current.cells.reached || (this.taken?.cells.reached ?? false);
  }

  /**
   * What was learned since the last take, for Redis; from now on new requests go to a new set (and
   * `restore` puts a batch back that could not be stored).
   */
  take(): DeviceObservation | null {
    if (this.device.seen.count === 0 && this.device.malformed === 0 && this.device.skipped === 0 && this.device.connections === 0) return null;
    const d = this.device;
    this.taken ??= new Observations(new Cells(this.maxCells));
    this.taken.device(this.address, this.upstream.port)!.mergeFrom(d);
    addCounts(this.taken, this.current);
    this.fresh();
    return d;
  }

  /** A batch `take` returned was not stored: it is merged back, to go with the next one. */
  restore(d: DeviceObservation): void {
    this.device.mergeFrom(d);
  }

  /** Everything this instance learned, for its own proposal. */
  observations(): Observations {
    if (this.taken === null) return this.current;
    const all = new Observations(new Cells(this.maxCells * 2));
    const d = all.device(this.address, this.upstream.port)!;
    d.mergeFrom(this.taken.devices.values().next().value!);
    d.mergeFrom(this.device);
    addCounts(all, this.taken);
    addCounts(all, this.current);
    for (const w of [...this.taken.warnings, ...this.current.warnings]) all.warnings.add(w);
    if (this.ceilingReached) all.cells.reached = true;
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
  readonly unanswered: number;
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
    unanswered: c.unanswered,
    malformed: c.malformed,
    skipped: c.skipped,
    sources: d.sources.size,
    entries: l.entries,
    max_entries: l.maxEntries,
    ceiling_reached: l.ceilingReached,
    warnings: [...o.warnings],
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

function addCounts(to: Observations, from: Observations): void {
  const a = to.counts;
  const b = from.counts;
  a.requests += b.requests;
  a.exceptions += b.exceptions;
  a.unanswered += b.unanswered;
  a.malformed += b.malformed;
  a.unmatchedResponses += b.unmatchedResponses;
  a.skipped += b.skipped;
}
