// Messages between the orchestrator (bench/run.ts) and the processes it forks. Every process is
// separate so that its CPU time (from /proc) is its own; IPC carries only control and results,
// never per-request traffic.
import type { ChildProcess } from 'node:child_process';
import type { MixName } from './scenarios.js';
import { WAIT_MS, within } from './lib/wait.js';

export type PlcMessage =
  | { type: 'listening'; port: number }
  /** A plant's PLCs (plc.js --listeners N): one process, N endpoints. */
  | { type: 'listening-many'; ports: number[] }
  /** `peakPerEndpoint`: the most connections one endpoint had open at once since the last stats. */
  | { type: 'stats'; requests: number; connections: number; peakPerEndpoint: number };

export type RelayMessage =
  | { type: 'listening'; port: number }
  /** The plant's relay (relay.js --map): one listener per PLC port, in the order given. */
  | { type: 'listening-many'; ports: number[] };

export interface LoadRunConfig {
  port: number;
  connections: number;
  /** Requests kept in flight per connection (pipelined). */
  outstanding: number;
  /** Traffic before the measured window: verified, not counted. */
  warmupMs: number;
  /** The measured window. */
  durationMs: number;
  mix: MixName;
  /** True when plcguard is in the path: denied requests must get its exception reply. */
  enforced: boolean;
  /**
   * Open loop: each connection sends one request every intervalMs whatever is outstanding (an
   * HMI polling), instead of keeping `outstanding` in flight. Absent: closed loop.
   */
  intervalMs?: number;
  /** Return every latency recorded (paced runs are small), so rounds can be pooled. */
  keepSamples?: boolean;
  /**
   * Keep the connections open after the run and carry the next run to the same port with as many
   * connections on them (an HMI's connection lasts weeks; a new one per round would measure
   * connection setup). Connections kept for another count are closed.
   */
  keepOpen?: boolean;
}

export interface IdleConfig {
  /** Connection i goes to ports[i % ports.length] (a plant: clients spread over its devices). */
  ports: number[];
  connections: number;
  mix: MixName;
  enforced: boolean;
}

/** Polls on the connections opened by 'idle-open', open loop, as LoadRunConfig.intervalMs says. */
export interface PacedConfig {
  intervalMs: number;
  warmupMs: number;
  durationMs: number;
}

export type LoadCommand =
  | { type: 'run'; config: LoadRunConfig }
  | { type: 'idle-open'; config: IdleConfig }
  | { type: 'paced'; config: PacedConfig }
  | { type: 'idle-close' };

/** Why a response (or its absence) failed verification. */
export const ERROR_KINDS = [
  'unknown_tid', // a transaction id that isn't outstanding on this connection
  'header', // protocol id, length or unit differ
  'function_code',
  'byte_count',
  'data',
  'length', // the frame is longer or shorter than expected (beyond the fields above)
  'lost', // outstanding at the end of the drain, or its slot was needed again
  'connection', // connect failed or the connection closed while requests were outstanding
  'framing', // the response stream isn't Modbus/TCP
] as const;
export type ErrorKind = (typeof ERROR_KINDS)[number];
export type ErrorCounts = Record<ErrorKind, number>;

export interface LatencySummary {
  /** Latencies recorded in the window (each request answered in the window). */
  samples: number;
  p50Us: number;
  p90Us: number;
  p99Us: number;
  p999Us: number;
  maxUs: number;
  meanUs: number;
}

export interface LoadResult {
  /** Responses received in the measured window. */
  requests: number;
  windowSeconds: number;
  requestsPerSecond: number;
  latency: LatencySummary;
  /** Whole run, warm-up and drain included. */
  sent: number;
  /** Responses that matched the expected bytes exactly. */
  verified: number;
  /** Of those, exception replies that a denial had to produce. */
  deniedVerified: number;
  errors: number;
  errorKinds: ErrorCounts;
  /** The first few failures, described (expected vs got). */
  errorSamples: string[];
  /** Latencies not recorded because the preallocated array was full (reported, not hidden). */
  samplesDropped: number;
  /** Every latency recorded (µs), when the run was asked to keep them. */
  samplesUs?: number[];
}

export type LoadMessage =
  | { type: 'ready' }
  | { type: 'window-start' }
  | { type: 'window-end' }
  | { type: 'result'; result: LoadResult }
  | { type: 'idle-opened'; opened: number; verified: number; errors: number; errorSamples: string[] }
  | { type: 'idle-closed' }
  | { type: 'failed'; message: string };

export function emptyErrorCounts(): ErrorCounts {
  return Object.fromEntries(ERROR_KINDS.map((k) => [k, 0])) as ErrorCounts;
}

/** Sends to the parent when there is an IPC channel; false when run standalone. */
export function sendToParent(msg: PlcMessage | RelayMessage | LoadMessage): boolean {
  if (process.send === undefined || !process.connected) return false;
  process.send(msg);
  return true;
}

export function hasType(m: unknown): m is { type: string } {
  return typeof m === 'object' && m !== null && typeof (m as { type?: unknown }).type === 'string';
}

/** The next IPC message of `type` from a child; rejects if it exits or reports failure first. */
export function nextMessage<T extends { type: string }>(child: ChildProcess, type: T['type'], what: string, ms = WAIT_MS): Promise<T> {
  return within(
    new Promise<T>((resolve, reject) => {
      const onMessage = (m: unknown): void => {
        if (!hasType(m)) return;
        if (m.type === type) {
          cleanup();
          resolve(m as T);
        } else if (m.type === 'failed') {
          cleanup();
          reject(new Error(`${what}: ${(m as { message?: string }).message ?? 'failed'}`));
        }
      };
      const onExit = (code: number | null, signal: string | null): void => {
        cleanup();
        reject(new Error(`${what}: process exited (${signal ?? code})`));
      };
      const cleanup = (): void => {
        child.off('message', onMessage);
        child.off('exit', onExit);
      };
      child.on('message', onMessage);
      child.on('exit', onExit);
    }),
    what,
    ms,
  );
}
