import t from 'tap';
import {
  FrameSplitter,
  type FrameHandler,
  type FramingError,
  MAX_ADU_LENGTH,
  ModbusRequest,
  decodeRequest,
} from '../modbus/index.js';
import { FRAMING_ERRORS, REQUESTS, RESPONSES, SMUGGLED_FC16, SMUGGLER, request } from './fixtures/frames.js';
import { Random } from './fixtures/random.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/** Every way to cut `bytes` in two (including the empty chunk at either end), and one byte at a time. */
function chunkings(bytes: Buffer): { name: string; chunks: Buffer[] }[] {
  const out: { name: string; chunks: Buffer[] }[] = [];
  for (let k = 0; k <= bytes.length; k++) {
    out.push({ name: `split at ${k}`, chunks: [bytes.subarray(0, k), bytes.subarray(k)] });
  }
  const ones: Buffer[] = [];
  for (let i = 0; i < bytes.length; i++) ones.push(bytes.subarray(i, i + 1));
  out.push({ name: 'one byte at a time', chunks: ones });
  return out;
}

interface Result {
  frames: string[];
  error: FramingError | null;
  partial: number;
  maxPartial: number;
}

/** Feeds chunks to a fresh splitter; frames are copied out as hex (the scratch buffer is reused). */
function split(chunks: readonly Buffer[]): Result {
  const frames: string[] = [];
  const s = new FrameSplitter({
    frame(buf, start, end) {
      frames.push(hex(buf.subarray(start, end)));
      return true;
    },
  });
  let maxPartial = 0;
  for (const c of chunks) {
    s.push(c);
    maxPartial = Math.max(maxPartial, s.partialBytes);
  }
  return { frames, error: s.error, partial: s.partialBytes, maxPartial };
}

/** Runs every chunking; returns one summary line per chunking that differs from `want`. */
function mismatches(bytes: Buffer, want: string[]): string[] {
  const bad: string[] = [];
  for (const { name, chunks } of chunkings(bytes)) {
    const r = split(chunks);
    if (r.error || r.partial !== 0 || r.maxPartial > MAX_ADU_LENGTH || r.frames.join('|') !== want.join('|')) {
      bad.push(`${name}: ${r.frames.length} frames, error ${r.error?.code ?? 'none'}, partial ${r.partial}`);
    }
  }
  return bad;
}

const ALL = [...REQUESTS.map((f) => f.bytes), ...RESPONSES.map((f) => f.bytes)];

void t.test('every fixture through every split emits exactly itself', (t) => {
  for (const f of [...REQUESTS, ...RESPONSES]) {
    t.strictSame(mismatches(f.bytes, [hex(f.bytes)]), [], f.name);
  }
  t.end();
});

void t.test('every fixture coalesced with its neighbours, through every split', (t) => {
  for (let i = 0; i < ALL.length; i++) {
    const three = [ALL[(i + ALL.length - 1) % ALL.length]!, ALL[i]!, ALL[(i + 1) % ALL.length]!];
    t.strictSame(mismatches(Buffer.concat(three), three.map(hex)), [], `fixture ${i} and neighbours`);
  }
  t.end();
});

void t.test('all fixtures in one stream', (t) => {
  const stream = Buffer.concat(ALL);
  const want = ALL.map(hex);
  t.equal(ALL.length, REQUESTS.length + RESPONSES.length);
  t.strictSame(mismatches(stream, want), [], `${stream.length} bytes, every 2-way split and byte by byte`);

  // Random chunkings, as a socket would cut them, from one seed.
  const rnd = new Random(0xc0ffee);
  const bad: string[] = [];
  for (let run = 0; run < 300; run++) {
    const chunks: Buffer[] = [];
    for (let i = 0; i < stream.length; ) {
      const n = rnd.pick([1, 2, 3, 7, 8, 9, 64, 260, 261, 1000, 65536]);
      const m = rnd.range(0, n);
      chunks.push(stream.subarray(i, i + m));
      i += m;
    }
    const r = split(chunks);
    if (r.error || r.partial !== 0 || r.maxPartial > MAX_ADU_LENGTH || r.frames.join() !== want.join()) bad.push(`run ${run}`);
  }
  t.strictSame(bad, [], '300 random chunkings');
  t.end();
});

