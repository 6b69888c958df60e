// The exporter's queue of finished spans, held as the bytes of the bodies they will be
// sent in: each span is written into its batch's buffer the moment it is queued, so the
// queue holds no JavaScript objects. At 100% sampling a proxy queues a span per request
// and each waits up to a batch (512) or the flush interval: as objects (a span, its
// attribute map, their strings) every one of them survived a young-generation
// collection or two and was copied and promoted, the largest share of what tracing cost
// a proxy (bench --only tracing, profiled). Off-heap bytes cost the collector nothing,
// and the body needs no second pass to become bytes.
//
// A span is written either as its whole JSON (`push`, from otlp-json.ts spanJson: the
// rare spans, a failed request's or a retry's) or piece by piece (`beginSpan`, the
// {@link SpanBytes} writes, `endSpan`: a sampled request's hop span, from fragments kept
// as bytes, stack/span-attributes.ts). Piece by piece makes no string: a span's JSON
// built as a string (a concatenation of some twenty pieces, flattened into a copy when
// written) was 2.2 KB of garbage a sampled request per proxy, the most of what tracing
// added to a proxy's allocations (bench --only tracing; allocation sampling).
import { BODY_TAIL, unixNanos } from './otlp-json.js';

/**
 * Where a span's pieces are written, in order: JSON text as it goes into the body. Only
 * between SpanQueue.beginSpan and endSpan.
 */
export interface SpanBytes {
  /** Bytes of JSON made before (cached fragments). */
  raw(bytes: Uint8Array): void;
  /** JSON text as a string (written as UTF-8). */
  json(text: string): void;
  /** `s` as a JSON string, quotes included, escaped as JSON.stringify escapes it. */
  string(s: string): void;
  /** Unix milliseconds (fractional) as OTLP's quoted decimal nanoseconds (otlp-json.ts unixNanos). */
  nanos(ms: number): void;
}

/** One batch: a body under construction (its head, then spans separated by commas). */
interface Batch {
  buf: Buffer;
  /** Bytes written. */
  len: number;
  spans: number;
}

const TAIL = Buffer.from(BODY_TAIL, 'utf8');
/** First size of a batch's buffer (it grows by doubling: a full batch of 512 spans is some 500 KB). */
const FIRST_BYTES = 16 * 1024;

export class SpanQueue {
  readonly #head: Buffer;
  readonly #batchSpans: number;
  #batches: Batch[] = [];
  #spans = 0;
  /** A body's buffer handed back once it was sent (recycle), for the next batch. */
  #spare: Buffer | undefined;
  /** The batch of the span being written (beginSpan), and where that span began. */
  #open: Batch | undefined;
  #openAt = 0;
  /** The millions of ms of the last time written (nanos), and their digits after a quote. */
  #millions = -1;
  #millionsBytes: Buffer = Buffer.alloc(0);

  /** `head`: what every body starts with (otlp-json.ts bodyHead); `batchSpans`: spans per body at most. */
  constructor(head: string, batchSpans: number) {
    this.#head = Buffer.from(head, 'utf8');
    this.#batchSpans = Math.max(1, batchSpans);
  }

  /** Spans queued. */
  get length(): number {
    return this.#spans;
  }

  /** Queues one span's JSON (spanJson). */
  push(json: string): void {
    this.beginSpan();
    this.json(json);
    this.endSpan();
  }

