// The OTLP bodies the receiver (admin/traces-api.ts) has taken but not yet decoded: kept
// as their raw bytes, oldest first, and decoded into the trace store only when someone
// reads traces (GET /v1/traces, /v1/traces/<id>: the dashboard, `trellis trace`).
//
// Why lazily: decoding is most of what tracing costs the control plane. At 100%
// sampling a pair of sidecars sends two spans a request, and taking a span in (the
// bytes made a string, JSON.parse, checking and keeping it) cost 0.033 ms of the
// control plane's CPU per request (bench --only tracing, quiet machine), nearly half of
// all that tracing cost the pair, on the cores the proxies use. Yet the store keeps
// only its last 1000 traces: most spans decoded at that rate were evicted before
// anyone looked. Kept raw, a body costs no more than receiving it; decoded when read,
// only the newest `maxPendingBytes` are ever decoded, however long nobody looked.
//
// The design, and what it keeps of eager decoding:
// - Order: bodies are decoded in the order they arrived, each at most once, into the
//   same TraceStore, so a read sees exactly what decoding each body on arrival would
//   have kept, as long as no body was dropped undecoded (below). Spans of one trace
//   from several sources (frontend, backend, Postgres; sidecars and apps) still join.
// - Bounded by bytes: at most `maxPendingBytes` wait (each counted with a fixed
//   overhead, so many tiny bodies cannot hold more memory than the bound says); when
//   a new body would pass it, the oldest waiting ones are dropped undecoded (counted as
//   `skippedBodies`). A body is kept as the chunks it came in, not copied into one
//   buffer (copying each 400 KB batch into fresh memory was the largest item of the
//   receiver's own profile, bench --only tracing --cpu-prof): Node's HTTP server
//   gives each chunk memory of its own, exactly its size, so the bytes counted are the
//   bytes held. The newest body is always kept, whatever its size (the receiver's body
//   limit bounds it).
// - Hostile input: on arrival the receiver checks what is cheap (media type, size, a
//   body that is a JSON object from its first byte to its last) and answers 400 at once
//   for what fails; the rest is checked when decoded, exactly as before (trace-store.ts:
//   a bad body rejected, a bad span rejected and the rest kept, strings cut, sizes
//   capped). A body that fails then was already answered 200, as an OpenTelemetry
//   Collector answers once data is queued; it is counted (`rejectedBodies`,
//   `spansRejected`, `lastProblem`), and GET /v1/traces and `trellis trace` show it.
// - The event loop: a read decodes what waits in slices (at least one body, about
//   `SLICE_BYTES`, a turn of the loop), not in one block: the control plane streams
//   snapshots and answers health checks meanwhile. One body is decoded in one piece, as
//   it was on arrival (the body limit bounds it). A read waits only for the bodies that
//   had arrived when it came; concurrent reads share the work.
import { isAscii } from 'node:buffer';
import type { TraceStore } from './trace-store.js';

export interface PendingBodiesLimits {
  /** Bytes of raw bodies kept waiting to be decoded; the oldest are dropped past it (default 8 MiB). */
  readonly maxPendingBytes?: number;
}

export const PENDING_DEFAULTS = { maxPendingBytes: 8 * 1024 * 1024 } as const;

/** What a body waiting costs beyond its bytes (its entry, and per chunk a Buffer object), counted against the bound. */
export const BODY_OVERHEAD = 256;
export const CHUNK_OVERHEAD = 128;
/** About this many bytes are decoded per turn of the event loop while a read waits. */
const SLICE_BYTES = 256 * 1024;

/** What decoding has found, since the receiver started. */
export interface DecodeCounts {
  /** Bodies decoded and taken in (some of their spans may have been rejected). */
  decodedBodies: number;
  /** Bodies decoded and refused whole (not JSON, not an ExportTraceServiceRequest). */
  rejectedBodies: number;
  /** Bodies dropped undecoded: the byte bound passed before anyone read. */
  skippedBodies: number;
  spansAccepted: number;
  spansRejected: number;
  /** The reason of the latest rejected body or span ('' when none was). */
  lastProblem: string;
}

/**
 * Why a body (the chunks it came in) cannot be an OTLP JSON request, from what costs
 * nothing to look at (its first and last bytes past whitespace), or '' when it may be one.
 */
export function precheckBody(chunks: readonly Buffer[]): string {
  let first = -1;
  for (let c = 0; c < chunks.length && first < 0; c++) {
    const b = chunks[c]!;
    for (let i = 0; i < b.length; i++) {
      if (!isSpace(b[i]!)) {
        first = b[i]!;
        break;
      }
    }
  }
  if (first < 0) return 'the body is empty';
  let last = -1;
  for (let c = chunks.length - 1; c >= 0 && last < 0; c--) {
    const b = chunks[c]!;
    for (let i = b.length - 1; i >= 0; i--) {
      if (!isSpace(b[i]!)) {
        last = b[i]!;
        break;
      }
    }
  }
  return first === 0x7b && last === 0x7d ? '' : 'the body is not a JSON object';
}

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

/** A body waiting: the chunks it came in, and what it counts against the bound. */
interface Body {
  readonly chunks: readonly Buffer[];
  readonly size: number;
  readonly cost: number;
}