void t.test('frames are views of the chunk when whole in it, else in the splitter buffer', (t) => {
  const a = request('FC3 read 3 registers at 107 (spec)').bytes;
  const b = request('FC16 write 2 registers at 1 (spec)').bytes;
  const chunk1 = Buffer.concat([a, b.subarray(0, 5)]);
  const chunk2 = b.subarray(5);
  const seen: { buf: Buffer; start: number; end: number; owned: boolean }[] = [];
  const s: FrameSplitter = new FrameSplitter({
    frame(buf, start, end) {
      seen.push({ buf, start, end, owned: s.owns(buf) });
      return true;
    },
  });
  s.push(chunk1);
  t.equal(seen.length, 1);
  t.equal(seen[0]!.buf, chunk1, 'the first frame is a view of the chunk: no copy');
  t.equal(seen[0]!.start, 0);
  t.equal(seen[0]!.end, a.length);
  t.equal(seen[0]!.owned, false);
  t.equal(s.partialBytes, 5);
  s.push(chunk2);
  t.equal(seen.length, 2);
  t.not(seen[1]!.buf, chunk2, 'a frame that spanned chunks is assembled');
  t.equal(seen[1]!.owned, true);
  t.equal(seen[1]!.start, 0);
  t.equal(hex(seen[1]!.buf.subarray(seen[1]!.start, seen[1]!.end)), hex(b));
  t.equal(s.owns(chunk1), false);
  t.end();
});

void t.test('partialBytes counts the incomplete frame, never more than 260', (t) => {
  const big = request('FC127 reserved, largest PDU').bytes;
  t.equal(big.length, 260);
  const s = new FrameSplitter({ frame: () => true });
  const seen: number[] = [];
  for (let i = 0; i < big.length; i++) {
    s.push(big.subarray(i, i + 1));
    seen.push(s.partialBytes);
  }
  t.strictSame(seen, [...Array.from({ length: 259 }, (_, i) => i + 1), 0]);

  // A byte-by-byte flood of maximal frames never holds more than one frame.
  const flood = Buffer.concat(Array.from({ length: 20 }, () => big));
  let max = 0;
  let frames = 0;
  const f = new FrameSplitter({
    frame() {
      frames++;
      return true;
    },
  });
  for (let i = 0; i < flood.length; i += 3) {
    f.push(flood.subarray(i, i + 3));
    max = Math.max(max, f.partialBytes);
  }
  t.equal(frames, 20);
  t.equal(max, 259);
  t.equal(f.partialBytes, 0);
  t.end();
});

void t.test('an empty chunk changes nothing', (t) => {
  const a = request('FC6 register 1 = 3 (spec)').bytes;
  t.strictSame(split([Buffer.alloc(0), a.subarray(0, 3), Buffer.alloc(0), a.subarray(3, 9), Buffer.alloc(0), a.subarray(9)]).frames, [hex(a)]);
  t.end();
});

void t.test('framing errors', (t) => {
  const before = request('FC3 read 3 registers at 107 (spec)').bytes;
  const after = request('FC16 write 2 registers at 1 (spec)').bytes;
  for (const f of FRAMING_ERRORS) {
    void t.test(f.name, (t) => {
      // Alone, then after a good frame and followed by another; through every split.
      for (const [prefix, wantFrames] of [[Buffer.alloc(0), []], [before, [hex(before)]]] as const) {
        const stream = Buffer.concat([prefix, f.bytes, after]);
        const bad: string[] = [];
        for (const { name, chunks } of chunkings(stream)) {
          const r = split(chunks);
          if (r.error?.code !== f.code || r.error.value !== f.value || r.frames.join() !== wantFrames.join() || r.partial !== 0) {
            bad.push(`${name}: ${r.error?.code ?? 'no error'} ${r.error?.value ?? ''}, ${r.frames.length} frames`);
          }
        }
        t.strictSame(bad, [], `after ${prefix.length} good bytes`);
      }

      // The error is known as soon as the 6-byte prefix is: not before, and not later.
      const s = new FrameSplitter({ frame: () => t.fail('no frame') });
      for (let i = 0; i < 5; i++) t.equal(s.push(f.bytes.subarray(i, i + 1)), null, `byte ${i}`);
      const err = s.push(f.bytes.subarray(5, 6));
      t.equal(err?.code, f.code);
      t.equal(err?.value, f.value);
      t.equal(s.error, err);

      // The splitter stays failed: more input is ignored, the same error is returned.
      t.equal(s.push(after), err);
      t.equal(s.push(Buffer.concat([after, after])), err);
      t.equal(s.resume(), err);
      s.reset();
      t.equal(s.error, err, 'reset keeps the error');
      t.equal(s.push(after), err);
      t.equal(s.partialBytes, 0);
      t.equal(s.heldBytes, 0);
      t.end();
    });
  }
  t.end();
});

