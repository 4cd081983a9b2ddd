// Capture files → Modbus frames, for `policy learn` and `policy check --pcap`: the I/O around the
// pure readers of modbus/capture (file → CaptureReader → decodePacket → StreamTable → a sink), a
// progress line for long inputs, and the summary both commands print.

import fs from 'node:fs';
import { performance } from 'node:perf_hooks';
import { PlcguardError, UsageError } from '../modbus/errors.js';
import {
  CaptureReader,
  decodePacket,
  MODBUS_TCP_PORT,
  PACKET_SKIPS,
  StreamTable,
  TcpSegment,
  type CaptureError,
  type CaptureFormat,
  type ModbusStreamSink,
  type PacketSkip,
  type StreamCounts,
} from '../modbus/capture/index.js';
import type { CommandIo } from './command.js';

/** Bytes read from a file at a time: few system calls, and a frame rarely spans two reads. */
const READ_CHUNK_BYTES = 1 << 20;
/** Inputs at least this large get a progress line (on a terminal). */
export const PROGRESS_MIN_BYTES = 64 * 1024 * 1024;
/** The progress line is rewritten at most this often. */
const PROGRESS_INTERVAL_MS = 250;
const MAX_PORT = 65535;
const MB = 1e6;

/** A capture that can't be read: exit 1 with this message. */
export class CaptureFileError extends PlcguardError {
  override readonly name = 'CaptureFileError';
}

/** What the capture commands write to: the policy commands' io and, on a terminal, a progress line. */
export interface CaptureIO extends CommandIo {
  readonly progress?: ProgressSink;
  /** Input size from which the progress line shows (tests lower it). */
  readonly progressMinBytes?: number;
  /** Milliseconds, monotonic, for the progress line and the summary's rate (tests fix it). */
  readonly now?: () => number;
}

/** Where a progress line goes: rewritten in place on a terminal, cleared at the end. */
export interface ProgressSink {
  update(line: string): void;
  done(): void;
}

/* c8 ignore start -- writes to the terminal itself; tests pass their own sink */
export function terminalProgress(): ProgressSink | undefined {
  if (!process.stderr.isTTY) return undefined;
  return {
    update: (line) => process.stderr.write(`\r${line}\x1b[K`),
    done: () => process.stderr.write('\r\x1b[K'),
  };
}
/* c8 ignore stop */

export interface ReadCapturesOptions {
  /** Ports Modbus servers listen on (502 and the --port ones). */
  readonly serverPorts: ReadonlySet<number>;
  readonly sink: ModbusStreamSink;
  readonly progress?: ProgressSink;
  /** Total input size from which the progress line shows (default PROGRESS_MIN_BYTES). */
  readonly progressMinBytes?: number;
  /** Milliseconds, monotonic (default performance.now). */
  readonly now?: () => number;
}

export interface CaptureFileSummary {
  readonly file: string;
  readonly format: CaptureFormat;
  readonly bytes: number;
  readonly packets: number;
  /** Bytes of a last record the file ends inside (cut short while being written). */
  readonly cutShort: number;
}

export interface CaptureRun {
  readonly files: readonly CaptureFileSummary[];
  readonly bytes: number;
  readonly packets: number;
  readonly skips: Readonly<Record<PacketSkip, number>>;
  readonly streams: StreamCounts;
  readonly seconds: number;
}

/** `--port 5020,5021`: ports added to 502. Throws UsageError. */
export function serverPorts(value: string | undefined, extra: Iterable<number> = []): Set<number> {
  const ports = new Set<number>([MODBUS_TCP_PORT, ...extra]);
  if (value === undefined) return ports;
  for (const p of value.split(',')) {
    const n = /^\d{1,5}$/.test(p.trim()) ? Number(p.trim()) : 0;
    if (n < 1 || n > MAX_PORT) throw new UsageError('ERR_USAGE', `--port: ${JSON.stringify(p)} is not a port 1..${MAX_PORT}`);
    ports.add(n);
  }
  return ports;
}

function size(file: string): number {
  try {
    return fs.statSync(file).size;
  } catch (err) {
    throw new CaptureFileError('ERR_CAPTURE_READ', `${file}: cannot read: ${describe(err)}`);
  }
}

/** A reader's error about a file; corruption says where, so the file can be cut there. */
function fileError(file: string, err: CaptureError): CaptureFileError {
  return new CaptureFileError(err.code, `${file}: ${err.message}${err.code === 'ERR_CAPTURE_CORRUPT' ? ` (at byte ${err.offset})` : ''}`);
}

/** An fs error: `ENOENT (ENOENT: no such file or directory, ...)`. */
function describe(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return `${e.code} (${e.message})`;
}

