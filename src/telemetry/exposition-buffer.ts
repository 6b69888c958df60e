// Where a scrape's exposition is written: one growable byte buffer, kept between scrapes.
//
// A proxy with a thousand series prints about 300 KB a scrape. Built as one JavaScript
// string (`out += line`), that text is a rope V8 must flatten before it can be written:
// the bench's profile of a scrape (`--only scrape`, perf on the outbound proxy) spent
// about half its 5 ms of CPU there, copying the rope into a fresh 300 KB string in V8's
// large-object space (a new mapping each scrape, so its pages fault in one by one), then
// measuring and encoding it again for the socket. Written piece by piece into bytes kept
// from the last scrape, the same text costs one copy into memory already mapped.
//
// The response sends those bytes themselves (`take` lends them, `release` gives them
// back once sent): a fresh 300 KB Buffer per scrape is memory outside V8's heap that V8
// counts, and enough of it brings a full GC, a pause of several ms that the bench saw
// as the scrape's p99. A scrape that comes while the bytes are still lent (or whose
// response never finished) writes into a new buffer; the lent one is left to its response.

export class ExpositionBuffer {
  #buf: Buffer;
  #len = 0;
  /** Whether `#buf` is lent to a response (`take`) and not yet released. */
  #lent = false;

  constructor(initialBytes = 64 * 1024) {
    this.#buf = Buffer.allocUnsafe(initialBytes);
  }

  /** Appends `text` as UTF-8 (label values may hold any character a name in the config may). */
  write(text: string): void {
    if (this.#lent) {
      this.#buf = Buffer.allocUnsafe(this.#buf.length);
      this.#lent = false;
    }
    // A UTF-16 unit takes at most 3 bytes of UTF-8; the exact count only when that bound does not fit.
    if (this.#len + text.length * 3 > this.#buf.length) {
      const need = this.#len + Buffer.byteLength(text, 'utf8');
      if (need > this.#buf.length) this.#grow(need);
    }
    this.#len += this.#buf.write(text, this.#len, 'utf8');
  }

  #grow(need: number): void {
    let size = this.#buf.length * 2;
    while (size < need) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.#buf.copy(next, 0, 0, this.#len);
    this.#buf = next;
  }

  /**
   * The bytes written since the last take, lent: a view of this buffer's memory, which
   * is not written again until {@link release} gives it back. Empties the buffer.
   */
  take(): Buffer {
    const out = this.#buf.subarray(0, this.#len);
    this.#len = 0;
    this.#lent = true;
    return out;
  }

  /** Gives back bytes {@link take} lent, once sent; the next exposition may reuse them. */
  release(bytes: Buffer): void {
    if (bytes.buffer === this.#buf.buffer && bytes.byteOffset === this.#buf.byteOffset) this.#lent = false;
  }
}