void t.test('a smuggled FC16 inside an FC3 declared length is not a frame', (t) => {
  const smuggler = request(SMUGGLER).bytes;
  const hidden = Buffer.from(SMUGGLED_FC16);
  t.equal(hex(smuggler.subarray(smuggler.length - hidden.length)), hex(hidden), 'the FC16 is in there');
  t.strictSame(mismatches(smuggler, [hex(smuggler)]), [], 'one frame of the declared length, every split');

  const out = new ModbusRequest();
  const decoded: string[] = [];
  const s = new FrameSplitter({
    frame(buf, start, end) {
      decodeRequest(buf, start, end, out);
      decoded.push(`FC${out.functionCode} ${out.exception} ${out.violation} ${end - start}`);
      return true;
    },
  });
  s.push(Buffer.concat([smuggler, request('FC6 register 1 = 3 (spec)').bytes]));
  t.strictSame(decoded, ['FC3 3 pdu_length 27', 'FC6 0 none 12']);

  // The same two frames honestly back to back are two frames.
  const honest = Buffer.concat([smuggler.subarray(0, 12), hidden]);
  honest[5] = 6; // FC3 length back to 6
  t.strictSame(mismatches(honest, [hex(honest.subarray(0, 12)), hex(hidden)]), []);
  t.end();
});