interface Waiter {
  /** Resolved once every body up to this sequence number is decoded or dropped. */
  readonly upTo: number;
  readonly resolve: () => void;
}

export class PendingBodies {
  readonly #store: TraceStore;
  readonly #max: number;
  readonly #schedule: (f: () => void) => void;
  /** Waiting bodies, oldest first, from `#first`; their sequence numbers are consecutive. */
  #bodies: (Body | undefined)[] = [];
  #first = 0;
  #bytes = 0;
  /** Sequence number of the next body taken (the first is 1); `#done`: of the last decoded or dropped. */
  #next = 1;
  #done = 0;
  #waiters: Waiter[] = [];
  #running = false;
  readonly counts: DecodeCounts = { decodedBodies: 0, rejectedBodies: 0, skippedBodies: 0, spansAccepted: 0, spansRejected: 0, lastProblem: '' };

  /** `schedule`: how a slice of decoding is put off to a later turn (tests may pass their own). */
  constructor(store: TraceStore, limits: PendingBodiesLimits = {}, schedule: (f: () => void) => void = setImmediate) {
    this.#store = store;
    this.#max = limits.maxPendingBytes ?? PENDING_DEFAULTS.maxPendingBytes;
    this.#schedule = schedule;
  }

  /** Bodies waiting to be decoded. */
  get length(): number {
    return this.#bodies.length - this.#first;
  }

  /** What the waiting bodies count against the bound (bytes, with each one's overhead). */
  get bytes(): number {
    return this.#bytes;
  }

  /**
   * Keeps a body to be decoded when traces are read: `chunks` as the HTTP server gave
   * them (each its own memory, not shared with anything else), `size` their bytes.
   */
  push(chunks: readonly Buffer[], size: number): void {
    // A chunk that is a view of larger memory (no HTTP server of Node's gives one) would hold all of it: copied.
    if (chunks.some((c) => c.byteOffset !== 0 || c.buffer.byteLength !== c.length)) chunks = chunks.map(own);
    const cost = size + BODY_OVERHEAD + chunks.length * CHUNK_OVERHEAD;
    while (this.length > 0 && this.#bytes + cost > this.#max) {
      this.#take();
      this.counts.skippedBodies++;
    }
    this.#bodies.push({ chunks, size, cost });
    this.#bytes += cost;
    this.#next++;
  }

  /**
   * Resolves once every body taken before this call is decoded into the store (or was
   * dropped by the bound meanwhile); bodies taken later wait for a later read.
   */
  settle(): Promise<void> {
    if (this.length === 0) return Promise.resolve();
    const upTo = this.#next - 1;
    return new Promise<void>((resolve) => {
      this.#waiters.push({ upTo, resolve });
      if (!this.#running) {
        this.#running = true;
        this.#schedule(() => this.#slice());
      }
    });
  }

  /** Decodes about SLICE_BYTES of the oldest bodies, then wakes whom that satisfied, and goes on later if someone still waits. */
  #slice(): void {
    const want = this.#waiters.reduce((n, w) => Math.max(n, w.upTo), 0);
    let bytes = 0;
    while (this.length > 0 && this.#done < want && bytes < SLICE_BYTES) {
      const body = this.#take();
      bytes += body.size;
      this.#decode(body.chunks.length === 1 ? body.chunks[0]! : Buffer.concat(body.chunks, body.size));
    }
    const done = this.#done;
    this.#waiters = this.#waiters.filter((w) => {
      if (w.upTo > done) return true;
      w.resolve();
      return false;
    });
    if (this.#waiters.length > 0) this.#schedule(() => this.#slice());
    else this.#running = false;
  }

  /** Removes the oldest waiting body. */
  #take(): Body {
    const body = this.#bodies[this.#first]!;
    this.#bodies[this.#first] = undefined;
    this.#first++;
    this.#done++;
    this.#bytes -= body.cost;
    // Drop the taken entries once they are half the array (amortized; the array never grows without bound).
    if (this.#first > 64 && this.#first * 2 >= this.#bodies.length) {
      this.#bodies = this.#bodies.slice(this.#first);
      this.#first = 0;
    }
    return body;
  }

  #decode(body: Buffer): void {
    const c = this.counts;
    let parsed: unknown;
    try {
      // An ASCII body (every body a proxy sends; most an SDK sends) is read byte for
      // byte: a one-byte string, which JSON.parse reads faster than the two-byte kind.
      parsed = JSON.parse(body.toString(isAscii(body) ? 'latin1' : 'utf8'));
    } catch {
      c.rejectedBodies++;
      c.lastProblem = 'a body is not JSON';
      return;
    }
    try {
      const r = this.#store.ingest(parsed);
      c.decodedBodies++;
      c.spansAccepted += r.accepted;
      c.spansRejected += r.rejected;
      if (r.rejected > 0) c.lastProblem = r.firstProblem;
    } catch (reason) {
      c.rejectedBodies++;
      c.lastProblem = String(reason);
    }
  }
}

/** `c` in memory of its own, exactly its size. */
function own(c: Buffer): Buffer {
  if (c.byteOffset === 0 && c.buffer.byteLength === c.length) return c;
  const copy = Buffer.allocUnsafeSlow(c.length);
  c.copy(copy);
  return copy;
}
