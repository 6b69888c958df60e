// The exporter's queue of finished spans, held as the bytes of the bodies they will be
// sent in: each span is encoded (otlp-json.ts spanJson) and written into its batch's
// buffer the moment it is queued, so the queue holds no JavaScript objects. At 100%
// sampling a proxy queues a span per request and each waits up to a batch (512) or the
// flush interval: as objects (a span, its attribute map, their strings) every one of
// them survived a young-generation collection or two and was copied and promoted, the
// largest share of what tracing cost a proxy (bench --only tracing, profiled). Off-heap
// bytes cost the collector nothing, and the body needs no second pass to become bytes.
import { BODY_TAIL } from './otlp-json.js';

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
    let b = this.#batches[this.#batches.length - 1];
    if (b === undefined || b.spans >= this.#batchSpans) {
      const spare = this.#spare;
      this.#spare = undefined;
      const buf = spare ?? Buffer.allocUnsafeSlow(Math.max(FIRST_BYTES, this.#head.length + json.length * 3 + 1 + TAIL.length));
      this.#head.copy(buf, 0);
      b = { buf, len: this.#head.length, spans: 0 };
      this.#batches.push(b);
    }
    // Room for the comma, the span at 3 bytes per UTF-16 unit (UTF-8's most for one; a
    // surrogate pair is 2 units and 4 bytes) and the tail written when the batch is taken.
    const need = b.len + 1 + json.length * 3 + TAIL.length;
    if (need > b.buf.length) {
      const grown = Buffer.allocUnsafeSlow(Math.max(need, b.buf.length * 2));
      b.buf.copy(grown, 0, 0, b.len);
      b.buf = grown;
    }
    if (b.spans > 0) b.buf[b.len++] = 0x2c; // ','
    b.len += b.buf.write(json, b.len, 'utf8');
    b.spans++;
    this.#spans++;
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
