/** The part of a net.Socket a BatchWriter writes to (tests pass a fake). */
export interface WritableSocket {
  readonly writableLength: number;
  readonly destroyed: boolean;
  write(data: Uint8Array, callback?: (err?: Error | null) => void): boolean;
  cork(): void;
  uncork(): void;
  on(event: 'drain', listener: () => void): unknown;
}

/**
 * Batched, bounded writing to one socket, in both directions (requests to the PLC, responses and
 * plcguard's own replies to the client): steps 5 and 6 of the hot path and its last rule.
 *
 * Batched: frames that lie back to back in one buffer (a chunk of pipelined requests, or of
 * responses) are queued as one run and leave in one write() at `flush()`; one write() per frame
 * costs 3× in throughput. Whatever has to be written before that to keep the order (the run broken
 * by a denied frame, a frame assembled in a reused buffer, a reply of plcguard's own) is written at
 * once but corked, so that one chunk's output still leaves in one system call when `flush()`
 * uncorks. Whoever queues must call `flush()` before the end of the tick.
 *
 * Bounded: past `bound()` bytes queued in the socket, or once write() returns false, `flush()`
 * returns false (stop reading the other side) until the socket has taken them: then `onDrained`.
 */
export class BatchWriter {
  /** The run: bytes run[runStart, runEnd) waiting for `flush()`. */
  private run: Buffer | null = null;
  private runStart = 0;
  private runEnd = 0;
  private corked = false;
  /** The socket holds more than it should: `onDrained` is owed. */
  private full = false;
  /** After a write that went over the bound: 'drain' only follows a write() that returned false. */
  private readonly afterWrite = (): void => {
    const s = this.socket;
    if (this.full && !s.destroyed && s.writableLength <= this.bound()) this.drained();
  };

  constructor(
    private readonly socket: WritableSocket,
    /** max_buffered_bytes in force (a reload may change it). */
    private readonly bound: () => number,
    private readonly onDrained: () => void,
  ) {
    socket.on('drain', () => {
      if (this.full) this.drained();
    });
  }

  /** Queues buf[start, end) after what is queued; `copy` when buf will be reused (the splitter's). */
  queue(buf: Buffer, start: number, end: number, copy: boolean): void {
    if (copy) {
      this.write(Buffer.from(buf.subarray(start, end)));
    } else if (this.run === buf && this.runEnd === start) {
      this.runEnd = end;
    } else {
      this.writeRun();
      this.run = buf;
      this.runStart = start;
      this.runEnd = end;
    }
  }

  /** Writes `b` after what is queued (corked: it leaves with the rest at `flush()`). */
  write(b: Buffer): void {
    this.writeRun();
    this.cork();
    this.send(b);
  }

  /** Writes what is queued. False while the socket holds more than the bound allows. */
  flush(): boolean {
    const run = this.run;
    if (run !== null) {
      this.run = null;
      this.send(run.subarray(this.runStart, this.runEnd));
    }
    if (this.corked) {
      this.corked = false;
      this.socket.uncork();
    }
    return !this.full;
  }

  private writeRun(): void {
    const run = this.run;
    if (run === null) return;
    this.run = null;
    this.cork();
    this.send(run.subarray(this.runStart, this.runEnd));
  }

  private cork(): void {
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
    }
  }

  private send(b: Buffer): void {
    const s = this.socket;
    if (s.writableLength + b.length > this.bound()) {
      this.full = true;
      s.write(b, this.afterWrite);
    } else if (!s.write(b)) {
      this.full = true;
    }
  }

  private drained(): void {
    this.full = false;
    this.onDrained();
  }
}