  /** Starts a span in the newest batch (a new one when that is full); its pieces follow, then endSpan or abortSpan. */
  beginSpan(): void {
    let b = this.#batches[this.#batches.length - 1];
    if (b === undefined || b.spans >= this.#batchSpans) {
      const spare = this.#spare;
      this.#spare = undefined;
      const buf = spare ?? Buffer.allocUnsafeSlow(Math.max(FIRST_BYTES, this.#head.length + 1 + TAIL.length));
      this.#head.copy(buf, 0);
      b = { buf, len: this.#head.length, spans: 0 };
      this.#batches.push(b);
    }
    this.#open = b;
    this.#openAt = b.len;
    if (b.spans > 0) {
      this.#room(1);
      b.buf[b.len++] = 0x2c; // ','
    }
  }

  /** Ends the span begun: it is queued. */
  endSpan(): void {
    this.#open!.spans++;
    this.#spans++;
    this.#open = undefined;
  }

  /** Takes back what was written of the span begun (its writer failed): as if it had never begun. */
  abortSpan(): void {
    const b = this.#open;
    if (b === undefined) return;
    b.len = this.#openAt;
    this.#open = undefined;
    if (b.spans === 0 && this.#batches[this.#batches.length - 1] === b) {
      this.#batches.pop();
      this.#spare ??= b.buf;
    }
  }

  /** Room for `n` more bytes in the open batch, and for the tail written when it is taken. */
  #room(n: number): Batch {
    const b = this.#open!;
    const need = b.len + n + TAIL.length;
    if (need > b.buf.length) {
      const grown = Buffer.allocUnsafeSlow(Math.max(need, b.buf.length * 2));
      b.buf.copy(grown, 0, 0, b.len);
      b.buf = grown;
    }
    return b;
  }

  raw(bytes: Uint8Array): void {
    const b = this.#room(bytes.length);
    b.buf.set(bytes, b.len);
    b.len += bytes.length;
  }

  json(text: string): void {
    // 3 bytes per UTF-16 unit: UTF-8's most for one (a surrogate pair is 2 units and 4 bytes).
    const b = this.#room(text.length * 3);
    b.len += b.buf.write(text, b.len, 'utf8');
  }

  string(s: string): void {
    const n = s.length;
    const b = this.#room(n + 2);
    const buf = b.buf;
    const from = b.len;
    let at = from;
    buf[at++] = 0x22;
    for (let i = 0; i < n; i++) {
      const c = s.charCodeAt(i);
      // Printable ASCII but the quote and the backslash is written as it is; anything else as JSON.stringify writes it.
      if (c < 0x20 || c > 0x7e || c === 0x22 || c === 0x5c) {
        b.len = from;
        this.json(JSON.stringify(s));
        return;
      }
      buf[at++] = c;
    }
    buf[at++] = 0x22;
    b.len = at;
  }

  nanos(ms: number): void {
    let whole = Math.floor(ms);
    let frac = Math.round((ms - whole) * 1e6);
    if (frac >= 1e6) {
      whole++;
      frac -= 1e6;
    }
    // The times of now and of the next few decades (some 1.8e12 ms) are millions of ms
    // (which change every 17 minutes: their digits are kept), then six digits of ms and
    // six of ns, written in place with small-integer arithmetic. Anything else as
    // unixNanos prints it.
    if (!(whole >= 1e9 && whole < 1e15)) {
      this.json(`"${unixNanos(ms)}"`);
      return;
    }
    const millions = Math.floor(whole / 1e6);
    if (millions !== this.#millions) {
      this.#millions = millions;
      this.#millionsBytes = Buffer.from(`"${millions}`, 'latin1');
    }
    const prefix = this.#millionsBytes;
    const b = this.#room(prefix.length + 13);
    const buf = b.buf;
    buf.set(prefix, b.len);
    let at = sixDigits(buf, b.len + prefix.length, whole - millions * 1e6);
    at = sixDigits(buf, at, frac);
    buf[at++] = 0x22;
    b.len = at;
  }

  /** Takes the oldest batch as a complete request body, or undefined when nothing is queued. */
  shift(): { body: Buffer; spans: number } | undefined {
    const b = this.#batches.shift();
    if (b === undefined) return undefined;
    this.#spans -= b.spans;
    TAIL.copy(b.buf, b.len);
    const len = b.len + TAIL.length;
    return { body: b.buf.subarray(0, len), spans: b.spans };
  }

  /**
   * Hands back a body {@link shift} gave, once nothing reads it any more (its bytes are
   * all written to the socket): its buffer serves the next batch, so a steady stream of
   * batches allocates no new memory (and the collector has no buffers to find and free).
   */
  recycle(body: Buffer): void {
    const buf = Buffer.from(body.buffer, body.byteOffset, body.buffer.byteLength - body.byteOffset);
    if (this.#spare === undefined || buf.length > this.#spare.length) this.#spare = buf;
  }
}

/** `n` (0 ≤ n < 1e6, whole) as six digits at `at`; the index after them. */
function sixDigits(buf: Buffer, at: number, n: number): number {
  let v = n | 0;
  for (let i = 5; i >= 0; i--) {
    const q = (v / 10) | 0;
    buf[at + i] = 0x30 + v - q * 10;
    v = q;
  }
  return at + 6;
}
