import { MAX_ADU_LENGTH, MBAP_AND_FC_LENGTH, MBAP_PREFIX_LENGTH } from './constants.js';
import { FramingError, aduLength, checkMbapPrefix } from './mbap.js';

/**
 * Copies src[from, to) into dst at `at`. Below SMALL_COPY bytes by hand: Buffer#copy costs a native
 * call and a temporary view (~90 ns on Node 20 whatever the size), which made a stream in 5-byte
 * segments 4× slower per frame (bench/parse.ts, fc3/5B).
 */
const SMALL_COPY = 40;
function copyBytes(src: Buffer, from: number, to: number, dst: Buffer, at: number): void {
  if (to - from < SMALL_COPY) {
    for (let i = from; i < to; i++) dst[at++] = src[i]!;
  } else {
    src.copy(dst, at, from, to);
  }
}

/**
 * Receives what a FrameSplitter cuts out of a byte stream.
 *
 * `frame` gets each whole ADU as buf[start, end). A frame that arrived whole inside one chunk is a
 * view of that chunk (no copy); one that spanned chunks is assembled in the splitter's own buffer,
 * which is reused: copy it if it must outlive the call. Returning false pauses the splitter after
 * this frame: the rest of the input is held (not copied) until `resume()`.
 *
 * `head` and `part` are for streams that forward frames as they arrive (responses): when a frame
 * spans chunks, `head(buf, have, aduLength)` is called once as soon as its MBAP header and function
 * code are known, with the `have` bytes received so far in buf[0, have); every later piece of that
 * frame is passed to `part` as a view of its chunk; then `frame` is called with the whole frame.
 */
export interface FrameHandler {
  frame(buf: Buffer, start: number, end: number): boolean;
  head?(buf: Buffer, have: number, aduLength: number): void;
  part?(buf: Buffer, start: number, end: number): void;
}

/**
 * Cuts a Modbus/TCP byte stream into ADUs by the MBAP length: a small explicit state machine.
 * Holds at most one partial frame (≤ 260 bytes) plus, while paused, the unread rest of the input.
 * A framing error (protocol id ≠ 0, length outside 2..254) is final: the stream can't be
 * resynchronised. Pure: no I/O, no timers; never throws on any input.
 */
export class FrameSplitter {
  private readonly scratch = Buffer.allocUnsafe(MAX_ADU_LENGTH);
  /** Bytes of the current partial frame in scratch. */
  private have = 0;
  /** Its total ADU length, once its MBAP prefix is known; 0 before. */
  private need = 0;
  private headSent = false;
  private held: Buffer[] = [];
  private heldOffset = 0;
  private isPaused = false;
  private failure: FramingError | null = null;

  constructor(private readonly handler: FrameHandler) {}

  /** The framing error that ended this stream, if any. */
  get error(): FramingError | null {
    return this.failure;
  }

  /** Bytes of a frame received but not yet complete (for the partial-frame deadline). */
  get partialBytes(): number {
    return this.have;
  }

  /** Bytes received and not yet processed because the handler paused the splitter. */
  get heldBytes(): number {
    let n = -this.heldOffset;
    for (const b of this.held) n += b.length;
    return n;
  }

  /** True when buf is the splitter's own reused buffer (copy a frame in it to keep it). */
  owns(buf: Buffer): boolean {
    return buf === this.scratch;
  }

  get paused(): boolean {
    return this.isPaused;
  }

  /**
   * Feeds one chunk. The chunk must not be modified afterwards (frames may be views of it).
   * Returns the framing error, if the stream is (or already was) broken.
   */
  push(chunk: Buffer): FramingError | null {
    if (this.failure) return this.failure;
    if (this.isPaused || this.held.length > 0) {
      this.held.push(chunk);
      return null;
    }
    this.consume(chunk, 0);
    return this.failure;
  }

  /** Continues after the handler returned false. */
  resume(): FramingError | null {
    this.isPaused = false;
    while (!this.isPaused && !this.failure && this.held.length > 0) {
      const chunk = this.held.shift()!;
      const off = this.heldOffset;
      this.heldOffset = 0;
      this.consume(chunk, off);
    }
    return this.failure;
  }

  /** Forgets everything (after a close), keeping a framing error if there was one. */
  reset(): void {
    this.have = 0;
    this.need = 0;
    this.headSent = false;
    this.held = [];
    this.heldOffset = 0;
    this.isPaused = false;
  }

  private consume(chunk: Buffer, from: number): void {
    const n = chunk.length;
    let i = from;
    if (this.have > 0) {
      i = this.continuePartial(chunk, i);
      if (i < 0) return;
    }
    // Fast path: whole frames inside this chunk are handed out as views.
    while (n - i >= MBAP_PREFIX_LENGTH) {
      const err = checkMbapPrefix(chunk, i);
      if (err) {
        this.fail(err);
        return;
      }
      const len = aduLength(chunk, i);
      if (n - i < len) break;
      const go = this.handler.frame(chunk, i, i + len);
      i += len;
      if (!go) {
        this.pauseAt(chunk, i);
        return;
      }
    }
    if (i < n) this.startPartial(chunk, i);
  }

  /** Returns where the chunk continues after the partial frame, or -1 when it was all used. */
  private continuePartial(chunk: Buffer, i: number): number {
    const n = chunk.length;
    if (this.need === 0) {
      const take = Math.min(MBAP_PREFIX_LENGTH - this.have, n - i);
      copyBytes(chunk, i, i + take, this.scratch, this.have);
      this.have += take;
      i += take;
      if (this.have < MBAP_PREFIX_LENGTH) return -1;
      const err = checkMbapPrefix(this.scratch, 0);
      if (err) {
        this.fail(err);
        return -1;
      }
      this.need = aduLength(this.scratch, 0);
    }
    const start = i;
    const take = Math.min(this.need - this.have, n - i);
    copyBytes(chunk, i, i + take, this.scratch, this.have);
    this.have += take;
    i += take;
    if (this.handler.head) {
      if (this.headSent) {
        if (take > 0) this.handler.part?.(chunk, start, i);
      } else if (this.have >= MBAP_AND_FC_LENGTH) {
        this.headSent = true;
        this.handler.head(this.scratch, this.have, this.need);
      }
    }
    if (this.have < this.need) return -1;
    const len = this.need;
    this.have = 0;
    this.need = 0;
    this.headSent = false;
    if (!this.handler.frame(this.scratch, 0, len)) {
      this.pauseAt(chunk, i);
      return -1;
    }
    return i;
  }

  private startPartial(chunk: Buffer, i: number): void {
    const have = chunk.length - i;
    copyBytes(chunk, i, chunk.length, this.scratch, 0);
    this.have = have;
    if (have >= MBAP_PREFIX_LENGTH) {
      // The prefix was checked by the fast path.
      this.need = aduLength(this.scratch, 0);
      if (this.handler.head && have >= MBAP_AND_FC_LENGTH) {
        this.headSent = true;
        this.handler.head(this.scratch, have, this.need);
      }
    }
  }

  private pauseAt(chunk: Buffer, i: number): void {
    this.isPaused = true;
    if (i < chunk.length) {
      this.held.unshift(chunk);
      this.heldOffset = i;
    }
  }

  private fail(err: FramingError): void {
    this.failure = err;
    this.reset();
  }
}
