// What the benchmark runs: the traffic mixes (every request with the answer it must get) and the
// scenarios (load shape × paths). Pure data; bench/policies.ts writes the policies this traffic
// is judged by, and the two must agree on what is allowed.
import { EXCEPTION, FC, pdu } from './model.js';

/** The unit id the bench traffic addresses; the policies allow it for the bench client. */
export const BENCH_UNIT = 1;
/** A unit no rule gives the bench client (a unit sweep's next step). */
export const OTHER_UNIT = 2;

/**
 * Requests per mix, one per transaction id 0..SLOT_COUNT-1: a connection sends slot after slot
 * and a response is matched to its request by tid alone (denials are answered at once by
 * plcguard, so responses may overtake each other). A multiple of 10 (the deny mix's block) and
 * of the 8 denial kinds, and far more than the requests ever in flight on one connection.
 */
export const SLOT_COUNT = 800;

export type MixName = 'read' | 'mixed-deny';
export const MIX_NAMES: readonly MixName[] = ['read', 'mixed-deny'];

export interface RequestSpec {
  unit: number;
  pdu: number[];
  /** Set when the bench policy denies it: the exception code plcguard must answer with. */
  deniedWith?: number;
}

/** An HMI's poll: FC3, 10 holding registers somewhere in 0..99 (allowed by the `hmi-read` rule). */
function hmiPoll(slot: number): RequestSpec {
  return { unit: BENCH_UNIT, pdu: pdu.read(FC.READ_HOLDING_REGISTERS, (slot * 7) % 90, 10) };
}

// The mixed mix: per block of 10 requests, 9 allowed ones of every public kind the bench rules
// allow, then 1 denied one, cycling through the ways a request is refused.
const ALLOWED_KINDS: readonly ((slot: number) => RequestSpec)[] = [
  hmiPoll,
  (s) => ({ unit: BENCH_UNIT, pdu: pdu.read(FC.READ_HOLDING_REGISTERS, (s * 3) % 80, 20) }),
  (s) => ({ unit: BENCH_UNIT, pdu: pdu.read(FC.READ_INPUT_REGISTERS, (s * 5) % 90, 10) }),
  (s) => ({ unit: BENCH_UNIT, pdu: pdu.read(FC.READ_COILS, s % 48, 16) }),
  (s) => ({ unit: BENCH_UNIT, pdu: pdu.read(FC.READ_HOLDING_REGISTERS, s % 100, 1) }),
  (s) => ({ unit: BENCH_UNIT, pdu: pdu.read(FC.READ_DISCRETE_INPUTS, s % 32, 32) }),
  (s) => ({ unit: BENCH_UNIT, pdu: pdu.writeRegister(10 + (s % 10), s % 1001) }),
  (s) => ({ unit: BENCH_UNIT, pdu: pdu.writeRegisters(10, [s % 1000, 1, 500, 1000]) }),
  (s) => ({ unit: BENCH_UNIT, pdu: pdu.writeCoil(s % 8, s % 2 === 0) }),
];

const DENIED_KINDS: readonly (() => RequestSpec)[] = [
  // A read past the end of the HMI's range: address_not_allowed.
  () => ({ unit: BENCH_UNIT, pdu: pdu.read(FC.READ_HOLDING_REGISTERS, 100, 10), deniedWith: EXCEPTION.ILLEGAL_DATA_ADDRESS }),
  // A setpoint above its bound 0..1000: value_not_allowed.
  () => ({ unit: BENCH_UNIT, pdu: pdu.writeRegister(12, 5000), deniedWith: EXCEPTION.ILLEGAL_DATA_VALUE }),
  // A write where only reads are allowed: address_not_allowed.
  () => ({ unit: BENCH_UNIT, pdu: pdu.writeRegister(50, 1), deniedWith: EXCEPTION.ILLEGAL_DATA_ADDRESS }),
  // Another unit behind the same gateway: unit_not_allowed.
  () => ({ unit: OTHER_UNIT, pdu: pdu.read(FC.READ_HOLDING_REGISTERS, 0, 10), deniedWith: EXCEPTION.GATEWAY_PATH_UNAVAILABLE }),
  // Force Listen Only Mode: function_not_allowed.
  () => ({ unit: BENCH_UNIT, pdu: pdu.diagnostics(4, 0), deniedWith: EXCEPTION.ILLEGAL_FUNCTION }),
  // Device identification (recon): function_not_allowed.
  () => ({ unit: BENCH_UNIT, pdu: pdu.readDeviceIdentification(), deniedWith: EXCEPTION.ILLEGAL_FUNCTION }),
  // Coils 8..15, where only 0..7 are writable: address_not_allowed.
  () => ({ unit: BENCH_UNIT, pdu: pdu.writeCoils(8, [true, false, true, false, true, false, true, false]), deniedWith: EXCEPTION.ILLEGAL_DATA_ADDRESS }),
  // Registers 18..21 straddle the end of the writable 10..19: address_not_allowed.
  () => ({ unit: BENCH_UNIT, pdu: pdu.writeRegisters(18, [1, 2, 3, 4]), deniedWith: EXCEPTION.ILLEGAL_DATA_ADDRESS }),
];
const DENY_BLOCK = ALLOWED_KINDS.length + 1;