void t.test('pause and resume', (t) => {
  const [a, b, c, d] = [
    request('FC3 read 3 registers at 107 (spec)').bytes,
    request('FC16 write 2 registers at 1 (spec)').bytes,
    request('FC1 read 19 coils at 19 (spec)').bytes,
    request('FC6 register 1 = 3 (spec)').bytes,
  ] as [Buffer, Buffer, Buffer, Buffer];

  void t.test('handler returns false: the rest is held, pushes queue, resume continues in order', (t) => {
    const frames: string[] = [];
    let go = false;
    const s = new FrameSplitter({
      frame(buf, start, end) {
        frames.push(hex(buf.subarray(start, end)));
        return go;
      },
    });
    t.equal(s.paused, false);
    t.equal(s.push(Buffer.concat([a, b, c])), null);
    t.strictSame(frames, [hex(a)]);
    t.equal(s.paused, true);
    t.equal(s.heldBytes, b.length + c.length);
    t.equal(s.partialBytes, 0);
    t.equal(s.push(d), null);
    t.equal(s.push(a.subarray(0, 4)), null);
    t.strictSame(frames, [hex(a)], 'nothing is emitted while paused');
    t.equal(s.heldBytes, b.length + c.length + d.length + 4);
    go = true;
    t.equal(s.resume(), null);
    t.strictSame(frames, [a, b, c, d].map(hex));
    t.equal(s.paused, false);
    t.equal(s.heldBytes, 0);
    t.equal(s.partialBytes, 4, 'the partial tail of the held input');
    s.push(a.subarray(4));
    t.strictSame(frames, [a, b, c, d, a].map(hex));
    t.equal(s.resume(), null, 'resume when not paused is a no-op');
    t.strictSame(frames, [a, b, c, d, a].map(hex));
    t.end();
  });

  void t.test('pausing after every frame: each resume emits exactly one', (t) => {
    const stream = Buffer.concat(ALL);
    const rnd = new Random(7);
    const chunks: Buffer[] = [];
    for (let i = 0; i < stream.length; ) {
      const n = rnd.range(1, 700);
      chunks.push(stream.subarray(i, i + n));
      i += n;
    }
    const frames: string[] = [];
    const s = new FrameSplitter({
      frame(buf, start, end) {
        frames.push(hex(buf.subarray(start, end)));
        return false;
      },
    });
    const perResume: number[] = [];
    for (const ch of chunks) s.push(ch);
    while (s.paused) {
      const n = frames.length;
      s.resume();
      perResume.push(frames.length - n);
    }
    t.strictSame(frames, ALL.map(hex));
    t.ok(perResume.every((n, i) => n === 1 || (n === 0 && i === perResume.length - 1)), 'one frame per resume');
    t.equal(s.heldBytes, 0);
    t.equal(s.partialBytes, 0);
    t.end();
  });

  void t.test('pause on a frame assembled across chunks', (t) => {
    const frames: string[] = [];
    const s = new FrameSplitter({
      frame(buf, start, end) {
        frames.push(hex(buf.subarray(start, end)));
        return frames.length !== 1;
      },
    });
    s.push(a.subarray(0, 5));
    s.push(Buffer.concat([a.subarray(5), b]));
    t.strictSame(frames, [hex(a)]);
    t.equal(s.paused, true);
    t.equal(s.heldBytes, b.length);
    s.resume();
    t.strictSame(frames, [a, b].map(hex));
    t.end();
  });

  void t.test('pause at the exact end of a chunk: nothing held, later pushes queue', (t) => {
    const frames: string[] = [];
    const s = new FrameSplitter({
      frame(buf, start, end) {
        frames.push(hex(buf.subarray(start, end)));
        return frames.length !== 1;
      },
    });
    s.push(a);
    t.equal(s.paused, true);
    t.equal(s.heldBytes, 0);
    s.push(b);
    t.equal(s.heldBytes, b.length);
    t.strictSame(frames, [hex(a)]);
    s.resume();
    t.strictSame(frames, [a, b].map(hex));
    t.end();
  });

  void t.test('a push from inside the handler during resume keeps stream order', (t) => {
    const frames: string[] = [];
    let n = 0;
    const s: FrameSplitter = new FrameSplitter({
      frame(buf, start, end) {
        frames.push(hex(buf.subarray(start, end)));
        n++;
        if (n === 2) s.push(d); // c is still held: d must queue behind it
        return n !== 1;
      },
    });
    s.push(a);
    s.push(b);
    s.push(c);
    t.equal(s.heldBytes, b.length + c.length);
    s.resume();
    t.strictSame(frames, [a, b, c, d].map(hex));
    t.equal(s.heldBytes, 0);
    t.end();
  });

  void t.test('a framing error in held input surfaces on resume', (t) => {
    const frames: string[] = [];
    const s = new FrameSplitter({
      frame(buf, start, end) {
        frames.push(hex(buf.subarray(start, end)));
        return frames.length !== 1;
      },
    });
    const bad = FRAMING_ERRORS[0]!;
    t.equal(s.push(Buffer.concat([a, b, bad.bytes, c])), null);
    const err = s.resume();
    t.equal(err?.code, bad.code);
    t.strictSame(frames, [a, b].map(hex));
    t.equal(s.heldBytes, 0, 'held input is dropped');
    t.equal(s.paused, false);
    t.end();
  });

  void t.test('reset forgets partial and held input', (t) => {
    const frames: string[] = [];
    const s = new FrameSplitter({
      frame(buf, start, end) {
        frames.push(hex(buf.subarray(start, end)));
        return frames.length !== 1;
      },
    });
    s.push(Buffer.concat([a, b]));
    s.push(c.subarray(0, 3));
    t.equal(s.heldBytes, b.length + 3);
    s.reset();
    t.equal(s.heldBytes, 0);
    t.equal(s.paused, false);
    t.equal(s.error, null);
    s.push(d.subarray(0, 9));
    t.equal(s.partialBytes, 9);
    s.reset();
    t.equal(s.partialBytes, 0);
    s.push(c);
    t.strictSame(frames, [a, c].map(hex));
    t.end();
  });
  t.end();
});

// Streaming hooks (responses are forwarded as they arrive).

type Event = { type: 'head'; bytes: string; have: number; adu: number } | { type: 'part'; bytes: string } | { type: 'frame'; bytes: string; owned: boolean };

function streamEvents(chunks: readonly Buffer[]): Event[] {
  const events: Event[] = [];
  const s: FrameSplitter = new FrameSplitter({
    frame(buf, start, end) {
      events.push({ type: 'frame', bytes: hex(buf.subarray(start, end)), owned: s.owns(buf) });
      return true;
    },
    head(buf, have, aduLength) {
      events.push({ type: 'head', bytes: hex(buf.subarray(0, have)), have, adu: aduLength });
    },
    part(buf, start, end) {
      events.push({ type: 'part', bytes: hex(buf.subarray(start, end)) });
    },
  });
  for (const c of chunks) s.push(c);
  return events;
}