/** Reads every file in order (one capture may span several, as tcpdump -C writes them) into the sink. */
export async function readCaptures(files: readonly string[], options: ReadCapturesOptions): Promise<CaptureRun> {
  const now = options.now ?? (() => performance.now());
  const started = now();
  const sizes = files.map(size);
  const total = sizes.reduce((a, b) => a + b, 0);
  const progress = options.progress !== undefined && total >= (options.progressMinBytes ?? PROGRESS_MIN_BYTES) ? options.progress : undefined;
  const skips = Object.fromEntries(PACKET_SKIPS.map((s) => [s, 0])) as Record<PacketSkip, number>;
  const table = new StreamTable({ serverPorts: options.serverPorts }, options.sink);
  const seg = new TcpSegment();
  const summaries: CaptureFileSummary[] = [];
  let done = 0;
  let packets = 0;
  let shown = -Infinity;
  for (const file of files) {
    const reader = new CaptureReader({
      packet(p) {
        const skip = decodePacket(p.buf, p.start, p.end, p.wireLength, p.linkType, p.timeMs, seg);
        if (skip === null) table.segment(seg);
        else skips[skip]++;
      },
    });
    let stream: fs.ReadStream;
    try {
      stream = fs.createReadStream(file, { highWaterMark: READ_CHUNK_BYTES });
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        const err = reader.push(chunk);
        if (err !== null) throw fileError(file, err);
        done += chunk.length;
        const t = now();
        if (progress !== undefined && t - shown >= PROGRESS_INTERVAL_MS) {
          shown = t;
          const rate = done / MB / Math.max((t - started) / 1000, 1e-3);
          progress.update(`reading ${file}: ${Math.floor((100 * done) / total)}% (${(done / MB).toFixed(0)} of ${(total / MB).toFixed(0)} MB, ${rate.toFixed(0)} MB/s)`);
        }
      }
    } catch (err) {
      progress?.done();
      if (err instanceof CaptureFileError) throw err;
      /* c8 ignore next -- only fs errors carry a code; anything else is a bug, thrown as it is */
      if ((err as NodeJS.ErrnoException).code === undefined) throw err;
      throw new CaptureFileError('ERR_CAPTURE_READ', `${file}: cannot read: ${describe(err)}`);
    }
    const cutShort = reader.end();
    if (reader.error !== null) {
      progress?.done();
      throw fileError(file, reader.error);
    }
    packets += reader.packets;
    summaries.push({ file, format: reader.format!, bytes: sizes[summaries.length]!, packets: reader.packets, cutShort });
  }
  table.end();
  progress?.done();
  return { files: summaries, bytes: total, packets, skips, streams: table.counts, seconds: (now() - started) / 1000 };
}

const SKIP_TEXT: Record<PacketSkip, string> = {
  link_type: 'of a link type this reader does not know',
  not_ip: 'not IP (ARP, LLDP, ...)',
  not_tcp: 'not TCP (UDP, ICMP, ...)',
  ip_fragment: 'IP fragments (not reassembled)',
  truncated: 'cut by the capture\'s snaplen',
  bad_header: 'with an impossible IP or TCP header',
};

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function bytes(n: number): string {
  return n < MB ? `${(n / 1e3).toFixed(1)} kB` : `${(n / MB).toFixed(1)} MB`;
}

/** The lines both commands print about what was read and what was left out. */
export function captureSummary(run: CaptureRun): string[] {
  const s = run.streams;
  const rate = run.seconds > 0 ? `, ${(run.bytes / MB / run.seconds).toFixed(0)} MB/s` : '';
  const lines = [
    `read ${plural(run.files.length, 'file')}, ${bytes(run.bytes)}, ${plural(run.packets, 'packet')} in ${run.seconds.toFixed(1)} s${rate}`,
    `streams: ${s.streams} Modbus/TCP${s.midStream > 0 ? ` (${s.midStream} started before the capture)` : ''}; ${plural(s.requests, 'request')}, ${plural(s.responses, 'response')}`,
  ];
  const skipped: string[] = [];
  for (const k of PACKET_SKIPS) if (run.skips[k] > 0) skipped.push(`${plural(run.skips[k], 'packet')} ${SKIP_TEXT[k]}`);
  if (s.otherPorts > 0) skipped.push(`${plural(s.otherPorts, 'TCP packet')} between other ports (a Modbus server on another port? --port)`);
  if (s.skippedBytes > 0) skipped.push(`${s.skippedBytes} bytes while finding frame boundaries (${plural(s.resyncs, 'resynchronisation')})`);
  if (s.holes > 0) skipped.push(`${plural(s.holes, 'hole')} of ${s.holeBytes} bytes the capture never had`);
  if (s.framingErrors > 0) skipped.push(`${plural(s.framingErrors, 'framing error')} (protocol id not 0 or a bad length; the proxy would close those connections)`);
  if (s.evicted > 0) skipped.push(`${plural(s.evicted, 'stream')} finished early: too many open at once`);
  for (const f of run.files) if (f.cutShort > 0) skipped.push(`${f.file} ends inside a record (${f.cutShort} bytes; cut short while being written?)`);
  lines.push(skipped.length === 0 ? 'skipped: nothing' : `skipped: ${skipped.join('; ')}`);
  if (s.retransmittedBytes > 0 || s.outOfOrderSegments > 0) {
    lines.push(`reassembled: ${plural(s.outOfOrderSegments, 'segment')} out of order, ${s.retransmittedBytes} bytes retransmitted`);
  }
  return lines;
}