/** The requests of a mix, indexed by slot (= transaction id). */
export function buildMix(name: MixName): RequestSpec[] {
  const specs: RequestSpec[] = [];
  for (let slot = 0; slot < SLOT_COUNT; slot++) {
    if (name === 'read') {
      specs.push(hmiPoll(slot));
      continue;
    }
    const pos = slot % DENY_BLOCK;
    specs.push(
      pos < ALLOWED_KINDS.length
        ? ALLOWED_KINDS[pos]!(slot)
        : DENIED_KINDS[Math.floor(slot / DENY_BLOCK) % DENIED_KINDS.length]!(),
    );
  }
  return specs;
}

/** The ways from the load generator to the PLC. */
/**
 * `plcguard-shared`: plcguard with `upstream_connections: 1` in front of a PLC of its own that
 * accepts one connection (issue 12); every other path reaches the PLC that takes them all.
 */
export type PathName = 'direct' | 'relay' | 'plcguard' | 'plcguard-1000' | 'plcguard-shared' | 'plcguard-learn' | 'haproxy';
export const PATH_LABELS: Record<PathName, string> = {
  direct: 'direct',
  relay: 'pipe relay',
  plcguard: 'plcguard',
  'plcguard-1000': 'plcguard 1k rules',
  'plcguard-shared': 'plcguard, 1 shared PLC conn',
  'plcguard-learn': 'plcguard learn mode',
  // A C relay for scale (mode tcp, one thread); measured only when `haproxy` is on PATH.
  haproxy: 'haproxy',
};

export interface Scenario {
  id: string;
  title: string;
  connections: number;
  outstanding: number;
  mix: MixName;
  /** Run in this order in every round (interleaved), so drift hits every path alike. */
  paths: PathName[];
  /** Scrape plcguard's /metrics every second while the load runs. */
  scrapeMetrics: boolean;
  /**
   * Split the time into this many times more, shorter rounds. Single-request latency on a VM
   * swings with whether the other vCPU happens to be asleep; finer interleaving gives every
   * path the same mix of those states, so the per-round deltas converge.
   */
  roundsFactor?: number;
  /**
   * HMI rate: each connection polls once per intervalMs, open loop (`outstanding` is unused), and
   * the rounds' latencies are pooled so that every path has at least `samplesPerPath` of them for
   * its percentiles; the round length follows from those (see run.ts).
   */
  paced?: { intervalMs: number; samplesPerPath: number };
}

const THREE: PathName[] = ['direct', 'relay', 'plcguard'];
const HMI_PATHS: PathName[] = ['direct', 'relay', 'plcguard', 'haproxy'];

export const SCENARIOS: readonly Scenario[] = [
  { id: 'latency-1x1', title: '1 conn × 1 outstanding (an HMI): latency', connections: 1, outstanding: 1, mix: 'read', paths: THREE, scrapeMetrics: false, roundsFactor: 3 },
  { id: 'conns-4x1', title: '4 conns × 1 outstanding', connections: 4, outstanding: 1, mix: 'read', paths: THREE, scrapeMetrics: false, roundsFactor: 3 },
  { id: 'throughput-16x8', title: '16 conns × 8 outstanding: throughput', connections: 16, outstanding: 8, mix: 'read', paths: THREE, scrapeMetrics: false },
  {
    id: 'rules-1000-16x8',
    title: '16 × 8 with the 1,000-rule policy (plcguard with 10 rules alongside)',
    connections: 16,
    outstanding: 8,
    mix: 'read',
    paths: ['direct', 'relay', 'plcguard', 'plcguard-1000'],
    scrapeMetrics: false,
  },
  { id: 'deny-10pct-16x8', title: '16 × 8, mixed functions, 10% denied', connections: 16, outstanding: 8, mix: 'mixed-deny', paths: THREE, scrapeMetrics: false },
  // Learn mode (issue 11, item 5): every request copied and recorded with its answer.
  { id: 'learn-16x8', title: '16 × 8 with the device in learn mode', connections: 16, outstanding: 8, mix: 'read', paths: ['direct', 'relay', 'plcguard-learn'], scrapeMetrics: false },
  { id: 'metrics-16x8', title: '16 × 8 with /metrics scraped every second', connections: 16, outstanding: 8, mix: 'read', paths: THREE, scrapeMetrics: true },
  {
    // The 16 clients' 128 requests in flight queue for the one PLC connection, one request on it
    // at a time: the PLC's one-at-a-time round trip should be the limit, not plcguard.
    id: 'sharing-16x8',
    title: '16 × 8 through one shared PLC connection, one request at a time (today\'s paths alongside)',
    connections: 16,
    outstanding: 8,
    mix: 'read',
    paths: ['direct', 'relay', 'plcguard', 'plcguard-shared'],
    scrapeMetrics: false,
  },
  // Where plants live: the proxy sleeps between polls, so every request is a wake-up.
  {
    id: 'hmi-1x50hz',
    title: '1 HMI polling FC3 every 20 ms (50 req/s, open loop): wake-up latency',
    connections: 1,
    outstanding: 1,
    mix: 'read',
    paths: HMI_PATHS,
    scrapeMetrics: false,
    paced: { intervalMs: 20, samplesPerPath: 1500 },
  },
  {
    id: 'hmi-10x50hz',
    title: '10 HMIs each polling FC3 every 20 ms (500 req/s, open loop)',
    connections: 10,
    outstanding: 1,
    mix: 'read',
    paths: HMI_PATHS,
    scrapeMetrics: false,
    paced: { intervalMs: 20, samplesPerPath: 4000 },
  },
];