/** What the hooks must report for one frame delivered in `chunks` (exact, from the documented contract). */
function summary(events: readonly Event[]): string {
  return events.map((e) => (e.type === 'head' ? `head(${e.have}/${e.adu})` : e.type === 'part' ? `part(${e.bytes.length / 2})` : `frame${e.owned ? '*' : ''}`)).join(' ');
}

void t.test('head/part/frame hooks through every split', (t) => {
  for (const f of [...RESPONSES, ...REQUESTS]) {
    const len = f.bytes.length;
    const bad: string[] = [];
    for (let k = 0; k <= len; k++) {
      const events = streamEvents([f.bytes.subarray(0, k), f.bytes.subarray(k)]);
      // Whole in one chunk: just the frame, a view. Split with ≥ 8 bytes first: head at once with
      // those, the rest as one part. Split earlier: head when the second chunk completes it.
      const want = k === 0 || k === len ? 'frame' : k >= 8 ? `head(${k}/${len}) part(${len - k}) frame*` : `head(${len}/${len}) frame*`;
      if (summary(events) !== want) bad.push(`split at ${k}: ${summary(events)}, expected ${want}`);
      const head = events.find((e) => e.type === 'head');
      const parts = events.filter((e) => e.type === 'part').map((e) => e.bytes);
      if (head && (head.bytes + parts.join()) !== hex(f.bytes)) bad.push(`split at ${k}: head + parts are not the frame`);
      if (events.at(-1)?.bytes !== hex(f.bytes)) bad.push(`split at ${k}: wrong frame`);
    }
    const ones: Buffer[] = [];
    for (let i = 0; i < len; i++) ones.push(f.bytes.subarray(i, i + 1));
    const events = streamEvents(ones);
    const want = [`head(8/${len})`, ...Array.from({ length: len - 8 }, () => 'part(1)'), 'frame*'].join(' ');
    if (summary(events) !== want) bad.push(`byte by byte: ${summary(events)}`);
    const head = events[0];
    if (head?.type !== 'head' || head.bytes + events.slice(1, -1).map((e) => e.bytes).join('') !== hex(f.bytes)) {
      bad.push('byte by byte: head + parts are not the frame');
    }
    t.strictSame(bad, [], f.name);
  }
  t.end();
});

void t.test('hooks over a coalesced stream: head + parts always rebuild the frame', (t) => {
  const stream = Buffer.concat(ALL);
  const rnd = new Random(99);
  const bad: string[] = [];
  for (let run = 0; run < 200; run++) {
    const chunks: Buffer[] = [];
    for (let i = 0; i < stream.length; ) {
      const n = rnd.range(0, rnd.pick([4, 12, 300, 2000]));
      chunks.push(stream.subarray(i, i + n));
      i += n;
    }
    const events = streamEvents(chunks);
    const frames: string[] = [];
    let pending: string | null = null;
    for (const e of events) {
      if (e.type === 'head') {
        if (pending !== null) bad.push(`run ${run}: head twice`);
        if (e.have < 8) bad.push(`run ${run}: head with ${e.have} bytes`);
        pending = e.bytes;
      } else if (e.type === 'part') {
        if (pending === null) bad.push(`run ${run}: part without head`);
        pending += e.bytes;
      } else {
        if (pending !== null && pending !== e.bytes) bad.push(`run ${run}: head + parts != frame`);
        if ((pending !== null) !== e.owned) bad.push(`run ${run}: head sent iff assembled`);
        pending = null;
        frames.push(e.bytes);
      }
    }
    if (frames.join() !== ALL.map(hex).join()) bad.push(`run ${run}: frames`);
  }
  t.strictSame(bad, []);
  t.end();
});

void t.test('an empty chunk after the head sends no empty part', (t) => {
  const f = request('FC16 write 2 registers at 1 (spec)').bytes;
  const events = streamEvents([f.subarray(0, 10), Buffer.alloc(0), f.subarray(10, 12), Buffer.alloc(0), f.subarray(12)]);
  t.equal(summary(events), `head(10/${f.length}) part(2) part(${f.length - 12}) frame*`);
  t.end();
});

void t.test('a handler without hooks is not asked about heads', (t) => {
  const handler: FrameHandler = { frame: () => true };
  const s = new FrameSplitter(handler);
  const f = request('FC16 write 2 registers at 1 (spec)').bytes;
  s.push(f.subarray(0, 9));
  s.push(f.subarray(9));
  t.equal(s.partialBytes, 0);
  t.end();
});
