// Framing of chunked bodies (RFC 9112 §7.1) without decoding them: the proxy forwards
// chunked bytes unchanged and only needs to know where the body ends, so the next
// message on a kept-alive connection starts in the right place.

const enum State {
  Size,
  SizeBws,
  SizeExt,
  SizeLf,
  Data,
  DataCr,
  DataLf,
  TrailerStart,
  TrailerName,
  Trailer,
  TrailerLf,
  EndLf,
  Done,
}

/** RFC 9110 token characters (a trailer field's name). */
const TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") TCHAR[c.charCodeAt(0)] = 1;

/** A control byte other than HTAB: never inside a chunk extension or a trailer value. */
const isCtl = (c: number): boolean => (c < 32 && c !== 9) || c === 127;

/** Largest chunk size accepted (hex digits beyond this are refused, as are overflows). */
const MAX_SIZE_DIGITS = 12;

export class ChunkedFramer {
  #state = State.Size;
  #remaining = 0;
  #digits = 0;
  /** Set when the framing is invalid; the connection must be closed. */
  error: string | null = null;

  get done(): boolean {
    return this.#state === State.Done;
  }

  /**
   * Consumes `buf[from, to)`. Returns the index just past the end of the body when the
   * body ends inside this range, or -1 when more bytes are needed (or on error).
   */
  feed(buf: Buffer, from: number, to: number): number {
    let i = from;
    while (i < to) {
      switch (this.#state) {
        case State.Data: {
          const n = Math.min(this.#remaining, to - i);
          this.#remaining -= n;
          i += n;
          if (this.#remaining === 0) this.#state = State.DataCr;
          continue;
        }
        case State.Size: {
          const c = buf[i]!;
          const v = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : c >= 65 && c <= 70 ? c - 55 : -1;
          if (v >= 0) {
            if (++this.#digits > MAX_SIZE_DIGITS) return this.#fail('chunk size too large');
            this.#remaining = this.#remaining * 16 + v;
          } else if (this.#digits === 0) {
            return this.#fail('invalid chunk size');
          } else if (c === 13) {
            this.#state = State.SizeLf;
          } else if (c === 59 /* ; */) {
            this.#state = State.SizeExt;
          } else if (c === 32 || c === 9) {
            this.#state = State.SizeBws;
          } else {
            return this.#fail('invalid chunk size');
          }
          break;
        }
        case State.SizeBws: {
          // Only whitespace then `;` or the line end: `1 0` must not read as 1 here and 0x10 elsewhere.
          const c = buf[i]!;
          if (c === 59) this.#state = State.SizeExt;
          else if (c === 13) this.#state = State.SizeLf;
          else if (c !== 32 && c !== 9) return this.#fail('invalid chunk size');
          break;
        }
        case State.SizeExt: {
          const c = buf[i]!;
          if (c === 13) this.#state = State.SizeLf;
          else if (isCtl(c)) return this.#fail('invalid chunk extension');
          break;
        }
        case State.SizeLf:
          if (buf[i] !== 10) return this.#fail('bare CR in chunk size line');
          this.#digits = 0;
          this.#state = this.#remaining === 0 ? State.TrailerStart : State.Data;
          break;
        case State.DataCr:
          if (buf[i] !== 13) return this.#fail('chunk data longer than its size');
          this.#state = State.DataLf;
          break;
        case State.DataLf:
          if (buf[i] !== 10) return this.#fail('missing LF after chunk data');
          this.#state = State.Size;
          break;
        case State.TrailerStart: {
          // A trailer line is a field line (`name: value`): a folded or nameless line could
          // end the trailers for another parser (a whitespace-only line read as the blank one).
          const c = buf[i]!;
          if (c === 13) this.#state = State.EndLf;
          else if (TCHAR[c] === 1) this.#state = State.TrailerName;
          else return this.#fail('invalid trailer field');
          break;
        }
        case State.TrailerName: {
          const c = buf[i]!;
          if (c === 58 /* : */) this.#state = State.Trailer;
          else if (TCHAR[c] !== 1) return this.#fail('invalid trailer field');
          break;
        }
        case State.Trailer: {
          const c = buf[i]!;
          if (c === 13) this.#state = State.TrailerLf;
          else if (isCtl(c)) return this.#fail('invalid character in trailer');
          break;
        }
        case State.TrailerLf:
          if (buf[i] !== 10) return this.#fail('bare CR in trailer');
          this.#state = State.TrailerStart;
          break;
        case State.EndLf:
          if (buf[i] !== 10) return this.#fail('bare CR at end of body');
          this.#state = State.Done;
          return i + 1;
        case State.Done:
          return i;
      }
      i++;
    }
    return -1;
  }

  #fail(reason: string): number {
    this.error = reason;
    return -1;
  }
}
